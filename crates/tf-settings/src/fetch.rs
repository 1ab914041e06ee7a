//! Asks the TensorFusion operator which worker to use.
//!
//! In Kubernetes the client gets `TENSOR_FUSION_OPERATOR_GET_CONNECTION_URL`
//! instead of a fixed connection info; a GET on it answers with a
//! connection-info string once a worker is assigned. This is a minimal
//! HTTP/1.1 client over [`std::net::TcpStream`], on purpose: the client
//! library lives inside the user's process and must not drag in an HTTP or
//! TLS stack.
//!
//! * **http:// only.** `https://` is refused with
//!   [`SettingsError::HttpsNotSupported`]; use the operator's plain-http
//!   (in-cluster) endpoint.
//! * Sends `Host`, `Accept: text/plain`, `Connection: close`, and
//!   `Authorization: Bearer <token>` when the service-account token file
//!   exists (default [`DEFAULT_TOKEN_PATH`]; `TF_SERVICE_ACCOUNT_TOKEN_PATH`
//!   overrides, empty disables). The token is re-read on every attempt
//!   because the kubelet rotates it.
//! * Reads bodies framed by `Content-Length`, chunked, or by connection
//!   close, at most [`MAX_BODY`] bytes.
//! * `200` → the body is parsed as a [`ConnectionInfo`]. `5xx`, `408`,
//!   `429`, and network failures (refused, reset, timeout, DNS) are retried
//!   with exponential backoff (200 ms doubling to 5 s) until the total
//!   deadline (`TF_CONNECTION_URL_TIMEOUT`, default 300 s): the operator may
//!   still be scheduling a worker. Other statuses fail at once.
//! * Connect waits at most 5 s and each read 30 s (the operator may
//!   long-poll), both clipped to the total deadline so nothing outlives it.
//!   Name resolution uses the system resolver, which has no timeout of ours.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Ipv6Addr, SocketAddr, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::connection::ConnectionInfo;
use crate::env::{
    non_empty, process_env, TENSOR_FUSION_OPERATOR_GET_CONNECTION_URL, TF_CONNECTION_URL_TIMEOUT,
    TF_SERVICE_ACCOUNT_TOKEN_PATH,
};
use crate::error::{quote, InfoOrigin, SettingsError};

/// Where Kubernetes mounts the pod's service-account token.
pub const DEFAULT_TOKEN_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";
/// Largest answer body accepted; a connection info is well under 1 KiB.
pub const MAX_BODY: usize = 64 * 1024;
/// Largest status line plus headers accepted.
const MAX_HEAD: usize = 16 * 1024;
/// Error bodies are only quoted, so waiting long for them is pointless.
const ERROR_BODY_READ_TIMEOUT: Duration = Duration::from_secs(1);
/// Never spin: the smallest pause between attempts.
const MIN_PAUSE: Duration = Duration::from_millis(10);

/// Timeouts, backoff and token location for [`fetch_connection_info`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchOptions {
    /// Give up when this much time has passed (`TF_CONNECTION_URL_TIMEOUT`,
    /// default 300 s).
    pub total_timeout: Duration,
    /// Per connect attempt (default 5 s).
    pub connect_timeout: Duration,
    /// Per read or write (default 30 s: the operator may hold the request
    /// until a worker is ready).
    pub read_timeout: Duration,
    /// First pause between attempts (default 200 ms); doubles each retry.
    pub initial_backoff: Duration,
    /// Longest pause between attempts (default 5 s).
    pub max_backoff: Duration,
    /// Bearer-token file, sent when it exists; `None` sends no token
    /// (default [`DEFAULT_TOKEN_PATH`], `TF_SERVICE_ACCOUNT_TOKEN_PATH`).
    pub token_path: Option<PathBuf>,
}

impl Default for FetchOptions {
    fn default() -> Self {
        FetchOptions {
            total_timeout: Duration::from_secs(300),
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(30),
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(5),
            token_path: Some(PathBuf::from(DEFAULT_TOKEN_PATH)),
        }
    }
}

