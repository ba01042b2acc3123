//! Differential decoding: riptide's request decoder against a model of Iggy 0.11's server built on
//! `iggy_binary_protocol` 0.11.0's own decoders (`common/iggy_server.rs`), for every command code.
//!
//! Bodies are valid encodings (iggy's encoders, through the generators the round-trip test uses)
//! and their mutations: bytes appended, cut at every length, bytes flipped, every byte and every
//! 4- and 8-byte field set to its bounds; plus random bytes and every command code in every
//! addressing. Both sides must accept or refuse alike, with the same status or eviction, and
//! decode the same value; or the difference must be one of the documented exceptions
//! ([`Exception`], `docs/internals.md`). Every exception must also still happen, so the list
//! cannot outlive the difference it excuses.

mod common;
#[path = "common/iggy_server.rs"]
mod iggy_server;

use bytes::BytesMut;
use common::every_request;
use iggy_server::{addressing, compare, iggy, riptide, Answer, Exception};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use riptide_protocol::codes::{CommandCode, ErrorCode, EvictionReason, Operation};
use riptide_protocol::wire::requests::messages::{RawMessage, SendMessagesEncoder};
use riptide_protocol::wire::{encode_user_headers, WireIdentifier, WirePartitioning};
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// A request the SDK could send: its command and body.
#[derive(Debug, Clone)]
struct Sample {
    command: CommandCode,
    body: Vec<u8>,
}

impl Sample {
    fn addressing(&self) -> (u8, u32) {
        addressing(self.command)
    }
}

/// A SendMessages body as iggy's SDK encoder writes it.
fn send_body() -> impl Strategy<Value = Sample> {
    let identifier = prop_oneof![
        any::<u32>().prop_map(WireIdentifier::numeric),
        "[a-z]{1,12}".prop_map(|name| WireIdentifier::named(name).unwrap()),
    ];
    let partitioning = prop_oneof![
        Just(WirePartitioning::Balanced),
        any::<u32>().prop_map(WirePartitioning::PartitionId),
        vec(any::<u8>(), 1..32).prop_map(WirePartitioning::MessagesKey),
    ];
    let message = (
        any::<u128>(),
        0u64..1_000_000,
        vec(any::<u8>(), 1..48),
        any::<bool>(),
    );
    (
        identifier.clone(),
        identifier,
        partitioning,
        vec(message, 1..5),
    )
        .prop_map(|(stream, topic, partitioning, messages)| {
            let mut headers = BytesMut::new();
            encode_user_headers(
                &[(2u8, b"key".as_slice(), 2u8, b"value".as_slice())],
                &mut headers,
            );
            let raw: Vec<RawMessage<'_>> = messages
                .iter()
                .map(|(id, origin, payload, with_headers)| RawMessage {
                    id: *id,
                    origin_timestamp: *origin,
                    headers: with_headers.then_some(&headers[..]),
                    payload,
                })
                .collect();
            let mut body = BytesMut::new();
            SendMessagesEncoder::encode(&mut body, &stream, &topic, &partitioning, &raw).unwrap();
            Sample {
                command: CommandCode::SendMessages,
                body: body.to_vec(),
            }
        })
}

/// Every command with a body the SDK encodes (logins and SendMessages included).
fn valid_sample() -> impl Strategy<Value = Sample> {
    prop_oneof![
        12 => every_request().prop_map(|request| {
            let mut body = Vec::new();
            request.encode(&mut body).unwrap();
            Sample { command: request.command(), body }
        }),
        1 => send_body(),
    ]
}

/// Records what happened over a run: commands seen, exceptions met.
#[derive(Default)]
struct Tally {
    commands: HashMap<CommandCode, usize>,
    exceptions: BTreeMap<Exception, usize>,
    compared: usize,
}

impl Tally {
    fn check(&mut self, operation: u8, code: u32, body: &[u8]) -> Result<(), TestCaseError> {
        self.compared += 1;
        match compare(operation, code, body) {
            Ok(None) => Ok(()),
            Ok(Some(exception)) => {
                *self.exceptions.entry(exception).or_default() += 1;
                Ok(())
            }
            Err(disagreement) => Err(TestCaseError::fail(disagreement)),
        }
    }

