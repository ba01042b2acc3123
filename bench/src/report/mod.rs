//! The results of one run and their outputs: summary table (stdout), JSON, HTML with charts, PNG
//! images of the same charts.

pub mod charts;
pub mod html;
pub mod table;

use crate::args::BenchConfig;
use crate::payload::VerifyReport;
use crate::stats::{ActorKind, ActorStats, GroupStats};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// Everything one run measured.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub tool: &'static str,
    pub version: &'static str,
    pub identifier: Option<String>,
    pub remark: Option<String>,
    pub gitref: Option<String>,
    pub gitref_date: Option<String>,
    /// Seconds since the Unix epoch when the run started.
    pub started_at_unix_s: u64,
    pub config: BenchConfig,
    pub actors: Vec<ActorStats>,
    pub groups: Vec<GroupStats>,
    /// Sent and received message counts (warm-up included), for sent = received checks.
    pub messages_sent: u64,
    pub messages_received: u64,
    pub verify: Option<VerifyReport>,
}

impl BenchReport {
    /// Builds the group totals from the actors' results.
    pub fn new(
        config: BenchConfig,
        started_at_unix_s: u64,
        actors: Vec<ActorStats>,
        verify: Option<VerifyReport>,
    ) -> Self {
        let mut groups = Vec::new();
        for kind in [
            ActorKind::Producer,
            ActorKind::Consumer,
            ActorKind::ProducingConsumer,
        ] {
            let members: Vec<&ActorStats> = actors.iter().filter(|a| a.actor == kind).collect();
            if let Some(g) = GroupStats::merge(&members, config.sampling_us) {
                groups.push(g);
            }
        }
        let count = |k: ActorKind| {
            actors
                .iter()
                .filter(|a| a.actor == k)
                .map(|a| a.messages_total)
                .sum::<u64>()
        };
        let producing_consumers = count(ActorKind::ProducingConsumer);
        let output = config.output.clone();
        BenchReport {
            tool: "riptide-bench",
            version: env!("CARGO_PKG_VERSION"),
            identifier: output.as_ref().and_then(|o| o.identifier.clone()),
            remark: output.as_ref().and_then(|o| o.remark.clone()),
            gitref: output.as_ref().and_then(|o| o.gitref.clone()),
            gitref_date: output.as_ref().and_then(|o| o.gitref_date.clone()),
            started_at_unix_s,
            messages_sent: count(ActorKind::Producer) + producing_consumers,
            messages_received: count(ActorKind::Consumer) + producing_consumers,
            config,
            actors,
            groups,
            verify,
        }
    }

