//! Apache Curator and kazoo contenders in child processes, driven from Rust: the other side of
//! `zk-recipes`' interop tests and benchmarks. Not published: a workspace member that
//! `tests/interop` and `examples/bench` use as a dev-dependency.
//!
//! A [`Peer`] is one process — a JVM running `peers/CuratorPeer.java` against Debian's
//! Curator 5.4 jars, or Debian's `/usr/bin/python3` running `peers/kazoo_peer.py` with
//! kazoo 2.8. It hosts any number of [`PeerContender`]s, each with its own client and therefore
//! its own ZooKeeper session. The Java source is compiled with `javac` on first use into the
//! build directory next to the running executable (never committed as class files).
//!
//! A contender does one thing at a time, in the order asked; every call waits for the peer's
//! answer, so the test decides the interleaving. Leadership changes of a Curator `LeaderLatch`
//! or `LeaderSelector` arrive as [`PeerContender::event`]s.
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, rust_2018_idioms, unreachable_pub)]

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::{Mutex, mpsc};

const CURATOR_SOURCE: &str = include_str!("../CuratorPeer.java");
const KAZOO_SOURCE: &str = include_str!("../kazoo_peer.py");
/// Debian's jars; their manifests name the jars they need (ZooKeeper's client, Guava, SLF4J).
const CURATOR_CLASSPATH: &str = "/usr/share/java/curator-recipes.jar:/usr/share/java/slf4j-nop.jar";
/// Debian's PostgreSQL JDBC driver (`libpostgresql-jdbc-java`), on the Curator peer's runtime
/// classpath only: the peer uses `java.sql` and finds the driver at run time, so that it
/// compiles and runs without it for everything but [`PeerContender::capture`].
const JDBC_DRIVER: &str = "/usr/share/java/postgresql.jar";
/// Debian's kazoo is importable only by Debian's own Python, not by another first on `PATH`.
const DEBIAN_PYTHON: &str = "/usr/bin/python3";
/// How long a peer may take to answer one command; acquisitions take a timeout below this.
const ANSWER_WITHIN: Duration = Duration::from_secs(60);

/// Errors of the peers. Each says how to fix the setup.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// A peer's library or tools are missing.
    #[error(
        "an interop peer cannot run ({0}): install Curator, kazoo, javac and the PostgreSQL JDBC \
         driver with `sudo apt-get install -y libcurator-recipes-java python3-kazoo \
         default-jdk-headless libpostgresql-jdbc-java` (Debian/Ubuntu)"
    )]
    Missing(String),
    /// A peer failed or answered something unexpected.
    #[error("interop peer: {0}")]
    Failed(String),
    /// An operating-system call failed.
    #[error("{doing}: {source}")]
    Io {
        /// What the peer code was doing.
        doing: &'static str,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// The library a [`Peer`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Library {
    /// Apache Curator 5.4 (Java).
    Curator,
    /// kazoo 2.8 (Python).
    Kazoo,
}

/// The recipe a [`PeerContender`] uses, on the path given to [`Peer::open`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerRecipe<'a> {
    /// Curator's `InterProcessMutex`, or kazoo's default `Lock` (which ignores Curator's node
    /// names).
    Mutex,
    /// kazoo's `Lock(extra_lock_patterns=["-lock-"])`, which also counts Curator-named nodes.
    KazooLockSeeingCurator,
    /// The read side of Curator's `InterProcessReadWriteLock`, or kazoo's `ReadLock`.
    Read,
    /// The write side of Curator's `InterProcessReadWriteLock`, or kazoo's `WriteLock`.
    Write,
    /// kazoo's `ReadLock(extra_lock_patterns=["__WRIT__"])`, which also waits for Curator-named
    /// writers.
    KazooReadSeeingCurator,
    /// kazoo's `WriteLock(extra_lock_patterns=["__WRIT__", "__READ__"])`, which also waits for
    /// Curator-named readers and writers.
    KazooWriteSeeingCurator,
    /// Curator's `InterProcessSemaphoreV2`, or kazoo's `Semaphore`, with this many permits.
    Semaphore(u32),
    /// Curator's `LeaderLatch` with this participant id.
    Latch(&'a str),
    /// Curator's `LeaderSelector` with this participant id.
    Selector(&'a str),
}

impl PeerRecipe<'_> {
    /// The protocol's words for this recipe on `library`, if it has it.
    fn words(self, library: Library) -> Option<String> {
        Some(match (self, library) {
            (Self::Mutex, Library::Curator) => "mutex".into(),
            (Self::Mutex, Library::Kazoo) => "lock".into(),
            (Self::KazooLockSeeingCurator, Library::Kazoo) => "lock-curator".into(),
            (Self::KazooReadSeeingCurator, Library::Kazoo) => "read-curator".into(),
            (Self::KazooWriteSeeingCurator, Library::Kazoo) => "write-curator".into(),
            (Self::Read, _) => "read".into(),
            (Self::Write, _) => "write".into(),
            (Self::Semaphore(permits), _) => format!("semaphore {{path}} {permits}"),
            (Self::Latch(id), Library::Curator) => format!("latch {{path}} {id}"),
            (Self::Selector(id), Library::Curator) => format!("selector {{path}} {id}"),
            _ => return None,
        })
    }
}

