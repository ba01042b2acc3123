//! How metadata failures read on the wire.

use riptide_protocol::codes::ErrorCode;
use riptide_storage::metadata::CatalogError;

/// The Iggy error code for a catalog validation failure.
pub fn catalog_error_code(error: &CatalogError) -> ErrorCode {
    match error {
        CatalogError::StreamNotFound(_) => ErrorCode::StreamIdNotFound,
        CatalogError::StreamIdExists(_) => ErrorCode::CannotCreateStream,
        CatalogError::StreamNameExists(_) => ErrorCode::StreamNameAlreadyExists,
        CatalogError::TopicNotFound { .. } => ErrorCode::TopicIdNotFound,
        CatalogError::TopicIdExists { .. } => ErrorCode::CannotCreateTopic,
        CatalogError::TopicNameExists(_) => ErrorCode::TopicNameAlreadyExists,
        CatalogError::PartitionIdsNotContiguous { .. }
        | CatalogError::PartitionsCountInvalid { .. } => ErrorCode::InvalidPartitionsCount,
        CatalogError::ConsumerGroupNotFound(_) => ErrorCode::ConsumerGroupIdNotFound,
        CatalogError::ConsumerGroupIdExists(_) => ErrorCode::ConsumerGroupNameAlreadyExists,
        CatalogError::ConsumerGroupNameExists(_) => ErrorCode::ConsumerGroupNameAlreadyExists,
        CatalogError::UserNotFound(_) => ErrorCode::ResourceNotFound,
        CatalogError::UserIdExists(_) | CatalogError::UsernameExists(_) => {
            ErrorCode::UserAlreadyExists
        }
        CatalogError::CannotDeleteRootUser => ErrorCode::CannotDeleteUser,
        CatalogError::TokenNotFound(_) => ErrorCode::ResourceNotFound,
        CatalogError::TokenNameExists(_) | CatalogError::TokenHashExists => {
            ErrorCode::PersonalAccessTokenAlreadyExists
        }
        CatalogError::InvalidLength { what, .. } => invalid_length_code(what),
        CatalogError::LimitReached { .. } => ErrorCode::Error,
        CatalogError::InvalidOption(_) => ErrorCode::InvalidOptionValue,
        CatalogError::Inconsistent(_) => ErrorCode::Error,
    }
}

fn invalid_length_code(what: &str) -> ErrorCode {
    match what {
        w if w.contains("stream") => ErrorCode::InvalidStreamName,
        w if w.contains("topic") => ErrorCode::InvalidTopicName,
        w if w.contains("password") => ErrorCode::InvalidPassword,
        w if w.contains("user") => ErrorCode::InvalidUsername,
        w if w.contains("group") => ErrorCode::InvalidConsumerGroupName,
        w if w.contains("token") => ErrorCode::InvalidPersonalAccessTokenName,
        _ => ErrorCode::InvalidFormat,
    }
}
