//! The catalog: the in-memory state of all metadata, changed only through [`Catalog::apply`].
//!
//! `apply` is pure and deterministic, so the store replays its log through it and the
//! dataplane keeps a live copy in step by applying the same changes. Every validation error
//! (name taken, id unknown, limit reached) comes from here: [`Catalog::validate`] answers
//! whether a change would apply, without mutating anything, and `apply` mutates only after
//! the change validated, so a failed `apply` leaves the catalog untouched.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use super::change::Change;
use super::constants::{
    CONSUMER_GROUPS_PER_TOPIC_COUNT_MAX, HASH_LENGTH_MAX_BYTES, NAME_LENGTH_MAX_BYTES,
    NAME_LENGTH_MIN_BYTES, PARTITIONS_PER_CHANGE_COUNT_MAX, PARTITIONS_PER_TOPIC_COUNT_MAX,
    PERMISSION_ENTRIES_COUNT_MAX, ROOT_USER_ID, STREAMS_COUNT_MAX, TOKENS_PER_USER_COUNT_MAX,
    TOKEN_NAME_LENGTH_MAX_BYTES, TOKEN_NAME_LENGTH_MIN_BYTES, TOPICS_PER_STREAM_COUNT_MAX,
    USERNAME_LENGTH_MAX_BYTES, USERNAME_LENGTH_MIN_BYTES, USERS_COUNT_MAX,
};
use super::model::{
    ConsumerGroup, Partition, Permissions, PersonalAccessToken, Stream, Topic, TopicOptions, User,
};
use crate::constants::{SEGMENT_SIZE_MAX_BYTES, SEGMENT_SIZE_MIN_BYTES};

/// Why a change does not apply to the catalog.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatalogError {
    #[error("stream {0} not found")]
    StreamNotFound(u32),
    #[error("stream id {0} already exists")]
    StreamIdExists(u32),
    #[error("stream name {0:?} already exists")]
    StreamNameExists(String),
    #[error("topic {topic_id} of stream {stream_id} not found")]
    TopicNotFound { stream_id: u32, topic_id: u32 },
    #[error("topic id {topic_id} already exists in stream {stream_id}")]
    TopicIdExists { stream_id: u32, topic_id: u32 },
    #[error("topic name {0:?} already exists in the stream")]
    TopicNameExists(String),
    #[error("partition ids must continue the topic's 0..{expected_first_id} in order")]
    PartitionIdsNotContiguous { expected_first_id: u32 },
    #[error("cannot delete {requested} partitions of a topic that has {existing}")]
    PartitionsCountInvalid { requested: u32, existing: u32 },
    #[error("consumer group {0} not found")]
    ConsumerGroupNotFound(u32),
    #[error("consumer group id {0} already exists")]
    ConsumerGroupIdExists(u32),
    #[error("consumer group name {0:?} already exists in the topic")]
    ConsumerGroupNameExists(String),
    #[error("user {0} not found")]
    UserNotFound(u32),
    #[error("user id {0} already exists")]
    UserIdExists(u32),
    #[error("username {0:?} already exists")]
    UsernameExists(String),
    #[error("the root user cannot be deleted")]
    CannotDeleteRootUser,
    #[error("personal access token {0:?} not found")]
    TokenNotFound(String),
    #[error("personal access token name {0:?} already exists for this user")]
    TokenNameExists(String),
    #[error("a personal access token with this hash already exists")]
    TokenHashExists,
    #[error("{what} must be {min}..={max} bytes, got {length}")]
    InvalidLength {
        what: &'static str,
        length: usize,
        min: usize,
        max: usize,
    },
    #[error("too many {what}: at most {max}")]
    LimitReached { what: &'static str, max: usize },
    #[error("invalid topic option: {0}")]
    InvalidOption(&'static str),
    #[error("inconsistent catalog data: {0}")]
    Inconsistent(&'static str),
}

/// All metadata: streams (with topics, partitions and consumer groups) and users (with
/// permissions and personal access tokens). Lookup indexes by name and token hash are
/// derived from that data and kept in step by `apply`.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    streams: BTreeMap<u32, Stream>,
    users: BTreeMap<u32, User>,
    stream_ids_by_name: HashMap<String, u32>,
    topic_ids_by_name: HashMap<u32, HashMap<String, u32>>,
    user_ids_by_name: HashMap<String, u32>,
    /// token hash -> (user id, token name)
    tokens_by_hash: HashMap<String, (u32, String)>,
}

impl PartialEq for Catalog {
    /// The indexes are functions of the data, so the data alone decides equality.
    fn eq(&self, other: &Self) -> bool {
        self.streams == other.streams && self.users == other.users
    }
}

impl Eq for Catalog {}

/// The persistent part of a catalog, borrowed for encoding a snapshot.
#[derive(Serialize)]
pub(crate) struct CatalogDataRef<'a> {
    streams: &'a BTreeMap<u32, Stream>,
    users: &'a BTreeMap<u32, User>,
}

