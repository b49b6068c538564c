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
use http::{Method, StatusCode, Version};

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
/// one).
pub fn encode_request_head(
    method: &Method,
    path_and_query: &str,
    headers: &HeaderMap,
    body_len: usize,
    out: &mut Vec<u8>,
) {
    out.clear();
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(if path_and_query.is_empty() {
        b"/"
    } else {
        path_and_query.as_bytes()
    });
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let mut had_length = false;
    for (name, value) in headers {
        if name == header::CONTENT_LENGTH {
            had_length = true;
            continue;
        }
        if name == header::TRANSFER_ENCODING {
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

/// Parses a response head at the start of `buf`. A complete head comes back as the
/// byte ranges of its header values: the caller splits the head off its buffer with
/// [`take_head`], which shares those bytes instead of copying them.
fn parse_response_head(buf: &[u8]) -> Result<ParsedHead, H1Error> {
    // uninitialised: httparse writes the lines it finds; zeroing all of them cost more
    // than parsing a short head
    let mut lines =
        [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_RESPONSE_HEADERS];
    let mut resp = httparse::Response::new(&mut []);
    let len = match httparse::ParserConfig::default()
        .parse_response_with_uninit_headers(&mut resp, buf, &mut lines)
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
    let version = if resp.version == Some(0) {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    };
    let base = buf.as_ptr() as usize;
    let mut spans = Vec::with_capacity(resp.headers.len());
    for h in resp.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| H1Error::Head)?;
        let start = h.value.as_ptr() as usize - base;
        spans.push((name, start, start + h.value.len()));
    }
    Ok(ParsedHead::Complete {
        status,
        version,
        spans,
        len,
    })
}

/// The next final response head at the start of `buf`, split off it; interim (1xx)
/// responses before it are skipped. `Ok(None)`: the head is not complete yet, read more.
/// `request` is the request's method (a response to HEAD has no body).
pub fn next_head(buf: &mut BytesMut, request: &Method) -> Result<Option<ResponseHead>, H1Error> {
    loop {
        match parse_response_head(buf)? {
            ParsedHead::Partial => return Ok(None),
            ParsedHead::Interim(n) => buf.advance(n),
            ParsedHead::Complete {
                status,
                version,
                spans,
                len,
            } => return take_head(buf, status, version, spans, len, request).map(Some),
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
    /// A final response head of `len` bytes; `spans` are each header's name and its
    /// value's byte range in the head.
    Complete {
        /// The status.
        status: StatusCode,
        /// HTTP/1.1 or HTTP/1.0.
        version: Version,
        /// Name and value range of each header line.
        spans: Vec<(HeaderName, usize, usize)>,
        /// The head's length.
        len: usize,
    },
}

/// Splits a complete head off `buf` and builds the response head: headers sharing the
/// head's bytes (no copy per value), the body's framing and whether the connection stays
/// open. `request` is the request's method (a response to HEAD has no body).
fn take_head(
    buf: &mut BytesMut,
    status: StatusCode,
    version: Version,
    spans: Vec<(HeaderName, usize, usize)>,
    len: usize,
    request: &Method,
) -> Result<ResponseHead, H1Error> {
    let head: Bytes = buf.split_to(len).freeze();
    let mut headers = HeaderMap::with_capacity(spans.len());
    for (name, start, end) in spans {
        let value =
            HeaderValue::from_maybe_shared(head.slice(start..end)).map_err(|_| H1Error::Head)?;
        headers.append(name, value);
    }
    let (framing, framing_reusable) = framing_of(status, &headers, request)?;
    if headers.contains_key(header::TRANSFER_ENCODING) {
        // Read by its transfer coding; the length a sender also gave is not passed on.
        headers.remove(header::CONTENT_LENGTH);
    }
    let close = headers
        .get_all(header::CONNECTION)
        .iter()
        .any(|v| has_token(v.as_bytes(), b"close"));
    let keep_alive = version == Version::HTTP_11 && !close && framing_reusable;
    Ok(ResponseHead {
        status,
        headers,
        framing,
        keep_alive,
    })
}

/// The body's framing (RFC 9112 section 6.3) and whether it leaves the connection
/// reusable (false when it runs to the close, or when both framings were sent).
fn framing_of(
    status: StatusCode,
    headers: &HeaderMap,
    request: &Method,
) -> Result<(Framing, bool), H1Error> {
    if *request == Method::HEAD
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return Ok((Framing::Empty, true));
    }
    let has_length = headers.contains_key(header::CONTENT_LENGTH);
    if let Some(last) = headers
        .get_all(header::TRANSFER_ENCODING)
        .iter()
        .next_back()
    {
        let last_coding = last
            .as_bytes()
            .rsplit(|b| *b == b',')
            .next()
            .map(trim)
            .unwrap_or_default();
        return Ok(if last_coding.eq_ignore_ascii_case(b"chunked") {
            (Framing::Chunked(Chunked::default()), !has_length)
        } else {
            (Framing::Close, false)
        });
    }
    let mut length: Option<u64> = None;
    for v in headers.get_all(header::CONTENT_LENGTH) {
        for part in v.as_bytes().split(|b| *b == b',') {
            let part = trim(part);
            if part.is_empty() || part.len() > 19 || !part.iter().all(u8::is_ascii_digit) {
                return Err(H1Error::ContentLength);
            }
            let n = part.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
            if length.is_some_and(|l| l != n) {
                return Err(H1Error::ContentLength);
            }
            length = Some(n);
        }
    }
    Ok(match length {
        Some(0) => (Framing::Empty, true),
        Some(n) => (Framing::Length(n), true),
        None => (Framing::Close, false),
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

/// Whether a comma-separated header value lists `token` (case-insensitive).
fn has_token(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|b| *b == b',')
        .any(|t| trim(t).eq_ignore_ascii_case(token))
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
        let mut out = Vec::new();
        encode_request_head(&Method::POST, "/p?q=1", &h, 5, &mut out);
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            "POST /p?q=1 HTTP/1.1\r\nhost: example.com\r\nx-a: 1\r\nx-a: 2\r\ncontent-length: 5\r\n\r\n"
        );
        encode_request_head(&Method::GET, "", &HeaderMap::new(), 0, &mut out);
        assert_eq!(&out[..], b"GET / HTTP/1.1\r\n\r\n");
        encode_request_head(&Method::PUT, "/", &HeaderMap::new(), 0, &mut out);
        assert_eq!(&out[..], b"PUT / HTTP/1.1\r\ncontent-length: 0\r\n\r\n");
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
            parse_response_head(&big).unwrap_err(),
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
            if let Ok(ParsedHead::Complete { status, version, spans, len }) = parse_response_head(&buf) {
                prop_assert!(len <= raw.len());
                let _ = take_head(&mut buf, status, version, spans, len, &Method::GET);
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
