//! Conformance of `riptide-dataplane` with the official `iggy` 0.11.0 SDK over TCP: every command
//! the SDK sends, the high-level producer and consumer-group APIs, concurrent clients, permission
//! denials and a restart with streams, messages and consumer offsets intact.
//!
//! Each test starts its own server (fresh data directory, port 0) so they run in parallel.

mod common;

use anyhow::{bail, ensure, Context};
use common::scenarios::{self, *};
use common::*;
use iggy::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::Duration;

const TEST_TIMEOUT: Duration = Duration::from_secs(90);
const UNAUTHORIZED: u32 = 41;
const STREAM_NAME_ALREADY_EXISTS: u32 = 1012;
const TOPIC_NAME_ALREADY_EXISTS: u32 = 2013;

// ---------------------------------------------------------------------------------------------
// Sessions and system commands
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn ping_login_by_password_and_logout() {
    let server = Server::start().expect("server starts");
    bounded(
        TEST_TIMEOUT,
        scenarios::ping_login_by_password_and_logout(&server.endpoint()),
    )
    .await
    .expect("test body");
    server.finish().expect("server still healthy");
}

/// One node, named `cluster_name` / `node_name`, the healthy leader, whose TCP endpoint is the
/// bound port.
async fn cluster_metadata_names_this_node(
    first: &IggyClient,
    tcp_port: u16,
    (cluster_name, node_name): (&str, &str),
) -> anyhow::Result<()> {
    let cluster = first
        .get_cluster_metadata()
        .await
        .sdk("get_cluster_metadata")?;
    ensure!(
        cluster.name == cluster_name,
        "cluster name {:?}, expected {cluster_name:?}",
        cluster.name
    );
    ensure!(
        cluster.nodes.len() == 1,
        "cluster has {} nodes",
        cluster.nodes.len()
    );
    let node = &cluster.nodes[0];
    ensure!(
        node.name == node_name,
        "node name {:?}, expected {node_name:?}",
        node.name
    );
    ensure!(
        node.role == ClusterNodeRole::Leader && node.status == ClusterNodeStatus::Healthy,
        "node {:?} {:?}",
        node.role,
        node.status
    );
    ensure!(
        node.endpoints.tcp == tcp_port,
        "cluster node tcp port {} != bound port {}",
        node.endpoints.tcp,
        tcp_port
    );
    Ok(())
}

/// `[cluster] name` and `node_name` are what GetClusterMetadata reports.
#[tokio::test]
async fn cluster_metadata_names_come_from_the_configuration() {
    let server = Server::start_with_env(&[
        ("RIPTIDE_CLUSTER_NAME", "prod-east"),
        ("RIPTIDE_CLUSTER_NODE_NAME", "broker-7"),
    ])
    .expect("server starts");
    bounded(TEST_TIMEOUT, async {
        let client = server.client().await?;
        let port = server.address().port();
        cluster_metadata_names_this_node(&client, port, ("prod-east", "broker-7")).await
    })
    .await
    .expect("test body");
    server.finish().expect("server still healthy");
}

/// One stream, one topic, two partitions and five messages show up in get_stats.
async fn stats_count_what_was_created(first: &IggyClient) -> anyhow::Result<()> {
    stream_and_topic(first, "stats-stream", "stats-topic", 2).await?;
    send_to(first, 0, 0, &Partitioning::partition_id(1), "s", 5).await?;
    let stats = first.get_stats().await.sdk("get_stats")?;
    ensure!(
        stats.streams_count == 1,
        "stats streams_count {}",
        stats.streams_count
    );
    ensure!(
        stats.topics_count == 1,
        "stats topics_count {}",
        stats.topics_count
    );
    ensure!(
        stats.partitions_count == 2,
        "stats partitions_count {}",
        stats.partitions_count
    );
    ensure!(
        stats.messages_count == 5,
        "stats messages_count {}",
        stats.messages_count
    );
    ensure!(
        stats.clients_count >= 2,
        "stats clients_count {}",
        stats.clients_count
    );
    ensure!(stats.process_id > 0, "stats process_id 0");
    Ok(())
}

#[tokio::test]
async fn get_me_clients_stats_and_cluster_metadata() {
    let server = Server::start().expect("server starts");
    bounded(TEST_TIMEOUT, async {
        let first = server.client().await?;
        let second = server.client().await?;
        let me = first.get_me().await.sdk("get_me")?;
        ensure!(me.user_id == Some(0), "get_me user_id {:?}", me.user_id);
        ensure!(
            me.transport.eq_ignore_ascii_case("tcp"),
            "transport {}",
            me.transport
        );
        let other = second.get_me().await.sdk("get_me (second)")?;
        ensure!(
            me.client_id != other.client_id,
            "two connections share client id {}",
            me.client_id
        );

        let clients = first.get_clients().await.sdk("get_clients")?;
        let ids: BTreeSet<u32> = clients.iter().map(|c| c.client_id).collect();
        ensure!(
            ids.contains(&me.client_id) && ids.contains(&other.client_id),
            "get_clients {ids:?} lacks {} or {}",
            me.client_id,
            other.client_id
        );
        let fetched = first.get_client(other.client_id).await.sdk("get_client")?;
        let fetched = fetched.context("get_client of a connected client returned None")?;
        ensure!(fetched.client_id == other.client_id && fetched.user_id == Some(0));
        ensure!(
            first
                .get_client(u32::MAX - 7)
                .await
                .sdk("get_client unknown")?
                .is_none(),
            "get_client of an unknown id returned Some"
        );

        stats_count_what_was_created(&first).await?;

        // The defaults: what an Iggy 0.11 server with clustering off reports.
        let defaults = ("single-node", "iggy-node");
        cluster_metadata_names_this_node(&first, server.address().port(), defaults).await?;
        Ok(())
    })
    .await
    .expect("test body");
    server.finish().expect("server still healthy");
}

// ---------------------------------------------------------------------------------------------
// Streams, topics, partitions, segments
// ---------------------------------------------------------------------------------------------

