//! Access tokens of the HTTP API: HS256 JWTs with Iggy's claim set (`jti`, `sub` = user id,
//! `iss`, `aud`, `iat`, `nbf`, `exp`) plus `sid`, the login session the token belongs to.
//!
//! The signing secret is `http.jwt_secret`, or, when that is empty, a random secret generated once
//! and kept in `<data>/http/jwt_secret` with mode 0600 (a looser mode found there is tightened,
//! loudly). A token only proves that this API issued it for a user; the dataplane credential its
//! requests log in with is held by the session it names (see `sessions.rs`).

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use ring::rand::SecureRandom as _;
use serde::{Deserialize, Serialize};
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

/// Issuer and audience of the tokens.
pub const TOKEN_ISSUER: &str = "riptide";
/// Bytes of a generated signing secret (stored hex-encoded).
const GENERATED_SECRET_BYTES: usize = 48;
/// Mode of the secret file: readable by its owner only.
const SECRET_FILE_MODE: u32 = 0o600;

/// The claims of an access token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Claims {
    pub jti: String,
    pub sub: String,
    pub sid: String,
    pub iss: String,
    pub aud: String,
    pub iat: u64,
    pub nbf: u64,
    pub exp: u64,
}

/// Why the signing keys could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum JwtError {
    #[error("cannot read or write the JWT secret {path}: {source}")]
    SecretFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the JWT secret in {0} is too short (at least 32 bytes); delete it to generate a new one"
    )]
    ShortSecret(PathBuf),
    #[error("no randomness from the operating system")]
    Random,
    #[error("cannot sign a token: {0}")]
    Sign(String),
}

/// Signs and checks tokens.
pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    expiry_s: u64,
}

/// The file holding a generated secret.
pub fn secret_path(data_dir: &Path) -> PathBuf {
    data_dir.join("http").join("jwt_secret")
}

/// Random bytes, hex-encoded.
pub fn random_hex(bytes: usize) -> Result<String, JwtError> {
    let mut buffer = vec![0u8; bytes];
    ring::rand::SystemRandom::new()
        .fill(&mut buffer)
        .map_err(|_| JwtError::Random)?;
    Ok(buffer.iter().map(|b| format!("{b:02x}")).collect())
}

/// The configured secret, else the kept one, else a new one written with mode 0600.
fn load_secret(configured: &str, data_dir: &Path) -> Result<String, JwtError> {
    if !configured.is_empty() {
        return Ok(configured.to_string());
    }
    let path = secret_path(data_dir);
    let file_error = |source| JwtError::SecretFile {
        path: path.clone(),
        source,
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let mode = std::fs::metadata(&path)
                .map_err(file_error)?
                .permissions()
                .mode();
            if mode & 0o077 != 0 {
                tracing::warn!(
                    "{} was readable by others (mode {:o}); set to 0600",
                    path.display(),
                    mode & 0o777
                );
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(SECRET_FILE_MODE))
                    .map_err(file_error)?;
            }
            let secret = text.trim().to_string();
            if secret.len() < riptide_config::http::HTTP_JWT_SECRET_MIN_BYTES {
                return Err(JwtError::ShortSecret(path));
            }
            Ok(secret)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let secret = random_hex(GENERATED_SECRET_BYTES)?;
            write_secret(&path, &secret).map_err(file_error)?;
            tracing::info!("generated the HTTP API's JWT secret in {}", path.display());
            Ok(secret)
        }
        Err(e) => Err(file_error(e)),
    }
}

