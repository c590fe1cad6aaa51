//! The connect string, checked and normalised before connecting: a malformed one is the
//! caller's mistake, reported at once, rather than a connect timeout spent on a host that
//! cannot exist; a server without a port gets ZooKeeper's default, as the Java client does.

use std::net::Ipv6Addr;

use super::probe::Endpoint;
use crate::error::Error;
use crate::path::path_problem;

/// The port a server without one listens on, as ZooKeeper's Java client assumes.
const DEFAULT_PORT: u16 = 2181;

/// `servers` as `host:port,host:port[/chroot]`: each server trimmed of whitespace and given
/// a port (2181 if it had none), IPv6 addresses in brackets (`[::1]:2181`), empty entries
/// dropped, and a `/chroot` suffix kept if it is a valid ZooKeeper path (a chroot of `/`
/// alone is no chroot, as in the Java client).
///
/// With `tls` (a session configured for TLS), a server is reached with TLS unless marked
/// `tcp://`, which is kept; `tcp+tls://` is dropped as what goes without saying. Without,
/// `tcp://` is dropped and `tcp+tls://` is an error: there are no certificates to use.
///
/// # Errors
///
/// [`Error::NoServers`] if no server is named; [`Error::InvalidServers`] saying what is wrong
/// with the first entry that is malformed, or with the chroot.
pub(crate) fn normalize(servers: &str, tls: bool) -> Result<String, Error> {
    let invalid = |reason: String| Error::InvalidServers { servers: servers.to_owned(), reason };
    let entries: Vec<&str> = servers.split(',').map(str::trim).filter(|entry| !entry.is_empty()).collect();
    let mut hosts = Vec::with_capacity(entries.len());
    let mut chroot = None;
    for (i, entry) in entries.iter().enumerate() {
        let (entry, prefix) = match (entry.strip_prefix("tcp+tls://"), entry.strip_prefix("tcp://")) {
            (Some(_), _) if !tls => {
                return Err(invalid(format!(
                    "{entry:?}: a TLS server (tcp+tls://) needs TLS certificates (SessionBuilder::tls, or --tls-ca)"
                )));
            }
            (Some(rest), _) => (rest, ""),
            (None, Some(rest)) if tls => (rest, "tcp://"),
            (None, Some(rest)) => (rest, ""),
            (None, None) => (*entry, ""),
        };
        let (address, root) = match entry.find('/') {
            Some(at) => (entry[..at].trim_end(), Some(&entry[at..])),
            None => (entry, None),
        };
        if let Some(root) = root {
            if i + 1 != entries.len() {
                return Err(invalid(format!("the chroot {root:?} must come after the last server")));
            }
            if let Some(problem) = path_problem(root) {
                return Err(invalid(format!("the chroot {root:?}: {problem}")));
            }
            chroot = Some(root).filter(|root| *root != "/");
        }
        if !address.is_empty() {
            // A string of several servers needs the bad one named; one server is the string.
            let named = |reason: &str| match entries.len() {
                1 => reason.to_owned(),
                _ => format!("{address:?}: {reason}"),
            };
            hosts.push(prefix.to_owned() + &server(address).map_err(|reason| invalid(named(reason)))?);
        }
    }
    if hosts.is_empty() {
        return Err(Error::NoServers);
    }
    Ok(hosts.join(",") + chroot.unwrap_or(""))
}

/// The servers of a connect string made by [`normalize`] with `tls` as given, and whether
/// each is reached with TLS.
pub(crate) fn endpoints(normalized: &str, tls: bool) -> Vec<Endpoint> {
    normalized
        .split(',')
        .filter_map(|entry| {
            let (entry, secure) = match entry.strip_prefix("tcp://") {
                Some(rest) => (rest, false),
                None => (entry, tls),
            };
            let address = entry.split('/').next().unwrap_or(entry);
            let (host, port) = address.rsplit_once(':')?;
            let host = host.trim_start_matches('[').trim_end_matches(']');
            Some(Endpoint { host: host.to_owned(), port: port.parse().ok()?, tls: secure })
        })
        .collect()
}

/// The chroot of a connect string made by [`normalize`], or `""`.
pub(crate) fn chroot(normalized: &str) -> &str {
    let last = normalized.rsplit(',').next().unwrap_or(normalized);
    let last = last.strip_prefix("tcp://").unwrap_or(last);
    last.find('/').map_or("", |at| &last[at..])
}

/// One server, `host`, `host:port`, `[ipv6]` or `[ipv6]:port`, as `host:port`; or what is
/// wrong with it.
fn server(address: &str) -> Result<String, &'static str> {
    let (host, port) = if let Some(bracketed) = address.strip_prefix('[') {
        let (ip, rest) = bracketed.split_once(']').ok_or("an IPv6 address needs its closing ']'")?;
        ip.parse::<Ipv6Addr>().map_err(|_| "not an IPv6 address between '[' and ']'")?;
        let port = match rest {
            "" => None,
            _ => Some(rest.strip_prefix(':').ok_or("only \":port\" may follow ']'")?),
        };
        (&address[..ip.len() + 2], port)
    } else {
        match address.split_once(':') {
            Some(_) if address.parse::<Ipv6Addr>().is_ok() => {
                return Err("an IPv6 address needs brackets, such as [::1]:2181");
            }
            Some((host, port)) => (host, Some(port)),
            None => (address, None),
        }
    };
    if !host.starts_with('[') {
        check_host_name(host)?;
    }
    let port = match port {
        // "host:" is the default port in the Java client too.
        None | Some("") => DEFAULT_PORT,
        Some(port) if port.bytes().all(|b| b.is_ascii_digit()) => match port.parse::<u16>() {
            Ok(0) | Err(_) => return Err("the port must be 1 to 65535"),
            Ok(port) => port,
        },
        Some(_) => return Err("the port must be a number, and a host name cannot contain ':'"),
    };
    Ok(format!("{host}:{port}"))
}

