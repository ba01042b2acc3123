//! The official `iggy` 0.11 SDK's HTTP client (`HttpClient`) against riptide-control's HTTP API,
//! which runs every request over the SDK's TCP client against the real dataplane: the conformance
//! core scenarios, through Iggy's REST routes.

mod common;

use anyhow::{ensure, Context as _};
use common::Appliance;
use iggy::prelude::*;
use std::sync::Arc;
use std::time::Duration;

/// Longest a scenario may take (the appliance is already up).
const SCENARIO_TIMEOUT: Duration = Duration::from_secs(120);

fn http_client(appliance: &Appliance) -> HttpClient {
    HttpClient::create(Arc::new(HttpClientConfig {
        api_url: appliance.http_url(),
        ..HttpClientConfig::default()
    }))
    .expect("HttpClient")
}

async fn root(appliance: &Appliance) -> anyhow::Result<HttpClient> {
    let client = http_client(appliance);
    let identity = client
        .login_user("iggy", "iggy")
        .await
        .context("root login")?;
    ensure!(identity.user_id == 0, "root is user 0: {identity:?}");
    ensure!(identity.access_token.is_some(), "a login issues a token");
    Ok(client)
}

fn run(appliance: &Appliance, scenario: impl std::future::Future<Output = anyhow::Result<()>>) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let result = runtime.block_on(async { tokio::time::timeout(SCENARIO_TIMEOUT, scenario).await });
    match result {
        Ok(Ok(())) => {}
        Ok(Err(e)) => panic!("{e:#}\n--- riptide-control log ---\n{}", appliance.log()),
        Err(_) => panic!("scenario timed out\n{}", appliance.log()),
    }
    // The control process kept serving.
    let (code, body) = common::http(&appliance.control, "GET", "/health", "").expect("health");
    assert_eq!(code, 200, "{body}");
}

fn id(n: u32) -> Identifier {
    Identifier::numeric(n).unwrap()
}

fn text_messages(tag: &str, count: u32) -> Vec<IggyMessage> {
    (0..count)
        .map(|i| {
            IggyMessage::builder()
                .payload(format!("{tag}-{i}").into())
                .build()
                .unwrap()
        })
        .collect()
}

fn payloads(polled: &PolledMessages) -> Vec<String> {
    polled
        .messages
        .iter()
        .map(|m| String::from_utf8_lossy(&m.payload).to_string())
        .collect()
}

fn offsets(polled: &PolledMessages) -> Vec<u64> {
    polled.messages.iter().map(|m| m.header.offset).collect()
}

#[test]
fn logins_by_password_and_token_users_and_permissions() {
    let Some(appliance) = Appliance::start() else {
        return;
    };
    run(&appliance, async {
        let client = http_client(&appliance);
        client.ping().await.context("ping needs no login")?;
        let refused = client.get_streams().await;
        ensure!(refused.is_err(), "no token, no streams: {refused:?}");
        let wrong = client.login_user("iggy", "wrong").await;
        ensure!(
            matches!(wrong, Err(IggyError::HttpResponseError(400, ref body)) if body.contains("\"id\":42")),
            "a wrong password is Iggy's InvalidCredentials (400): {wrong:?}"
        );
        let root = root(&appliance).await?;
        let refreshed = root.refresh_access_token().await.context("refresh")?;
        ensure!(refreshed.user_id == 0, "{refreshed:?}");
        root.get_streams()
            .await
            .context("the refreshed token works")?;

        users_and_passwords(&root, &appliance).await?;
        permissions_are_the_dataplanes(&root, &appliance).await?;
        tokens_log_in_and_die_with_their_deletion(&root, &appliance).await?;

        let stats = root.get_stats().await.context("stats")?;
        ensure!(stats.clients_count >= 1, "{stats:?}");
        let clients = root.get_clients().await.context("clients")?;
        ensure!(!clients.is_empty(), "the pool's connections are clients");
        let one = root.get_client(clients[0].client_id).await?;
        ensure!(one.is_some(), "client by id");
        ensure!(
            root.get_client(999_999).await?.is_none(),
            "a missing client"
        );
        let metadata = root
            .get_cluster_metadata()
            .await
            .context("cluster metadata")?;
        let http_port: u16 = appliance
            .http_address()
            .rsplit(':')
            .next()
            .unwrap()
            .parse()?;
        ensure!(
            metadata.nodes.len() == 1 && metadata.nodes[0].endpoints.http == http_port,
            "the node advertises this HTTP port: {metadata:?}"
        );
        let snapshot = root
            .snapshot(SnapshotCompression::Stored, vec![SystemSnapshotType::Test])
            .await
            .context("snapshot")?;
        let mut zip = zip::ZipArchive::new(std::io::Cursor::new(snapshot.0)).context("a zip")?;
        let mut test = String::new();
        std::io::Read::read_to_string(&mut zip.by_name("test.txt")?, &mut test)?;
        ensure!(
            zip.len() == 1 && test == "test\n",
            "{} entries, test.txt {test:?}",
            zip.len()
        );
        let topic_keys = root
            .describe_options(OptionsScope::Topic)
            .await
            .context("describe_options(topic)")?;
        ensure!(
            topic_keys.len() == 9
                && topic_keys
                    .iter()
                    .any(|spec| spec.key == topic_option_keys::SEGMENT_SIZE),
            "{topic_keys:?}"
        );
        ensure!(root
            .describe_options(OptionsScope::User)
            .await
            .context("describe_options(user)")?
            .is_empty());
        root.logout_user().await.context("logout")?;
        ensure!(root.get_streams().await.is_err(), "logged out");
        Ok(())
    });
}

