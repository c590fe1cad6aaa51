//! The `zk-recipes` binary against real ZooKeeper: exclusion between invocations, exit
//! statuses, the command's environment, signals while waiting and while running (a stopped
//! command too), a frozen or killed tool's command being stopped, SIGKILL for what ignores
//! SIGTERM, a terminal that is not on stdin and Ctrl-Z at it, a session that expires while
//! waiting, `status` for every recipe and into a closed pipe, usage errors (connect strings
//! too), the progress line and `sandbox`, and (feature `postgres`) a capture through `psql`
//! that PostgreSQL fences with the command's token.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::{code, count_is, eventually, finish, observer, session, signal, standalone, text};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};
use tokio::time::{Instant, timeout};
use zk_recipes::{FencingToken, LeaderLatch, Mutex, ReadWriteLock, Semaphore, zk};

const TIMEOUT: Duration = Duration::from_secs(4);
const PATIENCE: Duration = Duration::from_secs(30);

/// The built tool, talking to `connect`, with a short session timeout. It runs under
/// `setsid`, without a controlling terminal whatever the test runner has, as under cron; the
/// pid is still the tool's (`setsid` only forks when it leads a process group, which a child
/// of the test does not).
fn tool(connect: &str) -> Command {
    let mut command = Command::new("setsid");
    command.arg(env!("CARGO_BIN_EXE_zk-recipes"));
    command.env("ZK_SERVERS", connect).env_remove("ZK_DIGEST").arg("--session-timeout").arg("2s");
    command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
    command
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_lock_invocations_never_overlap_and_take_turns_in_token_order() {
    let cluster = standalone().await;
    let connect = cluster.connect_string();
    let dir = tempfile::tempdir().unwrap();
    // The critical section: `set -C` makes `>` fail if the marker exists, i.e. on overlap.
    let section = r#"set -C; : > "$D/held" || { echo overlap >> "$D/violations"; exit 9; }
        echo "$ZK_FENCING_TOKEN" >> "$D/tokens"; sleep 0.05; rm "$D/held""#;
    let runs: Vec<Child> = (0..6)
        .map(|_| {
            tool(&connect)
                .env("D", dir.path())
                .args(["lock", "/cron/nightly", "--", "sh", "-c", section])
                .spawn()
                .unwrap()
        })
        .collect();
    for run in runs {
        let output = finish(run).await;
        assert_eq!(code(&output), 0, "{}", text(&output.stderr));
    }
    assert!(!dir.path().join("violations").exists(), "two commands ran at once");
    let tokens: Vec<FencingToken> =
        std::fs::read_to_string(dir.path().join("tokens")).unwrap().lines().map(|t| t.parse().unwrap()).collect();
    assert_eq!(tokens.len(), 6);
    assert!(tokens.windows(2).all(|w| w[0] < w[1]), "turns in token order: {tokens:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_statuses_say_what_happened() {
    let cluster = standalone().await;
    let connect = cluster.connect_string();
    let holder_session = session(&connect, TIMEOUT).await;

    // The command's own status, and 128 + signal for a command killed by a signal.
    let own = finish(tool(&connect).args(["lock", "/x", "--", "sh", "-c", "exit 7"]).spawn().unwrap()).await;
    assert_eq!(code(&own), 7);
    let killed = finish(tool(&connect).args(["lock", "/x", "--", "sh", "-c", "kill -KILL $$"]).spawn().unwrap()).await;
    assert_eq!(code(&killed), 128 + 9);

    // 3: not acquired, at once or in time; the waiting node is gone afterwards.
    let guard = Mutex::new(&holder_session, "/x").unwrap().lock().await.unwrap();
    let no_wait = finish(tool(&connect).args(["lock", "/x", "--no-wait", "--", "true"]).spawn().unwrap()).await;
    assert_eq!(code(&no_wait), 3, "{}", text(&no_wait.stderr));
    assert!(text(&no_wait.stderr).contains("held by someone else"), "{}", text(&no_wait.stderr));
    let timed = finish(tool(&connect).args(["lock", "/x", "--timeout", "300ms", "--", "true"]).spawn().unwrap()).await;
    assert_eq!(code(&timed), 3);
    assert!(text(&timed.stderr).contains("not acquired within 300ms"), "{}", text(&timed.stderr));
    let observer = observer(&connect).await;
    assert_eq!(observer.list_children("/x").await.unwrap().len(), 1, "only the holder's node");
    guard.release().await.unwrap();

    // 1: no server, within the connect timeout (fail closed, no hang).
    let started = Instant::now();
    let unreachable = finish(
        Command::new(env!("CARGO_BIN_EXE_zk-recipes"))
            .args(["--servers", "127.0.0.1:1", "--connect-timeout", "1s", "lock", "/x", "--", "true"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    )
    .await;
    assert_eq!(code(&unreachable), 1);
    assert!(text(&unreachable.stderr).contains("could not reach ZooKeeper"), "{}", text(&unreachable.stderr));
    assert!(started.elapsed() < Duration::from_secs(10), "bounded: {:?}", started.elapsed());

    // 3 for the other recipes too.
    let lease = Semaphore::new(&holder_session, "/s", 1).unwrap().acquire().await.unwrap();
    let full =
        finish(tool(&connect).args(["semaphore", "/s", "--permits", "1", "--no-wait", "--", "true"]).spawn().unwrap())
            .await;
    assert_eq!(code(&full), 3, "{}", text(&full.stderr));
    lease.release().await.unwrap();
    let read = ReadWriteLock::new(&holder_session, "/rw").unwrap().read().await.unwrap();
    let write =
        finish(tool(&connect).args(["write-lock", "/rw", "--timeout", "200ms", "--", "true"]).spawn().unwrap()).await;
    assert_eq!(code(&write), 3, "{}", text(&write.stderr));
    read.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_arguments_are_usage_errors() {
    for args in [
        &["lock", "/x"][..],                                // no command
        &["lock", "--", "true"],                            // no path
        &["lock", "/x", "--timeout", "soon", "--", "true"], // not a duration
        &["lock", "/x", "--timeout", "1s", "--no-wait", "--", "true"],
        &["semaphore", "/s", "--", "true"], // no --permits
        &["elect", "/e", "--", "true"],     // no --id
        &["frobnicate"],
        &["lock", "locks/x", "--", "true"], // not an absolute path
        &["status", "/zookeeper/x"],        // reserved
        &["semaphore", "/s", "--permits", "0", "--", "true"],
        &["lock", "/locks/\u{1F512}", "--", "true"], // above U+FFFF: ZooKeeper rejects it
    ] {
        let output = finish(tool("127.0.0.1:1").args(args).spawn().unwrap()).await;
        assert_eq!(code(&output), 2, "{args:?}: {}", text(&output.stderr));
        assert!(text(&output.stderr).starts_with("error: "), "{args:?}: {}", text(&output.stderr));
        assert!(output.stdout.is_empty(), "{args:?}");
    }
    // Checked before connecting: the server here does not exist.
    let bad_path = finish(tool("127.0.0.1:1").args(["lock", "locks/x", "--", "true"]).spawn().unwrap()).await;
    assert!(text(&bad_path.stderr).contains("must be absolute"), "{}", text(&bad_path.stderr));
    let emoji = finish(tool("127.0.0.1:1").args(["status", "/locks/\u{1F512}"]).spawn().unwrap()).await;
    assert!(text(&emoji.stderr).contains("above U+FFFF"), "{}", text(&emoji.stderr));
}

/// Durations too large to add or multiply: a session timeout ZooKeeper cannot grant is a usage
/// error; a huge connect timeout or kill-after never panics, before or after the command ran.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_durations_are_usage_errors_or_no_deadline_never_a_panic() {
    for timeout in ["0s", "25d", "18446744073709551615s"] {
        // Not `tool`, which gives a session timeout of its own.
        let mut command = Command::new(env!("CARGO_BIN_EXE_zk-recipes"));
        command.env("ZK_SERVERS", "127.0.0.1:1").stdout(Stdio::piped()).stderr(Stdio::piped());
        let output =
            finish(command.args(["--session-timeout", timeout, "lock", "/x", "--", "true"]).spawn().unwrap()).await;
        assert_eq!(code(&output), 2, "{timeout}: {}", text(&output.stderr));
        assert!(text(&output.stderr).contains("session timeout"), "{timeout}: {}", text(&output.stderr));
    }
    let cluster = standalone().await;
    let huge = "18446744073709551615s";
    let output = finish(
        tool(&cluster.connect_string())
            .args(["--connect-timeout", huge, "lock", "/huge", "--kill-after", huge, "--", "sh", "-c", "exit 7"])
            .spawn()
            .unwrap(),
    )
    .await;
    assert_eq!(code(&output), 7, "the command's own status: {}", text(&output.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_connect_strings_are_usage_errors_at_once_and_a_missing_port_is_2181() {
    for servers in ["garbage:::", "", " , ", "zk1:2181/app/", "::1"] {
        let started = Instant::now();
        let output =
            finish(tool(servers).args(["--connect-timeout", "20s", "lock", "/x", "--", "true"]).spawn().unwrap()).await;
        assert_eq!(code(&output), 2, "{servers:?}: {}", text(&output.stderr));
        assert!(started.elapsed() < Duration::from_secs(10), "{servers:?}: at once, not after {:?}", started.elapsed());
        let stderr = text(&output.stderr);
        assert!(stderr.contains("connect string") || stderr.contains("no ZooKeeper servers"), "{servers:?}: {stderr}");
    }
    // A server that accepts connections on 2181 and never answers: the tool tries that port,
    // and says so when it gives up.
    let silent = std::net::TcpListener::bind("127.0.0.1:2181").expect("port 2181 free for this test");
    let status = tool("127.0.0.1").args(["--connect-timeout", "1s", "status", "/x"]).spawn().unwrap();
    let accepted = tokio::task::spawn_blocking(move || silent.accept().map(drop));
    timeout(PATIENCE, accepted).await.expect("the tool connects to port 2181").unwrap().unwrap();
    let output = finish(status).await;
    assert_eq!(code(&output), 1, "{}", text(&output.stderr));
    assert!(text(&output.stderr).contains("could not reach ZooKeeper at 127.0.0.1:2181 "), "{}", text(&output.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_gets_the_path_node_and_token_in_its_environment() {
    let cluster = standalone().await;
    let connect = cluster.connect_string();
    let print =
        ["--", "sh", "-c", "echo $ZK_LOCK_PATH; echo $ZK_LOCK_NODE; echo $ZK_FENCING_TOKEN; echo $ZK_LEADER_ID"];
    for (args, marker) in [
        (&["lock", "/env/lock"][..], "-lock-"),
        (&["read-lock", "/env/rw"], "-__READ__"),
        (&["write-lock", "/env/rw"], "-__WRIT__"),
        (&["semaphore", "/env/sem", "--permits", "2"], "-lease-"),
        (&["elect", "/env/elect", "--id", "worker-7"], "-lock-"),
    ] {
        let output = finish(tool(&connect).args(args).args(print).spawn().unwrap()).await;
        assert_eq!(code(&output), 0, "{}", text(&output.stderr));
        let stdout = text(&output.stdout);
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(lines[0], args[1], "ZK_LOCK_PATH");
        assert!(
            lines[1].starts_with(&format!("{}/", args[1])) && lines[1].contains("/_c_"),
            "ZK_LOCK_NODE {}",
            lines[1]
        );
        assert!(lines[1][..lines[1].len() - 10].ends_with(marker), "{}", lines[1]);
        let token: FencingToken = lines[2].parse().expect("ZK_FENCING_TOKEN in canonical form");
        assert_eq!(format!("{:010}", token.sequence()), lines[1][lines[1].len() - 10..]);
        assert_eq!(lines.get(3).copied().unwrap_or(""), if args[0] == "elect" { "worker-7" } else { "" });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_while_waiting_deletes_the_node_and_exits_promptly() {
    let cluster = standalone().await;
    let connect = cluster.connect_string();
    let observer = observer(&connect).await;
    let holder = session(&connect, TIMEOUT).await;
    let guard = Mutex::new(&holder, "/wait").unwrap().lock().await.unwrap();
    for (sent, status) in [(Signal::SIGINT, 130), (Signal::SIGTERM, 143)] {
        let waiting = tool(&connect).args(["lock", "/wait", "--", "touch", "/nonexistent/ran"]).spawn().unwrap();
        count_is(&observer, "/wait", 2).await;
        let sent_at = Instant::now();
        signal(&waiting, sent);
        let output = finish(waiting).await;
        assert_eq!(code(&output), status, "{}", text(&output.stderr));
        assert!(sent_at.elapsed() < Duration::from_secs(5), "prompt: {:?}", sent_at.elapsed());
        // Gone by the time the tool has exited, not later.
        assert_eq!(observer.list_children("/wait").await.unwrap().len(), 1, "only the holder's node is left");
    }
    guard.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tool_frozen_past_its_session_timeout_stops_its_command_and_exits_4() {
    let cluster = standalone().await;
    let connect = cluster.connect_string();
    let observer = observer(&connect).await;
    let dir = tempfile::tempdir().unwrap();
    let command = r#"sleep 300 & echo $! > "$D/job"
        trap 'echo terminated > "$D/cmd"; exit 0' TERM; echo started > "$D/cmd"; while :; do sleep 0.1; done"#;
    let frozen = tool(&connect)
        .env("D", dir.path())
        .args(["lock", "/frozen", "--kill-after", "2s", "--", "sh", "-c", command])
        .spawn()
        .unwrap();
    wait_for_file(&dir.path().join("cmd"), "started").await;

    // Freeze the tool only (its command runs on), past the session timeout: the server expires
    // the session and a successor acquires.
    signal(&frozen, Signal::SIGSTOP);
    let successor = session(&connect, TIMEOUT).await;
    let guard = Mutex::new(&successor, "/frozen").unwrap().lock_timeout(PATIENCE).await.unwrap();
    assert_eq!(observer.list_children("/frozen").await.unwrap(), [guard.node().rsplit('/').next().unwrap()]);

    // Thawed, the tool sees the loss at once, stops its command and reports it.
    signal(&frozen, Signal::SIGCONT);
    let output = finish(frozen).await;
    assert_eq!(code(&output), 4, "{}", text(&output.stderr));
    assert!(text(&output.stderr).contains("lost"), "{}", text(&output.stderr));
    wait_for_file(&dir.path().join("cmd"), "terminated").await;
    // The command's background job too: a lost lock stops everything the command started.
    let job: u32 = std::fs::read_to_string(dir.path().join("job")).unwrap().trim().parse().unwrap();
    eventually("the background job is stopped too", PATIENCE, || async { (!common::process_alive(job)).then_some(()) })
        .await;
    assert!(futures_util::FutureExt::now_or_never(guard.lost()).is_none(), "the successor still holds");
    guard.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_tool_takes_its_command_and_the_commands_children_with_it_before_a_successor_acquires() {
    let cluster = standalone().await;
    let connect = cluster.connect_string();
    let observer = observer(&connect).await;
    let dir = tempfile::tempdir().unwrap();
    let command = r#"sleep 60 & echo $! > "$D/grandchild"; echo $$ > "$D/cmd"; wait"#;
    let tool =
        tool(&connect).env("D", dir.path()).args(["lock", "/killed", "--", "sh", "-c", command]).spawn().unwrap();
    let cmd = read_pid(&dir.path().join("cmd")).await;
    let grandchild = read_pid(&dir.path().join("grandchild")).await;
    // A successor on another session, queued behind the tool: it acquires once the tool's
    // session expires, which a SIGKILL leaves to the server's session timeout.
    let successor_session = session(&connect, TIMEOUT).await;
    let successor = tokio::spawn(async move {
        let guard = Mutex::new(&successor_session, "/killed").unwrap().lock_timeout(PATIENCE).await.unwrap();
        (Instant::now(), guard, successor_session)
    });
    count_is(&observer, "/killed", 2).await;

    let killed_at = Instant::now();
    signal(&tool, Signal::SIGKILL);
    eventually("the command and its child die with the tool", Duration::from_secs(1), || async {
        (!common::process_alive(cmd) && !common::process_alive(grandchild)).then_some(())
    })
    .await;
    let gone_after = killed_at.elapsed();
    eprintln!("the command's group was gone {gone_after:?} after the tool's SIGKILL");
    let (acquired_at, guard, _session) = timeout(PATIENCE, successor).await.expect("the successor acquires").unwrap();
    assert!(acquired_at > killed_at + gone_after, "the group was gone before the successor acquired");
    guard.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_loss_what_ignores_sigterm_gets_sigkill_and_the_tool_waits_until_the_group_is_gone() {
    let cluster = standalone().await;
    let connect = cluster.connect_string();
    let observer = observer(&connect).await;
    let dir = tempfile::tempdir().unwrap();
    // The command exits on SIGTERM; its child ignores it (and hands that on to `sleep`), and
    // keeps no pipe to the test open, so that the tool's exit shows at once.
    let command = r#"sh -c 'trap "" TERM; echo $$ > "$D/stubborn"; exec sleep 60' </dev/null >/dev/null 2>&1 &
        echo "$ZK_LOCK_NODE" > "$D/node"; wait"#;
    let tool = tool(&connect)
        .env("D", dir.path())
        .args(["lock", "/stubborn", "--kill-after", "1s", "--", "sh", "-c", command])
        .spawn()
        .unwrap();
    let stubborn = read_pid(&dir.path().join("stubborn")).await;
    let node = eventually("the node is written", PATIENCE, || async {
        std::fs::read_to_string(dir.path().join("node")).ok().filter(|n| n.ends_with('\n'))
    })
    .await;
    // Someone deletes the node: the tool has lost the lock.
    observer.delete(node.trim(), None).await.unwrap();
    let output = finish(tool).await;
    let stderr = text(&output.stderr);
    assert_eq!(code(&output), 4, "{stderr}");
    assert!(!common::process_alive(stubborn), "the tool exited while its command's child still ran: {stderr}");
    assert!(stderr.contains("SIGKILL 1s later"), "{stderr}");
    assert!(stderr.contains("the command was killed by SIGTERM"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_command_still_gets_the_signals_passed_on_to_it() {
    let cluster = standalone().await;
    let connect = cluster.connect_string();
    let dir = tempfile::tempdir().unwrap();
    let command = r#"echo $$ > "$D/cmd"; kill -STOP $$; echo resumed > "$D/resumed""#;
    let tool =
        tool(&connect).env("D", dir.path()).args(["lock", "/stopped", "--", "sh", "-c", command]).spawn().unwrap();
    let cmd = read_pid(&dir.path().join("cmd")).await;
    eventually("the command stops itself", PATIENCE, || async { is_stopped(cmd).then_some(()) }).await;
    signal(&tool, Signal::SIGTERM);
    let output = finish(tool).await;
    assert_eq!(code(&output), 128 + 15, "SIGTERM ended the command: {}", text(&output.stderr));
    assert!(!dir.path().join("resumed").exists(), "SIGTERM came before the SIGCONT that resumed it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_a_terminal_with_stdin_piped_the_command_can_prompt_on_the_terminal() {
    let cluster = standalone().await;
    let connect = cluster.connect_string();
    // Under a pseudo-terminal (`script`), stdin piped into the tool: the command reads a line
    // from the terminal, as a password prompt would, and one from stdin. Then the shell reads
    // the terminal too, which works only if the tool gave it back.
    let shell = r#"printf 'piped\n' | "$TOOL" lock /tty -- sh -c 'read -r a </dev/tty; echo "tty:$a"; read -r b; echo "stdin:$b"'
        echo "tool:$?"; read -r c </dev/tty; echo "shell:$c""#;
    let dir = tempfile::tempdir().unwrap();
    let (mut terminal, mut keys, mut screen) = at_a_terminal(shell, &connect, dir.path());
    keys.write_all(b"typed\n").await.unwrap();
    screen.shows("tty:typed").await;
    keys.write_all(b"again\n").await.unwrap();
    screen.shows("shell:again").await;
    let status = timeout(PATIENCE, terminal.wait()).await.expect("script exits").unwrap();
    assert!(status.success(), "{status:?}: {}", screen.1);
    assert!(screen.1.contains("stdin:piped") && screen.1.contains("tool:0"), "{}", screen.1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_z_at_a_terminal_stops_the_command_and_the_tool_and_sigcont_resumes_both() {
    let cluster = standalone().await;
    let dir = tempfile::tempdir().unwrap();
    let shell = r#"echo $$ > "$D/tool"
        exec "$TOOL" lock /jobs -- sh -c 'echo ready; read -r line </dev/tty; echo "line:$line"'"#;
    let (mut terminal, mut keys, mut screen) = at_a_terminal(shell, &cluster.connect_string(), dir.path());
    let tool = read_pid(&dir.path().join("tool")).await;
    screen.shows("ready").await;
    // Ctrl-Z while the command reads the terminal: the terminal stops the command's group;
    // the tool takes the terminal back and stops too, as a shell's job would. `script` passes
    // the stop on to its parent, the test, which plays the shell.
    keys.write_all(b"\x1a").await.unwrap();
    eventually("the tool stops, holding the terminal, and script with it", PATIENCE, || async {
        let stat = stat(tool);
        // After the state: parent, process group, session, terminal, its foreground group.
        (stat[0] == "T" && stat[2] == stat[5] && is_stopped(terminal.id().unwrap())).then_some(())
    })
    .await;
    // `fg`: script resumes the tool, and the tool the command, which gets the terminal back
    // and reads on.
    kill(Pid::from_raw(terminal.id().unwrap() as i32), Signal::SIGCONT).unwrap();
    keys.write_all(b"after\n").await.unwrap();
    screen.shows("line:after").await;
    let status = timeout(PATIENCE, terminal.wait()).await.expect("script exits").unwrap();
    assert!(status.success(), "{status:?}: {}", screen.1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_a_terminal_a_loss_stops_everything_the_command_started() {
    let cluster = standalone().await;
    let connect = cluster.connect_string();
    let observer = observer(&connect).await;
    let dir = tempfile::tempdir().unwrap();
    let shell = r#""$TOOL" lock /tty-loss --kill-after 1s -- sh -c 'sleep 60 & echo $! > "$D/job"
        echo "$ZK_LOCK_NODE" > "$D/node"; read -r never </dev/tty'; echo "tool:$?""#;
    let (mut terminal, _keys, mut screen) = at_a_terminal(shell, &connect, dir.path());
    let job = read_pid(&dir.path().join("job")).await;
    let node = eventually("the node is written", PATIENCE, || async {
        std::fs::read_to_string(dir.path().join("node")).ok().filter(|n| n.ends_with('\n'))
    })
    .await;
    observer.delete(node.trim(), None).await.unwrap();
    screen.shows("tool:4").await;
    assert!(!common::process_alive(job), "the command's background job is stopped too: {}", screen.1);
    let status = timeout(PATIENCE, terminal.wait()).await.expect("script exits").unwrap();
    assert!(status.success(), "{status:?}: {}", screen.1);
}

/// `script` running `shell` under a pseudo-terminal, with the tool as `$TOOL`, `$D` = `dir`,
/// and `connect` as ZK_SERVERS; its stdin (the keys typed) and what it shows.
fn at_a_terminal(shell: &str, connect: &str, dir: &Path) -> (Child, tokio::process::ChildStdin, Screen) {
    let mut terminal = Command::new("script")
        .args(["-qec", shell, "/dev/null"])
        .env("D", dir)
        .env("TOOL", env!("CARGO_BIN_EXE_zk-recipes"))
        .env("SHELL", "/bin/sh")
        .env("ZK_SERVERS", connect)
        .env_remove("ZK_DIGEST")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let keys = terminal.stdin.take().unwrap();
    let screen = Screen(terminal.stdout.take().unwrap(), String::new());
    (terminal, keys, screen)
}

/// What a pseudo-terminal shows, read as it comes.
struct Screen(tokio::process::ChildStdout, String);

impl Screen {
    async fn shows(&mut self, wanted: &str) {
        let read = async {
            let mut buffer = [0u8; 1024];
            while !self.1.contains(wanted) {
                let n = self.0.read(&mut buffer).await.unwrap();
                assert!(n > 0, "the terminal closed before showing {wanted:?}: {}", self.1);
                self.1.push_str(&String::from_utf8_lossy(&buffer[..n]));
            }
        };
        if timeout(PATIENCE, read).await.is_err() {
            panic!("the terminal never showed {wanted:?}: {}", self.1);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loss_noticed_once_the_command_had_exited_says_so() {
    let cluster = standalone().await;
    let connect = cluster.connect_string();
    let observer = observer(&connect).await;
    let dir = tempfile::tempdir().unwrap();
    // The command freezes the tool, then exits 7 once told to: the tool learns of both only
    // when thawed.
    let command = r#"echo "$ZK_LOCK_NODE" > "$D/node"; echo $$ > "$D/cmd"; kill -STOP $PPID
        i=0; while [ ! -e "$D/go" ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done; exit 7"#;
    let tool = tool(&connect).env("D", dir.path()).args(["lock", "/late", "--", "sh", "-c", command]).spawn().unwrap();
    let cmd = read_pid(&dir.path().join("cmd")).await;
    eventually("the tool's node is gone with its session", PATIENCE, || async {
        common::children(&observer, "/late").await.is_empty().then_some(())
    })
    .await;
    std::fs::write(dir.path().join("go"), "").unwrap();
    eventually("the command exits", PATIENCE, || async { (!common::process_alive(cmd)).then_some(()) }).await;
    signal(&tool, Signal::SIGCONT);
    let output = finish(tool).await;
    let stderr = text(&output.stderr);
    assert_eq!(code(&output), 4, "{stderr}");
    assert!(stderr.contains("the command had already exited with status 7 when the tool noticed"), "{stderr}");
    assert!(!stderr.contains("stopping") && !stderr.contains("was stopped"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_tool_whose_session_expires_queues_again_unless_told_not_to_wait_long() {
    let cluster = standalone().await;
    let connect = cluster.connect_string();
    let observer = observer(&connect).await;
    let holder = session(&connect, TIMEOUT).await;
    let dir = tempfile::tempdir().unwrap();
    for patience in [&[][..], &["--timeout", "5m"]] {
        let guard = Mutex::new(&holder, "/requeue").unwrap().lock().await.unwrap();
        let waiting = tool(&connect)
            .env("D", dir.path())
            .args(["lock", "/requeue"])
            .args(patience)
            .args(["--", "sh", "-c", r#"echo ran > "$D/ran""#])
            .spawn()
            .unwrap();
        count_is(&observer, "/requeue", 2).await;
        let queued = common::children(&observer, "/requeue").await;
        // Frozen past its session timeout, the tool's session expires, and its place with it.
        signal(&waiting, Signal::SIGSTOP);
        eventually("the waiting node is gone with its session", PATIENCE, || async {
            (common::children(&observer, "/requeue").await.len() == 1).then_some(())
        })
        .await;
        signal(&waiting, Signal::SIGCONT);
        if patience.is_empty() {
            eventually("the tool queues again, with a new node", PATIENCE, || async {
                let now = common::children(&observer, "/requeue").await;
                (now.len() == 2 && now.iter().any(|node| !queued.contains(node))).then_some(())
            })
            .await;
            guard.release().await.unwrap();
            let output = finish(waiting).await;
            let stderr = text(&output.stderr);
            assert_eq!(code(&output), 0, "{stderr}");
            assert!(stderr.contains("queueing again"), "{stderr}");
            wait_for_file(&dir.path().join("ran"), "ran").await;
        } else {
            let output = finish(waiting).await;
            let stderr = text(&output.stderr);
            assert_eq!(code(&output), 1, "{stderr}");
            assert!(stderr.contains("the ZooKeeper session expired while waiting; run the command again"), "{stderr}");
            assert!(!stderr.contains("retry on the session"), "{stderr}");
            guard.release().await.unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_into_a_closed_pipe_ends_quietly() {
    let cluster = standalone().await;
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let output = finish(tool(&cluster.connect_string()).args(["status", "/x"]).stdout(writer).spawn().unwrap()).await;
    assert_eq!(code(&output), 128 + 13, "as SIGPIPE would end it: {}", text(&output.stderr));
    assert!(output.stderr.is_empty(), "quietly: {}", text(&output.stderr));
}

/// The pid a command wrote to `path`.
async fn read_pid(path: &Path) -> u32 {
    eventually(&format!("a pid in {}", path.display()), PATIENCE, || async {
        std::fs::read_to_string(path).ok().filter(|p| p.ends_with('\n')).and_then(|p| p.trim().parse().ok())
    })
    .await
}

/// Whether the process is stopped by a signal (state `T`).
fn is_stopped(pid: u32) -> bool {
    stat(pid).first().is_some_and(|state| state == "T")
}

/// The fields of `/proc/<pid>/stat` after the command name, from the state on (none if the
/// process is gone).
fn stat(pid: u32) -> Vec<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rsplit_once(')').map_or("", |(_, fields)| fields).split_whitespace().map(str::to_owned).collect()
}

async fn wait_for_file(path: &Path, content: &str) {
    eventually(&format!("{} says {content}", path.display()), PATIENCE, || async {
        std::fs::read_to_string(path).ok().filter(|c| c.trim() == content).map(drop)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_holders_and_waiters_of_every_recipe_as_text_and_json() {
    let cluster = standalone().await;
    let connect = cluster.connect_string();
    let sessions: Vec<_> = futures_sessions(&connect, 6).await;
    let observer = observer(&connect).await;

    // Mutex: a holder and a waiter; and a kazoo node queued behind them.
    let held = Mutex::new(&sessions[0], "/st/mutex").unwrap().with_data("host-a").lock().await.unwrap();
    let waiter = Mutex::new(&sessions[1], "/st/mutex").unwrap();
    let waiting = tokio::spawn(async move { waiter.lock().await.map(drop) });
    count_is(&observer, "/st/mutex", 2).await;
    let kazoo = format!("/st/mutex/{}__lock__", "0123456789abcdef0123456789abcdef");
    observer
        .create(&kazoo, b"kazoo-worker", &zk::CreateMode::EphemeralSequential.with_acls(zk::Acls::anyone_all()))
        .await
        .unwrap();
    let json = status_json(&connect, "/st/mutex").await;
    assert_eq!(json["holders"].as_array().unwrap().len(), 1);
    assert_eq!(json["holders"][0]["data"], "host-a");
    assert_eq!(json["holders"][0]["token"], held.token().to_string());
    assert_eq!(json["holders"][0]["session_id"], format!("{:#x}", sessions[0].id().unwrap().0));
    assert_eq!(json["waiting"].as_array().unwrap().len(), 2);
    assert_eq!(json["waiting"][1]["kind"], "KazooLock");
    assert_eq!(json["waiting"][1]["data"], "kazoo-worker");
    let text = status_text(&connect, "/st/mutex").await;
    assert!(text.starts_with("/st/mutex: 1 holding, 2 waiting\n"), "{text}");
    assert!(
        text.contains("holds") && text.contains("#1") && text.contains("#2") && text.contains("\"host-a\""),
        "{text}"
    );

    // Read-write lock: two readers hold, a writer waits, a reader behind it waits.
    let rw = |i: usize| ReadWriteLock::new(&sessions[i], "/st/rw").unwrap();
    let _r1 = rw(2).read().await.unwrap();
    let _r2 = rw(3).read().await.unwrap();
    let writer = rw(4);
    let _w = tokio::spawn(async move { writer.write().await.map(drop) });
    count_is(&observer, "/st/rw", 3).await;
    let late = rw(5);
    let _r3 = tokio::spawn(async move { late.read().await.map(drop) });
    count_is(&observer, "/st/rw", 4).await;
    let json = status_json(&connect, "/st/rw").await;
    let kinds = |list: &serde_json::Value| {
        list.as_array().unwrap().iter().map(|p| p["kind"].as_str().unwrap().to_owned()).collect::<Vec<_>>()
    };
    assert_eq!(kinds(&json["holders"]), ["Read", "Read"]);
    assert_eq!(kinds(&json["waiting"]), ["Write", "Read"]);

    // Semaphore: leases hold; the layout is recognised.
    let semaphore = |i: usize| Semaphore::new(&sessions[i], "/st/sem", 2).unwrap();
    let _l1 = semaphore(0).acquire().await.unwrap();
    let _l2 = semaphore(1).acquire().await.unwrap();
    let json = status_json(&connect, "/st/sem").await;
    assert_eq!(json["semaphore"], true);
    assert_eq!(kinds(&json["holders"]), ["Lease", "Lease"]);
    assert!(status_text(&connect, "/st/sem").await.starts_with("/st/sem (semaphore): 2 holding, 0 waiting"));
    // A third waits: its lease node exists already, but it is its place in line, not a permit.
    let third = semaphore(2);
    let _l3 = tokio::spawn(async move { third.acquire().await.map(drop) });
    count_is(&observer, "/st/sem/leases", 3).await;
    let json = status_json(&connect, "/st/sem").await;
    assert_eq!(kinds(&json["holders"]), ["Lease", "Lease"]);
    assert_eq!(kinds(&json["waiting"]), ["Lease"]);
    assert_eq!(json["waiting"][0]["session_id"], format!("{:#x}", sessions[2].id().unwrap().0));

    // Leader latch: the leader holds, the others wait, ids as data.
    let first = LeaderLatch::new(&sessions[2], "/st/latch", "alpha").unwrap().start().await.unwrap();
    first.leadership().await.unwrap();
    let _second = LeaderLatch::new(&sessions[3], "/st/latch", "beta").unwrap().start().await.unwrap();
    count_is(&observer, "/st/latch", 2).await;
    let json = status_json(&connect, "/st/latch").await;
    assert_eq!(json["holders"][0]["data"], "alpha");
    assert_eq!(json["waiting"][0]["data"], "beta");
    assert_eq!(json["holders"][0]["kind"], "Latch");

    // An empty or missing path.
    let json = status_json(&connect, "/st/none").await;
    assert!(json["holders"].as_array().unwrap().is_empty() && json["waiting"].as_array().unwrap().is_empty());
    drop(held);
    waiting.await.unwrap().unwrap();
}

async fn futures_sessions(connect: &str, n: usize) -> Vec<zk_recipes::Session> {
    common::sessions(connect, n, TIMEOUT).await
}

async fn status_json(connect: &str, path: &str) -> serde_json::Value {
    let output = finish(tool(connect).args(["status", path, "--json"]).spawn().unwrap()).await;
    assert_eq!(code(&output), 0, "{}", text(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("one JSON document")
}

async fn status_text(connect: &str, path: &str) -> String {
    let output = finish(tool(connect).args(["status", path]).spawn().unwrap()).await;
    assert_eq!(code(&output), 0, "{}", text(&output.stderr));
    text(&output.stdout)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_progress_line_goes_to_stderr_and_stdout_is_the_commands() {
    let cluster = standalone().await;
    let connect = cluster.connect_string();
    let observer = observer(&connect).await;
    let holder = session(&connect, TIMEOUT).await;
    let guard = Mutex::new(&holder, "/p").unwrap().lock().await.unwrap();
    let waiting = tool(&connect).args(["lock", "/p", "--progress", "--", "echo", "from the command"]).spawn().unwrap();
    count_is(&observer, "/p", 2).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    guard.release().await.unwrap();
    let output = finish(waiting).await;
    assert_eq!(code(&output), 0);
    assert_eq!(text(&output.stdout), "from the command\n");
    let stderr = text(&output.stderr);
    assert!(stderr.contains("waiting for /p: 1 of 1 in line, held by _c_"), "{stderr}");
    // Without a terminal and without --progress: silence.
    let guard = Mutex::new(&holder, "/p").unwrap().lock().await.unwrap();
    let quiet = tool(&connect).args(["lock", "/p", "--", "true"]).spawn().unwrap();
    count_is(&observer, "/p", 2).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    guard.release().await.unwrap();
    let output = finish(quiet).await;
    assert!(output.stderr.is_empty() && output.stdout.is_empty(), "{output:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn elect_runs_one_leader_at_a_time_in_turn() {
    let cluster = standalone().await;
    let connect = cluster.connect_string();
    let observer = observer(&connect).await;
    let dir = tempfile::tempdir().unwrap();
    let leader = r#"echo "$ZK_LEADER_ID" >> "$D/leaders"; sleep 0.3"#;
    let first = tool(&connect)
        .env("D", dir.path())
        .args(["elect", "/e", "--id", "one", "--", "sh", "-c", leader])
        .spawn()
        .unwrap();
    count_is(&observer, "/e", 1).await;
    let second = tool(&connect)
        .env("D", dir.path())
        .args(["elect", "/e", "--id", "two", "--", "sh", "-c", leader])
        .spawn()
        .unwrap();
    assert_eq!(code(&finish(first).await), 0);
    assert_eq!(code(&finish(second).await), 0);
    assert_eq!(std::fs::read_to_string(dir.path().join("leaders")).unwrap(), "one\ntwo\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_serves_until_interrupted() {
    let (mut sandbox, mut lines) = common::sandbox(&[]);
    let connect = timeout(PATIENCE, lines.next_line()).await.unwrap().unwrap().expect("the connect string");
    let output = finish(tool(&connect).args(["lock", "/try", "--", "true"]).spawn().unwrap()).await;
    assert_eq!(code(&output), 0, "{}", text(&output.stderr));
    signal(&sandbox, Signal::SIGINT);
    let status = timeout(PATIENCE, sandbox.wait()).await.unwrap().unwrap();
    assert!(status.success(), "{status:?}");
    let gone = zk::Client::connector().with_connection_timeout(Duration::from_millis(500)).connect(&connect).await;
    assert!(gone.is_err(), "the server went with the sandbox");
}

/// `zk-recipes lock … -- psql … -f examples/capture.sql`: the shell's way to a fenced write.
#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_runs_psql_with_its_token_and_postgres_refuses_a_stale_capture() {
    use zk_recipes::fence::FenceTable;

    const LOCK: &str = "/payments/order-42";
    const CAPTURE_SQL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/capture.sql");
    let cluster = standalone().await;
    let connect = cluster.connect_string();
    let postgres = common::postgres().await;
    let db = postgres.connect().await.unwrap();
    common::payments_schema(&db).await;
    let row = || async {
        let row = db.query_one("SELECT status, captured_by, fence FROM payments WHERE id = 42", &[]).await.unwrap();
        (row.get::<_, String>(0), row.get::<_, Option<String>>(1), row.get::<_, FencingToken>(2))
    };
    let under_lock = |command: &str| {
        let mut run = tool(&connect);
        run.env("PSQL", postgres.psql()).env("DATABASE_URL", postgres.connection_string()).env("SQL", CAPTURE_SQL);
        run.args(["lock", LOCK, "--", "sh", "-c", command]);
        run
    };

    // An earlier turn that only notes its token.
    let earlier = finish(under_lock(r#"echo "$ZK_FENCING_TOKEN""#).spawn().unwrap()).await;
    assert_eq!(code(&earlier), 0, "{}", text(&earlier.stderr));
    let earlier: FencingToken = text(&earlier.stdout).trim().parse().unwrap();

    // The documented command line.
    let documented = r#""$PSQL" "$DATABASE_URL" -X -v ON_ERROR_STOP=1 -v token="$ZK_FENCING_TOKEN" \
        -v lock="$ZK_LOCK_PATH" -v order=42 -v worker=cron -f "$SQL""#;
    let captured = finish(under_lock(documented).spawn().unwrap()).await;
    assert_eq!(code(&captured), 0, "{}", text(&captured.stderr));
    let (status, by, fence) = row().await;
    assert_eq!((status.as_str(), by.as_deref()), ("captured", Some("cron")));
    assert!(fence > earlier, "the capture's token is the later turn's: {earlier} then {fence}");
    assert!(text(&captured.stdout).contains(&fence.to_string()), "RETURNING shows it: {}", text(&captured.stdout));
    let fenced = FenceTable::new("fences").unwrap().current(&db, LOCK).await.unwrap();
    assert_eq!(fenced, Some(fence), "the fence row holds the capture's token");

    // The earlier holder's token, late: PostgreSQL refuses, psql fails, nothing changes.
    let stale = finish(
        Command::new(postgres.psql())
            .arg(postgres.connection_string())
            .args(["-X", "-v", "ON_ERROR_STOP=1", "-v", &format!("token={earlier}"), "-v", &format!("lock={LOCK}")])
            .args(["-v", "order=42", "-v", "worker=late", "-f", CAPTURE_SQL])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    )
    .await;
    assert_eq!(code(&stale), 3, "psql's code for a failed script: {}", text(&stale.stderr));
    assert!(
        text(&stale.stderr).contains(&format!("stale fencing token {earlier}: the fence is at {fence}")),
        "{}",
        text(&stale.stderr)
    );
    assert_eq!(row().await, ("captured".to_owned(), Some("cron".to_owned()), fence), "rolled back");

    // Without -v token and -v lock, the script reads the tool's environment itself.
    let direct = finish(
        tool(&connect)
            .args(["lock", LOCK, "--"])
            .arg(postgres.psql())
            .arg(postgres.connection_string())
            .args(["-X", "-v", "ON_ERROR_STOP=1", "-v", "order=42", "-v", "worker=direct", "-f", CAPTURE_SQL])
            .spawn()
            .unwrap(),
    )
    .await;
    assert_eq!(code(&direct), 0, "{}", text(&direct.stderr));
    let (_, by, latest) = row().await;
    assert_eq!(by.as_deref(), Some("direct"));
    assert!(latest > fence, "{fence} then {latest}");
}
