//! The guard in front of pgwire: every byte a PostgreSQL client sends passes through here, and
//! only well-formed messages reach pgwire, which panics on a message whose counts run past its
//! end (a `Parse` declaring more parameter types than it carries) and on a `Bind` with fewer
//! format codes than parameters (both found by `wire/tests/it/hostile_wire.rs`).
//!
//! The guard speaks the connection's opening itself: an `SSLRequest` is answered (`S` and the
//! TLS handshake when `query.tls` is set, `N` otherwise), a `GSSENCRequest` is declined, the
//! startup packet is size-checked. Then pgwire reads the client's stream through [`Checked`],
//! which lets through only whole messages checked against their type's layout and size limit;
//! the first bad one ends the connection with a FATAL `08P01` that says what was wrong. What
//! pgwire answers goes to the client unchanged, held until a ReadyForQuery (where PostgreSQL's
//! own backend flushes) or until the server waits for the client: pgwire flushes after most
//! messages, and an extended query's answer was four writes and four segments.
//!
//! The guard also bounds what a connection holds and how long it may hold it: the password
//! must come within [`OPENING`] of connecting, a connection that sends nothing (not a byte)
//! for `query.postgres.idle_timeout` while the server waits on it is closed (FATAL `57P05`), and the named prepared statements
//! and portals it keeps (pgwire keeps each until the client closes it) are at most
//! [`MAX_NAMED`], of at most [`MAX_NAMED_BYTES`] in all (FATAL `53400`).

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

/// How long a client may take to open (TLS and startup), as pgwire allows.
const OPENING: Duration = Duration::from_secs(60);
/// Largest startup packet (parameters as name/value pairs).
const MAX_STARTUP: usize = 10_000;
/// Largest message other than a statement's text or a Bind.
const MAX_SMALL: usize = 64 * 1024;
/// Largest Bind (parameter values).
const MAX_BIND: usize = 16 * 1024 * 1024;
/// Most named prepared statements and portals one connection keeps.
pub(super) const MAX_NAMED: usize = 1_000;
/// Most bytes of the messages that made them.
pub(super) const MAX_NAMED_BYTES: usize = 64 * 1024 * 1024;
/// The request codes of the opening's special packets.
const SSL_REQUEST: u32 = 80_877_103;
const GSSENC_REQUEST: u32 = 80_877_104;
const CANCEL_REQUEST: u32 = 80_877_102;

/// Bytes asked of the client at a time, whatever a message announces: a client dripping a
/// large message byte by byte costs a read of this size each time, not of the message's.
const CHUNK: usize = 8 * 1024;
/// Most bytes of pgwire's answers held before they are sent whatever comes next.
const HOLD: usize = 64 * 1024;

/// A client behind the guard: its stream, read through the checks, and whether it speaks TLS.
pub(super) struct Guarded {
    pub(super) stream: Checked,
    pub(super) secure: bool,
}

/// What a connection may send and hold.
#[derive(Debug, Clone, Copy)]
pub(super) struct Bounds {
    /// `query.limits.max_statement_bytes`.
    pub(super) max_statement: usize,
    /// `query.postgres.idle_timeout`.
    pub(super) idle: Duration,
    /// Whether the client must send a password (tokens are configured) by the opening's end.
    pub(super) password: bool,
}

/// Opens `tcp` (TLS when `tls` is set and the client asks) and returns its stream read through
/// the checks; `None` when the client gave up or broke the opening.
pub(super) async fn guard(
    tcp: TcpStream,
    tls: Option<adit_protocol::https::TlsAcceptor>,
    bounds: Bounds,
) -> Option<Guarded> {
    let opening_ends = tokio::time::Instant::now() + OPENING;
    let opened = tokio::time::timeout_at(opening_ends, open(tcp, tls)).await;
    let (client, startup, secure) = match opened {
        Ok(Ok(Some(opened))) => opened,
        Ok(Ok(None)) | Err(_) => return None,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "a PostgreSQL client's opening failed");
            return None;
        }
    };
    let stream = Checked::new(client, startup, bounds, opening_ends);
    Some(Guarded { stream, secure })
}

