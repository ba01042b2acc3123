//! Login back-off per peer address: after `auth.login_backoff_after_failures` wrong passwords
//! from one IP address, its logins are refused unchecked for a window that doubles with each
//! further failure, up to `auth.login_backoff_max_ms`, so a password cannot be guessed at wire
//! speed (and the refusals cost no argon2). A success forgets the address. The table is bounded:
//! when full, the entry whose last failure is oldest makes room.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Peer addresses remembered at once.
pub const PEERS_MAX: usize = 4096;
/// An address that has not failed for this long starts afresh.
const FORGET_AFTER: Duration = Duration::from_secs(15 * 60);
/// The first refusal window; each further failure doubles it.
const BACKOFF_BASE: Duration = Duration::from_millis(500);

#[derive(Debug, Clone, Copy)]
struct Peer {
    failures: u32,
    last_failure: Instant,
    refused_until: Option<Instant>,
}

pub struct LoginThrottle {
    failures_free: u32,
    backoff_max: Duration,
    peers: Mutex<HashMap<IpAddr, Peer>>,
}

impl LoginThrottle {
    /// `failures_free` = 0 turns the back-off off.
    pub fn new(failures_free: u32, backoff_max: Duration) -> LoginThrottle {
        LoginThrottle {
            failures_free,
            backoff_max,
            peers: Mutex::new(HashMap::new()),
        }
    }

    /// `Err(remaining)` while `ip`'s logins are refused.
    pub fn check(&self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        let peers = crate::session::shared::lock(&self.peers);
        match peers.get(&ip).and_then(|peer| peer.refused_until) {
            Some(until) if until > now => Err(until - now),
            _ => Ok(()),
        }
    }

    /// A wrong username or password from `ip`.
    pub fn failed(&self, ip: IpAddr, now: Instant) {
        if self.failures_free == 0 {
            return;
        }
        let mut peers = crate::session::shared::lock(&self.peers);
        if !peers.contains_key(&ip) && peers.len() >= PEERS_MAX {
            peers.retain(|_, peer| now.saturating_duration_since(peer.last_failure) < FORGET_AFTER);
            if peers.len() >= PEERS_MAX {
                if let Some(oldest) = peers
                    .iter()
                    .min_by_key(|(_, peer)| peer.last_failure)
                    .map(|(ip, _)| *ip)
                {
                    peers.remove(&oldest);
                }
            }
        }
        let peer = peers.entry(ip).or_insert(Peer {
            failures: 0,
            last_failure: now,
            refused_until: None,
        });
        if now.saturating_duration_since(peer.last_failure) >= FORGET_AFTER {
            peer.failures = 0;
        }
        peer.failures += 1;
        peer.last_failure = now;
        if peer.failures >= self.failures_free {
            let doublings = (peer.failures - self.failures_free).min(16);
            let window = BACKOFF_BASE
                .saturating_mul(1 << doublings)
                .min(self.backoff_max);
            peer.refused_until = Some(now + window);
        }
    }

    /// A successful login from `ip`: its failures are forgotten.
    pub fn succeeded(&self, ip: IpAddr) {
        crate::session::shared::lock(&self.peers).remove(&ip);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        crate::session::shared::lock(&self.peers).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    #[test]
    fn failures_back_off_per_address_and_a_success_forgets() {
        let throttle = LoginThrottle::new(3, Duration::from_secs(4));
        let t0 = Instant::now();
        for _ in 0..2 {
            throttle.failed(ip(1), t0);
        }
        assert!(throttle.check(ip(1), t0).is_ok(), "two failures are free");
        throttle.failed(ip(1), t0);
        assert_eq!(throttle.check(ip(1), t0), Err(BACKOFF_BASE));
        assert!(
            throttle.check(ip(2), t0).is_ok(),
            "another address is unaffected"
        );
        assert!(throttle.check(ip(1), t0 + BACKOFF_BASE).is_ok());
        throttle.failed(ip(1), t0 + BACKOFF_BASE);
        assert_eq!(
            throttle.check(ip(1), t0 + BACKOFF_BASE),
            Err(BACKOFF_BASE * 2),
            "the window doubles"
        );
        for _ in 0..20 {
            throttle.failed(ip(1), t0);
        }
        assert_eq!(
            throttle.check(ip(1), t0),
            Err(Duration::from_secs(4)),
            "bounded"
        );
        throttle.succeeded(ip(1));
        assert!(throttle.check(ip(1), t0).is_ok());
    }

    #[test]
    fn the_table_stays_bounded() {
        let throttle = LoginThrottle::new(1, Duration::from_secs(1));
        let t0 = Instant::now();
        for n in 0..PEERS_MAX as u32 + 10 {
            throttle.failed(
                IpAddr::from(n.to_be_bytes()),
                t0 + Duration::from_micros(n.into()),
            );
        }
        assert_eq!(throttle.len(), PEERS_MAX);
        let newest = IpAddr::from((PEERS_MAX as u32 + 9).to_be_bytes());
        assert!(
            throttle.check(newest, t0).is_err(),
            "the newest failure is kept"
        );
    }

    #[test]
    fn zero_free_failures_turns_it_off() {
        let throttle = LoginThrottle::new(0, Duration::from_secs(1));
        let t0 = Instant::now();
        for _ in 0..10 {
            throttle.failed(ip(1), t0);
        }
        assert!(throttle.check(ip(1), t0).is_ok());
    }
}
