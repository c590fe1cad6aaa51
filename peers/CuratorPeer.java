// An Apache Curator contender host for the interop tests, driven line by line over stdin/stdout.
//
// Usage: java -cp <curator jars>:<dir> CuratorPeer <connect string>
//
// Commands, one per line: `<id> <verb> [args...]`. Every command gets exactly one reply
// `<id> <word> [text]`; leadership changes arrive as extra lines `<id> leader <node>` and
// `<id> notleader`. A contender is one Curator client (one ZooKeeper session) and one recipe
// object; its commands run in order on its own thread, since Curator's locks belong to the
// thread that acquired them.
//
//   <id> open mutex|read|write <path>         -> opened <session id hex>
//   <id> open semaphore <path> <permits>      -> opened ...
//   <id> open latch|selector <path> <part id> -> opened ...
//   <id> acquire [timeout ms]                 -> acquired <node> | timeout | error <text>
//        (latch: start, wait for leadership; selector: start, and leader/notleader events follow)
//   <id> release                              -> released  (latch: close; selector: return
//                                                 from takeLeadership)
//   <id> participants                         -> participants <node>... (mutex, read, write)
//                                                 or <part id>:<is leader>... (latch, selector)
//
// Benchmarks (`make bench`), as the id `bench`, each answered `bench ok <numbers>` when done:
//   bench cycles <path> <n>                  n uncontended InterProcessMutex cycles on one client:
//                                              each cycle's microseconds
//   bench contend <path> <clients> <ms>      clients on their own sessions loop acquire/release:
//                                              <sequence>:<granted ns>:<waited ns> per acquisition
//   bench deep <path> <waiters>              waiters queue on one client behind a holder, then drain:
//                                              each grant's ns, in order
//   bench semaphore <path> <permits> <clients> <ms>   InterProcessSemaphoreV2 loops: acquisitions
//   bench failover <path> <rounds>           LeaderLatch close -> the next one's isLeader: microseconds
// And `CuratorPeer --oneshot <connect> <path>`: connect, acquire, release, exit (CLI comparison).
//
//   <id> token                                -> token <fencing token>  (of the node it holds,
//                                                 derived as zk-recipes does; remembered)
//   <id> capture <jdbc url> <lock> <order> <worker> -> captured <token> | refused <winner>
//        (examples/capture.sql over JDBC with the remembered token, even after `close`: a
//        holder that lost its session still has its token; needs the PostgreSQL JDBC driver)
//   <id> close                                -> closed   (closes the client, which ends the
//                                                 session; runs at once, even while the
//                                                 contender waits in `acquire`)

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Semaphore;
import java.util.concurrent.TimeUnit;

import org.apache.curator.framework.CuratorFramework;
import org.apache.curator.framework.CuratorFrameworkFactory;
import org.apache.curator.framework.recipes.leader.LeaderLatch;
import org.apache.curator.framework.recipes.leader.LeaderLatchListener;
import org.apache.curator.framework.recipes.leader.LeaderSelector;
import org.apache.curator.framework.recipes.leader.LeaderSelectorListenerAdapter;
import org.apache.curator.framework.recipes.leader.Participant;
import org.apache.curator.framework.recipes.locks.InterProcessMutex;
import org.apache.curator.framework.recipes.locks.InterProcessReadWriteLock;
import org.apache.curator.framework.recipes.locks.InterProcessSemaphoreV2;
import org.apache.curator.framework.recipes.locks.Lease;
import org.apache.curator.retry.ExponentialBackoffRetry;
import org.apache.zookeeper.data.Stat;

public final class CuratorPeer {
    private static final Map<String, Contender> CONTENDERS = new ConcurrentHashMap<>();
    private static String connectString;

    static synchronized void reply(String id, String text) {
        System.out.println(id + " " + text);
        System.out.flush();
    }