/// A client's stream after the opening, plain or TLS.
type Client = Box<dyn Stream>;
trait Stream: AsyncRead + AsyncWrite + Unpin + Send + Sync {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + Sync> Stream for T {}

/// The opening: SSL or GSS requests answered, then the startup (or cancel) packet read whole.
async fn open(
    mut tcp: TcpStream,
    tls: Option<adit_protocol::https::TlsAcceptor>,
) -> io::Result<Option<(Client, Vec<u8>, bool)>> {
    let mut asked_gss = false;
    loop {
        let (len, code) = (tcp.read_u32().await?, tcp.read_u32().await?);
        match (len, code) {
            (8, SSL_REQUEST) => match &tls {
                Some(acceptor) => {
                    tcp.write_all(b"S").await?;
                    let mut stream = acceptor.accept(tcp).await?;
                    let packet = read_packet(&mut stream).await?;
                    return Ok(packet.map(|p| (Box::new(stream) as Client, p, true)));
                }
                None => tcp.write_all(b"N").await?,
            },
            (8, GSSENC_REQUEST) if !asked_gss => {
                asked_gss = true;
                tcp.write_all(b"N").await?;
            }
            _ => {
                let packet = rest_of_packet(&mut tcp, len, code).await?;
                return Ok(packet.map(|p| (Box::new(tcp) as Client, p, false)));
            }
        }
    }
}

/// A startup or cancel packet read whole from `stream`.
async fn read_packet(stream: &mut (impl AsyncRead + Unpin)) -> io::Result<Option<Vec<u8>>> {
    let (len, code) = (stream.read_u32().await?, stream.read_u32().await?);
    rest_of_packet(stream, len, code).await
}

/// The packet whose length and code were read: `None` when its length is out of bounds.
async fn rest_of_packet(
    stream: &mut (impl AsyncRead + Unpin),
    len: u32,
    code: u32,
) -> io::Result<Option<Vec<u8>>> {
    let len = len as usize;
    if !(8..=MAX_STARTUP).contains(&len) || (code == CANCEL_REQUEST && len != 16) {
        return Ok(None);
    }
    let mut packet = Vec::with_capacity(len);
    packet.extend_from_slice(&(len as u32).to_be_bytes());
    packet.extend_from_slice(&code.to_be_bytes());
    packet.resize(len, 0);
    stream.read_exact(&mut packet[8..]).await?;
    Ok(Some(packet))
}

/// Why the guard closed a connection: its SQLSTATE and what to tell the client.
type Closed = (&'static str, String);

/// The client's stream as pgwire reads it: the startup packet (read by the opening), then only
/// whole messages that passed [`check`] and the bounds. The first that does not, the password
/// not sent by the opening's end, or `bounds.idle` without a byte while pgwire waits for one,
/// ends the input; pgwire answers what came before, sees the end, and [`Checked::refusal`] is
/// the FATAL error the client is then sent. What pgwire writes goes to the client unchanged.
///
/// What pgwire writes is held and sent at each ReadyForQuery, before the server waits for the
/// client (so a client's `Flush` is answered), past [`HOLD`] bytes and at the close: an extended
/// query's ParseComplete, BindComplete, RowDescription and ReadyForQuery, each flushed by
/// pgwire (its rows and CommandComplete between them), reach the client in one write.
///
/// pgwire reads the client's socket through this directly: no task or socket between them, so
/// a statement costs no more hand-overs than pgwire's own.
pub(super) struct Checked {
    client: Client,
    /// What was read: `[handed..passed)` checked and not yet read by pgwire, `[passed..]` the
    /// start of the next message.
    buf: Vec<u8>,
    handed: usize,
    passed: usize,
    bounds: Bounds,
    named: Named,
    /// When the wait for the client ends it: the opening's end while the password is due,
    /// else `bounds.idle` from when the wait (or the client's last byte) began.
    deadline: Pin<Box<tokio::time::Sleep>>,
    /// Whether the password (the first message after the startup) is still due.
    password_due: bool,
    /// Whether `deadline` is set for the current wait.
    waiting: bool,
    /// The input has ended: the client's doing (`refused` empty) or the guard's.
    ended: bool,
    refused: Option<Closed>,
    /// What pgwire wrote: `[sent..]` not yet sent to the client.
    out: Vec<u8>,
    sent: usize,
}

impl Checked {
    fn new(
        client: Client,
        startup: Vec<u8>,
        bounds: Bounds,
        opening_ends: tokio::time::Instant,
    ) -> Self {
        let passed = startup.len();
        Self {
            client,
            buf: startup,
            handed: 0,
            passed,
            bounds,
            named: Named::default(),
            deadline: Box::pin(tokio::time::sleep_until(opening_ends)),
            password_due: bounds.password,
            waiting: bounds.password,
            ended: false,
            refused: None,
            out: Vec::new(),
            sent: 0,
        }
    }

    /// Sends what pgwire wrote and flushes the client's stream (a TLS stream sends its records
    /// then).
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.out.len() {
            let written = Pin::new(&mut self.client).poll_write(cx, &self.out[self.sent..]);
            match ready!(written)? {
                0 => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                n => self.sent += n,
            }
        }
        self.out.clear();
        self.sent = 0;
        if self.out.capacity() > HOLD {
            self.out.shrink_to(CHUNK);
        }
        Pin::new(&mut self.client).poll_flush(cx)
    }

    /// The FATAL ErrorResponse for why the guard ended the input, once (logged); `None` when
    /// the client ended it.
    pub(super) fn refusal(&mut self) -> Option<Vec<u8>> {
        let (code, reason) = self.refused.take()?;
        tracing::info!(reason = %reason, "a PostgreSQL client was closed");
        Some(fatal(code, &reason))
    }

    /// Checks the whole messages read past `passed`.
    fn check_read(&mut self) {
        while !self.ended {
            match next_message(&self.buf[self.passed..], &mut self.named, &self.bounds) {
                Next::Whole(len) => {
                    self.passed += len;
                    self.password_due = false;
                }
                Next::More => return,
                Next::Refused(why) => self.end(Some(why)),
            }
        }
    }

    fn end(&mut self, refused: Option<Closed>) {
        self.ended = true;
        self.refused = refused;
    }

    /// Why a wait ran out.
    fn timed_out(&self) -> Closed {
        if self.password_due {
            return ("08P01", "the password did not come in time".into());
        }
        let idle = self.bounds.idle;
        let why = format!("closed after {idle:?} with nothing sent (query.postgres.idle_timeout)");
        ("57P05", why)
    }
}

impl AsyncRead for Checked {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            this.check_read();
            if this.handed < this.passed {
                let n = out.remaining().min(this.passed - this.handed);
                out.put_slice(&this.buf[this.handed..this.handed + n]);
                this.handed += n;
                this.waiting = false;
                return Poll::Ready(Ok(()));
            }
            if this.ended {
                return Poll::Ready(Ok(()));
            }
            this.buf.drain(..this.passed);
            (this.handed, this.passed) = (0, 0);
            if !this.waiting {
                this.waiting = true;
                if !this.password_due {
                    let until = tokio::time::Instant::now() + this.bounds.idle;
                    this.deadline.as_mut().reset(until);
                }
            }
            if this.deadline.as_mut().poll(cx).is_ready() {
                let why = this.timed_out();
                this.end(Some(why));
                continue;
            }
            // The client is sent what it was answered before the server waits on it; the read
            // goes on while the client is slow to take it (it may be sending more first).
            if let Poll::Ready(Err(e)) = this.poll_send(cx) {
                return Poll::Ready(Err(e));
            }
            let have = this.buf.len();
            this.buf.resize(have + CHUNK, 0);
            let mut read = ReadBuf::new(&mut this.buf[have..]);
            let polled = Pin::new(&mut this.client).poll_read(cx, &mut read);
            let got = read.filled().len();
            this.buf.truncate(have + got);
            match polled {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) if got == 0 => this.end(None),
                // The idle time counts from the client's last byte.
                Poll::Ready(Ok(())) => this.waiting = false,
            }
        }
    }
}

