//! `sandbox`: a local ZooKeeper ensemble to try the tool against, until Ctrl-C.

use tokio::signal::unix::{SignalKind, signal};
use zk_recipes::testing::{ClientAuth, TestingCluster};

use crate::output;

/// Starts `nodes` servers (serving TLS with throw-away certificates if `tls`), prints how to
/// reach them on stdout — the connect string, or with TLS the environment lines — and serves
/// until SIGINT or SIGTERM; the servers, their data and certificates go with the tool.
pub async fn serve(nodes: u8, tls: bool) -> Result<(), String> {
    let mut interrupt = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;
    let mut terminate = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
    let mut builder = TestingCluster::builder().size(usize::from(nodes));
    if tls {
        // The strictest setting, so that what works here works against a production ensemble.
        builder = builder.tls(ClientAuth::Need);
    }
    let cluster = builder.start().await.map_err(|e| e.to_string())?;
    let connect = cluster.connect_string();
    let printed = match cluster.tls() {
        None => format!("{connect}\n"),
        Some(tls) => format!(
            "ZK_SERVERS={connect}\nZK_TLS_CA={}\nZK_TLS_CERT={}\nZK_TLS_KEY={}\n",
            tls.ca.cert_path.display(),
            tls.client.cert_path.display(),
            tls.client.key_path.display()
        ),
    };
    // A reader that has gone (`sandbox | head -1`) has what it wanted; stderr repeats it.
    output::stdout(&printed).map_err(|e| format!("writing to stdout: {e}"))?;
    match cluster.tls() {
        None => {
            eprintln!("zk-recipes: {nodes} ZooKeeper server(s) at {connect}; try");
            eprintln!("  ZK_SERVERS={connect} zk-recipes lock /demo -- sh -c 'echo token $ZK_FENCING_TOKEN'");
        }
        Some(_) => {
            let env = printed.lines().collect::<Vec<_>>().join(" ");
            eprintln!(
                "zk-recipes: {nodes} ZooKeeper server(s) serving TLS at {connect} (client certificate required); try"
            );
            eprintln!("  env {env} zk-recipes lock /demo -- sh -c 'echo token $ZK_FENCING_TOKEN'");
        }
    }
    eprintln!("Ctrl-C stops them.");
    tokio::select! {
        _ = interrupt.recv() => {}
        _ = terminate.recv() => {}
    }
    drop(cluster);
    Ok(())
}
