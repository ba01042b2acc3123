//! Bad input on the wire (issue 3, point 5): raw bytes for each case — truncated frames, sizes
//! below 256 or above the frame limit, wrong checksums, unknown codes and operations, malformed
//! bodies, commands before login, a wrong protocol version, legacy login codes. Each case checks
//! the reply (status or eviction reason), whether the connection is closed, that the server is
//! still alive, and that a well-behaved SDK client keeps working with nothing acknowledged lost.

mod common;

use anyhow::{bail, ensure, Context};
use common::raw::{self, code, command, eviction, Outcome, RawConnection};
use common::*;
use iggy::prelude::*;
use std::time::Duration;

const TEST_TIMEOUT: Duration = Duration::from_secs(90);
/// A connection the server must drop is given this long to close.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

const INVALID_COMMAND: u32 = 3;
const UNAUTHENTICATED: u32 = 40;
const INVALID_MESSAGE_CHECKSUM: u32 = 4027;
const INVALID_BATCH_CHECKSUM: u32 = 4039;

/// A well-behaved SDK client that keeps sending and reading back between the bad inputs; its
/// every confirmed message must stay readable.
struct Witness {
    client: IggyClient,
    sent: Vec<String>,
}

impl Witness {
    async fn new(server: &Server) -> anyhow::Result<Witness> {
        let client = server.client().await?;
        client
            .create_stream("witness")
            .await
            .sdk("witness stream")?;
        let options = TopicCreateOptions {
            partitions_count: Some(1),
            ..Default::default()
        };
        client
            .create_topic(&name("witness"), "w", &options)
            .await
            .sdk("witness topic")?;
        Ok(Witness {
            client,
            sent: Vec::new(),
        })
    }

    /// Sends one message and reads every confirmed message back.
    async fn check(&mut self, after: &str) -> anyhow::Result<()> {
        let text = format!("after {after} #{}", self.sent.len());
        let mut batch = vec![IggyMessage::from(text.clone())];
        self.client
            .send_messages(
                &name("witness"),
                &name("w"),
                &Partitioning::partition_id(0),
                &mut batch,
            )
            .await
            .sdk(&format!("witness send after {after}"))?;
        self.sent.push(text);
        let polled = self
            .client
            .poll_messages(
                &name("witness"),
                &name("w"),
                Some(0),
                &Consumer::default(),
                &PollingStrategy::offset(0),
                10_000,
                false,
            )
            .await
            .sdk(&format!("witness poll after {after}"))?;
        let got = payloads(&polled);
        ensure!(got == self.sent, "witness lost data after {after}: {got:?}");
        Ok(())
    }
}

async fn logged_in(server: &Server) -> anyhow::Result<RawConnection> {
    let mut connection = RawConnection::connect(server.address()).await?;
    connection.login_root().await?;
    Ok(connection)
}

/// Expects an eviction with `reason` followed by a closed connection.
async fn expect_eviction(
    connection: &mut RawConnection,
    reason: u8,
    what: &str,
) -> anyhow::Result<()> {
    match connection.read_outcome(raw::REPLY_TIMEOUT).await? {
        Outcome::Frame(frame) if frame.is_eviction() && frame.eviction_reason() == reason => {
            ensure!(
                frame.size() == 256,
                "{what}: eviction of size {}",
                frame.size()
            );
        }
        Outcome::Frame(frame) => bail!(
            "{what}: expected eviction reason {reason}, got {}",
            frame.describe()
        ),
        other => bail!("{what}: expected eviction reason {reason}, got {other:?}"),
    }
    connection
        .expect_closed(CLOSE_WAIT)
        .await
        .with_context(|| format!("{what}: after the eviction"))
}

/// Expects the server to drop the connection; an eviction frame before the close is allowed.
async fn expect_dropped(connection: &mut RawConnection, what: &str) -> anyhow::Result<()> {
    match connection.read_outcome(CLOSE_WAIT).await? {
        Outcome::Closed => Ok(()),
        Outcome::Frame(frame) if frame.is_eviction() => connection
            .expect_closed(CLOSE_WAIT)
            .await
            .with_context(|| format!("{what}: after the eviction")),
        Outcome::Frame(frame) => bail!(
            "{what}: expected a closed connection, got {}",
            frame.describe()
        ),
        Outcome::Silent => bail!("{what}: connection still open after {CLOSE_WAIT:?}"),
    }
}

/// Expects a reply with `status`, and that the connection still serves a ping.
async fn expect_status_and_open(
    connection: &mut RawConnection,
    status: u32,
    what: &str,
) -> anyhow::Result<()> {
    let frame = connection
        .read_frame()
        .await
        .with_context(|| what.to_owned())?;
    ensure!(
        frame.is_reply() && frame.status() == status,
        "{what}: expected a reply with status {status}, got {}",
        frame.describe()
    );
    ensure!(
        frame.body.is_empty(),
        "{what}: a denial carries a {}-byte body",
        frame.body.len()
    );
    let pong = connection
        .ping()
        .await
        .with_context(|| format!("{what}: ping afterwards"))?;
    ensure!(
        pong.is_reply() && pong.status() == 0,
        "{what}: ping afterwards got {}",
        pong.describe()
    );
    Ok(())
}

#[test]
fn test_hashes_match_reference_vectors() {
    // Reference values from twox-hash 2.1.5 (and the XXH3 specification for the empty input).
    assert_eq!(xxh3::xxh3_64(b""), Some(0x2d06_8005_38d3_94c2));
    assert_eq!(xxh3::xxh3_64(b"abc"), Some(0x78af_5f94_892f_3950));
    let vectors: [(usize, u64); 6] = [
        (5, 0x9986_20e1_0e3a_4b37),
        (12, 0x6829_454b_e0cc_3199),
        (52, 0x7244_26ca_2f2c_cba2),
        (100, 0xb593_7857_f0d7_8c9f),
        (200, 0x746c_d002_5327_bf5b),
        (240, 0x6455_6dc6_b462_a6cf),
    ];
    for (len, expected) in vectors {
        let input: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
        assert_eq!(xxh3::xxh3_64(&input), Some(expected), "xxh3 of {len} bytes");
    }
    assert_eq!(xxh3::xxh3_64(&[0u8; 241]), None);
    for (key, expected) in [
        (&b""[..], 0x02cc_5d05u32),
        (b"a", 0x550d_7456),
        (b"key-1", 0x3963_6a09),
        (b"order-42", 0xbbc3_3ad1),
        (b"abcdefghijklmnopqrstuvwxyz", 0x63a1_4d5f),
    ] {
        assert_eq!(xxh32::xxh32(key), expected, "xxh32 of {key:?}");
    }
}