impl AsyncWrite for Checked {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.out.len() >= HOLD {
            ready!(this.poll_send(cx))?;
        }
        this.out.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    /// Sends what is held when it ends with a ReadyForQuery; else holds it (pgwire flushes
    /// after most messages, PostgreSQL only there). Were a row to end with those six bytes,
    /// the cost is one write sooner.
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if ends_ready_for_query(&this.out) {
            return this.poll_send(cx);
        }
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_send(cx))?;
        Pin::new(&mut this.client).poll_shutdown(cx)
    }
}

/// Whether `out` ends with a ReadyForQuery message (`Z`, length 5, the transaction status).
fn ends_ready_for_query(out: &[u8]) -> bool {
    out.len() >= 6 && out[out.len() - 6..out.len() - 1] == [b'Z', 0, 0, 0, 5]
}

/// What the bytes after the checked ones start with.
#[derive(Debug, PartialEq)]
enum Next {
    /// A whole message that passed, of this many bytes.
    Whole(usize),
    /// Part of one.
    More,
    /// A message that does not pass, or one announced past its limit (before it is read).
    Refused(Closed),
}

/// The first message of `bytes`, checked against its layout and `bounds` and followed by
/// `named`.
fn next_message(bytes: &[u8], named: &mut Named, bounds: &Bounds) -> Next {
    let Some(&[kind, a, b, c, d]) = bytes.get(..5) else {
        return Next::More;
    };
    let len = u32::from_be_bytes([a, b, c, d]) as usize;
    let limit = limit(kind, bounds.max_statement);
    if !(4..=limit + 4).contains(&len) {
        let why = format!(
            "message {:?} of {len} bytes (at most {limit})",
            kind as char
        );
        return Next::Refused(("08P01", why));
    }
    let Some(body) = bytes.get(5..len + 1) else {
        return Next::More;
    };
    if let Err(reason) = check(kind, body) {
        let why = format!("message {:?}: {reason}", kind as char);
        return Next::Refused(("08P01", why));
    }
    if let Err(reason) = named.follow(kind, body) {
        return Next::Refused(("53400", reason));
    }
    Next::Whole(len + 1)
}

