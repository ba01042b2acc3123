//! The conformance suite's core scenarios, shared by the kernel-mode suite (`conformance.rs`) and
//! the DPDK appliance suites (`dpdk_appliance_*.rs`): each runs the official `iggy` SDK against an
//! [`Endpoint`] and returns what it found wrong.

use super::*;
use anyhow::{bail, ensure, Context};
use iggy::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// Assignments after a join/leave settle within this bound (no timing is asserted).
pub const SETTLE_TIMEOUT: Duration = Duration::from_secs(15);

pub const INVALID_CREDENTIALS: u32 = 42;

/// Creates an active user who may read streams, send and poll (nothing else).
pub async fn create_sending_user(
    root: &IggyClient,
    username: &str,
    password: &str,
) -> anyhow::Result<()> {
    let permissions = Permissions {
        global: GlobalPermissions {
            read_streams: true,
            send_messages: true,
            poll_messages: true,
            ..Default::default()
        },
        streams: None,
    };
    root.create_user(username, password, UserStatus::Active, Some(permissions))
        .await
        .sdk("create_user")?;
    Ok(())
}

/// Creates a stream and a topic with `partitions_count` partitions; returns their ids.
pub async fn stream_and_topic(
    client: &IggyClient,
    stream: &str,
    topic: &str,
    partitions_count: u32,
) -> anyhow::Result<(u32, u32)> {
    let stream_details = client.create_stream(stream).await.sdk("create_stream")?;
    let options = TopicCreateOptions {
        partitions_count: Some(partitions_count),
        ..Default::default()
    };
    let topic_details = client
        .create_topic(&id(stream_details.id), topic, &options)
        .await
        .sdk("create_topic")?;
    ensure!(
        topic_details.partitions_count == partitions_count
            && topic_details.partitions.len() == partitions_count as usize,
        "create_topic returned {} partitions ({} listed), asked for {partitions_count}",
        topic_details.partitions_count,
        topic_details.partitions.len()
    );
    Ok((stream_details.id, topic_details.id))
}

pub async fn send_to(
    client: &IggyClient,
    stream_id: u32,
    topic_id: u32,
    partitioning: &Partitioning,
    tag: &str,
    count: u32,
) -> anyhow::Result<SendMessagesResponse> {
    let mut batch = messages(tag, count);
    client
        .send_messages(&id(stream_id), &id(topic_id), partitioning, &mut batch)
        .await
        .sdk("send_messages")
}

pub async fn poll(
    client: &IggyClient,
    stream_id: u32,
    topic_id: u32,
    partition_id: u32,
    consumer: &Consumer,
    strategy: PollingStrategy,
    count: u32,
) -> anyhow::Result<PolledMessages> {
    poll_with(
        client,
        (stream_id, topic_id, partition_id),
        consumer,
        strategy,
        count,
        false,
    )
    .await
}

/// A poll with auto-commit.
pub async fn poll_committing(
    client: &IggyClient,
    stream_id: u32,
    topic_id: u32,
    partition_id: u32,
    consumer: &Consumer,
    strategy: PollingStrategy,
    count: u32,
) -> anyhow::Result<PolledMessages> {
    poll_with(
        client,
        (stream_id, topic_id, partition_id),
        consumer,
        strategy,
        count,
        true,
    )
    .await
}

pub async fn poll_with(
    client: &IggyClient,
    (stream_id, topic_id, partition_id): (u32, u32, u32),
    consumer: &Consumer,
    strategy: PollingStrategy,
    count: u32,
    auto_commit: bool,
) -> anyhow::Result<PolledMessages> {
    client
        .poll_messages(
            &id(stream_id),
            &id(topic_id),
            Some(partition_id),
            consumer,
            &strategy,
            count,
            auto_commit,
        )
        .await
        .sdk("poll_messages")
}

pub fn offsets(polled: &PolledMessages) -> Vec<u64> {
    polled.messages.iter().map(|m| m.header.offset).collect()
}

