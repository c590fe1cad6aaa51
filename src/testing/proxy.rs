//! A fault-injecting TCP proxy on loopback, to put between a client and a server, or between
//! two members of an ensemble.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Handle;
use tokio::sync::watch;
use tokio::task::{AbortHandle, JoinSet};

use super::HarnessError;

/// What the proxy does to the traffic.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Forward everything both ways.
    Pass,
    /// Accept connections but forward nothing either way: the connection looks open and
    /// stays silent, like a partition or a frozen peer. A connection accepted meanwhile
    /// reaches the target only once the blackhole ends.
    Blackhole,
    /// Forward client requests to the server but drop the server's replies: requests take
    /// effect while the client never learns of it.
    DropReplies,
    /// Drop client requests; forward what the server sends.
    DropRequests,
    /// Close new connections at once; existing ones pass.
    Refuse,
    /// Forward everything both ways, each read held back this long first: a slow or distant
    /// network.
    Delay(Duration),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Request,
    Reply,
}

impl Fault {
    fn stalls(self) -> bool {
        self == Fault::Blackhole
    }

    fn forwards(self, direction: Direction) -> bool {
        match self {
            Fault::Pass | Fault::Refuse | Fault::Delay(_) => true,
            Fault::Blackhole => false,
            Fault::DropReplies => direction == Direction::Request,
            Fault::DropRequests => direction == Direction::Reply,
        }
    }
}

/// A TCP proxy from a loopback port to `target`, whose [`Fault`] can be changed at any time.
///
/// ```no_run
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// use zk_recipes::testing::{Fault, Proxy, TestingCluster};
///
/// let cluster = TestingCluster::standalone().await?;
/// let proxy = Proxy::start(cluster.address(0)).await?;
/// let session = zk_recipes::Session::connect(&proxy.address().to_string()).await?;
/// proxy.set_fault(Fault::Blackhole); // the session's connection goes silent
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Proxy {
    address: SocketAddr,
    fault: watch::Sender<Fault>,
    accept: AbortHandle,
    connections: Arc<std::sync::Mutex<JoinSet<()>>>,
}

impl Proxy {
    /// Starts proxying from a new loopback port to `target`, passing everything.
    ///
    /// # Errors
    ///
    /// [`HarnessError::Io`] if no port can be bound.
    pub async fn start(target: SocketAddr) -> Result<Self, HarnessError> {
        Self::serve(&Handle::current(), listen()?, target, Relaying::default())
    }

    /// Starts proxying from `listener` to `target` on `runtime`, passing everything.
    pub(super) fn serve(
        runtime: &Handle,
        listener: std::net::TcpListener,
        target: SocketAddr,
        relaying: Relaying,
    ) -> Result<Self, HarnessError> {
        // The listener and the connections' tasks belong to `runtime`.
        let _runtime = runtime.enter();
        let listener = listener
            .set_nonblocking(true)
            .and_then(|()| TcpListener::from_std(listener))
            .map_err(|e| HarnessError::io("binding the proxy", e))?;
        let address = listener.local_addr().map_err(|e| HarnessError::io("reading the proxy's address", e))?;
        let (fault, _) = watch::channel(Fault::Pass);
        let connections = Arc::new(std::sync::Mutex::new(JoinSet::new()));
        let accept =
            tokio::spawn(accept(listener, target, fault.clone(), connections.clone(), relaying)).abort_handle();
        Ok(Self { address, fault, accept, connections })
    }

    /// The address clients connect to.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Changes what happens to traffic, on existing connections too.
    pub fn set_fault(&self, fault: Fault) {
        self.fault.send_replace(fault);
    }

    /// Closes every open connection at once (the client sees its connection reset).
    pub fn reset_connections(&self) {
        self.connections.lock().unwrap_or_else(|e| e.into_inner()).abort_all();
    }
}

/// Rewrites the first bytes a connection sends to the target: given all bytes read so far,
/// `None` while it needs more, else what to send in their place.
pub(super) type Opening = Arc<dyn Fn(&[u8]) -> Option<Vec<u8>> + Send + Sync>;

/// How a proxy relays each connection, beyond what its [`Fault`] says.
#[derive(Clone, Default)]
pub(super) struct Relaying {
    /// Rewrites the start of what the connection sends to the target.
    pub(super) opening: Option<Opening>,
    /// How many more times to try connecting to the target, [`RETRY_DELAY`] apart, before
    /// closing the connection: the tries its client would have made had the target refused
    /// it, as the client cannot tell once the proxy has accepted.
    pub(super) retries: u32,
}

/// The pause between tries at connecting to a proxy's target.
const RETRY_DELAY: Duration = Duration::from_millis(100);

/// A listener on a new loopback port, for [`Proxy::serve`].
pub(super) fn listen() -> Result<std::net::TcpListener, HarnessError> {
    std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(|e| HarnessError::io("binding the proxy", e))
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.reset_connections();
    }
}

