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
//   <id> close                                -> closed   (closes the client, which ends the
//                                                 session; runs at once, even while the
//                                                 contender waits in `acquire`)

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
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
                default -> reply(id, "error unknown verb " + words[1]);
            }
        }

        void open(String recipe, String path, String param) throws Exception {
            this.recipe = recipe;
            this.path = path;
            client = CuratorFrameworkFactory.builder()
                    .connectString(connectString)
                    .sessionTimeoutMs(6000)
                    .connectionTimeoutMs(5000)
                    .retryPolicy(new ExponentialBackoffRetry(50, 5))
                    .build();
            client.start();
            if (!client.blockUntilConnected(10, TimeUnit.SECONDS)) {
                reply(id, "error not connected to " + connectString);
                return;
            }
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
