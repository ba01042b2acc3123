//! No input can make a decoder panic: random bytes, and valid encodings with bytes flipped,
//! inserted or cut off (which reach far deeper into each decoder than noise does).

mod common;

use common::{addressing, every_request};
use proptest::collection::vec;
use proptest::prelude::*;
use riptide_protocol::batch::{
    slice_record, stamp, verify_polled, verify_structure, Batch, BatchBuilder, BatchHeaderRepr,
    Frames, MessageFrame,
};
use riptide_protocol::codes::{CommandCode, Operation};
use riptide_protocol::header::{
    frame_size_bytes, EvictionHeader, ReplyHeader, RequestHeader, RequestRepr,
};
use riptide_protocol::login::parse_register;
use riptide_protocol::reply::parse_result;
use riptide_protocol::request::{Request, SendMessages};

/// Edits applied to a valid encoding: (position, xor mask) flips, then an optional cut.
#[derive(Debug, Clone)]
struct Mutation {
    flips: Vec<(usize, u8)>,
    cut: Option<usize>,
    insert: Option<(usize, u8)>,
}

fn mutation() -> impl Strategy<Value = Mutation> {
    (
        vec((any::<usize>(), 1u8..=255), 0..4),
        proptest::option::of(any::<usize>()),
        proptest::option::weighted(0.2, (any::<usize>(), any::<u8>())),
    )
        .prop_map(|(flips, cut, insert)| Mutation { flips, cut, insert })
}

fn mutate(mut bytes: Vec<u8>, mutation: &Mutation) -> Vec<u8> {
    if !bytes.is_empty() {
        for (at, mask) in &mutation.flips {
            let len = bytes.len();
            bytes[at % len] ^= mask;
        }
    }
    if let Some((at, byte)) = mutation.insert {
        let at = at % (bytes.len() + 1);
        bytes.insert(at, byte);
    }
    if let Some(cut) = mutation.cut {
        bytes.truncate(cut % (bytes.len() + 1));
    }
    bytes
}

fn operation_byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        proptest::sample::select(Operation::ALL).prop_map(|op| op as u8),
        any::<u8>(),
    ]
}

fn command_code() -> impl Strategy<Value = u32> {
    prop_oneof![
        proptest::sample::select(CommandCode::ALL).prop_map(|c| c.as_u32()),
        any::<u32>(),
    ]
}

fn exercise_request(operation: u8, code: u32, body: &[u8]) {
    match Request::decode(operation, code, body) {
        Ok(request) => {
            let _ = request.command();
            let mut out = Vec::new();
            let _ = request.encode(&mut out);
        }
        Err(error) => {
            let _ = error.rejection();
            let _ = error.to_string();
        }
    }
    let _ = parse_register(body);
    let _ = parse_result(body);
    if let Ok(send) = SendMessages::parse(body) {
        exercise_batch(send.batch.to_vec(), 0, 1);
    }
}

fn exercise_batch(mut bytes: Vec<u8>, offset: u64, count: u32) {
    if let Ok(batch) = Batch::new_checked(&bytes) {
        assert!(batch.messages().count() as u32 == batch.message_count());
    }
    let mut rest = &bytes[..];
    while let Ok((_, tail)) = Batch::parse_prefix(rest) {
        rest = tail;
    }
    if let Some(slice) = slice_record(&bytes, offset, count) {
        assert!(slice.frames.end <= bytes.len() && slice.message_count <= count);
    }
    if let Ok(repr) = BatchHeaderRepr::parse(&bytes, 1 << 26) {
        assert!(repr.message_count > 0 && repr.batch_length_bytes <= 1 << 26);
        let _ = repr.last_offset();
    }
    if let Ok(repr) = verify_polled(&bytes, 1 << 26) {
        assert_eq!(repr.batch_length_bytes, bytes.len());
    }
    let _ = verify_structure(&bytes, 1 << 26);
    let _ = Frames::over(&bytes).count();
    if let Ok(frame) = MessageFrame::new_checked(&bytes[..]) {
        let _ = (
            frame.payload(),
            frame.user_headers(),
            frame.computed_checksum(),
        );
    }
    let _ = stamp(&mut bytes, 1, offset, 2);
}

fn exercise_header(bytes: &[u8]) {
    let _ = frame_size_bytes(bytes, 1 << 26);
    if let Ok(header) = RequestHeader::new_checked(bytes) {
        let _ = header.validate(1 << 26);
        let _ = header.resolved_command();
        let _ = header.body_len();
        let mut out = [0u8; 256];
        RequestRepr::parse(&header).emit(u32::MAX, &mut out);
    }
    if let Ok(reply) = ReplyHeader::new_checked(bytes) {
        let _ = (
            reply.status(),
            reply.size_bytes(),
            reply.client(),
            reply.request(),
        );
    }
    if let Ok(eviction) = EvictionHeader::new_checked(bytes) {
        let _ = (eviction.reason(), eviction.server_protocol_version_min());
    }
}

fn valid_batch(sizes: &[usize]) -> Vec<u8> {
    let mut builder = BatchBuilder::new();
    for (index, size) in sizes.iter().enumerate() {
        let payload = vec![index as u8; *size];
        let headers: &[u8] = if index % 2 == 0 {
            b""
        } else {
            &[2, 1, 0, 0, 0, b'k', 3, 1, 0, 0, 0, 1]
        };
        builder
            .push(index as u128, &payload, headers, index as u64 * 7)
            .unwrap();
    }
    let mut bytes = builder.finish().unwrap().to_vec();
    stamp(&mut bytes, 0, 100, 5).unwrap();
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 3000,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_bodies_never_panic(
        operation in operation_byte(),
        code in command_code(),
        body in vec(any::<u8>(), 0..400),
    ) {
        exercise_request(operation, code, &body);
    }

    #[test]
    fn mutated_requests_never_panic(request in every_request(), mutation in mutation()) {
        let mut body = Vec::new();
        request.encode(&mut body).unwrap();
        let (operation, code) = addressing(request.command());
        exercise_request(operation, code, &mutate(body, &mutation));
    }

    #[test]
    fn random_and_mutated_batches_never_panic(
        sizes in vec(1usize..40, 1..6),
        mutation in mutation(),
        noise in vec(any::<u8>(), 0..600),
        offset in 95u64..110,
        count in 0u32..8,
    ) {
        exercise_batch(mutate(valid_batch(&sizes), &mutation), offset, count);
        exercise_batch(noise, offset, count);
    }

    #[test]
    fn random_headers_never_panic(
        mut bytes in vec(any::<u8>(), 0..300),
        command in proptest::sample::select(vec![5u8, 8, 13]),
    ) {
        exercise_header(&bytes);
        if bytes.len() > 60 {
            bytes[60] = command;
        }
        exercise_header(&bytes);
    }
}
