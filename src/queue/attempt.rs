//! One acquisition as a state machine: it is told what the server answered and what its
//! watches saw, and says what to send or wait for next. No I/O and no clock here — the tokio
//! driver in `mod.rs` runs it against ZooKeeper, and the model checker against a model of
//! ZooKeeper — so every decision (the order of the queue, whom to watch, when to proceed, what
//! to clean up) is made by this one piece of code in production and under the checker alike.
//!
//! What the machine cannot know by itself it asks its [`Env`]: whether the session is proven
//! alive right now, whether the connection changed since our node was last seen, how the
//! session ended.

use zookeeper_client as zk;

use super::children::{Contender, Decision, Parsed, Queue, WrappedChild, parse};
use super::cleanup::Target;
use super::role::Role;
use super::watch::NodeEvent;
use crate::error::{Error, LossReason};
use crate::retry::{self, is_transient};
use crate::token::FencingToken;

/// How often a create may meet a missing directory (reaped between our `mkdir` and create)
/// before giving up.
const MAX_PARENT_ATTEMPTS: usize = 5;
/// How many creates of one attempt in a row may end in a connection loss before giving up. A
/// server drops the connection on a request larger than its `jute.maxbuffer`, at once, every
/// time; ordinary connection losses rarely cut off several creates of one attempt in a row.
const MAX_CREATE_LOSSES: usize = 10;

/// What the machine asks of the world it runs in, at the moment it decides.
pub(crate) trait Env {
    /// Whether the session is proven alive now (see `session::liveness`).
    fn proven(&self) -> bool;
    /// Whether the client's connection changed since the last request whose answer showed our
    /// node (the driver marks each [`Request`] that does, and [`Command::WatchOwn`]).
    fn reconnected(&mut self) -> bool;
    /// An event of the watch on our own node that has arrived but not yet come in as
    /// [`Input::OwnEvent`]: looked for once more as a decision is made, since ZooKeeper
    /// delivers our node's deletion before anything that happened after it, and the driver may
    /// be handed both at once.
    fn own_event(&mut self) -> Option<NodeEvent>;
    /// How the session ended, if it has.
    fn ended(&self) -> Option<LossReason>;
    /// The session's id (`ephemeralOwner` of its nodes).
    fn session_id(&self) -> i64;
    /// A fresh protected prefix `_c_<uuid>-`.
    fn fresh_prefix(&mut self) -> String;
}

/// A request to send. Reads are sent again by the driver after a connection loss (they are
/// idempotent); the machine decides what a lost create means.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Request {
    /// Create our ephemeral sequential node at `path` and list the directory with its stat,
    /// back to back in one flight: ZooKeeper runs a session's requests in order, so the list
    /// shows our node, and an uncontended acquisition costs one round trip.
    CreateAndList { path: String },
    /// Create the directory and its missing ancestors as containers.
    MakeParents,
    /// After a `sync`, the directory's children with its stat, or `None` if it is gone: finds
    /// a create whose reply was lost.
    SyncedList,
    /// The `ephemeralOwner` of a node carrying our prefix (`None` if it is gone).
    Owner { path: String },
    /// The directory's children (`stat`: with the directory's epoch; `watch`: setting a
    /// children watch, kept by the driver for [`Command::AwaitChildren`]).
    List { stat: bool, watch: bool },
    /// A `sync`, which only the leader answers: tells our own expiry from an outside delete of
    /// `node`.
    Sync { node: String },
}

/// What the driver does for the machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Command {
    Send(Request),
    /// Watch our node (an exists watch) until it is deleted or changes; report
    /// [`Input::OwnEvent`]. Goes out before any request of the same step.
    WatchOwn,
    /// Watch the node `path` ahead (a data watch: on a node already gone it leaves no watch
    /// behind); report [`Input::AheadFired`].
    WatchAhead {
        path: String,
    },
    /// Watch the node this attempt requires; report [`Input::RequiredEvent`].
    WatchRequired {
        path: String,
    },
    /// Wait for the children watch of the last watched listing; report
    /// [`Input::ChildrenFired`].
    AwaitChildren,
    /// Wait until the proof of liveness is renewed; report [`Input::Proven`].
    AwaitProof,
    /// Delete a duplicate node of this attempt (a create the server ran after we had given it
    /// up for lost), in the background.
    RemoveStray {
        path: String,
    },
    /// Our node is in the queue, behind or among `children` children.
    Queued {
        children: usize,
    },
    /// The attempt ended: `Ok(true)` it may proceed as a holder, `Ok(false)` it may not at
    /// once (a try), or it failed.
    Done(Result<bool, Error>),
}

/// What the driver tells the machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Input {
    /// The replies to [`Request::CreateAndList`]: the create's owner and sequence, the list's
    /// children and the directory's epoch.
    CreatedAndListed {
        created: Result<(i64, i64), zk::Error>,
        listed: Result<(Vec<String>, u64), zk::Error>,
    },
    ParentsMade(Result<(), Error>),
    SyncedListed(Result<Option<(Vec<String>, u64)>, Error>),
    OwnerIs(Result<Option<i64>, Error>),
    /// Children, with the directory's epoch if it was asked for.
    Listed(Result<(Vec<String>, Option<u64>), Error>),
    Synced(Result<(), Error>),
    OwnEvent(NodeEvent),
    /// The node ahead changed so (`NodeDeleted` also if it was gone already).
    AheadFired(Result<zk::EventType, Error>),
    ChildrenFired(Result<(), Error>),
    RequiredEvent(NodeEvent),
    Proven(Result<(), LossReason>),
}

