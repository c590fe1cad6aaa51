//! Pure decision logic of the queue: which children of a recipe directory are contenders, in
//! what order, and whom a contender must wait for. No I/O here, so all of it is unit- and
//! property-tested.

/// The kinds of contender node recognised, by the marker in front of the sequence suffix.
///
/// Curator writes `_c_<uuid>-<marker><seq>`; kazoo writes `<32 hex><marker><seq>`. ZooKeeper
/// numbers every child of a directory from one counter, so nodes of all kinds in one directory
/// share one total order.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Curator InterProcessMutex / LeaderSelector (`lock-`).
    Lock,
    /// kazoo Lock and WriteLock (`__lock__`).
    KazooLock,
    /// kazoo ReadLock (`__rlock__`).
    KazooRead,
    /// Curator InterProcessReadWriteLock reader (`__READ__`).
    Read,
    /// Curator InterProcessReadWriteLock writer (`__WRIT__`).
    Write,
    /// Curator LeaderLatch (`latch-`).
    Latch,
    /// Curator InterProcessSemaphoreV2 lease (`lease-`).
    Lease,
}

impl Kind {
    /// Every kind, to match a child name against their markers.
    const ALL: [Kind; 7] =
        [Kind::Lock, Kind::KazooLock, Kind::KazooRead, Kind::Read, Kind::Write, Kind::Latch, Kind::Lease];

    /// The name in front of the sequence suffix of a node of this kind; the one place each is
    /// spelled out.
    pub(crate) fn marker(self) -> &'static str {
        match self {
            Kind::Lock => "lock-",
            Kind::KazooLock => "__lock__",
            Kind::KazooRead => "__rlock__",
            // Curator's reader and writer markers have one length, so that names sort alike.
            Kind::Read => "__READ__",
            Kind::Write => "__WRIT__",
            Kind::Latch => "latch-",
            Kind::Lease => "lease-",
        }
    }

    /// Whether a reader must wait for a node of this kind. Only the two reader kinds share;
    /// anything else in a read-write lock's directory is taken for a writer, so that a foreign
    /// recipe's node can delay readers but never let one in beside a writer.
    pub(crate) fn is_writer(self) -> bool {
        !matches!(self, Kind::Read | Kind::KazooRead)
    }

    /// The rule a node of this kind waits by in a lock's directory: a reader's, or else the
    /// exclusive one. A semaphore's leases wait by [`Rule::Leases`] instead, whose permits only
    /// the recipe knows (see `Role::rule`).
    pub(crate) fn rule(self) -> Rule {
        if self.is_writer() { Rule::Exclusive } else { Rule::Reader }
    }
}

/// One contender node of a directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Contender<'a> {
    pub(crate) name: &'a str,
    pub(crate) kind: Kind,
    pub(crate) sequence: u32,
}

/// What a child name turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Parsed<'a> {
    Contender(Contender<'a>),
    /// A contender whose sequence is negative: the directory's 32-bit counter wrapped.
    Wrapped,
    /// Not a contender node of any known dialect.
    Foreign,
}

/// Parses a child name: a known marker followed by the server's `%010d` rendering of a signed
/// 32-bit counter (`0000000042`, or after wrapping `-2147483648` or `-000000001`).
pub(crate) fn parse(name: &str) -> Parsed<'_> {
    let has_marker = |stem: &str| Kind::ALL.into_iter().find(|kind| stem.ends_with(kind.marker()));
    for negative_len in [11, 10] {
        if let Some(stem) = strip_negative(name, negative_len)
            && let Some(_kind) = has_marker(stem)
        {
            #[cfg(test)]
            if super::attempt::mutation::is(super::attempt::mutation::Mutation::WrappedSequenceAsSmall) {
                return Parsed::Contender(Contender { name, kind: _kind, sequence: 0 });
            }
            return Parsed::Wrapped;
        }
    }
    let Some(split) = name.len().checked_sub(10) else { return Parsed::Foreign };
    let digits = &name.as_bytes()[split..];
    if !digits.iter().all(u8::is_ascii_digit) {
        return Parsed::Foreign;
    }
    // `name[split]` is an ASCII digit, so `split` is a char boundary.
    let stem = &name[..split];
    let value = digits.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
    match (has_marker(stem), u32::try_from(value)) {
        (Some(kind), Ok(sequence)) if sequence <= i32::MAX as u32 => {
            Parsed::Contender(Contender { name, kind, sequence })
        }
        _ => Parsed::Foreign,
    }
}

