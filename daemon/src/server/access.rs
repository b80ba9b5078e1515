//! Per-session access lists (`[sessions.NAME] allow_exe`, `allow_uids`): which peer may
//! be handed a session's token.
//!
//! `allow_exe` is checked against the process that *wrote* the request (the kernel stamps
//! every read with its writer, see [`super::creds`]), not the one that connected: a socket
//! passed on by fork is written by whoever holds it. The writer's executable is compared by
//! identity (device and inode of `/proc/PID/exe`) with the listed files, never by the path
//! it shows: in another mount namespace a bind mount makes any program show an allowed path.
//!
//! A pid can be reused once its process exits, so the answer is trusted only if the writer
//! is provably still the process behind the pid afterwards: for the connecting process the
//! kernel hands out a pidfd (`SO_PEERPIDFD`, Linux 6.5+; on older kernels its start time
//! read at accept must still match); for another writer, a pidfd opened the moment its
//! bytes were read.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;

use tokd_protocol::{ErrorCode, ErrorReply};

use super::creds::Writer;
use crate::config::{Config, FileId};

/// Who is on the other end of a connection, as far as access lists care.
#[derive(Debug, Clone)]
pub struct Peer {
    /// The peer's uid (SO_PEERCRED).
    pub uid: u32,
    /// The peer's pid (SO_PEERCRED), when the kernel says.
    pub pid: Option<i32>,
    /// True for the daemon's own uid (and root when allowed): every verb is open to it.
    /// False for a uid admitted only because a session's `allow_uids` lists it.
    pub owner: bool,
    /// The process start time (clock ticks since boot) read at accept, for kernels without
    /// `SO_PEERPIDFD`; read only while some session has an access list.
    pub start_time: Option<u64>,
}

impl Peer {
    /// Describes an admitted peer; reads its start time when `config` has access lists.
    pub fn new(uid: u32, pid: Option<i32>, owner: bool, config: &Config) -> Peer {
        let start_time = if has_access_lists(config) {
            pid.and_then(start_time_of)
        } else {
            None
        };
        Peer {
            uid,
            pid,
            owner,
            start_time,
        }
    }
}

/// Whether any session restricts who may get its token.
pub fn has_access_lists(config: &Config) -> bool {
    config
        .sessions
        .values()
        .any(|s| !s.allow_exe.is_empty() || !s.allow_uids.is_empty())
}

/// Whether `uid` is named by some session's `allow_uids` (and may connect at all).
pub fn is_listed_uid(config: &Config, uid: u32) -> bool {
    config
        .sessions
        .values()
        .any(|s| s.allow_uids.contains(&uid))
}

/// Checks that `peer`, connected on `socket`, may be handed the token of `session` for a
/// request that `writer` wrote.
///
/// # Errors
/// A `peer_rejected` reply naming what did not match (never a secret).
pub fn check_get(
    config: &Config,
    peer: &Peer,
    writer: &Writer,
    socket: BorrowedFd<'_>,
    session: &str,
) -> Result<(), ErrorReply> {
    let rules = config.sessions.get(session);
    let allow_uids = rules.map_or(&[][..], |r| r.allow_uids.as_slice());
    if !peer.owner && !allow_uids.contains(&peer.uid) {
        return Err(rejected(format!(
            "uid {} may not get the token of {session:?}: it is not in its allow_uids",
            peer.uid
        )));
    }
    let Some(rules) = rules.filter(|r| !r.allow_exe.is_empty()) else {
        return Ok(());
    };
    let (exe, id) = writer_executable(peer, writer, socket).map_err(|why| {
        rejected(format!(
            "cannot tell which program asks for the token of {session:?} ({why}); it has an \
             allow_exe list"
        ))
    })?;
    // The identities read with the config, or, for a program installed or upgraded since,
    // the listed file as it is now (in the daemon's own mount namespace).
    let listed = rules.allow_exe_ids.contains(&Some(id))
        || rules
            .allow_exe
            .iter()
            .any(|path| FileId::of(path).ok() == Some(id));
    if listed {
        Ok(())
    } else {
        Err(rejected(format!(
            "{} may not get the token of {session:?}: it is not in its allow_exe list",
            exe.display()
        )))
    }
}

fn rejected(message: String) -> ErrorReply {
    ErrorReply::new(ErrorCode::PeerRejected, message)
}

/// The executable of the process that wrote the request (its shown path, for messages, and
/// its identity), checked to still be that process.
fn writer_executable(
    peer: &Peer,
    writer: &Writer,
    socket: BorrowedFd<'_>,
) -> Result<(PathBuf, FileId), String> {
    let (pid, pidfd) = match writer {
        Writer::One { pid, pidfd } => (*pid, pidfd),
        Writer::Several => return Err("the request was written by more than one process".into()),
        Writer::Unknown => {
            return Err(
                "the connection predates the access list or the kernel did not name the \
                 writer; reconnect"
                    .into(),
            );
        }
    };
    let exe = executable_of(pid)?;
    let id = FileId::of(format!("/proc/{pid}/exe"))
        .map_err(|e| format!("reading /proc/{pid}/exe: {e}"))?;
    if Some(pid) == peer.pid {
        connector_still_there(peer, socket)?;
    } else {
        let pidfd = pidfd
            .as_ref()
            .ok_or("no pidfd for the process that wrote the request")?;
        if process_exited(pidfd.as_fd())? {
            return Err("the process that wrote the request has exited".into());
        }
    }
    Ok((exe, id))
}

