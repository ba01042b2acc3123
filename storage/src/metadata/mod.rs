//! The metadata store: streams, topics, partitions, consumer-group definitions, users,
//! permissions and personal access tokens, kept durable across crashes.
//!
//! - [`Change`]: every mutation, carrying all its values so replay is deterministic.
//! - [`Catalog`]: the plain-data state; `apply` is pure, `validate` checks without mutating.
//! - [`MetadataStore`]: `open` recovers the catalog from snapshot + log; `apply` returns once
//!   the change is on stable storage.
//! - [`hash_password`], [`verify_password`], [`hash_token`], [`generate_token`].
//!
//! Consumer offsets are not here: the storage shards keep them per partition.

mod catalog;
mod change;
pub mod constants;
mod format;
mod model;
mod secrets;
mod store;

pub use catalog::{Catalog, CatalogError};
pub use change::Change;
pub use format::{decode_catalog, encode_catalog, FormatError};
pub use model::{
    CompressionAlgorithm, ConsumerGroup, Durability, ExplicitOptions, GlobalPermissions, Partition,
    Permissions, PersonalAccessToken, Stream, StreamPermissions, Topic, TopicOptionKey,
    TopicOptions, TopicOptionsUpdate, TopicPermissions, User, UserStatus,
};
pub use secrets::{
    generate_token, hash_password, hash_token, verify_password, SecretError, VerifiedLogins,
    VERIFIED_LOGINS_MAX,
};
pub use store::{
    MetadataError, MetadataStore, StoreConfig, LOG_COMPACTION_THRESHOLD_BYTES_MAX, LOG_FILE_NAME,
    SNAPSHOT_FILE_NAME,
};
