//! Bytes ↔ messages for XMRig's Stratum dialect: newline-delimited JSON-RPC 2.0 with `login`,
//! `getjob`, `submit` and `keepalived` requests, `{code, message}` errors and `job`
//! notifications. No I/O: the connection layer feeds received bytes to a [`LineDecoder`] and
//! writes the lines [`to_line`] produces.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};
pub use crate::id::Id;

/// The JSON-RPC version string every message carries.
const JSONRPC: &str = "2.0";

/// Splits a byte stream into lines. An incomplete line is kept for the next [`push`]; a line
/// longer than the limit is an error, after which the connection should be closed.
///
/// [`push`]: LineDecoder::push
#[derive(Debug)]
pub struct LineDecoder {
    /// Received bytes; those before `start` have already been returned as lines.
    buf: Vec<u8>,
    /// Where the next line begins in `buf`.
    start: usize,
    /// How far past `start` has been searched for a newline, so each byte is scanned once.
    scanned: usize,
    /// The longest line accepted, not counting the `\n` (or `\r\n`).
    max_line: usize,
}

impl LineDecoder {
    /// A decoder that refuses lines longer than `max_line` bytes.
    pub fn new(max_line: usize) -> Self {
        Self {
            buf: Vec::new(),
            start: 0,
            scanned: 0,
            max_line,
        }
    }

    /// Appends received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        self.compact();
        self.buf.extend_from_slice(bytes);
    }

    /// The buffer to read the next bytes into, at its end, with room for `room` more: a
    /// connection reads straight into the decoder instead of into a buffer of its own.
    /// Bytes appended must be received bytes, as [`LineDecoder::push`] takes them.
    pub fn read_buffer(&mut self, room: usize) -> &mut Vec<u8> {
        self.compact();
        self.buf.reserve(room);
        &mut self.buf
    }

    /// Drops the bytes already returned as lines once they are half the buffer or more.
    fn compact(&mut self) {
        if self.start > 0 && self.start >= self.buf.len() / 2 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
    }

    /// Bytes received but not yet returned as a line.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// The next complete line without its line ending, skipping blank lines; `None` until a
    /// whole line has arrived. Fails once a line, complete or not, exceeds the limit.
    pub fn next_line(&mut self) -> Result<Option<&[u8]>> {
        loop {
            let pending = &self.buf[self.start..];
            let Some(found) = pending[self.scanned..].iter().position(|&b| b == b'\n') else {
                self.scanned = pending.len();
                if pending.len() > self.max_line {
                    return Err(Error::LineTooLong {
                        len: pending.len(),
                        max: self.max_line,
                    });
                }
                // Drained: the memory is given back, so an idle connection holds no buffer.
                if pending.is_empty() && self.buf.capacity() > 0 {
                    self.buf = Vec::new();
                    self.start = 0;
                    self.scanned = 0;
                }
                return Ok(None);
            };
            let newline = self.scanned + found;
            let mut end = newline;
            if end > 0 && pending[end - 1] == b'\r' {
                end -= 1;
            }
            if end > self.max_line {
                return Err(Error::LineTooLong {
                    len: end,
                    max: self.max_line,
                });
            }
            let line_start = self.start;
            self.start += newline + 1;
            self.scanned = 0;
            let line = &self.buf[line_start..line_start + end];
            if !line.iter().all(u8::is_ascii_whitespace) {
                return Ok(Some(&self.buf[line_start..line_start + end]));
            }
        }
    }
}

/// Serialises a message as one line: compact JSON followed by `\n`.
pub fn to_line<T: Serialize>(message: &T) -> Result<Vec<u8>> {
    let mut line = serde_json::to_vec(message).map_err(Error::Encode)?;
    line.push(b'\n');
    Ok(line)
}

/// A request from a miner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The id the response must echo.
    pub id: Id,
    /// The method and its parameters.
    pub call: Call,
}

