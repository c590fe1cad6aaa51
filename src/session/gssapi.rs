//! SASL GSSAPI (Kerberos): the options, and a check of the environment's Kerberos credentials
//! that names what is wrong when the client could not even start the handshake.
//!
//! `zookeeper-client` starts the GSSAPI handshake itself (through rsasl and the system's
//! GSSAPI library) with whatever credentials the environment gives; when that fails — no
//! ticket cache, no client keytab, a stale key, a service principal the KDC does not know —
//! it only logs the reason and tries the next server, so a connect ends in "no hosts". The
//! check here does the same first step of the handshake, with the same library and names, to
//! get the reason back.

use std::time::Duration;

use libgssapi::context::{ClientCtx, CtxFlags};
use libgssapi::credential::{Cred, CredUsage};
use libgssapi::name::Name;
use libgssapi::oid::{GSS_MECH_KRB5, GSS_NT_HOSTBASED_SERVICE, OidSet};
use zookeeper_client as zk;

use super::probe::Endpoint;
use crate::error::Error;

/// SASL GSSAPI (Kerberos) options of a session (feature `gssapi`), for
/// [`SessionBuilder::sasl_gssapi`](super::SessionBuilder::sasl_gssapi).
///
/// The servers' principal is `<service>/<host>@REALM`: `zookeeper` and the host each server
/// is named by in the connect string, unless given here. The client's own credentials come
/// from the environment, as for any MIT Kerberos program: a ticket cache (`KRB5CCNAME`, filled
/// by `kinit`), or a client keytab (`KRB5_CLIENT_KTNAME`) from which tickets are obtained and
/// renewed on their own; `KRB5_CONFIG` names the realm and its KDC. The session's ACL identity
/// is then `sasl:<client principal>`, e.g. `sasl:app@EXAMPLE.COM`.
///
/// ```no_run
/// # async fn example() -> Result<(), zk_recipes::Error> {
/// use zk_recipes::{GssapiConfig, Session};
///
/// // The servers log in as zookeeper/zk.example.com@EXAMPLE.COM.
/// let session = Session::builder()
///     .sasl_gssapi(GssapiConfig::new().host("zk.example.com"))
///     .connect("10.0.0.1:2181,10.0.0.2:2181,10.0.0.3:2181")
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GssapiConfig {
    service: String,
    host: Option<String>,
}

impl Default for GssapiConfig {
    fn default() -> Self {
        Self { service: "zookeeper".to_owned(), host: None }
    }
}

impl GssapiConfig {
    /// The defaults: service `zookeeper`, each server's host as the connect string names it.
    pub fn new() -> Self {
        Self::default()
    }

    /// The first part of the servers' principal (default `zookeeper`; Java's client calls it
    /// `zookeeper.sasl.client.username`).
    pub fn service(mut self, service: &str) -> Self {
        self.service = service.to_owned();
        self
    }

    /// The host part of the servers' principal, for every server (default: the host of each
    /// server as the connect string names it). Needed when the connect string names servers
    /// by address, or by names other than their principals' — no DNS lookup is made to find it.
    pub fn host(mut self, host: &str) -> Self {
        self.host = Some(host.to_owned());
        self
    }

    /// The servers' principal, without the realm, for a server named `host`.
    pub(crate) fn principal(&self, host: &str) -> String {
        format!("{}/{}", self.service, self.host.as_deref().unwrap_or(host))
    }

    pub(super) fn options(&self) -> zk::SaslOptions {
        let options = zk::SaslOptions::gssapi().with_username(self.service.clone());
        match &self.host {
            Some(host) => options.with_hostname(host.clone()).into(),
            None => options.into(),
        }
    }

    /// The error for servers that rejected the handshake.
    pub(super) fn rejected(&self, endpoints: &[Endpoint]) -> Error {
        Error::Kerberos {
            service: self.principal(endpoints.first().map_or("", |e| e.host.as_str())),
            reason: "the servers rejected the GSSAPI handshake (their log says why: their keytab must hold \
                     the KDC's current key of this principal)"
                .to_owned(),
        }
    }
}

/// After a connect in which no server could be reached: whether the Kerberos credentials are
/// why. `Some` only if the first step of the handshake fails for every server's principal.
pub(super) async fn diagnose(config: &GssapiConfig, endpoints: &[Endpoint], budget: Duration) -> Option<Error> {
    let mut principals: Vec<String> = endpoints.iter().map(|e| config.principal(&e.host)).collect();
    principals.dedup();
    let mut first = None;
    for principal in principals {
        let check = tokio::task::spawn_blocking({
            let principal = principal.clone();
            move || first_step(&principal)
        });
        match tokio::time::timeout(budget, check).await {
            Ok(Ok(Err(reason))) => {
                first.get_or_insert(Error::Kerberos { service: principal, reason });
            }
            // The credentials work for one server (or cannot be checked in time): not them.
            _ => return None,
        }
    }
    first
}

/// What the client does first: get credentials, and a service ticket for `principal`
/// (`service/host`), through the KDC.
fn first_step(principal: &str) -> Result<(), String> {
    let service = principal.replacen('/', "@", 1);
    let mut krb5 = OidSet::new().map_err(|e| e.to_string())?;
    krb5.add(&GSS_MECH_KRB5).map_err(|e| e.to_string())?;
    let cred = Cred::acquire(None, None, CredUsage::Initiate, Some(&krb5))
        .map_err(|e| format!("no Kerberos credentials of the client ({e})"))?;
    let target = Name::new(service.as_bytes(), Some(&GSS_NT_HOSTBASED_SERVICE))
        .map_err(|e| format!("not a service name: {service} ({e})"))?;
    let mut context = ClientCtx::new(Some(cred), target, CtxFlags::GSS_C_MUTUAL_FLAG, Some(&GSS_MECH_KRB5));
    context.step(None, None).map(|_| ()).map_err(|e| format!("could not get a ticket for {principal} ({e})"))
}
