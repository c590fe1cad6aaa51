//! The links between the members of a partitionable ensemble: a [`Proxy`] for every connection
//! one member opens to another's quorum or election port.
//!
//! Member i names member j in its `zoo.cfg` by the ports of the proxies of the link (i, j), so
//! every connection i opens to j goes through them. That alone would let election traffic get
//! around them: a member that opens an election connection announces its own election address
//! in the handshake, and if the other has the higher `myid`, that one drops the connection and
//! connects back to the announced address — the real port, past every proxy (ZooKeeper keeps
//! one election connection per pair, the one the higher `myid` opened). So the election proxy
//! of (i, j) rewrites the announcement to the address of the election proxy of (j, i).

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use super::member::Member;
use super::proxy::{Opening, Relaying, listen};
use super::{Fault, HarnessError, Proxy};

/// Every directed pair's proxies, on a runtime of their own.
#[derive(Debug)]
pub(super) struct MemberLinks {
    /// By (from, to), as member indices: the proxies to `to`'s quorum and election ports
    /// through which `from` connects.
    proxies: BTreeMap<(usize, usize), [Proxy; 2]>,
    /// Runs the proxies, so that the ensemble's own traffic never waits for the test's
    /// runtime: a test that blocks its thread for a while must not partition its ensemble.
    runtime: Option<tokio::runtime::Runtime>,
}

impl MemberLinks {
    /// Starts the proxies of every directed pair of `members`, passing everything.
    pub(super) fn start(members: &[Member]) -> Result<Self, HarnessError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("zk-member-links")
            .enable_all()
            .build()
            .map_err(|e| HarnessError::io("starting the runtime of the member links", e))?;
        let pairs = (0..members.len()).flat_map(|from| (0..members.len()).map(move |to| (from, to)));
        let pairs: Vec<(usize, usize)> = pairs.filter(|(from, to)| from != to).collect();
        // Each election proxy names the one of the opposite direction: bind them all first.
        let mut elections = BTreeMap::new();
        for &pair in &pairs {
            let listener = listen()?;
            let address = listener.local_addr().map_err(|e| HarnessError::io("reading the proxy's address", e))?;
            elections.insert(pair, (listener, address));
        }
        let back: BTreeMap<(usize, usize), SocketAddr> =
            elections.iter().map(|(&(from, to), (_, address))| ((to, from), *address)).collect();
        let mut proxies = BTreeMap::new();
        for ((from, to), (listener, _)) in elections {
            let peer = &members[to];
            let real = |port| SocketAddr::from((Ipv4Addr::LOCALHOST, port));
            // A learner may connect as soon as it has voted for its leader, before the leader
            // listens on its quorum port; refused, it would try again 5 times 100 ms apart
            // (ZooKeeper's `Learner.LeaderConnector`), so its proxy does that for it.
            let learning = Relaying { retries: 5, ..Relaying::default() };
            let quorum = Proxy::serve(runtime.handle(), listen()?, real(peer.quorum_port), learning)?;
            let announce = Relaying { opening: Some(announcing(back[&(from, to)])), ..Relaying::default() };
            let election = Proxy::serve(runtime.handle(), listener, real(peer.election_port), announce)?;
            proxies.insert((from, to), [quorum, election]);
        }
        Ok(Self { proxies, runtime: Some(runtime) })
    }

    /// The ports at which member `from` reaches the quorum and election ports of member `to`.
    pub(super) fn ports(&self, from: usize, to: usize) -> Option<(u16, u16)> {
        let [quorum, election] = self.proxies.get(&(from, to))?;
        Some((quorum.address().port(), election.address().port()))
    }

    /// Sets the fault of the connections `from` opens to `to`. A refusal also resets the
    /// open ones: connections between members last, so refusing only new ones would cut
    /// nothing off.
    pub(super) fn set(&self, from: usize, to: usize, fault: Fault) -> Result<(), HarnessError> {
        let pair = self.proxies.get(&(from, to)).ok_or(HarnessError::NoLink { member: from })?;
        for proxy in pair {
            proxy.set_fault(fault);
            if fault == Fault::Refuse {
                proxy.reset_connections();
            }
        }
        Ok(())
    }

    /// Every directed pair.
    pub(super) fn pairs(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        self.proxies.keys().copied()
    }
}

impl Drop for MemberLinks {
    fn drop(&mut self) {
        self.proxies.clear();
        if let Some(runtime) = self.runtime.take() {
            // Not `drop`, which waits for the runtime's thread and must not run on another
            // runtime's thread, as the cluster's last owner often does.
            runtime.shutdown_background();
        }
    }
}

/// Rewrites the handshake that opens an election connection (ZooKeeper's
/// `QuorumCnxManager.startConnection`) to announce `address` as the sender's election address.
/// The handshake is a protocol version (a negative `i64`; a positive one is a sender id from
/// before addresses were sent), the sender's id (`i64`), and its election address as text
/// (`host:port`, several joined by `|`) after its length (`i32`), all big-endian.
fn announcing(address: SocketAddr) -> Opening {
    const ADDRESS: usize = 20;
    let announced = address.to_string().into_bytes();
    Arc::new(move |opening: &[u8]| {
        let version = i64::from_be_bytes(opening.get(..8)?.try_into().ok()?);
        if version >= 0 {
            return Some(opening.to_vec());
        }
        let length = i32::from_be_bytes(opening.get(16..ADDRESS)?.try_into().ok()?);
        // A length ZooKeeper would reject goes through unchanged, for it to reject.
        let Some(end) = usize::try_from(length).ok().and_then(|length| ADDRESS.checked_add(length)) else {
            return Some(opening.to_vec());
        };
        let rest = opening.get(end..)?;
        let length = i32::try_from(announced.len()).expect("a socket address is short");
        let mut rewritten = opening[..16].to_vec();
        rewritten.extend_from_slice(&length.to_be_bytes());
        rewritten.extend_from_slice(&announced);
        rewritten.extend_from_slice(rest);
        Some(rewritten)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handshake(version: i64, address: &str, rest: &[u8]) -> Vec<u8> {
        let mut bytes = version.to_be_bytes().to_vec();
        bytes.extend_from_slice(&3_i64.to_be_bytes());
        bytes.extend_from_slice(&i32::try_from(address.len()).unwrap().to_be_bytes());
        bytes.extend_from_slice(address.as_bytes());
        bytes.extend_from_slice(rest);
        bytes
    }

    #[test]
    fn the_handshake_announces_the_link_back_and_keeps_what_follows() {
        let rewrite = announcing("127.0.0.1:4000".parse().unwrap());
        let original = handshake(-65536, "127.0.0.1:28123", b"more");
        for cut in 0..20 + "127.0.0.1:28123".len() {
            assert_eq!(rewrite(&original[..cut]), None, "incomplete after {cut} bytes");
        }
        assert_eq!(rewrite(&original), Some(handshake(-65536, "127.0.0.1:4000", b"more")));
        let several = handshake(-65535, "127.0.0.1:28123|127.0.0.2:28123", b"");
        assert_eq!(rewrite(&several), Some(handshake(-65535, "127.0.0.1:4000", b"")));
    }

    #[test]
    fn a_handshake_without_an_address_passes_unchanged() {
        let rewrite = announcing("127.0.0.1:4000".parse().unwrap());
        let old = 3_i64.to_be_bytes();
        assert_eq!(rewrite(&old), Some(old.to_vec()));
        let mut bad = handshake(-65536, "", b"");
        bad[16..20].copy_from_slice(&(-1_i32).to_be_bytes());
        assert_eq!(rewrite(&bad), Some(bad.clone()));
    }
}
