//! TLS termination: certificates and keys from PEM files, SNI picks the certificate,
//! ALPN offers `h2` and `http/1.1`. A new `ServerConfig` is built on every reload.
//!
//! Sessions resume without a full handshake: TLS 1.3 (and 1.2) clients get stateless
//! session tickets, and TLS 1.2 clients without ticket support a session id from a cache
//! of [`SESSION_CACHE_ENTRIES`] shared by the pool's threads. The ticket keys are the
//! service's own, drawn at start and rotated every 6 hours (a ticket lives 6 to 12), or
//! the operator's from `session_ticket_keys` files ([`FileTicketer`]), which fulcrum
//! instances behind one VIP share so that a client resumes on whichever one its next
//! connection reaches. Drawn keys and the cache are carried over a reload, so a reload
//! costs no client a handshake; key files are read again. No early data (0-RTT): it
//! could be replayed.
//!
//! The crypto is aws-lc-rs, rustls's default provider: TLS 1.3 and 1.2, and the
//! X25519MLKEM768 hybrid post-quantum key exchange preferred over X25519 and the NIST
//! curves for clients that offer it (current browsers do). The ring provider that fulcrum
//! used before has no post-quantum group, and rustls deprecated it for that (0.23.48).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM_SIV, NONCE_LEN};

use rustls::server::{
    ClientHello, ProducesTickets, ResolvesServerCert, ServerSessionMemoryCache,
    StoresServerSessions,
};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::config::TlsSpec;
use super::error::L7Error;

/// Picks a certificate by SNI: exact name, then `*.parent`, then the first certificate.
#[derive(Debug)]
struct SniResolver {
    exact: HashMap<String, Arc<CertifiedKey>>,
    default: Arc<CertifiedKey>,
}

impl SniResolver {
    fn lookup(&self, name: Option<&str>) -> Arc<CertifiedKey> {
        if let Some(name) = name {
            let name = name.to_ascii_lowercase();
            if let Some(k) = self.exact.get(&name) {
                return k.clone();
            }
            if let Some((_, parent)) = name.split_once('.') {
                if let Some(k) = self.exact.get(&format!("*.{parent}")) {
                    return k.clone();
                }
            }
        }
        self.default.clone()
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.lookup(hello.server_name()))
    }
}

/// Session ids a service remembers for TLS 1.2 clients that take no ticket (HAProxy's
/// default `tune.ssl.cachesize`); the least recently stored go first.
pub const SESSION_CACHE_ENTRIES: usize = 20_000;

/// How long a ticket sealed under file keys opens (and the lifetime hint sent with it):
/// each ticket carries its sealing time, so an old ticket is refused even while its key
/// stays configured.
const FILE_TICKET_LIFETIME_SECS: u32 = 12 * 60 * 60;
/// How far in the future a ticket's sealing time may lie (another instance's clock).
const FILE_TICKET_CLOCK_SKEW_SECS: u64 = 60;
/// The bytes of a ticket key's name, the start of every ticket it seals.
const TICKET_KEY_NAME_LEN: usize = 16;

/// One ticket key read from a file: its name and its AES-256-GCM-SIV key.
struct TicketKey {
    name: [u8; TICKET_KEY_NAME_LEN],
    key: LessSafeKey,
}

/// Session tickets under the operator's keys (`session_ticket_keys`). A ticket is the
/// sealing key's name, a random nonce, and the sealing time (Unix seconds, 8 bytes) with
/// the session state sealed after it with AES-256-GCM-SIV (the name as associated data):
/// the first key seals, any key opens a ticket that names it, for
/// [`FILE_TICKET_LIFETIME_SECS`]. GCM-SIV, because the nonces are random and one key may seal billions of tickets
/// across instances and days: a repeated nonce then reveals only that two tickets hold
/// the same state, not the key.
pub struct FileTicketer {
    keys: Vec<TicketKey>,
}

impl std::fmt::Debug for FileTicketer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // the names only: the keys stay out of logs
        f.debug_struct("FileTicketer")
            .field("keys", &self.keys.len())
            .finish()
    }
}