    public static void main(String[] args) throws Exception {
        if (args[0].equals("--oneshot")) {
            Bench.oneshot(args[1], args[2]);
            return;
        }
        connectString = args[0];
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        reply("peer", "ready");
        String line;
        while ((line = in.readLine()) != null) {
            String[] words = line.trim().split(" ");
            if (words.length < 2) {
                reply("peer", "error bad command: " + line);
                continue;
            }
            String id = words[0];
            if (id.equals("bench")) {
                // One at a time, off the reader thread.
                Bench.THREAD.execute(() -> {
                    try {
                        reply("bench", "ok " + Bench.run(words));
                    } catch (Throwable e) {
                        reply("bench", "error " + e.toString().replace('\n', ' '));
                    }
                });
                continue;
            }
            Contender contender = words[1].equals("open")
                    ? CONTENDERS.computeIfAbsent(id, Contender::new)
                    : CONTENDERS.get(id);
            if (contender == null) {
                reply(id, "error no contender " + id);
                continue;
            }
            if (words[1].equals("close")) {
                contender.close();
                continue;
            }
            contender.thread.execute(() -> {
                try {
                    contender.run(words);
                } catch (Throwable e) {
                    reply(id, "error " + e.toString().replace('\n', ' '));
                }
            });
        }
        // The driver closed our stdin: it is done with us (or died). Exiting drops the
        // connections; the sessions expire after their timeout.
        Runtime.getRuntime().halt(0);
    }

    static CuratorFramework connect(String connect) throws InterruptedException {
        CuratorFramework client = CuratorFrameworkFactory.builder()
                .connectString(connect)
                .sessionTimeoutMs(6000)
                .connectionTimeoutMs(5000)
                .retryPolicy(new ExponentialBackoffRetry(50, 5))
                .build();
        client.start();
        if (!client.blockUntilConnected(10, TimeUnit.SECONDS)) {
            throw new IllegalStateException("not connected to " + connect);
        }
        return client;
    }

    /** The benchmarks: Curator's recipes in tight loops, timed inside the JVM. */
    static final class Bench {
        static final ExecutorService THREAD = Executors.newSingleThreadExecutor();
        /** How long a deep queue settles once every node is in it, before the drain. */
        static final long SETTLE_MS = 3000;

        /** InterProcessMutex with its (protected) node path, for sequence numbers. */
        static final class Mutex extends InterProcessMutex {
            Mutex(CuratorFramework client, String path) {
                super(client, path);
            }

            long sequence() {
                String node = getLockPath();
                return Long.parseLong(node.substring(node.length() - 10));
            }
        }

        static String run(String[] w) throws Exception {
            return switch (w[1]) {
                case "cycles" -> cycles(w[2], Integer.parseInt(w[3]));
                case "contend" -> contend(w[2], Integer.parseInt(w[3]), Long.parseLong(w[4]));
                case "deep" -> deep(w[2], Integer.parseInt(w[3]));
                case "semaphore" -> semaphore(w[2], Integer.parseInt(w[3]), Integer.parseInt(w[4]), Long.parseLong(w[5]));
                case "failover" -> failover(w[2], Integer.parseInt(w[3]));
                default -> throw new IllegalArgumentException("unknown bench " + w[1]);
            };
        }

        static String cycles(String path, int n) throws Exception {
            try (CuratorFramework client = connect(connectString)) {
                InterProcessMutex mutex = new InterProcessMutex(client, path);
                StringBuilder out = new StringBuilder();
                for (int i = 0; i < n; i++) {
                    long start = System.nanoTime();
                    mutex.acquire();
                    mutex.release();
                    out.append(i == 0 ? "" : ",").append((System.nanoTime() - start) / 1000);
                }
                return out.toString();
            }
        }

        static String contend(String path, int clients, long millis) throws Exception {
            List<CuratorFramework> opened = new ArrayList<>();
            for (int i = 0; i < clients; i++) {
                opened.add(connect(connectString));
            }
            java.util.Queue<String> records = new java.util.concurrent.ConcurrentLinkedQueue<>();
            java.util.concurrent.CountDownLatch go = new java.util.concurrent.CountDownLatch(1);
            List<Thread> threads = new ArrayList<>();
            long[] deadline = new long[1];
            for (CuratorFramework client : opened) {
                Mutex mutex = new Mutex(client, path);
                Thread t = new Thread(() -> {
                    try {
                        go.await();
                        while (System.nanoTime() < deadline[0]) {
                            long asked = System.nanoTime();
                            mutex.acquire();
                            long granted = System.nanoTime();
                            records.add(mutex.sequence() + ":" + granted + ":" + (granted - asked));
                            mutex.release();
                        }
                    } catch (Exception e) {
                        records.add("error:" + e);
                    }
                });
                t.start();
                threads.add(t);
            }
            deadline[0] = System.nanoTime() + millis * 1_000_000;
            go.countDown();
            for (Thread t : threads) {
                t.join();
            }
            opened.forEach(CuratorFramework::close);
            return String.join(",", records);
        }

