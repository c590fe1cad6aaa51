use std::collections::HashSet;

use super::*;
use crate::queue::children::{Parsed, parse};

const KAZOO: &str = "0123456789abcdef0123456789abcdef__lock__";

fn create(path: &str, mode: Mode, sequential: bool) -> Request {
    Request::Create { path: path.to_owned(), data: Vec::new(), mode, sequential }
}

/// A server with a live session `s` that created the persistent `/q`.
fn with_dir() -> (Server, SessionId) {
    let mut server = Server::new();
    let s = server.open_session();
    server.apply(s, RequestId(0), create("/q", Mode::Persistent, false)).unwrap();
    server.deliver(s);
    (server, s)
}

/// Creates a node as `s`, takes its reply off the outbox, and returns the created path.
fn make(server: &mut Server, s: SessionId, path: &str, mode: Mode, sequential: bool) -> Path {
    let reply = server.apply(s, RequestId(99), create(path, mode, sequential));
    assert!(server.drop_reply(s, RequestId(99)));
    match reply {
        Ok(Reply::Created { path, .. }) => path,
        other => panic!("create {path}: {other:?}"),
    }
}

fn watch(server: &mut Server, s: SessionId, req: Request) {
    server.apply(s, RequestId(98), req).ok();
    assert!(server.drop_reply(s, RequestId(98)));
}

fn exists(path: &str) -> Request {
    Request::Exists { path: path.to_owned(), watch: true }
}

fn children(path: &str) -> Request {
    Request::GetChildren { path: path.to_owned(), watch: true }
}

fn event(kind: EventType, path: &str) -> Delivery {
    Delivery::Event(WatchedEvent { kind, path: path.to_owned() })
}

#[test]
fn sequential_names_come_from_the_creation_counter() {
    // ZooKeeper 3.8.0, observed (protocols.md §1.1): 0; delete; 1; a plain child; 3.
    let (mut server, s) = with_dir();
    let first = make(&mut server, s, "/q/x-", Mode::Ephemeral, true);
    assert_eq!(first, "/q/x-0000000000");
    server.apply(s, RequestId(1), Request::Delete { path: first, version: None }).unwrap();
    assert_eq!(make(&mut server, s, "/q/x-", Mode::Ephemeral, true), "/q/x-0000000001");
    make(&mut server, s, "/q/plain", Mode::Persistent, false);
    assert_eq!(make(&mut server, s, "/q/x-", Mode::Ephemeral, true), "/q/x-0000000003");
    // The client sees 2 * 4 creates - 3 children = 5, as observed: not the next number.
    let stat = server.stat("/q").unwrap();
    assert_eq!((stat.cversion, stat.num_children), (5, 3));
    // An empty prefix is allowed when sequential, and names the same way.
    assert_eq!(make(&mut server, s, "/q/", Mode::Persistent, true), "/q/0000000004");
}

#[test]
fn sequential_names_wrap_as_a_signed_32_bit_counter() {
    let (mut server, s) = with_dir();
    let path = format!("/q/{KAZOO}");
    server.set_cversion("/q", i32::MAX);
    let names: Vec<Path> = (0..2).map(|_| make(&mut server, s, &path, Mode::Ephemeral, true)).collect();
    assert_eq!(names, [format!("{path}2147483647"), format!("{path}-2147483648")]);
    server.set_cversion("/q", -1);
    assert_eq!(make(&mut server, s, &path, Mode::Ephemeral, true), format!("{path}-000000001"));
    assert_eq!(make(&mut server, s, &path, Mode::Ephemeral, true), format!("{path}0000000000"));
    // The engine's parser reads these names as the server wrote them.
    let name = |sequence: &str| format!("{KAZOO}{sequence}");
    assert!(matches!(parse(&name("2147483647")), Parsed::Contender(c) if c.sequence == i32::MAX as u32));
    assert_eq!(parse(&name("-2147483648")), Parsed::Wrapped);
    assert_eq!(parse(&name("-000000001")), Parsed::Wrapped);
    assert_eq!(server.children("/q").len(), 4);
}

