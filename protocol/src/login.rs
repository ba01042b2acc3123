//! The Register login handshake: body shapes and the protocol-version gate (§1A.2).
//!
//! ```text
//! password shape (code 40): [ClientVersionInfo][username WireName][password_len u8][password]
//!                           [context_len u32][context]
//! token shape    (code 45): [ClientVersionInfo][token_len u8][token][context_len u32][context]
//! ClientVersionInfo:        [protocol_version u32][sdk_name WireName][sdk_version WireName]
//! ```
//! Both shapes travel as operation Register, so the server tries the password shape first and
//! the token shape second. As in Iggy 0.11's server, each shape reads the fields it needs and
//! ignores any bytes after them, and a body that fits neither is evicted with MalformedLogin.

use crate::codes::EvictionReason;
use crate::constants::{
    PROTOCOL_VERSION_COMPONENT_BITS, SERVER_PROTOCOL_VERSION, SERVER_PROTOCOL_VERSION_MIN,
};
use crate::request::Rejection;
use bytes::BytesMut;
use iggy_binary_protocol::requests::users::{LoginRegisterRequest, LoginRegisterWithPatRequest};
use iggy_binary_protocol::{ClientVersionInfo, WireDecode, WireEncode, WireError, WireName};
// iggy wraps passwords and tokens in `secrecy` types.
use secrecy::{ExposeSecret, SecretString};

/// The client's version prefix, as sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientVersion {
    /// Packed `major<<20 | minor<<10 | patch`.
    pub protocol_version: u32,
    /// e.g. `rust-sdk`.
    pub sdk_name: String,
    /// e.g. `0.11.0`.
    pub sdk_version: String,
}

/// A decoded Register body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Login {
    /// Username and password (code 40).
    Password {
        /// Client version prefix.
        version: ClientVersion,
        /// Username (1..255 bytes; the server enforces 3..50 at user creation).
        username: String,
        /// Password in clear, to be verified against the stored hash.
        password: String,
        /// Optional client context string.
        context: Option<String>,
    },
    /// Personal access token (code 45).
    Token {
        /// Client version prefix.
        version: ClientVersion,
        /// The raw token.
        token: String,
        /// Optional client context string.
        context: Option<String>,
    },
}

impl Login {
    /// The client's version prefix.
    pub fn version(&self) -> &ClientVersion {
        match self {
            Self::Password { version, .. } | Self::Token { version, .. } => version,
        }
    }
}

/// Why a Register body was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LoginError {
    /// No decodable ClientVersionInfo prefix.
    #[error("malformed login prefix")]
    MalformedPrefix,
    /// The client's protocol version is outside the accepted window.
    #[error("incompatible protocol version {0}")]
    IncompatibleProtocol(u32),
    /// Neither body shape decodes after the prefix.
    #[error("malformed login body")]
    MalformedBody,
}

impl LoginError {
    /// The answer, an eviction as from Iggy's server: MalformedLogin for a body that fits
    /// neither shape or has no version prefix, IncompatibleProtocol (with the window, see
    /// [`crate::header::EvictionRepr`]) for a version outside it.
    pub fn rejection(&self) -> Rejection {
        match self {
            Self::MalformedPrefix | Self::MalformedBody => {
                Rejection::Evict(EvictionReason::MalformedLogin)
            }
            Self::IncompatibleProtocol(_) => Rejection::Evict(EvictionReason::IncompatibleProtocol),
        }
    }
}

/// The version gate: accept when `client >= MIN` and `client.major.minor <= server.major.minor`.
pub fn is_protocol_compatible(client_protocol_version: u32) -> bool {
    client_protocol_version >= SERVER_PROTOCOL_VERSION_MIN
        && (client_protocol_version >> PROTOCOL_VERSION_COMPONENT_BITS)
            <= (SERVER_PROTOCOL_VERSION >> PROTOCOL_VERSION_COMPONENT_BITS)
}

/// Packs a version as the protocol does; components are masked to 10 bits.
pub const fn pack_protocol_version(major: u32, minor: u32, patch: u32) -> u32 {
    let mask = (1 << PROTOCOL_VERSION_COMPONENT_BITS) - 1;
    ((major & mask) << (2 * PROTOCOL_VERSION_COMPONENT_BITS))
        | ((minor & mask) << PROTOCOL_VERSION_COMPONENT_BITS)
        | (patch & mask)
}

/// Client side: encodes a Register body of either shape, as the iggy SDK does.
///
/// # Errors
/// [`WireError::Validation`] when the SDK name or version is empty or longer than 255 bytes.
pub fn encode_register(login: &Login, buf: &mut BytesMut) -> Result<(), WireError> {
    let version = login.version();
    let version_info = ClientVersionInfo {
        protocol_version: version.protocol_version,
        sdk_name: WireName::new(version.sdk_name.as_str())?,
        sdk_version: WireName::new(version.sdk_version.as_str())?,
    };
    match login {
        Login::Password {
            username,
            password,
            context,
            ..
        } => LoginRegisterRequest {
            version_info,
            username: WireName::new(username.as_str())?,
            password: SecretString::from(password.as_str()),
            client_context: context.clone(),
        }
        .encode(buf),
        Login::Token { token, context, .. } => LoginRegisterWithPatRequest {
            version_info,
            token: SecretString::from(token.as_str()),
            client_context: context.clone(),
        }
        .encode(buf),
    }
    Ok(())
}

