//! Login sessions of the HTTP API: what a bearer credential stands for.
//!
//! A password or token login that the dataplane accepted becomes a session: the user id and the
//! credential that session's dataplane connections log in with. A JWT names its session (`sid`);
//! a personal access token presented as the bearer is its own session, keyed by its SHA-256.
//! Sessions live in this process's memory only — a password is never written to disk or put in
//! a token — so a restart of riptide-control ends them (clients log in again).
//!
//! Bounded: at most `http.sessions_max` sessions; a new one beyond that ends the oldest. A session
//! ends when its last token expires, at logout, and when the API changes the user's password,
//! deletes or deactivates the user (see `HttpState::end_user_sessions`).

use secrecy::{ExposeSecret as _, SecretString};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// What a session's dataplane connections log in with.
#[derive(Clone)]
pub enum Credential {
    Password {
        username: String,
        password: SecretString,
    },
    PersonalAccessToken(SecretString),
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::Password { username, .. } => write!(f, "Password({username}, ***)"),
            Credential::PersonalAccessToken(_) => write!(f, "PersonalAccessToken(***)"),
        }
    }
}

impl Credential {
    pub fn is_token(&self) -> bool {
        matches!(self, Credential::PersonalAccessToken(_))
    }
}

/// One login.
#[derive(Debug)]
pub struct Session {
    pub id: String,
    pub user_id: u32,
    credential: Mutex<Credential>,
    /// Seconds since the epoch after which the session is over (its latest token's expiry).
    expires_at_s: AtomicU64,
    /// Creation order, for ending the oldest at the limit.
    seq: u64,
    /// Set when the credential must be checked again by a fresh login before the next request
    /// (a token of the user was deleted).
    recheck: AtomicBool,
}

impl Session {
    pub fn credential(&self) -> Credential {
        lock(&self.credential).clone()
    }

    /// After the user changed the password through this session: its connections log in with the
    /// new one.
    pub fn set_password(&self, new_password: &str) {
        let mut credential = lock(&self.credential);
        if let Credential::Password { username, .. } = &*credential {
            *credential = Credential::Password {
                username: username.clone(),
                password: SecretString::from(new_password.to_string()),
            };
        }
    }

    /// After a rename of the user: its connections log in with the new name.
    pub fn set_username(&self, new_username: &str) {
        let mut credential = lock(&self.credential);
        if let Credential::Password { password, .. } = &*credential {
            *credential = Credential::Password {
                username: new_username.to_string(),
                password: SecretString::from(password.expose_secret().to_string()),
            };
        }
    }

    /// Whether the credential must be checked again (and clears the mark).
    pub fn take_recheck(&self) -> bool {
        self.recheck.swap(false, Ordering::Relaxed)
    }

    pub fn expires_at_s(&self) -> u64 {
        self.expires_at_s.load(Ordering::Relaxed)
    }

