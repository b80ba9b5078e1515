//! Encrypted, durable storage of sessions.
//!
//! The store is the only code that touches sled or key bytes. Layout of the state
//! directory (mode 0700):
//!
//! - `db/`: the sled database. Tree `sessions` maps a session name to a sealed record;
//!   tree `quarantine` keeps the raw bytes of discarded corrupt records under
//!   `<name>/<epoch_ms>` (nothing is ever deleted).
//! - `keycheck`: a small sealed file written (atomically) when the store is created. It is
//!   verified *before* sled is opened, because opening and dropping a sled database
//!   rewrites its files even when nothing is written; a daemon started with the wrong key
//!   therefore leaves every file untouched.
//!
//! A record on disk is `[envelope version 1][24-byte nonce][XChaCha20-Poly1305 ciphertext
//! and tag]`, with associated data `b"tokd/session/v1\0" ++ name`, so a value copied to
//! another name does not open. The plaintext is `[schema version][bincode body]`
//! (see [`SessionRecord`]). A record that does not open is reported as corrupt and kept
//! as-is until [`Store::discard_corrupt`] moves it to the quarantine tree.
//!
//! - `names`: the journal of acknowledged session names (see `names.rs`), so a session the
//!   database lost (truncated or damaged files) is reported as corrupt, not forgotten.
//!
//! Besides sled's own lock on its files, the store takes a non-blocking `flock` on the
//! state directory itself before reading anything, so a second daemon fails fast with
//! [`StoreError::Locked`] without touching the key or the database.

mod crypto;
mod key;
mod names;
mod schema;
mod writer;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs;
use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};

pub use key::KeySource;
pub use schema::{SessionRecord, Terminal};

use crypto::{KEYCHECK_AAD, KEYCHECK_PLAINTEXT, OpenError, RecordCipher, SealError, session_aad};

/// Name of the sled database directory inside the state directory.
const DB_DIR: &str = "db";
/// Name of the key-check file inside the state directory.
const KEYCHECK_FILE: &str = "keycheck";
/// Largest key-check file we read; the real one is 1 + 24 + 17 + 16 bytes.
const MAX_KEYCHECK_BYTES: u64 = 4096;
/// sled tree of live session records.
const SESSIONS_TREE: &str = "sessions";
/// sled tree of discarded corrupt records.
const QUARANTINE_TREE: &str = "quarantine";
/// sled page cache size: the data set is a handful of small records (sled defaults to ~1 GiB).
const CACHE_CAPACITY: u64 = 8 << 20;

/// Where the store lives and where its key comes from. It exists so that the daemon's
/// configuration (paths from XDG variables, `$CREDENTIALS_DIRECTORY`) is resolved outside
/// the store, which then reads no environment itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreOptions {
    /// The daemon's state directory; created 0700 if missing, refused if group/other-accessible.
    pub state_dir: PathBuf,
    /// Key file used when no systemd credential is present (default `$XDG_CONFIG_HOME/tokd/key`).
    pub key_file: PathBuf,
    /// `$CREDENTIALS_DIRECTORY`, if the daemon runs under systemd with credentials.
    pub credentials_dir: Option<PathBuf>,
}