/// Ping before sign-in, login by password, logout and login again; wrong credentials refused.
pub async fn ping_login_by_password_and_logout(endpoint: &Endpoint) -> anyhow::Result<()> {
    let anonymous = endpoint.anonymous_client().await?;
    anonymous.ping().await.sdk("ping before login")?;
    let identity = anonymous
        .login_user(ROOT_USERNAME, ROOT_PASSWORD)
        .await
        .sdk("login_user")?;
    ensure!(
        identity.user_id == 0,
        "root user id {} != 0",
        identity.user_id
    );
    anonymous
        .get_streams()
        .await
        .sdk("get_streams after login")?;
    anonymous.logout_user().await.sdk("logout_user")?;
    anonymous.ping().await.sdk("ping after logout")?;
    anonymous
        .login_user(ROOT_USERNAME, ROOT_PASSWORD)
        .await
        .sdk("login again after logout")?;
    anonymous.get_me().await.sdk("get_me after re-login")?;

    let wrong = endpoint.anonymous_client().await?;
    expect_code(
        wrong.login_user(ROOT_USERNAME, "wrong-password").await,
        INVALID_CREDENTIALS,
        "login with a wrong password",
    )?;
    expect_code(
        wrong.login_user("nobody", "whatever").await,
        INVALID_CREDENTIALS,
        "login of an unknown user",
    )?;
    Ok(())
}

/// Checks a confirmation reply: one entry for the batch, on the expected stream/topic/partition,
/// starting at the expected offset.
pub fn check_confirmation(
    response: &SendMessagesResponse,
    stream_id: u32,
    topic_id: u32,
    partition_id: u32,
    base_offset: u64,
) -> anyhow::Result<()> {
    let got: Vec<(u32, u32, u32, u64)> = response
        .confirmations
        .iter()
        .map(|c| (c.stream_id, c.topic_id, c.partition_id, c.base_offset))
        .collect();
    ensure!(
        got == vec![(stream_id, topic_id, partition_id, base_offset)],
        "confirmations {got:?}, expected [({stream_id}, {topic_id}, {partition_id}, {base_offset})]"
    );
    Ok(())
}

/// Messages key: XxHash32(key) % 3 partitions, the same partition (and the next offset) on
/// every send with that key.
pub async fn keyed_sends_land_on_the_hashed_partition(
    client: &IggyClient,
    s: u32,
    t: u32,
) -> anyhow::Result<()> {
    // Messages key: XxHash32(key) % partitions_count, the same partition every time.
    for key in ["order-42", "key-1", "a"] {
        let expected = xxh32::xxh32(key.as_bytes()) % 3;
        let partitioning = Partitioning::messages_key_str(key).sdk("messages_key_str")?;
        let one = send_to(client, s, t, &partitioning, key, 1).await?;
        let two = send_to(client, s, t, &partitioning, key, 1).await?;
        for response in [&one, &two] {
            ensure!(
                response.confirmations.first().map(|c| c.partition_id) == Some(expected),
                "key {key:?}: confirmation {:?}, expected partition {expected}",
                response.confirmations.first().map(|c| c.partition_id)
            );
        }
        ensure!(
            two.confirmations[0].base_offset == one.confirmations[0].base_offset + 1,
            "key {key:?}: offsets {} then {}",
            one.confirmations[0].base_offset,
            two.confirmations[0].base_offset
        );
    }
    Ok(())
}

