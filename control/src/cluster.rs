//! The cluster as the control API shows and changes it: this node's view over the admin protocol
//! of its replication port ([`riptide_config::cluster`]), the leader's view for follower lag,
//! and membership changes sent to the leader.
//!
//! Every call here blocks (the admin client is a plain `TcpStream`): the API runs them with
//! `spawn_blocking`. A node that is not the leader answers a membership change with
//! `NotLeader { replication_address }`; it is followed at most
//! [`CLUSTER_LEADER_REDIRECTS_MAX`] times.

use crate::constants::{
    CLUSTER_CONNECT_TIMEOUT_MS, CLUSTER_LEADER_REDIRECTS_MAX, CLUSTER_MEMBERSHIP_TIMEOUT_MS,
    CLUSTER_STATUS_TIMEOUT_MS,
};
use riptide_config::cluster::{
    secret_digest, AdminClient, AdminReply, AdminRequest, ClusterStatus, NodeId, NodeStatus,
    PartitionStatus,
};
use riptide_config::Config;
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

/// What `riptidectl cluster` and the API say when cluster mode is off.
pub const CLUSTER_OFF_MESSAGE: &str =
    "cluster mode is off ([cluster] enabled = false): this appliance is a single node";

/// Why a cluster request could not be answered.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("{CLUSTER_OFF_MESSAGE}")]
    Off,
    #[error("cannot reach the node at {address} (its replication port): {source}")]
    Unreachable {
        address: String,
        source: std::io::Error,
    },
    #[error("the node at {address} refused this node's cluster secret: {reason} (cluster.name and cluster.secret must match the cluster's)")]
    SecretRefused { address: String, reason: String },
    #[error(
        "the cluster has no leader right now (an election is under way); try again in a moment"
    )]
    NoLeader,
    #[error("the leadership moved {CLUSTER_LEADER_REDIRECTS_MAX} times while asking; try again")]
    LeaderMoving,
    #[error("the cluster refused: {0}")]
    Refused(String),
    #[error("the node at {address} answered {reply}")]
    Unexpected { address: String, reply: String },
}

/// How to reach this node's replication port and prove the cluster's secret.
#[derive(Clone)]
pub struct ClusterTarget {
    pub name: String,
    pub node_id: NodeId,
    /// This node's replication address (an unspecified IP replaced by loopback).
    pub local_address: String,
    digest: [u8; 32],
}

impl ClusterTarget {
    /// `None` when cluster mode is off.
    pub fn from_config(config: &Config) -> Option<ClusterTarget> {
        let cluster = &config.cluster;
        if !cluster.enabled {
            return None;
        }
        Some(ClusterTarget {
            name: cluster.name.clone(),
            node_id: cluster.node_id,
            local_address: reachable_address(&cluster.replication_address),
            digest: secret_digest(&cluster.name, &cluster.secret),
        })
    }

    fn connect(&self, address: &str, reply_timeout: Duration) -> Result<AdminClient, ClusterError> {
        let timeout = Duration::from_millis(CLUSTER_CONNECT_TIMEOUT_MS);
        let client = AdminClient::connect(address, self.digest, timeout).map_err(|source| {
            if source.kind() == std::io::ErrorKind::PermissionDenied {
                ClusterError::SecretRefused {
                    address: address.to_string(),
                    reason: source.to_string(),
                }
            } else {
                ClusterError::Unreachable {
                    address: address.to_string(),
                    source,
                }
            }
        })?;
        client
            .set_reply_timeout(reply_timeout)
            .map_err(|source| ClusterError::Unreachable {
                address: address.to_string(),
                source,
            })?;
        Ok(client)
    }

    fn call(
        &self,
        address: &str,
        request: &AdminRequest,
        reply_timeout: Duration,
    ) -> Result<AdminReply, ClusterError> {
        self.connect(address, reply_timeout)?
            .call(request)
            .map_err(|source| ClusterError::Unreachable {
                address: address.to_string(),
                source,
            })
    }

    /// One node's view of the cluster.
    ///
    /// # Errors
    /// [`ClusterError`] when the node cannot be reached or answers something else.
    pub fn status_of(&self, address: &str) -> Result<ClusterStatus, ClusterError> {
        let timeout = Duration::from_millis(CLUSTER_STATUS_TIMEOUT_MS);
        match self.call(address, &AdminRequest::Status, timeout)? {
            AdminReply::Status(status) => Ok(status),
            other => Err(ClusterError::Unexpected {
                address: address.to_string(),
                reply: format!("{other:?}"),
            }),
        }
    }

