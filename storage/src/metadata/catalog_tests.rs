//! Unit tests of `Catalog`: every `Change`, its lookups, and its validation errors.

use super::*;
use crate::metadata::model::{
    CompressionAlgorithm, Durability, ExplicitOptions, StreamPermissions, TopicOptionKey,
    TopicOptionsUpdate, TopicPermissions, UserStatus,
};

fn create_stream(stream_id: u32, name: &str) -> Change {
    Change::CreateStream {
        stream_id,
        name: name.to_string(),
        created_at_us: 1_000 + u64::from(stream_id),
    }
}

fn partitions(first: u32, count: u32) -> Vec<Partition> {
    (first..first + count)
        .map(|id| Partition {
            id,
            created_at_us: 5_000 + u64::from(id),
        })
        .collect()
}

fn create_topic(stream_id: u32, topic_id: u32, name: &str, partitions_count: u32) -> Change {
    Change::CreateTopic {
        stream_id,
        topic_id,
        name: name.to_string(),
        created_at_us: 2_000,
        partitions: partitions(0, partitions_count),
        options: TopicOptions::default(),
    }
}

fn create_user(user_id: u32, username: &str) -> Change {
    Change::CreateUser {
        user_id,
        username: username.to_string(),
        password_hash: format!("$argon2id$fake${username}"),
        status: UserStatus::Active,
        permissions: None,
        created_at_us: 3_000,
    }
}

fn create_token(user_id: u32, name: &str, token_hash: &str) -> Change {
    Change::CreatePersonalAccessToken {
        user_id,
        name: name.to_string(),
        token_hash: token_hash.to_string(),
        expiry_at_us: Some(9_000),
    }
}

fn catalog_with(changes: &[Change]) -> Catalog {
    let mut catalog = Catalog::new();
    for change in changes {
        catalog.apply(change).expect("setup change applies");
    }
    catalog
}

/// Applies a change that must fail, and checks that the catalog did not move.
fn assert_rejected(catalog: &mut Catalog, change: &Change, expected: CatalogError) {
    let before = catalog.clone();
    assert_eq!(catalog.validate(change), Err(expected.clone()));
    assert_eq!(catalog.apply(change), Err(expected));
    assert_eq!(*catalog, before);
}

#[test]
fn create_stream_is_found_by_id_and_name() {
    let catalog = catalog_with(&[create_stream(0, "orders")]);
    let stream = catalog.stream(0).expect("stream 0");
    assert_eq!(stream.name, "orders");
    assert_eq!(stream.created_at_us, 1_000);
    assert!(stream.topics.is_empty());
    assert_eq!(catalog.stream_by_name("orders").map(|s| s.id), Some(0));
    assert!(catalog.stream_by_name("Orders").is_none());
    assert_eq!(catalog.next_stream_id(), Ok(1));
}

#[test]
fn create_stream_rejects_taken_id_and_name_and_bad_lengths() {
    let mut catalog = catalog_with(&[create_stream(0, "orders")]);
    assert_rejected(
        &mut catalog,
        &create_stream(0, "other"),
        CatalogError::StreamIdExists(0),
    );
    assert_rejected(
        &mut catalog,
        &create_stream(1, "orders"),
        CatalogError::StreamNameExists("orders".into()),
    );
    let too_long = "x".repeat(NAME_LENGTH_MAX_BYTES + 1);
    let expected_long = CatalogError::InvalidLength {
        what: "stream name",
        length: NAME_LENGTH_MAX_BYTES + 1,
        min: NAME_LENGTH_MIN_BYTES,
        max: NAME_LENGTH_MAX_BYTES,
    };
    assert_rejected(&mut catalog, &create_stream(1, &too_long), expected_long);
    let expected_empty = CatalogError::InvalidLength {
        what: "stream name",
        length: 0,
        min: NAME_LENGTH_MIN_BYTES,
        max: NAME_LENGTH_MAX_BYTES,
    };
    assert_rejected(&mut catalog, &create_stream(1, ""), expected_empty);
    // The longest allowed name is fine.
    let longest = "y".repeat(NAME_LENGTH_MAX_BYTES);
    catalog
        .apply(&create_stream(1, &longest))
        .expect("255 bytes");
}

