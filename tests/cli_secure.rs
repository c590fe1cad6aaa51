//! The `zk-recipes` binary against secured servers: TLS options and their environment
//! variables, SASL with the password from the environment only (never printed, never passed
//! to CMD), failed handshakes and authentication as exit status 1 with what to fix, `status`
//! with read permission alone, and `sandbox --tls`.

mod common;

use common::{code, finish, text};

use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::process::Command;
use tokio::time::timeout;
use zk_recipes::testing::{ClientAuth, TestingCluster};
use zk_recipes::zk::{self, Acl, AuthId, Permission};
use zk_recipes::{Mutex, Session, TlsConfig};

const PATIENCE: Duration = Duration::from_secs(30);
const PASSWORD: &str = "alice-s3cret-value";

/// The built tool, talking to `connect`, with none of the secured settings of the test's own
/// environment.
fn tool(connect: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_zk-recipes"));
    command.env("ZK_SERVERS", connect).arg("--session-timeout").arg("4s");
    for var in ["ZK_DIGEST", "ZK_TLS_CA", "ZK_TLS_CERT", "ZK_TLS_KEY", "ZK_SASL_USER", "ZK_SASL_PASSWORD"] {
        command.env_remove(var);
    }
    command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
    command
}

/// The tool with the cluster's CA and client certificate in its environment.
fn tls_tool(cluster: &TestingCluster) -> Command {
    let tls = cluster.tls().unwrap();
    let mut command = tool(&cluster.connect_string());
    command
        .env("ZK_TLS_CA", &tls.ca.cert_path)
        .env("ZK_TLS_CERT", &tls.client.cert_path)
        .env("ZK_TLS_KEY", &tls.client.key_path);
    command
}

async fn tls_cluster() -> TestingCluster {
    common::init_tracing();
    TestingCluster::builder().tls(ClientAuth::Need).start().await.expect("real ZooKeeper servers")
}

