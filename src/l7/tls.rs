//! TLS termination: certificates and keys from PEM files, SNI picks the certificate,
//! ALPN offers `h2` and `http/1.1`. A new `ServerConfig` is built on every reload.
//!
//! Sessions resume without a full handshake: TLS 1.3 (and 1.2) clients get stateless
//! session tickets, encrypted under keys of the service's own that rotate every 6 hours
//! (a ticket lives 6 to 12), and TLS 1.2 clients without ticket support a session id
//! from a cache of [`SESSION_CACHE_ENTRIES`] shared by the pool's threads. Both belong to
//! the service and are carried over a reload, so a reload costs no client a handshake.
//! No early data (0-RTT): it could be replayed.
//!
//! The crypto is aws-lc-rs, rustls's default provider: TLS 1.3 and 1.2, and the
//! X25519MLKEM768 hybrid post-quantum key exchange preferred over X25519 and the NIST
//! curves for clients that offer it (current browsers do). The ring provider that fulcrum
//! used before has no post-quantum group, and rustls deprecated it for that (0.23.48).

use std::collections::HashMap;
use std::sync::Arc;

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

/// Builds the rustls server configuration of one service. `previous` is the service's
/// configuration before a reload: its ticket keys and session cache are kept, so the
/// sessions it issued still resume.
pub fn server_config(
    spec: &TlsSpec,
    previous: Option<&ServerConfig>,
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
    let (ticketer, sessions): (Arc<dyn ProducesTickets>, Arc<dyn StoresServerSessions>) =
        match previous {
            Some(p) => (p.ticketer.clone(), p.session_storage.clone()),
            None => (
                rustls::crypto::aws_lc_rs::Ticketer::new()
                    .map_err(|e| L7Error::Tls(format!("session tickets: {e}")))?,
                ServerSessionMemoryCache::new(SESSION_CACHE_ENTRIES),
            ),
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
            let reloaded = server_config(&spec, Some(&server)).unwrap();
            assert_eq!(kind(&reloaded), Resumed, "{what}: after a reload");
            // a service built afresh (a restart) has keys and a cache of its own
            let fresh = server_config(&spec, None).unwrap();
            assert_eq!(kind(&fresh), Full, "{what}: another server");
        }
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