        static String deep(String path, int waiters) throws Exception {
            try (CuratorFramework client = connect(connectString)) {
                InterProcessMutex holder = new InterProcessMutex(client, path);
                holder.acquire();
                long[] granted = new long[waiters];
                java.util.concurrent.atomic.AtomicInteger next = new java.util.concurrent.atomic.AtomicInteger();
                List<Thread> threads = new ArrayList<>();
                for (int i = 0; i < waiters; i++) {
                    // One InterProcessMutex per waiter, as one per process would be: waiters
                    // sharing one instance share its monitor, and every wake-up wakes them all.
                    InterProcessMutex mutex = new InterProcessMutex(client, path);
                    Thread t = new Thread(() -> {
                        try {
                            mutex.acquire();
                            granted[next.getAndIncrement()] = System.nanoTime();
                            mutex.release();
                        } catch (Exception e) {
                            throw new RuntimeException(e);
                        }
                    });
                    t.start();
                    threads.add(t);
                }
                while (client.getChildren().forPath(path).size() < waiters + 1) {
                    Thread.sleep(10);
                }
                Thread.sleep(SETTLE_MS); // every waiter has read the queue and set its watch
                long start = System.nanoTime();
                holder.release();
                for (Thread t : threads) {
                    t.join();
                }
                StringBuilder out = new StringBuilder();
                for (int i = 0; i < waiters; i++) {
                    out.append(i == 0 ? "" : ",").append(granted[i] - start);
                }
                return out.toString();
            }
        }

        static String semaphore(String path, int permits, int clients, long millis) throws Exception {
            List<CuratorFramework> opened = new ArrayList<>();
            for (int i = 0; i < clients; i++) {
                opened.add(connect(connectString));
            }
            java.util.concurrent.atomic.AtomicLong count = new java.util.concurrent.atomic.AtomicLong();
            long deadline = System.nanoTime() + millis * 1_000_000;
            List<Thread> threads = new ArrayList<>();
            for (CuratorFramework client : opened) {
                InterProcessSemaphoreV2 semaphore = new InterProcessSemaphoreV2(client, path, permits);
                Thread t = new Thread(() -> {
                    try {
                        while (System.nanoTime() < deadline) {
                            Lease lease = semaphore.acquire(Math.max(1, (deadline - System.nanoTime()) / 1_000_000), TimeUnit.MILLISECONDS);
                            if (lease != null) {
                                count.incrementAndGet();
                                lease.close();
                            }
                        }
                    } catch (Exception e) {
                        throw new RuntimeException(e);
                    }
                });
                t.start();
                threads.add(t);
            }
            for (Thread t : threads) {
                t.join();
            }
            opened.forEach(CuratorFramework::close);
            return Long.toString(count.get());
        }

        static String failover(String path, int rounds) throws Exception {
            CuratorFramework a = connect(connectString);
            CuratorFramework b = connect(connectString);
            StringBuilder out = new StringBuilder();
            LeaderLatch leader = new LeaderLatch(a, path, "a");
            leader.start();
            leader.await();
            CuratorFramework[] clients = {a, b};
            for (int i = 0; i < rounds; i++) {
                java.util.concurrent.CountDownLatch leads = new java.util.concurrent.CountDownLatch(1);
                LeaderLatch next = new LeaderLatch(clients[(i + 1) % 2], path, "n" + i);
                next.addListener(new LeaderLatchListener() {
                    @Override
                    public void isLeader() {
                        leads.countDown();
                    }

                    @Override
                    public void notLeader() {}
                });
                next.start();
                while (next.getOurPath() == null || next.getParticipants().size() < 2) {
                    Thread.sleep(1);
                }
                long start = System.nanoTime();
                leader.close();
                leads.await();
                out.append(i == 0 ? "" : ",").append((System.nanoTime() - start) / 1000);
                leader = next;
            }
            leader.close();
            a.close();
            b.close();
            return out.toString();
        }

