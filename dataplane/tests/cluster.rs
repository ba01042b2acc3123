//! Replication with real processes: three riptide nodes (four when one joins), each in a network
//! namespace of its own with its own data directory, joined by a bridge; the official `iggy` SDK
//! as producer, consumer and operator. Leaders are SIGKILLed under load, cut off by nftables,
//! nodes restarted, added and removed; a history checker then reads every node's segment files
//! and proves that no acknowledged message is lost, that no offset holds two different messages
//! on any two nodes, and that offsets are contiguous.
//!
//! The suites take turns (one cluster at a time on a 2-CPU machine).

mod cluster_lab;
mod common;

use anyhow::{anyhow, bail, ensure, Context};
use cluster_lab::{stored_messages, Lab, StoredMessage};
use common::raw::{self, RawConnection};
use common::{bounded, id, scenarios, Endpoint, SdkResult};
use iggy::prelude::*;
use riptide_config::cluster::{AdminRequest, NodeInfo};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One cluster at a time: three debug-build nodes and the SDK clients fill two CPUs.
static ONE_CLUSTER_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A whole suite's limit (the CI budget; a hang fails with the suite's name).
const SUITE_TIMEOUT: Duration = Duration::from_secs(300);
/// The bound this suite states for electing a new leader after the old one died. A follower
/// stands for election once the leader's lease (election_timeout_max, 1.6 s in the lab) and an
/// election timeout (0.8–1.6 s) passed without a heartbeat: 2.4–3.2 s; a split vote adds one
/// more timeout each, and debug builds of three nodes share two CPUs with the clients.
const NEW_LEADER_BOUND: Duration = Duration::from_secs(15);
/// Longest a single send may take before the history calls it failed (indeterminate).
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
const MESSAGES_PER_BATCH: u32 = 10;
/// GetSnapshotFile: a node-local diagnostics archive.
const GET_SNAPSHOT_FILE: u32 = 11;
const PRODUCERS: u32 = 3;

// ---------------------------------------------------------------------------------------------
// The history: what producers were told and consumers saw, checked against every node's files.

/// A message the history knows: its id and payload.
type Message = (u128, Vec<u8>);

#[derive(Default)]
struct History {
    /// Acknowledged sends: partition → (base offset, messages).
    acked: Vec<(u32, u64, Vec<Message>)>,
    /// Sends that failed or timed out: their messages may or may not be stored.
    indeterminate: u64,
    /// What polls returned: partition → offset → message.
    polled: Vec<(u32, u64, Message)>,
}

impl History {
    fn acked_messages(&self) -> usize {
        self.acked.iter().map(|(_, _, m)| m.len()).sum()
    }
}

/// The message a producer sends as its `sequence`-th: a unique id and a payload that names it.
fn history_message(producer: u32, sequence: u64) -> Message {
    let id = (u128::from(producer) + 1) << 96 | u128::from(sequence);
    let payload = format!("producer-{producer}-message-{sequence}-{}", "x".repeat(64));
    (id, payload.into_bytes())
}

