//! Command dispatch: one decoded request in; a reply body, an error status, an eviction,
//! storage-shard requests or a metadata request out. The same code serves every network driver.

mod access;
mod groups;
mod messages;
mod options;
mod resources;
mod system;
mod users;

use crate::metadata::{Applied, MetadataOp, MetadataOutcome, Produced, ReplicatedWrite};
use crate::session::counters::WorkerCounters;
use crate::session::{ConnectionState, WorkerContext};
use crate::shard::{ShardOp, ShardOutcome};
use bytes::Bytes;
use riptide_protocol::codes::{
    ConsumerKind as WireConsumerKind, ErrorCode, EvictionReason, Operation,
};
use riptide_protocol::header::RequestHeader;
use riptide_protocol::request::Request;
use riptide_protocol::wire::WireIdentifier;
use riptide_storage::metadata::{Catalog, Change, Stream, Topic};
use riptide_storage::{ConsumerRef, PartitionKey};
use std::sync::atomic::Ordering;

pub use access::Action;

/// What a request resolved to.
pub enum Handled {
    /// Success with this body (already result-framed where the operation needs it).
    Reply(Vec<u8>),
    /// A pre-commit denial: the status goes in the reply header, the body is empty.
    Error(ErrorCode),
    /// The session is over.
    Evict(EvictionReason),
    /// Work for storage shards; the reply is built when all of them answered.
    Shard {
        requests: Vec<(usize, ShardOp)>,
        continuation: Continuation,
    },
    /// Work for the metadata service; `then` turns its outcome into the next step.
    Metadata { op: MetadataOp, then: Then },
}

/// The step after a metadata request: runs on the network thread with the outcome.
pub type Then =
    Box<dyn FnOnce(MetadataOutcome, &mut ConnectionState, &mut WorkerContext) -> Handled>;

impl Handled {
    /// A metadata change built by `build` on the metadata service's thread from the
    /// authoritative catalog; once it is durable, `after` builds the reply (or shard work) from
    /// what the change produced, the catalog that includes it and the shard work it implies.
    pub fn change(
        build: impl FnOnce(&Catalog) -> Result<(Change, Produced), ErrorCode> + Send + 'static,
        after: impl FnOnce(Applied, &mut ConnectionState, &mut WorkerContext) -> Result<Handled, ErrorCode>
            + 'static,
    ) -> Handled {
        Handled::Metadata {
            op: MetadataOp::Change(Box::new(build)),
            then: Box::new(move |outcome, state, ctx| match outcome {
                MetadataOutcome::Applied(applied) => done(after(applied, state, ctx)),
                MetadataOutcome::Failed(code) => Handled::Error(code),
                MetadataOutcome::LoggedIn { .. }
                | MetadataOutcome::Replicated(_)
                | MetadataOutcome::Snapshot(_) => Handled::Error(ErrorCode::Error),
            }),
        }
    }
}

/// How to build a reply from shard outcomes.
pub enum Continuation {
    /// SendMessages: the confirmation of the appended batch.
    SendConfirmation {
        stream_id: u32,
        topic_id: u32,
        partition_id: u32,
        base_offset: Option<u64>,
        messages: u64,
    },
    /// PollMessages: prefix plus stored records.
    Poll {
        result: Option<riptide_storage::ReadResult>,
        partition_id: u32,
        /// Cluster mode: the auto-commit to replicate before the reply goes out.
        replicated_commit: Option<(PartitionKey, ConsumerRef)>,
    },
    /// A reply already built, sent once a replicated write it waited for is applied.
    Built(Vec<Bytes>),
    /// GetConsumerOffset: the offsets, or an empty body when none is stored.
    ConsumerOffset {
        partition_id: u32,
        offsets: Option<(Option<u64>, Option<u64>)>,
    },
    /// This body once every shard succeeded.
    Body(Vec<u8>),
}

impl Continuation {
    pub fn absorb(&mut self, outcome: ShardOutcome) {
        match (self, outcome) {
            (
                Continuation::SendConfirmation { base_offset, .. },
                ShardOutcome::Appended {
                    base_offset: base, ..
                },
            ) => {
                *base_offset = Some(base);
            }
            (Continuation::Poll { result, .. }, ShardOutcome::Polled(polled)) => {
                *result = Some(polled)
            }
            (
                Continuation::ConsumerOffset { offsets, .. },
                ShardOutcome::Offset { current, stored },
            ) => {
                *offsets = Some((current, stored));
            }
            _ => {}
        }
    }