/// The persistent part of a catalog, as decoded from a snapshot.
#[derive(Deserialize)]
pub(crate) struct CatalogData {
    streams: BTreeMap<u32, Stream>,
    users: BTreeMap<u32, User>,
}

impl Catalog {
    /// An empty catalog.
    pub fn new() -> Catalog {
        Catalog::default()
    }

    /// Checks that `change` would apply, without changing anything.
    ///
    /// # Errors
    /// The [`CatalogError`] that [`Catalog::apply`] would return.
    pub fn validate(&self, change: &Change) -> Result<(), CatalogError> {
        match change {
            Change::CreateStream { .. }
            | Change::UpdateStream { .. }
            | Change::DeleteStream { .. } => self.validate_stream_change(change),
            Change::CreateTopic { .. }
            | Change::UpdateTopic { .. }
            | Change::DeleteTopic { .. }
            | Change::CreatePartitions { .. }
            | Change::DeletePartitions { .. } => self.validate_topic_change(change),
            Change::CreateConsumerGroup { .. } | Change::DeleteConsumerGroup { .. } => {
                self.validate_group_change(change)
            }
            Change::CreateUser { .. }
            | Change::UpdateUser { .. }
            | Change::DeleteUser { .. }
            | Change::ChangePassword { .. }
            | Change::UpdatePermissions { .. } => self.validate_user_change(change),
            Change::CreatePersonalAccessToken { .. } | Change::DeletePersonalAccessToken { .. } => {
                self.validate_token_change(change)
            }
        }
    }

    /// Applies `change`: validates it, then mutates. Deterministic: the same sequence of
    /// changes gives the same catalog.
    ///
    /// # Errors
    /// A [`CatalogError`] when the change does not apply; the catalog is then unchanged.
    pub fn apply(&mut self, change: &Change) -> Result<(), CatalogError> {
        self.validate(change)?;
        match change {
            Change::CreateStream { .. }
            | Change::UpdateStream { .. }
            | Change::DeleteStream { .. } => self.apply_stream_change(change),
            Change::CreateTopic { .. }
            | Change::UpdateTopic { .. }
            | Change::DeleteTopic { .. }
            | Change::CreatePartitions { .. }
            | Change::DeletePartitions { .. } => self.apply_topic_change(change),
            Change::CreateConsumerGroup { .. } | Change::DeleteConsumerGroup { .. } => {
                self.apply_group_change(change)
            }
            Change::CreateUser { .. }
            | Change::UpdateUser { .. }
            | Change::DeleteUser { .. }
            | Change::ChangePassword { .. }
            | Change::UpdatePermissions { .. } => self.apply_user_change(change),
            Change::CreatePersonalAccessToken { .. } | Change::DeletePersonalAccessToken { .. } => {
                self.apply_token_change(change)
            }
        }
    }

    // ----- lookups -------------------------------------------------------------------------

    /// All streams by id.
    pub fn streams(&self) -> &BTreeMap<u32, Stream> {
        &self.streams
    }

    /// All users by id.
    pub fn users(&self) -> &BTreeMap<u32, User> {
        &self.users
    }

    pub fn stream(&self, stream_id: u32) -> Option<&Stream> {
        self.streams.get(&stream_id)
    }

    pub fn stream_by_name(&self, name: &str) -> Option<&Stream> {
        let id = self.stream_ids_by_name.get(name)?;
        self.streams.get(id)
    }

    pub fn topic(&self, stream_id: u32, topic_id: u32) -> Option<&Topic> {
        self.streams.get(&stream_id)?.topics.get(&topic_id)
    }

    pub fn topic_by_name(&self, stream_id: u32, name: &str) -> Option<&Topic> {
        let id = self.topic_ids_by_name.get(&stream_id)?.get(name)?;
        self.topic(stream_id, *id)
    }

    pub fn consumer_group(
        &self,
        stream_id: u32,
        topic_id: u32,
        group_id: u32,
    ) -> Option<&ConsumerGroup> {
        self.topic(stream_id, topic_id)?
            .consumer_groups
            .get(&group_id)
    }