/// Where the attempt's node stands, which decides what cleanup it needs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Node {
    /// No create has been sent: nothing to clean up.
    Unsent,
    /// A create was sent and its outcome is unknown: clean up by name prefix.
    Sent,
    /// The node exists with this name.
    Created { name: String },
}

/// A watch the machine relies on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Watched {
    Unset,
    Armed,
    /// It fired while nothing waited on it: looked at the next time it matters.
    Fired(NodeEvent),
    /// The server refused it for good.
    Refused,
}

/// What the machine waits for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Phase {
    New,
    Creating,
    /// Created as `sequence`, but the listing sent with the create failed.
    Relisting {
        sequence: u32,
    },
    MakingParents,
    Recovering,
    /// Asking who owns `current`, then `rest`, of the children carrying our prefix.
    CheckingOwner {
        children: Vec<String>,
        epoch: u64,
        current: String,
        rest: Vec<String>,
    },
    Listing,
    /// A listing with a children watch; `recheck`: to see whether the decision still is to
    /// wait for the children, else it came after a wake-up.
    ListingWatched {
        recheck: bool,
    },
    AwaitingProof,
    /// Our node (or the required one) was deleted while the session is not proven alive: a
    /// `sync` tells whether it was our own expiry.
    ConfirmingDeletion {
        node: String,
    },
    WaitingAhead {
        next_in_line: bool,
    },
    WaitingChildren,
    Done,
}

/// One acquisition in progress; see the module docs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Attempt {
    dir: String,
    role: Role,
    /// Take it only if the rule lets us proceed at once (a try): decide once.
    once: bool,
    /// Curator's protected prefix `_c_<uuid>-`, which lets a lost create be found again.
    prefix: String,
    node: Node,
    /// Whether a create was sent again with the same prefix after a lost reply: then a late
    /// duplicate may still appear, and cleanup goes by prefix.
    resent: bool,
    token: Option<FencingToken>,
    /// The node's `ephemeralOwner` as the server reported it (create reply or `exists`).
    owner: Option<i64>,
    /// The watch on our own node, set when the attempt first waits on another node.
    own: Watched,
    /// The node this attempt requires (a semaphore lease's gate) and its watch.
    required: Option<(String, Watched)>,
    /// Whether the children at hand came with a children watch the driver keeps.
    children_watched: bool,
    missing_parents: usize,
    connection_losses: usize,
    last_position: Option<usize>,
    phase: Phase,
}

impl Attempt {
    pub(crate) fn new(dir: &str, role: Role, once: bool, requires: Option<&str>, prefix: String) -> Self {
        Self {
            dir: dir.to_owned(),
            role,
            once,
            prefix,
            node: Node::Unsent,
            resent: false,
            token: None,
            owner: None,
            own: Watched::Unset,
            required: requires.map(|path| (path.to_owned(), Watched::Unset)),
            children_watched: false,
            missing_parents: 0,
            connection_losses: 0,
            last_position: None,
            phase: Phase::New,
        }
    }

    /// The first commands: the create.
    pub(crate) fn start(&mut self) -> Vec<Command> {
        assert_eq!(self.phase, Phase::New, "an attempt starts once");
        let mut out = Vec::new();
        self.create(&mut out);
        out
    }