#[tokio::test]
async fn unauthenticated_ping_is_answered_as_in_the_worked_example() {
    let server = Server::start().expect("server starts");
    bounded(TEST_TIMEOUT, async {
        let mut connection = RawConnection::connect(server.address()).await?;
        let header = raw::RequestHeader {
            command: command::REQUEST,
            client: 0xABCD,
            request: 1,
            operation: raw::operation::NON_REPLICATED,
            session: 0,
            code: code::PING,
            request_checksum: 0,
            size_override: None,
        };
        connection.send_bytes(&header.emit(&[])).await?;
        let reply = connection.read_frame().await?;
        ensure!(
            reply.command() == command::REPLY,
            "command {}",
            reply.command()
        );
        ensure!(
            reply.size() == 256 && reply.body.is_empty(),
            "size {}",
            reply.size()
        );
        ensure!(reply.status() == 0, "status {}", reply.status());
        ensure!(
            reply.reply_client() == 0xABCD,
            "client echo {:#x}",
            reply.reply_client()
        );
        ensure!(
            reply.reply_request() == 1,
            "request echo {}",
            reply.reply_request()
        );
        ensure!(
            reply.reply_operation() == raw::operation::NON_REPLICATED,
            "operation echo"
        );
        // Two pings in one write are both answered, in order.
        let mut two = header.emit(&[]);
        two.extend(
            raw::RequestHeader {
                request: 2,
                ..header
            }
            .emit(&[]),
        );
        connection.send_bytes(&two).await?;
        ensure!(
            connection.read_frame().await?.reply_request() == 1,
            "first of two pings"
        );
        ensure!(
            connection.read_frame().await?.reply_request() == 2,
            "second of two pings"
        );
        Ok(())
    })
    .await
    .expect("test body");
    server.finish().expect("server still healthy");
}

#[tokio::test]
async fn server_side_balanced_and_key_partitioning() {
    let server = Server::start().expect("server starts");
    bounded(TEST_TIMEOUT, async {
        let mut connection = logged_in(&server).await?;
        let created = connection
            .call(code::CREATE_STREAM, &raw::wire_name("raw"))
            .await?;
        ensure!(
            created.result_code()? == 0,
            "create_stream: {}",
            created.describe()
        );
        let mut topic = raw::numeric_identifier(0);
        topic.extend_from_slice(&3u32.to_le_bytes());
        topic.extend(raw::wire_name("t"));
        let created = connection.call(code::CREATE_TOPIC, &topic).await?;
        ensure!(
            created.result_code()? == 0,
            "create_topic: {}",
            created.describe()
        );

        // Balanced: the server's per-topic round robin visits every partition.
        let mut partitions = Vec::new();
        for i in 0..3u32 {
            let payload = format!("bal-{i}");
            let batch = raw::batch(&[payload.as_bytes()], 1)?;
            let body = raw::send_messages_body(0, 0, &raw::Partitioning::Balanced, 1, &batch);
            let reply = connection.call(code::SEND_MESSAGES, &body).await?;
            ensure!(
                reply.is_reply() && reply.status() == 0,
                "balanced send: {}",
                reply.describe()
            );
            let confirmations = raw::confirmations(&reply.body)?;
            ensure!(confirmations.len() == 1, "balanced send: {confirmations:?}");
            partitions.push(confirmations[0].2);
        }
        partitions.sort_unstable();
        ensure!(
            partitions == vec![0, 1, 2],
            "server-side balanced sends landed on {partitions:?}"
        );

        // Messages key: XxHash32(key) % 3.
        for key in [&b"order-42"[..], b"key-1", b"a"] {
            let batch = raw::batch(&[key], 1)?;
            let body =
                raw::send_messages_body(0, 0, &raw::Partitioning::MessagesKey(key), 1, &batch);
            let reply = connection.call(code::SEND_MESSAGES, &body).await?;
            ensure!(
                reply.is_reply() && reply.status() == 0,
                "keyed send: {}",
                reply.describe()
            );
            let confirmations = raw::confirmations(&reply.body)?;
            let expected = xxh32::xxh32(key) % 3;
            ensure!(
                confirmations.first().map(|c| c.2) == Some(expected),
                "key {:?}: confirmations {confirmations:?}, expected partition {expected}",
                String::from_utf8_lossy(key)
            );
            let poll = raw::poll_body(0, 0, expected, 0, 100);
            let reply = connection.call(code::POLL_MESSAGES, &poll).await?;
            let (partition, _, payloads) = raw::poll_reply(&reply.body)?;
            ensure!(
                partition == expected && payloads.iter().any(|p| p == key),
                "key not stored on {expected}"
            );
        }
        Ok(())
    })
    .await
    .expect("test body");
    server.finish().expect("server still healthy");
}

/// An unauthenticated ping header with the given request number.
fn raw_ping(request: u64) -> raw::RequestHeader {
    raw::RequestHeader {
        command: command::REQUEST,
        client: 0x77,
        request,
        operation: raw::operation::NON_REPLICATED,
        session: 0,
        code: code::PING,
        request_checksum: 0,
        size_override: None,
    }
}

async fn truncated_frames_are_dropped(
    server: &Server,
    witness: &mut Witness,
) -> anyhow::Result<()> {
    // Truncated header, then EOF: nothing to answer, the server just lets go.
    let mut truncated = RawConnection::connect(server.address()).await?;
    truncated.send_bytes(&raw_ping(1).emit(&[])[..100]).await?;
    truncated.shutdown_write().await?;
    expect_dropped(&mut truncated, "truncated header").await?;
    witness.check("a truncated header").await?;

    // Truncated body (size says 300 bytes of body, 40 arrive), then EOF.
    let mut truncated = logged_in(server).await?;
    let mut header = truncated.header_for(code::CREATE_STREAM);
    header.size_override = Some(256 + 300);
    truncated
        .send_bytes(&header.emit(&raw::wire_name("never-created")))
        .await?;
    truncated.shutdown_write().await?;
    expect_dropped(&mut truncated, "truncated body").await?;
    ensure!(
        witness
            .client
            .get_stream(&name("never-created"))
            .await
            .sdk("get_stream")?
            .is_none(),
        "a truncated create_stream was applied"
    );
    witness.check("a truncated body").await?;
    Ok(())
}

