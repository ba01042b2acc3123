//! Password and token hashing. Passwords are hashed with argon2id into a PHC string (salt
//! and parameters travel inside the string, so verification needs nothing else). Personal
//! access tokens are 256 random bits, so a fast unsalted SHA-256 is enough: a token cannot
//! be guessed, and the digest lets a login find its token by hash in O(1).

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use sha2::{Digest, Sha256};

use super::constants::TOKEN_RANDOM_BYTES;

/// Bytes of random salt per password hash (the PHC recommendation is at least 16).
const SALT_BYTES: usize = 16;

/// Why a secret could not be produced.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("the kernel's random source failed: {0}")]
    Random(getrandom::Error),
    #[error("password hashing failed: {0}")]
    Hash(argon2::password_hash::Error),
}

/// Hashes `password` with argon2id (default parameters, random salt) into a PHC string.
///
/// # Errors
/// [`SecretError::Random`] when no salt can be drawn, [`SecretError::Hash`] when argon2
/// refuses the input (it accepts every password of Iggy's 3..=100 bytes).
pub fn hash_password(password: &str) -> Result<String, SecretError> {
    let mut salt_bytes = [0u8; SALT_BYTES];
    getrandom::getrandom(&mut salt_bytes).map_err(SecretError::Random)?;
    let salt = SaltString::encode_b64(&salt_bytes).map_err(SecretError::Hash)?;
    let hash = Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map_err(SecretError::Hash)?;
    Ok(hash.to_string())
}

/// Whether `password` matches the PHC string `hash`. A malformed hash never matches.
pub fn verify_password(password: &str, hash: &str) -> bool {
    match PasswordHash::new(hash) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// The lowercase hex SHA-256 digest of `token`, as stored in the catalog.
pub fn hash_token(token: &str) -> String {
    to_hex(&Sha256::digest(token.as_bytes()))
}

/// A new personal access token: 256 random bits as 64 lowercase hex characters (fits the
/// protocol's one-byte token length).
///
/// # Errors
/// [`SecretError::Random`] when the kernel's random source fails.
pub fn generate_token() -> Result<String, SecretError> {
    let mut bytes = [0u8; TOKEN_RANDOM_BYTES];
    getrandom::getrandom(&mut bytes).map_err(SecretError::Random)?;
    Ok(to_hex(&bytes))
}

fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(DIGITS[usize::from(byte >> 4)] as char);
        out.push(DIGITS[usize::from(byte & 0x0f)] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_hash_is_argon2id_phc_and_verifies() {
        let hash = hash_password("secret-password").expect("hash");
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(verify_password("secret-password", &hash));
        assert!(!verify_password("secret-passwore", &hash));
        // Salted: the same password hashes differently each time.
        let again = hash_password("secret-password").expect("hash");
        assert_ne!(hash, again);
        assert!(verify_password("secret-password", &again));
    }

    #[test]
    fn malformed_hash_never_verifies() {
        assert!(!verify_password("x", ""));
        assert!(!verify_password("x", "$argon2id$garbage"));
        assert!(!verify_password("x", "not a phc string at all"));
    }

    #[test]
    fn token_hash_is_sha256_hex() {
        // SHA-256("abc"), FIPS 180-2 test vector.
        assert_eq!(
            hash_token("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn generated_tokens_are_random_hex() {
        let first = generate_token().expect("token");
        let second = generate_token().expect("token");
        assert_eq!(first.len(), TOKEN_RANDOM_BYTES * 2);
        assert!(first.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(first, second);
        assert_ne!(hash_token(&first), hash_token(&second));
    }
}
