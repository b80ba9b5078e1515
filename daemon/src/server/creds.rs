//! Who wrote a request: the connection's stream with the kernel's word on each writer.
//!
//! A socket can be shared: a process connects, forks, and any process holding the
//! descriptor may write. `SO_PEERCRED` names only the process that connected, so an access
//! list checked against it can be fooled (connect, fork, let the parent `exec` an allowed
//! program while the child writes). With `SO_PASSCRED` the kernel attaches the writer's
//! credentials to every message and never glues the bytes of two writers into one read,
//! so each read here is attributed to exactly one pid. [`CredStream`] is turned on only
//! while some session has an access list (the plain `read` is cheaper on the hot path).

use std::collections::BTreeMap;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, recvmsg, sockopt::set_socket_passcred,
};
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::UnixStream;

/// Who wrote the bytes of one request frame, as far as the kernel said.
#[derive(Debug, Clone, Default)]
pub enum Writer {
    /// The connection does not collect writers (no access list when it was accepted).
    #[default]
    Unknown,
    /// One process wrote every byte of the frame.
    One {
        /// Its pid, as the kernel stamped it.
        pid: i32,
        /// A pidfd opened the moment its bytes were read (so a later exit, and with it a
        /// reuse of the pid, shows); `None` for the connecting process, whose liveness the
        /// peer check already tracks, or when the kernel refused one.
        pidfd: Option<Arc<OwnedFd>>,
    },
    /// Bytes of several processes make up the frame: no single program asked.
    Several,
}

/// A Unix stream that, when collecting, reads with `recvmsg` and notes each read's writer.
#[derive(Debug)]
pub struct CredStream {
    stream: UnixStream,
    /// `Some` while collecting: the writers of the bytes read since the last frame, by pid.
    writers: Option<Collected>,
}

#[derive(Debug)]
struct Collected {
    /// The process that connected (its liveness is the peer check's business).
    connector: Option<i32>,
    since_last_frame: BTreeMap<i32, Option<Arc<OwnedFd>>>,
    /// The writer of the latest read, whose bytes may run into the next frame.
    last: Option<(i32, Option<Arc<OwnedFd>>)>,
}

impl CredStream {
    /// Wraps `stream`; with `collect`, turns `SO_PASSCRED` on and attributes every read.
    ///
    /// # Errors
    /// The socket option could not be set.
    pub fn new(stream: UnixStream, collect: bool, connector: Option<i32>) -> io::Result<Self> {
        let writers = if collect {
            set_socket_passcred(stream.as_fd(), true)?;
            Some(Collected {
                connector,
                since_last_frame: BTreeMap::new(),
                last: None,
            })
        } else {
            None
        };
        Ok(CredStream { stream, writers })
    }

    /// The socket underneath.
    pub fn get_ref(&self) -> &UnixStream {
        &self.stream
    }

    /// Who wrote the frame just decoded. `carried_over`: bytes after that frame are still
    /// buffered (they came with the latest read and count for the next frame).
    pub fn take_writer(&mut self, carried_over: bool) -> Writer {
        let Some(c) = &mut self.writers else {
            return Writer::Unknown;
        };
        let all = std::mem::take(&mut c.since_last_frame);
        if carried_over && let Some((pid, fd)) = &c.last {
            c.since_last_frame.insert(*pid, fd.clone());
        }
        let mut all = all.into_iter();
        match (all.next(), all.next()) {
            (Some((pid, pidfd)), None) => Writer::One { pid, pidfd },
            (Some(_), Some(_)) => Writer::Several,
            (None, _) => Writer::Unknown,
        }
    }

    fn note(&mut self, pid: Option<i32>) {
        let Some(c) = &mut self.writers else { return };
        let Some(pid) = pid else {
            c.last = None;
            return;
        };
        let pidfd = if Some(pid) == c.connector {
            None
        } else if let Some(known) = c.since_last_frame.get(&pid) {
            known.clone()
        } else {
            open_pidfd(pid)
        };
        c.since_last_frame.insert(pid, pidfd.clone());
        c.last = Some((pid, pidfd));
    }
}

fn open_pidfd(pid: i32) -> Option<Arc<OwnedFd>> {
    let pid = rustix::process::Pid::from_raw(pid)?;
    rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty())
        .ok()
        .map(Arc::new)
}

/// One `recvmsg` into `buf`: the byte count and the writer's pid, if the kernel said.
/// Descriptors a peer passes along are closed unread.
fn recv_with_writer(stream: &UnixStream, buf: &mut [u8]) -> io::Result<(usize, Option<i32>)> {
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmCredentials(1), ScmRights(8))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let mut iov = [io::IoSliceMut::new(buf)];
    let msg = recvmsg(stream, &mut iov, &mut control, RecvFlags::CMSG_CLOEXEC)?;
    let mut pid = None;
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmCredentials(cred) = message {
            pid = Some(cred.pid.as_raw_nonzero().get());
        }
    }
    Ok((msg.bytes, pid))
}

impl AsyncRead for CredStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.writers.is_none() {
            return Pin::new(&mut this.stream).poll_read(cx, buf);
        }
        loop {
            ready!(this.stream.poll_read_ready(cx))?;
            let unfilled = buf.initialize_unfilled();
            let stream = &this.stream;
            match stream.try_io(Interest::READABLE, || recv_with_writer(stream, unfilled)) {
                Ok((n, pid)) => {
                    buf.advance(n);
                    if n > 0 {
                        this.note(pid);
                    }
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for CredStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn each_read_is_attributed_to_its_writer() {
        let (a, mut b) = UnixStream::pair().expect("pair");
        let own = i32::try_from(std::process::id()).expect("pid");
        let mut s = CredStream::new(a, true, None).expect("passcred");
        b.write_all(b"hello").await.expect("write");
        let mut buf = [0u8; 16];
        let n = s.read(&mut buf).await.expect("read");
        assert_eq!(&buf[..n], b"hello");
        match s.take_writer(false) {
            Writer::One { pid, pidfd } => {
                assert_eq!(pid, own);
                assert!(pidfd.is_some(), "not the connector: a pidfd is opened");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(s.take_writer(false), Writer::Unknown), "taken");
    }

    #[tokio::test]
    async fn the_connector_needs_no_pidfd_and_carried_bytes_keep_their_writer() {
        let (a, mut b) = UnixStream::pair().expect("pair");
        let own = i32::try_from(std::process::id()).expect("pid");
        let mut s = CredStream::new(a, true, Some(own)).expect("passcred");
        b.write_all(b"x").await.expect("write");
        let mut buf = [0u8; 4];
        let _ = s.read(&mut buf).await.expect("read");
        assert!(matches!(s.take_writer(true), Writer::One { pid, pidfd: None } if pid == own));
        assert!(
            matches!(s.take_writer(false), Writer::One { pid, .. } if pid == own),
            "the carried-over bytes count for the next frame"
        );
    }

    #[tokio::test]
    async fn without_collecting_the_writer_is_unknown() {
        let (a, mut b) = UnixStream::pair().expect("pair");
        let mut s = CredStream::new(a, false, None).expect("plain");
        b.write_all(b"x").await.expect("write");
        let mut buf = [0u8; 4];
        let _ = s.read(&mut buf).await.expect("read");
        assert!(matches!(s.take_writer(false), Writer::Unknown));
    }
}