async fn users_and_passwords(root: &HttpClient, appliance: &Appliance) -> anyhow::Result<()> {
    let created = root
        .create_user("alice", "alice-pass", UserStatus::Active, None)
        .await
        .context("create user")?;
    ensure!(created.username == "alice", "{created:?}");
    let users = root.get_users().await?;
    ensure!(users.iter().any(|u| u.username == "alice"), "{users:?}");
    let by_name = root.get_user(&Identifier::named("alice")?).await?;
    ensure!(by_name.map(|u| u.id) == Some(created.id), "by name");
    ensure!(
        root.get_user(&Identifier::named("nobody")?)
            .await?
            .is_none(),
        "a missing user is None (404)"
    );

    let alice = http_client(appliance);
    alice.login_user("alice", "alice-pass").await?;
    alice
        .change_password(&id(created.id), "alice-pass", "alice-new")
        .await
        .context("own password change")?;
    // The session that changed it goes on with the new password.
    let me = alice.get_user(&id(created.id)).await?;
    ensure!(me.is_some(), "reading oneself after the change");
    let old = http_client(appliance)
        .login_user("alice", "alice-pass")
        .await;
    ensure!(old.is_err(), "the old password is refused");
    http_client(appliance)
        .login_user("alice", "alice-new")
        .await
        .context("the new password works")?;

    root.update_user(
        &id(created.id),
        Some("alice2"),
        Some(UserStatus::Inactive),
        &UserUpdateOptions::default(),
    )
    .await
    .context("rename and deactivate")?;
    let details = root.get_user(&id(created.id)).await?.context("alice2")?;
    ensure!(
        details.username == "alice2" && details.status == UserStatus::Inactive,
        "{details:?}"
    );
    ensure!(
        alice.get_streams().await.is_err(),
        "a deactivated user's session ended"
    );
    root.delete_user(&id(created.id)).await.context("delete")?;
    ensure!(root.get_user(&id(created.id)).await?.is_none(), "deleted");
    Ok(())
}

/// A user without rights gets 403 with Iggy's Unauthorized (41); granted rights work.
async fn permissions_are_the_dataplanes(
    root: &HttpClient,
    appliance: &Appliance,
) -> anyhow::Result<()> {
    root.create_stream("guarded").await?;
    let nobody = root
        .create_user("nobody", "nobody-pass", UserStatus::Active, None)
        .await?;
    let client = http_client(appliance);
    client.login_user("nobody", "nobody-pass").await?;
    let denied = client.get_streams().await;
    ensure!(
        matches!(denied, Err(IggyError::Unauthorized)),
        "403 → Unauthorized: {denied:?}"
    );
    let denied = client.create_stream("mine").await;
    ensure!(matches!(denied, Err(IggyError::Unauthorized)), "{denied:?}");
    let denied = client
        .snapshot(SnapshotCompression::Deflated, vec![SystemSnapshotType::All])
        .await;
    ensure!(
        matches!(denied, Err(IggyError::Unauthorized)),
        "a snapshot needs read_servers: {denied:?}"
    );
    let reader = Permissions {
        global: GlobalPermissions {
            read_streams: true,
            ..GlobalPermissions::default()
        },
        streams: None,
    };
    root.update_permissions(&id(nobody.id), Some(reader))
        .await
        .context("grant read_streams")?;
    let streams = client.get_streams().await.context("granted")?;
    ensure!(streams.iter().any(|s| s.name == "guarded"), "{streams:?}");
    let still = client.delete_stream(&Identifier::named("guarded")?).await;
    ensure!(matches!(still, Err(IggyError::Unauthorized)), "{still:?}");
    root.delete_user(&id(nobody.id)).await?;
    root.delete_stream(&Identifier::named("guarded")?).await?;
    Ok(())
}

