//! `tokd completions SHELL` and `tokd man`: generated from the same clap definitions as the
//! command line itself, so they cannot drift.

use clap::CommandFactory;

use crate::cli::Cli;
use crate::{CmdError, CmdResult, Outcome};

/// Prints the completion script for `shell`. It is generated into memory first: the
/// generators panic when their writer fails, as stdout does on a closed pipe.
pub fn completions(shell: clap_complete::Shell) -> CmdResult {
    let mut cmd = Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, "tokd", &mut script);
    write(&script)
}

/// Prints the man page (roff).
pub fn man() -> CmdResult {
    let page = clap_mangen::Man::new(Cli::command());
    let mut roff = Vec::new();
    // Rendering into memory cannot fail.
    if let Err(e) = page.render(&mut roff) {
        crate::errln!("tokd: cannot render the man page: {e}");
        return Ok(Outcome::Exit(1));
    }
    write(&roff)
}

fn write(bytes: &[u8]) -> CmdResult {
    crate::helpers::stdout::write(bytes).map_err(CmdError::Stdout)?;
    Ok(Outcome::Exit(0))
}