    fn check_sample(&mut self, sample: &Sample, body: &[u8]) -> Result<(), TestCaseError> {
        let (operation, code) = sample.addressing();
        self.check(operation, code, body)
    }
}

fn runner(cases: u32, seed: u8) -> TestRunner {
    let config = Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    };
    TestRunner::new_with_rng(
        config,
        TestRng::from_seed(RngAlgorithm::ChaCha, &[seed; 32]),
    )
}

/// Commands the differential covers: all but the legacy logins, which have no body of their own
/// (any NonReplicated frame carrying their code is evicted; see `addressing_agrees`).
fn covered_commands() -> Vec<CommandCode> {
    CommandCode::ALL
        .iter()
        .copied()
        .filter(|c| {
            !matches!(
                c,
                CommandCode::LoginUser | CommandCode::LoginWithPersonalAccessToken
            )
        })
        .collect()
}

fn assert_every_command_seen(tally: &Tally, at_least: usize) {
    for command in covered_commands() {
        let seen = tally.commands.get(&command).copied().unwrap_or(0);
        assert!(
            seen >= at_least,
            "{command:?} was generated {seen} times, fewer than {at_least}"
        );
    }
}

/// Valid bodies, the same with bytes appended, cut at every length, and with bytes flipped.
#[test]
fn valid_appended_truncated_and_flipped_bodies_agree() {
    let tally = RefCell::new(Tally::default());
    let strategy = (
        valid_sample(),
        vec(any::<u8>(), 1..24),
        vec((any::<prop::sample::Index>(), 1u8..=255), 1..4),
    );
    runner(3000, 1)
        .run(&strategy, |(sample, tail, flips)| {
            let mut tally = tally.borrow_mut();
            *tally.commands.entry(sample.command).or_default() += 1;
            tally.check_sample(&sample, &sample.body)?;
            let mut appended = sample.body.clone();
            appended.extend_from_slice(&tail);
            tally.check_sample(&sample, &appended)?;
            for cut in 0..sample.body.len() {
                tally.check_sample(&sample, &sample.body[..cut])?;
            }
            if !sample.body.is_empty() {
                let mut flipped = sample.body.clone();
                for (at, mask) in &flips {
                    let at = at.index(flipped.len());
                    flipped[at] ^= mask;
                }
                tally.check_sample(&sample, &flipped)?;
            }
            Ok(())
        })
        .unwrap();
    let tally = tally.into_inner();
    assert_every_command_seen(&tally, 20);
    println!(
        "{} bodies compared; exceptions met: {:?}",
        tally.compared, tally.exceptions
    );
}

/// Byte values at the edges of what a kind, a length or a flag can be.
const BOUND_BYTES: [u8; 10] = [0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x7f, 0x80, 0xfe, 0xff];

/// Every byte of a valid body set to each bound, and every 4- and 8-byte window (a u32 or u64
/// field wherever one may sit) set to zero, all ones and the signed maximum.
#[test]
fn fields_at_their_bounds_agree() {
    let tally = RefCell::new(Tally::default());
    runner(400, 2)
        .run(&valid_sample(), |sample| {
            let mut tally = tally.borrow_mut();
            *tally.commands.entry(sample.command).or_default() += 1;
            let mut body = sample.body.clone();
            for at in 0..body.len() {
                let original = body[at];
                for bound in BOUND_BYTES {
                    body[at] = bound;
                    tally.check_sample(&sample, &body)?;
                }
                body[at] = original;
            }
            for width in [4usize, 8] {
                for at in 0..body.len().saturating_sub(width - 1) {
                    let original = body[at..at + width].to_vec();
                    for fill in [[0x00u8; 8], [0xff; 8], [0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0]] {
                        body[at..at + width].copy_from_slice(&fill[..width]);
                        tally.check_sample(&sample, &body)?;
                    }
                    body[at..at + width].copy_from_slice(&original);
                }
            }
            Ok(())
        })
        .unwrap();
    let tally = tally.into_inner();
    assert_every_command_seen(&tally, 2);
    println!(
        "{} bodies compared; exceptions met: {:?}",
        tally.compared, tally.exceptions
    );
}