/// The methods of XMRig's dialect, with their parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// Authenticate and receive the first job.
    Login(LoginParams),
    /// Ask for the current job again.
    GetJob(SessionParams),
    /// Submit a share.
    Submit(SubmitParams),
    /// Keep an idle connection open.
    Keepalived(SessionParams),
}

impl Call {
    /// The method name on the wire.
    pub fn method(&self) -> &'static str {
        match self {
            Call::Login(_) => "login",
            Call::GetJob(_) => "getjob",
            Call::Submit(_) => "submit",
            Call::Keepalived(_) => "keepalived",
        }
    }
}

/// `login` parameters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginParams {
    /// The miner's login: a wallet address, optionally with pool-specific suffixes.
    pub login: String,
    /// The password field, often a worker name or `x`.
    #[serde(default)]
    pub pass: String,
    /// The miner software's user agent, for logs and metrics.
    #[serde(default)]
    pub agent: String,
    /// The algorithms the miner supports, e.g. `rx/0`; empty when the miner did not say.
    #[serde(default)]
    pub algo: Vec<String>,
    /// The rig id, when the miner set one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rigid: Option<String>,
}

/// Parameters of requests that only name the session (`getjob`, `keepalived`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionParams {
    /// The session id the login response handed out.
    pub id: String,
}

/// `submit` parameters. Nonce and result stay strings here: checking their format is a step of
/// share validation, after the session and job checks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubmitParams {
    /// The session id.
    pub id: String,
    /// The job the share was found for.
    pub job_id: String,
    /// The 4-byte nonce as it sits in the blob, as 8 hex characters.
    pub nonce: String,
    /// The miner's RandomX hash, as 64 hex characters.
    pub result: String,
    /// The algorithm, which newer XMRig versions include.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub algo: Option<String>,
}

impl SubmitParams {
    /// The nonce bytes, in blob order; refuses anything but exactly 8 hex characters.
    pub fn nonce_bytes(&self) -> Result<[u8; 4]> {
        let mut nonce = [0u8; 4];
        // `decode_to_slice` also refuses any length but twice the output's.
        hex::decode_to_slice(&self.nonce, &mut nonce).map_err(|_| Error::MalformedNonce {
            nonce: self.nonce.clone(),
        })?;
        Ok(nonce)
    }

    /// The claimed hash bytes; refuses anything but exactly 64 hex characters.
    pub fn result_bytes(&self) -> Result<[u8; 32]> {
        let mut result = [0u8; 32];
        hex::decode_to_slice(&self.result, &mut result).map_err(|_| Error::MalformedResult {
            result: self.result.clone(),
        })?;
        Ok(result)
    }
}

/// Reads one line as a miner's request. Errors keep the request id when there was a readable
/// one, so the caller can answer it.
pub fn parse_request(line: &[u8]) -> Result<Request> {
    let value: Value = serde_json::from_slice(line).map_err(|err| Error::InvalidMessage {
        id: None,
        reason: format!("invalid JSON: {err}"),
    })?;
    let Value::Object(mut object) = value else {
        return Err(Error::InvalidMessage {
            id: None,
            reason: "not a JSON object".to_owned(),
        });
    };
    let id = match object.remove("id") {
        None => Id::Null,
        Some(id) => Id::deserialize(id).map_err(|_| Error::InvalidMessage {
            id: None,
            reason: "id is neither an integer, a string nor null".to_owned(),
        })?,
    };
    let method = match object.remove("method") {
        Some(Value::String(method)) => method,
        Some(_) => {
            return Err(Error::InvalidMessage {
                id: Some(id),
                reason: "method is not a string".to_owned(),
            });
        }
        None => {
            return Err(Error::InvalidMessage {
                id: Some(id),
                reason: "no method".to_owned(),
            });
        }
    };
    let params = object.remove("params").unwrap_or(Value::Null);
    let call = match method.as_str() {
        "login" => Call::Login(params_of(&id, "login", params)?),
        "getjob" => Call::GetJob(params_of(&id, "getjob", params)?),
        "submit" => Call::Submit(params_of(&id, "submit", params)?),
        "keepalived" => Call::Keepalived(params_of(&id, "keepalived", params)?),
        _ => return Err(Error::UnknownMethod { id, method }),
    };
    Ok(Request { id, call })
}

