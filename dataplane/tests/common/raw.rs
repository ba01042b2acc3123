//! A hand-rolled client for the current Iggy protocol (iggy-protocol.md §1A), so the bad-input
//! suite can send exactly the bytes it wants: valid frames, broken frames and everything between.
//! Written from the layouts in the protocol reference, independently of the server's codec, so a
//! shared misunderstanding cannot hide a bug.

use super::xxh3::xxh3_64;
use anyhow::{anyhow, bail, Context};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub const HEADER_SIZE_BYTES: usize = 256;
pub const BATCH_HEADER_SIZE_BYTES: usize = 256;
pub const MESSAGE_HEADER_SIZE_BYTES: usize = 48;
/// How long a reply may take before the harness calls it missing.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(10);
/// Protocol version the SDK 0.11.0 announces: 0 << 20 | 11 << 10 | 0.
pub const PROTOCOL_VERSION_0_11_0: u32 = 11 << 10;

pub mod command {
    pub const REQUEST: u8 = 5;
    pub const REPLY: u8 = 8;
    pub const EVICTION: u8 = 13;
}

pub mod operation {
    pub const RESERVED: u8 = 0;
    pub const REGISTER: u8 = 1;
    pub const NON_REPLICATED: u8 = 2;
    pub const LOGOUT: u8 = 3;
    pub const SEND_MESSAGES: u8 = 160;
}

pub mod code {
    pub const PING: u32 = 1;
    pub const GET_STATS: u32 = 10;
    pub const GET_ME: u32 = 20;
    pub const LOGIN_USER_LEGACY: u32 = 38;
    pub const LOGIN_REGISTER: u32 = 40;
    pub const LOGIN_PAT_LEGACY: u32 = 44;
    pub const LOGIN_REGISTER_WITH_PAT: u32 = 45;
    pub const POLL_MESSAGES: u32 = 100;
    pub const SEND_MESSAGES: u32 = 101;
    pub const GET_STREAM: u32 = 200;
    pub const GET_STREAMS: u32 = 201;
    pub const CREATE_STREAM: u32 = 202;
    pub const GET_TOPIC: u32 = 300;
    pub const CREATE_TOPIC: u32 = 302;
}

pub mod eviction {
    pub const NO_SESSION: u8 = 1;
    pub const INVALID_REQUEST_OPERATION: u8 = 4;
    pub const INVALID_REQUEST_BODY: u8 = 5;
    pub const INCOMPATIBLE_PROTOCOL: u8 = 14;
    pub const MALFORMED_LOGIN: u8 = 15;
}

/// Operation of a command code, as the SDK maps it (iggy-protocol.md §1.0).
pub fn operation_for_code(code: u32) -> u8 {
    match code {
        202 => 128,
        204 => 129,
        203 => 130,
        205 => 131,
        302 => 132,
        304 => 133,
        303 => 134,
        305 => 135,
        402 => 136,
        403 => 137,
        503 => 138,
        602 => 139,
        603 => 140,
        33 => 141,
        35 => 142,
        34 => 143,
        37 => 144,
        36 => 145,
        42 => 146,
        43 => 147,
        604 => 148,
        605 => 149,
        101 => 160,
        121 => 161,
        122 => 162,
        39 => operation::LOGOUT,
        40 | 45 => operation::REGISTER,
        _ => operation::NON_REPLICATED,
    }
}

/// Every field of a request header the tests want to control.
#[derive(Debug, Clone, Copy)]
pub struct RequestHeader {
    pub command: u8,
    pub client: u128,
    pub request: u64,
    pub operation: u8,
    pub session: u64,
    /// Written at bytes 196..200 (the NR command code slot).
    pub code: u32,
    pub request_checksum: u128,
    /// `None` = 256 + body length.
    pub size_override: Option<u32>,
}

impl RequestHeader {
    pub fn emit(&self, body: &[u8]) -> Vec<u8> {
        let mut frame = vec![0u8; HEADER_SIZE_BYTES];
        let size = self
            .size_override
            .unwrap_or((HEADER_SIZE_BYTES + body.len()) as u32);
        frame[48..52].copy_from_slice(&size.to_le_bytes());
        frame[60] = self.command;
        frame[128..144].copy_from_slice(&self.client.to_le_bytes());
        frame[144..160].copy_from_slice(&self.request_checksum.to_le_bytes());
        frame[168..176].copy_from_slice(&self.request.to_le_bytes());
        frame[176] = self.operation;
        frame[184..192].copy_from_slice(&self.session.to_le_bytes());
        frame[196..200].copy_from_slice(&self.code.to_le_bytes());
        frame.extend_from_slice(body);
        frame
    }
}