        static void oneshot(String connect, String path) throws Exception {
            try (CuratorFramework client = connect(connect)) {
                InterProcessMutex mutex = new InterProcessMutex(client, path);
                mutex.acquire();
                mutex.release();
            }
            System.exit(0);
        }
    }

    /** Fencing tokens as zk-recipes makes them (src/token.rs), and its fence in PostgreSQL. */
    static final class Fence {
        /**
         * The lock directory's czxid is the epoch, the node's 10-digit sequence suffix the
         * sequence; the canonical text form is 16 lowercase hex digits, '-', 10 decimal digits.
         * Read while the node is held, the directory cannot have been recreated since the node
         * was created in it (a directory with a child is never deleted).
         */
        static String token(CuratorFramework client, String dir, String node) throws Exception {
            long epoch = client.checkExists().forPath(dir).getCzxid();
            long sequence = Long.parseLong(node.substring(node.length() - 10));
            return String.format("%016x-%010d", epoch, sequence);
        }

        /**
         * One capture in one transaction, as FenceTable::advance and FencedTable::update do it:
         * the fence row first, then the payment's own fence column. Returns null if captured,
         * else the token in the fence (the winner), after rolling back.
         */
        static String capture(String url, String lock, String token, long order, String worker) throws Exception {
            try (Connection db = DriverManager.getConnection(url)) {
                db.setAutoCommit(false);
                try (PreparedStatement advance = db.prepareStatement(
                        "INSERT INTO fences AS fences (lock_path, token) VALUES (?, ?) "
                                + "ON CONFLICT (lock_path) DO UPDATE SET token = EXCLUDED.token, updated_at = now() "
                                + "WHERE fences.token <= EXCLUDED.token RETURNING token")) {
                    advance.setString(1, lock);
                    advance.setString(2, token);
                    try (ResultSet advanced = advance.executeQuery()) {
                        if (!advanced.next()) {
                            db.rollback();
                            return winner(db, lock);
                        }
                    }
                }
                try (PreparedStatement update = db.prepareStatement(
                        "UPDATE payments SET status = 'captured', captured_by = ?, fence = ? WHERE id = ? AND fence <= ?")) {
                    update.setString(1, worker);
                    update.setString(2, token);
                    update.setLong(3, order);
                    update.setString(4, token);
                    if (update.executeUpdate() != 1) {
                        db.rollback();
                        throw new IllegalStateException("the payment's own fence refused token " + token);
                    }
                }
                db.commit();
                return null;
            }
        }

        static String winner(Connection db, String lock) throws Exception {
            try (PreparedStatement read = db.prepareStatement("SELECT token FROM fences WHERE lock_path = ?")) {
                read.setString(1, lock);
                try (ResultSet row = read.executeQuery()) {
                    return row.next() ? row.getString(1) : "-";
                }
            }
        }
    }

    static final class Contender {
        final String id;
        final ExecutorService thread = Executors.newSingleThreadExecutor();
        CuratorFramework client;
        String recipe;
        String path;
        InterProcessMutex mutex;
        InterProcessSemaphoreV2 semaphore;
        Lease lease;
        LeaderLatch latch;
        LeaderSelector selector;
        final Semaphore yield = new Semaphore(0);
        final Semaphore steppedDown = new Semaphore(0);

        Contender(String id) {
            this.id = id;
        }

        void run(String[] words) throws Exception {
            switch (words[1]) {
                case "open" -> open(words[2], words[3], words.length > 4 ? words[4] : null);
                case "acquire" -> acquire(words.length > 2 ? Long.parseLong(words[2]) : -1);
                case "release" -> release();
                case "participants" -> participants();
                case "token" -> token();
                case "capture" -> capture(words[2], words[3], Long.parseLong(words[4]), words[5]);
                default -> reply(id, "error unknown verb " + words[1]);
            }
        }

