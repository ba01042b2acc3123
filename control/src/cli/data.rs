//! Data-plane commands over the official Iggy SDK.

use super::context::Target;
use super::output::{emit, print_json, println_checked, table};
use super::{
    exit, CliError, CliResult, GroupCommand, MessageCommand, OutputFormat, PartitionCommand,
    PollArgs, SendArgs, StreamCommand, TopicCommand, TopicOptions, UserCommand,
};
use crate::constants::{MESSAGE_PAYLOAD_SIZE_MAX_BYTES, SEND_MESSAGES_MAX};
use base64::Engine as _;
use iggy::prelude::*;
use serde_json::json;
use std::io::{Read, Write};
use std::str::FromStr;

/// Maps an SDK error to an exit code: connection problems, missing things, refusals.
fn server_error(context: &str, error: IggyError) -> CliError {
    let text = error.to_string();
    let lower = text.to_ascii_lowercase();
    let code = if matches!(
        error,
        IggyError::CannotEstablishConnection | IggyError::NotConnected | IggyError::Disconnected
    ) || lower.contains("connection")
    {
        exit::UNREACHABLE
    } else if lower.contains("not found") || lower.contains("does not exist") {
        exit::NOT_FOUND
    } else {
        exit::REFUSED
    };
    CliError::new(code, format!("{context}: {text}"))
}

/// A connected, signed-in client.
async fn connect(target: &Target) -> Result<IggyClient, CliError> {
    let mut url = format!(
        "iggy://{}:{}@{}?reconnection_retries=1&reconnection_interval=200ms",
        target.username, target.password, target.address
    );
    if target.tls {
        url.push_str("&tls=true");
        if let Some(domain) = &target.tls_domain {
            url.push_str(&format!("&tls_domain={domain}"));
        }
        if let Some(ca_file) = &target.tls_ca_file {
            url.push_str(&format!("&tls_ca_file={}", ca_file.display()));
        }
    }
    let client = IggyClient::from_connection_string(&url).map_err(|e| {
        CliError::new(
            exit::USAGE,
            format!("bad address '{}': {e}", target.address),
        )
    })?;
    client.connect().await.map_err(|e| match e {
        IggyError::InvalidCredentials | IggyError::Unauthenticated => CliError::new(
            exit::REFUSED,
            format!("sign-in as '{}' refused: {e}", target.username),
        ),
        other => CliError::new(
            exit::UNREACHABLE,
            format!("cannot reach the appliance at {}: {other}", target.address),
        ),
    })?;
    Ok(client)
}

fn identifier(kind: &str, text: &str) -> Result<Identifier, CliError> {
    Identifier::from_str(text)
        .map_err(|e| CliError::new(exit::USAGE, format!("bad {kind} '{text}': {e}")))
}

fn not_found(what: String) -> CliError {
    CliError::new(exit::NOT_FOUND, format!("{what} not found"))
}

pub async fn stream(target: &Target, command: StreamCommand, json: bool) -> CliResult {
    let client = connect(target).await?;
    match command {
        StreamCommand::Create { name } => {
            let created = client
                .create_stream(&name)
                .await
                .map_err(|e| server_error("create stream", e))?;
            emit(json, &created, || {
                format!("created stream {} '{}'", created.id, created.name)
            })
        }
        StreamCommand::List => {
            let streams = client
                .get_streams()
                .await
                .map_err(|e| server_error("list streams", e))?;
            emit(json, &streams, || streams_table(&streams))
        }
        StreamCommand::Get { stream } => {
            let id = identifier("stream", &stream)?;
            let details = client
                .get_stream(&id)
                .await
                .map_err(|e| server_error("get stream", e))?;
            let details = details.ok_or_else(|| not_found(format!("stream '{stream}'")))?;
            emit(json, &details, || stream_text(&details))
        }
        StreamCommand::Update { stream, name } => {
            let id = identifier("stream", &stream)?;
            client
                .update_stream(&id, &name, &StreamUpdateOptions::default())
                .await
                .map_err(|e| server_error("update stream", e))?;
            emit(json, &json!({"updated": stream, "name": name}), || {
                format!("stream '{stream}' renamed to '{name}'")
            })
        }
        StreamCommand::Delete { stream } => {
            let id = identifier("stream", &stream)?;
            client
                .delete_stream(&id)
                .await
                .map_err(|e| server_error("delete stream", e))?;
            emit(json, &json!({"deleted": stream}), || {
                format!("deleted stream '{stream}'")
            })
        }
        StreamCommand::Purge { stream } => {
            let id = identifier("stream", &stream)?;
            client
                .purge_stream(&id)
                .await
                .map_err(|e| server_error("purge stream", e))?;
            emit(json, &json!({"purged": stream}), || {
                format!("purged stream '{stream}'")
            })
        }
    }
}

