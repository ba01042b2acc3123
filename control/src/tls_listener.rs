//! HTTPS for the control API and the HTTP API: a rustls server configuration from PEM files, and
//! a listener that hands axum TLS streams whose handshake has completed.
//!
//! Handshakes run in tasks of their own (at most [`TLS_HANDSHAKES_IN_FLIGHT_MAX`], each within
//! [`TLS_HANDSHAKE_TIMEOUT_MS`]), so a client that connects and stays silent delays nobody. A
//! plain-HTTP client's request is not a ClientHello: rustls refuses it, the connection closes
//! without an HTTP answer, and the refusal is counted.

use crate::constants::{TLS_HANDSHAKES_IN_FLIGHT_MAX, TLS_HANDSHAKE_TIMEOUT_MS};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// The configuration keys naming a listener's certificate and key, for the errors.
#[derive(Debug, Clone, Copy)]
pub struct TlsKeys {
    pub cert_file: &'static str,
    pub key_file: &'static str,
}

/// The control API's (`[control]`).
pub const CONTROL_TLS_KEYS: TlsKeys = TlsKeys {
    cert_file: "control.tls_cert_file",
    key_file: "control.tls_key_file",
};
/// The HTTP API's (`[http]`).
pub const HTTP_TLS_KEYS: TlsKeys = TlsKeys {
    cert_file: "http.tls_cert_file",
    key_file: "http.tls_key_file",
};

/// Why the TLS configuration could not be built. Each names the key of the file at fault.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("`{key}`: cannot read the PEM file {path}: {message}")]
    Pem {
        key: &'static str,
        path: String,
        message: String,
    },
    #[error("`{key}`: {path} holds no PEM certificate")]
    NoCertificate { key: &'static str, path: String },
    #[error("`{}`: the key does not fit the certificate of `{}`, or is unusable: {message}", keys.key_file, keys.cert_file)]
    KeyMismatch { keys: TlsKeys, message: String },
}