/// Apache Iggy's Node.js SDK encodes DeleteTopic as the stream and topic identifiers followed by
/// a `partitions_count` u32 left over from an older layout (`delete-topic.command.ts`); Iggy's
/// server ignores those 4 bytes, so riptide must too. Sent as raw frames with exactly the SDK's
/// bytes, once with numeric identifiers and once with names; the other topic stays, and a body
/// cut inside the topic identifier is refused with InvalidCommand and deletes nothing.
#[tokio::test]
async fn node_sdk_delete_topic_with_a_trailing_partitions_count_deletes_the_topic() {
    const INVALID_COMMAND: u32 = 3;
    let server = Server::start().expect("server starts");
    bounded(TEST_TIMEOUT, async {
        let client = server.client().await?;
        let (stream, by_id) = stream_and_topic(&client, "node", "by-id", 2).await?;
        for topic in ["by-name", "kept"] {
            let options = TopicCreateOptions {
                partitions_count: Some(3),
                ..Default::default()
            };
            client
                .create_topic(&id(stream), topic, &options)
                .await
                .sdk("create_topic")?;
        }
        let mut connection = raw::RawConnection::connect(server.address()).await?;
        connection.login_root().await?;
        let delete_topic = |stream_id: Vec<u8>, topic_id: Vec<u8>, partitions_count: u32| {
            let mut body = stream_id;
            body.extend(topic_id);
            body.extend_from_slice(&partitions_count.to_le_bytes());
            body
        };
        let by_numbers = delete_topic(
            raw::numeric_identifier(stream),
            raw::numeric_identifier(by_id),
            2,
        );
        let mut by_names = vec![2, 4];
        by_names.extend_from_slice(b"node");
        by_names.extend_from_slice(&[2, 7]);
        by_names.extend_from_slice(b"by-name");
        by_names.extend_from_slice(&3u32.to_le_bytes());
        for (body, what) in [(by_numbers, "numeric ids"), (by_names, "names")] {
            let reply = connection.call(303, &body).await?;
            ensure!(
                reply.is_reply() && reply.status() == 0 && reply.result_code()? == 0,
                "DeleteTopic by {what} with the Node.js SDK's bytes: {}",
                reply.describe()
            );
        }
        let cut = &raw::numeric_identifier(stream)[..];
        let reply = connection.call(303, &[cut, &[1, 4, 9]].concat()).await?;
        ensure!(
            reply.is_reply() && reply.status() == INVALID_COMMAND,
            "a DeleteTopic cut inside the topic id: {}",
            reply.describe()
        );
        let topics = client.get_topics(&id(stream)).await.sdk("get_topics")?;
        let names: Vec<&str> = topics.iter().map(|topic| topic.name.as_str()).collect();
        ensure!(
            names == ["kept"],
            "topics left after the deletes: {names:?}"
        );
        Ok(())
    })
    .await
    .expect("test body");
    server.finish().expect("server still healthy");
}

/// Adds a topic with 3 messages to stream 0, purges the stream and checks the messages are
/// gone while the topic stays.
async fn purge_stream_checked(client: &IggyClient) -> anyhow::Result<()> {
    let options = TopicCreateOptions {
        partitions_count: Some(1),
        ..Default::default()
    };
    client
        .create_topic(&id(0), "t", &options)
        .await
        .sdk("create_topic")?;
    send_to(client, 0, 0, &Partitioning::partition_id(0), "p", 3).await?;
    client.purge_stream(&id(0)).await.sdk("purge_stream")?;
    let purged = client
        .get_stream(&id(0))
        .await
        .sdk("get purged")?
        .context("purged stream gone")?;
    ensure!(
        purged.messages_count == 0,
        "purged stream still has {} messages",
        purged.messages_count
    );
    ensure!(purged.topics_count == 1, "purge removed the topic");
    Ok(())
}

/// Streams 0 "alpha" and 1 "beta" are found by id and by name, listed, and an unknown id is
/// `None`.
async fn streams_are_found_by_id_and_name(client: &IggyClient) -> anyhow::Result<()> {
    let by_id = client.get_stream(&id(1)).await.sdk("get_stream by id")?;
    ensure!(
        by_id.map(|s| s.name) == Some("beta".into()),
        "get_stream(1) != beta"
    );
    let by_name = client
        .get_stream(&name("alpha"))
        .await
        .sdk("get_stream by name")?;
    ensure!(
        by_name.map(|s| s.id) == Some(0),
        "get_stream(\"alpha\") != id 0"
    );
    ensure!(
        client
            .get_stream(&id(77))
            .await
            .sdk("get_stream unknown")?
            .is_none(),
        "get_stream of an unknown id returned Some"
    );
    let listed: Vec<String> = client
        .get_streams()
        .await
        .sdk("get_streams")?
        .into_iter()
        .map(|s| s.name)
        .collect();
    ensure!(
        listed.len() == 2 && listed.contains(&"alpha".into()),
        "get_streams {listed:?}"
    );
    Ok(())
}

#[tokio::test]
async fn streams_create_get_list_update_purge_delete() {
    let server = Server::start().expect("server starts");
    bounded(TEST_TIMEOUT, async {
        let client = server.client().await?;
        let alpha = client
            .create_stream("alpha")
            .await
            .sdk("create_stream alpha")?;
        let beta = client
            .create_stream("beta")
            .await
            .sdk("create_stream beta")?;
        ensure!(
            alpha.id == 0 && beta.id == 1,
            "stream ids {} {} (0-based expected)",
            alpha.id,
            beta.id
        );
        ensure!(alpha.name == "alpha" && alpha.topics_count == 0);
        expect_code(
            client.create_stream("alpha").await,
            STREAM_NAME_ALREADY_EXISTS,
            "duplicate stream name",
        )?;

        streams_are_found_by_id_and_name(&client).await?;

        client
            .update_stream(&id(0), "alpha-renamed", &StreamUpdateOptions::default())
            .await
            .sdk("update_stream")?;
        let renamed = client
            .get_stream(&name("alpha-renamed"))
            .await
            .sdk("get renamed")?;
        ensure!(
            renamed.map(|s| s.id) == Some(0),
            "renamed stream not found by its new name"
        );

        purge_stream_checked(&client).await?;

        client.delete_stream(&id(0)).await.sdk("delete_stream")?;
        ensure!(
            client
                .get_stream(&id(0))
                .await
                .sdk("get deleted")?
                .is_none(),
            "deleted stream still there"
        );
        ensure!(client.get_streams().await.sdk("get_streams")?.len() == 1);
        expect_code(
            client.delete_stream(&id(0)).await,
            1009,
            "delete a deleted stream",
        )?;
        Ok(())
    })
    .await
    .expect("test body");
    server.finish().expect("server still healthy");
}

/// Renames topic 1 and sets its expiry; checks both through get_topic.
async fn update_second_topic(client: &IggyClient, stream_id: u32) -> anyhow::Result<()> {
    let update = TopicUpdateOptions {
        message_expiry: Some(IggyExpiry::ExpireDuration(IggyDuration::from(
            3_600_000_000,
        ))),
        ..Default::default()
    };
    client
        .update_topic(&id(stream_id), &id(1), "payments-v2", &update)
        .await
        .sdk("update_topic")?;
    let updated = client
        .get_topic(&id(stream_id), &id(1))
        .await
        .sdk("get updated")?
        .context("gone")?;
    ensure!(
        updated.name == "payments-v2",
        "update_topic name: {}",
        updated.name
    );
    ensure!(
        updated.message_expiry == IggyExpiry::ExpireDuration(IggyDuration::from(3_600_000_000)),
        "update_topic expiry: {:?}",
        updated.message_expiry
    );
    Ok(())
}

/// Sends 4 messages to partition 2, purges the topic and checks nothing is served any more.
async fn purge_topic_checked(
    client: &IggyClient,
    stream_id: u32,
    topic_id: u32,
) -> anyhow::Result<()> {
    send_to(
        client,
        stream_id,
        topic_id,
        &Partitioning::partition_id(2),
        "m",
        4,
    )
    .await?;
    let before = client
        .get_topic(&id(stream_id), &id(topic_id))
        .await
        .sdk("get")?
        .context("gone")?;
    ensure!(
        before.messages_count == 4,
        "topic messages_count {}",
        before.messages_count
    );
    client
        .purge_topic(&id(stream_id), &id(topic_id))
        .await
        .sdk("purge_topic")?;
    let after = client
        .get_topic(&id(stream_id), &id(topic_id))
        .await
        .sdk("get")?
        .context("gone")?;
    ensure!(
        after.messages_count == 0,
        "purged topic has {} messages",
        after.messages_count
    );
    let polled = poll(
        client,
        stream_id,
        topic_id,
        2,
        &Consumer::default(),
        PollingStrategy::first(),
        10,
    )
    .await?;
    ensure!(
        polled.messages.is_empty(),
        "purged partition still serves {} messages",
        polled.messages.len()
    );
    Ok(())
}