/// Everything that can go wrong in the store. Messages name files and sessions, never
/// key or token bytes.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A filesystem operation on a named path failed.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What was being done ("read", "create", ...).
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The state directory path exists but is not a directory.
    #[error("state directory {} is not a directory", path.display())]
    StateDirNotDirectory {
        /// The configured state directory.
        path: PathBuf,
    },
    /// The state directory is accessible by group or others.
    #[error(
        "state directory {} is accessible by group or others (mode {mode:04o}); run `chmod 700 {}`",
        path.display(),
        path.display()
    )]
    StateDirPermissions {
        /// The state directory.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// Another process holds the state directory.
    #[error(
        "another tokd-daemon is using the state directory {} (a second daemon needs its own \
         --state-dir and its own --socket)",
        state_dir.display()
    )]
    Locked {
        /// The state directory.
        state_dir: PathBuf,
    },
    /// The key does not match the database's key check.
    #[error(
        "the key does not open this database: {key_source} does not match the key check of {}",
        state_dir.display()
    )]
    WrongKey {
        /// Where the (wrong) key came from.
        key_source: KeySource,
        /// The state directory.
        state_dir: PathBuf,
    },
    /// No key anywhere, but a database exists: minting a key would orphan it.
    #[error(
        "no store key found (looked for {looked}) but a database exists in {}; a new key is never minted over existing data: restore the key, or move the state directory away to start over",
        state_dir.display()
    )]
    KeyMissing {
        /// The places that were searched.
        looked: String,
        /// The state directory holding the database.
        state_dir: PathBuf,
    },
    /// The key file is readable or writable by group or others.
    #[error(
        "key file {} is readable or writable by group or others (mode {mode:04o}); run `chmod 600 {}`",
        path.display(),
        path.display()
    )]
    KeyPermissions {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The key source's contents are not a key.
    #[error(
        "{key_source} is not a store key: {detail}; expected exactly 32 raw bytes or 64 hex digits (optionally followed by a newline)"
    )]
    KeyFormat {
        /// The offending source.
        key_source: KeySource,
        /// What is wrong with its shape (never its contents).
        detail: String,
    },
    /// A database exists but its key-check file is gone.
    #[error(
        "the key check {} is missing but a database exists in {}; restore the file, or move the state directory away to start over",
        path.display(),
        state_dir.display()
    )]
    KeyCheckMissing {
        /// Where the key check should be.
        path: PathBuf,
        /// The state directory.
        state_dir: PathBuf,
    },
    /// The key-check file is malformed (not merely sealed under another key).
    #[error("the key check {} is unreadable: {reason}", path.display())]
    KeyCheckCorrupt {
        /// The key-check file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The operating system's random generator failed.
    #[error("random number generator failed: {0}")]
    Random(getrandom::Error),
    /// The database files are damaged beyond what sled can recover at open.
    #[error(
        "the database in {} is damaged (sled: {reason}); nothing was changed. The key is \
         fine: restore the state directory from a backup, or move it aside to start empty \
         and log in again",
        db_dir.display()
    )]
    DbCorrupt {
        /// `<state_dir>/db`.
        db_dir: PathBuf,
        /// sled's own words.
        reason: String,
    },
    /// sled reported an error.
    #[error("database error: {0}")]
    Db(#[from] sled::Error),
    /// The record was found corrupt at open and has not been discarded yet.
    #[error(
        "session {name:?} is quarantined as corrupt; discard it (discard_corrupt) before writing or removing it"
    )]
    Quarantined {
        /// The session name.
        name: String,
    },
    /// `discard_corrupt` was called for a name that is not quarantined.
    #[error("session {name:?} is not quarantined as corrupt")]
    NotQuarantined {
        /// The session name.
        name: String,
    },
    /// A record could not be encoded or sealed.
    #[error("session {name:?} cannot be stored: {reason}")]
    Encode {
        /// The session name.
        name: String,
        /// Why (no record contents).
        reason: String,
    },
}

impl StoreError {
    /// Shorthand for [`StoreError::Io`].
    pub(crate) fn io(action: &'static str, path: &Path, source: io::Error) -> Self {
        StoreError::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// What [`Store::open`] found in the database. It exists so the daemon can resume every
/// healthy session and report the corrupt ones without the store deciding policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded {
    /// Records that opened and decoded, in name order.
    pub records: Vec<SessionRecord>,
    /// Records that did not; they stay in place (quarantined) until discarded.
    pub corrupt: Vec<CorruptRecord>,
}

/// A stored record that failed to open. It exists so the daemon can show the operator
/// which session is lost and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorruptRecord {
    /// The session name (its database key; lossily decoded if not UTF-8).
    pub name: String,
    /// Why it failed (envelope, authentication, schema); never contains secret bytes.
    pub reason: String,
}

