//! Every decoder of riptide-protocol on arbitrary bytes: none may panic. And every request body
//! must get the answer an Iggy 0.11 server gives (the model in `tests/common/iggy_server.rs`,
//! built on `iggy_binary_protocol` 0.11.0's decoders) or one of its documented exceptions.
//! Run with `cargo +nightly fuzz run decode` from `protocol/`.

#![no_main]

#[path = "../../tests/common/iggy_server.rs"]
mod iggy_server;

use libfuzzer_sys::fuzz_target;
use riptide_protocol::batch::{slice_record, stamp, verify_polled, Batch, BatchHeaderRepr};
use riptide_protocol::codes::Operation;
use riptide_protocol::header::{frame_size_bytes, RequestHeader};
use riptide_protocol::login::parse_register;
use riptide_protocol::reply::parse_result;
use riptide_protocol::request::{Request, SendMessages};

fuzz_target!(|data: &[u8]| {
    // The first five bytes choose the addressing, the rest is the body.
    if let Some((head, body)) = data.split_first_chunk::<5>() {
        let code = u32::from_le_bytes([head[1], head[2], head[3], head[4]]);
        if let Err(error) = Request::decode(head[0], code, body) {
            let _ = error.rejection();
        }
        if let Ok(send) = SendMessages::parse(body) {
            let _ = Batch::new_checked(send.batch);
        }
        // Reserved and server-internal operations are frame checks, outside the comparison.
        if Operation::from_u8(head[0]).is_some_and(|op| op.is_client_allowed()) {
            if let Err(disagreement) = iggy_server::compare(head[0], code, body) {
                panic!("riptide and Iggy disagree: {disagreement}");
            }
        }
    }
    let _ = frame_size_bytes(data, 1 << 26);
    if let Ok(header) = RequestHeader::new_checked(data) {
        let _ = header.validate(1 << 26);
        let _ = header.resolved_command();
    }
    let _ = parse_register(data);
    let _ = parse_result(data);
    if let Ok(batch) = Batch::new_checked(data) {
        let _ = batch.messages().count();
    }
    let offset = data
        .get(8..16)
        .map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])));
    let _ = slice_record(data, offset.wrapping_add(1), 3);
    if let Ok(repr) = BatchHeaderRepr::parse(data, 1 << 26) {
        let _ = repr.last_offset();
    }
    let _ = verify_polled(data, 1 << 26);
    let mut copy = data.to_vec();
    let _ = stamp(&mut copy, 1, 2, 3);
});
