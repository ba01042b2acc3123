//! `riptidectl cluster status|add|remove`, through riptide-control's `/cluster` routes (which
//! ask the node's replication port and follow the leader).

use super::context::Target;
use super::control_client::Control;
use super::output::{emit, table};
use super::{exit, AddNodeArgs, CliError, CliResult, ClusterCommand};
use crate::cluster::{AddNodeBody, ClusterReport, NodeReport, Role};
use crate::constants::CLUSTER_MEMBERSHIP_TIMEOUT_MS;
use serde_json::Value;
use std::time::Duration;

pub async fn run(target: &Target, command: ClusterCommand, json: bool) -> CliResult {
    let control = Control::new(target)?;
    match command {
        ClusterCommand::Status => status(&control, json).await,
        ClusterCommand::Add(args) => add(&control, args, json).await,
        ClusterCommand::Remove { id } => remove(&control, id, json).await,
    }
}

async fn status(control: &Control, json: bool) -> CliResult {
    let (code, body) = control.get("/cluster").await?;
    let value = answer("GET /cluster", code, &body)?;
    let report: ClusterReport = serde_json::from_value(value.clone()).map_err(|e| {
        CliError::new(
            exit::FAILURE,
            format!("GET /cluster: unexpected answer ({e})"),
        )
    })?;
    emit(json, &value, || report_text(&report))
}

async fn add(control: &Control, args: AddNodeArgs, json: bool) -> CliResult {
    let id = args.id;
    let body = AddNodeBody {
        id,
        name: args.name,
        replication_address: args.replication_address,
        tcp_address: args.tcp_address,
        http_address: args.http_address,
    };
    let request = control
        .http
        .post(format!("{}/cluster/nodes", control.base))
        .json(&body)
        .timeout(Duration::from_millis(CLUSTER_MEMBERSHIP_TIMEOUT_MS));
    let (code, text) = control.send(request).await?;
    let value = answer("POST /cluster/nodes", code, &text)?;
    emit(json, &value, || {
        format!("node {id} added: it caught up with the log and votes")
    })
}

async fn remove(control: &Control, id: u64, json: bool) -> CliResult {
    let request = control
        .http
        .delete(format!("{}/cluster/nodes/{id}", control.base))
        .timeout(Duration::from_millis(CLUSTER_MEMBERSHIP_TIMEOUT_MS));
    let (code, text) = control.send(request).await?;
    let value = answer("DELETE /cluster/nodes", code, &text)?;
    emit(json, &value, || {
        format!("node {id} removed: it no longer receives the log; stop it")
    })
}

/// The answer as JSON, or the error it carries with the exit code its status means: 409 the
/// cluster (or cluster mode) refused, 502/503 the cluster could not be reached or has no
/// leader, 400 a bad request.
fn answer(what: &str, code: u16, body: &str) -> Result<Value, CliError> {
    let value: Value = serde_json::from_str(body).map_err(|e| {
        CliError::new(
            exit::FAILURE,
            format!("{what}: answer is not JSON ({e}): {body}"),
        )
    })?;
    if code < 400 {
        return Ok(value);
    }
    let message = value["error"].as_str().unwrap_or(body).to_string();
    let exit_code = match code {
        400 => exit::USAGE,
        502 | 503 => exit::UNREACHABLE,
        404 => exit::NOT_FOUND,
        _ => exit::REFUSED,
    };
    Err(CliError::new(exit_code, message))
}

fn optional(value: Option<u64>) -> String {
    value.map_or_else(|| "-".to_string(), |v| v.to_string())
}

fn role_text(node: &NodeReport) -> &'static str {
    match node.role {
        Role::Leader => "leader",
        Role::Follower => "follower",
        Role::Learner => "learner",
    }
}