/// Handle to the open store; cheap to clone and share between tasks.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    // Field order is drop order: the writer thread (which holds a handle to the database)
    // finishes first, then sled closes, then the directory lock is released.
    writer: writer::Writer,
    /// Held for the drop order above (the trees keep their own handles).
    _db: sled::Db,
    sessions: sled::Tree,
    quarantine: sled::Tree,
    cipher: RecordCipher,
    key_source: KeySource,
    state_dir: PathBuf,
    /// Corrupt records found at open: name -> raw database key.
    corrupt: Mutex<BTreeMap<String, sled::IVec>>,
    /// The witness of which sessions were acknowledged (see `names`).
    names: names::Names,
    _dir_lock: OwnedFd,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("state_dir", &self.inner.state_dir)
            .field("key_source", &self.inner.key_source)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Resolves the key, opens (or creates) the database, verifies the key check, decrypts
    /// every record.
    ///
    /// Blocking; call once at start. Nothing in the state directory is modified before the
    /// key check passes.
    pub fn open(opts: &StoreOptions) -> Result<(Store, Loaded), StoreError> {
        let state_dir = opts.state_dir.clone();
        prepare_state_dir(&state_dir)?;
        let dir_lock = lock_state_dir(&state_dir)?;
        let db_path = state_dir.join(DB_DIR);
        let (cipher, key_source, key_created) = open_key(opts, &db_path)?;

        let db = open_sled(&db_path, &state_dir)?;
        let open_error = |e| corrupt_at_open(e, &state_dir);
        let sessions = db.open_tree(SESSIONS_TREE).map_err(open_error)?;
        let quarantine = db.open_tree(QUARANTINE_TREE).map_err(open_error)?;
        let opened = open_all(&cipher, &sessions).map_err(|e| match e {
            OpenAllError::Db(e) => open_error(e),
            OpenAllError::WorkerPanicked => StoreError::io(
                "decrypt the records in",
                &db_path,
                io::Error::other("a decrypting thread panicked"),
            ),
        })?;
        let (names, found) = names::Names::open(&state_dir, &opened.in_db)
            .map_err(|e| StoreError::io("open", &state_dir.join(names::NAMES_FILE), e))?;
        if let Some(why) = &found.damaged {
            tracing::warn!(file = %names.path().display(), %why, "the names journal was damaged; rebuilt it from the database (a loss before this start cannot be detected)");
        }
        let records = opened.records;
        let (corrupt, corrupt_keys) = corrupt_records(opened.failed, found.missing);
        tracing::info!(
            state_dir = %state_dir.display(),
            key = %key_source,
            key_created,
            sessions = records.len(),
            corrupt = corrupt.len(),
            "store opened"
        );
        let writer = writer::Writer::start(db.clone(), sessions.clone()).map_err(|source| {
            StoreError::Io {
                action: "start the writer thread for",
                path: state_dir.clone(),
                source,
            }
        })?;
        let store = Store {
            inner: Arc::new(Inner {
                writer,
                _db: db,
                sessions,
                quarantine,
                cipher,
                key_source,
                state_dir,
                corrupt: Mutex::new(corrupt_keys),
                names,
                _dir_lock: dir_lock,
            }),
        };
        Ok((store, Loaded { records, corrupt }))
    }

    /// Where the key came from, for status output and logs.
    pub fn key_source(&self) -> &KeySource {
        &self.inner.key_source
    }

    /// The state directory the store lives in.
    pub fn state_dir(&self) -> &Path {
        &self.inner.state_dir
    }

    /// Names of the records currently quarantined as corrupt.
    pub fn corrupt_names(&self) -> Vec<String> {
        self.corrupt_map().keys().cloned().collect()
    }

    /// Seals and stores `record` under `record.name`, replacing any previous version, and
    /// returns once it is flushed to disk. Refused for a quarantined name.
    pub async fn put(&self, record: &SessionRecord) -> Result<(), StoreError> {
        self.refuse_quarantined(&record.name)?;
        let plaintext = schema::encode(record).map_err(|e| StoreError::Encode {
            name: record.name.clone(),
            reason: e.to_string(),
        })?;
        let sealed = self
            .inner
            .cipher
            .seal(&session_aad(&record.name), &plaintext)
            .map_err(|e| match e {
                SealError::Random(e) => StoreError::Random(e),
                SealError::Encrypt => StoreError::Encode {
                    name: record.name.clone(),
                    reason: e.to_string(),
                },
            })?;
        drop(plaintext);
        let new = self
            .inner
            .writer
            .put(record.name.as_bytes(), sealed)
            .await
            .map_err(|message| self.write_error(message))?;
        if new && let Err(e) = self.inner.names.added(&record.name) {
            tracing::warn!(session = %record.name, file = %self.inner.names.path().display(), error = %e, "cannot note the new session in the names journal");
        }
        Ok(())
    }

    /// Removes a session; true if it existed. Flushed before returning. Refused for a
    /// quarantined name (use [`Store::discard_corrupt`]).
    pub async fn remove(&self, name: &str) -> Result<bool, StoreError> {
        self.refuse_quarantined(name)?;
        self.note_removal(name)?;
        match self.inner.writer.remove(name.as_bytes()).await {
            Ok(existed) => Ok(existed),
            Err(message) => {
                // The record is still in sled (and still served): the journal must name it
                // again, or a later loss of the record would go unnoticed.
                if let Err(e) = self.inner.names.added(name) {
                    tracing::warn!(session = %name, file = %self.inner.names.path().display(), error = %e, "cannot note the kept session in the names journal; the next start rebuilds it");
                }
                Err(self.write_error(message))
            }
        }
    }

    /// Tests: the next write fails as a sled error would.
    #[cfg(test)]
    pub(crate) fn fail_next_write(&self) {
        self.inner
            .writer
            .fail_next
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Moves a quarantined record's raw bytes from `sessions` to the `quarantine` tree
    /// under `<name>/<epoch_ms>` (nothing is deleted), so the name can be used again.
    pub async fn discard_corrupt(&self, name: &str) -> Result<(), StoreError> {
        let Some(raw_key) = self.corrupt_map().get(name).cloned() else {
            return Err(StoreError::NotQuarantined {
                name: name.to_owned(),
            });
        };
        self.note_removal(name)?;
        let now = epoch_ms();
        let moved = (&self.inner.sessions, &self.inner.quarantine)
            .transaction(|(sessions, quarantine)| {
                let Some(value) = sessions.remove(&raw_key)? else {
                    return Ok(None);
                };
                let mut ms = now;
                loop {
                    let qkey = format!("{name}/{ms}");
                    if quarantine.get(qkey.as_bytes())?.is_none() {
                        quarantine.insert(qkey.as_bytes(), value)?;
                        return Ok::<_, ConflictableTransactionError<std::convert::Infallible>>(
                            Some(qkey),
                        );
                    }
                    ms += 1;
                }
            })
            .map_err(|e| match e {
                TransactionError::Storage(e) => StoreError::Db(e),
                TransactionError::Abort(never) => match never {},
            })?;
        self.flush().await?;
        self.corrupt_map().remove(name);
        match moved {
            Some(qkey) => {
                tracing::warn!(session = %name, quarantine_key = %qkey, "corrupt session moved to quarantine");
            }
            None => tracing::warn!(session = %name, "corrupt session was already gone"),
        }
        Ok(())
    }

    /// Flushes every pending write to disk (group commit: concurrent callers share a flush).
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.inner
            .writer
            .flush()
            .await
            .map_err(|message| self.write_error(message))
    }

    /// A failed write or flush, in sled's words (the writer thread only has the text).
    fn write_error(&self, message: String) -> StoreError {
        StoreError::Io {
            action: "write to",
            path: self.inner.state_dir.join(DB_DIR),
            source: io::Error::other(message),
        }
    }

    fn corrupt_map(&self) -> MutexGuard<'_, BTreeMap<String, sled::IVec>> {
        // The map is only ever read or mutated by single calls; a poisoned lock still holds
        // consistent data.
        self.inner
            .corrupt
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The journal learns of a removal before sled does (see `names`).
    fn note_removal(&self, name: &str) -> Result<(), StoreError> {
        self.inner
            .names
            .removing(name)
            .map_err(|e| StoreError::io("append to", self.inner.names.path(), e))
    }

    fn refuse_quarantined(&self, name: &str) -> Result<(), StoreError> {
        if self.corrupt_map().contains_key(name) {
            return Err(StoreError::Quarantined {
                name: name.to_owned(),
            });
        }
        Ok(())
    }
}