    /// The step that must follow the shards' answers before the reply, if any: a poll that
    /// auto-commits in a cluster stores the offset of its last message through the cluster's
    /// log, and replies once that is applied.
    pub fn next_step(&mut self, counters: &WorkerCounters) -> Option<Handled> {
        let Continuation::Poll {
            result: Some(result),
            replicated_commit: Some((key, consumer)),
            ..
        } = self
        else {
            return None;
        };
        let (key, consumer, offset) = (*key, *consumer, result.last_offset?);
        let reply = self.finish(counters);
        let write = ReplicatedWrite::StoreOffset {
            key,
            consumer,
            offset,
        };
        Some(replicated(write, Continuation::Built(reply)))
    }

    /// The reply body chunks (the poll reply keeps the stored records as their own chunks).
    pub fn finish(&mut self, counters: &WorkerCounters) -> Vec<Bytes> {
        match std::mem::replace(self, Continuation::Body(Vec::new())) {
            Continuation::SendConfirmation {
                stream_id,
                topic_id,
                partition_id,
                base_offset,
                messages,
            } => {
                counters.messages_in.fetch_add(messages, Ordering::Relaxed);
                let confirmation = riptide_protocol::reply::SendConfirmation {
                    stream_id,
                    topic_id,
                    partition_id,
                    base_offset: base_offset.unwrap_or(0),
                };
                let mut body = Vec::with_capacity(24);
                riptide_protocol::reply::send_confirmations(&[confirmation], &mut body);
                vec![body.into()]
            }
            Continuation::Poll {
                result,
                partition_id,
                ..
            } => messages::poll_reply(result, partition_id, counters),
            Continuation::Built(chunks) => chunks,
            Continuation::ConsumerOffset {
                partition_id,
                offsets,
            } => {
                vec![messages::consumer_offset_reply(partition_id, offsets).into()]
            }
            Continuation::Body(body) => vec![body.into()],
        }
    }
}

/// Whether a frame may start while earlier requests of its connection are still in flight: only
/// the data-plane commands, whose order is kept by the shard rings. Everything else waits, so
/// metadata changes observe every earlier request.
pub fn may_pipeline(frame: &[u8]) -> bool {
    let Ok(header) = RequestHeader::new_checked(frame) else {
        return false;
    };
    match Operation::from_u8(header.operation()) {
        Some(Operation::SendMessages | Operation::StoreConsumerOffset) => true,
        Some(Operation::NonReplicated) => matches!(header.command_code(), 1 | 100 | 120),
        _ => false,
    }
}

/// Dispatches one decoded request. `received_batch` is a SendMessages batch the session
/// received into its own buffer (the request's batch then holds only its header): it goes to the
/// shard as it is.
pub fn handle(
    request: Request<'_>,
    received_batch: Option<Vec<u8>>,
    header: &RequestHeader<&[u8]>,
    state: &mut ConnectionState,
    ctx: &mut WorkerContext,
) -> Handled {
    let request = match request {
        Request::Ping => return Handled::Reply(Vec::new()),
        Request::LoginRegister(login) | Request::LoginRegisterWithPat(login) => {
            return users::login(login, state, ctx);
        }
        other => other,
    };
    let Some(session) = state.session else {
        // Before login only ping and login are accepted: reads get Unauthenticated, writes an
        // eviction (as an Iggy 0.11 server does).
        return match Operation::from_u8(header.operation()) {
            Some(Operation::NonReplicated) => Handled::Error(ErrorCode::Unauthenticated),
            _ => Handled::Evict(EvictionReason::NoSession),
        };
    };
    if header.session() != 0 && header.session() != session.session_id {
        return Handled::Evict(EvictionReason::SessionTooLow);
    }
    if let Some(cluster) = &ctx.shared.cluster {
        if !cluster.is_leader() && !served_by_any_node(&request) {
            // The Iggy SDK takes this as "find the leader and ask it".
            return Handled::Error(ErrorCode::TransientNotAccepted);
        }
    }
    let catalog = ctx.shared.catalog();
    let Some(user) = catalog.user(session.user_id) else {
        state.session = None;
        return Handled::Evict(EvictionReason::InvalidCredentials);
    };
    let caller = access::Caller {
        user_id: user.id,
        permissions: user.permissions.clone(),
    };
    let call = Call {
        catalog: &catalog,
        caller: &caller,
        state,
        ctx,
    };
    match request {
        Request::SendMessages(send) => messages::send(send, received_batch, call),
        Request::PollMessages(poll) | Request::PollMessagesOnPrimary(poll) => {
            messages::poll(poll, call)
        }
        other => dispatch_rest(other, call),
    }
}