/// If `name` ends with `-` and `len - 1` digits, returns what comes before the `-`.
fn strip_negative(name: &str, len: usize) -> Option<&str> {
    let split = name.len().checked_sub(len)?;
    let tail = name.as_bytes().get(split..)?;
    (tail[0] == b'-' && tail[1..].iter().all(u8::is_ascii_digit)).then(|| &name[..split])
}

/// A wrapped (negative) sequence was found among the children.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WrappedChild(pub(crate) String);

/// The contenders of one directory, in queue order: by sequence, ties by name (Curator 5.5+
/// gives a downgrading reader the same number as its writer).
#[derive(Debug)]
pub(crate) struct Queue<'a> {
    contenders: Vec<Contender<'a>>,
    /// Children that are not contender nodes of any known dialect.
    foreign: usize,
}

impl<'a> Queue<'a> {
    /// Orders the contenders among `children`, setting foreign names aside.
    pub(crate) fn new(children: &'a [String]) -> Result<Self, WrappedChild> {
        let mut contenders = Vec::with_capacity(children.len());
        let mut foreign = 0;
        for child in children {
            match parse(child) {
                Parsed::Contender(contender) => contenders.push(contender),
                Parsed::Wrapped => return Err(WrappedChild(child.clone())),
                Parsed::Foreign => foreign += 1,
            }
        }
        contenders.sort_unstable_by(|a, b| (a.sequence, a.name).cmp(&(b.sequence, b.name)));
        Ok(Self { contenders, foreign })
    }

    /// The contender's place in the queue (0 = head), if it is in it.
    pub(crate) fn position(&self, name: &str) -> Option<usize> {
        self.contenders.iter().position(|c| c.name == name)
    }

    pub(crate) fn contenders(&self) -> &[Contender<'a>] {
        &self.contenders
    }

    /// Leaves out the contenders that `keep` rejects, visiting them in queue order.
    pub(crate) fn retain(&mut self, keep: impl FnMut(&Contender<'a>) -> bool) {
        self.contenders.retain(keep);
    }

    /// Whether each contender, in queue order, holds now by the rule of its node's kind: what
    /// an onlooker can tell of a lock's directory without knowing who wrote which node.
    pub(crate) fn holding(&self) -> impl Iterator<Item = bool> + '_ {
        let decide = |(position, contender): (usize, &Contender<'a>)| contender.kind.rule().decide(self, position);
        self.contenders.iter().enumerate().map(decide).map(|decision| decision == Decision::Proceed)
    }
}

/// The writer a reader waits for among the contenders ahead of it: the nearest.
fn reader_waits_on<'c, 'a>(ahead: &'c [Contender<'a>]) -> Option<&'c Contender<'a>> {
    #[cfg(test)]
    if super::attempt::mutation::is(super::attempt::mutation::Mutation::ReaderWatchesFirstWriter) {
        return ahead.iter().find(|c| c.kind.is_writer());
    }
    ahead.iter().rev().find(|c| c.kind.is_writer())
}

/// What a contender does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision<'a> {
    /// It holds (or leads) now.
    Proceed,
    /// It must wait until this node changes; it watches that node only.
    Wait { on: &'a str },
    /// It must wait until the directory's children change (a semaphore's lease set, which only
    /// the holder of the semaphore's internal mutex watches).
    WaitForChildren,
}

/// A recipe's rule: who may proceed, and whom a waiter watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rule {
    /// Mutex, writer, leader: the head proceeds; everyone else waits for the contender
    /// immediately ahead, so one departure wakes exactly one waiter.
    Exclusive,
    /// Reader of a read-write lock: proceeds when no writer is ahead, else waits for the nearest
    /// writer ahead. Readers between two writers wake together when the first one leaves,
    /// because they may then all proceed.
    Reader,
    /// Semaphore lease (InterProcessSemaphoreV2): proceeds while the directory holds no more
    /// children than permits. Counts every child, as Curator does, so that a stray node can
    /// only make the semaphore stricter.
    Leases { permits: u32 },
}

