//! Conformance against the real `iggy` 0.11.0 SDK: a minimal single-node server made only of
//! this crate's codec (headers, Request::decode, Batch, stamp, slice_record, reply helpers)
//! answers the SDK over a loopback TCP socket. Every byte the SDK sends is parsed by our views
//! and every reply we emit is decoded by the SDK, so a disagreement in any layout fails here.

use iggy::prelude::*;
use riptide_protocol::batch::{slice_record, stamp, Batch};
use riptide_protocol::codes::{ErrorCode, EvictionReason};
use riptide_protocol::constants::{FRAME_SIZE_MAX_BYTES, HEADER_SIZE_BYTES};
use riptide_protocol::header::{frame_size_bytes, EvictionRepr, ReplyRepr, RequestHeader};
use riptide_protocol::login::Login;
use riptide_protocol::reply::{self, types, SendConfirmation};
use riptide_protocol::request::{Partitioning as WirePartitioning, Rejection, Request};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::str::FromStr;
use std::sync::{Arc, Mutex};

const SESSION: u64 = 1;
const TOKEN: &str = "riptide-personal-access-token";

/// Stamped records of the one partition this server keeps, and the next offset.
#[derive(Default)]
struct Log {
    records: Vec<Vec<u8>>,
    next_offset: u64,
}

enum Answer {
    Reply { status: ErrorCode, body: Vec<u8> },
    Ok(Vec<u8>),
    Evict(EvictionReason),
}

fn answer(request: Request<'_>, log: &Mutex<Log>) -> Answer {
    match request {
        Request::LoginRegister(Login::Password {
            username, password, ..
        }) if username == "iggy" && password == "iggy" => {
            let mut body = Vec::new();
            reply::login_reply(0, SESSION, &mut body);
            Answer::Ok(body)
        }
        Request::LoginRegisterWithPat(Login::Token { token, .. }) if token == TOKEN => {
            let mut body = Vec::new();
            reply::login_reply(3, SESSION, &mut body);
            Answer::Ok(body)
        }
        Request::LoginRegister(_) | Request::LoginRegisterWithPat(_) => {
            Answer::Evict(EvictionReason::InvalidCredentials)
        }
        Request::Ping | Request::Logout => Answer::Ok(Vec::new()),
        Request::CreateStream(create) => {
            let mut body = Vec::new();
            reply::result_ok(&mut body);
            let stream = types::StreamResponse {
                id: 0,
                created_at: 1,
                topics_count: 0,
                size_bytes: 0,
                messages_count: 0,
                name: create.name,
                options: types::WireOptions::empty(),
            };
            reply::encode(&stream, &mut body);
            Answer::Ok(body)
        }
        Request::SendMessages(send) => {
            assert_eq!(send.partitioning, WirePartitioning::PartitionId(0));
            let batch = match Batch::new_checked(send.batch) {
                Ok(batch) => batch,
                Err(error) => {
                    return Answer::Reply {
                        status: error.error_code(),
                        body: Vec::new(),
                    }
                }
            };
            let mut log = log.lock().unwrap();
            let base_offset = log.next_offset;
            let mut record = batch.bytes().to_vec();
            stamp(&mut record, 0, base_offset, 42).unwrap();
            log.next_offset += u64::from(batch.message_count());
            log.records.push(record);
            let mut body = Vec::new();
            let confirmation = SendConfirmation {
                stream_id: 0,
                topic_id: 0,
                partition_id: 0,
                base_offset,
            };
            reply::send_confirmations(&[confirmation], &mut body);
            Answer::Ok(body)
        }
        Request::PollMessages(poll) => Answer::Ok(poll_body(poll.strategy.value, poll.count, log)),
        _ => Answer::Reply {
            status: ErrorCode::FeatureUnavailable,
            body: Vec::new(),
        },
    }
}

/// Poll by offset: slices of the stored records, exactly as a server serves them.
fn poll_body(first_offset: u64, count: u32, log: &Mutex<Log>) -> Vec<u8> {
    let log = log.lock().unwrap();
    let mut records = Vec::new();
    let mut remaining = count;
    let mut next = first_offset;
    for record in &log.records {
        if let Some(slice) = slice_record(record, next, remaining) {
            records.extend_from_slice(&slice.header);
            records.extend_from_slice(&record[slice.frames.clone()]);
            remaining -= slice.message_count;
            next = slice.first_offset + u64::from(slice.message_count);
        }
    }
    let current_offset = log.next_offset.saturating_sub(1);
    let mut body = reply::poll_reply_prefix(0, current_offset, count - remaining).to_vec();
    body.extend_from_slice(&records);
    body
}

