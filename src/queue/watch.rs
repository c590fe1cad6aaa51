//! Watching one node of a session until it is deleted or changes: how a waiting attempt and a
//! holding both learn that their own node is gone.

use std::future::Future;
use std::pin::Pin;

use backon::{ExponentialBuilder, Retryable};
use zookeeper_client as zk;

use crate::retry;
use crate::session::{Moment, Session};

/// A watch on a node, from [`watch_node`].
pub(crate) type NodeWatch = Pin<Box<dyn Future<Output = NodeEvent> + Send>>;

/// What a watch on a node reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum NodeEvent {
    Deleted,
    /// Its data changed (someone wrote to it): watch again.
    Changed,
    /// The session ended; the session state says how.
    SessionEnded,
    /// The server refused the watch for good (no READ permission on the node, since ZooKeeper
    /// 3.8.4 checks it on `exists`): the node's deletion would go unnoticed.
    Refused,
}

/// Watches a node of the session of `generation` until it is deleted or changes (`Deleted` at
/// once if it is gone). The exists that sets the watch is sent when the future is first polled.
pub(crate) async fn watch_node(session: Session, generation: u64, node: String) -> NodeEvent {
    // The client is taken anew for each try and dropped before waiting, so that a pending
    // watch never keeps a closed session open.
    let watch = || async {
        let client = session.client_of(generation).ok_or(zk::Error::ClientClosed)?;
        let sent = Moment::now();
        let reply = client.check_and_watch_stat(&node).await;
        if retry::is_answer(&reply) {
            session.answered(generation, sent);
        }
        reply
    };
    // Besides connection losses, the client can fail a request with an error of its own about
    // the connection (an unknown reply, say) and reconnect: worth retrying, with backoff. Only
    // the server's refusal and the session's end are final.
    let backoff = ExponentialBuilder::default()
        .with_min_delay(std::time::Duration::from_millis(20))
        .with_max_delay(std::time::Duration::from_secs(1))
        .without_max_times();
    let last = |err: &zk::Error| {
        matches!(err, zk::Error::NoAuth | zk::Error::SessionExpired | zk::Error::ClientClosed | zk::Error::AuthFailed)
            || session.ended(generation).is_some()
    };
    match watch.retry(backoff).when(|err| !last(err)).await {
        Ok((None, _)) => NodeEvent::Deleted,
        Ok((Some(_), watcher)) => match watcher.changed().await.event_type {
            zk::EventType::NodeDeleted => NodeEvent::Deleted,
            zk::EventType::Session => NodeEvent::SessionEnded,
            _ => NodeEvent::Changed,
        },
        Err(err @ zk::Error::NoAuth) if session.ended(generation).is_none() => {
            tracing::error!(%node, error = %err, "cannot watch the node; its deletion would go unnoticed");
            NodeEvent::Refused
        }
        // The session ended (the driver may not have seen it yet; the status tells soon).
        Err(_) => NodeEvent::SessionEnded,
    }
}
