//! The interface the checker drives every client's lock contender through: the engine's
//! state machine and the models of other libraries' recipes ([`super::peers`]) alike.

use super::{Path, Reply, Request, RequestId, WatchedEvent, ZkError};

/// One client's contender, driven by the checker: it never does I/O; it returns the requests to
/// send, which the checker applies in order on the contender's own session.
///
/// Each contender numbers its requests itself, increasing; the server keys outboxes by
/// session, so the ids need only be unique within one contender.
pub(crate) trait Contender: Clone + Eq + std::hash::Hash + std::fmt::Debug {
    /// Starts acquiring: the first requests.
    fn start(&mut self) -> Vec<(RequestId, Request)>;
    /// A reply arrived (or the client failed the request: `Err(ConnectionLoss)` after a
    /// disconnect).
    fn on_reply(&mut self, id: RequestId, reply: Result<Reply, ZkError>) -> Vec<(RequestId, Request)>;
    /// A watch event arrived.
    fn on_event(&mut self, event: &WatchedEvent) -> Vec<(RequestId, Request)>;
    /// The holder releases (only when [`Contender::status`] is [`Status::Holding`]).
    fn release(&mut self) -> Vec<(RequestId, Request)>;
    /// What it believes now.
    fn status(&self) -> Status;
}

/// What a contender believes about the lock.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Status {
    /// Not started.
    Idle,
    /// Acquiring: creating its node, or queued behind others.
    Waiting,
    /// It believes it holds the lock, through its node `node` (a full path).
    Holding { node: Path },
    /// It let go; a delete of its node may still be on the way.
    Released,
    /// It gave up acquiring.
    Failed,
}
