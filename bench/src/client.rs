//! A minimal Iggy 0.11 client over one TCP connection, on the project's `riptide-protocol` crate
//! (headers, batches, SendMessages prefix) and the `iggy_binary_protocol` bodies it re-exports.
//!
//! Requests can be pipelined: [`Connection::send_request`] only writes, [`Connection::read_reply`]
//! reads the next reply, and replies come back in request order on one connection. Request ids
//! follow the SDK's rules (`iggy::session`): Register uses 0, metadata operations consume 1, 2, 3..,
//! partition operations and non-replicated reads reuse the current id.

use crate::constants::{REPLY_SIZE_MAX_BYTES, SETUP_TIMEOUT_MS};
use bytes::BytesMut;
use riptide_protocol::codes::{CommandCode, Operation};
use riptide_protocol::constants::HEADER_SIZE_BYTES;
use riptide_protocol::header::{ReplyHeader, RequestRepr};
use riptide_protocol::reply::parse_result;
use riptide_protocol::wire::requests::consumer_groups::{
    CreateConsumerGroupRequest, GetConsumerGroupRequest, JoinConsumerGroupRequest,
};
use riptide_protocol::wire::requests::streams::{
    CreateStreamRequest, DeleteStreamRequest, GetStreamRequest,
};
use riptide_protocol::wire::requests::topics::{CreateTopicRequest, GetTopicRequest};
use riptide_protocol::wire::requests::users::LoginRegisterRequest;
use riptide_protocol::wire::version::ClientVersionInfo;
use riptide_protocol::wire::{WireEncode, WireIdentifier, WireName, WireOptions};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// TLS for every connection of the process (`tcp --tls-ca-file`), set once before the run.
static TLS: OnceLock<(
    tokio_rustls::TlsConnector,
    rustls::pki_types::ServerName<'static>,
)> = OnceLock::new();

/// Makes every later [`Connection::connect`] speak TLS 1.3 (ring's provider), trusting the CA
/// certificates in `ca_file` for a server certificate naming `domain`.
///
/// # Errors
/// An unreadable CA file or a bad domain.
pub fn enable_tls(ca_file: &std::path::Path, domain: &str) -> Result<(), String> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for certificate in rustls::pki_types::CertificateDer::pem_file_iter(ca_file)
        .map_err(|e| format!("{}: {e}", ca_file.display()))?
    {
        roots
            .add(certificate.map_err(|e| format!("{}: {e}", ca_file.display()))?)
            .map_err(|e| format!("{}: {e}", ca_file.display()))?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from(domain.to_string())
        .map_err(|e| format!("--tls-domain {domain}: {e}"))?;
    let _ = TLS.set((tokio_rustls::TlsConnector::from(Arc::new(config)), name));
    Ok(())
}

/// Command byte of an eviction frame (session-terminal).
const COMMAND_EVICTION: u8 = 13;
/// Byte of the eviction reason in an eviction header.
const EVICTION_REASON_AT: usize = 255;
/// IggyError codes the setup tolerates when deleting what may not exist.
pub const CODE_RESOURCE_NOT_FOUND: u32 = 20;
pub const CODE_STREAM_ID_NOT_FOUND: u32 = 1009;
pub const CODE_STREAM_NAME_NOT_FOUND: u32 = 1010;
pub const CODE_CONSUMER_GROUP_NAME_ALREADY_EXISTS: u32 = 5004;
/// SDK name sent in the Register handshake.
const SDK_NAME: &str = "riptide-bench";

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("connection to {address}: {source}")]
    Connect {
        address: String,
        source: std::io::Error,
    },
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("timed out after {0} ms")]
    Timeout(u64),
    #[error("no reply to {command:?} within {timeout_ms} ms")]
    CallTimeout {
        command: CommandCode,
        timeout_ms: u64,
    },
    #[error("server evicted the session (reason {0})")]
    Evicted(u8),
    #[error("{command:?} failed with IggyError code {code}")]
    Status { command: CommandCode, code: u32 },
    #[error("malformed reply to {command:?}: {what}")]
    Malformed {
        command: CommandCode,
        what: &'static str,
    },
    #[error("bad request argument: {0}")]
    Argument(String),
}

