//! Secured ensembles: TLS on the client port and SASL, against real servers the harness
//! starts with generated certificates and a JAAS file; every way a secured connect can fail
//! is its own error, within the connect timeout.

mod common;

use std::time::Duration;

use futures_util::FutureExt;
use zk_recipes::testing::{ClientAuth, Proxy, TestingCluster};
use zk_recipes::{
    Error, LeaderLatch, LeaderSelector, Mutex, ReadWriteLock, Semaphore, Session, SessionBuilder, SessionState,
    TlsConfig, TlsProblem,
};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

async fn cluster(builder: zk_recipes::testing::ClusterBuilder) -> TestingCluster {
    common::init_tracing();
    builder.start().await.expect("real ZooKeeper servers (see the message for how to install them)")
}

async fn tls_cluster(client_auth: ClientAuth) -> TestingCluster {
    cluster(TestingCluster::builder().tls(client_auth)).await
}

/// The client settings the harness hands out for its TLS cluster: its CA and its client
/// certificate.
fn client_tls(cluster: &TestingCluster) -> TlsConfig {
    let tls = cluster.tls().expect("a TLS cluster");
    TlsConfig::ca_file(&tls.ca.cert_path).identity_files(&tls.client.cert_path, &tls.client.key_path)
}

fn builder() -> SessionBuilder {
    Session::builder().connect_timeout(CONNECT_TIMEOUT)
}

fn tls_problem(error: &Error) -> TlsProblem {
    match error {
        Error::Tls { problem, .. } => *problem,
        other => panic!("expected a TLS error, got {other:?}: {other}"),
    }
}

#[tokio::test]
async fn a_mutex_is_taken_and_released_over_tls_with_a_client_certificate() {
    let cluster = tls_cluster(ClientAuth::Need).await;
    let session = builder().tls(client_tls(&cluster)).connect(&cluster.connect_string()).await.unwrap();
    let client = session.client().await.unwrap();
    let users = client.list_auth_users().await.unwrap();
    assert!(
        users.iter().any(|u| u.scheme() == "x509" && u.user() == "CN=client"),
        "the certificate's subject is the session's identity: {users:?}"
    );
    let guard = Mutex::new(&session, "/tls/mutex").unwrap().lock().await.unwrap();
    guard.release().await.unwrap();
}

#[tokio::test]
async fn a_mutex_is_taken_over_sasl() {
    let cluster = cluster(TestingCluster::builder().sasl_user("alice", "alice-secret")).await;
    let (user, password) = cluster.sasl().expect("a SASL cluster").user();
    let session = builder().sasl_digest(user, password).connect(&cluster.connect_string()).await.unwrap();
    let client = session.client().await.unwrap();
    let users = client.list_auth_users().await.unwrap();
    assert!(users.iter().any(|u| u.scheme() == "sasl" && u.user() == "alice"), "{users:?}");
    let guard = Mutex::new(&session, "/sasl/mutex").unwrap().lock().await.unwrap();
    guard.release().await.unwrap();
}

#[tokio::test]
async fn an_untrusted_server_certificate_is_named() {
    let cluster = tls_cluster(ClientAuth::None).await;
    let other = cluster.tls().unwrap().foreign_ca("other-ca").unwrap();
    let error = common::connect_error(
        builder().tls(TlsConfig::ca_file(&other.cert_path)),
        &cluster.connect_string(),
        CONNECT_TIMEOUT,
    )
    .await;
    assert_eq!(tls_problem(&error), TlsProblem::UntrustedServerCertificate, "{error}");
    let message = error.to_string();
    assert!(message.contains(&other.cert_path.display().to_string()), "names the CA file: {message}");
    assert!(message.contains("--tls-ca"), "names the option: {message}");
}

#[tokio::test]
async fn a_certificate_for_another_host_name_is_a_hostname_mismatch() {
    let cluster = tls_cluster(ClientAuth::None).await;
    // The servers' certificates name 127.0.0.1 only.
    let servers = format!("localhost:{}", cluster.address(0).port());
    let ca = &cluster.tls().unwrap().ca.cert_path;
    let error = common::connect_error(builder().tls(TlsConfig::ca_file(ca)), &servers, CONNECT_TIMEOUT).await;
    assert_eq!(tls_problem(&error), TlsProblem::HostnameMismatch, "{error}");
    assert!(error.to_string().contains("\"localhost\""), "{error}");
}

#[tokio::test]
async fn a_server_that_needs_a_client_certificate_says_so() {
    let cluster = tls_cluster(ClientAuth::Need).await;
    let ca = &cluster.tls().unwrap().ca.cert_path;
    let error =
        common::connect_error(builder().tls(TlsConfig::ca_file(ca)), &cluster.connect_string(), CONNECT_TIMEOUT).await;
    assert_eq!(tls_problem(&error), TlsProblem::ClientCertificateRequired, "{error}");
    assert!(error.to_string().contains("--tls-cert"), "{error}");
}