impl FetchOptions {
    /// Defaults overridden by the process environment.
    pub fn from_env() -> Result<Self, SettingsError> {
        Self::from_env_map(&process_env)
    }

    /// Defaults overridden by `TF_CONNECTION_URL_TIMEOUT` (seconds, may be
    /// fractional, > 0) and `TF_SERVICE_ACCOUNT_TOKEN_PATH` (empty: no
    /// token), read through `lookup`.
    pub fn from_env_map(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Self, SettingsError> {
        let mut opts = FetchOptions::default();
        if let Some(v) = non_empty(lookup, TF_CONNECTION_URL_TIMEOUT) {
            opts.total_timeout = v
                .parse::<f64>()
                .ok()
                .filter(|s| *s > 0.0)
                .and_then(|s| Duration::try_from_secs_f64(s).ok())
                .ok_or(SettingsError::InvalidValue {
                    var: TF_CONNECTION_URL_TIMEOUT,
                    value: v,
                    expected: "a number of seconds greater than 0, e.g. 300",
                })?;
        }
        // Unlike other variables, set-but-empty is meaningful here: it turns
        // the token off (for operators outside the cluster).
        if let Some(v) = lookup(TF_SERVICE_ACCOUNT_TOKEN_PATH) {
            let v = v.trim();
            opts.token_path = (!v.is_empty()).then(|| PathBuf::from(v));
        }
        Ok(opts)
    }
}

/// GETs `url` until it answers a connection info or the deadline passes.
///
/// Errors: [`SettingsError::HttpsNotSupported`] / [`SettingsError::BadUrl`]
/// for the URL itself; [`SettingsError::HttpStatus`] for a non-retryable
/// status (4xx, 3xx); [`SettingsError::BadConnectionInfo`] or
/// [`SettingsError::BadHttpResponse`] for an answer that is not usable;
/// [`SettingsError::TokenFile`] for a token file that exists but cannot be
/// used; [`SettingsError::GaveUp`] when retryable failures last until the
/// deadline.
pub fn fetch_connection_info(
    url: &str,
    opts: &FetchOptions,
) -> Result<ConnectionInfo, SettingsError> {
    let url = url.trim();
    let target = HttpUrl::parse(url)?;
    let start = Instant::now();
    let deadline = start + opts.total_timeout;
    let mut backoff = opts.initial_backoff.max(MIN_PAUSE);
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        let why = match attempt(url, &target, opts, deadline) {
            Ok(info) => {
                tracing::debug!(url, attempts, %info, "got connection info");
                return Ok(info);
            }
            Err(Failure::Fatal(e)) => return Err(e),
            Err(Failure::Retry(why)) => why,
        };
        let remaining = deadline.saturating_duration_since(Instant::now());
        // Stop when not even one initial pause fits: an attempt started
        // that close to the deadline could not complete anyway.
        if remaining < opts.initial_backoff.max(MIN_PAUSE) {
            return Err(SettingsError::GaveUp {
                var: TF_CONNECTION_URL_TIMEOUT,
                url: url.to_owned(),
                attempts,
                elapsed: start.elapsed(),
                timeout: opts.total_timeout,
                last: why,
            });
        }
        // Never sleep more than half the time left, so a last attempt
        // still gets a fair share of it.
        let pause = backoff.min(remaining / 2).max(MIN_PAUSE);
        tracing::info!(
            url,
            attempt = attempts,
            error = %why,
            retry_in_ms = pause.as_millis() as u64,
            "connection URL not ready, retrying"
        );
        std::thread::sleep(pause);
        backoff = (backoff * 2).min(opts.max_backoff.max(MIN_PAUSE));
    }
}

/// Why one attempt failed.
enum Failure {
    /// Worth another try; the text is the "last answer" of a final error.
    Retry(String),
    /// Retrying cannot help.
    Fatal(SettingsError),
}

