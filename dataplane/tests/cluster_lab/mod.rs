//! The cluster lab: riptide nodes as real processes, each in a network namespace of its own,
//! joined by a bridge in the test's namespace (where the SDK clients run). A node can be
//! SIGKILLed, restarted on its data directory, cut off (its link down) and healed. Everything is
//! created with unique names and removed on drop.
#![allow(dead_code)] // Each suite uses a different part of the lab.

use anyhow::{anyhow, bail, ensure, Context};
use riptide_config::cluster::{
    secret_digest, AdminClient, AdminReply, AdminRequest, ClusterStatus,
};
use riptide_protocol::batch::Batch;
use riptide_storage::segment::record_header;
use std::fs::{self, File};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

pub const CLUSTER_NAME: &str = "lab";
pub const SECRET: &str = "riptide-cluster-lab-secret";
pub const TCP_PORT: u16 = 8090;
pub const REPLICATION_PORT: u16 = 8091;
/// Longest a node may take to be ready (writes current_config.toml).
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// Longest the cluster may take to elect a leader that takes writes.
pub const ELECTION_TIMEOUT: Duration = Duration::from_secs(15);

/// Whether the lab can run here; in CI (`CI=true`) a missing prerequisite fails the test.
pub fn prerequisites_met(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let tools = ["ip", "nft"]
        .iter()
        .all(|tool| Command::new(tool).arg("--version").output().is_ok());
    if root && tools {
        return true;
    }
    let reason = "root, iproute2 (network namespaces, a bridge, veth pairs) and nftables";
    if std::env::var("CI").is_ok_and(|value| value == "true") {
        panic!("{test}: CI=true but this machine lacks {reason}");
    }
    eprintln!("SKIPPED {test}: needs {reason}");
    false
}

