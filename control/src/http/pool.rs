//! Pooled dataplane connections, per user.
//!
//! Every HTTP request runs on a TCP connection to the dataplane logged in as the caller's user,
//! so the dataplane checks the permissions itself. Connections are reused across requests of the
//! same user (any of the user's sessions), within bounds:
//!
//! - at most `per_user_max` connections of one user are in use at once (more requests wait);
//!   a connection is only opened when none of the user's is idle, so a user never holds more;
//! - at most `total_max` connections in all; opening one beyond that first closes the longest idle
//!   connection of any user, else waits for one to come back;
//! - an idle connection is closed after `idle_timeout` ([`Pool::reap`]);
//! - a connection is returned only if its request finished with an answer from the dataplane
//!   ([`Lease::settle`]); a lost connection, a request cancelled mid-way (timeout) or a reply that
//!   could not be read closes it;
//! - [`Pool::invalidate_user`] (password changed, user deleted or deactivated, token deleted,
//!   last session logged out) closes the user's idle connections at once and the busy ones when
//!   they come back, so every later request logs in afresh with its session's credential;
//! - a connection opened before the dataplane (re)started (another supervisor start count,
//!   [`Connector::epoch`]) is closed instead of used.
//!
//! Generic over the [`Connector`] so the bookkeeping is tested without a dataplane.

use crate::http::sessions::Credential;
use iggy_common::IggyError;
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Opens logged-in connections to the dataplane.
pub trait Connector: Send + Sync + 'static {
    type Conn: Send + Sync + 'static;
    /// Connects and logs in; returns the connection and the user it is logged in as.
    fn open(
        &self,
        credential: &Credential,
    ) -> impl Future<Output = Result<(Self::Conn, u32), IggyError>> + Send;
    /// Changes whenever the dataplane process is (re)started.
    fn epoch(&self) -> u64;
}

/// The bounds of the pool.
#[derive(Debug, Clone, Copy)]
pub struct PoolLimits {
    pub per_user_max: usize,
    pub total_max: usize,
    pub idle_timeout: Duration,
}

struct Idle<C> {
    conn: C,
    epoch: u64,
    since: Instant,
    total: OwnedSemaphorePermit,
}

struct UserPool<C> {
    /// Permits for connections in use.
    slots: Arc<Semaphore>,
    generation: u64,
    idle: Vec<Idle<C>>,
}

struct Inner<C> {
    users: HashMap<u32, UserPool<C>>,
    next_generation: u64,
}

/// How many connections are open, for status pages and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct PoolCounts {
    pub idle: usize,
    pub in_use: usize,
    pub users: usize,
}

pub struct Pool<K: Connector> {
    connector: K,
    limits: PoolLimits,
    total: Arc<Semaphore>,
    inner: Mutex<Inner<K::Conn>>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// A connection in use by one request; goes back to the pool when dropped, if settled.
pub struct Lease<K: Connector> {
    pool: Arc<Pool<K>>,
    user_id: u32,
    generation: u64,
    epoch: u64,
    conn: Option<K::Conn>,
    total: Option<OwnedSemaphorePermit>,
    slot: Option<OwnedSemaphorePermit>,
    reusable: bool,
}

impl<K: Connector> Pool<K> {
    pub fn new(connector: K, limits: PoolLimits) -> Arc<Pool<K>> {
        Arc::new(Pool {
            connector,
            total: Arc::new(Semaphore::new(limits.total_max.max(1))),
            limits,
            inner: Mutex::new(Inner {
                users: HashMap::new(),
                next_generation: 1,
            }),
        })
    }

    pub fn connector(&self) -> &K {
        &self.connector
    }

    fn user_entry(
        inner: &mut Inner<K::Conn>,
        user_id: u32,
        per_user_max: usize,
    ) -> &mut UserPool<K::Conn> {
        let generation = inner.next_generation;
        let entry = inner.users.entry(user_id).or_insert_with(|| UserPool {
            slots: Arc::new(Semaphore::new(per_user_max.max(1))),
            generation,
            idle: Vec::new(),
        });
        if entry.generation == generation {
            inner.next_generation += 1;
        }
        entry
    }

