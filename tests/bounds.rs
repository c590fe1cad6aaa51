//! Compile-time checks of auto traits, as tokio's `async_send_sync.rs`: every holder is `Send +
//! Sync + 'static` (it can move into a task and be shared with one), and every acquisition and
//! release future is `Send` (it can be awaited inside `tokio::spawn`). Losing a bound makes this
//! file fail to compile; nothing here runs against a server.

use std::time::Duration;

use zk_recipes::{
    AnyHold, Candidate, FencedWrite, Hold, LeaderLatch, LeaderSelector, Leadership, Lease, Mutex, MutexGuard,
    ReadGuard, ReadWriteLock, Semaphore, Session, Term, WriteGuard,
};

fn send_sync_static<T: Send + Sync + 'static>() {}

fn send<T: Send>(_: T) {}

fn send_static<T: Send + 'static>(_: T) {}

fn hold<T: Hold>() {}

#[test]
fn holders_are_send_sync_static() {
    send_sync_static::<MutexGuard>();
    send_sync_static::<ReadGuard>();
    send_sync_static::<WriteGuard>();
    send_sync_static::<Lease>();
    send_sync_static::<Leadership>();
    send_sync_static::<AnyHold>();
    send_sync_static::<Term>();
    send_sync_static::<Candidate>();
    send_sync_static::<FencedWrite<'static>>();
}

#[test]
fn holders_implement_hold() {
    hold::<MutexGuard>();
    hold::<ReadGuard>();
    hold::<WriteGuard>();
    hold::<Lease>();
    hold::<Leadership>();
    hold::<AnyHold>();
}

#[test]
fn recipes_are_send_sync_static() {
    send_sync_static::<Session>();
    send_sync_static::<Mutex>();
    send_sync_static::<ReadWriteLock>();
    send_sync_static::<Semaphore>();
    send_sync_static::<LeaderLatch>();
    send_sync_static::<LeaderSelector>();
}

#[test]
fn futures_are_send() {
    // Type-checked, never called: building the futures needs a session.
    let _ = acquisitions_are_send;
    let _ = holders_futures_are_send::<AnyHold>;
}

/// Every acquisition future of every recipe is `Send`.
#[allow(dead_code)]
fn acquisitions_are_send(
    mutex: Mutex,
    lock: ReadWriteLock,
    semaphore: Semaphore,
    latch: LeaderLatch,
    selector: LeaderSelector,
    candidate: Candidate,
) {
    let t = Duration::from_secs(1);
    send(Session::connect("127.0.0.1:2181"));
    send(mutex.lock());
    send(mutex.try_lock());
    send(mutex.lock_timeout(t));
    send(lock.read());
    send(lock.try_read());
    send(lock.read_timeout(t));
    send(lock.write());
    send(lock.try_write());
    send(lock.write_timeout(t));
    send(semaphore.acquire());
    send(semaphore.acquire_many(2));
    send(semaphore.acquire_timeout(t));
    send(semaphore.acquire_many_timeout(2, t));
    send(semaphore.try_acquire());
    send(latch.start());
    send(latch.participants());
    send(candidate.leadership());
    send(candidate.participants());
    send_static(candidate.lost());
    send(selector.lead());
    send(selector.run(|_term| async {}));
    send(candidate.lead());
}

/// A holder's futures: `lost` and `suspended` are `'static` too (they can move into a task),
/// and the release and fenced-write futures are `Send`.
#[allow(dead_code)]
fn holders_futures_are_send<H: Hold>(held: H) {
    send_static(held.lost());
    send_static(held.suspended());
    send(held.fenced_write().commit());
    send(held.release());
}

/// The same through the inherent methods, which are what most callers call.
#[allow(dead_code)]
fn inherent_futures_are_send(
    mutex: MutexGuard,
    read: ReadGuard,
    write: WriteGuard,
    lease: Lease,
    leadership: Leadership,
    term: Term,
) {
    send_static(mutex.lost());
    send_static(mutex.suspended());
    send(mutex.fenced_write().commit());
    send(mutex.release());
    send_static(read.lost());
    send_static(read.suspended());
    send(read.release());
    send_static(write.lost());
    send_static(write.suspended());
    send(write.release());
    send_static(lease.lost());
    send_static(lease.suspended());
    send(lease.fenced_write().commit());
    send(lease.release());
    send_static(leadership.lost());
    send_static(leadership.suspended());
    send(leadership.fenced_write().commit());
    send(leadership.release());
    send_static(term.lost());
    send_static(term.suspended());
    send(term.fenced_write().commit());
}
