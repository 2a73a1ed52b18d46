//! A TCP fault proxy for the `faults_*` tests: listens on `127.0.0.1:0`, forwards every
//! connection to a PostgreSQL server's TCP port, and on request
//!
//! - cuts every connection open at that moment ([`Proxy::cut_all`]): both sockets are shut
//!   down, so the client sees its connection closed and the server sees the client vanish;
//! - loses the reply to the next K `COMMIT`s ([`Proxy::lose_commit_replies`]): the simple-query
//!   message `COMMIT` is forwarded, the server's whole reply (up to ReadyForQuery) is read and
//!   thrown away, and only then are both sockets closed. The server has committed; the client
//!   only knows its connection broke during COMMIT;
//! - holds the next `COMMIT` for a while ([`Proxy::delay_commit`]): it reaches the server
//!   only then, whether or not its client is still there, as a COMMIT in flight when the
//!   client dies does;
//! - stalls the next K COPY streams ([`Proxy::stall_copies`]): from a connection's first
//!   `CopyData` on, nothing more it sends is forwarded, while its sockets stay open, so the
//!   server waits for the data forever (`statement_timeout` does not apply) and the client
//!   for a reply, as on a network that silently drops packets.
//!
//! The client→server stream is parsed into protocol messages (the startup packet, possibly
//! preceded by SSLRequest/GSSENCRequest, has no type byte; every later message is one type
//! byte and a big-endian int32 length that counts itself) and forwarded a whole message at a
//! time, so a `COMMIT` can be recognised before the server sees it. Plain threads, no
//! runtime; every thread ends when its sockets are shut down, which dropping the proxy does.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

const SSL_REQUEST: u32 = 80_877_103;
const GSSENC_REQUEST: u32 = 80_877_104;

/// A running proxy; dropping it closes the listener and every connection.
pub struct Proxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

struct Shared {
    upstream: SocketAddr,
    stop: AtomicBool,
    next_id: AtomicUsize,
    conns: Mutex<Vec<Conn>>,
    accepted: AtomicUsize,
    cut: AtomicUsize,
    commits_seen: AtomicUsize,
    /// COMMITs whose reply is still to be lost.
    commits_to_lose: AtomicUsize,
    /// COMMIT replies thrown away whose tag said the server did commit.
    commit_replies_lost: AtomicUsize,
    /// How long to hold the next COMMIT (ms; 0: none), and COMMITs held at this moment.
    commit_delay_ms: AtomicUsize,
    commits_held: AtomicUsize,
    /// COPY streams still to be stalled, and stalled so far.
    copies_to_stall: AtomicUsize,
    copies_stalled: AtomicUsize,
}

/// A proxied connection: clones of both sockets, to shut them down from outside.
struct Conn {
    id: usize,
    client: TcpStream,
    server: TcpStream,
}

impl Proxy {
    /// Starts a proxy to `upstream` (a server's TCP address) on a free port of 127.0.0.1.
    pub fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy on 127.0.0.1");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let addr = listener.local_addr().expect("the proxy's address");
        let shared = Arc::new(Shared {
            upstream,
            stop: AtomicBool::new(false),
            next_id: AtomicUsize::new(0),
            conns: Mutex::new(Vec::new()),
            accepted: AtomicUsize::new(0),
            cut: AtomicUsize::new(0),
            commits_seen: AtomicUsize::new(0),
            commits_to_lose: AtomicUsize::new(0),
            commit_replies_lost: AtomicUsize::new(0),
            commit_delay_ms: AtomicUsize::new(0),
            commits_held: AtomicUsize::new(0),
            copies_to_stall: AtomicUsize::new(0),
            copies_stalled: AtomicUsize::new(0),
        });
        let acceptor = {
            let shared = shared.clone();
            thread::spawn(move || {
                while !shared.stop.load(SeqCst) {
                    match listener.accept() {
                        Ok((client, _)) => {
                            shared.accepted.fetch_add(1, SeqCst);
                            let shared = shared.clone();
                            thread::spawn(move || serve(shared, client));
                        }
                        Err(_) => thread::sleep(Duration::from_millis(5)),
                    }
                }
            })
        };
        Proxy {
            addr,
            shared,
            acceptor: Some(acceptor),
        }
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Shuts down every connection open now; returns how many.
    pub fn cut_all(&self) -> usize {
        let conns = std::mem::take(&mut *self.shared.conns.lock().unwrap());
        for c in &conns {
            let _ = c.client.shutdown(Shutdown::Both);
            let _ = c.server.shutdown(Shutdown::Both);
        }
        self.shared.cut.fetch_add(conns.len(), SeqCst);
        conns.len()
    }

    /// Loses the reply of the next `k` COMMITs (added to any still pending).
    pub fn lose_commit_replies(&self, k: usize) {
        self.shared.commits_to_lose.fetch_add(k, SeqCst);
    }

