//! What the checker asserts of every state it reaches, and of the moments (a grant, a watch)
//! that only the step itself shows. Each property is stated from the server's side — which
//! nodes exist, who owns them, in what order they were created (`czxid`) — not through the
//! engine's own parsing or rules, so that a defect in those cannot hide itself.

use super::super::Status;
use super::super::explore::{Model, Violation};
use super::{Action, Belief, GATES, LEASES, LOCK, Plan, Role, Scenario, SessionState, Stage, World};
use crate::token::FencingToken;

/// The markers a reader does not wait for (Curator's and kazoo's readers).
const READERS: [&str; 2] = ["__READ__", "__rlock__"];

impl World {
    pub(super) fn check(&self, scenario: &Scenario) -> Result<(), Violation> {
        self.mutual_exclusion()?;
        self.permits()?;
        // Every exclusive holder's token is larger than every earlier one's, also across a
        // reaped and recreated directory.
        if let Some(pair) = self.exclusive_tokens.windows(2).find(|pair| pair[0] >= pair[1]) {
            return Err(Violation::new("tokens increase", format!("{} then {}", pair[0], pair[1])));
        }
        if let Some((property, detail)) = &self.flaw {
            return Err(Violation::new(property, detail.clone()));
        }
        self.at_rest(scenario)
    }

    /// Holders on the lock directory whose node exists (and so whose session lives): one
    /// exclusive holder, or only readers; and one holder of a semaphore's gate.
    fn mutual_exclusion(&self) -> Result<(), Violation> {
        let exists = |node: &str| self.server.stat(node).is_some();
        let mut readers = Vec::new();
        let mut exclusive = Vec::new();
        for contender in &self.contenders {
            if let (Belief::Holding { nodes, .. }, Plan::Single(role)) = (&contender.belief, contender.plan)
                && exists(&nodes[0])
            {
                if role == Role::Read { &mut readers } else { &mut exclusive }.push(nodes[0].clone());
            }
        }
        for (_, peer) in &self.peers {
            if let Status::Holding { node } = peer.status()
                && exists(&node)
            {
                exclusive.push(node);
            }
        }
        if exclusive.len() > 1 || (!exclusive.is_empty() && !readers.is_empty()) {
            return Err(Violation::new("mutual exclusion", format!("exclusive {exclusive:?}, readers {readers:?}")));
        }
        let gates: Vec<&String> = (self.contenders.iter())
            .filter_map(|c| match &c.stage {
                Stage::Lease { gate, .. } if c.waiting() && exists(gate) => Some(gate),
                _ => None,
            })
            .collect();
        if gates.len() > 1 {
            return Err(Violation::new("mutual exclusion", format!("semaphore gates {gates:?}")));
        }
        Ok(())
    }

    /// Never more live leases than permits: lease nodes taken (under the gate, or held) that
    /// exist.
    fn permits(&self) -> Result<(), Violation> {
        let Some(permits) = self.contenders.iter().find_map(|c| match c.plan {
            Plan::Semaphore { permits, .. } => Some(permits),
            Plan::Single(_) => None,
        }) else {
            return Ok(());
        };
        let mut leases = Vec::new();
        for contender in &self.contenders {
            let nodes = match (&contender.belief, &contender.stage) {
                (Belief::Holding { nodes, .. }, _) if matches!(contender.plan, Plan::Semaphore { .. }) => nodes,
                (Belief::Waiting, Stage::Lease { taken, .. }) => taken,
                _ => continue,
            };
            leases.extend(nodes.iter().filter(|node| self.server.stat(node).is_some()));
        }
        if leases.len() > permits as usize {
            return Err(Violation::new("no more leases than permits", format!("{leases:?} of {permits}")));
        }
        Ok(())
    }