async fn frame_sizes_out_of_range_are_dropped(
    server: &Server,
    witness: &mut Witness,
) -> anyhow::Result<()> {
    // size < 256.
    for size in [0u32, 1, 255] {
        let mut small = RawConnection::connect(server.address()).await?;
        small
            .send_bytes(
                &raw::RequestHeader {
                    size_override: Some(size),
                    ..raw_ping(1)
                }
                .emit(&[]),
            )
            .await?;
        expect_dropped(&mut small, &format!("size {size}")).await?;
    }
    witness.check("sizes below 256").await?;

    // size above the frame limit (64 MiB by default): dropped without waiting for the body.
    for size in [64 * 1024 * 1024 + 1, u32::MAX] {
        let mut large = RawConnection::connect(server.address()).await?;
        large
            .send_bytes(
                &raw::RequestHeader {
                    size_override: Some(size),
                    ..raw_ping(1)
                }
                .emit(&[]),
            )
            .await?;
        expect_dropped(&mut large, &format!("size {size}")).await?;
    }
    witness.check("sizes above the frame limit").await?;
    Ok(())
}

async fn non_request_frames_are_dropped(
    server: &Server,
    witness: &mut Witness,
) -> anyhow::Result<()> {
    // A header that is not a request (command byte != 5), and plain garbage.
    let mut not_request = RawConnection::connect(server.address()).await?;
    not_request
        .send_bytes(
            &raw::RequestHeader {
                command: command::REPLY,
                ..raw_ping(1)
            }
            .emit(&[]),
        )
        .await?;
    expect_dropped(&mut not_request, "command byte 8 (Reply) from a client").await?;
    let mut garbage = RawConnection::connect(server.address()).await?;
    let noise: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    garbage.send_bytes(&noise).await?;
    expect_dropped(&mut garbage, "4 KiB of noise").await?;
    // A zero client id is invalid.
    let mut zero_client = RawConnection::connect(server.address()).await?;
    zero_client
        .send_bytes(
            &raw::RequestHeader {
                client: 0,
                ..raw_ping(1)
            }
            .emit(&[]),
        )
        .await?;
    expect_dropped(&mut zero_client, "client id 0").await?;
    witness.check("non-request frames").await?;
    Ok(())
}

#[tokio::test]
async fn broken_frames_close_only_their_connection() {
    let mut server = Server::start().expect("server starts");
    bounded(TEST_TIMEOUT, async {
        let mut witness = Witness::new(&server).await?;

        truncated_frames_are_dropped(&server, &mut witness).await?;
        frame_sizes_out_of_range_are_dropped(&server, &mut witness).await?;
        non_request_frames_are_dropped(&server, &mut witness).await?;
        ensure!(server.is_running(), "the server died on broken frames");
        Ok(())
    })
    .await
    .expect("test body");
    server.finish().expect("server still healthy");
}

#[tokio::test]
async fn frame_size_limit_is_a_configuration_value() {
    let server = Server::start_with_env(&[
        ("RIPTIDE_LIMITS_FRAME_SIZE_MAX_BYTES", "65536"),
        ("RIPTIDE_LIMITS_BATCH_SIZE_MAX_BYTES", "65536"),
    ])
    .expect("server starts");
    bounded(TEST_TIMEOUT, async {
        let mut witness = Witness::new(&server).await?;
        let mut connection = logged_in(&server).await?;
        let mut header = connection.header_for(code::PING);
        header.size_override = Some(65_537);
        connection.send_bytes(&header.emit(&[])).await?;
        expect_dropped(&mut connection, "a 65537-byte frame with a 64 KiB limit").await?;
        // Below the limit everything works.
        let mut connection = logged_in(&server).await?;
        let pong = connection.ping().await?;
        ensure!(pong.status() == 0, "ping {}", pong.describe());
        witness.check("a frame above the configured limit").await?;
        // The SDK's own oversized send is refused without harming the server.
        let mut big = vec![IggyMessage::from(vec![1u8; 100_000])];
        let sent = witness
            .client
            .send_messages(
                &name("witness"),
                &name("w"),
                &Partitioning::partition_id(0),
                &mut big,
            )
            .await;
        ensure!(sent.is_err(), "a 100 KB batch passed a 64 KiB frame limit");
        let mut witness = Witness {
            client: server.client().await?,
            sent: witness.sent,
        };
        witness.check("an oversized SDK send").await?;
        Ok(())
    })
    .await
    .expect("test body");
    server.finish().expect("server still healthy");
}

/// A logged-in connection with a one-partition topic `raw`/`t` (stream 1, topic 0; the
/// witness owns stream 0).
async fn raw_topic(server: &Server) -> anyhow::Result<RawConnection> {
    let mut connection = logged_in(server).await?;
    let created = connection
        .call(code::CREATE_STREAM, &raw::wire_name("raw"))
        .await?;
    ensure!(
        created.result_code()? == 0,
        "create_stream: {}",
        created.describe()
    );
    let mut topic = raw::numeric_identifier(1);
    topic.extend_from_slice(&1u32.to_le_bytes());
    topic.extend(raw::wire_name("t"));
    let created = connection.call(code::CREATE_TOPIC, &topic).await?;
    ensure!(
        created.result_code()? == 0,
        "create_topic: {}",
        created.describe()
    );
    Ok(connection)
}

async fn stored_payloads(connection: &mut RawConnection) -> anyhow::Result<Vec<Vec<u8>>> {
    let reply = connection
        .call(code::POLL_MESSAGES, &raw::poll_body(1, 0, 0, 0, 1000))
        .await?;
    ensure!(
        reply.is_reply() && reply.status() == 0,
        "poll: {}",
        reply.describe()
    );
    Ok(raw::poll_reply(&reply.body)?.2)
}