/// The parts of an `http://` URL needed for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HttpUrl {
    /// For name resolution: no brackets.
    host: String,
    port: u16,
    /// Request target: path and query, never empty.
    target: String,
    /// `Host:` header value: brackets for IPv6, port when not 80.
    host_header: String,
}

impl HttpUrl {
    pub(crate) fn parse(url: &str) -> Result<HttpUrl, SettingsError> {
        let bad = |reason: &str| SettingsError::BadUrl {
            var: TENSOR_FUSION_OPERATOR_GET_CONNECTION_URL,
            url: url.to_owned(),
            reason: reason.to_owned(),
        };
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| bad("missing http://"))?;
        if scheme.eq_ignore_ascii_case("https") {
            return Err(SettingsError::HttpsNotSupported {
                var: TENSOR_FUSION_OPERATOR_GET_CONNECTION_URL,
                url: url.to_owned(),
            });
        }
        if !scheme.eq_ignore_ascii_case("http") {
            return Err(bad("only http:// URLs are supported"));
        }
        let rest = rest.split('#').next().unwrap_or_default();
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, target) = rest.split_at(split);
        let target = match target {
            "" => "/".to_owned(),
            t if t.starts_with('?') => format!("/{t}"),
            t => t.to_owned(),
        };
        if target.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad(
                "the path contains spaces or control characters; percent-encode them",
            ));
        }
        if authority.contains('@') {
            return Err(bad(
                "user:password@ is not supported; the service-account token is sent as a bearer token",
            ));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6.split_once(']').ok_or_else(|| bad("'[' without ']'"))?;
            if host.parse::<Ipv6Addr>().is_err() {
                return Err(bad("not an IPv6 address inside [...]"));
            }
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':').ok_or_else(|| bad("junk after ']'"))?),
            };
            (host, port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        if host.contains(':') && !authority.starts_with('[') {
            return Err(bad(
                "an IPv6 host must be in brackets, e.g. http://[fd00::1]:8080/",
            ));
        }
        if host.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad("the host contains spaces or control characters"));
        }
        let port = match port {
            None | Some("") => 80,
            Some(p) => match p.parse::<u16>() {
                Ok(p) if p != 0 => p,
                _ => return Err(bad("the port must be an integer in 1..=65535")),
            },
        };
        let bracketed = if host.contains(':') {
            format!("[{host}]")
        } else {
            host.to_owned()
        };
        let host_header = if port == 80 {
            bracketed
        } else {
            format!("{bracketed}:{port}")
        };
        Ok(HttpUrl {
            host: host.to_owned(),
            port,
            target,
            host_header,
        })
    }
}

/// What became of the bearer token for one attempt; also explains 401/403.
enum Token {
    Sent(PathBuf, String),
    Missing(PathBuf),
    Disabled,
}

impl Token {
    fn read(path: Option<&Path>) -> Result<Token, SettingsError> {
        let Some(path) = path else {
            return Ok(Token::Disabled);
        };
        let fail = |reason: String| SettingsError::TokenFile {
            var: TF_SERVICE_ACCOUNT_TOKEN_PATH,
            path: path.to_owned(),
            reason,
        };
        let raw = match std::fs::read(path) {
            Ok(raw) => raw,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Ok(Token::Missing(path.to_owned()))
            }
            Err(e) => return Err(fail(e.to_string())),
        };
        let text = String::from_utf8(raw).map_err(|_| fail("not UTF-8 text".into()))?;
        let token = text.trim();
        if token.is_empty() {
            return Err(fail("the file is empty".into()));
        }
        // A newline inside would end the header and corrupt the request.
        if token.chars().any(char::is_control) {
            return Err(fail(
                "it contains control characters (several lines?)".into(),
            ));
        }
        Ok(Token::Sent(path.to_owned(), token.to_owned()))
    }

    /// Hint for 401/403 answers.
    fn hint(&self) -> String {
        match self {
            Token::Sent(path, _) => format!(
                "; the bearer token from {path:?} was sent and refused: check the pod's \
                 service account and its permissions, or {TF_SERVICE_ACCOUNT_TOKEN_PATH}"
            ),
            Token::Missing(path) => format!(
                "; no bearer token was sent because {path:?} does not exist: mount the \
                 service-account token or set {TF_SERVICE_ACCOUNT_TOKEN_PATH} to the token file"
            ),
            Token::Disabled => format!(
                "; no bearer token was sent because {TF_SERVICE_ACCOUNT_TOKEN_PATH} is empty"
            ),
        }
    }
}