/// How a Curator peer's contenders reach secured servers: ZooKeeper client system properties,
/// as a JVM service would set them.
///
/// ```no_run
/// # async fn example(cluster: &zk_recipes::testing::TestingCluster) -> Result<(), Box<dyn std::error::Error>> {
/// use zk_recipes_peers::{Library, Peer, PeerSecurity};
///
/// let tls = cluster.tls().expect("a TLS cluster");
/// let security = PeerSecurity::tls(&tls.ca.cert_path, Some(&tls.java_key_store(&tls.client)?));
/// let curator = Peer::start_secured(Library::Curator, &cluster.connect_string(), &security).await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default)]
pub struct PeerSecurity {
    jvm_args: Vec<String>,
    classpath: Vec<String>,
}

impl PeerSecurity {
    /// TLS (`zookeeper.client.secure`, through Netty) trusting the PEM CA file `ca`, and
    /// presenting the certificate and key of the PEM key store `key_store` if given (key and
    /// certificate in one file: [`TestTls::java_key_store`](zk_recipes::testing::TestTls::java_key_store)).
    pub fn tls(ca: &Path, key_store: Option<&Path>) -> Self {
        let mut jvm_args = vec![
            "-Dzookeeper.client.secure=true".to_owned(),
            "-Dzookeeper.clientCnxnSocket=org.apache.zookeeper.ClientCnxnSocketNetty".to_owned(),
            format!("-Dzookeeper.ssl.trustStore.location={}", ca.display()),
            "-Dzookeeper.ssl.trustStore.type=PEM".to_owned(),
        ];
        if let Some(key_store) = key_store {
            jvm_args.push(format!("-Dzookeeper.ssl.keyStore.location={}", key_store.display()));
            jvm_args.push("-Dzookeeper.ssl.keyStore.type=PEM".to_owned());
        }
        // The client's Netty socket needs the codec and resolver, which the Debian jar's
        // manifest does not name.
        let classpath = ["/usr/share/java/netty-codec.jar", "/usr/share/java/netty-resolver.jar"];
        Self { jvm_args, classpath: classpath.map(str::to_owned).to_vec() }
    }

    /// SASL with the JAAS file `jaas`, whose `Client` section has the credentials
    /// ([`TestSasl::java_client_jaas`](zk_recipes::testing::TestSasl::java_client_jaas)).
    pub fn sasl(jaas: &Path) -> Self {
        Self { jvm_args: vec![format!("-Djava.security.auth.login.config={}", jaas.display())], classpath: Vec::new() }
    }

    /// Both `self`'s settings and `other`'s.
    pub fn and(mut self, other: PeerSecurity) -> Self {
        self.jvm_args.extend(other.jvm_args);
        self.classpath.extend(other.classpath);
        self
    }
}

/// Where a contender's lines go: answers to its commands, and leadership events apart, so
/// that an event never passes for an answer.
#[derive(Debug)]
struct Route {
    answers: mpsc::UnboundedSender<String>,
    events: mpsc::UnboundedSender<String>,
}

type Routes = Arc<StdMutex<HashMap<String, Route>>>;

/// One Curator or kazoo process hosting contenders. Dropping it kills the process: its
/// contenders' connections drop, and their sessions expire after their timeout.
#[derive(Debug)]
pub struct Peer {
    library: Library,
    stdin: Arc<Mutex<ChildStdin>>,
    routes: Routes,
    /// Answers to [`Peer::bench`], one benchmark at a time.
    bench: Mutex<mpsc::UnboundedReceiver<String>>,
    next_id: AtomicUsize,
    _child: Child,
}