    /// Holds the next COMMIT for `delay` before forwarding it (the client waiting for its
    /// reply meanwhile, or gone).
    pub fn delay_commit(&self, delay: Duration) {
        self.shared
            .commit_delay_ms
            .store(delay.as_millis() as usize, SeqCst);
    }

    /// COMMITs being held at this moment.
    pub fn commits_held(&self) -> usize {
        self.shared.commits_held.load(SeqCst)
    }

    /// Stalls the next `k` COPY streams (added to any still pending).
    pub fn stall_copies(&self, k: usize) {
        self.shared.copies_to_stall.fetch_add(k, SeqCst);
    }

    /// COPY streams stalled so far.
    pub fn copies_stalled(&self) -> usize {
        self.shared.copies_stalled.load(SeqCst)
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.shared.accepted.load(SeqCst)
    }

    /// Connections cut by [`Proxy::cut_all`] so far.
    pub fn cuts(&self) -> usize {
        self.shared.cut.load(SeqCst)
    }

    /// Simple-query `COMMIT`s the clients sent so far.
    pub fn commits_seen(&self) -> usize {
        self.shared.commits_seen.load(SeqCst)
    }

    /// COMMITs the server acknowledged (`CommandComplete COMMIT`) whose reply the client never got.
    pub fn commit_replies_lost(&self) -> usize {
        self.shared.commit_replies_lost.load(SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, SeqCst);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        self.cut_all();
    }
}

impl Shared {
    fn close(&self, id: usize, client: &TcpStream, server: &TcpStream) {
        let _ = client.shutdown(Shutdown::Both);
        let _ = server.shutdown(Shutdown::Both);
        self.conns.lock().unwrap().retain(|c| c.id != id);
    }

    /// Takes one of the COMMITs to lose, if any is left.
    fn take_commit_to_lose(&self) -> bool {
        take_one(&self.commits_to_lose)
    }
}

/// Takes one from a counter of faults still to inject, if any is left.
fn take_one(counter: &AtomicUsize) -> bool {
    counter
        .fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1))
        .is_ok()
}

/// Per-connection state shared by its two pumps.
#[derive(Default)]
struct Link {
    /// SSLRequest/GSSENCRequest forwarded whose one-byte answer has not come back yet.
    encryption_requests: AtomicUsize,
    /// The server agreed to TLS/GSS: from then on bytes are passed through unparsed.
    opaque: AtomicBool,
    /// A COMMIT whose reply is to be lost was forwarded.
    losing: AtomicBool,
    /// A COPY stream was stalled: nothing more from the client is forwarded.
    stalled: AtomicBool,
}

/// Serves one client: connects upstream and runs the two pumps.
fn serve(shared: Arc<Shared>, client: TcpStream) {
    let _ = client.set_nonblocking(false);
    let _ = client.set_nodelay(true);
    let server = match TcpStream::connect_timeout(&shared.upstream, Duration::from_secs(5)) {
        Ok(s) => s,
        Err(_) => {
            let _ = client.shutdown(Shutdown::Both);
            return;
        }
    };
    let _ = server.set_nodelay(true);
    let id = shared.next_id.fetch_add(1, SeqCst);
    let clones = (
        client.try_clone(),
        server.try_clone(),
        client.try_clone(),
        server.try_clone(),
    );
    let (Ok(c1), Ok(s1), Ok(c2), Ok(s2)) = clones else {
        let _ = client.shutdown(Shutdown::Both);
        let _ = server.shutdown(Shutdown::Both);
        return;
    };
    {
        let mut conns = shared.conns.lock().unwrap();
        if shared.stop.load(SeqCst) {
            let _ = client.shutdown(Shutdown::Both);
            let _ = server.shutdown(Shutdown::Both);
            return;
        }
        conns.push(Conn {
            id,
            client: c1,
            server: s1,
        });
    }
    let link = Arc::new(Link::default());
    {
        let (shared, link) = (shared.clone(), link.clone());
        thread::spawn(move || client_to_server(&shared, id, c2, s2, &link));
    }
    server_to_client(&shared, id, server, client, &link);
}

