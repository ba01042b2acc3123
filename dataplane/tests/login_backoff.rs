//! Login back-off: wrong passwords from one peer address make its next logins wait (refused
//! unchecked for a bounded window), another address is unaffected, and both are counted.

mod common;

use anyhow::ensure;
use common::raw::{RawConnection, PROTOCOL_VERSION_0_11_0};
use common::{bounded, Server, ROOT_PASSWORD, ROOT_USERNAME};
use std::net::IpAddr;
use std::time::{Duration, Instant};

const FAILURES_BEFORE_BACKOFF: u32 = 3;
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// One login on a fresh connection from `local`; whether it succeeded.
async fn login(server: &Server, local: IpAddr, password: &str) -> anyhow::Result<bool> {
    let mut connection = RawConnection::connect_from(local, server.address()).await?;
    let frame = connection
        .register(PROTOCOL_VERSION_0_11_0, ROOT_USERNAME, password)
        .await;
    Ok(
        matches!(frame, Ok(frame) if frame.is_reply() && frame.status() == 0 && connection.session != 0),
    )
}

fn worker_counter(server: &Server, key: &str) -> u64 {
    let path = server.data_path().join("runtime").join("stats.json");
    std::fs::read_to_string(path)
        .ok()
        .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
        .and_then(|stats| {
            stats["workers"]
                .as_array()
                .map(|workers| workers.iter().filter_map(|w| w[key].as_u64()).sum())
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_back_off_per_peer_address_for_a_bounded_time() {
    let server = Server::start_with_env(&[
        (
            "RIPTIDE_AUTH_LOGIN_BACKOFF_AFTER_FAILURES",
            &FAILURES_BEFORE_BACKOFF.to_string(),
        ),
        (
            "RIPTIDE_AUTH_LOGIN_BACKOFF_MAX_MS",
            &BACKOFF_MAX.as_millis().to_string(),
        ),
    ])
    .expect("server");
    let attacker: IpAddr = "127.0.0.1".parse().unwrap();
    let neighbour: IpAddr = "127.0.0.2".parse().unwrap();
    bounded(Duration::from_secs(60), async {
        ensure!(
            login(&server, attacker, ROOT_PASSWORD).await?,
            "first login"
        );
        for attempt in 0..FAILURES_BEFORE_BACKOFF {
            ensure!(
                !login(&server, attacker, "wrong-password").await?,
                "wrong password {attempt} accepted"
            );
        }
        ensure!(
            !login(&server, attacker, ROOT_PASSWORD).await?,
            "the right password was checked while the address backs off"
        );
        ensure!(
            login(&server, neighbour, ROOT_PASSWORD).await?,
            "another peer address was refused"
        );
        // The window is bounded: the right password gets through within it (and a margin).
        let deadline = Instant::now() + BACKOFF_MAX + Duration::from_secs(3);
        loop {
            if login(&server, attacker, ROOT_PASSWORD).await? {
                break;
            }
            ensure!(
                Instant::now() < deadline,
                "still refused after {BACKOFF_MAX:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while worker_counter(&server, "logins_throttled") < 1
            || worker_counter(&server, "logins_failed") < u64::from(FAILURES_BEFORE_BACKOFF)
        {
            ensure!(
                Instant::now() < deadline,
                "counters: throttled {}, failed {}",
                worker_counter(&server, "logins_throttled"),
                worker_counter(&server, "logins_failed")
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    })
    .await
    .expect("login back-off");
    server.finish().expect("server stops cleanly");
}
