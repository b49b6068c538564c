//! Support for the L7 pool's fuzz targets and property tests: what a backend sends and
//! what a client sends, read whole and read in arbitrary pieces.
//!
//! Not part of fulcrum's interface: hidden from the docs, used by `fuzz/` and the pool's
//! tests.
//!
//! A byte stream read from a socket arrives in pieces the peer does not choose: the same
//! bytes may come in one read or in a hundred. A parser whose answer depends on where the
//! reads split the stream disagrees with the peer about where a message ends, which is
//! how responses get mixed up between clients and how requests get smuggled. Both
//! targets read one stream twice, whole and in pieces chosen by the input, and require
//! the same answer, besides never panicking:
//!
//! - [`upstream_response`]: an upstream's bytes through the HTTP/1.1 response reader
//!   (`h1::next_head_with`, then the body's [`Framing`](super::h1::Framing)): the same
//!   head (status, headers, framing, keep-alive) or the same error, and the same body
//!   bytes with the same ending. The body never holds more than the stream.
//! - [`request_framing`]: a client's bytes through the [`FramingWatch`] that refuses
//!   smuggling attempts: the same verdict at the same byte and request, and a refused
//!   connection stays refused.
//!
//! [`request_path`] (its own module) runs a client's bytes through the whole pool, hyper
//! and the handler to an upstream on loopback, and checks what the upstream receives.
//!
//! A fourth function, [`standalone_config`], serves the `config` target: the same bytes as
//! a standalone pool's file (`fulcrum l7 -c FILE`), parsed, compiled into the pool's
//! snapshot, and asked to route and balance a few requests.
//!
//! # Input
//!
//! `upstream_response`: `ctrl: u8` (bit 0: the request was `HEAD`, else `GET`; bits 1-7
//! seed the piece sizes), then the stream. `request_framing`: `max_head: u16` (little
//! endian, taken modulo 8192, plus one), `seed: u8`, then the stream.

mod request_path;

pub use request_path::{
    check_forwarded, check_forwarded_h2, request_path, Exchange, Forwarded, H2Answer, H2_CLIENT,
    H2_UPSTREAM,
};

use bytes::BytesMut;
use http::{HeaderMap, Method, StatusCode};

use super::balance::Lane;
use super::framing::{Feed, FramingWatch};
use super::h1::{self, Framing, H1Error, HeadScratch, Step};
use super::state::Snapshot;
use super::{L7Config, L7Metrics};

/// Piece sizes for reading a stream: mostly short (1-16 bytes, where a boundary falls
/// inside tokens and line ends), sometimes up to 1 KiB.
struct Pieces(u32);

impl Pieces {
    fn new(seed: u8) -> Pieces {
        Pieces((0x9e37_79b9 ^ u32::from(seed).wrapping_mul(0x0101_0101)) | 1)
    }

    fn next(&mut self) -> usize {
        // xorshift32
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.0 = x;
        if x & 0x100 == 0 {
            1 + (x % 16) as usize
        } else {
            1 + (x % 1024) as usize
        }
    }
}

/// How a response body's reading ended.
#[derive(Debug, PartialEq, Eq)]
enum BodyEnd {
    /// The framing said the body is complete.
    End,
    /// The stream ended first (more would be read from the socket).
    NeedMore,
    /// The body is malformed.
    Error(H1Error),
}

/// What the response reader made of a stream.
#[derive(Debug, PartialEq)]
enum Response {
    /// The stream ended inside a head.
    Partial,
    /// The head was refused.
    HeadError(H1Error),
    /// A final response head and its body.
    Read {
        status: StatusCode,
        headers: HeaderMap,
        framing: Framing,
        keep_alive: bool,
        body: Vec<u8>,
        end: BodyEnd,
    },
}

/// A stream handed out in pieces (or whole).
struct Source<'a> {
    rest: &'a [u8],
    pieces: Option<Pieces>,
}

impl Source<'_> {
    /// Appends the next piece to `buf`; false when the stream is exhausted.
    fn more(&mut self, buf: &mut BytesMut) -> bool {
        if self.rest.is_empty() {
            return false;
        }
        let n = match self.pieces.as_mut() {
            Some(p) => p.next().min(self.rest.len()),
            None => self.rest.len(),
        };
        buf.extend_from_slice(&self.rest[..n]);
        self.rest = &self.rest[n..];
        true
    }
}