fn run(program: &str, args: &[&str]) -> anyhow::Result<String> {
    let output = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("running {program} {args:?}"))?;
    if !output.status.success() {
        bail!(
            "{program} {args:?}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// One node: its namespace, link, data directory and process.
pub struct Node {
    pub id: u64,
    pub namespace: String,
    /// The host end of its veth pair (on the bridge).
    pub link: String,
    pub ip: Ipv4Addr,
    pub data_dir: PathBuf,
    config_path: PathBuf,
    log_path: PathBuf,
    child: Option<Child>,
}

impl Node {
    pub fn tcp_address(&self) -> SocketAddr {
        SocketAddr::from((self.ip, TCP_PORT))
    }

    pub fn replication_address(&self) -> SocketAddr {
        SocketAddr::from((self.ip, REPLICATION_PORT))
    }

    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    /// Starts the node on its data directory and waits until it is ready.
    pub fn start(&mut self) -> anyhow::Result<()> {
        let ready = self.data_dir.join("runtime").join("current_config.toml");
        let _ = fs::remove_file(&ready);
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.log_path)?;
        let child = Command::new("ip")
            .args(["netns", "exec", &self.namespace])
            .arg(env!("CARGO_BIN_EXE_riptide-dataplane"))
            .arg("--config")
            .arg(&self.config_path)
            // RIPTIDE_LAB_LOG (e.g. "info,openraft=debug") shows more when a suite misbehaves.
            .env(
                "RUST_LOG",
                std::env::var("RIPTIDE_LAB_LOG").unwrap_or_else(|_| "info,openraft=error".into()),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("spawning a node")?;
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        while !ready.exists() {
            if !self.is_running() {
                bail!("node {} exited during start-up:\n{}", self.id, self.log());
            }
            if Instant::now() > deadline {
                bail!(
                    "node {} not ready in {START_TIMEOUT:?}:\n{}",
                    self.id,
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// SIGKILL: nothing gets a chance to flush.
    pub fn sigkill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM and wait (SIGKILL after 20 s).
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if matches!(child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Drops the node's replication traffic (nftables in its namespace): it cannot reach its
    /// peers nor they it, while clients still reach its TCP port.
    pub fn isolate(&self) -> anyhow::Result<()> {
        let ruleset = format!(
            "table inet riptide_lab {{\n\
             chain input {{ type filter hook input priority 0; policy accept; \
             tcp dport {REPLICATION_PORT} drop; tcp sport {REPLICATION_PORT} drop; }}\n\
             chain output {{ type filter hook output priority 0; policy accept; \
             tcp dport {REPLICATION_PORT} drop; tcp sport {REPLICATION_PORT} drop; }}\n}}\n"
        );
        let rules = self.data_dir.with_extension("nft");
        fs::write(&rules, ruleset)?;
        let path = rules.to_string_lossy().into_owned();
        run(
            "ip",
            &["netns", "exec", &self.namespace, "nft", "-f", &path],
        )
        .map(drop)
    }

    pub fn heal(&self) -> anyhow::Result<()> {
        run(
            "ip",
            &[
                "netns",
                "exec",
                &self.namespace,
                "nft",
                "delete",
                "table",
                "inet",
                "riptide_lab",
            ],
        )
        .map(drop)
    }

    pub fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The node's view of the cluster, over the admin protocol.
    pub async fn status(&self) -> anyhow::Result<ClusterStatus> {
        match self
            .admin_call(AdminRequest::Status, Duration::from_secs(2))
            .await?
        {
            AdminReply::Status(status) => Ok(status),
            other => bail!("unexpected status reply {other:?}"),
        }
    }

    /// Asks this node (the leader) to change the membership.
    pub async fn admin(&self, request: AdminRequest) -> anyhow::Result<()> {
        match self.admin_call(request, Duration::from_secs(60)).await? {
            AdminReply::Done => Ok(()),
            other => bail!("membership change refused: {other:?}"),
        }
    }

    async fn admin_call(
        &self,
        request: AdminRequest,
        timeout: Duration,
    ) -> anyhow::Result<AdminReply> {
        let address = self.replication_address().to_string();
        tokio::task::spawn_blocking(move || {
            let digest = secret_digest(CLUSTER_NAME, SECRET);
            let mut client = AdminClient::connect(&address, digest, Duration::from_secs(2))?;
            client.set_reply_timeout(timeout)?;
            anyhow::Ok(client.call(&request)?)
        })
        .await?
        .with_context(|| format!("admin request to node {}", self.id))
    }
}

/// A bridge and `n` nodes on subnet 10.81.`subnet`.0/24 (the host side is .254).
pub struct Lab {
    pub tag: String,
    pub bridge: String,
    pub subnet: u8,
    pub nodes: Vec<Node>,
    /// Members the cluster starts with (nodes added later are not among them).
    initial_members: usize,
    root: TempDir,
    passed: bool,
}

impl Lab {
    /// Creates the bridge and `initial` nodes' namespaces and configurations (not started).
    pub fn new(subnet: u8, initial: usize) -> anyhow::Result<Lab> {
        let tag = format!("{}{}", std::process::id() % 10_000, subnet);
        let bridge = format!("rtcb{tag}");
        run("ip", &["link", "add", &bridge, "type", "bridge"])?;
        let mut lab = Lab {
            tag,
            bridge,
            subnet,
            nodes: Vec::new(),
            initial_members: initial,
            root: tempfile::Builder::new()
                .prefix("riptide-cluster-")
                .tempdir()?,
            passed: false,
        };
        run(
            "ip",
            &[
                "addr",
                "add",
                &format!("10.81.{subnet}.254/24"),
                "dev",
                &lab.bridge,
            ],
        )?;
        run("ip", &["link", "set", "dev", &lab.bridge, "up"])?;
        for _ in 0..initial {
            lab.add_node_namespace()?;
        }
        for index in 0..initial {
            lab.write_config(index)?;
        }
        Ok(lab)
    }

    /// Another node's namespace and link (its configuration is written separately).
    pub fn add_node_namespace(&mut self) -> anyhow::Result<usize> {
        let index = self.nodes.len();
        let id = index as u64 + 1;
        let namespace = format!("rtcn{}n{id}", self.tag);
        let link = format!("rtcv{}n{id}", self.tag);
        let peer = format!("rtcp{}n{id}", self.tag);
        let ip = Ipv4Addr::new(10, 81, self.subnet, id as u8);
        run("ip", &["netns", "add", &namespace])?;
        run(
            "ip",
            &["link", "add", &link, "type", "veth", "peer", "name", &peer],
        )?;
        run("ip", &["link", "set", &peer, "netns", &namespace])?;
        run("ip", &["link", "set", &link, "master", &self.bridge])?;
        run("ip", &["link", "set", "dev", &link, "up"])?;
        let in_ns = |args: &[&str]| {
            let mut all = vec!["netns", "exec", &namespace, "ip"];
            all.extend_from_slice(args);
            run("ip", &all)
        };
        in_ns(&["addr", "add", &format!("{ip}/24"), "dev", &peer])?;
        in_ns(&["link", "set", "dev", &peer, "up"])?;
        in_ns(&["link", "set", "dev", "lo", "up"])?;
        let data_dir = self.root.path().join(format!("node-{id}"));
        fs::create_dir_all(&data_dir)?;
        self.nodes.push(Node {
            id,
            namespace,
            link,
            ip,
            config_path: data_dir.join("riptide.toml"),
            log_path: self.root.path().join(format!("node-{id}.log")),
            data_dir,
            child: None,
        });
        Ok(index)
    }

    /// The configuration of node `index`: members are the initial nodes, plus itself when it
    /// joins later.
    pub fn write_config(&self, index: usize) -> anyhow::Result<()> {
        let node = &self.nodes[index];
        let mut members: Vec<&Node> = self.nodes[..self.initial_members].iter().collect();
        if index >= self.initial_members {
            members.push(node);
        }
        let members_toml = members
            .iter()
            .map(|member| {
                format!(
                    "  {{ id = {}, name = \"node-{}\", replication_address = \"{}\", tcp_address = \"{}\" }},\n",
                    member.id,
                    member.id,
                    member.replication_address(),
                    member.tcp_address()
                )
            })
            .collect::<String>();
        let text = format!(
            "[system]\npath = \"{}\"\n\n[tcp]\naddress = \"{}\"\n\n[dataplane]\nnetwork_workers = 1\n\
             storage_shards = 1\n\n[storage]\nread_cache_bytes = 67108864\n\n[cluster]\nenabled = true\n\
             name = \"{CLUSTER_NAME}\"\nnode_name = \"node-{}\"\nnode_id = {}\n\
             replication_address = \"{}\"\nsecret = \"{SECRET}\"\nelection_timeout_min_ms = 800\n\
             election_timeout_max_ms = 1600\nheartbeat_interval_ms = 200\nwrite_timeout_ms = 4000\n\
             members = [\n{members_toml}]\n",
            node.data_dir.display(),
            node.tcp_address(),
            node.id,
            node.id,
            node.replication_address(),
        );
        fs::write(&node.config_path, text)?;
        Ok(())
    }

    pub fn start_all(&mut self) -> anyhow::Result<()> {
        // Started together: each waits for its peers only through Raft, not at start-up.
        self.nodes.iter_mut().try_for_each(Node::start)
    }

    /// The node that leads and takes writes, by the nodes' own reports.
    pub async fn leader(&self) -> anyhow::Result<usize> {
        let deadline = Instant::now() + ELECTION_TIMEOUT;
        loop {
            for (index, node) in self.nodes.iter().enumerate() {
                if let Ok(status) = node.status().await {
                    if status.leader == Some(node.id) && status.applied_index > 0 {
                        return Ok(index);
                    }
                }
            }
            if Instant::now() > deadline {
                bail!("no leader within {ELECTION_TIMEOUT:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Marks the test as passed (no logs are printed on drop).
    pub fn pass(&mut self) {
        self.passed = true;
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.sigkill();
            if !self.passed || std::env::var_os("RIPTIDE_LAB_KEEP_LOGS").is_some() {
                eprintln!("==== log of node {} ====\n{}", node.id, node.log());
            }
            // Deleting the namespace deletes the veth pair too; the link is deleted in case the
            // namespace was never populated.
            let _ = run("ip", &["netns", "del", &node.namespace]);
            let _ = run("ip", &["link", "del", &node.link]);
        }
        let _ = run("ip", &["link", "del", &self.bridge]);
    }
}

/// One stored message as a node's segment files hold it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    pub offset: u64,
    pub id: u128,
    pub payload: Vec<u8>,
}

/// Every message of a partition in a node's data directory, from its segment files, in offset
/// order (read while the node is stopped, or from what it flushed).
pub fn stored_messages(
    data_dir: &Path,
    stream: u32,
    topic: u32,
    partition: u32,
) -> anyhow::Result<Vec<StoredMessage>> {
    let dir = data_dir
        .join("streams")
        .join(stream.to_string())
        .join("topics")
        .join(topic.to_string())
        .join("partitions")
        .join(partition.to_string());
    let mut segments: Vec<PathBuf> = fs::read_dir(&dir)
        .with_context(|| format!("{}", dir.display()))?
        .filter_map(|entry| Some(entry.ok()?.path()))
        .filter(|path| path.extension().is_some_and(|e| e == "log"))
        .collect();
    segments.sort();
    let mut messages = Vec::new();
    for segment in segments {
        let bytes = fs::read(&segment)?;
        parse_records(&bytes, &mut messages).with_context(|| format!("{}", segment.display()))?;
    }
    Ok(messages)
}

/// The messages of a segment's records, each record's checksums verified.
fn parse_records(bytes: &[u8], out: &mut Vec<StoredMessage>) -> anyhow::Result<()> {
    let mut position = 0usize;
    while position + 256 <= bytes.len() {
        if bytes[position..position + 256].iter().all(|b| *b == 0) {
            break; // the zeroed padding after the last record
        }
        let header = record_header(&bytes[position..])
            .map_err(|e| anyhow!("record at byte {position}: {e:?}"))?;
        let end = position + header.batch_length_bytes;
        ensure!(
            end <= bytes.len(),
            "record at byte {position} runs past the file"
        );
        let batch = Batch::new_checked(&bytes[position..end])
            .map_err(|e| anyhow!("record at byte {position}: {e:?}"))?;
        out.extend(batch.messages().map(|message| StoredMessage {
            offset: message.offset,
            id: message.id,
            payload: message.payload.to_vec(),
        }));
        position = end;
    }
    Ok(())
}