/// Sends by partition id, balanced and by key: each confirmation names the partition and the
/// base offset, and the messages are stored in order.
pub async fn send_messages_with_every_partitioning_confirms_offsets(
    endpoint: &Endpoint,
) -> anyhow::Result<()> {
    let client = endpoint.client().await?;
    let (s, t) = stream_and_topic(&client, "partitioning", "t", 3).await?;
    // Partition id: two batches on partition 1 continue each other's offsets.
    let first = send_to(&client, s, t, &Partitioning::partition_id(1), "a", 4).await?;
    check_confirmation(&first, s, t, 1, 0)?;
    let second = send_to(&client, s, t, &Partitioning::partition_id(1), "b", 2).await?;
    check_confirmation(&second, s, t, 1, 4)?;

    // Balanced: the SDK round-robins over the partitions; each confirmation names one.
    let mut balanced_partitions = Vec::new();
    for round in 0..3 {
        let response = send_to(
            &client,
            s,
            t,
            &Partitioning::balanced(),
            &format!("bal{round}"),
            1,
        )
        .await?;
        ensure!(
            response.confirmations.len() == 1,
            "balanced send: {} confirmations",
            response.confirmations.len()
        );
        balanced_partitions.push(response.confirmations[0].partition_id);
    }
    balanced_partitions.sort_unstable();
    ensure!(
        balanced_partitions == vec![0, 1, 2],
        "balanced sends landed on {balanced_partitions:?}"
    );

    keyed_sends_land_on_the_hashed_partition(&client, s, t).await?;

    let polled = poll(
        &client,
        s,
        t,
        1,
        &Consumer::default(),
        PollingStrategy::offset(0),
        100,
    )
    .await?;
    let got = payloads(&polled);
    ensure!(
        got[..6] == ["a-0", "a-1", "a-2", "a-3", "b-0", "b-1"],
        "partition 1 holds {got:?}"
    );
    ensure!(
        offsets(&polled) == (0..got.len() as u64).collect::<Vec<_>>(),
        "offsets {:?}",
        offsets(&polled)
    );
    ensure!(
        polled.partition_id == 1,
        "poll reply partition {}",
        polled.partition_id
    );
    ensure!(
        polled.current_offset == got.len() as u64 - 1,
        "current_offset {}",
        polled.current_offset
    );
    Ok(())
}

/// Next with auto-commit walks 10 messages in polls of 3 without overlap or gap and stores the
/// last offset; Next without auto-commit does not move it.
pub async fn next_walks_with_auto_commit(
    client: &IggyClient,
    s: u32,
    t: u32,
    consumer: &Consumer,
) -> anyhow::Result<()> {
    // Next + auto-commit walks the partition without overlap or gap.
    let mut seen = Vec::new();
    let mut walk = Vec::new();
    for _ in 0..4 {
        let next = poll_committing(client, s, t, 0, consumer, PollingStrategy::next(), 3).await?;
        let stored = client
            .get_consumer_offset(consumer, &id(s), &id(t), Some(0))
            .await
            .sdk("get_consumer_offset")?
            .map(|info| info.stored_offset);
        walk.push((offsets(&next), stored));
        seen.extend(offsets(&next));
    }
    // The batches hold offsets 0..=4 and 5..=9, so polls of 3 start inside batches.
    ensure!(
        seen == (0..10).collect::<Vec<u64>>(),
        "next+auto_commit (count 3) walked {seen:?}; (polled offsets, stored offset after) per poll: {walk:?}"
    );
    let stored = client
        .get_consumer_offset(consumer, &id(s), &id(t), Some(0))
        .await
        .sdk("get_consumer_offset")?
        .context("auto-commit stored no offset")?;
    ensure!(
        stored.stored_offset == 9 && stored.current_offset == 9,
        "stored {stored:?}"
    );
    // Next without auto-commit does not move the stored offset.
    send_to(client, s, t, &Partitioning::partition_id(0), "more", 2).await?;
    let peek = poll(client, s, t, 0, consumer, PollingStrategy::next(), 10).await?;
    let again = poll(client, s, t, 0, consumer, PollingStrategy::next(), 10).await?;
    ensure!(
        offsets(&peek) == vec![10, 11] && offsets(&again) == vec![10, 11],
        "next without commit"
    );
    Ok(())
}

