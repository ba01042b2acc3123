//! TLS on the binary protocol: the server configuration built from `[tls]` (reloaded when the
//! files change), and the per-connection record layer the worker core puts between a driver and
//! a session: ciphertext in from the driver, plaintext to the session, the session's replies
//! sealed into ciphertext chunks the driver transmits.
//!
//! TLS 1.3 only (see `riptide_config::tls`). rustls runs in userspace here; kernel mode may then
//! hand the record layer to the kernel (kTLS, `net::ktls`).

use super::connection::Connection;
use riptide_config::tls::TlsConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ServerConfig, ServerConnection, WebPkiClientVerifier};
use std::collections::VecDeque;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// Ciphertext a connection may hold sealed and unsent before its session's replies wait in
/// plaintext (bounds the memory a slow reader costs).
const SEALED_BYTES_MAX: usize = 256 * 1024;
/// The first byte of a TLS handshake record; a plaintext Iggy frame starts with its length.
const RECORD_TYPE_HANDSHAKE: u8 = 0x16;

/// Why the TLS configuration could not be built; each names the key of the file at fault.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TlsSetupError {
    #[error("configuration key `{key}`: cannot read the PEM file {path}: {message}")]
    Pem {
        key: &'static str,
        path: String,
        message: String,
    },
    #[error("configuration key `{key}`: {path} holds no PEM certificate")]
    NoCertificate { key: &'static str, path: String },
    #[error("configuration key `tls.cert_file`: the certificate in {path} {problem}")]
    Validity { path: String, problem: String },
    #[error("configuration key `tls.client_ca_file`: {message}")]
    ClientCa { message: String },
    #[error("configuration key `tls.key_file`: the key does not fit the certificate of `tls.cert_file`, or is unusable: {message}")]
    KeyMismatch { message: String },
}

/// The files a server configuration is built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub client_ca_file: Option<PathBuf>,
}

impl TlsFiles {
    pub fn from_config(tls: &TlsConfig) -> TlsFiles {
        TlsFiles {
            cert_file: tls.cert_file.clone(),
            key_file: tls.key_file.clone(),
            client_ca_file: tls.mutual().then(|| tls.client_ca_file.clone()),
        }
    }

    fn modified(&self) -> Vec<Option<SystemTime>> {
        [
            Some(&self.cert_file),
            Some(&self.key_file),
            self.client_ca_file.as_ref(),
        ]
        .into_iter()
        .flatten()
        .map(|path| std::fs::metadata(path).and_then(|m| m.modified()).ok())
        .collect()
    }
}

fn pem_error(key: &'static str, path: &Path, error: &dyn std::fmt::Display) -> TlsSetupError {
    TlsSetupError::Pem {
        key,
        path: path.display().to_string(),
        message: error.to_string(),
    }
}

fn read_certificates(
    key: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    let certificates: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_error(key, path, &e))?
        .collect::<Result<_, _>>()
        .map_err(|e| pem_error(key, path, &e))?;
    if certificates.is_empty() {
        return Err(TlsSetupError::NoCertificate {
            key,
            path: path.display().to_string(),
        });
    }
    Ok(certificates)
}

/// Refuses a server certificate that is not valid at `now`: clients would refuse every
/// handshake, which is better said once at start-up than per connection.
fn check_validity(
    path: &Path,
    certificate: &CertificateDer<'_>,
    now: SystemTime,
) -> Result<(), TlsSetupError> {
    let problem = |problem: String| TlsSetupError::Validity {
        path: path.display().to_string(),
        problem,
    };
    let (_, parsed) = x509_parser::parse_x509_certificate(certificate)
        .map_err(|e| problem(format!("is not a valid X.509 certificate: {e}")))?;
    let now = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let validity = parsed.validity();
    if now > validity.not_after.timestamp() {
        return Err(problem(format!(
            "expired at {} (renew it; `riptidectl tls dev-cert` writes a development one)",
            validity.not_after
        )));
    }
    if now < validity.not_before.timestamp() {
        return Err(problem(format!(
            "is not valid before {} (check the clock)",
            validity.not_before
        )));
    }
    Ok(())
}