#[tokio::test]
async fn topics_create_get_list_update_purge_delete() {
    let server = Server::start().expect("server starts");
    bounded(TEST_TIMEOUT, async {
        let client = server.client().await?;
        let (stream_id, topic_id) = stream_and_topic(&client, "s", "orders", 3).await?;
        ensure!(topic_id == 0, "first topic id {topic_id}");
        let ids: Vec<u32> = client
            .get_topic(&id(stream_id), &id(topic_id))
            .await
            .sdk("get_topic")?
            .context("get_topic returned None")?
            .partitions
            .iter()
            .map(|p| p.id)
            .collect();
        ensure!(
            ids == vec![0, 1, 2],
            "partition ids {ids:?} (0-based expected)"
        );
        let options = TopicCreateOptions {
            partitions_count: Some(1),
            message_expiry: Some(IggyExpiry::NeverExpire),
            ..Default::default()
        };
        let second = client
            .create_topic(&id(stream_id), "payments", &options)
            .await
            .sdk("create_topic 2")?;
        ensure!(second.id == 1, "second topic id {}", second.id);
        expect_code(
            client
                .create_topic(&id(stream_id), "orders", &options)
                .await,
            TOPIC_NAME_ALREADY_EXISTS,
            "duplicate topic name",
        )?;
        let by_name = client
            .get_topic(&id(stream_id), &name("payments"))
            .await
            .sdk("get_topic by name")?;
        ensure!(by_name.map(|t| t.id) == Some(1), "get_topic by name");
        let topics = client.get_topics(&id(stream_id)).await.sdk("get_topics")?;
        ensure!(topics.len() == 2, "get_topics returned {}", topics.len());

        update_second_topic(&client, stream_id).await?;
        purge_topic_checked(&client, stream_id, topic_id).await?;
        client
            .delete_topic(&id(stream_id), &id(topic_id))
            .await
            .sdk("delete_topic")?;
        ensure!(client
            .get_topic(&id(stream_id), &id(topic_id))
            .await
            .sdk("get")?
            .is_none());
        ensure!(
            client
                .get_topics(&id(stream_id))
                .await
                .sdk("get_topics")?
                .len()
                == 1
        );
        Ok(())
    })
    .await
    .expect("test body");
    server.finish().expect("server still healthy");
}

#[tokio::test]
async fn partitions_create_and_delete() {
    let server = Server::start().expect("server starts");
    partitions_scenario(&server).await;
    server.finish().expect("server still healthy");
}

/// With one storage shard, deleting partitions sends two requests to the same shard's ring (the
/// deletion and the remaining partitions' new settings).
#[tokio::test]
async fn partitions_create_and_delete_on_one_shard() {
    let server = Server::start_with_env(&[("RIPTIDE_DATAPLANE_STORAGE_SHARDS", "1")])
        .expect("server starts");
    partitions_scenario(&server).await;
    server.finish().expect("server still healthy");
}

async fn partitions_scenario(server: &Server) {
    bounded(TEST_TIMEOUT, async {
        let client = server.client().await?;
        let (s, t) = stream_and_topic(&client, "s", "t", 2).await?;
        client
            .create_partitions(&id(s), &id(t), 3)
            .await
            .sdk("create_partitions")?;
        let topic = client
            .get_topic(&id(s), &id(t))
            .await
            .sdk("get_topic")?
            .context("gone")?;
        let ids: Vec<u32> = topic.partitions.iter().map(|p| p.id).collect();
        ensure!(
            topic.partitions_count == 5 && ids == vec![0, 1, 2, 3, 4],
            "after +3: {ids:?}"
        );
        send_to(&client, s, t, &Partitioning::partition_id(4), "new", 2).await?;

        client
            .delete_partitions(&id(s), &id(t), 2)
            .await
            .sdk("delete_partitions")?;
        let topic = client
            .get_topic(&id(s), &id(t))
            .await
            .sdk("get_topic")?
            .context("gone")?;
        let ids: Vec<u32> = topic.partitions.iter().map(|p| p.id).collect();
        ensure!(
            topic.partitions_count == 3 && ids == vec![0, 1, 2],
            "after -2: {ids:?}"
        );
        let mut batch = messages("gone", 1);
        let sent = client
            .send_messages(&id(s), &id(t), &Partitioning::partition_id(4), &mut batch)
            .await;
        ensure!(sent.is_err(), "send to a deleted partition succeeded");
        Ok(())
    })
    .await
    .expect("test body");
}

/// Creates stream 0 / topic 0 with one partition and `options`, then appends 3 MiB in 12
/// batches of 64 x 4 KiB messages (768 messages); returns the partition's segment count.
async fn fill_three_mib(client: &IggyClient, options: TopicCreateOptions) -> anyhow::Result<u32> {
    let stream = client.create_stream("s").await.sdk("create_stream")?;
    client
        .create_topic(&id(stream.id), "t", &options)
        .await
        .sdk("create_topic")?;
    let payload = vec![7u8; 4096];
    for _ in 0..12 {
        let mut batch: Vec<IggyMessage> = (0..64)
            .map(|_| IggyMessage::from(payload.clone()))
            .collect();
        client
            .send_messages(&id(0), &id(0), &Partitioning::partition_id(0), &mut batch)
            .await
            .sdk("send 256 KiB")?;
    }
    let topic = client
        .get_topic(&id(0), &id(0))
        .await
        .sdk("get_topic")?
        .context("topic gone")?;
    Ok(topic.partitions[0].segments_count)
}

#[tokio::test]
async fn delete_segments_removes_the_oldest_segments() {
    // 1 MiB segments server-wide, so 3 MiB of messages make several segments.
    let server = Server::start_with_env(&[("RIPTIDE_STORAGE_SEGMENT_SIZE_BYTES", "1048576")])
        .expect("server starts");
    bounded(TEST_TIMEOUT, async {
        let client = server.client().await?;
        let options = TopicCreateOptions {
            partitions_count: Some(1),
            ..Default::default()
        };
        let segments_before = fill_three_mib(&client, options).await?;
        ensure!(
            segments_before >= 3,
            "3 MiB in 1 MiB segments gave {segments_before} segments"
        );
        client
            .delete_segments(&id(0), &id(0), 0, 1)
            .await
            .sdk("delete_segments")?;
        let after = client
            .get_topic(&id(0), &id(0))
            .await
            .sdk("get_topic")?
            .context("gone")?;
        let partition = &after.partitions[0];
        ensure!(
            partition.segments_count == segments_before - 1,
            "segments {segments_before} -> {}",
            partition.segments_count
        );
        ensure!(
            partition.current_offset == 767,
            "current offset {}",
            partition.current_offset
        );
        let first = poll(
            &client,
            0,
            0,
            0,
            &Consumer::default(),
            PollingStrategy::first(),
            1,
        )
        .await?;
        let first_offset = first
            .messages
            .first()
            .map(|m| m.header.offset)
            .context("no messages left")?;
        ensure!(first_offset > 0, "the oldest segment still serves offset 0");
        ensure!(
            partition.messages_count == 768 - first_offset,
            "messages_count {} but first offset {first_offset}",
            partition.messages_count
        );
        let appended = send_to(&client, 0, 0, &Partitioning::partition_id(0), "after", 1).await?;
        check_confirmation(&appended, 0, 0, 0, 768)?;
        Ok(())
    })
    .await
    .expect("test body");
    server.finish().expect("server still healthy");
}