    pub fn consumer_group_by_name(
        &self,
        stream_id: u32,
        topic_id: u32,
        name: &str,
    ) -> Option<&ConsumerGroup> {
        // Groups of one topic are few and looked up on join, not per message: a scan is fine.
        self.topic(stream_id, topic_id)?
            .consumer_groups
            .values()
            .find(|group| group.name == name)
    }

    pub fn user(&self, user_id: u32) -> Option<&User> {
        self.users.get(&user_id)
    }

    pub fn user_by_username(&self, username: &str) -> Option<&User> {
        let id = self.user_ids_by_name.get(username)?;
        self.users.get(id)
    }

    /// The token whose hash is `token_hash` (see `hash_token`) and the user it belongs to.
    pub fn token_by_hash(&self, token_hash: &str) -> Option<(&User, &PersonalAccessToken)> {
        let (user_id, name) = self.tokens_by_hash.get(token_hash)?;
        let user = self.users.get(user_id)?;
        Some((user, user.tokens.get(name)?))
    }

    // ----- id allocation: Iggy's lowest free slab key ----------------------------------------

    /// The lowest stream id not in use.
    ///
    /// # Errors
    /// `LimitReached` when the catalog holds [`STREAMS_COUNT_MAX`] streams.
    pub fn next_stream_id(&self) -> Result<u32, CatalogError> {
        check_count("streams", self.streams.len(), STREAMS_COUNT_MAX)?;
        Ok(lowest_free_key(self.streams.keys()))
    }

    /// The lowest topic id not in use in the stream.
    ///
    /// # Errors
    /// `StreamNotFound`, or `LimitReached` when the stream is full.
    pub fn next_topic_id(&self, stream_id: u32) -> Result<u32, CatalogError> {
        let stream = self.find_stream(stream_id)?;
        check_count("topics", stream.topics.len(), TOPICS_PER_STREAM_COUNT_MAX)?;
        Ok(lowest_free_key(stream.topics.keys()))
    }

    /// The lowest consumer group id not in use in the topic.
    ///
    /// # Errors
    /// `StreamNotFound` / `TopicNotFound`, or `LimitReached` when the topic is full.
    pub fn next_consumer_group_id(
        &self,
        stream_id: u32,
        topic_id: u32,
    ) -> Result<u32, CatalogError> {
        let topic = self.find_topic(stream_id, topic_id)?;
        check_count(
            "consumer groups",
            topic.consumer_groups.len(),
            CONSUMER_GROUPS_PER_TOPIC_COUNT_MAX,
        )?;
        Ok(lowest_free_key(topic.consumer_groups.keys()))
    }

    /// The lowest user id not in use (the root user is 0).
    ///
    /// # Errors
    /// `LimitReached` when the catalog holds [`USERS_COUNT_MAX`] users.
    pub fn next_user_id(&self) -> Result<u32, CatalogError> {
        check_count("users", self.users.len(), USERS_COUNT_MAX)?;
        Ok(lowest_free_key(self.users.keys()))
    }

    // ----- snapshot support ----------------------------------------------------------------