    pub fn title(&self) -> String {
        let c = &self.config;
        format!(
            "{} — {} producers, {} consumers, {} streams, {} partitions, {} B × {} msg/batch, ack {}, inflight {}",
            c.mode.name(), c.producers, c.consumers, c.streams, c.partitions, c.message_size_bytes,
            c.messages_per_batch, c.ack.durability_option(), c.inflight
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("cannot write {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot encode JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("cannot draw chart {path}: {message}")]
    Chart { path: PathBuf, message: String },
}

/// Names of the files written into the output folder.
pub const JSON_FILE: &str = "results.json";
pub const HTML_FILE: &str = "report.html";
pub const THROUGHPUT_PNG: &str = "throughput.png";
pub const LATENCY_PERCENTILES_PNG: &str = "latency_percentiles.png";
pub const LATENCY_DISTRIBUTION_PNG: &str = "latency_distribution.png";

/// Writes JSON, HTML and PNGs into `dir` (created if missing); returns the paths written.
///
/// # Errors
/// [`ReportError`] naming the file that could not be written.
pub fn write_all(report: &BenchReport, dir: &Path) -> Result<Vec<PathBuf>, ReportError> {
    std::fs::create_dir_all(dir).map_err(|source| ReportError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let json_path = dir.join(JSON_FILE);
    let json = serde_json::to_vec_pretty(report)?;
    std::fs::write(&json_path, json).map_err(|source| ReportError::Io {
        path: json_path.clone(),
        source,
    })?;
    let mut written = vec![json_path];
    written.extend(charts::write_pngs(report, dir)?);
    let html_path = dir.join(HTML_FILE);
    let html = html::render(report)?;
    std::fs::write(&html_path, html).map_err(|source| ReportError::Io {
        path: html_path.clone(),
        source,
    })?;
    written.push(html_path);
    Ok(written)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::args::Cli;
    use crate::stats::Recorder;
    use clap::Parser;

    /// A report with two producers and a consumer, measured on synthetic requests.
    pub(crate) fn sample_report() -> BenchReport {
        let cli = Cli::try_parse_from([
            "riptide-bench",
            "ppc",
            "-p",
            "2",
            "-c",
            "1",
            "tcp",
            "output",
            "-o",
            "x",
            "--identifier",
            "t1",
        ])
        .unwrap();
        let config = cli.into_config().unwrap();
        let mut actors = Vec::new();
        for (kind, id) in [
            (ActorKind::Producer, 0),
            (ActorKind::Producer, 1),
            (ActorKind::Consumer, 0),
        ] {
            let mut r = Recorder::new(0);
            for i in 0..200u64 {
                let start = i * 1_000 + u64::from(id) * 10;
                r.record(start, start + 200 + (i % 17) * 30, 1000, 1_000_000);
                if kind == ActorKind::Consumer {
                    r.record_end_to_end(start, start + 900);
                }
            }
            actors.push(r.finish(kind, id, config.sampling_us));
        }
        let verify = VerifyReport {
            messages_checked: 200_000,
            messages_unique: 200_000,
            messages_expected: 200_000,
            ..VerifyReport::default()
        };
        BenchReport::new(config, 1_700_000_000, actors, Some(verify))
    }

    #[test]
    fn groups_and_counts() {
        let r = sample_report();
        assert_eq!(r.groups.len(), 2);
        assert_eq!(r.groups[0].actors, 2);
        assert_eq!(r.messages_sent, 400_000);
        assert_eq!(r.messages_received, 200_000);
        assert_eq!(r.identifier.as_deref(), Some("t1"));
        assert!(r.groups[1].end_to_end.is_some());
    }

    #[test]
    fn writes_well_formed_files() {
        let dir = tempfile::tempdir().unwrap();
        let r = sample_report();
        let files = write_all(&r, dir.path()).unwrap();
        assert_eq!(files.len(), 5);
        // JSON parses back and carries the figures.
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join(JSON_FILE)).unwrap()).unwrap();
        assert_eq!(json["config"]["mode"], "pinned-producer-and-consumer");
        assert_eq!(json["messages_sent"], 400_000);
        assert_eq!(json["groups"][0]["latency"]["count"], 400);
        assert!(
            json["groups"][0]["throughput"]["mb_per_sec"]
                .as_f64()
                .unwrap()
                > 0.0
        );
        assert!(
            json["actors"][0]["series"]["points"]
                .as_array()
                .unwrap()
                .len()
                > 10
        );
        // PNGs start with the PNG signature and are not blank canvases.
        for name in [
            THROUGHPUT_PNG,
            LATENCY_PERCENTILES_PNG,
            LATENCY_DISTRIBUTION_PNG,
        ] {
            let bytes = std::fs::read(dir.path().join(name)).unwrap();
            assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{name}");
            assert!(bytes.len() > 5_000, "{name} is {} bytes", bytes.len());
        }
        let html = std::fs::read_to_string(dir.path().join(HTML_FILE)).unwrap();
        assert!(html.starts_with("<!DOCTYPE html>"));
        assert!(html.trim_end().ends_with("</html>"));
        assert_eq!(html.matches("<svg").count(), 3, "three inline charts");
        assert_eq!(html.matches("<svg").count(), html.matches("</svg>").count());
        for name in [
            THROUGHPUT_PNG,
            LATENCY_PERCENTILES_PNG,
            LATENCY_DISTRIBUTION_PNG,
        ] {
            assert!(html.contains(name), "{name} linked");
        }
        assert!(html.contains("p99.9"));
    }

    #[test]
    fn unwritable_folder_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("not-a-dir");
        std::fs::write(&file, b"x").unwrap();
        let err = write_all(&sample_report(), &file).unwrap_err();
        assert!(matches!(err, ReportError::Io { .. }), "{err}");
    }
}