/// Resolves the key and checks it against the key check (written when the store is new).
/// Nothing in the state directory is modified before the key check passes.
fn open_key(
    opts: &StoreOptions,
    db_path: &Path,
) -> Result<(RecordCipher, KeySource, bool), StoreError> {
    let state_dir = &opts.state_dir;
    let keycheck_path = state_dir.join(KEYCHECK_FILE);
    let has_db = path_exists(db_path)?;
    let has_keycheck = path_exists(&keycheck_path)?;
    let resolved = key::resolve(
        opts.credentials_dir.as_deref(),
        &opts.key_file,
        !has_db && !has_keycheck,
        state_dir,
    )?;
    let cipher = RecordCipher::new(&resolved.key);
    drop(resolved.key);
    let key_source = resolved.source;
    if has_keycheck {
        verify_keycheck(&cipher, &keycheck_path, &key_source, state_dir)?;
    } else if has_db {
        return Err(StoreError::KeyCheckMissing {
            path: keycheck_path,
            state_dir: state_dir.clone(),
        });
    } else {
        write_keycheck(&cipher, state_dir)?;
    }
    Ok((cipher, key_source, resolved.created))
}

/// The records that failed to open and the names the journal holds but sled lost, as
/// corrupt records (sorted), and the database keys to quarantine them under.
fn corrupt_records(
    failed: Vec<(sled::IVec, String)>,
    missing: Vec<String>,
) -> (Vec<CorruptRecord>, BTreeMap<String, sled::IVec>) {
    let mut corrupt = Vec::new();
    let mut keys = BTreeMap::new();
    for (raw_key, reason) in failed {
        let name = String::from_utf8_lossy(&raw_key).into_owned();
        tracing::warn!(session = %name, %reason, "stored session is corrupt; keeping it quarantined");
        keys.insert(name.clone(), raw_key);
        corrupt.push(CorruptRecord { name, reason });
    }
    for name in missing {
        let reason = "the record is missing from the database although it was stored: the \
                      database files were truncated or damaged (restore the state directory \
                      from a backup, or `tokd rm` it and log in again)"
            .to_owned();
        tracing::error!(session = %name, "stored session is missing from the database; keeping it listed as corrupt");
        keys.insert(name.clone(), sled::IVec::from(name.as_bytes()));
        corrupt.push(CorruptRecord { name, reason });
    }
    corrupt.sort_by(|a, b| a.name.cmp(&b.name));
    (corrupt, keys)
}