impl Peer {
    /// Starts a peer process of `library` that connects its contenders to `connect_string`.
    ///
    /// # Errors
    ///
    /// [`PeerError::Missing`] with the install command when `javac`, Curator's jars,
    /// Debian's Python or kazoo are missing; [`PeerError::Failed`] when the process does not
    /// come up.
    pub async fn start(library: Library, connect_string: &str) -> Result<Self, PeerError> {
        Self::start_secured(library, connect_string, &PeerSecurity::default()).await
    }

    /// Starts a peer of `library` whose contenders connect to secured servers as `security`
    /// says. Only Curator's peer connects to secured servers (through ZooKeeper's own client).
    ///
    /// # Errors
    ///
    /// As [`start`](Self::start); [`PeerError::Failed`] for a secured kazoo peer.
    pub async fn start_secured(
        library: Library,
        connect_string: &str,
        security: &PeerSecurity,
    ) -> Result<Self, PeerError> {
        let mut program = program(library, security).await?;
        let mut child = program
            .arg(connect_string)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| io("starting an interop peer", e))?;
        let stdin = child.stdin.take().expect("stdin is piped");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout is piped")).lines();

        let first = tokio::time::timeout(ANSWER_WITHIN, lines.next_line()).await;
        match first {
            Ok(Ok(Some(line))) if line == "peer ready" => {}
            Ok(Ok(None)) if library == Library::Kazoo => {
                return Err(PeerError::Missing(format!(
                    "{DEBIAN_PYTHON} could not run the kazoo peer (is python3-kazoo installed? its error is above)"
                )));
            }
            other => return Err(PeerError::Failed(format!("{library:?} peer did not start: {other:?}"))),
        }

        let routes = Routes::default();
        let (bench_answers, bench) = mpsc::unbounded_channel();
        routes
            .lock()
            .expect("routes")
            .insert("bench".into(), Route { events: bench_answers.clone(), answers: bench_answers });
        let table = Arc::clone(&routes);
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                let (id, rest) = line.split_once(' ').unwrap_or((&line, ""));
                if let Some(route) = table.lock().expect("routes").get(id) {
                    let is_event = rest == "notleader" || rest.starts_with("leader ");
                    let _ = if is_event { &route.events } else { &route.answers }.send(rest.to_owned());
                }
            }
            // The process ended: dropping the senders tells every contender.
            table.lock().expect("routes").clear();
        });
        Ok(Self {
            library,
            stdin: Arc::new(Mutex::new(stdin)),
            routes,
            bench: Mutex::new(bench),
            next_id: AtomicUsize::new(0),
            _child: child,
        })
    }

    /// The library this peer runs.
    pub fn library(&self) -> Library {
        self.library
    }

    /// Runs one of the peer's benchmarks (see the peers' sources: `cycles`, `contend`, `deep`,
    /// `semaphore`, `failover`) and returns its numbers, as text; waits at most `within`.
    ///
    /// # Errors
    ///
    /// [`PeerError::Failed`] if the benchmark fails, takes longer, or the peer died.
    pub async fn bench(&self, command: &str, within: Duration) -> Result<String, PeerError> {
        let mut answers = self.bench.lock().await;
        let line = format!("bench {command}\n");
        {
            let mut stdin = self.stdin.lock().await;
            stdin.write_all(line.as_bytes()).await.map_err(|e| io("writing to a peer", e))?;
            stdin.flush().await.map_err(|e| io("writing to a peer", e))?;
        }
        let answer = tokio::time::timeout(within, answers.recv())
            .await
            .map_err(|_| PeerError::Failed(format!("{:?} bench `{command}` took over {within:?}", self.library)))?
            .ok_or_else(|| PeerError::Failed(format!("the {:?} peer process ended", self.library)))?;
        match answer.strip_prefix("ok") {
            Some(numbers) => Ok(numbers.trim_start().to_owned()),
            None => Err(PeerError::Failed(format!("{:?} bench `{command}`: {answer}", self.library))),
        }
    }

    /// The command line of a one-shot program of `library`: connect to `connect_string`,
    /// acquire the mutex at `path` (Curator's `InterProcessMutex`, kazoo's `Lock`), release,
    /// exit — the peers' counterpart of `zk-recipes lock PATH -- true`.
    ///
    /// # Errors
    ///
    /// As [`start`](Self::start).
    pub async fn oneshot(library: Library, connect_string: &str, path: &str) -> Result<Command, PeerError> {
        let mut command = program(library, &PeerSecurity::default()).await?;
        command.arg("--oneshot").arg(connect_string).arg(path);
        Ok(command)
    }

    /// A new contender with its own client and session, using `recipe` on `path`.
    ///
    /// # Errors
    ///
    /// [`PeerError::Failed`] if the library has no such recipe here, or the peer reports an
    /// error (it could not connect, say).
    pub async fn open(&self, recipe: PeerRecipe<'_>, path: &str) -> Result<PeerContender, PeerError> {
        let words = recipe
            .words(self.library)
            .ok_or_else(|| PeerError::Failed(format!("{:?} has no {recipe:?} here", self.library)))?;
        let words = if words.contains("{path}") { words.replace("{path}", path) } else { format!("{words} {path}") };
        let id = format!("c{}", self.next_id.fetch_add(1, Ordering::Relaxed));
        let (answers, lines) = mpsc::unbounded_channel();
        let (events, event_lines) = mpsc::unbounded_channel();
        self.routes.lock().expect("routes").insert(id.clone(), Route { answers, events });
        let mut contender = PeerContender {
            id,
            library: self.library,
            stdin: Arc::clone(&self.stdin),
            lines,
            events: event_lines,
            session_id: 0,
        };
        let opened = contender.call(&format!("open {words}"), "opened").await?;
        contender.session_id =
            i64::from_str_radix(&opened, 16).map_err(|_| PeerError::Failed(format!("bad session id {opened:?}")))?;
        Ok(contender)
    }
}