impl ClientError {
    /// The IggyError code of a refused command.
    pub fn code(&self) -> Option<u32> {
        match self {
            ClientError::Status { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// One logged-in connection.
pub struct Connection {
    stream: BenchStream,
    client_id: u128,
    session: u64,
    request_counter: u64,
    header: [u8; HEADER_SIZE_BYTES],
    reply: Vec<u8>,
}

/// The byte stream under a connection: the kernel's TCP, TLS over it, or smoltcp's over memif.
#[derive(Debug)]
pub enum BenchStream {
    Tcp(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
    #[cfg(feature = "dpdk")]
    Memif(crate::memif::MemifStream),
}

impl tokio::io::AsyncRead for BenchStream {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            BenchStream::Tcp(stream) => std::pin::Pin::new(stream).poll_read(cx, buf),
            BenchStream::Tls(stream) => std::pin::Pin::new(stream).poll_read(cx, buf),
            #[cfg(feature = "dpdk")]
            BenchStream::Memif(stream) => std::pin::Pin::new(stream).poll_read(cx, buf),
        }
    }
}

impl tokio::io::AsyncWrite for BenchStream {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        match self.get_mut() {
            BenchStream::Tcp(stream) => std::pin::Pin::new(stream).poll_write(cx, buf),
            BenchStream::Tls(stream) => std::pin::Pin::new(stream).poll_write(cx, buf),
            #[cfg(feature = "dpdk")]
            BenchStream::Memif(stream) => std::pin::Pin::new(stream).poll_write(cx, buf),
        }
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            BenchStream::Tcp(stream) => std::pin::Pin::new(stream).poll_flush(cx),
            BenchStream::Tls(stream) => std::pin::Pin::new(stream).poll_flush(cx),
            #[cfg(feature = "dpdk")]
            BenchStream::Memif(stream) => std::pin::Pin::new(stream).poll_flush(cx),
        }
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            BenchStream::Tcp(stream) => std::pin::Pin::new(stream).poll_shutdown(cx),
            BenchStream::Tls(stream) => std::pin::Pin::new(stream).poll_shutdown(cx),
            #[cfg(feature = "dpdk")]
            BenchStream::Memif(stream) => std::pin::Pin::new(stream).poll_shutdown(cx),
        }
    }
}

/// A non-zero client id, different per connection (time, pid and a per-process counter hashed).
fn new_client_id(salt: u64) -> u128 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(1);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut seed = Vec::with_capacity(40);
    seed.extend_from_slice(&nanos.to_le_bytes());
    seed.extend_from_slice(&u64::from(std::process::id()).to_le_bytes());
    seed.extend_from_slice(&n.to_le_bytes());
    seed.extend_from_slice(&salt.to_le_bytes());
    let lo = twox_hash::XxHash3_64::oneshot(&seed);
    let hi = twox_hash::XxHash3_64::with_seed(n).write_and_finish(&seed);
    (u128::from(hi) << 64 | u128::from(lo)).max(1)
}

trait WriteAndFinish {
    fn write_and_finish(self, bytes: &[u8]) -> u64;
}

impl WriteAndFinish for twox_hash::XxHash3_64 {
    fn write_and_finish(mut self, bytes: &[u8]) -> u64 {
        use std::hash::Hasher;
        self.write(bytes);
        self.finish()
    }
}

fn encode<T: WireEncode>(value: &T) -> Vec<u8> {
    let mut buf = BytesMut::with_capacity(value.encoded_size());
    value.encode(&mut buf);
    buf.to_vec()
}

fn name(text: &str) -> Result<WireName, ClientError> {
    WireName::new(text).map_err(|e| ClientError::Argument(format!("name '{text}': {e:?}")))
}

/// Identifier by name (the way the bench finds streams it did not create in this run).
pub fn named(text: &str) -> Result<WireIdentifier, ClientError> {
    WireIdentifier::named(text)
        .map_err(|e| ClientError::Argument(format!("identifier '{text}': {e:?}")))
}

fn u32_at(body: &[u8], at: usize, command: CommandCode) -> Result<u32, ClientError> {
    body.get(at..at + 4)
        .and_then(|b| b.try_into().ok())
        .map(u32::from_le_bytes)
        .ok_or(ClientError::Malformed {
            command,
            what: "reply too short",
        })
}

