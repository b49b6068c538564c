//! `fulcrum-tls-handshakes`: new TLS connections, one request each, against a TLS
//! listener, offering the key-exchange groups asked for: what a handshake costs the
//! server per group (bench/tools/tls-handshakes.sh runs it against fulcrum's L7 pool,
//! nginx and HAProxy).
//!
//! ```text
//! fulcrum-tls-handshakes ADDR SERVER_NAME CA_PEM GROUPS CONNECTIONS CONCURRENCY [resume]
//! ```
//!
//! The cipher suites are offered in a browser's order (AES-128-GCM first). GROUPS is a
//! comma list of `x25519mlkem768`, `x25519`, `secp256r1`, in the client's
//! order of preference; a key share is sent for the first (and for `x25519` too when it
//! follows a hybrid group, as current browsers do). Each connection is a TCP connect, a
//! full TLS handshake (no resumption: the client keeps no session cache; with `resume` it
//! keeps the tickets and session ids it is given and resumes with them), `GET /` with
//! `Connection: close`, and the response read to its end; it counts as done only with a
//! `200` status line. CONCURRENCY connections are open at a time (one current-thread
//! runtime). Every connection is bounded by a 10 s timeout and the run by the count.
//!
//! Prints one line: `done N failed F resumed M secs S rate R p50_ms A p99_ms B group G
//! suite C bytes_in I`, M being the connections that resumed a session, C the cipher
//! suite (the first connection's),
//! where the percentiles are of the handshake (connect to handshake done), G is the group
//! the server picked (the first connection's), and I the response's bytes (head and
//! body, decrypted) a connection.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::crypto::aws_lc_rs::{default_provider, kx_group};
use rustls::crypto::{CryptoProvider, SupportedKxGroup};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

const PER_CONNECTION: Duration = Duration::from_secs(10);

fn group(name: &str) -> Option<&'static dyn SupportedKxGroup> {
    match name {
        "x25519mlkem768" => Some(kx_group::X25519MLKEM768),
        "x25519" => Some(kx_group::X25519),
        "secp256r1" => Some(kx_group::SECP256R1),
        _ => None,
    }
}

struct Args {
    addr: SocketAddr,
    name: ServerName<'static>,
    /// `GET /` for the server name, with `Connection: close` (made once).
    request: Vec<u8>,
    config: Arc<ClientConfig>,
    connections: usize,
    concurrency: usize,
    resume: bool,
}

fn parse() -> Result<Args, String> {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let (resume, a) = match a.split_last() {
        Some((last, rest)) if last == "resume" => (true, rest),
        _ => (false, &a[..]),
    };
    let [addr, name, ca, groups, connections, concurrency] = a else {
        return Err(
            "usage: fulcrum-tls-handshakes ADDR SERVER_NAME CA_PEM GROUPS CONNECTIONS \
                    CONCURRENCY [resume]"
                .into(),
        );
    };
    let addr: SocketAddr = addr.parse().map_err(|e| format!("{addr}: {e}"))?;
    let request = format!("GET / HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n");
    let name = ServerName::try_from(name.clone()).map_err(|e| format!("{name}: {e}"))?;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).map_err(|e| format!("{ca}: {e}"))? {
        roots
            .add(cert.map_err(|e| format!("{ca}: {e}"))?)
            .map_err(|e| format!("{ca}: {e}"))?;
    }
    let kx_groups = groups
        .split(',')
        .map(|g| group(g).ok_or_else(|| format!("unknown group {g}")))
        .collect::<Result<Vec<_>, _>>()?;
    // the cipher suites in a browser's order (Chrome's and Firefox's): AES-128-GCM
    // first, so the key schedule is SHA-256's (rustls's and OpenSSL's own clients put
    // AES-256-GCM first, whose SHA-384 costs the server more on CPUs without SHA-512
    // instructions)
    let mut cipher_suites = default_provider().cipher_suites;
    cipher_suites.sort_by_key(|s| {
        s.suite() != rustls::CipherSuite::TLS13_AES_128_GCM_SHA256
            && s.suite() != rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
    });
    let provider = CryptoProvider {
        kx_groups,
        cipher_suites,
        ..default_provider()
    };
    let mut config = ClientConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    if !resume {
        // every connection a full handshake
        config.resumption = rustls::client::Resumption::disabled();
    }
    let count = |s: &str| match s.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("{s}: not a positive count")),
    };
    Ok(Args {
        addr,
        name,
        request: request.into_bytes(),
        config: Arc::new(config),
        connections: count(connections)?,
        concurrency: count(concurrency)?,
        resume,
    })
}

