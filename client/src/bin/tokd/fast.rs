//! The `tokd get` fast path: a plain `tokd [--socket P] get NAME [flags]` is parsed by hand,
//! skipping clap's whole command tree, because `get` runs on the hot path of every program
//! that needs a token. Anything unusual (help, unknown flags, `=` forms it does not know,
//! bad values) returns `None`, and clap parses the command line as usual — with its errors.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use crate::cli::GetArgs;

/// `tokd get` arguments, when the command line is a plain `get`.
pub fn parse_get(args: &[OsString]) -> Option<(Option<PathBuf>, GetArgs)> {
    let mut it = args.iter().skip(1).map(|a| a.to_str());
    let mut socket = None;
    let mut first = it.next()??;
    if first == "--socket" {
        socket = Some(PathBuf::from(value(it.next()??)?));
        first = it.next()??;
    } else if first.starts_with("--socket=") {
        return None;
    }
    if first != "get" {
        return None;
    }
    let mut get = GetArgs {
        name: String::new(),
        min_valid: Duration::from_secs(10),
        wait: tokd::GET_WAIT,
        header: false,
        json: false,
        id_token: false,
    };
    let mut name = None;
    // clap refuses a flag given twice; so does the fast path (by handing over to clap).
    let mut seen: Vec<&str> = Vec::new();
    while let Some(arg) = it.next() {
        let arg = arg?;
        if arg.starts_with('-') {
            if seen.contains(&arg) {
                return None;
            }
            seen.push(arg);
        }
        match arg {
            "--header" => get.header = true,
            "--json" => get.json = true,
            "--id-token" => get.id_token = true,
            "--min-valid" => get.min_valid = duration(value(it.next()??)?)?,
            "--wait" => get.wait = duration(value(it.next()??)?)?,
            "--socket" if socket.is_none() => {
                socket = Some(PathBuf::from(value(it.next()??)?));
            }
            _ if arg.starts_with('-') => return None,
            _ if name.is_none() => name = Some(arg.to_owned()),
            _ => return None,
        }
    }
    // Conflicting output flags: let clap explain.
    if u8::from(get.header) + u8::from(get.json) + u8::from(get.id_token) > 1 {
        return None;
    }
    get.name = name?;
    Some((socket, get))
}

/// A flag's value as clap would take it: not empty, not another flag.
fn value(text: &str) -> Option<&str> {
    (!text.is_empty() && !text.starts_with('-')).then_some(text)
}

fn duration(text: &str) -> Option<Duration> {
    crate::cli::parse_duration(text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<OsString> {
        line.split_whitespace().map(OsString::from).collect()
    }

    #[test]
    fn plain_gets_are_parsed() {
        let (socket, get) = parse_get(&args("tokd get work")).expect("fast");
        assert!(socket.is_none());
        assert_eq!(get.name, "work");
        assert_eq!(get.min_valid, Duration::from_secs(10));
        let (socket, get) =
            parse_get(&args("tokd --socket /s get w --min-valid 5m --header")).expect("fast");
        assert_eq!(socket, Some(PathBuf::from("/s")));
        assert_eq!(get.min_valid, Duration::from_secs(300));
        assert!(get.header);
    }

    #[test]
    fn anything_unusual_goes_to_clap() {
        for line in [
            "tokd get",
            "tokd get --help",
            "tokd get a b",
            "tokd get a --min-valid soon",
            "tokd get a --header --json",
            "tokd get a --unknown",
            "tokd get a --json --json",
            "tokd get a --min-valid 1s --min-valid 2s",
            "tokd --socket --json get a",
            "tokd --socket=/s get a",
            "tokd --socket /s get a --socket /t",
            "tokd status",
            "tokd",
        ] {
            assert!(parse_get(&args(line)).is_none(), "{line}");
        }
    }

    /// What clap makes of `line`, which must be a `get`.
    fn clap(line: &str) -> (Option<PathBuf>, GetArgs) {
        use clap::Parser;
        let cli = crate::cli::Cli::try_parse_from(args(line)).expect("clap accepts it");
        match cli.command {
            crate::cli::Command::Get(get) => (cli.socket, get),
            other => panic!("{line}: not a get but {other:?}"),
        }
    }

    #[test]
    fn the_fast_path_reads_a_command_line_as_clap_does() {
        // The fast path has its own copy of clap's defaults (a 10 s --min-valid,
        // `tokd::GET_WAIT`, no output flag); a default changed on one side only fails the
        // first line.
        for line in [
            "tokd get work",
            "tokd get work --min-valid 5m --wait 30s",
            "tokd get --wait 0 work --json",
            "tokd --socket /s get w --header --min-valid 90",
            "tokd get w --socket /s --id-token --wait 1h30m",
        ] {
            assert_eq!(parse_get(&args(line)), Some(clap(line)), "{line}");
        }
    }
}