fn u64_at(body: &[u8], at: usize, command: CommandCode) -> Result<u64, ClientError> {
    body.get(at..at + 8)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_le_bytes)
        .ok_or(ClientError::Malformed {
            command,
            what: "reply too short",
        })
}

/// Topic options requesting `durability` (and the same for consumer offsets), as the SDK sends.
fn topic_options(durability: &str) -> Result<WireOptions, ClientError> {
    let entries: [(u8, &[u8], u8, &[u8]); 2] = [
        (2, b"durability", 2, durability.as_bytes()),
        (2, b"consumer_offset_durability", 2, durability.as_bytes()),
    ];
    let mut buf = BytesMut::new();
    riptide_protocol::wire::primitives::user_headers::encode_user_headers(&entries, &mut buf);
    WireOptions::from_slice(&buf)
        .map_err(|e| ClientError::Argument(format!("topic options: {e:?}")))
}

/// What a topic lookup found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicInfo {
    pub stream_id: u32,
    pub topic_id: u32,
    pub partitions_count: u32,
    pub messages_count: u64,
}

impl Connection {
    /// Connects (TCP_NODELAY, like the SDK) and logs in with the Register handshake.
    ///
    /// # Errors
    /// [`ClientError`] when the server is unreachable, refuses the credentials or evicts.
    pub async fn connect(
        address: &str,
        username: &str,
        password: &str,
    ) -> Result<Connection, ClientError> {
        let timeout = Duration::from_millis(SETUP_TIMEOUT_MS);
        let stream = tokio::time::timeout(timeout, TcpStream::connect(address))
            .await
            .map_err(|_| ClientError::Timeout(SETUP_TIMEOUT_MS))?
            .map_err(|source| ClientError::Connect {
                address: address.to_string(),
                source,
            })?;
        stream.set_nodelay(true)?;
        let stream = match TLS.get() {
            Some((connector, name)) => BenchStream::Tls(Box::new(
                tokio::time::timeout(timeout, connector.connect(name.clone(), stream))
                    .await
                    .map_err(|_| ClientError::Timeout(SETUP_TIMEOUT_MS))??,
            )),
            None => BenchStream::Tcp(stream),
        };
        Connection::log_in_over(stream, username, password).await
    }

    /// Logs in over a memif connection (see [`crate::memif`]).
    ///
    /// # Errors
    /// [`ClientError`] when the connection fails, the server refuses the credentials or evicts.
    #[cfg(feature = "dpdk")]
    pub async fn connect_memif(
        net: &crate::memif::MemifNet,
        address: &str,
        username: &str,
        password: &str,
    ) -> Result<Connection, ClientError> {
        let timeout = Duration::from_millis(SETUP_TIMEOUT_MS);
        let connect_error = |source| ClientError::Connect {
            address: address.to_string(),
            source,
        };
        let remote: std::net::SocketAddrV4 = address.parse().map_err(|_| {
            ClientError::Argument(format!("memif needs an IPv4 address:port, not '{address}'"))
        })?;
        let stream = tokio::time::timeout(timeout, net.connect(remote))
            .await
            .map_err(|_| ClientError::Timeout(SETUP_TIMEOUT_MS))?
            .map_err(connect_error)?;
        Connection::log_in_over(BenchStream::Memif(stream), username, password).await
    }

    async fn log_in_over(
        stream: BenchStream,
        username: &str,
        password: &str,
    ) -> Result<Connection, ClientError> {
        let timeout = Duration::from_millis(SETUP_TIMEOUT_MS);
        let mut conn = Connection {
            stream,
            client_id: new_client_id(0),
            session: 0,
            request_counter: 1,
            header: [0; HEADER_SIZE_BYTES],
            reply: Vec::new(),
        };
        tokio::time::timeout(timeout, conn.login(username, password))
            .await
            .map_err(|_| ClientError::Timeout(SETUP_TIMEOUT_MS))??;
        Ok(conn)
    }