fn parse_option<T: FromStr>(what: &str, text: &Option<String>) -> Result<Option<T>, CliError>
where
    T::Err: std::fmt::Display,
{
    text.as_deref()
        .map(|t| {
            T::from_str(t).map_err(|e| CliError::new(exit::USAGE, format!("bad {what} '{t}': {e}")))
        })
        .transpose()
}

pub async fn topic(target: &Target, command: TopicCommand, json: bool) -> CliResult {
    let client = connect(target).await?;
    match command {
        TopicCommand::Create {
            stream,
            name,
            partitions,
            options,
        } => create_topic(&client, &stream, &name, partitions, &options, json).await,
        TopicCommand::List { stream } => {
            let stream_id = identifier("stream", &stream)?;
            let topics = client
                .get_topics(&stream_id)
                .await
                .map_err(|e| server_error("list topics", e))?;
            emit(json, &topics, || topics_table(&topics))
        }
        TopicCommand::Get { stream, topic } => {
            let details = topic_details(&client, &stream, &topic).await?;
            emit(json, &details, || topic_text(&details))
        }
        TopicCommand::Update {
            stream,
            topic,
            name,
            options,
        } => update_topic(&client, &stream, &topic, name, &options, json).await,
        TopicCommand::Delete { stream, topic } => {
            client
                .delete_topic(
                    &identifier("stream", &stream)?,
                    &identifier("topic", &topic)?,
                )
                .await
                .map_err(|e| server_error("delete topic", e))?;
            emit(json, &json!({"deleted": topic, "stream": stream}), || {
                format!("deleted topic '{topic}' of stream '{stream}'")
            })
        }
        TopicCommand::Purge { stream, topic } => {
            client
                .purge_topic(
                    &identifier("stream", &stream)?,
                    &identifier("topic", &topic)?,
                )
                .await
                .map_err(|e| server_error("purge topic", e))?;
            emit(json, &json!({"purged": topic, "stream": stream}), || {
                format!("purged topic '{topic}' of stream '{stream}'")
            })
        }
    }
}

async fn update_topic(
    client: &IggyClient,
    stream: &str,
    topic: &str,
    name: Option<String>,
    options: &TopicOptions,
    json: bool,
) -> CliResult {
    let details = topic_details(client, stream, topic).await?;
    let name = name.unwrap_or_else(|| details.name.clone());
    let update = TopicUpdateOptions {
        compression_algorithm: parse_option("compression", &options.compression)?,
        message_expiry: parse_option("message expiry", &options.message_expiry)?,
        max_topic_size: parse_option("max size", &options.max_size)?,
        ..TopicUpdateOptions::default()
    };
    client
        .update_topic(
            &identifier("stream", stream)?,
            &identifier("topic", topic)?,
            &name,
            &update,
        )
        .await
        .map_err(|e| server_error("update topic", e))?;
    emit(
        json,
        &json!({"updated": topic, "stream": stream, "name": name}),
        || format!("updated topic '{topic}' of stream '{stream}'"),
    )
}

async fn topic_details(
    client: &IggyClient,
    stream: &str,
    topic: &str,
) -> Result<TopicDetails, CliError> {
    client
        .get_topic(&identifier("stream", stream)?, &identifier("topic", topic)?)
        .await
        .map_err(|e| server_error("get topic", e))?
        .ok_or_else(|| not_found(format!("topic '{topic}' of stream '{stream}'")))
}

fn partitions_table(partitions: &[Partition]) -> String {
    let mut t = table(&[
        "partition",
        "current offset",
        "messages",
        "segments",
        "size",
    ]);
    for p in partitions {
        t.add_row(vec![
            p.id.to_string(),
            p.current_offset.to_string(),
            p.messages_count.to_string(),
            p.segments_count.to_string(),
            p.size.to_string(),
        ]);
    }
    t.to_string()
}

