//! The names journal (`<state_dir>/names`): which sessions the store has acknowledged,
//! kept outside sled so that a database that lost records can be told from one that never
//! had them.
//!
//! sled recovers a truncated or damaged log by dropping its tail, silently. Without a
//! second witness a session would simply be gone at the next start. The journal is an
//! append-only text file of `+name` / `-name` lines (names cannot hold a newline):
//!
//! - `+name` is appended only after the record is durable in sled, so the journal never
//!   names a record sled was not holding. Losing that line in a crash is harmless: a
//!   record sled holds but the journal does not name is adopted at the next start.
//! - `-name` is appended and fsynced *before* the record leaves sled, for the same reason.
//! - A last line without its newline is a torn append and is ignored.
//!
//! At open, a name the journal holds and sled does not is a lost session; the store
//! reports it as corrupt (never served, shown in status) instead of forgetting it.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

/// File name of the journal inside the state directory.
pub const NAMES_FILE: &str = "names";

/// The open journal.
#[derive(Debug)]
pub struct Names {
    file: Mutex<File>,
    path: PathBuf,
}

/// What [`Names::open`] found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Reconciled {
    /// Names the journal acknowledged that sled no longer holds.
    pub missing: Vec<String>,
    /// Why the journal itself could not be trusted (and was rebuilt), if so.
    pub damaged: Option<String>,
}

impl Names {
    /// Opens the journal of `state_dir` against the names sled holds: reports the missing
    /// ones, adopts the extra ones, and compacts the file when it has grown. A missing
    /// journal (a store from before it existed) is created from sled's names.
    ///
    /// # Errors
    /// File errors, with the path.
    pub fn open(state_dir: &Path, in_db: &BTreeSet<String>) -> io::Result<(Names, Reconciled)> {
        let path = state_dir.join(NAMES_FILE);
        let mut found = Reconciled::default();
        let (journal, lines) = match fs::read(&path) {
            Ok(bytes) => match parse(&bytes) {
                Ok(parsed) => parsed,
                Err(why) => {
                    found.damaged = Some(why);
                    (in_db.clone(), 0)
                }
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => (in_db.clone(), 0),
            Err(e) => return Err(e),
        };
        found.missing = journal.difference(in_db).cloned().collect();
        // The journal keeps naming the missing ones until they are removed, so they stay
        // reported across restarts.
        let live: BTreeSet<String> = journal.union(in_db).cloned().collect();
        if lines == 0 || lines > 2 * live.len() + 1024 || live.len() != journal.len() {
            rewrite(state_dir, &live)?;
        }
        let file = OpenOptions::new().append(true).mode(0o600).open(&path)?;
        Ok((
            Names {
                file: Mutex::new(file),
                path,
            },
            found,
        ))
    }

    /// Records that `name` is stored (call after the record is durable). Not synced: a
    /// lost line only means the record is adopted again at the next start.
    pub fn added(&self, name: &str) -> io::Result<()> {
        self.append(b'+', name, false)
    }

    /// Records that `name` is going away (call before the record leaves sled); synced.
    pub fn removing(&self, name: &str) -> io::Result<()> {
        self.append(b'-', name, true)
    }

    /// The journal's path, for error messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn append(&self, op: u8, name: &str, sync: bool) -> io::Result<()> {
        let mut line = Vec::with_capacity(name.len() + 2);
        line.push(op);
        line.extend_from_slice(name.as_bytes());
        line.push(b'\n');
        let mut file = self.file.lock().unwrap_or_else(PoisonError::into_inner);
        file.write_all(&line)?;
        if sync {
            file.sync_data()?;
        }
        Ok(())
    }
}

/// The set of names a journal describes and how many lines it has.
fn parse(bytes: &[u8]) -> Result<(BTreeSet<String>, usize), String> {
    let mut names = BTreeSet::new();
    let mut lines = 0;
    let complete = match bytes.iter().rposition(|&b| b == b'\n') {
        Some(end) => &bytes[..=end],
        None => &[][..],
    };
    for (i, line) in complete.split(|&b| b == b'\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        lines += 1;
        let name = std::str::from_utf8(&line[1..])
            .ok()
            .filter(|n| tokd_protocol::name::validate_session_name(n).is_ok())
            .ok_or_else(|| format!("line {} is not a session name", i + 1))?;
        match line[0] {
            b'+' => {
                names.insert(name.to_owned());
            }
            b'-' => {
                names.remove(name);
            }
            _ => return Err(format!("line {} is neither +name nor -name", i + 1)),
        }
    }
    Ok((names, lines))
}

/// Replaces the journal with one `+name` line per name, atomically.
fn rewrite(state_dir: &Path, names: &BTreeSet<String>) -> io::Result<()> {
    let mut text = Vec::with_capacity(names.len() * 16);
    for name in names {
        text.push(b'+');
        text.extend_from_slice(name.as_bytes());
        text.push(b'\n');
    }
    crate::fsutil::write_atomically(&state_dir.join(NAMES_FILE), &text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|n| (*n).to_owned()).collect()
    }

    #[test]
    fn a_name_sled_lost_is_reported_and_keeps_being_reported() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (names, found) = Names::open(dir.path(), &set(&["a", "b"])).expect("open");
        assert_eq!(found, Reconciled::default());
        names.added("c").expect("add");
        drop(names);
        let (_, found) = Names::open(dir.path(), &set(&["a"])).expect("open");
        assert_eq!(found.missing, vec!["b".to_owned(), "c".to_owned()]);
        let (names, found) = Names::open(dir.path(), &set(&["a"])).expect("open");
        assert_eq!(found.missing.len(), 2, "still missing after a restart");
        names.removing("b").expect("rm");
        names.removing("c").expect("rm");
        drop(names);
        let (_, found) = Names::open(dir.path(), &set(&["a"])).expect("open");
        assert!(found.missing.is_empty());
    }

    #[test]
    fn a_torn_last_line_is_ignored_and_garbage_is_reported() {
        assert_eq!(
            parse(b"+a\n+b\n-a\n+c").expect("parses"),
            (set(&["b"]), 3),
            "the torn `+c` does not count"
        );
        assert!(parse(b"+a\n*b\n").is_err());
        assert!(parse(b"+a/b\n").is_err());
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(dir.path().join(NAMES_FILE), b"\x00\x01garbage\n").expect("write");
        let (_, found) = Names::open(dir.path(), &set(&["x"])).expect("open");
        assert!(found.damaged.is_some());
        assert!(found.missing.is_empty());
    }

    #[test]
    fn records_sled_holds_but_the_journal_missed_are_adopted() {
        let dir = tempfile::tempdir().expect("tempdir");
        drop(Names::open(dir.path(), &set(&["a"])).expect("open"));
        let (_, found) = Names::open(dir.path(), &set(&["a", "late"])).expect("open");
        assert!(found.missing.is_empty());
        let (_, found) = Names::open(dir.path(), &set(&["a"])).expect("open");
        assert_eq!(
            found.missing,
            vec!["late".to_owned()],
            "adopted, then witnessed"
        );
    }
}