/// Whether the process that connected is still the one behind its pid.
fn connector_still_there(peer: &Peer, socket: BorrowedFd<'_>) -> Result<(), String> {
    let pid = peer
        .pid
        .ok_or("the kernel did not say which process connected")?;
    let pidfd = match peer_pidfd(socket) {
        Ok(fd) => Some(fd),
        Err(e) if is_unsupported(&e) => None,
        Err(e) => return Err(format!("SO_PEERPIDFD: {e}")),
    };
    match (&pidfd, peer.start_time) {
        (Some(fd), _) => {
            if process_exited(fd.as_fd())? {
                return Err("the process that connected has exited".into());
            }
        }
        (None, Some(at_accept)) => {
            if start_time_of(pid) != Some(at_accept) {
                return Err("the process that connected has exited".into());
            }
        }
        (None, None) => {
            return Err(
                "the connection predates the access list and this kernel has no \
                 SO_PEERPIDFD; reconnect"
                    .into(),
            );
        }
    }
    Ok(())
}

/// `/proc/PID/exe`, refusing an executable that was deleted or replaced since it started.
fn executable_of(pid: i32) -> Result<PathBuf, String> {
    let exe = std::fs::read_link(format!("/proc/{pid}/exe"))
        .map_err(|e| format!("reading /proc/{pid}/exe: {e}"))?;
    if exe.to_string_lossy().ends_with(" (deleted)") {
        return Err(format!(
            "its executable {} was deleted or replaced",
            exe.display()
        ));
    }
    Ok(exe)
}

/// Field 22 of `/proc/PID/stat`: when the process started, in clock ticks since boot.
fn start_time_of(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses; fields after it are plain.
    let after_comm = &stat[stat.rfind(')')? + 1..];
    after_comm.split_whitespace().nth(19)?.parse().ok()
}

/// A pidfd becomes readable when its process exits.
fn process_exited(pidfd: BorrowedFd<'_>) -> Result<bool, String> {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    let mut fds = [PollFd::new(&pidfd, PollFlags::IN)];
    let zero = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    poll(&mut fds, Some(&zero)).map_err(|e| format!("polling the pidfd: {e}"))?;
    Ok(fds[0].revents().intersects(PollFlags::IN | PollFlags::HUP))
}

fn is_unsupported(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENOPROTOOPT | libc::EINVAL | libc::EOPNOTSUPP)
    ) || e.kind() == std::io::ErrorKind::Unsupported
}

/// `getsockopt(SO_PEERPIDFD)`: a pidfd for the process that connected (Linux 6.5+). rustix
/// has no wrapper for it yet, hence the one unsafe call.
#[cfg(any(
    target_arch = "x86_64",
    target_arch = "x86",
    target_arch = "aarch64",
    target_arch = "arm",
    target_arch = "riscv64",
    target_arch = "loongarch64",
    target_arch = "s390x"
))]
#[allow(unsafe_code)]
fn peer_pidfd(socket: BorrowedFd<'_>) -> std::io::Result<OwnedFd> {
    use std::os::fd::{AsRawFd, FromRawFd};
    /// The asm-generic value (include/uapi/asm-generic/socket.h).
    const SO_PEERPIDFD: libc::c_int = 77;
    let mut fd: libc::c_int = -1;
    let mut len = libc::socklen_t::try_from(std::mem::size_of::<libc::c_int>())
        .map_err(std::io::Error::other)?;
    // SAFETY: `socket` is a valid open descriptor for the call's duration; `fd` and `len`
    // are live locals of the sizes the kernel writes for this option.
    let rc = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_PEERPIDFD,
            (&raw mut fd).cast::<libc::c_void>(),
            &raw mut len,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    if fd < 0 {
        return Err(std::io::Error::other("SO_PEERPIDFD returned no descriptor"));
    }
    // SAFETY: the kernel just created this descriptor for us and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

#[cfg(not(any(
    target_arch = "x86_64",
    target_arch = "x86",
    target_arch = "aarch64",
    target_arch = "arm",
    target_arch = "riscv64",
    target_arch = "loongarch64",
    target_arch = "s390x"
)))]
fn peer_pidfd(_socket: BorrowedFd<'_>) -> std::io::Result<OwnedFd> {
    Err(std::io::ErrorKind::Unsupported.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_start_time_survives_odd_command_names() {
        let own = i32::try_from(std::process::id()).expect("pid");
        let a = start_time_of(own).expect("own start time");
        assert_eq!(start_time_of(own), Some(a), "stable");
    }

    #[test]
    fn own_executable_resolves() {
        let own = i32::try_from(std::process::id()).expect("pid");
        let exe = executable_of(own).expect("exe");
        let current = std::env::current_exe().expect("current exe");
        assert_eq!(exe, std::fs::canonicalize(current).expect("canonical"));
    }

    #[test]
    fn a_pidfd_of_a_connected_peer_reports_liveness() {
        let (a, b) = std::os::unix::net::UnixStream::pair().expect("pair");
        use std::os::fd::AsFd;
        match peer_pidfd(a.as_fd()) {
            Ok(fd) => assert!(!process_exited(fd.as_fd()).expect("poll"), "we are alive"),
            Err(e) => assert!(is_unsupported(&e), "{e}"),
        }
        drop(b);
    }
}