/// Writes the secret to a temporary file created with mode 0600, syncs it and renames it in
/// place, so a crash leaves either no secret or a whole one.
fn write_secret(path: &Path, secret: &str) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let temp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&temp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(SECRET_FILE_MODE)
        .open(&temp)?;
    file.write_all(secret.as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()?;
    std::fs::rename(&temp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

impl JwtKeys {
    /// Keys from `http.jwt_secret` or the kept secret.
    ///
    /// # Errors
    /// [`JwtError`] when the secret file cannot be read or written.
    pub fn load(config: &riptide_config::HttpConfig, data_dir: &Path) -> Result<JwtKeys, JwtError> {
        let secret = load_secret(&config.jwt_secret, data_dir)?;
        Ok(JwtKeys::new(
            secret.as_bytes(),
            config.jwt_access_token_expiry_s,
            config.jwt_clock_skew_s,
        ))
    }

    pub fn new(secret: &[u8], expiry_s: u64, clock_skew_s: u64) -> JwtKeys {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[TOKEN_ISSUER]);
        validation.set_audience(&[TOKEN_ISSUER]);
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        validation.leeway = clock_skew_s;
        validation.validate_nbf = true;
        JwtKeys {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            expiry_s,
        }
    }

    /// A token for `user_id` in session `sid`, valid from `now_s` for the configured lifetime;
    /// returns it with its expiry (seconds since the epoch).
    ///
    /// # Errors
    /// [`JwtError`] when no randomness is available for the token id.
    pub fn issue(&self, user_id: u32, sid: &str, now_s: u64) -> Result<(String, u64), JwtError> {
        let exp = now_s + self.expiry_s;
        let claims = Claims {
            jti: random_hex(16)?,
            sub: user_id.to_string(),
            sid: sid.to_string(),
            iss: TOKEN_ISSUER.to_string(),
            aud: TOKEN_ISSUER.to_string(),
            iat: now_s,
            nbf: now_s,
            exp,
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| JwtError::Sign(e.to_string()))?;
        Ok((token, exp))
    }

    /// The claims of a token this API signed that is valid now (within the clock skew); `None`
    /// for anything else: another signature or algorithm, expired, not yet valid, malformed.
    pub fn verify(&self, token: &str) -> Option<Claims> {
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .ok()
            .map(|data| data.claims)
    }
}

/// Whether a bearer credential looks like a JWT (three dot-separated parts) rather than a
/// personal access token.
pub fn looks_like_jwt(token: &str) -> bool {
    token.split('.').count() == 3
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now_s() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    #[test]
    fn a_token_verifies_with_its_key_only_and_until_it_expires() {
        let keys = JwtKeys::new(b"0123456789abcdef0123456789abcdef", 3600, 5);
        let (token, exp) = keys.issue(7, "s1", now_s()).unwrap();
        assert!(looks_like_jwt(&token));
        let claims = keys.verify(&token).expect("valid");
        assert_eq!(
            (claims.sub.as_str(), claims.sid.as_str(), claims.exp),
            ("7", "s1", exp)
        );
        let other = JwtKeys::new(b"fedcba9876543210fedcba9876543210", 3600, 5);
        assert!(other.verify(&token).is_none(), "another secret");
        let (old, _) = keys.issue(7, "s1", now_s() - 7200).unwrap();
        assert!(keys.verify(&old).is_none(), "expired");
        let (future, _) = keys.issue(7, "s1", now_s() + 600).unwrap();
        assert!(keys.verify(&future).is_none(), "not yet valid");
        assert!(keys.verify("a.b.c").is_none());
        let mut tampered = token.clone();
        tampered.pop();
        tampered.push(if token.ends_with('A') { 'B' } else { 'A' });
        assert!(keys.verify(&tampered).is_none(), "tampered signature");
    }

    #[test]
    fn an_unsigned_token_is_refused() {
        use base64::Engine as _;
        let keys = JwtKeys::new(b"0123456789abcdef0123456789abcdef", 3600, 5);
        let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let header = engine.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let now = now_s();
        let claims = format!(
            r#"{{"jti":"x","sub":"0","sid":"s","iss":"riptide","aud":"riptide","iat":{now},"nbf":{now},"exp":{}}}"#,
            now + 60
        );
        let token = format!("{header}.{}.", engine.encode(claims));
        assert!(keys.verify(&token).is_none());
    }

    #[test]
    fn the_generated_secret_is_kept_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_secret("", dir.path()).unwrap();
        let path = secret_path(dir.path());
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(load_secret("", dir.path()).unwrap(), first, "kept");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(load_secret("", dir.path()).unwrap(), first);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "tightened");
        let configured = "c".repeat(40);
        assert_eq!(load_secret(&configured, dir.path()).unwrap(), configured);
        std::fs::write(&path, "short").unwrap();
        assert!(matches!(
            load_secret("", dir.path()),
            Err(JwtError::ShortSecret(_))
        ));
    }
}
