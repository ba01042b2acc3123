//! The cluster through the control plane (issue 17, item 5), with real processes: three nodes on
//! loopback (each riptide-control supervising its riptide-dataplane, distinct ports, its own data
//! directory), a fourth dataplane that joins and leaves, and riptidectl.
//!
//! `riptidectl cluster status` asked of every node shows three voters and one leader, with the
//! followers' lag (a follower's control plane asks the leader for it) and each partition's
//! leader; `/status` and `/metrics` carry the same; `riptidectl cluster add` through a follower
//! makes the fourth node a voter, `remove` takes it out. With cluster mode off everything says so.

mod common;

use common::{http, stderr, stdout, Appliance};
use riptide_control::metrics::{parse_exposition, Sample};
use serde_json::Value;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const CLUSTER: &str = "ctl-lab";
const SECRET: &str = "riptide-control-cluster-secret";
/// Longest the cluster may take to elect a leader, or a change to show on every node.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);

struct Ports {
    tcp: u16,
    replication: u16,
}

/// Free loopback ports for `n` nodes (held together while picked, so they are distinct).
fn free_ports(n: usize) -> Vec<Ports> {
    let listeners: Vec<TcpListener> = (0..n * 2)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("a free port"))
        .collect();
    let port = |i: usize| listeners[i].local_addr().expect("port").port();
    (0..n)
        .map(|i| Ports {
            tcp: port(2 * i),
            replication: port(2 * i + 1),
        })
        .collect()
}

fn member(id: usize, ports: &Ports) -> String {
    format!(
        "  {{ id = {id}, name = \"node-{id}\", replication_address = \"127.0.0.1:{}\", tcp_address = \"127.0.0.1:{}\" }},\n",
        ports.replication, ports.tcp
    )
}

/// Node `id`'s configuration: members are `members` (ids 1..), one thread of each kind, the
/// lab's Raft timing, its control API on a free port and no HTTP API.
fn node_config(id: usize, ports: &[Ports], members: usize) -> String {
    let roster: String = (1..=members).map(|m| member(m, &ports[m - 1])).collect();
    let own = &ports[id - 1];
    format!(
        "[tcp]\naddress = \"127.0.0.1:{}\"\n[dataplane]\nnetwork_workers = 1\nstorage_shards = 1\n\
         [storage]\nread_cache_bytes = 67108864\n[control]\naddress = \"127.0.0.1:0\"\n\
         [http]\nenabled = false\n[cluster]\nenabled = true\nname = \"{CLUSTER}\"\n\
         node_name = \"node-{id}\"\nnode_id = {id}\nreplication_address = \"127.0.0.1:{}\"\n\
         secret = \"{SECRET}\"\nelection_timeout_min_ms = 800\nelection_timeout_max_ms = 1600\n\
         heartbeat_interval_ms = 200\nwrite_timeout_ms = 4000\nmembers = [\n{roster}]\n",
        own.tcp, own.replication
    )
}

/// A dataplane started without riptide-control (the node that joins later).
struct BareNode {
    child: Child,
    dir: tempfile::TempDir,
}

impl BareNode {
    fn start(config: &str) -> BareNode {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("riptide.toml");
        std::fs::write(&path, config).expect("config");
        let log = std::fs::File::create(dir.path().join("node.log")).expect("log");
        let child = Command::new(common::dataplane_bin().expect("dataplane built"))
            .arg("--config")
            .arg(&path)
            .env("IGGY_SYSTEM_PATH", dir.path().join("data"))
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start the joining node");
        let node = BareNode { child, dir };
        let ready = node.dir.path().join("data/runtime/current_config.toml");
        let deadline = Instant::now() + common::START_TIMEOUT;
        while !ready.exists() {
            assert!(
                Instant::now() < deadline,
                "node 4 not ready:\n{}",
                node.log()
            );
            std::thread::sleep(common::POLL_INTERVAL);
        }
        node
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("node.log")).unwrap_or_default()
    }
}