    pub(crate) fn data(&self) -> CatalogDataRef<'_> {
        CatalogDataRef {
            streams: &self.streams,
            users: &self.users,
        }
    }

    /// Rebuilds a catalog and its indexes from snapshot data, checking that ids match their
    /// keys and that names and token hashes are unique.
    pub(crate) fn from_data(data: CatalogData) -> Result<Catalog, CatalogError> {
        let mut catalog = Catalog {
            streams: data.streams,
            users: data.users,
            ..Catalog::default()
        };
        catalog.rebuild_indexes()?;
        Ok(catalog)
    }

    fn rebuild_indexes(&mut self) -> Result<(), CatalogError> {
        for (id, stream) in &self.streams {
            let mut topics = HashMap::with_capacity(stream.topics.len());
            for (topic_id, topic) in &stream.topics {
                let ids_ok = *topic_id == topic.id
                    && topic
                        .partitions
                        .iter()
                        .enumerate()
                        .all(|(i, p)| p.id as usize == i);
                if !ids_ok || topics.insert(topic.name.clone(), *topic_id).is_some() {
                    return Err(CatalogError::Inconsistent("topic ids or names"));
                }
            }
            let fresh = self
                .stream_ids_by_name
                .insert(stream.name.clone(), *id)
                .is_none();
            if *id != stream.id || !fresh {
                return Err(CatalogError::Inconsistent("stream ids or names"));
            }
            self.topic_ids_by_name.insert(*id, topics);
        }
        for (id, user) in &self.users {
            let fresh = self
                .user_ids_by_name
                .insert(user.username.clone(), *id)
                .is_none();
            if *id != user.id || !fresh {
                return Err(CatalogError::Inconsistent("user ids or names"));
            }
            for (name, token) in &user.tokens {
                let entry = (*id, name.clone());
                if self
                    .tokens_by_hash
                    .insert(token.token_hash.clone(), entry)
                    .is_some()
                {
                    return Err(CatalogError::Inconsistent("token hashes"));
                }
            }
        }
        Ok(())
    }

    // ----- validation ----------------------------------------------------------------------

    fn find_stream(&self, stream_id: u32) -> Result<&Stream, CatalogError> {
        self.streams
            .get(&stream_id)
            .ok_or(CatalogError::StreamNotFound(stream_id))
    }

    fn find_topic(&self, stream_id: u32, topic_id: u32) -> Result<&Topic, CatalogError> {
        self.find_stream(stream_id)?
            .topics
            .get(&topic_id)
            .ok_or(CatalogError::TopicNotFound {
                stream_id,
                topic_id,
            })
    }

    fn find_user(&self, user_id: u32) -> Result<&User, CatalogError> {
        self.users
            .get(&user_id)
            .ok_or(CatalogError::UserNotFound(user_id))
    }

    /// Err when `name` belongs to a stream other than `stream_id`.
    fn check_stream_name_free(&self, name: &str, stream_id: u32) -> Result<(), CatalogError> {
        match self.stream_ids_by_name.get(name) {
            Some(owner) if *owner != stream_id => {
                Err(CatalogError::StreamNameExists(name.to_string()))
            }
            _ => Ok(()),
        }
    }

    fn check_topic_name_free(
        &self,
        stream_id: u32,
        name: &str,
        topic_id: u32,
    ) -> Result<(), CatalogError> {
        let owner = self
            .topic_ids_by_name
            .get(&stream_id)
            .and_then(|names| names.get(name));
        match owner {
            Some(owner) if *owner != topic_id => {
                Err(CatalogError::TopicNameExists(name.to_string()))
            }
            _ => Ok(()),
        }
    }

    fn check_username_free(&self, username: &str, user_id: u32) -> Result<(), CatalogError> {
        match self.user_ids_by_name.get(username) {
            Some(owner) if *owner != user_id => {
                Err(CatalogError::UsernameExists(username.to_string()))
            }
            _ => Ok(()),
        }
    }

    fn validate_stream_change(&self, change: &Change) -> Result<(), CatalogError> {
        match change {
            Change::CreateStream {
                stream_id, name, ..
            } => {
                check_length(
                    "stream name",
                    name,
                    NAME_LENGTH_MIN_BYTES,
                    NAME_LENGTH_MAX_BYTES,
                )?;
                check_count("streams", self.streams.len(), STREAMS_COUNT_MAX)?;
                if self.streams.contains_key(stream_id) {
                    return Err(CatalogError::StreamIdExists(*stream_id));
                }
                self.check_stream_name_free(name, *stream_id)
            }
            Change::UpdateStream { stream_id, name } => {
                check_length(
                    "stream name",
                    name,
                    NAME_LENGTH_MIN_BYTES,
                    NAME_LENGTH_MAX_BYTES,
                )?;
                self.find_stream(*stream_id)?;
                self.check_stream_name_free(name, *stream_id)
            }
            Change::DeleteStream { stream_id } => self.find_stream(*stream_id).map(|_| ()),
            _ => Err(CatalogError::Inconsistent("not a stream change")),
        }
    }

    fn validate_topic_change(&self, change: &Change) -> Result<(), CatalogError> {
        match change {
            Change::CreateTopic {
                stream_id,
                topic_id,
                name,
                partitions,
                options,
                ..
            } => self.validate_create_topic(*stream_id, *topic_id, name, partitions, options),
            Change::UpdateTopic {
                stream_id,
                topic_id,
                name,
                ..
            } => {
                check_length(
                    "topic name",
                    name,
                    NAME_LENGTH_MIN_BYTES,
                    NAME_LENGTH_MAX_BYTES,
                )?;
                self.find_topic(*stream_id, *topic_id)?;
                self.check_topic_name_free(*stream_id, name, *topic_id)
            }
            Change::DeleteTopic {
                stream_id,
                topic_id,
            } => self.find_topic(*stream_id, *topic_id).map(|_| ()),
            Change::CreatePartitions {
                stream_id,
                topic_id,
                partitions,
            } => {
                let topic = self.find_topic(*stream_id, *topic_id)?;
                if partitions.is_empty() {
                    return Err(CatalogError::PartitionsCountInvalid {
                        requested: 0,
                        existing: topic.partitions.len() as u32,
                    });
                }
                check_new_partitions(topic.partitions.len(), partitions)
            }
            Change::DeletePartitions {
                stream_id,
                topic_id,
                count,
            } => {
                let existing = self.find_topic(*stream_id, *topic_id)?.partitions.len();
                if *count == 0 || *count as usize > existing {
                    return Err(CatalogError::PartitionsCountInvalid {
                        requested: *count,
                        existing: existing as u32,
                    });
                }
                Ok(())
            }
            _ => Err(CatalogError::Inconsistent("not a topic change")),
        }
    }

    fn validate_create_topic(
        &self,
        stream_id: u32,
        topic_id: u32,
        name: &str,
        partitions: &[Partition],
        options: &TopicOptions,
    ) -> Result<(), CatalogError> {
        check_length(
            "topic name",
            name,
            NAME_LENGTH_MIN_BYTES,
            NAME_LENGTH_MAX_BYTES,
        )?;
        let stream = self.find_stream(stream_id)?;
        check_count("topics", stream.topics.len(), TOPICS_PER_STREAM_COUNT_MAX)?;
        if stream.topics.contains_key(&topic_id) {
            return Err(CatalogError::TopicIdExists {
                stream_id,
                topic_id,
            });
        }
        self.check_topic_name_free(stream_id, name, topic_id)?;
        check_new_partitions(0, partitions)?;
        check_options(options)
    }

    fn validate_group_change(&self, change: &Change) -> Result<(), CatalogError> {
        match change {
            Change::CreateConsumerGroup {
                stream_id,
                topic_id,
                group_id,
                name,
            } => {
                check_length(
                    "consumer group name",
                    name,
                    NAME_LENGTH_MIN_BYTES,
                    NAME_LENGTH_MAX_BYTES,
                )?;
                let topic = self.find_topic(*stream_id, *topic_id)?;
                check_count(
                    "consumer groups",
                    topic.consumer_groups.len(),
                    CONSUMER_GROUPS_PER_TOPIC_COUNT_MAX,
                )?;
                if topic.consumer_groups.contains_key(group_id) {
                    return Err(CatalogError::ConsumerGroupIdExists(*group_id));
                }
                if topic.consumer_groups.values().any(|g| g.name == *name) {
                    return Err(CatalogError::ConsumerGroupNameExists(name.clone()));
                }
                Ok(())
            }
            Change::DeleteConsumerGroup {
                stream_id,
                topic_id,
                group_id,
            } => {
                let topic = self.find_topic(*stream_id, *topic_id)?;
                if !topic.consumer_groups.contains_key(group_id) {
                    return Err(CatalogError::ConsumerGroupNotFound(*group_id));
                }
                Ok(())
            }
            _ => Err(CatalogError::Inconsistent("not a consumer group change")),
        }
    }

    fn validate_user_change(&self, change: &Change) -> Result<(), CatalogError> {
        match change {
            Change::CreateUser {
                user_id,
                username,
                password_hash,
                permissions,
                ..
            } => {
                check_username(username)?;
                check_hash("password hash", password_hash)?;
                check_permissions(permissions.as_ref())?;
                check_count("users", self.users.len(), USERS_COUNT_MAX)?;
                if self.users.contains_key(user_id) {
                    return Err(CatalogError::UserIdExists(*user_id));
                }
                self.check_username_free(username, *user_id)
            }
            Change::UpdateUser {
                user_id, username, ..
            } => {
                self.find_user(*user_id)?;
                match username {
                    Some(username) => {
                        check_username(username)?;
                        self.check_username_free(username, *user_id)
                    }
                    None => Ok(()),
                }
            }
            Change::DeleteUser { user_id } => {
                if *user_id == ROOT_USER_ID {
                    return Err(CatalogError::CannotDeleteRootUser);
                }
                self.find_user(*user_id).map(|_| ())
            }
            Change::ChangePassword {
                user_id,
                password_hash,
            } => {
                check_hash("password hash", password_hash)?;
                self.find_user(*user_id).map(|_| ())
            }
            Change::UpdatePermissions {
                user_id,
                permissions,
            } => {
                check_permissions(permissions.as_ref())?;
                self.find_user(*user_id).map(|_| ())
            }
            _ => Err(CatalogError::Inconsistent("not a user change")),
        }
    }

    fn validate_token_change(&self, change: &Change) -> Result<(), CatalogError> {
        match change {
            Change::CreatePersonalAccessToken {
                user_id,
                name,
                token_hash,
                ..
            } => {
                check_length(
                    "token name",
                    name,
                    TOKEN_NAME_LENGTH_MIN_BYTES,
                    TOKEN_NAME_LENGTH_MAX_BYTES,
                )?;
                check_hash("token hash", token_hash)?;
                let user = self.find_user(*user_id)?;
                check_count(
                    "personal access tokens",
                    user.tokens.len(),
                    TOKENS_PER_USER_COUNT_MAX,
                )?;
                if user.tokens.contains_key(name) {
                    return Err(CatalogError::TokenNameExists(name.clone()));
                }
                if self.tokens_by_hash.contains_key(token_hash) {
                    return Err(CatalogError::TokenHashExists);
                }
                Ok(())
            }
            Change::DeletePersonalAccessToken { user_id, name } => {
                if !self.find_user(*user_id)?.tokens.contains_key(name) {
                    return Err(CatalogError::TokenNotFound(name.clone()));
                }
                Ok(())
            }
            _ => Err(CatalogError::Inconsistent("not a token change")),
        }
    }

    // ----- mutation (only after validation) ------------------------------------------------

    fn stream_mut(&mut self, stream_id: u32) -> Result<&mut Stream, CatalogError> {
        self.streams
            .get_mut(&stream_id)
            .ok_or(CatalogError::StreamNotFound(stream_id))
    }

    fn topic_mut(&mut self, stream_id: u32, topic_id: u32) -> Result<&mut Topic, CatalogError> {
        self.stream_mut(stream_id)?
            .topics
            .get_mut(&topic_id)
            .ok_or(CatalogError::TopicNotFound {
                stream_id,
                topic_id,
            })
    }

    fn user_mut(&mut self, user_id: u32) -> Result<&mut User, CatalogError> {
        self.users
            .get_mut(&user_id)
            .ok_or(CatalogError::UserNotFound(user_id))
    }

    fn apply_stream_change(&mut self, change: &Change) -> Result<(), CatalogError> {
        match change {
            Change::CreateStream {
                stream_id,
                name,
                created_at_us,
            } => {
                let stream = Stream {
                    id: *stream_id,
                    name: name.clone(),
                    created_at_us: *created_at_us,
                    topics: BTreeMap::new(),
                };
                self.streams.insert(*stream_id, stream);
                self.stream_ids_by_name.insert(name.clone(), *stream_id);
                self.topic_ids_by_name.insert(*stream_id, HashMap::new());
            }
            Change::UpdateStream { stream_id, name } => {
                let stream = self.stream_mut(*stream_id)?;
                let old_name = std::mem::replace(&mut stream.name, name.clone());
                self.stream_ids_by_name.remove(&old_name);
                self.stream_ids_by_name.insert(name.clone(), *stream_id);
            }
            Change::DeleteStream { stream_id } => {
                if let Some(stream) = self.streams.remove(stream_id) {
                    self.stream_ids_by_name.remove(&stream.name);
                }
                self.topic_ids_by_name.remove(stream_id);
            }
            _ => return Err(CatalogError::Inconsistent("not a stream change")),
        }
        Ok(())
    }

    fn apply_topic_change(&mut self, change: &Change) -> Result<(), CatalogError> {
        match change {
            Change::CreateTopic {
                stream_id,
                topic_id,
                name,
                created_at_us,
                partitions,
                options,
            } => {
                let topic = Topic {
                    id: *topic_id,
                    name: name.clone(),
                    created_at_us: *created_at_us,
                    partitions: partitions.clone(),
                    options: *options,
                    consumer_groups: BTreeMap::new(),
                };
                self.stream_mut(*stream_id)?.topics.insert(*topic_id, topic);
                self.topic_names_mut(*stream_id)
                    .insert(name.clone(), *topic_id);
            }
            Change::UpdateTopic {
                stream_id,
                topic_id,
                name,
                options,
            } => {
                let topic = self.topic_mut(*stream_id, *topic_id)?;
                let old_name = std::mem::replace(&mut topic.name, name.clone());
                apply_options_update(&mut topic.options, options);
                let names = self.topic_names_mut(*stream_id);
                names.remove(&old_name);
                names.insert(name.clone(), *topic_id);
            }
            Change::DeleteTopic {
                stream_id,
                topic_id,
            } => {
                if let Some(topic) = self.stream_mut(*stream_id)?.topics.remove(topic_id) {
                    self.topic_names_mut(*stream_id).remove(&topic.name);
                }
            }
            Change::CreatePartitions {
                stream_id,
                topic_id,
                partitions,
            } => {
                let topic = self.topic_mut(*stream_id, *topic_id)?;
                topic.partitions.extend_from_slice(partitions);
            }
            Change::DeletePartitions {
                stream_id,
                topic_id,
                count,
            } => {
                let topic = self.topic_mut(*stream_id, *topic_id)?;
                let keep = topic.partitions.len().saturating_sub(*count as usize);
                topic.partitions.truncate(keep);
            }
            _ => return Err(CatalogError::Inconsistent("not a topic change")),
        }
        Ok(())
    }

    fn topic_names_mut(&mut self, stream_id: u32) -> &mut HashMap<String, u32> {
        self.topic_ids_by_name.entry(stream_id).or_default()
    }

    fn apply_group_change(&mut self, change: &Change) -> Result<(), CatalogError> {
        match change {
            Change::CreateConsumerGroup {
                stream_id,
                topic_id,
                group_id,
                name,
            } => {
                let group = ConsumerGroup {
                    id: *group_id,
                    name: name.clone(),
                };
                let topic = self.topic_mut(*stream_id, *topic_id)?;
                topic.consumer_groups.insert(*group_id, group);
            }
            Change::DeleteConsumerGroup {
                stream_id,
                topic_id,
                group_id,
            } => {
                let topic = self.topic_mut(*stream_id, *topic_id)?;
                topic.consumer_groups.remove(group_id);
            }
            _ => return Err(CatalogError::Inconsistent("not a consumer group change")),
        }
        Ok(())
    }

    fn apply_user_change(&mut self, change: &Change) -> Result<(), CatalogError> {
        match change {
            Change::CreateUser {
                user_id,
                username,
                password_hash,
                status,
                permissions,
                created_at_us,
            } => {
                let user = User {
                    id: *user_id,
                    username: username.clone(),
                    password_hash: password_hash.clone(),
                    status: *status,
                    permissions: permissions.clone(),
                    created_at_us: *created_at_us,
                    tokens: BTreeMap::new(),
                };
                self.users.insert(*user_id, user);
                self.user_ids_by_name.insert(username.clone(), *user_id);
            }
            Change::UpdateUser {
                user_id,
                username,
                status,
            } => {
                let user = self.user_mut(*user_id)?;
                if let Some(status) = status {
                    user.status = *status;
                }
                if let Some(username) = username {
                    let old = std::mem::replace(&mut user.username, username.clone());
                    self.user_ids_by_name.remove(&old);
                    self.user_ids_by_name.insert(username.clone(), *user_id);
                }
            }
            Change::DeleteUser { user_id } => {
                if let Some(user) = self.users.remove(user_id) {
                    self.user_ids_by_name.remove(&user.username);
                    for token in user.tokens.values() {
                        self.tokens_by_hash.remove(&token.token_hash);
                    }
                }
            }
            Change::ChangePassword {
                user_id,
                password_hash,
            } => self.user_mut(*user_id)?.password_hash = password_hash.clone(),
            Change::UpdatePermissions {
                user_id,
                permissions,
            } => self.user_mut(*user_id)?.permissions = permissions.clone(),
            _ => return Err(CatalogError::Inconsistent("not a user change")),
        }
        Ok(())
    }

    fn apply_token_change(&mut self, change: &Change) -> Result<(), CatalogError> {
        match change {
            Change::CreatePersonalAccessToken {
                user_id,
                name,
                token_hash,
                expiry_at_us,
            } => {
                let token = PersonalAccessToken {
                    name: name.clone(),
                    token_hash: token_hash.clone(),
                    expiry_at_us: *expiry_at_us,
                };
                self.user_mut(*user_id)?.tokens.insert(name.clone(), token);
                self.tokens_by_hash
                    .insert(token_hash.clone(), (*user_id, name.clone()));
            }
            Change::DeletePersonalAccessToken { user_id, name } => {
                if let Some(token) = self.user_mut(*user_id)?.tokens.remove(name) {
                    self.tokens_by_hash.remove(&token.token_hash);
                }
            }
            _ => return Err(CatalogError::Inconsistent("not a token change")),
        }
        Ok(())
    }
}