async fn sasl_cluster() -> TestingCluster {
    common::init_tracing();
    TestingCluster::builder().sasl_user("alice", PASSWORD).start().await.expect("real ZooKeeper servers")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_and_status_work_over_tls_from_the_environment_and_from_options() {
    let cluster = tls_cluster().await;
    let output = finish(
        tls_tool(&cluster).args(["lock", "/cli/tls", "--", "sh", "-c", "echo $ZK_FENCING_TOKEN"]).spawn().unwrap(),
    )
    .await;
    assert_eq!(code(&output), 0, "{}", text(&output.stderr));
    assert!(!text(&output.stdout).trim().is_empty(), "the command ran with a token");

    let tls = cluster.tls().unwrap();
    let status = tool(&cluster.connect_string())
        .arg("--tls-ca")
        .arg(&tls.ca.cert_path)
        .arg("--tls-cert")
        .arg(&tls.client.cert_path)
        .arg("--tls-key")
        .arg(&tls.client.key_path)
        .args(["status", "/cli/tls"])
        .spawn()
        .unwrap();
    let output = finish(status).await;
    assert_eq!(code(&output), 0, "{}", text(&output.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_handshake_exits_1_with_what_to_fix() {
    let cluster = tls_cluster().await;
    let tls = cluster.tls().unwrap();
    let output = finish(
        tool(&cluster.connect_string())
            .env("ZK_TLS_CA", &tls.ca.cert_path)
            .args(["lock", "/cli/x", "--", "true"])
            .spawn()
            .unwrap(),
    )
    .await;
    assert_eq!(code(&output), 1, "{}", text(&output.stderr));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("requires a client certificate") && stderr.contains("--tls-cert"), "{stderr}");

    let output = finish(tool(&cluster.connect_string()).args(["status", "/cli/x"]).spawn().unwrap()).await;
    assert_eq!(code(&output), 1);
    assert!(text(&output.stderr).contains("requires TLS"), "{}", text(&output.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl_takes_the_password_from_the_environment_only_and_keeps_it_from_the_command() {
    let cluster = sasl_cluster().await;
    let run = tool(&cluster.connect_string())
        .env("ZK_SASL_USER", "alice")
        .env("ZK_SASL_PASSWORD", PASSWORD)
        .env("ZK_DIGEST", "ops:digest-secret")
        .args(["lock", "/cli/sasl", "--", "env"])
        .spawn()
        .unwrap();
    let output = finish(run).await;
    assert_eq!(code(&output), 0, "{}", text(&output.stderr));
    let env = text(&output.stdout);
    assert!(env.contains("ZK_FENCING_TOKEN="), "{env}");
    assert!(!env.contains("ZK_SASL_PASSWORD") && !env.contains(PASSWORD), "the password reached the command: {env}");
    assert!(!env.contains("ZK_DIGEST"), "{env}");

    let status = tool(&cluster.connect_string())
        .arg("--sasl-user")
        .arg("alice")
        .env("ZK_SASL_PASSWORD", PASSWORD)
        .args(["status", "/cli/sasl"])
        .spawn()
        .unwrap();
    let output = finish(status).await;
    assert_eq!(code(&output), 0, "{}", text(&output.stderr));
    assert!(!text(&output.stdout).contains(PASSWORD) && !text(&output.stderr).contains(PASSWORD));

    let output = finish(
        tool(&cluster.connect_string())
            .arg("--sasl-user")
            .arg("alice")
            .env("ZK_SASL_PASSWORD", "not-the-password")
            .args(["status", "/cli/sasl"])
            .spawn()
            .unwrap(),
    )
    .await;
    assert_eq!(code(&output), 1);
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("rejected SASL authentication as \"alice\"") && !stderr.contains("not-the-password"),
        "{stderr}"
    );

    let output = finish(tool(&cluster.connect_string()).args(["status", "/cli/sasl"]).spawn().unwrap()).await;
    assert_eq!(code(&output), 1);
    assert!(text(&output.stderr).contains("requires authentication"), "{}", text(&output.stderr));

    let output = finish(
        tool(&cluster.connect_string()).arg("--sasl-user").arg("alice").args(["status", "/cli/sasl"]).spawn().unwrap(),
    )
    .await;
    assert_eq!(code(&output), 2, "a user without a password is a usage error");
    assert!(text(&output.stderr).contains("ZK_SASL_PASSWORD"), "{}", text(&output.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_needs_read_permission_only() {
    let cluster = tls_cluster().await;
    let tls = cluster.tls().unwrap();
    let owner_cert = tls.ca.client("payments").unwrap();
    let mut acls = zk::Acls::creator_all().to_vec();
    acls.push(Acl::new(Permission::READ, AuthId::new("x509", "CN=operator")));
    let owner = Session::builder()
        .tls(TlsConfig::ca_file(&tls.ca.cert_path).identity_files(&owner_cert.cert_path, &owner_cert.key_path))
        .acls(acls)
        .connect(&cluster.connect_string())
        .await
        .unwrap();
    let guard = Mutex::new(&owner, "/cli/acl").unwrap().lock().await.unwrap();

    let operator = tls.ca.client("operator").unwrap();
    let mut status = tool(&cluster.connect_string());
    status
        .env("ZK_TLS_CA", &tls.ca.cert_path)
        .env("ZK_TLS_CERT", &operator.cert_path)
        .env("ZK_TLS_KEY", &operator.key_path);
    let output = finish(status.args(["status", "--json", "/cli/acl"]).spawn().unwrap()).await;
    assert_eq!(code(&output), 0, "{}", text(&output.stderr));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["holders"][0]["node"], guard.node(), "{json}");

    // The same operator cannot take the lock: exit 1, and the message says why.
    let mut lock = tool(&cluster.connect_string());
    lock.env("ZK_TLS_CA", &tls.ca.cert_path)
        .env("ZK_TLS_CERT", &operator.cert_path)
        .env("ZK_TLS_KEY", &operator.key_path);
    let output = finish(lock.args(["lock", "--no-wait", "/cli/acl", "--", "true"]).spawn().unwrap()).await;
    assert_eq!(code(&output), 1);
    assert!(text(&output.stderr).contains("not allowed at /cli/acl"), "{}", text(&output.stderr));
    guard.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_tls_prints_the_environment_that_reaches_it() {
    let (mut sandbox, mut lines) = common::sandbox(&["--tls"]);
    let mut env = Vec::new();
    for _ in 0..4 {
        let line = timeout(PATIENCE, lines.next_line()).await.unwrap().unwrap().expect("an environment line");
        let (key, value) = line.split_once('=').unwrap_or_else(|| panic!("not KEY=VALUE: {line}"));
        env.push((key.to_owned(), value.to_owned()));
    }
    let keys: Vec<&str> = env.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["ZK_SERVERS", "ZK_TLS_CA", "ZK_TLS_CERT", "ZK_TLS_KEY"]);
    let mut run = tool(&env[0].1);
    run.envs(env.iter().map(|(k, v)| (k, v)));
    let output = finish(run.args(["lock", "/try", "--", "true"]).spawn().unwrap()).await;
    assert_eq!(code(&output), 0, "{}", text(&output.stderr));
    // Without the certificates, the same servers refuse: it really is TLS.
    let output = finish(tool(&env[0].1).args(["lock", "/try", "--", "true"]).spawn().unwrap()).await;
    assert_eq!(code(&output), 1, "{}", text(&output.stderr));

    common::signal(&sandbox, Signal::SIGINT);
    let status = timeout(PATIENCE, sandbox.wait()).await.unwrap().unwrap();
    assert!(status.success(), "{status:?}");
    assert!(!std::path::Path::new(&env[1].1).exists(), "the throw-away certificates went with the sandbox");
}