#[test]
fn update_stream_renames_and_keeps_name_index_in_step() {
    let mut catalog = catalog_with(&[create_stream(0, "a"), create_stream(1, "b")]);
    let rename = Change::UpdateStream {
        stream_id: 0,
        name: "c".into(),
    };
    catalog.apply(&rename).expect("rename");
    assert!(catalog.stream_by_name("a").is_none());
    assert_eq!(catalog.stream_by_name("c").map(|s| s.id), Some(0));
    // Renaming to its own name is a no-op, to another stream's name is refused.
    let same = Change::UpdateStream {
        stream_id: 0,
        name: "c".into(),
    };
    catalog.apply(&same).expect("same name");
    let clash = Change::UpdateStream {
        stream_id: 0,
        name: "b".into(),
    };
    assert_rejected(
        &mut catalog,
        &clash,
        CatalogError::StreamNameExists("b".into()),
    );
    let unknown = Change::UpdateStream {
        stream_id: 7,
        name: "z".into(),
    };
    assert_rejected(&mut catalog, &unknown, CatalogError::StreamNotFound(7));
}

#[test]
fn delete_stream_removes_topics_and_frees_name_and_id() {
    let mut catalog = catalog_with(&[
        create_stream(0, "a"),
        create_stream(1, "b"),
        create_topic(0, 0, "t", 2),
    ]);
    catalog
        .apply(&Change::DeleteStream { stream_id: 0 })
        .expect("delete");
    assert!(catalog.stream(0).is_none());
    assert!(catalog.stream_by_name("a").is_none());
    assert!(catalog.topic(0, 0).is_none());
    assert!(catalog.topic_by_name(0, "t").is_none());
    assert_eq!(catalog.next_stream_id(), Ok(0), "lowest free slab key");
    // A new stream 0 starts with no topics even though the old one had some.
    catalog.apply(&create_stream(0, "a")).expect("recreate");
    assert!(catalog.topic_by_name(0, "t").is_none());
    let unknown = Change::DeleteStream { stream_id: 9 };
    assert_rejected(&mut catalog, &unknown, CatalogError::StreamNotFound(9));
}

#[test]
fn create_topic_keeps_partitions_and_options() {
    let options = TopicOptions {
        compression: CompressionAlgorithm::Gzip,
        message_expiry_us: 60_000_000,
        max_topic_size_bytes: 1 << 30,
        segment_size_bytes: 64 << 20,
        durability: Durability::Persisted,
        consumer_offset_durability: Durability::Persisted,
        explicit: ExplicitOptions::NONE
            .with(TopicOptionKey::MessageExpiry)
            .with(TopicOptionKey::Durability),
        ..TopicOptions::default()
    };
    let change = Change::CreateTopic {
        stream_id: 0,
        topic_id: 0,
        name: "events".into(),
        created_at_us: 42,
        partitions: partitions(0, 3),
        options,
    };
    let catalog = catalog_with(&[create_stream(0, "s"), change]);
    let topic = catalog.topic_by_name(0, "events").expect("topic by name");
    assert_eq!(topic.id, 0);
    assert_eq!(topic.created_at_us, 42);
    assert_eq!(topic.partitions, partitions(0, 3));
    assert_eq!(topic.options, options);
    let explicit: Vec<_> = topic
        .options
        .explicit
        .keys()
        .map(TopicOptionKey::name)
        .collect();
    assert_eq!(explicit, ["message_expiry", "durability"]);
    assert_eq!(catalog.next_topic_id(0), Ok(1));
    assert_eq!(
        catalog.next_topic_id(5),
        Err(CatalogError::StreamNotFound(5))
    );
}

#[test]
fn create_topic_validation() {
    let mut catalog = catalog_with(&[
        create_stream(0, "s"),
        create_stream(1, "s2"),
        create_topic(0, 0, "t", 1),
    ]);
    assert_rejected(
        &mut catalog,
        &create_topic(0, 0, "u", 1),
        CatalogError::TopicIdExists {
            stream_id: 0,
            topic_id: 0,
        },
    );
    assert_rejected(
        &mut catalog,
        &create_topic(0, 1, "t", 1),
        CatalogError::TopicNameExists("t".into()),
    );
    assert_rejected(
        &mut catalog,
        &create_topic(4, 0, "t", 1),
        CatalogError::StreamNotFound(4),
    );
    let gap = Change::CreateTopic {
        stream_id: 0,
        topic_id: 1,
        name: "gap".into(),
        created_at_us: 0,
        partitions: partitions(1, 2),
        options: TopicOptions::default(),
    };
    assert_rejected(
        &mut catalog,
        &gap,
        CatalogError::PartitionIdsNotContiguous {
            expected_first_id: 0,
        },
    );
    let zero_segment = Change::CreateTopic {
        stream_id: 0,
        topic_id: 1,
        name: "z".into(),
        created_at_us: 0,
        partitions: partitions(0, 1),
        options: TopicOptions {
            segment_size_bytes: 0,
            ..TopicOptions::default()
        },
    };
    assert_rejected(
        &mut catalog,
        &zero_segment,
        CatalogError::InvalidOption("segment_size outside what the storage engine supports"),
    );
    for segment_size_bytes in [SEGMENT_SIZE_MIN_BYTES - 1, SEGMENT_SIZE_MAX_BYTES + 1] {
        let mut change = zero_segment.clone();
        if let Change::CreateTopic { options, .. } = &mut change {
            options.segment_size_bytes = segment_size_bytes;
        }
        assert_rejected(
            &mut catalog,
            &change,
            CatalogError::InvalidOption("segment_size outside what the storage engine supports"),
        );
    }
    // The same name in another stream is fine; so is a topic without partitions.
    catalog
        .apply(&create_topic(1, 0, "t", 0))
        .expect("other stream");
}

