//! The progress line on stderr while waiting: place in the queue, the holder, time waited.

use std::io::Write;
use std::time::Duration;

use tokio::time::Instant;
use zk_recipes::{Session, inspect};

const EVERY: Duration = Duration::from_millis(500);

/// Redraws the progress line every half second until dropped (it never returns). The caller
/// clears the line with [`clear`] afterwards.
pub async fn show(session: &Session, path: &str) {
    let started = Instant::now();
    loop {
        tokio::time::sleep(EVERY).await;
        let Ok(snapshot) = inspect(session, path).await else { continue };
        let own = session.id().map(|id| id.0);
        let place = snapshot.waiting.iter().position(|p| Some(p.session_id) == own);
        let line = match (place, snapshot.holders.first()) {
            (Some(place), Some(holder)) => format!(
                "waiting for {path}: {} of {} in line, held by {} (session {:#x})",
                place + 1,
                snapshot.waiting.len(),
                holder.node.rsplit('/').next().unwrap_or_default(),
                holder.session_id,
            ),
            _ => format!("waiting for {path}"),
        };
        let mut stderr = std::io::stderr().lock();
        let _ = write!(stderr, "\r\x1b[K{line}, {}s", started.elapsed().as_secs());
        let _ = stderr.flush();
    }
}

/// Erases the progress line.
pub fn clear() {
    let mut stderr = std::io::stderr().lock();
    let _ = write!(stderr, "\r\x1b[K");
    let _ = stderr.flush();
}
