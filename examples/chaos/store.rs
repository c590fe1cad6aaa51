//! The checker: a token-checking store on a loopback port, the ledger of what each contender
//! believed, and the operator's deletions.
//!
//! The store is the protected resource. It accepts a write only if the writer's fencing token
//! is current, by the recipe's [`Rule`]. Like a real fenced resource, it learns of a new holder
//! by its first write, so every contender writes at once after acquiring (`GRANT`, which also
//! says what it found of its own nodes), then says `ENTER`.
//!
//! The ledger records, in the order the store received them, every holding's grant, enter,
//! doubt (its `lost()` resolved), exit and verdict (healthy if its release proved the node had
//! lived until then), and every node the operator deleted. From it come the violations: a stale
//! write the store accepted (a check of the store itself), a token handed out twice, tokens out
//! of order, more healthy holders at once than the recipe allows, a healthy holder's write
//! refused, a healthy holder's write accepted after that of a holder whose token excludes it,
//! and a holder granted with a node that was gone.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex as StdMutex, MutexGuard as StdGuard};
use std::time::Instant;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;
use zk_recipes::FencingToken;

use crate::Result;

/// Who may hold together, and so which writes the store accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// One holder at a time (mutex, leader latch, leader selector): a write is accepted if its
    /// token is not lower than the highest accepted.
    Exclusive,
    /// Up to this many (semaphore): a write is accepted if fewer tokens above it are open
    /// (written and not yet given back).
    Permits(usize),
    /// Readers together, or one writer (read-write lock). Readers and writers share one queue
    /// and one token order, the nodes' sequence: a writer holds only once every node ahead of
    /// it is gone, a reader once every writer ahead of it is gone. So once a holder with a
    /// larger token has written, a writer with a smaller token holds no more, whatever the
    /// newcomer is; a reader holds no more once a writer with a larger token has written,
    /// while readers with larger tokens may hold beside it. The store refuses exactly those
    /// writes: a writer's if any larger token was accepted, a reader's if a writer's larger
    /// token came (even refused: it was granted, so every node ahead of it was gone).
    ReadWrite,
}

impl Rule {
    /// Whether `later` can hold only once `earlier` is gone for good: it has a larger token in
    /// the same queue and the recipe never lets the two hold together, or its token is of a
    /// later epoch (the directory was deleted, so every earlier node was gone).
    fn excludes(self, earlier: &Holding, later: &Holding) -> bool {
        later.token > earlier.token
            && (later.token.epoch() != earlier.token.epoch()
                || match self {
                    Rule::Exclusive => true,
                    Rule::Permits(_) => false,
                    Rule::ReadWrite => !(earlier.reader && later.reader),
                })
    }
}

/// What a holder found of its own nodes, read on its own ZooKeeper session right after it was
/// granted, before its first write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeCheck {
    /// Every node there.
    Present,
    /// A node missing, while that session lived and the holder had noticed no loss: the node
    /// was deleted before the read.
    Gone,
    /// Nothing to conclude: the session changed or ended, a request failed, or the recipe had
    /// noticed a loss already (and may have deleted the node itself).
    Unknown,
}

impl NodeCheck {
    const ALL: [NodeCheck; 3] = [NodeCheck::Present, NodeCheck::Gone, NodeCheck::Unknown];

    pub fn name(self) -> &'static str {
        match self {
            NodeCheck::Present => "present",
            NodeCheck::Gone => "gone",
            NodeCheck::Unknown => "unknown",
        }
    }

    fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.name() == name)
    }
}

