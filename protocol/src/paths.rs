//! Where the socket lives. Daemon and client both resolve it here, so they always agree.
//!
//! Order: an explicit `--socket`, then `TOKD_SOCKET`, then `$XDG_RUNTIME_DIR/tokd/tokd.sock`.
//! Without `XDG_RUNTIME_DIR` (cron, plain ssh, `su`), `/run/user/$UID/tokd/tokd.sock` when
//! `/run/user/$UID` exists and is the user's own: that is where a daemon started by systemd
//! listens. Then `${TMPDIR:-/tmp}/tokd-$UID/tokd.sock` (as tmux does) for containers and
//! machines without a login manager. The temp-dir fallback lives in a world-writable place,
//! so its directory must be ours and private: [`check_private_dir`].
//!
//! The daemon listens on the first place ([`resolve_with`]); a client tries them in order
//! ([`candidates_with`]), since a daemon started before the user's runtime directory
//! existed listens in the temp dir.

use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use thiserror::Error;

/// The environment variable that overrides the socket path.
pub const SOCKET_ENV: &str = "TOKD_SOCKET";

/// The socket's file name inside its directory.
pub const SOCKET_FILE: &str = "tokd.sock";
/// Environment variable naming the config file.
pub const CONFIG_ENV: &str = "TOKD_CONFIG";
/// The config file's name inside `$XDG_CONFIG_HOME/tokd/`.
pub const CONFIG_FILE: &str = "config.toml";
/// Where systemd-logind creates each user's runtime directory (`/run/user/$UID`), looked at
/// when `XDG_RUNTIME_DIR` is unset.
pub const RUN_USER_BASE: &str = "/run/user";

/// Where a resolved socket path came from; it decides which checks apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketSource {
    /// `--socket PATH`.
    Flag,
    /// `TOKD_SOCKET`.
    Env,
    /// `$XDG_RUNTIME_DIR/tokd/`.
    RuntimeDir,
    /// `/run/user/$UID/tokd/`: the user's runtime directory, found without `XDG_RUNTIME_DIR`.
    RunUser,
    /// `${TMPDIR:-/tmp}/tokd-$UID/`.
    TempDir,
}

impl SocketSource {
    /// Why a socket from this source is tried, for messages.
    pub fn why(self) -> &'static str {
        match self {
            SocketSource::Flag => "given explicitly, as with --socket",
            SocketSource::Env => "from TOKD_SOCKET",
            SocketSource::RuntimeDir => "in $XDG_RUNTIME_DIR",
            SocketSource::RunUser => "in /run/user/$UID, the user's runtime directory",
            SocketSource::TempDir => "the temp-dir fallback ${TMPDIR:-/tmp}/tokd-$UID",
        }
    }
}

/// A resolved socket path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketPath {
    /// The socket file.
    pub path: PathBuf,
    /// Where the path came from.
    pub source: SocketSource,
}

impl SocketPath {
    /// Whether the socket's directory is one tokd creates itself and must keep private.
    pub fn dir_is_managed(&self) -> bool {
        matches!(
            self.source,
            SocketSource::RuntimeDir | SocketSource::RunUser | SocketSource::TempDir
        )
    }
}

/// One place the socket may be, and why it is on the list: clients try the places in
/// order, and a "not running" error names each with its reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The socket.
    pub socket: SocketPath,
    /// Why this place was chosen, and why the places before it were skipped.
    pub why: String,
}

