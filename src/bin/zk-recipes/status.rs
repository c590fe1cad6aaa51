//! `status`: who holds a recipe path and who waits, as text or JSON.

use std::time::{Duration, SystemTime};

use serde_json::json;
use zk_recipes::{Participant, Snapshot};

/// The snapshot as text: a summary line, then one line per participant, holders first.
pub fn text(snapshot: &Snapshot) -> String {
    let mut out = format!(
        "{}{}: {} holding, {} waiting\n",
        snapshot.path,
        if snapshot.semaphore { " (semaphore)" } else { "" },
        snapshot.holders.len(),
        snapshot.waiting.len()
    );
    let now = SystemTime::now();
    let rows = snapshot.holders.iter().map(|p| ("holds".to_owned(), p));
    let rows = rows.chain(snapshot.waiting.iter().enumerate().map(|(i, p)| (format!("#{}", i + 1), p)));
    for (place, p) in rows {
        out.push_str(&format!(
            "  {place:<6} {}  {:?}  session {:#x}  age {}  token {}  data {:?}\n",
            name(p),
            p.kind,
            p.session_id,
            humantime::format_duration(age(p, now)),
            p.token,
            String::from_utf8_lossy(&p.data),
        ));
    }
    out
}

/// The snapshot as one JSON document.
pub fn json(snapshot: &Snapshot) -> String {
    let now = SystemTime::now();
    let participant = |p: &Participant| {
        json!({
            "node": p.node,
            "name": name(p),
            "kind": format!("{:?}", p.kind),
            "session_id": format!("{:#x}", p.session_id),
            "age_ms": u64::try_from(age(p, now).as_millis()).unwrap_or(u64::MAX),
            "token": p.token.to_string(),
            "data": String::from_utf8_lossy(&p.data),
        })
    };
    json!({
        "path": snapshot.path,
        "semaphore": snapshot.semaphore,
        "holders": snapshot.holders.iter().map(participant).collect::<Vec<_>>(),
        "waiting": snapshot.waiting.iter().map(participant).collect::<Vec<_>>(),
    })
    .to_string()
}

fn name(p: &Participant) -> &str {
    p.node.rsplit('/').next().unwrap_or_default()
}

/// Whole milliseconds since the node's creation by the server's clock (zero if that is ahead).
fn age(p: &Participant, now: SystemTime) -> Duration {
    let age = now.duration_since(p.created).unwrap_or_default();
    Duration::from_millis(u64::try_from(age.as_millis()).unwrap_or(u64::MAX))
}
