//! Login and logout, users, permissions and personal access tokens.

use super::{done, encoded, produced_id, replied_ok, result_ok, Action, Call, Handled};
// Stamps inside change builders only: those run on the metadata service's thread.
use crate::clock::now_us;
use crate::metadata::{MetadataOp, MetadataOutcome, Produced};
use crate::session::shared::lock;
use crate::session::{ConnectionState, Session, WorkerContext};
use riptide_protocol::codes::{ErrorCode, UserStatus as WireUserStatus};
use riptide_protocol::login::Login;
use riptide_protocol::reply::types::{
    GetPersonalAccessTokensResponse, GetUsersResponse, PersonalAccessTokenResponse,
    RawPersonalAccessTokenResponse, UserDetailsResponse, UserResponse,
};
use riptide_protocol::request::Request;
use riptide_protocol::wire::{
    WireGlobalPermissions, WireIdentifier, WireName, WireOptions, WirePermissions,
    WireStreamPermissions, WireTopicPermissions,
};
use riptide_storage::metadata::{
    generate_token, hash_password, hash_token, verify_password, Catalog, Change, GlobalPermissions,
    Permissions, StreamPermissions, TopicPermissions, User, UserStatus,
};
use std::sync::atomic::Ordering;

/// Most personal access tokens per user (iggy's default).
const TOKENS_PER_USER_MAX: usize = 100;
const USERNAME_LENGTH_BYTES: std::ops::RangeInclusive<usize> = 3..=50;
const PASSWORD_LENGTH_BYTES: std::ops::RangeInclusive<usize> = 3..=100;

/// Register: checks the credentials and binds a new session to the connection. A password is
/// checked by the metadata service (argon2 is too slow for a network thread); a token's
/// SHA-256 lookup is answered here.
pub fn login(login: Login, state: &mut ConnectionState, ctx: &mut WorkerContext) -> Handled {
    match login {
        Login::Password {
            username, password, ..
        } => {
            let peer = peer_ip(state);
            if let Some(ip) = peer {
                if let Err(remaining) = ctx.shared.login_throttle.check(ip, ctx.now()) {
                    ctx.counters()
                        .logins_throttled
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(%ip, ?remaining, "login refused: the address backs off after failed logins");
                    return Handled::Error(ErrorCode::InvalidCredentials);
                }
            }
            Handled::Metadata {
                op: MetadataOp::PasswordLogin { username, password },
                then: Box::new(move |outcome, state, ctx| match outcome {
                    MetadataOutcome::LoggedIn { user_id } => {
                        if let Some(ip) = peer {
                            ctx.shared.login_throttle.succeeded(ip);
                        }
                        bind_session(user_id, state, ctx)
                    }
                    MetadataOutcome::Failed(code) => {
                        if code == ErrorCode::InvalidCredentials {
                            ctx.counters().logins_failed.fetch_add(1, Ordering::Relaxed);
                            if let Some(ip) = peer {
                                ctx.shared.login_throttle.failed(ip, ctx.now());
                            }
                        }
                        Handled::Error(code)
                    }
                    MetadataOutcome::Applied(_)
                    | MetadataOutcome::Replicated(_)
                    | MetadataOutcome::Snapshot(_) => Handled::Error(ErrorCode::Error),
                }),
            }
        }
        Login::Token { token, .. } => {
            let catalog = ctx.shared.catalog();
            let user = match catalog.token_by_hash(&hash_token(&token)) {
                Some((_, pat))
                    if pat
                        .expiry_at_us
                        .is_some_and(|expiry| expiry <= ctx.now_us()) =>
                {
                    return Handled::Error(ErrorCode::PersonalAccessTokenExpired);
                }
                Some((user, _)) => user,
                None => return Handled::Error(ErrorCode::InvalidPersonalAccessToken),
            };
            if user.status != UserStatus::Active {
                return Handled::Error(ErrorCode::UserInactive);
            }
            bind_session(user.id, state, ctx)
        }
    }
}

/// The peer's IP address (the connection's address is the peer's `ip:port`).
fn peer_ip(state: &ConnectionState) -> Option<std::net::IpAddr> {
    state
        .address
        .parse::<std::net::SocketAddr>()
        .ok()
        .map(|address| address.ip())
}

/// A new session for `user_id` on this connection: the login reply.
fn bind_session(user_id: u32, state: &mut ConnectionState, ctx: &mut WorkerContext) -> Handled {
    let session_id = random_session_id(ctx.now_us() ^ (u64::from(state.client_id) << 32));
    state.session = Some(Session {
        user_id,
        session_id,
    });
    state.attached_to = None;
    if let Some(client) = lock(&ctx.shared.clients).get_mut(&state.client_id) {
        client.user_id = Some(user_id);
        client.session_id = Some(session_id);
    }
    let mut body = Vec::new();
    riptide_protocol::reply::login_reply(user_id, session_id, &mut body);
    Handled::Reply(body)
}

