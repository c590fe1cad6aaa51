//! ACL-protected lock directories: recipes create their nodes and missing parents with the
//! session's ACL, so that a session with another identity (or none) cannot join the queue or
//! delete a holder's or a waiter's node, while one granted READ can still see who holds.

mod common;

use std::time::Duration;

use zk_recipes::testing::{ClientAuth, TestingCluster};
use zk_recipes::zk::{self, Acl, AuthId, Permission};
use zk_recipes::{Error, Mutex, ReadWriteLock, Semaphore, Session, SessionBuilder, TlsConfig, inspect};

/// The recommended ACL of `recipes/security.md`: everything for the identities of the
/// session that creates the node, READ for an operator's identity (for `status`).
fn recommended(reader: &str) -> Vec<Acl> {
    let mut acls = zk::Acls::creator_all().to_vec();
    acls.push(Acl::new(Permission::READ, AuthId::new("x509", reader)));
    acls
}

async fn tls_cluster() -> TestingCluster {
    common::init_tracing();
    TestingCluster::builder().tls(ClientAuth::Need).start().await.expect("real ZooKeeper servers")
}

/// A session that presents a client certificate `CN=<name>` from the cluster's CA.
async fn as_identity(cluster: &TestingCluster, name: &str, acls: Option<Vec<Acl>>) -> Session {
    let tls = cluster.tls().unwrap();
    let cert = tls.ca.client(name).unwrap();
    let config = TlsConfig::ca_file(&tls.ca.cert_path).identity_files(&cert.cert_path, &cert.key_path);
    let mut builder = Session::builder().connect_timeout(Duration::from_secs(10)).tls(config);
    if let Some(acls) = acls {
        builder = builder.acls(acls);
    }
    builder.connect(&cluster.connect_string()).await.unwrap()
}

fn assert_no_auth(error: Error, dir: &str) {
    match &error {
        Error::NoAuth { path } => assert!(path.starts_with(dir), "{path} is not under {dir}"),
        other => panic!("expected NoAuth under {dir}, got {other:?}"),
    }
    let message = error.to_string();
    assert!(message.contains("recipes/security.md") && message.contains("ACL"), "{message}");
}

#[tokio::test]
async fn a_stranger_cannot_join_a_protected_queue_nor_delete_its_holder_or_waiter() {
    let cluster = tls_cluster().await;
    let dir = "/acl/x509/lock";
    let owner = as_identity(&cluster, "payments", Some(recommended("CN=operator"))).await;
    let colleague = as_identity(&cluster, "payments", Some(recommended("CN=operator"))).await;
    let holder = Mutex::new(&owner, dir).unwrap().lock().await.unwrap();
    // A waiter of the same identity queues behind the holder: the ACL admits it.
    let waiting = tokio::spawn({
        let mutex = Mutex::new(&colleague, dir).unwrap();
        async move { mutex.lock().await }
    });
    // The operator's READ is enough to watch the queue.
    let operator = as_identity(&cluster, "operator", None).await.client().await.unwrap();
    common::count_is(&operator, dir, 2).await;

    let stranger = as_identity(&cluster, "stranger", None).await;
    let error = Mutex::new(&stranger, dir).unwrap().try_lock().await.unwrap_err();
    assert_no_auth(error, dir);

    let client = stranger.client().await.unwrap();
    for child in common::children(&operator, dir).await {
        let node = format!("{dir}/{child}");
        assert_eq!(client.delete(&node, None).await, Err(zk::Error::NoAuth), "the stranger deleted {node}");
    }
    // No identity at all (a plaintext client on the harness's plaintext port) fares no better.
    let anonymous = common::observer(&cluster.plaintext_connect_string()).await;
    let open = zk::CreateMode::Ephemeral.with_acls(zk::Acls::anyone_all());
    assert_eq!(anonymous.create(&format!("{dir}/x"), b"", &open).await.err(), Some(zk::Error::NoAuth));
    assert_eq!(anonymous.delete(holder.node(), None).await, Err(zk::Error::NoAuth));

    holder.release().await.unwrap();
    let next = tokio::time::timeout(Duration::from_secs(20), waiting).await.unwrap().unwrap().unwrap();
    next.release().await.unwrap();
}

#[tokio::test]
async fn an_operator_with_read_permission_alone_sees_the_holder_and_the_queue() {
    let cluster = tls_cluster().await;
    let dir = "/acl/read/lock";
    let owner = as_identity(&cluster, "payments", Some(recommended("CN=operator"))).await;
    let holder = Mutex::new(&owner, dir).unwrap().lock().await.unwrap();

    let operator = as_identity(&cluster, "operator", None).await;
    let snapshot = inspect(&operator, dir).await.unwrap();
    assert_eq!(snapshot.holders.len(), 1, "{snapshot:?}");
    assert_eq!(snapshot.holders[0].node, holder.node());
    // READ is all it has.
    let error = Mutex::new(&operator, dir).unwrap().try_lock().await.unwrap_err();
    assert_no_auth(error, dir);
    holder.release().await.unwrap();
}

#[tokio::test]
async fn every_recipe_creates_its_missing_parents_with_the_sessions_acl() {
    let cluster = tls_cluster().await;
    let owner = as_identity(&cluster, "payments", Some(zk::Acls::creator_all().to_vec())).await;
    let stranger = as_identity(&cluster, "stranger", None).await;
    let expected = vec![Acl::new(Permission::ALL, AuthId::new("x509", "CN=payments"))];
    let client = owner.client().await.unwrap();

    let guard = ReadWriteLock::new(&owner, "/acl/parents/rw").unwrap().write().await.unwrap();
    let lease = Semaphore::new(&owner, "/acl/parents/sem", 2).unwrap().acquire().await.unwrap();
    for dir in
        ["/acl/parents", "/acl/parents/rw", "/acl/parents/sem", "/acl/parents/sem/leases", "/acl/parents/sem/locks"]
    {
        let (acls, _) = client.get_acl(dir).await.unwrap();
        assert_eq!(acls, expected, "the ACL of {dir}");
    }
    let error = ReadWriteLock::new(&stranger, "/acl/parents/rw").unwrap().read().await.unwrap_err();
    assert_no_auth(error, "/acl/parents/rw");
    let error = Semaphore::new(&stranger, "/acl/parents/sem", 2).unwrap().acquire().await.unwrap_err();
    assert_no_auth(error, "/acl/parents/sem");
    guard.release().await.unwrap();
    lease.release().await.unwrap();
}

#[tokio::test]
async fn sasl_identities_protect_a_directory_from_other_users() {
    common::init_tracing();
    let cluster = TestingCluster::builder()
        .sasl_user("alice", "alice-secret")
        .sasl_user("bob", "bob-secret")
        .start()
        .await
        .expect("real ZooKeeper servers");
    let servers = cluster.connect_string();
    let connect = |user: &'static str, password: &'static str| {
        let builder = SessionBuilder::default().sasl_digest(user, password).acls(zk::Acls::creator_all().to_vec());
        builder.connect(&servers)
    };
    let alice = connect("alice", "alice-secret").await.unwrap();
    let bob = connect("bob", "bob-secret").await.unwrap();
    let holder = Mutex::new(&alice, "/acl/sasl/lock").unwrap().lock().await.unwrap();
    let error = Mutex::new(&bob, "/acl/sasl/lock").unwrap().try_lock().await.unwrap_err();
    assert_no_auth(error, "/acl/sasl/lock");
    let client = bob.client().await.unwrap();
    assert_eq!(client.delete(holder.node(), None).await, Err(zk::Error::NoAuth));
    holder.release().await.unwrap();
}