/// Sends a SendMessages body, expects a reply with `status`, and that the connection still
/// answers a ping (the framing was intact, only the content was refused).
async fn send_refused_with(
    connection: &mut RawConnection,
    body: &[u8],
    status: u32,
    what: &str,
) -> anyhow::Result<()> {
    let reply = connection.call(code::SEND_MESSAGES, body).await?;
    ensure!(
        reply.is_reply() && reply.status() == status,
        "{what}: expected status {status}, got {}",
        reply.describe()
    );
    let pong = connection
        .ping()
        .await
        .with_context(|| format!("ping after {what}"))?;
    ensure!(
        pong.status() == 0,
        "connection unusable after {what}: {}",
        pong.describe()
    );
    Ok(())
}

#[tokio::test]
async fn wrong_checksums_are_refused_with_their_status() {
    let server = Server::start().expect("server starts");
    bounded(TEST_TIMEOUT, async {
        let mut witness = Witness::new(&server).await?;
        let mut connection = raw_topic(&server).await?;
        let good = raw::batch(&[b"one", b"two"], 1_700_000_000_000_000)?;
        let partitioning = raw::Partitioning::PartitionId(0);

        // A payload byte changed after sealing: the message checksum no longer matches (the batch
        // checksum covers only the checksum fields, so it still does).
        let mut body_flip = good.clone();
        let payload_at = raw::FIRST_FRAME_OFFSET + raw::MESSAGE_HEADER_SIZE_BYTES;
        body_flip[payload_at] ^= 0x20;
        let body = raw::send_messages_body(1, 0, &partitioning, 2, &body_flip);
        send_refused_with(
            &mut connection,
            &body,
            INVALID_MESSAGE_CHECKSUM,
            "corrupted payload",
        )
        .await?;

        // The batch checksum field itself is wrong.
        let mut batch_flip = good.clone();
        batch_flip[40] ^= 0x01;
        let body = raw::send_messages_body(1, 0, &partitioning, 2, &batch_flip);
        send_refused_with(
            &mut connection,
            &body,
            INVALID_BATCH_CHECKSUM,
            "corrupted batch checksum",
        )
        .await?;

        ensure!(
            stored_payloads(&mut connection).await?.is_empty(),
            "a refused batch was stored"
        );
        let reply = connection
            .call(
                code::SEND_MESSAGES,
                &raw::send_messages_body(1, 0, &partitioning, 2, &good),
            )
            .await?;
        ensure!(
            reply.is_reply() && reply.status() == 0,
            "the intact batch: {}",
            reply.describe()
        );
        let confirmations = raw::confirmations(&reply.body)?;
        ensure!(
            confirmations == vec![(1, 0, 0, 0)],
            "confirmations {confirmations:?}"
        );
        ensure!(
            stored_payloads(&mut connection).await? == vec![b"one".to_vec(), b"two".to_vec()],
            "the intact batch was not stored as sent"
        );
        witness.check("checksum errors").await?;
        Ok(())
    })
    .await
    .expect("test body");
    server.finish().expect("server still healthy");
}

/// A batch well past the size the server receives into a buffer of its own (64 KiB), built with
/// the protocol crate's encoder (the test hasher covers small payloads only).
fn large_batch(messages: usize, seed: u8) -> anyhow::Result<(Vec<u8>, Vec<Vec<u8>>)> {
    let payloads: Vec<Vec<u8>> = (0..messages)
        .map(|i| vec![seed.wrapping_add(i as u8); 1000])
        .collect();
    let mut builder = riptide_protocol::batch::BatchBuilder::new();
    for (i, payload) in payloads.iter().enumerate() {
        builder
            .push(i as u128 + 1, payload, &[], 1_700_000_000_000_000)
            .map_err(|e| anyhow::anyhow!("batch push: {e:?}"))?;
    }
    let batch = builder
        .finish()
        .map_err(|e| anyhow::anyhow!("batch finish: {e:?}"))?
        .to_vec();
    Ok((batch, payloads))
}