/// `describe_options`: the topic catalog names every key CreateTopic accepts (iggy 0.11's list),
/// and each default is exactly what a topic created without options gets;
/// streams and users take no keys.
#[tokio::test]
async fn describe_options_lists_the_topic_keys_with_the_defaults_a_topic_gets() {
    use std::str::FromStr;
    let server = Server::start().expect("server starts");
    bounded(TEST_TIMEOUT, async {
        let client = server.client().await?;
        let specs = client
            .describe_options(OptionsScope::Topic)
            .await
            .sdk("describe_options(topic)")?;
        let keys: BTreeSet<&str> = specs.iter().map(|spec| spec.key.as_str()).collect();
        let expected: BTreeSet<&str> = [
            topic_option_keys::COMPRESSION_ALGORITHM,
            topic_option_keys::MESSAGE_EXPIRY,
            topic_option_keys::MAX_TOPIC_SIZE,
            topic_option_keys::SEGMENT_SIZE,
            topic_option_keys::DURABILITY,
            topic_option_keys::CONSUMER_OFFSET_DURABILITY,
            topic_option_keys::MESSAGES_REQUIRED_TO_SAVE,
            topic_option_keys::SIZE_OF_MESSAGES_REQUIRED_TO_SAVE,
            topic_option_keys::PREALLOCATE_SEGMENTS,
        ]
        .into_iter()
        .collect();
        ensure!(keys == expected, "catalog keys {keys:?}");

        client.create_stream("options").await.sdk("create_stream")?;
        let defaults = TopicCreateOptions {
            partitions_count: Some(1),
            ..Default::default()
        };
        client
            .create_topic(&id(0), "plain", &defaults)
            .await
            .sdk("create_topic")?;
        let topic = client
            .get_topic(&id(0), &id(0))
            .await
            .sdk("get_topic")?
            .context("the topic exists")?;
        for spec in &specs {
            ensure!(
                !spec.description.is_empty(),
                "{} has no description",
                spec.key
            );
            let key = HeaderKey::from_str(&spec.key).map_err(|e| anyhow::anyhow!("{e}"))?;
            let stored = topic
                .options
                .get(&key)
                .with_context(|| format!("the new topic has no {}", spec.key))?;
            // (The SDK sends `durability` explicitly, at its default.)
            ensure!(
                stored.value.kind() == spec.kind
                    && stored.value.as_bytes() == spec.default_value.as_slice(),
                "{}: catalog says {:?} {:?}, the new topic got {stored:?}",
                spec.key,
                spec.kind,
                spec.default_value
            );
        }
        for scope in [OptionsScope::Stream, OptionsScope::User] {
            let specs = client
                .describe_options(scope)
                .await
                .sdk("describe_options")?;
            ensure!(specs.is_empty(), "{scope}: {specs:?}");
        }
        Ok(())
    })
    .await
    .expect("test body");
    server.finish().expect("server still healthy");
}

#[tokio::test]
async fn topic_segment_size_option_rotates_segments() {
    let server = Server::start().expect("server starts");
    bounded(TEST_TIMEOUT, async {
        let client = server.client().await?;
        let options = TopicCreateOptions {
            partitions_count: Some(1),
            segment_size: Some(IggyByteSize::from(1_048_576u64)),
            ..Default::default()
        };
        let segments = fill_three_mib(&client, options).await?;
        ensure!(
            segments >= 3,
            "topic option segment_size = 1 MiB, 3 MiB appended: {segments} segment(s)"
        );
        Ok(())
    })
    .await
    .expect("test body");
    server.finish().expect("server still healthy");
}

// ---------------------------------------------------------------------------------------------
// Messages
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn send_messages_with_every_partitioning_confirms_offsets() {
    let server = Server::start().expect("server starts");
    bounded(
        TEST_TIMEOUT,
        scenarios::send_messages_with_every_partitioning_confirms_offsets(&server.endpoint()),
    )
    .await
    .expect("test body");
    server.finish().expect("server still healthy");
}

#[tokio::test]
async fn messages_keep_ids_headers_and_payload_bytes() {
    let server = Server::start().expect("server starts");
    bounded(TEST_TIMEOUT, async {
        let client = server.client().await?;
        let (s, t) = stream_and_topic(&client, "s", "t", 1).await?;
        let mut headers = BTreeMap::new();
        headers.insert(
            HeaderKey::try_from("trace").sdk("header key")?,
            HeaderValue::try_from("abc-123").sdk("header value")?,
        );
        let binary: Vec<u8> = (0..=255u8).collect();
        let message = IggyMessage::builder()
            .id(0xDEAD_BEEF_u128)
            .payload(binary.clone().into())
            .user_headers(headers.clone())
            .build()
            .sdk("build message")?;
        let mut batch = vec![message, IggyMessage::from(vec![0u8; 70_000])];
        client
            .send_messages(&id(s), &id(t), &Partitioning::partition_id(0), &mut batch)
            .await
            .sdk("send")?;
        let polled = poll(
            &client,
            s,
            t,
            0,
            &Consumer::default(),
            PollingStrategy::first(),
            10,
        )
        .await?;
        ensure!(
            polled.messages.len() == 2,
            "polled {} messages",
            polled.messages.len()
        );
        let first = &polled.messages[0];
        ensure!(first.header.id == 0xDEAD_BEEF, "id {:#x}", first.header.id);
        ensure!(first.payload[..] == binary[..], "binary payload changed");
        let got_headers = first.user_headers_map().sdk("user headers")?;
        ensure!(got_headers == Some(headers), "user headers {got_headers:?}");
        ensure!(
            polled.messages[1].payload.len() == 70_000,
            "large payload length"
        );
        ensure!(
            polled.messages[1].header.id != 0,
            "the SDK mints ids; the server must keep them"
        );
        Ok(())
    })
    .await
    .expect("test body");
    server.finish().expect("server still healthy");
}

#[tokio::test]
async fn poll_with_every_strategy_and_auto_commit() {
    let server = Server::start().expect("server starts");
    bounded(
        TEST_TIMEOUT,
        scenarios::poll_with_every_strategy_and_auto_commit(&server.endpoint()),
    )
    .await
    .expect("test body");
    server.finish().expect("server still healthy");
}

#[tokio::test]
async fn consumer_offsets_store_get_delete() {
    let server = Server::start().expect("server starts");
    bounded(
        TEST_TIMEOUT,
        scenarios::consumer_offsets_store_get_delete(&server.endpoint()),
    )
    .await
    .expect("test body");
    server.finish().expect("server still healthy");
}