    /// Takes one input; the commands it leads to.
    pub(crate) fn step(&mut self, input: Input, env: &mut dyn Env) -> Vec<Command> {
        let mut out = Vec::new();
        match (std::mem::replace(&mut self.phase, Phase::Done), input) {
            // Watch events can come at any moment; one that nothing waits on is kept.
            (phase, Input::OwnEvent(event)) if !matches!(phase, Phase::WaitingAhead { .. }) => {
                self.phase = phase;
                self.own = self.own_fired(event);
            }
            (phase, Input::RequiredEvent(event)) if phase != Phase::WaitingChildren => {
                self.phase = phase;
                if let Some((_, watched)) = &mut self.required {
                    *watched = Watched::Fired(event);
                }
            }
            (Phase::Creating, Input::CreatedAndListed { created, listed }) => {
                self.created(created, listed, env, &mut out);
            }
            (Phase::Relisting { sequence }, Input::Listed(listed)) => match listed {
                Ok((children, Some(epoch))) => {
                    self.token = Some(token(epoch, sequence));
                    self.queued(children, env, &mut out);
                }
                Ok((_, None)) => unreachable!("a listing with stat has an epoch"),
                Err(err) => self.fail(err, &mut out),
            },
            (Phase::MakingParents, Input::ParentsMade(made)) => match made {
                Ok(()) => self.create(&mut out),
                Err(err) => self.fail(err, &mut out),
            },
            (Phase::Recovering, Input::SyncedListed(listed)) => match listed {
                Ok(None) => {
                    tracing::debug!("the create did not happen before the connection loss; creating again");
                    self.create_again(&mut out);
                }
                Ok(Some((children, epoch))) => {
                    let candidates = children.iter().filter(|c| c.starts_with(&self.prefix)).cloned().collect();
                    self.check_next_owner(children, epoch, candidates, &mut out);
                }
                Err(err) => self.fail(err, &mut out),
            },
            (Phase::CheckingOwner { children, epoch, current, rest }, Input::OwnerIs(owner)) => match owner {
                #[cfg(test)]
                Ok(Some(_)) if mutation::is(Mutation::NoOwnerCheck) => {
                    let Parsed::Contender(Contender { sequence, .. }) = parse(&current) else { unreachable!() };
                    self.node = Node::Created { name: current };
                    self.owner = Some(env.session_id());
                    self.token = Some(token(epoch, sequence));
                    self.queued(children, env, &mut out);
                }
                Ok(owner) if owner == Some(env.session_id()) => match parse(&current) {
                    Parsed::Contender(Contender { sequence, .. }) => {
                        tracing::debug!(
                            child = current,
                            "the create ran before the connection loss; adopting its node"
                        );
                        self.node = Node::Created { name: current };
                        self.owner = owner;
                        self.token = Some(token(epoch, sequence));
                        self.queued(children, env, &mut out);
                    }
                    Parsed::Wrapped | Parsed::Foreign => {
                        self.fail(Error::SequenceOverflow { path: self.dir.clone(), child: current }, &mut out);
                    }
                },
                Ok(owner) => {
                    // CURATOR-604: a node of an earlier session may still be listed; never adopt
                    // it. Not ours, yet it carries our prefix: stop using the prefix.
                    if owner.is_some() {
                        tracing::warn!(child = current, "a node of another session carries this attempt's prefix");
                        self.prefix = env.fresh_prefix();
                        self.resent = false;
                    }
                    self.check_next_owner(children, epoch, rest, &mut out);
                }
                Err(err) => self.fail(err, &mut out),
            },
            (Phase::Listing, Input::Listed(listed)) => match listed {
                Ok((children, _)) => self.consider(&children, env, &mut out),
                Err(err) => self.fail(err, &mut out),
            },
            (Phase::ListingWatched { recheck }, Input::Listed(listed)) => match listed {
                Ok((children, _)) if recheck => match self.still_waits_for_children(&children) {
                    // The watcher set by this listing is the one to wait for.
                    Ok(true) => self.wait_for_children(env, &mut out),
                    Ok(false) => self.consider(&children, env, &mut out),
                    Err(err) => self.fail(err, &mut out),
                },
                Ok((children, _)) => {
                    // One request per wake-up: the new list came with the next watch.
                    self.children_watched = true;
                    self.consider(&children, env, &mut out);
                }
                Err(err) => self.fail(err, &mut out),
            },
            (Phase::AwaitingProof, Input::Proven(proven)) => match proven {
                // Our node may have gone meanwhile: look at the queue again.
                Ok(()) => self.list(&mut out),
                Err(reason) => self.fail(ended(reason), &mut out),
            },
            (Phase::ConfirmingDeletion { node }, Input::Synced(synced)) => match synced {
                Ok(()) => self.fail(deleted(node), &mut out),
                Err(err) => self.fail(err, &mut out),
            },
            (Phase::WaitingAhead { .. }, Input::OwnEvent(event)) => self.own_changed(event, env, &mut out),
            (Phase::WaitingAhead { next_in_line }, Input::AheadFired(fired)) => match fired {
                Ok(event) if event == zk::EventType::NodeDeleted && next_in_line => {
                    if self.still_ours(env, &mut out) {
                        self.grant(env, &mut out);
                        if matches!(out.last(), Some(Command::Done(Ok(true)))) {
                            tracing::debug!("may proceed: the head left");
                        }
                    }
                }
                Ok(_) => {
                    tracing::debug!(position = self.last_position, "list contenders");
                    self.list(&mut out);
                }
                Err(err) => self.fail(err, &mut out),
            },
            (Phase::WaitingChildren, Input::ChildrenFired(fired)) => match fired {
                Ok(()) => {
                    tracing::debug!(position = self.last_position, "list contenders");
                    self.list_watched(false, &mut out);
                }
                Err(err) => self.fail(err, &mut out),
            },
            (Phase::WaitingChildren, Input::RequiredEvent(event)) => self.required_changed(event, env, &mut out),
            (phase, input) => unreachable!("{input:?} while {phase:?}"),
        }
        out
    }

    /// Whether the machine waits for the node ahead: the driver keeps that watch only then.
    pub(crate) fn waits_ahead(&self) -> bool {
        matches!(self.phase, Phase::WaitingAhead { .. })
    }

    /// Whether the machine waits for the directory's children.
    pub(crate) fn waits_for_children(&self) -> bool {
        self.phase == Phase::WaitingChildren
    }

    /// The node, its token and, if a resent create may still land as a duplicate, the prefix
    /// to look for it by: once the attempt is done with `Ok(true)`.
    pub(crate) fn granted(&self) -> (String, FencingToken, Option<Target>) {
        let (Node::Created { name }, Some(token)) = (&self.node, self.token) else {
            unreachable!("an attempt proceeds only after its create succeeded and its token is known")
        };
        let strays = self.resent.then(|| Target::Prefix { dir: self.dir.clone(), prefix: self.prefix.clone() });
        (format!("{}/{name}", self.dir), token, strays)
    }