    async fn login(&mut self, username: &str, password: &str) -> Result<(), ClientError> {
        let request = LoginRegisterRequest {
            version_info: ClientVersionInfo {
                protocol_version: riptide_protocol::wire::version::IGGY_PROTOCOL_VERSION,
                sdk_name: name(SDK_NAME)?,
                sdk_version: name(env!("CARGO_PKG_VERSION"))?,
            },
            username: name(username)?,
            password: secrecy::SecretString::from(password.to_string()),
            client_context: None,
        };
        let body = encode(&request);
        let command = CommandCode::LoginRegister;
        self.send_request(command, &body, &[]).await?;
        let reply = self.read_reply(command).await?;
        // A Register reply is result-framed: [count][user_id u32][session u64]...
        let payload = match parse_result(reply) {
            Some(Ok(p)) => p,
            Some(Err(code)) => return Err(ClientError::Status { command, code }),
            None => {
                return Err(ClientError::Malformed {
                    command,
                    what: "no result section",
                })
            }
        };
        let session = u64_at(payload, 4, command)?;
        if session == 0 {
            return Err(ClientError::Malformed {
                command,
                what: "session 0",
            });
        }
        self.session = session;
        Ok(())
    }

    /// Writes one request: header, then `body` and `tail` (the batch) back to back.
    ///
    /// # Errors
    /// [`ClientError::Io`] when the socket fails.
    pub async fn send_request(
        &mut self,
        command: CommandCode,
        body: &[u8],
        tail: &[u8],
    ) -> Result<(), ClientError> {
        let operation = command.operation();
        let request = match operation {
            Operation::Register => 0,
            op if op.is_metadata() || op == Operation::Logout => {
                let id = self.request_counter;
                self.request_counter += 1;
                id
            }
            _ => self.request_counter,
        };
        let repr = RequestRepr {
            client: self.client_id,
            request,
            operation: operation as u8,
            session: self.session,
            command_code: command.wire(),
            timestamp: 0,
            request_checksum: 0,
        };
        let body_len = u32::try_from(body.len() + tail.len())
            .map_err(|_| ClientError::Argument("request body exceeds u32".into()))?;
        repr.emit(body_len, &mut self.header);
        if tail.is_empty() && body.len() < 64 * 1024 {
            // One write for small requests (polls, metadata): one segment on the wire.
            let mut frame = Vec::with_capacity(HEADER_SIZE_BYTES + body.len());
            frame.extend_from_slice(&self.header);
            frame.extend_from_slice(body);
            self.stream.write_all(&frame).await?;
        } else {
            let mut head = Vec::with_capacity(HEADER_SIZE_BYTES + body.len());
            head.extend_from_slice(&self.header);
            head.extend_from_slice(body);
            self.stream.write_all(&head).await?;
            self.stream.write_all(tail).await?;
        }
        // TLS may hold sealed records back until flushed (plain TCP: nothing to do).
        self.stream.flush().await?;
        Ok(())
    }

    /// Reads the next reply and returns its body (valid until the next read), with the status
    /// and eviction checks applied. Result sections are left to the caller.
    ///
    /// # Errors
    /// [`ClientError::Evicted`], [`ClientError::Status`], [`ClientError::Io`], or
    /// [`ClientError::Malformed`] for a frame that is not a reply.
    pub async fn read_reply(&mut self, command: CommandCode) -> Result<&[u8], ClientError> {
        let mut header = [0u8; HEADER_SIZE_BYTES];
        self.stream.read_exact(&mut header).await?;
        if header[60] == COMMAND_EVICTION {
            return Err(ClientError::Evicted(header[EVICTION_REASON_AT]));
        }
        let view = ReplyHeader::new_checked(&header[..]).map_err(|_| ClientError::Malformed {
            command,
            what: "not a reply frame",
        })?;
        let size = view.size_bytes() as usize;
        if !(HEADER_SIZE_BYTES..=REPLY_SIZE_MAX_BYTES).contains(&size) {
            return Err(ClientError::Malformed {
                command,
                what: "reply size out of range",
            });
        }
        let status = view.status();
        self.reply.resize(size - HEADER_SIZE_BYTES, 0);
        self.stream.read_exact(&mut self.reply).await?;
        if status != 0 {
            return Err(ClientError::Status {
                command,
                code: status,
            });
        }
        Ok(&self.reply)
    }