    /// This node's view, with the follower lag from the leader's view (asked of the leader
    /// when this node does not lead).
    ///
    /// # Errors
    /// [`ClusterError`] when this node cannot be reached; an unreachable leader only leaves the
    /// lag out (the report says why).
    pub fn report(&self) -> Result<ClusterReport, ClusterError> {
        let local = self.status_of(&self.local_address)?;
        let leader_view = match local.leader_node() {
            Some(leader) if leader.id != local.node_id => Some(
                self.status_of(&reachable_address(&leader.replication_address))
                    .map_err(|e| e.to_string()),
            ),
            _ => None,
        };
        Ok(ClusterReport::from_views(&self.name, &local, leader_view))
    }

    /// Sends a membership change to the leader (found through this node) and waits for it.
    /// Returns the replication address of the leader that made it.
    ///
    /// # Errors
    /// [`ClusterError`]: no leader, unreachable nodes, or the leader's refusal.
    pub fn change_membership(&self, request: &AdminRequest) -> Result<String, ClusterError> {
        let timeout = Duration::from_millis(CLUSTER_MEMBERSHIP_TIMEOUT_MS);
        let mut address = self.local_address.clone();
        for _ in 0..=CLUSTER_LEADER_REDIRECTS_MAX {
            match self.call(&address, request, timeout)? {
                AdminReply::Done => return Ok(address),
                AdminReply::NotLeader {
                    replication_address: Some(leader),
                    ..
                } => address = reachable_address(&leader),
                AdminReply::NotLeader { .. } => return Err(ClusterError::NoLeader),
                AdminReply::Failed(reason) => return Err(ClusterError::Refused(reason)),
                other @ AdminReply::Status(_) => {
                    return Err(ClusterError::Unexpected {
                        address,
                        reply: format!("{other:?}"),
                    })
                }
            }
        }
        Err(ClusterError::LeaderMoving)
    }
}

/// An address this host can connect to: an unspecified IP (a node listening on every address)
/// becomes the loopback address of its family.
fn reachable_address(address: &str) -> String {
    match address.parse::<SocketAddr>() {
        Ok(mut socket) if socket.ip().is_unspecified() => {
            let loopback = match socket.ip() {
                IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
            };
            socket.set_ip(loopback);
            socket.to_string()
        }
        _ => address.to_string(),
    }
}

/// A node's role as the report shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Leader,
    Follower,
    /// Receives the log but does not vote (a node being added, until it caught up).
    Learner,
}

/// One node in the report: this node's roster, with the lag the leader sees.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeReport {
    pub id: NodeId,
    pub name: String,
    pub role: Role,
    pub voter: bool,
    pub replication_address: String,
    pub tcp_address: String,
    pub http_address: String,
    pub lag_entries: Option<u64>,
    pub lag_messages: Option<u64>,
    pub lag_bytes: Option<u64>,
}

/// What `GET /cluster`, the `cluster` section of `/status` and `riptidectl cluster status` show.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClusterReport {
    pub enabled: bool,
    /// Cluster mode off, or why there is no view yet.
    pub message: Option<String>,
    pub name: String,
    /// The node this report was asked of.
    pub node_id: NodeId,
    pub term: u64,
    pub leader: Option<NodeId>,
    pub last_log_index: u64,
    pub applied_index: u64,
    pub nodes: Vec<NodeReport>,
    /// Every partition with its leader and next offset (the leader's view when it answered).
    pub partitions: Vec<PartitionStatus>,
    /// The node whose view gave the lag (the leader), when one did.
    pub lag_from: Option<NodeId>,
    /// Why the lag is missing, when it is.
    pub lag_unavailable: Option<String>,
}

impl ClusterReport {
    /// Cluster mode off.
    pub fn off() -> ClusterReport {
        ClusterReport {
            message: Some(CLUSTER_OFF_MESSAGE.to_string()),
            ..ClusterReport::default()
        }
    }

    /// Cluster mode on, no view to show (and why).
    pub fn unavailable(name: &str, node_id: NodeId, why: impl Into<String>) -> ClusterReport {
        ClusterReport {
            enabled: true,
            message: Some(why.into()),
            name: name.to_string(),
            node_id,
            ..ClusterReport::default()
        }
    }