/// One Curator or kazoo client in a [`Peer`], with one recipe object.
#[derive(Debug)]
pub struct PeerContender {
    id: String,
    library: Library,
    stdin: Arc<Mutex<ChildStdin>>,
    lines: mpsc::UnboundedReceiver<String>,
    events: mpsc::UnboundedReceiver<String>,
    session_id: i64,
}

impl PeerContender {
    /// The ZooKeeper session id of this contender's client.
    pub fn session_id(&self) -> i64 {
        self.session_id
    }

    /// Acquires the lock, semaphore lease or (latch, selector) starts campaigning; waits at
    /// most `timeout` where given. Returns the contender's node name once held, `None` on
    /// timeout. A latch or selector answers at once with `None`; its leadership arrives as
    /// [`event`](Self::event)s.
    ///
    /// # Errors
    ///
    /// [`PeerError::Failed`] if the library reports an error or the peer died.
    pub async fn acquire(&mut self, timeout: Option<Duration>) -> Result<Option<String>, PeerError> {
        let command = match timeout {
            Some(timeout) => format!("acquire {}", timeout.as_millis()),
            None => "acquire".to_owned(),
        };
        self.send(&command).await?;
        let (word, text) = self.answer().await?;
        match word.as_str() {
            "acquired" => Ok(Some(text)),
            "timeout" | "started" => Ok(None),
            _ => Err(self.unexpected(&command, &word, &text)),
        }
    }

    /// Releases what [`acquire`](Self::acquire) took (a latch closes; a selector leader returns
    /// from `takeLeadership` and the selector closes).
    ///
    /// # Errors
    ///
    /// [`PeerError::Failed`] if the library reports an error or the peer died.
    pub async fn release(&mut self) -> Result<(), PeerError> {
        self.call("release", "released").await.map(drop)
    }

    /// What the library reports as the participants: node names for a lock (Curator's
    /// `getParticipantNodes`), `id:is_leader` for a latch or selector (Curator's
    /// `getParticipants`), identifiers for kazoo (`contenders()`).
    ///
    /// # Errors
    ///
    /// [`PeerError::Failed`] if the library reports an error or the peer died.
    pub async fn participants(&mut self) -> Result<Vec<String>, PeerError> {
        let text = self.call("participants", "participants").await?;
        Ok(text.split_whitespace().map(str::to_owned).collect())
    }

    /// The next event: `leader <node>` or `notleader` for a latch, `leader <node>` for a
    /// selector.
    ///
    /// # Errors
    ///
    /// [`PeerError::Failed`] if nothing arrives within a minute or the peer died.
    pub async fn event(&mut self) -> Result<String, PeerError> {
        tokio::time::timeout(ANSWER_WITHIN, self.events.recv())
            .await
            .map_err(|_| {
                PeerError::Failed(format!(
                    "{:?} contender {}: no event within {ANSWER_WITHIN:?}",
                    self.library, self.id
                ))
            })?
            .ok_or_else(|| PeerError::Failed(format!("the {:?} peer process ended", self.library)))
    }