/// In cluster mode, what a follower answers itself: sessions, the roster the SDK finds the leader
/// with, this node's own stats, clients and system snapshot, and reads of what it applied — the
/// catalog, stored consumer offsets, and polls of one partition that write nothing (no
/// auto-commit, no consumer group, whose assignment the leader keeps). Everything it holds is
/// committed, so a read here may be behind the leader's but never shows what the cluster may
/// lose. Everything else is the leader's.
fn served_by_any_node(request: &Request<'_>) -> bool {
    match request {
        Request::PollMessages(poll) => {
            !poll.auto_commit
                && poll.partition_id.is_some()
                && WireConsumerKind::from_wire(poll.consumer.kind)
                    == Some(WireConsumerKind::Consumer)
        }
        Request::Ping
        | Request::Logout
        | Request::GetMe
        | Request::GetClusterMetadata
        | Request::GetStats
        | Request::GetClients
        | Request::GetClient(_)
        | Request::GetStream(_)
        | Request::GetStreams
        | Request::GetTopic(_)
        | Request::GetTopics(_)
        | Request::GetConsumerOffset(_)
        | Request::GetSnapshot(_) => true,
        _ => false,
    }
}

fn dispatch_rest(request: Request<'_>, call: Call<'_>) -> Handled {
    match request {
        Request::FlushUnsavedBuffer(r) => messages::flush(r, call),
        Request::GetConsumerOffset(r) => messages::get_offset(r, call),
        Request::StoreConsumerOffset(r) => messages::store_offset(r, call),
        Request::DeleteConsumerOffset(r) => messages::delete_offset(r, call),
        Request::GetStream(_)
        | Request::GetStreams
        | Request::CreateStream(_)
        | Request::UpdateStream(_)
        | Request::DeleteStream(_)
        | Request::PurgeStream(_)
        | Request::GetTopic(_)
        | Request::GetTopics(_)
        | Request::CreateTopic(_)
        | Request::UpdateTopic(_)
        | Request::DeleteTopic(_)
        | Request::PurgeTopic(_)
        | Request::CreatePartitions(_)
        | Request::DeletePartitions(_)
        | Request::DeleteSegments(_) => resources::handle(request, call),
        Request::GetConsumerGroup(_)
        | Request::GetConsumerGroups(_)
        | Request::CreateConsumerGroup(_)
        | Request::DeleteConsumerGroup(_)
        | Request::JoinConsumerGroup(_)
        | Request::LeaveConsumerGroup(_)
        | Request::SyncConsumerGroup(_) => groups::handle(request, call),
        Request::GetUser(_)
        | Request::GetUsers
        | Request::CreateUser(_)
        | Request::DeleteUser(_)
        | Request::UpdateUser(_)
        | Request::UpdatePermissions(_)
        | Request::ChangePassword(_)
        | Request::Logout
        | Request::GetPersonalAccessTokens
        | Request::CreatePersonalAccessToken(_)
        | Request::DeletePersonalAccessToken(_) => users::handle(request, call),
        other => system::handle(other, call),
    }
}

/// Everything a handler needs for one request.
pub struct Call<'a> {
    pub catalog: &'a Catalog,
    pub caller: &'a access::Caller,
    pub state: &'a mut ConnectionState,
    pub ctx: &'a mut WorkerContext,
}

impl Call<'_> {
    /// `Unauthorized` unless the caller may do `action`.
    pub fn require(&self, action: Action) -> Result<(), ErrorCode> {
        if self.caller.may(action) {
            Ok(())
        } else {
            Err(ErrorCode::Unauthorized)
        }
    }
}

/// The id a change allocated.
pub fn produced_id(produced: &Produced) -> Result<u32, ErrorCode> {
    match produced {
        Produced::Id(id) => Ok(*id),
        _ => Err(ErrorCode::Error),
    }
}

/// The reply of a change that answers with an empty success after its shard work.
pub fn replied_ok(
    applied: Applied,
    _: &mut ConnectionState,
    _: &mut WorkerContext,
) -> Result<Handled, ErrorCode> {
    Ok(after_shards(applied.effects, result_ok(&[])))
}