async fn tokens_log_in_and_die_with_their_deletion(
    root: &HttpClient,
    appliance: &Appliance,
) -> anyhow::Result<()> {
    let raw = root
        .create_personal_access_token("ci-token", PersonalAccessTokenExpiry::NeverExpire)
        .await
        .context("create token")?;
    let tokens = root.get_personal_access_tokens().await?;
    ensure!(tokens.iter().any(|t| t.name == "ci-token"), "{tokens:?}");
    let by_token = http_client(appliance);
    let identity = by_token
        .login_with_personal_access_token(&raw.token)
        .await
        .context("token login")?;
    ensure!(identity.user_id == 0, "{identity:?}");
    by_token
        .get_streams()
        .await
        .context("token session works")?;
    // A token as the bearer itself, as Iggy accepts it.
    let bearer = HttpClient::create(Arc::new(HttpClientConfig {
        api_url: appliance.http_url(),
        jwt: Some(raw.token.clone()),
        ..HttpClientConfig::default()
    }))?;
    bearer.get_streams().await.context("raw token bearer")?;
    root.delete_personal_access_token("ci-token").await?;
    ensure!(
        by_token.get_streams().await.is_err(),
        "the deleted token's session ended"
    );
    ensure!(
        bearer.get_streams().await.is_err(),
        "the deleted token is refused as a bearer"
    );
    root.get_streams()
        .await
        .context("the password session lives on")?;
    Ok(())
}

#[test]
fn streams_topics_partitions_and_segments() {
    let Some(appliance) = Appliance::start() else {
        return;
    };
    run(&appliance, async {
        let client = root(&appliance).await?;
        let stream = client.create_stream("orders").await?;
        ensure!(stream.name == "orders", "{stream:?}");
        let again = client.create_stream("orders").await;
        ensure!(
            matches!(again, Err(IggyError::HttpResponseError(400, ref b)) if b.contains("stream_name_already_exists")),
            "{again:?}"
        );
        let s = Identifier::named("orders")?;
        let by_id = client.get_stream(&id(stream.id)).await?.context("by id")?;
        ensure!(by_id.name == "orders", "{by_id:?}");
        ensure!(
            client
                .get_stream(&Identifier::named("none")?)
                .await?
                .is_none(),
            "404 → None"
        );
        client
            .update_stream(&s, "orders-v2", &StreamUpdateOptions::default())
            .await?;
        let s = Identifier::named("orders-v2")?;
        let options = TopicCreateOptions {
            partitions_count: Some(2),
            message_expiry: Some(IggyExpiry::NeverExpire),
            ..TopicCreateOptions::default()
        };
        let topic = client.create_topic(&s, "eu", &options).await?;
        ensure!(topic.partitions_count == 2, "{topic:?}");
        let t = Identifier::named("eu")?;
        client
            .update_topic(&s, &t, "eu-west", &TopicUpdateOptions::default())
            .await?;
        let t = Identifier::named("eu-west")?;
        let topics = client.get_topics(&s).await?;
        ensure!(
            topics.len() == 1 && topics[0].name == "eu-west",
            "{topics:?}"
        );

        client.create_partitions(&s, &t, 3).await.context("add 3")?;
        let details = client.get_topic(&s, &t).await?.context("topic")?;
        ensure!(details.partitions_count == 5, "{details:?}");
        client
            .delete_partitions(&s, &t, 2)
            .await
            .context("remove 2")?;
        let details = client.get_topic(&s, &t).await?.context("topic")?;
        ensure!(details.partitions_count == 3, "{details:?}");

        let mut messages = text_messages("m", 10);
        client
            .send_messages(&s, &t, &Partitioning::partition_id(1), &mut messages)
            .await?;
        let details = client.get_topic(&s, &t).await?.context("topic")?;
        let segments = details.partitions[1].segments_count;
        ensure!(details.messages_count == 10 && segments >= 1, "{details:?}");
        client
            .delete_segments(&s, &t, 1, segments)
            .await
            .context("delete segments")?;
        client.purge_topic(&s, &t).await.context("purge topic")?;
        let details = client.get_topic(&s, &t).await?.context("topic")?;
        ensure!(details.messages_count == 0, "purged: {details:?}");
        client.purge_stream(&s).await.context("purge stream")?;
        client.delete_topic(&s, &t).await?;
        ensure!(client.get_topic(&s, &t).await?.is_none(), "deleted topic");
        client.delete_stream(&s).await?;
        ensure!(client.get_stream(&s).await?.is_none(), "deleted stream");
        let missing = client.delete_stream(&s).await;
        ensure!(
            matches!(missing, Err(IggyError::ResourceNotFound(ref b))
                if b.contains("\"id\":1010") && b.contains("orders-v2")),
            "deleting a missing stream: 404 with Iggy's code and the name: {missing:?}"
        );
        Ok(())
    });
}

