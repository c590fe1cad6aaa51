//! Looking at a recipe path from outside: who holds it and who waits, in order, for any recipe
//! and for Curator's and kazoo's node names alike — what `zk-recipes status` prints, and what a
//! dashboard or an operator's script can read.

use std::time::{Duration, SystemTime};

use zookeeper_client as zk;

use crate::error::Error;
use crate::path::validate_recipe_path;
use crate::queue::children::{Queue, WrappedChild};
use crate::retry;
use crate::session::Session;
use crate::token::FencingToken;

/// What a recipe path looks like at one moment: see [`inspect`].
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The recipe path inspected.
    pub path: String,
    /// Whether it is laid out as a [`Semaphore`](crate::Semaphore) (`leases/` and `locks/`).
    pub semaphore: bool,
    /// Who holds: the head of a mutex, latch or selector queue; the readers ahead of the first
    /// writer, or that writer; the leases of a semaphore.
    pub holders: Vec<Participant>,
    /// Who waits, in queue order. For a semaphore: the queue of its internal mutex; its head is
    /// taking a lease at this moment, and is shown by its lease node once it has one (for the
    /// few milliseconds between being granted a lease and leaving the internal mutex, a holder
    /// shows as waiting).
    pub waiting: Vec<Participant>,
}

/// One contender node, as [`inspect`] found it.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Participant {
    /// The node's full path.
    pub node: String,
    /// Which recipe and dialect wrote it, by its name.
    pub kind: NodeKind,
    /// The session that owns it (`ephemeralOwner`; 0 for a persistent node).
    pub session_id: i64,
    /// When it was created, by the server's clock.
    pub created: SystemTime,
    /// The token its holder has (or will have): the directory's `czxid` and the node's sequence.
    pub token: FencingToken,
    /// The node's data: a participant id, a host name, Curator's default IP address, …
    pub data: Vec<u8>,
}

/// The kinds of contender node, by the marker in front of the sequence number.
pub use crate::queue::children::Kind as NodeKind;

/// Reads who holds `path` and who waits, whatever recipe (and whichever library) uses it.
///
/// A consistent view per directory: one `getChildren` and then every node's data, all in one
/// flight. Nodes that vanish in between are left out. A path that does not exist is empty.
///
/// ```no_run
/// # async fn example() -> Result<(), zk_recipes::Error> {
/// let session = zk_recipes::Session::connect("127.0.0.1:2181").await?;
/// let snapshot = zk_recipes::inspect(&session, "/locks/nightly").await?;
/// for holder in &snapshot.holders {
///     println!("held by {} (session {:#x}), token {}", holder.node, holder.session_id, holder.token);
/// }
/// println!("{} waiting", snapshot.waiting.len());
/// # Ok(()) }
/// ```
///
/// # Errors
///
/// - [`Error::InvalidPath`] for a path no recipe could use;
/// - [`Error::SequenceOverflow`] if a directory's sequence counter wrapped;
/// - [`Error::SessionExpired`], [`Error::SessionClosed`] or [`Error::Unreachable`] if no
///   session is available; [`Error::ZooKeeper`] (or [`Error::NoAuth`]) if reading fails.
///
/// # Cancel safety
///
/// Cancel safe: it only reads.
pub async fn inspect(session: &Session, path: &str) -> Result<Snapshot, Error> {
    validate_recipe_path(path)?;
    let (client, _) = session.current().await?;
    let leases = format!("{path}/leases");
    if let Some(leases) = participants(&client, &leases).await? {
        // A semaphore's own rules, not those of its nodes' kinds: every lease holds a permit, and
        // every contender for its internal mutex waits for one.
        let mut holders: Vec<Participant> = leases.into_iter().map(|(lease, _)| lease).collect();
        let gate = participants(&client, &format!("{path}/locks")).await?.unwrap_or_default();
        let mut waiting: Vec<Participant> = gate.into_iter().map(|(contender, _)| contender).collect();
        // The head of the internal mutex's queue creates its lease node before it knows
        // whether a permit is free: that node is its place in line, not a permit held.
        if let Some(head) = waiting.first()
            && let Some(pending) = holders.iter().rposition(|lease| lease.session_id == head.session_id)
        {
            waiting[0] = holders.remove(pending);
        }
        return Ok(Snapshot { path: path.to_owned(), semaphore: true, holders, waiting });
    }
    let mut holders = Vec::new();
    let mut waiting = Vec::new();
    for (participant, holds) in participants(&client, path).await?.unwrap_or_default() {
        if holds { holders.push(participant) } else { waiting.push(participant) }
    }
    Ok(Snapshot { path: path.to_owned(), semaphore: false, holders, waiting })
}

/// The contenders of `dir` in queue order, each with whether it holds by the rule of its node's
/// kind — the rule the recipes wait by — or `None` if `dir` does not exist.
async fn participants(client: &zk::Client, dir: &str) -> Result<Option<Vec<(Participant, bool)>>, Error> {
    let (children, stat) = match retry::resend(|| client.get_children(dir)).await {
        Ok(listed) => listed,
        Err(zk::Error::NoNode) => return Ok(None),
        Err(err) => return Err(Error::zk(dir, err)),
    };
    let mut queue =
        Queue::new(&children).map_err(|WrappedChild(child)| Error::SequenceOverflow { path: dir.to_owned(), child })?;
    let nodes: Vec<String> = queue.contenders().iter().map(|c| format!("{dir}/{}", c.name)).collect();
    // All reads go out at once; the server answers them in order.
    let reads = futures_util::future::join_all(nodes.iter().map(|node| client.get_data(node))).await;
    let mut listed = Vec::with_capacity(nodes.len());
    for ((contender, node), read) in queue.contenders().iter().zip(nodes).zip(reads) {
        match read {
            Ok((data, node_stat)) => listed.push(Some(Participant {
                kind: contender.kind,
                session_id: node_stat.ephemeral_owner,
                created: SystemTime::UNIX_EPOCH + Duration::from_millis(node_stat.ctime.max(0) as u64),
                token: FencingToken::new(stat.czxid as u64, contender.sequence),
                data,
                node,
            })),
            Err(zk::Error::NoNode) => listed.push(None),
            Err(err) => return Err(Error::zk(&node, err)),
        }
    }
    // A node gone since the listing is out of the line: whoever queued behind it moved up.
    let mut found = listed.iter().map(Option::is_some);
    queue.retain(|_| found.next() == Some(true));
    Ok(Some(listed.into_iter().flatten().zip(queue.holding()).collect()))
}