/// A TLS 1.3 server configuration (ring's provider) from the files, checked at `now`.
/// `extract_secrets` lets kTLS take the negotiated keys after the handshake.
///
/// # Errors
/// [`TlsSetupError`] naming the configuration key of the file at fault.
pub fn server_config(
    files: &TlsFiles,
    extract_secrets: bool,
    now: SystemTime,
) -> Result<Arc<ServerConfig>, TlsSetupError> {
    let chain = read_certificates("tls.cert_file", &files.cert_file)?;
    check_validity(&files.cert_file, &chain[0], now)?;
    let key = PrivateKeyDer::from_pem_file(&files.key_file)
        .map_err(|e| pem_error("tls.key_file", &files.key_file, &e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsSetupError::KeyMismatch {
            message: e.to_string(),
        })?;
    let builder = match &files.client_ca_file {
        Some(path) => {
            let mut roots = rustls::RootCertStore::empty();
            for certificate in read_certificates("tls.client_ca_file", path)? {
                roots
                    .add(certificate)
                    .map_err(|e| TlsSetupError::ClientCa {
                        message: format!("{}: {e}", path.display()),
                    })?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| TlsSetupError::ClientCa {
                    message: format!("{}: {e}", path.display()),
                })?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config =
        builder
            .with_single_cert(chain, key)
            .map_err(|e| TlsSetupError::KeyMismatch {
                message: e.to_string(),
            })?;
    config.enable_secret_extraction = extract_secrets;
    if extract_secrets {
        // Tickets sent after the handshake would be records the kernel's sequence numbers must
        // count; resumption saves little for a client that holds its connection for hours.
        config.send_tls13_tickets = 0;
    }
    Ok(Arc::new(config))
}

/// The server configuration every network thread starts handshakes with, replaced when the
/// certificate files change (new handshakes get the new certificate; open connections keep the
/// one they negotiated).
pub struct TlsServer {
    current: arc_swap::ArcSwap<ServerConfig>,
    extract_secrets: bool,
    ktls: bool,
    files: Mutex<(TlsFiles, Vec<Option<SystemTime>>)>,
}

impl TlsServer {
    /// # Errors
    /// [`TlsSetupError`] naming the configuration key of the file at fault.
    pub fn new(files: TlsFiles, ktls: bool) -> Result<TlsServer, TlsSetupError> {
        let config = server_config(&files, ktls, SystemTime::now())?;
        let modified = files.modified();
        Ok(TlsServer {
            current: arc_swap::ArcSwap::new(config),
            extract_secrets: ktls,
            ktls,
            files: Mutex::new((files, modified)),
        })
    }

    /// Whether connections hand their record layer to the kernel after the handshake.
    pub fn ktls(&self) -> bool {
        self.ktls
    }

    /// The files the current configuration was built from.
    pub fn files(&self) -> TlsFiles {
        crate::session::shared::lock(&self.files).0.clone()
    }

    pub fn config(&self) -> Arc<ServerConfig> {
        self.current.load_full()
    }

    /// Rebuilds the configuration when `files` differ from the current ones (a live change)
    /// or one of the files changed on disk. Returns `None` when nothing changed, else the
    /// outcome; on an error the previous certificate stays in use.
    pub fn reload_if_changed(
        &self,
        files: Option<TlsFiles>,
    ) -> Option<Result<TlsFiles, TlsSetupError>> {
        let mut guard = crate::session::shared::lock(&self.files);
        let candidate = files.unwrap_or_else(|| guard.0.clone());
        let modified = candidate.modified();
        if candidate == guard.0 && modified == guard.1 {
            return None;
        }
        // Remembered even on failure: a broken file is reported once, not every poll.
        let outcome = server_config(&candidate, self.extract_secrets, SystemTime::now());
        *guard = (candidate.clone(), modified);
        Some(outcome.map(|config| {
            self.current.store(config);
            candidate
        }))
    }
}

/// Why a connection's TLS ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsEnd {
    /// The peer's first bytes were not a TLS record.
    Plaintext,
    /// A handshake or record error; rustls queued an alert for the peer.
    Failed,
    /// The peer sent close_notify.
    PeerClosed,
}

/// What one call to [`TlsSession::receive`] brought.
#[derive(Debug, Default)]
pub struct Received {
    pub handshake_completed: bool,
    pub end: Option<TlsEnd>,
}

/// One connection's record layer in userspace.
pub struct TlsSession {
    conn: ServerConnection,
    sealed: VecDeque<Vec<u8>>,
    sealed_sent_bytes: usize,
    sealed_bytes: usize,
    first_bytes_seen: bool,
    end: Option<TlsEnd>,
    close_notify_sent: bool,
    /// kTLS takes the record layer once the handshake is done.
    hand_off: bool,
}

impl TlsSession {
    /// `hand_off`: the record layer goes to the kernel after the handshake (kTLS).
    ///
    /// # Errors
    /// rustls refused the configuration (not expected for one built by [`server_config`]).
    pub fn new(config: Arc<ServerConfig>, hand_off: bool) -> Result<TlsSession, rustls::Error> {
        Ok(TlsSession {
            hand_off,
            conn: ServerConnection::new(config)?,
            sealed: VecDeque::new(),
            sealed_sent_bytes: 0,
            sealed_bytes: 0,
            first_bytes_seen: false,
            end: None,
            close_notify_sent: false,
        })
    }

    /// Takes ciphertext from the peer; `deliver` reads the plaintext it carried (after each
    /// buffer's worth: rustls holds only so much decrypted data).
    pub fn receive(
        &mut self,
        mut ciphertext: &[u8],
        mut deliver: impl FnMut(&mut dyn Read),
    ) -> Received {
        let mut received = Received::default();
        if self.end.is_some() {
            return received;
        }
        if !self.first_bytes_seen && !ciphertext.is_empty() {
            self.first_bytes_seen = true;
            if ciphertext[0] != RECORD_TYPE_HANDSHAKE {
                self.end = Some(TlsEnd::Plaintext);
                received.end = self.end;
                return received;
            }
        }
        let was_handshaking = self.conn.is_handshaking();
        while !ciphertext.is_empty() {
            // Reading from a slice cannot fail; rustls takes at most its buffer's worth per call.
            if self.conn.read_tls(&mut ciphertext).is_err() {
                self.end = Some(TlsEnd::Failed);
                break;
            }
            match self.conn.process_new_packets() {
                Ok(state) => {
                    deliver(&mut self.conn.reader());
                    if state.peer_has_closed() {
                        self.end = Some(TlsEnd::PeerClosed);
                        break;
                    }
                }
                Err(error) => {
                    tracing::debug!(%error, "TLS error; the connection closes after the alert");
                    self.end = Some(TlsEnd::Failed);
                    break;
                }
            }
        }
        received.handshake_completed = was_handshaking && !self.conn.is_handshaking();
        received.end = self.end;
        self.flush_records();
        received
    }

    /// Moves rustls' queued records (handshake messages, sealed replies, alerts) into chunks the
    /// driver transmits. Each chunk stays in place until sent: a driver's send may point into it.
    fn flush_records(&mut self) {
        while self.conn.wants_write() {
            let mut records = Vec::new();
            match self.conn.write_tls(&mut records) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    self.sealed_bytes += n;
                    self.sealed.push_back(records);
                }
            }
        }
    }

    /// Seals the session's pending replies (as far as [`SEALED_BYTES_MAX`] allows) and, once the
    /// session finished, the close_notify.
    pub fn seal(&mut self, connection: &mut Connection) {
        if self.end.is_some_and(|end| end != TlsEnd::PeerClosed) {
            return;
        }
        if !self.conn.is_handshaking() {
            while self.sealed_bytes < SEALED_BYTES_MAX && connection.has_output() {
                let mut taken = 0;
                let mut writer = self.conn.writer();
                for chunk in connection.pending_output() {
                    match std::io::Write::write(&mut writer, chunk) {
                        Ok(n) => {
                            taken += n;
                            if n < chunk.len() {
                                break;
                            }
                        }
                        Err(_) => break,
                    }
                }
                connection.consume_output(taken);
                self.flush_records();
                if taken == 0 {
                    break;
                }
            }
        }
        if connection.is_finished() && !self.close_notify_sent {
            self.close_notify_sent = true;
            self.conn.send_close_notify();
            self.flush_records();
        }
    }

    /// Sealed records waiting to be sent, as chunks (the first may be partly sent already).
    pub fn transmit(&self) -> impl Iterator<Item = &[u8]> {
        let first_offset = self.sealed_sent_bytes;
        self.sealed.iter().enumerate().map(move |(i, chunk)| {
            if i == 0 {
                &chunk[first_offset..]
            } else {
                &chunk[..]
            }
        })
    }

    pub fn has_output(&self) -> bool {
        !self.sealed.is_empty()
    }

    pub fn on_sent(&mut self, mut sent: usize) {
        self.sealed_bytes = self.sealed_bytes.saturating_sub(sent);
        while sent > 0 {
            let Some(front) = self.sealed.front() else {
                return;
            };
            let left = front.len() - self.sealed_sent_bytes;
            if sent < left {
                self.sealed_sent_bytes += sent;
                return;
            }
            sent -= left;
            self.sealed.pop_front();
            self.sealed_sent_bytes = 0;
        }
    }

    /// Whether more ciphertext may be read (the session decides the rest). Not once a handshake
    /// for kTLS completed: the next bytes are the kernel's to decrypt.
    pub fn wants_read(&self) -> bool {
        self.end.is_none() && (!self.hand_off || self.conn.is_handshaking())
    }

    /// The handshake completed for kTLS and every record rustls sealed was sent: the keys and
    /// sequence numbers may move to the kernel.
    pub fn ready_for_kernel(&self) -> bool {
        self.hand_off
            && !self.conn.is_handshaking()
            && self.sealed.is_empty()
            && self.end.is_none()
            && !self.close_notify_sent
    }

    /// The negotiated keys and sequence numbers, for kTLS; the session ends here.
    ///
    /// # Errors
    /// rustls refused (secret extraction not enabled, or the handshake is not complete).
    pub fn into_secrets(self) -> Result<rustls::ExtractedSecrets, rustls::Error> {
        self.conn.dangerous_extract_secrets()
    }

    /// The TLS layer ended (bad input, an alert, the peer's close_notify) or the session
    /// finished and its close_notify was sealed: once the sealed records are sent, close.
    pub fn wants_close(&self) -> bool {
        self.sealed.is_empty() && (self.end.is_some() || self.close_notify_sent)
    }

    pub fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }
}