/// One acquisition, from its grant to its verdict.
#[derive(Debug)]
pub struct Holding {
    pub contender: String,
    pub token: FencingToken,
    /// A read-write lock's reader (every other holder excludes others).
    pub reader: bool,
    /// The contender nodes it was granted with.
    pub nodes: Vec<String>,
    pub check: Option<NodeCheck>,
    /// When the attempt that led to it began: the store answered its `START` before the
    /// contender began to acquire.
    pub started: Option<Instant>,
    pub entered: Option<Instant>,
    pub doubted: Option<Instant>,
    pub exited: Option<Instant>,
    /// `Some(true)` if the release succeeded: the node lived until then.
    pub healthy: Option<bool>,
    rejected: u32,
    /// The store's order numbers of its first and its last accepted write.
    first_accepted: Option<u64>,
    last_accepted: Option<u64>,
}

impl Holding {
    pub fn open_at(&self, at: Instant) -> bool {
        self.entered.is_some_and(|e| e <= at) && self.exited.is_none_or(|x| x > at)
    }

    fn name(&self) -> String {
        format!("{}@{}", self.contender, self.token)
    }
}

/// A contender node the operator deleted (or tried to).
#[derive(Debug, Clone, Copy)]
pub struct Deletion {
    /// Deleted in one transaction with a check that a node it waited behind existed: it
    /// provably waited then, so it had never held and never may.
    pub waiting: bool,
    /// The server confirmed the delete; else its outcome is unknown (no reply in time).
    pub confirmed: bool,
}

/// What the scenario's summary counts.
#[derive(Debug, Default, Clone)]
pub struct Counts {
    pub acquisitions: u64,
    pub writes_accepted: u64,
    /// Writes by holders whose holding was lost or superseded, all refused.
    pub stale_rejected: u64,
    pub stale_accepted: u64,
    /// Semaphore only: healthy holders' writes that the token window refused because a higher
    /// token was still open — a holder that vanished (paused, partitioned) without saying so.
    pub window_refusals: u64,
    pub cancellations: u64,
    pub errors: BTreeMap<String, u64>,
    /// Contender nodes the operator deleted, and how many of them provably waited.
    pub deletes: u64,
    pub waiting_deletes: u64,
    /// Holders that found their node gone right after the grant, deleted by the operator.
    pub gone_at_grant: u64,
}

impl Counts {
    /// Adds `other`'s counts to these.
    pub fn add(&mut self, other: &Counts) {
        self.acquisitions += other.acquisitions;
        self.writes_accepted += other.writes_accepted;
        self.stale_rejected += other.stale_rejected;
        self.stale_accepted += other.stale_accepted;
        self.window_refusals += other.window_refusals;
        self.cancellations += other.cancellations;
        for (kind, n) in &other.errors {
            *self.errors.entry(kind.clone()).or_default() += n;
        }
        self.deletes += other.deletes;
        self.waiting_deletes += other.waiting_deletes;
        self.gone_at_grant += other.gone_at_grant;
    }
}

#[derive(Debug)]
pub struct Ledger {
    pub rule: Rule,
    pub holdings: Vec<Holding>,
    index: HashMap<(String, FencingToken), usize>,
    /// The highest token accepted, and the highest that came from a holder excluding all
    /// others.
    highest: Option<FencingToken>,
    highest_writer: Option<FencingToken>,
    open: BTreeSet<FencingToken>,
    /// Accepted writes so far: the next one's order number.
    accepted: u64,
    deletions: HashMap<String, Deletion>,
    /// Each contender's ZooKeeper session, as it last said.
    sessions: HashMap<String, i64>,
    /// When each contender's latest attempt began.
    starts: HashMap<String, Instant>,
    pub counts: Counts,
    pub violations: Vec<String>,
}

impl Ledger {
    fn new(rule: Rule) -> Self {
        Self {
            rule,
            holdings: Vec::new(),
            index: HashMap::new(),
            highest: None,
            highest_writer: None,
            open: BTreeSet::new(),
            accepted: 0,
            deletions: HashMap::new(),
            sessions: HashMap::new(),
            starts: HashMap::new(),
            counts: Counts::default(),
            violations: Vec::new(),
        }
    }