impl FileTicketer {
    /// Reads the key files: each 48 or 80 bytes, its first 16 the key's name and its last
    /// 32 the key (an 80-byte nginx key file's HMAC half is not used).
    pub fn load(paths: &[impl AsRef<Path>]) -> Result<FileTicketer, L7Error> {
        let mut keys = Vec::with_capacity(paths.len());
        for p in paths {
            let p = p.as_ref();
            let bad = |why: String| L7Error::Tls(format!("{}: {why}", p.display()));
            let bytes = std::fs::read(p).map_err(|e| bad(e.to_string()))?;
            keys.push(TicketKey::from_bytes(&bytes).map_err(bad)?);
        }
        if keys.is_empty() {
            return Err(L7Error::Tls("session_ticket_keys: no key".into()));
        }
        Ok(FileTicketer { keys })
    }
}

impl TicketKey {
    fn from_bytes(bytes: &[u8]) -> Result<TicketKey, String> {
        if bytes.len() != 48 && bytes.len() != 80 {
            return Err(format!(
                "a session ticket key file holds 48 or 80 bytes, not {}",
                bytes.len()
            ));
        }
        let mut name = [0; TICKET_KEY_NAME_LEN];
        name.copy_from_slice(&bytes[..TICKET_KEY_NAME_LEN]);
        let key = UnboundKey::new(&AES_256_GCM_SIV, &bytes[bytes.len() - 32..])
            .map_err(|_| "not a usable AES-256 key".to_string())?;
        Ok(TicketKey {
            name,
            key: LessSafeKey::new(key),
        })
    }
}

impl ProducesTickets for FileTicketer {
    fn enabled(&self) -> bool {
        true
    }

    fn lifetime(&self) -> u32 {
        FILE_TICKET_LIFETIME_SECS
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        self.seal_at(plain, unix_now())
    }

    fn decrypt(&self, ticket: &[u8]) -> Option<Vec<u8>> {
        self.open_at(ticket, unix_now())
    }
}

/// Seconds since the Unix epoch (0 for a clock before it).
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl FileTicketer {
    /// Seals `plain` as a ticket made at `now` (Unix seconds).
    fn seal_at(&self, plain: &[u8], now: u64) -> Option<Vec<u8>> {
        let k = &self.keys[0];
        let mut nonce = [0u8; NONCE_LEN];
        aws_lc_rs::rand::fill(&mut nonce).ok()?;
        let mut out = Vec::with_capacity(TICKET_KEY_NAME_LEN + NONCE_LEN + 8 + plain.len() + 16);
        out.extend_from_slice(&k.name);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&now.to_be_bytes());
        out.extend_from_slice(plain);
        // the time and the state are sealed where they lie, the tag appended
        let tag = k
            .key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&k.name),
                &mut out[TICKET_KEY_NAME_LEN + NONCE_LEN..],
            )
            .ok()?;
        out.extend_from_slice(tag.as_ref());
        Some(out)
    }

    /// The session state in `ticket` if it is intact, names a key, and was sealed no
    /// more than [`FILE_TICKET_LIFETIME_SECS`] before `now` (nor too far after it).
    fn open_at(&self, ticket: &[u8], now: u64) -> Option<Vec<u8>> {
        if ticket.len() < TICKET_KEY_NAME_LEN + NONCE_LEN {
            return None;
        }
        let (name, rest) = ticket.split_at(TICKET_KEY_NAME_LEN);
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        let k = self.keys.iter().find(|k| k.name[..] == *name)?;
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut body = sealed.to_vec();
        let plain_len = k
            .key
            .open_in_place(nonce, Aad::from(&k.name), &mut body)
            .ok()?
            .len();
        body.truncate(plain_len);
        let sealed_at = u64::from_be_bytes(body.get(..8)?.try_into().ok()?);
        let fresh = sealed_at <= now + FILE_TICKET_CLOCK_SKEW_SECS
            && now.saturating_sub(sealed_at) <= u64::from(FILE_TICKET_LIFETIME_SECS);
        fresh.then(|| body.split_off(8))
    }
}

