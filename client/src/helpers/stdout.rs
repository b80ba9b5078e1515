//! The one way the binaries write to stdout and stderr. A closed pipe (`tokd list | head
//! -0`) is not worth a panic: `println!` would panic on it ("failed printing to stdout",
//! exit 101). The binaries leave SIGPIPE ignored, as Rust sets it up, because they also write
//! to the daemon's socket and must survive an EPIPE there to read the daemon's refusal; so
//! every stdout write goes through [`write()`], and a broken pipe ends the program quietly with
//! [`BROKEN_PIPE_EXIT`].
//!
//! Shared by the `tokd` and `docker-credential-tokd` binaries (included with `#[path]`).

use std::io::Write;

/// The exit status after stdout was closed under us: 128 + SIGPIPE, what a shell reports
/// for a program killed by SIGPIPE, so `set -o pipefail` sees the same as with `cat`.
pub const BROKEN_PIPE_EXIT: u8 = 141;

/// Writes `bytes` to stdout and flushes.
///
/// # Errors
/// The write's error; [`is_broken_pipe`] tells the quiet case.
pub fn write(bytes: &[u8]) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)?;
    out.flush()
}

/// Whether a stdout error is the reader having gone away.
pub fn is_broken_pipe(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::BrokenPipe
}

/// Writes one message line to stderr; a closed stderr is ignored (there is nowhere left to
/// say anything).
pub fn say(line: std::fmt::Arguments<'_>) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{line}");
}

/// `eprintln!` that never panics: [`say`].
macro_rules! errln {
    ($($arg:tt)*) => {
        $crate::helpers::stdout::say(format_args!($($arg)*))
    };
}
pub(crate) use errln;