impl Drop for BareNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `riptidectl --json cluster status` on `node` until `done` holds.
fn wait_for_report(node: &Appliance, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    loop {
        let output = node.ctl(&["--json", "cluster", "status"]);
        let last = if output.status.success() {
            let report: Value = serde_json::from_slice(&output.stdout).expect("JSON");
            if done(&report) {
                return report;
            }
            report.to_string()
        } else {
            stderr(&output)
        };
        assert!(
            Instant::now() < deadline,
            "{what} not seen in {SETTLE_TIMEOUT:?}; last answer: {last}\n{}",
            node.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn voters(report: &Value) -> usize {
    report["nodes"].as_array().map_or(0, |nodes| {
        nodes.iter().filter(|n| n["voter"] == true).count()
    })
}

fn leader(report: &Value) -> Option<u64> {
    report["leader"].as_u64()
}

fn sample(samples: &[Sample], name: &str, node_id: Option<&str>) -> Option<f64> {
    samples
        .iter()
        .find(|s| {
            s.name == name
                && node_id.is_none_or(|id| s.labels.get("node_id").map(String::as_str) == Some(id))
        })
        .map(|s| s.value)
}

fn metrics(node: &Appliance) -> Vec<Sample> {
    let (code, page) = http(&node.control, "GET", "/metrics", "").expect("GET /metrics");
    assert_eq!(code, 200);
    parse_exposition(&page).unwrap_or_else(|e| panic!("{e}\n{page}"))
}

/// Waits until `node`'s published view (stats.json, so /metrics and /status) satisfies `done`.
fn wait_for_metrics(node: &Appliance, what: &str, done: impl Fn(&[Sample]) -> bool) -> Vec<Sample> {
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    loop {
        let samples = metrics(node);
        if done(&samples) {
            return samples;
        }
        assert!(Instant::now() < deadline, "{what}: {samples:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn run_ok(node: &Appliance, args: &[&str]) -> String {
    let output = node.ctl(args);
    assert!(
        output.status.success(),
        "riptidectl {args:?}: {}{}",
        stdout(&output),
        stderr(&output)
    );
    stdout(&output)
}

#[test]
fn cluster_status_metrics_and_membership_through_riptidectl() {
    let ports = free_ports(4);
    let mut nodes = Vec::new();
    for id in 1..=3 {
        match Appliance::spawn(&[], Some(&node_config(id, &ports, 3)), false) {
            Some(node) => nodes.push(node),
            None => return,
        }
    }
    nodes.iter().for_each(Appliance::wait_healthy);

    // Every node's control plane shows three voters, one leader, and the lag (a follower's
    // asks the leader).
    let mut leader_id = 0;
    for node in &nodes {
        let report = wait_for_report(node, "three voters, a leader and its lag", |r| {
            voters(r) == 3 && leader(r).is_some() && r["lag_from"] == r["leader"]
        });
        leader_id = leader(&report).expect("leader");
        let roles: Vec<&str> = report["nodes"]
            .as_array()
            .expect("nodes")
            .iter()
            .map(|n| n["role"].as_str().expect("role"))
            .collect();
        assert_eq!(
            roles.iter().filter(|r| **r == "leader").count(),
            1,
            "{report}"
        );
        assert_eq!(
            roles.iter().filter(|r| **r == "follower").count(),
            2,
            "{report}"
        );
        assert!(report["term"].as_u64().is_some_and(|t| t > 0), "{report}");
        assert!(
            report["nodes"]
                .as_array()
                .expect("nodes")
                .iter()
                .all(|n| n["lag_messages"].is_u64()),
            "{report}"
        );
    }
    let leader_node = &nodes[leader_id as usize - 1];
    let follower = &nodes[leader_id as usize % 3];

    // Data, written through the leader: the partitions show up with their leader.
    run_ok(leader_node, &["stream", "create", "orders"]);
    run_ok(
        leader_node,
        &["topic", "create", "orders", "eu", "--partitions", "2"],
    );
    run_ok(
        leader_node,
        &[
            "message",
            "send",
            "orders",
            "eu",
            "--partition",
            "0",
            "a",
            "b",
            "c",
        ],
    );
    let report = wait_for_report(follower, "two partitions led by the leader", |r| {
        r["partitions"].as_array().is_some_and(|p| {
            p.len() == 2
                && p.iter().all(|p| p["leader"] == r["leader"])
                && p.iter().any(|p| p["next_offset"] == 3)
        })
    });
    let table = run_ok(follower, &["cluster", "status"]);
    assert!(
        table.contains(&format!("cluster {CLUSTER}: term {}", report["term"]))
            && table.contains(&format!("lag as leader {leader_id} sees it"))
            && table.lines().filter(|l| l.contains("| node-")).count() == 3,
        "{table}"
    );

    // /metrics: the leader's page has the lag, every page the roles.
    let leader_page = wait_for_metrics(leader_node, "the leader's gauges", |s| {
        sample(s, "riptide_cluster_is_leader", None) == Some(1.0)
            && sample(s, "riptide_cluster_node_lag_messages", Some("1")).is_some()
    });
    for id in ["1", "2", "3"] {
        assert_eq!(
            sample(&leader_page, "riptide_cluster_node_voter", Some(id)),
            Some(1.0)
        );
        assert!(sample(&leader_page, "riptide_cluster_node_lag_bytes", Some(id)).is_some());
        assert!(sample(&leader_page, "riptide_cluster_node_lag_entries", Some(id)).is_some());
    }
    let follower_page = wait_for_metrics(follower, "a follower's gauges", |s| {
        sample(s, "riptide_cluster_leader_id", None) == Some(leader_id as f64)
    });
    assert_eq!(
        sample(&follower_page, "riptide_cluster_is_leader", None),
        Some(0.0)
    );
    assert_eq!(
        sample(&follower_page, "riptide_cluster_enabled", None),
        Some(1.0)
    );
    assert!(sample(&follower_page, "riptide_cluster_applied_index", None).is_some_and(|i| i > 0.0));
    let status = follower.status();
    assert_eq!(status["cluster"]["enabled"], true, "{status}");
    assert_eq!(status["cluster"]["leader"], leader_id, "{status}");
    assert!(
        status["cluster"]["lag_unavailable"]
            .as_str()
            .is_some_and(|why| why.contains("only the leader")),
        "{status}"
    );
    let status = leader_node.status();
    assert_eq!(status["cluster"]["lag_from"], leader_id, "{status}");

    // Node 4 joins through a follower's control plane (it forwards to the leader) and votes;
    // then it is removed.
    let joining = BareNode::start(&node_config(4, &ports, 4));
    let replication = format!("127.0.0.1:{}", ports[3].replication);
    let tcp = format!("127.0.0.1:{}", ports[3].tcp);
    let added = follower.ctl(&[
        "cluster",
        "add",
        "4",
        "--replication-address",
        &replication,
        "--tcp-address",
        &tcp,
    ]);
    assert!(
        added.status.success(),
        "add: {}\n{}",
        stderr(&added),
        joining.log()
    );
    assert!(stdout(&added).contains("node 4 added"));
    let report = wait_for_report(&nodes[0], "four voters", |r| voters(r) == 4);
    let four = report["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .find(|n| n["id"] == 4)
        .cloned();
    assert_eq!(
        four.as_ref().map(|n| &n["name"]),
        Some(&Value::from("node-4")),
        "{report}"
    );
    let removed = follower.ctl(&["cluster", "remove", "4"]);
    assert!(removed.status.success(), "remove: {}", stderr(&removed));
    wait_for_report(&nodes[0], "node 4 gone", |r| {
        voters(r) == 3 && r["nodes"].as_array().is_some_and(|n| n.len() == 3)
    });
    // Removing it again: the cluster refuses, and says why.
    let again = follower.ctl(&["cluster", "remove", "4"]);
    assert_eq!(again.status.code(), Some(4), "{}", stderr(&again));
    assert!(
        stderr(&again).contains("not a member"),
        "{}",
        stderr(&again)
    );
    drop(joining);
}

#[test]
fn with_cluster_mode_off_everything_says_so() {
    let Some(appliance) = Appliance::start_with(&[("RIPTIDE_HTTP_ENABLED", "false")], None) else {
        return;
    };
    let text = run_ok(&appliance, &["cluster", "status"]);
    assert!(text.starts_with("cluster mode is off"), "{text}");
    let report = appliance.ctl_json(&["cluster", "status"]);
    assert_eq!(report["enabled"], false);
    let samples = wait_for_metrics(&appliance, "the cluster gauge", |s| {
        sample(s, "riptide_cluster_enabled", None).is_some()
    });
    assert_eq!(sample(&samples, "riptide_cluster_enabled", None), Some(0.0));
    assert!(sample(&samples, "riptide_cluster_term", None).is_none());
    assert_eq!(appliance.status()["cluster"]["enabled"], false);
    let add = appliance.ctl(&[
        "cluster",
        "add",
        "2",
        "--replication-address",
        "127.0.0.1:1",
        "--tcp-address",
        "127.0.0.1:2",
    ]);
    assert_eq!(add.status.code(), Some(4));
    assert!(
        stderr(&add).contains("cluster mode is off"),
        "{}",
        stderr(&add)
    );
}