/// Builds the rustls server configuration of one service. `previous` is the service's
/// TLS section and configuration before a reload: its session cache is kept, and its
/// drawn ticket keys too unless key files come or go, so the sessions it issued still
/// resume. Key files are read again.
pub fn server_config(
    spec: &TlsSpec,
    previous: Option<(&TlsSpec, &ServerConfig)>,
) -> Result<Arc<ServerConfig>, L7Error> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut exact = HashMap::new();
    let mut default = None;
    for c in &spec.certificates {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&c.cert)
            .map_err(|e| L7Error::Tls(format!("{}: {e}", c.cert.display())))?
            .collect::<Result<_, _>>()
            .map_err(|e| L7Error::Tls(format!("{}: {e}", c.cert.display())))?;
        if certs.is_empty() {
            return Err(L7Error::Tls(format!(
                "{}: no certificate",
                c.cert.display()
            )));
        }
        let key = PrivateKeyDer::from_pem_file(&c.key)
            .map_err(|e| L7Error::Tls(format!("{}: {e}", c.key.display())))?;
        let signer = provider
            .key_provider
            .load_private_key(key)
            .map_err(|e| L7Error::Tls(format!("{}: {e}", c.key.display())))?;
        let ck = Arc::new(CertifiedKey::new(certs, signer));
        for n in &c.server_names {
            exact.insert(n.to_ascii_lowercase(), ck.clone());
        }
        default.get_or_insert(ck);
    }
    let default = default.ok_or_else(|| L7Error::Tls("no certificates".into()))?;
    let mut cfg = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| L7Error::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(SniResolver { exact, default }));
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let ticketer: Arc<dyn ProducesTickets> = match previous {
        _ if !spec.session_ticket_keys.is_empty() => {
            Arc::new(FileTicketer::load(&spec.session_ticket_keys)?)
        }
        Some((p, cfg)) if p.session_ticket_keys.is_empty() => cfg.ticketer.clone(),
        _ => rustls::crypto::aws_lc_rs::Ticketer::new()
            .map_err(|e| L7Error::Tls(format!("session tickets: {e}")))?,
    };
    let sessions: Arc<dyn StoresServerSessions> = match previous {
        Some((_, cfg)) => cfg.session_storage.clone(),
        None => ServerSessionMemoryCache::new(SESSION_CACHE_ENTRIES),
    };
    cfg.ticketer = ticketer;
    cfg.session_storage = sessions;
    Ok(Arc::new(cfg))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use rustls::crypto::aws_lc_rs::{default_provider, kx_group};
    use rustls::{
        ClientConfig, ClientConnection, Connection, NamedGroup, RootCertStore, ServerConnection,
    };
    use rustls_pki_types::ServerName;

    use super::*;
    use crate::l7::config::CertificateSpec;

    /// A self-signed certificate for `names`, written as PEM files under `dir`.
    fn cert(
        dir: &std::path::Path,
        tag: &str,
        names: &[&str],
    ) -> (CertificateSpec, CertificateDer<'static>) {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let c = rcgen::generate_simple_self_signed(names.clone()).unwrap();
        let (cert, key) = (
            dir.join(format!("{tag}.crt")),
            dir.join(format!("{tag}.key")),
        );
        std::fs::write(&cert, c.cert.pem()).unwrap();
        std::fs::write(&key, c.signing_key.serialize_pem()).unwrap();
        let spec = CertificateSpec {
            cert,
            key,
            server_names: names,
        };
        (spec, c.cert.der().clone())
    }

    /// A client with `groups` (preference order) and `versions` that trusts `root` and
    /// offers `h2` and `http/1.1`; it keeps the sessions it is given (rustls's default).
    fn client(
        root: CertificateDer<'static>,
        groups: Vec<&'static dyn rustls::crypto::SupportedKxGroup>,
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots.add(root).unwrap();
        let provider = rustls::crypto::CryptoProvider {
            kx_groups: groups,
            ..default_provider()
        };
        let mut client = ClientConfig::builder_with_provider(Arc::new(provider))
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        client.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Arc::new(client)
    }

    /// Runs a handshake in memory between `client`, asking for `sni`, and the server;
    /// the server's and the client's connections once done (the server's session
    /// tickets delivered).
    fn handshake(
        server: Arc<ServerConfig>,
        client: &Arc<ClientConfig>,
        sni: &str,
    ) -> (Connection, Connection) {
        let name = ServerName::try_from(sni.to_string()).unwrap();
        let mut c = Connection::Client(ClientConnection::new(client.clone(), name).unwrap());
        let mut s = Connection::Server(ServerConnection::new(server).unwrap());
        for _ in 0..10 {
            if !c.is_handshaking() && !s.is_handshaking() {
                flight(&mut s, &mut c);
                return (s, c);
            }
            flight(&mut c, &mut s);
            flight(&mut s, &mut c);
        }
        panic!("the handshake did not finish in 10 flights");
    }

    /// Moves what `from` has to send into `to`, which processes it.
    fn flight(from: &mut Connection, to: &mut Connection) {
        let mut buf = Vec::new();
        while from.wants_write() {
            from.write_tls(&mut buf).unwrap();
        }
        let mut rd = &buf[..];
        while !rd.is_empty() {
            to.read_tls(&mut rd).unwrap();
        }
        to.process_new_packets().unwrap();
    }

    #[test]
    fn a_client_offering_the_hybrid_group_gets_it_and_the_certificate_its_sni_names() {
        let dir = tempfile_dir("pq");
        let (api, api_root) = cert(&dir, "api", &["api.test"]);
        let (www, www_root) = cert(&dir, "www", &["www.test"]);
        let server = server_config(
            &TlsSpec {
                certificates: vec![api, www],
                session_ticket_keys: vec![],
            },
            None,
        )
        .unwrap();

        // a current browser's offer: the hybrid group first, X25519 beside it
        let browser = client(
            www_root.clone(),
            vec![kx_group::X25519MLKEM768, kx_group::X25519],
            rustls::DEFAULT_VERSIONS,
        );
        let (s, c) = handshake(server.clone(), &browser, "www.test");
        assert_eq!(
            s.negotiated_key_exchange_group().map(|g| g.name()),
            Some(NamedGroup::X25519MLKEM768)
        );
        assert_eq!(c.protocol_version(), Some(rustls::ProtocolVersion::TLSv1_3));
        assert_eq!(s.alpn_protocol(), Some(&b"h2"[..]));
        // the client verified the chain against www's certificate alone: SNI picked it
        assert_eq!(c.peer_certificates().map(|p| p[0].clone()), Some(www_root));

        // a client without post-quantum support (OpenSSL 3.0, say) still gets X25519
        let classical = client(api_root, vec![kx_group::X25519], rustls::DEFAULT_VERSIONS);
        let (s, _) = handshake(server, &classical, "api.test");
        assert_eq!(
            s.negotiated_key_exchange_group().map(|g| g.name()),
            Some(NamedGroup::X25519)
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn sessions_resume_across_a_reload_and_not_under_other_keys() {
        use rustls::client::{Resumption, Tls12Resumption};
        use rustls::HandshakeKind::{Full, Resumed};
        let dir = tempfile_dir("resume");
        let (www, root) = cert(&dir, "www", &["www.test"]);
        let spec = TlsSpec {
            certificates: vec![www],
            session_ticket_keys: vec![],
        };
        let server = server_config(&spec, None).unwrap();
        let tls12 = &[&rustls::version::TLS12][..];
        let tls13 = &[&rustls::version::TLS13][..];
        // TLS 1.3 (tickets), TLS 1.2 with tickets, TLS 1.2 by session id (the cache)
        let mut by_id = (*client(root.clone(), vec![kx_group::X25519], tls12)).clone();
        by_id.resumption =
            Resumption::in_memory_sessions(8).tls12_resumption(Tls12Resumption::SessionIdOnly);
        let clients = [
            (
                "TLS 1.3",
                client(root.clone(), vec![kx_group::X25519], tls13),
            ),
            (
                "TLS 1.2 ticket",
                client(root.clone(), vec![kx_group::X25519], tls12),
            ),
            ("TLS 1.2 session id", Arc::new(by_id)),
        ];
        for (what, c) in &clients {
            let kind = |server: &Arc<ServerConfig>| {
                let (s, _) = handshake(server.clone(), c, "www.test");
                s.handshake_kind().unwrap()
            };
            assert_eq!(kind(&server), Full, "{what}: first connection");
            assert_eq!(kind(&server), Resumed, "{what}: second connection");
            // a reload keeps the service's ticket keys and session cache
            let reloaded = server_config(&spec, Some((&spec, &server))).unwrap();
            assert_eq!(kind(&reloaded), Resumed, "{what}: after a reload");
            // a service built afresh (a restart) has keys and a cache of its own
            let fresh = server_config(&spec, None).unwrap();
            assert_eq!(kind(&fresh), Full, "{what}: another server");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// `n` random bytes in `dir/name`, its path.
    fn key_file(dir: &std::path::Path, name: &str, n: usize) -> PathBuf {
        let mut b = vec![0u8; n];
        aws_lc_rs::rand::fill(&mut b).unwrap();
        let p = dir.join(name);
        std::fs::write(&p, b).unwrap();
        p
    }

    #[test]
    fn ticket_key_files_are_shared_by_instances_and_rotate() {
        use rustls::HandshakeKind::{Full, Resumed};
        let dir = tempfile_dir("ticket-keys");
        let (www, root) = cert(&dir, "www", &["www.test"]);
        let (k1, k2) = (key_file(&dir, "k1", 80), key_file(&dir, "k2", 48));
        let spec = |keys: &[&PathBuf]| TlsSpec {
            certificates: vec![www.clone()],
            session_ticket_keys: keys.iter().map(|k| k.to_path_buf()).collect(),
        };
        let tls13 = &[&rustls::version::TLS13][..];
        // a new client (its own sessions) goes to `first`, then to `second`: the kind of
        // the second handshake
        let second_kind = |first: &Arc<ServerConfig>, second: &Arc<ServerConfig>| {
            let c = client(root.clone(), vec![kx_group::X25519], tls13);
            let (s, _) = handshake(first.clone(), &c, "www.test");
            assert_eq!(s.handshake_kind(), Some(Full));
            let (s, _) = handshake(second.clone(), &c, "www.test");
            s.handshake_kind().unwrap()
        };
        let only_k1 = spec(&[&k1]);
        let a = server_config(&only_k1, None).unwrap();
        let b = server_config(&only_k1, None).unwrap();
        // two instances with the same file: each opens the other's tickets
        assert_eq!(second_kind(&a, &b), Resumed);
        // rotation: k2 first seals, k1 still opens
        let rotated = server_config(&spec(&[&k2, &k1]), None).unwrap();
        assert_eq!(second_kind(&a, &rotated), Resumed);
        let only_k2 = server_config(&spec(&[&k2]), None).unwrap();
        assert_eq!(second_kind(&rotated, &only_k2), Resumed);
        // k1 dropped: its tickets no longer open, and k1 cannot open k2's
        assert_eq!(second_kind(&a, &only_k2), Full);
        assert_eq!(second_kind(&rotated, &a), Full);
        // drawn keys (no files, or files dropped by a reload) open no file key's tickets
        let drawn = server_config(&spec(&[]), None).unwrap();
        assert_eq!(second_kind(&a, &drawn), Full);
        let reloaded = server_config(&spec(&[]), Some((&only_k1, &a))).unwrap();
        assert_eq!(second_kind(&a, &reloaded), Full);
        // a file of another size is refused, naming it
        let bad = key_file(&dir, "bad", 32);
        let e = server_config(&spec(&[&bad]), None).unwrap_err().to_string();
        assert!(e.contains("bad") && e.contains("48 or 80 bytes"), "{e}");
        let missing = dir.join("missing");
        let e = server_config(&spec(&[&missing]), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn file_tickets_open_only_intact_and_under_a_named_key() {
        let dir = tempfile_dir("ticket-seal");
        let (k1, k2) = (key_file(&dir, "k1", 48), key_file(&dir, "k2", 80));
        let t = FileTicketer::load(&[&k1]).unwrap();
        let plain = b"the session state".to_vec();
        let sealed = t.encrypt(&plain).unwrap();
        assert_eq!(t.decrypt(&sealed), Some(plain.clone()));
        // a random nonce: the same state seals to other bytes each time
        assert_ne!(t.encrypt(&plain).unwrap(), sealed);
        assert_eq!(sealed.len(), 16 + 12 + 8 + plain.len() + 16);
        // a ticket opens for its lifetime, not after, nor from too far in the future
        let t0 = 1_800_000_000;
        let at = t.seal_at(&plain, t0).unwrap();
        let life = u64::from(FILE_TICKET_LIFETIME_SECS);
        assert_eq!(t.open_at(&at, t0 + life), Some(plain.clone()));
        assert_eq!(t.open_at(&at, t0 + life + 1), None);
        assert_eq!(t.open_at(&at, t0 - 60), Some(plain.clone()));
        assert_eq!(t.open_at(&at, t0 - 61), None);
        // any byte changed, or the ticket cut short, and it does not open
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x01;
            assert_eq!(t.decrypt(&bad), None, "byte {i} flipped");
        }
        for n in 0..sealed.len() {
            assert_eq!(t.decrypt(&sealed[..n]), None, "cut to {n}");
        }
        // a ticketer without the sealing key's name does not open it
        let other = FileTicketer::load(&[&k2]).unwrap();
        assert_eq!(other.decrypt(&sealed), None);
        assert!(FileTicketer::load(&[] as &[PathBuf]).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A fresh directory under the system's temporary one.
    fn tempfile_dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "fulcrum-tls-{tag}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}