#[test]
fn a_recreated_parent_counts_from_zero_again() {
    let (mut server, s) = with_dir();
    let node = make(&mut server, s, "/q/x-", Mode::Persistent, true);
    server.outside_delete(&node).unwrap();
    server.outside_delete("/q").unwrap();
    make(&mut server, s, "/q", Mode::Container, false);
    assert_eq!(make(&mut server, s, "/q/x-", Mode::Persistent, true), "/q/x-0000000000");
}

#[test]
fn create_fails_as_zookeeper_does() {
    let (mut server, s) = with_dir();
    let mut attempt = |path: &str, mode| server.apply(s, RequestId(1), create(path, mode, false));
    assert_eq!(attempt("/missing/x", Mode::Persistent), Err(ZkError::NoNode));
    assert_eq!(attempt("/q", Mode::Persistent), Err(ZkError::NodeExists));
    assert_eq!(attempt("/q/", Mode::Persistent), Err(ZkError::BadArguments));
    assert_eq!(attempt("relative", Mode::Persistent), Err(ZkError::BadArguments));
    assert!(attempt("/q/e", Mode::Ephemeral).is_ok());
    assert_eq!(attempt("/q/e/child", Mode::Persistent), Err(ZkError::NoChildrenForEphemerals));
    // NodeExists is checked before NoChildrenForEphemerals (PrepRequestProcessor's order).
    assert_eq!(attempt("/q/e", Mode::Persistent), Err(ZkError::NodeExists));
    let delete_root = server.apply(s, RequestId(2), Request::Delete { path: "/".to_owned(), version: None });
    assert_eq!(delete_root, Err(ZkError::BadArguments));
}

#[test]
fn an_ending_session_deletes_its_ephemerals_firing_exactly_the_watches_set() {
    let (mut server, owner) = with_dir();
    let (b, c) = (server.open_session(), server.open_session());
    let node = make(&mut server, owner, "/q/x-", Mode::Ephemeral, true);
    make(&mut server, owner, "/q/kept", Mode::Persistent, false);
    watch(&mut server, owner, exists(&node));
    watch(&mut server, b, exists(&node));
    watch(&mut server, c, children("/q"));
    watch(&mut server, c, Request::GetData { path: "/q/kept".to_owned(), watch: true });
    let stat = server.stat(&node).unwrap();
    assert_eq!(stat.ephemeral_owner, owner.0);
    assert_eq!(server.stat("/q/kept").unwrap().ephemeral_owner, 0);

    server.expire(owner);
    assert_eq!(server.stat(&node), None);
    assert_eq!(server.children("/q"), ["kept"]);
    assert_eq!(server.outbox(b), [event(EventType::Deleted, &node)]);
    assert_eq!(server.outbox(c), [event(EventType::ChildrenChanged, "/q")]);
    // Its own watch fired into its closing connection; then its watches are gone.
    assert_eq!(server.outbox(owner), [event(EventType::Deleted, &node)]);
    assert_eq!(server.session_state(owner), SessionState::Expired);

    // Closing is the same, and an ended session ends once.
    let zxid = server.zxid();
    make(&mut server, b, "/q/b", Mode::Ephemeral, false);
    server.close_session(b);
    server.close_session(b);
    assert_eq!(server.zxid(), zxid + 2);
    assert_eq!(server.children("/q"), ["kept"]);
    assert_eq!(server.session_state(b), SessionState::Closed);
    assert_eq!(server.outbox(c), [event(EventType::ChildrenChanged, "/q")], "c's child watch was one-shot");
}

#[test]
fn requests_of_an_ended_session_fail_and_change_nothing() {
    let (mut server, s) = with_dir();
    let other = server.open_session();
    watch(&mut server, other, exists("/q/late"));
    server.expire(s);
    let before = server.clone();
    let result = server.apply(s, RequestId(7), create("/q/late", Mode::Ephemeral, false));
    assert_eq!(result, Err(ZkError::SessionExpired));
    assert_eq!(server.outbox(s), [Delivery::Reply { request: RequestId(7), result: Err(ZkError::SessionExpired) }]);
    assert_eq!(server.deliver(s), Some(Delivery::Reply { request: RequestId(7), result }));
    assert_eq!(server, before, "nothing else changed: no node, no zxid, no event");
    assert_eq!(server.apply(s, RequestId(8), exists("/q")), Err(ZkError::SessionExpired));
}

