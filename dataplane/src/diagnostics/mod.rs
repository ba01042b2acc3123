//! System snapshots (iggy's GetSnapshotFile, `iggy snapshot`): a zip archive of diagnostics, one
//! entry per requested type, named as iggy's server names them (`<type>.txt`).
//!
//! Everything is read in Rust (the data directory walked, `/proc` parsed), never by running
//! `ls`, `ps` or `top` as iggy's server does, and every entry is bounded, so the archive is too.
//! Building one walks files and compresses: it runs on a helper thread of the metadata service
//! (`mesh::metadata_thread`) or the cluster's blocking pool, never on a network thread.

mod filesystem;
mod process;

use riptide_config::Config;
use riptide_protocol::codes::ErrorCode;
use riptide_protocol::snapshot::{SnapshotCompression, SnapshotSpec, SnapshotType};
use std::io::{Cursor, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipWriter};

/// Largest archive answered; past it the request fails with SnapshotFileCompletionFailed. The
/// entries are bounded well below it; this is the backstop.
pub const SNAPSHOT_ARCHIVE_MAX_BYTES: usize = 64 * 1024 * 1024;
/// Most bytes of the log file's tail put in `server_logs.txt`.
const LOG_TAIL_MAX_BYTES: u64 = 4 * 1024 * 1024;
/// What iggy's server puts in `test.txt` (the output of `echo test`).
const TEST_ENTRY: &str = "test\n";
/// The runtime stats the dataplane publishes, added next to `resource_usage.txt`.
const STATS_ENTRY: &str = "stats.json";

/// Whether the archive can be built with this compression. Stored and Deflated can; the others
/// iggy offers (bzip2, zstd, lzma, xz) are not built into riptide.
pub fn supported(compression: SnapshotCompression) -> bool {
    matches!(
        compression,
        SnapshotCompression::Stored | SnapshotCompression::Deflated
    )
}

/// One snapshot to build: what was asked and what the entries are read from.
pub struct SnapshotJob {
    pub spec: SnapshotSpec,
    /// The effective configuration (rendered with its secrets masked).
    pub config: Config,
}

impl std::fmt::Debug for SnapshotJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotJob")
            .field("spec", &self.spec)
            .finish_non_exhaustive()
    }
}

impl SnapshotJob {
    /// The archive's bytes.
    ///
    /// # Errors
    /// FeatureUnavailable for a compression riptide does not build; SnapshotFileCompletionFailed
    /// when the archive cannot be written or would pass [`SNAPSHOT_ARCHIVE_MAX_BYTES`].
    pub fn build(&self) -> Result<Vec<u8>, ErrorCode> {
        self.build_bounded(SNAPSHOT_ARCHIVE_MAX_BYTES)
    }

    fn build_bounded(&self, max_bytes: usize) -> Result<Vec<u8>, ErrorCode> {
        let method = match self.spec.compression {
            SnapshotCompression::Stored => CompressionMethod::Stored,
            SnapshotCompression::Deflated => CompressionMethod::Deflated,
            _ => return Err(ErrorCode::FeatureUnavailable),
        };
        let options = SimpleFileOptions::default()
            .compression_method(method)
            .unix_permissions(0o644);
        let mut zip = ZipWriter::new(BoundedCursor::new(max_bytes));
        let failed = |error: &dyn std::fmt::Display| {
            tracing::warn!(%error, "system snapshot could not be completed");
            ErrorCode::SnapshotFileCompletionFailed
        };
        for &kind in &self.spec.types {
            for (name, content) in self.entries(kind) {
                zip.start_file(name, options).map_err(|e| failed(&e))?;
                zip.write_all(content.as_bytes()).map_err(|e| failed(&e))?;
            }
        }
        let cursor = zip.finish().map_err(|e| failed(&e))?;
        Ok(cursor.into_inner())
    }