#[tokio::test]
async fn flush_unsaved_buffer_succeeds_and_keeps_messages() {
    let server = Server::start().expect("server starts");
    bounded(TEST_TIMEOUT, async {
        let client = server.client().await?;
        let (s, t) = stream_and_topic(&client, "s", "t", 1).await?;
        send_to(&client, s, t, &Partitioning::partition_id(0), "f", 3).await?;
        client
            .flush_unsaved_buffer(&id(s), &id(t), 0, false)
            .await
            .sdk("flush no fsync")?;
        client
            .flush_unsaved_buffer(&id(s), &id(t), 0, true)
            .await
            .sdk("flush fsync")?;
        let polled = poll(
            &client,
            s,
            t,
            0,
            &Consumer::default(),
            PollingStrategy::first(),
            10,
        )
        .await?;
        ensure!(
            payloads(&polled) == ["f-0", "f-1", "f-2"],
            "after flush: {:?}",
            payloads(&polled)
        );
        ensure!(
            client
                .flush_unsaved_buffer(&id(s), &id(t), 9, true)
                .await
                .is_err(),
            "flush of a missing partition succeeded"
        );
        Ok(())
    })
    .await
    .expect("test body");
    server.finish().expect("server still healthy");
}

// ---------------------------------------------------------------------------------------------
// Consumer groups
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn consumer_groups_create_get_list_delete() {
    let server = Server::start().expect("server starts");
    bounded(TEST_TIMEOUT, async {
        let client = server.client().await?;
        let (s, t) = stream_and_topic(&client, "s", "t", 3).await?;
        let group = client
            .create_consumer_group(&id(s), &id(t), "workers")
            .await
            .sdk("create group")?;
        ensure!(
            group.id == 0 && group.name == "workers",
            "created {group:?}"
        );
        ensure!(
            group.partitions_count == 3 && group.members_count == 0,
            "created {group:?}"
        );
        let second = client
            .create_consumer_group(&id(s), &id(t), "audit")
            .await
            .sdk("create group 2")?;
        ensure!(second.id == 1, "second group id {}", second.id);
        expect_code(
            client
                .create_consumer_group(&id(s), &id(t), "workers")
                .await,
            5004,
            "duplicate group name",
        )?;
        let by_name = client
            .get_consumer_group(&id(s), &id(t), &name("audit"))
            .await
            .sdk("get by name")?;
        ensure!(by_name.map(|g| g.id) == Some(1), "get group by name");
        let listed = client
            .get_consumer_groups(&id(s), &id(t))
            .await
            .sdk("get_consumer_groups")?;
        let names: BTreeSet<String> = listed.into_iter().map(|g| g.name).collect();
        ensure!(
            names == BTreeSet::from(["workers".into(), "audit".into()]),
            "groups {names:?}"
        );
        client
            .delete_consumer_group(&id(s), &id(t), &id(1))
            .await
            .sdk("delete group")?;
        ensure!(
            client
                .get_consumer_group(&id(s), &id(t), &id(1))
                .await
                .sdk("get deleted")?
                .is_none(),
            "deleted group still there"
        );
        expect_code(
            client.join_consumer_group(&id(s), &id(t), &id(1)).await,
            5000,
            "join a deleted group",
        )?;
        Ok(())
    })
    .await
    .expect("test body");
    server.finish().expect("server still healthy");
}

#[tokio::test]
async fn consumer_group_rebalances_on_join_leave_and_disconnect() {
    let server = Server::start().expect("server starts");
    bounded(
        TEST_TIMEOUT,
        scenarios::consumer_group_rebalances_on_join_leave_and_disconnect(&server.endpoint()),
    )
    .await
    .expect("test body");
    server.finish().expect("server still healthy");
}

// ---------------------------------------------------------------------------------------------
// Users, permissions and personal access tokens
// ---------------------------------------------------------------------------------------------

/// Renames the user, changes its password (old one refused, new one works) and replaces its
/// permissions.
async fn rename_password_and_permissions(
    server: &Server,
    root: &IggyClient,
    user_id: u32,
) -> anyhow::Result<()> {
    root.update_user(
        &id(user_id),
        Some("alice2"),
        None,
        &UserUpdateOptions::default(),
    )
    .await
    .sdk("update_user rename")?;
    ensure!(
        root.get_user(&name("alice2"))
            .await
            .sdk("get renamed")?
            .is_some(),
        "rename lost"
    );
    root.change_password(&id(user_id), "secret-1", "secret-2")
        .await
        .sdk("change_password")?;
    server
        .client_for("alice2", "secret-2")
        .await
        .context("login with the new password")?;
    let old = server.anonymous_client().await?;
    expect_code(
        old.login_user("alice2", "secret-1").await,
        INVALID_CREDENTIALS,
        "old password",
    )?;

    let permissions = Permissions {
        global: GlobalPermissions {
            read_streams: true,
            ..Default::default()
        },
        streams: None,
    };
    root.update_permissions(&id(user_id), Some(permissions.clone()))
        .await
        .sdk("update_permissions")?;
    let fetched = root
        .get_user(&id(user_id))
        .await
        .sdk("get_user")?
        .context("user gone")?;
    ensure!(
        fetched.permissions == Some(permissions),
        "permissions {:?}",
        fetched.permissions
    );
    Ok(())
}

#[tokio::test]
async fn users_create_get_list_update_password_permissions_delete() {
    let server = Server::start().expect("server starts");
    bounded(TEST_TIMEOUT, async {
        let root = server.client().await?;
        let created = root
            .create_user("alice", "secret-1", UserStatus::Active, None)
            .await
            .sdk("create_user")?;
        ensure!(
            created.username == "alice" && created.id != 0,
            "created {created:?}"
        );
        expect_code(
            root.create_user("alice", "other-pw", UserStatus::Active, None)
                .await,
            46,
            "duplicate username",
        )?;
        let by_name = root
            .get_user(&name("alice"))
            .await
            .sdk("get_user by name")?;
        ensure!(
            by_name.map(|u| u.id) == Some(created.id),
            "get_user by name"
        );
        let users = root.get_users().await.sdk("get_users")?;
        let names: BTreeSet<String> = users.into_iter().map(|u| u.username).collect();
        ensure!(
            names == BTreeSet::from(["iggy".into(), "alice".into()]),
            "users {names:?}"
        );

        rename_password_and_permissions(&server, &root, created.id).await?;

        root.update_user(
            &id(created.id),
            None,
            Some(UserStatus::Inactive),
            &UserUpdateOptions::default(),
        )
        .await
        .sdk("deactivate")?;
        let inactive = server.anonymous_client().await?;
        ensure!(
            inactive.login_user("alice2", "secret-2").await.is_err(),
            "inactive user logged in"
        );

        root.delete_user(&id(created.id)).await.sdk("delete_user")?;
        ensure!(
            root.get_user(&id(created.id))
                .await
                .sdk("get deleted")?
                .is_none(),
            "user not deleted"
        );
        let deleted = server.anonymous_client().await?;
        expect_code(
            deleted.login_user("alice2", "secret-2").await,
            INVALID_CREDENTIALS,
            "deleted user",
        )?;
        Ok(())
    })
    .await
    .expect("test body");
    server.finish().expect("server still healthy");
}