impl Rule {
    /// Decides for the contender at `position` of `queue`.
    pub(crate) fn decide<'a>(self, queue: &Queue<'a>, position: usize) -> Decision<'a> {
        let contenders = queue.contenders();
        match self {
            Rule::Exclusive => match position.checked_sub(1) {
                None => Decision::Proceed,
                Some(ahead) => Decision::Wait { on: contenders[ahead].name },
            },
            Rule::Reader => match reader_waits_on(&contenders[..position]) {
                None => Decision::Proceed,
                Some(writer) => Decision::Wait { on: writer.name },
            },
            Rule::Leases { permits } => {
                if contenders.len() + queue.foreign <= permits as usize {
                    Decision::Proceed
                } else {
                    Decision::WaitForChildren
                }
            }
        }
    }
}

impl Rule {
    /// Whether the contender at `position`, waiting on `on`, may proceed as soon as `on` is
    /// deleted, without listing the directory again — saving a round trip on every handoff.
    ///
    /// True when `on` is the head and nothing can be ahead once it leaves: sequence numbers only
    /// grow, so a node created later sorts behind us. The one exception is a Curator 5.5+
    /// writer downgrading to a reader, whose read node copies the writer's number: an exclusive
    /// contender right behind a writer head must list again; a reader need not, as a reader
    /// never blocks it.
    pub(crate) fn proceeds_when_head_leaves(self, queue: &Queue<'_>, position: usize, on: &str) -> bool {
        let Some(head) = queue.contenders().first() else { return false };
        if head.name != on {
            return false;
        }
        match self {
            Rule::Exclusive => position == 1 && head.kind != Kind::Write,
            Rule::Reader => true,
            Rule::Leases { .. } => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const CURATOR: &str = "_c_0e87bab8-f0e1-45d0-8f95-769f4ce2d171-";
    const KAZOO: &str = "93166b2c6a1a4b6c9e3d1f0a2b4c6d8e";

    #[test]
    fn only_a_contender_right_behind_the_head_skips_the_listing() {
        let children = |markers: &[&str]| -> Vec<String> {
            markers.iter().enumerate().map(|(seq, m)| format!("{CURATOR}{m}{seq:010}")).collect()
        };
        let locks = children(&["lock-", "lock-", "lock-"]);
        let queue = Queue::new(&locks).unwrap();
        let head = queue.contenders()[0].name;
        assert!(Rule::Exclusive.proceeds_when_head_leaves(&queue, 1, head));
        // Further back, someone else is still ahead.
        assert!(!Rule::Exclusive.proceeds_when_head_leaves(&queue, 2, queue.contenders()[1].name));
        // Behind a writer head, a Curator 5.5 downgrade could put a reader with its number ahead.
        let rw = children(&["__WRIT__", "__WRIT__", "__READ__"]);
        let queue = Queue::new(&rw).unwrap();
        let head = queue.contenders()[0].name;
        assert!(!Rule::Exclusive.proceeds_when_head_leaves(&queue, 1, head));
        // A reader waiting on the head writer, with only readers between: readers never block it.
        let rw = children(&["__WRIT__", "__READ__", "__READ__"]);
        let queue = Queue::new(&rw).unwrap();
        assert!(Rule::Reader.proceeds_when_head_leaves(&queue, 2, queue.contenders()[0].name));
        assert!(!Rule::Leases { permits: 1 }.proceeds_when_head_leaves(&queue, 1, queue.contenders()[0].name));
    }

    #[test]
    fn parses_both_dialects() {
        let cases = [
            (format!("{CURATOR}lock-0000000042"), Kind::Lock, 42),
            (format!("{KAZOO}__lock__0000000007"), Kind::KazooLock, 7),
            (format!("{KAZOO}__rlock__0000000008"), Kind::KazooRead, 8),
            (format!("{CURATOR}__READ__0000000001"), Kind::Read, 1),
            (format!("{CURATOR}__WRIT__2147483647"), Kind::Write, i32::MAX as u32),
            (format!("{CURATOR}latch-0000000000"), Kind::Latch, 0),
            (format!("{CURATOR}lease-0000000003"), Kind::Lease, 3),
        ];
        for (name, kind, sequence) in &cases {
            assert_eq!(parse(name), Parsed::Contender(Contender { name, kind: *kind, sequence: *sequence }));
        }
    }

    #[test]
    fn wrapped_sequences_are_detected_not_misparsed() {
        for name in [
            format!("{CURATOR}lock--2147483648"),
            format!("{CURATOR}lock--000000001"),
            format!("{KAZOO}__lock__-2147483647"),
        ] {
            assert_eq!(parse(&name), Parsed::Wrapped, "{name}");
        }
        let children = vec![format!("{CURATOR}lock-2147483647"), format!("{CURATOR}lock--2147483648")];
        assert_eq!(Queue::new(&children).unwrap_err(), WrappedChild(children[1].clone()));
    }

    #[test]
    fn foreign_names_are_not_contenders() {
        for name in [
            "locks",
            "leases",
            "config",
            "lock-",
            "lock-123",
            "lock-00000000001",
            "x-0000000001",
            "lock-2147483648",
            "lock-00000000x1",
            "é-lock-000000001",
        ] {
            assert_eq!(parse(name), Parsed::Foreign, "{name}");
        }
    }

    #[test]
    fn ties_are_ordered_by_name_so_every_client_agrees() {
        let children = vec![format!("{CURATOR}__READ__0000000005"), format!("{CURATOR}__WRIT__0000000005")];
        let queue = Queue::new(&children).unwrap();
        let names: Vec<_> = queue.contenders().iter().map(|c| c.name).collect();
        assert_eq!(names, [children[0].as_str(), children[1].as_str()]);
    }

    fn names(queue: &Queue<'_>) -> Vec<String> {
        queue.contenders().iter().map(|c| c.name.to_owned()).collect()
    }

    #[test]
    fn a_reader_waits_for_the_nearest_writer_ahead_and_ignores_writers_behind() {
        let children: Vec<String> = ["__READ__", "__WRIT__", "__READ__", "__WRIT__", "__READ__", "__READ__"]
            .iter()
            .enumerate()
            .map(|(seq, marker)| format!("{CURATOR}{marker}{seq:010}"))
            .collect();
        let queue = Queue::new(&children).unwrap();
        let names = names(&queue);
        assert_eq!(Rule::Reader.decide(&queue, 0), Decision::Proceed);
        assert_eq!(Rule::Reader.decide(&queue, 2), Decision::Wait { on: &names[1] });
        assert_eq!(Rule::Reader.decide(&queue, 4), Decision::Wait { on: &names[3] });
        assert_eq!(Rule::Reader.decide(&queue, 5), Decision::Wait { on: &names[3] });
        // A writer waits for whoever is just ahead, reader or writer.
        assert_eq!(Rule::Exclusive.decide(&queue, 3), Decision::Wait { on: &names[2] });
    }

    #[test]
    fn kazoo_nodes_count_by_name_and_unknown_kinds_count_as_writers() {
        let children = vec![
            format!("{KAZOO}__rlock__0000000000"),
            format!("{CURATOR}__READ__0000000001"),
            format!("{KAZOO}__lock__0000000002"),
            format!("{CURATOR}__READ__0000000003"),
            format!("{CURATOR}lock-0000000004"),
            format!("{CURATOR}__READ__0000000005"),
        ];
        let queue = Queue::new(&children).unwrap();
        assert_eq!(Rule::Reader.decide(&queue, 1), Decision::Proceed);
        assert_eq!(Rule::Reader.decide(&queue, 3), Decision::Wait { on: &children[2] });
        assert_eq!(Rule::Reader.decide(&queue, 5), Decision::Wait { on: &children[4] });
    }

    #[test]
    fn leases_proceed_while_the_directory_holds_no_more_children_than_permits() {
        let mut children: Vec<String> = (0..3).map(|seq| format!("{CURATOR}lease-{seq:010}")).collect();
        let queue = Queue::new(&children).unwrap();
        assert_eq!(Rule::Leases { permits: 3 }.decide(&queue, 2), Decision::Proceed);
        assert_eq!(Rule::Leases { permits: 2 }.decide(&queue, 2), Decision::WaitForChildren);
        // Curator counts every child; so do we, so that both agree on who may hold.
        children.push("stray".to_owned());
        let queue = Queue::new(&children).unwrap();
        assert_eq!(Rule::Leases { permits: 3 }.decide(&queue, 2), Decision::WaitForChildren);
    }

    #[test]
    fn onlookers_see_the_readers_ahead_of_the_first_writer_or_the_head_holding() {
        let holding = |markers: &[&str], gone: &[usize]| -> Vec<bool> {
            let children: Vec<String> =
                markers.iter().enumerate().map(|(seq, m)| format!("{CURATOR}{m}{seq:010}")).collect();
            let mut queue = Queue::new(&children).unwrap();
            let mut position = 0..;
            queue.retain(|_| !gone.contains(&position.next().unwrap()));
            queue.holding().collect()
        };
        let readers_first = ["__rlock__", "__READ__", "__WRIT__", "__READ__", "lock-"];
        assert_eq!(holding(&readers_first, &[]), [true, true, false, false, false]);
        assert_eq!(holding(&["__WRIT__", "__READ__", "__READ__"], &[]), [true, false, false]);
        assert_eq!(holding(&["latch-", "latch-"], &[]), [true, false]);
        // A node gone since the listing no longer stands in line.
        assert_eq!(holding(&["lock-", "lock-", "lock-"], &[0]), [true, false]);
        assert_eq!(holding(&["__READ__", "__WRIT__", "__READ__"], &[1]), [true, true]);
    }

    fn marker() -> impl Strategy<Value = (&'static str, Kind)> {
        prop::sample::select(Kind::ALL.map(|kind| (kind.marker(), kind)).to_vec())
    }

    fn prefix() -> impl Strategy<Value = String> {
        prop_oneof![
            "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}".prop_map(|u| format!("_c_{u}-")),
            "[0-9a-f]{32}",
        ]
    }

    proptest! {
        #[test]
        fn every_server_rendered_sequence_parses_back(
            prefix in prefix(), (marker, kind) in marker(), sequence in 0u32..=i32::MAX as u32,
        ) {
            let name = format!("{prefix}{marker}{sequence:010}");
            prop_assert_eq!(parse(&name), Parsed::Contender(Contender { name: &name, kind, sequence }));
        }

        #[test]
        fn every_negative_rendering_is_wrapped(
            prefix in prefix(), (marker, _) in marker(), sequence in i32::MIN..0,
        ) {
            // Java's and Rust's "%010d" agree: "-000000001" and "-2147483648".
            let name = format!("{prefix}{marker}{sequence:010}");
            prop_assert_eq!(parse(&name), Parsed::Wrapped);
        }

        #[test]
        fn queue_order_is_numeric_and_matches_curators_string_order(
            entries in prop::collection::vec((prefix(), marker(), 0u32..=i32::MAX as u32), 1..40),
        ) {
            let children: Vec<String> =
                entries.iter().map(|(p, (m, _), s)| format!("{p}{m}{s:010}")).collect();
            let queue = Queue::new(&children).unwrap();
            prop_assert_eq!(queue.contenders().len(), children.len());
            for pair in queue.contenders().windows(2) {
                prop_assert!(pair[0].sequence <= pair[1].sequence);
                // Curator sorts by the 10 digits after the marker as text: same order.
                let key = |c: &Contender<'_>| c.name[c.name.len() - 10..].to_owned();
                prop_assert!(key(&pair[0]) <= key(&pair[1]));
            }
        }

        #[test]
        fn proceeding_when_the_head_leaves_agrees_with_deciding_on_a_new_listing(
            kinds in prop::collection::vec(0usize..4, 2..30),
        ) {
            let markers = ["lock-", "__READ__", "__WRIT__", "__lock__"];
            let children: Vec<String> =
                kinds.iter().enumerate().map(|(seq, &k)| format!("{CURATOR}{}{seq:010}", markers[k])).collect();
            let queue = Queue::new(&children).unwrap();
            for (position, contender) in queue.contenders().iter().enumerate() {
                let rule = if contender.kind.is_writer() { Rule::Exclusive } else { Rule::Reader };
                let Decision::Wait { on } = rule.decide(&queue, position) else { continue };
                if rule.proceeds_when_head_leaves(&queue, position, on) {
                    // The listing after the head's deletion would say the same.
                    let rest: Vec<String> = children.iter().filter(|c| c.as_str() != on).cloned().collect();
                    let after = Queue::new(&rest).unwrap();
                    prop_assert_eq!(rule.decide(&after, after.position(contender.name).unwrap()), Decision::Proceed);
                }
            }
        }

        #[test]
        fn readers_and_writers_never_hold_together_and_never_overtake_a_writer(
            writers in prop::collection::vec(any::<bool>(), 1..40),
        ) {
            let children: Vec<String> = writers
                .iter()
                .enumerate()
                .map(|(seq, &w)| format!("{CURATOR}{}{seq:010}", if w { "__WRIT__" } else { "__READ__" }))
                .collect();
            let queue = Queue::new(&children).unwrap();
            let first_writer = writers.iter().position(|&w| w);
            let mut proceeding = Vec::new();
            for (i, &writer) in writers.iter().enumerate() {
                let rule = if writer { Rule::Exclusive } else { Rule::Reader };
                match rule.decide(&queue, i) {
                    Decision::Proceed => proceeding.push(i),
                    // Everyone waits for a node ahead of it, so the queue always drains.
                    Decision::Wait { on } => prop_assert!(queue.position(on).unwrap() < i),
                    Decision::WaitForChildren => prop_assert!(false, "read-write rules watch one node"),
                }
            }
            match first_writer {
                // A head writer holds alone.
                Some(0) => prop_assert_eq!(proceeding, vec![0]),
                // Otherwise exactly the readers ahead of the first writer hold.
                Some(w) => prop_assert_eq!(proceeding, (0..w).collect::<Vec<_>>()),
                None => prop_assert_eq!(proceeding.len(), writers.len()),
            }
        }

        #[test]
        fn exclusive_rule_lets_one_proceed_and_forms_a_chain(
            sequences in prop::collection::btree_set(0u32..1_000_000, 1..60),
        ) {
            let children: Vec<String> =
                sequences.iter().rev().map(|s| format!("{CURATOR}lock-{s:010}")).collect();
            let queue = Queue::new(&children).unwrap();
            let contenders = queue.contenders();
            let mut watched = std::collections::HashSet::new();
            for (i, contender) in contenders.iter().enumerate() {
                prop_assert_eq!(queue.position(contender.name), Some(i));
                match Rule::Exclusive.decide(&queue, i) {
                    Decision::Proceed => prop_assert_eq!(i, 0),
                    Decision::Wait { on } => {
                        prop_assert_eq!(on, contenders[i - 1].name);
                        // No herd: nobody is watched by two waiters.
                        prop_assert!(watched.insert(on));
                    }
                    Decision::WaitForChildren => prop_assert!(false, "the exclusive rule watches one node"),
                }
            }
        }

        #[test]
        fn onlookers_see_what_inspect_derived_by_hand_before(
            markers in prop::collection::vec(marker(), 0..30),
        ) {
            let children: Vec<String> =
                markers.iter().enumerate().map(|(seq, (m, _))| format!("{CURATOR}{m}{seq:010}")).collect();
            let queue = Queue::new(&children).unwrap();
            // inspect's own rule: whoever has someone waiting ahead waits; else a writer holds
            // only at the head, and a reader only behind readers.
            let (mut holders, mut waiting, mut expected) = (Vec::<Kind>::new(), 0, Vec::new());
            for &(_, kind) in &markers {
                let holds = waiting == 0
                    && if kind.is_writer() { holders.is_empty() } else { holders.iter().all(|h| !h.is_writer()) };
                if holds { holders.push(kind) } else { waiting += 1 }
                expected.push(holds);
            }
            prop_assert_eq!(queue.holding().collect::<Vec<_>>(), expected);
        }
    }
}