#[tokio::test]
async fn large_batches_arrive_in_pieces_and_are_checked_like_small_ones() {
    let server = Server::start().expect("server starts");
    bounded(TEST_TIMEOUT, async {
        let mut witness = Witness::new(&server).await?;
        let mut connection = raw_topic(&server).await?;
        let partitioning = raw::Partitioning::PartitionId(0);
        let (good, mut expected) = large_batch(200, 1)?;

        let mut corrupted = good.clone();
        corrupted[good.len() - 1] ^= 0x20;
        let body = raw::send_messages_body(1, 0, &partitioning, 200, &corrupted);
        send_refused_with(
            &mut connection,
            &body,
            INVALID_MESSAGE_CHECKSUM,
            "large corrupted batch",
        )
        .await?;
        let body = raw::send_messages_body(1, 0, &partitioning, 199, &good);
        let reply = connection.call(code::SEND_MESSAGES, &body).await?;
        ensure!(
            reply.is_reply() && reply.status() != 0,
            "large batch with a wrong count: {}",
            reply.describe()
        );
        ensure!(
            stored_payloads(&mut connection).await?.is_empty(),
            "a refused large batch was stored"
        );

        // The intact batch in uneven pieces: inside the header, inside the metadata section,
        // just past the batch header, then the rest in slices the server must put together.
        let header = connection.header_for(code::SEND_MESSAGES);
        let frame = header.emit(&raw::send_messages_body(1, 0, &partitioning, 200, &good));
        let mut cuts = vec![
            0,
            100,
            raw::HEADER_SIZE_BYTES + 6,
            raw::HEADER_SIZE_BYTES + 600,
        ];
        cuts.extend((1..8).map(|i| i * frame.len() / 8));
        cuts.push(frame.len());
        for piece in cuts.windows(2) {
            connection.send_bytes(&frame[piece[0]..piece[1]]).await?;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let reply = connection.read_frame().await?;
        ensure!(
            reply.is_reply() && reply.status() == 0,
            "large batch in pieces: {}",
            reply.describe()
        );

        // A second one with a ping in the same write: the bytes after the batch are the next frame.
        let (second, second_payloads) = large_batch(100, 7)?;
        let header = connection.header_for(code::SEND_MESSAGES);
        let mut bytes = header.emit(&raw::send_messages_body(1, 0, &partitioning, 100, &second));
        bytes.extend(connection.header_for(code::PING).emit(&[]));
        connection.send_bytes(&bytes).await?;
        for what in ["second large batch", "ping behind it"] {
            let reply = connection.read_frame().await?;
            ensure!(
                reply.is_reply() && reply.status() == 0,
                "{what}: {}",
                reply.describe()
            );
        }
        expected.extend(second_payloads);
        let stored = stored_payloads(&mut connection).await?;
        ensure!(
            stored == expected,
            "stored {} messages, not the {} sent",
            stored.len(),
            expected.len()
        );
        witness.check("large batches").await?;
        Ok(())
    })
    .await
    .expect("test body");
    server.finish().expect("server still healthy");
}

#[tokio::test]
async fn large_batches_received_into_reused_buffers_keep_exactly_their_own_bytes() {
    // No read cache: every written batch leaves memory at once and its buffer goes back to the
    // network workers, so later (smaller and larger) batches are received into used buffers.
    let server = Server::start_with_env(&[("RIPTIDE_STORAGE_READ_CACHE_BYTES", "0")])
        .expect("server starts");
    bounded(TEST_TIMEOUT, async {
        let mut witness = Witness::new(&server).await?;
        let mut connection = raw_topic(&server).await?;
        let partitioning = raw::Partitioning::PartitionId(0);
        let mut expected = Vec::new();
        for (round, messages) in [200usize, 120, 200, 80, 260, 100, 200, 70, 150, 240]
            .into_iter()
            .enumerate()
        {
            let (batch, payloads) = large_batch(messages, (round as u8).wrapping_mul(31))?;
            let body = raw::send_messages_body(1, 0, &partitioning, messages as u32, &batch);
            let reply = connection.call(code::SEND_MESSAGES, &body).await?;
            ensure!(
                reply.is_reply() && reply.status() == 0,
                "batch {round} of {messages}: {}",
                reply.describe()
            );
            expected.extend(payloads);
            if round == 4 {
                // A corrupted batch in a reused buffer is refused like any other.
                let (mut corrupted, _) = large_batch(90, 5)?;
                let last = corrupted.len() - 1;
                corrupted[last] ^= 0x01;
                let body = raw::send_messages_body(1, 0, &partitioning, 90, &corrupted);
                send_refused_with(
                    &mut connection,
                    &body,
                    INVALID_MESSAGE_CHECKSUM,
                    "corrupted batch in a reused buffer",
                )
                .await?;
            }
        }
        let mut stored = Vec::new();
        while stored.len() < expected.len() {
            let body = raw::poll_body(1, 0, 0, stored.len() as u64, 1000);
            let reply = connection.call(code::POLL_MESSAGES, &body).await?;
            ensure!(reply.status() == 0, "poll: {}", reply.describe());
            let payloads = raw::poll_reply(&reply.body)?.2;
            ensure!(
                !payloads.is_empty(),
                "poll at {} returned nothing",
                stored.len()
            );
            stored.extend(payloads);
        }
        ensure!(
            stored == expected,
            "{} messages stored; they differ from the {} sent",
            stored.len(),
            expected.len()
        );
        witness.check("reused buffers").await?;
        Ok(())
    })
    .await
    .expect("test body");
    server.finish().expect("server still healthy");
}

/// Eviction reasons that fit a malformed body.
const BODY_EVICTIONS: &[u8] = &[
    eviction::INVALID_REQUEST_BODY,
    6, // InvalidRequestBodySize
    eviction::MALFORMED_LOGIN,
];

/// How the server refused a request (a status, a non-zero result, or an eviction with one of
/// `evictions` followed by a close); success is a test failure.
async fn refusal(
    connection: &mut RawConnection,
    evictions: &[u8],
    what: &str,
) -> anyhow::Result<String> {
    match connection.read_outcome(raw::REPLY_TIMEOUT).await? {
        Outcome::Frame(frame) if frame.is_reply() && frame.status() != 0 => {
            ensure!(
                frame.body.is_empty(),
                "{what}: a denial with a {}-byte body",
                frame.body.len()
            );
            let pong = connection
                .ping()
                .await
                .with_context(|| format!("{what}: ping after the denial"))?;
            ensure!(
                pong.status() == 0,
                "{what}: ping after the denial got {}",
                pong.describe()
            );
            Ok(format!("status {}", frame.status()))
        }
        Outcome::Frame(frame) if frame.is_reply() => match frame.result_code() {
            Ok(code) if code != 0 => Ok(format!("result code {code}")),
            _ => bail!("{what}: accepted ({})", frame.describe()),
        },
        Outcome::Frame(frame) if frame.is_eviction() => {
            let reason = frame.eviction_reason();
            ensure!(
                evictions.contains(&reason),
                "{what}: eviction reason {reason} (expected one of {evictions:?})"
            );
            connection
                .expect_closed(CLOSE_WAIT)
                .await
                .with_context(|| format!("{what}: after the eviction"))?;
            Ok(format!("eviction {reason}"))
        }
        Outcome::Frame(frame) => bail!("{what}: unexpected {}", frame.describe()),
        Outcome::Closed => Ok("closed".into()),
        Outcome::Silent => bail!("{what}: no answer within {:?}", raw::REPLY_TIMEOUT),
    }
}

/// After a refused Register that left the connection open, reads are still unauthenticated.
async fn expect_no_session(
    connection: &mut RawConnection,
    how: &str,
    what: &str,
) -> anyhow::Result<()> {
    if how.starts_with("eviction") || how == "closed" {
        return Ok(());
    }
    let header = connection.header_for(code::GET_STREAMS);
    connection.send_bytes(&header.emit(&[])).await?;
    expect_status_and_open(
        connection,
        UNAUTHENTICATED,
        &format!("get_streams after {what}"),
    )
    .await
}

/// Sends `body` for `code` on a fresh logged-in connection and expects a refusal.
async fn expect_refused(
    server: &Server,
    code: u32,
    body: &[u8],
    what: &str,
) -> anyhow::Result<String> {
    let mut connection = logged_in(server).await?;
    let header = connection.header_for(code);
    connection.send_bytes(&header.emit(body)).await?;
    let how = refusal(&mut connection, BODY_EVICTIONS, what).await?;
    println!("{what}: refused with {how}");
    Ok(how)
}

fn send_body_with(metadata_length: Option<u32>, messages_count: u32, batch: &[u8]) -> Vec<u8> {
    let mut body = raw::send_messages_body(
        1,
        0,
        &raw::Partitioning::PartitionId(0),
        messages_count,
        batch,
    );
    if let Some(length) = metadata_length {
        body[..4].copy_from_slice(&length.to_le_bytes());
    }
    body
}

/// Malformed bodies of control-plane and read commands: (code, body, description).
fn malformed_control_bodies() -> Vec<(u32, Vec<u8>, &'static str)> {
    vec![
        (
            code::CREATE_STREAM,
            vec![],
            "create_stream with an empty body",
        ),
        (
            code::CREATE_STREAM,
            vec![200, b'a', b'b', b'c'],
            "create_stream with a name overrunning the body",
        ),
        (
            code::CREATE_STREAM,
            vec![0],
            "create_stream with an empty name",
        ),
        (
            code::CREATE_TOPIC,
            vec![9, 4, 0, 0, 0, 0, 1, 0, 0, 0, 1, b't'],
            "create_topic with identifier kind 9",
        ),
        (
            code::GET_STREAM,
            vec![1, 3, 0, 0, 0],
            "get_stream with a 3-byte numeric identifier",
        ),
        (
            code::GET_TOPIC,
            vec![1, 4, 1, 0],
            "get_topic truncated inside an identifier",
        ),
        (
            code::POLL_MESSAGES,
            raw::poll_body(1, 0, 0, 0, 10)[..10].to_vec(),
            "truncated poll",
        ),
        (
            code::POLL_MESSAGES,
            {
                let mut body = raw::poll_body(1, 0, 0, 0, 10);
                let strategy_at = body.len() - 4 - 1 - 8 - 1;
                body[strategy_at] = 9;
                body
            },
            "poll with strategy kind 9",
        ),
    ]
}

/// Malformed SendMessages bodies around a valid 2-message batch: (body, description).
fn malformed_send_bodies() -> anyhow::Result<Vec<(Vec<u8>, &'static str)>> {
    let good = raw::batch(&[b"x", b"y"], 1)?;
    let mut reserved = good.clone();
    reserved[100] = 1;
    let mut long_batch = good.clone();
    long_batch[32..40].copy_from_slice(&(good.len() as u64 + 64).to_le_bytes());
    let mut overrun = good.clone();
    let payload_length_at = raw::FIRST_FRAME_OFFSET + 36;
    overrun[payload_length_at..payload_length_at + 4].copy_from_slice(&1000u32.to_le_bytes());
    Ok(vec![
        (
            send_body_with(Some(500), 2, &good),
            "send with metadata_length past the body",
        ),
        (
            send_body_with(None, 5, &good),
            "send with messages_count 5 for a 2-message batch",
        ),
        (
            send_body_with(None, 2, &good[..good.len() - 1]),
            "send with a batch one byte short",
        ),
        (
            send_body_with(None, 2, &good[..200]),
            "send with a truncated batch header",
        ),
        (
            send_body_with(None, 2, &reserved),
            "send with non-zero reserved batch header bytes",
        ),
        (
            send_body_with(None, 2, &long_batch),
            "send whose batch_length exceeds the body",
        ),
        (
            send_body_with(None, 2, &overrun),
            "send whose frame overruns the batch",
        ),
        (
            send_body_with(None, 0, &raw::batch(&[], 1)?),
            "send of an empty batch",
        ),
    ])
}

#[tokio::test]
async fn malformed_bodies_are_refused_without_effect() {
    let server = Server::start().expect("server starts");
    bounded(TEST_TIMEOUT, async {
        let mut witness = Witness::new(&server).await?;
        let mut connection = raw_topic(&server).await?;
        let cases = malformed_control_bodies();
        for (code, body, what) in &cases {
            expect_refused(&server, *code, body, what).await?;
        }
        let send_cases = malformed_send_bodies()?;
        for (body, what) in &send_cases {
            expect_refused(&server, code::SEND_MESSAGES, body, what).await?;
        }
        ensure!(
            stored_payloads(&mut connection).await?.is_empty(),
            "a malformed send stored messages"
        );
        let streams = witness.client.get_streams().await.sdk("get_streams")?;
        ensure!(
            streams.len() == 2,
            "malformed creates left {} streams",
            streams.len()
        );
        witness.check("malformed bodies").await?;
        Ok(())
    })
    .await
    .expect("test body");
    server.finish().expect("server still healthy");
}

#[tokio::test]
async fn unknown_codes_and_operations() {
    let server = Server::start().expect("server starts");
    bounded(TEST_TIMEOUT, async {
        let mut witness = Witness::new(&server).await?;
        // Unknown non-replicated command codes: InvalidCommand, the connection stays usable.
        for unknown in [0u32, 2, 9_999, u32::MAX] {
            let mut connection = logged_in(&server).await?;
            let mut header = connection.header_for(code::PING);
            header.code = unknown;
            connection.send_bytes(&header.emit(&[])).await?;
            expect_status_and_open(
                &mut connection,
                INVALID_COMMAND,
                &format!("unknown code {unknown}"),
            )
            .await?;
        }
        // Unknown or server-internal operations: eviction InvalidRequestOperation.
        for operation in [77u8, 64, 68, 150, 163, 255] {
            let mut connection = logged_in(&server).await?;
            let mut header = connection.header_for(code::CREATE_STREAM);
            header.operation = operation;
            connection
                .send_bytes(&header.emit(&raw::wire_name("never")))
                .await?;
            expect_eviction(
                &mut connection,
                eviction::INVALID_REQUEST_OPERATION,
                &format!("operation {operation}"),
            )
            .await?;
        }
        // Operation 0 (Reserved) fails header validation.
        let mut connection = logged_in(&server).await?;
        let mut header = connection.header_for(code::PING);
        header.operation = raw::operation::RESERVED;
        connection.send_bytes(&header.emit(&[])).await?;
        expect_dropped(&mut connection, "operation 0").await?;
        ensure!(
            witness
                .client
                .get_stream(&name("never"))
                .await
                .sdk("get_stream")?
                .is_none(),
            "an unknown operation created a stream"
        );
        witness.check("unknown codes and operations").await?;
        Ok(())
    })
    .await
    .expect("test body");
    server.finish().expect("server still healthy");
}

#[tokio::test]
async fn commands_before_login_are_refused() {
    let server = Server::start().expect("server starts");
    bounded(TEST_TIMEOUT, async {
        let mut witness = Witness::new(&server).await?;
        // Non-replicated reads: status 40 Unauthenticated, connection kept (ping still allowed).
        let mut connection = RawConnection::connect(server.address()).await?;
        for read in [code::GET_STREAMS, code::GET_ME, code::GET_STATS] {
            let header = connection.header_for(read);
            connection.send_bytes(&header.emit(&[])).await?;
            expect_status_and_open(
                &mut connection,
                UNAUTHENTICATED,
                &format!("code {read} before login"),
            )
            .await?;
        }
        let poll = raw::poll_body(0, 0, 0, 0, 10);
        let header = connection.header_for(code::POLL_MESSAGES);
        connection.send_bytes(&header.emit(&poll)).await?;
        expect_status_and_open(&mut connection, UNAUTHENTICATED, "poll before login").await?;

        // Replicated operations from an unbound connection: eviction NoSession.
        let mut connection = RawConnection::connect(server.address()).await?;
        connection.session = 1;
        let header = connection.header_for(code::CREATE_STREAM);
        connection
            .send_bytes(&header.emit(&raw::wire_name("sneaky")))
            .await?;
        expect_eviction(
            &mut connection,
            eviction::NO_SESSION,
            "create_stream before login",
        )
        .await?;

        let mut connection = RawConnection::connect(server.address()).await?;
        connection.session = 1;
        let batch = raw::batch(&[b"sneaky"], 1)?;
        let body = raw::send_messages_body(0, 0, &raw::Partitioning::PartitionId(0), 1, &batch);
        let header = connection.header_for(code::SEND_MESSAGES);
        connection.send_bytes(&header.emit(&body)).await?;
        expect_eviction(
            &mut connection,
            eviction::NO_SESSION,
            "send_messages before login",
        )
        .await?;

        ensure!(
            witness
                .client
                .get_stream(&name("sneaky"))
                .await
                .sdk("get_stream")?
                .is_none(),
            "an unauthenticated create_stream was applied"
        );
        witness.check("commands before login").await?;
        Ok(())
    })
    .await
    .expect("test body");
    server.finish().expect("server still healthy");
}

async fn versions_outside_the_window_are_evicted(server: &Server) -> anyhow::Result<()> {
    // Protocol versions outside the server's window: eviction IncompatibleProtocol with the
    // window in the header.
    for version in [12u32 << 10, 1 << 20, 10 << 10, 0] {
        let mut connection = RawConnection::connect(server.address()).await?;
        let header = connection.header_for(code::LOGIN_REGISTER);
        connection
            .send_bytes(&header.emit(&raw::login_body(version, ROOT_USERNAME, ROOT_PASSWORD)))
            .await?;
        let frame = connection.read_frame().await?;
        ensure!(
            frame.is_eviction() && frame.eviction_reason() == eviction::INCOMPATIBLE_PROTOCOL,
            "protocol version {version:#x}: got {}",
            frame.describe()
        );
        let (current, minimum) = frame.eviction_protocol_window();
        ensure!(
            minimum <= raw::PROTOCOL_VERSION_0_11_0 && raw::PROTOCOL_VERSION_0_11_0 <= current,
            "version window [{minimum:#x}, {current:#x}] excludes the SDK's 0.11.0"
        );
        connection
            .expect_closed(CLOSE_WAIT)
            .await
            .context("after the version eviction")?;
    }
    Ok(())
}

async fn legacy_login_codes_are_evicted(server: &Server) -> anyhow::Result<()> {
    // Legacy login codes 38/44: eviction MalformedLogin.
    for legacy in [code::LOGIN_USER_LEGACY, code::LOGIN_PAT_LEGACY] {
        let mut connection = RawConnection::connect(server.address()).await?;
        let header = connection.header_for(legacy);
        connection
            .send_bytes(&header.emit(&raw::login_body(0, ROOT_USERNAME, ROOT_PASSWORD)))
            .await?;
        expect_eviction(
            &mut connection,
            eviction::MALFORMED_LOGIN,
            &format!("legacy login code {legacy}"),
        )
        .await?;
    }
    Ok(())
}

async fn wrong_password_is_refused(server: &Server) -> anyhow::Result<()> {
    // Wrong password: refused with InvalidCredentials, as a reply status (42) or as an
    // eviction (reason 9) that closes the connection; never a session.
    let mut connection = RawConnection::connect(server.address()).await?;
    let header = connection.header_for(code::LOGIN_REGISTER);
    connection
        .send_bytes(&header.emit(&raw::login_body(
            raw::PROTOCOL_VERSION_0_11_0,
            ROOT_USERNAME,
            "nope",
        )))
        .await?;
    let frame = connection.read_frame().await?;
    if frame.is_eviction() {
        ensure!(
            frame.eviction_reason() == 9,
            "wrong password: eviction reason {}",
            frame.eviction_reason()
        );
        connection.expect_closed(CLOSE_WAIT).await?;
    } else {
        ensure!(
            frame.is_reply() && frame.status() == 42 && frame.body.is_empty(),
            "wrong password: expected status 42 or eviction 9, got {}",
            frame.describe()
        );
        let header = connection.header_for(code::GET_STREAMS);
        connection.send_bytes(&header.emit(&[])).await?;
        expect_status_and_open(
            &mut connection,
            UNAUTHENTICATED,
            "get_streams after a failed login",
        )
        .await?;
    }
    Ok(())
}

async fn malformed_registers_are_refused(server: &Server) -> anyhow::Result<()> {
    // A Register with a truncated body or a non-zero session is refused.
    let mut connection = RawConnection::connect(server.address()).await?;
    let header = connection.header_for(code::LOGIN_REGISTER);
    let body = raw::login_body(raw::PROTOCOL_VERSION_0_11_0, ROOT_USERNAME, ROOT_PASSWORD);
    connection
        .send_bytes(&header.emit(&body[..body.len() - 6]))
        .await?;
    let how = refusal(&mut connection, BODY_EVICTIONS, "truncated register body").await?;
    println!("truncated register body: refused with {how}");
    expect_no_session(&mut connection, &how, "truncated register body").await?;
    let mut connection = RawConnection::connect(server.address()).await?;
    let mut header = connection.header_for(code::LOGIN_REGISTER);
    header.session = 5;
    connection.send_bytes(&header.emit(&body)).await?;
    let how = refusal(
        &mut connection,
        &[
            eviction::NO_SESSION,
            7,
            8,
            12,
            eviction::INVALID_REQUEST_OPERATION,
        ],
        "register with session 5",
    )
    .await?;
    println!("register with session 5: refused with {how}");
    expect_no_session(&mut connection, &how, "register with session 5").await?;
    Ok(())
}

#[tokio::test]
async fn login_gate_versions_legacy_codes_and_credentials() {
    let server = Server::start().expect("server starts");
    bounded(TEST_TIMEOUT, async {
        let mut witness = Witness::new(&server).await?;
        versions_outside_the_window_are_evicted(&server).await?;
        legacy_login_codes_are_evicted(&server).await?;
        wrong_password_is_refused(&server).await?;
        malformed_registers_are_refused(&server).await?;
        // And a correct Register still works after all that.
        let mut connection = RawConnection::connect(server.address()).await?;
        let frame = connection
            .register(raw::PROTOCOL_VERSION_0_11_0, ROOT_USERNAME, ROOT_PASSWORD)
            .await?;
        ensure!(
            frame.is_reply() && frame.status() == 0 && connection.session != 0,
            "login: {}",
            frame.describe()
        );
        let payload = frame.result_payload()?;
        ensure!(
            raw::u32_at(payload, 0) == 0,
            "root user id {}",
            raw::u32_at(payload, 0)
        );
        witness.check("login gate cases").await?;
        Ok(())
    })
    .await
    .expect("test body");
    server.finish().expect("server still healthy");
}

/// `tcp.connections_max` bounds the connections served at once across all workers: extra
/// connections are closed at once, the ones already open keep working, and room frees up when
/// connections close.
#[tokio::test]
async fn connection_limit_is_a_configuration_value() {
    const CONNECTIONS_MAX: usize = 4;
    const ATTEMPTS: usize = 12;
    let server =
        Server::start_with_env(&[("RIPTIDE_TCP_CONNECTIONS_MAX", "4")]).expect("server starts");
    bounded(TEST_TIMEOUT, async {
        let mut witness = Witness::new(&server).await?;
        let mut served = Vec::new();
        let mut refused = 0;
        for _ in 0..ATTEMPTS {
            let mut connection = RawConnection::connect(server.address()).await?;
            let header = connection.header_for(code::PING);
            // A refused connection may already be closed when we write.
            let _ = connection.send_bytes(&header.emit(&[])).await;
            match connection.read_outcome(CLOSE_WAIT).await? {
                Outcome::Frame(frame) if frame.is_reply() && frame.status() == 0 => served.push(connection),
                Outcome::Closed => refused += 1,
                Outcome::Frame(frame) => bail!("over the limit: unexpected {}", frame.describe()),
                Outcome::Silent => bail!("a connection over the limit was neither served nor closed"),
            }
        }
        // The witness holds one of the connections.
        ensure!(
            served.len() < CONNECTIONS_MAX && !served.is_empty(),
            "connections_max {CONNECTIONS_MAX} (one held by the witness): {} more served, {refused} refused",
            served.len()
        );
        witness.check("connections over the limit").await?;
        for connection in &mut served {
            let pong = connection.ping().await?;
            ensure!(pong.status() == 0, "a served connection stopped working: {}", pong.describe());
        }
        drop(served);
        // Closed connections give their room back (the close is noticed asynchronously).
        let deadline = tokio::time::Instant::now() + CLOSE_WAIT;
        loop {
            let mut connection = RawConnection::connect(server.address()).await?;
            let header = connection.header_for(code::PING);
            let _ = connection.send_bytes(&header.emit(&[])).await;
            if let Outcome::Frame(frame) = connection.read_outcome(CLOSE_WAIT).await? {
                ensure!(frame.status() == 0, "after closing: {}", frame.describe());
                break;
            }
            ensure!(tokio::time::Instant::now() < deadline, "no room came back after closing every connection");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        witness.check("connections closed").await?;
        Ok(())
    })
    .await
    .expect("test body");
    server.finish().expect("server still healthy");
}

/// `limits.batch_messages_max` and `limits.batch_size_max_bytes` refuse a batch with an error
/// status (the frame itself is fine, so the connection stays usable) and store nothing of it.
#[tokio::test]
async fn batch_limits_are_configuration_values() {
    let server = Server::start_with_env(&[
        ("RIPTIDE_LIMITS_BATCH_MESSAGES_MAX", "10"),
        ("RIPTIDE_LIMITS_BATCH_SIZE_MAX_BYTES", "65536"),
    ])
    .expect("server starts");
    bounded(TEST_TIMEOUT, async {
        let witness = Witness::new(&server).await?;
        let mut connection = raw_topic(&server).await?;
        let partitioning = raw::Partitioning::PartitionId(0);
        let eleven: Vec<&[u8]> = vec![b"m"; 11];
        let batch = raw::batch(&eleven, 1)?;
        let body = raw::send_messages_body(1, 0, &partitioning, 11, &batch);
        let reply = connection.call(code::SEND_MESSAGES, &body).await?;
        ensure!(
            reply.is_reply() && reply.status() != 0,
            "11 messages with batch_messages_max 10: {}",
            reply.describe()
        );
        println!(
            "11 messages over batch_messages_max 10: status {}",
            reply.status()
        );
        let ten: Vec<&[u8]> = vec![b"m"; 10];
        let batch = raw::batch(&ten, 1)?;
        let body = raw::send_messages_body(1, 0, &partitioning, 10, &batch);
        let reply = connection.call(code::SEND_MESSAGES, &body).await?;
        ensure!(reply.status() == 0, "10 messages: {}", reply.describe());

        // 70 KB of payload in one message: over the 64 KiB batch size, under the frame limit.
        let mut big = vec![IggyMessage::from(vec![5u8; 70_000])];
        let sent = witness
            .client
            .send_messages(
                &name("witness"),
                &name("w"),
                &Partitioning::partition_id(0),
                &mut big,
            )
            .await;
        ensure!(
            sent.is_err(),
            "a 70 KB batch passed batch_size_max_bytes 65536"
        );
        println!("70 KB batch over batch_size_max_bytes: {:?}", sent.err());
        ensure!(
            stored_payloads(&mut connection).await?.len() == 10,
            "only the 10-message batch may be stored"
        );
        let mut witness = Witness {
            client: server.client().await?,
            sent: witness.sent,
        };
        witness.check("batches over the limits").await?;
        Ok(())
    })
    .await
    .expect("test body");
    server.finish().expect("server still healthy");
}