/// A frame the server sent back.
#[derive(Debug, Clone)]
pub struct Frame {
    pub header: Vec<u8>,
    pub body: Vec<u8>,
}

impl Frame {
    pub fn command(&self) -> u8 {
        self.header[60]
    }
    pub fn size(&self) -> u32 {
        u32_at(&self.header, 48)
    }
    pub fn is_reply(&self) -> bool {
        self.command() == command::REPLY
    }
    pub fn is_eviction(&self) -> bool {
        self.command() == command::EVICTION
    }
    /// Reply status (0 ok, else an Iggy error code).
    pub fn status(&self) -> u32 {
        u32_at(&self.header, 216)
    }
    pub fn reply_client(&self) -> u128 {
        u128::from_le_bytes(self.header[160..176].try_into().expect("16 bytes"))
    }
    pub fn reply_request(&self) -> u64 {
        u64_at(&self.header, 200)
    }
    pub fn reply_operation(&self) -> u8 {
        self.header[208]
    }
    pub fn eviction_reason(&self) -> u8 {
        self.header[255]
    }
    pub fn eviction_client(&self) -> u128 {
        u128::from_le_bytes(self.header[128..144].try_into().expect("16 bytes"))
    }
    pub fn eviction_protocol_window(&self) -> (u32, u32) {
        (u32_at(&self.header, 144), u32_at(&self.header, 148))
    }
    /// The business result of a result-framed body: 0 = ok, else the first entry's code.
    pub fn result_code(&self) -> anyhow::Result<u32> {
        if self.body.len() < 4 {
            bail!("result section missing: body of {} bytes", self.body.len());
        }
        let count = u32_at(&self.body, 0);
        if count == 0 {
            return Ok(0);
        }
        if self.body.len() < 12 {
            bail!("result section truncated: {} bytes", self.body.len());
        }
        Ok(u32_at(&self.body, 8))
    }
    /// The typed payload after a successful result section.
    pub fn result_payload(&self) -> anyhow::Result<&[u8]> {
        match self.result_code()? {
            0 => Ok(&self.body[4..]),
            code => bail!("result section carries error {code}"),
        }
    }
    pub fn describe(&self) -> String {
        match self.command() {
            command::REPLY => format!(
                "Reply(status {}, operation {}, request {}, body {} B)",
                self.status(),
                self.reply_operation(),
                self.reply_request(),
                self.body.len()
            ),
            command::EVICTION => format!("Eviction(reason {})", self.eviction_reason()),
            other => format!("frame with command {other}"),
        }
    }
}

pub fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

pub fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

/// What the server did with the connection after a request.
#[derive(Debug)]
pub enum Outcome {
    Frame(Frame),
    /// EOF or reset before a complete frame.
    Closed,
    /// Nothing within the wait.
    Silent,
}

/// One raw TCP connection with the session state of a well-behaved client.
pub struct RawConnection {
    stream: TcpStream,
    pub client: u128,
    pub session: u64,
    pub request: u64,
}

impl RawConnection {
    pub async fn connect(address: SocketAddr) -> anyhow::Result<RawConnection> {
        let stream = TcpStream::connect(address).await.context("raw connect")?;
        stream.set_nodelay(true)?;
        Ok(RawConnection {
            stream,
            client: 0x5249_5054_4944_4500_0000_0000_0000_0001 ^ u128::from(std::process::id()),
            session: 0,
            request: 1,
        })
    }

    /// As [`RawConnection::connect`], from a chosen local address (another peer, e.g.
    /// 127.0.0.2, for per-address limits).
    pub async fn connect_from(
        local: std::net::IpAddr,
        address: SocketAddr,
    ) -> anyhow::Result<RawConnection> {
        let socket = tokio::net::TcpSocket::new_v4().context("socket")?;
        socket
            .bind(SocketAddr::new(local, 0))
            .context("bind the local address")?;
        let stream = socket.connect(address).await.context("raw connect")?;
        stream.set_nodelay(true)?;
        Ok(RawConnection {
            stream,
            client: 0x5249_5054_4944_4500_0000_0000_0000_0002 ^ u128::from(std::process::id()),
            session: 0,
            request: 1,
        })
    }

