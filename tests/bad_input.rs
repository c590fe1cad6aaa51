//! Bad input gets a typed error that says what is wrong, in bounded time, and loses nothing.

mod common;

use std::time::Duration;

use common::{children, observer, session, standalone};
use futures_util::FutureExt;
use tokio::time::Instant;
use zk_recipes::testing::{Fault, Proxy, TestingCluster};
use zk_recipes::{Error, LeaderLatch, MAX_PERMITS, Mutex, ReadWriteLock, Semaphore, Session, SessionState, zk};

#[tokio::test]
async fn bad_paths_are_rejected_with_the_reason() {
    let cluster = standalone().await;
    let session = session(&cluster.connect_string(), Duration::from_secs(4)).await;
    let cases = [
        ("", "empty"),
        ("relative", "absolute"),
        ("/trailing/", "must not end with '/'"),
        ("/a//b", "empty segment"),
        ("/a\0b", "NUL"),
        ("/zookeeper/quota", "reserved for ZooKeeper"),
        ("/", "root"),
        ("/a/../b", "relative segments"),
    ];
    for (path, expected) in cases {
        let errors = [
            Mutex::new(&session, path).unwrap_err(),
            ReadWriteLock::new(&session, path).unwrap_err(),
            Semaphore::new(&session, path, 1).unwrap_err(),
        ];
        for err in errors {
            assert!(matches!(&err, Error::InvalidPath { path: p, .. } if p == path), "{path:?}: {err:?}");
            let message = err.to_string();
            assert!(message.contains(expected), "{path:?}: {message}");
        }
    }
}

#[tokio::test]
async fn impossible_permit_counts_are_rejected_before_touching_the_server() {
    let cluster = standalone().await;
    let connect = cluster.connect_string();
    let session = session(&connect, Duration::from_secs(4)).await;
    for permits in [0, MAX_PERMITS + 1, u32::MAX] {
        let err = Semaphore::new(&session, "/sem", permits).unwrap_err();
        assert_eq!(err, Error::InvalidPermits { requested: permits, limit: MAX_PERMITS });
        assert!(err.to_string().contains(&format!("use 1 to {MAX_PERMITS}")), "{err}");
    }
    let semaphore = Semaphore::new(&session, "/sem", 3).unwrap();
    for count in [0, 4] {
        let err = semaphore.acquire_many(count).await.unwrap_err();
        assert_eq!(err, Error::InvalidPermits { requested: count, limit: 3 });
        let err = semaphore.acquire_many_timeout(count, Duration::from_secs(1)).await.unwrap_err();
        assert_eq!(err, Error::InvalidPermits { requested: count, limit: 3 });
    }
    assert!(observer(&connect).await.check_stat("/sem").await.unwrap().is_none(), "nothing was created");
    // A timeout too large to add to the clock means no deadline, not a panic.
    semaphore.acquire_timeout(Duration::MAX).await.unwrap().release().await.unwrap();
    semaphore.acquire_many_timeout(3, Duration::MAX).await.unwrap().release().await.unwrap();
}

#[tokio::test]
async fn an_empty_server_list_is_rejected_before_connecting() {
    for servers in ["", " ", ",", "/chroot"] {
        let err = Session::connect(servers).await.unwrap_err();
        assert_eq!(err, Error::NoServers, "{servers:?}");
        assert!(err.to_string().contains("127.0.0.1:2181"), "the message shows a valid example");
    }
}

#[tokio::test]
async fn an_unparsable_server_list_says_why() {
    let err = Session::connect("127.0.0.1:notaport").await.unwrap_err();
    assert!(matches!(err, Error::InvalidServers { ref servers, .. } if servers == "127.0.0.1:notaport"), "{err:?}");
}

#[tokio::test]
async fn unreachable_servers_fail_within_the_connect_timeout() {
    // Nothing listens on a port we bound and released.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
    // A blackhole accepts connections but never answers.
    let cluster = standalone().await;
    let silent = Proxy::start(cluster.address(0)).await.unwrap();
    silent.set_fault(Fault::Blackhole);
    for servers in [closed, silent.address().to_string()] {
        let started = Instant::now();
        let err = Session::builder().connect_timeout(Duration::from_secs(1)).connect(&servers).await.unwrap_err();
        let took = started.elapsed();
        assert!(matches!(err, Error::Unreachable { .. }), "{servers}: {err:?}");
        assert!(err.to_string().contains(&servers) && err.to_string().contains("1s"), "{err}");
        assert!(took < Duration::from_secs(3), "{servers}: failed only after {took:?}");
    }
}