#[test]
fn update_topic_renames_and_patches_updatable_options() {
    let mut catalog = catalog_with(&[
        create_stream(0, "s"),
        create_topic(0, 0, "t", 1),
        create_topic(0, 1, "other", 1),
    ]);
    let update = Change::UpdateTopic {
        stream_id: 0,
        topic_id: 0,
        name: "renamed".into(),
        options: TopicOptionsUpdate {
            compression: None,
            message_expiry_us: Some(5_000_000),
            max_topic_size_bytes: None,
        },
    };
    catalog.apply(&update).expect("update");
    let topic = catalog.topic_by_name(0, "renamed").expect("renamed");
    assert!(catalog.topic_by_name(0, "t").is_none());
    assert_eq!(topic.options.message_expiry_us, 5_000_000);
    assert!(topic
        .options
        .explicit
        .contains(TopicOptionKey::MessageExpiry));
    assert!(!topic
        .options
        .explicit
        .contains(TopicOptionKey::MaxTopicSize));
    assert_eq!(topic.options.max_topic_size_bytes, u64::MAX, "untouched");
    let clash = Change::UpdateTopic {
        stream_id: 0,
        topic_id: 0,
        name: "other".into(),
        options: TopicOptionsUpdate::default(),
    };
    assert_rejected(
        &mut catalog,
        &clash,
        CatalogError::TopicNameExists("other".into()),
    );
    let unknown = Change::UpdateTopic {
        stream_id: 0,
        topic_id: 8,
        name: "x".into(),
        options: TopicOptionsUpdate::default(),
    };
    let expected = CatalogError::TopicNotFound {
        stream_id: 0,
        topic_id: 8,
    };
    assert_rejected(&mut catalog, &unknown, expected);
}

#[test]
fn delete_topic_frees_name_and_id() {
    let mut catalog = catalog_with(&[
        create_stream(0, "s"),
        create_topic(0, 0, "a", 1),
        create_topic(0, 1, "b", 1),
    ]);
    let delete = Change::DeleteTopic {
        stream_id: 0,
        topic_id: 0,
    };
    catalog.apply(&delete).expect("delete");
    assert!(catalog.topic_by_name(0, "a").is_none());
    assert_eq!(catalog.next_topic_id(0), Ok(0));
    let expected = CatalogError::TopicNotFound {
        stream_id: 0,
        topic_id: 0,
    };
    assert_rejected(&mut catalog, &delete, expected);
}

#[test]
fn create_and_delete_partitions_keep_ids_contiguous() {
    let mut catalog = catalog_with(&[create_stream(0, "s"), create_topic(0, 0, "t", 2)]);
    let add = Change::CreatePartitions {
        stream_id: 0,
        topic_id: 0,
        partitions: partitions(2, 3),
    };
    catalog.apply(&add).expect("add");
    assert_eq!(
        catalog.topic(0, 0).map(|t| t.partitions.clone()),
        Some(partitions(0, 5))
    );
    let wrong = Change::CreatePartitions {
        stream_id: 0,
        topic_id: 0,
        partitions: partitions(6, 1),
    };
    let expected = CatalogError::PartitionIdsNotContiguous {
        expected_first_id: 5,
    };
    assert_rejected(&mut catalog, &wrong, expected);
    let empty = Change::CreatePartitions {
        stream_id: 0,
        topic_id: 0,
        partitions: Vec::new(),
    };
    let expected = CatalogError::PartitionsCountInvalid {
        requested: 0,
        existing: 5,
    };
    assert_rejected(&mut catalog, &empty, expected);
    let remove = Change::DeletePartitions {
        stream_id: 0,
        topic_id: 0,
        count: 2,
    };
    catalog.apply(&remove).expect("remove");
    assert_eq!(
        catalog.topic(0, 0).map(|t| t.partitions.clone()),
        Some(partitions(0, 3))
    );
    for count in [0, 4] {
        let change = Change::DeletePartitions {
            stream_id: 0,
            topic_id: 0,
            count,
        };
        let expected = CatalogError::PartitionsCountInvalid {
            requested: count,
            existing: 3,
        };
        assert_rejected(&mut catalog, &change, expected);
    }
}