/// One GET. Network trouble is `Retry`; anything retrying cannot fix is
/// `Fatal`.
fn attempt(
    url: &str,
    target: &HttpUrl,
    opts: &FetchOptions,
    deadline: Instant,
) -> Result<ConnectionInfo, Failure> {
    let token = Token::read(opts.token_path.as_deref()).map_err(Failure::Fatal)?;
    let stream = connect(target, opts.connect_timeout, deadline).map_err(|e| {
        Failure::Retry(format!(
            "cannot connect to {}: {e}",
            target.host_header_with_port()
        ))
    })?;
    let mut request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nAccept: text/plain\r\nConnection: close\r\n\
         User-Agent: tf-settings/{}\r\n",
        target.target,
        target.host_header,
        env!("CARGO_PKG_VERSION")
    );
    if let Token::Sent(_, t) = &token {
        request.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    request.push_str("\r\n");

    let mut conn = DeadlineStream {
        stream: &stream,
        deadline,
        per_op: opts.read_timeout,
    };
    let read_failed = |e: ReadError| match e {
        ReadError::Io(e) => Failure::Retry(format!("{e}")),
        ReadError::Malformed(reason) => Failure::Fatal(SettingsError::BadHttpResponse {
            url: url.to_owned(),
            reason,
        }),
    };
    conn.write_all(request.as_bytes())
        .map_err(|e| Failure::Retry(format!("sending the request: {e}")))?;
    let mut reader = BufReader::new(conn);
    let head = read_head(&mut reader).map_err(read_failed)?;

    if head.status == 200 {
        let body = read_body(&mut reader, head.framing).map_err(read_failed)?;
        let text = String::from_utf8(body).map_err(|_| {
            Failure::Fatal(SettingsError::BadHttpResponse {
                url: url.to_owned(),
                reason: "the 200 answer's body is not UTF-8 text".into(),
            })
        })?;
        return ConnectionInfo::parse_from(&text, InfoOrigin::Url(url.to_owned()))
            .map_err(Failure::Fatal);
    }

    // The body of an error is only quoted; don't wait long for it, and a
    // failure to read it must not hide the status.
    reader.get_mut().per_op = opts.read_timeout.min(ERROR_BODY_READ_TIMEOUT);
    let body = read_body(&mut reader, head.framing).unwrap_or_default();
    let body = String::from_utf8_lossy(&body).trim().to_owned();
    let status = head.status;
    if (500..=599).contains(&status) || status == 408 || status == 429 {
        return Err(Failure::Retry(format!(
            "{status} {}: {:?}",
            head.reason,
            quote(&body)
        )));
    }
    let hint = match status {
        401 | 403 => token.hint(),
        404 => format!("; check the path in {TENSOR_FUSION_OPERATOR_GET_CONNECTION_URL}"),
        300..=399 => format!(
            "; redirects are not followed: set {TENSOR_FUSION_OPERATOR_GET_CONNECTION_URL} \
             to the final URL{}",
            head.location.map(|l| format!(" ({l})")).unwrap_or_default()
        ),
        _ => String::new(),
    };
    Err(Failure::Fatal(SettingsError::HttpStatus {
        url: url.to_owned(),
        status,
        reason: head.reason,
        body,
        hint,
    }))
}