    /// The client's end of the connection.
    pub fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        self.stream.local_addr().context("local address")
    }

    pub async fn send_bytes(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        self.stream.write_all(bytes).await.context("raw write")?;
        Ok(())
    }

    /// Half-closes our side: the server sees EOF after what was sent.
    pub async fn shutdown_write(&mut self) -> anyhow::Result<()> {
        self.stream.shutdown().await.context("raw shutdown")?;
        Ok(())
    }

    /// Reads one frame, or reports that the connection closed or stayed silent within `wait`.
    pub async fn read_outcome(&mut self, wait: Duration) -> anyhow::Result<Outcome> {
        let mut header = vec![0u8; HEADER_SIZE_BYTES];
        match tokio::time::timeout(wait, self.stream.read_exact(&mut header)).await {
            Err(_) => return Ok(Outcome::Silent),
            Ok(Err(_)) => return Ok(Outcome::Closed),
            Ok(Ok(_)) => {}
        }
        let size = u32_at(&header, 48) as usize;
        if size < HEADER_SIZE_BYTES {
            bail!("server sent a frame with size {size} < 256");
        }
        let mut body = vec![0u8; size - HEADER_SIZE_BYTES];
        match tokio::time::timeout(REPLY_TIMEOUT, self.stream.read_exact(&mut body)).await {
            Err(_) => bail!("server sent a header but not its {} body bytes", body.len()),
            Ok(Err(_)) => return Ok(Outcome::Closed),
            Ok(Ok(_)) => {}
        }
        Ok(Outcome::Frame(Frame { header, body }))
    }

    /// Reads one frame; anything else is an error.
    pub async fn read_frame(&mut self) -> anyhow::Result<Frame> {
        match self.read_outcome(REPLY_TIMEOUT).await? {
            Outcome::Frame(frame) => Ok(frame),
            Outcome::Closed => bail!("connection closed instead of a reply"),
            Outcome::Silent => bail!("no reply within {REPLY_TIMEOUT:?}"),
        }
    }

    /// After an eviction or a fatal frame, the server must close the connection: expect EOF (a
    /// frame here is an error, silence for `wait` too).
    pub async fn expect_closed(&mut self, wait: Duration) -> anyhow::Result<()> {
        match self.read_outcome(wait).await? {
            Outcome::Closed => Ok(()),
            Outcome::Frame(frame) => {
                bail!("expected a closed connection, got {}", frame.describe())
            }
            Outcome::Silent => bail!("expected a closed connection, still open after {wait:?}"),
        }
    }

    /// The header a well-behaved client would send for `code` right now (advances the request
    /// counter for replicated operations, as the SDK does).
    pub fn header_for(&mut self, code: u32) -> RequestHeader {
        let operation = operation_for_code(code);
        let request = match operation {
            operation::REGISTER => 0,
            operation::NON_REPLICATED => self.request,
            _ => {
                self.request += 1;
                self.request
            }
        };
        RequestHeader {
            command: command::REQUEST,
            client: self.client,
            request,
            operation,
            session: if operation == operation::REGISTER {
                0
            } else {
                self.session
            },
            code: if operation == operation::NON_REPLICATED {
                code
            } else {
                0
            },
            request_checksum: 0,
            size_override: None,
        }
    }

    /// Sends one well-formed request and returns the server's frame.
    pub async fn call(&mut self, code: u32, body: &[u8]) -> anyhow::Result<Frame> {
        let header = self.header_for(code);
        self.send_bytes(&header.emit(body)).await?;
        self.read_frame().await
    }

    /// Register with username and password; returns the login reply frame (the session is kept
    /// when it succeeds).
    pub async fn register(
        &mut self,
        protocol_version: u32,
        username: &str,
        password: &str,
    ) -> anyhow::Result<Frame> {
        let body = login_body(protocol_version, username, password);
        let frame = self.call(code::LOGIN_REGISTER, &body).await?;
        self.adopt_session(&frame);
        Ok(frame)
    }

    /// Register with a personal access token.
    pub async fn register_with_token(&mut self, token: &str) -> anyhow::Result<Frame> {
        let mut body = version_info(PROTOCOL_VERSION_0_11_0);
        body.push(token.len() as u8);
        body.extend_from_slice(token.as_bytes());
        body.extend_from_slice(&0u32.to_le_bytes());
        let frame = self.call(code::LOGIN_REGISTER_WITH_PAT, &body).await?;
        self.adopt_session(&frame);
        Ok(frame)
    }

    /// Signs in as root or fails.
    pub async fn login_root(&mut self) -> anyhow::Result<()> {
        let frame = self
            .register(
                PROTOCOL_VERSION_0_11_0,
                super::ROOT_USERNAME,
                super::ROOT_PASSWORD,
            )
            .await?;
        if !frame.is_reply() || frame.status() != 0 || self.session == 0 {
            bail!("root login failed: {}", frame.describe());
        }
        Ok(())
    }

    fn adopt_session(&mut self, frame: &Frame) {
        if frame.is_reply() && frame.status() == 0 {
            if let Ok(payload) = frame.result_payload() {
                if payload.len() >= 12 {
                    self.session = u64_at(payload, 4);
                }
            }
        }
    }

    pub async fn ping(&mut self) -> anyhow::Result<Frame> {
        self.call(code::PING, &[]).await
    }
}