pub async fn partition(target: &Target, command: PartitionCommand, json: bool) -> CliResult {
    let client = connect(target).await?;
    match command {
        PartitionCommand::Create {
            stream,
            topic,
            count,
        } => {
            client
                .create_partitions(
                    &identifier("stream", &stream)?,
                    &identifier("topic", &topic)?,
                    count,
                )
                .await
                .map_err(|e| server_error("create partitions", e))?;
            emit(
                json,
                &json!({"created": count, "stream": stream, "topic": topic}),
                || format!("added {count} partition(s) to topic '{topic}'"),
            )
        }
        PartitionCommand::Delete {
            stream,
            topic,
            count,
        } => {
            client
                .delete_partitions(
                    &identifier("stream", &stream)?,
                    &identifier("topic", &topic)?,
                    count,
                )
                .await
                .map_err(|e| server_error("delete partitions", e))?;
            emit(
                json,
                &json!({"deleted": count, "stream": stream, "topic": topic}),
                || format!("removed {count} partition(s) from topic '{topic}'"),
            )
        }
        PartitionCommand::List { stream, topic } => {
            let details = topic_details(&client, &stream, &topic).await?;
            emit(json, &details.partitions, || {
                partitions_table(&details.partitions)
            })
        }
        PartitionCommand::Get {
            stream,
            topic,
            partition,
        } => {
            let details = topic_details(&client, &stream, &topic).await?;
            let found = details.partitions.iter().find(|p| p.id == partition);
            let found = found
                .ok_or_else(|| not_found(format!("partition {partition} of topic '{topic}'")))?;
            emit(json, found, || {
                partitions_table(std::slice::from_ref(found))
            })
        }
        PartitionCommand::Purge {
            stream,
            topic,
            partition,
        } => purge_partition(&client, &stream, &topic, partition, json).await,
    }
}

/// The payloads to send: arguments, else the lines (or the whole) of a file or stdin.
fn collect_payloads(
    messages: Vec<String>,
    file: Option<&std::path::Path>,
    whole: bool,
) -> Result<Vec<Vec<u8>>, CliError> {
    if !messages.is_empty() {
        return Ok(messages.into_iter().map(String::into_bytes).collect());
    }
    let mut input = Vec::new();
    let limit = (MESSAGE_PAYLOAD_SIZE_MAX_BYTES * 16) as u64;
    let read = match file {
        Some(path) => {
            std::fs::File::open(path).and_then(|f| f.take(limit + 1).read_to_end(&mut input))
        }
        None => std::io::stdin()
            .lock()
            .take(limit + 1)
            .read_to_end(&mut input),
    };
    read.map_err(|e| CliError::new(exit::FAILURE, format!("cannot read the messages: {e}")))?;
    if input.len() as u64 > limit {
        return Err(CliError::new(
            exit::FAILURE,
            format!("input larger than {limit} bytes"),
        ));
    }
    let payloads: Vec<Vec<u8>> = if whole {
        vec![input]
    } else {
        input
            .split(|&b| b == b'\n')
            .filter(|line| !line.is_empty())
            .map(<[u8]>::to_vec)
            .collect()
    };
    if payloads.is_empty() || payloads.iter().all(Vec::is_empty) {
        return Err(CliError::new(
            exit::USAGE,
            "no messages: give them as arguments, --file or stdin",
        ));
    }
    if payloads.len() > SEND_MESSAGES_MAX {
        return Err(CliError::new(
            exit::USAGE,
            format!("more than {SEND_MESSAGES_MAX} messages in one send"),
        ));
    }
    if let Some(big) = payloads
        .iter()
        .find(|p| p.len() > MESSAGE_PAYLOAD_SIZE_MAX_BYTES)
    {
        return Err(CliError::new(
            exit::USAGE,
            format!(
                "a message of {} bytes exceeds {MESSAGE_PAYLOAD_SIZE_MAX_BYTES}",
                big.len()
            ),
        ));
    }
    Ok(payloads)
}

#[derive(serde::Serialize)]
struct MessageView {
    partition_id: u32,
    offset: u64,
    id: String,
    timestamp_us: u64,
    payload: Option<String>,
    payload_base64: String,
}

pub async fn message(target: &Target, command: MessageCommand, json: bool) -> CliResult {
    match command {
        MessageCommand::Send(args) => send(target, args, json).await,
        MessageCommand::Poll(args) => poll(target, args, json).await,
    }
}