    /// A connection of `user_id`: an idle one, else a new one logged in with `credential`.
    ///
    /// # Errors
    /// The login's or the connection's [`IggyError`] (a refused credential, an unreachable
    /// dataplane), or `Unauthenticated` when the credential belongs to another user.
    pub async fn lease(
        self: &Arc<Self>,
        user_id: u32,
        credential: &Credential,
    ) -> Result<Lease<K>, IggyError> {
        let slots = {
            let mut inner = lock(&self.inner);
            Self::user_entry(&mut inner, user_id, self.limits.per_user_max)
                .slots
                .clone()
        };
        let slot = slots
            .acquire_owned()
            .await
            .map_err(|_| IggyError::ClientShutdown)?;
        let epoch = self.connector.epoch();
        let (generation, reused) = {
            let mut inner = lock(&self.inner);
            let user = Self::user_entry(&mut inner, user_id, self.limits.per_user_max);
            // Connections from before a dataplane restart are dead: close them.
            user.idle.retain(|idle| idle.epoch == epoch);
            (user.generation, user.idle.pop())
        };
        if let Some(idle) = reused {
            return Ok(self.lease_of(user_id, generation, idle.epoch, idle.conn, idle.total, slot));
        }
        let total = self.acquire_total().await?;
        let (conn, logged_in_as) = self.connector.open(credential).await?;
        if logged_in_as != user_id {
            return Err(IggyError::Unauthenticated);
        }
        Ok(self.lease_of(user_id, generation, epoch, conn, total, slot))
    }

    fn lease_of(
        self: &Arc<Self>,
        user_id: u32,
        generation: u64,
        epoch: u64,
        conn: K::Conn,
        total: OwnedSemaphorePermit,
        slot: OwnedSemaphorePermit,
    ) -> Lease<K> {
        Lease {
            pool: self.clone(),
            user_id,
            generation,
            epoch,
            conn: Some(conn),
            total: Some(total),
            slot: Some(slot),
            reusable: false,
        }
    }

    /// Logs in with a credential whose user is not known yet (a login request); the connection is
    /// kept for that user if it has room. Returns the user id.
    ///
    /// # Errors
    /// The login's or the connection's [`IggyError`].
    pub async fn login(self: &Arc<Self>, credential: &Credential) -> Result<u32, IggyError> {
        let total = self.acquire_total().await?;
        let epoch = self.connector.epoch();
        let (conn, user_id) = self.connector.open(credential).await?;
        let mut inner = lock(&self.inner);
        let per_user_max = self.limits.per_user_max;
        let user = Self::user_entry(&mut inner, user_id, per_user_max);
        let in_use = per_user_max - user.slots.available_permits().min(per_user_max);
        if in_use + user.idle.len() < per_user_max {
            user.idle.push(Idle {
                conn,
                epoch,
                since: Instant::now(),
                total,
            });
        }
        Ok(user_id)
    }

    /// A permit for one more open connection: free, or freed by closing the longest idle
    /// connection of any user, or (all in use) the next one to close.
    async fn acquire_total(&self) -> Result<OwnedSemaphorePermit, IggyError> {
        if let Ok(permit) = self.total.clone().try_acquire_owned() {
            return Ok(permit);
        }
        let evicted = {
            let mut inner = lock(&self.inner);
            let oldest = inner
                .users
                .iter()
                .flat_map(|(user, pool)| {
                    pool.idle
                        .iter()
                        .enumerate()
                        .map(move |(i, idle)| (idle.since, *user, i))
                })
                .min();
            oldest.and_then(|(_, user, index)| {
                inner
                    .users
                    .get_mut(&user)
                    .map(|pool| pool.idle.swap_remove(index))
            })
        };
        // Closed outside the lock; its permit is released with it.
        if let Some(idle) = evicted {
            drop(idle.conn);
            return Ok(idle.total);
        }
        self.total
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| IggyError::ClientShutdown)
    }

    /// Returns a settled connection to its user's idle list, unless the user's connections were
    /// invalidated or the dataplane restarted meanwhile.
    fn put_back(&self, lease: &mut Lease<K>) {
        let (Some(conn), Some(total)) = (lease.conn.take(), lease.total.take()) else {
            return;
        };
        let current_epoch = self.connector.epoch();
        let mut inner = lock(&self.inner);
        match inner.users.get_mut(&lease.user_id) {
            Some(user) if user.generation == lease.generation && lease.epoch == current_epoch => {
                user.idle.push(Idle {
                    conn,
                    epoch: lease.epoch,
                    since: Instant::now(),
                    total,
                });
            }
            _ => {
                drop(inner);
                drop(conn);
            }
        }
    }

    /// Closes a user's idle connections now and its busy ones when they come back.
    pub fn invalidate_user(&self, user_id: u32) {
        let closed = {
            let mut inner = lock(&self.inner);
            let generation = inner.next_generation;
            inner.next_generation += 1;
            match inner.users.get_mut(&user_id) {
                Some(user) => {
                    user.generation = generation;
                    std::mem::take(&mut user.idle)
                }
                None => Vec::new(),
            }
        };
        drop(closed);
    }

