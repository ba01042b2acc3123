//! Command codes, VSR operations, error codes and eviction reasons of Iggy 0.11.
//!
//! The numbers are the wire values of `iggy_binary_protocol` 0.11.0 (`codes.rs`,
//! `consensus/operation.rs`, `consensus/header.rs`) and `iggy_common` 0.11.0 (`IggyError`).
//! Tests at the bottom cross-check every table against those crates.

/// Declares a fieldless enum with explicit wire values and its checked conversion.
macro_rules! wire_enum {
    ($(#[$meta:meta])* $name:ident : $repr:ty { $($(#[$vmeta:meta])* $variant:ident = $value:expr,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr($repr)]
        #[allow(missing_docs)] // variants are the wire names themselves
        pub enum $name {
            $($(#[$vmeta])* $variant = $value,)+
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The variant with wire value `value`, or `None` for an unknown value.
            #[must_use]
            pub const fn from_wire(value: $repr) -> Option<Self> {
                match value {
                    $($value => Some($name::$variant),)+
                    _ => None,
                }
            }

            /// The wire value.
            #[must_use]
            pub const fn wire(self) -> $repr {
                self as $repr
            }
        }
    };
}

wire_enum! {
    /// Every command code of Iggy 0.11 (`core/binary_protocol/src/codes.rs`).
    CommandCode: u32 {
        Ping = 1,
        GetStats = 10,
        GetSnapshotFile = 11,
        GetClusterMetadata = 12,
        DescribeOptions = 13,
        AttachConsumerSession = 14,
        GetMe = 20,
        GetClient = 21,
        GetClients = 22,
        GetUser = 31,
        GetUsers = 32,
        CreateUser = 33,
        DeleteUser = 34,
        UpdateUser = 35,
        UpdatePermissions = 36,
        ChangePassword = 37,
        /// Legacy login; a 0.11 server evicts it with `MalformedLogin`.
        LoginUser = 38,
        LogoutUser = 39,
        LoginRegister = 40,
        GetPersonalAccessTokens = 41,
        CreatePersonalAccessToken = 42,
        DeletePersonalAccessToken = 43,
        /// Legacy token login; a 0.11 server evicts it with `MalformedLogin`.
        LoginWithPersonalAccessToken = 44,
        LoginRegisterWithPat = 45,
        PollMessages = 100,
        SendMessages = 101,
        FlushUnsavedBuffer = 102,
        GetPollRouting = 103,
        PollMessagesOnPrimary = 104,
        GetConsumerOffset = 120,
        StoreConsumerOffset = 121,
        DeleteConsumerOffset = 122,
        GetConsumerOffsetRouting = 123,
        GetStream = 200,
        GetStreams = 201,
        CreateStream = 202,
        DeleteStream = 203,
        UpdateStream = 204,
        PurgeStream = 205,
        GetTopic = 300,
        GetTopics = 301,
        CreateTopic = 302,
        DeleteTopic = 303,
        UpdateTopic = 304,
        PurgeTopic = 305,
        CreatePartitions = 402,
        DeletePartitions = 403,
        DeleteSegments = 503,
        GetConsumerGroup = 600,
        GetConsumerGroups = 601,
        CreateConsumerGroup = 602,
        DeleteConsumerGroup = 603,
        JoinConsumerGroup = 604,
        LeaveConsumerGroup = 605,
        SyncConsumerGroup = 606,
    }
}

wire_enum! {
    /// VSR operation byte of a request header (`consensus/operation.rs`).
    Operation: u8 {
        Reserved = 0,
        Register = 1,
        NonReplicated = 2,
        Logout = 3,
        CreateTopicWithAssignments = 64,
        CreatePartitionsWithAssignments = 65,
        RemoveConsumerGroupMember = 66,
        CompleteConsumerGroupRevocation = 67,
        TruncatePartition = 68,
        CreateStream = 128,
        UpdateStream = 129,
        DeleteStream = 130,
        PurgeStream = 131,
        CreateTopic = 132,
        UpdateTopic = 133,
        DeleteTopic = 134,
        PurgeTopic = 135,
        CreatePartitions = 136,
        DeletePartitions = 137,
        DeleteSegments = 138,
        CreateConsumerGroup = 139,
        DeleteConsumerGroup = 140,
        CreateUser = 141,
        UpdateUser = 142,
        DeleteUser = 143,
        ChangePassword = 144,
        UpdatePermissions = 145,
        CreatePersonalAccessToken = 146,
        DeletePersonalAccessToken = 147,
        JoinConsumerGroup = 148,
        LeaveConsumerGroup = 149,
        SendMessages = 160,
        StoreConsumerOffset = 161,
        DeleteConsumerOffset = 162,
    }
}

wire_enum! {
    /// Reason byte (offset 255) of an eviction header (`consensus/header.rs`).
    EvictionReason: u8 {
        NoSession = 1,
        ClientReleaseTooLow = 2,
        ClientReleaseTooHigh = 3,
        InvalidRequestOperation = 4,
        InvalidRequestBody = 5,
        InvalidRequestBodySize = 6,
        SessionTooLow = 7,
        SessionReleaseMismatch = 8,
        InvalidCredentials = 9,
        InvalidToken = 10,
        UserInactive = 11,
        SessionError = 12,
        StaleClient = 13,
        IncompatibleProtocol = 14,
        MalformedLogin = 15,
    }
}

wire_enum! {
    /// Where a poll starts (`iggy_common::PollingKind`).
    PollingKind: u8 {
        Offset = 1,
        Timestamp = 2,
        First = 3,
        Last = 4,
        Next = 5,
    }
}

wire_enum! {
    /// Who a consumer offset belongs to (`iggy_common::ConsumerKind`).
    ConsumerKind: u8 {
        Consumer = 1,
        ConsumerGroup = 2,
    }
}

wire_enum! {
    /// A user's status (`iggy_common::UserStatus`).
    UserStatus: u8 {
        Active = 1,
        Inactive = 2,
    }
}

wire_enum! {
    /// A client's transport in client listings (`iggy_common::TransportProtocol`).
    TransportProtocol: u8 {
        Tcp = 1,
        Quic = 2,
        Http = 3,
        WebSocket = 4,
    }
}

wire_enum! {
    /// A node's role in GetClusterMetadata (`iggy_common::ClusterNodeRole`).
    ClusterNodeRole: u8 {
        Leader = 0,
        Follower = 1,
    }
}

wire_enum! {
    /// A node's status in GetClusterMetadata (`iggy_common::ClusterNodeStatus`).
    ClusterNodeStatus: u8 {
        Healthy = 0,
        Starting = 1,
        Stopping = 2,
        Unreachable = 3,
        Maintenance = 4,
        Unknown = 5,
    }
}

wire_enum! {
    /// The kind byte of a topic option value (Iggy's option value kinds).
    OptionValueKind: u8 {
        String = 2,
        Bool = 3,
        Uint8 = 9,
        Uint32 = 11,
        Uint64 = 12,
    }
}

/// Expands the generated `(name = code)` list into the `ErrorCode` enum.
macro_rules! error_codes {
    ($($variant:ident = $value:expr,)+) => {
        wire_enum! {
            /// Every `IggyError` code of `iggy_common` 0.11.0: the `status` of a deny reply and
            /// the `result` of a result-section entry.
            ErrorCode: u32 { $($variant = $value,)+ }
        }
    };
}

include!("codes/error_codes.rs");

impl ErrorCode {
    /// The wire code, as sent in a reply `status` or a result entry.
    #[must_use]
    pub const fn as_u32(self) -> u32 {
        self.wire()
    }

    /// The error with wire code `code`; `None` for a code iggy 0.11 does not define.
    #[must_use]
    pub const fn from_u32(code: u32) -> Option<Self> {
        Self::from_wire(code)
    }
}

impl CommandCode {
    /// The wire code.
    #[must_use]
    pub const fn as_u32(self) -> u32 {
        self.wire()
    }

    /// The command with wire code `code`; `None` for an unknown code.
    #[must_use]
    pub const fn from_u32(code: u32) -> Option<Self> {
        Self::from_wire(code)
    }

    /// The operation the iggy 0.11 SDK puts in the request header for this command
    /// (`iggy::vsr::encode_request_header`): `Register` for the two login shapes, `Logout` for
    /// logout, the replicated operation from `COMMAND_TABLE`, otherwise `NonReplicated` with the
    /// code in header bytes 196..200.
    #[must_use]
    pub const fn operation(self) -> Operation {
        match self {
            Self::LoginRegister | Self::LoginRegisterWithPat => Operation::Register,
            Self::LogoutUser => Operation::Logout,
            Self::CreateUser => Operation::CreateUser,
            Self::DeleteUser => Operation::DeleteUser,
            Self::UpdateUser => Operation::UpdateUser,
            Self::UpdatePermissions => Operation::UpdatePermissions,
            Self::ChangePassword => Operation::ChangePassword,
            Self::CreatePersonalAccessToken => Operation::CreatePersonalAccessToken,
            Self::DeletePersonalAccessToken => Operation::DeletePersonalAccessToken,
            Self::SendMessages => Operation::SendMessages,
            Self::StoreConsumerOffset => Operation::StoreConsumerOffset,
            Self::DeleteConsumerOffset => Operation::DeleteConsumerOffset,
            Self::CreateStream => Operation::CreateStream,
            Self::DeleteStream => Operation::DeleteStream,
            Self::UpdateStream => Operation::UpdateStream,
            Self::PurgeStream => Operation::PurgeStream,
            Self::CreateTopic => Operation::CreateTopic,
            Self::DeleteTopic => Operation::DeleteTopic,
            Self::UpdateTopic => Operation::UpdateTopic,
            Self::PurgeTopic => Operation::PurgeTopic,
            Self::CreatePartitions => Operation::CreatePartitions,
            Self::DeletePartitions => Operation::DeletePartitions,
            Self::DeleteSegments => Operation::DeleteSegments,
            Self::CreateConsumerGroup => Operation::CreateConsumerGroup,
            Self::DeleteConsumerGroup => Operation::DeleteConsumerGroup,
            Self::JoinConsumerGroup => Operation::JoinConsumerGroup,
            Self::LeaveConsumerGroup => Operation::LeaveConsumerGroup,
            _ => Operation::NonReplicated,
        }
    }

    /// Whether the server needs an authenticated session for this command. Only ping and the
    /// login shapes work before login (§1A.2).
    #[must_use]
    pub const fn requires_auth(self) -> bool {
        !matches!(
            self,
            Self::Ping
                | Self::LoginRegister
                | Self::LoginRegisterWithPat
                | Self::LoginUser
                | Self::LoginWithPersonalAccessToken
        )
    }
}

impl Operation {
    /// The operation with wire value `value`; `None` for an unknown value.
    #[must_use]
    pub const fn from_u8(value: u8) -> Option<Self> {
        Self::from_wire(value)
    }

    /// The command a replicated operation stands for; `None` for `Register` (two shapes),
    /// `NonReplicated` (code in the header), `Logout`, `Reserved` and server-internal operations.
    #[must_use]
    pub const fn command_code(self) -> Option<CommandCode> {
        Some(match self {
            Self::CreateStream => CommandCode::CreateStream,
            Self::UpdateStream => CommandCode::UpdateStream,
            Self::DeleteStream => CommandCode::DeleteStream,
            Self::PurgeStream => CommandCode::PurgeStream,
            Self::CreateTopic => CommandCode::CreateTopic,
            Self::UpdateTopic => CommandCode::UpdateTopic,
            Self::DeleteTopic => CommandCode::DeleteTopic,
            Self::PurgeTopic => CommandCode::PurgeTopic,
            Self::CreatePartitions => CommandCode::CreatePartitions,
            Self::DeletePartitions => CommandCode::DeletePartitions,
            Self::DeleteSegments => CommandCode::DeleteSegments,
            Self::CreateConsumerGroup => CommandCode::CreateConsumerGroup,
            Self::DeleteConsumerGroup => CommandCode::DeleteConsumerGroup,
            Self::CreateUser => CommandCode::CreateUser,
            Self::UpdateUser => CommandCode::UpdateUser,
            Self::DeleteUser => CommandCode::DeleteUser,
            Self::ChangePassword => CommandCode::ChangePassword,
            Self::UpdatePermissions => CommandCode::UpdatePermissions,
            Self::CreatePersonalAccessToken => CommandCode::CreatePersonalAccessToken,
            Self::DeletePersonalAccessToken => CommandCode::DeletePersonalAccessToken,
            Self::JoinConsumerGroup => CommandCode::JoinConsumerGroup,
            Self::LeaveConsumerGroup => CommandCode::LeaveConsumerGroup,
            Self::SendMessages => CommandCode::SendMessages,
            Self::StoreConsumerOffset => CommandCode::StoreConsumerOffset,
            Self::DeleteConsumerOffset => CommandCode::DeleteConsumerOffset,
            Self::Logout => CommandCode::LogoutUser,
            _ => return None,
        })
    }

    /// Server-internal operations (64..128) that no client may send.
    #[must_use]
    pub const fn is_internal(self) -> bool {
        (self as u8) >= 64 && (self as u8) < 128
    }

    /// Whether a client may put this operation in a request header.
    #[must_use]
    pub const fn is_client_allowed(self) -> bool {
        !matches!(self, Self::Reserved) && !self.is_internal()
    }

    /// Metadata-plane mutations (128..160) other than DeleteSegments, which iggy resolves on
    /// the partition's shard and which is therefore not result-framed (`Operation::is_metadata`).
    #[must_use]
    pub const fn is_metadata(self) -> bool {
        (self as u8) >= 128 && (self as u8) < 160 && !matches!(self, Self::DeleteSegments)
    }

    /// Partition-plane operations (>= 160).
    #[must_use]
    pub const fn is_partition(self) -> bool {
        (self as u8) >= 160
    }

    /// Whether the reply body starts with a result section (`Operation::is_result_framed` in
    /// iggy): every metadata op and the consumer-offset writes. A non-empty Register reply is
    /// result-framed too; that case is the caller's (see [`crate::reply::login_reply`]).
    #[must_use]
    pub const fn is_result_framed(self) -> bool {
        self.is_metadata()
            || self.is_internal()
            || matches!(self, Self::StoreConsumerOffset | Self::DeleteConsumerOffset)
    }
}

impl EvictionReason {
    /// The reason with wire value `value`; `None` for 0 (reserved) or an unknown value.
    #[must_use]
    pub const fn from_u8(value: u8) -> Option<Self> {
        Self::from_wire(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use iggy_binary_protocol::consensus::Operation as IggyOperation;
    use iggy_binary_protocol::dispatch::{lookup_command, COMMAND_TABLE};

    #[test]
    fn small_wire_enums_match_iggy_common_both_ways() {
        for kind in PollingKind::ALL {
            let theirs = iggy_common::PollingKind::from_code(kind.wire()).expect("known");
            assert_eq!(theirs.as_code(), kind.wire());
        }
        for kind in ConsumerKind::ALL {
            let theirs = iggy_common::ConsumerKind::from_code(kind.wire()).expect("known");
            assert_eq!(theirs.as_code(), kind.wire());
        }
        for status in UserStatus::ALL {
            let theirs = iggy_common::UserStatus::from_code(status.wire()).expect("known");
            assert_eq!(theirs.as_code(), status.wire());
        }
        for transport in TransportProtocol::ALL {
            let theirs = iggy_common::TransportProtocol::try_from(transport.wire()).expect("known");
            assert_eq!(theirs as u8, transport.wire());
        }
        for role in ClusterNodeRole::ALL {
            let theirs = iggy_common::ClusterNodeRole::try_from(role.wire()).expect("known");
            assert_eq!(theirs as u8, role.wire());
        }
        for status in ClusterNodeStatus::ALL {
            assert_eq!(
                iggy_common::ClusterNodeStatus::try_from(status.wire()).map(|s| s as u8),
                // iggy's TryFrom does not accept its own `Unknown`; the discriminant is still 5.
                if *status == ClusterNodeStatus::Unknown {
                    Err(iggy_common::IggyError::InvalidCommand)
                } else {
                    Ok(status.wire())
                }
            );
        }
        assert_eq!(iggy_common::ClusterNodeStatus::Unknown as u8, 5);
        assert_eq!(PollingKind::from_wire(6), None);
        assert_eq!(ConsumerKind::from_wire(0), None);
    }

    #[test]
    fn command_codes_match_iggy_dispatch_table_both_ways() {
        assert_eq!(CommandCode::ALL.len(), COMMAND_TABLE.len());
        for meta in COMMAND_TABLE {
            let code = CommandCode::from_u32(meta.code).expect("every iggy code is known");
            let expected = meta.operation.map_or(0, |op| op as u8);
            let ours = code.operation();
            if expected == 0 {
                assert!(
                    matches!(
                        ours,
                        Operation::NonReplicated | Operation::Register | Operation::Logout
                    ),
                    "{code:?}"
                );
            } else {
                assert_eq!(ours as u8, expected, "{code:?}");
            }
        }
        for code in CommandCode::ALL {
            assert!(lookup_command(code.as_u32()).is_some(), "{code:?}");
        }
        assert_eq!(CommandCode::from_u32(7), None);
    }

    #[test]
    fn operations_match_iggy_and_map_back_to_their_command() {
        for value in 0..=u8::MAX {
            let iggy_known = IggyOperation::is_known_code(value);
            assert_eq!(
                Operation::from_u8(value).is_some(),
                iggy_known,
                "op {value}"
            );
            if let Some(op) = Operation::from_u8(value) {
                if let Some(code) = op.command_code() {
                    if op != Operation::Logout {
                        assert_eq!(code.operation(), op);
                    }
                }
            }
        }
        for op in Operation::ALL {
            let theirs: IggyOperation = bytemuck::checked::cast(*op as u8);
            assert_eq!(op.is_result_framed(), theirs.is_result_framed(), "{op:?}");
            assert_eq!(op.is_partition(), theirs.is_partition(), "{op:?}");
            assert_eq!(op.is_internal(), theirs.is_internal(), "{op:?}");
            assert_eq!(op.is_client_allowed(), theirs.is_client_allowed(), "{op:?}");
            let metadata = theirs.is_metadata() && !theirs.is_internal();
            assert_eq!(op.is_metadata(), metadata, "{op:?}");
        }
        assert!(!Operation::DeleteSegments.is_result_framed());
        assert!(Operation::SendMessages.is_partition());
        assert!(Operation::CreateStream.is_result_framed());
        assert!(Operation::StoreConsumerOffset.is_result_framed());
        assert!(!Operation::SendMessages.is_result_framed());
        assert!(!Operation::CreateTopicWithAssignments.is_client_allowed());
    }

    #[test]
    fn error_codes_are_exactly_iggy_errors() {
        use iggy_common::IggyError;
        let mut iggy_count = 0;
        for code in 0..=20_000u32 {
            let iggy_defines = IggyError::from_code(code).as_code() == code;
            iggy_count += usize::from(iggy_defines);
            assert_eq!(
                ErrorCode::from_u32(code).is_some(),
                iggy_defines,
                "code {code}"
            );
        }
        assert_eq!(iggy_count, ErrorCode::ALL.len());
        for error in ErrorCode::ALL {
            assert_eq!(ErrorCode::from_u32(error.as_u32()), Some(*error));
        }
        assert_eq!(ErrorCode::InvalidBatchChecksum.as_u32(), 4039);
        assert_eq!(ErrorCode::Unauthenticated.as_u32(), 40);
    }

    #[test]
    fn eviction_reasons_decode_like_the_sdk() {
        for value in 0..=u8::MAX {
            let ours = EvictionReason::from_u8(value).map(|r| r as u8);
            let theirs = bytemuck_reason(value);
            assert_eq!(ours, theirs, "reason {value}");
        }
    }

    /// iggy's own decoding of the reason byte, minus the reserved sentinel 0.
    fn bytemuck_reason(value: u8) -> Option<u8> {
        use iggy_binary_protocol::consensus::EvictionReason as R;
        let all = [
            R::NoSession,
            R::ClientReleaseTooLow,
            R::ClientReleaseTooHigh,
            R::InvalidRequestOperation,
            R::InvalidRequestBody,
            R::InvalidRequestBodySize,
            R::SessionTooLow,
            R::SessionReleaseMismatch,
            R::InvalidCredentials,
            R::InvalidToken,
            R::UserInactive,
            R::SessionError,
            R::StaleClient,
            R::IncompatibleProtocol,
            R::MalformedLogin,
        ];
        all.iter().map(|r| *r as u8).find(|r| *r == value)
    }
}