async fn send(target: &Target, args: SendArgs, json: bool) -> CliResult {
    let SendArgs {
        stream,
        topic,
        messages,
        partition,
        key,
        file,
        whole,
    } = args;
    let payloads = collect_payloads(messages, file.as_deref(), whole)?;
    let partitioning = match (partition, key) {
        (Some(id), _) => Partitioning::partition_id(id),
        (None, Some(key)) => Partitioning::messages_key_str(&key)
            .map_err(|e| CliError::new(exit::USAGE, format!("bad key: {e}")))?,
        (None, None) => Partitioning::balanced(),
    };
    let mut batch = payloads
        .into_iter()
        .map(|p| IggyMessage::builder().payload(p.into()).build())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CliError::new(exit::USAGE, format!("bad message: {e}")))?;
    let client = connect(target).await?;
    client
        .send_messages(
            &identifier("stream", &stream)?,
            &identifier("topic", &topic)?,
            &partitioning,
            &mut batch,
        )
        .await
        .map_err(|e| server_error("send messages", e))?;
    emit(
        json,
        &json!({"sent": batch.len(), "stream": stream, "topic": topic}),
        || format!("sent {} message(s) to {stream}/{topic}", batch.len()),
    )
}

async fn poll(target: &Target, args: PollArgs, json: bool) -> CliResult {
    let PollArgs {
        stream,
        topic,
        partition,
        offset,
        first,
        last,
        next,
        count,
        consumer,
        auto_commit,
        output,
    } = args;
    let strategy = match (offset, first, last, next) {
        (Some(offset), ..) => PollingStrategy::offset(offset),
        (None, _, true, _) => PollingStrategy::last(),
        (None, _, _, true) => PollingStrategy::next(),
        _ => PollingStrategy::first(),
    };
    let consumer = Consumer::new(identifier("consumer", &consumer)?);
    let client = connect(target).await?;
    let polled = client
        .poll_messages(
            &identifier("stream", &stream)?,
            &identifier("topic", &topic)?,
            Some(partition),
            &consumer,
            &strategy,
            count,
            auto_commit,
        )
        .await
        .map_err(|e| server_error("poll messages", e))?;
    let format = output.unwrap_or(if json {
        OutputFormat::Json
    } else {
        OutputFormat::Text
    });
    print_polled(&polled, format)
}

fn print_polled(polled: &PolledMessages, format: OutputFormat) -> CliResult {
    match format {
        OutputFormat::Raw => {
            let mut stdout = std::io::stdout().lock();
            for m in &polled.messages {
                let written = stdout
                    .write_all(&m.payload)
                    .and_then(|()| stdout.write_all(b"\n"));
                if let Err(e) = written {
                    if e.kind() == std::io::ErrorKind::BrokenPipe {
                        return Ok(());
                    }
                    return Err(CliError::new(
                        exit::FAILURE,
                        format!("cannot write to stdout: {e}"),
                    ));
                }
            }
            Ok(())
        }
        OutputFormat::Json => {
            let views: Vec<MessageView> = polled
                .messages
                .iter()
                .map(|m| MessageView {
                    partition_id: polled.partition_id,
                    offset: m.header.offset,
                    id: m.header.id.to_string(),
                    timestamp_us: m.header.timestamp,
                    payload: std::str::from_utf8(&m.payload).ok().map(str::to_string),
                    payload_base64: base64::engine::general_purpose::STANDARD.encode(&m.payload),
                })
                .collect();
            print_json(
                &json!({"partition_id": polled.partition_id, "current_offset": polled.current_offset, "count": views.len(), "messages": views}),
            )
        }
        OutputFormat::Text => {
            let mut t = table(&["offset", "id", "timestamp (µs)", "payload"]);
            for m in &polled.messages {
                t.add_row(vec![
                    m.header.offset.to_string(),
                    m.header.id.to_string(),
                    m.header.timestamp.to_string(),
                    String::from_utf8_lossy(&m.payload).to_string(),
                ]);
            }
            println_checked(&format!(
                "partition {} (current offset {}): {} message(s)\n{t}",
                polled.partition_id,
                polled.current_offset,
                polled.messages.len()
            ))
        }
    }
}