#[tokio::test]
async fn a_client_certificate_from_an_untrusted_ca_is_rejected() {
    let cluster = tls_cluster(ClientAuth::Need).await;
    let tls = cluster.tls().unwrap();
    let stranger = tls.foreign_ca("stranger-ca").unwrap().client("stranger").unwrap();
    let config = TlsConfig::ca_file(&tls.ca.cert_path).identity_files(&stranger.cert_path, &stranger.key_path);
    let error = common::connect_error(builder().tls(config), &cluster.connect_string(), CONNECT_TIMEOUT).await;
    assert_eq!(tls_problem(&error), TlsProblem::ClientCertificateRejected, "{error}");
    assert!(error.to_string().contains(&stranger.cert_path.display().to_string()), "names the file: {error}");
}

#[tokio::test]
async fn a_plaintext_client_at_a_tls_port_is_told_to_use_tls() {
    let cluster = tls_cluster(ClientAuth::Want).await;
    let error = common::connect_error(builder(), &cluster.connect_string(), CONNECT_TIMEOUT).await;
    assert_eq!(tls_problem(&error), TlsProblem::ServerRequiresTls, "{error}");
    assert!(error.to_string().contains("--tls-ca"), "{error}");
}

#[tokio::test]
async fn a_tls_client_at_a_plaintext_port_is_told_it_is_plaintext() {
    let cluster = tls_cluster(ClientAuth::Want).await;
    let error = common::connect_error(
        builder().tls(client_tls(&cluster)),
        &cluster.plaintext_connect_string(),
        CONNECT_TIMEOUT,
    )
    .await;
    assert_eq!(tls_problem(&error), TlsProblem::ServerIsPlaintext, "{error}");
    assert!(error.to_string().contains("secureClientPort"), "{error}");
}

#[tokio::test]
async fn a_wrong_sasl_password_is_rejected() {
    let cluster = cluster(TestingCluster::builder().sasl_user("alice", "alice-secret")).await;
    let error =
        common::connect_error(builder().sasl_digest("alice", "wrong"), &cluster.connect_string(), CONNECT_TIMEOUT)
            .await;
    assert_eq!(error, Error::SaslRejected { user: "alice".into() });
    let message = error.to_string();
    assert!(message.contains("ZK_SASL_PASSWORD") && !message.contains("wrong"), "{message}");
}

#[tokio::test]
async fn a_server_that_requires_sasl_says_so_to_a_session_without() {
    let cluster = cluster(TestingCluster::builder().sasl_user("alice", "alice-secret")).await;
    let error = common::connect_error(builder(), &cluster.connect_string(), CONNECT_TIMEOUT).await;
    assert_eq!(error, Error::AuthRequired, "{error}");
    assert!(error.to_string().contains("--sasl-user"), "{error}");
}

#[tokio::test]
async fn a_holder_whose_certificate_is_rotated_reconnects_with_the_new_one_and_keeps_its_lock() {
    let cluster = tls_cluster(ClientAuth::Need).await;
    let tls = cluster.tls().unwrap();
    // A proxy in front of the server, so that the test can drop the holder's connection.
    let proxy = Proxy::start(cluster.address(0)).await.unwrap();
    let mut current = tls.ca.client("holder-v1").unwrap();
    let config = TlsConfig::ca_file(&tls.ca.cert_path).identity_files(&current.cert_path, &current.key_path);
    let session = builder().tls(config).connect(&proxy.address().to_string()).await.unwrap();
    let guard = Mutex::new(&session, "/tls/rotation").unwrap().lock().await.unwrap();
    assert_eq!(identities(&session, "x509").await, ["CN=holder-v1"]);

    // The certificate manager replaces the files while the process holds the lock.
    let next = tls.ca.client("holder-v2").unwrap();
    current.replace_with(&next).unwrap();
    common::eventually("the session to read the new files", Duration::from_secs(20), || async {
        (!common::recorded("TLS certificate files changed: the next connection uses the new ones").is_empty())
            .then_some(())
    })
    .await;

    let mut states = session.states();
    proxy.reset_connections();
    let suspended = tokio::time::timeout(Duration::from_secs(20), states.changed()).await.unwrap();
    assert_eq!(suspended, SessionState::Suspended);
    let connected = tokio::time::timeout(Duration::from_secs(20), states.changed()).await.unwrap();
    assert_eq!(connected, SessionState::Connected);

    assert_eq!(
        identities(&session, "x509").await,
        ["CN=holder-v2"],
        "the new connection presented the new certificate"
    );
    assert!(guard.lost().now_or_never().is_none(), "the holder kept its lock through the reconnect");
    guard.release().await.unwrap();
}

