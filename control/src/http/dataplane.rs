//! The HTTP API's way to the dataplane: the official SDK's TCP client, one connection per pooled
//! slot, logged in with the caller's session credential.
//!
//! The client is created without automatic reconnection or login and without a heartbeat task
//! (those live in the SDK's `IggyClient` wrapper, not in `TcpClient`): a connection that breaks
//! is closed by the pool and replaced by a fresh login, never resurrected behind the pool's back.

use crate::http::pool::{Connector, Pool};
use crate::http::sessions::Credential;
use crate::supervisor::SharedStatus;
use iggy::prelude::{
    Client as _, IggyError, PersonalAccessTokenClient as _, TcpClient, TcpClientConfig,
    UserClient as _,
};
use secrecy::ExposeSecret as _;
use std::path::PathBuf;
use std::sync::Arc;

/// The file the dataplane writes once it listens, with its bound address under `[tcp] address`.
pub const CURRENT_CONFIG_RELATIVE: &str = "runtime/current_config.toml";

/// Connects to the dataplane supervised by this process.
pub struct DataplaneConnector {
    data_dir: PathBuf,
    supervisor: Option<SharedStatus>,
    /// Used when the dataplane has not written its bound address (yet).
    configured_address: String,
    /// `Some` when `[tls]` is enabled: the dataplane speaks only TLS.
    tls: Option<DataplaneTls>,
}

/// How the pool checks the certificate of a dataplane that speaks only TLS.
#[derive(Clone, Debug)]
pub struct DataplaneTls {
    /// `http.dataplane_tls_ca_file`; `None`: not verified (the configuration allows that only
    /// for a dataplane on a loopback or unspecified address).
    pub ca_file: Option<PathBuf>,
    /// `http.dataplane_tls_domain`: the name the certificate must carry.
    pub domain: String,
}

impl DataplaneTls {
    /// The pool's TLS settings for `config`, `None` when `[tls]` is off.
    pub fn of(config: &riptide_config::Config) -> Option<DataplaneTls> {
        let ca_file = &config.http.dataplane_tls_ca_file;
        config.tls.enabled.then(|| DataplaneTls {
            ca_file: (!ca_file.as_os_str().is_empty()).then(|| ca_file.clone()),
            domain: config.http.dataplane_tls_domain.clone(),
        })
    }
}

pub type DataplanePool = Pool<DataplaneConnector>;

impl DataplaneConnector {
    pub fn new(
        data_dir: PathBuf,
        supervisor: Option<SharedStatus>,
        configured_address: String,
        tls: Option<DataplaneTls>,
    ) -> DataplaneConnector {
        DataplaneConnector {
            data_dir,
            supervisor,
            configured_address,
            tls,
        }
    }

    /// The dataplane's bound address (it moves when a dataplane on port 0 restarts).
    pub fn address(&self) -> String {
        let path = self.data_dir.join(CURRENT_CONFIG_RELATIVE);
        std::fs::read_to_string(path)
            .ok()
            .and_then(|text| text.parse::<toml::Table>().ok())
            .and_then(|table| {
                table
                    .get("tcp")?
                    .get("address")?
                    .as_str()
                    .map(str::to_string)
            })
            .unwrap_or_else(|| self.configured_address.clone())
    }

    fn client(&self) -> Result<TcpClient, IggyError> {
        let mut config = TcpClientConfig {
            server_address: self.address(),
            nodelay: true,
            ..TcpClientConfig::default()
        };
        config.reconnection.enabled = false;
        if let Some(tls) = &self.tls {
            config.tls_enabled = true;
            config.tls_domain = tls.domain.clone();
            match &tls.ca_file {
                Some(ca_file) => {
                    config.tls_validate_certificate = true;
                    config.tls_ca_file = Some(ca_file.display().to_string());
                }
                // The configuration allows this only when the connection stays on this host
                // (riptide_config::http::validate_dataplane_tls).
                None => config.tls_validate_certificate = false,
            }
        }
        TcpClient::create(Arc::new(config))
    }
}

impl Connector for DataplaneConnector {
    type Conn = TcpClient;

    async fn open(&self, credential: &Credential) -> Result<(TcpClient, u32), IggyError> {
        let client = self.client()?;
        client.connect().await?;
        let identity = match credential {
            Credential::Password { username, password } => {
                client.login_user(username, password.expose_secret()).await
            }
            Credential::PersonalAccessToken(token) => {
                client
                    .login_with_personal_access_token(token.expose_secret())
                    .await
            }
        }?;
        Ok((client, identity.user_id))
    }

    fn epoch(&self) -> u64 {
        self.supervisor.as_ref().map_or(0, |status| {
            u64::from(status.lock().unwrap_or_else(|e| e.into_inner()).starts)
        })
    }
}