pub fn wire_name(value: &str) -> Vec<u8> {
    let mut out = vec![value.len() as u8];
    out.extend_from_slice(value.as_bytes());
    out
}

pub fn numeric_identifier(value: u32) -> Vec<u8> {
    let mut out = vec![1u8, 4];
    out.extend_from_slice(&value.to_le_bytes());
    out
}

pub fn version_info(protocol_version: u32) -> Vec<u8> {
    let mut out = protocol_version.to_le_bytes().to_vec();
    out.extend(wire_name("rust-sdk"));
    out.extend(wire_name("0.11.0"));
    out
}

pub fn login_body(protocol_version: u32, username: &str, password: &str) -> Vec<u8> {
    let mut body = version_info(protocol_version);
    body.extend(wire_name(username));
    body.push(password.len() as u8);
    body.extend_from_slice(password.as_bytes());
    body.extend_from_slice(&0u32.to_le_bytes());
    body
}

/// Partitioning field of SendMessages.
pub enum Partitioning<'a> {
    Balanced,
    PartitionId(u32),
    MessagesKey(&'a [u8]),
}

impl Partitioning<'_> {
    pub fn emit(&self) -> Vec<u8> {
        match self {
            Partitioning::Balanced => vec![1, 0],
            Partitioning::PartitionId(id) => {
                let mut out = vec![2, 4];
                out.extend_from_slice(&id.to_le_bytes());
                out
            }
            Partitioning::MessagesKey(key) => {
                let mut out = vec![3, key.len() as u8];
                out.extend_from_slice(key);
                out
            }
        }
    }
}

/// A SendMessages batch with correct checksums (payloads must stay small: the hand-written
/// XXH3 covers at most 240 bytes per hashed range).
pub fn batch(payloads: &[&[u8]], origin_timestamp_us: u64) -> anyhow::Result<Vec<u8>> {
    let mut blob = Vec::new();
    let mut frame_starts = Vec::new();
    for (index, payload) in payloads.iter().enumerate() {
        let start = blob.len();
        frame_starts.push(start);
        blob.extend_from_slice(&[0u8; 8]);
        let id = 0x1000_0000_0000_0000_0000_0000_0000_0000u128 + index as u128 + 1;
        blob.extend_from_slice(&id.to_le_bytes());
        blob.extend_from_slice(&(index as u32).to_le_bytes()); // offset_delta
        blob.extend_from_slice(&0u32.to_le_bytes()); // timestamp_delta
        blob.extend_from_slice(&0u32.to_le_bytes()); // user_headers_length
        blob.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        blob.extend_from_slice(&0u64.to_le_bytes());
        blob.extend_from_slice(payload);
        let checksum = xxh3_64(&blob[start + 8..])
            .ok_or_else(|| anyhow!("payload {index} too large for the test hasher"))?;
        blob[start..start + 8].copy_from_slice(&checksum.to_le_bytes());
    }
    let batch_length = (BATCH_HEADER_SIZE_BYTES + blob.len()) as u64;
    let count = payloads.len() as u32;
    let mut sealed = Vec::new();
    for field in [0u64, 0, 0, origin_timestamp_us, batch_length] {
        sealed.extend_from_slice(&field.to_le_bytes());
    }
    sealed.extend_from_slice(&count.to_le_bytes());
    for start in &frame_starts {
        sealed.extend_from_slice(&blob[*start..*start + 8]);
    }
    let batch_checksum =
        xxh3_64(&sealed).ok_or_else(|| anyhow!("too many messages for the test hasher"))?;
    let mut out = vec![0u8; BATCH_HEADER_SIZE_BYTES];
    out[24..32].copy_from_slice(&origin_timestamp_us.to_le_bytes());
    out[32..40].copy_from_slice(&batch_length.to_le_bytes());
    out[40..48].copy_from_slice(&batch_checksum.to_le_bytes());
    out[48..52].copy_from_slice(&count.to_le_bytes());
    out.extend_from_slice(&blob);
    Ok(out)
}

