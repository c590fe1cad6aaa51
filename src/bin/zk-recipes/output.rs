//! The tool's own output: stdout for what was asked for, stderr for messages, neither of
//! which may end the tool with a panic when its reader has gone.

use std::io::{ErrorKind, Write};

/// How stdout ended.
pub enum Printed {
    All,
    /// The reader closed the pipe (`zk-recipes status … | head`): nothing more is wanted.
    ReaderGone,
}

/// Writes `text` to stdout and flushes it.
pub fn stdout(text: &str) -> std::io::Result<Printed> {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush()) {
        Ok(()) => Ok(Printed::All),
        Err(e) if e.kind() == ErrorKind::BrokenPipe => Ok(Printed::ReaderGone),
        Err(e) => Err(e),
    }
}

/// A `zk-recipes: ` line on stderr. A stderr that cannot be written to loses the message
/// but does not stop the tool, which may be holding a lock over a running command.
pub fn warn(message: &str) {
    let _ = writeln!(std::io::stderr().lock(), "zk-recipes: {message}");
}