/// The named prepared statements and portals a connection keeps, as pgwire keeps them: a
/// `Parse` or `Bind` with a name puts one (replacing one of the same name), a `Close` takes it.
#[derive(Debug, Default)]
struct Named {
    held: HashMap<(u8, String), usize>,
    bytes: usize,
}

impl Named {
    /// Follows a checked message; an error when it would keep more than the bounds allow.
    fn follow(&mut self, kind: u8, body: &[u8]) -> Result<(), String> {
        let mut r = Reader(body);
        let (what, name) = match kind {
            // Parse: the statement's name first.
            b'P' => (b'S', r.name()),
            // Bind: the portal's name first.
            b'B' => (b'P', r.name()),
            b'C' => {
                let what = r.u8().unwrap_or_default();
                if let Some(size) = self.held.remove(&(what, r.name())) {
                    self.bytes -= size;
                }
                return Ok(());
            }
            _ => return Ok(()),
        };
        if name.is_empty() {
            return Ok(());
        }
        if let Some(size) = self.held.remove(&(what, name.clone())) {
            self.bytes -= size;
        }
        if self.held.len() >= MAX_NAMED || self.bytes + body.len() > MAX_NAMED_BYTES {
            return Err(format!(
                "more than {MAX_NAMED} named prepared statements and portals, or {MAX_NAMED_BYTES} bytes of them, held at once; close some (Close, DEALLOCATE)"
            ));
        }
        self.bytes += body.len();
        self.held.insert((what, name), body.len());
        Ok(())
    }
}

/// Most body bytes a message of `kind` may have. A statement a few times over
/// `query.limits.max_statement_bytes` still passes, for the engine to refuse it with 54001 and
/// the connection kept; only far beyond that is reading it the harm.
fn limit(kind: u8, max_statement: usize) -> usize {
    match kind {
        b'Q' | b'P' => max_statement.saturating_mul(4).max(4 * 1024 * 1024),
        b'B' => MAX_BIND,
        _ => MAX_SMALL,
    }
}

/// Whether `body` is laid out as a `kind` message says (every count within the body).
fn check(kind: u8, body: &[u8]) -> Result<(), String> {
    let mut r = Reader(body);
    match kind {
        b'Q' => {
            r.cstring()?;
        }
        b'P' => {
            r.cstring()?;
            r.cstring()?;
            let types = r.u16()?;
            r.skip(4 * usize::from(types))?;
        }
        b'B' => {
            r.cstring()?;
            r.cstring()?;
            let formats = r.format_codes()?;
            let values = r.u16()?;
            // PostgreSQL's rule; pgwire indexes the codes by parameter and panics past them.
            if formats > 1 && formats != values {
                return Err(format!(
                    "{formats} parameter formats for {values} parameters"
                ));
            }
            for _ in 0..values {
                let len = r.i32()?;
                if len > 0 {
                    r.skip(len as usize)?;
                } else if len < -1 {
                    return Err(format!("a parameter of length {len}"));
                }
            }
            r.format_codes()?;
        }
        b'D' | b'C' => {
            r.u8()?;
            r.cstring()?;
        }
        b'E' => {
            r.cstring()?;
            r.i32()?;
        }
        b'S' | b'H' | b'X' | b'c' => {}
        b'p' | b'd' => return Ok(()),
        b'f' => {
            r.cstring()?;
        }
        other => return Err(format!("unknown message type {other}")),
    }
    match r.0.len() {
        0 => Ok(()),
        n => Err(format!("{n} bytes past its end")),
    }
}

