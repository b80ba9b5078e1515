//! Finding, checking and (on a fresh start only) minting the store key.
//!
//! Sources, first found wins: the systemd credential `tokd.key` in the credentials
//! directory, then the key file. A key is exactly 32 raw bytes, or 64 hex digits with an
//! optional trailing newline.

use std::fmt;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use super::StoreError;

/// Key length in bytes.
pub(crate) const KEY_LEN: usize = 32;
/// File name of the systemd credential inside `$CREDENTIALS_DIRECTORY`.
pub(crate) const CREDENTIAL_NAME: &str = "tokd.key";
/// Longest key file we read (64 hex digits + "\r\n" would already be refused; this only
/// bounds the read).
const MAX_KEY_FILE: u64 = 128;

/// Where the store key came from. It exists so that errors (wrong key, bad format) and
/// status output can say which file to look at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// A systemd credential (`LoadCredential=`/`SetCredentialEncrypted=`), path of the file.
    Credential(PathBuf),
    /// A key file on disk.
    File(PathBuf),
}

impl KeySource {
    /// The path of the key's file.
    pub fn path(&self) -> &Path {
        match self {
            KeySource::Credential(p) | KeySource::File(p) => p,
        }
    }
}

impl fmt::Display for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySource::Credential(p) => write!(f, "systemd credential {}", p.display()),
            KeySource::File(p) => write!(f, "key file {}", p.display()),
        }
    }
}

/// The 32 key bytes; zeroized on drop, deliberately without `Debug`.
pub(crate) struct KeyBytes(Zeroizing<[u8; KEY_LEN]>);

impl KeyBytes {
    #[cfg(test)]
    /// Wraps key bytes.
    pub(crate) fn from_array(bytes: [u8; KEY_LEN]) -> Self {
        KeyBytes(Zeroizing::new(bytes))
    }

    /// The raw key, for building the cipher.
    pub(crate) fn expose(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

/// A resolved key and what resolving it did.
pub(crate) struct ResolvedKey {
    /// The key.
    pub(crate) key: KeyBytes,
    /// Where it came from.
    pub(crate) source: KeySource,
    /// Whether this call minted a new key file.
    pub(crate) created: bool,
}

/// Finds the key: credential, then key file. When neither exists, mints a new key file
/// only if `may_create` (no existing database); otherwise fails with `KeyMissing`.
pub(crate) fn resolve(
    credentials_dir: Option<&Path>,
    key_file: &Path,
    may_create: bool,
    state_dir: &Path,
) -> Result<ResolvedKey, StoreError> {
    let credential = credentials_dir.map(|d| d.join(CREDENTIAL_NAME));
    if let Some(path) = &credential {
        let source = KeySource::Credential(path.clone());
        if let Some(key) = read_key(&source, false)? {
            return Ok(ResolvedKey {
                key,
                source,
                created: false,
            });
        }
        tracing::debug!(path = %path.display(), "no systemd credential tokd.key; trying the key file");
    }
    let source = KeySource::File(key_file.to_path_buf());
    if let Some(key) = read_key(&source, true)? {
        return Ok(ResolvedKey {
            key,
            source,
            created: false,
        });
    }
    if !may_create {
        return Err(StoreError::KeyMissing {
            looked: looked_description(credential.as_deref(), key_file),
            state_dir: state_dir.to_path_buf(),
        });
    }
    match create_key_file(key_file)? {
        Some(key) => {
            tracing::info!(path = %key_file.display(), "created a new store key");
            Ok(ResolvedKey {
                key,
                source,
                created: true,
            })
        }
        // Someone created it between our read and our create: use theirs.
        None => match read_key(&source, true)? {
            Some(key) => Ok(ResolvedKey {
                key,
                source,
                created: false,
            }),
            None => Err(StoreError::KeyMissing {
                looked: looked_description(credential.as_deref(), key_file),
                state_dir: state_dir.to_path_buf(),
            }),
        },
    }
}

fn looked_description(credential: Option<&Path>, key_file: &Path) -> String {
    match credential {
        Some(c) => format!(
            "systemd credential {} and key file {}",
            c.display(),
            key_file.display()
        ),
        None => format!(
            "key file {} (no systemd credentials directory)",
            key_file.display()
        ),
    }
}

/// Reads and parses one key source; `Ok(None)` if the file does not exist.
fn read_key(source: &KeySource, check_mode: bool) -> Result<Option<KeyBytes>, StoreError> {
    let path = source.path();
    // O_NONBLOCK: opening a FIFO planted at the key path must not hang the daemon.
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags(nonblock_flag())
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StoreError::io("read", path, e)),
    };
    let meta = file
        .metadata()
        .map_err(|e| StoreError::io("inspect", path, e))?;
    if !meta.is_file() {
        return Err(StoreError::KeyFormat {
            key_source: source.clone(),
            detail: "it is not a regular file".to_owned(),
        });
    }
    let mode = meta.mode() & 0o7777;
    if check_mode && mode & 0o066 != 0 {
        return Err(StoreError::KeyPermissions {
            path: path.to_path_buf(),
            mode,
        });
    }
    let mut buf = Zeroizing::new(Vec::with_capacity(MAX_KEY_FILE as usize + 1));
    file.take(MAX_KEY_FILE + 1)
        .read_to_end(&mut buf)
        .map_err(|e| StoreError::io("read", path, e))?;
    parse_key(&buf)
        .map(Some)
        .map_err(|detail| StoreError::KeyFormat {
            key_source: source.clone(),
            detail,
        })
}

