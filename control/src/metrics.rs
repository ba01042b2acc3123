//! Prometheus text exposition (format 0.0.4) of the dataplane's stats snapshot, and a parser that
//! checks a page against the format (used by `riptidectl metrics --json` and the tests).

use crate::supervisor::{State, SupervisorStatus};
use riptide_config::cluster::{ClusterStatus, NodeStatus};
use riptide_config::stats::{HistogramSnapshot, ShardSnapshot, StatsSnapshot, WorkerSnapshot};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// The content type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

struct Page {
    text: String,
}

impl Page {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.text, "# HELP {name} {help}");
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, String)], value: f64) {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (key, label_value)) in labels.iter().enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                let escaped = label_value
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n");
                let _ = write!(self.text, "{key}=\"{escaped}\"");
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {}", format_value(value));
    }

    /// One family with one sample per item.
    fn per_item<T>(
        &mut self,
        name: &str,
        kind: &str,
        help: &str,
        items: &[T],
        labels: impl Fn(&T) -> Vec<(&'static str, String)>,
        value: impl Fn(&T) -> u64,
    ) {
        self.family(name, kind, help);
        for item in items {
            self.sample(name, &labels(item), value(item) as f64);
        }
    }

    fn histogram(&mut self, name: &str, labels: &[(&str, String)], histogram: &HistogramSnapshot) {
        let mut cumulative = 0u64;
        for (bound_us, count) in histogram
            .bucket_bounds_us
            .iter()
            .zip(&histogram.bucket_counts)
        {
            cumulative += count;
            let mut with_le = labels.to_vec();
            with_le.push(("le", format_value(*bound_us as f64 / 1e6)));
            self.sample(&format!("{name}_bucket"), &with_le, cumulative as f64);
        }
        let mut with_le = labels.to_vec();
        with_le.push(("le", "+Inf".to_string()));
        self.sample(&format!("{name}_bucket"), &with_le, histogram.count as f64);
        self.sample(
            &format!("{name}_sum"),
            labels,
            histogram.sum_us as f64 / 1e6,
        );
        self.sample(&format!("{name}_count"), labels, histogram.count as f64);
    }
}

fn format_value(value: f64) -> String {
    if value.is_infinite() {
        if value > 0.0 {
            "+Inf".to_string()
        } else {
            "-Inf".to_string()
        }
    } else {
        format!("{value}")
    }
}

/// Renders the metrics page from the supervisor's state and the latest snapshot (if any).
pub fn render(
    supervisor: &SupervisorStatus,
    snapshot: Option<&StatsSnapshot>,
    stats_age_ms: Option<u64>,
) -> String {
    let mut page = Page {
        text: String::new(),
    };
    page.family(
        "riptide_dataplane_up",
        "gauge",
        "1 if the dataplane process is running.",
    );
    page.sample(
        "riptide_dataplane_up",
        &[],
        f64::from(u8::from(supervisor.state == State::Running)),
    );
    page.family(
        "riptide_dataplane_starts_total",
        "counter",
        "Dataplane processes started by riptide-control.",
    );
    page.sample(
        "riptide_dataplane_starts_total",
        &[],
        f64::from(supervisor.starts),
    );
    page.family(
        "riptide_dataplane_restarts_total",
        "counter",
        "Restarts after a dataplane crash.",
    );
    page.sample(
        "riptide_dataplane_restarts_total",
        &[],
        f64::from(supervisor.restarts),
    );
    let Some(stats) = snapshot else {
        return page.text;
    };
    page.family(
        "riptide_stats_age_seconds",
        "gauge",
        "Age of the dataplane's statistics snapshot.",
    );
    page.sample(
        "riptide_stats_age_seconds",
        &[],
        stats_age_ms.unwrap_or(0) as f64 / 1e3,
    );
    render_catalog(&mut page, stats);
    render_workers(&mut page, stats);
    render_shards(&mut page, stats);
    render_ports(&mut page, stats);
    render_cluster(&mut page, stats.cluster.as_ref());
    page.text
}