    /// What deleting this attempt's node takes, if it may have one.
    pub(crate) fn cleanup_target(&self) -> Option<Target> {
        #[cfg(test)]
        if mutation::is(Mutation::WithdrawWithoutDelete) {
            return None;
        }
        let by_prefix = || Some(Target::Prefix { dir: self.dir.clone(), prefix: self.prefix.clone() });
        match &self.node {
            Node::Unsent if self.resent => by_prefix(),
            Node::Unsent => None,
            Node::Sent => by_prefix(),
            // A resent create may still land as a second node: delete whatever has our prefix.
            Node::Created { .. } if self.resent => by_prefix(),
            Node::Created { name } => Some(Target::Node(format!("{}/{name}", self.dir))),
        }
    }

    /// The attempt's node is cleaned up (or was handed to a holding): nothing is left to do.
    pub(crate) fn forget(&mut self) {
        (self.node, self.resent) = (Node::Unsent, false);
    }

    /// The attempt's token, once its node is known.
    pub(crate) fn token(&self) -> Option<FencingToken> {
        self.token
    }

    /// The directory this attempt queues in.
    #[cfg(test)]
    pub(crate) fn dir(&self) -> &str {
        &self.dir
    }

    /// What it contends as.
    #[cfg(test)]
    pub(crate) fn role(&self) -> Role {
        self.role
    }

    /// The protected prefix its creates carry now.
    #[cfg(test)]
    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The full path of our node, once created.
    pub(crate) fn own_path(&self) -> String {
        match &self.node {
            Node::Created { name } => format!("{}/{name}", self.dir),
            Node::Unsent | Node::Sent => unreachable!("only a created node is watched or looked up"),
        }
    }

    fn create(&mut self, out: &mut Vec<Command>) {
        // Mark the create as sent before sending it: from here on a drop must clean up.
        self.node = Node::Sent;
        let path = format!("{}/{}{}", self.dir, self.prefix, self.role.kind().marker());
        self.send(Request::CreateAndList { path }, Phase::Creating, out);
    }

    /// Creates again with the same prefix, so that should the lost create still land, the
    /// cleanup by prefix finds it.
    fn create_again(&mut self, out: &mut Vec<Command>) {
        self.node = Node::Unsent;
        self.resent = true;
        self.create(out);
    }

    fn created(
        &mut self,
        created: Result<(i64, i64), zk::Error>,
        listed: Result<(Vec<String>, u64), zk::Error>,
        env: &mut dyn Env,
        out: &mut Vec<Command>,
    ) {
        let marker = self.role.kind().marker();
        match created {
            Ok((owner, sequence)) => {
                self.owner = Some(owner);
                #[cfg(test)]
                let (raw, sequence) = (sequence, mutation::wrapped_as_small(sequence));
                let Ok(sequence) = u32::try_from(sequence) else {
                    // As the server names it: ten digits, or nineteen for a 64-bit sequence.
                    let digits = if sequence <= i64::from(i32::MAX) { 10 } else { 19 };
                    let child = format!("{}{marker}{sequence:0digits$}", self.prefix);
                    return self.fail(Error::SequenceOverflow { path: self.dir.clone(), child }, out);
                };
                // Name the node before anything else can fail, so that a drop deletes it by
                // name (a search by prefix would need to list the directory).
                self.node = Node::Created { name: format!("{}{marker}{sequence:010}", self.prefix) };
                #[cfg(test)]
                if raw != i64::from(sequence) {
                    self.node = Node::Created { name: format!("{}{marker}{raw:010}", self.prefix) };
                }
                match listed {
                    Ok((children, epoch)) => {
                        self.token = Some(token(epoch, sequence));
                        self.queued(children, env, out);
                    }
                    // The reply to the create arrived, so our node exists and keeps the
                    // directory from being deleted: listing again sees the same directory.
                    Err(err) if is_transient(&err) => {
                        self.send(Request::List { stat: true, watch: false }, Phase::Relisting { sequence }, out);
                    }
                    Err(err) => self.fail(Error::zk(&self.dir, err), out),
                }
            }
            Err(zk::Error::NoNode) => {
                self.node = Node::Unsent;
                self.missing_parents += 1;
                if self.missing_parents > MAX_PARENT_ATTEMPTS {
                    return self.fail(Error::zk(&self.dir, zk::Error::NoNode), out);
                }
                self.send(Request::MakeParents, Phase::MakingParents, out);
            }
            Err(err) if is_transient(&err) => {
                self.connection_losses += 1;
                if self.connection_losses > MAX_CREATE_LOSSES {
                    // What a server does to a request larger than its `jute.maxbuffer`.
                    let err = Error::CreateDropped { path: self.dir.clone(), attempts: self.connection_losses };
                    return self.fail(err, out);
                }
                #[cfg(test)]
                if mutation::is(Mutation::FreshPrefixAfterLostReply) {
                    self.prefix = env.fresh_prefix();
                    return self.create(out);
                }
                self.send(Request::SyncedList, Phase::Recovering, out);
            }
            Err(err) => {
                // Rejected by the server (no permission, bad ACL...): nothing was created. Any
                // other error (the client's own, about a connection) leaves the create's
                // outcome unknown, so the cleanup goes by prefix.
                if retry::is_answer::<()>(&Err(err.clone())) {
                    self.node = Node::Unsent;
                }
                self.fail(Error::zk(&self.dir, err), out);
            }
        }
    }