#[test]
fn partition_limits_are_enforced() {
    let mut catalog = catalog_with(&[create_stream(0, "s")]);
    let too_many = Change::CreateTopic {
        stream_id: 0,
        topic_id: 0,
        name: "t".into(),
        created_at_us: 0,
        partitions: partitions(0, PARTITIONS_PER_CHANGE_COUNT_MAX as u32 + 1),
        options: TopicOptions::default(),
    };
    let expected = CatalogError::LimitReached {
        what: "partitions in one change",
        max: PARTITIONS_PER_CHANGE_COUNT_MAX,
    };
    assert_rejected(&mut catalog, &too_many, expected);
}

#[test]
fn consumer_groups_by_id_and_name() {
    let mut catalog = catalog_with(&[create_stream(0, "s"), create_topic(0, 0, "t", 1)]);
    let create = |group_id: u32, name: &str| Change::CreateConsumerGroup {
        stream_id: 0,
        topic_id: 0,
        group_id,
        name: name.to_string(),
    };
    assert_eq!(catalog.next_consumer_group_id(0, 0), Ok(0));
    catalog.apply(&create(0, "g0")).expect("g0");
    catalog.apply(&create(1, "g1")).expect("g1");
    assert_eq!(
        catalog.consumer_group(0, 0, 1).map(|g| g.name.as_str()),
        Some("g1")
    );
    assert_eq!(
        catalog.consumer_group_by_name(0, 0, "g0").map(|g| g.id),
        Some(0)
    );
    assert_rejected(
        &mut catalog,
        &create(0, "x"),
        CatalogError::ConsumerGroupIdExists(0),
    );
    assert_rejected(
        &mut catalog,
        &create(2, "g1"),
        CatalogError::ConsumerGroupNameExists("g1".into()),
    );
    let delete = Change::DeleteConsumerGroup {
        stream_id: 0,
        topic_id: 0,
        group_id: 0,
    };
    catalog.apply(&delete).expect("delete");
    assert!(catalog.consumer_group_by_name(0, 0, "g0").is_none());
    assert_eq!(catalog.next_consumer_group_id(0, 0), Ok(0));
    assert_rejected(
        &mut catalog,
        &delete,
        CatalogError::ConsumerGroupNotFound(0),
    );
    let expected = CatalogError::TopicNotFound {
        stream_id: 0,
        topic_id: 3,
    };
    assert_eq!(catalog.next_consumer_group_id(0, 3), Err(expected));
}

#[test]
fn create_user_with_permissions_is_found_by_username() {
    let mut permissions = Permissions::root();
    let mut stream = StreamPermissions {
        read_stream: true,
        ..StreamPermissions::default()
    };
    let topic = TopicPermissions {
        send_messages: true,
        ..TopicPermissions::default()
    };
    stream.topics.insert(3, topic);
    permissions.streams.insert(1, stream);
    let change = Change::CreateUser {
        user_id: 0,
        username: "root".into(),
        password_hash: "$argon2id$v=19$fake".into(),
        status: UserStatus::Active,
        permissions: Some(permissions.clone()),
        created_at_us: 77,
    };
    let mut catalog = catalog_with(&[change]);
    let user = catalog.user_by_username("root").expect("root");
    assert_eq!(user.id, 0);
    assert_eq!(user.permissions.as_ref(), Some(&permissions));
    assert_eq!(user.created_at_us, 77);
    assert_eq!(catalog.next_user_id(), Ok(1));
    assert_rejected(
        &mut catalog,
        &create_user(0, "other"),
        CatalogError::UserIdExists(0),
    );
    assert_rejected(
        &mut catalog,
        &create_user(1, "root"),
        CatalogError::UsernameExists("root".into()),
    );
    let short = CatalogError::InvalidLength {
        what: "username",
        length: 2,
        min: USERNAME_LENGTH_MIN_BYTES,
        max: USERNAME_LENGTH_MAX_BYTES,
    };
    assert_rejected(&mut catalog, &create_user(1, "ab"), short);
}