pub async fn group(target: &Target, command: GroupCommand, json: bool) -> CliResult {
    let client = connect(target).await?;
    match command {
        GroupCommand::Create {
            stream,
            topic,
            name,
        } => {
            let created = client
                .create_consumer_group(
                    &identifier("stream", &stream)?,
                    &identifier("topic", &topic)?,
                    &name,
                )
                .await
                .map_err(|e| server_error("create consumer group", e))?;
            emit(json, &created, || {
                format!("created consumer group {} '{}'", created.id, created.name)
            })
        }
        GroupCommand::List { stream, topic } => {
            let groups = client
                .get_consumer_groups(
                    &identifier("stream", &stream)?,
                    &identifier("topic", &topic)?,
                )
                .await
                .map_err(|e| server_error("list consumer groups", e))?;
            emit(json, &groups, || groups_table(&groups))
        }
        GroupCommand::Get {
            stream,
            topic,
            group,
        } => {
            let details = client
                .get_consumer_group(
                    &identifier("stream", &stream)?,
                    &identifier("topic", &topic)?,
                    &identifier("group", &group)?,
                )
                .await
                .map_err(|e| server_error("get consumer group", e))?
                .ok_or_else(|| not_found(format!("consumer group '{group}'")))?;
            emit(json, &details, || group_text(&details))
        }
        GroupCommand::Delete {
            stream,
            topic,
            group,
        } => {
            client
                .delete_consumer_group(
                    &identifier("stream", &stream)?,
                    &identifier("topic", &topic)?,
                    &identifier("group", &group)?,
                )
                .await
                .map_err(|e| server_error("delete consumer group", e))?;
            emit(json, &json!({"deleted": group}), || {
                format!("deleted consumer group '{group}'")
            })
        }
    }
}

fn user_status(text: &str) -> Result<UserStatus, CliError> {
    UserStatus::from_str(text).map_err(|_| {
        CliError::new(
            exit::USAGE,
            format!("bad status '{text}': active or inactive"),
        )
    })
}

pub async fn user(target: &Target, command: UserCommand, json: bool) -> CliResult {
    let client = connect(target).await?;
    match command {
        UserCommand::Create {
            name,
            secret,
            inactive,
        } => {
            let status = if inactive {
                UserStatus::Inactive
            } else {
                UserStatus::Active
            };
            let created = client
                .create_user(&name, &secret, status, None)
                .await
                .map_err(|e| server_error("create user", e))?;
            emit(json, &created, || {
                format!("created user {} '{}'", created.id, created.username)
            })
        }
        UserCommand::List => {
            let users = client
                .get_users()
                .await
                .map_err(|e| server_error("list users", e))?;
            emit(json, &users, || users_table(&users))
        }
        UserCommand::Get { user } => {
            let details = client
                .get_user(&identifier("user", &user)?)
                .await
                .map_err(|e| server_error("get user", e))?;
            let details = details.ok_or_else(|| not_found(format!("user '{user}'")))?;
            emit(json, &details, || {
                format!(
                    "user {} '{}': {}",
                    details.id, details.username, details.status
                )
            })
        }
        UserCommand::Update {
            user,
            new_name,
            status,
        } => update_user(&client, &user, new_name, status, json).await,
        UserCommand::Delete { user } => {
            client
                .delete_user(&identifier("user", &user)?)
                .await
                .map_err(|e| server_error("delete user", e))?;
            emit(json, &json!({"deleted": user}), || {
                format!("deleted user '{user}'")
            })
        }
        UserCommand::Password { user, current, new } => {
            client
                .change_password(&identifier("user", &user)?, &current, &new)
                .await
                .map_err(|e| server_error("change password", e))?;
            emit(json, &json!({"password_changed": user}), || {
                format!("changed the password of '{user}'")
            })
        }
    }
}

/// A table of `items`, one row each.
fn rows<T>(header: &[&str], items: &[T], row: impl Fn(&T) -> Vec<String>) -> String {
    let mut t = table(header);
    for item in items {
        t.add_row(row(item));
    }
    t.to_string()
}

fn streams_table(streams: &[Stream]) -> String {
    rows(
        &["id", "name", "topics", "messages", "size", "created"],
        streams,
        |s| {
            let counts = [s.topics_count.to_string(), s.messages_count.to_string()];
            [
                vec![s.id.to_string(), s.name.clone()],
                counts.to_vec(),
                vec![s.size.to_string(), s.created_at.to_string()],
            ]
            .concat()
        },
    )
}