    fn holding(&mut self, contender: &str, token: FencingToken) -> &mut Holding {
        let next = self.holdings.len();
        let i = *self.index.entry((contender.to_owned(), token)).or_insert(next);
        if i == next {
            self.holdings.push(Holding {
                contender: contender.to_owned(),
                token,
                reader: false,
                nodes: Vec::new(),
                check: None,
                started: None,
                entered: None,
                doubted: None,
                exited: None,
                healthy: None,
                rejected: 0,
                first_accepted: None,
                last_accepted: None,
            });
        }
        &mut self.holdings[i]
    }

    fn write(&mut self, contender: &str, token: FencingToken) -> bool {
        let reader = self.holding(contender, token).reader;
        let accepted = match self.rule {
            Rule::Exclusive => self.highest.is_none_or(|highest| token >= highest),
            Rule::Permits(permits) => self.open.range(token..).filter(|&&t| t != token).count() < permits,
            Rule::ReadWrite if reader => self.highest_writer.is_none_or(|highest| token >= highest),
            Rule::ReadWrite => self.highest.is_none_or(|highest| token >= highest),
        };
        // A writer's token, even refused, proves that every node ahead of it was gone when it
        // was granted: readers with smaller tokens hold no more.
        if !reader {
            self.highest_writer = self.highest_writer.max(Some(token));
        }
        if accepted {
            self.counts.writes_accepted += 1;
            self.highest = self.highest.max(Some(token));
            if let Rule::Permits(_) = self.rule {
                self.open.insert(token);
            }
            let order = self.accepted;
            self.accepted += 1;
            let holding = self.holding(contender, token);
            holding.first_accepted.get_or_insert(order);
            holding.last_accepted = Some(order);
            if self.superseded(token, reader, false) {
                self.counts.stale_accepted += 1;
                self.violations.push(format!("stale write accepted: {contender} with token {token}"));
            }
        } else {
            // Stale if the holding turns out lost; a violation if it was healthy throughout.
            self.holding(contender, token).rejected += 1;
        }
        accepted
    }

    /// Whether, by the ledger, a holder with `token` (a reader or not) cannot hold any more:
    /// as many as there are permits hold now with larger tokens (semaphore), or else one that
    /// excludes it entered after it — with `now_only`, one that holds now.
    fn superseded(&self, token: FencingToken, reader: bool, now_only: bool) -> bool {
        let now = Instant::now();
        let mut later =
            self.holdings.iter().filter(|h| h.token > token && h.entered.is_some() && (!now_only || h.open_at(now)));
        match self.rule {
            Rule::Permits(permits) => later.filter(|h| h.open_at(now)).count() >= permits,
            Rule::Exclusive => later.next().is_some(),
            Rule::ReadWrite => later.any(|h| !(reader && h.reader)),
        }
    }

    /// Whether successors hold now that exclude `holding`, which can then hold no more.
    pub fn displaced(&self, holding: &Holding) -> bool {
        self.superseded(holding.token, holding.reader, true)
    }

    fn grant(&mut self, contender: &str, token: FencingToken, reader: bool, check: NodeCheck, nodes: &str) -> bool {
        let started = self.starts.get(contender).copied();
        let holding = self.holding(contender, token);
        holding.started = started;
        holding.reader = reader;
        holding.check = Some(check);
        holding.nodes = nodes.split(',').map(str::to_owned).collect();
        self.write(contender, token)
    }

    fn enter(&mut self, contender: &str, token: FencingToken) {
        self.counts.acquisitions += 1;
        if self.holdings.iter().any(|h| h.token == token && h.contender != contender) {
            self.violations.push(format!("{contender} entered with {token}, a token handed out before"));
        }
        self.holding(contender, token).entered = Some(Instant::now());
    }