    /// The entries of one type: its `<type>.txt`, and for resource usage also the runtime
    /// stats as the dataplane publishes them.
    fn entries(&self, kind: SnapshotType) -> Vec<(String, String)> {
        let data_dir = &self.config.system.path;
        let text = match kind {
            SnapshotType::FilesystemOverview => filesystem::overview(data_dir),
            SnapshotType::ProcessList => process::threads(),
            SnapshotType::ResourceUsage => {
                return vec![
                    (kind.file_name(), process::resource_usage()),
                    (STATS_ENTRY.to_string(), runtime_stats(data_dir)),
                ];
            }
            SnapshotType::Test => TEST_ENTRY.to_string(),
            SnapshotType::ServerLogs => server_logs(&self.config),
            SnapshotType::ServerConfig => self.config.to_toml_masked(),
        };
        vec![(kind.file_name(), text)]
    }
}

/// `<data>/runtime/stats.json` as published (JSON), or a JSON object saying why it is missing.
fn runtime_stats(data_dir: &Path) -> String {
    let path = riptide_config::stats::stats_path(data_dir);
    std::fs::read_to_string(&path).unwrap_or_else(|error| {
        serde_json::json!({
            "error": format!("cannot read {}: {error}", path.display())
        })
        .to_string()
    })
}

/// The dataplane logs to standard error. When that is a file (`riptide up` appends it to its
/// log), its tail; otherwise (a terminal, a pipe to journald or to riptide-control) where the
/// lines go.
fn server_logs(config: &Config) -> String {
    let target = std::fs::read_link("/proc/self/fd/2").unwrap_or_else(|_| PathBuf::from("?"));
    let mut text = format!(
        "riptide-dataplane logs to standard error ({}), level {:?}.\n",
        target.display(),
        config.log.level
    );
    match log_tail(&target) {
        Some(Ok(tail)) => {
            text.push_str(&format!(
                "Last {} bytes of {}:\n\n",
                tail.len(),
                target.display()
            ));
            text.push_str(&tail);
        }
        Some(Err(error)) => {
            text.push_str(&format!("Cannot read {}: {error}\n", target.display()));
        }
        None => text.push_str(
            "It is not a file: under riptide-control the lines go to riptide-control's own \
             standard error (journalctl -u riptide-control under systemd, the log file of \
             `riptide up`).\n",
        ),
    }
    text
}

/// The last [`LOG_TAIL_MAX_BYTES`] of a regular file, from its first whole line; `None` when
/// `path` is not a regular file.
fn log_tail(path: &Path) -> Option<std::io::Result<String>> {
    let metadata = std::fs::metadata(path).ok()?;
    if !metadata.is_file() {
        return None;
    }
    Some((|| {
        let mut file = std::fs::File::open(path)?;
        let start = metadata.len().saturating_sub(LOG_TAIL_MAX_BYTES);
        file.seek(SeekFrom::Start(start))?;
        let mut bytes = Vec::new();
        file.take(LOG_TAIL_MAX_BYTES).read_to_end(&mut bytes)?;
        let text = String::from_utf8_lossy(&bytes);
        let whole_lines = match text.find('\n') {
            Some(newline) if start > 0 => &text[newline + 1..],
            _ => &text[..],
        };
        Ok(whole_lines.to_string())
    })())
}

/// An in-memory archive that refuses to grow past a bound (the zip writer seeks back to patch
/// entry headers, so it needs `Seek`).
struct BoundedCursor {
    cursor: Cursor<Vec<u8>>,
    max_bytes: usize,
}

impl BoundedCursor {
    fn new(max_bytes: usize) -> BoundedCursor {
        BoundedCursor {
            cursor: Cursor::new(Vec::new()),
            max_bytes,
        }
    }

    fn into_inner(self) -> Vec<u8> {
        self.cursor.into_inner()
    }
}