fn stream_text(details: &StreamDetails) -> String {
    let topics = topics_table(&details.topics);
    let (id, name, count) = (details.id, &details.name, details.topics_count);
    format!(
        "stream {id} '{name}': {count} topic(s), {} message(s), {}\n{topics}",
        details.messages_count, details.size
    )
}

fn topics_table(topics: &[Topic]) -> String {
    let header = [
        "id",
        "name",
        "partitions",
        "messages",
        "size",
        "expiry",
        "max size",
    ];
    rows(&header, topics, |t| {
        let counts = [
            t.partitions_count.to_string(),
            t.messages_count.to_string(),
            t.size.to_string(),
        ];
        let limits = [t.message_expiry.to_string(), t.max_topic_size.to_string()];
        [
            vec![t.id.to_string(), t.name.clone()],
            counts.to_vec(),
            limits.to_vec(),
        ]
        .concat()
    })
}

fn topic_text(details: &TopicDetails) -> String {
    let (id, name, partitions) = (details.id, &details.name, details.partitions_count);
    let (expiry, max_size) = (details.message_expiry, details.max_topic_size);
    format!(
        "topic {id} '{name}': {partitions} partition(s), {} message(s), {}, expiry {expiry}, max size {max_size}\n{}",
        details.messages_count,
        details.size,
        partitions_table(&details.partitions)
    )
}

fn groups_table(groups: &[ConsumerGroup]) -> String {
    rows(&["id", "name", "partitions", "members"], groups, |g| {
        vec![
            g.id.to_string(),
            g.name.clone(),
            g.partitions_count.to_string(),
            g.members_count.to_string(),
        ]
    })
}

fn group_text(details: &ConsumerGroupDetails) -> String {
    let members = rows(&["member", "partitions"], &details.members, |m| {
        vec![m.id.to_string(), format!("{:?}", m.partitions)]
    });
    format!(
        "consumer group {} '{}': {} member(s)\n{members}",
        details.id, details.name, details.members_count
    )
}

fn users_table(users: &[UserInfo]) -> String {
    rows(&["id", "username", "status", "created"], users, |u| {
        vec![
            u.id.to_string(),
            u.username.clone(),
            u.status.to_string(),
            u.created_at.to_string(),
        ]
    })
}

async fn create_topic(
    client: &IggyClient,
    stream: &str,
    name: &str,
    partitions: u32,
    options: &TopicOptions,
    json: bool,
) -> CliResult {
    let stream_id = identifier("stream", stream)?;
    let create = TopicCreateOptions {
        partitions_count: Some(partitions),
        compression_algorithm: parse_option("compression", &options.compression)?,
        message_expiry: parse_option("message expiry", &options.message_expiry)?,
        max_topic_size: parse_option("max size", &options.max_size)?,
        ..TopicCreateOptions::default()
    };
    let created = client
        .create_topic(&stream_id, name, &create)
        .await
        .map_err(|e| server_error("create topic", e))?;
    emit(json, &created, || {
        format!(
            "created topic {} '{}' with {} partition(s) in stream '{stream}'",
            created.id, created.name, created.partitions_count
        )
    })
}

async fn purge_partition(
    client: &IggyClient,
    stream: &str,
    topic: &str,
    partition: u32,
    json: bool,
) -> CliResult {
    let details = topic_details(client, stream, topic).await?;
    let found = details.partitions.iter().find(|p| p.id == partition);
    let segments = found
        .ok_or_else(|| not_found(format!("partition {partition} of topic '{topic}'")))?
        .segments_count;
    client
        .delete_segments(
            &identifier("stream", stream)?,
            &identifier("topic", topic)?,
            partition,
            segments,
        )
        .await
        .map_err(|e| server_error("purge partition", e))?;
    emit(
        json,
        &json!({"purged": partition, "segments_deleted": segments}),
        || format!("purged partition {partition} ({segments} segment(s))"),
    )
}

async fn update_user(
    client: &IggyClient,
    user: &str,
    username: Option<String>,
    status: Option<String>,
    json: bool,
) -> CliResult {
    let status = status.as_deref().map(user_status).transpose()?;
    client
        .update_user(
            &identifier("user", user)?,
            username.as_deref(),
            status,
            &UserUpdateOptions::default(),
        )
        .await
        .map_err(|e| server_error("update user", e))?;
    emit(json, &json!({"updated": user}), || {
        format!("updated user '{user}'")
    })
}
