//! Which ZooKeeper errors are worth sending a request again for, and how.

use std::future::Future;
use std::time::Duration;

use backon::{ConstantBuilder, Retryable};
use zookeeper_client as zk;

/// Pause before resending a request that failed with a connection loss. The client holds
/// requests while it reconnects, so this only keeps a failing connection from spinning.
const RESEND_PAUSE: Duration = Duration::from_millis(20);

/// Errors after which the same request may succeed: the connection failed (whether the server
/// ran the request is unknown), the server asked us to slow down, or the request reached a
/// server the session had already left (`SessionMoved`: that server did not run it, and the
/// session lives on at another).
///
/// `zookeeper-client` fails the requests in flight with the connection's own error when a
/// connection dies — `Custom` ("no response from connection in …ms", I/O errors) — not only
/// with `ConnectionLoss`. Answers from the server always come as specific variants.
pub(crate) fn is_transient(err: &zk::Error) -> bool {
    matches!(
        err,
        zk::Error::ConnectionLoss
            | zk::Error::Timeout
            | zk::Error::Throttled
            | zk::Error::SessionMoved
            | zk::Error::Custom(_)
    )
}

/// Whether `outcome` is the server's answer to the request (a success or an error the server
/// decided), which proves the server heard from the session when the request was sent.
pub(crate) fn is_answer<T>(outcome: &Result<T, zk::Error>) -> bool {
    match outcome {
        Ok(_) => true,
        Err(err) => matches!(
            err,
            zk::Error::NoNode
                | zk::Error::NodeExists
                | zk::Error::NoAuth
                | zk::Error::BadVersion
                | zk::Error::NotEmpty
                | zk::Error::NoChildrenForEphemerals
                | zk::Error::InvalidAcl
        ),
    }
}

/// Sends a request again after transient failures. The client expires the session itself after
/// 7/5 of the session timeout without an answer, which ends the retries.
pub(crate) async fn resend<T, F, Fut>(request: F) -> Result<T, zk::Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, zk::Error>>,
{
    let pause = ConstantBuilder::default().with_delay(RESEND_PAUSE).without_max_times();
    request.retry(pause).when(is_transient).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_moved_session_is_retried_like_a_connection_loss() {
        for err in [zk::Error::ConnectionLoss, zk::Error::SessionMoved, zk::Error::Timeout, zk::Error::Throttled] {
            assert!(is_transient(&err), "{err:?}");
            assert!(!is_answer::<()>(&Err(err)));
        }
        for err in [zk::Error::SessionExpired, zk::Error::NoAuth, zk::Error::NoNode] {
            assert!(!is_transient(&err), "{err:?}");
        }
        assert!(is_answer::<()>(&Err(zk::Error::NoNode)) && is_answer(&Ok(())));
        assert!(!is_answer::<()>(&Err(zk::Error::SessionExpired)), "an expiry proves nothing of the session");
    }
}
