//! Password and token hashing. Passwords are hashed with argon2id into a PHC string (salt
//! and parameters travel inside the string, so verification needs nothing else). Personal
//! access tokens are 256 random bits, so a fast unsalted SHA-256 is enough: a token cannot
//! be guessed, and the digest lets a login find its token by hash in O(1).

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

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

/// Users remembered at most by [`VerifiedLogins`].
pub const VERIFIED_LOGINS_MAX: usize = 4096;

/// Password logins that already passed argon2, remembered for a while, so a client that
/// reconnects with the same credentials does not spend another argon2 hash (tens of
/// milliseconds, on the network worker or lcore that serves every other connection it holds).
///
/// Per user it keeps one keyed SHA-256 over (PHC string, password) under a key drawn at start
/// and never stored: never the password. A wrong password never enters, and a changed password
/// (a new PHC string) no longer matches. Entries live `ttl`; a zero `ttl` turns the cache off.
/// The same trade-off as a credential cache in other brokers' realms: someone who can read the
/// process's memory can test guesses against an entry at SHA-256 speed.
pub struct VerifiedLogins {
    key: [u8; 32],
    ttl: Duration,
    entries: Mutex<HashMap<u32, (Instant, [u8; 32])>>,
}

impl VerifiedLogins {
    /// # Errors
    /// [`SecretError::Random`] when no key can be drawn.
    pub fn new(ttl: Duration) -> Result<Self, SecretError> {
        let mut key = [0u8; 32];
        getrandom::getrandom(&mut key).map_err(SecretError::Random)?;
        Ok(VerifiedLogins {
            key,
            ttl,
            entries: Mutex::new(HashMap::new()),
        })
    }

    /// Whether `password` is the password of user `user_id`, whose PHC string is `hash`:
    /// answered from the cache when the same user logged in with the same password within
    /// `ttl`, by argon2 otherwise.
    pub fn verify(&self, user_id: u32, password: &str, hash: &str) -> bool {
        if self.ttl.is_zero() {
            return verify_password(password, hash);
        }
        let digest = self.digest(password, hash);
        let remembered = self.entries().get(&user_id).is_some_and(|(at, known)| {
            at.elapsed() < self.ttl && equal_in_constant_time(known, &digest)
        });
        if remembered {
            return true;
        }
        // Outside the lock: the hash takes long.
        let verified = verify_password(password, hash);
        if verified {
            let mut entries = self.entries();
            if entries.len() >= VERIFIED_LOGINS_MAX {
                entries.retain(|_, (at, _)| at.elapsed() < self.ttl);
            }
            if entries.len() < VERIFIED_LOGINS_MAX || entries.contains_key(&user_id) {
                entries.insert(user_id, (Instant::now(), digest));
            }
        }
        verified
    }

    fn entries(&self) -> MutexGuard<'_, HashMap<u32, (Instant, [u8; 32])>> {
        // Entries are replaced whole, so a panic elsewhere cannot leave one half-written.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn digest(&self, password: &str, hash: &str) -> [u8; 32] {
        let mut hasher = Sha256::new();
        hasher.update(self.key);
        // Length-prefixed, so no (hash, password) pair reads as another.
        hasher.update((hash.len() as u64).to_le_bytes());
        hasher.update(hash.as_bytes());
        hasher.update(password.as_bytes());
        hasher.finalize().into()
    }
}

fn equal_in_constant_time(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
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
    fn a_verified_login_is_remembered_only_for_its_user_password_and_hash() {
        let hash = hash_password("secret-password").expect("hash");
        let logins = VerifiedLogins::new(Duration::from_secs(60)).expect("key");
        assert!(!logins.verify(1, "wrong-password", &hash));
        assert!(
            logins.entries().is_empty(),
            "a failed login is not remembered"
        );
        assert!(logins.verify(1, "secret-password", &hash));
        let remembered = logins.entries()[&1];
        assert!(logins.verify(1, "secret-password", &hash));
        assert_eq!(logins.entries()[&1], remembered, "answered from the cache");
        assert!(!logins.verify(1, "secret-passwore", &hash));
        // Another user with the same password, or a new hash (password changed), misses.
        assert!(!logins.entries().contains_key(&2));
        let changed = hash_password("new-password").expect("hash");
        assert!(!logins.verify(1, "secret-password", &changed));
        assert!(logins.verify(1, "new-password", &changed));
        assert!(!logins.verify(1, "secret-password", &changed));
    }

    #[test]
    fn an_expired_or_disabled_cache_hashes_again() {
        let hash = hash_password("secret-password").expect("hash");
        let off = VerifiedLogins::new(Duration::ZERO).expect("key");
        assert!(off.verify(1, "secret-password", &hash));
        assert!(off.entries().is_empty());
        let short = VerifiedLogins::new(Duration::from_millis(1)).expect("key");
        assert!(short.verify(1, "secret-password", &hash));
        let first = short.entries()[&1].0;
        std::thread::sleep(Duration::from_millis(5));
        assert!(short.verify(1, "secret-password", &hash));
        assert!(
            short.entries()[&1].0 > first,
            "verified again and re-remembered"
        );
        // A malformed hash never verifies, cached or not.
        assert!(!short.verify(2, "x", "$argon2id$garbage"));
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
