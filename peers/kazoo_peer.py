"""A kazoo contender host for the interop tests, driven line by line over stdin/stdout.

Usage: /usr/bin/python3 kazoo_peer.py <connect string>   (Debian's kazoo imports only there)

The protocol is CuratorPeer.java's, for kazoo's recipes:

  <id> open lock <path>           a default kazoo Lock           -> opened <session id hex>
  <id> open lock-curator <path>   Lock(extra_lock_patterns=["-lock-"]), which sees Curator nodes
  <id> open read|write <path>     ReadLock / WriteLock
  <id> open read-curator <path>   ReadLock(extra_lock_patterns=["__WRIT__"])
  <id> open write-curator <path>  WriteLock(extra_lock_patterns=["__WRIT__", "__READ__"])
  <id> open semaphore <path> <n>  Semaphore(max_leases=n)
  <id> acquire [timeout ms]       -> acquired <node> | timeout | error <text>
  <id> release                    -> released
  <id> participants               -> participants <identifier>...  (kazoo's contenders())
  <id> close                      -> closed   (ends the session; at once, even while waiting)

A contender is one KazooClient (one session) and one lock; its commands run in order on its own
thread.

Benchmarks (`make bench`), as CuratorPeer.java's: `bench cycles|contend|deep|semaphore ...`,
answered `bench ok <numbers>`; and `kazoo_peer.py --oneshot <connect> <path>`.
"""

import queue
import sys
import threading
import time

from kazoo.client import KazooClient
from kazoo.exceptions import LockTimeout

_print_lock = threading.Lock()


def reply(ident, text):
    with _print_lock:
        sys.stdout.write(f"{ident} {text}\n")
        sys.stdout.flush()


class Contender:
    def __init__(self, ident, connect):
        self.ident = ident
        self.connect = connect
        self.client = None
        self.lock = None
        self.commands = queue.Queue()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            words = self.commands.get()
            try:
                getattr(self, "do_" + words[1].replace("-", "_"))(*words[2:])
            except Exception as error:  # the driver decides what an error means
                reply(self.ident, "error " + repr(error).replace("\n", " "))

    def do_open(self, recipe, path, permits=None):
        self.client = KazooClient(hosts=self.connect, timeout=6.0)
        self.client.start(timeout=10)
        make = {
            "lock": lambda: self.client.Lock(path, self.ident),
            "lock-curator": lambda: self.client.Lock(path, self.ident, extra_lock_patterns=["-lock-"]),
            "read": lambda: self.client.ReadLock(path, self.ident),
            "write": lambda: self.client.WriteLock(path, self.ident),
            "read-curator": lambda: self.client.ReadLock(path, self.ident, extra_lock_patterns=["__WRIT__"]),
            "write-curator": lambda: self.client.WriteLock(
                path, self.ident, extra_lock_patterns=["__WRIT__", "__READ__"]
            ),
            "semaphore": lambda: self.client.Semaphore(path, self.ident, max_leases=int(permits)),
        }
        self.lock = make[recipe]()
        reply(self.ident, "opened %x" % self.client.client_id[0])

    def do_acquire(self, timeout_ms=None):
        timeout = None if timeout_ms is None else int(timeout_ms) / 1000
        try:
            held = self.lock.acquire(timeout=timeout)
        except LockTimeout:
            held = False
        if not held:
            reply(self.ident, "timeout")
            return
        # A kazoo Semaphore's lease node is named after its (hidden) uuid; report its path.
        node = getattr(self.lock, "node", None) or self.lock.create_path
        reply(self.ident, "acquired " + node.rsplit("/", 1)[-1])

    def do_release(self):
        self.lock.release()
        reply(self.ident, "released")

    def do_participants(self):
        reply(self.ident, "participants " + " ".join(self.lock.contenders()))

    def do_close(self):
        self.client.stop()
        self.client.close()
        reply(self.ident, "closed")


def started(connect):
    client = KazooClient(hosts=connect, timeout=6.0)
    client.start(timeout=10)
    return client


