//! Logins, users and personal access tokens.
//!
//! A login is checked by the dataplane (a TCP login with the given credential); on success the API
//! opens a session and answers Iggy's `IdentityInfo` with an access token. What the API changes
//! about a user also changes its sessions and pooled connections:
//!
//! | change (through this API) | sessions | pooled connections |
//! |---|---|---|
//! | `DELETE /users/logout` | the caller's ends | closed if it was the user's last session |
//! | `PUT /users/{id}/password` | the user's others end; the caller's own follows the new password | closed |
//! | `PUT /users/{id}` rename | follow the new name | closed |
//! | `PUT /users/{id}` status inactive, `DELETE /users/{id}` | all end | closed |
//! | `DELETE /personal-access-tokens/{name}` | the user's token sessions log in again before their next request; the deleted token's ends | closed |
//!
//! A change made over TCP is seen when one of the session's connections is next opened, and at
//! the latest when its token is refreshed (a refresh logs in again) or, for a token presented as
//! the bearer, after `http.jwt_access_token_expiry_s`: a session whose credential the dataplane
//! refuses ends with 401.

use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::{identifier, ApiJson, ApiPath};
use crate::http::sessions::Credential;
use crate::http::{Caller, HttpState};
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use iggy::prelude::{PersonalAccessTokenClient as _, UserClient as _};
use iggy_common::change_password::ChangePassword;
use iggy_common::create_personal_access_token::CreatePersonalAccessToken;
use iggy_common::create_user::CreateUser;
use iggy_common::login_user::LoginUser;
use iggy_common::login_with_personal_access_token::LoginWithPersonalAccessToken;
use iggy_common::update_permissions::UpdatePermissions;
use iggy_common::update_user::UpdateUser;
use iggy_common::{
    Identifier, IdentityInfo, IggyError, PersonalAccessTokenInfo, RawPersonalAccessToken, UserInfo,
    UserInfoDetails, UserStatus, UserUpdateOptions, Validatable as _,
};
use secrecy::ExposeSecret as _;
use serde::Deserialize;
use std::sync::Arc;

type AppState = State<Arc<HttpState>>;

/// `GET /users/me` names the caller (Iggy's alias).
const CURRENT_USER_ALIAS: &str = "me";

pub async fn login(
    State(state): AppState,
    ApiJson(command): ApiJson<LoginUser>,
) -> ApiResult<Json<IdentityInfo>> {
    let credential = Credential::Password {
        username: command.username,
        password: command.password,
    };
    Ok(Json(state.open_session(credential).await?))
}

pub async fn login_with_token(
    State(state): AppState,
    ApiJson(command): ApiJson<LoginWithPersonalAccessToken>,
) -> ApiResult<Json<IdentityInfo>> {
    let credential = Credential::PersonalAccessToken(command.token);
    Ok(Json(state.open_session(credential).await?))
}

/// `POST /users/refresh-token` body: the current token (the route takes no bearer).
#[derive(Deserialize)]
pub struct RefreshToken {
    token: String,
}

/// A new token for the session of a still-valid one; the old one stays valid until it expires
/// (Iggy's server does the same). Logging out ends both.
pub async fn refresh_token(
    State(state): AppState,
    ApiJson(command): ApiJson<RefreshToken>,
) -> ApiResult<Json<IdentityInfo>> {
    let unauthenticated = || ApiError::Iggy(IggyError::Unauthenticated);
    let claims = state
        .jwt
        .verify(&command.token)
        .ok_or_else(unauthenticated)?;
    let session = state
        .sessions
        .get(&claims.sid, crate::http::now_s())
        .ok_or_else(unauthenticated)?;
    // The credential is checked again, so a password changed or a token deleted over TCP ends
    // the session at the latest when its token would have to be refreshed.
    state.recheck(&session).await?;
    Ok(Json(state.identity(&session)?))
}

pub async fn logout(State(state): AppState, caller: Caller) -> StatusCode {
    state.end_session(&caller.session.id, caller.session.user_id);
    StatusCode::NO_CONTENT
}

pub async fn list(State(state): AppState, caller: Caller) -> ApiResult<Json<Vec<UserInfo>>> {
    let mut lease = state.lease(&caller).await?;
    let result = lease.conn().get_users().await;
    Ok(Json(lease.settle(result)?))
}

fn user_identifier(text: &str, caller: &Caller) -> Result<Identifier, ApiError> {
    if text == CURRENT_USER_ALIAS {
        return Identifier::numeric(caller.session.user_id).map_err(ApiError::Iggy);
    }
    identifier(text)
}

pub async fn get(
    State(state): AppState,
    caller: Caller,
    ApiPath(user): ApiPath<String>,
) -> ApiResult<Json<UserInfoDetails>> {
    let user = user_identifier(&user, &caller)?;
    let mut lease = state.lease(&caller).await?;
    let result = lease.conn().get_user(&user).await;
    lease.settle(result)?.map(Json).ok_or(ApiError::NotFound)
}

