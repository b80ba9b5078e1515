//! `socket-recorder SOCKET LOG`: a stand-in for a process of another user sitting on a
//! socket path (the client-side SO_PEERCRED tests run it through `setpriv`). It listens on
//! SOCKET (mode 0777), prints `ready` once it does, and for every connection appends one
//! line to LOG after the peer closed or fell silent for 2 s: `conn N bytes=K hex=…`, the
//! bytes it received. It answers nothing and runs until killed.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::Duration;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args_os().skip(1);
    let (Some(socket), Some(log)) = (args.next(), args.next()) else {
        anyhow::bail!("usage: socket-recorder SOCKET LOG");
    };
    let listener = UnixListener::bind(&socket)?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o777))?;
    }
    println!("ready");
    std::io::stdout().flush()?;
    for (n, conn) in listener.incoming().enumerate() {
        let got = record(conn?);
        let hex: String = got.iter().map(|b| format!("{b:02x}")).collect();
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)?;
        writeln!(file, "conn {} bytes={} hex={hex}", n + 1, got.len())?;
    }
    Ok(())
}

/// Everything the peer sends until it closes or is silent for 2 s.
fn record(mut conn: UnixStream) -> Vec<u8> {
    let mut got = Vec::new();
    if conn.set_read_timeout(Some(Duration::from_secs(2))).is_err() {
        return got;
    }
    let mut buf = [0u8; 65536];
    while let Ok(n) = conn.read(&mut buf) {
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    got
}
