//! TLS termination: certificates and keys from PEM files, SNI picks the certificate,
//! ALPN offers `h2` and `http/1.1`. A new `ServerConfig` is built on every reload.

use std::collections::HashMap;
use std::sync::Arc;

use rustls::server::{ClientHello, ResolvesServerCert};
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

/// Builds the rustls server configuration of one service.
pub fn server_config(spec: &TlsSpec) -> Result<Arc<ServerConfig>, L7Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
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
    Ok(Arc::new(cfg))
}
