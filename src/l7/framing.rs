//! A byte-level watch over an HTTP/1 client stream that refuses request smuggling.
//!
//! hyper already rejects duplicate differing `Content-Length`, but when a request carries
//! both `Transfer-Encoding` and `Content-Length` it silently drops the length and goes on
//! with chunked framing. We refuse such requests outright (400), so the watch follows the
//! message framing itself: it collects each request head, checks its framing headers with
//! `httparse`, then skips the body (by length, or chunk by chunk) to the next head.
//!
//! On a violation the stream is cut right after the offending head: hyper parses that
//! head, the service sees the violation for that request number and answers 400 with
//! `Connection: close`; no byte of its body reaches anyone. Anything the watch does not
//! understand (HTTP/2 preface, unparsable or oversized heads) is passed through for hyper
//! to refuse.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// No violation seen (the value of [`Verdicts::violation_at`] until one is).
pub const NO_VIOLATION: u64 = u64::MAX;

/// What the watch tells the request handler of its connection.
#[derive(Debug)]
pub struct Verdicts {
    /// 0-based index of the first request whose framing was refused.
    pub violation_at: AtomicU64,
}

impl Default for Verdicts {
    fn default() -> Self {
        Verdicts {
            violation_at: AtomicU64::new(NO_VIOLATION),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Head,
    Body(u64),
    ChunkSize {
        size: u64,
        in_ext: bool,
        digits: u32,
    },
    ChunkData(u64),
    ChunkDataEnd(u8),
    TrailerLineStart,
    TrailerLine,
    TrailerEnd,
    Passthrough,
    Refused,
}

/// The framing tracker, fed the bytes a client sends.
#[derive(Debug)]
pub struct FramingWatch {
    state: State,
    head: Vec<u8>,
    max_head: usize,
    requests: u64,
}

/// Result of feeding bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum Feed {
    /// All bytes may go on.
    Pass,
    /// Only the first n bytes may go on; the request with this index is refused.
    Cut(usize, u64),
}

impl FramingWatch {
    /// A watch for a new connection; heads longer than `max_head` are left to hyper.
    pub fn new(max_head: usize) -> FramingWatch {
        FramingWatch {
            state: State::Head,
            head: Vec::new(),
            max_head,
            requests: 0,
        }
    }

    /// Feeds bytes read from the client.
    pub fn feed(&mut self, bytes: &[u8]) -> Feed {
        let mut i = 0;
        while i < bytes.len() {
            match self.state {
                State::Passthrough => return Feed::Pass,
                State::Refused => return Feed::Cut(0, self.requests),
                State::Head => {
                    // Takes bytes up to the end of the head (or all of them) at once,
                    // looking only at line ends; at most one byte past `max_head`.
                    let room = (self.max_head + 1).saturating_sub(self.head.len());
                    let window = &bytes[i..bytes.len().min(i + room)];
                    let end = self.head_end(window);
                    let taken = end.map_or(window.len(), |pos| pos + 1);
                    self.head.extend_from_slice(&window[..taken]);
                    i += taken;
                    if self.head.len() > self.max_head {
                        self.state = State::Passthrough;
                        continue;
                    }
                    if end.is_none() {
                        continue;
                    }
                    if self.head.iter().all(|b| *b == b'\r' || *b == b'\n') {
                        self.head.clear();
                        continue;
                    }
                    match self.check_head() {
                        Ok(next) => {
                            self.head.clear();
                            self.requests += 1;
                            self.state = next;
                        }
                        Err(()) => {
                            self.state = State::Refused;
                            return Feed::Cut(i, self.requests);
                        }
                    }
                }
                State::Body(n) => {
                    let take = (n as usize).min(bytes.len() - i);
                    i += take;
                    let left = n - take as u64;
                    self.state = if left == 0 {
                        State::Head
                    } else {
                        State::Body(left)
                    };
                }
                State::ChunkSize {
                    size,
                    in_ext,
                    digits,
                } => {
                    let b = bytes[i];
                    i += 1;
                    self.state = match b {
                        b'\n' if size == 0 && digits > 0 => State::TrailerLineStart,
                        b'\n' if digits > 0 => State::ChunkData(size),
                        b'\n' => State::Passthrough,
                        _ if in_ext => State::ChunkSize {
                            size,
                            in_ext,
                            digits,
                        },
                        b';' | b'\r' | b' ' | b'\t' => State::ChunkSize {
                            size,
                            in_ext: true,
                            digits,
                        },
                        _ => match (b as char).to_digit(16) {
                            Some(d) if digits < 15 => State::ChunkSize {
                                size: size * 16 + u64::from(d),
                                in_ext,
                                digits: digits + 1,
                            },
                            _ => State::Passthrough,
                        },
                    };
                }
                State::ChunkData(n) => {
                    let take = (n as usize).min(bytes.len() - i);
                    i += take;
                    let left = n - take as u64;
                    self.state = if left == 0 {
                        State::ChunkDataEnd(0)
                    } else {
                        State::ChunkData(left)
                    };
                }
                State::ChunkDataEnd(seen) => {
                    let b = bytes[i];
                    i += 1;
                    self.state = match (seen, b) {
                        (0, b'\r') => State::ChunkDataEnd(1),
                        (_, b'\n') => State::ChunkSize {
                            size: 0,
                            in_ext: false,
                            digits: 0,
                        },
                        _ => State::Passthrough,
                    };
                }
                State::TrailerLineStart => {
                    let b = bytes[i];
                    i += 1;
                    self.state = match b {
                        b'\r' => State::TrailerEnd,
                        b'\n' => State::Head,
                        _ => State::TrailerLine,
                    };
                }
                State::TrailerEnd => {
                    let b = bytes[i];
                    i += 1;
                    self.state = if b == b'\n' {
                        State::Head
                    } else {
                        State::TrailerLine
                    };
                }
                State::TrailerLine => {
                    if bytes[i] == b'\n' {
                        self.state = State::TrailerLineStart;
                    }
                    i += 1;
                }
            }
        }
        Feed::Pass
    }