/// The session's identities of `scheme`, as the server sees them.
async fn identities(session: &Session, scheme: &str) -> Vec<String> {
    let users = session.client().await.unwrap().list_auth_users().await.unwrap();
    users.iter().filter(|u| u.scheme() == scheme).map(|u| u.user().to_owned()).collect()
}

/// Every recipe's acquire and release through `session`, with a second contender of the same
/// identity taking over each mutual exclusion.
async fn every_recipe_takes_turns(first: &Session, second: &Session, root: &str) {
    let path = |name: &str| format!("{root}/{name}");
    let guard = Mutex::new(first, &path("mutex")).unwrap().lock().await.unwrap();
    assert!(Mutex::new(second, &path("mutex")).unwrap().try_lock().await.unwrap().is_none());
    guard.release().await.unwrap();
    Mutex::new(second, &path("mutex")).unwrap().try_lock().await.unwrap().expect("free again").release().await.unwrap();

    let reader = ReadWriteLock::new(first, &path("rw")).unwrap().read().await.unwrap();
    let other_reader = ReadWriteLock::new(second, &path("rw")).unwrap().read().await.unwrap();
    assert!(ReadWriteLock::new(second, &path("rw")).unwrap().try_write().await.unwrap().is_none());
    reader.release().await.unwrap();
    other_reader.release().await.unwrap();
    ReadWriteLock::new(second, &path("rw")).unwrap().write().await.unwrap().release().await.unwrap();

    let lease = Semaphore::new(first, &path("sem"), 1).unwrap().acquire().await.unwrap();
    assert!(Semaphore::new(second, &path("sem"), 1).unwrap().try_acquire().await.unwrap().is_none());
    lease.release().await.unwrap();
    Semaphore::new(second, &path("sem"), 1).unwrap().acquire().await.unwrap().release().await.unwrap();

    let latch = LeaderLatch::new(first, &path("latch"), "first").unwrap().start().await.unwrap();
    let term = latch.leadership().await.unwrap();
    let follower = LeaderLatch::new(second, &path("latch"), "second").unwrap().start().await.unwrap();
    assert_eq!(follower.participants().await.unwrap().len(), 2);
    drop(term);
    latch.close().await.unwrap();
    follower.leadership().await.unwrap();
    follower.close().await.unwrap();

    let led = std::sync::atomic::AtomicBool::new(false);
    LeaderSelector::new(second, &path("selector"), "second")
        .unwrap()
        .run(|_| async { led.store(true, std::sync::atomic::Ordering::SeqCst) })
        .await
        .unwrap();
    assert!(led.into_inner(), "the selector led one term");
}

#[tokio::test]
async fn every_recipe_acquires_and_releases_over_tls_on_an_ensemble() {
    let cluster = cluster(TestingCluster::builder().size(3).tls(ClientAuth::Need)).await;
    let first = builder().tls(client_tls(&cluster)).connect(&cluster.connect_string()).await.unwrap();
    let second = builder().tls(client_tls(&cluster)).connect(&cluster.connect_string()).await.unwrap();
    every_recipe_takes_turns(&first, &second, "/tls/recipes").await;
}

#[tokio::test]
async fn every_recipe_acquires_and_releases_over_sasl_and_tls_together() {
    let cluster = cluster(TestingCluster::builder().tls(ClientAuth::Want).sasl_user("alice", "alice-secret")).await;
    let ca = &cluster.tls().unwrap().ca.cert_path;
    let servers = cluster.connect_string();
    let connect = || builder().tls(TlsConfig::ca_file(ca)).sasl_digest("alice", "alice-secret").connect(&servers);
    let (first, second) = (connect().await.unwrap(), connect().await.unwrap());
    assert_eq!(identities(&first, "sasl").await, ["alice"]);
    every_recipe_takes_turns(&first, &second, "/sasl/recipes").await;
}

#[tokio::test]
async fn a_connect_string_may_mark_plaintext_servers_among_tls_ones() {
    let cluster = tls_cluster(ClientAuth::Want).await;
    let plain = cluster.plaintext_connect_string();
    let secure = cluster.connect_string();
    // The same TLS settings reach the TLS port with TLS and a `tcp://` one without.
    for (servers, identity) in [(secure.clone(), vec!["CN=client".to_owned()]), (format!("tcp://{plain}"), vec![])] {
        let session = builder().tls(client_tls(&cluster)).connect(&servers).await.unwrap();
        assert_eq!(identities(&session, "x509").await, identity, "{servers}");
    }
    let both = format!("tcp://{plain},{secure}");
    let session = builder().tls(client_tls(&cluster)).connect(&both).await.unwrap();
    Mutex::new(&session, "/tls/mixed").unwrap().lock().await.unwrap().release().await.unwrap();
}