    /// A refreshed token extends the session to its expiry.
    pub fn extend_to(&self, expires_at_s: u64) {
        self.expires_at_s.fetch_max(expires_at_s, Ordering::Relaxed);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

#[derive(Default)]
struct Inner {
    by_id: HashMap<String, Arc<Session>>,
    by_seq: BTreeMap<u64, String>,
    next_seq: u64,
}

impl Inner {
    fn remove(&mut self, id: &str) -> Option<Arc<Session>> {
        let session = self.by_id.remove(id)?;
        self.by_seq.remove(&session.seq);
        Some(session)
    }
}

/// The session table.
pub struct Sessions {
    max: usize,
    inner: Mutex<Inner>,
}

impl Sessions {
    pub fn new(max: usize) -> Sessions {
        Sessions {
            max: max.max(1),
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Adds a session; returns the sessions ended to make room (the oldest).
    pub fn insert(
        &self,
        id: String,
        user_id: u32,
        credential: Credential,
        expires_at_s: u64,
    ) -> (Arc<Session>, Vec<Arc<Session>>) {
        let mut inner = lock(&self.inner);
        let mut ended: Vec<Arc<Session>> = inner.remove(&id).into_iter().collect();
        while inner.by_id.len() >= self.max {
            let Some((_, oldest)) = inner.by_seq.pop_first() else {
                break;
            };
            ended.extend(inner.by_id.remove(&oldest));
        }
        inner.next_seq += 1;
        let session = Arc::new(Session {
            id: id.clone(),
            user_id,
            credential: Mutex::new(credential),
            expires_at_s: AtomicU64::new(expires_at_s),
            seq: inner.next_seq,
            recheck: AtomicBool::new(false),
        });
        inner.by_seq.insert(session.seq, id.clone());
        inner.by_id.insert(id, session.clone());
        (session, ended)
    }

    /// The live session with this id (an expired one is ended here).
    pub fn get(&self, id: &str, now_s: u64) -> Option<Arc<Session>> {
        let mut inner = lock(&self.inner);
        let session = inner.by_id.get(id)?.clone();
        if session.expires_at_s() < now_s {
            inner.remove(id);
            return None;
        }
        Some(session)
    }

    pub fn remove(&self, id: &str) -> Option<Arc<Session>> {
        lock(&self.inner).remove(id)
    }

    /// Ends every session of a user but `keep`; returns how many ended.
    pub fn remove_user(&self, user_id: u32, keep: Option<&str>) -> usize {
        let mut inner = lock(&self.inner);
        let ids: Vec<String> = inner
            .by_id
            .values()
            .filter(|s| s.user_id == user_id && Some(s.id.as_str()) != keep)
            .map(|s| s.id.clone())
            .collect();
        for id in &ids {
            inner.remove(id);
        }
        ids.len()
    }

    /// After a rename: the user's password sessions log in with the new name.
    pub fn rename_user(&self, user_id: u32, username: &str) {
        for session in lock(&self.inner).by_id.values() {
            if session.user_id == user_id {
                session.set_username(username);
            }
        }
    }

    /// After one of the user's tokens was deleted: its token sessions are checked again by a fresh
    /// login before their next request (the deleted token's then ends).
    pub fn recheck_tokens(&self, user_id: u32) {
        for session in lock(&self.inner).by_id.values() {
            if session.user_id == user_id && session.credential().is_token() {
                session.recheck.store(true, Ordering::Relaxed);
            }
        }
    }

    pub fn has_user(&self, user_id: u32) -> bool {
        lock(&self.inner)
            .by_id
            .values()
            .any(|s| s.user_id == user_id)
    }

    /// Ends the expired sessions; returns the users that have none left.
    pub fn sweep(&self, now_s: u64) -> Vec<u32> {
        let mut inner = lock(&self.inner);
        let expired: Vec<Arc<Session>> = inner
            .by_id
            .values()
            .filter(|s| s.expires_at_s() < now_s)
            .cloned()
            .collect();
        for session in &expired {
            inner.remove(&session.id);
        }
        let mut users: Vec<u32> = expired
            .iter()
            .map(|s| s.user_id)
            .filter(|user| !inner.by_id.values().any(|s| s.user_id == *user))
            .collect();
        users.sort_unstable();
        users.dedup();
        users
    }

    pub fn len(&self) -> usize {
        lock(&self.inner).by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The session key of a personal access token presented as a bearer: its SHA-256, so the table
/// never holds the token under its own value.
pub fn token_session_id(token: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("pat:{hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn password(name: &str) -> Credential {
        Credential::Password {
            username: name.to_string(),
            password: SecretString::from("secret".to_string()),
        }
    }

    #[test]
    fn the_oldest_session_ends_at_the_limit() {
        let sessions = Sessions::new(2);
        sessions.insert("a".into(), 1, password("u"), 100);
        sessions.insert("b".into(), 2, password("v"), 100);
        let (_, ended) = sessions.insert("c".into(), 3, password("w"), 100);
        assert_eq!(ended.len(), 1);
        assert_eq!(ended[0].id, "a");
        assert!(sessions.get("a", 0).is_none());
        assert!(sessions.get("b", 0).is_some() && sessions.get("c", 0).is_some());
        assert_eq!(sessions.len(), 2);
    }

    #[test]
    fn expiry_refresh_and_sweep() {
        let sessions = Sessions::new(10);
        let (session, _) = sessions.insert("a".into(), 1, password("u"), 100);
        sessions.insert("b".into(), 2, password("v"), 50);
        assert!(sessions.get("a", 100).is_some());
        assert!(sessions.get("a", 101).is_none(), "expired");
        sessions.insert("a".into(), 1, password("u"), 100);
        let again = sessions.get("a", 0).unwrap();
        again.extend_to(200);
        again.extend_to(150);
        assert_eq!(again.expires_at_s(), 200);
        assert_eq!(sessions.sweep(120), vec![2]);
        assert!(sessions.get("a", 120).is_some());
        drop(session);
    }

    #[test]
    fn a_users_sessions_end_together_except_the_kept_one() {
        let sessions = Sessions::new(10);
        sessions.insert("a".into(), 1, password("u"), 100);
        sessions.insert("b".into(), 1, password("u"), 100);
        sessions.insert("c".into(), 2, password("v"), 100);
        assert_eq!(sessions.remove_user(1, Some("b")), 1);
        assert!(sessions.has_user(1));
        assert_eq!(sessions.remove_user(1, None), 1);
        assert!(!sessions.has_user(1) && sessions.has_user(2));
    }

    #[test]
    fn credentials_follow_password_and_name_changes_and_never_print() {
        let sessions = Sessions::new(10);
        let (session, _) = sessions.insert("a".into(), 1, password("u"), 100);
        session.set_password("new-secret");
        session.set_username("renamed");
        match session.credential() {
            Credential::Password { username, password } => {
                assert_eq!(username, "renamed");
                assert_eq!(password.expose_secret(), "new-secret");
            }
            other => panic!("{other:?}"),
        }
        assert!(!format!("{:?}", session.credential()).contains("secret"));
        let (token, _) = sessions.insert(
            "t".into(),
            1,
            Credential::PersonalAccessToken(SecretString::from("tok".to_string())),
            100,
        );
        sessions.rename_user(1, "again");
        sessions.recheck_tokens(1);
        assert!(token.take_recheck() && !token.take_recheck());
        assert!(!session.take_recheck(), "password sessions need no recheck");
        let id = token_session_id("iggypat-abc");
        assert!(id.starts_with("pat:") && !id.contains("abc"));
    }
}