#[test]
fn watches_are_one_shot() {
    let (mut server, s) = with_dir();
    watch(&mut server, s, exists("/q"));
    // Registered twice on one path: still one watch, one event.
    watch(&mut server, s, Request::GetData { path: "/q".to_owned(), watch: true });
    let set = |server: &mut Server| {
        let request = Request::SetData { path: "/q".to_owned(), data: b"x".to_vec(), version: None };
        server.apply(s, RequestId(5), request).unwrap();
        assert!(server.drop_reply(s, RequestId(5)));
    };
    set(&mut server);
    set(&mut server);
    assert_eq!(server.outbox(s), [event(EventType::DataChanged, "/q")]);
    server.deliver(s);
    watch(&mut server, s, exists("/q"));
    set(&mut server);
    assert_eq!(server.outbox(s), [event(EventType::DataChanged, "/q")]);
    let stat = server.stat("/q").unwrap();
    assert_eq!((stat.version, stat.mzxid), (3, server.zxid()));
    assert!(stat.czxid < stat.mzxid);
}

#[test]
fn an_exists_watch_on_a_missing_node_fires_on_its_creation_a_get_data_sets_none() {
    let (mut server, s) = with_dir();
    let other = server.open_session();
    assert_eq!(server.apply(s, RequestId(1), exists("/q/n")), Ok(Reply::Exists(None)));
    let get = Request::GetData { path: "/q/n".to_owned(), watch: true };
    assert_eq!(server.apply(other, RequestId(1), get), Err(ZkError::NoNode));
    server.deliver(s);
    server.deliver(other);
    make(&mut server, other, "/q/n", Mode::Persistent, false);
    assert_eq!(server.outbox(s), [event(EventType::Created, "/q/n")]);
    assert_eq!(server.outbox(other), []);
    let get_children = Request::GetChildren { path: "/q/n/none".to_owned(), watch: true };
    assert_eq!(server.apply(other, RequestId(2), get_children), Err(ZkError::NoNode));
    server.deliver(other);
    make(&mut server, s, "/q/n/none", Mode::Persistent, false);
    assert_eq!(server.outbox(other), [], "a failed getChildren set no watch");
}

#[test]
fn a_child_watch_fires_on_child_changes_and_on_the_parents_delete() {
    let (mut server, s) = with_dir();
    let w = server.open_session();
    watch(&mut server, w, children("/q"));
    let node = make(&mut server, s, "/q/x-", Mode::Ephemeral, true);
    watch(&mut server, w, children("/q"));
    server.outside_delete(&node).unwrap();
    assert_eq!(server.outbox(w), vec![event(EventType::ChildrenChanged, "/q"); 2]);
    server.deliver(w);
    server.deliver(w);
    let reply = server.apply(w, RequestId(2), Request::GetChildren { path: "/q".to_owned(), watch: false });
    server.deliver(w);
    let Ok(Reply::Children { names, stat }) = reply else { panic!("{reply:?}") };
    assert!(names.is_empty());
    assert_eq!((stat.cversion, stat.pzxid), (2, server.zxid()));
    // A data watch and a child watch on the deleted node: one NodeDeleted for the session.
    watch(&mut server, w, children("/q"));
    watch(&mut server, w, exists("/q"));
    watch(&mut server, s, children("/"));
    server.outside_delete("/q").unwrap();
    assert_eq!(server.outbox(w), [event(EventType::Deleted, "/q")]);
    assert_eq!(server.outbox(s), [event(EventType::ChildrenChanged, "/")]);
}