    /// Closes connections idle for longer than the idle timeout, and forgets users with nothing
    /// open. Returns how many were closed.
    pub fn reap(&self, now: Instant) -> usize {
        let timeout = self.limits.idle_timeout;
        let per_user_max = self.limits.per_user_max;
        let mut closed = Vec::new();
        {
            let mut inner = lock(&self.inner);
            for user in inner.users.values_mut() {
                let (stale, fresh): (Vec<_>, Vec<_>) = std::mem::take(&mut user.idle)
                    .into_iter()
                    .partition(|idle| now.duration_since(idle.since) >= timeout);
                user.idle = fresh;
                closed.extend(stale);
            }
            // A user with nothing idle and nothing in use (no permit taken) can go; a lease
            // taken from a forgotten entry comes back to a new generation and is closed.
            inner.users.retain(|_, user| {
                !user.idle.is_empty() || user.slots.available_permits() < per_user_max
            });
        }
        let count = closed.len();
        drop(closed);
        count
    }

    pub fn counts(&self) -> PoolCounts {
        let inner = lock(&self.inner);
        let idle = inner.users.values().map(|u| u.idle.len()).sum();
        let in_use = inner
            .users
            .values()
            .map(|u| {
                self.limits.per_user_max - u.slots.available_permits().min(self.limits.per_user_max)
            })
            .sum();
        PoolCounts {
            idle,
            in_use,
            users: inner.users.len(),
        }
    }
}

impl<K: Connector> Lease<K> {
    /// The connection, for one request. Until [`Lease::settle`] records its answer the
    /// connection counts as mid-request: dropped then (a cancelled request), it is closed.
    pub fn conn(&mut self) -> &K::Conn {
        self.reusable = false;
        self.conn
            .as_ref()
            .expect("a lease holds its connection until dropped")
    }

    pub fn user_id(&self) -> u32 {
        self.user_id
    }

    /// Records how the request ended: an answer from the dataplane (success or its error code)
    /// keeps the connection for reuse; a lost or unreadable reply closes it.
    pub fn settle<T>(&mut self, result: Result<T, IggyError>) -> Result<T, IggyError> {
        self.reusable = match &result {
            Ok(_) => true,
            // The codes an eviction turns into: the dataplane closed the connection.
            Err(error) => {
                !crate::http::error::breaks_connection(error)
                    && !matches!(
                        error,
                        IggyError::Unauthenticated
                            | IggyError::InvalidCredentials
                            | IggyError::InvalidPersonalAccessToken
                            | IggyError::IncompatibleProtocolVersion(..)
                    )
            }
        };
        result
    }
}