fn render_catalog(page: &mut Page, stats: &StatsSnapshot) {
    for (name, help, value) in [
        ("riptide_streams", "Streams.", stats.streams),
        ("riptide_topics", "Topics.", stats.topics),
        ("riptide_partitions", "Partitions.", stats.partitions),
        (
            "riptide_ring_capacity",
            "Slots of each ring between a network worker and a storage shard.",
            stats.ring_capacity,
        ),
    ] {
        page.family(name, "gauge", help);
        page.sample(name, &[], value as f64);
    }
}

/// A family of one counter or gauge per worker or shard: name, type, help, the value.
type Family<T> = (&'static str, &'static str, &'static str, fn(&T) -> u64);

const WORKER_FAMILIES: [Family<WorkerSnapshot>; 17] = [
    (
        "riptide_connections",
        "gauge",
        "Open client connections.",
        |w| w.connections_open,
    ),
    (
        "riptide_connections_accepted_total",
        "counter",
        "Connections accepted.",
        |w| w.connections_accepted,
    ),
    (
        "riptide_connections_refused_total",
        "counter",
        "Connections refused over the limit.",
        |w| w.connections_refused,
    ),
    (
        "riptide_requests_total",
        "counter",
        "Requests handled.",
        |w| w.requests,
    ),
    (
        "riptide_request_errors_total",
        "counter",
        "Requests answered with an error.",
        |w| w.request_errors,
    ),
    (
        "riptide_evictions_total",
        "counter",
        "Connections evicted for protocol violations.",
        |w| w.evictions,
    ),
    (
        "riptide_messages_in_total",
        "counter",
        "Messages received from producers.",
        |w| w.messages_in,
    ),
    (
        "riptide_bytes_in_total",
        "counter",
        "Bytes received from clients.",
        |w| w.bytes_in,
    ),
    (
        "riptide_messages_out_total",
        "counter",
        "Messages sent to consumers.",
        |w| w.messages_out,
    ),
    (
        "riptide_bytes_out_total",
        "counter",
        "Bytes sent to clients.",
        |w| w.bytes_out,
    ),
    (
        "riptide_ring_full_stalls_total",
        "counter",
        "Times a full ring stopped reading a connection (backpressure).",
        |w| w.ring_full_stalls,
    ),
    (
        "riptide_tls_handshakes_total",
        "counter",
        "TLS handshakes completed on the binary protocol's listener.",
        |w| w.tls_handshakes,
    ),
    (
        "riptide_tls_handshake_failures_total",
        "counter",
        "TLS handshakes that failed (bad records, refused client certificates).",
        |w| w.tls_handshake_failures,
    ),
    (
        "riptide_tls_plaintext_refused_total",
        "counter",
        "Connections to the TLS listener closed because they spoke plaintext.",
        |w| w.tls_plaintext_refused,
    ),
    (
        "riptide_tls_clients_on_plaintext_total",
        "counter",
        "TLS clients on a plaintext listener, answered with an alert and closed.",
        |w| w.tls_clients_on_plaintext,
    ),
    (
        "riptide_logins_failed_total",
        "counter",
        "Logins refused for a wrong username or password.",
        |w| w.logins_failed,
    ),
    (
        "riptide_logins_throttled_total",
        "counter",
        "Logins refused unchecked while their peer address backs off after failures.",
        |w| w.logins_throttled,
    ),
];

const SHARD_FAMILIES: [Family<ShardSnapshot>; 9] = [
    (
        "riptide_shard_partitions",
        "gauge",
        "Partitions owned by the shard.",
        |s| s.partitions,
    ),
    (
        "riptide_appends_total",
        "counter",
        "Batches appended.",
        |s| s.appends,
    ),
    (
        "riptide_append_errors_total",
        "counter",
        "Appends that failed.",
        |s| s.append_errors,
    ),
    (
        "riptide_messages_appended_total",
        "counter",
        "Messages appended.",
        |s| s.messages_appended,
    ),
    (
        "riptide_bytes_appended_total",
        "counter",
        "Bytes appended.",
        |s| s.bytes_appended,
    ),
    ("riptide_reads_total", "counter", "Reads served.", |s| {
        s.reads
    }),
    (
        "riptide_ring_depth",
        "gauge",
        "Requests waiting in the shard's rings.",
        |s| s.request_ring_depth,
    ),
    (
        "riptide_read_cache_bytes",
        "gauge",
        "Memory held by recent written messages kept for reads.",
        |s| s.cached_bytes,
    ),
    (
        "riptide_reads_from_memory_total",
        "counter",
        "Polls answered from memory without a disk read.",
        |s| s.reads_from_memory,
    ),
];

fn render_workers(page: &mut Page, stats: &StatsSnapshot) {
    let label = |w: &WorkerSnapshot| vec![("worker", w.index.to_string())];
    for (name, kind, help, value) in WORKER_FAMILIES {
        page.per_item(name, kind, help, &stats.workers, label, value);
    }
}

fn render_shards(page: &mut Page, stats: &StatsSnapshot) {
    let label = |s: &ShardSnapshot| vec![("shard", s.index.to_string())];
    for (name, kind, help, value) in SHARD_FAMILIES {
        page.per_item(name, kind, help, &stats.shards, label, value);
    }
    page.family(
        "riptide_append_latency_seconds",
        "histogram",
        "Append latency, submit to durable acknowledgement.",
    );
    for shard in &stats.shards {
        page.histogram(
            "riptide_append_latency_seconds",
            &label(shard),
            &shard.append_latency,
        );
    }
    page.family(
        "riptide_fsync_latency_seconds",
        "histogram",
        "Duration of each durable write (O_DSYNC write or fdatasync) of a storage shard.",
    );
    for shard in &stats.shards {
        page.histogram(
            "riptide_fsync_latency_seconds",
            &label(shard),
            &shard.fsync_latency,
        );
    }
    if let Some(steering) = &stats.steering_counters {
        page.family(
            "riptide_steering_selected_total",
            "counter",
            "New connections the sk_reuseport program steered to each network worker.",
        );
        for (worker, selected) in steering.selected.iter().enumerate() {
            page.sample(
                "riptide_steering_selected_total",
                &[("worker", worker.to_string())],
                *selected as f64,
            );
        }
    }
}

fn render_ports(page: &mut Page, stats: &StatsSnapshot) {
    use riptide_config::stats::PortSnapshot;
    let ports = &stats.ports;
    let label = |p: &PortSnapshot| {
        vec![
            ("port", p.port.to_string()),
            (
                "queue",
                p.queue.map_or_else(|| "all".to_string(), |q| q.to_string()),
            ),
        ]
    };
    type PortCounter = (&'static str, &'static str, fn(&PortSnapshot) -> u64);
    let counters: [PortCounter; 9] = [
        ("riptide_port_rx_packets_total", "Packets received.", |p| {
            p.rx_packets
        }),
        ("riptide_port_tx_packets_total", "Packets sent.", |p| {
            p.tx_packets
        }),
        ("riptide_port_rx_bytes_total", "Bytes received.", |p| {
            p.rx_bytes
        }),
        ("riptide_port_tx_bytes_total", "Bytes sent.", |p| p.tx_bytes),
        (
            "riptide_port_rx_dropped_total",
            "Packets dropped on receive.",
            |p| p.rx_dropped,
        ),
        (
            "riptide_port_tx_dropped_total",
            "Packets dropped on send.",
            |p| p.tx_dropped,
        ),
        (
            "riptide_port_mbuf_alloc_failures_total",
            "Mbuf allocation failures.",
            |p| p.mbuf_alloc_failures,
        ),
        (
            "riptide_port_tcp_retransmits_total",
            "TCP retransmissions of the userspace stack.",
            |p| p.tcp_retransmits,
        ),
        (
            "riptide_port_tcp_connections",
            "TCP connections of the userspace stack.",
            |p| p.tcp_connections,
        ),
    ];
    for (name, help, value) in counters {
        let kind = if name.ends_with("_total") {
            "counter"
        } else {
            "gauge"
        };
        page.per_item(name, kind, help, ports, label, value);
    }
    if let Some(xdp) = &stats.xdp_counters {
        page.family(
            "riptide_xdp_frames_total",
            "counter",
            "Frames riptide's XDP program handled on the DPDK port's interface, by verdict.",
        );
        for (verdict, frames) in [
            ("steered_tcp", xdp.steered_tcp),
            ("steered_arp", xdp.steered_arp),
            ("passed", xdp.passed),
            ("dropped_no_socket", xdp.dropped_no_socket),
            ("dropped_redirect_failed", xdp.dropped_redirect_failed),
        ] {
            page.sample(
                "riptide_xdp_frames_total",
                &[("verdict", verdict.to_string())],
                frames as f64,
            );
        }
    }
}

/// Cluster gauges from this node's view. Every node exports its own view; the leader's page
/// alone carries the follower lag (`riptide_cluster_node_lag_*`), as only the leader knows it.
fn render_cluster(page: &mut Page, cluster: Option<&ClusterStatus>) {
    page.family(
        "riptide_cluster_enabled",
        "gauge",
        "1 if this node runs in cluster mode.",
    );
    page.sample(
        "riptide_cluster_enabled",
        &[],
        f64::from(u8::from(cluster.is_some())),
    );
    let Some(view) = cluster else {
        return;
    };
    let is_leader = view.leader == Some(view.node_id);
    let voters = view.nodes.iter().filter(|node| node.voter).count() as u64;
    for (name, help, value) in [
        ("riptide_cluster_node_id", "This node's id.", view.node_id),
        (
            "riptide_cluster_term",
            "Raft term this node is in.",
            view.term,
        ),
        (
            "riptide_cluster_leader_id",
            "Id of the node this node follows as leader (0 while none leads).",
            view.leader.unwrap_or(0),
        ),
        (
            "riptide_cluster_is_leader",
            "1 if this node leads the cluster.",
            u64::from(is_leader),
        ),
        (
            "riptide_cluster_last_log_index",
            "Index of the last entry of this node's Raft log.",
            view.last_log_index,
        ),
        (
            "riptide_cluster_applied_index",
            "Index of the last log entry this node applied.",
            view.applied_index,
        ),
        (
            "riptide_cluster_nodes",
            "Members of the cluster (voters and learners).",
            view.nodes.len() as u64,
        ),
        (
            "riptide_cluster_voters",
            "Voting members of the cluster.",
            voters,
        ),
        (
            "riptide_cluster_partitions",
            "Partitions the cluster replicates.",
            view.partitions.len() as u64,
        ),
    ] {
        page.family(name, "gauge", help);
        page.sample(name, &[], value as f64);
    }
    render_cluster_nodes(page, view);
}

/// Per member: whether it votes, and the lag the leader sees (absent on a follower's page).
fn render_cluster_nodes(page: &mut Page, view: &ClusterStatus) {
    let labels = |node: &NodeStatus| {
        vec![
            ("node_id", node.id.to_string()),
            ("node", node.name.clone()),
        ]
    };
    page.per_item(
        "riptide_cluster_node_voter",
        "gauge",
        "1 if the member votes, 0 for a learner.",
        &view.nodes,
        labels,
        |node| u64::from(node.voter),
    );
    type Lag = (&'static str, &'static str, fn(&NodeStatus) -> Option<u64>);
    let lags: [Lag; 3] = [
        (
            "riptide_cluster_node_lag_entries",
            "Raft log entries the member lacks (leader only).",
            |n| n.lag_entries,
        ),
        (
            "riptide_cluster_node_lag_messages",
            "Messages the member lacks (leader only).",
            |n| n.lag_messages,
        ),
        (
            "riptide_cluster_node_lag_bytes",
            "Bytes of messages the member lacks (leader only).",
            |n| n.lag_bytes,
        ),
    ];
    for (name, help, lag) in lags {
        let known: Vec<&NodeStatus> = view
            .nodes
            .iter()
            .filter(|node| lag(node).is_some())
            .collect();
        if known.is_empty() {
            continue;
        }
        page.family(name, "gauge", help);
        for node in known {
            page.sample(name, &labels(node), lag(node).unwrap_or(0) as f64);
        }
    }
}

/// The control process's own counters, appended to a rendered page: token refusals, and failed
/// TLS handshakes per listener (`control`, `http`).
pub fn render_control(
    text: &mut String,
    unauthorized: u64,
    tls_handshake_failures: [(&str, u64); 2],
) {
    let mut page = Page {
        text: std::mem::take(text),
    };
    page.family(
        "riptide_control_unauthorized_total",
        "counter",
        "Control API requests refused for a missing or wrong bearer token.",
    );
    page.sample(
        "riptide_control_unauthorized_total",
        &[],
        unauthorized as f64,
    );
    page.family(
        "riptide_control_tls_handshake_failures_total",
        "counter",
        "Failed or timed-out TLS handshakes (plain-HTTP clients on an HTTPS port included), by listener.",
    );
    for (listener, failures) in tls_handshake_failures {
        page.sample(
            "riptide_control_tls_handshake_failures_total",
            &[("listener", listener.to_string())],
            failures as f64,
        );
    }
    *text = page.text;
}

/// One sample of a parsed page.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Why a page is not valid Prometheus text.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("metrics line {line}: {message}")]
pub struct ExpositionError {
    pub line: usize,
    pub message: String,
}

fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn parse_value(text: &str) -> Option<f64> {
    match text {
        "+Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => text.parse().ok(),
    }
}

/// Parses `{a="x",b="y"}` starting at the `{`; returns the labels and the rest of the line.
fn parse_labels(text: &str) -> Result<(BTreeMap<String, String>, &str), String> {
    let mut labels = BTreeMap::new();
    let mut rest = &text[1..];
    loop {
        rest = rest.trim_start();
        if let Some(after) = rest.strip_prefix('}') {
            return Ok((labels, after));
        }
        let eq = rest.find('=').ok_or("label without '='")?;
        let name = rest[..eq].trim();
        if !is_label_name(name) {
            return Err(format!("bad label name '{name}'"));
        }
        let mut chars = rest[eq + 1..].char_indices();
        if chars.next().map(|(_, c)| c) != Some('"') {
            return Err(format!("label {name}: value must be quoted"));
        }
        let mut value = String::new();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => match chars.next().map(|(_, c)| c) {
                    Some('n') => value.push('\n'),
                    Some(c @ ('\\' | '"')) => value.push(c),
                    _ => return Err(format!("label {name}: bad escape")),
                },
                '"' => {
                    end = Some(eq + 1 + i + 1);
                    break;
                }
                c => value.push(c),
            }
        }
        let end = end.ok_or_else(|| format!("label {name}: unterminated value"))?;
        if labels.insert(name.to_string(), value).is_some() {
            return Err(format!("label {name} repeated"));
        }
        rest = rest[end..].trim_start();
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
}