#[test]
fn oversized_permissions_are_refused() {
    let mut permissions = Permissions::default();
    let mut stream = StreamPermissions::default();
    for topic_id in 0..PERMISSION_ENTRIES_COUNT_MAX as u32 {
        stream.topics.insert(topic_id, TopicPermissions::default());
    }
    permissions.streams.insert(0, stream);
    let mut catalog = catalog_with(&[create_user(0, "root")]);
    let change = Change::UpdatePermissions {
        user_id: 0,
        permissions: Some(permissions),
    };
    let expected = CatalogError::LimitReached {
        what: "permission entries",
        max: PERMISSION_ENTRIES_COUNT_MAX,
    };
    assert_rejected(&mut catalog, &change, expected);
}

#[test]
fn update_user_changes_username_and_status() {
    let mut catalog = catalog_with(&[create_user(0, "root"), create_user(1, "alice")]);
    let update = Change::UpdateUser {
        user_id: 1,
        username: Some("alicia".into()),
        status: Some(UserStatus::Inactive),
    };
    catalog.apply(&update).expect("update");
    assert!(catalog.user_by_username("alice").is_none());
    let user = catalog.user_by_username("alicia").expect("renamed");
    assert_eq!(user.status, UserStatus::Inactive);
    let status_only = Change::UpdateUser {
        user_id: 1,
        username: None,
        status: Some(UserStatus::Active),
    };
    catalog.apply(&status_only).expect("status");
    assert_eq!(
        catalog.user(1).map(|u| (u.username.as_str(), u.status)),
        Some(("alicia", UserStatus::Active))
    );
    let clash = Change::UpdateUser {
        user_id: 1,
        username: Some("root".into()),
        status: None,
    };
    assert_rejected(
        &mut catalog,
        &clash,
        CatalogError::UsernameExists("root".into()),
    );
    let unknown = Change::UpdateUser {
        user_id: 5,
        username: None,
        status: None,
    };
    assert_rejected(&mut catalog, &unknown, CatalogError::UserNotFound(5));
}

#[test]
fn change_password_and_update_permissions() {
    let mut catalog = catalog_with(&[create_user(0, "root"), create_user(1, "bob")]);
    let change = Change::ChangePassword {
        user_id: 1,
        password_hash: "$argon2id$new".into(),
    };
    catalog.apply(&change).expect("password");
    assert_eq!(
        catalog.user(1).map(|u| u.password_hash.as_str()),
        Some("$argon2id$new")
    );
    let empty_hash = Change::ChangePassword {
        user_id: 1,
        password_hash: String::new(),
    };
    let expected = CatalogError::InvalidLength {
        what: "password hash",
        length: 0,
        min: 1,
        max: HASH_LENGTH_MAX_BYTES,
    };
    assert_rejected(&mut catalog, &empty_hash, expected);
    let permissions = Change::UpdatePermissions {
        user_id: 1,
        permissions: Some(Permissions::root()),
    };
    catalog.apply(&permissions).expect("permissions");
    assert_eq!(
        catalog.user(1).and_then(|u| u.permissions.clone()),
        Some(Permissions::root())
    );
    let cleared = Change::UpdatePermissions {
        user_id: 1,
        permissions: None,
    };
    catalog.apply(&cleared).expect("clear");
    assert_eq!(catalog.user(1).map(|u| u.permissions.is_none()), Some(true));
    let unknown = Change::ChangePassword {
        user_id: 4,
        password_hash: "h".into(),
    };
    assert_rejected(&mut catalog, &unknown, CatalogError::UserNotFound(4));
}

#[test]
fn delete_user_removes_its_tokens_but_root_stays() {
    let mut catalog = catalog_with(&[
        create_user(0, "root"),
        create_user(1, "carol"),
        create_token(1, "ci-token", "hash-1"),
    ]);
    assert!(catalog.token_by_hash("hash-1").is_some());
    catalog
        .apply(&Change::DeleteUser { user_id: 1 })
        .expect("delete");
    assert!(catalog.user_by_username("carol").is_none());
    assert!(catalog.token_by_hash("hash-1").is_none());
    assert_eq!(catalog.next_user_id(), Ok(1));
    let root = Change::DeleteUser { user_id: 0 };
    assert_rejected(&mut catalog, &root, CatalogError::CannotDeleteRootUser);
    let unknown = Change::DeleteUser { user_id: 1 };
    assert_rejected(&mut catalog, &unknown, CatalogError::UserNotFound(1));
}