    /// Asks who owns the next of the children carrying our prefix; if none is left, no node of
    /// ours exists: create again.
    fn check_next_owner(&mut self, children: Vec<String>, epoch: u64, mut rest: Vec<String>, out: &mut Vec<Command>) {
        if rest.is_empty() {
            tracing::debug!("the create did not happen before the connection loss; creating again");
            return self.create_again(out);
        }
        let current = rest.remove(0);
        let path = format!("{}/{current}", self.dir);
        self.send(Request::Owner { path }, Phase::CheckingOwner { children, epoch, current, rest }, out);
    }

    fn queued(&mut self, children: Vec<String>, env: &mut dyn Env, out: &mut Vec<Command>) {
        out.push(Command::Queued { children: children.len() });
        self.consider(&children, env, out);
    }

    /// Decides on a listing of the directory: proceed, or wait on what must change first.
    fn consider(&mut self, children: &[String], env: &mut dyn Env, out: &mut Vec<Command>) {
        let queue = match self.queue(children) {
            Ok(queue) => queue,
            Err(err) => return self.fail(err, out),
        };
        let position = match self.position(&queue) {
            Ok(position) => position,
            Err(err) => return self.fail(err, out),
        };
        self.remove_strays(&queue, out);
        // Whether these children came with a watch: good for this decision only.
        let watched = std::mem::take(&mut self.children_watched);
        let decision = self.role.rule().decide(&queue, position);
        if decision == Decision::Proceed {
            return self.grant(env, out);
        }
        if self.once {
            return self.done(Ok(false), out);
        }
        if self.last_position != Some(position) {
            tracing::debug!(position, waiting_on = ?decision, "queued");
            self.last_position = Some(position);
        }
        match decision {
            Decision::Wait { on } => {
                let next_in_line = self.role.rule().proceeds_when_head_leaves(&queue, position, on);
                let path = format!("{}/{on}", self.dir);
                self.wait_for_change(path, next_in_line, env, out);
            }
            // `children` came with a watch when the last wake-up listed them; otherwise list
            // again with one: the set may have changed since.
            Decision::WaitForChildren if watched => {
                self.wait_for_children(env, out);
            }
            Decision::WaitForChildren => self.list_watched(true, out),
            Decision::Proceed => unreachable!("handled above"),
        }
    }

    /// Whether a fresh listing still has this attempt waiting for the children.
    fn still_waits_for_children(&self, children: &[String]) -> Result<bool, Error> {
        let queue = self.queue(children)?;
        Ok(self.role.rule().decide(&queue, self.position(&queue)?) == Decision::WaitForChildren)
    }

    /// Whether this attempt, which the rule lets proceed, may be handed out as a holder now: its
    /// node is this session's, and the session is proven to live. If the proof had run out —
    /// after a silence the session survived, the events of the reconnection can arrive before
    /// the answers that renew it — waits until it is renewed, then looks at the queue again,
    /// since our node may have gone meanwhile.
    fn grant(&mut self, env: &mut dyn Env, out: &mut Vec<Command>) {
        // Proceeds only with a node the server said this session owns — the check whose
        // absence let Curator's LeaderLatch crown a node of an earlier session (CURATOR-696).
        if self.owner != Some(env.session_id()) {
            tracing::error!(node = %self.own_path(), owner = ?self.owner, "the node to proceed with is not this session's");
            return self.fail(Error::Lost { node: self.own_path(), reason: LossReason::SessionExpired }, out);
        }
        self.look_at_own(env);
        match self.own {
            // The guard could not watch its node either: it would be lost on arrival.
            Watched::Refused => {
                return self.fail(Error::Lost { node: self.own_path(), reason: LossReason::Unwatchable }, out);
            }
            // Our node's deletion may have arrived since the decision's listing.
            Watched::Fired(event) => return self.own_changed(event, env, out),
            Watched::Unset | Watched::Armed => {}
        }
        if env.proven() {
            if !self.once {
                tracing::debug!(position = self.last_position, "may proceed");
            }
            return self.done(Ok(true), out);
        }
        tracing::debug!("may proceed, but the proof of liveness ran out; waiting for it to be renewed");
        out.push(Command::AwaitProof);
        self.phase = Phase::AwaitingProof;
    }

    /// Waits until the node at `ahead` changes or goes, watching our own node too from the
    /// first wait on (both watches go out in one flight).
    ///
    /// Our own node can be deleted by anyone at any moment, and then we must never proceed. A
    /// listing shows whether it is there; the shortcut that proceeds on the head's deletion
    /// without listing relies instead on the watch on our own node: ZooKeeper delivers one
    /// connection's events in the order of the changes, so a deletion of our node before the
    /// head's arrives first. Across a reconnection that order is lost (the server reports what
    /// changed meanwhile in any order), so after one the shortcut lists instead.
    fn wait_for_change(&mut self, ahead: String, next_in_line: bool, env: &mut dyn Env, out: &mut Vec<Command>) {
        self.look_at_own(env);
        match self.own {
            Watched::Unset => {
                self.own = Watched::Armed;
                out.push(Command::WatchOwn);
            }
            Watched::Fired(event) => return self.own_changed(event, env, out),
            Watched::Armed | Watched::Refused => {}
        }
        out.push(Command::WatchAhead { path: ahead });
        self.phase = Phase::WaitingAhead { next_in_line };
    }

