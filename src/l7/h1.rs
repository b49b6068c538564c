//! The HTTP/1.1 wire format of an upstream exchange, without I/O: the request head
//! written, the response head parsed and its body's framing decided (RFC 9112 section 6),
//! and the chunked transfer coding decoded.
//!
//! The upstream pool ([`super::upstream`]) drives these on the request's own task: it
//! writes the head and body, reads until [`parse_response_head`] has a complete head, and
//! hands the rest of the bytes to the response body, which yields them through
//! [`Framing`]. No connection task, no channel between the request and its connection.
//!
//! An upstream is trusted less than a client would like: a head that does not parse, is
//! larger than [`MAX_RESPONSE_HEAD`] or has more than [`MAX_RESPONSE_HEADERS`] lines, a
//! `101 Switching Protocols`, and differing `Content-Length` values are all errors (the
//! proxy answers 502), and a response framed by both `Transfer-Encoding` and
//! `Content-Length` is read by the former and its connection is not reused.

use std::io::Write as _;

use bytes::{Buf, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode};

/// The largest upstream response head accepted (status line and headers).
pub const MAX_RESPONSE_HEAD: usize = 64 * 1024;
/// The most header lines an upstream response head may have.
pub const MAX_RESPONSE_HEADERS: usize = 100;
/// The longest chunk-size line (with extensions) or trailer section accepted.
const MAX_CHUNK_LINE: usize = 4096;
const MAX_TRAILERS: usize = 16 * 1024;

/// Why an upstream's bytes are not a usable HTTP/1.1 response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum H1Error {
    /// The response head does not parse.
    #[error("malformed response head")]
    Head,
    /// The response head is larger than [`MAX_RESPONSE_HEAD`] or has too many lines.
    #[error("response head too large")]
    HeadTooLarge,
    /// A status the proxy cannot pass on (101, or outside 100-999).
    #[error("unsupported response status")]
    Status,
    /// `Content-Length` is not a number, or its values differ.
    #[error("invalid content-length")]
    ContentLength,
    /// A chunk-size line, chunk end or trailer section is malformed or too long.
    #[error("malformed chunked body")]
    Chunked,
    /// The upstream closed the connection before the body's end.
    #[error("upstream closed mid-body")]
    Truncated,
}