        void open(String recipe, String path, String param) throws Exception {
            this.recipe = recipe;
            this.path = path;
            client = connect(connectString);
            switch (recipe) {
                case "mutex" -> mutex = new InterProcessMutex(client, path);
                case "read" -> mutex = new InterProcessReadWriteLock(client, path).readLock();
                case "write" -> mutex = new InterProcessReadWriteLock(client, path).writeLock();
                case "semaphore" -> semaphore = new InterProcessSemaphoreV2(client, path, Integer.parseInt(param));
                case "latch" -> latch = new LeaderLatch(client, path, param);
                case "selector" -> selector = new LeaderSelector(client, path, new LeaderSelectorListenerAdapter() {
                    @Override
                    public void takeLeadership(CuratorFramework c) throws Exception {
                        try {
                            reply(id, "leader " + ownNode(path));
                            yield.acquire();
                        } finally {
                            steppedDown.release();
                        }
                    }
                });
                default -> throw new IllegalArgumentException("unknown recipe " + recipe);
            }
            if (selector != null) {
                selector.setId(param);
            }
            reply(id, "opened " + Long.toHexString(client.getZookeeperClient().getZooKeeper().getSessionId()));
        }

        void acquire(long timeoutMs) throws Exception {
            if (semaphore != null) {
                lease = timeoutMs < 0 ? semaphore.acquire() : semaphore.acquire(timeoutMs, TimeUnit.MILLISECONDS);
                reply(id, lease == null ? "timeout" : "acquired " + lease.getNodeName());
            } else if (latch != null) {
                latch.addListener(new LeaderLatchListener() {
                    @Override
                    public void isLeader() {
                        reply(id, "leader " + latch.getOurPath());
                    }

                    @Override
                    public void notLeader() {
                        reply(id, "notleader");
                    }
                });
                latch.start();
                reply(id, "started");
            } else if (selector != null) {
                selector.start();
                reply(id, "started");
            } else {
                boolean held = true;
                if (timeoutMs < 0) {
                    mutex.acquire();
                } else {
                    held = mutex.acquire(timeoutMs, TimeUnit.MILLISECONDS);
                }
                reply(id, held ? "acquired " + ownNode(path) : "timeout");
            }
        }

        void release() throws Exception {
            if (lease != null) {
                lease.close();
                lease = null;
            } else if (latch != null) {
                latch.close();
            } else if (selector != null) {
                if (selector.hasLeadership()) {
                    yield.release();
                    // Returning from takeLeadership releases the mutex (deletes the node).
                    steppedDown.tryAcquire(30, TimeUnit.SECONDS);
                    // Curator deletes the node just after takeLeadership returns.
                    for (int i = 0; i < 2000 && !ownNode(path).equals("-"); i++) {
                        Thread.sleep(5);
                    }
                }
                selector.close();
            } else {
                mutex.release();
            }
            reply(id, "released");
        }

        void close() {
            client.close();
            reply(id, "closed");
        }

        /** The token of the node this contender holds, derived exactly as zk-recipes derives it. */
        String token;

        void token() throws Exception {
            String node = ownNode(path);
            token = Fence.token(client, path, node);
            reply(id, "token " + token);
        }

        void capture(String url, String lock, long order, String worker) throws Exception {
            if (token == null) {
                throw new IllegalStateException("no token: ask for `token` while holding");
            }
            String winner = Fence.capture(url, lock, token, order, worker);
            reply(id, winner == null ? "captured " + token : "refused " + winner);
        }

        void participants() throws Exception {
            List<String> words = new ArrayList<>();
            if (latch != null || selector != null) {
                for (Participant p : latch != null ? latch.getParticipants() : selector.getParticipants()) {
                    words.add(p.getId() + ":" + p.isLeader());
                }
            } else {
                for (String node : mutex.getParticipantNodes()) {
                    words.add(node.substring(node.lastIndexOf('/') + 1));
                }
            }
            reply(id, "participants " + String.join(" ", words));
        }

        // The child of `dir` that this contender's session owns: the node it holds or waits with.
        String ownNode(String dir) throws Exception {
            long session = client.getZookeeperClient().getZooKeeper().getSessionId();
            for (String child : client.getChildren().forPath(dir)) {
                Stat stat = client.checkExists().forPath(dir + "/" + child);
                if (stat != null && stat.getEphemeralOwner() == session) {
                    return child;
                }
            }
            return "-";
        }
    }
}