#[test]
fn send_poll_every_strategy_offsets_and_consumer_groups() {
    let Some(appliance) = Appliance::start() else {
        return;
    };
    run(&appliance, async {
        let client = root(&appliance).await?;
        client.create_stream("s").await?;
        let options = TopicCreateOptions {
            partitions_count: Some(3),
            ..TopicCreateOptions::default()
        };
        client
            .create_topic(&Identifier::named("s")?, "t", &options)
            .await?;
        let (s, t) = (Identifier::named("s")?, Identifier::named("t")?);
        every_partitioning(&client, &s, &t).await?;
        let single = TopicCreateOptions {
            partitions_count: Some(1),
            ..TopicCreateOptions::default()
        };
        client.create_topic(&s, "strategies", &single).await?;
        let strategies = Identifier::named("strategies")?;
        every_strategy(&client, &s, &strategies).await?;
        offsets_store_get_delete(&client, &s, &strategies).await?;
        groups(&client, &s, &t).await?;
        Ok(())
    });
}

async fn every_partitioning(
    client: &HttpClient,
    s: &Identifier,
    t: &Identifier,
) -> anyhow::Result<()> {
    let mut messages = text_messages("p2", 3);
    let (response, durability) = client
        .send_messages_with_durability(s, t, &Partitioning::partition_id(2), &mut messages)
        .await?;
    ensure!(
        durability == Some(Durability::Persisted),
        "acknowledged on stable storage: {durability:?}"
    );
    let confirmation = response.confirmations.first().context("confirmation")?;
    ensure!(
        confirmation.partition_id == 2 && confirmation.base_offset == 0,
        "{response:?}"
    );
    for partitioning in [
        Partitioning::balanced(),
        Partitioning::messages_key_str("customer-7")?,
    ] {
        let mut messages = text_messages("k", 2);
        client
            .send_messages(s, t, &partitioning, &mut messages)
            .await?;
    }
    let mut with_headers = vec![IggyMessage::builder()
        .id(42)
        .payload("h".into())
        .user_headers(
            [(HeaderKey::try_from("k")?, HeaderValue::try_from("v")?)]
                .into_iter()
                .collect(),
        )
        .build()?];
    client
        .send_messages(s, t, &Partitioning::partition_id(2), &mut with_headers)
        .await?;
    let polled = client
        .poll_messages(
            s,
            t,
            Some(2),
            &Consumer::default(),
            &PollingStrategy::offset(3),
            1,
            false,
        )
        .await?;
    let message = polled.messages.first().context("the headed message")?;
    ensure!(message.header.id == 42, "{message:?}");
    let headers = message.user_headers_map()?.context("headers")?;
    ensure!(headers.len() == 1, "{headers:?}");
    let empty = client
        .send_messages(s, t, &Partitioning::partition_id(0), &mut [])
        .await;
    ensure!(empty.is_err(), "an empty batch is refused");
    Ok(())
}

