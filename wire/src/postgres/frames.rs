//! The guard in front of pgwire: every byte a PostgreSQL client sends passes through here, and
//! only well-formed messages reach pgwire, which panics on a message whose counts run past its
//! end (a `Parse` declaring more parameter types than it carries) and on a `Bind` with fewer
//! format codes than parameters (both found by `wire/tests/it/hostile_wire.rs`).
//!
//! The guard speaks the connection's opening itself: an `SSLRequest` is answered (`S` and the
//! TLS handshake when `query.tls` is set, `N` otherwise), a `GSSENCRequest` is declined, the
//! startup packet is size-checked. Then it copies the client's messages to pgwire over a local
//! socket pair (buffered: what a client sends together goes on in one write), each one checked
//! against its type's layout and size limit first; the first bad
//! one ends the connection with a FATAL `08P01` that says what was wrong. What pgwire answers is
//! copied back unchanged.
//!
//! The guard also bounds what a connection holds and how long it may hold it: the password
//! must come within [`OPENING`] of connecting, a connection that sends nothing for
//! `query.postgres.idle_timeout` is closed (FATAL `57P05`), and the named prepared statements
//! and portals it keeps (pgwire keeps each until the client closes it) are at most
//! [`MAX_NAMED`], of at most [`MAX_NAMED_BYTES`] in all (FATAL `53400`).

use std::collections::HashMap;
use std::io;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::{TcpStream, UnixStream};

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

/// A client behind the guard: pgwire's end of the socket pair, and whether the client speaks
/// TLS.
pub(super) struct Guarded {
    pub(super) pgwire: UnixStream,
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

/// Opens `tcp` (TLS when `tls` is set and the client asks) and starts copying its checked
/// messages to the returned socket; `None` when the client gave up or broke the opening.
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
    let (pgwire, ours) = UnixStream::pair().ok()?;
    tokio::spawn(relay(client, ours, startup, bounds, opening_ends));
    Some(Guarded { pgwire, secure })
}

/// A client's stream after the opening, plain or TLS.
type Client = Box<dyn Stream>;
trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

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

/// Copies the client's checked messages to pgwire and pgwire's answers back; a bad message
/// ends both with a FATAL error to the client.
async fn relay(
    client: Client,
    pgwire: UnixStream,
    startup: Vec<u8>,
    bounds: Bounds,
    opening_ends: tokio::time::Instant,
) {
    let (from_client, mut to_client) = tokio::io::split(client);
    let (mut from_pgwire, to_pgwire) = pgwire.into_split();
    // Buffered both ways: the messages a client sends together (an extended query's Parse,
    // Bind, Describe, Execute and Sync) are read in one call and handed to pgwire in one write,
    // not three reads and a write (and a wake-up of pgwire) each.
    let mut from_client = BufReader::new(from_client);
    let mut to_pgwire = BufWriter::new(to_pgwire);
    let answers = tokio::spawn(async move {
        let copied = tokio::io::copy(&mut from_pgwire, &mut to_client).await;
        (to_client, copied)
    });
    let sent = match to_pgwire.write_all(&startup).await {
        Ok(()) => to_pgwire.flush().await,
        Err(e) => Err(e),
    };
    let refused = match sent {
        Ok(()) => forward(&mut from_client, &mut to_pgwire, bounds, opening_ends).await,
        Err(_) => None,
    };
    // pgwire sees the end of input, ends its side, and the copy of its answers finishes.
    drop(to_pgwire.shutdown().await);
    drop(to_pgwire);
    let Ok((mut to_client, _)) = answers.await else {
        return;
    };
    if let Some(reason) = refused {
        tracing::info!(reason = %reason.1, "a PostgreSQL client was closed");
        // The client may be gone already; then nobody reads the reason.
        drop(to_client.write_all(&fatal(reason.0, &reason.1)).await);
    }
    drop(to_client.shutdown().await);
}