#[test]
fn a_multi_is_all_or_nothing() {
    let (mut server, s) = with_dir();
    let w = server.open_session();
    watch(&mut server, w, exists("/q/a"));
    watch(&mut server, w, children("/q"));
    let before = server.clone();
    let ops = vec![
        Op::Create { path: "/q/a".to_owned(), data: Vec::new(), mode: Mode::Persistent, sequential: false },
        Op::Check { path: "/q".to_owned(), version: Some(1) },
        Op::Delete { path: "/q/missing".to_owned(), version: None },
    ];
    assert_eq!(server.apply(s, RequestId(1), Request::Multi(ops)), Err(ZkError::BadVersion));
    assert_eq!(server.stat("/q/a"), None);
    assert_eq!(server.outbox(w), [], "no event from a failed multi");
    assert_eq!(server.stat("/q"), before.stat("/q"), "not even the creation counter moved");
    assert_eq!(server.zxid(), before.zxid() + 1, "a failed write still takes a zxid");

    let ops = vec![
        Op::Check { path: "/q".to_owned(), version: Some(0) },
        Op::Create { path: "/q/a".to_owned(), data: Vec::new(), mode: Mode::Persistent, sequential: false },
        Op::Create { path: "/q/a/x-".to_owned(), data: Vec::new(), mode: Mode::Ephemeral, sequential: true },
        Op::Delete { path: "/q/a/x-0000000000".to_owned(), version: Some(0) },
    ];
    let Ok(Reply::Multi(results)) = server.apply(s, RequestId(2), Request::Multi(ops)) else { panic!() };
    let [
        OpResult::Checked,
        OpResult::Created { path: a, stat: sa },
        OpResult::Created { path: x, stat: sx },
        OpResult::Deleted,
    ] = &results[..]
    else {
        panic!("{results:?}")
    };
    assert_eq!((a.as_str(), x.as_str()), ("/q/a", "/q/a/x-0000000000"));
    assert_eq!((sa.czxid, sx.czxid), (server.zxid(), server.zxid()), "one transaction, one zxid");
    assert_eq!(server.children("/q/a"), Vec::<String>::new());
    assert_eq!(server.outbox(w), [event(EventType::Created, "/q/a"), event(EventType::ChildrenChanged, "/q")]);
}

#[test]
fn delete_checks_the_data_version() {
    let (mut server, s) = with_dir();
    make(&mut server, s, "/q/n", Mode::Persistent, false);
    let set = Request::SetData { path: "/q/n".to_owned(), data: b"v1".to_vec(), version: Some(0) };
    let Ok(Reply::DataSet(stat)) = server.apply(s, RequestId(1), set.clone()) else { panic!() };
    assert_eq!(stat.version, 1);
    assert_eq!(server.apply(s, RequestId(2), set), Err(ZkError::BadVersion));
    let got = server.apply(s, RequestId(3), Request::GetData { path: "/q/n".to_owned(), watch: false });
    assert!(matches!(got, Ok(Reply::Data { data, stat }) if data == b"v1" && stat.version == 1));
    let delete = |path: &str, version| Request::Delete { path: path.to_owned(), version };
    assert_eq!(server.apply(s, RequestId(4), delete("/q/n", Some(0))), Err(ZkError::BadVersion));
    assert_eq!(server.apply(s, RequestId(5), delete("/q", None)), Err(ZkError::NotEmpty));
    // BadVersion is checked before NotEmpty.
    assert_eq!(server.apply(s, RequestId(6), delete("/q", Some(7))), Err(ZkError::BadVersion));
    assert_eq!(server.apply(s, RequestId(7), delete("/q/n", Some(1))), Ok(Reply::Deleted));
    assert_eq!(server.apply(s, RequestId(8), delete("/q/n", Some(1))), Err(ZkError::NoNode));
}

