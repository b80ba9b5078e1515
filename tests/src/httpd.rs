//! A tiny threaded HTTP/1.1 server for the end-to-end tests that put real clients (git,
//! kubectl) in front of a server: std only, one thread per connection, keep-alive,
//! `Content-Length` and chunked request bodies. It plays whatever the handler says and
//! records what it was asked. [`Server::start_with`] wraps each connection (in TLS, say),
//! so the caller brings the TLS library.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

/// The largest request body accepted.
const MAX_BODY: usize = 64 << 20;

/// One request as the handler sees it.
#[derive(Debug, Clone)]
pub struct Request {
    /// `GET`, `POST`, …
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The query, without `?` (empty when there is none).
    pub query: String,
    /// Header names (lowercase) and values, in order.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

impl Request {
    /// The first value of a header (`name` in lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What the handler answers.
#[derive(Debug, Clone)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Extra headers (`Content-Length` is added).
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// A response with a status and a body.
    pub fn new(status: u16, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    /// Adds a header.
    #[must_use]
    pub fn header(mut self, name: &str, value: &str) -> Response {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }
}

/// What the server was asked, for assertions.
#[derive(Debug, Clone)]
pub struct Seen {
    /// The path.
    pub path: String,
    /// The `Authorization` header, if any.
    pub authorization: Option<String>,
    /// The status answered.
    pub status: u16,
}

type Handler = dyn Fn(&Request) -> Response + Send + Sync;

/// A connection as the server reads and writes it: plain TCP, or TLS over it.
pub trait Connection: Read + Write + Send {}
impl<T: Read + Write + Send> Connection for T {}

type Wrap = dyn Fn(TcpStream) -> Option<Box<dyn Connection>> + Send + Sync;

/// A running server on `127.0.0.1` and an ephemeral port; stopped on drop.
pub struct Server {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<Seen>>>,
    accept: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").field("addr", &self.addr).finish()
    }
}

impl Server {
    /// Starts serving plain http with `handler`; the port is bound (and connectable) on
    /// return.
    ///
    /// # Errors
    /// When no port can be bound.
    pub fn start(
        handler: impl Fn(&Request) -> Response + Send + Sync + 'static,
    ) -> std::io::Result<Server> {
        Self::start_with(handler, |tcp| Some(Box::new(tcp)))
    }

    /// Like [`Server::start`], with every accepted connection passed through `wrap` first (a
    /// TLS server session, say); `None` drops the connection.
    ///
    /// # Errors
    /// When no port can be bound.
    pub fn start_with(
        handler: impl Fn(&Request) -> Response + Send + Sync + 'static,
        wrap: impl Fn(TcpStream) -> Option<Box<dyn Connection>> + Send + Sync + 'static,
    ) -> std::io::Result<Server> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let handler: Arc<Handler> = Arc::new(handler);
        let wrap: Arc<Wrap> = Arc::new(wrap);
        let accept = {
            let (stop, seen) = (Arc::clone(&stop), Arc::clone(&seen));
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    let (handler, seen) = (Arc::clone(&handler), Arc::clone(&seen));
                    let wrap = Arc::clone(&wrap);
                    std::thread::spawn(move || {
                        let _ = conn.set_read_timeout(Some(Duration::from_secs(60)));
                        if let Some(conn) = wrap(conn) {
                            serve(conn, &*handler, &seen);
                        }
                    });
                }
            })
        };
        Ok(Server {
            addr,
            stop,
            seen,
            accept: Some(accept),
        })
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Every request answered so far, in order.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

/// Serves one connection until the client closes it (or asks to).
fn serve(conn: Box<dyn Connection>, handler: &Handler, seen: &Mutex<Vec<Seen>>) {
    let mut reader = BufReader::new(conn);
    while let Some(request) = read_request(&mut reader) {
        let response = handler(&request);
        seen.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Seen {
                path: request.path.clone(),
                authorization: request.header("authorization").map(str::to_owned),
                status: response.status,
            });
        let close = request
            .header("connection")
            .is_some_and(|c| c.eq_ignore_ascii_case("close"));
        let mut head = format!(
            "HTTP/1.1 {} {}\r\nContent-Length: {}\r\n",
            response.status,
            reason(response.status),
            response.body.len()
        );
        for (k, v) in &response.headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        if close {
            head.push_str("Connection: close\r\n");
        }
        head.push_str("\r\n");
        let out = reader.get_mut();
        if out
            .write_all(head.as_bytes())
            .and_then(|()| out.write_all(&response.body))
            .and_then(|()| out.flush())
            .is_err()
            || close
        {
            return;
        }
    }
}

/// Reads one request; `None` at the end of the connection or on anything malformed.
fn read_request(reader: &mut impl BufRead) -> Option<Request> {
    let line = read_line(reader)?;
    let mut parts = line.split(' ');
    let (method, target) = (parts.next()?.to_owned(), parts.next()?);
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let (path, query) = (path.to_owned(), query.to_owned());
    let mut headers = Vec::new();
    loop {
        let line = read_line(reader)?;
        if line.is_empty() {
            break;
        }
        let (k, v) = line.split_once(':')?;
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
    }
    let mut request = Request {
        method,
        path,
        query,
        headers,
        body: Vec::new(),
    };
    if request
        .header("transfer-encoding")
        .is_some_and(|t| t.eq_ignore_ascii_case("chunked"))
    {
        loop {
            let size_line = read_line(reader)?;
            let size = usize::from_str_radix(size_line.split(';').next()?.trim(), 16).ok()?;
            if size == 0 {
                // Trailers, up to the blank line.
                while !read_line(reader)?.is_empty() {}
                break;
            }
            if request.body.len() + size > MAX_BODY {
                return None;
            }
            let start = request.body.len();
            request.body.resize(start + size, 0);
            reader.read_exact(&mut request.body[start..]).ok()?;
            if !read_line(reader)?.is_empty() {
                return None;
            }
        }
    } else if let Some(len) = request.header("content-length") {
        let len: usize = len.parse().ok()?;
        if len > MAX_BODY {
            return None;
        }
        request.body.resize(len, 0);
        reader.read_exact(&mut request.body).ok()?;
    }
    Some(request)
}

/// One CRLF- (or LF-) terminated line without its terminator; `None` at EOF.
fn read_line(reader: &mut impl BufRead) -> Option<String> {
    let mut line = String::new();
    match reader.read_line(&mut line) {
        Ok(0) | Err(_) => None,
        Ok(_) => Some(line.trim_end_matches(['\r', '\n']).to_owned()),
    }
}

/// The reason phrase for the statuses the tests use.
fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        500 => "Internal Server Error",
        _ => "Status",
    }
}
