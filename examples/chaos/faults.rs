//! The scenarios: what goes wrong, and the checks that only make sense while it does.

use std::time::{Duration, Instant};

use futures_util::FutureExt;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use tokio::sync::watch;
use zk_recipes::testing::{Fault, TestingCluster};
use zk_recipes::{AnyHold, FencingToken, Hold, Session};

use crate::contender::{self, Contender, Kind, Plan, Recipe};
use crate::store::{Holding, Store, StoreClient};
use crate::{Result, SYNC_LIMIT, TICK, operator};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// The ZooKeeper leader killed and restarted, again and again.
    LeaderKills,
    /// A follower killed; then two of three members, so no quorum, for longer than a session
    /// timeout.
    QuorumLoss,
    /// A child contender frozen with SIGSTOP while it holds, past its session timeout.
    PausedHolder,
    /// One contender, holding or not, cut off from all or some members (blackhole), refused
    /// new connections, its replies dropped, or its network slowed; healed before or after its
    /// session timeout.
    Partitions,
    /// Connections reset at random.
    ConnectionResets,
    /// A member cut off from the other members (both ways, silently) while contenders steered
    /// to it hold and wait there: a follower or the leader, healed before anyone notices or
    /// after the sessions it served expired.
    MemberIsolation,
}

impl Scenario {
    pub const ALL: [Scenario; 6] = [
        Scenario::LeaderKills,
        Scenario::QuorumLoss,
        Scenario::PausedHolder,
        Scenario::Partitions,
        Scenario::ConnectionResets,
        Scenario::MemberIsolation,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::LeaderKills => "leader-kills",
            Scenario::QuorumLoss => "quorum-loss",
            Scenario::PausedHolder => "paused-holder",
            Scenario::Partitions => "partitions",
            Scenario::ConnectionResets => "connection-resets",
            Scenario::MemberIsolation => "member-isolation",
        }
    }
}

/// Which member is cut off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Follower,
    Leader,
}

/// When an isolated member is healed, as its clients see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Heal {
    /// Before anyone notices: before the member's syncLimit × tickTime without a word from the
    /// others (then it closes its client connections) and before the session timeout (then
    /// the others' leader expires the sessions it no longer hears of). Writes and syncs on it
    /// stall meanwhile; its sessions survive.
    Before,
    /// Once the member has stopped serving and the others have a leader, and a session
    /// timeout (and ticks for rounding, and slack) later: every session it served has expired.
    After,
}

/// The isolations in turn, from the start of a random pair: each pair cuts off a follower and
/// the leader, and heals before and after; the two pairs make every combination.
const ISOLATIONS: [(Role, Heal); 4] = [
    (Role::Follower, Heal::Before),
    (Role::Leader, Heal::After),
    (Role::Follower, Heal::After),
    (Role::Leader, Heal::Before),
];

/// What the faults act on.
pub struct Target<'a> {
    pub cluster: &'a TestingCluster,
    pub contenders: &'a [Contender],
    pub stores: &'a [(Kind, Store)],
    pub session_timeout: Duration,
    /// A session of the chaos process's own, straight to the ensemble.
    pub observer: &'a Session,
}

impl Target<'_> {
    pub fn store(&self, kind: Kind) -> &Store {
        &self.stores.iter().find(|(k, _)| *k == kind).expect("a store per kind").1
    }

    pub fn path(&self, kind: Kind) -> &str {
        &self.contenders.iter().find(|c| c.plan.kind == kind).expect("contenders of every kind").plan.path
    }
}

/// Injects the scenario's faults until `until` (a quorum loss runs at least once, an isolation
/// twice), with the operator deleting contender nodes meanwhile — except through a quorum loss,
/// whose holders must hold through it. Returns how many faults it injected and the violations
/// seen while they lasted.
pub async fn inject(
    scenario: Scenario,
    target: &Target<'_>,
    until: Instant,
    rng: &mut StdRng,
) -> Result<(u64, Vec<String>)> {
    let (done, deleting) = watch::channel(scenario == Scenario::QuorumLoss);
    let mut operator_rng = StdRng::seed_from_u64(rng.random());
    let faults = async {
        let injected = faults(scenario, target, until, rng).await;
        done.send_replace(true);
        injected
    };
    let (injected, ()) = tokio::join!(faults, operator::run(target, OPERATOR_PACE, &mut operator_rng, deleting));
    injected
}