/// Polls by offset, first, last, timestamp and next (with and without auto-commit).
pub async fn poll_with_every_strategy_and_auto_commit(endpoint: &Endpoint) -> anyhow::Result<()> {
    let client = endpoint.client().await?;
    let (s, t) = stream_and_topic(&client, "strategies", "t", 1).await?;
    send_to(&client, s, t, &Partitioning::partition_id(0), "early", 5).await?;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let middle_us = IggyTimestamp::now().as_micros();
    tokio::time::sleep(Duration::from_millis(20)).await;
    send_to(&client, s, t, &Partitioning::partition_id(0), "late", 5).await?;
    let consumer = Consumer::new(name("reader"));

    let by_offset = poll(&client, s, t, 0, &consumer, PollingStrategy::offset(3), 4).await?;
    ensure!(
        offsets(&by_offset) == vec![3, 4, 5, 6],
        "offset(3) x4: {:?}",
        offsets(&by_offset)
    );
    let first = poll(&client, s, t, 0, &consumer, PollingStrategy::first(), 2).await?;
    ensure!(
        payloads(&first) == ["early-0", "early-1"],
        "first: {:?}",
        payloads(&first)
    );
    let last = poll(&client, s, t, 0, &consumer, PollingStrategy::last(), 1).await?;
    ensure!(
        payloads(&last) == ["late-4"],
        "last x1: {:?}",
        payloads(&last)
    );
    let last3 = poll(&client, s, t, 0, &consumer, PollingStrategy::last(), 3).await?;
    ensure!(
        offsets(&last3) == vec![7, 8, 9],
        "last x3: {:?}",
        offsets(&last3)
    );
    let by_time = poll(
        &client,
        s,
        t,
        0,
        &consumer,
        PollingStrategy::timestamp(middle_us.into()),
        10,
    )
    .await?;
    ensure!(
        payloads(&by_time).first().map(String::as_str) == Some("late-0"),
        "timestamp(middle): {:?}",
        payloads(&by_time)
    );
    ensure!(
        by_time
            .messages
            .iter()
            .all(|m| m.header.timestamp >= middle_us),
        "timestamps before the asked one"
    );
    let beyond = poll(&client, s, t, 0, &consumer, PollingStrategy::offset(10), 5).await?;
    ensure!(
        beyond.messages.is_empty(),
        "offset past the end served {:?}",
        offsets(&beyond)
    );

    next_walks_with_auto_commit(&client, s, t, &consumer).await?;
    Ok(())
}

/// Consumer offsets: stored, read back per consumer and partition, used by Next, deleted.
pub async fn consumer_offsets_store_get_delete(endpoint: &Endpoint) -> anyhow::Result<()> {
    let client = endpoint.client().await?;
    let (s, t) = stream_and_topic(&client, "offsets", "t", 2).await?;
    send_to(&client, s, t, &Partitioning::partition_id(1), "m", 10).await?;
    let consumer = Consumer::new(id(7));
    ensure!(
        client
            .get_consumer_offset(&consumer, &id(s), &id(t), Some(1))
            .await
            .sdk("get none")?
            .is_none(),
        "offset present before any store"
    );
    client
        .store_consumer_offset(&consumer, &id(s), &id(t), Some(1), 4)
        .await
        .sdk("store_consumer_offset")?;
    let info = client
        .get_consumer_offset(&consumer, &id(s), &id(t), Some(1))
        .await
        .sdk("get_consumer_offset")?
        .context("stored offset missing")?;
    ensure!(
        info.partition_id == 1 && info.stored_offset == 4 && info.current_offset == 9,
        "get_consumer_offset {info:?}"
    );
    let next = poll(&client, s, t, 1, &consumer, PollingStrategy::next(), 2).await?;
    ensure!(
        offsets(&next) == vec![5, 6],
        "next after stored 4: {:?}",
        offsets(&next)
    );
    ensure!(
        client
            .get_consumer_offset(&consumer, &id(s), &id(t), Some(0))
            .await
            .sdk("other partition")?
            .is_none(),
        "offset leaked to partition 0"
    );
    let other = Consumer::new(id(8));
    ensure!(
        client
            .get_consumer_offset(&other, &id(s), &id(t), Some(1))
            .await
            .sdk("other consumer")?
            .is_none(),
        "offset leaked to another consumer"
    );
    client
        .delete_consumer_offset(&consumer, &id(s), &id(t), Some(1))
        .await
        .sdk("delete_consumer_offset")?;
    ensure!(
        client
            .get_consumer_offset(&consumer, &id(s), &id(t), Some(1))
            .await
            .sdk("get deleted")?
            .is_none(),
        "offset still there after delete"
    );
    let restart = poll(&client, s, t, 1, &consumer, PollingStrategy::next(), 1).await?;
    ensure!(
        offsets(&restart) == vec![0],
        "next after delete: {:?}",
        offsets(&restart)
    );
    expect_code(
        client
            .delete_consumer_offset(&consumer, &id(s), &id(t), Some(1))
            .await,
        3021,
        "delete a missing consumer offset",
    )?;
    Ok(())
}