/// A host name or IPv4 address: letters, digits, '-', '_' and '.'.
fn check_host_name(host: &str) -> Result<(), &'static str> {
    if host.is_empty() {
        return Err("the host name is empty");
    }
    if !host.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')) {
        return Err("a host name may contain only letters, digits, '-', '_' and '.'");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn normalize(servers: &str) -> Result<String, Error> {
        super::normalize(servers, false)
    }

    fn reason(servers: &str) -> String {
        match normalize(servers) {
            Err(Error::InvalidServers { servers: given, reason }) => {
                assert_eq!(given, servers, "the error names the string as given");
                reason
            }
            other => panic!("{servers:?} should be invalid, got {other:?}"),
        }
    }

    #[test]
    fn a_server_without_a_port_gets_2181() {
        assert_eq!(normalize("127.0.0.1").unwrap(), "127.0.0.1:2181");
        assert_eq!(normalize("zk1,zk2:2182,zk3").unwrap(), "zk1:2181,zk2:2182,zk3:2181");
        assert_eq!(normalize("zk1:").unwrap(), "zk1:2181");
        assert_eq!(normalize("[::1]").unwrap(), "[::1]:2181");
    }

    #[test]
    fn ipv6_chroot_whitespace_and_prefixes_are_normalised() {
        assert_eq!(normalize("[::1]:2182").unwrap(), "[::1]:2182");
        assert_eq!(normalize(" zk1:1 , zk2:2 /app").unwrap(), "zk1:1,zk2:2/app");
        assert_eq!(normalize("zk1:1,zk2:2/app/sub").unwrap(), "zk1:1,zk2:2/app/sub");
        assert_eq!(normalize("zk1:1/").unwrap(), "zk1:1", "a chroot of / is none");
        assert_eq!(normalize("zk1:1,,zk2:2,").unwrap(), "zk1:1,zk2:2", "empty entries are dropped");
        assert_eq!(normalize("tcp://zk1:1,tcp://zk2/app").unwrap(), "zk1:1,zk2:2181/app");
        assert_eq!(normalize("zk-1.example_net:65535").unwrap(), "zk-1.example_net:65535");
    }

    #[test]
    fn with_tls_a_server_marked_tcp_stays_plaintext() {
        let normalized = super::normalize("tcp+tls://zk1:1,tcp://zk2,zk3:3/app", true).unwrap();
        assert_eq!(normalized, "zk1:1,tcp://zk2:2181,zk3:3/app");
        let found: Vec<_> = endpoints(&normalized, true).into_iter().map(|e| (e.host, e.port, e.tls)).collect();
        let expected = [("zk1", 1, true), ("zk2", 2181, false), ("zk3", 3, true)];
        assert_eq!(found, expected.map(|(h, p, t)| (h.to_owned(), p, t)));
        assert_eq!(chroot(&normalized), "/app");
        assert_eq!(chroot("zk1:1,tcp://zk2:2"), "");
        let plain = endpoints("[::1]:5,zk2:6", false);
        assert_eq!((plain[0].host.as_str(), plain[0].port, plain[0].tls), ("::1", 5, false));
    }

    #[test]
    fn no_server_at_all_is_no_servers() {
        for servers in ["", " ", ",", " , ", "/chroot", ",/chroot"] {
            assert_eq!(normalize(servers), Err(Error::NoServers), "{servers:?}");
        }
    }

    #[test]
    fn malformed_strings_say_what_is_wrong() {
        assert!(reason("garbage:::").contains("port must be a number"), "{}", reason("garbage:::"));
        assert!(reason("::1").contains("brackets"));
        assert!(reason("::1:2181").contains("brackets"));
        assert!(reason("[::1").contains("closing ']'"));
        assert!(reason("[::1]2181").contains("\":port\""));
        assert!(reason("[nope]:1").contains("not an IPv6 address"));
        assert!(reason("h:notaport").contains("port must be a number"));
        assert!(reason("h:0").contains("1 to 65535"));
        assert!(reason("h:65536").contains("1 to 65535"));
        assert!(reason(":2181").contains("host name is empty"));
        assert!(reason("bad host:1").contains("only letters"));
        assert!(reason("zk1/app,zk2").contains("after the last server"));
        assert!(reason("zk1/app/").contains("must not end with '/'"));
        assert!(reason("zk1/a//b").contains("empty segment"));
        assert!(reason("tcp+tls://zk1:1").contains("TLS certificates"));
        assert!(reason("zk1:1,garbage:::").contains("\"garbage:::\""), "names the bad entry");
    }
}