/// A data-plane write in cluster mode: it goes through the cluster's log, and `continuation`
/// builds the reply from the outcome its application had (the same as a shard's).
pub fn replicated(write: ReplicatedWrite, continuation: Continuation) -> Handled {
    Handled::Metadata {
        op: MetadataOp::Replicate(write),
        then: Box::new(move |outcome, _, ctx| match outcome {
            MetadataOutcome::Replicated(ShardOutcome::Failed(code))
            | MetadataOutcome::Failed(code) => Handled::Error(code),
            MetadataOutcome::Replicated(outcome) => {
                let mut continuation = continuation;
                continuation.absorb(outcome);
                Handled::Reply(continuation.finish(ctx.counters()).concat())
            }
            MetadataOutcome::Applied(_)
            | MetadataOutcome::LoggedIn { .. }
            | MetadataOutcome::Snapshot(_) => Handled::Error(ErrorCode::Error),
        }),
    }
}

/// Shard work whose reply is `body`; replies at once when no shard is involved.
pub fn after_shards(requests: Vec<(usize, ShardOp)>, body: Vec<u8>) -> Handled {
    if requests.is_empty() {
        Handled::Reply(body)
    } else {
        Handled::Shard {
            requests,
            continuation: Continuation::Body(body),
        }
    }
}

/// Unwraps a handler's `Result` into [`Handled`].
pub fn done(result: Result<Handled, ErrorCode>) -> Handled {
    result.unwrap_or_else(Handled::Error)
}

/// A result-framed success body: `[count = 0]` then the payload.
pub fn result_ok(payload: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(4 + payload.len());
    riptide_protocol::reply::result_ok(&mut body);
    body.extend_from_slice(payload);
    body
}

/// Encodes an iggy wire response type into a fresh body.
pub fn encoded<T: riptide_protocol::wire::WireEncode>(response: &T) -> Vec<u8> {
    let mut body = Vec::with_capacity(response.encoded_size());
    riptide_protocol::reply::encode(response, &mut body);
    body
}

/// An identifier as a borrowed id or name, from either the zero-copy send view or iggy's types.
#[derive(Debug, Clone, Copy)]
pub enum IdRef<'a> {
    Numeric(u32),
    Name(&'a str),
}

impl<'a> From<&'a WireIdentifier> for IdRef<'a> {
    fn from(id: &'a WireIdentifier) -> Self {
        match id {
            WireIdentifier::Numeric(id) => IdRef::Numeric(*id),
            WireIdentifier::String(name) => IdRef::Name(name.as_str()),
        }
    }
}

impl<'a> From<riptide_protocol::request::Identifier<'a>> for IdRef<'a> {
    fn from(id: riptide_protocol::request::Identifier<'a>) -> Self {
        match id {
            riptide_protocol::request::Identifier::Numeric(id) => IdRef::Numeric(id),
            riptide_protocol::request::Identifier::Name(name) => IdRef::Name(name),
        }
    }
}

pub fn resolve_stream<'c>(catalog: &'c Catalog, id: IdRef<'_>) -> Result<&'c Stream, ErrorCode> {
    match id {
        IdRef::Numeric(id) => catalog.stream(id).ok_or(ErrorCode::StreamIdNotFound),
        IdRef::Name(name) => catalog
            .stream_by_name(name)
            .ok_or(ErrorCode::StreamNameNotFound),
    }
}

pub fn resolve_topic<'c>(stream: &'c Stream, id: IdRef<'_>) -> Result<&'c Topic, ErrorCode> {
    match id {
        IdRef::Numeric(id) => stream.topics.get(&id).ok_or(ErrorCode::TopicIdNotFound),
        IdRef::Name(name) => stream
            .topics
            .values()
            .find(|topic| topic.name == name)
            .ok_or(ErrorCode::TopicNameNotFound),
    }
}

pub fn resolve_refs<'c>(
    catalog: &'c Catalog,
    stream: IdRef<'_>,
    topic: IdRef<'_>,
) -> Result<(&'c Stream, &'c Topic), ErrorCode> {
    let stream = resolve_stream(catalog, stream)?;
    let topic = resolve_topic(stream, topic)?;
    Ok((stream, topic))
}

pub fn resolve_stream_topic<'c>(
    catalog: &'c Catalog,
    stream: &WireIdentifier,
    topic: &WireIdentifier,
) -> Result<(&'c Stream, &'c Topic), ErrorCode> {
    resolve_refs(catalog, IdRef::from(stream), IdRef::from(topic))
}
