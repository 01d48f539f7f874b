//! TLS for `https://` trackers: rustls with the platform's root certificates.
//!
//! The roots come from `rustls-native-certs`, which reads the system store and honours
//! `SSL_CERT_FILE` / `SSL_CERT_DIR` (so a test, or a user with a private CA, can point it at their
//! own). They are loaded once per process. Certificate problems become
//! [`TrackerError::Certificate`] with rustls's reason in words (expired, not valid for this name,
//! unknown issuer), shown per tracker in the status: never a silent skip.

use std::sync::{Arc, OnceLock};

use rustls::pki_types::ServerName;
use rustls::{CertificateError, ClientConfig, RootCertStore};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::TrackerError;

/// The client configuration. The roots are read from disk once, off the async workers; a
/// failure is not remembered, so a store fixed later (or `SSL_CERT_FILE` set right) is picked
/// up at the next announce.
async fn config() -> Result<Arc<ClientConfig>, TrackerError> {
    static CONFIG: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    if let Some(c) = CONFIG.get() {
        return Ok(c.clone());
    }
    let built = tokio::task::spawn_blocking(build_config)
        .await
        .map_err(|e| TrackerError::Certificate(e.to_string()))?
        .map_err(TrackerError::Certificate)?;
    Ok(CONFIG.get_or_init(|| built).clone())
}

/// Reads the platform's roots (blocking file I/O) and builds the client configuration.
fn build_config() -> Result<Arc<ClientConfig>, String> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        let why = found
            .errors
            .first()
            .map(|e| e.to_string())
            .unwrap_or_else(|| "the system store is empty".into());
        return Err(format!("no trusted root certificates ({why})"));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Runs the TLS handshake with the tracker `host` (a name or an IP literal) over `tcp`.
pub async fn connect(host: &str, tcp: TcpStream) -> Result<TlsStream<TcpStream>, TrackerError> {
    let config = config().await?;
    let name = ServerName::try_from(
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned(),
    )
    .map_err(|_| TrackerError::Certificate(format!("{host:?} is not a valid TLS server name")))?;
    TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| describe(host, e))
}

/// A TLS failure in words a user can act on.
fn describe(host: &str, e: std::io::Error) -> TrackerError {
    let Some(tls) = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    else {
        return TrackerError::Io(format!("TLS handshake: {e}"));
    };
    let why = match tls {
        rustls::Error::InvalidCertificate(c) => match c {
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                "its certificate has expired".to_string()
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "its certificate is not valid yet".to_string()
            }
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                format!("its certificate is not valid for {host}")
            }
            CertificateError::UnknownIssuer => {
                "its certificate was issued by an authority we do not trust".to_string()
            }
            CertificateError::Revoked => "its certificate has been revoked".to_string(),
            other => format!("invalid certificate ({other:?})"),
        },
        other => other.to_string(),
    };
    TrackerError::Certificate(why)
}