/// Writes a request head in origin-form into `out` (cleared first). `Content-Length`
/// and `Transfer-Encoding` from `headers` are left out: the body is buffered, so its
/// length is known and written here (for a non-empty body, and for methods that carry
/// one). Several `Cookie` values (an HTTP/2 client's crumbs) go as one line, joined by
/// `"; "`.
pub fn encode_request_head(req: &RequestHead<'_>, body_len: usize, out: &mut Vec<u8>) {
    let RequestHead {
        method,
        path_and_query,
        headers,
        host,
    } = *req;
    out.clear();
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(if path_and_query.is_empty() {
        b"/"
    } else {
        path_and_query.as_bytes()
    });
    out.extend_from_slice(b" HTTP/1.1\r\n");
    if let Some(host) = host {
        out.extend_from_slice(b"host: ");
        out.extend_from_slice(host.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    let mut had_length = false;
    let mut cookie_written = false;
    for (name, value) in headers {
        if name == header::CONTENT_LENGTH {
            had_length = true;
            continue;
        }
        if name == header::TRANSFER_ENCODING {
            continue;
        }
        if name == header::COOKIE {
            // one line, "; " between the values (RFC 9113 8.2.3 for an HTTP/2 client's
            // crumbs; RFC 6265 5.4 allows one Cookie line)
            if std::mem::replace(&mut cookie_written, true) {
                continue;
            }
            out.extend_from_slice(b"cookie: ");
            for (i, crumb) in headers.get_all(header::COOKIE).iter().enumerate() {
                if i > 0 {
                    out.extend_from_slice(b"; ");
                }
                out.extend_from_slice(crumb.as_bytes());
            }
            out.extend_from_slice(b"\r\n");
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if body_len > 0 || had_length || matches!(*method, Method::POST | Method::PUT | Method::PATCH) {
        let _ = write!(out, "content-length: {body_len}\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// The head of a request to an HTTP/1.1 upstream, borrowed from the proxy's request: a
/// request that may be retried keeps its headers instead of copying them for each try.
#[derive(Debug, Clone, Copy)]
pub struct RequestHead<'a> {
    /// The method.
    pub method: &'a Method,
    /// The path and query (origin-form; empty means `/`).
    pub path_and_query: &'a str,
    /// The headers to send (`Content-Length` and `Transfer-Encoding` among them are not).
    pub headers: &'a HeaderMap,
    /// A `Host` to write first, for a request whose headers name none.
    pub host: Option<&'a str>,
}

/// A parsed response head: the parts of an `http::Response` and what its body needs.
#[derive(Debug)]
pub struct ResponseHead {
    /// The status.
    pub status: StatusCode,
    /// The headers, their values sharing the head's bytes.
    pub headers: HeaderMap,
    /// How the body is delimited.
    pub framing: Framing,
    /// Whether the connection may carry another request after this body.
    pub keep_alive: bool,
}

/// One header line kept for the response: its name and its value's byte range in the
/// head.
pub type HeadLine = (HeaderName, usize, usize);

/// Header names remembered by position, at most this many.
const NAME_MEMO: usize = 32;

/// A connection's scratch for reading response heads: the kept lines of the head being
/// read, and the header names of the last head by position. An upstream sends the same
/// names in the same order response after response, and a name found as it was where it
/// was last time is cloned instead of parsed again (`HeaderName::from_bytes` lowercases
/// and matches every name: ~150 instructions each, ~1,200 a response from nginx).
#[derive(Debug, Default)]
pub struct HeadScratch {
    lines: Vec<HeadLine>,
    names: Vec<(Box<[u8]>, HeaderName)>,
}

impl HeadScratch {
    /// The name of the `i`th header line, `raw` as received.
    fn name(&mut self, i: usize, raw: &[u8]) -> Result<HeaderName, H1Error> {
        if let Some((seen, name)) = self.names.get(i) {
            if **seen == *raw {
                return Ok(name.clone());
            }
        }
        let name = HeaderName::from_bytes(raw).map_err(|_| H1Error::Head)?;
        let remembered = (Box::from(raw), name.clone());
        match i.cmp(&self.names.len()) {
            std::cmp::Ordering::Less => self.names[i] = remembered,
            std::cmp::Ordering::Equal if i < NAME_MEMO => self.names.push(remembered),
            _ => {}
        }
        Ok(name)
    }
}

/// What a response head's lines say about the body and the connection, gathered while the
/// lines are read, so no map lookup follows.
#[derive(Debug, Default)]
struct HeadFacts {
    /// `Content-Length`: `Some(Ok(n))` when every value is `n`, `Some(Err(()))` when one
    /// is not a number or two differ.
    length: Option<Result<u64, ()>>,
    /// `Transfer-Encoding`: whether its last coding is `chunked`.
    chunked: Option<bool>,
    /// `Connection` lists `close`.
    close: bool,
    /// `Connection` names headers beyond the standard hop-by-hop ones (dropped as well).
    names_more: bool,
}

/// Whether a response with `status` to `request` has no body whatever its framing headers
/// say (RFC 9112 section 6.3: any response to HEAD, 204, 304).
pub(super) fn bodiless(status: StatusCode, request: &Method) -> bool {
    *request == Method::HEAD
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
}

impl HeadFacts {
    fn content_length(&mut self, value: &[u8]) {
        for part in value.split(|b| *b == b',') {
            let part = trim(part);
            let n = (!part.is_empty() && part.len() <= 19 && part.iter().all(u8::is_ascii_digit))
                .then(|| part.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0')));
            self.length = match (self.length, n) {
                (None, Some(n)) => Some(Ok(n)),
                (Some(Ok(l)), Some(n)) if l == n => Some(Ok(l)),
                _ => Some(Err(())),
            };
        }
    }

    /// The body's framing (RFC 9112 section 6.3) and whether it leaves the connection
    /// reusable (false when it runs to the close, or when both framings were sent).
    fn framing(&self, status: StatusCode, request: &Method) -> Result<(Framing, bool), H1Error> {
        if bodiless(status, request) {
            return Ok((Framing::Empty, true));
        }
        match (self.chunked, self.length) {
            (Some(true), length) => Ok((Framing::Chunked(Chunked::default()), length.is_none())),
            (Some(false), _) => Ok((Framing::Close, false)),
            (None, Some(Err(()))) => Err(H1Error::ContentLength),
            (None, Some(Ok(0))) => Ok((Framing::Empty, true)),
            (None, Some(Ok(n))) => Ok((Framing::Length(n), true)),
            (None, None) => Ok((Framing::Close, false)),
        }
    }
}

/// Whether `name` is a hop-by-hop header (RFC 9110 section 7.6.1, and the older ones
/// proxies still drop): one of [`HOP_BY_HOP`]. A match on the name's text, one length
/// switch and at most two compares, instead of nine comparisons.
pub fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
    )
}

/// The hop-by-hop headers [`is_hop_by_hop`] matches, lowercase: the pool never passes
/// them on, in either direction.
pub const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Whether a token of a `Connection` value names a hop-by-hop header, in any case.
fn names_hop_by_hop(token: &[u8]) -> bool {
    HOP_BY_HOP
        .iter()
        .any(|n| n.as_bytes().eq_ignore_ascii_case(token))
}

/// Parses a response head at the start of `buf`. A complete head comes back as the
/// byte ranges of the header values to keep (in `lines`, cleared first) and what the
/// head says about the body: the caller splits the head off its buffer with
/// [`take_head`], which shares those bytes instead of copying them. The hop-by-hop
/// headers, those `Connection` names, and a `Content-Length` beside a
/// `Transfer-Encoding` are left out of `lines`: they describe this connection, not the
/// response the client gets.
fn parse_response_head(
    buf: &[u8],
    request: &Method,
    scratch: &mut HeadScratch,
) -> Result<ParsedHead, H1Error> {
    // uninitialised: httparse writes the lines it finds; zeroing all of them cost more
    // than parsing a short head
    let mut raw =
        [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_RESPONSE_HEADERS];
    let mut resp = httparse::Response::new(&mut []);
    let len = match httparse::ParserConfig::default()
        .parse_response_with_uninit_headers(&mut resp, buf, &mut raw)
    {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            return if buf.len() >= MAX_RESPONSE_HEAD {
                Err(H1Error::HeadTooLarge)
            } else {
                Ok(ParsedHead::Partial)
            };
        }
        Err(httparse::Error::TooManyHeaders) => return Err(H1Error::HeadTooLarge),
        Err(_) => return Err(H1Error::Head),
    };
    if len > MAX_RESPONSE_HEAD {
        return Err(H1Error::HeadTooLarge);
    }
    let code = resp.code.ok_or(H1Error::Head)?;
    let status = StatusCode::from_u16(code).map_err(|_| H1Error::Status)?;
    if code == 101 {
        return Err(H1Error::Status);
    }
    if status.is_informational() {
        return Ok(ParsedHead::Interim(len));
    }
    let http10 = resp.version == Some(0);
    let base = buf.as_ptr() as usize;
    let mut facts = HeadFacts::default();
    scratch.lines.clear();
    for (i, h) in resp.headers.iter().enumerate() {
        let name = scratch.name(i, h.name.as_bytes())?;
        if name == header::CONTENT_LENGTH {
            facts.content_length(h.value);
        } else if name == header::TRANSFER_ENCODING {
            let last = h.value.rsplit(|b| *b == b',').next().map(trim);
            facts.chunked = Some(last.is_some_and(|c| c.eq_ignore_ascii_case(b"chunked")));
            continue;
        } else if name == header::CONNECTION {
            for token in h.value.split(|b| *b == b',').map(trim) {
                if token.eq_ignore_ascii_case(b"close") {
                    facts.close = true;
                } else if !token.is_empty() && !names_hop_by_hop(token) {
                    facts.names_more = true;
                }
            }
            continue;
        } else if is_hop_by_hop(&name) {
            continue;
        }
        let start = h.value.as_ptr() as usize - base;
        scratch.lines.push((name, start, start + h.value.len()));
    }
    let lines = &mut scratch.lines;
    if facts.chunked.is_some() {
        // read by its transfer coding: the length a sender also gave is not passed on
        lines.retain(|l| l.0 != header::CONTENT_LENGTH);
    }
    if facts.names_more {
        let named = |n: &HeaderName| {
            resp.headers
                .iter()
                .filter(|h| h.name.eq_ignore_ascii_case("connection"))
                .flat_map(|h| h.value.split(|b| *b == b','))
                .any(|t| trim(t).eq_ignore_ascii_case(n.as_str().as_bytes()))
        };
        lines.retain(|l| !named(&l.0));
    }
    let (framing, reusable) = facts.framing(status, request)?;
    Ok(ParsedHead::Complete {
        status,
        framing,
        keep_alive: !http10 && !facts.close && reusable,
        len,
    })
}

/// The next final response head at the start of `buf`, split off it; interim (1xx)
/// responses before it are skipped. `Ok(None)`: the head is not complete yet, read more.
/// `request` is the request's method (a response to HEAD has no body).
#[cfg(test)]
pub fn next_head(buf: &mut BytesMut, request: &Method) -> Result<Option<ResponseHead>, H1Error> {
    next_head_with(buf, request, &mut HeadScratch::default())
}

/// [`next_head`] with the caller's scratch (a connection keeps one, so a response costs
/// no allocation for its lines, and its header names are parsed once per connection).
pub fn next_head_with(
    buf: &mut BytesMut,
    request: &Method,
    scratch: &mut HeadScratch,
) -> Result<Option<ResponseHead>, H1Error> {
    loop {
        match parse_response_head(buf, request, scratch)? {
            ParsedHead::Partial => return Ok(None),
            ParsedHead::Interim(n) => buf.advance(n),
            ParsedHead::Complete {
                status,
                framing,
                keep_alive,
                len,
            } => {
                return take_head(buf, status, framing, keep_alive, &mut scratch.lines, len)
                    .map(Some)
            }
        }
    }
}

/// [`parse_response_head`]'s answer, before the head is split off the buffer.
#[derive(Debug)]
enum ParsedHead {
    /// Not a whole head yet: read more.
    Partial,
    /// An interim (1xx) response of this many bytes, to be skipped.
    Interim(usize),
    /// A final response head of `len` bytes, its header lines in the caller's scratch.
    Complete {
        /// The status.
        status: StatusCode,
        /// How the body is delimited.
        framing: Framing,
        /// Whether the connection may carry another request after this body.
        keep_alive: bool,
        /// The head's length.
        len: usize,
    },
}

/// Splits a complete head off `buf` and builds the response head: headers sharing the
/// head's bytes (no copy per value). `lines` is drained.
fn take_head(
    buf: &mut BytesMut,
    status: StatusCode,
    framing: Framing,
    keep_alive: bool,
    lines: &mut Vec<HeadLine>,
    len: usize,
) -> Result<ResponseHead, H1Error> {
    let head: Bytes = buf.split_to(len).freeze();
    let mut headers = HeaderMap::with_capacity(lines.len());
    for (name, start, end) in lines.drain(..) {
        let value =
            HeaderValue::from_maybe_shared(head.slice(start..end)).map_err(|_| H1Error::Head)?;
        headers.append(name, value);
    }
    Ok(ResponseHead {
        status,
        headers,
        framing,
        keep_alive,
    })
}

fn trim(s: &[u8]) -> &[u8] {
    let start = s
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(s.len());
    let end = s
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &s[start..end.max(start)]
}

/// How a response body is delimited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    Empty,
    /// This many bytes still to come.
    Length(u64),
    /// The chunked transfer coding, in this decoding state.
    Chunked(Chunked),
    /// Everything until the upstream closes the connection.
    Close,
}

/// What the next step of a body's decoding produced.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Body bytes.
    Data(Bytes),
    /// The buffer holds no more of the body: read more.
    NeedMore,
    /// The body is complete.
    End,
}

impl Framing {
    /// The next piece of the body from `buf` (bytes read from the connection; what is
    /// consumed is split off). At the end of a [`Close`](Framing::Close) body the caller
    /// sees the connection's end itself; everything in `buf` is body.
    pub fn next(&mut self, buf: &mut BytesMut) -> Result<Step, H1Error> {
        match self {
            Framing::Empty => Ok(Step::End),
            Framing::Length(0) => Ok(Step::End),
            Framing::Length(left) => {
                if buf.is_empty() {
                    return Ok(Step::NeedMore);
                }
                let n = (*left).min(buf.len() as u64) as usize;
                *left -= n as u64;
                Ok(Step::Data(buf.split_to(n).freeze()))
            }
            Framing::Chunked(c) => c.next(buf),
            Framing::Close => {
                if buf.is_empty() {
                    Ok(Step::NeedMore)
                } else {
                    Ok(Step::Data(buf.split().freeze()))
                }
            }
        }
    }

    /// Whether nothing of the body is left to read.
    pub fn is_done(&self) -> bool {
        matches!(
            self,
            Framing::Empty
                | Framing::Length(0)
                | Framing::Chunked(Chunked {
                    state: ChunkState::Done,
                    ..
                })
        )
    }

    /// The exact length still to come, when the framing says it.
    pub fn exact_remaining(&self) -> Option<u64> {
        match self {
            Framing::Empty => Some(0),
            Framing::Length(n) => Some(*n),
            Framing::Chunked(c) if c.state == ChunkState::Done => Some(0),
            _ => None,
        }
    }
}

/// The chunked transfer coding's decoder state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Chunked {
    state: ChunkState,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum ChunkState {
    /// Expecting a chunk-size line.
    #[default]
    Size,
    /// This many bytes of chunk data still to come.
    Data(u64),
    /// Expecting the CRLF after a chunk's data.
    DataEnd,
    /// After the last chunk: trailer lines until an empty one.
    Trailers,
    /// The body is complete.
    Done,
}

/// The offset just past the first CRLF (or bare LF) in `buf`, if any.
fn line_end(buf: &[u8]) -> Option<usize> {
    buf.iter().position(|b| *b == b'\n').map(|i| i + 1)
}

impl Chunked {
    fn next(&mut self, buf: &mut BytesMut) -> Result<Step, H1Error> {
        loop {
            match self.state {
                ChunkState::Size => {
                    let Some(end) = line_end(buf) else {
                        return if buf.len() > MAX_CHUNK_LINE {
                            Err(H1Error::Chunked)
                        } else {
                            Ok(Step::NeedMore)
                        };
                    };
                    if end > MAX_CHUNK_LINE {
                        return Err(H1Error::Chunked);
                    }
                    let line = &buf[..end];
                    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
                    if digits == 0 || digits > 15 {
                        return Err(H1Error::Chunked);
                    }
                    // After the size: optional whitespace and extensions (";..."), then the
                    // line end. Nothing else (a second number would be smuggling).
                    let rest = trim(&line[digits..]);
                    if !(rest.is_empty() || rest[0] == b';') {
                        return Err(H1Error::Chunked);
                    }
                    let size = line[..digits].iter().fold(0u64, |n, d| {
                        n * 16 + u64::from((*d as char).to_digit(16).unwrap_or(0))
                    });
                    buf.advance(end);
                    self.state = if size == 0 {
                        ChunkState::Trailers
                    } else {
                        ChunkState::Data(size)
                    };
                }
                ChunkState::Data(left) => {
                    if buf.is_empty() {
                        return Ok(Step::NeedMore);
                    }
                    let n = left.min(buf.len() as u64) as usize;
                    self.state = if n as u64 == left {
                        ChunkState::DataEnd
                    } else {
                        ChunkState::Data(left - n as u64)
                    };
                    return Ok(Step::Data(buf.split_to(n).freeze()));
                }
                ChunkState::DataEnd => {
                    if buf.len() < 2 {
                        if buf.first().is_some_and(|b| *b != b'\r' && *b != b'\n') {
                            return Err(H1Error::Chunked);
                        }
                        if buf.first() == Some(&b'\n') {
                            buf.advance(1);
                            self.state = ChunkState::Size;
                            continue;
                        }
                        return Ok(Step::NeedMore);
                    }
                    match &buf[..2] {
                        b"\r\n" => buf.advance(2),
                        [b'\n', _] => buf.advance(1),
                        _ => return Err(H1Error::Chunked),
                    }
                    self.state = ChunkState::Size;
                }
                ChunkState::Trailers => {
                    // Trailer fields are not passed on; only their end matters.
                    let Some(end) = line_end(buf) else {
                        return if buf.len() > MAX_TRAILERS {
                            Err(H1Error::Chunked)
                        } else {
                            Ok(Step::NeedMore)
                        };
                    };
                    let empty = trim(&buf[..end]).is_empty();
                    buf.advance(end);
                    if empty {
                        self.state = ChunkState::Done;
                        return Ok(Step::End);
                    }
                }
                ChunkState::Done => return Ok(Step::End),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(raw: &[u8], method: &Method) -> Result<(ResponseHead, BytesMut), H1Error> {
        let mut buf = BytesMut::from(raw);
        let h = next_head(&mut buf, method)?.expect("a complete head");
        Ok((h, buf))
    }

    fn body(framing: &mut Framing, buf: &mut BytesMut) -> Result<(Vec<u8>, bool), H1Error> {
        let mut out = Vec::new();
        loop {
            match framing.next(buf)? {
                Step::Data(b) => out.extend_from_slice(&b),
                Step::NeedMore => return Ok((out, false)),
                Step::End => return Ok((out, true)),
            }
        }
    }

    #[test]
    fn request_head_in_origin_form_with_its_length() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("example.com"));
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("99"));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        h.append("x-a", HeaderValue::from_static("1"));
        h.append("x-a", HeaderValue::from_static("2"));
        h.append(header::COOKIE, HeaderValue::from_static("a=1"));
        h.append(header::COOKIE, HeaderValue::from_static("b=2"));
        let mut out = Vec::new();
        let head = |method, path_and_query, headers| RequestHead {
            method,
            path_and_query,
            headers,
            host: None,
        };
        encode_request_head(&head(&Method::POST, "/p?q=1", &h), 5, &mut out);
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            "POST /p?q=1 HTTP/1.1\r\nhost: example.com\r\nx-a: 1\r\nx-a: 2\r\ncookie: a=1; b=2\r\n\
             content-length: 5\r\n\r\n"
        );
        let none = HeaderMap::new();
        encode_request_head(&head(&Method::GET, "", &none), 0, &mut out);
        assert_eq!(&out[..], b"GET / HTTP/1.1\r\n\r\n");
        encode_request_head(&head(&Method::PUT, "/", &none), 0, &mut out);
        assert_eq!(&out[..], b"PUT / HTTP/1.1\r\ncontent-length: 0\r\n\r\n");
        // no Host among the headers: the endpoint's, first
        let req = RequestHead {
            host: Some("10.0.0.1:80"),
            ..head(&Method::GET, "/x", &none)
        };
        encode_request_head(&req, 0, &mut out);
        assert_eq!(&out[..], b"GET /x HTTP/1.1\r\nhost: 10.0.0.1:80\r\n\r\n");
    }

    #[test]
    fn content_length_body_and_keep_alive() {
        let (h, mut rest) = head(
            b"HTTP/1.1 200 OK\r\nServer: x\r\nContent-Length: 5\r\n\r\nhelloEXTRA",
            &Method::GET,
        )
        .unwrap();
        assert_eq!(h.status, StatusCode::OK);
        assert_eq!(h.headers["server"], "x");
        assert!(h.keep_alive);
        let mut f = h.framing;
        let (b, end) = body(&mut f, &mut rest).unwrap();
        assert_eq!((&b[..], end), (&b"hello"[..], true));
        assert_eq!(
            &rest[..],
            b"EXTRA",
            "bytes past the body stay in the buffer"
        );
    }

    #[test]
    fn a_connections_heads_reuse_its_names_and_stay_right() {
        let mut scratch = HeadScratch::default();
        let mut read = |raw: &[u8]| {
            let mut buf = BytesMut::from(raw);
            next_head_with(&mut buf, &Method::GET, &mut scratch)
                .unwrap()
                .expect("a complete head")
                .headers
        };
        let first = read(b"HTTP/1.1 200 OK\r\nServer: a\r\nX-One: 1\r\nContent-Length: 0\r\n\r\n");
        assert_eq!(first["server"], "a");
        assert_eq!(first["x-one"], "1");
        // the same names: remembered; another name where x-one was; the case changed
        let second = read(b"HTTP/1.1 200 OK\r\nserver: b\r\nX-Two: 2\r\nCONTENT-LENGTH: 0\r\n\r\n");
        assert_eq!(second["server"], "b");
        assert_eq!(second["x-two"], "2");
        assert!(!second.contains_key("x-one"), "a remembered name leaked in");
        assert_eq!(second.len(), 3);
        // more lines than before, then fewer; a bad name is still refused
        let third = read(
            b"HTTP/1.1 200 OK\r\nServer: c\r\nX-Two: 3\r\nA: 1\r\nB: 2\r\nContent-Length: 0\r\n\r\n",
        );
        assert_eq!(
            (third["a"].as_bytes(), third["b"].as_bytes()),
            (&b"1"[..], &b"2"[..])
        );
        let fourth = read(b"HTTP/1.1 204 No Content\r\nB: 9\r\n\r\n");
        assert_eq!(fourth.len(), 1);
        assert_eq!(fourth["b"], "9");
        let mut bad = BytesMut::from(&b"HTTP/1.1 200 OK\r\nB\x01d: 1\r\n\r\n"[..]);
        assert!(next_head_with(&mut bad, &Method::GET, &mut scratch).is_err());
    }

    #[test]
    fn hop_by_hop_list_and_match_agree() {
        for n in HOP_BY_HOP {
            assert!(is_hop_by_hop(&HeaderName::from_static(n)), "{n}");
        }
        assert!(!is_hop_by_hop(&header::CONTENT_LENGTH));
        assert!(!is_hop_by_hop(&HeaderName::from_static("x-hop")));
    }

    #[test]
    fn hop_by_hop_headers_stay_with_the_connection() {
        let (h, _) = head(
            b"HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Hop\r\nKeep-Alive: timeout=5\r\n\
              X-Hop: 1\r\nX-End: 2\r\nUpgrade: h2c\r\nProxy-Connection: x\r\n\
              Content-Length: 2\r\nx-end: 3\r\n\r\nok",
            &Method::GET,
        )
        .unwrap();
        let names: Vec<&str> = h.headers.keys().map(|n| n.as_str()).collect();
        assert_eq!(names, ["x-end", "content-length"]);
        assert_eq!(h.headers.get_all("x-end").iter().count(), 2);
        assert!(h.keep_alive);
        assert_eq!(h.framing, Framing::Length(2));
        // close, in any case and among other tokens
        let (h, _) = head(
            b"HTTP/1.1 200 OK\r\nconnection: Keep-Alive\r\nConnection: CLOSE\r\nContent-Length: 0\r\n\r\n",
            &Method::GET,
        )
        .unwrap();
        assert!(!h.keep_alive);
        assert!(
            h.headers.keys().all(|n| n != "connection"),
            "{:?}",
            h.headers
        );
        // both framings: read as chunked, neither header passed on, connection not reused
        let (h, _) = head(
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            &Method::GET,
        )
        .unwrap();
        assert_eq!(h.framing, Framing::Chunked(Chunked::default()));
        assert!(h.headers.is_empty(), "{:?}", h.headers);
        assert!(!h.keep_alive);
        // HTTP/1.0 never keeps the connection
        let (h, _) = head(
            b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n",
            &Method::GET,
        )
        .unwrap();
        assert!(!h.keep_alive);
    }

    #[test]
    fn interim_responses_are_skipped_and_101_refused() {
        let (h, _) = head(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
            &Method::GET,
        )
        .unwrap();
        assert_eq!(h.status, StatusCode::NO_CONTENT);
        assert_eq!(h.framing, Framing::Empty);
        assert_eq!(
            head(b"HTTP/1.1 101 Switching\r\n\r\n", &Method::GET).unwrap_err(),
            H1Error::Status
        );
    }

    #[test]
    fn head_requests_and_close_framing() {
        let (h, _) = head(
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n",
            &Method::HEAD,
        )
        .unwrap();
        assert_eq!(h.framing, Framing::Empty);
        assert!(h.keep_alive);
        let (h, _) = head(b"HTTP/1.1 200 OK\r\n\r\n", &Method::GET).unwrap();
        assert_eq!(h.framing, Framing::Close);
        assert!(!h.keep_alive);
        let (h, _) = head(
            b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n",
            &Method::GET,
        )
        .unwrap();
        assert!(!h.keep_alive, "HTTP/1.0 is not kept");
        let (h, _) = head(
            b"HTTP/1.1 200 OK\r\nConnection: Close\r\nContent-Length: 1\r\n\r\n",
            &Method::GET,
        )
        .unwrap();
        assert!(!h.keep_alive);
    }

    #[test]
    fn garbage_and_bad_lengths_are_errors() {
        assert_eq!(
            head(b"SSH-2.0-OpenSSH\r\n\r\n", &Method::GET).unwrap_err(),
            H1Error::Head
        );
        assert_eq!(
            head(
                b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                &Method::GET
            )
            .unwrap_err(),
            H1Error::ContentLength
        );
        assert_eq!(
            head(
                b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
                &Method::GET
            )
            .unwrap_err(),
            H1Error::ContentLength
        );
        let (h, _) = head(
            b"HTTP/1.1 200 OK\r\nContent-Length: 3, 3\r\n\r\n",
            &Method::GET,
        )
        .unwrap();
        assert_eq!(h.framing, Framing::Length(3));
        let mut big = b"HTTP/1.1 200 OK\r\n".to_vec();
        while big.len() < MAX_RESPONSE_HEAD {
            big.extend_from_slice(b"x: y\r\n");
        }
        assert_eq!(
            parse_response_head(&big, &Method::GET, &mut HeadScratch::default()).unwrap_err(),
            H1Error::HeadTooLarge
        );
    }

    #[test]
    fn chunked_body_in_any_split() {
        let raw: &[u8] = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 99\r\n\r\n5;ext=1\r\nhello\r\nA\r\n0123456789\r\n0\r\nx-trailer: 1\r\n\r\nNEXT";
        let (h, rest) = head(raw, &Method::GET).unwrap();
        assert!(!h.keep_alive, "both framings: not reused");
        assert!(!h.headers.contains_key(header::CONTENT_LENGTH));
        // feed the body one split at a time, at every split point
        for cut in 0..rest.len() {
            let mut f = h.framing.clone();
            let mut buf = BytesMut::from(&rest[..cut]);
            let (mut got, mut end) = body(&mut f, &mut buf).unwrap();
            buf.extend_from_slice(&rest[cut..]);
            if !end {
                let (more, e) = body(&mut f, &mut buf).unwrap();
                got.extend_from_slice(&more);
                end = e;
            }
            assert!(end, "cut {cut}");
            assert_eq!(&got[..], b"hello0123456789", "cut {cut}");
            assert_eq!(&buf[..], b"NEXT", "cut {cut}");
            assert!(f.is_done());
        }
    }

    #[test]
    fn malformed_chunks_are_errors() {
        for bad in [
            &b"zz\r\n"[..],
            b"5 6\r\nhello\r\n",
            b"5\r\nhelloXX",
            b"1234567890abcdef0\r\n",
        ] {
            let mut f = Framing::Chunked(Chunked::default());
            let mut buf = BytesMut::from(bad);
            assert!(body(&mut f, &mut buf).is_err(), "{bad:?}");
        }
        let mut f = Framing::Chunked(Chunked::default());
        let mut buf = BytesMut::from(&vec![b'1'; MAX_CHUNK_LINE + 1][..]);
        assert!(body(&mut f, &mut buf).is_err(), "endless size line");
    }

    use proptest::prelude::*;

    proptest! {
        /// Whatever an upstream sends, parsing its head and decoding a body never panics.
        #[test]
        fn any_bytes_are_parsed_or_refused(raw in proptest::collection::vec(any::<u8>(), 0..512),
                                           chunked in any::<bool>()) {
            let mut buf = BytesMut::from(&raw[..]);
            let mut scratch = HeadScratch::default();
            if let Ok(ParsedHead::Complete { status, framing, keep_alive, len }) = parse_response_head(&buf, &Method::GET, &mut scratch) {
                prop_assert!(len <= raw.len());
                let _ = take_head(&mut buf, status, framing, keep_alive, &mut scratch.lines, len);
            }
            let mut f = if chunked { Framing::Chunked(Chunked::default()) } else { Framing::Length(100) };
            let mut buf = BytesMut::from(&raw[..]);
            let mut total = 0usize;
            for _ in 0..raw.len() + 2 {
                match f.next(&mut buf) {
                    Ok(Step::Data(b)) => { prop_assert!(!b.is_empty()); total += b.len(); }
                    Ok(_) | Err(_) => break,
                }
            }
            prop_assert!(total <= raw.len());
        }

        /// Heads read through one connection's scratch, whose remembered names come from
        /// the heads before, come out as each head read on its own does.
        #[test]
        fn a_reused_scratch_reads_as_a_fresh_one(
            heads in proptest::collection::vec(
                proptest::collection::vec(
                    (prop::sample::select(vec!["Server", "server", "Date", "X-A", "x-a", "ETag",
                                               "Content-Type", "X-B", "Set-Cookie", "Vary"]),
                     "[a-z0-9]{0,6}"),
                    0..8),
                1..6)) {
            let mut scratch = HeadScratch::default();
            for lines in heads {
                let mut raw = b"HTTP/1.1 200 OK\r\n".to_vec();
                for (name, value) in &lines {
                    raw.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
                }
                raw.extend_from_slice(b"Content-Length: 0\r\n\r\n");
                let reused = next_head_with(&mut BytesMut::from(&raw[..]), &Method::GET, &mut scratch);
                let fresh = next_head(&mut BytesMut::from(&raw[..]), &Method::GET);
                let (reused, fresh) = (reused.unwrap().unwrap(), fresh.unwrap().unwrap());
                prop_assert_eq!(reused.headers, fresh.headers);
            }
        }

        /// A body chunked at any sizes and delivered in any pieces decodes to itself.
        #[test]
        fn chunked_round_trip(body in proptest::collection::vec(any::<u8>(), 0..2000),
                              sizes in proptest::collection::vec(1usize..300, 1..20),
                              cuts in proptest::collection::vec(1usize..200, 1..30)) {
            let mut wire = Vec::new();
            let mut rest = &body[..];
            let mut k = 0;
            while !rest.is_empty() {
                let n = sizes[k % sizes.len()].min(rest.len());
                wire.extend_from_slice(format!("{n:x}\r\n").as_bytes());
                wire.extend_from_slice(&rest[..n]);
                wire.extend_from_slice(b"\r\n");
                rest = &rest[n..];
                k += 1;
            }
            wire.extend_from_slice(b"0\r\n\r\n");
            let mut f = Framing::Chunked(Chunked::default());
            let mut buf = BytesMut::new();
            let mut got = Vec::new();
            let mut at = 0;
            let mut c = 0;
            let mut ended = false;
            while !ended {
                match f.next(&mut buf).unwrap() {
                    Step::Data(b) => got.extend_from_slice(&b),
                    Step::End => ended = true,
                    Step::NeedMore => {
                        prop_assert!(at < wire.len(), "needs more than the whole body");
                        let n = cuts[c % cuts.len()].min(wire.len() - at);
                        buf.extend_from_slice(&wire[at..at + n]);
                        at += n;
                        c += 1;
                    }
                }
            }
            prop_assert_eq!(got, body);
            prop_assert_eq!(at, wire.len());
        }
    }
}