/// One connection: frames in, frames out, until the peer closes or is evicted.
fn serve(mut stream: TcpStream, log: Arc<Mutex<Log>>) {
    let mut header = [0u8; HEADER_SIZE_BYTES];
    while stream.read_exact(&mut header).is_ok() {
        let size = frame_size_bytes(&header, FRAME_SIZE_MAX_BYTES)
            .unwrap()
            .unwrap();
        let mut body = vec![0u8; size - HEADER_SIZE_BYTES];
        stream.read_exact(&mut body).unwrap();
        let request = RequestHeader::new_checked(&header[..]).unwrap();
        request.validate(FRAME_SIZE_MAX_BYTES).unwrap();
        let answer = match Request::decode(request.operation(), request.command_code(), &body) {
            Ok(decoded) => answer(decoded, &log),
            Err(error) => match error.rejection() {
                Rejection::Status(status) => Answer::Reply {
                    status,
                    body: Vec::new(),
                },
                Rejection::Evict(reason) => Answer::Evict(reason),
            },
        };
        let mut out = [0u8; HEADER_SIZE_BYTES];
        let (status, body) = match answer {
            Answer::Ok(body) => (0, body),
            Answer::Reply { status, body } => (status.as_u32(), body),
            Answer::Evict(reason) => {
                let eviction = EvictionRepr {
                    cluster: request.cluster(),
                    client: request.client(),
                    reason,
                    server_protocol_version: 0,
                    server_protocol_version_min: 0,
                };
                eviction.emit(&mut out);
                let _ = stream.write_all(&out);
                return;
            }
        };
        let session = if request.session() == 0 {
            SESSION
        } else {
            request.session()
        };
        ReplyRepr::echo(&request, session, status).emit(body.len() as u32, &mut out);
        stream.write_all(&out).unwrap();
        stream.write_all(&body).unwrap();
    }
}

fn start_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let log = Arc::new(Mutex::new(Log::default()));
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let log = Arc::clone(&log);
            std::thread::spawn(move || serve(stream, log));
        }
    });
    port
}

fn message(index: u8) -> IggyMessage {
    let mut headers = BTreeMap::new();
    headers.insert(
        HeaderKey::try_from("index").unwrap(),
        HeaderValue::from_str(&index.to_string()).unwrap(),
    );
    IggyMessage::builder()
        .id(u128::from(index) + 1)
        .payload(vec![index; usize::from(index) + 1].into())
        .user_headers(headers)
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_sdk_talks_to_a_server_built_from_this_codec() {
    let port = start_server();
    let client =
        IggyClient::from_connection_string(&format!("iggy://iggy:iggy@127.0.0.1:{port}")).unwrap();
    client.connect().await.unwrap();
    client.ping().await.unwrap();
    let stream = client.create_stream("orders").await.unwrap();
    assert_eq!(stream.name, "orders");

    let (stream_id, topic_id) = (
        Identifier::numeric(0).unwrap(),
        Identifier::numeric(0).unwrap(),
    );
    let partitioning = Partitioning::partition_id(0);
    for batch in 0..2u8 {
        let mut messages: Vec<IggyMessage> = (0..5).map(|i| message(batch * 5 + i)).collect();
        client
            .send_messages(&stream_id, &topic_id, &partitioning, &mut messages)
            .await
            .unwrap();
    }

    // Starts inside the first record and ends inside the second: two sliced records.
    let consumer = Consumer::new(Identifier::numeric(7).unwrap());
    let polled = client
        .poll_messages(
            &stream_id,
            &topic_id,
            Some(0),
            &consumer,
            &PollingStrategy::offset(3),
            4,
            false,
        )
        .await
        .unwrap();
    assert_eq!(polled.current_offset, 9);
    let offsets: Vec<u64> = polled.messages.iter().map(|m| m.header.offset).collect();
    assert_eq!(offsets, [3, 4, 5, 6]);
    for message in &polled.messages {
        let index = message.header.offset as u8;
        assert_eq!(message.header.id, u128::from(index) + 1);
        assert_eq!(
            message.payload.as_ref(),
            vec![index; usize::from(index) + 1].as_slice()
        );
        assert_eq!(message.header.timestamp, 42);
        let headers = message.user_headers_map().unwrap().unwrap();
        let value = headers.get(&HeaderKey::try_from("index").unwrap()).unwrap();
        assert_eq!(value, &HeaderValue::from_str(&index.to_string()).unwrap());
    }

    // An unsupported command comes back as the status we chose, and the session survives it.
    let error = client.get_stats().await.unwrap_err();
    assert_eq!(error.as_code(), ErrorCode::FeatureUnavailable.as_u32());
    client.ping().await.unwrap();
    client.logout_user().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_an_eviction_the_sdk_reports_as_invalid_credentials() {
    let port = start_server();
    let client = IggyClient::from_connection_string(&format!(
        "iggy://iggy:wrong@127.0.0.1:{port}?reconnection_retries=0"
    ))
    .unwrap();
    let error = client.connect().await.unwrap_err();
    assert_eq!(
        error.as_code(),
        ErrorCode::InvalidCredentials.as_u32(),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sdk_logs_in_with_a_personal_access_token() {
    let port = start_server();
    let client = IggyClient::from_connection_string(&format!(
        "iggy://{TOKEN}@127.0.0.1:{port}?reconnection_retries=0"
    ))
    .unwrap();
    client.connect().await.unwrap();
    let identity = client
        .login_with_personal_access_token(TOKEN)
        .await
        .unwrap();
    assert_eq!(identity.user_id, 3);
    client.ping().await.unwrap();
}