/// Random bytes as the body of every command.
#[test]
fn random_bodies_agree() {
    let tally = RefCell::new(Tally::default());
    let strategy = (
        prop::sample::select(covered_commands()),
        vec(any::<u8>(), 0..96),
    );
    runner(20_000, 3)
        .run(&strategy, |(command, body)| {
            let (operation, code) = addressing(command);
            tally.borrow_mut().check(operation, code, &body)
        })
        .unwrap();
}

/// Every command code 0..1024 (and a few beyond) sent as NonReplicated, every client operation,
/// with an empty and a one-byte body: unknown codes, replicated codes in a non-replicated header
/// and legacy logins are refused alike.
#[test]
fn addressing_agrees() {
    let mut tally = Tally::default();
    let codes = (0u32..1024).chain([9_999, 65_536, u32::MAX]);
    let nonreplicated = Operation::NonReplicated as u8;
    for code in codes {
        for body in [&[][..], &[1][..]] {
            tally.check(nonreplicated, code, body).unwrap();
        }
    }
    for operation in Operation::ALL
        .iter()
        .filter(|op| op.is_client_allowed() && **op != Operation::NonReplicated)
    {
        for body in [&[][..], &[0][..]] {
            tally.check(*operation as u8, 0, body).unwrap();
        }
    }
    assert_eq!(
        iggy(nonreplicated, 202, &[]),
        Answer::Status(ErrorCode::FeatureUnavailable)
    );
    assert_eq!(
        iggy(nonreplicated, 38, &[]),
        Answer::Evict(EvictionReason::MalformedLogin)
    );
}

/// The exact bytes of Apache Iggy's Node.js SDK DeleteTopic (`foreign/node/src/wire/topic/
/// delete-topic.command.ts`): stream id, topic id, then a legacy `partitions_count` u32.
fn node_sdk_delete_topic() -> Vec<u8> {
    let mut body = vec![1, 4];
    body.extend_from_slice(&7u32.to_le_bytes());
    body.extend_from_slice(&[1, 4]);
    body.extend_from_slice(&0u32.to_le_bytes());
    body.extend_from_slice(&3u32.to_le_bytes());
    body
}

#[test]
fn node_sdk_delete_topic_is_accepted_by_both() {
    let body = node_sdk_delete_topic();
    let operation = Operation::DeleteTopic as u8;
    assert_eq!(compare(operation, 0, &body), Ok(None));
    let Answer::Accept { command, canonical } = riptide(operation, 0, &body).answer else {
        panic!("riptide refused the Node.js SDK's DeleteTopic");
    };
    assert_eq!(command, CommandCode::DeleteTopic);
    assert_eq!(
        canonical,
        body[..12],
        "the identifiers, without the trailing u32"
    );
}

/// The comparison can fail: riptide's decoder before this change refused the Node.js SDK's
/// DeleteTopic with InvalidFormat, and nothing excuses that answer.
#[test]
fn a_disagreement_is_not_excused() {
    let body = node_sdk_delete_topic();
    let theirs = iggy(Operation::DeleteTopic as u8, 0, &body);
    let strict = iggy_server::Ours {
        answer: Answer::Status(ErrorCode::InvalidFormat),
        batch_error: None,
    };
    assert_ne!(theirs, strict.answer);
    assert_eq!(
        iggy_server::exception(Some(CommandCode::DeleteTopic), &theirs, &strict),
        None
    );
}