/// Deserialises `params` for `method`, naming the method and the id on failure.
fn params_of<T: serde::de::DeserializeOwned>(
    id: &Id,
    method: &'static str,
    params: Value,
) -> Result<T> {
    serde_json::from_value(params).map_err(|err| Error::InvalidParams {
        id: id.clone(),
        method,
        reason: err.to_string(),
    })
}

impl Serialize for Request {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let method = self.call.method();
        match &self.call {
            Call::Login(params) => RequestWire::new(&self.id, method, params).serialize(serializer),
            Call::GetJob(params) | Call::Keepalived(params) => {
                RequestWire::new(&self.id, method, params).serialize(serializer)
            }
            Call::Submit(params) => {
                RequestWire::new(&self.id, method, params).serialize(serializer)
            }
        }
    }
}

/// The wire shape of a request, borrowing its parts.
#[derive(Serialize)]
struct RequestWire<'a, P> {
    /// The request id.
    id: &'a Id,
    /// Always "2.0".
    jsonrpc: &'static str,
    /// The method name.
    method: &'static str,
    /// The method's parameters.
    params: &'a P,
}

impl<'a, P> RequestWire<'a, P> {
    /// A request on the wire.
    fn new(id: &'a Id, method: &'static str, params: &'a P) -> Self {
        Self {
            id,
            jsonrpc: JSONRPC,
            method,
            params,
        }
    }
}

/// The `{code, message}` object of an error response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorObject {
    /// The error code; XMRig only displays it, pools commonly send -1.
    pub code: i64,
    /// The message XMRig reacts to, e.g. "Low difficulty share" or "Unauthenticated".
    pub message: String,
}

/// A response to a request: a result, or an error object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response<T = Value> {
    /// The id of the request answered.
    pub id: Id,
    /// Always "2.0".
    #[serde(default = "jsonrpc_version")]
    pub jsonrpc: String,
    /// The error, or `null` on success (XMRig checks this first).
    #[serde(default)]
    pub error: Option<ErrorObject>,
    /// The result on success; left out of error responses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<T>,
}

/// Default for [`Response::jsonrpc`] when a peer leaves it out.
fn jsonrpc_version() -> String {
    JSONRPC.to_owned()
}

impl<T> Response<T> {
    /// A successful response carrying `result`.
    pub fn ok(id: Id, result: T) -> Self {
        Self {
            id,
            jsonrpc: jsonrpc_version(),
            error: None,
            result: Some(result),
        }
    }

    /// An error response.
    pub fn error(id: Id, code: i64, message: impl Into<String>) -> Self {
        Self {
            id,
            jsonrpc: jsonrpc_version(),
            error: Some(ErrorObject {
                code,
                message: message.into(),
            }),
            result: None,
        }
    }
}

/// A mining job, as sent in the login result, a `getjob` result and `job` notifications.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    /// The hashing blob, hex, with the miner's extra nonce already in its merkle root.
    pub blob: String,
    /// The job id the miner echoes in `submit`.
    pub job_id: String,
    /// The share target, see [`crate::encode_target`].
    pub target: String,
    /// The algorithm: [`ALGO_MONERO`] or [`ALGO_OPENSY`].
    pub algo: String,
    /// Where the 4-byte little-endian nonce goes in `blob`, for chains whose miners cannot
    /// find it in the blob themselves (OpenSY: 76, the end of a Bitcoin header). Absent for
    /// Monero, whose miners find it after the header's varints (39 today).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce_offset: Option<u32>,
    /// The height of the block being mined.
    pub height: u64,
    /// The RandomX seed hash (the key of the VM), hex.
    pub seed_hash: String,
    /// The next epoch's seed hash, when the node announced it, so miners can prepare.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_seed_hash: Option<String>,
}