impl Write for BoundedCursor {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let end = usize::try_from(self.cursor.position())
            .unwrap_or(usize::MAX)
            .saturating_add(bytes.len());
        if end > self.max_bytes {
            return Err(std::io::Error::other(format!(
                "the archive would pass {} bytes",
                self.max_bytes
            )));
        }
        self.cursor.write(bytes)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Seek for BoundedCursor {
    fn seek(&mut self, position: SeekFrom) -> std::io::Result<u64> {
        self.cursor.seek(position)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn job(dir: &Path, compression: SnapshotCompression, types: &[SnapshotType]) -> SnapshotJob {
        let mut config = Config::load_from(None, &[]).unwrap();
        config.system.path = dir.to_path_buf();
        config.root.password = "s3cret-root-password".to_string();
        SnapshotJob {
            spec: SnapshotSpec {
                compression,
                types: types.to_vec(),
            },
            config,
        }
    }

    fn entries(archive: &[u8]) -> BTreeMap<String, String> {
        let mut zip = zip::ZipArchive::new(Cursor::new(archive)).unwrap();
        (0..zip.len())
            .map(|index| {
                let mut file = zip.by_index(index).unwrap();
                let mut text = String::new();
                file.read_to_string(&mut text).unwrap();
                (file.name().unwrap().to_string(), text)
            })
            .collect()
    }

    #[test]
    fn every_type_has_its_entry_in_both_compressions() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("runtime")).unwrap();
        std::fs::write(
            dir.path().join("runtime/stats.json"),
            "{\"mode\":\"kernel\"}",
        )
        .unwrap();
        let mut all = SnapshotType::ALL.to_vec();
        all.push(SnapshotType::Test);
        for compression in [SnapshotCompression::Stored, SnapshotCompression::Deflated] {
            let archive = job(dir.path(), compression, &all).build().unwrap();
            let entries = entries(&archive);
            let names: Vec<_> = entries.keys().map(String::as_str).collect();
            assert_eq!(
                names,
                [
                    "filesystem_overview.txt",
                    "process_list.txt",
                    "resource_usage.txt",
                    "server_config.txt",
                    "server_logs.txt",
                    "stats.json",
                    "test.txt"
                ]
            );
            assert_eq!(entries["test.txt"], "test\n");
            assert_eq!(entries["stats.json"], "{\"mode\":\"kernel\"}");
            let config: toml::Value = toml::from_str(&entries["server_config.txt"]).unwrap();
            assert!(config.get("system").is_some());
            assert!(!entries["server_config.txt"].contains("s3cret-root-password"));
            assert!(entries["filesystem_overview.txt"].contains("runtime/stats.json"));
        }
    }

    #[test]
    fn missing_stats_are_still_json() {
        let dir = tempfile::tempdir().unwrap();
        let archive = job(
            dir.path(),
            SnapshotCompression::Stored,
            &[SnapshotType::ResourceUsage],
        )
        .build()
        .unwrap();
        let stats: serde_json::Value =
            serde_json::from_str(&entries(&archive)["stats.json"]).unwrap();
        assert!(stats["error"].as_str().unwrap().contains("stats.json"));
    }

    #[test]
    fn an_archive_past_the_bound_fails_to_complete() {
        let dir = tempfile::tempdir().unwrap();
        let job = job(
            dir.path(),
            SnapshotCompression::Stored,
            &[SnapshotType::ServerConfig],
        );
        assert_eq!(
            job.build_bounded(256),
            Err(ErrorCode::SnapshotFileCompletionFailed)
        );
        assert!(job.build_bounded(64 * 1024).is_ok());
    }

    #[test]
    fn compressions_not_built_in_are_unavailable() {
        let dir = tempfile::tempdir().unwrap();
        for compression in [
            SnapshotCompression::Bzip2,
            SnapshotCompression::Zstd,
            SnapshotCompression::Lzma,
            SnapshotCompression::Xz,
        ] {
            assert!(!supported(compression));
            let job = job(dir.path(), compression, &[SnapshotType::Test]);
            assert_eq!(job.build(), Err(ErrorCode::FeatureUnavailable));
        }
    }

    #[test]
    fn a_log_tail_starts_at_a_whole_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let line = "0123456789abcdef\n";
        let lines = usize::try_from(LOG_TAIL_MAX_BYTES).unwrap() / line.len() + 10;
        std::fs::write(&path, line.repeat(lines)).unwrap();
        let tail = log_tail(&path).unwrap().unwrap();
        assert!(tail.len() as u64 <= LOG_TAIL_MAX_BYTES);
        assert!(tail.starts_with("0123") && tail.ends_with("cdef\n"));
        assert!(log_tail(dir.path()).is_none());
    }
}