/// Forwards the client's messages, each whole; arms the loss of a COMMIT's reply.
fn client_to_server(
    shared: &Shared,
    id: usize,
    mut client: TcpStream,
    mut server: TcpStream,
    link: &Link,
) {
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let mut startup = true;
    loop {
        let n = match client.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if link.opaque.load(SeqCst) {
            buf.extend_from_slice(&chunk[..n]);
            if server.write_all(&buf).is_err() {
                break;
            }
            buf.clear();
            continue;
        }
        buf.extend_from_slice(&chunk[..n]);
        let (mut pos, mut forward) = (0, 0);
        while let Some(len) = frontend_len(&buf[pos..], startup) {
            let msg = &buf[pos..pos + len];
            if startup {
                let code = u32::from_be_bytes([msg[4], msg[5], msg[6], msg[7]]);
                // SSLRequest/GSSENCRequest are answered with one byte ('N': go on in
                // clear, and the startup packet follows).
                startup = code == SSL_REQUEST || code == GSSENC_REQUEST;
                if startup {
                    link.encryption_requests.fetch_add(1, SeqCst);
                }
            } else if is_commit(msg) {
                shared.commits_seen.fetch_add(1, SeqCst);
                if shared.take_commit_to_lose() {
                    link.losing.store(true, SeqCst);
                }
                let delay = shared.commit_delay_ms.swap(0, SeqCst);
                if delay > 0 {
                    // What came before the COMMIT goes now; the COMMIT after the delay.
                    if server.write_all(&buf[..pos]).is_err() {
                        break;
                    }
                    buf.drain(..pos);
                    (pos, forward) = (0, 0);
                    shared.commits_held.fetch_add(1, SeqCst);
                    thread::sleep(Duration::from_millis(delay as u64));
                    shared.commits_held.fetch_sub(1, SeqCst);
                }
            } else if msg[0] == b'd'
                && !link.stalled.load(SeqCst)
                && take_one(&shared.copies_to_stall)
            {
                link.stalled.store(true, SeqCst);
                shared.copies_stalled.fetch_add(1, SeqCst);
            }
            pos += len;
            if !link.stalled.load(SeqCst) {
                forward = pos;
            }
        }
        if server.write_all(&buf[..forward]).is_err() {
            break;
        }
        buf.drain(..pos);
    }
    shared.close(id, &client, &server);
}

/// Forwards the server's messages, each whole; once a COMMIT's reply is to be lost, forwards
/// what answers earlier requests, throws the COMMIT's CommandComplete and ReadyForQuery
/// away, and closes both sockets.
fn server_to_client(
    shared: &Shared,
    id: usize,
    mut server: TcpStream,
    mut client: TcpStream,
    link: &Link,
) {
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    // Some(committed) while throwing away the reply of a COMMIT.
    let mut dropping: Option<bool> = None;
    loop {
        let n = match server.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        if link.opaque.load(SeqCst) {
            if client.write_all(&buf).is_err() {
                break;
            }
            buf.clear();
            continue;
        }
        let (mut pos, mut forward) = (0, 0);
        let mut done = false;
        while pos < buf.len() {
            if link.encryption_requests.load(SeqCst) > 0 {
                // The one-byte answer to SSLRequest/GSSENCRequest.
                link.encryption_requests.fetch_sub(1, SeqCst);
                if buf[pos] != b'N' {
                    link.opaque.store(true, SeqCst);
                }
                pos += 1;
                forward = pos;
                if link.opaque.load(SeqCst) {
                    forward = buf.len();
                    pos = buf.len();
                }
                continue;
            }
            let Some(len) = backend_len(&buf[pos..]) else {
                break;
            };
            let (kind, body) = (buf[pos], &buf[pos + 5..pos + len]);
            match dropping {
                None if link.losing.load(SeqCst) && kind == b'C' && ends_transaction(body) => {
                    dropping = Some(body.starts_with(b"COMMIT\0"));
                }
                None => forward = pos + len,
                Some(committed) => {
                    if kind == b'Z' {
                        if committed {
                            shared.commit_replies_lost.fetch_add(1, SeqCst);
                        }
                        done = true;
                    }
                }
            }
            pos += len;
            if done {
                break;
            }
        }
        if client.write_all(&buf[..forward]).is_err() || done {
            break;
        }
        buf.drain(..pos);
    }
    shared.close(id, &client, &server);
}

/// The length of the complete frontend message at the start of `buf`, if it is all there.
fn frontend_len(buf: &[u8], startup: bool) -> Option<usize> {
    if startup {
        let len = u32::from_be_bytes(buf.get(..4)?.try_into().ok()?) as usize;
        (len >= 8 && buf.len() >= len).then_some(len)
    } else {
        backend_len(buf)
    }
}

/// The length of the complete typed message (type byte, int32 length) at the start of `buf`.
fn backend_len(buf: &[u8]) -> Option<usize> {
    let len = u32::from_be_bytes(buf.get(1..5)?.try_into().ok()?) as usize;
    (len >= 4 && buf.len() > len).then_some(1 + len)
}

/// Whether a whole message is the simple query `COMMIT` (any case, `;` and blanks allowed).
fn is_commit(msg: &[u8]) -> bool {
    if msg.first() != Some(&b'Q') || msg.len() < 6 {
        return false;
    }
    let sql = &msg[5..];
    let sql = sql.strip_suffix(&[0]).unwrap_or(sql);
    let sql = String::from_utf8_lossy(sql);
    sql.trim()
        .trim_end_matches(';')
        .trim()
        .eq_ignore_ascii_case("commit")
}

/// Whether a CommandComplete's tag ends a transaction (COMMIT, or ROLLBACK for one that failed).
fn ends_transaction(tag: &[u8]) -> bool {
    tag.starts_with(b"COMMIT\0") || tag.starts_with(b"ROLLBACK\0")
}