/// A bounds-checked reader over a message body.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn skip(&mut self, n: usize) -> Result<(), String> {
        if n > self.0.len() {
            return Err(format!("{n} bytes announced, {} left", self.0.len()));
        }
        self.0 = &self.0[n..];
        Ok(())
    }

    fn take<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let bytes: [u8; N] = self
            .0
            .get(..N)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| format!("{N} bytes announced, {} left", self.0.len()))?;
        self.0 = &self.0[N..];
        Ok(bytes)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take::<1>()?[0])
    }

    fn u16(&mut self) -> Result<u16, String> {
        Ok(u16::from_be_bytes(self.take()?))
    }

    /// A count of format codes and the codes, each 0 (text) or 1 (binary) as PostgreSQL
    /// requires; the count.
    fn format_codes(&mut self) -> Result<u16, String> {
        let count = self.u16()?;
        for _ in 0..count {
            match i16::from_be_bytes(self.take()?) {
                0 | 1 => {}
                code => return Err(format!("unsupported format code {code}")),
            }
        }
        Ok(count)
    }

    fn i32(&mut self) -> Result<i32, String> {
        Ok(i32::from_be_bytes(self.take()?))
    }

    /// A string of a message already checked (empty if it is not there).
    fn name(&mut self) -> String {
        let end = self.0.iter().position(|b| *b == 0).unwrap_or(self.0.len());
        let name = String::from_utf8_lossy(&self.0[..end]).into_owned();
        self.0 = self.0.get(end + 1..).unwrap_or_default();
        name
    }

    fn cstring(&mut self) -> Result<(), String> {
        let end = self
            .0
            .iter()
            .position(|b| *b == 0)
            .ok_or("a string without its end")?;
        std::str::from_utf8(&self.0[..end]).map_err(|_| "a string that is not UTF-8")?;
        self.0 = &self.0[end + 1..];
        Ok(())
    }
}