    /// One request in lockstep; returns the typed payload (result section removed where the
    /// operation has one).
    ///
    /// # Errors
    /// As [`Self::send_request`] and [`Self::read_reply`]; a business error in the result section
    /// is [`ClientError::Status`].
    pub async fn call(
        &mut self,
        command: CommandCode,
        body: &[u8],
    ) -> Result<Vec<u8>, ClientError> {
        let timeout = Duration::from_millis(SETUP_TIMEOUT_MS);
        let timed_out = || ClientError::CallTimeout {
            command,
            timeout_ms: SETUP_TIMEOUT_MS,
        };
        tokio::time::timeout(timeout, self.send_request(command, body, &[]))
            .await
            .map_err(|_| timed_out())??;
        let reply = tokio::time::timeout(timeout, self.read_reply(command))
            .await
            .map_err(|_| timed_out())??;
        if !command.operation().is_result_framed() {
            return Ok(reply.to_vec());
        }
        match parse_result(reply) {
            Some(Ok(payload)) => Ok(payload.to_vec()),
            Some(Err(code)) => Err(ClientError::Status { command, code }),
            None => Err(ClientError::Malformed {
                command,
                what: "no result section",
            }),
        }
    }

    /// Creates a stream; returns its id.
    ///
    /// # Errors
    /// [`ClientError`]; e.g. code 1012 when the name exists.
    pub async fn create_stream(&mut self, stream_name: &str) -> Result<u32, ClientError> {
        let body = encode(&CreateStreamRequest {
            name: name(stream_name)?,
            options: WireOptions::empty(),
        });
        let reply = self.call(CommandCode::CreateStream, &body).await?;
        u32_at(&reply, 0, CommandCode::CreateStream)
    }