impl HttpUrl {
    /// `host:port` for error messages.
    fn host_header_with_port(&self) -> String {
        if self.port == 80 {
            format!("{}:80", self.host_header)
        } else {
            self.host_header.clone()
        }
    }
}

/// Tries every resolved address, each within the connect timeout and the
/// deadline.
fn connect(
    target: &HttpUrl,
    connect_timeout: Duration,
    deadline: Instant,
) -> io::Result<TcpStream> {
    let addrs: Vec<SocketAddr> = (target.host.as_str(), target.port)
        .to_socket_addrs()?
        .collect();
    let mut last = io::Error::new(
        io::ErrorKind::NotFound,
        "the host name resolved to no address",
    );
    for addr in addrs {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(deadline_reached());
        }
        match TcpStream::connect_timeout(&addr, connect_timeout.min(remaining)) {
            Ok(s) => return Ok(s),
            Err(e) => last = e,
        }
    }
    Err(last)
}

fn deadline_reached() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "total deadline reached")
}

/// Every read and write waits at most `per_op` and never past `deadline`,
/// so a peer trickling bytes cannot keep us beyond the total deadline.
struct DeadlineStream<'a> {
    stream: &'a TcpStream,
    deadline: Instant,
    per_op: Duration,
}

impl DeadlineStream<'_> {
    fn timeout(&self) -> io::Result<Duration> {
        let remaining = self.deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(deadline_reached());
        }
        Ok(self.per_op.min(remaining))
    }
}

/// Socket timeouts surface as `WouldBlock` on Unix; say what happened.
fn name_timeout(e: io::Error, waited: Duration) -> io::Error {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => io::Error::new(
            io::ErrorKind::TimedOut,
            format!("no answer within {:.1}s", waited.as_secs_f64()),
        ),
        _ => e,
    }
}

impl Read for DeadlineStream<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let t = self.timeout()?;
        self.stream.set_read_timeout(Some(t))?;
        self.stream.read(buf).map_err(|e| name_timeout(e, t))
    }
}

impl Write for DeadlineStream<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let t = self.timeout()?;
        self.stream.set_write_timeout(Some(t))?;
        self.stream.write(buf).map_err(|e| name_timeout(e, t))
    }

    fn flush(&mut self) -> io::Result<()> {
        self.stream.flush()
    }
}

#[derive(Debug)]
enum ReadError {
    /// The connection failed: retryable.
    Io(io::Error),
    /// The peer is not speaking HTTP as expected: not retryable.
    Malformed(String),
}

impl From<io::Error> for ReadError {
    fn from(e: io::Error) -> Self {
        ReadError::Io(e)
    }
}

/// How the body's end is found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Length(usize),
    Chunked,
    UntilClose,
    None,
}

#[derive(Debug)]
struct Head {
    status: u16,
    reason: String,
    framing: Framing,
    location: Option<String>,
}

/// One CRLF- (or LF-) terminated line, without its terminator.
fn read_line<R: BufRead>(r: &mut R, budget: &mut usize, what: &str) -> Result<String, ReadError> {
    let mut buf = Vec::new();
    let n = r
        .by_ref()
        .take(*budget as u64 + 1)
        .read_until(b'\n', &mut buf)?;
    if !buf.ends_with(b"\n") {
        if n > *budget {
            return Err(ReadError::Malformed(format!(
                "{what} longer than {MAX_HEAD} bytes"
            )));
        }
        return Err(ReadError::Io(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("connection closed in the middle of the {what}"),
        )));
    }
    *budget = budget.saturating_sub(n);
    buf.pop();
    if buf.ends_with(b"\r") {
        buf.pop();
    }
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