#[test]
fn a_container_is_reapable_only_when_empty_after_having_had_children() {
    let mut server = Server::new();
    let s = server.open_session();
    let w = server.open_session();
    make(&mut server, s, "/c", Mode::Container, false);
    make(&mut server, s, "/p", Mode::Persistent, false);
    assert_eq!(server.reapable(), Vec::<Path>::new(), "a fresh container is kept for its first child");
    assert_eq!(server.clone().reaping_never_used_containers().reapable(), ["/c"]);
    let node = make(&mut server, s, "/c/x-", Mode::Ephemeral, true);
    make(&mut server, s, "/p/x", Mode::Ephemeral, false);
    assert_eq!(server.reapable(), Vec::<Path>::new(), "not while it has a child");
    server.expire(s);
    assert_eq!(server.stat(&node), None);
    assert_eq!(server.reapable(), ["/c"], "only containers");
    watch(&mut server, w, exists("/c"));
    watch(&mut server, w, children("/"));
    server.reap("/c");
    assert_eq!(server.stat("/c"), None);
    assert_eq!(server.outbox(w), [event(EventType::Deleted, "/c"), event(EventType::ChildrenChanged, "/")]);
    assert_eq!(server.reapable(), Vec::<Path>::new());
    // A counter that wrapped negative reads as never used (`cversion > 0` in ContainerManager).
    make(&mut server, w, "/c", Mode::Container, false);
    server.set_cversion("/c", -5);
    assert_eq!(server.reapable(), Vec::<Path>::new());
}

#[test]
fn an_outside_delete_fires_watches_and_bumps_the_reported_cversion() {
    let (mut server, s) = with_dir();
    let node = make(&mut server, s, "/q/x-", Mode::Ephemeral, true);
    watch(&mut server, s, Request::GetData { path: node.clone(), watch: true });
    let before = server.stat("/q").unwrap();
    server.outside_delete(&node).unwrap();
    let after = server.stat("/q").unwrap();
    assert_eq!((before.cversion, after.cversion), (1, 2));
    assert_eq!((after.num_children, after.pzxid), (0, server.zxid()));
    assert_eq!(server.outbox(s), [event(EventType::Deleted, &node)]);
    assert_eq!(server.outside_delete(&node), Err(ZkError::NoNode));
    // The creation counter did not move: no number is skipped.
    assert_eq!(make(&mut server, s, "/q/x-", Mode::Ephemeral, true), "/q/x-0000000001");
}

#[test]
fn an_event_precedes_the_reply_and_a_connection_loss_keeps_only_events() {
    let (mut server, s) = with_dir();
    watch(&mut server, s, children("/q"));
    server.apply(s, RequestId(1), create("/q/a", Mode::Persistent, false)).unwrap();
    assert_eq!(
        server.apply(s, RequestId(2), Request::Sync { path: "/q".to_owned() }),
        Ok(Reply::Synced { path: "/q".to_owned() })
    );
    let outbox = server.outbox(s).to_vec();
    assert!(matches!(
        &outbox[..],
        [
            Delivery::Event(_),
            Delivery::Reply { request: RequestId(1), .. },
            Delivery::Reply { request: RequestId(2), .. }
        ]
    ));
    assert_eq!(server.disconnect(s), [RequestId(1), RequestId(2)]);
    assert_eq!(server.outbox(s), [event(EventType::ChildrenChanged, "/q")]);
    // The watch set before the connection dropped fires afterwards, queued for the reconnect.
    watch(&mut server, s, children("/q"));
    server.disconnect(s);
    server.outside_delete("/q/a").unwrap();
    assert_eq!(server.deliver(s), Some(event(EventType::ChildrenChanged, "/q")));
    assert_eq!(server.deliver(s), Some(event(EventType::ChildrenChanged, "/q")));
    assert_eq!(server.deliver(s), None);
    assert!(!server.drop_reply(s, RequestId(1)));
}

#[test]
fn states_deduplicate() {
    // Two sessions creating in either order reach different states (names differ), the same
    // steps twice the same one.
    let run = |first: usize| {
        let (mut server, s) = with_dir();
        let sessions = [s, server.open_session()];
        for i in [first, 1 - first] {
            make(&mut server, sessions[i], "/q/x-", Mode::Ephemeral, true);
        }
        server
    };
    let states: HashSet<Server> = [run(0), run(1), run(0)].into_iter().collect();
    assert_eq!(states.len(), 2);
    assert_eq!(Server::default(), Server::new());
}
