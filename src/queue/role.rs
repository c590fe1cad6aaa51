//! What a recipe contends as: the one thing it tells the engine about itself. The kind of node
//! it writes, the rule it waits by and the `recipe` label of its metrics all follow from it, so
//! that no recipe spells out a marker, a rule or a label of its own.

use super::children::{Kind, Rule};

/// What a contender is in its recipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Role {
    /// A mutex's contender, or a leader selector's (Curator's LeaderSelector queues in an
    /// InterProcessMutex).
    Lock,
    /// A contender for a semaphore's internal mutex: a mutex's node, but metered apart, as its
    /// queue is the semaphore's waiting line and not a lock anyone holds.
    SemaphoreGate,
    /// A read-write lock's reader.
    Read,
    /// A read-write lock's writer.
    Write,
    /// A leader latch's participant.
    Latch,
    /// A semaphore's lease, in a semaphore of `permits`.
    Lease { permits: u32 },
}

impl Role {
    /// The kind of node this contender writes.
    pub(crate) fn kind(self) -> Kind {
        match self {
            Role::Lock | Role::SemaphoreGate => Kind::Lock,
            Role::Read => Kind::Read,
            Role::Write => Kind::Write,
            Role::Latch => Kind::Latch,
            Role::Lease { .. } => Kind::Lease,
        }
    }

    /// The rule this contender waits by: its node kind's, except that a lease counts permits.
    pub(crate) fn rule(self) -> Rule {
        match self {
            Role::Lease { permits } => Rule::Leases { permits },
            Role::Lock | Role::SemaphoreGate | Role::Read | Role::Write | Role::Latch => self.kind().rule(),
        }
    }

    /// The `recipe` label of this contender's metrics (documented in `crate::metrics`).
    pub(crate) fn label(self) -> &'static str {
        match self {
            Role::Lock => "lock",
            Role::SemaphoreGate => "semaphore_gate",
            Role::Read => "read",
            Role::Write => "write",
            Role::Latch => "latch",
            Role::Lease { .. } => "lease",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The nodes, rules and labels each recipe used when it spelled them out itself.
    #[test]
    fn each_role_writes_waits_and_is_labelled_as_its_recipe_did() {
        let roles = [
            (Role::Lock, "lock-", Rule::Exclusive, "lock"),
            (Role::SemaphoreGate, "lock-", Rule::Exclusive, "semaphore_gate"),
            (Role::Read, "__READ__", Rule::Reader, "read"),
            (Role::Write, "__WRIT__", Rule::Exclusive, "write"),
            (Role::Latch, "latch-", Rule::Exclusive, "latch"),
            (Role::Lease { permits: 3 }, "lease-", Rule::Leases { permits: 3 }, "lease"),
        ];
        for (role, marker, rule, label) in roles {
            assert_eq!((role.kind().marker(), role.rule(), role.label()), (marker, rule, label), "{role:?}");
        }
    }
}
