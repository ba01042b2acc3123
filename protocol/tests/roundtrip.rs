//! Property tests: every request decodes to exactly what iggy's own encoder encoded, and
//! `Request::encode` reproduces those bytes; every reply helper decodes with iggy's decoders.

mod common;

use common::{addressing, every_request};
use proptest::collection::vec;
use proptest::prelude::*;
use riptide_protocol::batch::{Batch, BatchBuilder};
use riptide_protocol::codes::{ErrorCode, Operation};
use riptide_protocol::reply;
use riptide_protocol::request::{Identifier, Partitioning, Request, SendMessages};
use riptide_protocol::wire::WireDecode;

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 2000,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn every_request_round_trips(request in every_request()) {
        let mut body = Vec::new();
        request.encode(&mut body).unwrap();
        let (operation, code) = addressing(request.command());
        let decoded = Request::decode(operation, code, &body);
        // A token that also parses as username+password is decoded as a password, as the
        // server does: accept that one ambiguity and nothing else.
        match (&request, &decoded) {
            (Request::LoginRegisterWithPat(_), Ok(Request::LoginRegister(_))) => {}
            _ => prop_assert_eq!(decoded, Ok(request)),
        }
    }

    #[test]
    fn send_messages_round_trips(
        stream in any::<u32>(),
        topic in "[a-z]{1,20}",
        kind in 0u8..3,
        key in vec(any::<u8>(), 1..255),
        messages in vec((any::<u128>(), vec(any::<u8>(), 1..64), 0u64..1_000_000), 1..20),
    ) {
        let partitioning = match kind {
            0 => Partitioning::Balanced,
            1 => Partitioning::PartitionId(stream),
            _ => Partitioning::MessagesKey(&key),
        };
        let mut builder = BatchBuilder::new();
        for (id, payload, origin) in &messages {
            builder.push(*id, payload, b"", *origin).unwrap();
        }
        let batch = builder.finish().unwrap().to_vec();
        let request = Request::SendMessages(SendMessages {
            stream: Identifier::Numeric(stream),
            topic: Identifier::Name(&topic),
            partitioning,
            messages_count: messages.len() as u32,
            batch: &batch,
        });
        let mut body = Vec::new();
        request.encode(&mut body).unwrap();
        let decoded = Request::decode(Operation::SendMessages as u8, 0, &body).unwrap();
        prop_assert_eq!(&decoded, &request);
        let Request::SendMessages(view) = decoded else { unreachable!() };
        let checked = Batch::new_checked(view.batch).unwrap();
        let payloads: Vec<&[u8]> = checked.messages().map(|m| m.payload).collect();
        let expected: Vec<&[u8]> = messages.iter().map(|m| m.1.as_slice()).collect();
        prop_assert_eq!(payloads, expected);
    }

    #[test]
    fn result_sections_and_login_reply_decode_with_iggy(
        user_id in any::<u32>(),
        session in any::<u64>(),
        code in proptest::sample::select(ErrorCode::ALL),
    ) {
        use riptide_protocol::wire::responses::users::LoginRegisterResponse;
        let mut body = Vec::new();
        reply::login_reply(user_id, session, &mut body);
        prop_assert_eq!(riptide_protocol::wire::result_code(&body), Some(0));
        let start = riptide_protocol::wire::result_section_len(&body).unwrap();
        let (decoded, used) = LoginRegisterResponse::decode(&body[start..]).unwrap();
        prop_assert_eq!(used, body.len() - start);
        prop_assert_eq!((decoded.user_id, decoded.session), (user_id, session));
        prop_assert_eq!(decoded.server_protocol_version, 11264);
        let mut failed = Vec::new();
        reply::result_err(code, &mut failed);
        prop_assert_eq!(riptide_protocol::wire::result_code(&failed), Some(code.as_u32()));
        prop_assert_eq!(reply::parse_result(&failed), Some(Err(code.as_u32())));
        prop_assert_eq!(reply::parse_result(&body), Some(Ok(&body[4..])));
    }

    #[test]
    fn confirmations_and_poll_prefix_decode_with_iggy(
        confirmations in vec(any::<(u32, u32, u32, u64)>(), 0..10),
        prefix in any::<(u32, u64, u32)>(),
    ) {
        use riptide_protocol::wire::responses::messages::{
            PollMessagesResponseHeader, SendMessagesResponse,
        };
        let ours: Vec<reply::SendConfirmation> = confirmations
            .iter()
            .map(|c| reply::SendConfirmation {
                stream_id: c.0,
                topic_id: c.1,
                partition_id: c.2,
                base_offset: c.3,
            })
            .collect();
        let mut body = Vec::new();
        reply::send_confirmations(&ours, &mut body);
        let (decoded, used) = SendMessagesResponse::decode(&body).unwrap();
        prop_assert_eq!(used, body.len());
        prop_assert_eq!(decoded.confirmations.len(), ours.len());
        for (theirs, ours) in decoded.confirmations.iter().zip(&ours) {
            prop_assert_eq!(
                (theirs.stream_id, theirs.topic_id, theirs.partition_id, theirs.base_offset),
                (ours.stream_id, ours.topic_id, ours.partition_id, ours.base_offset)
            );
        }
        let bytes = reply::poll_reply_prefix(prefix.0, prefix.1, prefix.2);
        let (header, _) = PollMessagesResponseHeader::decode(&bytes).unwrap();
        prop_assert_eq!(
            (header.partition_id, header.current_offset, header.messages_count),
            prefix
        );
    }
}