/// One connection: its handshake time, the group, the bytes read.
struct Done {
    handshake: Duration,
    resumed: bool,
    group: Option<String>,
    suite: Option<String>,
    bytes_in: usize,
}

async fn one(args: &Args, config: &Arc<ClientConfig>) -> Result<Done, String> {
    let start = Instant::now();
    let tcp = TcpStream::connect(args.addr)
        .await
        .map_err(|e| e.to_string())?;
    tcp.set_nodelay(true).map_err(|e| e.to_string())?;
    let mut tls = TlsConnector::from(config.clone())
        .connect(args.name.clone(), tcp)
        .await
        .map_err(|e| e.to_string())?;
    let handshake = start.elapsed();
    let session = tls.get_ref().1;
    let resumed = session.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
    let group = session
        .negotiated_key_exchange_group()
        .map(|g| format!("{:?}", g.name()));
    let suite = session
        .negotiated_cipher_suite()
        .map(|s| format!("{:?}", s.suite()));
    tls.write_all(&args.request)
        .await
        .map_err(|e| e.to_string())?;
    let mut resp = Vec::with_capacity(1024);
    // a server that closes without close_notify still ends the response
    match tls.read_to_end(&mut resp).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !resp.is_empty() => {}
        Err(e) => return Err(e.to_string()),
    }
    if !resp.starts_with(b"HTTP/1.1 200") {
        return Err(format!(
            "status line {:?}",
            String::from_utf8_lossy(&resp[..resp.len().min(20)])
        ));
    }
    Ok(Done {
        handshake,
        resumed,
        group,
        suite,
        bytes_in: resp.len(),
    })
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1e3
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(a) => Arc::new(a),
        Err(e) => {
            eprintln!("fulcrum-tls-handshakes: {e}");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("fulcrum-tls-handshakes: {e}");
            return ExitCode::FAILURE;
        }
    };
    let started = Instant::now();
    let results: Vec<Result<Done, String>> = rt.block_on(async {
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..args.concurrency.min(args.connections) {
            let (args, next) = (args.clone(), next.clone());
            // each task a client of its own, with its own sessions (as each browser
            // resumes its own): a shared store holds at most 8 TLS 1.3 tickets a server
            let mut config = (*args.config).clone();
            if args.resume {
                config.resumption = rustls::client::Resumption::in_memory_sessions(16);
            }
            let config = Arc::new(config);
            tasks.push(tokio::spawn(async move {
                let mut mine = Vec::new();
                while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < args.connections {
                    let r = match tokio::time::timeout(PER_CONNECTION, one(&args, &config)).await {
                        Ok(r) => r,
                        Err(_) => Err("timed out".into()),
                    };
                    mine.push(r);
                }
                mine
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap_or_default());
        }
        all
    });
    let secs = started.elapsed().as_secs_f64();
    let mut times = Vec::new();
    let (mut failed, mut resumed, mut bytes, mut first_error) = (0, 0, 0, None);
    let (mut group, mut suite) = (None, None);
    for r in results {
        match r {
            Ok(d) => {
                times.push(d.handshake);
                resumed += usize::from(d.resumed);
                group = group.or(d.group);
                suite = suite.or(d.suite);
                bytes += d.bytes_in;
            }
            Err(e) => {
                failed += 1;
                first_error.get_or_insert(e);
            }
        }
    }
    times.sort_unstable();
    let done = times.len();
    println!(
        "done {done} failed {failed} resumed {resumed} secs {secs:.3} rate {:.1} p50_ms {:.3} p99_ms {:.3} group {} suite {} bytes_in {}",
        done as f64 / secs,
        percentile(&times, 0.50),
        percentile(&times, 0.99),
        group.as_deref().unwrap_or("none"),
        suite.as_deref().unwrap_or("none"),
        bytes.checked_div(done).unwrap_or(0),
    );
    if let Some(e) = first_error {
        eprintln!("fulcrum-tls-handshakes: {failed} failed, the first: {e}");
    }
    if done == 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