/// A non-zero session id that a client cannot guess from its own.
/// `fallback` (non-zero) serves only if the kernel's random source fails.
fn random_session_id(fallback: u64) -> u64 {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        return fallback | 1;
    }
    match u64::from_le_bytes(bytes) {
        0 => fallback | 1,
        id => id,
    }
}

pub fn handle(request: Request<'_>, call: Call<'_>) -> Handled {
    done(match request {
        Request::Logout => {
            call.state.session = None;
            call.state.attached_to = None;
            if let Some(client) = lock(&call.ctx.shared.clients).get_mut(&call.state.client_id) {
                client.user_id = None;
                client.session_id = None;
            }
            Ok(Handled::Reply(Vec::new()))
        }
        Request::GetUser(r) => get_user(&call, &r.user_id),
        Request::GetUsers => get_users(&call),
        Request::CreateUser(r) => create_user(
            &call,
            r.username.as_str(),
            &r.password,
            r.status,
            r.permissions.as_ref(),
            &r.options,
        ),
        Request::DeleteUser(r) => delete_user(&call, &r.user_id),
        Request::UpdateUser(r) => {
            update_user(&call, &r.user_id, r.username.as_ref(), r.status, &r.options)
        }
        Request::UpdatePermissions(r) => {
            update_permissions(&call, &r.user_id, r.permissions.as_ref())
        }
        Request::ChangePassword(r) => {
            change_password(&call, &r.user_id, &r.current_password, &r.new_password)
        }
        Request::GetPersonalAccessTokens => get_tokens(&call),
        Request::CreatePersonalAccessToken(r) => create_token(&call, r.name.as_str(), r.expiry),
        Request::DeletePersonalAccessToken(r) => delete_token(&call, r.name.as_str()),
        _ => Err(ErrorCode::InvalidCommand),
    })
}

fn find_user<'c>(catalog: &'c Catalog, id: &WireIdentifier) -> Result<&'c User, ErrorCode> {
    match id {
        WireIdentifier::Numeric(id) => catalog.user(*id),
        WireIdentifier::String(name) => catalog.user_by_username(name.as_str()),
    }
    .ok_or(ErrorCode::ResourceNotFound)
}

fn user_response(user: &User) -> UserResponse {
    UserResponse {
        id: user.id,
        created_at: user.created_at_us,
        status: match user.status {
            UserStatus::Active => WireUserStatus::Active,
            UserStatus::Inactive => WireUserStatus::Inactive,
        }
        .wire(),
        username: WireName::new(user.username.as_str())
            .unwrap_or_else(|_| WireName::new("?").expect("valid")),
        options: WireOptions::empty(),
    }
}

fn user_details(user: &User) -> UserDetailsResponse {
    UserDetailsResponse {
        user: user_response(user),
        permissions: user.permissions.as_ref().map(to_wire),
    }
}

fn get_user(call: &Call<'_>, id: &WireIdentifier) -> Result<Handled, ErrorCode> {
    let Ok(user) = find_user(call.catalog, id) else {
        return Ok(Handled::Reply(Vec::new()));
    };
    if user.id != call.caller.user_id {
        call.require(Action::ReadUsers)?;
    }
    Ok(Handled::Reply(encoded(&user_details(user))))
}

fn get_users(call: &Call<'_>) -> Result<Handled, ErrorCode> {
    call.require(Action::ReadUsers)?;
    let users = call.catalog.users().values().map(user_response).collect();
    Ok(Handled::Reply(encoded(&GetUsersResponse { users })))
}

fn status_from_wire(status: u8) -> Result<UserStatus, ErrorCode> {
    match WireUserStatus::from_wire(status) {
        Some(WireUserStatus::Active) => Ok(UserStatus::Active),
        Some(WireUserStatus::Inactive) => Ok(UserStatus::Inactive),
        None => Err(ErrorCode::InvalidUserStatus),
    }
}

fn check_password_length(password: &str) -> Result<(), ErrorCode> {
    if PASSWORD_LENGTH_BYTES.contains(&password.len()) {
        Ok(())
    } else {
        Err(ErrorCode::InvalidPassword)
    }
}

/// The PHC string of a new password (argon2: called inside change builders, which run on the
/// metadata service's thread).
fn hash_new_password(password: &str) -> Result<String, ErrorCode> {
    hash_password(password).map_err(|_| ErrorCode::Error)
}