    /// Takes in an event of our node's watch that has arrived meanwhile.
    fn look_at_own(&mut self, env: &mut dyn Env) {
        #[cfg(test)]
        if mutation::is(Mutation::NoSecondLookAtOwnNode) {
            return;
        }
        if let Some(event) = env.own_event() {
            self.own = self.own_fired(event);
        }
    }

    /// What the watch on our own node reported, as the machine keeps it.
    fn own_fired(&self, event: NodeEvent) -> Watched {
        match self.own {
            // Refused for good: nothing comes after.
            Watched::Refused => Watched::Refused,
            _ => Watched::Fired(event),
        }
    }

    /// An event of the watch on our own node: a deletion is the end of this attempt; anything
    /// else (someone wrote to it) means re-arming the watch and looking again.
    fn own_changed(&mut self, event: NodeEvent, env: &mut dyn Env, out: &mut Vec<Command>) {
        self.own = Watched::Unset;
        match event {
            NodeEvent::Deleted => self.deleted(self.own_path(), env, out),
            NodeEvent::Changed => {
                tracing::debug!(position = self.last_position, "list contenders");
                self.list(out);
            }
            NodeEvent::SessionEnded => self.fail(ended(env.ended().unwrap_or(LossReason::SessionExpired)), out),
            // Without a watch on our node the shortcut has nothing to stand on: list every time.
            NodeEvent::Refused => {
                self.own = Watched::Refused;
                tracing::debug!(position = self.last_position, "list contenders");
                self.list(out);
            }
        }
    }

    /// Whether our node is known to exist still, for the shortcut that proceeds without
    /// listing: its watch has not fired, and no reconnection happened since the request whose
    /// answer last showed it. If not, it has listed (or failed).
    fn still_ours(&mut self, env: &mut dyn Env, out: &mut Vec<Command>) -> bool {
        self.look_at_own(env);
        match self.own {
            Watched::Fired(event) => {
                self.own_changed(event, env, out);
                return false;
            }
            Watched::Refused => {
                tracing::debug!(position = self.last_position, "list contenders");
                self.list(out);
                return false;
            }
            Watched::Unset | Watched::Armed => {}
        }
        if env.reconnected() {
            tracing::debug!("the head left, but the connection changed since our node was seen: listing");
            tracing::debug!(position = self.last_position, "list contenders");
            self.list(out);
            return false;
        }
        true
    }

    /// Waits for the children watch, watching the node this attempt requires too.
    fn wait_for_children(&mut self, env: &mut dyn Env, out: &mut Vec<Command>) {
        if let Some((path, watched)) = &mut self.required {
            match *watched {
                Watched::Unset => {
                    *watched = Watched::Armed;
                    out.push(Command::WatchRequired { path: path.clone() });
                }
                Watched::Fired(event) => return self.required_changed(event, env, out),
                Watched::Armed | Watched::Refused => {}
            }
        }
        out.push(Command::AwaitChildren);
        self.phase = Phase::WaitingChildren;
    }

    /// An event of the watch on the node this attempt requires: its deletion fails the attempt.
    fn required_changed(&mut self, event: NodeEvent, env: &mut dyn Env, out: &mut Vec<Command>) {
        let Some((path, watched)) = &mut self.required else { unreachable!("only a required node is watched") };
        // Watched again on the next wait, should there be one.
        *watched = Watched::Unset;
        let path = path.clone();
        match event {
            NodeEvent::Deleted => self.deleted(path, env, out),
            // Someone wrote to it: the listing after this wake-up shows nothing new.
            NodeEvent::Changed => {
                tracing::debug!(position = self.last_position, "list contenders");
                self.list_watched(false, out);
            }
            // Only the semaphore's progress depends on this watch, not its safety (every lease
            // counts): wait without it.
            NodeEvent::Refused => {
                if let Some((_, watched)) = &mut self.required {
                    *watched = Watched::Refused;
                }
                tracing::debug!(position = self.last_position, "list contenders");
                self.list_watched(false, out);
            }
            NodeEvent::SessionEnded => self.fail(ended(env.ended().unwrap_or(LossReason::SessionExpired)), out),
        }
    }

    /// A watch saw `node` deleted: someone else deleted it — unless our own session expired,
    /// which deletes our nodes too and delivers their deletion before the expiry (a client
    /// frozen past the session timeout reads both when it wakes). While the session is proven
    /// alive the server cannot have expired it; otherwise a `sync` tells.
    fn deleted(&mut self, node: String, env: &mut dyn Env, out: &mut Vec<Command>) {
        if env.proven() {
            return self.fail(deleted(node), out);
        }
        self.send(Request::Sync { node: node.clone() }, Phase::ConfirmingDeletion { node }, out);
    }

