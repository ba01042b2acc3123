//! GetSnapshotFile (code 11): what an iggy 0.11 client asks a system snapshot to hold.
//!
//! The body (`iggy_binary_protocol`'s `GetSnapshotRequest`) carries raw codes; Iggy's server turns
//! them into its `SnapshotCompression` and `SystemSnapshotType` and answers InvalidCommand for a
//! code it does not know, and for `All` next to another type. [`SnapshotSpec::parse`] does the
//! same.

use crate::codes::ErrorCode;
use crate::wire::requests::system::GetSnapshotRequest;

/// How the archive's entries are compressed (iggy's `SnapshotCompression` codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotCompression {
    /// 1: stored as is.
    Stored,
    /// 2: Deflate.
    Deflated,
    /// 3: bzip2.
    Bzip2,
    /// 4: Zstandard.
    Zstd,
    /// 5: LZMA.
    Lzma,
    /// 6: XZ.
    Xz,
}

impl SnapshotCompression {
    /// The compression of a wire code, if iggy knows it.
    pub fn from_code(code: u8) -> Option<SnapshotCompression> {
        Some(match code {
            1 => Self::Stored,
            2 => Self::Deflated,
            3 => Self::Bzip2,
            4 => Self::Zstd,
            5 => Self::Lzma,
            6 => Self::Xz,
            _ => return None,
        })
    }
}

/// One entry of the archive (iggy's `SystemSnapshotType`, without `All`, which stands for a
/// set of these).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SnapshotType {
    /// 1: the data directory's files.
    FilesystemOverview,
    /// 2: the server's process and threads.
    ProcessList,
    /// 3: the server's resource usage.
    ResourceUsage,
    /// 4: a fixed entry, for checking the plumbing.
    Test,
    /// 5: the server's logs.
    ServerLogs,
    /// 6: the effective configuration.
    ServerConfig,
}

/// Code 100: every type but `Test` (as iggy's `all_snapshot_types`).
const ALL_CODE: u8 = 100;

impl SnapshotType {
    /// What `All` stands for, in iggy's order.
    pub const ALL: [SnapshotType; 5] = [
        Self::FilesystemOverview,
        Self::ProcessList,
        Self::ResourceUsage,
        Self::ServerLogs,
        Self::ServerConfig,
    ];

    /// The type of a wire code (not `All`), if iggy knows it.
    pub fn from_code(code: u8) -> Option<SnapshotType> {
        Some(match code {
            1 => Self::FilesystemOverview,
            2 => Self::ProcessList,
            3 => Self::ResourceUsage,
            4 => Self::Test,
            5 => Self::ServerLogs,
            6 => Self::ServerConfig,
            _ => return None,
        })
    }

    /// iggy's name of the type (its `Display`); the archive entry is this plus `.txt`.
    pub fn name(self) -> &'static str {
        match self {
            Self::FilesystemOverview => "filesystem_overview",
            Self::ProcessList => "process_list",
            Self::ResourceUsage => "resource_usage",
            Self::Test => "test",
            Self::ServerLogs => "server_logs",
            Self::ServerConfig => "server_config",
        }
    }

    /// The archive entry's file name, as iggy's server names it.
    pub fn file_name(self) -> String {
        format!("{}.txt", self.name())
    }
}

/// A valid GetSnapshotFile request: the compression and the entries, `All` expanded, each type
/// once, in the order asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotSpec {
    /// How the entries are compressed.
    pub compression: SnapshotCompression,
    /// The entries, one per type.
    pub types: Vec<SnapshotType>,
}

impl SnapshotSpec {
    /// Validates a request as iggy's server does.
    ///
    /// # Errors
    /// InvalidCommand for an unknown compression or type code, or `All` next to another type.
    pub fn parse(request: &GetSnapshotRequest) -> Result<SnapshotSpec, ErrorCode> {
        let compression =
            SnapshotCompression::from_code(request.compression).ok_or(ErrorCode::InvalidCommand)?;
        let codes = &request.snapshot_types;
        if codes.contains(&ALL_CODE) {
            if codes.len() > 1 {
                return Err(ErrorCode::InvalidCommand);
            }
            return Ok(SnapshotSpec {
                compression,
                types: SnapshotType::ALL.to_vec(),
            });
        }
        let mut types = Vec::with_capacity(codes.len());
        for &code in codes {
            let kind = SnapshotType::from_code(code).ok_or(ErrorCode::InvalidCommand)?;
            // iggy would write a second entry of the same name; one is enough.
            if !types.contains(&kind) {
                types.push(kind);
            }
        }
        Ok(SnapshotSpec { compression, types })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(compression: u8, snapshot_types: &[u8]) -> GetSnapshotRequest {
        GetSnapshotRequest {
            compression,
            snapshot_types: snapshot_types.to_vec(),
        }
    }

    #[test]
    fn all_expands_to_every_type_but_test() {
        let spec = SnapshotSpec::parse(&request(2, &[100])).unwrap();
        assert_eq!(spec.compression, SnapshotCompression::Deflated);
        assert_eq!(spec.types, SnapshotType::ALL.to_vec());
        assert!(!spec.types.contains(&SnapshotType::Test));
    }

    #[test]
    fn types_keep_their_order_once_each() {
        let spec = SnapshotSpec::parse(&request(1, &[6, 4, 6, 1])).unwrap();
        assert_eq!(spec.compression, SnapshotCompression::Stored);
        assert_eq!(
            spec.types,
            [
                SnapshotType::ServerConfig,
                SnapshotType::Test,
                SnapshotType::FilesystemOverview
            ]
        );
        assert_eq!(spec.types[0].file_name(), "server_config.txt");
    }

    #[test]
    fn unknown_codes_and_all_with_others_are_invalid_commands() {
        for (compression, types) in [
            (0u8, &[1u8][..]),
            (7, &[1]),
            (2, &[0]),
            (2, &[7]),
            (2, &[99]),
            (2, &[100, 1]),
            (2, &[100, 100]),
        ] {
            assert_eq!(
                SnapshotSpec::parse(&request(compression, types)),
                Err(ErrorCode::InvalidCommand),
                "compression {compression}, types {types:?}"
            );
        }
    }

    #[test]
    fn every_code_iggy_knows_parses() {
        for code in 1..=6 {
            assert!(SnapshotCompression::from_code(code).is_some());
            assert!(SnapshotType::from_code(code).is_some());
        }
        assert!(SnapshotSpec::parse(&request(6, &[]))
            .unwrap()
            .types
            .is_empty());
    }
}