#[tokio::test]
async fn a_connect_rides_out_an_outage_longer_than_the_session_timeout() {
    let cluster = standalone().await;
    let proxy = Proxy::start(cluster.address(0)).await.unwrap();
    proxy.set_fault(Fault::Refuse);
    let session_timeout = Duration::from_secs(2);
    let servers = proxy.address().to_string();
    let mut connect = tokio::spawn(async move {
        Session::builder()
            .session_timeout(session_timeout)
            .connect_timeout(Duration::from_secs(60))
            .connect(&servers)
            .await
    });
    // Refused for twice the session timeout: `zookeeper-client` alone gives up after one.
    common::stays_pending("the connect gave up before its connect timeout", 2 * session_timeout, &mut connect).await;
    proxy.set_fault(Fault::Pass);
    let session = connect.await.unwrap().expect("a session once the server answers");
    assert_eq!(session.state(), SessionState::Connected);
}

#[tokio::test]
async fn missing_permission_is_a_typed_error_and_leaves_nothing() {
    let cluster = standalone().await;
    let connect = cluster.connect_string();
    let admin = Session::builder().digest("admin", "s3cret").connect(&connect).await.unwrap();
    let client = admin.client().await.unwrap();
    // Readable by anyone, writable by the admin only.
    let mut acls = zk::Acls::creator_all().to_vec();
    acls.extend(zk::Acls::anyone_read().iter().cloned());
    let protected = zk::CreateMode::Persistent.with_acls(zk::Acls::new(&acls));
    client.create("/protected", b"", &protected).await.unwrap();
    client.create("/protected/existing", b"", &protected).await.unwrap();

    let stranger = session(&connect, Duration::from_secs(4)).await;
    // The lock directory cannot be created under /protected ...
    let err = Mutex::new(&stranger, "/protected/new").unwrap().lock().await.unwrap_err();
    assert_eq!(err, Error::NoAuth { path: "/protected/new".into() });
    assert!(err.to_string().contains("ACL") && err.to_string().contains("SessionBuilder::digest"), "{err}");
    // ... and no contender node in an existing directory.
    let err = Mutex::new(&stranger, "/protected/existing").unwrap().lock().await.unwrap_err();
    assert_eq!(err, Error::NoAuth { path: "/protected/existing".into() });
    // The same for the other recipes.
    let err = ReadWriteLock::new(&stranger, "/protected/existing").unwrap().write().await.unwrap_err();
    assert_eq!(err, Error::NoAuth { path: "/protected/existing".into() });
    let err = ReadWriteLock::new(&stranger, "/protected/existing").unwrap().try_read().await.unwrap_err();
    assert_eq!(err, Error::NoAuth { path: "/protected/existing".into() });
    let err = Semaphore::new(&stranger, "/protected/sem", 2).unwrap().acquire().await.unwrap_err();
    assert_eq!(err, Error::NoAuth { path: "/protected/sem/locks".into() });
    let observer = observer(&connect).await;
    assert!(children(&observer, "/protected/existing").await.is_empty());
    assert_eq!(children(&observer, "/protected").await, ["existing"]);
}

/// A lock attempt whose server goes away ends with an error in bounded time, not a hang.
#[tokio::test]
async fn a_wait_ends_when_the_server_is_gone_for_good() {
    let cluster = standalone().await;
    let connect = cluster.connect_string();
    let holder = session(&connect, Duration::from_secs(2)).await;
    let waiter = session(&connect, Duration::from_secs(2)).await;
    let _guard = Mutex::new(&holder, "/gone").unwrap().lock().await.unwrap();
    let mutex = Mutex::new(&waiter, "/gone").unwrap();
    let waiting = tokio::spawn(async move { mutex.lock().await });
    common::count_is(&observer(&connect).await, "/gone", 2).await;

    let started = Instant::now();
    cluster.kill(0).await.unwrap();
    let result = tokio::time::timeout(Duration::from_secs(15), waiting).await.expect("never hangs").unwrap();
    assert_eq!(result.unwrap_err(), Error::SessionExpired);
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
}