fn create_user(
    call: &Call<'_>,
    username: &str,
    password: &str,
    status: u8,
    permissions: Option<&WirePermissions>,
    options: &WireOptions,
) -> Result<Handled, ErrorCode> {
    call.require(Action::ManageUsers)?;
    if !options.is_empty() {
        return Err(ErrorCode::UnsupportedOptionKey);
    }
    if !USERNAME_LENGTH_BYTES.contains(&username.len()) {
        return Err(ErrorCode::InvalidUsername);
    }
    let status = status_from_wire(status)?;
    check_password_length(password)?;
    let permissions = permissions.map(from_wire);
    let (username, password) = (username.to_string(), password.to_string());
    Ok(Handled::change(
        move |catalog| {
            if catalog.user_by_username(&username).is_some() {
                return Err(ErrorCode::UserAlreadyExists);
            }
            let user_id = catalog
                .next_user_id()
                .map_err(|e| crate::metadata::catalog_error_code(&e))?;
            let change = Change::CreateUser {
                user_id,
                username,
                password_hash: hash_new_password(&password)?,
                status,
                permissions,
                created_at_us: now_us(),
            };
            Ok((change, Produced::Id(user_id)))
        },
        |applied, _, _| {
            let user = applied
                .catalog
                .user(produced_id(&applied.produced)?)
                .ok_or(ErrorCode::Error)?;
            Ok(Handled::Reply(result_ok(&encoded(&user_details(user)))))
        },
    ))
}

fn delete_user(call: &Call<'_>, id: &WireIdentifier) -> Result<Handled, ErrorCode> {
    call.require(Action::ManageUsers)?;
    let user_id = find_user(call.catalog, id)?.id;
    if user_id == call.caller.user_id {
        return Err(ErrorCode::CannotDeleteUser);
    }
    Ok(Handled::change(
        move |_| Ok((Change::DeleteUser { user_id }, Produced::Nothing)),
        replied_ok,
    ))
}

fn update_user(
    call: &Call<'_>,
    id: &WireIdentifier,
    username: Option<&WireName>,
    status: Option<u8>,
    options: &WireOptions,
) -> Result<Handled, ErrorCode> {
    call.require(Action::ManageUsers)?;
    if !options.is_empty() {
        return Err(ErrorCode::UnsupportedOptionKey);
    }
    let user_id = find_user(call.catalog, id)?.id;
    let username = username.map(|name| name.as_str().to_string());
    if username
        .as_ref()
        .is_some_and(|name| !USERNAME_LENGTH_BYTES.contains(&name.len()))
    {
        return Err(ErrorCode::InvalidUsername);
    }
    let status = status.map(status_from_wire).transpose()?;
    Ok(Handled::change(
        move |catalog| {
            if let Some(name) = &username {
                if catalog
                    .user_by_username(name)
                    .is_some_and(|other| other.id != user_id)
                {
                    return Err(ErrorCode::UserAlreadyExists);
                }
            }
            let change = Change::UpdateUser {
                user_id,
                username,
                status,
            };
            Ok((change, Produced::Nothing))
        },
        replied_ok,
    ))
}

fn update_permissions(
    call: &Call<'_>,
    id: &WireIdentifier,
    permissions: Option<&WirePermissions>,
) -> Result<Handled, ErrorCode> {
    call.require(Action::ManageUsers)?;
    let user_id = find_user(call.catalog, id)?.id;
    let permissions = permissions.map(from_wire);
    Ok(Handled::change(
        move |_| {
            let change = Change::UpdatePermissions {
                user_id,
                permissions,
            };
            Ok((change, Produced::Nothing))
        },
        replied_ok,
    ))
}

fn change_password(
    call: &Call<'_>,
    id: &WireIdentifier,
    current: &str,
    new: &str,
) -> Result<Handled, ErrorCode> {
    let user_id = find_user(call.catalog, id)?.id;
    if user_id != call.caller.user_id {
        call.require(Action::ManageUsers)?;
    }
    check_password_length(new)?;
    let (current, new) = (current.to_string(), new.to_string());
    Ok(Handled::change(
        move |catalog| {
            let user = catalog.user(user_id).ok_or(ErrorCode::ResourceNotFound)?;
            if !verify_password(&current, &user.password_hash) {
                return Err(ErrorCode::InvalidCredentials);
            }
            let change = Change::ChangePassword {
                user_id,
                password_hash: hash_new_password(&new)?,
            };
            Ok((change, Produced::Nothing))
        },
        replied_ok,
    ))
}

fn get_tokens(call: &Call<'_>) -> Result<Handled, ErrorCode> {
    let user = call
        .catalog
        .user(call.caller.user_id)
        .ok_or(ErrorCode::ResourceNotFound)?;
    let tokens = user
        .tokens
        .values()
        .map(|token| PersonalAccessTokenResponse {
            name: WireName::new(token.name.as_str())
                .unwrap_or_else(|_| WireName::new("?").expect("valid")),
            expiry_at: token.expiry_at_us.unwrap_or(0),
        })
        .collect();
    Ok(Handled::Reply(encoded(&GetPersonalAccessTokensResponse {
        tokens,
    })))
}