/// Patches the updatable options; a patched key becomes explicit.
fn apply_options_update(options: &mut TopicOptions, update: &super::model::TopicOptionsUpdate) {
    use super::model::TopicOptionKey;
    if let Some(compression) = update.compression {
        options.compression = compression;
        options.explicit = options.explicit.with(TopicOptionKey::CompressionAlgorithm);
    }
    if let Some(expiry_us) = update.message_expiry_us {
        options.message_expiry_us = expiry_us;
        options.explicit = options.explicit.with(TopicOptionKey::MessageExpiry);
    }
    if let Some(size_bytes) = update.max_topic_size_bytes {
        options.max_topic_size_bytes = size_bytes;
        options.explicit = options.explicit.with(TopicOptionKey::MaxTopicSize);
    }
}

/// Iggy's ids are the lowest free slab key: the first gap in the ascending keys.
fn lowest_free_key<'a>(keys: impl Iterator<Item = &'a u32>) -> u32 {
    let mut expected = 0u32;
    for key in keys {
        if *key != expected {
            break;
        }
        expected = expected.saturating_add(1);
    }
    expected
}

fn check_count(what: &'static str, count: usize, max: usize) -> Result<(), CatalogError> {
    if count >= max {
        return Err(CatalogError::LimitReached { what, max });
    }
    Ok(())
}