/// Node data that cannot fit in a request the server accepts is refused before anything is
/// sent: sending it would make the server drop the connection on every try.
#[tokio::test]
async fn node_data_too_large_for_the_server_is_refused_before_sending() {
    let cluster = standalone().await;
    let connect = cluster.connect_string();
    let session = session(&connect, Duration::from_secs(4)).await;
    let mut states = session.states();
    let huge = vec![b'x'; 1 << 20];
    let err = Mutex::new(&session, "/big").unwrap().with_data(huge.clone()).lock().await.unwrap_err();
    let Error::DataTooLarge { ref path, size, limit } = err else { panic!("{err:?}") };
    assert_eq!((path.as_str(), size), ("/big", 1 << 20));
    assert!(limit < size && limit > 1_000_000, "the default jute.maxbuffer less the path and ACLs: {limit}");
    assert!(err.to_string().contains("jute.maxbuffer"), "{err}");
    let err = Semaphore::new(&session, "/big-sem", 2).unwrap().with_data(huge.clone()).try_acquire().await.unwrap_err();
    assert!(matches!(err, Error::DataTooLarge { .. }), "{err:?}");
    let id = String::from_utf8(huge).unwrap();
    let err = LeaderLatch::new(&session, "/big-latch", &id).unwrap().start().await.unwrap_err();
    assert!(matches!(err, Error::DataTooLarge { .. }), "{err:?}");
    // Nothing was sent: no node, and the connection never dropped.
    let observer = observer(&connect).await;
    for dir in ["/big", "/big-sem", "/big-latch"] {
        assert!(observer.check_stat(dir).await.unwrap().is_none(), "{dir} was created");
    }
    assert_eq!(states.current(), SessionState::Connected);
    assert!(states.changed().now_or_never().is_none(), "the session never left Connected");
    // Data that fits still works.
    Mutex::new(&session, "/big").unwrap().with_data(vec![b'x'; 900_000]).lock().await.unwrap().release().await.unwrap();
}

/// Servers with a smaller `jute.maxbuffer` than the session assumes drop the connection on each
/// create of too large a node: the attempt gives up with an error that says why, rather than
/// retrying for ever; told the servers' limit, the session refuses the data before sending.
#[tokio::test]
async fn a_create_the_server_keeps_dropping_fails_with_the_reason() {
    common::init_tracing();
    let cluster = TestingCluster::builder().system_property("jute.maxbuffer", "65536").start().await.unwrap();
    let connect = cluster.connect_string();
    let session = session(&connect, Duration::from_secs(4)).await;
    let data = vec![b'x'; 200_000];
    let started = Instant::now();
    let err = tokio::time::timeout(
        Duration::from_secs(60),
        Mutex::new(&session, "/dropped").unwrap().with_data(data.clone()).lock(),
    )
    .await
    .expect("gives up in bounded time")
    .unwrap_err();
    assert!(matches!(err, Error::CreateDropped { ref path, attempts: 11 } if path == "/dropped"), "{err:?}");
    assert!(err.to_string().contains("jute.maxbuffer"), "{err}");
    tracing::info!(took = ?started.elapsed(), "gave up");
    assert!(children(&observer(&connect).await, "/dropped").await.is_empty());

    let told = Session::builder().jute_max_buffer(65536).connect(&connect).await.unwrap();
    let err = Mutex::new(&told, "/dropped").unwrap().with_data(data).lock().await.unwrap_err();
    assert!(matches!(err, Error::DataTooLarge { limit, .. } if limit < 65536), "{err:?}");
}

/// Durations too large to add or multiply are options ZooKeeper cannot grant, or no deadline at
/// all — never a panic.
#[tokio::test]
async fn huge_and_zero_durations_are_invalid_options_or_no_deadline_never_a_panic() {
    let cluster = standalone().await;
    let connect = cluster.connect_string();
    for timeout in [Duration::ZERO, Duration::from_millis(i32::MAX as u64 + 1), Duration::MAX] {
        let err = Session::builder().session_timeout(timeout).connect(&connect).await.unwrap_err();
        assert!(matches!(err, Error::InvalidOption { .. }), "{timeout:?}: {err:?}");
        assert!(err.to_string().contains("session timeout"), "{err}");
    }
    let session = Session::builder().connect_timeout(Duration::MAX).connect(&connect).await.unwrap();
    let mutex = Mutex::new(&session, "/huge").unwrap();
    mutex.lock_timeout(Duration::MAX).await.unwrap().release().await.unwrap();
    session.close().await;
}
