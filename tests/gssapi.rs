//! SASL GSSAPI (Kerberos) against real servers that require it, logged in through a real MIT
//! Kerberos KDC the harness starts on loopback; clients get their tickets from client keytabs.
//!
//! The GSSAPI library takes the client's credentials from the process environment
//! (`KRB5_CONFIG`, `KRB5_CLIENT_KTNAME`, `KRB5CCNAME`), so each test holds `ENVIRONMENT` while
//! it sets them and connects: tests of this file that share a process do not mix theirs.

mod common;

use std::path::Path;
use std::time::Duration;

use zk_recipes::testing::{SERVICE_HOST, TestingCluster, TestingKdc};
use zk_recipes::{Error, GssapiConfig, Mutex, Session, SessionBuilder, zk};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

static ENVIRONMENT: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn kdc() -> TestingKdc {
    common::init_tracing();
    TestingKdc::start().await.expect("a Kerberos KDC (see the message for how to install it)")
}

async fn cluster(kdc: &TestingKdc) -> TestingCluster {
    let builder = TestingCluster::builder().kerberos(kdc).expect("the servers' JAAS file");
    builder.start().await.expect("real ZooKeeper servers (see the message for how to install them)")
}

/// Makes `keytab` the process's Kerberos credentials, with a ticket cache of its own.
fn use_keytab(kdc: &TestingKdc, keytab: &Path, cache: &str) {
    for (key, value) in kdc.client_env(keytab, cache) {
        // SAFETY: every test of this file sets the environment only while holding
        // `ENVIRONMENT`, and nothing else in the process writes it.
        unsafe { std::env::set_var(key, value) };
    }
}

/// The servers log in as zookeeper/localhost, and the connect string names 127.0.0.1.
fn builder() -> SessionBuilder {
    Session::builder().connect_timeout(CONNECT_TIMEOUT).sasl_gssapi(GssapiConfig::new().host(SERVICE_HOST))
}

fn assert_kerberos(error: &Error, reason_has: &str) {
    match error {
        Error::Kerberos { service, reason } => {
            assert_eq!(service, "zookeeper/localhost", "{error}");
            assert!(reason.contains(reason_has), "the reason {reason:?} should mention {reason_has:?}");
        }
        other => panic!("expected a Kerberos error, got {other:?}: {other}"),
    }
    let message = error.to_string();
    for fix in ["KRB5_CLIENT_KTNAME", "KRB5CCNAME", "KRB5_CONFIG"] {
        assert!(message.contains(fix), "the message names {fix}: {message}");
    }
}

#[tokio::test]
async fn a_mutex_is_taken_and_released_over_gssapi() {
    let kdc = kdc().await;
    let cluster = cluster(&kdc).await;
    let _environment = ENVIRONMENT.lock().await;
    use_keytab(&kdc, &kdc.client_keytab(), "mutex");
    let session = builder().connect(&cluster.connect_string()).await.unwrap();
    let client = session.client().await.unwrap();
    let users = client.list_auth_users().await.unwrap();
    assert!(users.iter().any(|u| u.scheme() == "sasl" && u.user() == kdc.client_principal()), "{users:?}");
    let guard = Mutex::new(&session, "/gssapi/mutex").unwrap().lock().await.unwrap();
    guard.release().await.unwrap();
    drop(client);
    session.close().await;
}

#[tokio::test]
async fn a_client_without_its_keytab_gets_a_kerberos_error_naming_what_to_fix() {
    let kdc = kdc().await;
    let cluster = cluster(&kdc).await;
    let _environment = ENVIRONMENT.lock().await;
    use_keytab(&kdc, &kdc.path("absent.keytab"), "absent");
    let error = common::connect_error(builder(), &cluster.connect_string(), CONNECT_TIMEOUT).await;
    assert_kerberos(&error, "no Kerberos credentials");
}

#[tokio::test]
async fn a_client_with_a_stale_keytab_gets_a_kerberos_error() {
    let kdc = kdc().await;
    let cluster = cluster(&kdc).await;
    // The KDC has a new key for the client; its keytab still holds the old one.
    kdc.rotate_key(&kdc.client_principal()).unwrap();
    let _environment = ENVIRONMENT.lock().await;
    use_keytab(&kdc, &kdc.client_keytab(), "stale");
    let error = common::connect_error(builder(), &cluster.connect_string(), CONNECT_TIMEOUT).await;
    assert_kerberos(&error, "Decrypt integrity check failed");
}

#[tokio::test]
async fn a_session_without_gssapi_is_told_authentication_is_required() {
    let kdc = kdc().await;
    let cluster = cluster(&kdc).await;
    let error = common::connect_error(
        Session::builder().connect_timeout(CONNECT_TIMEOUT),
        &cluster.connect_string(),
        CONNECT_TIMEOUT,
    )
    .await;
    assert_eq!(error, Error::AuthRequired, "{error}");
}

#[tokio::test]
async fn kerberos_identities_protect_a_directory_from_other_principals() {
    let kdc = kdc().await;
    let stranger_keytab = kdc.path("stranger.keytab");
    kdc.add_principal("stranger", &stranger_keytab).unwrap();
    let cluster = cluster(&kdc).await;
    let servers = cluster.connect_string();
    let protected = || builder().acls(zk::Acls::creator_all().to_vec());
    let _environment = ENVIRONMENT.lock().await;
    use_keytab(&kdc, &kdc.client_keytab(), "owner");
    let owner = protected().connect(&servers).await.unwrap();
    use_keytab(&kdc, &stranger_keytab, "stranger");
    let stranger = protected().connect(&servers).await.unwrap();

    let holder = Mutex::new(&owner, "/gssapi/acl/lock").unwrap().lock().await.unwrap();
    let (acls, _) = owner.client().await.unwrap().get_acl(holder.node()).await.unwrap();
    assert!(
        acls.iter().any(|acl| acl.scheme() == "sasl" && acl.id() == kdc.client_principal()),
        "the holder's node belongs to sasl:{}: {acls:?}",
        kdc.client_principal()
    );
    match Mutex::new(&stranger, "/gssapi/acl/lock").unwrap().try_lock().await {
        Err(Error::NoAuth { path }) => assert!(path.starts_with("/gssapi/acl/lock"), "{path}"),
        other => panic!("expected NoAuth for the stranger, got {other:?}"),
    }
    let client = stranger.client().await.unwrap();
    assert_eq!(client.delete(holder.node(), None).await, Err(zk::Error::NoAuth));
    holder.release().await.unwrap();
}

#[tokio::test]
async fn servers_that_reject_the_handshake_give_a_kerberos_error() {
    let kdc = kdc().await;
    let cluster = cluster(&kdc).await;
    // The servers logged in with the old key: they cannot read tickets made with the new one.
    kdc.rotate_key(&format!("zookeeper/{SERVICE_HOST}")).unwrap();
    let _environment = ENVIRONMENT.lock().await;
    use_keytab(&kdc, &kdc.client_keytab(), "rejected");
    let error = common::connect_error(builder(), &cluster.connect_string(), CONNECT_TIMEOUT).await;
    assert_kerberos(&error, "rejected");
}
