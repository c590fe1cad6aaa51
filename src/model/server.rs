//! The server: the node tree, sessions with their watches and outboxes, and the zxid.

use std::collections::{BTreeMap, BTreeSet};

use super::{
    Delivery, EventType, Mode, Op, OpResult, Path, Reply, Request, RequestId, SessionId, SessionState, Stat,
    WatchedEvent, ZkError,
};

/// One linearizable ZooKeeper server; see the module docs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Server {
    /// The zxid of the last transaction. Every write request takes the next one, also when it
    /// fails (ZooKeeper logs an error transaction); all ops of a multi share one.
    zxid: i64,
    nodes: BTreeMap<Path, Node>,
    /// Never removed, so the next id is `len + 1`.
    sessions: BTreeMap<SessionId, Session>,
    /// `znode.container.maxNeverUsedIntervalMs` set (default 0 = off): see [`Server::reapable`].
    reap_never_used: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Node {
    data: Vec<u8>,
    czxid: i64,
    mzxid: i64,
    pzxid: i64,
    version: i32,
    /// ZooKeeper's internal cversion: the number of children ever created, wrapping as a Java
    /// int. It names the next sequential child; child deletes leave it alone.
    cversion: i32,
    children: BTreeSet<String>,
    mode: Mode,
    /// The owning session of an ephemeral node, else 0.
    owner: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Session {
    state: SessionState,
    /// Paths with an exists or getData watch. A set: ZooKeeper keeps one watch per connection
    /// and path, so two registrations fire once.
    data_watches: BTreeSet<Path>,
    child_watches: BTreeSet<Path>,
    outbox: Vec<Delivery>,
}

impl Default for Server {
    fn default() -> Self {
        Self::new()
    }
}

impl Server {
    /// A server holding only `/`.
    pub(crate) fn new() -> Self {
        let root = Node {
            data: Vec::new(),
            czxid: 0,
            mzxid: 0,
            pzxid: 0,
            version: 0,
            cversion: 0,
            children: BTreeSet::new(),
            mode: Mode::Persistent,
            owner: 0,
        };
        Self {
            zxid: 0,
            nodes: BTreeMap::from([("/".to_owned(), root)]),
            sessions: BTreeMap::new(),
            reap_never_used: false,
        }
    }

    /// Also reap containers that never had a child (ZooKeeper does so after
    /// `znode.container.maxNeverUsedIntervalMs`; time is not modelled, so at any step).
    pub(crate) fn reaping_never_used_containers(mut self) -> Self {
        self.reap_never_used = true;
        self
    }

    /// The zxid of the last transaction.
    pub(crate) fn zxid(&self) -> i64 {
        self.zxid
    }

    /// The checker sets a node's creation counter, e.g. near `i32::MAX` to make names wrap.
    pub(crate) fn set_cversion(&mut self, path: &str, cversion: i32) {
        self.nodes.get_mut(path).expect("set_cversion of a missing node").cversion = cversion;
    }

    /// A node's stat, if it exists.
    pub(crate) fn stat(&self, path: &str) -> Option<Stat> {
        self.nodes.get(path).map(Node::stat)
    }

    /// A node's children, sorted; empty if it does not exist.
    pub(crate) fn children(&self, path: &str) -> Vec<String> {
        self.nodes.get(path).map(|node| node.children.iter().cloned().collect()).unwrap_or_default()
    }

    // Sessions.

    /// Opens a session (a `createSession` transaction).
    pub(crate) fn open_session(&mut self) -> SessionId {
        self.zxid += 1;
        let id = SessionId(self.sessions.len() as u64 + 1);
        let session = Session {
            state: SessionState::Live,
            data_watches: BTreeSet::new(),
            child_watches: BTreeSet::new(),
            outbox: Vec::new(),
        };
        self.sessions.insert(id, session);
        id
    }

    pub(crate) fn session_state(&self, session: SessionId) -> SessionState {
        self.session(session).state
    }

    /// The session times out: its ephemerals go, firing watches, and it can do nothing more.
    pub(crate) fn expire(&mut self, session: SessionId) {
        self.end(session, SessionState::Expired);
    }

    /// The client closes its session: the same deletions as on expiry.
    pub(crate) fn close_session(&mut self, session: SessionId) {
        self.end(session, SessionState::Closed);
    }

    fn end(&mut self, session: SessionId, state: SessionState) {
        if self.session(session).state != SessionState::Live {
            return;
        }
        // One `closeSession` transaction deletes all of them.
        self.zxid += 1;
        let ephemerals: Vec<Path> =
            self.nodes.iter().filter(|(_, node)| node.owner == session.0).map(|(path, _)| path.clone()).collect();
        for path in ephemerals {
            self.remove(&path);
        }
        // The session's own watches fire too (into its closing connection, before ZooKeeper
        // closes it; the checker may deliver or drop those), then they are gone.
        let ended = self.session_mut(session);
        ended.state = state;
        ended.data_watches.clear();
        ended.child_watches.clear();
    }

    // The outbox.

    /// What the server has sent the session and the client has not received yet, oldest first.
    pub(crate) fn outbox(&self, session: SessionId) -> &[Delivery] {
        &self.session(session).outbox
    }

    /// The client receives the oldest delivery.
    pub(crate) fn deliver(&mut self, session: SessionId) -> Option<Delivery> {
        let outbox = &mut self.session_mut(session).outbox;
        (!outbox.is_empty()).then(|| outbox.remove(0))
    }

    /// The reply to `request` is lost (its effect stays). False if it was not pending.
    pub(crate) fn drop_reply(&mut self, session: SessionId, request: RequestId) -> bool {
        let outbox = &mut self.session_mut(session).outbox;
        let before = outbox.len();
        outbox.retain(|delivery| !matches!(delivery, Delivery::Reply { request: r, .. } if *r == request));
        outbox.len() != before
    }

    /// The connection drops, the session lives on: the pending replies are lost (returned, in
    /// order, for the client to fail with [`ZkError::ConnectionLoss`], not knowing whether the
    /// requests took effect); events and watches stay.
    pub(crate) fn disconnect(&mut self, session: SessionId) -> Vec<RequestId> {
        let mut lost = Vec::new();
        self.session_mut(session).outbox.retain(|delivery| match delivery {
            Delivery::Reply { request, .. } => {
                lost.push(*request);
                false
            }
            Delivery::Event(_) => true,
        });
        lost
    }

    // Requests.

    /// Applies one request of `session` atomically and queues its reply (after any events it
    /// fired). The reply is also returned, for the checker's convenience.
    pub(crate) fn apply(&mut self, session: SessionId, request: RequestId, req: Request) -> Result<Reply, ZkError> {
        let result = if self.session(session).state == SessionState::Live {
            self.execute(session, req)
        } else {
            Err(ZkError::SessionExpired)
        };
        self.session_mut(session).outbox.push(Delivery::Reply { request, result: result.clone() });
        result
    }

    fn execute(&mut self, session: SessionId, req: Request) -> Result<Reply, ZkError> {
        match req {
            Request::Create { path, data, mode, sequential } => {
                self.zxid += 1;
                let (path, stat) = self.create(session, &path, data, mode, sequential)?;
                Ok(Reply::Created { path, stat })
            }
            Request::Delete { path, version } => {
                self.zxid += 1;
                self.delete(&path, version).map(|()| Reply::Deleted)
            }
            Request::SetData { path, data, version } => {
                self.zxid += 1;
                let node = self.nodes.get_mut(&path).ok_or(ZkError::NoNode)?;
                check_version(node, version)?;
                node.data = data;
                node.version = node.version.wrapping_add(1);
                node.mzxid = self.zxid;
                let stat = node.stat();
                self.fire_data(&path, EventType::DataChanged);
                Ok(Reply::DataSet(stat))
            }
            Request::Exists { path, watch } => {
                // `DataTree.statNode` adds the watch before looking the node up: an exists watch
                // on a missing node is how a client waits for its creation.
                if watch {
                    self.session_mut(session).data_watches.insert(path.clone());
                }
                Ok(Reply::Exists(self.stat(&path)))
            }
            Request::GetData { path, watch } => {
                // Unlike exists, getData on a missing node fails and sets no watch.
                let node = self.nodes.get(&path).ok_or(ZkError::NoNode)?;
                let reply = Reply::Data { data: node.data.clone(), stat: node.stat() };
                if watch {
                    self.session_mut(session).data_watches.insert(path);
                }
                Ok(reply)
            }
            Request::GetChildren { path, watch } => {
                let node = self.nodes.get(&path).ok_or(ZkError::NoNode)?;
                let reply = Reply::Children { names: node.children.iter().cloned().collect(), stat: node.stat() };
                if watch {
                    self.session_mut(session).child_watches.insert(path);
                }
                Ok(reply)
            }
            // One server is always up to date.
            Request::Sync { path } => Ok(Reply::Synced { path }),
            Request::Multi(ops) => {
                self.zxid += 1;
                // Apply to a copy, keep it only if every op succeeds: no effect and no event
                // otherwise. Later ops see earlier ones (a create then a create beneath it).
                let mut scratch = self.clone();
                let mut results = Vec::with_capacity(ops.len());
                for op in ops {
                    results.push(match op {
                        Op::Create { path, data, mode, sequential } => {
                            let (path, stat) = scratch.create(session, &path, data, mode, sequential)?;
                            OpResult::Created { path, stat }
                        }
                        Op::Delete { path, version } => scratch.delete(&path, version).map(|()| OpResult::Deleted)?,
                        Op::Check { path, version } => {
                            check_version(scratch.nodes.get(&path).ok_or(ZkError::NoNode)?, version)?;
                            OpResult::Checked
                        }
                    });
                }
                *self = scratch;
                Ok(Reply::Multi(results))
            }
        }
    }

    /// `PrepRequestProcessor.pRequest2TxnCreate`, with its order of checks, at `self.zxid`.
    fn create(
        &mut self,
        session: SessionId,
        path: &str,
        data: Vec<u8>,
        mode: Mode,
        sequential: bool,
    ) -> Result<(Path, Stat), ZkError> {
        let slash = path.rfind('/').ok_or(ZkError::BadArguments)?;
        let parent_path = if slash == 0 { "/" } else { &path[..slash] };
        let parent = self.nodes.get(parent_path).ok_or(ZkError::NoNode)?;
        // The suffix is the parent's counter before this create, as a signed 32-bit `%010d`:
        // `0000000042`, and once it wrapped `-2147483648` (Rust pads after the sign, as Java).
        let path = if sequential { format!("{path}{:010}", parent.cversion) } else { path.to_owned() };
        if !valid(&path) {
            return Err(ZkError::BadArguments);
        }
        if self.nodes.contains_key(&path) {
            return Err(ZkError::NodeExists);
        }
        if parent.mode == Mode::Ephemeral {
            return Err(ZkError::NoChildrenForEphemerals);
        }
        let zxid = self.zxid;
        let parent = self.nodes.get_mut(parent_path).expect("looked up above");
        parent.cversion = parent.cversion.wrapping_add(1);
        parent.pzxid = zxid;
        parent.children.insert(path[slash + 1..].to_owned());
        let owner = if mode == Mode::Ephemeral { session.0 } else { 0 };
        let node = Node {
            data,
            czxid: zxid,
            mzxid: zxid,
            pzxid: zxid,
            version: 0,
            cversion: 0,
            children: BTreeSet::new(),
            mode,
            owner,
        };
        let stat = node.stat();
        self.nodes.insert(path.clone(), node);
        self.fire_data(&path, EventType::Created);
        self.fire_children(parent_path, EventType::ChildrenChanged, &BTreeSet::new());
        Ok((path, stat))
    }

    /// A client's delete, checks in ZooKeeper's order: NoNode, BadVersion, NotEmpty.
    fn delete(&mut self, path: &str, version: Option<i32>) -> Result<(), ZkError> {
        if path == "/" || !valid(path) {
            return Err(ZkError::BadArguments);
        }
        let node = self.nodes.get(path).ok_or(ZkError::NoNode)?;
        check_version(node, version)?;
        if !node.children.is_empty() {
            return Err(ZkError::NotEmpty);
        }
        self.remove(path);
        Ok(())
    }

    /// Removes a childless node at `self.zxid` and fires what `DataTree.deleteNode` fires: the
    /// node's data watches, its child watches (NodeDeleted too, one event per session that had
    /// both), the parent's child watches. The parent's creation counter stays; its pzxid moves
    /// (its reported cversion grows, as `numChildren` shrinks).
    fn remove(&mut self, path: &str) {
        let node = self.nodes.remove(path).expect("removing a missing node");
        debug_assert!(node.children.is_empty());
        let slash = path.rfind('/').expect("an absolute path");
        let parent_path = if slash == 0 { "/" } else { &path[..slash] };
        let parent = self.nodes.get_mut(parent_path).expect("a node's parent exists");
        parent.children.remove(&path[slash + 1..]);
        parent.pzxid = self.zxid;
        let notified = self.fire_data(path, EventType::Deleted);
        self.fire_children(path, EventType::Deleted, &notified);
        self.fire_children(parent_path, EventType::ChildrenChanged, &BTreeSet::new());
    }

    /// Fires (and so removes) every session's data watch on `path`; returns who was notified.
    fn fire_data(&mut self, path: &str, kind: EventType) -> BTreeSet<SessionId> {
        let mut notified = BTreeSet::new();
        for (id, session) in &mut self.sessions {
            if session.data_watches.remove(path) {
                session.outbox.push(Delivery::Event(WatchedEvent { kind, path: path.to_owned() }));
                notified.insert(*id);
            }
        }
        notified
    }

    /// Fires every session's child watch on `path`; those in `already` lose theirs silently.
    fn fire_children(&mut self, path: &str, kind: EventType, already: &BTreeSet<SessionId>) {
        for (id, session) in &mut self.sessions {
            if session.child_watches.remove(path) && !already.contains(id) {
                session.outbox.push(Delivery::Event(WatchedEvent { kind, path: path.to_owned() }));
            }
        }
    }

    // The checker's other moves.

    /// Another client deletes `path` (any version), firing watches like any delete.
    pub(crate) fn outside_delete(&mut self, path: &str) -> Result<(), ZkError> {
        self.zxid += 1;
        self.delete(path, None)
    }

    /// Containers the server may delete at this step. `ContainerManager.getCandidates` takes
    /// an empty container whose creation counter is `> 0`, i.e. that had a child (a fresh one
    /// is kept so its creator can add the first child), and a never-used one only when
    /// `maxNeverUsedIntervalMs` is set. A counter that wrapped negative is "never used" too.
    pub(crate) fn reapable(&self) -> Vec<Path> {
        self.nodes
            .iter()
            .filter(|(_, node)| {
                node.mode == Mode::Container && node.children.is_empty() && (node.cversion > 0 || self.reap_never_used)
            })
            .map(|(path, _)| path.clone())
            .collect()
    }

    /// The server deletes a reapable container (a `deleteContainer` transaction), firing
    /// watches like a delete. Panics if `path` is not in [`Server::reapable`].
    pub(crate) fn reap(&mut self, path: &str) {
        assert!(self.reapable().iter().any(|p| p == path), "{path} is not reapable");
        self.zxid += 1;
        self.remove(path);
    }

    fn session(&self, id: SessionId) -> &Session {
        self.sessions.get(&id).expect("an opened session")
    }

    fn session_mut(&mut self, id: SessionId) -> &mut Session {
        self.sessions.get_mut(&id).expect("an opened session")
    }
}

impl Node {
    fn stat(&self) -> Stat {
        let num_children = self.children.len() as i32;
        Stat {
            czxid: self.czxid,
            mzxid: self.mzxid,
            pzxid: self.pzxid,
            version: self.version,
            // `DataNode.copyStat`: "count of changes" semantics, from the creation counter.
            cversion: self.cversion.wrapping_mul(2).wrapping_sub(num_children),
            ephemeral_owner: self.owner,
            num_children,
        }
    }
}

fn check_version(node: &Node, expected: Option<i32>) -> Result<(), ZkError> {
    match expected {
        Some(version) if version != node.version => Err(ZkError::BadVersion),
        _ => Ok(()),
    }
}

/// ZooKeeper's `PathUtils.validatePath`, as far as the model meets it: absolute, no empty,
/// `.` or `..` component, no trailing slash, no NUL.
fn valid(path: &str) -> bool {
    path == "/"
        || (path.starts_with('/')
            && !path.contains('\0')
            && path[1..].split('/').all(|part| !part.is_empty() && part != "." && part != ".."))
}