fn read_head<R: BufRead>(r: &mut R) -> Result<Head, ReadError> {
    let mut budget = MAX_HEAD;
    loop {
        let line = read_line(r, &mut budget, "headers")?;
        let mut parts = line.splitn(3, ' ');
        let version = parts.next().unwrap_or_default();
        if !version.starts_with("HTTP/1.") {
            return Err(ReadError::Malformed(format!(
                "not an HTTP/1.x answer (first line {:?})",
                quote(&line)
            )));
        }
        let status = parts
            .next()
            .filter(|s| s.len() == 3)
            .and_then(|s| s.parse::<u16>().ok())
            .filter(|s| (100..=599).contains(s))
            .ok_or_else(|| ReadError::Malformed(format!("bad status line {:?}", quote(&line))))?;
        let reason = parts.next().unwrap_or_default().trim().to_owned();

        let mut length: Option<usize> = None;
        let mut chunked = false;
        let mut location = None;
        loop {
            let line = read_line(r, &mut budget, "headers")?;
            if line.is_empty() {
                break;
            }
            let Some((name, value)) = line.split_once(':') else {
                return Err(ReadError::Malformed(format!(
                    "bad header line {:?}",
                    quote(&line)
                )));
            };
            let value = value.trim();
            match name.trim().to_ascii_lowercase().as_str() {
                "content-length" => {
                    let n = value.parse::<usize>().map_err(|_| {
                        ReadError::Malformed(format!("bad Content-Length {value:?}"))
                    })?;
                    if length.is_some_and(|m| m != n) {
                        return Err(ReadError::Malformed(
                            "conflicting Content-Length headers".into(),
                        ));
                    }
                    length = Some(n);
                }
                "transfer-encoding" => {
                    // Only the last coding frames the body; others would be
                    // compressions we did not ask for.
                    let last = value.rsplit(',').next().unwrap_or_default().trim();
                    if last.eq_ignore_ascii_case("chunked") {
                        chunked = true;
                    } else if !last.eq_ignore_ascii_case("identity") {
                        return Err(ReadError::Malformed(format!(
                            "unsupported Transfer-Encoding {value:?}"
                        )));
                    }
                }
                "location" => location = Some(value.to_owned()),
                _ => {}
            }
        }
        // 1xx are interim answers (e.g. 100 Continue); the real one follows.
        if (100..200).contains(&status) {
            continue;
        }
        let framing = if status == 204 || status == 304 {
            Framing::None
        } else if chunked {
            // RFC 9112: chunked wins over Content-Length.
            Framing::Chunked
        } else if let Some(n) = length {
            Framing::Length(n)
        } else {
            Framing::UntilClose
        };
        return Ok(Head {
            status,
            reason,
            framing,
            location,
        });
    }
}

fn too_large() -> ReadError {
    ReadError::Malformed(format!("the body is larger than {} KiB", MAX_BODY / 1024))
}