/// How often the operator deletes a node, in milliseconds.
const OPERATOR_PACE: std::ops::Range<u64> = 100..600;

/// The scenario's own faults, as [`inject`] describes them.
async fn faults(
    scenario: Scenario,
    target: &Target<'_>,
    until: Instant,
    rng: &mut StdRng,
) -> Result<(u64, Vec<String>)> {
    let mut faults = 0;
    let mut violations = Vec::new();
    let st = target.session_timeout;
    let sleep =
        |ms: std::ops::Range<u64>, rng: &mut StdRng| tokio::time::sleep(Duration::from_millis(rng.random_range(ms)));
    match scenario {
        Scenario::LeaderKills => {
            while Instant::now() < until {
                let leader = leader(target.cluster).await?;
                target.cluster.kill(leader).await?;
                faults += 1;
                sleep(300..1500, rng).await;
                target.cluster.restart(leader).await?;
                sleep(500..2000, rng).await;
            }
        }
        Scenario::QuorumLoss => loop {
            let leader = leader(target.cluster).await?;
            let follower = (leader + rng.random_range(1..3)) % 3;
            target.cluster.kill(follower).await?;
            faults += 1;
            sleep(1000..2000, rng).await;
            target.cluster.restart(follower).await?;

            // Holders through the outage: one per recipe, on a session of their own.
            let sentinels = Sentinels::acquire(target).await?;
            let up = rng.random_range(0..3);
            let down = [(up + 1) % 3, (up + 2) % 3];
            for member in down {
                target.cluster.kill(member).await?;
            }
            faults += 1;
            let lost_at = Instant::now();
            // The lone member serves pings for up to syncLimit before it gives up; then a holder's
            // session can be proven for one more session timeout.
            let doubt_by = lost_at + SYNC_LIMIT + st + Duration::from_secs(2);
            violations.extend(sentinels.told_by(doubt_by).await?);
            tokio::time::sleep_until((lost_at + SYNC_LIMIT + 3 * st + Duration::from_secs(1)).into()).await;
            violations.extend(nobody_acquired(target.stores, lost_at));
            for member in down {
                target.cluster.restart(member).await?;
            }
            sentinels.release().await?;
            if Instant::now() >= until {
                break;
            }
        },
        Scenario::PausedHolder => {
            while Instant::now() < until {
                let Some(i) = child_holder(target, rng, Instant::now() + Duration::from_secs(10)).await else {
                    continue;
                };
                let contender = &target.contenders[i];
                let Some(pid) = contender.pid() else { continue };
                let frozen = Frozen::new(pid)?;
                faults += 1;
                let token = {
                    let store = target.store(contender.plan.kind);
                    let ledger = store.ledger();
                    ledger.holders().find(|h| h.contender == contender.plan.id).map(|h| h.token)
                };
                // Resume once its session expired and successors hold that exclude it, so that
                // its next write is stale; give up waiting after a while.
                let give_up = Instant::now() + 3 * st + Duration::from_secs(10);
                while Instant::now() < give_up && !superseded(target, contender, token).await? {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                drop(frozen);
                sleep(500..1500, rng).await;
            }
        }
        Scenario::Partitions => {
            while Instant::now() < until {
                // Half the time one that holds now; else anyone, most likely waiting or creating.
                let holder = rng.random_bool(0.5).then(|| holder(target, rng)).flatten();
                let link =
                    &target.contenders[holder.unwrap_or_else(|| rng.random_range(0..target.contenders.len()))].link;
                match rng.random_range(0..6) {
                    0 | 1 => {
                        // Healed before the session timeout (it survives) or well after (it expires).
                        let outage = if rng.random_bool(0.5) { st / 2 } else { st * 5 / 2 };
                        link.set_fault(Fault::Blackhole);
                        tokio::time::sleep(outage).await;
                    }
                    2 => {
                        // Cut off from one or two members: the client must fail over.
                        let first = rng.random_range(0..3);
                        for member in (first..first + rng.random_range(1..3)).map(|m| m % 3) {
                            link.set_member_fault(member, Fault::Blackhole);
                        }
                        link.reset_connections();
                        tokio::time::sleep(st).await;
                    }
                    3 => {
                        // Its connections reset and new ones refused, as if every member were down.
                        link.set_fault(Fault::Refuse);
                        link.reset_connections();
                        tokio::time::sleep(if rng.random_bool(0.5) { st / 2 } else { st * 2 }).await;
                    }
                    4 => {
                        // Requests take effect, replies are lost: creates the client must recover.
                        link.set_fault(Fault::DropReplies);
                        sleep(100..500, rng).await;
                        link.set_fault(Fault::Pass);
                        link.reset_connections();
                    }
                    _ => {
                        link.set_fault(Fault::Delay(Duration::from_millis(rng.random_range(20..200))));
                        tokio::time::sleep(st).await;
                    }
                }
                link.set_fault(Fault::Pass);
                faults += 1;
                sleep(200..1000, rng).await;
            }
        }
        Scenario::ConnectionResets => {
            while Instant::now() < until {
                sleep(50..400, rng).await;
                if rng.random_bool(0.2) {
                    target.contenders.iter().for_each(|c| c.link.reset_connections());
                } else {
                    target.contenders[rng.random_range(0..target.contenders.len())].link.reset_connections();
                }
                faults += 1;
            }
        }
        Scenario::MemberIsolation => {
            let first = 2 * rng.random_range(0..ISOLATIONS.len() / 2);
            for i in 0.. {
                if i >= 2 && Instant::now() >= until {
                    break;
                }
                let (role, heal) = ISOLATIONS[(first + i) % ISOLATIONS.len()];
                let leader = leader(target.cluster).await?;
                let member = match role {
                    Role::Leader => leader,
                    Role::Follower => (leader + rng.random_range(1..3)) % 3,
                };
                let steered = steer(target, member, rng).await;
                target.cluster.isolate(member)?;
                faults += 1;
                match heal {
                    // Well before either (see `Heal::Before`).
                    Heal::Before => tokio::time::sleep(SYNC_LIMIT.min(st) / 2).await,
                    Heal::After => {
                        let deadline = Instant::now() + ELECTION_BOUND;
                        while target.cluster.mode(member).await.is_some()
                            || target.cluster.leader().await.is_none_or(|l| l == member)
                        {
                            if Instant::now() > deadline {
                                return Err(format!(
                                    "member {member} isolated: no leader elsewhere within {ELECTION_BOUND:?}"
                                )
                                .into());
                            }
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                        // From now on at the latest, the others' leader hears nothing of the
                        // member's sessions: a session timeout later (and two ticks, as
                        // sessions expire on tick boundaries, and slack) every one expired.
                        tokio::time::sleep(st + 2 * TICK + Duration::from_secs(1)).await;
                    }
                }
                target.cluster.heal(member)?;
                serving(target.cluster, member).await?;
                for &i in &steered {
                    target.contenders[i].link.set_fault(Fault::Pass);
                }
                sleep(500..1500, rng).await;
            }
        }
    }
    Ok((faults, violations))
}

/// How long a partitioned ensemble may take to notice and elect a leader among the others, or
/// a healed member to serve again: generous, for a loaded machine.
const ELECTION_BOUND: Duration = Duration::from_secs(60);
/// How long steered contenders may take to connect to their member: the client tries the
/// refused members and moves on at once, or, if its session expired meanwhile, establishes a
/// new one (a few session timeouts at worst).
const STEER_BOUND: Duration = Duration::from_secs(20);

/// Steers, for every recipe, a contender that holds now (if one does) and one other to reach
/// only `member` — the others refuse them and their connections are reset — and waits until
/// each one's session is connected there (as the member's `cons` lists it). Returns their
/// indices. A contender still not there by the bound is left to connect when it can.
async fn steer(target: &Target<'_>, member: usize, rng: &mut StdRng) -> Vec<usize> {
    let holding = holders(target, |_| true);
    let mut steered = Vec::new();
    for kind in Kind::ALL {
        let mut of_kind: Vec<usize> =
            (0..target.contenders.len()).filter(|&i| target.contenders[i].plan.kind == kind).collect();
        let holders: Vec<usize> = of_kind.iter().copied().filter(|i| holding.contains(i)).collect();
        if !holders.is_empty() {
            let chosen = holders[rng.random_range(0..holders.len())];
            steered.push(chosen);
            of_kind.retain(|&i| i != chosen);
        }
        steered.push(of_kind[rng.random_range(0..of_kind.len())]);
    }
    for &i in &steered {
        let link = &target.contenders[i].link;
        for m in 0..target.cluster.size() {
            link.set_member_fault(m, if m == member { Fault::Pass } else { Fault::Refuse });
        }
        link.reset_connections();
    }
    let deadline = Instant::now() + STEER_BOUND;
    while Instant::now() < deadline {
        let connections = target.cluster.four_letter(member, "cons").await.unwrap_or_default();
        let there = |i: &usize| {
            let contender = &target.contenders[*i];
            let session = target.store(contender.plan.kind).ledger().session(&contender.plan.id);
            session.is_some_and(|id| connections.contains(&format!("sid={id:#x},")))
        };
        if steered.iter().all(there) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    steered
}

/// Waits until `member` serves clients again.
async fn serving(cluster: &TestingCluster, member: usize) -> Result<()> {
    let deadline = Instant::now() + ELECTION_BOUND;
    while cluster.mode(member).await.is_none() {
        if Instant::now() > deadline {
            return Err(format!("member {member} does not serve {ELECTION_BOUND:?} after healing").into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// Undoes whatever is still broken: every link passes, between members too, every member runs.
pub async fn heal(target: &Target<'_>) -> Result<()> {
    for contender in target.contenders {
        contender.link.set_fault(Fault::Pass);
    }
    target.cluster.heal_all()?;
    for member in 0..target.cluster.size() {
        if target.cluster.pid(member).await.is_none() {
            target.cluster.restart(member).await?;
        }
    }
    Ok(())
}

/// Without a quorum nobody acquires.
fn nobody_acquired(stores: &[(Kind, Store)], lost_at: Instant) -> Vec<String> {
    // Until then, an acquisition may rest on a delete committed just before the kill, read
    // from a lone leader that serves for up to syncLimit and a tick more; plus slack for a
    // report that reaches the store late on a busy machine.
    let grace = lost_at + SYNC_LIMIT + Duration::from_millis(2000);
    let now = Instant::now();
    let mut violations = Vec::new();
    for (kind, store) in stores {
        for h in store.ledger().holdings.iter().filter(|h| h.entered.is_some_and(|e| e > grace && e < now)) {
            violations.push(format!("{}: {} acquired {} without a quorum", kind.name(), h.contender, h.token));
        }
    }
    violations
}

/// One holder per recipe that holds through a quorum loss, to show it is told in time. They
/// use the store like any contender, so the checks cover them too.
struct Sentinels {
    held: Vec<(Kind, AnyHold, StoreClient)>,
    _session: Session,
}

impl Sentinels {
    async fn acquire(target: &Target<'_>) -> Result<Self> {
        let session = Session::builder()
            .session_timeout(target.session_timeout)
            .connect(&target.cluster.connect_string())
            .await?;
        let mut held = Vec::new();
        for (kind, store) in target.stores {
            let plan = Plan {
                kind: *kind,
                id: format!("sentinel-{}", kind.name()),
                path: target.path(*kind).to_owned(),
                store: store.address,
                seed: 0,
                session_timeout: target.session_timeout,
                child: false,
            };
            let recipe = Recipe::new(&session, &plan)?;
            let began_in = session.id();
            let holding = tokio::time::timeout(Duration::from_secs(60), recipe.acquire(false)).await??;
            let mut client = StoreClient::connect(store.address, &plan.id).await?;
            contender::begin(&holding, &session, began_in, &mut client).await?;
            held.push((*kind, holding, client));
        }
        Ok(Self { held, _session: session })
    }

    /// Violations: the sentinels whose `lost()` did not resolve by `deadline`.
    async fn told_by(&self, deadline: Instant) -> Result<Vec<String>> {
        let mut violations = Vec::new();
        for (kind, held, _) in &self.held {
            if tokio::time::timeout_at(deadline.into(), held.lost()).await.is_err() {
                violations
                    .push(format!("{}: a holder through the quorum loss was not told it is in doubt", kind.name()));
            }
        }
        Ok(violations)
    }

    async fn release(self) -> Result<()> {
        for (_, held, mut client) in self.held {
            let token = held.token();
            if held.lost().now_or_never().is_some() {
                client.doubt(token).await?;
            }
            client.write(token).await?;
            client.exit(token).await?;
            let healthy = held.release().await.is_ok();
            client.verdict(token, healthy).await?;
        }
        Ok(())
    }
}

async fn leader(cluster: &TestingCluster) -> Result<usize> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(leader) = cluster.leader().await {
            return Ok(leader);
        }
        if Instant::now() > deadline {
            return Err("no ZooKeeper leader elected within 60 s".into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A child contender that has held for a while (so it is in a long hold, not about to
/// release), waiting for one until `deadline`.
async fn child_holder(target: &Target<'_>, rng: &mut StdRng, deadline: Instant) -> Option<usize> {
    while Instant::now() < deadline {
        let settled = Instant::now() - Duration::from_millis(100);
        let children = holders(target, |h| h.entered.is_some_and(|e| e < settled));
        let children: Vec<usize> = children.into_iter().filter(|&i| target.contenders[i].plan.child).collect();
        if !children.is_empty() {
            return Some(children[rng.random_range(0..children.len())]);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

/// The indices of the contenders that hold now and pass `filter`.
fn holders(target: &Target<'_>, filter: impl Fn(&Holding) -> bool) -> Vec<usize> {
    let mut ids = Vec::new();
    for (_, store) in target.stores {
        ids.extend(store.ledger().holders().filter(|h| filter(h)).map(|h| h.contender.clone()));
    }
    (0..target.contenders.len()).filter(|&i| ids.contains(&target.contenders[i].plan.id)).collect()
}

/// The index of a random contender that holds now, if any.
fn holder(target: &Target<'_>, rng: &mut StdRng) -> Option<usize> {
    let holders = holders(target, |_| true);
    (!holders.is_empty()).then(|| holders[rng.random_range(0..holders.len())])
}

/// Whether the frozen `contender`'s nodes are gone (its session expired, or the operator
/// deleted them) and successors hold that exclude its holding with `token`.
async fn superseded(target: &Target<'_>, contender: &Contender, token: Option<FencingToken>) -> Result<bool> {
    let snapshot = zk_recipes::inspect(target.observer, &contender.plan.path).await?;
    let id = contender.plan.id.as_bytes();
    if snapshot.holders.iter().chain(&snapshot.waiting).any(|p| p.data == id) {
        return Ok(false);
    }
    let Some(token) = token else { return Ok(true) };
    let store = target.store(contender.plan.kind);
    let ledger = store.ledger();
    Ok(ledger
        .holdings
        .iter()
        .find(|h| h.contender == contender.plan.id && h.token == token)
        .is_none_or(|h| ledger.displaced(h)))
}

/// A frozen process, let go again when dropped, whatever happens in between.
struct Frozen(Pid);

impl Frozen {
    fn new(pid: Pid) -> Result<Self> {
        kill(pid, Signal::SIGSTOP)?;
        Ok(Self(pid))
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        let _ = kill(self.0, Signal::SIGCONT);
    }
}