/// Producer `producer` sends batches to partition `producer` until told to stop.
async fn produce(
    endpoint: Endpoint,
    stream: u32,
    topic: u32,
    producer: u32,
    stop: Arc<AtomicBool>,
    history: Arc<Mutex<History>>,
) -> anyhow::Result<()> {
    let client = endpoint.client().await?;
    let mut sequence = 0u64;
    while !stop.load(Ordering::Acquire) {
        let batch: Vec<Message> = (0..u64::from(MESSAGES_PER_BATCH))
            .map(|i| history_message(producer, sequence + i))
            .collect();
        sequence += u64::from(MESSAGES_PER_BATCH);
        let mut messages = batch
            .iter()
            .map(|(id, payload)| {
                IggyMessage::builder()
                    .id(*id)
                    .payload(payload.clone().into())
                    .build()
                    .map_err(|e| anyhow!("message: {e}"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let sent = tokio::time::timeout(
            SEND_TIMEOUT,
            client.send_messages(
                &id(stream),
                &id(topic),
                &Partitioning::partition_id(producer),
                &mut messages,
            ),
        )
        .await;
        let mut history = history.lock().expect("history lock");
        match sent {
            Ok(Ok(response)) => {
                let base = response
                    .confirmations
                    .first()
                    .context("an acknowledged send without a confirmation")?
                    .base_offset;
                history.acked.push((producer, base, batch));
            }
            Ok(Err(_)) | Err(_) => history.indeterminate += 1,
        }
    }
    Ok(())
}

/// A consumer reads every partition by offset until told to stop, recording what it saw.
async fn consume(
    endpoint: Endpoint,
    stream: u32,
    topic: u32,
    stop: Arc<AtomicBool>,
    history: Arc<Mutex<History>>,
) -> anyhow::Result<()> {
    let client = endpoint.client().await?;
    let mut next = [0u64; PRODUCERS as usize];
    while !stop.load(Ordering::Acquire) {
        for partition in 0..PRODUCERS {
            let polled = tokio::time::timeout(
                SEND_TIMEOUT,
                scenarios::poll_with(
                    &client,
                    (stream, topic, partition),
                    &Consumer::default(),
                    PollingStrategy::offset(next[partition as usize]),
                    100,
                    false,
                ),
            )
            .await;
            let Ok(Ok(polled)) = polled else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let mut history = history.lock().expect("history lock");
            for message in polled.messages {
                next[partition as usize] = message.header.offset + 1;
                history.polled.push((
                    partition,
                    message.header.offset,
                    (message.header.id, message.payload.to_vec()),
                ));
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// Producers and a consumer running against the cluster.
struct Load {
    stop: Arc<AtomicBool>,
    history: Arc<Mutex<History>>,
    tasks: Vec<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Load {
    /// `PRODUCERS` producers (one per partition, each connected first to a different node) and
    /// one consumer.
    fn start(endpoints: &[Endpoint], stream: u32, topic: u32) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let history = Arc::new(Mutex::new(History::default()));
        let mut tasks = Vec::new();
        for producer in 0..PRODUCERS {
            let endpoint = endpoints[producer as usize % endpoints.len()];
            tasks.push(tokio::spawn(produce(
                endpoint,
                stream,
                topic,
                producer,
                Arc::clone(&stop),
                Arc::clone(&history),
            )));
        }
        tasks.push(tokio::spawn(consume(
            endpoints[0],
            stream,
            topic,
            Arc::clone(&stop),
            Arc::clone(&history),
        )));
        Load {
            stop,
            history,
            tasks,
        }
    }

    fn acked_messages(&self) -> usize {
        self.history.lock().expect("history lock").acked_messages()
    }

    /// Waits until `more` further messages are acknowledged: the producers go on.
    async fn wait_for_progress(&self, more: usize, limit: Duration) -> anyhow::Result<()> {
        let target = self.acked_messages() + more;
        let deadline = Instant::now() + limit;
        while self.acked_messages() < target {
            ensure!(
                Instant::now() < deadline,
                "producers acknowledged {} of {target} messages in {limit:?}",
                self.acked_messages()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    async fn stop(self) -> anyhow::Result<History> {
        self.stop.store(true, Ordering::Release);
        for task in self.tasks {
            task.await.context("load task panicked")??;
        }
        Arc::try_unwrap(self.history)
            .map_err(|_| anyhow!("history still shared"))
            .map(|history| history.into_inner().expect("history lock"))
    }
}

/// Every node's stored messages per partition, read from its segment files (nodes stopped).
type NodeLogs = BTreeMap<u64, Vec<Vec<StoredMessage>>>;

fn read_node_logs(lab: &Lab, stream: u32, topic: u32, nodes: &[usize]) -> anyhow::Result<NodeLogs> {
    let mut logs = NodeLogs::new();
    for &index in nodes {
        let node = &lab.nodes[index];
        let partitions = (0..PRODUCERS)
            .map(|partition| stored_messages(&node.data_dir, stream, topic, partition))
            .collect::<anyhow::Result<Vec<_>>>()
            .with_context(|| format!("node {}", node.id))?;
        logs.insert(node.id, partitions);
    }
    Ok(logs)
}

/// The history checker: no acknowledged message lost, no offset holding two different messages
/// on any two nodes, offsets contiguous per partition on every node, every polled message
/// stored where it was read. Returns the number of duplicated ids (a send whose outcome the
/// producer never learned, replayed by the SDK: at-least-once, reported, not an error).
fn check_history(history: &History, logs: &NodeLogs) -> anyhow::Result<usize> {
    for (node, partitions) in logs {
        for (partition, messages) in partitions.iter().enumerate() {
            for (expected, message) in messages.iter().enumerate() {
                ensure!(
                    message.offset == expected as u64,
                    "node {node} partition {partition}: offset {} where {expected} belongs \
                     (offsets not contiguous)",
                    message.offset
                );
            }
        }
    }
    // Any two nodes agree on every offset both hold.
    let mut reference: Vec<BTreeMap<u64, &StoredMessage>> =
        vec![BTreeMap::new(); PRODUCERS as usize];
    for (node, partitions) in logs {
        for (partition, messages) in partitions.iter().enumerate() {
            for message in messages {
                let held = reference[partition]
                    .entry(message.offset)
                    .or_insert(message);
                ensure!(
                    *held == message,
                    "partition {partition} offset {}: node {node} holds id {:#x}, another node \
                     id {:#x}",
                    message.offset,
                    message.id,
                    held.id
                );
            }
        }
    }
    for (partition, base, messages) in &history.acked {
        for (delta, (id, payload)) in messages.iter().enumerate() {
            let offset = base + delta as u64;
            for (node, partitions) in logs {
                let stored = partitions[*partition as usize].get(offset as usize);
                ensure!(
                    stored.is_some_and(|s| s.id == *id && s.payload == *payload),
                    "acknowledged message {id:#x} (partition {partition} offset {offset}) is not \
                     on node {node}: found {:?}",
                    stored.map(|s| s.id)
                );
            }
        }
    }
    for (partition, offset, (id, payload)) in &history.polled {
        let stored = reference[*partition as usize].get(offset);
        ensure!(
            stored.is_some_and(|s| s.id == *id && s.payload == *payload),
            "a consumer read {id:#x} at partition {partition} offset {offset}, which no node \
             holds there"
        );
    }
    let mut seen: HashMap<u128, u64> = HashMap::new();
    for message in reference.iter().flat_map(|p| p.values()) {
        *seen.entry(message.id).or_default() += 1;
    }
    Ok(seen.values().filter(|count| **count > 1).count())
}

/// Waits until every running node applied the leader's whole log, then stops them all
/// gracefully (so their files can be read).
async fn converge_and_stop(lab: &mut Lab, running: &[usize]) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let leader = lab.leader().await?;
        let target = lab.nodes[leader].status().await?.last_log_index;
        let mut behind = Vec::new();
        for &index in running {
            let status = lab.nodes[index].status().await?;
            if status.applied_index < target {
                behind.push((lab.nodes[index].id, status.applied_index));
            }
        }
        if behind.is_empty() {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "nodes {behind:?} did not apply up to {target} within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for &index in running {
        lab.nodes[index].stop();
    }
    Ok(())
}

fn endpoints(lab: &Lab) -> Vec<Endpoint> {
    lab.nodes
        .iter()
        .map(|node| Endpoint {
            address: node.tcp_address(),
            tls: None,
        })
        .collect()
}

/// Creates the replicated topic the load writes to (`durability` is the SDK's default,
/// `replicated`); returns (stream, topic).
/// Sends `count` messages to partition 0 and checks the partition gave them offsets from 0 on.
async fn send_at_offset_zero(
    client: &IggyClient,
    (stream, topic): (u32, u32),
    tag: &str,
    count: u32,
) -> anyhow::Result<()> {
    let partitioning = Partitioning::partition_id(0);
    let sent = scenarios::send_to(client, stream, topic, &partitioning, tag, count).await?;
    let base_offset = sent.confirmations.first().map(|c| c.base_offset);
    ensure!(base_offset == Some(0), "sent at {base_offset:?}: {sent:?}");
    Ok(())
}

async fn history_topic(endpoint: &Endpoint) -> anyhow::Result<(u32, u32)> {
    let client = endpoint.client().await?;
    scenarios::stream_and_topic(&client, "history", "events", PRODUCERS).await
}

// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sdk_connects_to_a_follower_lands_on_the_leader_and_the_core_scenarios_pass() {
    if !cluster_lab::prerequisites_met("cluster: SDK on a follower") {
        return;
    }
    let _turn = ONE_CLUSTER_AT_A_TIME.lock().await;
    let mut lab = Lab::new(1, 3).expect("lab");
    bounded(SUITE_TIMEOUT, async {
        lab.start_all()?;
        let leader = lab.leader().await?;
        let follower = (leader + 1) % lab.nodes.len();
        let on_follower = Endpoint {
            address: lab.nodes[follower].tcp_address(),
            tls: None,
        };
        // Writes succeed only on the leader: the client connected to a follower went there.
        let client = on_follower.client().await?;
        let stream = client
            .create_stream("via-follower")
            .await
            .sdk("create_stream")?;
        let metadata = client
            .get_cluster_metadata()
            .await
            .sdk("cluster metadata")?;
        let leaders: Vec<_> = metadata
            .nodes
            .iter()
            .filter(|node| node.role == ClusterNodeRole::Leader)
            .map(|node| node.name.clone())
            .collect();
        ensure!(
            metadata.nodes.len() == 3 && leaders == vec![format!("node-{}", lab.nodes[leader].id)],
            "cluster metadata: {metadata:?}"
        );
        ensure!(stream.name == "via-follower", "stream {stream:?}");
        // A persisted topic takes sends too (acknowledged from the leader's disk).
        let persisted = client
            .create_topic(
                &id(stream.id),
                "persisted",
                &TopicCreateOptions {
                    partitions_count: Some(1),
                    durability: Durability::Persisted,
                    ..Default::default()
                },
            )
            .await
            .sdk("create a persisted topic")?;
        send_at_offset_zero(&client, (stream.id, persisted.id), "persisted", 3)
            .await
            .context("persisted send")?;
        // A purge, and a stream deleted and created again under the same ids, restart the
        // partition at offset 0: the leader must not go on from the offsets it gave before.
        client
            .purge_topic(&id(stream.id), &id(persisted.id))
            .await
            .sdk("purge_topic")?;
        send_at_offset_zero(&client, (stream.id, persisted.id), "after purge", 2)
            .await
            .context("send after a purge")?;
        client
            .delete_stream(&id(stream.id))
            .await
            .sdk("delete_stream")?;
        let again = client
            .create_stream("via-follower")
            .await
            .sdk("create the stream again")?;
        let topic_again = client
            .create_topic(
                &id(again.id),
                "persisted",
                &TopicCreateOptions {
                    partitions_count: Some(1),
                    ..Default::default()
                },
            )
            .await
            .sdk("create the topic again")?;
        ensure!(
            (again.id, topic_again.id) == (stream.id, persisted.id),
            "the ids were not reused: stream {} topic {}",
            again.id,
            topic_again.id
        );
        send_at_offset_zero(&client, (again.id, topic_again.id), "recreated", 2)
            .await
            .context("send to a recreated partition")?;
        // A follower's own answer to a write is the error the SDK redirects on.
        let mut raw = RawConnection::connect(lab.nodes[follower].tcp_address()).await?;
        raw.login_root().await?;
        let frame = raw
            .call(raw::code::CREATE_STREAM, &raw::wire_name("direct"))
            .await?;
        ensure!(
            reply_code(&frame)? == 58,
            "a follower answered a write with {}",
            frame.describe()
        );
        // A follower answers its own system snapshot (built on its blocking pool).
        let snapshot = raw.call(GET_SNAPSHOT_FILE, &[2, 1, 4]).await?;
        ensure!(
            snapshot.is_reply()
                && snapshot.status() == 0
                && snapshot.body.starts_with(b"PK\x03\x04"),
            "a follower's snapshot: {}",
            snapshot.describe()
        );
        for (name, result) in [
            (
                "ping, login, logout",
                scenarios::ping_login_by_password_and_logout(&on_follower).await,
            ),
            (
                "sends with every partitioning",
                scenarios::send_messages_with_every_partitioning_confirms_offsets(&on_follower)
                    .await,
            ),
            (
                "polls with every strategy",
                scenarios::poll_with_every_strategy_and_auto_commit(&on_follower).await,
            ),
            (
                "consumer offsets",
                scenarios::consumer_offsets_store_get_delete(&on_follower).await,
            ),
            (
                "consumer groups",
                scenarios::consumer_group_rebalances_on_join_leave_and_disconnect(&on_follower)
                    .await,
            ),
        ] {
            result.with_context(|| format!("core scenario '{name}' through a follower"))?;
        }
        Ok(())
    })
    .await
    .expect("suite");
    lab.pass();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_leader_kills_under_three_producers_lose_no_acknowledged_message() {
    if !cluster_lab::prerequisites_met("cluster: leader kills") {
        return;
    }
    let _turn = ONE_CLUSTER_AT_A_TIME.lock().await;
    let mut lab = Lab::new(2, 3).expect("lab");
    bounded(SUITE_TIMEOUT, async {
        lab.start_all()?;
        lab.leader().await?;
        let endpoints = endpoints(&lab);
        let (stream, topic) = history_topic(&endpoints[0]).await?;
        let load = Load::start(&endpoints, stream, topic);
        load.wait_for_progress(200, Duration::from_secs(30)).await?;
        let mut elections = Vec::new();
        for round in 1..=5 {
            let leader = lab.leader().await?;
            let killed_at = Instant::now();
            lab.nodes[leader].sigkill();
            let successor = loop {
                let candidate = lab.leader().await?;
                if candidate != leader {
                    break candidate;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            };
            let elected_in = killed_at.elapsed();
            eprintln!(
                "round {round}: killed node {}, node {} leads after {elected_in:?}",
                lab.nodes[leader].id, lab.nodes[successor].id
            );
            ensure!(
                elected_in < NEW_LEADER_BOUND,
                "round {round}: no new leader within {NEW_LEADER_BOUND:?} ({elected_in:?})"
            );
            elections.push(elected_in);
            load.wait_for_progress(100, Duration::from_secs(30))
                .await
                .with_context(|| format!("round {round}: producers after the kill"))?;
            // The killed node comes back and catches up before the next round, so each round
            // starts from three healthy nodes.
            lab.nodes[leader].start()?;
            wait_until_caught_up(&lab, leader).await?;
        }
        let history = load.stop().await?;
        eprintln!(
            "elections: {elections:?}; {} messages acknowledged, {} sends indeterminate, {} \
             polled",
            history.acked_messages(),
            history.indeterminate,
            history.polled.len()
        );
        let all: Vec<usize> = (0..lab.nodes.len()).collect();
        converge_and_stop(&mut lab, &all).await?;
        let logs = read_node_logs(&lab, stream, topic, &all)?;
        let duplicates = check_history(&history, &logs)?;
        eprintln!(
            "history checked on {} nodes; {duplicates} ids stored twice",
            logs.len()
        );
        Ok(())
    })
    .await
    .expect("suite");
    lab.pass();
}

/// A reply's Iggy error code (0 = success): refusals carry it in the header's status.
fn reply_code(frame: &raw::Frame) -> anyhow::Result<u32> {
    ensure!(
        frame.is_reply(),
        "expected a reply, got {}",
        frame.describe()
    );
    Ok(frame.status())
}

/// What one node answered to sends on one topic.
#[derive(Debug, Default)]
struct Answers {
    acknowledged: u32,
    refused: BTreeMap<u32, u32>,
}

/// Sends straight to one node over a raw connection (signed in already), alternating between
/// `topics`, until `until`; returns each topic's answers.
async fn sends_to_one_node(
    mut raw: RawConnection,
    stream: u32,
    topics: Vec<u32>,
    until: Instant,
) -> anyhow::Result<Vec<Answers>> {
    let mut answers: Vec<Answers> = topics.iter().map(|_| Answers::default()).collect();
    let mut sequence = 0u32;
    while Instant::now() < until {
        for (topic, answers) in topics.iter().zip(answers.iter_mut()) {
            let payload = format!("minority-{sequence}");
            sequence += 1;
            let batch = raw::batch(&[payload.as_bytes()], 1)?;
            let partitioning = raw::Partitioning::PartitionId(0);
            let body = raw::send_messages_body(stream, *topic, &partitioning, 1, &batch);
            let frame = raw.call(raw::code::SEND_MESSAGES, &body).await?;
            match reply_code(&frame)? {
                0 => answers.acknowledged += 1,
                code => *answers.refused.entry(code).or_default() += 1,
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(answers)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_off_leader_acknowledges_nothing_and_the_logs_converge_after_healing() {
    if !cluster_lab::prerequisites_met("cluster: network partition") {
        return;
    }
    let _turn = ONE_CLUSTER_AT_A_TIME.lock().await;
    let mut lab = Lab::new(3, 3).expect("lab");
    bounded(SUITE_TIMEOUT, async {
        lab.start_all()?;
        let old = lab.leader().await?;
        let majority: Vec<usize> = (0..3).filter(|i| *i != old).collect();
        let endpoints = endpoints(&lab);
        let (stream, topic) = history_topic(&endpoints[majority[0]]).await?;
        let majority_endpoints: Vec<Endpoint> = majority.iter().map(|i| endpoints[*i]).collect();
        let load = Load::start(&majority_endpoints, stream, topic);
        load.wait_for_progress(100, Duration::from_secs(30)).await?;

        // A `persisted` topic next to the replicated one: its sends are acknowledged from the
        // leader's disk alone.
        let client = endpoints[majority[0]].client().await?;
        let persisted = client
            .create_topic(
                &id(stream),
                "persisted",
                &TopicCreateOptions {
                    partitions_count: Some(1),
                    durability: Durability::Persisted,
                    ..Default::default()
                },
            )
            .await
            .sdk("create the persisted topic")?
            .id;
        let mut raw = RawConnection::connect(lab.nodes[old].tcp_address()).await?;
        raw.login_root().await?;

        lab.nodes[old].isolate()?;
        let cut_at = Instant::now();
        // The minority: sends straight to the cut-off leader, for longer than an election and
        // a write timeout.
        let minority = tokio::spawn(sends_to_one_node(
            raw,
            stream,
            vec![persisted, topic],
            Instant::now() + Duration::from_secs(8),
        ));
        let new = loop {
            let status_leader = async {
                for &index in &majority {
                    let status = lab.nodes[index].status().await?;
                    if status.leader == Some(lab.nodes[index].id) && status.applied_index > 0 {
                        return anyhow::Ok(Some(index));
                    }
                }
                Ok(None)
            };
            if let Some(index) = status_leader.await? {
                break index;
            }
            ensure!(
                cut_at.elapsed() < NEW_LEADER_BOUND,
                "the majority elected no leader"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        eprintln!(
            "node {} cut off; node {} leads after {:?}",
            lab.nodes[old].id,
            lab.nodes[new].id,
            cut_at.elapsed()
        );
        load.wait_for_progress(100, Duration::from_secs(30))
            .await
            .context("the majority serves")?;
        let answers = minority.await.context("minority task")??;
        let (persisted_answers, replicated_answers) = (&answers[0], &answers[1]);
        eprintln!(
            "the cut-off leader answered: replicated {replicated_answers:?}, persisted \
             {persisted_answers:?}"
        );
        ensure!(
            replicated_answers.acknowledged == 0,
            "the cut-off leader acknowledged {} replicated sends",
            replicated_answers.acknowledged
        );
        ensure!(
            !replicated_answers.refused.is_empty()
                && replicated_answers
                    .refused
                    .keys()
                    .all(|code| *code == 57 || *code == 58),
            "the cut-off leader answered {:?} (57 not committed, 58 not the leader)",
            replicated_answers.refused
        );
        // Until its lease runs out the old leader takes writes: a persisted send is
        // acknowledged from its own disk, which is what `persisted` means in a cluster.
        ensure!(
            persisted_answers.acknowledged > 0,
            "no persisted send was acknowledged by the leader alone: {persisted_answers:?}"
        );

        lab.nodes[old].heal()?;
        load.wait_for_progress(100, Duration::from_secs(30)).await?;
        let history = load.stop().await?;
        let all: Vec<usize> = (0..3).collect();
        converge_and_stop(&mut lab, &all).await?;
        let logs = read_node_logs(&lab, stream, topic, &all)?;
        check_history(&history, &logs)?;
        for (node, partitions) in &logs {
            ensure!(
                !partitions[0]
                    .iter()
                    .any(|m| m.payload.starts_with(b"minority-")),
                "node {node} stored a replicated send only the cut-off leader took"
            );
        }
        // The persisted sends only the cut-off leader held were never committed: its log's
        // uncommitted tail was truncated when it rejoined, on every node alike.
        let mut persisted_logs = Vec::new();
        for node in &lab.nodes {
            persisted_logs.push(stored_messages(&node.data_dir, stream, persisted, 0)?);
        }
        ensure!(
            persisted_logs.windows(2).all(|pair| pair[0] == pair[1]),
            "the nodes disagree on the persisted topic: {persisted_logs:?}"
        );
        eprintln!(
            "{} persisted sends acknowledged by the cut-off leader alone; {} of them kept",
            persisted_answers.acknowledged,
            persisted_logs[0].len()
        );
        Ok(())
    })
    .await
    .expect("suite");
    lab.pass();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_follower_catches_up_a_joining_node_serves_old_data_and_a_removed_one_is_not_asked(
) {
    if !cluster_lab::prerequisites_met("cluster: membership") {
        return;
    }
    let _turn = ONE_CLUSTER_AT_A_TIME.lock().await;
    let mut lab = Lab::new(4, 3).expect("lab");
    bounded(SUITE_TIMEOUT, async {
        lab.start_all()?;
        let leader = lab.leader().await?;
        let endpoints = endpoints(&lab);
        let (stream, topic) = history_topic(&endpoints[leader]).await?;
        let load = Load::start(&endpoints, stream, topic);
        load.wait_for_progress(100, Duration::from_secs(30)).await?;

        // A follower SIGKILLed, written past, restarted: it catches up.
        let follower = (leader + 1) % 3;
        lab.nodes[follower].sigkill();
        load.wait_for_progress(200, Duration::from_secs(30)).await?;
        lab.nodes[follower].start()?;
        wait_until_caught_up(&lab, follower).await?;

        // Node 4 joins while the producers run.
        let joining = lab.add_node_namespace()?;
        lab.write_config(joining)?;
        lab.nodes[joining].start()?;
        let node = &lab.nodes[joining];
        let info = NodeInfo {
            name: format!("node-{}", node.id),
            replication_address: node.replication_address().to_string(),
            tcp_address: node.tcp_address().to_string(),
            http_address: String::new(),
        };
        let leader = lab.leader().await?;
        lab.nodes[leader]
            .admin(AdminRequest::AddNode {
                id: node.id,
                node: info,
            })
            .await
            .context("adding node 4")?;
        load.wait_for_progress(100, Duration::from_secs(30)).await?;
        wait_until_caught_up(&lab, joining).await?;

        // A node is removed: it is no longer in the roster nor sent the log.
        let leader = lab.leader().await?;
        let removed = (0..3).find(|i| *i != leader).expect("a follower");
        lab.nodes[leader]
            .admin(AdminRequest::RemoveNode {
                id: lab.nodes[removed].id,
            })
            .await
            .context("removing a node")?;
        let history = load.stop().await?;
        let before = lab.nodes[removed].status().await?.last_log_index;
        let client = endpoints[leader].client().await?;
        let extra = scenarios::send_to(
            &client,
            stream,
            topic,
            &Partitioning::partition_id(0),
            "after-removal",
            5,
        )
        .await?;
        ensure!(!extra.confirmations.is_empty(), "send after the removal");
        let metadata = client
            .get_cluster_metadata()
            .await
            .sdk("cluster metadata")?;
        ensure!(
            metadata.nodes.len() == 3
                && !metadata
                    .nodes
                    .iter()
                    .any(|n| n.name == format!("node-{}", lab.nodes[removed].id)),
            "the roster after removing node {}: {metadata:?}",
            lab.nodes[removed].id
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
        let after = lab.nodes[removed].status().await?.last_log_index;
        ensure!(
            after <= before + 1,
            "the removed node's log still grows: {before} -> {after}"
        );
        lab.nodes[removed].stop();

        // The node that joined serves the old data: a follower answers polls from what it
        // applied.
        let served = polled_payloads(lab.nodes[joining].tcp_address(), stream, topic).await?;
        for (partition, base, messages) in &history.acked {
            for (delta, (id, payload)) in messages.iter().enumerate() {
                let offset = base + delta as u64;
                ensure!(
                    served[*partition as usize].get(offset as usize) == Some(payload),
                    "node 4 does not serve acknowledged message {id:#x} at partition \
                     {partition} offset {offset}"
                );
            }
        }
        eprintln!(
            "node 4 joined under load and serves {} messages; node {} removed; {} acknowledged",
            served.iter().map(Vec::len).sum::<usize>(),
            lab.nodes[removed].id,
            history.acked_messages()
        );
        let members: Vec<usize> = (0..lab.nodes.len()).filter(|i| *i != removed).collect();
        converge_and_stop(&mut lab, &members).await?;
        let logs = read_node_logs(&lab, stream, topic, &members)?;
        check_history(&history, &logs)?;
        Ok(())
    })
    .await
    .expect("suite");
    lab.pass();
}

/// Every payload of the history's partitions as `address` serves them to polls by offset (over a
/// raw connection, which stays on the node it dialed).
async fn polled_payloads(
    address: std::net::SocketAddr,
    stream: u32,
    topic: u32,
) -> anyhow::Result<Vec<Vec<Vec<u8>>>> {
    let mut raw = RawConnection::connect(address).await?;
    raw.login_root().await?;
    let mut partitions = Vec::new();
    for partition in 0..PRODUCERS {
        let mut payloads: Vec<Vec<u8>> = Vec::new();
        loop {
            let body = raw::poll_body(stream, topic, partition, payloads.len() as u64, 1000);
            let frame = raw.call(raw::code::POLL_MESSAGES, &body).await?;
            ensure!(reply_code(&frame)? == 0, "poll: {}", frame.describe());
            let (_, _, polled) = raw::poll_reply(&frame.body)?;
            if polled.is_empty() {
                break;
            }
            payloads.extend(polled);
        }
        partitions.push(payloads);
    }
    Ok(partitions)
}

/// Waits until node `index` applied what the leader had when the wait began.
async fn wait_until_caught_up(lab: &Lab, index: usize) -> anyhow::Result<()> {
    let leader = lab.leader().await?;
    let target = lab.nodes[leader].status().await?.last_log_index;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match lab.nodes[index].status().await {
            Ok(status) if status.applied_index >= target => return Ok(()),
            Ok(status) if Instant::now() > deadline => {
                bail!(
                    "node {} applied {} of {target} in 30 s",
                    lab.nodes[index].id,
                    status.applied_index
                )
            }
            Err(error) if Instant::now() > deadline => return Err(error),
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}