    /// Position in `window` (bytes following `self.head`) of the `\n` that ends the head
    /// (`\r\n\r\n` or `\n\n`), if there is one.
    fn head_end(&self, window: &[u8]) -> Option<usize> {
        // The byte `back` places before window[pos], looking into the collected head.
        let before = |pos: usize, back: usize| -> Option<u8> {
            if back <= pos {
                Some(window[pos - back])
            } else {
                let k = back - pos;
                self.head.len().checked_sub(k).map(|j| self.head[j])
            }
        };
        let mut from = 0;
        while let Some(p) = memchr::memchr(b'\n', &window[from..]) {
            let pos = from + p;
            let ends = match before(pos, 1) {
                Some(b'\n') => true,
                Some(b'\r') => before(pos, 2) == Some(b'\n') && before(pos, 3) == Some(b'\r'),
                _ => false,
            };
            if ends {
                return Some(pos);
            }
            from = pos + 1;
        }
        None
    }

    /// Checks a complete head; returns the state for its body, or Err to refuse it.
    fn check_head(&self) -> Result<State, ()> {
        // uninitialised: zeroing 128 headers (4 KiB) cost more than parsing a small head
        let mut headers = [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; 128];
        let mut req = httparse::Request::new(&mut []);
        match req.parse_with_uninit_headers(&self.head, &mut headers) {
            Ok(httparse::Status::Complete(_)) => {}
            // Unknown to us (HTTP/2 preface, garbage, too many headers): hyper decides.
            _ => return Ok(State::Passthrough),
        }
        let mut length: Option<u64> = None;
        let mut chunked = false;
        let mut transfer_encoding = false;
        for h in req.headers.iter() {
            if h.name.eq_ignore_ascii_case("content-length") {
                let text = std::str::from_utf8(h.value).map_err(|_| ())?;
                for part in text.split(',') {
                    let part = part.trim();
                    if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                        return Err(());
                    }
                    let n: u64 = part.parse().map_err(|_| ())?;
                    if length.is_some_and(|l| l != n) {
                        return Err(());
                    }
                    length = Some(n);
                }
            } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                transfer_encoding = true;
                let last = h.value.rsplit(|b| *b == b',').next().unwrap_or_default();
                chunked = last.trim_ascii().eq_ignore_ascii_case(b"chunked");
            }
        }
        if transfer_encoding && length.is_some() {
            return Err(());
        }
        Ok(if transfer_encoding && chunked {
            State::ChunkSize {
                size: 0,
                in_ext: false,
                digits: 0,
            }
        } else if transfer_encoding {
            // Not chunked last: hyper answers 400 itself; nothing after it is read.
            State::Passthrough
        } else {
            match length {
                Some(0) | None => State::Head,
                Some(n) => State::Body(n),
            }
        })
    }
}