fn read_response(stream: &[u8], method: &Method, pieces: Option<Pieces>) -> Response {
    let total = stream.len();
    let mut src = Source {
        rest: stream,
        pieces,
    };
    let mut buf = BytesMut::new();
    let mut scratch = HeadScratch::default();
    src.more(&mut buf);
    let head = loop {
        match h1::next_head_with(&mut buf, method, &mut scratch) {
            Err(e) => return Response::HeadError(e),
            Ok(Some(head)) => break head,
            Ok(None) => {
                if !src.more(&mut buf) {
                    return Response::Partial;
                }
            }
        }
    };
    let mut framing = head.framing.clone();
    let mut body = Vec::new();
    let end = loop {
        match framing.next(&mut buf) {
            Ok(Step::Data(b)) => {
                assert!(!b.is_empty(), "an empty piece of body");
                body.extend_from_slice(&b);
                assert!(body.len() <= total, "more body than the stream holds");
            }
            Ok(Step::End) => break BodyEnd::End,
            Ok(Step::NeedMore) => {
                if !src.more(&mut buf) {
                    break BodyEnd::NeedMore;
                }
            }
            Err(e) => break BodyEnd::Error(e),
        }
    };
    Response::Read {
        status: head.status,
        headers: head.headers,
        framing: head.framing,
        keep_alive: head.keep_alive,
        body,
        end,
    }
}

/// An upstream's bytes read whole and in pieces; see the module documentation.
pub fn upstream_response(data: &[u8]) {
    let Some((&ctrl, stream)) = data.split_first() else {
        return;
    };
    let method = if ctrl & 1 == 1 {
        Method::HEAD
    } else {
        Method::GET
    };
    let whole = read_response(stream, &method, None);
    let split = read_response(stream, &method, Some(Pieces::new(ctrl >> 1)));
    assert_eq!(
        whole, split,
        "the response reader's answer depends on the reads"
    );
}

/// Where a [`FramingWatch`] refused a stream: the absolute byte and the request's index.
fn watch(stream: &[u8], max_head: usize, pieces: Option<Pieces>) -> Option<(usize, u64)> {
    let mut w = FramingWatch::new(max_head);
    let Some(mut pieces) = pieces else {
        return match w.feed(stream) {
            Feed::Pass => None,
            Feed::Cut(at, request) => {
                assert!(at <= stream.len(), "a cut past the bytes fed");
                Some((at, request))
            }
        };
    };
    let mut offset = 0;
    while offset < stream.len() {
        let n = pieces.next().min(stream.len() - offset);
        let piece = &stream[offset..offset + n];
        if let Feed::Cut(at, request) = w.feed(piece) {
            assert!(at <= n, "a cut past the bytes fed");
            // refused for good: whatever comes next is cut at its first byte
            if offset + n < stream.len() {
                assert_eq!(
                    w.feed(&stream[offset + n..]),
                    Feed::Cut(0, request),
                    "a refused connection let bytes through"
                );
            }
            return Some((offset + at, request));
        }
        offset += n;
    }
    None
}

/// A client's bytes through the framing watch, whole and in pieces; see the module
/// documentation.
pub fn request_framing(data: &[u8]) {
    if data.len() < 3 {
        return;
    }
    let max_head = 1 + usize::from(u16::from_le_bytes([data[0], data[1]])) % 8192;
    let stream = &data[3..];
    let whole = watch(stream, max_head, None);
    let split = watch(stream, max_head, Some(Pieces::new(data[2])));
    assert_eq!(
        whole, split,
        "the framing watch's verdict depends on the reads"
    );
}

