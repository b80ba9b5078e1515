//! `tokd completions SHELL` and `tokd man`: generated from the same clap definitions as the
//! command line itself, so they cannot drift.

use clap::CommandFactory;

use crate::cli::Cli;
use crate::{CmdResult, Outcome};

/// Prints the completion script for `shell`.
pub fn completions(shell: clap_complete::Shell) -> CmdResult {
    let mut cmd = Cli::command();
    clap_complete::generate(shell, &mut cmd, "tokd", &mut std::io::stdout());
    Ok(Outcome::Exit(0))
}

/// Prints the man page (roff).
pub fn man() -> CmdResult {
    let page = clap_mangen::Man::new(Cli::command());
    let mut out = std::io::stdout().lock();
    if let Err(e) = page.render(&mut out).or_else(|e| match e.kind() {
        std::io::ErrorKind::BrokenPipe => Ok(()),
        _ => Err(e),
    }) {
        eprintln!("tokd: cannot write the man page: {e}");
        return Ok(Outcome::Exit(1));
    }
    Ok(Outcome::Exit(0))
}