/// A client stream wrapped by a [`FramingWatch`].
#[derive(Debug)]
pub struct Watched<S> {
    inner: S,
    watch: FramingWatch,
    verdicts: Arc<Verdicts>,
    cut: bool,
}

impl<S> Watched<S> {
    /// Wraps `inner`; violations are reported through `verdicts`.
    pub fn new(inner: S, max_head: usize, verdicts: Arc<Verdicts>) -> Watched<S> {
        Watched {
            inner,
            watch: FramingWatch::new(max_head),
            verdicts,
            cut: false,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.cut {
            // The refused request's body is never read; the 400 closes the connection.
            return Poll::Pending;
        }
        let before = buf.filled().len();
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if let Feed::Cut(n, index) = this.watch.feed(&buf.filled()[before..]) {
                    buf.set_filled(before + n);
                    this.cut = true;
                    this.verdicts.violation_at.store(index, Ordering::Relaxed);
                }
                Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        // One slice (what the HTTP/2 codec hands over for small frames: it copies a DATA
        // payload under 256 bytes in behind its frame head, so a response is one buffer)
        // leaves through `send`, not a one-element `writev`, the kernel's costlier path.
        match single_slice(bufs) {
            Some(one) => Pin::new(&mut self.inner).poll_write(cx, one),
            None => Pin::new(&mut self.inner).poll_write_vectored(cx, bufs),
        }
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// The only non-empty slice of `bufs`, if exactly one is.
fn single_slice<'a>(bufs: &'a [std::io::IoSlice<'_>]) -> Option<&'a [u8]> {
    let mut nonempty = bufs.iter().filter(|b| !b.is_empty());
    match (nonempty.next(), nonempty.next()) {
        (Some(one), None) => Some(one),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_slice_is_the_one_non_empty_slice() {
        use std::io::IoSlice;
        let (a, b, e): (&[u8], &[u8], &[u8]) = (b"head", b"body", b"");
        assert_eq!(single_slice(&[IoSlice::new(a)]), Some(a));
        assert_eq!(
            single_slice(&[IoSlice::new(e), IoSlice::new(a), IoSlice::new(e)]),
            Some(a)
        );
        assert_eq!(single_slice(&[IoSlice::new(a), IoSlice::new(b)]), None);
        assert_eq!(single_slice(&[IoSlice::new(e)]), None);
        assert_eq!(single_slice(&[]), None);
    }

    fn feed_all(input: &[u8], step: usize) -> (Feed, u64) {
        let mut w = FramingWatch::new(16384);
        let mut offset = 0;
        for chunk in input.chunks(step) {
            if let Feed::Cut(n, idx) = w.feed(chunk) {
                return (Feed::Cut(offset + n, idx), w.requests);
            }
            offset += chunk.len();
        }
        (Feed::Pass, w.requests)
    }

    #[test]
    fn follows_keepalive_lengths_and_chunks() {
        let stream = b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello\
GET /b HTTP/1.1\r\nHost: x\r\n\r\n\
POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n0\r\nX-T: 1\r\n\r\n\
GET /d HTTP/1.1\r\nHost: x\r\n\r\n";
        for step in [1, 3, 7, stream.len()] {
            assert_eq!(feed_all(stream, step), (Feed::Pass, 4), "step {step}");
        }
    }

    #[test]
    fn refuses_cl_and_te_in_either_order() {
        for head in [
            &b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4, 5\r\n\r\n",
        ] {
            let mut input = head.to_vec();
            input.extend_from_slice(b"0\r\n\r\nGET /admin HTTP/1.1\r\nHost: x\r\n\r\n");
            for step in [1, 5, input.len()] {
                assert_eq!(feed_all(&input, step).0, Feed::Cut(head.len(), 0), "step {step}");
            }
        }
    }

    #[test]
    fn second_request_refused_by_index() {
        let mut input = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
        let ok = input.len();
        input.extend_from_slice(
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\nabc",
        );
        assert_eq!(feed_all(&input, 4).0, Feed::Cut(input.len() - 3, 1));
        assert!(ok < input.len());
    }

    #[test]
    fn h2_preface_and_garbage_pass() {
        assert_eq!(
            feed_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00", 4).0,
            Feed::Pass
        );
        assert_eq!(
            feed_all(b"\x16\x03\x01garbage\r\n\r\nmore", 2).0,
            Feed::Pass
        );
    }
}