/// The algorithm of Monero jobs (XMRig's name for RandomX as Monero uses it).
pub const ALGO_MONERO: &str = "rx/0";

/// The algorithm of OpenSY jobs: stock RandomX over an 80-byte Bitcoin header, keyed by an
/// earlier block's id, the nonce where the job's `nonce_offset` says. Only a miner that lists
/// it in its login's `algo` is sent such jobs (unmodified XMRig would write its nonce at byte
/// 39 and never find a share).
pub const ALGO_OPENSY: &str = "rx/opensy";

/// The result of a successful `login`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginResult {
    /// The session id the miner sends back in every later request.
    pub id: String,
    /// The first job.
    pub job: Job,
    /// Protocol extensions the pool supports, e.g. `keepalive`.
    #[serde(default)]
    pub extensions: Vec<String>,
    /// "OK".
    pub status: String,
}

/// The result of `submit` and `keepalived`: `{"status": "OK"}` or `{"status": "KEEPALIVED"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusResult {
    /// The status word.
    pub status: String,
}

/// The `job` notification the pool pushes on a new block or a difficulty change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobNotification(pub Job);

impl Serialize for JobNotification {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        /// The wire shape of a notification.
        #[derive(Serialize)]
        struct Wire<'a> {
            /// Always "2.0".
            jsonrpc: &'static str,
            /// Always "job".
            method: &'static str,
            /// The job.
            params: &'a Job,
        }
        Wire {
            jsonrpc: JSONRPC,
            method: "job",
            params: &self.0,
        }
        .serialize(serializer)
    }
}

/// What a pool sends a miner: a response or a job notification. Used by the test client.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerMessage {
    /// A response to one of the miner's requests.
    Response(Response),
    /// A new job.
    Job(Job),
}