#[test]
fn personal_access_tokens_by_hash() {
    let mut catalog = catalog_with(&[
        create_user(0, "root"),
        create_user(1, "dave"),
        create_token(1, "deploy", "h-deploy"),
    ]);
    let (user, token) = catalog.token_by_hash("h-deploy").expect("token");
    assert_eq!(
        (user.id, token.name.as_str(), token.expiry_at_us),
        (1, "deploy", Some(9_000))
    );
    assert_rejected(
        &mut catalog,
        &create_token(1, "deploy", "h-other"),
        CatalogError::TokenNameExists("deploy".into()),
    );
    assert_rejected(
        &mut catalog,
        &create_token(0, "again", "h-deploy"),
        CatalogError::TokenHashExists,
    );
    assert_rejected(
        &mut catalog,
        &create_token(7, "tok", "h7"),
        CatalogError::UserNotFound(7),
    );
    let short_name = CatalogError::InvalidLength {
        what: "token name",
        length: 2,
        min: TOKEN_NAME_LENGTH_MIN_BYTES,
        max: TOKEN_NAME_LENGTH_MAX_BYTES,
    };
    assert_rejected(&mut catalog, &create_token(1, "ab", "h8"), short_name);
    let delete = Change::DeletePersonalAccessToken {
        user_id: 1,
        name: "deploy".into(),
    };
    catalog.apply(&delete).expect("delete");
    assert!(catalog.token_by_hash("h-deploy").is_none());
    assert_rejected(
        &mut catalog,
        &delete,
        CatalogError::TokenNotFound("deploy".into()),
    );
}

#[test]
fn tokens_per_user_are_limited() {
    let mut catalog = catalog_with(&[create_user(0, "root")]);
    for i in 0..TOKENS_PER_USER_COUNT_MAX {
        let change = create_token(0, &format!("token-{i}"), &format!("hash-{i}"));
        catalog.apply(&change).expect("under the limit");
    }
    let expected = CatalogError::LimitReached {
        what: "personal access tokens",
        max: TOKENS_PER_USER_COUNT_MAX,
    };
    assert_rejected(
        &mut catalog,
        &create_token(0, "one-more", "hash-x"),
        expected,
    );
}

#[test]
fn lowest_free_id_fills_gaps() {
    let mut catalog = catalog_with(&[
        create_stream(0, "a"),
        create_stream(1, "b"),
        create_stream(2, "c"),
    ]);
    catalog
        .apply(&Change::DeleteStream { stream_id: 1 })
        .expect("delete");
    assert_eq!(catalog.next_stream_id(), Ok(1));
    catalog.apply(&create_stream(1, "d")).expect("refill");
    assert_eq!(catalog.next_stream_id(), Ok(3));
}

#[test]
fn snapshot_data_round_trip_rebuilds_indexes() {
    let catalog = catalog_with(&[
        create_stream(0, "s"),
        create_topic(0, 0, "t", 2),
        create_user(0, "root"),
        create_token(0, "tok", "h"),
    ]);
    let bytes = postcard::to_allocvec(&catalog.data()).expect("encode");
    let data: CatalogData = postcard::from_bytes(&bytes).expect("decode");
    let rebuilt = Catalog::from_data(data).expect("consistent");
    assert_eq!(rebuilt, catalog);
    assert_eq!(rebuilt.topic_by_name(0, "t").map(|t| t.id), Some(0));
    assert_eq!(rebuilt.token_by_hash("h").map(|(u, _)| u.id), Some(0));
    assert_eq!(rebuilt.user_by_username("root").map(|u| u.id), Some(0));
}

#[test]
fn inconsistent_snapshot_data_is_refused() {
    let mut streams = BTreeMap::new();
    for (key, name) in [(0u32, "same"), (1, "same")] {
        let stream = Stream {
            id: key,
            name: name.into(),
            created_at_us: 0,
            topics: BTreeMap::new(),
        };
        streams.insert(key, stream);
    }
    let data = CatalogData {
        streams,
        users: BTreeMap::new(),
    };
    assert_eq!(
        Catalog::from_data(data),
        Err(CatalogError::Inconsistent("stream ids or names"))
    );
}
