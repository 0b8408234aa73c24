//! HTTPS for both services: the rustls acceptor built from the configured PEM files. The accept loop
//! (`listener.rs`) completes each handshake in its connection's own task, within [`HANDSHAKE_DEADLINE`], so a
//! slow or hostile client never holds up the others.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;

/// Handshakes slower than this are dropped.
pub const HANDSHAKE_DEADLINE: Duration = Duration::from_secs(15);

/// Reads a PEM certificate chain and private key into a TLS acceptor.
pub fn acceptor(cert: &Path, key: &Path) -> std::io::Result<TlsAcceptor> {
    let invalid = |what: &str, path: &Path, e: String| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{what} {}: {e}", path.display()))
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| invalid("cannot read certificate", cert, e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| invalid("cannot parse certificate", cert, e.to_string()))?;
    if certs.is_empty() {
        return Err(invalid("no certificate in", cert, "expected PEM".into()));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| invalid("cannot read private key", key, e.to_string()))?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid("tls setup failed for", cert, e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| invalid("certificate and key do not match in", cert, e.to_string()))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}
