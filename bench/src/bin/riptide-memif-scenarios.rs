//! The conformance suite's core scenarios over memif, driven by the project's own protocol client
//! (`riptide_bench::client`, on the `riptide-protocol` crate): the SDK cannot speak memif. Login,
//! stream and topic creation, sends whose offsets are confirmed by reading them back, polls by
//! offset, first, last and next (with auto-commit), and consumer offsets stored, read and
//! deleted. Exits 0 when every check held, 1 with the first failure.
//!
//! `riptide-memif-scenarios --socket <appliance's memif.sock> --server-address <ip:port>
//! [--ip-address 10.77.0.2/24] [--cpu N] [--file-prefix P]`

use anyhow::{ensure, Context};
use clap::Parser;
use riptide_bench::client::{poll_body, Connection};
use riptide_bench::memif::{MemifOptions, MemifTransport};
use riptide_protocol::batch::{BatchBuilder, BatchHeader, Frames};
use riptide_protocol::codes::CommandCode;
use riptide_protocol::constants::{BATCH_HEADER_SIZE_BYTES, POLL_REPLY_PREFIX_SIZE_BYTES};
use riptide_protocol::request::{Identifier, Partitioning, SendMessages};
use riptide_protocol::wire::requests::consumer_offsets::{
    DeleteConsumerOffsetRequest, GetConsumerOffsetRequest, StoreConsumerOffsetRequest,
};
use riptide_protocol::wire::{
    AckLevel, WireConsumer, WireEncode, WireIdentifier, WirePollingStrategy,
};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Parser)]
struct Cli {
    #[arg(long)]
    socket: PathBuf,
    #[arg(long)]
    server_address: String,
    #[arg(long, default_value = "10.77.0.2/24")]
    ip_address: String,
    #[arg(long, default_value_t = 0)]
    cpu: u32,
    #[arg(long, default_value = "riptide-memif-scenarios")]
    file_prefix: String,
    #[arg(long, default_value = "iggy")]
    username: String,
    #[arg(long, default_value = "iggy")]
    password: String,
}