    fn verdict(&mut self, contender: &str, token: FencingToken, healthy: bool) {
        let rule = self.rule;
        let holding = self.holding(contender, token);
        holding.healthy = Some(healthy);
        let rejected = u64::from(holding.rejected);
        match (healthy, rule) {
            (false, _) => self.counts.stale_rejected += rejected,
            (true, Rule::Permits(_)) => self.counts.window_refusals += rejected,
            (true, _) if rejected > 0 => self
                .violations
                .push(format!("{contender} held with {token} throughout, yet {rejected} write(s) refused")),
            (true, _) => {}
        }
    }

    /// Records the operator's deletion of `node`: a confirmed one replaces one whose outcome
    /// was unknown (the node was still there after all).
    pub fn deleted(&mut self, node: String, deletion: Deletion) {
        if deletion.confirmed {
            self.counts.deletes += 1;
            self.counts.waiting_deletes += u64::from(deletion.waiting);
        }
        let recorded = self.deletions.entry(node).or_insert(deletion);
        if deletion.confirmed {
            *recorded = deletion;
        }
    }

    /// The holdings open now.
    pub fn holders(&self) -> impl Iterator<Item = &Holding> {
        let now = Instant::now();
        self.holdings.iter().filter(move |h| h.open_at(now))
    }

    /// When `contender` first entered after `since`, if it did.
    pub fn entered_after(&self, contender: &str, since: Instant) -> Option<Instant> {
        self.holdings.iter().filter(|h| h.contender == contender).filter_map(|h| h.entered).find(|&e| e > since)
    }

    /// The ZooKeeper session `contender` last said it contends on.
    pub fn session(&self, contender: &str) -> Option<i64> {
        self.sessions.get(contender).copied()
    }

    /// The checks that need every holding ended and every deletion recorded: holdings that
    /// never ended, holders granted with a node that was gone, tokens out of order (a healthy
    /// holder that left before another entered has the smaller token, unless both read), a
    /// healthy holder's write accepted after that of a holder that excludes it, and overlap of
    /// healthy holders.
    pub fn finish(&mut self) {
        for h in self.holdings.iter().filter(|h| h.entered.is_some() && h.healthy.is_none()) {
            self.violations.push(format!("{} with {} never ended its holding", h.contender, h.token));
        }
        self.granted_nodes();
        let rule = self.rule;
        let healthy: Vec<&Holding> = self.holdings.iter().filter(|h| h.healthy == Some(true)).collect();
        for a in &healthy {
            let ordered = healthy.iter().filter(|b| !(rule == Rule::ReadWrite && a.reader && b.reader));
            // Who came after whom. One holder at a time (or a writer among readers): b can
            // only hold once a released, which a does after its EXIT was answered, so b's ENTER
            // comes after. Several permits: b may hold beside a, granted before it yet slow to
            // say so, so only b's attempt beginning after a left proves b came after.
            let after = |b: &&&Holding| match rule {
                Rule::Permits(_) => b.started.is_some() && b.started > a.exited,
                Rule::Exclusive | Rule::ReadWrite => b.entered > a.exited,
            };
            for b in ordered.filter(after).filter(|b| b.token <= a.token) {
                self.violations.push(format!("token out of order: {} came after {} had left", b.name(), a.name()));
            }
            // A holder that excludes `a` was granted only once `a`'s node was gone, after all
            // of `a`'s writes — unless `a` was not healthy after all.
            let Some(last) = a.last_accepted else { continue };
            for b in self.holdings.iter().filter(|b| b.first_accepted.is_some_and(|f| f < last)) {
                if rule.excludes(a, b) {
                    self.violations.push(format!(
                        "{} held throughout, yet its write was accepted after one of {}, which excludes it",
                        a.name(),
                        b.name()
                    ));
                }
            }
        }
        // Sweep over healthy holdings: at equal instants, exits first.
        let mut edges: Vec<(Instant, i32, &Holding)> = Vec::new();
        for h in self.holdings.iter().filter(|h| h.healthy == Some(true)) {
            if let (Some(entered), Some(exited)) = (h.entered, h.exited) {
                edges.push((entered, 1, h));
                edges.push((exited, -1, h));
            }
        }
        edges.sort_by_key(|&(at, step, _)| (at, step));
        let mut inside: Vec<&Holding> = Vec::new();
        for (_, step, h) in edges {
            if step < 0 {
                inside.retain(|o| !std::ptr::eq(*o, h));
                continue;
            }
            inside.push(h);
            let too_many = match rule {
                Rule::Exclusive => inside.len() > 1,
                Rule::Permits(permits) => inside.len() > permits,
                Rule::ReadWrite => inside.len() > 1 && inside.iter().any(|o| !o.reader),
            };
            if too_many {
                let who: Vec<String> = inside.iter().map(|o| o.name()).collect();
                self.violations.push(format!("{} healthy holders at once: {}", inside.len(), who.join(", ")));
            }
        }
    }