/// A FATAL ErrorResponse with SQLSTATE `code` saying `reason`.
fn fatal(code: &str, reason: &str) -> Vec<u8> {
    let mut body = Vec::new();
    for (field, value) in [
        (b'S', "FATAL"),
        (b'V', "FATAL"),
        (b'C', code),
        (b'M', reason),
    ] {
        body.push(field);
        body.extend_from_slice(value.replace('\0', " ").as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut out = vec![b'E'];
    out.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
    out.extend(body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::AsyncWriteExt;

    fn cstr(s: &str) -> Vec<u8> {
        let mut out = s.as_bytes().to_vec();
        out.push(0);
        out
    }

    #[test]
    fn well_formed_messages_pass_and_counts_past_the_end_do_not() {
        let mut parse = cstr("s1");
        parse.extend(cstr("SELECT $1"));
        parse.extend_from_slice(&1_u16.to_be_bytes());
        parse.extend_from_slice(&20_u32.to_be_bytes());
        assert_eq!(check(b'P', &parse), Ok(()));
        // The panic pgwire had: more types declared than carried.
        let mut short = cstr("s1");
        short.extend(cstr("SELECT $1"));
        short.extend_from_slice(&3_u16.to_be_bytes());
        short.extend_from_slice(&20_u32.to_be_bytes());
        assert!(check(b'P', &short).is_err());
        let mut bind = cstr("");
        bind.extend(cstr("s1"));
        bind.extend_from_slice(&0_u16.to_be_bytes());
        bind.extend_from_slice(&2_u16.to_be_bytes());
        bind.extend_from_slice(&(-1_i32).to_be_bytes());
        bind.extend_from_slice(&2_i32.to_be_bytes());
        bind.extend_from_slice(b"42");
        bind.extend_from_slice(&0_u16.to_be_bytes());
        assert_eq!(check(b'B', &bind), Ok(()));
        let mut lying = bind.clone();
        lying.truncate(bind.len() - 3);
        assert!(check(b'B', &lying).is_err());
        // Format codes as PostgreSQL takes them: none, one for all, or one per parameter,
        // each text or binary (pgwire indexed past a shorter list and panicked).
        let bind_with = |formats: &[i16], values: u16| {
            let mut b = cstr("");
            b.extend(cstr("s1"));
            b.extend_from_slice(&(formats.len() as u16).to_be_bytes());
            for f in formats {
                b.extend_from_slice(&f.to_be_bytes());
            }
            b.extend_from_slice(&values.to_be_bytes());
            for _ in 0..values {
                b.extend_from_slice(&(-1_i32).to_be_bytes());
            }
            b.extend_from_slice(&0_u16.to_be_bytes());
            b
        };
        assert_eq!(check(b'B', &bind_with(&[1], 3)), Ok(()));
        assert_eq!(check(b'B', &bind_with(&[0, 1, 0], 3)), Ok(()));
        assert!(
            check(b'B', &bind_with(&[0, 1], 3)).is_err(),
            "two formats, three values"
        );
        assert!(check(b'B', &bind_with(&[2], 1)).is_err(), "format code 2");
        assert!(check(b'B', &bind_with(&[-1], 1)).is_err(), "format code -1");
        assert_eq!(check(b'Q', &cstr("SELECT 1")), Ok(()));
        assert!(check(b'Q', b"SELECT 1").is_err(), "no terminator");
        assert!(check(b'Q', &[0xff, 0xfe, 0]).is_err(), "not UTF-8");
        assert!(check(b'E', &cstr("")).is_err(), "no row count");
        assert_eq!(check(b'S', b""), Ok(()));
        assert!(check(b'S', b"x").is_err());
        assert!(check(b'!', b"").is_err());
        assert_eq!(limit(b'Q', 1000), 4 * 1024 * 1024);
        assert_eq!(limit(b'Q', 2 * 1024 * 1024), 8 * 1024 * 1024);
        let bounds = Bounds {
            max_statement: 1000,
            idle: Duration::from_secs(60),
            password: false,
        };
        let mut named = Named::default();
        let mut next = |bytes: &[u8]| next_message(bytes, &mut named, &bounds);
        assert_eq!(next(&[b'S', 0, 0, 0, 4]), Next::Whole(5));
        assert_eq!(next(&[b'S', 0, 0, 0, 4, b'Q']), Next::Whole(5));
        assert_eq!(next(&[b'Q', 0, 0, 0, 6, b'x']), Next::More);
        assert_eq!(next(&[b'S', 0, 0]), Next::More);
        assert_eq!(next(&[]), Next::More);
        // Refused from its header alone: a message announced past its limit is never read.
        let Next::Refused((code, why)) = next(&[b'S', 0, 0x10, 0, 0]) else {
            panic!("a 1 MiB Sync passed");
        };
        assert_eq!(code, "08P01");
        assert!(why.contains("at most"), "{why}");
        let error = fatal("08P01", "bad\0thing");
        assert_eq!(error[0], b'E');
        assert!(error.windows(5).any(|w| w == b"08P01"));
    }

    /// A guarded stream over an in-memory client that has sent `startup`; the client's end.
    fn guarded(password: bool, startup: &[u8]) -> (tokio::io::DuplexStream, Checked) {
        let bounds = Bounds {
            max_statement: 1024,
            idle: Duration::from_millis(300),
            password,
        };
        let opening_ends = tokio::time::Instant::now() + Duration::from_millis(200);
        let (client, server) = tokio::io::duplex(1024);
        let checked = Checked::new(Box::new(server), startup.to_vec(), bounds, opening_ends);
        (client, checked)
    }

    /// What pgwire would read until the input ends, and the refusal then sent.
    async fn read_through(checked: &mut Checked) -> (Vec<u8>, Option<Closed>) {
        let mut read = Vec::new();
        checked.read_to_end(&mut read).await.unwrap();
        (read, checked.refused.clone())
    }

    fn sync() -> Vec<u8> {
        let mut sync = vec![b'S'];
        sync.extend_from_slice(&4_u32.to_be_bytes());
        sync
    }

    /// A client that connects and sends nothing is closed once the opening ends (when a
    /// password is due), and one that falls silent after a message once it has been idle.
    #[tokio::test]
    async fn a_silent_client_is_closed_before_and_after_its_password() {
        let (_client, mut checked) = guarded(true, b"startup");
        let (read, refused) = read_through(&mut checked).await;
        assert_eq!(read, b"startup", "the startup packet is read first");
        let (code, why) = refused.expect("closed");
        assert_eq!(code, "08P01");
        assert!(why.contains("password"), "{why}");

        let (mut client, mut checked) = guarded(true, b"");
        client.write_all(&sync()).await.unwrap();
        let started = tokio::time::Instant::now();
        let (read, refused) = read_through(&mut checked).await;
        assert_eq!(read, sync());
        let (code, why) = refused.expect("closed");
        assert_eq!(code, "57P05", "{why}");
        assert!(why.contains("idle_timeout"), "{why}");
        assert!(started.elapsed() >= Duration::from_millis(300));

        // Without tokens no password is due: only the idle time counts.
        let (_client, mut checked) = guarded(false, b"");
        assert_eq!(
            read_through(&mut checked).await.1.expect("closed").0,
            "57P05"
        );

        // Part of a message then silence is no way around the idle time.
        let (mut client, mut checked) = guarded(false, b"");
        client.write_all(&sync()[..2]).await.unwrap();
        let (read, refused) = read_through(&mut checked).await;
        assert!(read.is_empty(), "part of a message is not read: {read:?}");
        assert_eq!(refused.expect("closed").0, "57P05");
    }

    /// Messages come through whole however the client splits them; a bad one ends the input
    /// after the good ones before it (which pgwire answers), and a client that leaves ends it
    /// with no refusal.
    #[tokio::test]
    async fn only_whole_checked_messages_come_through() {
        let (mut client, mut checked) = guarded(false, b"");
        let mut query = vec![b'Q'];
        query.extend_from_slice(&13_u32.to_be_bytes());
        query.extend(cstr("SELECT 1"));
        let mut sent = sync();
        sent.extend(&query);
        sent.extend(sync());
        let writer = tokio::spawn(async move {
            for byte in sent {
                client.write_all(&[byte]).await.unwrap();
                tokio::task::yield_now().await;
            }
            client.write_all(b"!\0\0\0\x04").await.unwrap();
            client
        });
        let (read, refused) = read_through(&mut checked).await;
        let mut expected = sync();
        expected.extend(&query);
        expected.extend(sync());
        assert_eq!(read, expected);
        let (code, why) = refused.expect("refused");
        assert_eq!(code, "08P01");
        assert!(why.contains("unknown message type"), "{why}");
        assert!(checked.refusal().is_some_and(|fatal| fatal[0] == b'E'));
        drop(writer.await.unwrap());

        let (client, mut checked) = guarded(false, b"startup");
        drop(client);
        assert_eq!(
            read_through(&mut checked).await,
            (b"startup".to_vec(), None)
        );
    }

    /// What the guard holds grows with what a client sent, not with what it announced: a
    /// large message dripped in is read a chunk at a time.
    #[tokio::test]
    async fn a_large_announced_message_holds_only_what_came() {
        let (mut client, mut checked) = guarded(false, b"");
        let mut bind = vec![b'B'];
        bind.extend_from_slice(&(MAX_BIND as u32).to_be_bytes());
        bind.extend_from_slice(&[0; 100]);
        for byte in &bind {
            client.write_all(&[*byte]).await.unwrap();
            let mut out = [0u8; 16];
            let wait = Duration::from_millis(5);
            let read = tokio::time::timeout(wait, checked.read(&mut out)).await;
            assert!(read.is_err(), "nothing whole to read yet");
        }
        assert_eq!(checked.buf.len(), bind.len());
        assert!(
            checked.buf.capacity() <= 4 * CHUNK,
            "{} bytes held for {} sent",
            checked.buf.capacity(),
            bind.len()
        );
    }

    /// A client's end that counts the writes the server makes to it.
    struct Counted {
        inner: tokio::io::DuplexStream,
        writes: Arc<AtomicUsize>,
    }

    impl AsyncRead for Counted {
        fn poll_read(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
        }
    }

    impl AsyncWrite for Counted {
        fn poll_write(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            let this = self.get_mut();
            let written = Pin::new(&mut this.inner).poll_write(cx, buf);
            if let Poll::Ready(Ok(_)) = written {
                this.writes.fetch_add(1, Ordering::SeqCst);
            }
            written
        }

        fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.get_mut().inner).poll_flush(cx)
        }

        fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
        }
    }

    /// A guarded stream whose writes to the client (of `capacity` bytes unread) are counted.
    fn counted(capacity: usize) -> (tokio::io::DuplexStream, Checked, Arc<AtomicUsize>) {
        let (client, server) = tokio::io::duplex(capacity);
        let writes = Arc::new(AtomicUsize::new(0));
        let server = Counted {
            inner: server,
            writes: writes.clone(),
        };
        let bounds = Bounds {
            max_statement: 1024,
            idle: Duration::from_secs(60),
            password: false,
        };
        let opening_ends = tokio::time::Instant::now();
        let checked = Checked::new(Box::new(server), Vec::new(), bounds, opening_ends);
        (client, checked, writes)
    }

    /// pgwire flushes after each answer of an extended query; the client is sent them in one
    /// write at the ReadyForQuery, and what is held before the server waits on the client.
    #[tokio::test]
    async fn answers_reach_the_client_in_one_write_at_ready_for_query() {
        let (mut client, mut checked, writes) = counted(1 << 20);
        let answers: [&[u8]; 5] = [
            b"1\0\0\0\x04",
            b"2\0\0\0\x04",
            b"n\0\0\0\x04",
            b"C\0\0\0\x0dSELECT 0\0",
            b"Z\0\0\0\x05I",
        ];
        for answer in answers {
            assert_eq!(
                writes.load(Ordering::SeqCst),
                0,
                "sent before ReadyForQuery"
            );
            checked.write_all(answer).await.unwrap();
            checked.flush().await.unwrap();
        }
        assert_eq!(writes.load(Ordering::SeqCst), 1);
        let mut got = vec![0; answers.concat().len()];
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(got, answers.concat());

        // An answer to a client's Flush ends with no ReadyForQuery: it is sent once the server
        // waits for the client's next message.
        checked.write_all(answers[0]).await.unwrap();
        checked.flush().await.unwrap();
        assert_eq!(writes.load(Ordering::SeqCst), 1);
        let mut none = [0; 1];
        let waited = tokio::time::timeout(Duration::from_millis(50), checked.read(&mut none));
        assert!(waited.await.is_err(), "nothing was sent to read");
        let mut got = [0; 5];
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, answers[0]);

        // At the close, what is held is sent.
        checked.write_all(b"E\0\0\0\x05x").await.unwrap();
        checked.shutdown().await.unwrap();
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).await.unwrap();
        assert_eq!(rest, b"E\0\0\0\x05x");
    }

    /// A client that reads nothing makes the server wait once [`HOLD`] bytes are held: what
    /// a connection holds for it is bounded.
    #[tokio::test]
    async fn what_is_held_for_a_client_that_reads_nothing_is_bounded() {
        let (_client, mut checked, _writes) = counted(1024);
        let row = [b'D'; CHUNK];
        let writing = async {
            for _ in 0..100 {
                checked.write_all(&row).await.unwrap();
            }
        };
        let waited = tokio::time::timeout(Duration::from_millis(100), writing).await;
        assert!(
            waited.is_err(),
            "800 KiB taken for a client that reads nothing"
        );
        assert!(
            checked.out.len() <= HOLD + CHUNK,
            "{} bytes held",
            checked.out.len()
        );
    }

    #[test]
    fn named_statements_and_portals_are_counted_as_pgwire_keeps_them() {
        let parse = |name: &str| {
            let mut p = cstr(name);
            p.extend(cstr("SELECT 1"));
            p.extend_from_slice(&0_u16.to_be_bytes());
            p
        };
        let close = |what: u8, name: &str| {
            let mut c = vec![what];
            c.extend(cstr(name));
            c
        };
        let mut named = Named::default();
        for _ in 0..5 * MAX_NAMED {
            named.follow(b'P', &parse("")).unwrap();
        }
        assert!(
            named.held.is_empty(),
            "the unnamed statement is not kept apart"
        );
        for i in 0..MAX_NAMED {
            named.follow(b'P', &parse(&format!("s{i}"))).unwrap();
        }
        named.follow(b'P', &parse("s7")).unwrap();
        assert_eq!(named.held.len(), MAX_NAMED, "a name put again replaces");
        let err = named.follow(b'P', &parse("one-more")).unwrap_err();
        assert!(err.contains("close some"), "{err}");
        named.follow(b'C', &close(b'S', "s7")).unwrap();
        named.follow(b'P', &parse("one-more")).unwrap();
        named.follow(b'C', &close(b'P', "s8")).unwrap();
        assert_eq!(
            named.held.len(),
            MAX_NAMED,
            "closing a portal of that name closes no statement"
        );
        let sizes: usize = named.held.values().sum();
        assert_eq!(named.bytes, sizes);
    }
}