    /// The fencing token of the node this Curator contender holds, derived in Java the way this
    /// library derives its own: the lock directory's `czxid` as epoch, the node's sequence.
    /// The peer remembers it for [`capture`](Self::capture).
    ///
    /// # Errors
    ///
    /// [`PeerError::Failed`] if it holds nothing, is a kazoo contender, or the peer died.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe, like every command here: the peer answers anyway, and its answer would
    /// be taken for the next command's.
    pub async fn token(&mut self) -> Result<zk_recipes::FencingToken, PeerError> {
        let text = self.call("token", "token").await?;
        text.parse().map_err(|e| PeerError::Failed(format!("the peer's token: {e}")))
    }

    /// Captures payment `order` over JDBC through the same fence as `zk_recipes::fence` and
    /// `examples/capture.sql`, with the remembered [`token`](Self::token) — also after
    /// [`close`](Self::close)-like loss of the session, since a stale holder still has its
    /// token. Expects the tables `fences` (`FenceTable::create_statement`) and `payments` (`id
    /// bigint`, `status`, `captured_by`, `fence text COLLATE "C"`) at `jdbc_url`. Returns
    /// `Ok(token)` if captured, `Err(winner)` if PostgreSQL refused it.
    ///
    /// # Errors
    ///
    /// [`PeerError::Missing`] if the JDBC driver is not installed;
    /// [`PeerError::Failed`] if the capture fails otherwise.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: the peer captures anyway, and its answer would be taken for the next
    /// command's.
    pub async fn capture(
        &mut self,
        jdbc_url: &str,
        lock: &str,
        order: i64,
        worker: &str,
    ) -> Result<Result<zk_recipes::FencingToken, zk_recipes::FencingToken>, PeerError> {
        if !Path::new(JDBC_DRIVER).is_file() {
            return Err(PeerError::Missing(format!("{JDBC_DRIVER} does not exist")));
        }
        let command = format!("capture {jdbc_url} {lock} {order} {worker}");
        self.send(&command).await?;
        let (word, text) = self.answer().await?;
        let token = |text: &str| text.parse().map_err(|e| PeerError::Failed(format!("the peer's token: {e}")));
        match word.as_str() {
            "captured" => Ok(Ok(token(&text)?)),
            "refused" => Ok(Err(token(&text)?)),
            _ => Err(self.unexpected(&command, &word, &text)),
        }
    }

    /// Closes the contender's client, which ends its session (its nodes go at once); also
    /// while it waits in [`acquire`](Self::acquire), which then fails.
    ///
    /// # Errors
    ///
    /// [`PeerError::Failed`] if the library reports an error or the peer died.
    pub async fn close(mut self) -> Result<(), PeerError> {
        self.close_client().await
    }

    /// Closes the contender's client, as [`close`](Self::close) does, but keeps the contender:
    /// a holder whose session ended can still [`capture`](Self::capture) with its old token, as
    /// a stale holder would.
    ///
    /// # Errors
    ///
    /// [`PeerError::Failed`] if the library reports an error or the peer died.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: the client closes anyway, and the answer would be taken for the next
    /// command's.
    pub async fn close_client(&mut self) -> Result<(), PeerError> {
        self.call("close", "closed").await.map(drop)
    }

    async fn call(&mut self, command: &str, expect: &str) -> Result<String, PeerError> {
        self.send(command).await?;
        let (word, text) = self.answer().await?;
        if word == expect { Ok(text) } else { Err(self.unexpected(command, &word, &text)) }
    }

    async fn send(&self, command: &str) -> Result<(), PeerError> {
        let line = format!("{} {command}\n", self.id);
        let mut stdin = self.stdin.lock().await;
        stdin.write_all(line.as_bytes()).await.map_err(|e| io("writing to an interop peer", e))?;
        stdin.flush().await.map_err(|e| io("writing to an interop peer", e))
    }

    async fn answer(&mut self) -> Result<(String, String), PeerError> {
        let line = tokio::time::timeout(ANSWER_WITHIN, self.lines.recv())
            .await
            .map_err(|_| {
                PeerError::Failed(format!(
                    "{:?} contender {} did not answer within {ANSWER_WITHIN:?}",
                    self.library, self.id
                ))
            })?
            .ok_or_else(|| PeerError::Failed(format!("the {:?} peer process ended", self.library)))?;
        let (word, text) = line.split_once(' ').unwrap_or((&line, ""));
        Ok((word.to_owned(), text.to_owned()))
    }

    fn unexpected(&self, command: &str, word: &str, text: &str) -> PeerError {
        PeerError::Failed(format!("{:?} contender {}: `{command}` answered `{word} {text}`", self.library, self.id))
    }
}