/// Decodes a Register body and applies the version gate.
///
/// # Errors
/// [`LoginError`]; [`LoginError::rejection`] says how to answer.
pub fn parse_register(body: &[u8]) -> Result<Login, LoginError> {
    let (info, prefix_len) =
        ClientVersionInfo::decode(body).map_err(|_| LoginError::MalformedPrefix)?;
    if !is_protocol_compatible(info.protocol_version) {
        return Err(LoginError::IncompatibleProtocol(info.protocol_version));
    }
    let tail = body.get(prefix_len..).unwrap_or_default();
    let version = ClientVersion {
        protocol_version: info.protocol_version,
        sdk_name: info.sdk_name.as_str().to_owned(),
        sdk_version: info.sdk_version.as_str().to_owned(),
    };
    if let Ok((request, _)) = LoginRegisterRequest::decode_after_prefix(info.clone(), tail) {
        return Ok(Login::Password {
            version,
            username: request.username.as_str().to_owned(),
            password: request.password.expose_secret().to_owned(),
            context: request.client_context,
        });
    }
    match LoginRegisterWithPatRequest::decode_after_prefix(info, tail) {
        Ok((request, _)) => Ok(Login::Token {
            version,
            token: request.token.expose_secret().to_owned(),
            context: request.client_context,
        }),
        Err(_) => Err(LoginError::MalformedBody),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(protocol_version: u32) -> ClientVersionInfo {
        ClientVersionInfo {
            protocol_version,
            sdk_name: WireName::new("rust-sdk").unwrap(),
            sdk_version: WireName::new("0.11.0").unwrap(),
        }
    }

    fn password_body(version: u32, context: Option<&str>) -> Vec<u8> {
        LoginRegisterRequest {
            version_info: info(version),
            username: WireName::new("iggy").unwrap(),
            password: SecretString::from("secret"),
            client_context: context.map(str::to_owned),
        }
        .to_bytes()
        .to_vec()
    }

    #[test]
    fn password_shape_decodes_first() {
        let login = parse_register(&password_body(SERVER_PROTOCOL_VERSION, Some("ctx"))).unwrap();
        let Login::Password {
            version,
            username,
            password,
            context,
        } = login
        else {
            panic!("expected the password shape");
        };
        assert_eq!(version.sdk_name, "rust-sdk");
        assert_eq!((username.as_str(), password.as_str()), ("iggy", "secret"));
        assert_eq!(context.as_deref(), Some("ctx"));
    }

    #[test]
    fn token_shape_decodes_second() {
        let body = LoginRegisterWithPatRequest {
            version_info: info(SERVER_PROTOCOL_VERSION),
            token: SecretString::from("tok-123"),
            client_context: None,
        }
        .to_bytes();
        let login = parse_register(&body).unwrap();
        assert_eq!(login.version().protocol_version, SERVER_PROTOCOL_VERSION);
        assert!(
            matches!(login, Login::Token { ref token, context: None, .. } if token == "tok-123")
        );
    }

    #[test]
    fn version_gate_and_errors() {
        assert!(is_protocol_compatible(pack_protocol_version(0, 11, 0)));
        assert!(is_protocol_compatible(pack_protocol_version(0, 11, 7)));
        assert!(!is_protocol_compatible(pack_protocol_version(0, 10, 9)));
        assert!(!is_protocol_compatible(pack_protocol_version(0, 12, 0)));
        assert!(!is_protocol_compatible(pack_protocol_version(1, 0, 0)));
        let old = password_body(pack_protocol_version(0, 10, 0), None);
        let error = parse_register(&old).unwrap_err();
        assert_eq!(error, LoginError::IncompatibleProtocol(10240));
        assert_eq!(
            error.rejection(),
            Rejection::Evict(EvictionReason::IncompatibleProtocol)
        );
        assert_eq!(
            parse_register(&[1, 2, 3]).unwrap_err().rejection(),
            Rejection::Evict(EvictionReason::MalformedLogin)
        );
        // Iggy's server ignores bytes after either shape; a body that fits neither is evicted.
        let mut trailing = password_body(SERVER_PROTOCOL_VERSION, None);
        trailing.extend_from_slice(&[0, 7, 7]);
        assert!(matches!(
            parse_register(&trailing),
            Ok(Login::Password { ref username, .. }) if username == "iggy"
        ));
        let cut = password_body(SERVER_PROTOCOL_VERSION, None);
        let error = parse_register(&cut[..cut.len() - 1]).unwrap_err();
        assert_eq!(error, LoginError::MalformedBody);
        assert_eq!(
            error.rejection(),
            Rejection::Evict(EvictionReason::MalformedLogin)
        );
    }
}
