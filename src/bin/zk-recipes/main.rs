//! `zk-recipes`: run a command while holding a ZooKeeper lock, read or write lock, semaphore
//! permit or leadership; show who holds a path; start a local ensemble to try it.

mod args;
mod child;
mod group;
mod held;
mod output;
mod progress;
mod sandbox;
mod status;
mod supervise;
mod terminal;
mod watchdog;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use futures_util::FutureExt;
use zk_recipes::{AnyHold, Error, Hold, Session, SessionBuilder, TlsConfig, inspect};

use crate::args::{Cli, Command, Patience, Run};
use crate::held::Recipe;
use crate::output::Printed;
use crate::supervise::{Ended, Signals, describe};

/// Exit statuses besides the command's own (2, for usage errors, is clap's).
const FAILURE: u8 = 1;
const USAGE: u8 = 2;
const NOT_ACQUIRED: u8 = 3;
const LOST: u8 = 4;
/// 128 + SIGPIPE: what a shell reports for a tool that a closed pipe ended.
const READER_GONE: u8 = 141;

/// A failure, with the exit status it maps to.
struct Failure {
    code: u8,
    message: String,
}

impl Failure {
    fn new(code: u8, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }
}

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        let code = match error {
            Error::InvalidPath { .. }
            | Error::InvalidPermits { .. }
            | Error::InvalidServers { .. }
            | Error::NoServers
            | Error::InvalidOption { .. } => USAGE,
            Error::Timeout { .. } => NOT_ACQUIRED,
            _ => FAILURE,
        };
        Self::new(code, error.to_string())
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
    let outcome = match runtime {
        Ok(runtime) => runtime.block_on(run(cli)),
        Err(e) => Err(Failure::new(FAILURE, format!("cannot start the runtime: {e}"))),
    };
    match outcome {
        Ok(code) => ExitCode::from(code),
        Err(failure) => {
            output::warn(&failure.message);
            ExitCode::from(failure.code)
        }
    }
}

async fn run(cli: Cli) -> Result<u8, Failure> {
    let builder = builder(&cli)?;
    let (recipe, run) = match cli.command {
        Command::Sandbox { nodes, tls } => {
            return sandbox::serve(nodes, tls).await.map(|()| 0).map_err(|e| Failure::new(FAILURE, e));
        }
        Command::Status { path, json } => {
            let session = connect(&cli.servers, builder).await?;
            let snapshot = inspect(&session, &path).await;
            session.close().await;
            let snapshot = snapshot?;
            let text = if json { status::json(&snapshot) + "\n" } else { status::text(&snapshot) };
            return match output::stdout(&text) {
                Ok(Printed::All) => Ok(0),
                // Like other tools whose reader left (`status | head`): quietly, as SIGPIPE would.
                Ok(Printed::ReaderGone) => Ok(READER_GONE),
                Err(e) => Err(Failure::new(FAILURE, format!("writing to stdout: {e}"))),
            };
        }
        Command::Lock(run) => (Recipe::Lock, run),
        Command::ReadLock(run) => (Recipe::Read, run),
        Command::WriteLock(run) => (Recipe::Write, run),
        Command::Semaphore { permits, run } => (Recipe::Semaphore { permits }, run),
        Command::Elect { id, run } => (Recipe::Elect { id }, run),
    };
    // Registered before connecting, so that no signal is missed from here on.
    let mut signals = Signals::register().map_err(|e| Failure::new(FAILURE, format!("cannot handle signals: {e}")))?;
    let session = connect(&cli.servers, builder).await?;
    let outcome = hold_and_run(&session, &recipe, &run, &mut signals).await;
    // Closing the session deletes any node it still owns, whatever happened above.
    session.close().await;
    outcome
}