impl<K: Connector> Drop for Lease<K> {
    fn drop(&mut self) {
        if self.reusable {
            let pool = self.pool.clone();
            pool.put_back(self);
        }
        // The connection (if still here) closes now; the slot permit is released last, after the
        // connection is idle again, so a waiting request finds it.
        self.conn.take();
        self.total.take();
        self.slot.take();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::SecretString;
    use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

    /// Counts opens and closes; the user id comes from the username ("u7" is user 7).
    #[derive(Default)]
    struct Fake {
        opened: Arc<AtomicUsize>,
        closed: Arc<AtomicUsize>,
        epoch: AtomicU64,
    }

    struct FakeConn(Arc<AtomicUsize>);
    impl Drop for FakeConn {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    impl Connector for Fake {
        type Conn = FakeConn;
        async fn open(&self, credential: &Credential) -> Result<(FakeConn, u32), IggyError> {
            let Credential::Password { username, .. } = credential else {
                return Err(IggyError::InvalidPersonalAccessToken);
            };
            if username == "bad" {
                return Err(IggyError::InvalidCredentials);
            }
            self.opened.fetch_add(1, Ordering::SeqCst);
            let user = username.trim_start_matches('u').parse().unwrap();
            Ok((FakeConn(self.closed.clone()), user))
        }
        fn epoch(&self) -> u64 {
            self.epoch.load(Ordering::SeqCst)
        }
    }

    fn user(n: u32) -> Credential {
        Credential::Password {
            username: format!("u{n}"),
            password: SecretString::from("p".to_string()),
        }
    }

    fn done(mut lease: Lease<Fake>) {
        let _ = lease.settle(Ok::<(), IggyError>(()));
    }

    fn fail(mut lease: Lease<Fake>, error: IggyError) {
        let _ = lease.settle(Err::<(), _>(error));
    }

    fn pool(per_user_max: usize, total_max: usize) -> Arc<Pool<Fake>> {
        Pool::new(
            Fake::default(),
            PoolLimits {
                per_user_max,
                total_max,
                idle_timeout: Duration::from_secs(60),
            },
        )
    }

    fn opened(pool: &Pool<Fake>) -> usize {
        pool.connector.opened.load(Ordering::SeqCst)
    }

    fn closed(pool: &Pool<Fake>) -> usize {
        pool.connector.closed.load(Ordering::SeqCst)
    }

    #[tokio::test]
    async fn a_settled_connection_is_reused_an_unsettled_one_closed() {
        let pool = pool(4, 16);
        let lease = pool.lease(1, &user(1)).await.unwrap();
        done(lease);
        let lease = pool.lease(1, &user(1)).await.unwrap();
        assert_eq!(opened(&pool), 1, "reused");
        drop(lease); // never settled: a cancelled request
        assert_eq!(closed(&pool), 1);
        let lease = pool.lease(1, &user(1)).await.unwrap();
        fail(lease, IggyError::Disconnected);
        assert_eq!(closed(&pool), 2, "a lost connection is closed");
        let lease = pool.lease(1, &user(1)).await.unwrap();
        fail(lease, IggyError::Unauthorized);
        assert_eq!(
            pool.counts(),
            PoolCounts {
                idle: 1,
                in_use: 0,
                users: 1
            }
        );
    }

    #[tokio::test]
    async fn a_user_never_holds_more_than_its_share() {
        let pool = pool(2, 16);
        let a = pool.lease(1, &user(1)).await.unwrap();
        let b = pool.lease(1, &user(1)).await.unwrap();
        let waiting = tokio::spawn({
            let pool = pool.clone();
            async move { pool.lease(1, &user(1)).await.map(done) }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "a third request waits");
        done(a);
        waiting.await.unwrap().unwrap();
        assert_eq!(opened(&pool), 2, "the waiter took the returned connection");
        drop(b);
        assert_eq!(pool.counts().in_use, 0);
    }

    #[tokio::test]
    async fn the_total_bound_closes_the_longest_idle_connection_of_another_user() {
        let pool = pool(4, 2);
        for n in [1, 2] {
            let lease = pool.lease(n, &user(n)).await.unwrap();
            done(lease);
        }
        let lease = pool.lease(3, &user(3)).await.unwrap();
        assert_eq!(closed(&pool), 1, "user 1's idle connection made room");
        done(lease);
        assert_eq!(pool.counts().idle, 2);
    }

    #[tokio::test]
    async fn invalidation_and_restart_close_connections() {
        let pool = pool(4, 16);
        let idle = pool.lease(1, &user(1)).await.unwrap();
        let busy = pool.lease(1, &user(1)).await.unwrap();
        done(idle);
        pool.invalidate_user(1);
        assert_eq!(closed(&pool), 1, "idle closed at once");
        done(busy);
        assert_eq!(closed(&pool), 2, "busy closed on return");
        let lease = pool.lease(1, &user(1)).await.unwrap();
        done(lease);
        pool.connector.epoch.store(1, Ordering::SeqCst);
        let _lease = pool.lease(1, &user(1)).await.unwrap();
        assert_eq!(
            closed(&pool),
            3,
            "a connection from before the restart is closed"
        );
        assert_eq!(opened(&pool), 4);
    }

    #[tokio::test]
    async fn idle_connections_are_reaped_and_logins_join_the_pool() {
        let pool = pool(4, 16);
        assert_eq!(pool.login(&user(5)).await.unwrap(), 5);
        assert!(matches!(pool.login(&user(0).clone()).await, Ok(0)));
        assert_eq!(
            pool.login(&Credential::Password {
                username: "bad".into(),
                password: SecretString::from("x".to_string())
            })
            .await,
            Err(IggyError::InvalidCredentials)
        );
        let lease = pool.lease(5, &user(5)).await.unwrap();
        assert_eq!(
            opened(&pool),
            2,
            "the login's connection served the request"
        );
        done(lease);
        assert_eq!(pool.reap(Instant::now()), 0);
        assert_eq!(pool.reap(Instant::now() + Duration::from_secs(61)), 2);
        assert_eq!(
            pool.counts(),
            PoolCounts {
                idle: 0,
                in_use: 0,
                users: 0
            }
        );
        let wrong = pool.lease(6, &user(5)).await;
        assert!(matches!(wrong, Err(IggyError::Unauthenticated)));
    }
}