/// Offset of the first message frame's checksum inside a batch built by [`batch`].
pub const FIRST_FRAME_OFFSET: usize = BATCH_HEADER_SIZE_BYTES;

/// SendMessages body: `[metadata_length][stream][topic][partitioning][count][batch]`.
pub fn send_messages_body(
    stream_id: u32,
    topic_id: u32,
    partitioning: &Partitioning<'_>,
    messages_count: u32,
    batch: &[u8],
) -> Vec<u8> {
    let mut metadata = numeric_identifier(stream_id);
    metadata.extend(numeric_identifier(topic_id));
    metadata.extend(partitioning.emit());
    metadata.extend_from_slice(&messages_count.to_le_bytes());
    let mut body = (metadata.len() as u32).to_le_bytes().to_vec();
    body.extend(metadata);
    body.extend_from_slice(batch);
    body
}

/// Confirmations of a SendMessages reply: `(stream, topic, partition, base_offset)`.
pub fn confirmations(body: &[u8]) -> anyhow::Result<Vec<(u32, u32, u32, u64)>> {
    if body.len() < 4 {
        bail!("send reply body of {} bytes", body.len());
    }
    let count = u32_at(body, 0) as usize;
    if body.len() != 4 + 20 * count {
        bail!("send reply: {count} confirmations in {} bytes", body.len());
    }
    Ok((0..count)
        .map(|i| {
            let at = 4 + 20 * i;
            (
                u32_at(body, at),
                u32_at(body, at + 4),
                u32_at(body, at + 8),
                u64_at(body, at + 12),
            )
        })
        .collect())
}

/// PollMessages body with an explicit partition and the Offset strategy.
pub fn poll_body(
    stream_id: u32,
    topic_id: u32,
    partition_id: u32,
    offset: u64,
    count: u32,
) -> Vec<u8> {
    let mut body = vec![1u8]; // consumer kind: consumer
    body.extend(numeric_identifier(1));
    body.extend(numeric_identifier(stream_id));
    body.extend(numeric_identifier(topic_id));
    body.push(1);
    body.extend_from_slice(&partition_id.to_le_bytes());
    body.push(1); // strategy: offset
    body.extend_from_slice(&offset.to_le_bytes());
    body.extend_from_slice(&count.to_le_bytes());
    body.push(0); // no auto-commit
    body
}

/// `(partition_id, current_offset, messages_count)` prefix and the payloads of a poll reply.
pub fn poll_reply(body: &[u8]) -> anyhow::Result<(u32, u64, Vec<Vec<u8>>)> {
    if body.len() < 16 {
        bail!("poll reply body of {} bytes", body.len());
    }
    let partition_id = u32_at(body, 0);
    let current_offset = u64_at(body, 4);
    let mut payloads = Vec::new();
    let mut at = 16;
    while at < body.len() {
        if body.len() < at + BATCH_HEADER_SIZE_BYTES {
            bail!("poll reply: truncated batch header at {at}");
        }
        let batch_length = u64_at(body, at + 32) as usize;
        let count = u32_at(body, at + 48);
        let end = at + batch_length;
        if batch_length < BATCH_HEADER_SIZE_BYTES || end > body.len() {
            bail!("poll reply: batch length {batch_length} at {at} overruns the body");
        }
        let mut frame = at + BATCH_HEADER_SIZE_BYTES;
        for _ in 0..count {
            if frame + MESSAGE_HEADER_SIZE_BYTES > end {
                bail!("poll reply: frame header overruns its batch");
            }
            let headers_len = u32_at(body, frame + 32) as usize;
            let payload_len = u32_at(body, frame + 36) as usize;
            let payload_start = frame + MESSAGE_HEADER_SIZE_BYTES;
            if payload_start + payload_len + headers_len > end {
                bail!("poll reply: frame overruns its batch");
            }
            payloads.push(body[payload_start..payload_start + payload_len].to_vec());
            frame = payload_start + payload_len + headers_len;
        }
        at = end;
    }
    Ok((partition_id, current_offset, payloads))
}