/// The session settings from the command line and the environment.
fn builder(cli: &Cli) -> Result<SessionBuilder, Failure> {
    let mut builder = Session::builder().connect_timeout(cli.connect_timeout);
    if let Some(timeout) = cli.session_timeout {
        builder = builder.session_timeout(timeout);
    }
    if let Some(digest) = std::env::var_os("ZK_DIGEST") {
        let digest = digest.to_string_lossy();
        let (user, password) =
            digest.split_once(':').ok_or_else(|| Failure::new(USAGE, "ZK_DIGEST must be user:password"))?;
        builder = builder.digest(user, password);
    }
    if let Some(ca) = &cli.tls_ca {
        let mut tls = TlsConfig::ca_file(ca);
        if let (Some(cert), Some(key)) = (&cli.tls_cert, &cli.tls_key) {
            tls = tls.identity_files(cert, key);
        }
        builder = builder.tls(tls);
    } else if cli.tls_cert.is_some() {
        return Err(Failure::new(
            USAGE,
            "--tls-cert needs --tls-ca (ZK_TLS_CA): the CA that signed the servers' certificates",
        ));
    }
    if let Some(user) = &cli.sasl_user {
        let password = std::env::var("ZK_SASL_PASSWORD").map_err(|_| {
            Failure::new(
                USAGE,
                "--sasl-user (ZK_SASL_USER) needs the password in the environment variable ZK_SASL_PASSWORD",
            )
        })?;
        builder = builder.sasl_digest(user, &password);
    }
    Ok(builder)
}

async fn connect(servers: &str, builder: SessionBuilder) -> Result<Session, Failure> {
    builder.connect(servers).await.map_err(Failure::from)
}

/// Acquires, runs the command, releases; the exit status.
async fn hold_and_run(session: &Session, recipe: &Recipe, run: &Run, signals: &mut Signals) -> Result<u8, Failure> {
    let show_progress = run.progress || (!run.quiet && std::io::stderr().is_terminal());
    let progress = async {
        if show_progress {
            progress::show(session, &run.path).await;
        }
        std::future::pending::<()>().await
    };
    let acquired = tokio::select! {
        acquired = acquire(session, recipe, run, show_progress) => acquired,
        // Interrupted while waiting: the dropped acquisition's node goes with the session,
        // which the caller closes before exiting.
        _ = signals.interrupt.recv() => return Err(interrupted("SIGINT", 130, show_progress)),
        _ = signals.terminate.recv() => return Err(interrupted("SIGTERM", 143, show_progress)),
        _ = signals.hangup.recv() => return Err(interrupted("SIGHUP", 129, show_progress)),
        () = progress => unreachable!("the progress line never ends"),
    };
    if show_progress {
        progress::clear();
    }
    let Some(held) = acquired? else {
        let why = match run.timeout {
            Some(timeout) => format!("not acquired within {}", humantime::format_duration(timeout)),
            None => "held by someone else".to_owned(),
        };
        return Err(Failure::new(NOT_ACQUIRED, format!("{}: {why}", run.path)));
    };
    let mut env = vec![
        ("ZK_LOCK_PATH", run.path.clone()),
        ("ZK_LOCK_NODE", held.node().to_owned()),
        ("ZK_FENCING_TOKEN", held.token().to_string()),
    ];
    if let Recipe::Elect { id } = recipe {
        env.push(("ZK_LEADER_ID", id.clone()));
    }
    let ended = supervise::run(&run.command, &env, held.lost(), run.kill_after, signals).await;
    // A loss that happened as the command was ending still makes the run unsafe to trust.
    let lost_meanwhile = held.lost().now_or_never();
    let released = held.release().await;
    match ended.map_err(|e| Failure::new(FAILURE, e))? {
        Ended::Lost(reason, stopped) => Err(Failure::new(
            LOST,
            format!("{} was lost while the command ran ({reason}); {}", run.path, stopped.describe()),
        )),
        Ended::Exited(status) => {
            // The release found the node gone or the session over: the command may not have
            // held the lock to its end.
            let lost = lost_meanwhile.or(match released {
                Err(Error::Lost { reason, .. }) => Some(reason),
                Err(ref error) => {
                    output::warn(&format!("releasing {}: {error}", run.path));
                    None
                }
                Ok(()) => None,
            });
            match lost {
                Some(reason) => Err(Failure::new(
                    LOST,
                    format!(
                        "{} was lost ({reason}); the command had already {} when the tool noticed, \
                         so it may have run for a while without the lock",
                        run.path,
                        describe(status)
                    ),
                )),
                None => Ok(supervise::exit_code(status)),
            }
        }
    }
}

