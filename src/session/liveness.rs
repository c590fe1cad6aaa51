//! The proof that the ZooKeeper session is still alive: until when the server that can expire
//! it — in an ensemble, the leader — provably keeps it. Pure bookkeeping, fed by the driver and
//! by every request the recipes send; no I/O here.
//!
//! # The rule
//!
//! Every request the server answers is a *touch*: the server that answered heard from the
//! session no earlier than the request's send time `s`. A standalone server then keeps the
//! session until at least `s + T`. In an ensemble that is not enough: a follower records the
//! touch locally and passes it on to the leader only in its answer to the leader's next PING
//! (ZooKeeper sends one every `tickTime / 2`), and a follower cut off from the leader goes on
//! answering reads for up to `syncLimit × tickTime` while the leader, hearing nothing of the
//! session, expires it (`research/zookeeper-sessions.md`, F1–F8).
//!
//! A `sync` is different: the follower forwards it to the leader and answers only after the
//! leader processed it, and the follower's packets to the leader (PING answers and forwarded
//! requests) travel in order on one connection. So when a `sync` sent at `s_m` is answered, the
//! leader has processed every PING answer the follower sent before forwarding it — among them
//! one carrying every touch the follower recorded at least a PING period before `s_m`. Hence:
//!
//! > on the answer to a `sync` sent at `s_m`, for the latest touch `k` answered at `a_k` with
//! > `a_k + lag ≤ s_m`, the leader keeps the session until at least `s_k + T`,
//!
//! where `lag` bounds the leader's PING period as measured here (`T / 4` plus 2 %: ZooKeeper
//! grants at least `2 × tickTime` by default, so `tickTime / 2 ≤ T / 4`). If the touch and the
//! `sync` travelled on different connections, the rule holds too: the later connection was
//! opened after the touch was answered, and a learner lets a session reconnect only after the
//! leader touched it (F6). A standalone server is its own leader, so the rule is sound there,
//! only more cautious than it needs to be.
//!
//! That last fact gives a second rule, for reconnections: once the session is connected again
//! after the connection dropped, the leader touched it while accepting the new connection, which
//! was opened after every touch answered on the old one. So every touch answered before the drop
//! is confirmed — without waiting for a `sync` — with the bound `s_k + T − lag`. The `lag`
//! comes off for the one case where the member that accepted the reconnection is a leader that
//! lost its quorum without noticing yet: it serves for up to one `tickTime` longer than its
//! followers take to notice and elect another, and `lag ≥ tickTime` when `T ≥ 4 × tickTime`
//! (the `sync` rule has the same margin). This lets a holder ride out a leader election: its
//! proof reaches `0.7 T` past its last answer instead of `0.6 T` past its last confirmed one.
//! It leans harder than the `sync` rule on the leader's loop not stalling: a deposed leader
//! that resumed from a long stall could answer a touch and accept the reconnection at once,
//! where the `sync` rule would need it to live on for `lag`. The drop is noted the moment the
//! client's state is read as disconnected: what was answered before came on a connection that
//! was gone by then, and a new one needs a round trip more before it answers anything.
//!
//! The proof is `s_k + T × 98 % − margin`: 2 % for clock-rate differences between this
//! machine and the leader, and the caller's extra margin.

use std::collections::VecDeque;
use std::time::Duration;

use super::clock::Moment;

/// How many touches awaiting a confirming `sync` are kept; beyond it neighbours are merged, which
/// only makes the proof more cautious.
const MAX_PENDING: usize = 32;

/// A request the server answered: sent at `sent`, its answer seen at `answered`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Touch {
    sent: Moment,
    answered: Moment,
}

/// What is proven about one ZooKeeper session, and the touches a later `sync` may still confirm.
#[derive(Debug, Clone)]
pub(crate) struct Liveness {
    /// How long after a confirmed touch's send time the session provably lives.
    window: Duration,
    /// How long after a touch's answer a `sync` must be sent to confirm it.
    lag: Duration,
    /// Unconfirmed touches, in increasing order of both `answered` and `sent`.
    pending: VecDeque<Touch>,
    /// The latest send time of any touch answered so far.
    latest: Option<Moment>,
    /// The latest send time of a touch answered before the connection dropped, while it is down.
    before_drop: Option<Moment>,
    until: Moment,
}