    /// Merges this node's view with the leader's (`None` when this node leads or no node does;
    /// an error when the leader could not be asked): roles and roster from this node, lag and
    /// partitions from the leader.
    pub fn from_views(
        name: &str,
        local: &ClusterStatus,
        leader_view: Option<Result<ClusterStatus, String>>,
    ) -> ClusterReport {
        let (lag_view, lag_unavailable) = match leader_view {
            Some(Ok(view)) => (Some(view), None),
            Some(Err(why)) => (None, Some(format!("the leader could not be asked: {why}"))),
            None if local.leader == Some(local.node_id) => (Some(local.clone()), None),
            None if local.leader.is_none() => (None, Some("no leader right now".to_string())),
            None => (
                None,
                Some("the leader is not in this node's roster".to_string()),
            ),
        };
        let lag_of = |id: NodeId| -> Option<&NodeStatus> {
            lag_view.as_ref()?.nodes.iter().find(|node| node.id == id)
        };
        let nodes = local
            .nodes
            .iter()
            .map(|node| {
                let lag = lag_of(node.id);
                NodeReport {
                    id: node.id,
                    name: node.name.clone(),
                    role: role(local.leader, node),
                    voter: node.voter,
                    replication_address: node.replication_address.clone(),
                    tcp_address: node.tcp_address.clone(),
                    http_address: node.http_address.clone(),
                    lag_entries: lag.and_then(|n| n.lag_entries),
                    lag_messages: lag.and_then(|n| n.lag_messages),
                    lag_bytes: lag.and_then(|n| n.lag_bytes),
                }
            })
            .collect();
        ClusterReport {
            enabled: true,
            message: None,
            name: name.to_string(),
            node_id: local.node_id,
            term: local.term,
            leader: local.leader,
            last_log_index: local.last_log_index,
            applied_index: local.applied_index,
            nodes,
            partitions: lag_view
                .as_ref()
                .map_or_else(|| local.partitions.clone(), |view| view.partitions.clone()),
            lag_from: lag_view.as_ref().map(|view| view.node_id),
            lag_unavailable,
        }
    }

    /// The leader's entry, when one leads.
    pub fn leader_node(&self) -> Option<&NodeReport> {
        self.nodes.iter().find(|node| Some(node.id) == self.leader)
    }
}

fn role(leader: Option<NodeId>, node: &NodeStatus) -> Role {
    if leader == Some(node.id) {
        Role::Leader
    } else if node.voter {
        Role::Follower
    } else {
        Role::Learner
    }
}

/// The body of `POST /cluster/nodes` (and `riptidectl cluster add`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AddNodeBody {
    pub id: NodeId,
    /// Default: `node-<id>`.
    #[serde(default)]
    pub name: Option<String>,
    pub replication_address: String,
    pub tcp_address: String,
    #[serde(default)]
    pub http_address: Option<String>,
}