/// The scenarios' stream, topic and partition (iggy 0.11's partitions count from 0).
const STREAM: &str = "memif-scenarios";
const TOPIC: &str = "t";
const PARTITIONS: u32 = 2;
const PARTITION: u32 = 1;
/// Messages of the first and the second send.
const FIRST_SEND: u64 = 10;
const SECOND_SEND: u64 = 5;

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => {
            println!("memif scenarios: all passed");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("memif scenarios failed: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let (address, prefix) = cli
        .ip_address
        .split_once('/')
        .context("--ip-address is address/prefix")?;
    let options = MemifOptions {
        socket: cli.socket.clone(),
        ip_address: address.parse().context("--ip-address")?,
        prefix_len: prefix.parse().context("--ip-address prefix")?,
        cpu: cli.cpu,
        file_prefix: cli.file_prefix.clone(),
        memory_mb: 512,
    };
    let transport = MemifTransport::start(&options)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()?;
    let net = transport.net();
    let result = runtime.block_on(async {
        let driver = tokio::spawn(net.clone().drive());
        let result = scenarios(&cli, &net).await;
        net.stop();
        let _ = driver.await;
        result
    });
    drop(runtime);
    drop(transport);
    result
}

async fn scenarios(cli: &Cli, net: &riptide_bench::memif::MemifNet) -> anyhow::Result<()> {
    let connect =
        || Connection::connect_memif(net, &cli.server_address, &cli.username, &cli.password);
    // Login by password (the Register handshake) and a bad password refused.
    let mut conn = connect().await.context("login")?;
    let refused = Connection::connect_memif(net, &cli.server_address, &cli.username, "wrong").await;
    ensure!(refused.is_err(), "a wrong password was accepted");

    let _ = conn.delete_stream(STREAM).await.context("delete stream")?;
    let stream_id = conn.create_stream(STREAM).await.context("create stream")?;
    let topic_id = conn
        .create_topic(stream_id, TOPIC, PARTITIONS, "persisted")
        .await
        .context("create topic")?;
    let found = conn
        .find_topic(STREAM, TOPIC)
        .await?
        .context("the topic just created is not found")?;
    ensure!(
        found.topic_id == topic_id && found.partitions_count == PARTITIONS,
        "topic found as {found:?}"
    );

    // Sends, offsets confirmed by reading them back in order.
    send(&mut conn, stream_id, topic_id, 0, FIRST_SEND).await?;
    send(&mut conn, stream_id, topic_id, FIRST_SEND, SECOND_SEND).await?;
    let total = FIRST_SEND + SECOND_SEND;
    let all = poll(
        &mut conn,
        stream_id,
        topic_id,
        1,
        WirePollingStrategy::offset(0),
        100,
        false,
    )
    .await?;
    let expected: Vec<(u64, Vec<u8>)> = (0..total).map(|i| (i, payload(i))).collect();
    ensure!(
        all == expected,
        "offset 0 read back {} messages, not 0..{total} in order",
        all.len()
    );

    // By offset, first, last.
    let by_offset = poll(
        &mut conn,
        stream_id,
        topic_id,
        1,
        WirePollingStrategy::offset(5),
        3,
        false,
    )
    .await?;
    ensure!(
        offsets(&by_offset) == [5, 6, 7],
        "offset 5: {:?}",
        offsets(&by_offset)
    );
    let first = poll(
        &mut conn,
        stream_id,
        topic_id,
        1,
        WirePollingStrategy::first(),
        2,
        false,
    )
    .await?;
    ensure!(offsets(&first) == [0, 1], "first: {:?}", offsets(&first));
    let last = poll(
        &mut conn,
        stream_id,
        topic_id,
        1,
        WirePollingStrategy::last(),
        1,
        false,
    )
    .await?;
    ensure!(offsets(&last) == [total - 1], "last: {:?}", offsets(&last));

    // Next with auto-commit: each poll continues where the stored offset is.
    let next = poll(
        &mut conn,
        stream_id,
        topic_id,
        2,
        WirePollingStrategy::next(),
        4,
        true,
    )
    .await?;
    ensure!(
        offsets(&next) == [0, 1, 2, 3],
        "first next: {:?}",
        offsets(&next)
    );
    let next = poll(
        &mut conn,
        stream_id,
        topic_id,
        2,
        WirePollingStrategy::next(),
        4,
        true,
    )
    .await?;
    ensure!(
        offsets(&next) == [4, 5, 6, 7],
        "second next: {:?}",
        offsets(&next)
    );
    let stored = get_offset(&mut conn, stream_id, topic_id, 2).await?;
    ensure!(stored == Some(7), "auto-commit stored {stored:?}, not 7");

    // Consumer offsets: store, get, delete.
    let consumer = 3;
    ensure!(
        get_offset(&mut conn, stream_id, topic_id, consumer)
            .await?
            .is_none(),
        "offset before any store"
    );
    let store = StoreConsumerOffsetRequest {
        consumer: WireConsumer::consumer(WireIdentifier::numeric(consumer)),
        stream_id: WireIdentifier::numeric(stream_id),
        topic_id: WireIdentifier::numeric(topic_id),
        partition_id: Some(PARTITION),
        offset: 11,
        ack: AckLevel::default(),
    };
    conn.call(CommandCode::StoreConsumerOffset, &encode(&store))
        .await?;
    let stored = get_offset(&mut conn, stream_id, topic_id, consumer).await?;
    ensure!(stored == Some(11), "stored offset read back as {stored:?}");
    let delete = DeleteConsumerOffsetRequest {
        consumer: WireConsumer::consumer(WireIdentifier::numeric(consumer)),
        stream_id: WireIdentifier::numeric(stream_id),
        topic_id: WireIdentifier::numeric(topic_id),
        partition_id: Some(PARTITION),
        ack: AckLevel::default(),
    };
    conn.call(CommandCode::DeleteConsumerOffset, &encode(&delete))
        .await?;
    let stored = get_offset(&mut conn, stream_id, topic_id, consumer).await?;
    ensure!(stored.is_none(), "a deleted offset reads as {stored:?}");

    // A second connection sees the same data.
    let mut other = connect().await.context("a second login")?;
    let again = poll(
        &mut other,
        stream_id,
        topic_id,
        4,
        WirePollingStrategy::offset(0),
        100,
        false,
    )
    .await?;
    ensure!(
        again == expected,
        "a second connection reads different messages"
    );
    Ok(())
}

fn encode(request: &impl WireEncode) -> Vec<u8> {
    let mut buf = bytes::BytesMut::with_capacity(request.encoded_size());
    request.encode(&mut buf);
    buf.to_vec()
}

fn payload(index: u64) -> Vec<u8> {
    format!("memif message {index}").into_bytes()
}

fn offsets(messages: &[(u64, Vec<u8>)]) -> Vec<u64> {
    messages.iter().map(|(offset, _)| *offset).collect()
}

/// Sends messages `first..first + count` to the scenarios' partition in one batch.
async fn send(
    conn: &mut Connection,
    stream_id: u32,
    topic_id: u32,
    first: u64,
    count: u64,
) -> anyhow::Result<()> {
    let mut builder = BatchBuilder::new();
    for index in first..first + count {
        builder
            .push(u128::from(index) + 1, &payload(index), &[], 0)
            .map_err(|e| anyhow::anyhow!("batch: {e:?}"))?;
    }
    let batch = builder
        .finish()
        .map_err(|e| anyhow::anyhow!("batch: {e:?}"))?;
    let mut prefix = Vec::new();
    SendMessages::emit_prefix(
        Identifier::Numeric(stream_id),
        Identifier::Numeric(topic_id),
        Partitioning::PartitionId(PARTITION),
        count as u32,
        &mut prefix,
    );
    conn.send_request(CommandCode::SendMessages, &prefix, batch)
        .await?;
    conn.read_reply(CommandCode::SendMessages)
        .await
        .context("send")?;
    Ok(())
}

/// Polls the scenarios' partition; returns each message's offset and payload.
async fn poll(
    conn: &mut Connection,
    stream_id: u32,
    topic_id: u32,
    consumer: u32,
    strategy: WirePollingStrategy,
    count: u32,
    auto_commit: bool,
) -> anyhow::Result<Vec<(u64, Vec<u8>)>> {
    let body = poll_body(
        WireConsumer::consumer(WireIdentifier::numeric(consumer)),
        stream_id,
        topic_id,
        Some(PARTITION),
        strategy,
        count,
        auto_commit,
    );
    let reply = conn.call(CommandCode::PollMessages, &body).await?;
    let mut rest = reply
        .get(POLL_REPLY_PREFIX_SIZE_BYTES..)
        .context("poll reply shorter than its prefix")?;
    let mut messages = Vec::new();
    while !rest.is_empty() {
        let header = BatchHeader::new_checked(rest).map_err(|e| anyhow::anyhow!("batch: {e:?}"))?;
        let length = usize::try_from(header.batch_length_bytes())?;
        ensure!(
            (BATCH_HEADER_SIZE_BYTES..=rest.len()).contains(&length),
            "batch length {length} out of range"
        );
        let (record, tail) = rest.split_at(length);
        rest = tail;
        for frame in Frames::over(&record[BATCH_HEADER_SIZE_BYTES..]) {
            ensure!(
                frame.checksum() == frame.computed_checksum(),
                "a message's checksum"
            );
            let offset = header.base_offset() + u64::from(frame.offset_delta());
            messages.push((offset, frame.payload_ref().to_vec()));
        }
    }
    Ok(messages)
}

/// A consumer's stored offset on the scenarios' partition; None when it has none.
async fn get_offset(
    conn: &mut Connection,
    stream_id: u32,
    topic_id: u32,
    consumer: u32,
) -> anyhow::Result<Option<u64>> {
    let request = GetConsumerOffsetRequest {
        consumer: WireConsumer::consumer(WireIdentifier::numeric(consumer)),
        stream_id: WireIdentifier::numeric(stream_id),
        topic_id: WireIdentifier::numeric(topic_id),
        partition_id: Some(PARTITION),
    };
    let reply = conn
        .call(CommandCode::GetConsumerOffset, &encode(&request))
        .await?;
    if reply.is_empty() {
        return Ok(None);
    }
    let stored = reply
        .get(12..20)
        .context("consumer offset reply too short")?;
    Ok(Some(u64::from_le_bytes(stored.try_into()?)))
}