/// Acquires as `run` says. Waiting without limit, a session that expires while waiting (its
/// place in line went with it) means queueing again on the next session; with `--no-wait` or
/// `--timeout`, that ends the attempt.
async fn acquire(
    session: &Session,
    recipe: &Recipe,
    run: &Run,
    show_progress: bool,
) -> Result<Option<AnyHold>, Failure> {
    loop {
        let acquired = held::acquire(session, recipe, &run.path, run.patience()).await;
        if show_progress && acquired.is_err() {
            progress::clear();
        }
        match acquired {
            Err(Error::SessionExpired) => match run.patience() {
                Patience::Forever => output::warn(&format!(
                    "the ZooKeeper session expired while waiting for {}, and its place in line \
                     with it; queueing again, at the end of the line, on a new session",
                    run.path
                )),
                Patience::NoWait | Patience::For(_) => {
                    return Err(Failure::new(
                        FAILURE,
                        format!(
                            "{}: not acquired: the ZooKeeper session expired while waiting; run the \
                             command again to queue anew",
                            run.path
                        ),
                    ));
                }
            },
            acquired => return acquired.map_err(Failure::from),
        }
    }
}

fn interrupted(signal: &str, code: u8, show_progress: bool) -> Failure {
    if show_progress {
        progress::clear();
    }
    Failure::new(code, format!("{signal} while waiting; not acquired"))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use zk_recipes::LossReason;

    use super::*;

    #[test]
    fn what_the_caller_got_wrong_is_a_usage_error_as_with_clap() {
        for error in [
            Error::InvalidPath { path: "locks".into(), reason: "must start with '/'" },
            Error::InvalidPermits { requested: 0, limit: 10 },
            Error::InvalidServers { servers: "zk1:port".into(), reason: "invalid port".into() },
            Error::NoServers,
            Error::InvalidOption { reason: "the session timeout must be positive".into() },
        ] {
            let failure = Failure::from(error.clone());
            assert_eq!(failure.code, USAGE, "{error}");
            assert_eq!(failure.message, error.to_string(), "the message is the error's");
        }
        assert_eq!(USAGE, 2, "clap's status for a bad command line");
    }

    #[test]
    fn a_wait_that_timed_out_is_not_acquired() {
        let error = Error::Timeout { path: "/p".into(), after: Duration::from_secs(5) };
        assert_eq!(Failure::from(error).code, NOT_ACQUIRED);
    }

    #[test]
    fn any_other_error_is_a_failure() {
        for error in [
            Error::Unreachable { servers: "127.0.0.1:2181".into(), timeout: Duration::from_secs(10) },
            Error::AuthFailed,
            Error::SessionExpired,
            Error::SessionClosed,
            // A loss while acquiring, before any command ran: only a loss while (or as) the
            // command runs is `LOST`, which `hold_and_run` decides.
            Error::Lost { node: "/p/_c_x-lock-0000000001".into(), reason: LossReason::NodeDeleted },
        ] {
            assert_eq!(Failure::from(error.clone()).code, FAILURE, "{error}");
        }
    }

    #[test]
    fn the_tools_own_statuses_are_distinct_failures() {
        let statuses = [FAILURE, USAGE, NOT_ACQUIRED, LOST, READER_GONE];
        for (i, status) in statuses.iter().enumerate() {
            assert_ne!(*status, 0, "no failure looks like success");
            assert!(!statuses[..i].contains(status), "{status} means two things");
        }
        assert_eq!(i32::from(READER_GONE), 128 + nix::sys::signal::Signal::SIGPIPE as i32);
    }
}
