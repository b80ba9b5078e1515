//! Who may be listening on the socket: before a client sends anything (no hello, no
//! request byte), it asks the kernel (SO_PEERCRED) which uid the listening process runs as.
//! A daemon of another user could keep what it is sent (`tokd add` imports a token
//! response) or hand out tokens of its choosing, so only this user's daemon and root's are
//! talked to, plus the one uid named in [`DAEMON_UID_ENV`].

use std::os::fd::AsFd;
use std::path::Path;

use crate::error::ClientError;

/// The environment variable that names one more uid whose daemon may be used: a guest of
/// another user's daemon (one whose sessions list the guest in `allow_uids`) sets it to that
/// user's uid.
pub const DAEMON_UID_ENV: &str = "TOKD_DAEMON_UID";

/// Refuses the connection `stream` (to `path`) unless the process listening on it runs as
/// this process's effective uid, as root, or as the uid in [`DAEMON_UID_ENV`].
pub(crate) fn check_daemon(stream: impl AsFd, path: &Path) -> Result<(), ClientError> {
    let cred = rustix::net::sockopt::socket_peercred(stream).map_err(|e| ClientError::Connect {
        path: path.to_path_buf(),
        source: e.into(),
    })?;
    let uid = cred.uid.as_raw();
    let own = rustix::process::geteuid().as_raw();
    let opt_in = std::env::var_os(DAEMON_UID_ENV);
    let opt_in = opt_in.as_ref().map(|v| v.to_string_lossy());
    if trusted(uid, own, opt_in.as_deref())? {
        Ok(())
    } else {
        Err(ClientError::UntrustedDaemon {
            path: path.to_path_buf(),
            uid,
            own,
        })
    }
}

/// Whether a daemon running as `daemon` may be talked to by a client running as `own`, with
/// `opt_in` the value of [`DAEMON_UID_ENV`] (unset or empty: none).
///
/// # Errors
/// [`ClientError::InvalidDaemonUid`] when `opt_in` is not a uid.
fn trusted(daemon: u32, own: u32, opt_in: Option<&str>) -> Result<bool, ClientError> {
    let extra = match opt_in.filter(|v| !v.is_empty()) {
        None => None,
        Some(text) => Some(
            text.parse::<u32>()
                .map_err(|_| ClientError::InvalidDaemonUid(text.to_owned()))?,
        ),
    };
    Ok(daemon == own || daemon == 0 || extra == Some(daemon))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_uid_and_root_are_trusted_others_only_when_named() {
        assert!(trusted(1000, 1000, None).expect("valid"));
        assert!(trusted(0, 1000, None).expect("valid"));
        assert!(!trusted(1001, 1000, None).expect("valid"));
        assert!(!trusted(1001, 1000, Some("")).expect("valid"));
        assert!(trusted(1001, 1000, Some("1001")).expect("valid"));
        // Naming one uid trusts that one only.
        assert!(!trusted(1002, 1000, Some("1001")).expect("valid"));
        // Root trusts its own daemons only (and root's).
        assert!(!trusted(1000, 0, None).expect("valid"));
    }

    #[test]
    fn a_bad_opt_in_is_an_error_naming_the_variable() {
        for bad in ["alice", "-1", "1001 ", "4294967296"] {
            let err = trusted(1001, 1000, Some(bad)).expect_err(bad);
            assert!(matches!(err, ClientError::InvalidDaemonUid(_)), "{bad}");
            assert!(err.to_string().contains(DAEMON_UID_ENV), "{err}");
            assert_eq!(err.exit_code(), 2);
        }
    }
}