/// The family a sample belongs to, given the declared types (histogram suffixes fold in).
fn family_of<'a>(name: &'a str, types: &BTreeMap<String, String>) -> Option<&'a str> {
    if types.contains_key(name) {
        return Some(name);
    }
    ["_bucket", "_sum", "_count"].iter().find_map(|suffix| {
        let base = name.strip_suffix(suffix)?;
        matches!(
            types.get(base).map(String::as_str),
            Some("histogram" | "summary")
        )
        .then_some(base)
    })
}

/// Parses and checks a text-format page: names and labels well-formed, every sample typed by a
/// preceding `# TYPE`, values numbers, counters not negative, histogram buckets cumulative and
/// ending in `+Inf` equal to `_count`.
///
/// # Errors
/// [`ExpositionError`] with the 1-based line number.
pub fn parse_exposition(text: &str) -> Result<Vec<Sample>, ExpositionError> {
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut samples = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let error = |message: String| ExpositionError {
            line: index + 1,
            message,
        };
        if line.trim().is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            let words: Vec<&str> = comment.split_whitespace().collect();
            if words.first() == Some(&"TYPE") {
                let (Some(name), Some(kind)) = (words.get(1), words.get(2)) else {
                    return Err(error("TYPE needs a name and a type".into()));
                };
                if !["counter", "gauge", "histogram", "summary", "untyped"].contains(kind) {
                    return Err(error(format!("unknown type '{kind}'")));
                }
                if !is_metric_name(name)
                    || types
                        .insert((*name).to_string(), (*kind).to_string())
                        .is_some()
                {
                    return Err(error(format!("bad or repeated TYPE for '{name}'")));
                }
            }
            continue;
        }
        let name_end = line
            .find(['{', ' '])
            .ok_or_else(|| error("sample without a value".into()))?;
        let name = &line[..name_end];
        if !is_metric_name(name) {
            return Err(error(format!("bad metric name '{name}'")));
        }
        let (labels, rest) = if line[name_end..].starts_with('{') {
            parse_labels(&line[name_end..]).map_err(error)?
        } else {
            (BTreeMap::new(), &line[name_end..])
        };
        let mut fields = rest.split_whitespace();
        let value_text = fields
            .next()
            .ok_or_else(|| error("sample without a value".into()))?;
        let value = parse_value(value_text)
            .ok_or_else(|| error(format!("'{value_text}' is not a number")))?;
        if let Some(timestamp) = fields.next() {
            timestamp
                .parse::<i64>()
                .map_err(|_| error(format!("bad timestamp '{timestamp}'")))?;
        }
        let family = family_of(name, &types)
            .ok_or_else(|| error(format!("'{name}' has no # TYPE before it")))?;
        if types[family] == "counter" && value < 0.0 {
            return Err(error(format!("counter '{name}' is negative")));
        }
        samples.push(Sample {
            name: name.to_string(),
            labels,
            value,
        });
    }
    check_histograms(&samples, &types)?;
    Ok(samples)
}