/// A TLS 1.3 server configuration (ring's provider: the process links both ring and aws-lc-rs,
/// so none is picked by default) serving HTTP/1.1.
///
/// TLS 1.2 is not offered: every client the control API has (riptidectl, curl, Prometheus,
/// reqwest) speaks 1.3, and 1.3 has only AEAD suites.
///
/// # Errors
/// [`TlsSetupError`] naming the certificate's or the key's configuration key.
pub fn server_config(
    cert_file: &Path,
    key_file: &Path,
    keys: TlsKeys,
) -> Result<Arc<rustls::ServerConfig>, TlsSetupError> {
    let pem_error =
        |key: &'static str, path: &Path, e: &dyn std::fmt::Display| TlsSetupError::Pem {
            key,
            path: path.display().to_string(),
            message: e.to_string(),
        };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_file)
        .map_err(|e| pem_error(keys.cert_file, cert_file, &e))?
        .collect::<Result<_, _>>()
        .map_err(|e| pem_error(keys.cert_file, cert_file, &e))?;
    if chain.is_empty() {
        return Err(TlsSetupError::NoCertificate {
            key: keys.cert_file,
            path: cert_file.display().to_string(),
        });
    }
    let key = PrivateKeyDer::from_pem_file(key_file)
        .map_err(|e| pem_error(keys.key_file, key_file, &e))?;
    let mismatch = |e: rustls::Error| TlsSetupError::KeyMismatch {
        keys,
        message: e.to_string(),
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(mismatch)?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(mismatch)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Accepts TCP connections and yields them once their TLS handshake completed.
pub struct TlsListener {
    accepted: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local_address: SocketAddr,
    acceptor_task: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    /// Starts accepting on `listener`; failed handshakes are added to `handshake_failures`.
    ///
    /// # Errors
    /// The listener's `local_addr` error.
    pub fn new(
        listener: TcpListener,
        config: Arc<rustls::ServerConfig>,
        handshake_failures: Arc<AtomicU64>,
    ) -> std::io::Result<TlsListener> {
        let local_address = listener.local_addr()?;
        let (sender, accepted) = mpsc::channel(TLS_HANDSHAKES_IN_FLIGHT_MAX);
        let acceptor_task = tokio::spawn(accept_loop(
            listener,
            TlsAcceptor::from(config),
            sender,
            handshake_failures,
        ));
        Ok(TlsListener {
            accepted,
            local_address,
            acceptor_task,
        })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.acceptor_task.abort();
    }
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    sender: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
    handshake_failures: Arc<AtomicU64>,
) {
    let handshakes = Arc::new(Semaphore::new(TLS_HANDSHAKES_IN_FLIGHT_MAX));
    let timeout = Duration::from_millis(TLS_HANDSHAKE_TIMEOUT_MS);
    while !sender.is_closed() {
        let Ok(permit) = handshakes.clone().acquire_owned().await else {
            return;
        };
        let (tcp, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of descriptors or a connection reset before accept: wait, as axum does.
                tracing::warn!("control API: accept failed: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let sender = sender.clone();
        let failures = handshake_failures.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match tokio::time::timeout(timeout, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => {
                    let _ = sender.send((stream, peer)).await;
                }
                Ok(Err(e)) => {
                    failures.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!("control API: TLS handshake with {peer} failed: {e}");
                }
                Err(_) => {
                    failures.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!("control API: TLS handshake with {peer} timed out");
                }
            }
        });
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.accepted.recv().await {
            Some(accepted) => accepted,
            // The accept loop ended (the runtime is shutting down): accept nothing more.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local_address)
    }
}

/// An API's listener: plain TCP, or TLS when a certificate is configured.
pub struct ApiListener {
    pub address: SocketAddr,
    kind: ListenerKind,
}

enum ListenerKind {
    Plain(TcpListener),
    Tls(TlsListener),
}

impl ApiListener {
    /// Binds `address`; with `tls`, connections are served once their handshake completed and
    /// failed handshakes counted in `handshake_failures`.
    ///
    /// # Errors
    /// The bind's error.
    pub async fn bind(
        address: &str,
        tls: Option<Arc<rustls::ServerConfig>>,
        handshake_failures: Arc<AtomicU64>,
    ) -> std::io::Result<ApiListener> {
        let listener = TcpListener::bind(address).await?;
        let address = listener.local_addr()?;
        let kind = match tls {
            Some(config) => {
                ListenerKind::Tls(TlsListener::new(listener, config, handshake_failures)?)
            }
            None => ListenerKind::Plain(listener),
        };
        Ok(ApiListener { address, kind })
    }

    pub fn scheme(&self) -> &'static str {
        match self.kind {
            ListenerKind::Plain(_) => "http",
            ListenerKind::Tls(_) => "https",
        }
    }

    /// Serves `router` until the runtime stops.
    ///
    /// # Errors
    /// As `axum::serve`.
    pub async fn serve(self, router: axum::Router) -> std::io::Result<()> {
        match self.kind {
            ListenerKind::Plain(listener) => axum::serve(listener, router).await,
            ListenerKind::Tls(listener) => axum::serve(listener, router).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_empty_files_name_their_key() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("absent.pem");
        let error = server_config(&missing, &missing, CONTROL_TLS_KEYS)
            .unwrap_err()
            .to_string();
        assert!(error.contains("control.tls_cert_file"), "{error}");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let error = server_config(&empty, &missing, CONTROL_TLS_KEYS)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("control.tls_cert_file") && error.contains("no PEM certificate"),
            "{error}"
        );
    }

    #[test]
    fn a_key_that_does_not_fit_the_certificate_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let names = vec!["localhost".to_string()];
        let first = rcgen::generate_simple_self_signed(names.clone()).unwrap();
        let second = rcgen::generate_simple_self_signed(names).unwrap();
        let cert = dir.path().join("cert.pem");
        let key = dir.path().join("key.pem");
        std::fs::write(&cert, first.cert.pem()).unwrap();
        std::fs::write(&key, second.signing_key.serialize_pem()).unwrap();
        let error = server_config(&cert, &key, HTTP_TLS_KEYS)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("`http.tls_key_file`") && error.contains("`http.tls_cert_file`"),
            "{error}"
        );
        std::fs::write(&key, first.signing_key.serialize_pem()).unwrap();
        assert!(server_config(&cert, &key, HTTP_TLS_KEYS).is_ok());
    }
}