impl Liveness {
    /// The liveness of a session of timeout `timeout` that the server created no earlier than
    /// `created` (the moment the connect began): a new session starts with a full timeout.
    pub(crate) fn new(timeout: Duration, margin: Duration, created: Moment) -> Self {
        let window = window(timeout, margin);
        let (pending, latest, before_drop) = (VecDeque::new(), None, None);
        Self { window, lag: lag(timeout), pending, latest, before_drop, until: created + window }
    }

    /// Until when the session provably lives.
    pub(crate) fn until(&self) -> Moment {
        self.until
    }

    /// A request sent at `sent` was answered at `answered` by whichever server the session is
    /// connected to.
    pub(crate) fn touched(&mut self, sent: Moment, answered: Moment) {
        self.latest = self.latest.max(Some(sent));
        let touch = Touch { sent, answered };
        // A touch answered no earlier and sent no later than the newest one adds nothing.
        if self.pending.back().is_some_and(|last| last.sent >= sent) {
            return;
        }
        // Ones sent earlier and answered no earlier are dominated by this one.
        while self.pending.back().is_some_and(|last| last.answered >= answered) {
            self.pending.pop_back();
        }
        self.pending.push_back(touch);
        if self.pending.len() > MAX_PENDING {
            // Merge the two oldest into one answered as late as the later and sent as early as the
            // earlier: a later `sync` confirms it no sooner, and proves no more, than either.
            let first = self.pending.pop_front().expect("more than MAX_PENDING");
            if let Some(second) = self.pending.front_mut() {
                second.sent = first.sent;
            }
        }
    }

    /// A `sync` sent at `sent` was answered at `answered`: the leader has heard of every touch
    /// answered `lag` before `sent`. Returns the new proof if it grew.
    pub(crate) fn synced(&mut self, sent: Moment, answered: Moment) -> Option<Moment> {
        let mut confirmed = None;
        while let Some(&touch) = self.pending.front() {
            if touch.answered + self.lag > sent {
                break;
            }
            confirmed = Some(touch);
            self.pending.pop_front();
        }
        // The sync is a touch itself, for a later sync to confirm.
        self.touched(sent, answered);
        let until = confirmed?.sent + self.window;
        (until > self.until).then(|| {
            self.until = until;
            until
        })
    }
}

impl Liveness {
    /// The connection dropped: the touches answered so far were answered on a connection that
    /// is gone (or on one before it).
    pub(crate) fn dropped(&mut self) {
        if self.before_drop.is_none() {
            self.before_drop = self.latest;
        }
    }

    /// The session is connected again, on a connection the leader accepted (see the module
    /// docs): the touches answered before the drop are confirmed. Returns the new proof if it
    /// grew.
    pub(crate) fn reconnected(&mut self) -> Option<Moment> {
        let until = self.before_drop.take()? + self.window.saturating_sub(self.lag);
        (until > self.until).then(|| {
            self.until = until;
            until
        })
    }
}

/// The session timeout less 2 % for clock-rate differences, less the caller's margin.
pub(crate) fn window(timeout: Duration, margin: Duration) -> Duration {
    timeout.saturating_sub(timeout / 50).saturating_sub(margin)
}

/// How far the proof reaches past the latest answered heartbeat in steady state: the window, less
/// the lag and the heartbeat period by which the confirmed touch is older. Zero means no proof.
pub(crate) fn reach(timeout: Duration, margin: Duration) -> Duration {
    window(timeout, margin).saturating_sub(lag(timeout)).saturating_sub(heartbeat_period(timeout))
}

/// How often the session sends a heartbeat (a `sync`).
pub(crate) fn heartbeat_period(timeout: Duration) -> Duration {
    timeout / 8
}

