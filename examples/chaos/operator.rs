//! The operator: a plain ZooKeeper client of the chaos process that deletes a random contender
//! node now and then — one that waits or one that holds — as someone removing what
//! `zk-recipes status` showed as stuck would. Every deletion goes into the recipe's ledger,
//! which tells from them whether a holder was granted with a node that was gone.
//!
//! A deletion proves that the node waited when it goes in one transaction with a check that a
//! node it waits behind exists: a node blocked at that moment had never been let through (a
//! queue only ever lets more through: nodes ahead of it can only go), so it must never hold.
//! A node with nothing ahead of it that blocks it is deleted plainly: it may hold, or be about
//! to, and its holder may well find it gone right after the grant.

use std::ops::Range;
use std::time::Duration;

use rand::RngExt;
use rand::rngs::StdRng;
use tokio::sync::watch;
use zk_recipes::zk;

use crate::contender::Kind;
use crate::faults::Target;
use crate::store::Deletion;

/// Deletes a random contender node every `pace` (milliseconds) until `done` turns true.
pub async fn run(target: &Target<'_>, pace: Range<u64>, rng: &mut StdRng, mut done: watch::Receiver<bool>) {
    loop {
        let pause = Duration::from_millis(rng.random_range(pace.clone()));
        tokio::select! {
            _ = done.wait_for(|&done| done) => return,
            () = tokio::time::sleep(pause) => {}
        }
        let kind = Kind::ALL[rng.random_range(0..Kind::ALL.len())];
        let dirs = kind.dirs(target.path(kind));
        let dir = &dirs[rng.random_range(0..dirs.len())];
        delete_one(target, kind, dir, rng).await;
    }
}

/// What came of a delete.
enum Outcome {
    Deleted,
    /// Refused, so nothing was applied: the node or the one it waited behind was gone.
    Nothing,
    /// No answer in time: it may have been applied, or may be yet.
    Unknown,
}

async fn delete_one(target: &Target<'_>, kind: Kind, dir: &str, rng: &mut StdRng) {
    // The operator's member may be down or cut off: no request waits long.
    let bound = target.session_timeout;
    let Ok(Ok(client)) = tokio::time::timeout(bound, target.observer.client()).await else { return };
    let Ok(Ok(children)) = tokio::time::timeout(bound, client.list_children(dir)).await else { return };
    let queue = queue(&children);
    if queue.is_empty() {
        return;
    }
    let i = rng.random_range(0..queue.len());
    let node = format!("{dir}/{}", queue[i]);
    let blocker = blocker(kind, dir, &queue, i).map(|b| format!("{dir}/{b}"));
    let delete = async {
        match &blocker {
            Some(blocker) => delete_behind(&client, blocker, &node).await,
            None => match client.delete(&node, None).await {
                Ok(()) => Outcome::Deleted,
                Err(zk::Error::NoNode) => Outcome::Nothing,
                Err(_) => Outcome::Unknown,
            },
        }
    };
    let outcome = tokio::time::timeout(bound, delete).await.unwrap_or(Outcome::Unknown);
    let deletion = match outcome {
        Outcome::Deleted => Deletion { waiting: blocker.is_some(), confirmed: true },
        Outcome::Unknown => Deletion { waiting: false, confirmed: false },
        Outcome::Nothing => return,
    };
    target.store(kind).ledger().deleted(node, deletion);
}

/// Deletes `node` in one transaction with a check that `blocker` exists.
async fn delete_behind(client: &zk::Client, blocker: &str, node: &str) -> Outcome {
    let Ok(mut writer) = client.new_check_writer(blocker, None) else { return Outcome::Nothing };
    if writer.add_delete(node, None).is_err() {
        return Outcome::Nothing;
    }
    match writer.commit().await {
        Ok(_) => Outcome::Deleted,
        Err(zk::CheckWriteError::CheckFailed { .. } | zk::CheckWriteError::OperationFailed { .. }) => Outcome::Nothing,
        Err(zk::CheckWriteError::RequestFailed { .. }) => Outcome::Unknown,
    }
}

/// The contender nodes among `children`, in queue order: by the sequence their names end in.
fn queue(children: &[String]) -> Vec<&str> {
    let mut nodes: Vec<(u32, &str)> = children
        .iter()
        .filter_map(|child| Some((child.get(child.len().checked_sub(10)?..)?.parse().ok()?, child.as_str())))
        .collect();
    nodes.sort_unstable();
    nodes.into_iter().map(|(_, node)| node).collect()
}

/// A node that keeps `queue[i]` waiting while it exists, by the recipe's rule: for a reader the
/// nearest writer ahead of it; for any other contender the node just ahead (a writer, and the
/// contenders of a mutex, a latch, a selector or a semaphore's gate wait for every node ahead).
/// A semaphore's lease node has none: it waits for a count of leases, not for a node.
fn blocker<'q>(kind: Kind, dir: &str, queue: &[&'q str], i: usize) -> Option<&'q str> {
    if kind == Kind::Semaphore && dir.ends_with("/leases") {
        return None;
    }
    if queue[i].contains("__READ__") {
        return queue[..i].iter().rev().find(|node| node.contains("__WRIT__")).copied();
    }
    i.checked_sub(1).map(|ahead| queue[ahead])
}
