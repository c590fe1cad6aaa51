//! Deleting contender nodes that nobody will use: the node of a released or dropped guard, and
//! whatever node a cancelled or failed acquisition created (or may have created).

use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use zookeeper_client as zk;

use crate::retry::is_transient;
use crate::session::Session;

/// What a delete did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Deleted {
    Yes,
    /// Nothing was there.
    Nothing,
    /// Nothing was there when a retry looked, after an attempt cut off by a lost connection
    /// that may have run.
    Probably,
}

impl Deleted {
    /// What tries of a delete did: whether the last one deleted something, and whether an
    /// earlier one was cut off in doubt ([`leaves_in_doubt`]).
    pub(crate) fn of(deleted: bool, in_doubt: bool) -> Self {
        match (deleted, in_doubt) {
            (true, _) => Deleted::Yes,
            (false, true) => Deleted::Probably,
            (false, false) => Deleted::Nothing,
        }
    }
}

/// Whether a request that failed with `err` may still have run on the server. Only a lost
/// connection leaves the outcome in doubt; Throttled and SessionMoved are the server's refusal
/// to run the request.
pub(crate) fn leaves_in_doubt(err: &zk::Error) -> bool {
    matches!(err, zk::Error::ConnectionLoss | zk::Error::Timeout | zk::Error::Custom(_))
}

/// What to delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// A node whose full path is known.
    Node(String),
    /// Whatever a create with this protected name prefix (`_c_<uuid>-`) made in `dir`: used
    /// when the create was sent but its reply never arrived.
    Prefix { dir: String, prefix: String },
}

impl Target {
    /// Deletes the target in the session's background task, retried until it is gone or the
    /// ZooKeeper session of `generation` has ended (which deletes it too). Never blocks.
    pub(crate) fn schedule(self, session: &Session, generation: u64) {
        tracing::debug!(target = ?self, "cleanup scheduled");
        session.in_background(generation, Box::new(move |client| Box::pin(async move { self.finish(&client).await })));
    }

    /// Sends the delete of a node right away, so that the server runs it before anything this
    /// session sends later, and leaves awaiting the reply — and any retry — to the background
    /// task. Never blocks.
    ///
    /// `keep` lives until the delete's reply: a watch on the node, for example, fires before
    /// it, so that dropping the watch then costs no request to remove it from the server.
    pub(crate) fn send_and_schedule<K: Send + 'static>(
        self,
        client: &zk::Client,
        session: &Session,
        generation: u64,
        keep: K,
    ) {
        let Target::Node(path) = &self else { return self.schedule(session, generation) };
        tracing::debug!(target = ?self, "cleanup sent");
        let sent = client.delete(path, None);
        session.in_background(
            generation,
            Box::new(move |client| {
                Box::pin(async move {
                    let outcome = sent.await;
                    drop(keep);
                    match outcome {
                        Ok(()) | Err(zk::Error::NoNode) => tracing::debug!(target = ?self, "cleaned up"),
                        Err(_) => self.finish(&client).await,
                    }
                })
            }),
        );
    }

    /// Deletes the target with retries and reports the outcome.
    async fn finish(&self, client: &zk::Client) {
        match self.delete(client).await {
            Ok(_) => tracing::debug!(target = ?self, "cleaned up"),
            Err(zk::Error::SessionExpired | zk::Error::ClientClosed) => {
                tracing::debug!(target = ?self, "node ended with its session")
            }
            Err(err) => tracing::error!(
                target = ?self, error = %err,
                "cannot delete a contender node; it stays until its session ends"
            ),
        }
    }

    /// Deletes the target now, retrying connection losses with backoff, and says whether this
    /// call deleted something: [`Deleted::Yes`], [`Deleted::Nothing`] there, or
    /// [`Deleted::Probably`] — an attempt cut off by a lost connection may have run on the
    /// server, and a retry then found nothing: most likely that attempt's work.
    ///
    /// Connection losses end when the client reconnects or when it expires the session itself
    /// (after 7/5 of the session timeout without an answer), so the retries are bounded.
    pub(crate) async fn delete(&self, client: &zk::Client) -> Result<Deleted, zk::Error> {
        let backoff = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(10))
            .with_max_delay(Duration::from_secs(1))
            .without_max_times();
        let in_doubt = std::sync::atomic::AtomicBool::new(false);
        let attempt = || async {
            let outcome = self.delete_once(client).await;
            if outcome.as_ref().is_err_and(leaves_in_doubt) {
                in_doubt.store(true, std::sync::atomic::Ordering::Relaxed);
            }
            outcome
        };
        let deleted = attempt.retry(backoff).when(is_transient).await?;
        Ok(Deleted::of(deleted, in_doubt.load(std::sync::atomic::Ordering::Relaxed)))
    }

    async fn delete_once(&self, client: &zk::Client) -> Result<bool, zk::Error> {
        match self {
            Target::Node(path) => delete_node(client, path).await,
            Target::Prefix { dir, prefix } => {
                let Some((children, _)) = synced_children(client, dir).await? else { return Ok(false) };
                let mut deleted = false;
                for child in children.iter().filter(|c| c.starts_with(prefix.as_str())) {
                    deleted |= delete_node(client, &format!("{dir}/{child}")).await?;
                }
                Ok(deleted)
            }
        }
    }
}

async fn delete_node(client: &zk::Client, path: &str) -> Result<bool, zk::Error> {
    match client.delete(path, None).await {
        Ok(()) => Ok(true),
        Err(zk::Error::NoNode) => Ok(false),
        Err(err) => Err(err),
    }
}

/// Lists `dir` after a `sync`, so that the list includes the effect of every request this
/// session sent before, even to another server before a reconnect. `None` if `dir` is missing.
pub(crate) async fn synced_children(
    client: &zk::Client,
    dir: &str,
) -> Result<Option<(Vec<String>, zk::Stat)>, zk::Error> {
    // Both requests go out before either is awaited; the server runs them in order.
    let sync = client.sync(dir);
    let list = client.get_children(dir);
    let (synced, listed) = tokio::join!(sync, list);
    match (synced, listed) {
        (_, Err(zk::Error::NoNode)) => Ok(None),
        (Err(err), _) | (_, Err(err)) => Err(err),
        (Ok(()), Ok(listed)) => Ok(Some(listed)),
    }
}