/// A user without permissions: every guarded command is refused with Unauthorized.
async fn nobody_is_denied(nobody: &IggyClient, s: u32, t: u32, findings: &mut Findings) {
    findings.check(expect_code(
        nobody.get_streams().await,
        UNAUTHORIZED,
        "get_streams without read_streams",
    ));
    findings.check(expect_code(
        nobody.create_stream("x").await,
        UNAUTHORIZED,
        "create_stream without manage_streams",
    ));
    let mut batch = messages("denied", 1);
    findings.check(expect_code(
        nobody
            .send_messages(&id(s), &id(t), &Partitioning::partition_id(0), &mut batch)
            .await,
        UNAUTHORIZED,
        "send without send_messages",
    ));
    findings.check(expect_code(
        nobody
            .poll_messages(
                &id(s),
                &id(t),
                Some(0),
                &Consumer::default(),
                &PollingStrategy::first(),
                1,
                false,
            )
            .await,
        UNAUTHORIZED,
        "poll without poll_messages",
    ));
    findings.check(expect_code(
        nobody.get_users().await,
        UNAUTHORIZED,
        "get_users without read_users",
    ));
    findings.check(expect_code(
        nobody
            .create_user("mallory", "pw-mallory", UserStatus::Active, None)
            .await,
        UNAUTHORIZED,
        "create_user without manage_users",
    ));
    findings.check(expect_code(
        nobody.delete_stream(&id(s)).await,
        UNAUTHORIZED,
        "delete_stream",
    ));
}

/// A user with send/poll/read on one stream: allowed there, refused elsewhere.
async fn scoped_user_is_confined(
    server: &Server,
    (s, t): (u32, u32),
    (s1, t1): (u32, u32),
    findings: &mut Findings,
) -> anyhow::Result<()> {
    let user = server.client_for("scoped", "pw-scoped").await?;
    let mut batch = messages("allowed", 1);
    user.send_messages(&id(s), &id(t), &Partitioning::partition_id(0), &mut batch)
        .await
        .sdk("scoped send on its stream")?;
    let polled = poll(
        &user,
        s,
        t,
        0,
        &Consumer::default(),
        PollingStrategy::first(),
        10,
    )
    .await?;
    ensure!(
        polled.messages.len() == 3,
        "scoped poll saw {} messages",
        polled.messages.len()
    );
    let mut batch = messages("denied", 1);
    findings.check(expect_code(
        user.send_messages(&id(s1), &id(t1), &Partitioning::partition_id(0), &mut batch)
            .await,
        UNAUTHORIZED,
        "scoped send on another stream",
    ));
    findings.check(expect_code(
        user.delete_topic(&id(s), &id(t)).await,
        UNAUTHORIZED,
        "scoped delete_topic",
    ));
    Ok(())
}

#[tokio::test]
async fn permissions_are_enforced_for_non_root_users() {
    let server = Server::start().expect("server starts");
    bounded(TEST_TIMEOUT, async {
        let mut findings = Findings::default();
        let root = server.client().await?;
        let (s, t) = stream_and_topic(&root, "s0", "t", 1).await?;
        let (s1, t1) = stream_and_topic(&root, "s1", "t", 1).await?;
        send_to(&root, s, t, &Partitioning::partition_id(0), "root", 2).await?;

        root.create_user("nobody", "pw-nobody", UserStatus::Active, None)
            .await
            .sdk("create nobody")?;
        let nobody = server.client_for("nobody", "pw-nobody").await?;
        nobody.ping().await.sdk("ping needs no permission")?;
        nobody.get_me().await.sdk("get_me needs no permission")?;
        nobody_is_denied(&nobody, s, t, &mut findings).await;
        // Stream-scoped: send and poll on stream s only.
        let mut streams = BTreeMap::new();
        streams.insert(
            s as usize,
            StreamPermissions {
                send_messages: true,
                poll_messages: true,
                read_stream: true,
                ..Default::default()
            },
        );
        let scoped = Permissions {
            global: GlobalPermissions::default(),
            streams: Some(streams),
        };
        root.create_user("scoped", "pw-scoped", UserStatus::Active, Some(scoped))
            .await
            .sdk("create scoped")?;
        scoped_user_is_confined(&server, (s, t), (s1, t1), &mut findings).await?;
        // Nothing denied left a trace.
        let topic = root
            .get_topic(&id(s1), &id(t1))
            .await
            .sdk("get_topic")?
            .context("gone")?;
        ensure!(
            topic.messages_count == 0,
            "a denied send stored {} messages",
            topic.messages_count
        );
        ensure!(
            root.get_streams().await.sdk("get_streams")?.len() == 2,
            "a denied command changed streams"
        );
        findings.finish()
    })
    .await
    .expect("test body");
    server.finish().expect("server still healthy");
}

#[tokio::test]
async fn personal_access_tokens_create_list_login_delete() {
    let server = Server::start().expect("server starts");
    bounded(TEST_TIMEOUT, async {
        let root = server.client().await?;
        let raw = root
            .create_personal_access_token("ci-token", PersonalAccessTokenExpiry::NeverExpire)
            .await
            .sdk("create PAT")?;
        ensure!(!raw.token.is_empty(), "empty token");
        expect_code(
            root.create_personal_access_token("ci-token", PersonalAccessTokenExpiry::NeverExpire)
                .await,
            51,
            "duplicate PAT name",
        )?;
        let tokens = root.get_personal_access_tokens().await.sdk("list PATs")?;
        ensure!(
            tokens.len() == 1 && tokens[0].name == "ci-token",
            "tokens {tokens:?}"
        );
        ensure!(
            tokens[0].expiry_at.is_none(),
            "never-expiring token has expiry {:?}",
            tokens[0].expiry_at
        );

        let by_token = server.anonymous_client().await?;
        let identity = by_token
            .login_with_personal_access_token(&raw.token)
            .await
            .sdk("login with PAT")?;
        ensure!(
            identity.user_id == 0,
            "PAT login as user {}",
            identity.user_id
        );
        by_token
            .get_streams()
            .await
            .sdk("command after PAT login")?;
        // The connection-string form `iggy://<token>@host:port` signs in with the token.
        let by_string = IggyClient::from_connection_string(&format!(
            "iggy://{}@{}?reconnection_retries=2",
            raw.token,
            server.address()
        ))
        .sdk("PAT connection string")?;
        by_string.connect().await.sdk("connect with a PAT")?;
        let me = by_string.get_me().await.sdk("get_me with a PAT")?;
        ensure!(me.user_id == Some(0), "PAT session user {:?}", me.user_id);

        let bogus = server.anonymous_client().await?;
        ensure!(
            bogus
                .login_with_personal_access_token("not-a-real-token")
                .await
                .is_err(),
            "login with a bogus token succeeded"
        );
        root.delete_personal_access_token("ci-token")
            .await
            .sdk("delete PAT")?;
        ensure!(
            root.get_personal_access_tokens()
                .await
                .sdk("list")?
                .is_empty(),
            "PAT not deleted"
        );
        let after = server.anonymous_client().await?;
        ensure!(
            after
                .login_with_personal_access_token(&raw.token)
                .await
                .is_err(),
            "login with a deleted token succeeded"
        );
        Ok(())
    })
    .await
    .expect("test body");
    server.finish().expect("server still healthy");
}

// ---------------------------------------------------------------------------------------------
// High-level SDK APIs, concurrency, restart
// ---------------------------------------------------------------------------------------------

/// Collects what an `IggyConsumer` delivers and signals once it has `expected` messages.
struct Collector {
    received: Mutex<Vec<(u32, u64, String)>>,
    expected: usize,
    done: Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
}