/// Waits until the group's members hold the expected partition counts (sorted) and together
/// cover every partition exactly once; returns the assignment by member id.
pub async fn settled_assignment(
    client: &IggyClient,
    stream_id: u32,
    topic_id: u32,
    group: &str,
    expected_counts: &[u32],
    partitions_count: u32,
) -> anyhow::Result<BTreeMap<u32, Vec<u32>>> {
    let deadline = tokio::time::Instant::now() + SETTLE_TIMEOUT;
    let mut last = None;
    while tokio::time::Instant::now() < deadline {
        let details = client
            .get_consumer_group(&id(stream_id), &id(topic_id), &name(group))
            .await
            .sdk("get_consumer_group")?
            .context("group vanished")?;
        let mut counts: Vec<u32> = details
            .members
            .iter()
            .map(|m| m.partitions.len() as u32)
            .collect();
        counts.sort_unstable();
        let mut all: Vec<u32> = details
            .members
            .iter()
            .flat_map(|m| m.partitions.clone())
            .collect();
        all.sort_unstable();
        if counts == expected_counts && all == (0..partitions_count).collect::<Vec<_>>() {
            ensure!(
                details.members_count == expected_counts.len() as u32,
                "members_count {}",
                details.members_count
            );
            return Ok(details
                .members
                .iter()
                .map(|m| (m.id, m.partitions.clone()))
                .collect());
        }
        last = Some(details);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!(
        "group {group} never settled to partition counts {expected_counts:?}; last state {last:?}"
    )
}

/// The only member of group "g" owns all 4 partitions: polling as the group it sees each of
/// the 8 messages sent exactly once.
pub async fn group_member_polls_everything_once(
    admin: &IggyClient,
    a: &IggyClient,
    s: u32,
    t: u32,
) -> anyhow::Result<()> {
    // A polls as the group and, owning every partition, sees every message once.
    for partition in 0..4 {
        send_to(
            admin,
            s,
            t,
            &Partitioning::partition_id(partition),
            &format!("p{partition}"),
            2,
        )
        .await?;
    }
    let group = Consumer::group(name("g"));
    let mut got = BTreeSet::new();
    for _ in 0..12 {
        let polled = a
            .poll_messages(
                &id(s),
                &id(t),
                None,
                &group,
                &PollingStrategy::next(),
                10,
                true,
            )
            .await
            .sdk("group poll")?;
        for message in &polled.messages {
            let payload = String::from_utf8_lossy(&message.payload).into_owned();
            ensure!(
                got.insert(payload.clone()),
                "message {payload} delivered twice"
            );
        }
        if got.len() == 8 {
            break;
        }
    }
    ensure!(got.len() == 8, "group member polled {got:?}");
    Ok(())
}

/// Consumer group: partitions rebalance as members join, leave and disconnect; the remaining
/// member polls every message once.
pub async fn consumer_group_rebalances_on_join_leave_and_disconnect(
    endpoint: &Endpoint,
) -> anyhow::Result<()> {
    let admin = endpoint.client().await?;
    let (s, t) = stream_and_topic(&admin, "groups", "t", 4).await?;
    admin
        .create_consumer_group(&id(s), &id(t), "g")
        .await
        .sdk("create group")?;
    let a = endpoint.client().await?;
    let b = endpoint.client().await?;
    let c = endpoint.client().await?;
    a.join_consumer_group(&id(s), &id(t), &name("g"))
        .await
        .sdk("A joins")?;
    settled_assignment(&admin, s, t, "g", &[4], 4)
        .await
        .context("after A joined")?;
    b.join_consumer_group(&id(s), &id(t), &name("g"))
        .await
        .sdk("B joins")?;
    settled_assignment(&admin, s, t, "g", &[2, 2], 4)
        .await
        .context("after B joined")?;
    c.join_consumer_group(&id(s), &id(t), &name("g"))
        .await
        .sdk("C joins")?;
    settled_assignment(&admin, s, t, "g", &[1, 1, 2], 4)
        .await
        .context("after C joined")?;
    let me_a = a.get_me().await.sdk("get_me A")?;
    ensure!(
        me_a.consumer_groups_count == 1,
        "A's get_me shows {} groups",
        me_a.consumer_groups_count
    );

    b.leave_consumer_group(&id(s), &id(t), &name("g"))
        .await
        .sdk("B leaves")?;
    settled_assignment(&admin, s, t, "g", &[2, 2], 4)
        .await
        .context("after B left")?;
    expect_code(
        b.leave_consumer_group(&id(s), &id(t), &name("g")).await,
        5006,
        "leave twice",
    )?;

    c.disconnect().await.sdk("C disconnects")?;
    drop(c);
    let only_a = settled_assignment(&admin, s, t, "g", &[4], 4)
        .await
        .context("after C disconnected")?;
    ensure!(
        only_a.contains_key(&me_a.client_id),
        "A ({}) not the remaining member: {only_a:?}",
        me_a.client_id
    );

    group_member_polls_everything_once(&admin, &a, s, t).await?;
    Ok(())
}

/// After a restart: the consumer group, the user and the PAT are still there, and appends
/// continue after the recovered offsets.
pub async fn check_identities_and_appends(
    endpoint: &Endpoint,
    client: &IggyClient,
    s: u32,
) -> anyhow::Result<()> {
    ensure!(
        client
            .get_consumer_group(&id(s), &id(0), &name("group"))
            .await
            .sdk("get group")?
            .is_some(),
        "consumer group lost"
    );
    endpoint
        .client_for("carol", "pw-carol")
        .await
        .context("user lost")?;
    let tokens = client.get_personal_access_tokens().await.sdk("list PATs")?;
    ensure!(
        tokens.iter().any(|t| t.name == "restart-token"),
        "PAT lost: {tokens:?}"
    );
    // Appends continue after the recovered offsets.
    let more = send_to(client, s, 0, &Partitioning::partition_id(1), "g", 1).await?;
    let base = more.confirmations.first().map(|c| c.base_offset);
    let expected = client
        .get_topic(&id(s), &id(0))
        .await
        .sdk("get_topic")?
        .context("topic lost")?
        .partitions[1]
        .current_offset;
    ensure!(
        base == Some(expected),
        "append after restart at {base:?}, partition current {expected}"
    );
    Ok(())
}

pub async fn check_after_restart(
    endpoint: &Endpoint,
    s: u32,
    messages_count: u64,
) -> anyhow::Result<()> {
    let client = endpoint.client().await?;
    let stream = client
        .get_stream(&name("durable"))
        .await
        .sdk("get_stream")?
        .context("stream lost")?;
    ensure!(
        stream.id == s && stream.topics_count == 1,
        "stream {stream:?}"
    );
    let topic = client
        .get_topic(&id(s), &name("events"))
        .await
        .sdk("get_topic")?
        .context("topic lost")?;
    ensure!(
        topic.partitions_count == 2 && topic.messages_count == messages_count,
        "topic {topic:?}"
    );
    let polled = poll(
        &client,
        s,
        0,
        0,
        &Consumer::default(),
        PollingStrategy::first(),
        100,
    )
    .await?;
    ensure!(
        payloads(&polled) == (0..10).map(|i| format!("e-{i}")).collect::<Vec<_>>(),
        "partition 0 after restart: {:?}",
        payloads(&polled)
    );
    ensure!(
        offsets(&polled) == (0..10).collect::<Vec<u64>>(),
        "offsets {:?}",
        offsets(&polled)
    );
    let stored = client
        .get_consumer_offset(&Consumer::new(name("reader")), &id(s), &id(0), Some(0))
        .await
        .sdk("get offset")?
        .context("consumer offset lost")?;
    ensure!(
        stored.stored_offset == 6,
        "stored offset {}",
        stored.stored_offset
    );
    let next = poll(
        &client,
        s,
        0,
        0,
        &Consumer::new(name("reader")),
        PollingStrategy::next(),
        2,
    )
    .await?;
    ensure!(
        offsets(&next) == vec![7, 8],
        "next after restart {:?}",
        offsets(&next)
    );
    let auto_committed = client
        .get_consumer_offset(&Consumer::new(name("auto-reader")), &id(s), &id(0), Some(0))
        .await
        .sdk("get auto-committed offset")?
        .context("auto-committed offset lost")?;
    ensure!(
        auto_committed.stored_offset == 3,
        "auto-committed offset {}",
        auto_committed.stored_offset
    );
    check_identities_and_appends(endpoint, &client, s).await
}

/// Creates what a restart must keep (stream "durable" with 13 messages over two partitions, a
/// stored and an auto-committed consumer offset, a consumer group, a user and a personal access
/// token); returns the stream id.
pub async fn write_what_a_restart_must_keep(endpoint: &Endpoint) -> anyhow::Result<u32> {
    let client = endpoint.client().await?;
    let (s, t) = stream_and_topic(&client, "durable", "events", 2).await?;
    send_to(&client, s, t, &Partitioning::partition_id(0), "e", 10).await?;
    send_to(&client, s, t, &Partitioning::partition_id(1), "f", 3).await?;
    client
        .store_consumer_offset(&Consumer::new(name("reader")), &id(s), &id(t), Some(0), 6)
        .await
        .sdk("store offset")?;
    // An auto-commit is written some time after the poll (storage.auto_commit_write_delay_ms);
    // a graceful stop must write it.
    let committed = poll_committing(
        &client,
        s,
        t,
        0,
        &Consumer::new(name("auto-reader")),
        PollingStrategy::next(),
        4,
    )
    .await?;
    ensure!(
        offsets(&committed) == vec![0, 1, 2, 3],
        "auto-committing poll {:?}",
        offsets(&committed)
    );
    client
        .create_consumer_group(&id(s), &id(t), "group")
        .await
        .sdk("create group")?;
    client
        .create_user("carol", "pw-carol", UserStatus::Active, None)
        .await
        .sdk("create user")?;
    client
        .create_personal_access_token("restart-token", PersonalAccessTokenExpiry::NeverExpire)
        .await
        .sdk("create PAT")?;
    Ok(s)
}

/// Messages polled per request while reading whole partitions.
const READ_BACK_CHUNK_MESSAGES: u32 = 1000;

/// A message as polled back, with the (stream, topic, partition) it was read from.
pub type StoredMessage = ((u32, u32, u32), IggyMessage);

/// Every message of every partition of every topic, read by offset from 0: what a restart must
/// give back byte for byte (header, user headers, payload).
pub async fn all_stored_messages(client: &IggyClient) -> anyhow::Result<Vec<StoredMessage>> {
    let mut stored = Vec::new();
    for stream in client.get_streams().await.sdk("get_streams")? {
        let details = client
            .get_stream(&id(stream.id))
            .await
            .sdk("get_stream")?
            .with_context(|| format!("stream {} vanished", stream.id))?;
        for topic in details.topics {
            for partition_id in 0..topic.partitions_count {
                let location = (stream.id, topic.id, partition_id);
                read_partition(client, location, &mut stored).await?;
            }
        }
    }
    Ok(stored)
}

async fn read_partition(
    client: &IggyClient,
    location: (u32, u32, u32),
    stored: &mut Vec<StoredMessage>,
) -> anyhow::Result<()> {
    let mut next_offset = 0;
    loop {
        let strategy = PollingStrategy::offset(next_offset);
        let polled = poll_with(
            client,
            location,
            &Consumer::default(),
            strategy,
            READ_BACK_CHUNK_MESSAGES,
            false,
        )
        .await?;
        let Some(last) = polled.messages.last() else {
            return Ok(());
        };
        next_offset = last.header.offset + 1;
        stored.extend(polled.messages.into_iter().map(|m| (location, m)));
    }
}

/// The messages read back after a restart are exactly those read before it.
pub fn ensure_same_messages(
    before: &[StoredMessage],
    after: &[StoredMessage],
) -> anyhow::Result<()> {
    let differs = before.iter().zip(after).position(|(b, a)| b != a);
    if let Some(index) = differs {
        let ((location, message), (location_after, _)) = (&before[index], &after[index]);
        bail!(
            "message {index} of {} differs after the restart: {location:?} offset {} was \
             stored, {location_after:?} came back",
            before.len(),
            message.header.offset
        );
    }
    ensure!(
        before.len() == after.len(),
        "{} messages before the restart, {} after",
        before.len(),
        after.len()
    );
    Ok(())
}

/// An SDK client connected before the restart carries on after it: the SDK reconnects and signs
/// in again on its own, and reads see the same data.
pub async fn survivor_reconnects(
    survivor: &IggyClient,
    before: &[StoredMessage],
) -> anyhow::Result<()> {
    let after = all_stored_messages(survivor)
        .await
        .context("reads on a client connected before the restart")?;
    ensure_same_messages(before, &after)
}