/// One body per exception: each still happens and is recognised as itself.
#[test]
fn every_exception_still_happens() {
    let send = |messages: &[RawMessage<'_>]| {
        let mut body = BytesMut::new();
        let id = WireIdentifier::numeric(0);
        SendMessagesEncoder::encode(&mut body, &id, &id, &WirePartitioning::Balanced, messages)
            .unwrap();
        body.to_vec()
    };
    let message = |payload: &'static [u8]| RawMessage {
        id: 1,
        origin_timestamp: 5,
        headers: None,
        payload,
    };
    let mut padded_metadata = send(&[message(b"x")]);
    padded_metadata[0] += 1;
    let flush = {
        let mut body = vec![1, 4, 0, 0, 0, 0, 1, 4, 0, 0, 0, 0];
        body.extend_from_slice(&0u32.to_le_bytes());
        body.push(1);
        body
    };
    let cases: [(Operation, u32, Vec<u8>, Exception); 6] = [
        (
            Operation::NonReplicated,
            CommandCode::GetClient.as_u32(),
            vec![1, 2],
            Exception::EmptySuccessForMalformedRead,
        ),
        (
            Operation::DeleteTopic,
            0,
            vec![1, 4, 0],
            Exception::PanicAtApply,
        ),
        (
            Operation::NonReplicated,
            CommandCode::FlushUnsavedBuffer.as_u32(),
            flush,
            Exception::FlushImplemented,
        ),
        (
            Operation::SendMessages,
            0,
            padded_metadata,
            Exception::AnsweredInsteadOfDropped,
        ),
        (
            Operation::SendMessages,
            0,
            send(&[message(b"")]),
            Exception::BatchContentChecked,
        ),
        (
            Operation::NonReplicated,
            CommandCode::SyncConsumerGroup.as_u32(),
            vec![],
            Exception::EmptySuccessForMalformedRead,
        ),
    ];
    let mut met = BTreeSet::new();
    for (operation, code, body, expected) in cases {
        assert_eq!(
            compare(operation as u8, code, &body),
            Ok(Some(expected)),
            "{operation:?} {code}"
        );
        met.insert(expected);
    }
    assert_eq!(met, Exception::ALL.into_iter().collect());
}

/// Identifiers at their bounds, raw: (kind, value).
fn identifiers_at_bounds() -> Vec<(u8, Vec<u8>)> {
    vec![
        (1, vec![0; 4]),
        (1, vec![0xff; 4]),
        (1, vec![]),
        (1, vec![1, 2, 3]),
        (1, vec![1, 2, 3, 4, 5]),
        (2, vec![]),
        (2, b"a".to_vec()),
        (2, vec![b'a'; 255]),
        (2, vec![0xff]),
        (2, vec![b'a', 0xc3]),
        (0, vec![0; 4]),
        (3, vec![0; 4]),
        (255, vec![1]),
    ]
}

/// Partitionings at their bounds, raw: (kind, value).
fn partitionings_at_bounds() -> Vec<(u8, Vec<u8>)> {
    vec![
        (1, vec![]),
        (1, vec![0]),
        (2, vec![0; 4]),
        (2, vec![0xff; 4]),
        (2, vec![]),
        (2, vec![1, 2, 3]),
        (2, vec![1, 2, 3, 4, 5]),
        (3, vec![]),
        (3, vec![7]),
        (3, vec![0xff; 255]),
        (0, vec![]),
        (4, vec![1]),
        (255, vec![]),
    ]
}

fn push_tlv(out: &mut Vec<u8>, (kind, value): &(u8, Vec<u8>)) {
    out.push(*kind);
    out.push(value.len() as u8);
    out.extend_from_slice(value);
}

/// SendMessages' metadata section is riptide's own zero-copy parser, not iggy's decoder: every
/// identifier and partitioning at its bounds, with `metadata_length` exact, one short and one
/// long, and `messages_count` right and wrong, in front of a valid batch.
#[test]
fn send_metadata_at_its_bounds_agrees() {
    let mut batch_body = BytesMut::new();
    let id = WireIdentifier::numeric(0);
    let messages = [RawMessage {
        id: 9,
        origin_timestamp: 3,
        headers: None,
        payload: b"payload",
    }];
    SendMessagesEncoder::encode(
        &mut batch_body,
        &id,
        &id,
        &WirePartitioning::Balanced,
        &messages,
    )
    .unwrap();
    let batch = &batch_body[4 + 6 + 6 + 2 + 4..];
    let mut tally = Tally::default();
    let operation = Operation::SendMessages as u8;
    for stream in identifiers_at_bounds() {
        for topic in identifiers_at_bounds() {
            for partitioning in partitionings_at_bounds() {
                let mut fields = Vec::new();
                push_tlv(&mut fields, &stream);
                push_tlv(&mut fields, &topic);
                push_tlv(&mut fields, &partitioning);
                for count in [1u32, 0, 2] {
                    let mut with_count = fields.clone();
                    with_count.extend_from_slice(&count.to_le_bytes());
                    for length in [with_count.len(), with_count.len() - 1, with_count.len() + 1] {
                        let mut body = (length as u32).to_le_bytes().to_vec();
                        body.extend_from_slice(&with_count);
                        body.extend_from_slice(batch);
                        tally.check(operation, 0, &body).unwrap();
                    }
                }
            }
        }
    }
    println!("{} send metadata sections compared", tally.compared);
}