impl iggy::consumer_ext::MessageConsumer for Collector {
    async fn consume(&self, message: ReceivedMessage) -> Result<(), IggyError> {
        let payload = String::from_utf8_lossy(&message.message.payload).into_owned();
        let mut received = self.received.lock().expect("collector lock");
        received.push((message.partition_id, message.message.header.offset, payload));
        if received.len() >= self.expected {
            if let Some(done) = self.done.lock().expect("done lock").take() {
                let _ = done.send(());
            }
        }
        Ok(())
    }
}

/// Builds a consumer-group `IggyConsumer` on hl-stream/hl-topic and consumes until 30 messages
/// arrived (or 30 s passed); returns whether all arrived and what was received.
async fn consume_as_group(
    consumer_client: &IggyClient,
) -> anyhow::Result<(bool, Vec<(u32, u64, String)>)> {
    let mut consumer = consumer_client
        .consumer_group("hl-group", "hl-stream", "hl-topic")
        .sdk("consumer builder")?
        .auto_commit(AutoCommit::When(AutoCommitWhen::PollingMessages))
        .create_consumer_group_if_not_exists()
        .auto_join_consumer_group()
        .polling_strategy(PollingStrategy::next())
        .poll_interval(IggyDuration::from(10_000))
        .batch_length(7)
        .build();
    consumer.init().await.sdk("consumer init")?;
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
    let collector = Box::leak(Box::new(Collector {
        received: Mutex::new(Vec::new()),
        expected: 30,
        done: Mutex::new(Some(done_tx)),
    }));
    let collector: &'static Collector = collector;
    let consuming = tokio::spawn(async move {
        let result = consumer.consume_messages(collector, stop_rx).await;
        (consumer, result)
    });
    let finished = tokio::time::timeout(Duration::from_secs(30), done_rx).await;
    let _ = stop_tx.send(());
    let (mut consumer, result) = consuming.await?;
    result.sdk("consume_messages")?;
    consumer.shutdown().await.sdk("consumer shutdown")?;
    let received = collector.received.lock().expect("lock").clone();
    Ok((finished.is_ok(), received))
}

#[tokio::test]
async fn high_level_producer_and_consumer_group() {
    let server = Server::start().expect("server starts");
    bounded(TEST_TIMEOUT, async {
        let client = server.client().await?;
        let producer = client
            .producer("hl-stream", "hl-topic")
            .sdk("producer builder")?
            .partitioning(Partitioning::balanced())
            .create_topic_if_not_exists(3, IggyExpiry::NeverExpire, MaxTopicSize::ServerDefault)
            .build();
        producer.init().await.sdk("producer init")?;
        for round in 0..6 {
            producer
                .send(messages(&format!("hl{round}"), 5))
                .await
                .sdk("producer send")?;
        }
        let topic = client
            .get_topic(&name("hl-stream"), &name("hl-topic"))
            .await
            .sdk("get_topic")?;
        let topic = topic.context("the producer did not create its topic")?;
        ensure!(
            topic.partitions_count == 3 && topic.messages_count == 30,
            "topic {topic:?}"
        );

        let consumer_client = server.client().await?;
        let (finished, received) = consume_as_group(&consumer_client).await?;
        ensure!(
            finished,
            "the consumer group delivered {} of 30 messages",
            received.len()
        );
        let unique: BTreeSet<&String> = received.iter().map(|(_, _, p)| p).collect();
        ensure!(
            unique.len() == 30,
            "{} distinct of {} delivered",
            unique.len(),
            received.len()
        );
        let stored = consumer_client
            .get_consumer_offset(
                &Consumer::group(name("hl-group")),
                &name("hl-stream"),
                &name("hl-topic"),
                Some(0),
            )
            .await
            .sdk("group offset")?;
        ensure!(
            stored.is_some(),
            "auto-commit stored no group offset on partition 0"
        );
        producer.shutdown().await;
        Ok(())
    })
    .await
    .expect("test body");
    server.finish().expect("server still healthy");
}

/// Rounds of one concurrent writer, each sending 3 messages and polling the partition.
const CONCURRENT_BATCHES: u32 = 25;

/// One writer: sends `CONCURRENT_BATCHES` batches of 3 to partition `writer % 2`, polling after
/// each; returns the confirmed base offsets.
async fn concurrent_writer(
    client: IggyClient,
    (s, t): (u32, u32),
    writer: u32,
) -> anyhow::Result<Vec<u64>> {
    // Writers 0 and 2 share partition 0, 1 and 3 share partition 1.
    let partitioning = Partitioning::partition_id(writer % 2);
    let mut confirmed = Vec::new();
    let started = std::time::Instant::now();
    for batch in 0..CONCURRENT_BATCHES {
        let at = format!("writer {writer}, batch {batch}, {:?} in", started.elapsed());
        let mut msgs = messages(&format!("w{writer}b{batch}"), 3);
        let response = client
            .send_messages(&id(s), &id(t), &partitioning, &mut msgs)
            .await
            .sdk(&format!("concurrent send ({at})"))?;
        confirmed.push(response.confirmations[0].base_offset);
        // Readers run alongside the writers.
        let strategy = PollingStrategy::last();
        let consumer = Consumer::default();
        client
            .poll_messages(
                &id(s),
                &id(t),
                Some(writer % 2),
                &consumer,
                &strategy,
                5,
                false,
            )
            .await
            .sdk(&format!("concurrent poll ({at})"))?;
    }
    Ok(confirmed)
}