    fn list(&mut self, out: &mut Vec<Command>) {
        self.children_watched = false;
        self.send(Request::List { stat: false, watch: false }, Phase::Listing, out);
    }

    fn list_watched(&mut self, recheck: bool, out: &mut Vec<Command>) {
        self.send(Request::List { stat: false, watch: true }, Phase::ListingWatched { recheck }, out);
    }

    fn send(&mut self, request: Request, phase: Phase, out: &mut Vec<Command>) {
        out.push(Command::Send(request));
        self.phase = phase;
    }

    fn fail(&mut self, err: Error, out: &mut Vec<Command>) {
        self.done(Err(err), out);
    }

    fn done(&mut self, outcome: Result<bool, Error>, out: &mut Vec<Command>) {
        out.push(Command::Done(outcome));
        self.phase = Phase::Done;
    }

    fn queue<'c>(&self, children: &'c [String]) -> Result<Queue<'c>, Error> {
        Queue::new(children).map_err(|WrappedChild(child)| Error::SequenceOverflow { path: self.dir.clone(), child })
    }

    fn position(&self, queue: &Queue<'_>) -> Result<usize, Error> {
        let Node::Created { name } = &self.node else {
            unreachable!("positions are looked up only after the create succeeded")
        };
        queue.position(name).ok_or_else(|| {
            tracing::warn!(node = %self.own_path(), "our node is gone from the queue: deleted by someone else");
            Error::Lost { node: self.own_path(), reason: LossReason::NodeDeleted }
        })
    }

    /// A second node with our prefix can only be a create of this attempt that the server ran
    /// after we had given it up for lost; one acquisition never keeps two nodes.
    fn remove_strays(&self, queue: &Queue<'_>, out: &mut Vec<Command>) {
        let Node::Created { name } = &self.node else { return };
        for stray in queue.contenders().iter().filter(|c| c.name.starts_with(&self.prefix) && c.name != name) {
            tracing::warn!(stray = stray.name, "deleting a duplicate node of this acquisition");
            out.push(Command::RemoveStray { path: format!("{}/{}", self.dir, stray.name) });
        }
    }
}

/// Deliberate defects, for the model checker's negative controls: a test switches one on for
/// its own thread and expects a counterexample.
#[cfg(test)]
pub(crate) mod mutation {
    use std::cell::Cell;

    /// A defect the checker must catch.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(crate) enum Mutation {
        /// Decide without looking at our node's watch once more (the phantom holder).
        NoSecondLookAtOwnNode,
        /// Tokens from the sequence alone, without the directory's epoch.
        TokenWithoutEpoch,
        /// Adopt a node carrying our prefix without asking whose it is.
        NoOwnerCheck,
        /// After a create's reply is lost, create again under a fresh prefix instead of
        /// looking for the first create by its prefix.
        FreshPrefixAfterLostReply,
        /// Take a wrapped (negative) sequence as a small one, sorting it first.
        WrappedSequenceAsSmall,
        /// Give up an attempt without deleting its node.
        WithdrawWithoutDelete,
        /// A reader watches the first writer ahead instead of the nearest.
        ReaderWatchesFirstWriter,
        /// A release whose delete was cut off, and whose retry found nothing, counts its own
        /// delete as the one that ran (the hole the chaos suite found).
        ProbablyOwnDelete,
    }

    thread_local! {
        static ACTIVE: Cell<Option<Mutation>> = const { Cell::new(None) };
    }

    /// Runs `f` with `mutation` on, on this thread.
    pub(crate) fn with<T>(mutation: Mutation, f: impl FnOnce() -> T) -> T {
        /// Switches the mutation off however `f` ends, a panic included.
        struct Off;
        impl Drop for Off {
            fn drop(&mut self) {
                ACTIVE.with(|active| active.set(None));
            }
        }
        ACTIVE.with(|active| active.set(Some(mutation)));
        let _off = Off;
        f()
    }

    pub(crate) fn is(mutation: Mutation) -> bool {
        ACTIVE.with(|active| active.get() == Some(mutation))
    }

    /// Under [`Mutation::WrappedSequenceAsSmall`], a negative sequence counts as 0.
    pub(crate) fn wrapped_as_small(sequence: i64) -> i64 {
        if is(Mutation::WrappedSequenceAsSmall) && sequence < 0 { 0 } else { sequence }
    }
}
#[cfg(test)]
use mutation::Mutation;

/// The token of our node: the directory's epoch (its `czxid`, which a recreated directory
/// exceeds) and the node's sequence.
fn token(epoch: u64, sequence: u32) -> FencingToken {
    #[cfg(test)]
    if mutation::is(Mutation::TokenWithoutEpoch) {
        return FencingToken::new(0, sequence);
    }
    FencingToken::new(epoch, sequence)
}

/// The error for an attempt whose node someone else deleted.
fn deleted(node: String) -> Error {
    tracing::warn!(%node, "deleted by someone else while waiting");
    Error::Lost { node, reason: LossReason::NodeDeleted }
}

