//! What TLS costs: the connect (a new session, handshake included) and the uncontended mutex
//! cycle over TLS beside plaintext, on one standalone server that serves both (its TLS port
//! requires a client certificate, as production ones do), in interleaved rounds.

use std::time::Duration;

use serde_json::json;
use tokio::time::Instant;
use zk_recipes::testing::{ClientAuth, TestingCluster};
use zk_recipes::{Mutex, Session, SessionBuilder, TlsConfig};

use crate::report::{Report, Stats, ms, ratio, title};
use crate::{Options, Result};

/// Connects per round and side: a connect is slower than a cycle, so fewer are needed.
const CONNECTS: usize = 10;

pub async fn run(options: Options, report: &mut Report) -> Result<()> {
    let cluster = TestingCluster::builder().tls(ClientAuth::Need).jvm_arg("-XX:TieredStopAtLevel=4").start().await?;
    let tls = cluster.tls().ok_or("a TLS cluster")?;
    let config = TlsConfig::ca_file(&tls.ca.cert_path).identity_files(&tls.client.cert_path, &tls.client.key_path);
    let sides = [
        ("plaintext", cluster.plaintext_connect_string(), Session::builder()),
        ("TLS", cluster.connect_string(), Session::builder().tls(config)),
    ];
    let mut connects = [Vec::new(), Vec::new()];
    let mut cycles = [Vec::new(), Vec::new()];
    let mut mutexes = Vec::new();
    for (i, (_, servers, builder)) in sides.iter().enumerate() {
        let session = builder.clone().connect(servers).await?;
        let mutex = Mutex::new(&session, &format!("/bench/tls/{i}"))?;
        // Warm up the paths (and the server's JIT).
        for _ in 0..options.cycles {
            mutex.lock().await?.release().await?;
        }
        connect_times(builder, servers, 2).await?;
        mutexes.push((session, mutex));
    }
    for round in 0..options.rounds {
        let order: [usize; 2] = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for side in order {
            let (_, servers, builder) = &sides[side];
            connects[side].extend(connect_times(builder, servers, CONNECTS).await?);
            let mutex = &mutexes[side].1;
            for _ in 0..options.cycles {
                let started = Instant::now();
                mutex.lock().await?.release().await?;
                cycles[side].push(started.elapsed());
            }
        }
    }
    let [plain_connect, tls_connect] = connects.map(Stats::of);
    let [plain_cycle, tls_cycle] = cycles.map(Stats::of);
    title(&format!(
        "TLS beside plaintext, standalone ({} rounds x {} cycles, {CONNECTS} connects); p50 ratios TLS / plaintext",
        options.rounds, options.cycles
    ));
    println!("{:<40} {:>10} {:>10} {:>10} {:>10} {:>8}", "", "plain p50", "plain p99", "TLS p50", "TLS p99", "ratio");
    let secs = Duration::as_secs_f64;
    for (label, plain, tls) in
        [("connect (new session)", plain_connect, tls_connect), ("Mutex lock + release", plain_cycle, tls_cycle)]
    {
        println!(
            "{label:<40} {:>10} {:>10} {:>10} {:>10} {:>8}",
            ms(plain.p50),
            ms(plain.p99),
            ms(tls.p50),
            ms(tls.p99),
            ratio(secs(&tls.p50), secs(&plain.p50))
        );
    }
    report.add(json!({
        "bench": "tls", "servers": "standalone",
        "connect": { "plaintext": plain_connect.json(), "tls": tls_connect.json() },
        "mutex_cycle": { "plaintext": plain_cycle.json(), "tls": tls_cycle.json() },
    }));
    for (session, _) in mutexes {
        session.close().await;
    }
    Ok(())
}

/// How long `n` connects take each, to a connected session; each session is closed after.
async fn connect_times(builder: &SessionBuilder, servers: &str, n: usize) -> Result<Vec<Duration>> {
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        let session = builder.clone().connect(servers).await?;
        times.push(started.elapsed());
        session.close().await;
    }
    Ok(times)
}