/// What a frame of a hand-built batch holds; lengths and deltas may lie.
#[derive(Debug, Clone)]
struct FrameSpec {
    offset_delta: Option<u32>,
    timestamp_delta: u32,
    reserved: u64,
    payload: Vec<u8>,
    user_headers: Vec<u8>,
    payload_length_skew: i8,
}

/// A batch built field by field with every checksum computed over the bytes as they are, so the
/// comparison rests on structure alone: (message_count skew, batch_length skew, a reserved
/// header byte, origin timestamp, frames).
fn sealed_batch(
    frames: &[FrameSpec],
    count_skew: i8,
    length_skew: i8,
    reserved_header_byte: Option<u8>,
    origin_timestamp: u64,
) -> Vec<u8> {
    use riptide_protocol::wire::batch::BatchHeader;
    use std::hash::Hasher;
    let mut blob = Vec::new();
    let mut starts = Vec::new();
    for (index, frame) in frames.iter().enumerate() {
        let start = blob.len();
        starts.push(start);
        let payload_length = (frame.payload.len() as i64 + i64::from(frame.payload_length_skew))
            .clamp(0, i64::from(u32::MAX)) as u32;
        blob.extend_from_slice(&[0; 8]);
        blob.extend_from_slice(&(index as u128 + 1).to_le_bytes());
        blob.extend_from_slice(&frame.offset_delta.unwrap_or(index as u32).to_le_bytes());
        blob.extend_from_slice(&frame.timestamp_delta.to_le_bytes());
        blob.extend_from_slice(&(frame.user_headers.len() as u32).to_le_bytes());
        blob.extend_from_slice(&payload_length.to_le_bytes());
        blob.extend_from_slice(&frame.reserved.to_le_bytes());
        blob.extend_from_slice(&frame.payload);
        blob.extend_from_slice(&frame.user_headers);
        let checksum = twox_hash::XxHash3_64::oneshot(&blob[start + 8..]);
        blob[start..start + 8].copy_from_slice(&checksum.to_le_bytes());
    }
    let count = (frames.len() as i64 + i64::from(count_skew)).max(0) as u32;
    let length = (256 + blob.len() as i64 + i64::from(length_skew)).max(0) as u64;
    let mut header = BatchHeader::new(0, origin_timestamp, length, count);
    // The batch checksum binds the header fields and each frame's checksum field, taken here
    // from the frames as built (iggy's helper walks the frames and stops at a malformed one).
    let mut hasher = twox_hash::XxHash3_64::with_seed(0);
    for field in [0, 0, 0, origin_timestamp, length] {
        hasher.write(&field.to_le_bytes());
    }
    hasher.write(&count.to_le_bytes());
    for start in starts {
        hasher.write(&blob[start..start + 8]);
    }
    header.batch_checksum = hasher.finish();
    let mut batch = vec![0u8; 256];
    header.encode_into(&mut batch);
    if let Some(byte) = reserved_header_byte {
        batch[52 + usize::from(byte) % 204] = byte.max(1);
    }
    batch.extend_from_slice(&blob);
    batch
}

fn frame_spec() -> impl Strategy<Value = FrameSpec> {
    let mut headers = BytesMut::new();
    encode_user_headers(
        &[(2u8, b"k".as_slice(), 2u8, b"v".as_slice())],
        &mut headers,
    );
    let valid_headers = headers.to_vec();
    (
        prop_oneof![8 => Just(None), 1 => any::<u32>().prop_map(Some)],
        prop_oneof![Just(0u32), Just(u32::MAX), any::<u32>()],
        prop_oneof![8 => Just(0u64), 1 => Just(1u64)],
        prop_oneof![8 => vec(any::<u8>(), 1..16), 1 => Just(vec![])],
        prop_oneof![
            6 => Just(vec![]),
            2 => Just(valid_headers),
            1 => vec(any::<u8>(), 1..8),
        ],
        prop_oneof![8 => Just(0i8), 1 => -2i8..=2],
    )
        .prop_map(
            |(offset_delta, timestamp_delta, reserved, payload, user_headers, skew)| FrameSpec {
                offset_delta,
                timestamp_delta,
                reserved,
                payload,
                user_headers,
                payload_length_skew: skew,
            },
        )
}