def on_each(clients, loop):
    """Runs `loop(client)` for every client, each in a thread of its own; then stops them all."""
    threads = [threading.Thread(target=loop, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for c in clients:
        c.stop()


def bench_cycles(connect, path, n):
    client = started(connect)
    lock = client.Lock(path)
    out = []
    for _ in range(int(n)):
        start = time.perf_counter_ns()
        lock.acquire()
        lock.release()
        out.append((time.perf_counter_ns() - start) // 1000)
    client.stop()
    return ",".join(map(str, out))


def bench_contend(connect, path, clients, millis):
    opened = [started(connect) for _ in range(int(clients))]
    records = []
    deadline = time.monotonic_ns() + int(millis) * 1_000_000

    def loop(client):
        lock = client.Lock(path)
        while time.monotonic_ns() < deadline:
            asked = time.monotonic_ns()
            lock.acquire()
            granted = time.monotonic_ns()
            records.append("%s:%d:%d" % (lock.node[-10:], granted, granted - asked))
            lock.release()

    on_each(opened, loop)
    return ",".join(records)


SETTLE_S = 3.0  # how long a deep queue settles once every node is in it, before the drain


def bench_deep(connect, path, waiters):
    client = started(connect)
    holder = client.Lock(path)
    holder.acquire()
    granted = []
    lock = threading.Lock()

    def wait():
        mine = client.Lock(path)
        mine.acquire()
        with lock:
            granted.append(time.monotonic_ns())
        mine.release()

    threads = [threading.Thread(target=wait) for _ in range(int(waiters))]
    for t in threads:
        t.start()
    while len(client.get_children(path)) < int(waiters) + 1:
        time.sleep(0.01)
    time.sleep(SETTLE_S)  # every waiter has read the queue and set its watch
    start = time.monotonic_ns()
    holder.release()
    for t in threads:
        t.join()
    client.stop()
    return ",".join(str(g - start) for g in granted)


def bench_semaphore(connect, path, permits, clients, millis):
    opened = [started(connect) for _ in range(int(clients))]
    count = [0]
    deadline = time.monotonic() + int(millis) / 1000

    def loop(client):
        semaphore = client.Semaphore(path, max_leases=int(permits))
        while time.monotonic() < deadline:
            try:
                acquired = semaphore.acquire(timeout=max(0.001, deadline - time.monotonic()))
            except LockTimeout:  # its internal lock timed out: the deadline passed
                acquired = False
            if acquired:
                count[0] += 1
                semaphore.release()

    on_each(opened, loop)
    return str(count[0])


BENCHES = {"cycles": bench_cycles, "contend": bench_contend, "deep": bench_deep, "semaphore": bench_semaphore}


def bench(connect, words):
    try:
        reply("bench", "ok " + BENCHES[words[1]](connect, *words[2:]))
    except Exception as error:  # the driver decides what an error means
        reply("bench", "error " + repr(error).replace("\n", " "))


def oneshot(connect, path):
    client = started(connect)
    lock = client.Lock(path)
    lock.acquire()
    lock.release()
    client.stop()


def main():
    if sys.argv[1] == "--oneshot":
        oneshot(sys.argv[2], sys.argv[3])
        return
    connect = sys.argv[1]
    contenders = {}
    reply("peer", "ready")
    for line in sys.stdin:
        words = line.split()
        if len(words) < 2:
            reply("peer", "error bad command: " + line.strip())
            continue
        ident = words[0]
        if ident == "bench":
            threading.Thread(target=bench, args=(connect, words), daemon=True).start()
            continue
        if words[1] == "open" and ident not in contenders:
            contenders[ident] = Contender(ident, connect)
        contender = contenders.get(ident)
        if contender is None:
            reply(ident, "error no contender " + ident)
        elif words[1] == "close":
            # At once, even while the contender waits in `acquire`.
            contender.do_close()
        else:
            contender.commands.put(words)
    # The driver closed our stdin: it is done with us (or died). Exiting drops the connections;
    # the sessions expire after their timeout.


if __name__ == "__main__":
    main()
