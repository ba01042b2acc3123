//! The metadata service's executor: applies changes durably, publishes them, checks password
//! logins. It blocks (one write + fdatasync per change, argon2 per uncached login), which is why
//! it owns a thread.

use super::{errors::catalog_error_code, Applied, CatalogView, MetadataOp, MetadataOutcome};
use crate::shard::effects::effects_of;
use crate::shard::PartitionDirectory;
use riptide_config::{AckFloor, Config};
use riptide_protocol::codes::ErrorCode;
use riptide_storage::metadata::{
    hash_password, Catalog, Change, MetadataStore, Permissions, StoreConfig, UserStatus,
    VerifiedLogins,
};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Why the metadata service could not start.
#[derive(Debug, thiserror::Error)]
pub enum MetadataStartError {
    #[error("metadata store: {0}")]
    Store(String),
    #[error("login cache: {0}")]
    Secrets(String),
}

pub struct MetadataService {
    store: MetadataStore,
    view: Arc<CatalogView>,
    /// The catalog last published (the "before" of the next change's effects).
    current: Arc<Catalog>,
    verified_logins: VerifiedLogins,
    directory: Arc<PartitionDirectory>,
    floor: AckFloor,
}

impl MetadataService {
    /// Opens the store under `<data>/metadata` and creates the root user on first boot.
    ///
    /// # Errors
    /// The store could not be opened or written, or no random key could be drawn.
    pub fn open(
        config: &Config,
        data_dir: &Path,
        directory: Arc<PartitionDirectory>,
    ) -> Result<MetadataService, MetadataStartError> {
        let store_error = |e: &dyn std::fmt::Display| MetadataStartError::Store(e.to_string());
        let store_config = StoreConfig {
            log_compaction_threshold_bytes: config.storage.metadata_log_compaction_bytes,
        };
        let (mut store, catalog) =
            MetadataStore::open_with(&data_dir.join("metadata"), store_config)
                .map_err(|e| store_error(&e))?;
        if catalog.users().is_empty() {
            let password_hash =
                hash_password(&config.root.password).map_err(|e| store_error(&e))?;
            store
                .apply(&Change::CreateUser {
                    user_id: 0,
                    username: config.root.username.clone(),
                    password_hash,
                    status: UserStatus::Active,
                    permissions: Some(Permissions::root()),
                    created_at_us: crate::clock::now_us(),
                })
                .map_err(|e| store_error(&e))?;
            tracing::info!(username = %config.root.username, "created the root user (first boot)");
        }
        let verified_logins =
            VerifiedLogins::new(Duration::from_secs(config.auth.verified_login_ttl_s))
                .map_err(|e| MetadataStartError::Secrets(e.to_string()))?;
        let current = Arc::new(store.catalog().clone());
        let view = Arc::new(CatalogView::new(Catalog::clone(&current)));
        Ok(MetadataService {
            store,
            view,
            current,
            verified_logins,
            directory,
            floor: config.storage.ack_floor,
        })
    }

    /// The published catalog, for every other thread.
    pub fn view(&self) -> Arc<CatalogView> {
        Arc::clone(&self.view)
    }

    pub fn execute(&mut self, op: MetadataOp) -> MetadataOutcome {
        match op {
            MetadataOp::Change(build) => match self.apply(build) {
                Ok(applied) => MetadataOutcome::Applied(applied),
                Err(code) => MetadataOutcome::Failed(code),
            },
            MetadataOp::PasswordLogin { username, password } => {
                self.password_login(&username, &password)
            }
            // A single node writes data through its shards; only a cluster replicates it.
            MetadataOp::Replicate(_) => MetadataOutcome::Failed(ErrorCode::FeatureUnavailable),
            // The service's own loop (`mesh::metadata_thread`) gives these to a helper thread
            // instead, so changes are not held up; a caller without one builds it here.
            MetadataOp::Snapshot(job) => snapshot_outcome(&job),
        }
    }

    /// Builds the change, makes it durable, publishes the new catalog and works out the shard
    /// work it implies (sent by the network thread that asked).
    fn apply(&mut self, build: super::ChangeBuilder) -> Result<Applied, ErrorCode> {
        let (change, produced) = build(self.store.catalog())?;
        self.store.apply(&change).map_err(|error| match error {
            riptide_storage::metadata::MetadataError::Catalog(error) => catalog_error_code(&error),
            error => {
                tracing::error!(%error, "metadata change could not be made durable");
                ErrorCode::Error
            }
        })?;
        let catalog = Arc::new(self.store.catalog().clone());
        let effects = effects_of(
            &change,
            &self.current,
            &catalog,
            &self.directory,
            self.floor,
        );
        self.current = Arc::clone(&catalog);
        self.view.publish(Arc::clone(&catalog));
        Ok(Applied {
            produced,
            catalog,
            effects,
        })
    }

    fn password_login(&self, username: &str, password: &str) -> MetadataOutcome {
        let catalog = self.store.catalog();
        let Some(user) = catalog.user_by_username(username) else {
            return MetadataOutcome::Failed(ErrorCode::InvalidCredentials);
        };
        if !self
            .verified_logins
            .verify(user.id, password, &user.password_hash)
        {
            return MetadataOutcome::Failed(ErrorCode::InvalidCredentials);
        }
        if user.status != UserStatus::Active {
            return MetadataOutcome::Failed(ErrorCode::UserInactive);
        }
        MetadataOutcome::LoggedIn { user_id: user.id }
    }
}

/// Builds a snapshot archive (blocking: file walks and compression).
pub fn snapshot_outcome(job: &crate::diagnostics::SnapshotJob) -> MetadataOutcome {
    match job.build() {
        Ok(archive) => MetadataOutcome::Snapshot(archive),
        Err(code) => MetadataOutcome::Failed(code),
    }
}
