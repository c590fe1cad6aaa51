//! `sandbox`: a local ZooKeeper ensemble to try the tool against, until Ctrl-C.

use tokio::signal::unix::{SignalKind, signal};
use zk_recipes::testing::TestingCluster;

use crate::output;

/// Starts `nodes` servers, prints the connect string on stdout, and serves until SIGINT or
/// SIGTERM; the servers and their data go with the tool.
pub async fn serve(nodes: u8) -> Result<(), String> {
    let mut interrupt = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;
    let mut terminate = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
    let cluster = match nodes {
        1 => TestingCluster::standalone().await,
        n => TestingCluster::ensemble(usize::from(n)).await,
    }
    .map_err(|e| e.to_string())?;
    let connect = cluster.connect_string();
    // A reader that has gone (`sandbox | head -1`) has what it wanted; stderr repeats it.
    output::stdout(&format!("{connect}\n")).map_err(|e| format!("writing to stdout: {e}"))?;
    eprintln!("zk-recipes: {nodes} ZooKeeper server(s) at {connect}; try");
    eprintln!("  ZK_SERVERS={connect} zk-recipes lock /demo -- sh -c 'echo token $ZK_FENCING_TOKEN'");
    eprintln!("Ctrl-C stops them.");
    tokio::select! {
        _ = interrupt.recv() => {}
        _ = terminate.recv() => {}
    }
    drop(cluster);
    Ok(())
}
