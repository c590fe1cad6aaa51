//! A model of one ZooKeeper 3.8 server as the queue protocol sees it, for model checking.
//!
//! [`Server`] is a plain value (`Clone + Eq + Hash + Debug`, ordered maps only), so a
//! breadth-first checker can explore every interleaving of a few contenders and deduplicate the
//! states it reaches. Every method applies one step atomically; the checker chooses the order.
//! Facts about ZooKeeper cited here are from `release-3.8.0-1` (`PrepRequestProcessor`,
//! `DataTree`, `DataNode`, `ContainerManager`) and `shared/research/protocols.md` §1.
//!
//! # What the server sends, and in what order
//!
//! ZooKeeper sends one session its replies and watch events over one TCP connection, in order.
//! Each session therefore has one FIFO outbox of [`Delivery`]s: a reply to the request the
//! checker named with a [`RequestId`], or a [`WatchedEvent`]. A watch fired by a request is
//! queued before that request's reply (the server triggers watches while applying the
//! transaction, before it answers), so a client sees the event before the new state.
//!
//! # Faults, expressed by the checker
//!
//! - A request lost before it arrives: just never [`Server::apply`] it.
//! - A reply lost after the effect: apply, then [`Server::drop_reply`].
//! - A lost connection, the session surviving: [`Server::disconnect`] drops every pending reply
//!   (the client fails those requests with `ConnectionLoss`) and keeps the events. Watches are
//!   per session and survive; an event that fired while the client was away stays queued and
//!   is delivered once it is back. (ZooKeeper really loses those events with the connection and
//!   the client's `setWatches` on reconnect makes the server report changes since the last
//!   zxid the client saw: the event may then come as a different type, e.g. NodeDataChanged for
//!   a node deleted and recreated, or not at all when the node is back in the watched state,
//!   the watch staying armed. Not modelled: a recipe must re-read on any event anyway.)
//! - Session expiry: [`Server::expire`], when the checker decides the timeout has passed.
//!
//! # Clients
//!
//! The checker drives every client through one [`Contender`] interface: it hands each reply and
//! event to the session's contender and applies the requests it returns. `peers` models the
//! other libraries' locks (Curator's `InterProcessMutex`, kazoo's `Lock`) that way.
//!
//! # Chosen not to model
//!
//! ACLs, quotas, TTL nodes, persistent and recursive watches, `multiRead`, the `/zookeeper`
//! subtree, time, several servers (so `sync` only answers), and the client library (it fans one
//! event out to all its watchers of that path and turns connection states into events).
//! Children are listed sorted; ZooKeeper lists them in hash order, so nothing may rely on it.
//! An ending session's ephemerals are deleted in path order in one transaction (ZooKeeper:
//! one transaction too, in hash-set order).

mod contender;
mod engine;
mod explore;
mod peers;
#[cfg(test)]
mod peers_tests;
mod server;
#[cfg(test)]
mod tests;

pub(crate) use contender::{Contender, Status};
pub(crate) use server::Server;

/// An absolute znode path, `/` separated.
pub(crate) type Path = String;

/// A session, as ZooKeeper reports it in `ephemeralOwner` (never 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct SessionId(pub(crate) u64);

/// The checker's name for one request of a session, echoed in its reply (ZooKeeper's xid).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct RequestId(pub(crate) u32);

/// How a created node lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Mode {
    Persistent,
    /// Deleted when its session ends; cannot have children.
    Ephemeral,
    /// Persistent, but the server deletes it once it is empty again (see [`Server::reapable`]).
    Container,
}

/// A request a session sends.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Request {
    /// A sequential create appends the parent's creation counter as `%010d` to `path`.
    Create {
        path: Path,
        data: Vec<u8>,
        mode: Mode,
        sequential: bool,
    },
    /// `version: None` deletes any version (ZooKeeper's -1).
    Delete {
        path: Path,
        version: Option<i32>,
    },
    SetData {
        path: Path,
        data: Vec<u8>,
        version: Option<i32>,
    },
    /// Answers `None` for a missing node, and then too sets the watch (it fires on creation).
    Exists {
        path: Path,
        watch: bool,
    },
    GetData {
        path: Path,
        watch: bool,
    },
    GetChildren {
        path: Path,
        watch: bool,
    },
    Sync {
        path: Path,
    },
    /// All or nothing; fails with the first failing op's error.
    Multi(Vec<Op>),
}

/// One operation of a [`Request::Multi`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Op {
    Create {
        path: Path,
        data: Vec<u8>,
        mode: Mode,
        sequential: bool,
    },
    Delete {
        path: Path,
        version: Option<i32>,
    },
    /// Fails unless the node exists (with this data version, if given).
    Check {
        path: Path,
        version: Option<i32>,
    },
}

/// A successful answer.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Reply {
    Created {
        path: Path,
        stat: Stat,
    },
    Deleted,
    DataSet(Stat),
    Exists(Option<Stat>),
    Data {
        data: Vec<u8>,
        stat: Stat,
    },
    /// The children's names and the parent's own stat.
    Children {
        names: Vec<String>,
        stat: Stat,
    },
    Synced {
        path: Path,
    },
    Multi(Vec<OpResult>),
}

/// What one op of a successful multi did.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum OpResult {
    Created { path: Path, stat: Stat },
    Deleted,
    Checked,
}

/// The ZooKeeper error codes the queue protocol meets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum ZkError {
    NoNode,
    NodeExists,
    NotEmpty,
    BadVersion,
    NoChildrenForEphemerals,
    SessionExpired,
    /// An invalid path, or deleting `/`.
    BadArguments,
    /// Never sent by the server: the client's own failure of a request whose reply was lost
    /// with the connection (see [`Server::disconnect`]); whether it took effect is unknown.
    ConnectionLoss,
}

/// A node's metadata as a client sees it (`org.apache.zookeeper.data.Stat`, less times, ACL
/// version and data length).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Stat {
    pub(crate) czxid: i64,
    pub(crate) mzxid: i64,
    /// The zxid of the last child create or delete.
    pub(crate) pzxid: i64,
    /// The data version.
    pub(crate) version: i32,
    /// Child changes (creates + deletes) of this incarnation: ZooKeeper reports its creation
    /// counter `c` as `2c - numChildren`, so this is not the next sequence number.
    pub(crate) cversion: i32,
    /// The owning session of an ephemeral node, else 0 (also for containers).
    pub(crate) ephemeral_owner: u64,
    pub(crate) num_children: i32,
}

/// What a watch reports: ZooKeeper's `NodeCreated`, `NodeDeleted`, `NodeDataChanged`,
/// `NodeChildrenChanged`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum EventType {
    Created,
    Deleted,
    DataChanged,
    ChildrenChanged,
}

/// A fired one-shot watch.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct WatchedEvent {
    pub(crate) kind: EventType,
    pub(crate) path: Path,
}

/// One item of a session's outbox.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Delivery {
    Reply { request: RequestId, result: Result<Reply, ZkError> },
    Event(WatchedEvent),
}

/// Whether a session can still act.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum SessionState {
    Live,
    Expired,
    Closed,
}