pub async fn create(
    State(state): AppState,
    caller: Caller,
    ApiJson(command): ApiJson<CreateUser>,
) -> ApiResult<Json<UserInfoDetails>> {
    command.validate().map_err(ApiError::Iggy)?;
    let mut lease = state.lease(&caller).await?;
    let result = lease
        .conn()
        .create_user(
            &command.username,
            command.password.expose_secret(),
            command.status,
            command.permissions,
        )
        .await;
    Ok(Json(lease.settle(result)?))
}

/// The numeric id of the user a path names (asked of the dataplane for a name), or 404.
async fn resolve_user(
    lease: &mut crate::http::pool::Lease<crate::http::dataplane::DataplaneConnector>,
    user: &Identifier,
) -> ApiResult<u32> {
    let result = lease.conn().get_user(user).await;
    let details = lease.settle(result)?;
    details.map(|d| d.id).ok_or(ApiError::NotFound)
}

pub async fn update(
    State(state): AppState,
    caller: Caller,
    ApiPath(user): ApiPath<String>,
    ApiJson(command): ApiJson<UpdateUser>,
) -> ApiResult<StatusCode> {
    let user = user_identifier(&user, &caller)?;
    command.validate().map_err(ApiError::Iggy)?;
    let mut lease = state.lease(&caller).await?;
    let user_id = resolve_user(&mut lease, &user).await?;
    let options = UserUpdateOptions {
        raw: command.options,
    };
    let result = lease
        .conn()
        .update_user(&user, command.username.as_deref(), command.status, &options)
        .await;
    lease.settle(result)?;
    drop(lease);
    if command.status == Some(UserStatus::Inactive) {
        state.end_user_sessions(user_id, None);
    } else if let Some(name) = &command.username {
        state.sessions.rename_user(user_id, name);
        state.pool.invalidate_user(user_id);
    }
    Ok(StatusCode::NO_CONTENT)
}

pub async fn delete(
    State(state): AppState,
    caller: Caller,
    ApiPath(user): ApiPath<String>,
) -> ApiResult<StatusCode> {
    let user = user_identifier(&user, &caller)?;
    let mut lease = state.lease(&caller).await?;
    let user_id = resolve_user(&mut lease, &user).await?;
    let result = lease.conn().delete_user(&user).await;
    lease.settle(result)?;
    drop(lease);
    state.end_user_sessions(user_id, None);
    Ok(StatusCode::NO_CONTENT)
}

pub async fn change_password(
    State(state): AppState,
    caller: Caller,
    ApiPath(user): ApiPath<String>,
    ApiJson(command): ApiJson<ChangePassword>,
) -> ApiResult<StatusCode> {
    let user = user_identifier(&user, &caller)?;
    command.validate().map_err(ApiError::Iggy)?;
    let mut lease = state.lease(&caller).await?;
    let user_id = resolve_user(&mut lease, &user).await?;
    let result = lease
        .conn()
        .change_password(
            &user,
            command.current_password.expose_secret(),
            command.new_password.expose_secret(),
        )
        .await;
    lease.settle(result)?;
    drop(lease);
    let own = caller.session.user_id == user_id;
    if own {
        caller
            .session
            .set_password(command.new_password.expose_secret());
    }
    state.end_user_sessions(user_id, own.then_some(caller.session.id.as_str()));
    Ok(StatusCode::NO_CONTENT)
}

pub async fn update_permissions(
    State(state): AppState,
    caller: Caller,
    ApiPath(user): ApiPath<String>,
    ApiJson(command): ApiJson<UpdatePermissions>,
) -> ApiResult<StatusCode> {
    let user = user_identifier(&user, &caller)?;
    command.validate().map_err(ApiError::Iggy)?;
    let mut lease = state.lease(&caller).await?;
    let result = lease
        .conn()
        .update_permissions(&user, command.permissions)
        .await;
    lease.settle(result)?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn list_tokens(
    State(state): AppState,
    caller: Caller,
) -> ApiResult<Json<Vec<PersonalAccessTokenInfo>>> {
    let mut lease = state.lease(&caller).await?;
    let result = lease.conn().get_personal_access_tokens().await;
    Ok(Json(lease.settle(result)?))
}

pub async fn create_token(
    State(state): AppState,
    caller: Caller,
    ApiJson(command): ApiJson<CreatePersonalAccessToken>,
) -> ApiResult<Json<RawPersonalAccessToken>> {
    command.validate().map_err(ApiError::Iggy)?;
    let mut lease = state.lease(&caller).await?;
    let result = lease
        .conn()
        .create_personal_access_token(&command.name, command.expiry)
        .await;
    Ok(Json(lease.settle(result)?))
}

/// Deleting a token closes the user's pooled connections: every session that logs in with a
/// token is checked again when it next connects, and the deleted one's ends.
pub async fn delete_token(
    State(state): AppState,
    caller: Caller,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<StatusCode> {
    let mut lease = state.lease(&caller).await?;
    let result = lease.conn().delete_personal_access_token(&name).await;
    lease.settle(result)?;
    drop(lease);
    state.sessions.recheck_tokens(caller.session.user_id);
    state.pool.invalidate_user(caller.session.user_id);
    Ok(StatusCode::NO_CONTENT)
}