/// Reads one line from a pool.
pub fn parse_server_message(line: &[u8]) -> Result<ServerMessage> {
    let invalid = |reason: String| Error::InvalidMessage { id: None, reason };
    let value: Value =
        serde_json::from_slice(line).map_err(|err| invalid(format!("invalid JSON: {err}")))?;
    match value.get("method") {
        None => Response::deserialize(value)
            .map(ServerMessage::Response)
            .map_err(|err| invalid(format!("invalid response: {err}"))),
        Some(Value::String(method)) if method == "job" => {
            let params = value.get("params").cloned().unwrap_or(Value::Null);
            Job::deserialize(params)
                .map(ServerMessage::Job)
                .map_err(|err| invalid(format!("invalid job: {err}")))
        }
        Some(other) => Err(invalid(format!("unexpected notification {other}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADDRESS: &str = "44AFFq5kSiGBoZ4NMDwYtN18obc8AemS33DBLWs3H7otXft3XjrpDtQGv7SqSsaBYBb98uNbr2VBBEt7f2wfn3RVGQBEP3A";
    const RESULT: &str = "fe9bd44ac1f7c8c3b54d07bcc6c1dabc31d8dd6b1be1f4a0bd8bb8e54c270100";
    const BLOB: &str = "1010dbcd88d806418015bb9ae982a1975da7d79277c2705727a56894ba0fb246adaabb1f4632e3000000002cfaa296f21dda6a68dda5ec811797223469c6fe0cc3e5a42fced6ecd73ba3b801";
    const SEED: &str = "418015bb9ae982a1975da7d79277c2705727a56894ba0fb246adaabb1f4632e3";

    fn decode_all(decoder: &mut LineDecoder) -> Result<Vec<String>> {
        let mut lines = Vec::new();
        while let Some(line) = decoder.next_line()? {
            lines.push(String::from_utf8(line.to_vec()).unwrap());
        }
        Ok(lines)
    }

    #[test]
    fn decoder_yields_complete_lines_only() {
        let mut decoder = LineDecoder::new(64);
        decoder.push(b"{\"a\":1}\n{\"b\"");
        assert_eq!(decode_all(&mut decoder).unwrap(), ["{\"a\":1}"]);
        assert_eq!(decoder.buffered(), 4);
        decoder.push(b":2}\r\n\n  \r\n{\"c\":3}\n");
        assert_eq!(
            decode_all(&mut decoder).unwrap(),
            ["{\"b\":2}", "{\"c\":3}"]
        );
        assert_eq!(decoder.buffered(), 0);
        assert!(decoder.next_line().unwrap().is_none());
    }

    #[test]
    fn decoder_handles_every_split_point() {
        let stream = b"{\"id\":1}\n{\"id\":2}\r\n\n{\"id\":3}\n";
        for split in 0..=stream.len() {
            let mut decoder = LineDecoder::new(16);
            decoder.push(&stream[..split]);
            let mut lines = decode_all(&mut decoder).unwrap();
            decoder.push(&stream[split..]);
            lines.extend(decode_all(&mut decoder).unwrap());
            assert_eq!(lines, ["{\"id\":1}", "{\"id\":2}", "{\"id\":3}"], "{split}");
        }
        // One byte at a time.
        let mut decoder = LineDecoder::new(16);
        let mut lines = Vec::new();
        for byte in stream {
            decoder.push(&[*byte]);
            lines.extend(decode_all(&mut decoder).unwrap());
        }
        assert_eq!(lines.len(), 3);
    }

    #[test]
    fn decoder_refuses_long_lines_complete_or_not() {
        let mut decoder = LineDecoder::new(8);
        decoder.push(b"12345678\n");
        assert_eq!(decode_all(&mut decoder).unwrap(), ["12345678"]);
        // The limit does not count the line ending.
        decoder.push(b"12345678\r\n");
        assert_eq!(decode_all(&mut decoder).unwrap(), ["12345678"]);

        let mut decoder = LineDecoder::new(8);
        decoder.push(b"123456789\n");
        assert!(matches!(
            decoder.next_line(),
            Err(Error::LineTooLong { len: 9, max: 8 })
        ));

        // No newline yet, but already too long: refused before the line ends.
        let mut decoder = LineDecoder::new(8);
        decoder.push(b"12345");
        assert!(decoder.next_line().unwrap().is_none());
        decoder.push(b"6789");
        assert!(matches!(
            decoder.next_line(),
            Err(Error::LineTooLong { len: 9, max: 8 })
        ));
    }

    #[test]
    fn decoder_gives_memory_back_once_drained() {
        let mut decoder = LineDecoder::new(1 << 20);
        let mut long = vec![b'x'; 100_000];
        long.push(b'\n');
        decoder.push(&long);
        assert_eq!(decoder.next_line().unwrap().map(<[u8]>::len), Some(100_000));
        assert!(decoder.next_line().unwrap().is_none());
        assert_eq!(decoder.buf.capacity(), 0);
        // Bytes read into its buffer are lines like pushed ones; a part line is kept.
        decoder.read_buffer(16).extend_from_slice(b"ab\ncd");
        assert_eq!(decoder.next_line().unwrap(), Some(&b"ab"[..]));
        assert!(decoder.next_line().unwrap().is_none());
        decoder.read_buffer(16).extend_from_slice(b"e\n");
        assert_eq!(decoder.next_line().unwrap(), Some(&b"cde"[..]));
        assert!(decoder.next_line().unwrap().is_none());
        assert_eq!(decoder.buf.capacity(), 0);
    }

    #[test]
    fn parses_xmrig_requests() {
        let login = format!(
            r#"{{"id":1,"jsonrpc":"2.0","method":"login","params":{{"login":"{ADDRESS}","pass":"x","agent":"XMRig/6.21.0 (Linux x86_64) libuv/1.44.2 gcc/11.4.0","algo":["cn/1","cn/2","cn/r","rx/0","rx/wow","rx/arq","argon2/chukwav2","ghostrider"]}}}}"#
        );
        let login_rig = format!(
            r#"{{"id":1,"jsonrpc":"2.0","method":"login","params":{{"login":"{ADDRESS}+50000","pass":"worker1","agent":"XMRig/6.22.2","algo":["rx/0"],"rigid":"rig-01"}}}}"#
        );
        let submit = format!(
            r#"{{"id":4,"jsonrpc":"2.0","method":"submit","params":{{"id":"6c5b1e2a","job_id":"17","nonce":"5f010000","result":"{RESULT}","algo":"rx/0"}}}}"#
        );
        let submit_old = format!(
            r#"{{"method":"submit","params":{{"id":"6c5b1e2a","job_id":"17","nonce":"5F010000","result":"{RESULT}"}},"id":"4"}}"#
        );
        let cases: Vec<(String, Request)> = vec![
            (
                login,
                Request {
                    id: Id::Number(1),
                    call: Call::Login(LoginParams {
                        login: ADDRESS.to_owned(),
                        pass: "x".to_owned(),
                        agent: "XMRig/6.21.0 (Linux x86_64) libuv/1.44.2 gcc/11.4.0".to_owned(),
                        algo: [
                            "cn/1",
                            "cn/2",
                            "cn/r",
                            "rx/0",
                            "rx/wow",
                            "rx/arq",
                            "argon2/chukwav2",
                            "ghostrider",
                        ]
                        .map(str::to_owned)
                        .to_vec(),
                        rigid: None,
                    }),
                },
            ),
            (
                login_rig,
                Request {
                    id: Id::Number(1),
                    call: Call::Login(LoginParams {
                        login: format!("{ADDRESS}+50000"),
                        pass: "worker1".to_owned(),
                        agent: "XMRig/6.22.2".to_owned(),
                        algo: vec!["rx/0".to_owned()],
                        rigid: Some("rig-01".to_owned()),
                    }),
                },
            ),
            (
                r#"{"id":2,"jsonrpc":"2.0","method":"getjob","params":{"id":"6c5b1e2a"}}"#
                    .to_owned(),
                Request {
                    id: Id::Number(2),
                    call: Call::GetJob(SessionParams {
                        id: "6c5b1e2a".to_owned(),
                    }),
                },
            ),
            (
                submit,
                Request {
                    id: Id::Number(4),
                    call: Call::Submit(SubmitParams {
                        id: "6c5b1e2a".to_owned(),
                        job_id: "17".to_owned(),
                        nonce: "5f010000".to_owned(),
                        result: RESULT.to_owned(),
                        algo: Some("rx/0".to_owned()),
                    }),
                },
            ),
            (
                submit_old,
                Request {
                    id: Id::String("4".to_owned()),
                    call: Call::Submit(SubmitParams {
                        id: "6c5b1e2a".to_owned(),
                        job_id: "17".to_owned(),
                        nonce: "5F010000".to_owned(),
                        result: RESULT.to_owned(),
                        algo: None,
                    }),
                },
            ),
            (
                r#"{"id":7,"jsonrpc":"2.0","method":"keepalived","params":{"id":"6c5b1e2a"}}"#
                    .to_owned(),
                Request {
                    id: Id::Number(7),
                    call: Call::Keepalived(SessionParams {
                        id: "6c5b1e2a".to_owned(),
                    }),
                },
            ),
        ];
        for (line, expected) in cases {
            let parsed = parse_request(line.as_bytes()).unwrap();
            assert_eq!(parsed, expected, "{line}");
            // Round trip: what we would send as a client parses back the same.
            let again = to_line(&parsed).unwrap();
            assert_eq!(again.last(), Some(&b'\n'));
            assert_eq!(parse_request(&again).unwrap(), expected);
        }
    }

    #[test]
    fn refuses_bad_requests_with_a_reason() {
        enum Want {
            Invalid(Option<Id>, &'static str),
            Unknown(Id, &'static str),
            Params(Id, &'static str, &'static str),
        }
        let cases: &[(&[u8], Want)] = &[
            (b"\xff\xfe garbage", Want::Invalid(None, "invalid JSON")),
            (b"{\"id\":1,", Want::Invalid(None, "invalid JSON")),
            (b"[1,2,3]", Want::Invalid(None, "not a JSON object")),
            (b"{\"id\":1.5,\"method\":\"login\"}", Want::Invalid(None, "id is")),
            (
                b"{\"id\":3,\"params\":{}}",
                Want::Invalid(Some(Id::Number(3)), "no method"),
            ),
            (
                b"{\"id\":3,\"method\":42}",
                Want::Invalid(Some(Id::Number(3)), "method is not a string"),
            ),
            (
                b"{\"id\":5,\"method\":\"mining.subscribe\",\"params\":[]}",
                Want::Unknown(Id::Number(5), "mining.subscribe"),
            ),
            (
                b"{\"id\":6,\"method\":\"login\",\"params\":{\"pass\":\"x\"}}",
                Want::Params(Id::Number(6), "login", "missing field `login`"),
            ),
            (
                b"{\"id\":7,\"method\":\"submit\",\"params\":{\"id\":\"s\",\"job_id\":\"1\",\"nonce\":1}}",
                Want::Params(Id::Number(7), "submit", "invalid type"),
            ),
            (
                b"{\"id\":8,\"method\":\"keepalived\"}",
                Want::Params(Id::Number(8), "keepalived", "invalid type: null"),
            ),
        ];
        for (line, want) in cases {
            let err = parse_request(line).unwrap_err();
            let shown = String::from_utf8_lossy(line);
            match (want, &err) {
                (Want::Invalid(want_id, reason), Error::InvalidMessage { id, reason: got }) => {
                    assert_eq!(id, want_id, "{shown}");
                    assert!(got.contains(reason), "{shown}: {got}");
                }
                (Want::Unknown(want_id, name), Error::UnknownMethod { id, method }) => {
                    assert_eq!(id, want_id);
                    assert_eq!(method, name);
                }
                (
                    Want::Params(want_id, name, reason),
                    Error::InvalidParams {
                        id,
                        method,
                        reason: got,
                    },
                ) => {
                    assert_eq!(id, want_id);
                    assert_eq!(method, name);
                    assert!(got.contains(reason), "{shown}: {got}");
                }
                _ => panic!("{shown}: unexpected {err:?}"),
            }
            // Whatever the failure, the id (if any) is there to answer with.
            assert_eq!(
                err.request_id().is_some(),
                !matches!(want, Want::Invalid(None, _))
            );
        }
    }

    #[test]
    fn checks_nonce_and_result_format() {
        let submit = |nonce: &str, result: &str| SubmitParams {
            id: "s".to_owned(),
            job_id: "1".to_owned(),
            nonce: nonce.to_owned(),
            result: result.to_owned(),
            algo: None,
        };
        assert_eq!(
            submit("5f010000", RESULT).nonce_bytes().unwrap(),
            [0x5f, 0x01, 0, 0]
        );
        assert_eq!(
            submit("DEADBEEF", RESULT).nonce_bytes().unwrap(),
            [0xde, 0xad, 0xbe, 0xef]
        );
        assert_eq!(submit("00", RESULT).result_bytes().unwrap()[31], 0x00);
        assert_eq!(submit("00", RESULT).result_bytes().unwrap()[0], 0xfe);
        for nonce in ["", "5f01000", "5f0100000", "5f01000g", "+f010000", "ünï"] {
            assert!(
                matches!(
                    submit(nonce, RESULT).nonce_bytes(),
                    Err(Error::MalformedNonce { .. })
                ),
                "{nonce:?}"
            );
        }
        let long = format!("{RESULT}00");
        let bad_char = RESULT.replace('f', "x");
        for result in ["", &RESULT[..62], long.as_str(), bad_char.as_str()] {
            assert!(
                matches!(
                    submit("00000000", result).result_bytes(),
                    Err(Error::MalformedResult { .. })
                ),
                "{result:?}"
            );
        }
    }

    fn job() -> Job {
        Job {
            blob: BLOB.to_owned(),
            job_id: "17".to_owned(),
            target: "b88d0600".to_owned(),
            algo: "rx/0".to_owned(),
            nonce_offset: None,
            height: 1,
            seed_hash: SEED.to_owned(),
            next_seed_hash: None,
        }
    }

    #[test]
    fn writes_pool_messages_as_xmrig_expects() {
        let login = Response::ok(
            Id::Number(1),
            LoginResult {
                id: "6c5b1e2a".to_owned(),
                job: job(),
                extensions: vec!["keepalive".to_owned()],
                status: "OK".to_owned(),
            },
        );
        let expected = format!(
            r#"{{"id":1,"jsonrpc":"2.0","error":null,"result":{{"id":"6c5b1e2a","job":{{"blob":"{BLOB}","job_id":"17","target":"b88d0600","algo":"rx/0","height":1,"seed_hash":"{SEED}"}},"extensions":["keepalive"],"status":"OK"}}}}"#
        );
        let cases: Vec<(Vec<u8>, String)> = vec![
            (to_line(&login).unwrap(), expected),
            (
                to_line(&Response::ok(
                    Id::Number(4),
                    StatusResult {
                        status: "OK".to_owned(),
                    },
                ))
                .unwrap(),
                r#"{"id":4,"jsonrpc":"2.0","error":null,"result":{"status":"OK"}}"#.to_owned(),
            ),
            (
                to_line(&Response::<()>::error(
                    Id::Number(5),
                    -1,
                    "Low difficulty share",
                ))
                .unwrap(),
                r#"{"id":5,"jsonrpc":"2.0","error":{"code":-1,"message":"Low difficulty share"}}"#
                    .to_owned(),
            ),
            (
                to_line(&Response::<()>::error(Id::Null, -1, "Unauthenticated")).unwrap(),
                r#"{"id":null,"jsonrpc":"2.0","error":{"code":-1,"message":"Unauthenticated"}}"#
                    .to_owned(),
            ),
            (
                to_line(&JobNotification(job())).unwrap(),
                format!(
                    r#"{{"jsonrpc":"2.0","method":"job","params":{{"blob":"{BLOB}","job_id":"17","target":"b88d0600","algo":"rx/0","height":1,"seed_hash":"{SEED}"}}}}"#
                ),
            ),
        ];
        for (line, expected) in cases {
            assert_eq!(String::from_utf8(line).unwrap(), format!("{expected}\n"));
        }
    }

    #[test]
    fn parses_pool_messages_as_a_client() {
        let line = to_line(&JobNotification(job())).unwrap();
        assert_eq!(
            parse_server_message(&line).unwrap(),
            ServerMessage::Job(job())
        );

        let login = format!(
            r#"{{"id":1,"jsonrpc":"2.0","error":null,"result":{{"id":"6c5b1e2a","job":{{"blob":"{BLOB}","job_id":"17","target":"b88d0600","algo":"rx/0","height":1,"seed_hash":"{SEED}"}},"extensions":["keepalive"],"status":"OK"}}}}"#
        );
        let ServerMessage::Response(response) = parse_server_message(login.as_bytes()).unwrap()
        else {
            panic!("not a response");
        };
        assert_eq!(response.id, Id::Number(1));
        assert!(response.error.is_none());
        let result: LoginResult = serde_json::from_value(response.result.unwrap()).unwrap();
        assert_eq!(result.job, job());

        let refused =
            br#"{"id":9,"jsonrpc":"2.0","error":{"code":-1,"message":"Duplicate share"}}"#;
        let ServerMessage::Response(response) = parse_server_message(refused).unwrap() else {
            panic!("not a response");
        };
        assert_eq!(response.error.unwrap().message, "Duplicate share");
        assert!(response.result.is_none());

        assert!(parse_server_message(br#"{"method":"mining.notify","params":[]}"#).is_err());
        assert!(parse_server_message(b"not json").is_err());
    }
}