/// Every record of the sessions tree, opened.
struct OpenedAll {
    /// The records that opened.
    records: Vec<SessionRecord>,
    /// Raw key and reason of each record that did not.
    failed: Vec<(sled::IVec, String)>,
    /// Every name in the tree, opened or not (for the names journal).
    in_db: BTreeSet<String>,
}

/// Why [`open_all`] stopped.
enum OpenAllError {
    /// sled could not read on.
    Db(sled::Error),
    /// A decrypting thread panicked (a bug); nothing is lost, the daemon does not start.
    WorkerPanicked,
}

/// Records handed to a decrypting thread at a time.
const OPEN_BATCH: usize = 256;

/// Decrypts and decodes every record. This is most of the cost of opening a large store, so
/// it runs on one thread per CPU while this thread walks sled, in bounded batches: a
/// 100,000-session store opens in about half the time, and memory stays flat.
fn open_all(cipher: &RecordCipher, sessions: &sled::Tree) -> Result<OpenedAll, OpenAllError> {
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get().clamp(1, 4));
    let (batches, incoming) =
        std::sync::mpsc::sync_channel::<Vec<(sled::IVec, sled::IVec)>>(workers * 2);
    // Each thread owns a handle on the receiver: if every one of them dies, the receiver is
    // gone, `send` fails and the walk stops instead of blocking on a full queue.
    let incoming = Arc::new(Mutex::new(incoming));
    std::thread::scope(|scope| {
        let decrypting: Vec<_> = (0..workers)
            .map(|_| {
                let incoming = Arc::clone(&incoming);
                scope.spawn(move || {
                    let mut records = Vec::new();
                    let mut failed = Vec::new();
                    loop {
                        let next = incoming
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .recv();
                        let Ok(batch) = next else { break };
                        for (raw_key, value) in batch {
                            match open_record(cipher, &raw_key, &value) {
                                Ok(record) => records.push(record),
                                Err(reason) => failed.push((raw_key, reason)),
                            }
                        }
                    }
                    (records, failed)
                })
            })
            .collect();
        drop(incoming);
        let mut in_db = BTreeSet::new();
        let walked = (|| {
            let mut batch = Vec::with_capacity(OPEN_BATCH);
            for item in sessions.iter() {
                let (raw_key, value) = item?;
                in_db.insert(String::from_utf8_lossy(&raw_key).into_owned());
                batch.push((raw_key, value));
                if batch.len() == OPEN_BATCH {
                    let full = std::mem::replace(&mut batch, Vec::with_capacity(OPEN_BATCH));
                    if batches.send(full).is_err() {
                        break;
                    }
                }
            }
            if !batch.is_empty() {
                let _ = batches.send(batch);
            }
            Ok(())
        })();
        // No more batches: the threads finish what they hold and return.
        drop(batches);
        let mut opened = OpenedAll {
            records: Vec::new(),
            failed: Vec::new(),
            in_db,
        };
        let mut panicked = false;
        for thread in decrypting {
            match thread.join() {
                Ok((records, failed)) => {
                    opened.records.extend(records);
                    opened.failed.extend(failed);
                }
                Err(_) => panicked = true,
            }
        }
        walked.map_err(OpenAllError::Db)?;
        if panicked {
            return Err(OpenAllError::WorkerPanicked);
        }
        Ok(opened)
    })
}