    /// Holders granted with a node that did not exist. A node deleted while it provably waited
    /// never holds, whatever the holder's own check found; a node its holder found gone must
    /// have been deleted by the operator — whose deletes right after a grant are legitimate,
    /// and counted — since nobody else deletes a node of a live session before its release.
    fn granted_nodes(&mut self) {
        for h in self.holdings.iter().filter(|h| h.check.is_some()) {
            let deletions: Vec<(&String, Option<&Deletion>)> =
                h.nodes.iter().map(|node| (node, self.deletions.get(node))).collect();
            for (node, _) in deletions.iter().filter(|(_, d)| d.is_some_and(|d| d.waiting && d.confirmed)) {
                self.violations.push(format!(
                    "phantom holder: {} was granted with {node}, which the operator had deleted while it waited",
                    h.name()
                ));
            }
            match h.check {
                Some(NodeCheck::Gone) if deletions.iter().any(|(_, d)| d.is_some()) => self.counts.gone_at_grant += 1,
                Some(NodeCheck::Gone) => self.violations.push(format!(
                    "phantom holder: {} found its node gone on its own live session right after the grant, and \
                     nobody had deleted it ({})",
                    h.name(),
                    h.nodes.join(", ")
                )),
                _ => {}
            }
        }
    }
}

/// The store server; the ledger stays readable by the fault driver.
pub struct Store {
    pub address: SocketAddr,
    ledger: Arc<StdMutex<Ledger>>,
    accept: AbortHandle,
}

impl Store {
    pub async fn start(rule: Rule) -> Result<Self> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let address = listener.local_addr()?;
        let ledger = Arc::new(StdMutex::new(Ledger::new(rule)));
        let shared = ledger.clone();
        let accept = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, shared.clone()));
            }
        })
        .abort_handle();
        Ok(Self { address, ledger, accept })
    }

    pub fn ledger(&self) -> StdGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn serve(stream: TcpStream, ledger: Arc<StdMutex<Ledger>>) {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let answer = {
            let mut ledger = ledger.lock().unwrap_or_else(|e| e.into_inner());
            handle(&mut ledger, &line).unwrap_or_else(|| format!("BAD {line}"))
        };
        if write.write_all(format!("{answer}\n").as_bytes()).await.is_err() {
            return;
        }
    }
}