/// The human rendering of a report: a summary line, the nodes, the partitions.
pub fn report_text(report: &ClusterReport) -> String {
    if !report.enabled {
        return report
            .message
            .clone()
            .unwrap_or_else(|| crate::cluster::CLUSTER_OFF_MESSAGE.to_string());
    }
    if let Some(message) = &report.message {
        return format!(
            "cluster {} (node {}): {message}",
            report.name, report.node_id
        );
    }
    let leader = match report.leader_node() {
        Some(node) => format!("{} ({})", node.id, node.name),
        None => "none (election under way)".to_string(),
    };
    let mut out = format!(
        "cluster {}: term {}, leader {leader}; asked node {} (log {}, applied {})\n",
        report.name, report.term, report.node_id, report.last_log_index, report.applied_index
    );
    let mut nodes = table(&[
        "id",
        "name",
        "role",
        "replication address",
        "tcp address",
        "lag entries",
        "lag messages",
        "lag bytes",
    ]);
    for node in &report.nodes {
        nodes.add_row(vec![
            node.id.to_string(),
            node.name.clone(),
            role_text(node).to_string(),
            node.replication_address.clone(),
            node.tcp_address.clone(),
            optional(node.lag_entries),
            optional(node.lag_messages),
            optional(node.lag_bytes),
        ]);
    }
    out.push_str(&format!("{nodes}\n"));
    match (&report.lag_from, &report.lag_unavailable) {
        (Some(source), _) => out.push_str(&format!("lag as leader {source} sees it\n")),
        (None, Some(why)) => out.push_str(&format!("lag unknown: {why}\n")),
        (None, None) => {}
    }
    if report.partitions.is_empty() {
        out.push_str("no partitions yet");
    } else {
        let mut partitions = table(&["stream", "topic", "partition", "leader", "next offset"]);
        for partition in &report.partitions {
            partitions.add_row(vec![
                partition.stream_id.to_string(),
                partition.topic_id.to_string(),
                partition.partition_id.to_string(),
                optional(partition.leader),
                partition.next_offset.to_string(),
            ]);
        }
        out.push_str(&partitions.to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use riptide_config::cluster::{ClusterStatus, NodeStatus, PartitionStatus};

    fn node(id: u64, voter: bool, lag: Option<u64>) -> NodeStatus {
        NodeStatus {
            id,
            name: format!("node-{id}"),
            replication_address: format!("127.0.0.1:{}", 9100 + id),
            tcp_address: format!("127.0.0.1:{}", 8100 + id),
            voter,
            lag_entries: lag,
            lag_messages: lag.map(|l| l * 100),
            lag_bytes: lag.map(|l| l * 100_000),
            ..NodeStatus::default()
        }
    }

    fn leader_view() -> ClusterStatus {
        ClusterStatus {
            node_id: 2,
            term: 3,
            leader: Some(2),
            last_log_index: 120,
            applied_index: 120,
            nodes: vec![
                node(1, true, Some(0)),
                node(2, true, Some(0)),
                node(3, true, Some(2)),
                node(4, false, Some(9)),
            ],
            partitions: vec![PartitionStatus {
                stream_id: 0,
                topic_id: 1,
                partition_id: 2,
                leader: Some(2),
                next_offset: 500,
            }],
        }
    }

    #[test]
    fn the_table_shows_roles_lag_and_partition_leaders() {
        let report = ClusterReport::from_views("lab", &leader_view(), None);
        let text = report_text(&report);
        assert!(
            text.starts_with("cluster lab: term 3, leader 2 (node-2); asked node 2"),
            "{text}"
        );
        let row = |id: &str| {
            text.lines()
                .find(|line| line.contains(&format!("| node-{id} ")))
                .unwrap_or_else(|| panic!("no row for node {id}:\n{text}"))
                .to_string()
        };
        assert!(row("2").contains("leader"));
        assert!(row("3").contains("follower") && row("3").contains("200000"));
        assert!(row("4").contains("learner") && row("4").contains("900"));
        assert!(text.contains("lag as leader 2 sees it"), "{text}");
        assert!(text.contains("500"), "{text}");
    }

    #[test]
    fn unknown_lag_and_no_leader_are_said_in_words() {
        let mut view = leader_view();
        view.node_id = 1;
        view.leader = None;
        for node in &mut view.nodes {
            node.lag_entries = None;
            node.lag_messages = None;
            node.lag_bytes = None;
        }
        view.partitions.clear();
        let text = report_text(&ClusterReport::from_views("lab", &view, None));
        assert!(text.contains("leader none (election under way)"), "{text}");
        assert!(text.contains("lag unknown: no leader right now"), "{text}");
        assert!(text.contains("no partitions yet"), "{text}");
        assert!(!text.contains("| leader"), "{text}");
    }

    #[test]
    fn cluster_mode_off_and_a_missing_view_are_one_line() {
        let off = report_text(&ClusterReport::off());
        assert!(off.starts_with("cluster mode is off"), "{off}");
        let waiting = report_text(&ClusterReport::unavailable("lab", 3, "not published yet"));
        assert_eq!(waiting, "cluster lab (node 3): not published yet");
    }

    #[test]
    fn error_answers_map_to_exit_codes() {
        let refused = answer("x", 409, r#"{"error":"node 9 is not a member"}"#).unwrap_err();
        assert_eq!(refused.code, exit::REFUSED);
        assert_eq!(refused.message, "node 9 is not a member");
        assert_eq!(
            answer("x", 503, r#"{"error":"no leader"}"#)
                .unwrap_err()
                .code,
            exit::UNREACHABLE
        );
        assert_eq!(
            answer("x", 400, r#"{"error":"id"}"#).unwrap_err().code,
            exit::USAGE
        );
        assert!(answer("x", 200, r#"{"done":true}"#).is_ok());
        assert_eq!(
            answer("x", 200, "not json").unwrap_err().code,
            exit::FAILURE
        );
    }
}