fn check_length(
    what: &'static str,
    value: &str,
    min: usize,
    max: usize,
) -> Result<(), CatalogError> {
    let length = value.len();
    if length < min || length > max {
        return Err(CatalogError::InvalidLength {
            what,
            length,
            min,
            max,
        });
    }
    Ok(())
}

fn check_username(username: &str) -> Result<(), CatalogError> {
    check_length(
        "username",
        username,
        USERNAME_LENGTH_MIN_BYTES,
        USERNAME_LENGTH_MAX_BYTES,
    )
}

fn check_hash(what: &'static str, hash: &str) -> Result<(), CatalogError> {
    check_length(what, hash, 1, HASH_LENGTH_MAX_BYTES)
}

fn check_permissions(permissions: Option<&Permissions>) -> Result<(), CatalogError> {
    let entries_count = permissions.map_or(0, Permissions::entries_count);
    if entries_count > PERMISSION_ENTRIES_COUNT_MAX {
        return Err(CatalogError::LimitReached {
            what: "permission entries",
            max: PERMISSION_ENTRIES_COUNT_MAX,
        });
    }
    Ok(())
}

/// New partitions must continue the ids `0..existing_count` in order, within the limits.
fn check_new_partitions(
    existing_count: usize,
    partitions: &[Partition],
) -> Result<(), CatalogError> {
    if partitions.len() > PARTITIONS_PER_CHANGE_COUNT_MAX {
        return Err(CatalogError::LimitReached {
            what: "partitions in one change",
            max: PARTITIONS_PER_CHANGE_COUNT_MAX,
        });
    }
    if existing_count + partitions.len() > PARTITIONS_PER_TOPIC_COUNT_MAX {
        return Err(CatalogError::LimitReached {
            what: "partitions",
            max: PARTITIONS_PER_TOPIC_COUNT_MAX,
        });
    }
    let contiguous = partitions
        .iter()
        .enumerate()
        .all(|(i, partition)| partition.id as usize == existing_count + i);
    if !contiguous {
        return Err(CatalogError::PartitionIdsNotContiguous {
            expected_first_id: existing_count as u32,
        });
    }
    Ok(())
}

fn check_options(options: &TopicOptions) -> Result<(), CatalogError> {
    // A partition the engine could not open would stop the next start-up.
    if !(SEGMENT_SIZE_MIN_BYTES..=SEGMENT_SIZE_MAX_BYTES).contains(&options.segment_size_bytes) {
        return Err(CatalogError::InvalidOption(
            "segment_size outside what the storage engine supports",
        ));
    }
    if options.messages_required_to_save == 0 {
        return Err(CatalogError::InvalidOption(
            "messages_required_to_save must not be 0",
        ));
    }
    if !options.explicit.is_known() {
        return Err(CatalogError::InvalidOption("unknown explicit option bit"));
    }
    Ok(())
}

#[cfg(test)]
#[path = "catalog_tests.rs"]
mod tests;