/// `expiry` is a duration in µs: 0 (server default) and `u64::MAX` mean the token never expires.
fn create_token(call: &Call<'_>, name: &str, expiry_us: u64) -> Result<Handled, ErrorCode> {
    let user_id = call.caller.user_id;
    let name = name.to_string();
    Ok(Handled::change(
        move |catalog| {
            let user = catalog.user(user_id).ok_or(ErrorCode::ResourceNotFound)?;
            if user.tokens.contains_key(&name) {
                return Err(ErrorCode::PersonalAccessTokenAlreadyExists);
            }
            if user.tokens.len() >= TOKENS_PER_USER_MAX {
                return Err(ErrorCode::PersonalAccessTokensLimitReached);
            }
            let token = generate_token().map_err(|_| ErrorCode::Error)?;
            let expiry_at_us = (expiry_us != 0 && expiry_us != u64::MAX)
                .then(|| now_us().saturating_add(expiry_us));
            let change = Change::CreatePersonalAccessToken {
                user_id,
                name,
                token_hash: hash_token(&token),
                expiry_at_us,
            };
            Ok((change, Produced::Token(token)))
        },
        |applied, _, _| {
            let Produced::Token(token) = applied.produced else {
                return Err(ErrorCode::Error);
            };
            let token = WireName::new(token).map_err(|_| ErrorCode::Error)?;
            Ok(Handled::Reply(result_ok(&encoded(
                &RawPersonalAccessTokenResponse { token },
            ))))
        },
    ))
}

fn delete_token(call: &Call<'_>, name: &str) -> Result<Handled, ErrorCode> {
    let user_id = call.caller.user_id;
    let name = name.to_string();
    Ok(Handled::change(
        move |catalog| {
            let user = catalog.user(user_id).ok_or(ErrorCode::ResourceNotFound)?;
            if !user.tokens.contains_key(&name) {
                return Err(ErrorCode::ResourceNotFound);
            }
            let change = Change::DeletePersonalAccessToken { user_id, name };
            Ok((change, Produced::Nothing))
        },
        replied_ok,
    ))
}

pub fn to_wire(permissions: &Permissions) -> WirePermissions {
    let g = &permissions.global;
    WirePermissions {
        global: WireGlobalPermissions {
            manage_servers: g.manage_servers,
            read_servers: g.read_servers,
            manage_users: g.manage_users,
            read_users: g.read_users,
            manage_streams: g.manage_streams,
            read_streams: g.read_streams,
            manage_topics: g.manage_topics,
            read_topics: g.read_topics,
            poll_messages: g.poll_messages,
            send_messages: g.send_messages,
        },
        streams: permissions
            .streams
            .iter()
            .map(|(stream_id, s)| WireStreamPermissions {
                stream_id: *stream_id,
                manage_stream: s.manage_stream,
                read_stream: s.read_stream,
                manage_topics: s.manage_topics,
                read_topics: s.read_topics,
                poll_messages: s.poll_messages,
                send_messages: s.send_messages,
                topics: s
                    .topics
                    .iter()
                    .map(|(topic_id, t)| WireTopicPermissions {
                        topic_id: *topic_id,
                        manage_topic: t.manage_topic,
                        read_topic: t.read_topic,
                        poll_messages: t.poll_messages,
                        send_messages: t.send_messages,
                    })
                    .collect(),
            })
            .collect(),
    }
}

pub fn from_wire(wire: &WirePermissions) -> Permissions {
    let g = &wire.global;
    Permissions {
        global: GlobalPermissions {
            manage_servers: g.manage_servers,
            read_servers: g.read_servers,
            manage_users: g.manage_users,
            read_users: g.read_users,
            manage_streams: g.manage_streams,
            read_streams: g.read_streams,
            manage_topics: g.manage_topics,
            read_topics: g.read_topics,
            poll_messages: g.poll_messages,
            send_messages: g.send_messages,
        },
        streams: wire
            .streams
            .iter()
            .map(|s| {
                let topics = s
                    .topics
                    .iter()
                    .map(|t| {
                        let topic = TopicPermissions {
                            manage_topic: t.manage_topic,
                            read_topic: t.read_topic,
                            poll_messages: t.poll_messages,
                            send_messages: t.send_messages,
                        };
                        (t.topic_id, topic)
                    })
                    .collect();
                let stream = StreamPermissions {
                    manage_stream: s.manage_stream,
                    read_stream: s.read_stream,
                    manage_topics: s.manage_topics,
                    read_topics: s.read_topics,
                    poll_messages: s.poll_messages,
                    send_messages: s.send_messages,
                    topics,
                };
                (s.stream_id, stream)
            })
            .collect(),
    }
}