fn nonblock_flag() -> i32 {
    // OFlags is a u32 bitflag; O_NONBLOCK fits in i32 on every Linux/BSD target.
    i32::try_from(rustix::fs::OFlags::NONBLOCK.bits()).unwrap_or(0)
}

/// Parses key file contents: 32 raw bytes, or 64 hex digits with an optional `\n`.
/// The error text describes the shape only, never the contents.
pub(crate) fn parse_key(contents: &[u8]) -> Result<KeyBytes, String> {
    if contents.len() == KEY_LEN {
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        key.copy_from_slice(contents);
        return Ok(KeyBytes(key));
    }
    let hex = contents.strip_suffix(b"\n").unwrap_or(contents);
    if hex.len() == 2 * KEY_LEN {
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        return if decode_hex(hex, &mut key[..]) {
            Ok(KeyBytes(key))
        } else {
            Err("it has 64 characters but they are not all hex digits".to_owned())
        };
    }
    Err(format!(
        "it is {}{} bytes long",
        contents.len(),
        if contents.len() as u64 > MAX_KEY_FILE {
            " or more"
        } else {
            ""
        }
    ))
}

/// Decodes hex digits into `out` (which must be half as long); false on a non-hex digit.
pub(crate) fn decode_hex(hex: &[u8], out: &mut [u8]) -> bool {
    if hex.len() != out.len() * 2 {
        return false;
    }
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    for (o, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
        match (nibble(pair[0]), nibble(pair[1])) {
            (Some(h), Some(l)) => *o = (h << 4) | l,
            _ => return false,
        }
    }
    true
}

/// Mints a key file: 32 random bytes, `O_EXCL`, mode 0600, fsynced with its directory.
/// `Ok(None)` if the file appeared meanwhile.
fn create_key_file(path: &Path) -> Result<Option<KeyBytes>, StoreError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let dir_created = create_private_dir(&dir)?;

    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    getrandom::fill(&mut key[..]).map_err(StoreError::Random)?;

    let mut file = match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(None),
        Err(e) => return Err(StoreError::io("create", path, e)),
    };
    if let Err(e) = file.write_all(&key[..]).and_then(|()| file.sync_all()) {
        drop(file);
        // Don't leave a short key behind for the next start to trip over.
        let _ = fs::remove_file(path);
        return Err(StoreError::io("write", path, e));
    }
    drop(file);
    sync_dir(&dir)?;
    if dir_created {
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            sync_dir(parent)?;
        }
    }
    Ok(Some(KeyBytes(key)))
}

/// Creates `dir` (and missing parents) with mode 0700; true if it did not exist.
pub(crate) fn create_private_dir(dir: &Path) -> Result<bool, StoreError> {
    if dir.is_dir() {
        return Ok(false);
    }
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| StoreError::io("create directory", dir, e))?;
    Ok(true)
}

/// fsyncs a directory so that a create or rename in it is durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::io("sync directory", dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_raw_and_hex() {
        let raw: Vec<u8> = (0u8..32).collect();
        assert_eq!(parse_key(&raw).expect("raw").expose()[..], raw[..]);
        let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            parse_key(hex.as_bytes()).expect("hex").expose()[..],
            raw[..]
        );
        let upper_nl = format!("{}\n", hex.to_uppercase());
        assert_eq!(
            parse_key(upper_nl.as_bytes()).expect("hex+nl").expose()[..],
            raw[..]
        );
    }

    #[test]
    fn rejects_other_shapes_without_echoing_contents() {
        for bad in [
            &b""[..],
            &[7u8; 31][..],
            &[7u8; 33][..],
            &[b'g'; 64][..],
            &[b'a'; 66][..],
        ] {
            let err = parse_key(bad).err().expect("must fail");
            assert!(!err.contains("ggg") && !err.contains("aaa"), "{err}");
        }
        let mut crlf = vec![b'a'; 64];
        crlf.extend_from_slice(b"\r\n");
        assert!(parse_key(&crlf).is_err());
    }

    #[test]
    fn key_source_display() {
        assert_eq!(
            KeySource::Credential("/run/credentials/tokd.service/tokd.key".into()).to_string(),
            "systemd credential /run/credentials/tokd.service/tokd.key"
        );
        assert_eq!(
            KeySource::File("/home/u/.config/tokd/key".into()).to_string(),
            "key file /home/u/.config/tokd/key"
        );
    }
}