/// How long a touch must have been answered before a `sync` is sent for the `sync` to confirm it:
/// a bound on the leader's PING period, `tickTime / 2 ≤ timeout / 4`, plus 2 % for clock rates.
pub(crate) fn lag(timeout: Duration) -> Duration {
    timeout / 4 + timeout / 50
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_secs(10);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_new_session_is_proven_for_the_window_from_its_creation() {
        let start = Moment::now();
        let liveness = Liveness::new(T, ms(500), start);
        assert_eq!(liveness.until(), start + ms(9_300));
    }

    #[test]
    fn a_sync_confirms_only_touches_answered_a_lag_before_it_was_sent() {
        let start = Moment::now();
        let mut liveness = Liveness::new(T, Duration::ZERO, start);
        let before = liveness.until();
        // Heartbeats every 1.25 s, each answered after 10 ms; lag is 2.7 s.
        let beat = |i: u64| (start + ms(1_250 * i), start + ms(1_250 * i + 10));
        for i in 1..=2 {
            let (sent, answered) = beat(i);
            assert_eq!(liveness.synced(sent, answered), None, "nothing answered 2.7 s before beat {i}");
        }
        let (sent, answered) = beat(3);
        assert_eq!(liveness.synced(sent, answered), None, "beat 1 was answered only 2.49 s before beat 3");
        assert_eq!(liveness.until(), before);
        let (sent, answered) = beat(4);
        // Beat 1 (answered at 1.26 s) is the latest touch answered 2.7 s before 5 s.
        assert_eq!(liveness.synced(sent, answered), Some(beat(1).0 + ms(9_800)));
    }

    #[test]
    fn any_answered_request_counts_once_a_later_sync_confirms_it() {
        let start = Moment::now();
        let mut liveness = Liveness::new(T, Duration::ZERO, start);
        liveness.touched(start + ms(4_000), start + ms(4_020));
        liveness.touched(start + ms(4_100), start + ms(4_110));
        assert_eq!(liveness.synced(start + ms(6_500), start + ms(6_510)), None, "too early");
        assert_eq!(liveness.synced(start + ms(6_900), start + ms(6_910)), Some(start + ms(4_100) + ms(9_800)));
    }

    #[test]
    fn the_proof_never_shrinks() {
        let start = Moment::now();
        let mut liveness = Liveness::new(T, Duration::ZERO, start + ms(5_000));
        liveness.touched(start, start + ms(10));
        assert_eq!(liveness.synced(start + ms(3_000), start + ms(3_010)), None, "older than the creation");
        assert_eq!(liveness.until(), start + ms(14_800));
    }

    #[test]
    fn pending_touches_stay_bounded_and_merging_stays_cautious() {
        let start = Moment::now();
        let mut liveness = Liveness::new(T, Duration::ZERO, start);
        for i in 0..1_000 {
            liveness.touched(start + ms(i), start + ms(i + 1));
        }
        assert!(liveness.pending.len() <= MAX_PENDING);
        // A sync much later confirms everything; the proof is at most the newest touch's.
        let until = liveness.synced(start + ms(10_000), start + ms(10_001)).unwrap();
        assert!(until <= start + ms(999) + ms(9_800));
    }

    #[test]
    fn a_reconnection_confirms_what_was_answered_before_the_drop_less_the_lag() {
        let start = Moment::now();
        let mut liveness = Liveness::new(T, Duration::ZERO, start);
        liveness.touched(start + ms(5_000), start + ms(5_010));
        liveness.dropped();
        // Answered after the drop was seen: on the new connection, so not covered by the rule.
        liveness.touched(start + ms(6_000), start + ms(6_010));
        assert_eq!(liveness.reconnected(), Some(start + ms(5_000) + ms(9_800 - 2_700)));
        assert_eq!(liveness.reconnected(), None, "once per drop");
        // The next drop covers what was answered until then; dropping twice changes nothing.
        liveness.dropped();
        liveness.dropped();
        assert_eq!(liveness.reconnected(), Some(start + ms(6_000) + ms(7_100)));
        // Without a touch since, a reconnection proves nothing new.
        liveness.dropped();
        assert_eq!(liveness.reconnected(), None);
    }

    #[test]
    fn the_proof_is_the_confirmed_send_time_plus_the_timeout_less_2_percent_and_the_margin() {
        let start = Moment::now();
        let mut liveness = Liveness::new(T, ms(1_500), start);
        liveness.touched(start + ms(4_000), start + ms(4_020));
        // 10 s less 200 ms (2 %) less the 1.5 s margin, after the send time, not the answer.
        assert_eq!(liveness.synced(start + ms(7_000), start + ms(7_010)), Some(start + ms(4_000 + 8_300)));
        assert_eq!(liveness.until(), start + ms(12_300));
    }

    #[test]
    fn a_sync_confirms_the_latest_touch_answered_a_lag_before_and_keeps_the_rest() {
        let start = Moment::now();
        let mut liveness = Liveness::new(T, Duration::ZERO, start);
        for (sent, answered) in [(1_000, 1_010), (2_000, 2_010), (3_000, 3_010), (5_000, 5_010)] {
            liveness.touched(start + ms(sent), start + ms(answered));
        }
        // Sent at 6 s: the touches answered by 3.3 s count, the latest of them sent at 3 s.
        assert_eq!(liveness.synced(start + ms(6_000), start + ms(6_010)), Some(start + ms(3_000 + 9_800)));
        // The touch sent at 5 s waits for a sync sent 2.7 s after its answer.
        assert_eq!(liveness.synced(start + ms(7_700), start + ms(7_710)), None);
        assert_eq!(liveness.synced(start + ms(7_710), start + ms(7_720)), Some(start + ms(5_000 + 9_800)));
    }

    #[test]
    fn a_request_sent_later_but_answered_sooner_is_confirmed_sooner() {
        let start = Moment::now();
        let mut liveness = Liveness::new(T, Duration::ZERO, start);
        // A slow answer, then a request sent after it that was answered first.
        liveness.touched(start + ms(4_000), start + ms(4_500));
        liveness.touched(start + ms(4_100), start + ms(4_150));
        assert_eq!(liveness.pending.len(), 1, "the later touch dominates the earlier");
        assert_eq!(liveness.synced(start + ms(6_850), start + ms(6_860)), Some(start + ms(4_100 + 9_800)));
    }

    #[test]
    fn an_older_answer_never_moves_the_proof_back() {
        let start = Moment::now();
        let mut liveness = Liveness::new(T, Duration::ZERO, start);
        liveness.touched(start + ms(1_000), start + ms(1_010));
        liveness.touched(start + ms(5_000), start + ms(5_010));
        liveness.dropped();
        let proven = start + ms(5_000 + 9_800 - 2_700);
        assert_eq!(liveness.reconnected(), Some(proven));
        // The answer to a sync sent at 4 s comes late: it confirms only the touch sent at 1 s,
        // whose bound (10.8 s) is short of what the reconnection proved.
        assert_eq!(liveness.synced(start + ms(4_000), start + ms(6_000)), None);
        assert_eq!(liveness.until(), proven);
        // A touch recorded out of order, sent before the latest, adds nothing either.
        liveness.touched(start + ms(3_000), start + ms(6_100));
        liveness.dropped();
        assert_eq!(liveness.reconnected(), None, "the latest touch is still the one sent at 5 s");
        assert_eq!(liveness.until(), proven);
    }

    #[test]
    fn the_margin_and_the_clock_allowance_come_off_the_window() {
        assert_eq!(window(T, Duration::ZERO), ms(9_800));
        assert_eq!(window(T, ms(2_000)), ms(7_800));
        assert_eq!(window(T, T), Duration::ZERO);
        assert_eq!(lag(T), ms(2_700));
        assert_eq!(reach(T, Duration::ZERO), ms(5_850));
        assert_eq!(reach(T, ms(6_000)), Duration::ZERO);
        assert_eq!(heartbeat_period(T), ms(1_250));
        assert_eq!(window(ms(100), T), Duration::ZERO, "a margin beyond the timeout leaves no window");
    }
}