fn check_histograms(
    samples: &[Sample],
    types: &BTreeMap<String, String>,
) -> Result<(), ExpositionError> {
    let error = |message: String| ExpositionError { line: 0, message };
    for (family, _) in types.iter().filter(|(_, kind)| *kind == "histogram") {
        // Series = the labels other than `le`.
        let mut series: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
        let bucket_name = format!("{family}_bucket");
        for sample in samples.iter().filter(|s| s.name == bucket_name) {
            let le = sample
                .labels
                .get("le")
                .ok_or_else(|| error(format!("{bucket_name} without le")))?;
            let bound =
                parse_value(le).ok_or_else(|| error(format!("{bucket_name}: bad le '{le}'")))?;
            let mut key_labels = sample.labels.clone();
            key_labels.remove("le");
            series
                .entry(format!("{key_labels:?}"))
                .or_default()
                .push((bound, sample.value));
        }
        for (key, buckets) in &series {
            if buckets
                .windows(2)
                .any(|w| w[1].0 <= w[0].0 || w[1].1 < w[0].1)
            {
                return Err(error(format!(
                    "{family}{key}: buckets not increasing and cumulative"
                )));
            }
            let Some(&(last_bound, last_count)) = buckets.last() else {
                continue;
            };
            if last_bound != f64::INFINITY {
                return Err(error(format!("{family}{key}: no +Inf bucket")));
            }
            let count = samples
                .iter()
                .find(|s| s.name == format!("{family}_count") && format!("{:?}", s.labels) == *key)
                .ok_or_else(|| error(format!("{family}{key}: no _count")))?;
            if count.value != last_count {
                return Err(error(format!(
                    "{family}{key}: +Inf bucket {last_count} != _count {}",
                    count.value
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use riptide_config::stats::{
        power_of_two_histogram, PortSnapshot, ShardSnapshot, SteeringSnapshot, WorkerSnapshot,
        XdpSnapshot, LATENCY_BUCKETS_US,
    };

    fn supervisor() -> SupervisorStatus {
        SupervisorStatus {
            state: State::Running,
            pid: Some(1),
            starts: 2,
            restarts: 1,
            last_exit: None,
            started_at_us: None,
            dataplane_bin: "riptide-dataplane".into(),
        }
    }

    /// Latencies 5, 40, 900 and 3 000 000 µs in the published buckets.
    fn append_latency() -> HistogramSnapshot {
        let mut bucket_counts = vec![0; LATENCY_BUCKETS_US.len() + 1];
        for bucket in [0, 2, 6, LATENCY_BUCKETS_US.len()] {
            bucket_counts[bucket] = 1;
        }
        HistogramSnapshot {
            bucket_bounds_us: LATENCY_BUCKETS_US.to_vec(),
            bucket_counts,
            sum_us: 5 + 40 + 900 + 3_000_000,
            count: 4,
        }
    }

    fn snapshot() -> StatsSnapshot {
        StatsSnapshot {
            mode: "kernel".into(),
            steering_counters: Some(SteeringSnapshot {
                policy: "hash".into(),
                selected: vec![5, 6],
                open_connections: vec![1, 2],
                select_failed: 0,
            }),
            workers: vec![
                WorkerSnapshot {
                    index: 0,
                    core: Some(1),
                    messages_in: 42,
                    bytes_in: 4200,
                    ..WorkerSnapshot::default()
                },
                WorkerSnapshot {
                    index: 1,
                    ..WorkerSnapshot::default()
                },
            ],
            shards: vec![ShardSnapshot {
                index: 0,
                core: Some(2),
                append_latency: append_latency(),
                fsync_latency: power_of_two_histogram(&[0, 1, 2, 0], 3, 9),
                ..ShardSnapshot::default()
            }],
            ports: vec![PortSnapshot {
                port: 0,
                queue: Some(1),
                rx_packets: 7,
                ..PortSnapshot::default()
            }],
            xdp_counters: Some(XdpSnapshot {
                steered_tcp: 11,
                passed: 4,
                ..Default::default()
            }),
            partitions: 3,
            ..StatsSnapshot::default()
        }
    }

    #[test]
    fn rendered_page_parses_and_carries_the_counters() {
        let text = render(&supervisor(), Some(&snapshot()), Some(250));
        let samples = parse_exposition(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let find = |name: &str, label: Option<(&str, &str)>| {
            samples
                .iter()
                .find(|s| {
                    s.name == name
                        && label.is_none_or(|(k, v)| s.labels.get(k).map(String::as_str) == Some(v))
                })
                .map(|s| s.value)
        };
        assert_eq!(
            find("riptide_messages_in_total", Some(("worker", "0"))),
            Some(42.0)
        );
        assert_eq!(
            find("riptide_bytes_in_total", Some(("worker", "0"))),
            Some(4200.0)
        );
        assert_eq!(find("riptide_dataplane_restarts_total", None), Some(1.0));
        assert_eq!(
            find("riptide_append_latency_seconds_count", Some(("shard", "0"))),
            Some(4.0)
        );
        assert_eq!(
            find(
                "riptide_append_latency_seconds_bucket",
                Some(("le", "0.00001"))
            ),
            Some(1.0)
        );
        assert_eq!(
            find(
                "riptide_append_latency_seconds_bucket",
                Some(("le", "+Inf"))
            ),
            Some(4.0)
        );
        assert_eq!(
            find("riptide_port_rx_packets_total", Some(("queue", "1"))),
            Some(7.0)
        );
        assert_eq!(find("riptide_stats_age_seconds", None), Some(0.25));
        assert_eq!(
            find("riptide_fsync_latency_seconds_count", Some(("shard", "0"))),
            Some(3.0)
        );
        assert_eq!(
            find("riptide_steering_selected_total", Some(("worker", "1"))),
            Some(6.0)
        );
        assert_eq!(
            find("riptide_xdp_frames_total", Some(("verdict", "steered_tcp"))),
            Some(11.0)
        );
        assert_eq!(
            find("riptide_xdp_frames_total", Some(("verdict", "passed"))),
            Some(4.0)
        );
    }

    fn cluster_view(node_id: u64) -> ClusterStatus {
        let node = |id: u64, voter: bool| NodeStatus {
            id,
            name: format!("node-{id}"),
            voter,
            lag_entries: (node_id == 2).then_some(id),
            lag_messages: (node_id == 2).then_some(id * 10),
            lag_bytes: (node_id == 2).then_some(id * 1000),
            ..NodeStatus::default()
        };
        ClusterStatus {
            node_id,
            term: 5,
            leader: Some(2),
            last_log_index: 77,
            applied_index: 76,
            nodes: vec![node(1, true), node(2, true), node(3, true), node(4, false)],
            partitions: Vec::new(),
        }
    }

    fn values(text: &str) -> BTreeMap<String, f64> {
        let samples = parse_exposition(text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        samples
            .into_iter()
            .map(|s| {
                let labels: Vec<String> =
                    s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                (format!("{}{{{}}}", s.name, labels.join(",")), s.value)
            })
            .collect()
    }

    #[test]
    fn the_cluster_gauges_show_roles_and_the_leaders_lag() {
        let mut stats = snapshot();
        stats.cluster = Some(cluster_view(2));
        let leader = values(&render(&supervisor(), Some(&stats), Some(1)));
        assert_eq!(leader["riptide_cluster_enabled{}"], 1.0);
        assert_eq!(leader["riptide_cluster_is_leader{}"], 1.0);
        assert_eq!(leader["riptide_cluster_term{}"], 5.0);
        assert_eq!(leader["riptide_cluster_leader_id{}"], 2.0);
        assert_eq!(leader["riptide_cluster_applied_index{}"], 76.0);
        assert_eq!(leader["riptide_cluster_voters{}"], 3.0);
        assert_eq!(
            leader["riptide_cluster_node_voter{node=node-4,node_id=4}"],
            0.0
        );
        assert_eq!(
            leader["riptide_cluster_node_lag_messages{node=node-3,node_id=3}"],
            30.0
        );
        assert_eq!(
            leader["riptide_cluster_node_lag_bytes{node=node-4,node_id=4}"],
            4000.0
        );
        stats.cluster = Some(cluster_view(1));
        let follower = values(&render(&supervisor(), Some(&stats), Some(1)));
        assert_eq!(follower["riptide_cluster_is_leader{}"], 0.0);
        assert!(
            !follower
                .keys()
                .any(|k| k.starts_with("riptide_cluster_node_lag")),
            "a follower does not know the lag"
        );
    }

    #[test]
    fn cluster_mode_off_is_one_gauge_at_zero() {
        let page = values(&render(&supervisor(), Some(&snapshot()), Some(1)));
        assert_eq!(page["riptide_cluster_enabled{}"], 0.0);
        assert!(!page.keys().any(|k| k.starts_with("riptide_cluster_term")));
    }

    #[test]
    fn the_control_counters_append_to_a_page() {
        let mut text = render(&supervisor(), None, None);
        render_control(&mut text, 3, [("control", 2), ("http", 5)]);
        let page = values(&text);
        assert_eq!(page["riptide_control_unauthorized_total{}"], 3.0);
        assert_eq!(
            page["riptide_control_tls_handshake_failures_total{listener=control}"],
            2.0
        );
        assert_eq!(
            page["riptide_control_tls_handshake_failures_total{listener=http}"],
            5.0
        );
    }

    #[test]
    fn without_a_snapshot_only_the_supervisor_families_are_shown() {
        let text = render(&supervisor(), None, None);
        let samples = parse_exposition(&text).unwrap();
        assert_eq!(samples.len(), 3);
    }

    #[test]
    fn the_parser_rejects_broken_pages() {
        let cases = [
            ("untyped_metric 1\n", "no # TYPE"),
            ("# TYPE a counter\na -1\n", "negative"),
            ("# TYPE a gauge\na{x=\"1 2\n", "unterminated"),
            ("# TYPE a gauge\na{x=1} 2\n", "quoted"),
            ("# TYPE a gauge\na one\n", "not a number"),
            ("# TYPE 1a gauge\n", "bad or repeated"),
            ("# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"2\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_count 2\n", "cumulative"),
            ("# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 3\nh_count 2\n", "!= _count"),
        ];
        for (page, expected) in cases {
            let error = parse_exposition(page).expect_err(page);
            assert!(error.message.contains(expected), "{page:?}: {error}");
        }
    }

    #[test]
    fn label_values_are_escaped_and_parsed_back() {
        let mut page = Page {
            text: String::new(),
        };
        page.family("m", "gauge", "x");
        page.sample("m", &[("path", "a\"b\\c\nd".to_string())], 1.0);
        let samples = parse_exposition(&page.text).unwrap();
        assert_eq!(samples[0].labels["path"], "a\"b\\c\nd");
    }
}