    /// Once nothing but faults and cancellations can happen: every acquisition has ended
    /// (liveness: a waiter left now would wait for ever), and no contender node of a live
    /// session is left behind.
    fn at_rest(&self, scenario: &Scenario) -> Result<(), Violation> {
        let mut actions = Vec::new();
        scenario.actions(self, &mut actions);
        if !actions.iter().all(Action::optional) {
            return Ok(());
        }
        let dirs = [LOCK, GATES, LEASES];
        let nodes = || {
            dirs.into_iter().flat_map(|dir| self.server.children(dir).into_iter().map(move |c| format!("{dir}/{c}")))
        };
        let owner = |path: &str| self.server.stat(path).map(|stat| stat.ephemeral_owner);
        // A stranger's node (an impostor's) blocks the queue as long as it lives: no progress
        // is owed past it.
        let stranger = self.stranger.is_some_and(|s| nodes().any(|path| owner(&path) == Some(s.0)));
        if let Some(waiter) = self.contenders.iter().position(|c| c.waiting())
            && !stranger
        {
            return Err(Violation::new("every live waiter eventually holds", format!("contender {waiter} waits")));
        }
        // A waiter here waits behind a stranger's node, as it should; anyone else's node of a
        // live session is left over.
        let ours = |path: &String| {
            self.contenders.iter().any(|c| {
                owner(path) == Some(c.session.0)
                    && !c.waiting()
                    && self.server.session_state(c.session) == SessionState::Live
            })
        };
        if let Some(left) = nodes().find(ours) {
            return Err(Violation::new("no contender node is left", left));
        }
        Ok(())
    }

    /// At a grant: the guard's node is not one the client already heard deleted, it is its
    /// own session's, and nothing ahead of it that the rule waits for still exists (FIFO).
    pub(super) fn check_grant(&mut self, i: usize, node: &str, token: FencingToken) {
        let contender = &self.contenders[i];
        let role = contender.machine.role();
        if contender.own_deleted_seen {
            return self.flaw("no guard for a node heard deleted", format!("contender {i}, {node}"));
        }
        // A node deleted after the answer the grant rests on, before the client acted on it,
        // cannot be known at the grant: that holder learns of it from its watch, and its token
        // is what fencing refuses. What follows is owed for a node the server still has.
        let Some(stat) = self.server.stat(node) else { return };
        if stat.ephemeral_owner != contender.session.0 {
            let detail = format!(
                "contender {i} (session {}) holds {node} of session {}",
                contender.session.0, stat.ephemeral_owner
            );
            return self.flaw("a guard's node is its session's", detail);
        }
        if !matches!(role, Role::Lease { .. })
            && let Some(ahead) = self.waited_for(node, role).into_iter().next()
        {
            return self.flaw("grants follow node order", format!("contender {i} granted {node} behind {ahead}"));
        }
        if node.starts_with(LOCK) && role != Role::Read {
            self.exclusive_tokens.push(token);
        }
    }

    /// At a watch on the node ahead: if that node still exists, it is the one the rule names
    /// — for a mutex, a writer or a latch the contender just ahead, for a reader the nearest
    /// writer ahead — so that one departure wakes only the waiters it lets go (no herd).
    pub(super) fn check_watch_ahead(&mut self, i: usize, watched: &str) {
        let contender = &self.contenders[i];
        let own = contender.machine.own_path();
        if self.server.stat(watched).is_none() || self.server.stat(&own).is_none() {
            return;
        }
        let named = self.waited_for(&own, contender.machine.role()).pop();
        if named.as_deref() != Some(watched) {
            self.flaw(
                "waiters watch the node the rule names",
                format!("contender {i} watches {watched}, not {named:?}"),
            );
        }
    }

    /// At a release's verdict: a release that says the lock was held to the end deleted the
    /// node itself. Had someone else's delete come first, a successor may have held meanwhile.
    pub(super) fn check_release(&mut self, i: usize, node: &str, held: bool, ran: bool) {
        if held && !ran {
            self.flaw(
                "a release claims only what it held",
                format!("contender {i} was told it held {node} to the end, which another delete had removed"),
            );
        }
    }

    /// The existing nodes ahead of `node` in its directory (created before it) that a
    /// contender of `role` must wait for, oldest first.
    fn waited_for(&self, node: &str, role: Role) -> Vec<String> {
        let Some((dir, _)) = node.rsplit_once('/') else { return Vec::new() };
        let czxid = |path: &str| self.server.stat(path).map(|stat| stat.czxid);
        let ours = czxid(node);
        let mut ahead: Vec<(i64, String)> = (self.server.children(dir).into_iter())
            .filter(|child| role != Role::Read || !READERS.iter().any(|marker| child.contains(marker)))
            .map(|child| format!("{dir}/{child}"))
            .filter_map(|path| czxid(&path).filter(|&c| Some(c) < ours).map(|c| (c, path)))
            .collect();
        ahead.sort();
        ahead.into_iter().map(|(_, path)| path).collect()
    }

    fn flaw(&mut self, property: &'static str, detail: String) {
        self.flaw.get_or_insert((property, detail));
    }
}