async fn every_strategy(client: &HttpClient, s: &Identifier, t: &Identifier) -> anyhow::Result<()> {
    let mut early = text_messages("early", 5);
    client
        .send_messages(s, t, &Partitioning::partition_id(0), &mut early)
        .await?;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let middle_us = IggyTimestamp::now().as_micros();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let mut late = text_messages("late", 5);
    client
        .send_messages(s, t, &Partitioning::partition_id(0), &mut late)
        .await?;
    let reader = Consumer::new(Identifier::named("reader")?);
    let poll = |strategy: PollingStrategy, count: u32| {
        let reader = &reader;
        async move {
            client
                .poll_messages(s, t, Some(0), reader, &strategy, count, false)
                .await
        }
    };
    let by_offset = poll(PollingStrategy::offset(3), 4).await?;
    ensure!(
        offsets(&by_offset) == [3, 4, 5, 6],
        "offset: {:?}",
        offsets(&by_offset)
    );
    let first = poll(PollingStrategy::first(), 2).await?;
    ensure!(
        payloads(&first) == ["early-0", "early-1"],
        "first: {:?}",
        payloads(&first)
    );
    let last = poll(PollingStrategy::last(), 3).await?;
    ensure!(offsets(&last) == [7, 8, 9], "last: {:?}", offsets(&last));
    let by_time = poll(PollingStrategy::timestamp(middle_us.into()), 10).await?;
    ensure!(
        payloads(&by_time).first().map(String::as_str) == Some("late-0"),
        "timestamp: {:?}",
        payloads(&by_time)
    );
    ensure!(
        poll(PollingStrategy::offset(10), 5)
            .await?
            .messages
            .is_empty(),
        "past the end"
    );
    // next with auto-commit walks the partition.
    let mut seen = Vec::new();
    for _ in 0..4 {
        let polled = client
            .poll_messages(s, t, Some(0), &reader, &PollingStrategy::next(), 3, true)
            .await?;
        seen.extend(offsets(&polled));
    }
    ensure!(
        seen == (0..10).collect::<Vec<u64>>(),
        "next walked {seen:?}"
    );
    let missing = client
        .poll_messages(s, t, Some(9), &reader, &PollingStrategy::first(), 1, false)
        .await;
    ensure!(missing.is_err(), "a missing partition: {missing:?}");
    Ok(())
}

async fn offsets_store_get_delete(
    client: &HttpClient,
    s: &Identifier,
    t: &Identifier,
) -> anyhow::Result<()> {
    let consumer = Consumer::new(id(7));
    ensure!(
        client
            .get_consumer_offset(&consumer, s, t, Some(0))
            .await?
            .is_none(),
        "nothing stored yet"
    );
    client
        .store_consumer_offset(&consumer, s, t, Some(0), 4)
        .await?;
    let info = client
        .get_consumer_offset(&consumer, s, t, Some(0))
        .await?
        .context("stored")?;
    ensure!(
        info.stored_offset == 4 && info.current_offset == 9,
        "{info:?}"
    );
    let next = client
        .poll_messages(s, t, Some(0), &consumer, &PollingStrategy::next(), 1, false)
        .await?;
    ensure!(
        offsets(&next) == [5],
        "next after the stored offset: {:?}",
        offsets(&next)
    );
    let beyond = client
        .store_consumer_offset(&consumer, s, t, Some(0), 100)
        .await;
    ensure!(beyond.is_err(), "an offset past the end is refused");
    client
        .delete_consumer_offset(&consumer, s, t, Some(0))
        .await?;
    ensure!(
        client
            .get_consumer_offset(&consumer, s, t, Some(0))
            .await?
            .is_none(),
        "deleted"
    );
    Ok(())
}

async fn groups(client: &HttpClient, s: &Identifier, t: &Identifier) -> anyhow::Result<()> {
    let group = client.create_consumer_group(s, t, "billing").await?;
    ensure!(
        group.name == "billing" && group.partitions_count == 3,
        "{group:?}"
    );
    let groups = client.get_consumer_groups(s, t).await?;
    ensure!(groups.len() == 1, "{groups:?}");
    let by_name = client
        .get_consumer_group(s, t, &Identifier::named("billing")?)
        .await?
        .context("by name")?;
    ensure!(
        by_name.id == group.id && by_name.members_count == 0,
        "{by_name:?}"
    );
    let join = client
        .join_consumer_group(s, t, &Identifier::named("billing")?)
        .await;
    ensure!(
        matches!(join, Err(IggyError::FeatureUnavailable)),
        "the HTTP transport cannot join (as with Iggy): {join:?}"
    );
    client.delete_consumer_group(s, t, &id(group.id)).await?;
    ensure!(
        client
            .get_consumer_group(s, t, &id(group.id))
            .await?
            .is_none(),
        "deleted"
    );
    Ok(())
}
