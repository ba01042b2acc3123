//! TLS on the binary protocol (kernel mode): the official `iggy` 0.11 SDK with TLS runs the core
//! conformance scenarios; kTLS follows what this kernel offers; bad input at every stage of a
//! handshake gets a clean close while a witness client keeps being served; mutual TLS refuses
//! clients without the right certificate; certificates reload without a restart.

mod common;

use anyhow::{bail, ensure, Context};
use common::pki::{tls_section, CertFiles, TestCa};
use common::raw::{self, code, command, operation, RequestHeader, HEADER_SIZE_BYTES};
use common::{bounded, scenarios, ClientTls, Endpoint, SdkResult, Server};
use iggy::prelude::*;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

const SUITE_TIMEOUT: Duration = Duration::from_secs(120);
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// A CA, a server certificate it signed, and a riptide.toml serving it.
struct Pki {
    _dir: tempfile::TempDir,
    ca: TestCa,
    server: CertFiles,
}

fn pki() -> anyhow::Result<Pki> {
    let dir = tempfile::tempdir()?;
    let ca = TestCa::new(dir.path(), "main")?;
    let server = ca.server("server")?;
    Ok(Pki {
        _dir: dir,
        ca,
        server,
    })
}

fn tls_endpoint(server: &Server, ca_file: &Path) -> Endpoint {
    Endpoint {
        address: server.address(),
        tls: Some(ClientTls::leak("localhost", ca_file)),
    }
}

/// Whether this kernel attaches the TLS upper-layer protocol (what the server's probe asks).
fn kernel_has_ktls() -> bool {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let _client = TcpStream::connect(listener.local_addr().expect("address")).expect("connect");
    let (server, _) = listener.accept().expect("accept");
    riptide_dataplane::net::ktls::attach_ulp(&server).is_ok()
}