/// The peer program of `library`, without its arguments.
async fn program(library: Library, security: &PeerSecurity) -> Result<Command, PeerError> {
    Ok(match library {
        Library::Curator => {
            let classes = compiled_curator_peer().await?;
            let mut command = Command::new(java()?);
            let mut classpath = vec![CURATOR_CLASSPATH.to_owned(), JDBC_DRIVER.to_owned()];
            classpath.extend(security.classpath.iter().cloned());
            classpath.push(classes.display().to_string());
            command
                .arg("-Xss512k")
                .arg("-XX:+UseSerialGC")
                .args(&security.jvm_args)
                .arg("-cp")
                .arg(classpath.join(":"))
                .arg("CuratorPeer");
            command
        }
        Library::Kazoo if !security.jvm_args.is_empty() => {
            return Err(PeerError::Failed("the kazoo peer does not connect to secured servers".into()));
        }
        Library::Kazoo => {
            if !Path::new(DEBIAN_PYTHON).is_file() {
                return Err(PeerError::Missing(format!("{DEBIAN_PYTHON} does not exist")));
            }
            let mut command = Command::new(DEBIAN_PYTHON);
            command.arg("-u").arg("-c").arg(KAZOO_SOURCE);
            command
        }
    })
}

/// An I/O error: what the peer code was doing, and the error.
fn io(doing: &'static str, source: std::io::Error) -> PeerError {
    PeerError::Io { doing, source }
}

/// `java` from `JAVA_HOME` or `PATH`, as the ZooKeeper harness finds it (javac, which the
/// Curator peer needs, comes with it in the JDK).
fn locate_java() -> Result<PathBuf, PeerError> {
    if let Some(home) = std::env::var_os("JAVA_HOME") {
        let java = Path::new(&home).join("bin/java");
        if java.is_file() {
            return Ok(java);
        }
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("java"))
        .find(|java| java.is_file())
        .ok_or_else(|| PeerError::Missing("no `java` in JAVA_HOME/bin or on PATH".into()))
}

/// The `java` binary, with symbolic links resolved, so that `javac` is taken from the same JDK.
fn java() -> Result<PathBuf, PeerError> {
    let java = locate_java()?;
    Ok(std::fs::canonicalize(&java).unwrap_or(java))
}

/// Compiles the Curator peer once per source version into the build directory; concurrent
/// test processes each compile into their own directory and the first rename wins.
async fn compiled_curator_peer() -> Result<PathBuf, PeerError> {
    if !Path::new("/usr/share/java/curator-recipes.jar").is_file() {
        return Err(PeerError::Missing("/usr/share/java/curator-recipes.jar does not exist".into()));
    }
    let javac = java()?.with_file_name("javac");
    if !javac.is_file() {
        return Err(PeerError::Missing(format!("{} does not exist (javac is in the JDK)", javac.display())));
    }
    let mut hasher = DefaultHasher::new();
    (CURATOR_SOURCE, &javac).hash(&mut hasher);
    let exe = std::env::current_exe().map_err(|e| io("finding the build directory", e))?;
    let root = exe.parent().unwrap_or(Path::new(".")).join("zk-recipes-peers");
    let classes = root.join(format!("curator-{:016x}", hasher.finish()));
    if classes.join("CuratorPeer.class").is_file() {
        return Ok(classes);
    }
    let staging = root.join(format!("staging-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging).map_err(|e| io("creating the peer build directory", e))?;
    let source = staging.join("CuratorPeer.java");
    std::fs::write(&source, CURATOR_SOURCE).map_err(|e| io("writing the Curator peer", e))?;
    let output = Command::new(&javac)
        .arg("-nowarn")
        .arg("-cp")
        .arg(CURATOR_CLASSPATH)
        .arg("-d")
        .arg(&staging)
        .arg(&source)
        .output()
        .await
        .map_err(|e| io("running javac", e))?;
    if !output.status.success() {
        return Err(PeerError::Failed(format!(
            "javac failed on the Curator peer:\n{}",
            String::from_utf8_lossy(&output.stderr)
        )));
    }
    if let Err(error) = std::fs::rename(&staging, &classes) {
        let _ = std::fs::remove_dir_all(&staging);
        // Fine if another process got there first: its classes are the same.
        if !classes.join("CuratorPeer.class").is_file() {
            return Err(io("moving the compiled Curator peer into place", error));
        }
    }
    Ok(classes)
}