async fn accept(
    listener: TcpListener,
    target: SocketAddr,
    fault: watch::Sender<Fault>,
    connections: Arc<std::sync::Mutex<JoinSet<()>>>,
    relaying: Relaying,
) {
    while let Ok((client, _)) = listener.accept().await {
        if *fault.borrow() == Fault::Refuse {
            continue;
        }
        let fault = fault.subscribe();
        let mut connections = connections.lock().unwrap_or_else(|e| e.into_inner());
        // Reap finished connections so the set does not grow without bound.
        while connections.try_join_next().is_some() {}
        connections.spawn(relay(client, target, fault, relaying.clone()));
    }
}

async fn relay(client: TcpStream, target: SocketAddr, mut fault: watch::Receiver<Fault>, relaying: Relaying) {
    // Behind a blackhole the target does not even see the connection until it heals, as behind
    // a real partition. A ZooKeeper member reads the first message of each new election
    // connection on its one listener thread, so a silent connection reaching it would keep it
    // from hearing any other member for a read timeout.
    if fault.wait_for(|f| !f.stalls()).await.is_err() {
        return;
    }
    let mut tries = 0;
    let server = loop {
        match TcpStream::connect(target).await {
            Ok(server) => break server,
            Err(_) if tries < relaying.retries => tries += 1,
            Err(_) => return,
        }
        tokio::time::sleep(RETRY_DELAY).await;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    // Either direction ending ends the connection.
    tokio::select! {
        _ = pump(client_read, server_write, fault.clone(), Direction::Request, relaying.opening) => {}
        _ = pump(server_read, client_write, fault, Direction::Reply, None) => {}
    }
}

async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    mut fault: watch::Receiver<Fault>,
    direction: Direction,
    mut opening: Option<Opening>,
) {
    let mut buffer = vec![0; 64 * 1024];
    let mut opened = Vec::new();
    loop {
        if fault.wait_for(|f| !f.stalls()).await.is_err() {
            return;
        }
        let n = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        // Bytes read just before a blackhole began are held, not lost: a partition delays
        // traffic, and a byte stream with a hole in it would be garbage once healed.
        let Ok(now) = fault.wait_for(|f| !f.stalls()).await.map(|f| *f) else { return };
        if let Fault::Delay(delay) = now {
            tokio::time::sleep(delay).await;
        }
        let mut bytes = &buffer[..n];
        if let Some(rewrite) = &opening {
            opened.extend_from_slice(bytes);
            let Some(rewritten) = rewrite(&opened) else { continue };
            opening = None;
            opened = rewritten;
            bytes = &opened;
        }
        if now.forwards(direction) && to.write_all(bytes).await.is_err() {
            return;
        }
    }
}

/// One client's route to every member of a cluster, through a [`Proxy`] each: connect the
/// client with [`connect_string`](Link::connect_string), then cut it off from all members or
/// only some, while other clients reach the ensemble directly.
///
/// ```no_run
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// use zk_recipes::testing::{Fault, Link, TestingCluster};
///
/// let cluster = TestingCluster::ensemble(3).await?;
/// let link = Link::start(&cluster).await?;
/// let session = zk_recipes::Session::connect(&link.connect_string()).await?;
/// link.set_fault(Fault::Blackhole); // partitioned from the whole ensemble
/// link.set_member_fault(0, Fault::Pass); // but member 0 is reachable again
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Link {
    proxies: Vec<Proxy>,
}

impl Link {
    /// Starts one proxy per member of `cluster`, passing everything.
    ///
    /// # Errors
    ///
    /// [`HarnessError::Io`] if no port can be bound.
    pub async fn start(cluster: &super::TestingCluster) -> Result<Self, HarnessError> {
        let mut proxies = Vec::with_capacity(cluster.size());
        for member in 0..cluster.size() {
            proxies.push(Proxy::start(cluster.address(member)).await?);
        }
        Ok(Self { proxies })
    }

    /// The connect string naming every member's proxy.
    pub fn connect_string(&self) -> String {
        let addresses: Vec<String> = self.proxies.iter().map(|p| p.address().to_string()).collect();
        addresses.join(",")
    }

    /// Sets the fault on the way to every member.
    pub fn set_fault(&self, fault: Fault) {
        self.proxies.iter().for_each(|p| p.set_fault(fault));
    }

    /// Sets the fault on the way to one member.
    ///
    /// # Panics
    ///
    /// If there is no such member.
    pub fn set_member_fault(&self, member: usize, fault: Fault) {
        self.proxies[member].set_fault(fault);
    }

    /// Closes every open connection to every member (the client sees its connection reset).
    pub fn reset_connections(&self) {
        self.proxies.iter().for_each(Proxy::reset_connections);
    }
}