/// The error for an attempt whose ZooKeeper session ended.
pub(crate) fn ended(reason: LossReason) -> Error {
    match reason {
        LossReason::SessionClosed => Error::SessionClosed,
        _ => Error::SessionExpired,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The world as the machine asks about it: a live session 7, proven alive.
    struct World {
        own_event: Option<NodeEvent>,
    }

    impl Env for World {
        fn proven(&self) -> bool {
            true
        }
        fn reconnected(&mut self) -> bool {
            false
        }
        fn own_event(&mut self) -> Option<NodeEvent> {
            self.own_event.take()
        }
        fn ended(&self) -> Option<LossReason> {
            None
        }
        fn session_id(&self) -> i64 {
            7
        }
        fn fresh_prefix(&mut self) -> String {
            "_c_fresh-".to_owned()
        }
    }

    const HEAD: &str = "_c_head-lock-0000000000";
    const OURS: &str = "_c_ours-lock-0000000001";

    /// An attempt queued right behind the head, waiting for it to leave.
    fn behind_the_head(world: &mut World) -> Attempt {
        let mut attempt = Attempt::new("/l", Role::Lock, false, None, "_c_ours-".to_owned());
        assert_eq!(attempt.start(), [Command::Send(Request::CreateAndList { path: "/l/_c_ours-lock-".into() })]);
        let listed = Ok((vec![HEAD.to_owned(), OURS.to_owned()], 5));
        let commands = attempt.step(Input::CreatedAndListed { created: Ok((7, 1)), listed }, world);
        let ahead = Command::WatchAhead { path: format!("/l/{HEAD}") };
        assert_eq!(commands, [Command::Queued { children: 2 }, Command::WatchOwn, ahead]);
        attempt
    }

    #[test]
    fn the_next_in_line_proceeds_when_the_head_leaves_without_listing() {
        let mut world = World { own_event: None };
        let mut attempt = behind_the_head(&mut world);
        let commands = attempt.step(Input::AheadFired(Ok(zk::EventType::NodeDeleted)), &mut world);
        assert_eq!(commands, [Command::Done(Ok(true))]);
        assert_eq!(attempt.granted().0, format!("/l/{OURS}"));
    }

    /// Our node's deletion, handed to the driver together with the head's: the phantom holder.
    #[test]
    fn a_waiter_whose_node_went_first_never_takes_the_shortcut() {
        let mut world = World { own_event: None };
        let mut attempt = behind_the_head(&mut world);
        world.own_event = Some(NodeEvent::Deleted);
        let commands = attempt.step(Input::AheadFired(Ok(zk::EventType::NodeDeleted)), &mut world);
        let lost = Error::Lost { node: format!("/l/{OURS}"), reason: LossReason::NodeDeleted };
        assert_eq!(commands, [Command::Done(Err(lost))]);
    }

    #[test]
    fn a_try_behind_a_holder_gives_up_and_cleans_up_by_name() {
        let mut attempt = Attempt::new("/l", Role::Lock, true, None, "_c_ours-".to_owned());
        attempt.start();
        let listed = Ok((vec![HEAD.to_owned(), OURS.to_owned()], 5));
        let commands =
            attempt.step(Input::CreatedAndListed { created: Ok((7, 1)), listed }, &mut World { own_event: None });
        assert_eq!(commands, [Command::Queued { children: 2 }, Command::Done(Ok(false))]);
        assert_eq!(attempt.cleanup_target(), Some(Target::Node(format!("/l/{OURS}"))));
    }

    #[test]
    fn a_lost_create_reply_adopts_our_node_and_never_another_sessions() {
        let mut world = World { own_event: None };
        let mut attempt = Attempt::new("/l", Role::Lock, false, None, "_c_ours-".to_owned());
        attempt.start();
        let commands = attempt.step(
            Input::CreatedAndListed { created: Err(zk::Error::ConnectionLoss), listed: Err(zk::Error::ConnectionLoss) },
            &mut world,
        );
        assert_eq!(commands, [Command::Send(Request::SyncedList)]);
        assert_eq!(attempt.cleanup_target(), Some(Target::Prefix { dir: "/l".into(), prefix: "_c_ours-".into() }));
        // Another session's node carries our prefix (CURATOR-604): never adopted.
        let commands = attempt.step(Input::SyncedListed(Ok(Some((vec![OURS.to_owned()], 5)))), &mut world);
        assert_eq!(commands, [Command::Send(Request::Owner { path: format!("/l/{OURS}") })]);
        let commands = attempt.step(Input::OwnerIs(Ok(Some(8))), &mut world);
        let fresh = Command::Send(Request::CreateAndList { path: "/l/_c_fresh-lock-".into() });
        assert_eq!(commands, [fresh]);
        // Ours this time.
        attempt.step(
            Input::CreatedAndListed { created: Err(zk::Error::ConnectionLoss), listed: Err(zk::Error::ConnectionLoss) },
            &mut world,
        );
        let ours = "_c_fresh-lock-0000000002".to_owned();
        attempt.step(Input::SyncedListed(Ok(Some((vec![OURS.to_owned(), ours.clone()], 5)))), &mut world);
        let commands = attempt.step(Input::OwnerIs(Ok(Some(7))), &mut world);
        assert_eq!(commands[0], Command::Queued { children: 2 });
        assert_eq!(attempt.granted().0, format!("/l/{ours}"));
    }
}