impl AddNodeBody {
    /// The admin request, after checking what the node's configuration would be checked for.
    ///
    /// # Errors
    /// A message naming the field at fault.
    pub fn into_request(self) -> Result<AdminRequest, String> {
        if self.id == 0 {
            return Err("id: node ids are positive".to_string());
        }
        let address = |field: &str, text: &str| {
            text.parse::<SocketAddr>()
                .map(drop)
                .map_err(|_| format!("{field}: '{text}' is not an ip:port address"))
        };
        address("replication_address", &self.replication_address)?;
        address("tcp_address", &self.tcp_address)?;
        let http_address = self.http_address.unwrap_or_default();
        if !http_address.is_empty() {
            address("http_address", &http_address)?;
        }
        let name = self.name.unwrap_or_else(|| format!("node-{}", self.id));
        if name.is_empty() || name.len() > 255 {
            return Err("name: 1 to 255 bytes".to_string());
        }
        Ok(AdminRequest::AddNode {
            id: self.id,
            node: riptide_config::cluster::NodeInfo {
                name,
                replication_address: self.replication_address,
                tcp_address: self.tcp_address,
                http_address,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn node(id: NodeId, voter: bool, lag: Option<u64>) -> NodeStatus {
        NodeStatus {
            id,
            name: format!("node-{id}"),
            replication_address: format!("127.0.0.1:{}", 9000 + id),
            tcp_address: format!("127.0.0.1:{}", 8000 + id),
            http_address: String::new(),
            voter,
            lag_entries: lag,
            lag_messages: lag.map(|l| l * 10),
            lag_bytes: lag.map(|l| l * 1000),
        }
    }

    fn view(node_id: NodeId, leader: Option<NodeId>, lag: bool) -> ClusterStatus {
        let lag_of = |id: NodeId| lag.then_some(if id == 3 { 4 } else { 0 });
        ClusterStatus {
            node_id,
            term: 7,
            leader,
            last_log_index: 40,
            applied_index: 39,
            nodes: vec![
                node(1, true, lag_of(1)),
                node(2, true, lag_of(2)),
                node(3, true, lag_of(3)),
                node(4, false, lag_of(4)),
            ],
            partitions: vec![PartitionStatus {
                stream_id: 0,
                topic_id: 0,
                partition_id: 0,
                leader,
                next_offset: if lag { 100 } else { 90 },
            }],
        }
    }

    #[test]
    fn a_follower_shows_its_roster_with_the_leaders_lag() {
        let local = view(1, Some(2), false);
        let report = ClusterReport::from_views("lab", &local, Some(Ok(view(2, Some(2), true))));
        let roles: Vec<Role> = report.nodes.iter().map(|n| n.role).collect();
        assert_eq!(
            roles,
            [Role::Follower, Role::Leader, Role::Follower, Role::Learner]
        );
        assert_eq!(report.nodes[2].lag_messages, Some(40));
        assert_eq!(report.lag_from, Some(2));
        assert_eq!(report.partitions[0].next_offset, 100, "the leader's view");
        assert_eq!((report.node_id, report.term), (1, 7));
        assert_eq!(report.leader_node().map(|n| n.id), Some(2));
    }

    #[test]
    fn the_leader_is_its_own_source_and_a_missing_leader_is_said() {
        let leader = view(2, Some(2), true);
        let report = ClusterReport::from_views("lab", &leader, None);
        assert_eq!(report.lag_from, Some(2));
        assert_eq!(report.nodes[2].lag_bytes, Some(4000));
        let electing = view(1, None, false);
        let report = ClusterReport::from_views("lab", &electing, None);
        assert_eq!(
            report.lag_unavailable.as_deref(),
            Some("no leader right now")
        );
        assert!(report.nodes.iter().all(|n| n.lag_entries.is_none()));
        let unreachable = ClusterReport::from_views(
            "lab",
            &view(1, Some(2), false),
            Some(Err("timed out".into())),
        );
        assert!(unreachable
            .lag_unavailable
            .as_deref()
            .is_some_and(|why| why.contains("timed out")));
        assert_eq!(
            unreachable.partitions[0].next_offset, 90,
            "this node's view"
        );
    }

    #[test]
    fn unspecified_addresses_become_loopback() {
        assert_eq!(reachable_address("0.0.0.0:8091"), "127.0.0.1:8091");
        assert_eq!(reachable_address("[::]:8091"), "[::1]:8091");
        assert_eq!(reachable_address("10.0.0.1:8091"), "10.0.0.1:8091");
    }

    #[test]
    fn an_added_node_is_checked_field_by_field() {
        let body = AddNodeBody {
            id: 4,
            name: None,
            replication_address: "127.0.0.1:9104".into(),
            tcp_address: "127.0.0.1:8104".into(),
            http_address: None,
        };
        match body.clone().into_request() {
            Ok(AdminRequest::AddNode { id: 4, node }) => assert_eq!(node.name, "node-4"),
            other => panic!("{other:?}"),
        }
        let mut bad = body.clone();
        bad.tcp_address = "somewhere".into();
        assert!(bad.into_request().unwrap_err().starts_with("tcp_address"));
        let mut zero = body;
        zero.id = 0;
        assert!(zero.into_request().unwrap_err().starts_with("id"));
    }

    #[test]
    fn cluster_off_is_a_report_not_an_error() {
        let off = ClusterReport::off();
        assert!(!off.enabled);
        let json = serde_json::to_value(&off).unwrap();
        assert_eq!(json["enabled"], false);
        assert!(json["message"]
            .as_str()
            .unwrap()
            .contains("cluster mode is off"));
        let back: ClusterReport = serde_json::from_value(json).unwrap();
        assert_eq!(back, off);
    }
}