/// A partition written by two writers: base offsets tile it, offsets are contiguous and each
/// batch of 3 stays together.
async fn check_shared_partition(
    admin: &IggyClient,
    (s, t): (u32, u32),
    partition: u32,
    mut bases: Vec<u64>,
) -> anyhow::Result<()> {
    bases.sort_unstable();
    let expected: Vec<u64> = (0..2 * CONCURRENT_BATCHES as u64).map(|i| 3 * i).collect();
    ensure!(
        bases == expected,
        "partition {partition}: base offsets {bases:?}"
    );
    let strategy = PollingStrategy::offset(0);
    let polled = poll(admin, s, t, partition, &Consumer::default(), strategy, 1000).await?;
    ensure!(
        offsets(&polled) == (0..6 * CONCURRENT_BATCHES as u64).collect::<Vec<_>>(),
        "partition {partition} offsets not contiguous: {} messages",
        polled.messages.len()
    );
    for chunk in polled.messages.chunks(3) {
        let tags: BTreeSet<String> = chunk
            .iter()
            .map(|m| {
                let payload = String::from_utf8_lossy(&m.payload);
                payload
                    .rsplit_once('-')
                    .map(|(a, _)| a.to_owned())
                    .unwrap_or_default()
            })
            .collect();
        ensure!(
            tags.len() == 1,
            "batches interleaved inside one batch: {tags:?}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn concurrent_clients_interleave_without_loss() {
    const CLIENTS: u32 = 4;
    let server = Server::start().expect("server starts");
    bounded(TEST_TIMEOUT, async {
        let admin = server.client().await?;
        let topic = stream_and_topic(&admin, "s", "t", 2).await?;
        let mut tasks = Vec::new();
        for writer in 0..CLIENTS {
            let client = server.client().await?;
            tasks.push(tokio::spawn(concurrent_writer(client, topic, writer)));
        }
        let mut base_offsets: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
        for (writer, task) in tasks.into_iter().enumerate() {
            let confirmed = task.await??;
            base_offsets
                .entry(writer as u32 % 2)
                .or_default()
                .extend(confirmed);
        }
        for (partition, bases) in base_offsets {
            check_shared_partition(&admin, topic, partition, bases).await?;
        }
        Ok(())
    })
    .await
    .expect("test body");
    server.finish().expect("server still healthy");
}

/// One raw connection's send+poll round trips; returns how far it got if a reply is missing.
async fn raw_round_trips(
    address: std::net::SocketAddr,
    connection_index: u32,
    round_trips: u32,
) -> anyhow::Result<()> {
    use common::raw::{self, code, RawConnection};
    let mut connection = RawConnection::connect(address).await?;
    connection.client += u128::from(connection_index) + 1;
    connection.login_root().await?;
    let partition_id = connection_index % 2;
    for round in 0..round_trips {
        let payload = format!("c{connection_index}r{round}");
        let batch = raw::batch(&[payload.as_bytes()], 1)?;
        let body = raw::send_messages_body(
            0,
            0,
            &raw::Partitioning::PartitionId(partition_id),
            1,
            &batch,
        );
        let reply = connection
            .call(code::SEND_MESSAGES, &body)
            .await
            .with_context(|| format!("connection {connection_index}, round trip {round}: send"))?;
        ensure!(reply.status() == 0, "send: {}", reply.describe());
        let poll = raw::poll_body(0, 0, partition_id, 0, 5);
        let reply = connection
            .call(code::POLL_MESSAGES, &poll)
            .await
            .with_context(|| format!("connection {connection_index}, round trip {round}: poll"))?;
        ensure!(reply.status() == 0, "poll: {}", reply.describe());
    }
    Ok(())
}

async fn ping_on_fresh_connection(address: std::net::SocketAddr) -> anyhow::Result<()> {
    let mut connection = common::raw::RawConnection::connect(address).await?;
    let pong = connection
        .ping()
        .await
        .context("diagnostic: a ping on a fresh connection after the stall")?;
    bail!(
        "diagnostic: a fresh connection still gets ping replies ({}), so the worker loops are alive and only the stuck connections are not served (compare runtime/stats.json: shard appends vs sends issued)",
        pong.describe()
    )
}

/// Data-plane requests may be pipelined on one connection: replies come back in request order
/// with contiguous offsets.
#[tokio::test]
async fn pipelined_raw_sends_are_answered_in_order() {
    use common::raw::{self, code, RawConnection};
    const PIPELINE_DEPTH: u32 = 16;
    let server = Server::start().expect("server starts");
    bounded(TEST_TIMEOUT, async {
        let admin = server.client().await?;
        stream_and_topic(&admin, "s", "t", 1).await?;
        let mut connection = RawConnection::connect(server.address()).await?;
        connection.login_root().await?;
        let mut frames = Vec::new();
        let mut requests = Vec::new();
        for index in 0..PIPELINE_DEPTH {
            let payload = format!("pipelined-{index}");
            let batch = raw::batch(&[payload.as_bytes(), payload.as_bytes()], 1)?;
            let body = raw::send_messages_body(0, 0, &raw::Partitioning::PartitionId(0), 2, &batch);
            let header = connection.header_for(code::SEND_MESSAGES);
            requests.push(header.request);
            frames.extend(header.emit(&body));
        }
        connection.send_bytes(&frames).await?;
        for (index, request) in requests.iter().enumerate() {
            let reply = connection.read_frame().await?;
            ensure!(
                reply.is_reply() && reply.status() == 0 && reply.reply_request() == *request,
                "reply {index}: {} for request {request}",
                reply.describe()
            );
            let confirmations = raw::confirmations(&reply.body)?;
            ensure!(
                confirmations == vec![(0, 0, 0, 2 * index as u64)],
                "reply {index}: confirmations {confirmations:?}"
            );
        }
        let polled = poll(
            &admin,
            0,
            0,
            0,
            &Consumer::default(),
            PollingStrategy::first(),
            100,
        )
        .await?;
        let expected: Vec<String> = (0..PIPELINE_DEPTH)
            .flat_map(|i| [format!("pipelined-{i}"), format!("pipelined-{i}")])
            .collect();
        ensure!(
            payloads(&polled) == expected,
            "stored {:?}",
            payloads(&polled)
        );
        Ok(())
    })
    .await
    .expect("test body");
    server.finish().expect("server still healthy");
}

/// Many connections spread over both network workers, each doing send+poll round trips on
/// partitions owned by both shards: every request must get its reply.
#[tokio::test]
async fn concurrent_raw_connections_on_every_worker_all_get_replies() {
    const CONNECTIONS: u32 = 8;
    const ROUND_TRIPS: u32 = 40;
    let server = Server::start().expect("server starts");
    bounded(TEST_TIMEOUT, async {
        let admin = server.client().await?;
        stream_and_topic(&admin, "s", "t", 2).await?;
        let tasks: Vec<_> = (0..CONNECTIONS)
            .map(|index| tokio::spawn(raw_round_trips(server.address(), index, ROUND_TRIPS)))
            .collect();
        let mut findings = Findings::default();
        let mut stalled = false;
        for task in tasks {
            let result = task.await?;
            stalled |= result.is_err();
            findings.check(result);
        }
        if stalled {
            // Tells a dead worker loop (no ping either) from connections that stopped being served.
            findings.check(ping_on_fresh_connection(server.address()).await);
            // Let the 500 ms stats writer catch up, then show where the requests stopped.
            tokio::time::sleep(Duration::from_millis(600)).await;
            findings.check(Err(anyhow::anyhow!(
                "diagnostic: {}",
                stats_digest(server.data_path())
            )));
        }
        findings.finish()?;
        let topic = admin
            .get_topic(&id(0), &id(0))
            .await
            .sdk("get_topic")?
            .context("topic gone")?;
        ensure!(
            topic.messages_count == u64::from(CONNECTIONS * ROUND_TRIPS),
            "messages_count {}",
            topic.messages_count
        );
        Ok(())
    })
    .await
    .expect("test body");
    server
        .finish()
        .expect("server still healthy (and exits on SIGTERM)");
}

#[tokio::test]
async fn restart_keeps_streams_messages_offsets_users_and_groups() {
    // Auto-commits wait a minute for their write: the graceful restart has to write them.
    let mut server =
        Server::start_with_env(&[("RIPTIDE_STORAGE_AUTO_COMMIT_WRITE_DELAY_MS", "60000")])
            .expect("server starts");
    bounded(TEST_TIMEOUT, async {
        let s = write_what_a_restart_must_keep(&server.endpoint()).await?;
        let survivor = server.client().await?;
        let before = all_stored_messages(&survivor).await?;
        server.restart()?;
        survivor_reconnects(&survivor, &before).await?;
        check_after_restart(&server.endpoint(), s, 13)
            .await
            .context("after a graceful restart")?;
        server.sigkill()?;
        server.start_again()?;
        // The first check appended one message to partition 1.
        check_after_restart(&server.endpoint(), s, 14)
            .await
            .context("after SIGKILL and start")?;
        Ok(())
    })
    .await
    .expect("test body");
    server.finish().expect("server still healthy");
}