/// Why a socket directory is not safe to use.
#[derive(Debug, Error)]
pub enum PathError {
    /// The directory belongs to another user: someone else could plant a socket there.
    #[error("{dir} is owned by uid {owner}, not by this user (uid {uid}); refusing to use it")]
    NotOwner {
        /// The directory.
        dir: PathBuf,
        /// Its owner.
        owner: u32,
        /// Our uid.
        uid: u32,
    },
    /// Group or others have access to the directory.
    #[error("{dir} has mode {mode:o}; it must be private to this user (fix: chmod 700 {dir})")]
    TooOpen {
        /// The directory.
        dir: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The path exists but is not a directory.
    #[error("{0} exists and is not a directory")]
    NotADirectory(PathBuf),
    /// Creating or inspecting the directory failed.
    #[error("cannot use socket directory {dir}: {source}")]
    Io {
        /// The directory.
        dir: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// Resolves the socket path from `--socket` (if given) and the process environment.
pub fn resolve_socket_path(flag: Option<&Path>) -> SocketPath {
    resolve_with(flag, |key| std::env::var_os(key), current_uid())
}

/// [`resolve_socket_path`] with the environment and uid passed in: the first of
/// [`candidates_with`], where the daemon listens.
pub fn resolve_with(
    flag: Option<&Path>,
    env: impl Fn(&str) -> Option<OsString>,
    uid: u32,
) -> SocketPath {
    first(candidates_with(flag, env, uid, Path::new(RUN_USER_BASE)))
}

/// The places a client tries, in order, from `--socket` (if given) and the process
/// environment.
pub fn socket_candidates(flag: Option<&Path>) -> Vec<Candidate> {
    candidates_with(
        flag,
        |key| std::env::var_os(key),
        current_uid(),
        Path::new(RUN_USER_BASE),
    )
}

/// Every place the socket may be, in order, never empty. An explicit path, `TOKD_SOCKET` or
/// `XDG_RUNTIME_DIR` is the only place; without them, `<run_user_base>/$UID` (normally
/// [`RUN_USER_BASE`]; tests pass another) when it is the user's, then the temp dir.
pub fn candidates_with(
    flag: Option<&Path>,
    env: impl Fn(&str) -> Option<OsString>,
    uid: u32,
    run_user_base: &Path,
) -> Vec<Candidate> {
    let non_empty = |key: &str| env(key).filter(|v| !v.is_empty());
    let only = |path: PathBuf, source: SocketSource| {
        vec![Candidate {
            socket: SocketPath { path, source },
            why: source.why().to_owned(),
        }]
    };
    if let Some(path) = flag {
        return only(path.to_path_buf(), SocketSource::Flag);
    }
    if let Some(path) = non_empty(SOCKET_ENV) {
        return only(PathBuf::from(path), SocketSource::Env);
    }
    // The XDG spec says relative paths in these variables are invalid and must be ignored.
    let xdg = non_empty("XDG_RUNTIME_DIR");
    if let Some(dir) = xdg.as_ref().map(PathBuf::from)
        && dir.is_absolute()
    {
        return only(dir.join("tokd").join(SOCKET_FILE), SocketSource::RuntimeDir);
    }
    let no_xdg = if xdg.is_some() {
        "XDG_RUNTIME_DIR is not an absolute path (ignored)"
    } else {
        "XDG_RUNTIME_DIR is unset"
    };
    let run_user = run_user_base.join(uid.to_string());
    let temp_dir = SocketPath {
        path: temp_dir(&non_empty)
            .join(format!("tokd-{uid}"))
            .join(SOCKET_FILE),
        source: SocketSource::TempDir,
    };
    match user_runtime_dir(&run_user, uid) {
        Ok(()) => vec![
            Candidate {
                socket: SocketPath {
                    path: run_user.join("tokd").join(SOCKET_FILE),
                    source: SocketSource::RunUser,
                },
                why: format!("{no_xdg}, and {} is this user's", run_user.display()),
            },
            Candidate {
                socket: temp_dir,
                why: format!(
                    "{}, where a daemon started without a runtime directory listens",
                    SocketSource::TempDir.why()
                ),
            },
        ],
        Err(skipped) => vec![Candidate {
            socket: temp_dir,
            why: format!(
                "{no_xdg} and {} {skipped}: {}",
                run_user.display(),
                SocketSource::TempDir.why()
            ),
        }],
    }
}

/// The first candidate (there always is one).
fn first(candidates: Vec<Candidate>) -> SocketPath {
    match candidates.into_iter().next() {
        Some(c) => c.socket,
        // Unreachable: `candidates_with` never returns an empty list.
        None => SocketPath {
            path: PathBuf::from("/tmp").join(SOCKET_FILE),
            source: SocketSource::TempDir,
        },
    }
}

/// `$TMPDIR` when absolute, else `/tmp`.
fn temp_dir(non_empty: &dyn Fn(&str) -> Option<OsString>) -> PathBuf {
    non_empty("TMPDIR")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .unwrap_or_else(|| PathBuf::from("/tmp"))
}

/// `Ok` when `dir` (`/run/user/$UID`) is a directory of `uid` that no one else may write
/// to; otherwise why it is skipped ("does not exist", …).
fn user_runtime_dir(dir: &Path, uid: u32) -> Result<(), String> {
    let meta = match fs::symlink_metadata(dir) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err("does not exist".to_owned());
        }
        Err(e) => return Err(format!("cannot be inspected ({e})")),
    };
    if !meta.is_dir() {
        return Err("is not a directory".to_owned());
    }
    if meta.uid() != uid {
        return Err(format!("belongs to uid {}", meta.uid()));
    }
    if meta.permissions().mode() & 0o022 != 0 {
        return Err("is writable by other users".to_owned());
    }
    Ok(())
}

/// Where the config file is, for the daemon and the credential helpers alike: `flag`, else
/// `$TOKD_CONFIG`, else `tokd/config.toml` in [`config_home`]. The flag says whether the file
/// was named; a named file must exist, the default one may be absent. `None` when nothing
/// says where the config home is. `env` gives a variable's value, `None` when unset or empty.
pub fn config_file(
    flag: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Option<(PathBuf, bool)> {
    if let Some(path) = flag {
        return Some((path.to_path_buf(), true));
    }
    if let Some(path) = env(CONFIG_ENV) {
        return Some((PathBuf::from(path), true));
    }
    config_home(env).map(|home| (home.join("tokd").join(CONFIG_FILE), false))
}

/// `$XDG_CONFIG_HOME` when absolute (the XDG spec ignores relative ones), else
/// `$HOME/.config`: where the config file and, by default, the store key live.
pub fn config_home(env: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    env("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| env("HOME").map(|home| PathBuf::from(home).join(".config")))
}

/// A config file's parse error as "line L, column C: message", `offset` being the byte
/// where the parser stopped. Deliberately without the source line parsers like to quote:
/// in a tokd config that line may hold a `client_secret`.
pub fn config_error_at(text: &str, offset: Option<usize>, message: &str) -> String {
    let Some(offset) = offset else {
        return message.to_owned();
    };
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    format!("line {line}, column {column}: {message}")
}

/// This process's real uid.
pub fn current_uid() -> u32 {
    rustix::process::getuid().as_raw()
}

/// Checks that `dir` is a directory owned by this user with no group or other access.
///
/// # Errors
/// A [`PathError`] naming the problem and the fix.
pub fn check_private_dir(dir: &Path) -> Result<(), PathError> {
    let meta = fs::symlink_metadata(dir).map_err(|source| PathError::Io {
        dir: dir.to_path_buf(),
        source,
    })?;
    if !meta.is_dir() {
        return Err(PathError::NotADirectory(dir.to_path_buf()));
    }
    let uid = current_uid();
    if meta.uid() != uid {
        return Err(PathError::NotOwner {
            dir: dir.to_path_buf(),
            owner: meta.uid(),
            uid,
        });
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(PathError::TooOpen {
            dir: dir.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

/// Creates `dir` (and missing parents) with mode 0700, whatever the umask, then checks it
/// with [`check_private_dir`]. An existing directory is not loosened or tightened: a wrong
/// one is an error for the user to look at.
///
/// # Errors
/// A [`PathError`] naming the problem and the fix.
pub fn ensure_private_dir(dir: &Path) -> Result<(), PathError> {
    match fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
    {
        Ok(()) => {}
        Err(source) => {
            return Err(PathError::Io {
                dir: dir.to_path_buf(),
                source,
            });
        }
    }
    // `mode` is filtered by the umask; a freshly created directory may need its bits set.
    let meta = fs::symlink_metadata(dir).map_err(|source| PathError::Io {
        dir: dir.to_path_buf(),
        source,
    })?;
    if meta.is_dir() && meta.uid() == current_uid() && meta.permissions().mode() & 0o777 == 0 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(|source| {
            PathError::Io {
                dir: dir.to_path_buf(),
                source,
            }
        })?;
    }
    check_private_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn a_config_error_names_line_and_column_only() {
        let text = "a = 1\nsecret = \"s3cr3t\" x\n";
        let at = text.find(" x").expect("offset") + 1;
        let shown = config_error_at(text, Some(at), "expected newline");
        assert_eq!(shown, "line 2, column 19: expected newline");
        assert!(!shown.contains("s3cr3t"));
        assert_eq!(config_error_at(text, None, "bad"), "bad");
        // An offset past the end (or inside a character) still gives a position.
        assert!(config_error_at("é", Some(1), "m").starts_with("line 1, column 2"));
    }

    #[test]
    fn the_config_file_is_the_flag_then_the_variable_then_the_config_home() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |key: &str| {
                vars.iter()
                    .find(|(k, _)| *k == key)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        let all = env(&[
            ("TOKD_CONFIG", "/env/c.toml"),
            ("XDG_CONFIG_HOME", "/xdg"),
            ("HOME", "/home/u"),
        ]);
        assert_eq!(
            config_file(Some(Path::new("/flag.toml")), &all),
            Some((PathBuf::from("/flag.toml"), true))
        );
        assert_eq!(
            config_file(None, &all),
            Some((PathBuf::from("/env/c.toml"), true))
        );
        assert_eq!(
            config_file(
                None,
                &env(&[("XDG_CONFIG_HOME", "/xdg"), ("HOME", "/home/u")])
            ),
            Some((PathBuf::from("/xdg/tokd/config.toml"), false))
        );
        // A relative XDG_CONFIG_HOME is ignored, as the XDG spec says.
        assert_eq!(
            config_file(
                None,
                &env(&[("XDG_CONFIG_HOME", "rel"), ("HOME", "/home/u")])
            ),
            Some((PathBuf::from("/home/u/.config/tokd/config.toml"), false))
        );
        assert_eq!(config_file(None, &env(&[])), None);
    }

    fn resolve(vars: &[(&str, &str)], flag: Option<&str>) -> SocketPath {
        let map: HashMap<String, OsString> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), OsString::from(v)))
            .collect();
        let base = Path::new("/nonexistent-tokd-run-user");
        let candidates = candidates_with(flag.map(Path::new), |k| map.get(k).cloned(), 1000, base);
        assert_eq!(candidates.len(), 1, "{candidates:?}");
        first(candidates)
    }

    /// A fresh base for `<base>/<uid>` directories.
    fn run_user_base(name: &str) -> PathBuf {
        let base =
            std::env::temp_dir().join(format!("tokd-paths-run-user-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        fs::create_dir_all(&base).expect("base");
        base
    }

    fn candidates_in(base: &Path, uid: u32) -> Vec<Candidate> {
        let env = |key: &str| (key == "TMPDIR").then(|| OsString::from("/var/tmp"));
        candidates_with(None, env, uid, base)
    }

    #[test]
    fn without_xdg_runtime_dir_the_users_run_dir_comes_before_the_temp_dir() {
        let base = run_user_base("ok");
        let uid = current_uid();
        let dir = base.join(uid.to_string());
        fs::DirBuilder::new().mode(0o700).create(&dir).expect("dir");
        let got = candidates_in(&base, uid);
        let paths: Vec<_> = got.iter().map(|c| c.socket.path.clone()).collect();
        assert_eq!(
            paths,
            [
                dir.join("tokd/tokd.sock"),
                PathBuf::from(format!("/var/tmp/tokd-{uid}/tokd.sock"))
            ]
        );
        assert_eq!(got[0].socket.source, SocketSource::RunUser);
        assert!(got[0].socket.dir_is_managed());
        assert!(
            got[0].why.contains("XDG_RUNTIME_DIR is unset"),
            "{}",
            got[0].why
        );
        assert!(
            got[0].why.contains(&dir.display().to_string()),
            "{}",
            got[0].why
        );
        assert_eq!(got[1].socket.source, SocketSource::TempDir);
        // The daemon takes the first.
        let env = |key: &str| (key == "TMPDIR").then(|| OsString::from("/var/tmp"));
        assert_eq!(
            first(candidates_with(None, env, uid, &base)).path,
            dir.join("tokd/tokd.sock")
        );
        // XDG_RUNTIME_DIR, when set, is the only place.
        let xdg = |key: &str| (key == "XDG_RUNTIME_DIR").then(|| OsString::from("/run/x"));
        let got = candidates_with(None, xdg, uid, &base);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].socket.path, Path::new("/run/x/tokd/tokd.sock"));
        fs::remove_dir_all(&base).expect("cleanup");
    }

    #[test]
    fn a_run_dir_that_is_missing_foreign_or_open_is_skipped_and_the_reason_given() {
        let base = run_user_base("skip");
        let uid = current_uid();
        let only_temp = |why: &str| {
            let got = candidates_in(&base, uid);
            assert_eq!(got.len(), 1, "{got:?}");
            assert_eq!(got[0].socket.source, SocketSource::TempDir);
            assert!(got[0].why.contains(why), "{}", got[0].why);
            assert!(
                got[0]
                    .why
                    .contains(&base.join(uid.to_string()).display().to_string()),
                "{}",
                got[0].why
            );
        };
        only_temp("does not exist");
        let dir = base.join(uid.to_string());
        fs::write(&dir, "").expect("file");
        only_temp("is not a directory");
        fs::remove_file(&dir).expect("rm");
        fs::DirBuilder::new().mode(0o700).create(&dir).expect("dir");
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).expect("chmod");
        only_temp("writable by other users");
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).expect("chmod");
        if uid == 0 {
            let other = base.join("4242");
            fs::create_dir(&other).expect("dir");
            let got = candidates_in(&base, 4242);
            assert!(got[0].why.contains("belongs to uid 0"), "{}", got[0].why);
        }
        fs::remove_dir_all(&base).expect("cleanup");
    }

    #[test]
    fn order_of_sources() {
        let all = [
            ("TOKD_SOCKET", "/e/s.sock"),
            ("XDG_RUNTIME_DIR", "/run/user/1000"),
            ("TMPDIR", "/var/tmp"),
        ];
        assert_eq!(resolve(&all, Some("/f.sock")).path, Path::new("/f.sock"));
        assert_eq!(resolve(&all, None).path, Path::new("/e/s.sock"));
        assert_eq!(
            resolve(&all[1..], None).path,
            Path::new("/run/user/1000/tokd/tokd.sock")
        );
        assert_eq!(
            resolve(&all[2..], None).path,
            Path::new("/var/tmp/tokd-1000/tokd.sock")
        );
        assert_eq!(
            resolve(&[], None).path,
            Path::new("/tmp/tokd-1000/tokd.sock")
        );
    }

    #[test]
    fn empty_and_relative_values_are_ignored() {
        let vars = [
            ("TOKD_SOCKET", ""),
            ("XDG_RUNTIME_DIR", "relative/dir"),
            ("TMPDIR", ""),
        ];
        let got = resolve(&vars, None);
        assert_eq!(got.path, Path::new("/tmp/tokd-1000/tokd.sock"));
        assert_eq!(got.source, SocketSource::TempDir);
    }

    #[test]
    fn private_dir_is_created_0700_and_loose_dirs_are_refused() {
        let base = std::env::temp_dir().join(format!("tokd-paths-test-{}", std::process::id()));
        let dir = base.join("a").join("tokd");
        ensure_private_dir(&dir).expect("created");
        let mode = fs::metadata(&dir).expect("exists").permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).expect("chmod");
        let err = ensure_private_dir(&dir).expect_err("too open");
        assert!(err.to_string().contains("chmod 700"), "{err}");
        fs::remove_dir_all(&base).expect("cleanup");
    }
}