async fn core_scenarios(endpoint: &Endpoint) -> anyhow::Result<()> {
    scenarios::ping_login_by_password_and_logout(endpoint).await?;
    scenarios::send_messages_with_every_partitioning_confirms_offsets(endpoint).await?;
    scenarios::poll_with_every_strategy_and_auto_commit(endpoint).await?;
    scenarios::consumer_offsets_store_get_delete(endpoint).await?;
    scenarios::consumer_group_rebalances_on_join_leave_and_disconnect(endpoint).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sdk_over_tls_runs_the_core_scenarios_with_ktls_auto_and_off() {
    let pki = pki().expect("certificates");
    for ktls in ["auto", "off"] {
        let config = tls_section(&pki.server, None, ktls);
        let mut server = Server::start_with_config(Some(&config), &[]).expect("server");
        let endpoint = tls_endpoint(&server, &pki.ca.ca_file);
        bounded(SUITE_TIMEOUT, async {
            core_scenarios(&endpoint).await?;
            // Reconnect: a restart on the same port, and the client carries on over TLS.
            let client = endpoint.client().await?;
            client.ping().await.sdk("ping before restart")?;
            server.restart()?;
            let deadline = Instant::now() + IO_TIMEOUT;
            while client.get_me().await.is_err() {
                ensure!(
                    Instant::now() < deadline,
                    "the client did not reconnect over TLS"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let log = server.log();
            let fallback_lines = log.matches("kTLS unavailable").count();
            match (ktls, kernel_has_ktls()) {
                // Two starts, one line each.
                ("auto", false) => ensure!(
                    fallback_lines == 2 && log.contains("CONFIG_TLS"),
                    "ktls = auto on a kernel without kTLS: expected one fallback line per start \
                     naming CONFIG_TLS, found {fallback_lines}"
                ),
                _ => ensure!(
                    fallback_lines == 0,
                    "ktls = {ktls}: no fallback line expected"
                ),
            }
            Ok(())
        })
        .await
        .unwrap_or_else(|e| panic!("ktls = {ktls}: {e:#}"));
        server.finish().expect("server stops cleanly");
    }
}

/// Runs the dataplane with `config` and returns its exit code and stderr (a start that fails).
fn failed_start(config: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().expect("data directory");
    let config_path = dir.path().join("riptide.toml");
    std::fs::write(&config_path, config).expect("riptide.toml");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_riptide-dataplane"))
        .arg("--config")
        .arg(&config_path)
        .env("IGGY_SYSTEM_PATH", dir.path())
        .env("IGGY_TCP_ADDRESS", "127.0.0.1:0")
        .output()
        .expect("run riptide-dataplane");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn ktls_on_starts_only_on_a_kernel_that_offers_it() {
    let pki = pki().expect("certificates");
    let config = tls_section(&pki.server, None, "on");
    if kernel_has_ktls() {
        let server = Server::start_with_config(Some(&config), &[]).expect("ktls = on starts");
        let endpoint = tls_endpoint(&server, &pki.ca.ca_file);
        tokio::runtime::Runtime::new()
            .expect("runtime")
            .block_on(bounded(SUITE_TIMEOUT, core_scenarios(&endpoint)))
            .expect("core scenarios with kTLS");
        server.finish().expect("server stops cleanly");
    } else {
        let (code, stderr) = failed_start(&config);
        assert_eq!(code, Some(78), "EX_CONFIG expected; stderr: {stderr}");
        assert!(
            stderr.contains("tls.ktls") && stderr.contains("CONFIG_TLS"),
            "the error names tls.ktls and why: {stderr}"
        );
    }
}

#[test]
fn bad_certificate_files_refuse_the_start_naming_the_key() {
    let pki = pki().expect("certificates");
    let expired = pki
        .ca
        .expired_server("expired")
        .expect("expired certificate");
    let (code, stderr) = failed_start(&tls_section(&expired, None, "off"));
    assert_eq!(code, Some(78), "stderr: {stderr}");
    assert!(
        stderr.contains("tls.cert_file") && stderr.contains("expired"),
        "an expired certificate names tls.cert_file: {stderr}"
    );

    let missing = CertFiles {
        cert_file: pki.ca.dir.join("no-such-cert.pem"),
        key_file: pki.server.key_file.clone(),
    };
    let (code, stderr) = failed_start(&tls_section(&missing, None, "off"));
    assert_eq!(code, Some(78), "stderr: {stderr}");
    assert!(stderr.contains("tls.cert_file"), "unreadable: {stderr}");

    let foreign_key = CertFiles {
        cert_file: pki.server.cert_file.clone(),
        key_file: expired.key_file.clone(),
    };
    let (code, stderr) = failed_start(&tls_section(&foreign_key, None, "off"));
    assert_eq!(code, Some(78), "stderr: {stderr}");
    assert!(stderr.contains("tls.key_file"), "a foreign key: {stderr}");

    let (code, stderr) = failed_start("[tls]\nenabled = true\n");
    assert_eq!(code, Some(78), "stderr: {stderr}");
    assert!(stderr.contains("tls.cert_file"), "no files: {stderr}");
}

// --- raw TLS clients ---------------------------------------------------------------------------

fn client_config(ca_file: &Path, identity: Option<&CertFiles>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for certificate in CertificateDer::pem_file_iter(ca_file).expect("CA file") {
        roots.add(certificate.expect("CA PEM")).expect("CA");
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .expect("TLS 1.3")
    .with_root_certificates(roots);
    let config = match identity {
        Some(files) => {
            let chain = CertificateDer::pem_file_iter(&files.cert_file)
                .expect("client cert")
                .collect::<Result<Vec<_>, _>>()
                .expect("client cert PEM");
            let key = PrivateKeyDer::from_pem_file(&files.key_file).expect("client key");
            builder
                .with_client_auth_cert(chain, key)
                .expect("client identity")
        }
        None => builder.with_no_client_auth(),
    };
    Arc::new(config)
}

fn connect_tcp(address: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(address).expect("connect");
    stream.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    stream.set_nodelay(true).expect("nodelay");
    stream
}

type TlsStream = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

fn connect_tls(address: SocketAddr, config: Arc<rustls::ClientConfig>) -> TlsStream {
    let name = ServerName::try_from("localhost").expect("name");
    let connection = rustls::ClientConnection::new(config, name).expect("client connection");
    rustls::StreamOwned::new(connection, connect_tcp(address))
}

/// A ping frame as the SDK would send it (no login needed).
fn ping_frame() -> Vec<u8> {
    RequestHeader {
        command: command::REQUEST,
        client: 0x5449_4c53,
        request: 1,
        operation: operation::NON_REPLICATED,
        session: 0,
        code: code::PING,
        request_checksum: 0,
        size_override: None,
    }
    .emit(&[])
}

/// Sends a ping and reads the reply.
fn ping(stream: &mut impl ReadWrite) -> anyhow::Result<()> {
    stream.write_all(&ping_frame()).context("write ping")?;
    stream.flush().context("flush")?;
    let mut header = vec![0u8; HEADER_SIZE_BYTES];
    stream.read_exact(&mut header).context("read reply")?;
    let size = raw::u32_at(&header, 48) as usize;
    let mut body = vec![0u8; size.saturating_sub(HEADER_SIZE_BYTES)];
    stream.read_exact(&mut body).context("read reply body")?;
    ensure!(
        header[60] == command::REPLY,
        "not a reply: command {}",
        header[60]
    );
    Ok(())
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

/// Reads until the server closes: Ok when it does (EOF, a reset, or a TLS alert), an error when
/// it sends application data or stays silent.
fn expect_closed(stream: &mut impl Read, what: &str) -> anyhow::Result<()> {
    let mut buffer = [0u8; 4096];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => return Ok(()),
            Ok(_) => continue,
            Err(error)
                if matches!(
                    error.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                bail!("{what}: the server kept the connection open for {IO_TIMEOUT:?}")
            }
            Err(_) => return Ok(()),
        }
    }
}

/// The sum of one worker counter over every worker in `runtime/stats.json`, once it reaches
/// `at_least` (the file is rewritten every 500 ms).
fn wait_for_counter(server: &Server, key: &str, at_least: u64) -> anyhow::Result<u64> {
    let path = server.data_path().join("runtime").join("stats.json");
    let deadline = Instant::now() + IO_TIMEOUT;
    loop {
        let sum = std::fs::read_to_string(&path)
            .ok()
            .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
            .map(|stats| {
                stats["workers"]
                    .as_array()
                    .map(|workers| workers.iter().filter_map(|w| w[key].as_u64()).sum())
                    .unwrap_or(0)
            })
            .unwrap_or(0);
        if sum >= at_least {
            return Ok(sum);
        }
        ensure!(
            Instant::now() < deadline,
            "{key} stayed at {sum} (< {at_least}) in stats.json"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_on_the_tls_listener_gets_a_clean_close_and_a_witness_is_served() {
    let pki = pki().expect("certificates");
    let config = tls_section(&pki.server, None, "auto");
    let mut server = Server::start_with_config(Some(&config), &[]).expect("server");
    let endpoint = tls_endpoint(&server, &pki.ca.ca_file);
    let address = server.address();
    let ca_file = pki.ca.ca_file.clone();
    bounded(SUITE_TIMEOUT, async {
        let witness = endpoint.client().await?;
        let (s, t) = scenarios::stream_and_topic(&witness, "witness", "t", 1).await?;
        let one = Partitioning::partition_id(0);
        scenarios::send_to(&witness, s, t, &one, "w1", 1).await?;

        // A plaintext Iggy client: closed at its first bytes, counted.
        let task = tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
            let mut plain = connect_tcp(address);
            plain.write_all(&ping_frame())?;
            expect_closed(&mut plain, "plaintext client")
        });
        task.await??;
        wait_for_counter(&server, "tls_plaintext_refused", 1)?;
        scenarios::send_to(&witness, s, t, &one, "w2", 1).await?;

        let ca = ca_file.clone();
        tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
            // A truncated handshake: half a ClientHello, then the client goes away.
            let mut connection = rustls::ClientConnection::new(
                client_config(&ca, None),
                ServerName::try_from("localhost")?,
            )?;
            let mut hello = Vec::new();
            connection.write_tls(&mut hello)?;
            let mut truncated = connect_tcp(address);
            truncated.write_all(&hello[..hello.len() / 2])?;
            drop(truncated);
            // Half a ClientHello and silence: the server waits for the rest, serving others.
            let mut stalled = connect_tcp(address);
            stalled.write_all(&hello[..hello.len() / 2])?;
            // A ClientHello followed by garbage where the next record belongs.
            let mut corrupted = connect_tcp(address);
            corrupted.write_all(&hello)?;
            corrupted.write_all(&[0x17, 0x03, 0x03, 0x00, 0x05, 1, 2, 3, 4, 5])?;
            expect_closed(&mut corrupted, "garbage during the handshake")?;
            // A completed handshake, a good ping, then garbage records: an alert and a close.
            let mut tls = connect_tls(address, client_config(&ca, None));
            ensure!(ping(&mut tls).is_ok(), "ping over TLS");
            let socket = tls.get_mut();
            socket.write_all(&[0x17, 0x03, 0x03, 0x00, 0x20])?;
            socket.write_all(&[0xAB; 0x20])?;
            expect_closed(socket, "garbage after the handshake")?;
            // Not a TLS record at all after the handshake.
            let mut tls = connect_tls(address, client_config(&ca, None));
            ensure!(ping(&mut tls).is_ok(), "ping over TLS");
            tls.get_mut().write_all(b"GET / HTTP/1.1\r\n\r\n")?;
            expect_closed(tls.get_mut(), "plaintext after the handshake")?;
            drop(stalled);
            Ok(())
        })
        .await??;
        wait_for_counter(&server, "tls_handshake_failures", 3)?;
        wait_for_counter(&server, "tls_handshakes", 3)?;
        scenarios::send_to(&witness, s, t, &one, "w3", 1).await?;

        let consumer = Consumer::new(Identifier::numeric(1)?);
        let polled = scenarios::poll(
            &witness,
            s,
            t,
            0,
            &consumer,
            PollingStrategy::offset(0),
            100,
        )
        .await?;
        let payloads = common::payloads(&polled);
        ensure!(
            payloads == ["w1-0", "w2-0", "w3-0"],
            "the witness's acknowledged messages: {payloads:?}"
        );
        ensure!(server.is_running(), "the server died");
        Ok(())
    })
    .await
    .expect("bad input");
    server.restart().expect("restart");
    server.finish().expect("server stops cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_client_on_a_plaintext_listener_gets_an_alert() {
    let pki = pki().expect("certificates");
    let server = Server::start().expect("plaintext server");
    bounded(SUITE_TIMEOUT, async {
        let tls_client = tls_endpoint(&server, &pki.ca.ca_file);
        let refused = tokio::time::timeout(IO_TIMEOUT, tls_client.anonymous_client()).await;
        ensure!(
            matches!(refused, Ok(Err(_))),
            "a TLS client on a plaintext listener must fail promptly, got {:?}",
            refused.map(|r| r.map(|_| "connected"))
        );
        // The raw rustls client gets the alert.
        let address = server.address();
        let ca_file = pki.ca.ca_file.clone();
        tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
            let mut tls = connect_tls(address, client_config(&ca_file, None));
            match ping(&mut tls) {
                Ok(()) => bail!("a TLS ping was answered by a plaintext listener"),
                Err(error) => ensure!(
                    format!("{error:#}").contains("ProtocolVersion"),
                    "expected the protocol_version alert, got {error:#}"
                ),
            }
            Ok(())
        })
        .await??;
        wait_for_counter(&server, "tls_clients_on_plaintext", 2)?;
        let witness = server.client().await?;
        witness.ping().await.sdk("witness ping")?;
        Ok(())
    })
    .await
    .expect("TLS client on plaintext");
    server.finish().expect("server stops cleanly");
}

#[test]
fn mutual_tls_refuses_missing_and_foreign_client_certificates() {
    let pki = pki().expect("certificates");
    let trusted = pki.ca.client("trusted").expect("client certificate");
    let other_ca = TestCa::new(&pki.ca.dir, "other").expect("other CA");
    let foreign = other_ca
        .client("foreign")
        .expect("foreign client certificate");
    let config = tls_section(&pki.server, Some(&pki.ca.ca_file), "auto");
    let server = Server::start_with_config(Some(&config), &[]).expect("server");
    let address = server.address();

    let mut anonymous = connect_tls(address, client_config(&pki.ca.ca_file, None));
    assert!(
        ping(&mut anonymous).is_err(),
        "a client without a certificate was served"
    );
    let mut stranger = connect_tls(address, client_config(&pki.ca.ca_file, Some(&foreign)));
    assert!(
        ping(&mut stranger).is_err(),
        "a client with another CA's certificate was served"
    );
    let mut member = connect_tls(address, client_config(&pki.ca.ca_file, Some(&trusted)));
    ping(&mut member).expect("the trusted client is served");
    wait_for_counter(&server, "tls_handshake_failures", 2).expect("refusals counted");
    server.finish().expect("server stops cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_certificate_serves_new_handshakes_and_open_connections_keep_going() {
    let pki = pki().expect("certificates");
    let config = tls_section(&pki.server, None, "auto");
    let server = Server::start_with_config(Some(&config), &[]).expect("server");
    let old_trust = tls_endpoint(&server, &pki.ca.ca_file);
    let next_ca = TestCa::new(&pki.ca.dir, "next").expect("next CA");
    let new_trust = tls_endpoint(&server, &next_ca.ca_file);
    bounded(SUITE_TIMEOUT, async {
        let open = old_trust.client().await?;
        let (s, t) = scenarios::stream_and_topic(&open, "rotation", "t", 1).await?;
        let one = Partitioning::partition_id(0);
        scenarios::send_to(&open, s, t, &one, "before", 1).await?;
        ensure!(
            tokio::time::timeout(IO_TIMEOUT, new_trust.client())
                .await
                .map_or(true, |r| r.is_err()),
            "a client trusting only the next CA was served before the rotation"
        );
        // Rotation in place: the files change under the running appliance.
        let rotated = next_ca.server("rotated")?;
        std::fs::copy(&rotated.key_file, &pki.server.key_file)?;
        std::fs::copy(&rotated.cert_file, &pki.server.cert_file)?;
        let deadline = Instant::now() + IO_TIMEOUT;
        let fresh = loop {
            if let Ok(Ok(client)) = tokio::time::timeout(IO_TIMEOUT, new_trust.client()).await {
                break client;
            }
            ensure!(
                Instant::now() < deadline,
                "new handshakes never got the new certificate"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        fresh.ping().await.sdk("ping with the new certificate")?;
        scenarios::send_to(&open, s, t, &one, "after", 1).await?;
        ensure!(
            tokio::time::timeout(IO_TIMEOUT, old_trust.client())
                .await
                .map_or(true, |r| r.is_err()),
            "a client trusting only the old CA was served after the rotation"
        );
        let consumer = Consumer::new(Identifier::numeric(1)?);
        let polled =
            scenarios::poll(&fresh, s, t, 0, &consumer, PollingStrategy::offset(0), 10).await?;
        let payloads = common::payloads(&polled);
        ensure!(
            payloads == ["before-0", "after-0"],
            "messages: {payloads:?}"
        );

        // The live keys: runtime/live.toml names files elsewhere (what `PUT /config` writes).
        let third_ca = TestCa::new(&pki.ca.dir, "third")?;
        let third = third_ca.server("third")?;
        std::fs::write(
            riptide_config::live::live_path(server.data_path()),
            format!(
                "[tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
                third.cert_file.display(),
                third.key_file.display()
            ),
        )?;
        let third_trust = tls_endpoint(&server, &third_ca.ca_file);
        let deadline = Instant::now() + IO_TIMEOUT;
        loop {
            if let Ok(Ok(client)) = tokio::time::timeout(IO_TIMEOUT, third_trust.client()).await {
                client
                    .ping()
                    .await
                    .sdk("ping with the live key's certificate")?;
                break;
            }
            ensure!(
                Instant::now() < deadline,
                "live.toml's certificate was never served"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        scenarios::send_to(&open, s, t, &one, "live", 1).await?;
        ensure!(
            server.log().contains("TLS certificate reloaded"),
            "the reload is logged"
        );
        Ok(())
    })
    .await
    .expect("rotation");
    server.finish().expect("server stops cleanly");
}

/// A TCP relay in front of `upstream` that keeps every byte it forwards, both directions.
struct Relay {
    address: SocketAddr,
    seen: Arc<std::sync::Mutex<Vec<u8>>>,
}

impl Relay {
    fn start(upstream: SocketAddr) -> Relay {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("relay bind");
        let address = listener.local_addr().expect("relay address");
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let record = Arc::clone(&seen);
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(server) = TcpStream::connect(upstream) else {
                    return;
                };
                for (mut from, mut to) in [
                    (
                        client.try_clone().expect("clone"),
                        server.try_clone().expect("clone"),
                    ),
                    (server, client),
                ] {
                    let record = Arc::clone(&record);
                    std::thread::spawn(move || {
                        let mut buffer = [0u8; 16 * 1024];
                        while let Ok(n) = from.read(&mut buffer) {
                            if n == 0 || to.write_all(&buffer[..n]).is_err() {
                                break;
                            }
                            record
                                .lock()
                                .expect("record")
                                .extend_from_slice(&buffer[..n]);
                        }
                        let _ = to.shutdown(std::net::Shutdown::Write);
                    });
                }
            }
        });
        Relay { address, seen }
    }

    fn contains(&self, needle: &[u8]) -> bool {
        let seen = self.seen.lock().expect("record");
        seen.windows(needle.len()).any(|window| window == needle)
    }

    fn len(&self) -> usize {
        self.seen.lock().expect("record").len()
    }
}

const WIRE_USER: &str = "wire-user";
const WIRE_PASSWORD: &str = "Tr0ub4dor-wire-secret";
const WIRE_PAYLOAD: &str = "PAYLOAD-wire-needle";

/// Through a relay in front of `server`: a user signs in with a password and sends messages.
async fn send_through_relay(
    server: &Server,
    tls: Option<&'static ClientTls>,
) -> anyhow::Result<Relay> {
    let direct = Endpoint {
        address: server.address(),
        tls,
    };
    let root = direct.client().await?;
    scenarios::create_sending_user(&root, WIRE_USER, WIRE_PASSWORD).await?;
    let (s, t) = scenarios::stream_and_topic(&root, "wire", "t", 1).await?;
    let relay = Relay::start(server.address());
    let relayed = Endpoint {
        address: relay.address,
        tls,
    };
    let user = relayed.client_for(WIRE_USER, WIRE_PASSWORD).await?;
    scenarios::send_to(
        &user,
        s,
        t,
        &Partitioning::partition_id(0),
        WIRE_PAYLOAD,
        20,
    )
    .await?;
    let consumer = Consumer::new(Identifier::numeric(1)?);
    let polled = scenarios::poll(&user, s, t, 0, &consumer, PollingStrategy::offset(0), 20).await?;
    ensure!(
        polled.messages.len() == 20,
        "polled {}",
        polled.messages.len()
    );
    Ok(relay)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_the_wire_neither_the_password_nor_the_payload_appears() {
    let pki = pki().expect("certificates");
    bounded(SUITE_TIMEOUT, async {
        // The control: plaintext through the same relay shows both, so the capture sees them.
        let plain = Server::start()?;
        let relay = send_through_relay(&plain, None).await?;
        ensure!(
            relay.contains(WIRE_PASSWORD.as_bytes()) && relay.contains(WIRE_PAYLOAD.as_bytes()),
            "the relay did not see the plaintext password and payload ({} bytes)",
            relay.len()
        );
        plain.finish()?;

        let config = tls_section(&pki.server, None, "auto");
        let server = Server::start_with_config(Some(&config), &[])?;
        let tls = ClientTls::leak("localhost", &pki.ca.ca_file);
        let relay = send_through_relay(&server, Some(tls)).await?;
        ensure!(
            relay.len() > 20 * WIRE_PAYLOAD.len(),
            "the relay saw {} bytes",
            relay.len()
        );
        ensure!(
            !relay.contains(WIRE_PASSWORD.as_bytes()),
            "the password crossed the wire in clear"
        );
        ensure!(
            !relay.contains(WIRE_PAYLOAD.as_bytes()),
            "the payload crossed the wire in clear"
        );
        ensure!(
            !relay.contains(WIRE_USER.as_bytes()),
            "the username crossed the wire in clear"
        );
        server.finish()?;
        Ok(())
    })
    .await
    .expect("wire capture");
}

/// Batches of a megabyte (received in place into their own buffers through rustls) and polls of
/// them arrive whole over TLS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_batches_cross_tls_whole() {
    let pki = pki().expect("certificates");
    let config = tls_section(&pki.server, None, "auto");
    let server = Server::start_with_config(Some(&config), &[]).expect("server");
    let endpoint = tls_endpoint(&server, &pki.ca.ca_file);
    const BATCHES: u32 = 3;
    const MESSAGES: u32 = 100;
    const PAYLOAD_BYTES: usize = 10_000;
    let payload = |batch: u32, index: u32| -> Vec<u8> {
        (0..PAYLOAD_BYTES)
            .map(|at| (at as u32 ^ batch.wrapping_mul(31) ^ index.wrapping_mul(7)) as u8)
            .collect()
    };
    bounded(SUITE_TIMEOUT, async {
        let client = endpoint.client().await?;
        let (s, t) = scenarios::stream_and_topic(&client, "large", "t", 1).await?;
        for batch in 0..BATCHES {
            let mut messages: Vec<IggyMessage> = (0..MESSAGES)
                .map(|index| {
                    IggyMessage::builder()
                        .payload(payload(batch, index).into())
                        .build()
                        .expect("message")
                })
                .collect();
            client
                .send_messages(
                    &Identifier::numeric(s)?,
                    &Identifier::numeric(t)?,
                    &Partitioning::partition_id(0),
                    &mut messages,
                )
                .await
                .sdk("send a 1 MB batch")?;
        }
        let consumer = Consumer::new(Identifier::numeric(1)?);
        let mut offset = 0u64;
        while offset < u64::from(BATCHES * MESSAGES) {
            let polled = scenarios::poll(
                &client,
                s,
                t,
                0,
                &consumer,
                PollingStrategy::offset(offset),
                MESSAGES * BATCHES,
            )
            .await?;
            ensure!(
                !polled.messages.is_empty(),
                "nothing polled at offset {offset}"
            );
            for message in &polled.messages {
                let (batch, index) = (
                    (message.header.offset / u64::from(MESSAGES)) as u32,
                    (message.header.offset % u64::from(MESSAGES)) as u32,
                );
                ensure!(
                    message.payload[..] == payload(batch, index)[..],
                    "message {} differs",
                    message.header.offset
                );
            }
            offset += polled.messages.len() as u64;
        }
        Ok(())
    })
    .await
    .expect("large batches");
    server.finish().expect("server stops cleanly");
}