/// Opens and decodes one stored value; the error is a printable reason.
fn open_record(
    cipher: &RecordCipher,
    raw_key: &[u8],
    value: &[u8],
) -> Result<SessionRecord, String> {
    let name = std::str::from_utf8(raw_key).map_err(|_| "the key is not UTF-8".to_owned())?;
    let plaintext = cipher
        .open(&session_aad(name), value)
        .map_err(|e| e.to_string())?;
    let record = schema::decode(&plaintext).map_err(|e| e.to_string())?;
    if record.name != name {
        return Err("the record's name does not match its key".to_owned());
    }
    Ok(record)
}

/// Creates the state directory (0700) or checks an existing one is private.
fn prepare_state_dir(dir: &Path) -> Result<(), StoreError> {
    match fs::metadata(dir) {
        Ok(meta) => {
            if !meta.is_dir() {
                return Err(StoreError::StateDirNotDirectory {
                    path: dir.to_path_buf(),
                });
            }
            let mode = meta.mode() & 0o7777;
            if mode & 0o077 != 0 {
                return Err(StoreError::StateDirPermissions {
                    path: dir.to_path_buf(),
                    mode,
                });
            }
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            key::create_private_dir(dir)?;
            Ok(())
        }
        Err(e) => Err(StoreError::io("inspect", dir, e)),
    }
}

/// Takes an exclusive, non-blocking `flock` on the state directory itself (creates no
/// file). Released when the returned descriptor is closed.
fn lock_state_dir(dir: &Path) -> Result<OwnedFd, StoreError> {
    use rustix::fs::{FlockOperation, Mode, OFlags, flock, open};
    let fd = open(
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| StoreError::io("open", dir, e.into()))?;
    match flock(&fd, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(fd),
        Err(rustix::io::Errno::WOULDBLOCK) => Err(StoreError::Locked {
            state_dir: dir.to_path_buf(),
        }),
        Err(e) => Err(StoreError::io("lock", dir, e.into())),
    }
}