fn handle(ledger: &mut Ledger, line: &str) -> Option<String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let token = |i: usize| words.get(i).and_then(|t| t.parse::<FencingToken>().ok());
    let verdict = |accepted: bool| Some(if accepted { "ACCEPT" } else { "REJECT" }.into());
    match words.as_slice() {
        ["GRANT", c, _, role, check, nodes] => {
            return verdict(ledger.grant(c, token(2)?, *role == "read", NodeCheck::parse(check)?, nodes));
        }
        ["WRITE", c, ..] => return verdict(ledger.write(c, token(2)?)),
        ["ENTER", c, ..] => ledger.enter(c, token(2)?),
        ["DOUBT", c, ..] => ledger.holding(c, token(2)?).doubted = Some(Instant::now()),
        ["EXIT", c, ..] => {
            let token = token(2)?;
            ledger.holding(c, token).exited = Some(Instant::now());
            ledger.open.remove(&token);
        }
        ["VERDICT", c, _, verdict] => ledger.verdict(c, token(2)?, *verdict == "healthy"),
        ["SESSION", c, id] => {
            ledger.sessions.insert((*c).to_owned(), id.parse().ok()?);
        }
        ["START", c] => {
            ledger.starts.insert((*c).to_owned(), Instant::now());
        }
        ["CANCEL", _] => ledger.counts.cancellations += 1,
        ["ERROR", _, kind] => *ledger.counts.errors.entry((*kind).to_owned()).or_default() += 1,
        _ => return None,
    }
    Some("OK".into())
}

/// A contender's connection to the store: one request, one answer.
pub struct StoreClient {
    contender: String,
    lines: tokio::io::Lines<BufReader<tokio::net::tcp::OwnedReadHalf>>,
    write: tokio::net::tcp::OwnedWriteHalf,
}

impl StoreClient {
    pub async fn connect(address: SocketAddr, contender: &str) -> Result<Self> {
        let (read, write) = TcpStream::connect(address).await?.into_split();
        Ok(Self { contender: contender.to_owned(), lines: BufReader::new(read).lines(), write })
    }

    async fn ask(&mut self, verb: &str, rest: &str) -> Result<String> {
        let line = format!("{verb} {} {rest}\n", self.contender);
        self.write.write_all(line.as_bytes()).await?;
        let answer = self.lines.next_line().await?.ok_or("the store closed the connection")?;
        if answer.starts_with("BAD") {
            return Err(format!("the store did not understand {line:?}").into());
        }
        Ok(answer)
    }

    /// The first write of a new holder, with what it is (a reader or not), what it found of
    /// its nodes, and which they are; whether the store accepted it.
    pub async fn grant(
        &mut self,
        token: FencingToken,
        reader: bool,
        check: NodeCheck,
        nodes: &[String],
    ) -> Result<bool> {
        let role = if reader { "read" } else { "write" };
        let rest = format!("{token} {role} {} {}", check.name(), nodes.join(","));
        Ok(self.ask("GRANT", &rest).await? == "ACCEPT")
    }

    /// Writes to the protected resource; whether the store accepted it.
    pub async fn write(&mut self, token: FencingToken) -> Result<bool> {
        Ok(self.ask("WRITE", &token.to_string()).await? == "ACCEPT")
    }

    /// An attempt to acquire begins (answered before it does).
    pub async fn start(&mut self) -> Result<()> {
        self.ask("START", "").await.map(drop)
    }

    pub async fn enter(&mut self, token: FencingToken) -> Result<()> {
        self.ask("ENTER", &token.to_string()).await.map(drop)
    }

    pub async fn doubt(&mut self, token: FencingToken) -> Result<()> {
        self.ask("DOUBT", &token.to_string()).await.map(drop)
    }

    pub async fn exit(&mut self, token: FencingToken) -> Result<()> {
        self.ask("EXIT", &token.to_string()).await.map(drop)
    }

    pub async fn verdict(&mut self, token: FencingToken, healthy: bool) -> Result<()> {
        self.ask("VERDICT", &format!("{token} {}", if healthy { "healthy" } else { "lost" })).await.map(drop)
    }

    /// Says which ZooKeeper session the contender contends on now.
    pub async fn session(&mut self, id: i64) -> Result<()> {
        self.ask("SESSION", &id.to_string()).await.map(drop)
    }

    pub async fn cancelled(&mut self) -> Result<()> {
        self.ask("CANCEL", "").await.map(drop)
    }

    pub async fn error(&mut self, kind: &str) -> Result<()> {
        self.ask("ERROR", kind).await.map(drop)
    }
}