/// Batches whose checksums are right but whose structure is at or past its bounds: counts and
/// lengths one off, reserved bytes set, empty payloads, lying payload lengths, garbage user
/// headers, offset and timestamp deltas anywhere, a timestamp at the top of its range.
#[test]
fn sealed_batches_at_their_bounds_agree() {
    let tally = RefCell::new(Tally::default());
    let strategy = (
        vec(frame_spec(), 0..4),
        prop_oneof![6 => Just(0i8), 1 => -1i8..=1],
        prop_oneof![6 => Just(0i8), 1 => -2i8..=2],
        prop_oneof![12 => Just(None), 1 => any::<u8>().prop_map(Some)],
        prop_oneof![Just(0u64), Just(u64::MAX), any::<u64>()],
        any::<u32>(),
    );
    runner(6000, 4)
        .run(
            &strategy,
            |(frames, count_skew, length_skew, reserved, origin, stream)| {
                let batch = sealed_batch(&frames, count_skew, length_skew, reserved, origin);
                let count = u32::from_le_bytes(batch[48..52].try_into().unwrap());
                let mut body = Vec::new();
                riptide_protocol::request::SendMessages::emit_prefix(
                    riptide_protocol::request::Identifier::Numeric(stream),
                    riptide_protocol::request::Identifier::Numeric(1),
                    riptide_protocol::request::Partitioning::Balanced,
                    count,
                    &mut body,
                );
                body.extend_from_slice(&batch);
                tally
                    .borrow_mut()
                    .check(Operation::SendMessages as u8, 0, &body)
            },
        )
        .unwrap();
    let tally = tally.into_inner();
    println!(
        "{} sealed batches compared; exceptions met: {:?}",
        tally.compared, tally.exceptions
    );
    assert!(
        tally
            .exceptions
            .contains_key(&Exception::BatchContentChecked),
        "no batch was refused on content alone"
    );
}

/// The login version gate at its bounds, in both body shapes.
#[test]
fn register_versions_at_their_bounds_agree() {
    use riptide_protocol::constants::{SERVER_PROTOCOL_VERSION, SERVER_PROTOCOL_VERSION_MIN};
    use riptide_protocol::login::{encode_register, pack_protocol_version, ClientVersion, Login};
    let versions = [
        0,
        1,
        SERVER_PROTOCOL_VERSION_MIN - 1,
        SERVER_PROTOCOL_VERSION_MIN,
        SERVER_PROTOCOL_VERSION_MIN + 1,
        SERVER_PROTOCOL_VERSION,
        pack_protocol_version(0, 11, 1023),
        pack_protocol_version(0, 12, 0),
        pack_protocol_version(0, 10, 1023),
        pack_protocol_version(1, 11, 0),
        u32::MAX,
    ];
    let mut tally = Tally::default();
    for protocol_version in versions {
        let version = ClientVersion {
            protocol_version,
            sdk_name: "node-sdk".into(),
            sdk_version: "0.10.0".into(),
        };
        let logins = [
            Login::Password {
                version: version.clone(),
                username: "iggy".into(),
                password: "iggy".into(),
                context: None,
            },
            Login::Token {
                version,
                token: "t".repeat(64),
                context: Some("ctx".into()),
            },
        ];
        for login in &logins {
            let mut body = BytesMut::new();
            encode_register(login, &mut body).unwrap();
            for cut in 0..=body.len() {
                tally
                    .check(Operation::Register as u8, 0, &body[..cut])
                    .unwrap();
            }
            let mut appended = body.to_vec();
            appended.extend_from_slice(&[0xff; 5]);
            tally
                .check(Operation::Register as u8, 0, &appended)
                .unwrap();
        }
    }
}