    /// Deletes a stream by name; `Ok(false)` when it did not exist.
    ///
    /// # Errors
    /// [`ClientError`] other than "not found".
    pub async fn delete_stream(&mut self, stream_name: &str) -> Result<bool, ClientError> {
        let body = encode(&DeleteStreamRequest {
            stream_id: named(stream_name)?,
        });
        match self.call(CommandCode::DeleteStream, &body).await {
            Ok(_) => Ok(true),
            Err(e)
                if matches!(
                    e.code(),
                    Some(
                        CODE_RESOURCE_NOT_FOUND
                            | CODE_STREAM_ID_NOT_FOUND
                            | CODE_STREAM_NAME_NOT_FOUND
                    )
                ) =>
            {
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// Creates a topic asking for `durability` (`persisted` or `replicated`); returns its id.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn create_topic(
        &mut self,
        stream_id: u32,
        topic_name: &str,
        partitions_count: u32,
        durability: &str,
    ) -> Result<u32, ClientError> {
        let body = encode(&CreateTopicRequest {
            stream_id: WireIdentifier::numeric(stream_id),
            partitions_count,
            name: name(topic_name)?,
            options: topic_options(durability)?,
        });
        let reply = self.call(CommandCode::CreateTopic, &body).await?;
        u32_at(&reply, 0, CommandCode::CreateTopic)
    }

    /// Finds a stream's topic by names; `None` when either does not exist.
    ///
    /// # Errors
    /// [`ClientError`] other than "not found".
    pub async fn find_topic(
        &mut self,
        stream_name: &str,
        topic_name: &str,
    ) -> Result<Option<TopicInfo>, ClientError> {
        let body = encode(&GetStreamRequest {
            stream_id: named(stream_name)?,
        });
        let stream = match self.call(CommandCode::GetStream, &body).await {
            Ok(reply) if reply.is_empty() => return Ok(None),
            Ok(reply) => reply,
            Err(e)
                if matches!(
                    e.code(),
                    Some(
                        CODE_RESOURCE_NOT_FOUND
                            | CODE_STREAM_ID_NOT_FOUND
                            | CODE_STREAM_NAME_NOT_FOUND
                    )
                ) =>
            {
                return Ok(None)
            }
            Err(e) => return Err(e),
        };
        let stream_id = u32_at(&stream, 0, CommandCode::GetStream)?;
        let body = encode(&GetTopicRequest {
            stream_id: WireIdentifier::numeric(stream_id),
            topic_id: named(topic_name)?,
        });
        let topic = match self.call(CommandCode::GetTopic, &body).await {
            Ok(reply) if reply.is_empty() => return Ok(None),
            Ok(reply) => reply,
            Err(e) if e.code().is_some() => return Ok(None),
            Err(e) => return Err(e),
        };
        // TopicHeader: [id u32][created_at u64][partitions_count u32][message_expiry u64]
        // [compression u8][max_topic_size u64][size_bytes u64][messages_count u64]...
        let command = CommandCode::GetTopic;
        Ok(Some(TopicInfo {
            stream_id,
            topic_id: u32_at(&topic, 0, command)?,
            partitions_count: u32_at(&topic, 12, command)?,
            messages_count: u64_at(&topic, 41, command)?,
        }))
    }

    /// Creates a consumer group (an existing one of that name is fine); returns its id.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn create_consumer_group(
        &mut self,
        stream_id: u32,
        topic_id: u32,
        group_name: &str,
    ) -> Result<u32, ClientError> {
        let body = encode(&CreateConsumerGroupRequest {
            stream_id: WireIdentifier::numeric(stream_id),
            topic_id: WireIdentifier::numeric(topic_id),
            name: name(group_name)?,
        });
        let reply = self.call(CommandCode::CreateConsumerGroup, &body).await?;
        u32_at(&reply, 0, CommandCode::CreateConsumerGroup)
    }

    /// Finds a consumer group by name; `None` when it does not exist.
    ///
    /// # Errors
    /// [`ClientError`] other than a refusal.
    pub async fn find_consumer_group(
        &mut self,
        stream_id: u32,
        topic_id: u32,
        group_name: &str,
    ) -> Result<Option<u32>, ClientError> {
        let body = encode(&GetConsumerGroupRequest {
            stream_id: WireIdentifier::numeric(stream_id),
            topic_id: WireIdentifier::numeric(topic_id),
            group_id: named(group_name)?,
        });
        match self.call(CommandCode::GetConsumerGroup, &body).await {
            Ok(reply) if reply.is_empty() => Ok(None),
            Ok(reply) => u32_at(&reply, 0, CommandCode::GetConsumerGroup).map(Some),
            Err(e) if e.code().is_some() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Joins a consumer group.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn join_consumer_group(
        &mut self,
        stream_id: u32,
        topic_id: u32,
        group_id: u32,
    ) -> Result<(), ClientError> {
        let body = encode(&JoinConsumerGroupRequest {
            stream_id: WireIdentifier::numeric(stream_id),
            topic_id: WireIdentifier::numeric(topic_id),
            group_id: WireIdentifier::numeric(group_id),
        });
        self.call(CommandCode::JoinConsumerGroup, &body)
            .await
            .map(|_| ())
    }
}

/// The body of a PollMessages request.
pub fn poll_body(
    consumer: riptide_protocol::wire::WireConsumer,
    stream_id: u32,
    topic_id: u32,
    partition_id: Option<u32>,
    strategy: riptide_protocol::wire::WirePollingStrategy,
    count: u32,
    auto_commit: bool,
) -> Vec<u8> {
    encode(
        &riptide_protocol::wire::requests::messages::PollMessagesRequest {
            consumer,
            stream_id: WireIdentifier::numeric(stream_id),
            topic_id: WireIdentifier::numeric(topic_id),
            partition_id,
            strategy,
            count,
            auto_commit,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    use riptide_protocol::batch::{stamp, Batch};
    use riptide_protocol::constants::FRAME_SIZE_MAX_BYTES;
    use riptide_protocol::header::{ReplyRepr, RequestHeader};
    use riptide_protocol::login::Login;
    use riptide_protocol::reply::{
        login_reply, poll_reply_prefix, result_err, result_ok, send_confirmations, SendConfirmation,
    };
    use riptide_protocol::request::{Identifier, Partitioning, Request, SendMessages};
    use std::io::{Read, Write};

    /// One request as the protocol crate's server-side decoders see it.
    struct Seen {
        header: [u8; HEADER_SIZE_BYTES],
        body: Vec<u8>,
    }

    impl Seen {
        fn read(socket: &mut std::net::TcpStream) -> Seen {
            let mut header = [0u8; HEADER_SIZE_BYTES];
            socket.read_exact(&mut header).unwrap();
            let view = RequestHeader::new_checked(&header[..]).unwrap();
            view.validate(FRAME_SIZE_MAX_BYTES)
                .expect("header passes the server's validation");
            let mut body = vec![0u8; view.size_bytes() as usize - HEADER_SIZE_BYTES];
            socket.read_exact(&mut body).unwrap();
            Seen { header, body }
        }
        fn view(&self) -> RequestHeader<&[u8]> {
            RequestHeader::new_checked(&self.header[..]).unwrap()
        }
        fn request(&self) -> Request<'_> {
            let v = self.view();
            Request::decode(v.operation(), v.command_code(), &self.body).expect("body decodes")
        }
        fn reply(&self, socket: &mut std::net::TcpStream, status: u32, body: &[u8]) {
            let mut header = [0u8; HEADER_SIZE_BYTES];
            ReplyRepr::echo(&self.view(), 7, status).emit(body.len() as u32, &mut header);
            socket.write_all(&header).unwrap();
            socket.write_all(body).unwrap();
        }
    }

    /// The server side of the conversation in `client_speaks_what_the_server_decodes`, written
    /// with the protocol crate's own decoders and encoders.
    fn peer(listener: std::net::TcpListener) {
        let (mut s, _) = listener.accept().unwrap();
        let login = Seen::read(&mut s);
        assert_eq!((login.view().request(), login.view().session()), (0, 0));
        match login.request() {
            Request::LoginRegister(Login::Password {
                username, password, ..
            }) => {
                assert_eq!((username.as_str(), password.as_str()), ("iggy", "secret"));
            }
            other => panic!("expected a Register, got {other:?}"),
        }
        let mut body = Vec::new();
        login_reply(0, 7, &mut body);
        login.reply(&mut s, 0, &body);

        let create = Seen::read(&mut s);
        assert_eq!(
            (create.view().request(), create.view().session()),
            (1, 7),
            "metadata ops consume ids from 1"
        );
        assert!(
            matches!(create.request(), Request::CreateStream(r) if r.name.as_str() == "bench-stream-0")
        );
        let mut body = Vec::new();
        result_ok(&mut body);
        body.extend_from_slice(&3u32.to_le_bytes());
        create.reply(&mut s, 0, &body);

        let topic = Seen::read(&mut s);
        assert_eq!(topic.view().request(), 2);
        match topic.request() {
            Request::CreateTopic(r) => {
                assert_eq!((r.partitions_count, r.name.as_str()), (1, "topic-1"));
                assert!(String::from_utf8_lossy(r.options.as_bytes()).contains("persisted"));
            }
            other => panic!("expected CreateTopic, got {other:?}"),
        }
        let mut body = Vec::new();
        result_ok(&mut body);
        body.extend_from_slice(&5u32.to_le_bytes());
        topic.reply(&mut s, 0, &body);

        let delete = Seen::read(&mut s);
        assert!(matches!(delete.request(), Request::DeleteStream(_)));
        let mut body = Vec::new();
        result_err(
            riptide_protocol::codes::ErrorCode::from_wire(1010).unwrap(),
            &mut body,
        );
        delete.reply(&mut s, 0, &body);

        let send = Seen::read(&mut s);
        assert_eq!(
            send.view().request(),
            4,
            "after ids 1..=3, partition ops reuse the current id 4"
        );
        let mut record = {
            let parsed = SendMessages::parse(&send.body).expect("SendMessages body parses");
            assert_eq!(parsed.stream, Identifier::Numeric(3));
            assert_eq!(parsed.topic, Identifier::Numeric(5));
            assert_eq!(parsed.partitioning, Partitioning::PartitionId(0));
            assert_eq!(parsed.messages_count, 10);
            Batch::new_checked(parsed.batch).expect("batch checksums valid");
            parsed.batch.to_vec()
        };
        let mut body = Vec::new();
        send_confirmations(
            &[SendConfirmation {
                stream_id: 3,
                topic_id: 5,
                partition_id: 0,
                base_offset: 0,
            }],
            &mut body,
        );
        send.reply(&mut s, 0, &body);

        let poll = Seen::read(&mut s);
        match poll.request() {
            Request::PollMessages(r) => assert_eq!((r.strategy.value, r.count), (0, 10)),
            other => panic!("expected PollMessages, got {other:?}"),
        }
        stamp(&mut record, 0, 0, 1).unwrap();
        let mut body = poll_reply_prefix(0, 9, 10).to_vec();
        body.extend_from_slice(&record);
        poll.reply(&mut s, 0, &body);

        let refused = Seen::read(&mut s);
        refused.reply(&mut s, 4009, &[]);
    }

    #[tokio::test]
    async fn client_speaks_what_the_server_decodes() {
        use crate::actors::{build_batch, process_poll_reply};
        use crate::payload::Verifier;
        use riptide_protocol::batch::BatchBuilder;
        use riptide_protocol::wire::{WireConsumer, WirePollingStrategy};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let server = std::thread::spawn(move || peer(listener));
        let mut conn = Connection::connect(&address, "iggy", "secret")
            .await
            .unwrap();
        assert_eq!(conn.create_stream("bench-stream-0").await.unwrap(), 3);
        assert_eq!(
            conn.create_topic(3, "topic-1", 1, "persisted")
                .await
                .unwrap(),
            5
        );
        assert!(
            !conn.delete_stream("bench-stream-9").await.unwrap(),
            "not found is not an error"
        );
        let mut prefix = Vec::new();
        SendMessages::emit_prefix(
            Identifier::Numeric(3),
            Identifier::Numeric(5),
            Partitioning::PartitionId(0),
            10,
            &mut prefix,
        );
        let mut builder = BatchBuilder::new();
        let mut scratch = vec![0u8; 100];
        let batch = build_batch(&mut builder, &mut scratch, 0, 0, 10, 5).unwrap();
        conn.send_request(CommandCode::SendMessages, &prefix, batch)
            .await
            .unwrap();
        conn.read_reply(CommandCode::SendMessages).await.unwrap();
        let body = poll_body(
            WireConsumer::consumer(WireIdentifier::numeric(1)),
            3,
            5,
            Some(0),
            WirePollingStrategy::offset(0),
            10,
            false,
        );
        conn.send_request(CommandCode::PollMessages, &body, &[])
            .await
            .unwrap();
        let reply = conn
            .read_reply(CommandCode::PollMessages)
            .await
            .unwrap()
            .to_vec();
        let mut verifier = Verifier::new(100, 10, 10);
        let outcome = process_poll_reply(&reply, 3, Some(&mut verifier), None).unwrap();
        assert_eq!(outcome.messages, 10);
        assert!(verifier.report().passed(), "{:?}", verifier.report());
        conn.send_request(CommandCode::PollMessages, &body, &[])
            .await
            .unwrap();
        let err = conn
            .read_reply(CommandCode::PollMessages)
            .await
            .unwrap_err();
        assert_eq!(err.code(), Some(4009), "{err}");
        server.join().unwrap();
    }

    #[test]
    fn client_ids_are_distinct_and_non_zero() {
        let a = new_client_id(1);
        let b = new_client_id(1);
        assert_ne!(a, 0);
        assert_ne!(a, b);
    }

    #[test]
    fn topic_options_carry_both_durability_keys() {
        let o = topic_options("persisted").unwrap();
        let bytes = o.as_bytes();
        let text = String::from_utf8_lossy(bytes);
        assert!(
            text.contains("durability")
                && text.contains("consumer_offset_durability")
                && text.contains("persisted")
        );
        // [kind 2][len u32 = 10]["durability"][kind 2][len u32 = 9]["persisted"]...
        assert_eq!(bytes[0], 2);
        assert_eq!(u32::from_le_bytes(bytes[1..5].try_into().unwrap()), 10);
    }

    #[test]
    fn poll_body_layout() {
        use riptide_protocol::wire::{WireConsumer, WirePollingStrategy};
        let body = poll_body(
            WireConsumer::consumer(WireIdentifier::numeric(7)),
            1,
            2,
            Some(0),
            WirePollingStrategy::offset(42),
            1000,
            false,
        );
        // [kind 1][id 01 04 07000000][stream 01 04 ..][topic 01 04 ..][flag 1][part u32][strategy 1 + u64][count][auto]
        assert_eq!(body.len(), 1 + 6 + 6 + 6 + 5 + 9 + 4 + 1);
        assert_eq!(body[0], 1);
        assert_eq!(&body[1..7], &[1, 4, 7, 0, 0, 0]);
        assert_eq!(body[19], 1, "partition flag");
        assert_eq!(body[24], 1, "offset strategy");
        assert_eq!(u64::from_le_bytes(body[25..33].try_into().unwrap()), 42);
        assert_eq!(u32::from_le_bytes(body[33..37].try_into().unwrap()), 1000);
    }
}
