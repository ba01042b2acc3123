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
    /// `[tls]` is enabled: the dataplane speaks only TLS.
    tls: bool,
}

pub type DataplanePool = Pool<DataplaneConnector>;

impl DataplaneConnector {
    pub fn new(
        data_dir: PathBuf,
        supervisor: Option<SharedStatus>,
        configured_address: String,
        tls: bool,
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
        if self.tls {
            // The dataplane this process supervises, at the address it wrote into our data
            // directory, presenting the certificate this process's configuration names: the
            // certificate is not what authenticates it here, so it is not checked (a chain file
            // need not hold the CA that signed it). Mutual TLS (`tls.client_ca_file`) would
            // need a client certificate the SDK cannot present.
            config.tls_enabled = true;
            config.tls_validate_certificate = false;
            config.tls_domain = "localhost".to_string();
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