/// The sled configuration of the store: a small page cache (sled's default is ~1 GiB) and
/// no background flusher (writes that must be durable are flushed explicitly).
fn sled_config(db_path: &Path) -> sled::Config {
    sled::Config::new()
        .path(db_path)
        .cache_capacity(CACHE_CAPACITY)
        .flush_every_ms(None)
}

/// How long [`open_sled`] waits for the file lock of a store this process just closed.
const SLED_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Opens sled. [`Store::open`] calls it under the state directory's lock, so no other
/// store holds this directory; sled's own file lock can still be held for a moment by a store this process has just
/// dropped: its I/O threads finish a write-out after the last handle is gone (sled's own
/// tests wait for that lock for the same reason). That lock is waited for, boundedly.
fn open_sled(db_path: &Path, state_dir: &Path) -> Result<sled::Db, StoreError> {
    let deadline = std::time::Instant::now() + SLED_LOCK_WAIT;
    loop {
        match sled_config(db_path).open() {
            Ok(db) => return Ok(db),
            Err(e) => match map_sled_open_error(e, state_dir) {
                StoreError::Locked { .. } if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                other => return Err(other),
            },
        }
    }
}

/// sled reports its own lock conflict as an opaque I/O error; recognise it.
fn map_sled_open_error(e: sled::Error, state_dir: &Path) -> StoreError {
    if let sled::Error::Io(io) = &e {
        if io.kind() == io::ErrorKind::WouldBlock
            || io.to_string().contains("could not acquire lock")
        {
            return StoreError::Locked {
                state_dir: state_dir.to_path_buf(),
            };
        }
    }
    corrupt_at_open(e, state_dir)
}

/// sled's corruption error, at open, as the message an operator can act on.
fn corrupt_at_open(e: sled::Error, state_dir: &Path) -> StoreError {
    match e {
        sled::Error::Corruption { .. } => StoreError::DbCorrupt {
            db_dir: state_dir.join(DB_DIR),
            reason: "corrupted data".to_owned(),
        },
        other => StoreError::Db(other),
    }
}

fn path_exists(path: &Path) -> Result<bool, StoreError> {
    match fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(StoreError::io("inspect", path, e)),
    }
}

fn verify_keycheck(
    cipher: &RecordCipher,
    path: &Path,
    key_source: &KeySource,
    state_dir: &Path,
) -> Result<(), StoreError> {
    let mut sealed = Vec::new();
    fs::File::open(path)
        .and_then(|f| f.take(MAX_KEYCHECK_BYTES + 1).read_to_end(&mut sealed))
        .map_err(|e| StoreError::io("read", path, e))?;
    match cipher.open(KEYCHECK_AAD, &sealed) {
        Ok(plain) if plain.as_slice() == KEYCHECK_PLAINTEXT => Ok(()),
        Ok(_) => Err(StoreError::KeyCheckCorrupt {
            path: path.to_path_buf(),
            reason: "unexpected contents".to_owned(),
        }),
        Err(OpenError::Authentication) => Err(StoreError::WrongKey {
            key_source: key_source.clone(),
            state_dir: state_dir.to_path_buf(),
        }),
        Err(e) => Err(StoreError::KeyCheckCorrupt {
            path: path.to_path_buf(),
            reason: e.to_string(),
        }),
    }
}

/// Writes the key check atomically (see [`crate::fsutil::write_atomically`]).
fn write_keycheck(cipher: &RecordCipher, state_dir: &Path) -> Result<(), StoreError> {
    let sealed = cipher
        .seal(KEYCHECK_AAD, KEYCHECK_PLAINTEXT)
        .map_err(|e| match e {
            SealError::Random(e) => StoreError::Random(e),
            SealError::Encrypt => StoreError::KeyCheckCorrupt {
                path: state_dir.join(KEYCHECK_FILE),
                reason: e.to_string(),
            },
        })?;
    let path = state_dir.join(KEYCHECK_FILE);
    crate::fsutil::write_atomically(&path, &sealed).map_err(|e| StoreError::io("write", &path, e))
}

fn epoch_ms() -> u64 {
    u64::try_from(crate::clock::now_ms()).unwrap_or(0)
}

#[cfg(test)]
mod tests;