/// Why the guard closed a connection: its SQLSTATE and what to tell the client.
type Closed = (&'static str, String);

/// Forwards messages until the client stops (`None`) or is closed (why): a bad message, its
/// password not sent by `opening_ends`, `bounds.idle` without a message, or too much held.
async fn forward(
    from: &mut BufReader<impl AsyncRead + Unpin>,
    to: &mut (impl AsyncWrite + Unpin),
    bounds: Bounds,
    opening_ends: tokio::time::Instant,
) -> Option<Closed> {
    let mut named = Named::default();
    let mut first = bounds.password;
    loop {
        let deadline = if first {
            opening_ends
        } else {
            tokio::time::Instant::now() + bounds.idle
        };
        let kind = match tokio::time::timeout_at(deadline, from.read_u8()).await {
            Ok(Ok(kind)) => kind,
            Ok(Err(_)) => return None,
            Err(_) if first => {
                return Some(("08P01", "the password did not come in time".into()));
            }
            Err(_) => {
                return Some((
                    "57P05",
                    format!(
                        "closed after {:?} without a message (query.postgres.idle_timeout)",
                        bounds.idle
                    ),
                ));
            }
        };
        first = false;
        let Ok(len) = from.read_u32().await else {
            return None;
        };
        let len = len as usize;
        let limit = limit(kind, bounds.max_statement);
        if !(4..=limit + 4).contains(&len) {
            return Some((
                "08P01",
                format!(
                    "message {:?} of {len} bytes (at most {limit})",
                    kind as char
                ),
            ));
        }
        let mut frame = Vec::with_capacity(len + 1);
        frame.push(kind);
        frame.extend_from_slice(&(len as u32).to_be_bytes());
        frame.resize(len + 1, 0);
        if from.read_exact(&mut frame[5..]).await.is_err() {
            return None;
        }
        if let Err(reason) = check(kind, &frame[5..]) {
            return Some(("08P01", format!("message {:?}: {reason}", kind as char)));
        }
        if let Err(reason) = named.follow(kind, &frame[5..]) {
            return Some(("53400", reason));
        }
        if to.write_all(&frame).await.is_err() {
            return None;
        }
        // Handed on once no whole message is waiting behind it: the next read may wait.
        if !whole_message(from.buffer()) && to.flush().await.is_err() {
            return None;
        }
    }
}

/// Whether `buffered` starts with a whole message: its type, its length and that many bytes.
fn whole_message(buffered: &[u8]) -> bool {
    let len = buffered
        .get(1..5)
        .and_then(|l| <[u8; 4]>::try_from(l).ok())
        .map(u32::from_be_bytes);
    len.is_some_and(|len| buffered.len() > len as usize)
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
        assert!(whole_message(&[b'S', 0, 0, 0, 4]));
        assert!(whole_message(&[b'S', 0, 0, 0, 4, b'Q']));
        assert!(!whole_message(&[b'Q', 0, 0, 0, 6, b'x']));
        assert!(!whole_message(&[b'S', 0, 0]));
        assert!(!whole_message(&[]));
        let error = fatal("08P01", "bad\0thing");
        assert_eq!(error[0], b'E');
        assert!(error.windows(5).any(|w| w == b"08P01"));
    }

    /// A client that connects and sends nothing is closed once the opening ends (when a
    /// password is due), and one that falls silent after a message once it has been idle.
    #[tokio::test]
    async fn a_silent_client_is_closed_before_and_after_its_password() {
        let bounds = |password| Bounds {
            max_statement: 1024,
            idle: Duration::from_millis(300),
            password,
        };
        let soon = || tokio::time::Instant::now() + Duration::from_millis(200);
        let (_client, server) = tokio::io::duplex(1024);
        let mut server = BufReader::new(server);
        let closed = forward(&mut server, &mut tokio::io::sink(), bounds(true), soon()).await;
        let (code, why) = closed.expect("closed");
        assert_eq!(code, "08P01");
        assert!(why.contains("password"), "{why}");

        let (mut client, server) = tokio::io::duplex(1024);
        let mut server = BufReader::new(server);
        let mut sync = vec![b'S'];
        sync.extend_from_slice(&4_u32.to_be_bytes());
        client.write_all(&sync).await.unwrap();
        let started = tokio::time::Instant::now();
        let closed = forward(&mut server, &mut tokio::io::sink(), bounds(true), soon()).await;
        let (code, why) = closed.expect("closed");
        assert_eq!(code, "57P05", "{why}");
        assert!(why.contains("idle_timeout"), "{why}");
        assert!(started.elapsed() >= Duration::from_millis(300));

        // Without tokens no password is due: only the idle time counts.
        let (_client, server) = tokio::io::duplex(1024);
        let mut server = BufReader::new(server);
        let closed = forward(&mut server, &mut tokio::io::sink(), bounds(false), soon()).await;
        assert_eq!(closed.expect("closed").0, "57P05");
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