/// A standalone pool's file: parsed and validated, then (when valid) compiled into the
/// pool's snapshot, twice (the second time reusing the first, as a reload does); every
/// service routes a few requests and each matched route's cluster picks endpoints, which
/// must be endpoints of that cluster and usable. Nothing may panic. TLS services lose
/// their certificates first: the file names paths, and a path such as `/dev/zero` is
/// the operator's own doing, not a fault of the loader. Returns the endpoints picked.
pub fn standalone_config(data: &[u8]) -> usize {
    let Ok(text) = std::str::from_utf8(data) else {
        return 0;
    };
    let Ok(mut cfg) = L7Config::from_yaml_str(text) else {
        return 0;
    };
    for svc in &mut cfg.services {
        svc.tls = None;
    }
    let metrics = L7Metrics::default();
    let Ok(first) = Snapshot::build(&cfg, None, &metrics) else {
        return 0;
    };
    let snap = Snapshot::build(&cfg, Some(&first), &metrics)
        .expect("a configuration that compiled once compiles again");
    let mut headers = HeaderMap::new();
    headers.insert("x-user", http::HeaderValue::from_static("alice"));
    let mut picks = 0;
    for svc in snap.services.values() {
        for (host, path, method) in [
            ("a", "/", Method::GET),
            ("api.example.com", "/api/v1/x", Method::GET),
            ("x.example.com", "/v2/y", Method::POST),
        ] {
            let Some(route) = svc
                .routes
                .iter()
                .find(|r| r.matches(host, path, &method, &headers))
            else {
                continue;
            };
            for _ in 0..3 {
                let cluster = route.target.pick();
                let n = cluster.endpoints.len();
                for (key, lane) in [
                    (0, Lane::All),
                    (0x9e37_79b9_7f4a_7c15, Lane::Local),
                    (7, Lane::Remote),
                ] {
                    let even = |i: usize| i.is_multiple_of(2);
                    for usable in [&(|_| true) as &dyn Fn(usize) -> bool, &even, &(|_| false)] {
                        let picked = cluster.balancer.pick_in(
                            lane,
                            &cluster.endpoints,
                            key,
                            cluster.spec.bounded_load,
                            usable,
                        );
                        if let Some(i) = picked {
                            assert!(i < n, "endpoint {i} of {n}");
                            assert!(usable(i), "an unusable endpoint picked");
                            picks += 1;
                        }
                    }
                }
            }
        }
    }
    picks
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Streams that reach the readers' interesting states more often than random bytes:
    /// pieces of heads, framing headers and chunked bodies in any order.
    fn http_ish() -> impl Strategy<Value = Vec<u8>> {
        let token = prop::sample::select(vec![
            &b"HTTP/1.1 200 OK\r\n"[..],
            b"HTTP/1.0 204 No Content\r\n",
            b"HTTP/1.1 100 Continue\r\n\r\n",
            b"GET / HTTP/1.1\r\n",
            b"POST /a HTTP/1.1\r\n",
            b"Host: a\r\n",
            b"Content-Length: 5\r\n",
            b"Content-Length: 0\r\n",
            b"Content-Length: 5, 6\r\n",
            b"Transfer-Encoding: chunked\r\n",
            b"Transfer-Encoding: gzip\r\n",
            b"Connection: close\r\n",
            b"Connection: keep-alive, x-a\r\n",
            b"X-A: b\r\n",
            b"\r\n",
            b"\n",
            b"5\r\nhello\r\n",
            b"0\r\n\r\n",
            b"3;ext=1\r\nabc\r\n",
            b"X-T: 1\r\n\r\n",
            b"hello",
            b" ",
            b":",
        ]);
        proptest::collection::vec(token, 0..24).prop_map(|ts| ts.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// A response stream reads the same whole and in pieces.
        #[test]
        fn a_response_reads_the_same_in_any_pieces(stream in http_ish(), ctrl in any::<u8>()) {
            let mut data = vec![ctrl];
            data.extend_from_slice(&stream);
            upstream_response(&data);
        }

        /// A request stream gets the same verdict whole and in pieces.
        #[test]
        fn a_request_stream_is_judged_the_same_in_any_pieces(
            stream in http_ish(),
            max_head in any::<u16>(),
            seed in any::<u8>(),
        ) {
            let mut data = max_head.to_le_bytes().to_vec();
            data.push(seed);
            data.extend_from_slice(&stream);
            request_framing(&data);
        }
    }

    /// A standalone pool's file with every balancing policy compiles, routes and picks.
    pub const STANDALONE: &str = r#"
l7:
  timeouts: { connect: 250ms, request: 2s }
services:
  - name: web
    listen: 127.0.0.1:8080
    routes:
      - match: { host: api.example.com, path: { prefix: /api/ }, method: GET }
        cluster: ring
      - match: { path: { regex: "^/v[0-9]+/.*$" } }
        weighted_clusters: [{ cluster: maglev, weight: 90 }, { cluster: least, weight: 10 }]
      - cluster: rr
    clusters:
      - name: ring
        lb: ring_hash
        hash_on: { header: x-user }
        endpoints: [{ address: "127.0.0.1:9001", weight: 2 }, { address: "127.0.0.1:9002" }]
      - name: maglev
        lb: maglev
        endpoints: [{ address: "127.0.0.1:9001" }, { address: "127.0.0.1:9002" }, { address: "127.0.0.1:9003" }]
      - name: least
        lb: least_request
        endpoints: [{ address: "127.0.0.1:9001" }, { address: "127.0.0.1:9002" }]
      - name: rr
        endpoints: [{ address: "127.0.0.1:9001", weight: 3 }, { address: "127.0.0.1:9002" }]
"#;

    #[test]
    fn a_standalone_file_compiles_routes_and_balances() {
        // three requests, each routed three times, picking in 3 lanes x 2 usable sets
        // (the third set admits none): 3 x 3 x 3 x 2 at most, fewer where a policy finds
        // no even endpoint
        let picks = standalone_config(STANDALONE.as_bytes());
        assert!(picks >= 27, "{picks} picks");
        assert_eq!(standalone_config(b"services: [[["), 0);
    }

    /// The checks can fail: a reader that ends a body at a read's end, the error they
    /// exist to catch, is told apart from the real one.
    #[test]
    fn the_comparison_sees_a_body_cut_at_a_read() {
        let stream = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nhello world";
        let whole = read_response(stream, &Method::GET, None);
        let Response::Read { body, end, .. } = &whole else {
            panic!("{whole:?}");
        };
        assert_eq!((&body[..], end), (&b"hello world"[..], &BodyEnd::NeedMore));
        let first_read_only = read_response(&stream[..45], &Method::GET, None);
        assert_ne!(whole, first_read_only);
    }
}