fn read_body<R: BufRead>(r: &mut R, framing: Framing) -> Result<Vec<u8>, ReadError> {
    let mut body = Vec::new();
    match framing {
        Framing::None => {}
        Framing::Length(n) => {
            if n > MAX_BODY {
                return Err(too_large());
            }
            body.resize(n, 0);
            r.read_exact(&mut body)?;
        }
        Framing::UntilClose => {
            r.by_ref()
                .take(MAX_BODY as u64 + 1)
                .read_to_end(&mut body)?;
            if body.len() > MAX_BODY {
                return Err(too_large());
            }
        }
        Framing::Chunked => {
            // The trailer section shares one budget; each chunk line gets
            // its own, so a body of many small chunks is fine while one
            // endless line is not.
            let mut trailer_budget = MAX_HEAD;
            loop {
                let mut budget = MAX_HEAD;
                let line = read_line(r, &mut budget, "chunk header")?;
                let hex = line.split(';').next().unwrap_or_default().trim();
                let size = usize::from_str_radix(hex, 16).map_err(|_| {
                    ReadError::Malformed(format!("bad chunk size {:?}", quote(&line)))
                })?;
                if size == 0 {
                    // Trailers end with an empty line; a peer that just
                    // closes instead has still sent the whole body.
                    while let Ok(l) = read_line(r, &mut trailer_budget, "trailers") {
                        if l.is_empty() {
                            break;
                        }
                    }
                    break;
                }
                if size > MAX_BODY - body.len() {
                    return Err(too_large());
                }
                let start = body.len();
                body.resize(start + size, 0);
                r.read_exact(&mut body[start..])?;
                if !read_line(r, &mut budget, "chunk end")?.is_empty() {
                    return Err(ReadError::Malformed("chunk longer than its size".into()));
                }
            }
        }
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::io::Cursor;

    fn url(u: &str) -> HttpUrl {
        HttpUrl::parse(u).unwrap_or_else(|e| panic!("{u}: {e}"))
    }

    fn bad_url_reason(u: &str) -> String {
        match HttpUrl::parse(u) {
            Err(SettingsError::BadUrl { reason, .. }) => reason,
            other => panic!("{u}: {other:?}"),
        }
    }

    #[test]
    fn url_forms() {
        assert_eq!(
            url("http://op.tf.svc:8080/api/conn?name=a"),
            HttpUrl {
                host: "op.tf.svc".into(),
                port: 8080,
                target: "/api/conn?name=a".into(),
                host_header: "op.tf.svc:8080".into()
            }
        );
        let u = url("HTTP://10.0.0.1");
        assert_eq!(
            (u.port, u.target.as_str(), u.host_header.as_str()),
            (80, "/", "10.0.0.1")
        );
        let u = url("http://[fd00::1]:81?x=1#frag");
        assert_eq!(u.host, "fd00::1");
        assert_eq!(u.target, "/?x=1");
        assert_eq!(u.host_header, "[fd00::1]:81");
        assert_eq!(url("http://h:/p").port, 80);
    }

    #[test]
    fn https_is_refused_with_a_clear_message() {
        let err = HttpUrl::parse("https://op/conn").unwrap_err();
        assert!(matches!(err, SettingsError::HttpsNotSupported { .. }));
        let msg = err.to_string();
        assert!(
            msg.starts_with("TLS is not supported by this client"),
            "{msg}"
        );
        assert!(msg.contains("http://"), "{msg}");
    }

    #[test]
    fn bad_urls() {
        assert_eq!(bad_url_reason("op:8080/conn"), "missing http://");
        assert_eq!(
            bad_url_reason("ftp://op/"),
            "only http:// URLs are supported"
        );
        assert_eq!(bad_url_reason("http:///x"), "no host");
        assert!(bad_url_reason("http://h:0/").contains("1..=65535"));
        assert!(bad_url_reason("http://h:99999/").contains("1..=65535"));
        assert!(bad_url_reason("http://u:p@h/").contains("not supported"));
        assert!(bad_url_reason("http://h/a b").contains("percent-encode"));
        assert!(bad_url_reason("http://[zz]/").contains("IPv6"));
        assert!(bad_url_reason("http://[::1/").contains("']'"));
        assert!(bad_url_reason("http://fd00::1/").contains("brackets"));
    }

    fn opts(vars: &[(&str, &str)]) -> Result<FetchOptions, SettingsError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        FetchOptions::from_env_map(&|k| map.get(k).cloned())
    }

    #[test]
    fn options_from_env() {
        assert_eq!(opts(&[]).unwrap(), FetchOptions::default());
        assert_eq!(
            opts(&[(TF_CONNECTION_URL_TIMEOUT, "1.5")])
                .unwrap()
                .total_timeout,
            Duration::from_millis(1500)
        );
        for bad in ["0", "-3", "soon", "inf", "NaN"] {
            let err = opts(&[(TF_CONNECTION_URL_TIMEOUT, bad)]).unwrap_err();
            assert!(
                err.to_string()
                    .starts_with(&format!("invalid TF_CONNECTION_URL_TIMEOUT=\"{bad}\"")),
                "{err}"
            );
        }
        assert_eq!(
            opts(&[(TF_SERVICE_ACCOUNT_TOKEN_PATH, "")])
                .unwrap()
                .token_path,
            None
        );
        assert_eq!(
            opts(&[(TF_SERVICE_ACCOUNT_TOKEN_PATH, "/t")])
                .unwrap()
                .token_path,
            Some(PathBuf::from("/t"))
        );
    }

    fn head(raw: &str) -> Result<Head, ReadError> {
        read_head(&mut Cursor::new(raw.as_bytes().to_vec()))
    }

    fn body(raw: &str) -> Result<Vec<u8>, ReadError> {
        let mut r = Cursor::new(raw.as_bytes().to_vec());
        let h = read_head(&mut r)?;
        read_body(&mut r, h.framing)
    }

    #[test]
    fn heads_and_framing() {
        let h = head("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n").unwrap();
        assert_eq!(
            (h.status, h.reason.as_str(), h.framing),
            (200, "OK", Framing::Length(5))
        );
        let h = head("HTTP/1.0 503\nX: y\n\n").unwrap();
        assert_eq!((h.status, h.framing), (503, Framing::UntilClose));
        let h = head("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n")
            .unwrap();
        assert_eq!(h.framing, Framing::Chunked);
        let h = head("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n").unwrap();
        assert_eq!((h.status, h.framing), (204, Framing::None));
    }

    #[test]
    fn malformed_heads() {
        for raw in [
            "SSH-2.0-OpenSSH\r\n\r\n",
            "HTTP/1.1 2000 OK\r\n\r\n",
            "HTTP/1.1 OK\r\n\r\n",
            "HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
        ] {
            assert!(matches!(head(raw), Err(ReadError::Malformed(_))), "{raw:?}");
        }
        let huge = format!("HTTP/1.1 200 OK\r\nX: {}\r\n\r\n", "a".repeat(MAX_HEAD));
        assert!(matches!(head(&huge), Err(ReadError::Malformed(_))));
        assert!(matches!(
            head("HTTP/1.1 200 OK\r\nX: y"),
            Err(ReadError::Io(_))
        ));
    }

    #[test]
    fn bodies() {
        assert_eq!(
            body("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabcdef").unwrap(),
            b"abc"
        );
        assert_eq!(
            body("HTTP/1.1 200 OK\r\n\r\nuntil close").unwrap(),
            b"until close"
        );
        assert_eq!(
            body("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4;ext=1\r\nnati\r\n3\r\nve+\r\n0\r\nTrailer: x\r\n\r\n")
                .unwrap(),
            b"native+"
        );
        // Closed right after the last chunk: still complete.
        assert_eq!(
            body("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n").unwrap(),
            b"x"
        );
        assert!(matches!(
            body("HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort"),
            Err(ReadError::Io(_))
        ));
        assert!(matches!(
            body("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"),
            Err(ReadError::Malformed(_))
        ));
        assert!(matches!(
            body("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nxy\r\n0\r\n\r\n"),
            Err(ReadError::Malformed(_))
        ));
    }

    #[test]
    fn bodies_are_capped() {
        let big = "a".repeat(MAX_BODY + 1);
        let cl = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
            MAX_BODY + 1
        );
        assert!(matches!(body(&cl), Err(ReadError::Malformed(_))));
        let close = format!("HTTP/1.1 200 OK\r\n\r\n{big}");
        assert!(matches!(body(&close), Err(ReadError::Malformed(_))));
        let chunked = format!(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{big}\r\n0\r\n\r\n",
            big.len()
        );
        assert!(matches!(body(&chunked), Err(ReadError::Malformed(_))));
        let exact = format!("HTTP/1.1 200 OK\r\n\r\n{}", &big[1..]);
        assert_eq!(body(&exact).unwrap().len(), MAX_BODY);
        // A huge hex size must not overflow.
        let overflow =
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffffff\r\n";
        assert!(matches!(body(overflow), Err(ReadError::Malformed(_))));
    }
}
