//! A control API that is not open (issue 16, item 5), with real processes: riptide-control and
//! its dataplane, riptidectl, a raw HTTP client and reqwest.
//!
//! - off loopback without a token: the start is refused, naming `control.token`;
//! - with a token: 401 without it or with a wrong one, 200 with it; `/health` open with only
//!   its verdict; riptidectl sends the token from its context;
//! - over HTTPS: riptidectl and reqwest trusting the CA work, a plain-HTTP client gets no HTTP
//!   answer, a client that does not trust the CA fails; both refusals are counted;
//! - Iggy's HTTP API over HTTPS with the same certificate: a login and a request with its JWT
//!   work, plain HTTP does not.

mod common;

use common::{ctl_bin, http, http_with, stderr, Appliance};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const TOKEN: &str = "control-token-0123456789abcdef";

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// Runs riptide-control to its exit (it must refuse to start) and returns code and stderr.
fn refused_start(env: &[(&str, &str)], config: Option<&str>) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut command = Command::new(common::control_bin());
    command
        .arg("--dataplane-bin")
        .arg(common::dataplane_bin().expect("dataplane built"))
        .env("IGGY_SYSTEM_PATH", dir.path().join("data"))
        .env("IGGY_TCP_ADDRESS", "127.0.0.1:0")
        .env("RIPTIDE_HTTP_ENABLED", "false")
        .env_remove("RIPTIDE_CONTROL_TOKEN")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(text) = config {
        let path = dir.path().join("riptide.toml");
        std::fs::write(&path, text).expect("config");
        command.arg("--config").arg(path);
    }
    for (key, value) in env {
        command.env(key, value);
    }
    let mut child = command.spawn().expect("start riptide-control");
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("riptide-control did not refuse to start");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().expect("output");
    assert!(
        !dir.path().join("data/runtime/control_address").exists(),
        "a control API was bound before the refusal"
    );
    (output.status.code(), stderr(&output))
}

/// This machine's own address on the interface of its default route (no packet is sent), if it
/// has one.
fn own_address() -> Option<std::net::IpAddr> {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect("192.0.2.1:9").ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

#[test]
fn a_control_api_off_loopback_without_a_token_refuses_to_start() {
    if !common::require(
        common::dataplane_bin().is_some(),
        "riptide-dataplane is not built",
    ) {
        return;
    }
    let mut addresses = vec!["0.0.0.0:0".to_string()];
    match own_address() {
        Some(ip) => addresses.push(format!("{ip}:0")),
        None => eprintln!("no non-loopback address besides 0.0.0.0 on this machine"),
    }
    for address in &addresses {
        let (code, text) = refused_start(&[("RIPTIDE_CONTROL_ADDRESS", address)], None);
        assert_eq!(code, Some(78), "{address}: {text}");
        assert!(
            text.contains("`control.token`") && text.contains("not a loopback address"),
            "{address}: {text}"
        );
    }
    // riptidectl's validation says the same before anything starts.
    let validate = Command::new(ctl_bin())
        .args(["config", "validate"])
        .env("RIPTIDE_CONTROL_ADDRESS", "0.0.0.0:9091")
        .env_remove("RIPTIDE_CONTROL_TOKEN")
        .output()
        .expect("riptidectl");
    assert_eq!(validate.status.code(), Some(78));
    assert!(stderr(&validate).contains("control.token"));
    // A token that is too short, or a certificate that is missing, is named too.
    let (code, text) = refused_start(
        &[
            ("RIPTIDE_CONTROL_ADDRESS", "0.0.0.0:0"),
            ("RIPTIDE_CONTROL_TOKEN", "short"),
        ],
        None,
    );
    assert_eq!(code, Some(78));
    assert!(text.contains("`control.token`"), "{text}");
    let (code, text) = refused_start(
        &[],
        Some("[control]\naddress = \"127.0.0.1:0\"\ntls_cert_file = \"/nonexistent/cert.pem\"\ntls_key_file = \"/nonexistent/key.pem\"\n"),
    );
    assert_eq!(code, Some(78));
    assert!(text.contains("control.tls_cert_file"), "{text}");
}

fn write_context(appliance: &Appliance, body: &str) {
    let dir = appliance.dir.path().join("xdg/riptide");
    std::fs::create_dir_all(&dir).expect("xdg dir");
    std::fs::write(dir.join("contexts.toml"), body).expect("contexts.toml");
}

#[test]
fn with_a_token_requests_need_it_and_riptidectl_sends_it_from_its_context() {
    let Some(appliance) = Appliance::start_with(
        &[
            ("RIPTIDE_CONTROL_ADDRESS", "0.0.0.0:0"),
            ("RIPTIDE_CONTROL_TOKEN", TOKEN),
            ("RIPTIDE_HTTP_ENABLED", "false"),
        ],
        None,
    ) else {
        return;
    };
    let control = &appliance.control;
    let right = bearer(TOKEN);
    for path in ["/status", "/config", "/metrics", "/cluster", "/steering"] {
        let (code, body) = http(control, "GET", path, "").expect("GET");
        assert_eq!(code, 401, "{path} without the token: {body}");
        assert!(body.contains("Authorization: Bearer"), "{body}");
        let (code, _) = http_with(
            control,
            "GET",
            path,
            "",
            &[("Authorization", "Bearer control-token-0123456789abcdeF")],
        )
        .expect("GET");
        assert_eq!(code, 401, "{path} with a wrong token");
        let (code, body) =
            http_with(control, "GET", path, "", &[("Authorization", &right)]).expect("GET");
        assert_eq!(code, 200, "{path} with the token: {body}");
    }
    let (code, _) = http(control, "POST", "/shutdown", "").expect("POST");
    assert_eq!(code, 401, "an unauthenticated shutdown");
    let (code, body) = http(control, "GET", "/health", "").expect("health");
    let health: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!((code, &health), (200, &serde_json::json!({"status": "ok"})));
    let (_, body) =
        http_with(control, "GET", "/health", "", &[("Authorization", &right)]).expect("health");
    assert!(body.contains("dataplane"), "details with the token: {body}");
    let (_, metrics) =
        http_with(control, "GET", "/metrics", "", &[("Authorization", &right)]).expect("metrics");
    let refusals = metric(&metrics, "riptide_control_unauthorized_total");
    assert!(refusals >= 11.0, "{refusals} refusals counted");

    // riptidectl: refused without the token, with a clear word; fine with it in its context.
    let without = appliance.ctl(&["status"]);
    assert_eq!(without.status.code(), Some(4));
    assert!(
        stderr(&without).contains("control_token"),
        "{}",
        stderr(&without)
    );
    write_context(
        &appliance,
        &format!("default = \"lab\"\n[contexts.lab]\ncontrol_token = \"{TOKEN}\"\n"),
    );
    let status = appliance.ctl_json(&["status"]);
    assert_eq!(status["supervisor"]["state"], "running", "{status}");
    let samples = appliance.ctl_json(&["metrics"]);
    assert!(samples.as_array().is_some_and(|s| !s.is_empty()));
}

fn metric(page: &str, name: &str) -> f64 {
    page.lines()
        .find_map(|line| line.strip_prefix(&format!("{name} ")))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} not in:\n{page}"))
}

/// A development CA and a server certificate for 127.0.0.1 and localhost, signed by it.
fn certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().expect("CA key");
    let ca = ca_params.self_signed(&ca_key).expect("CA");
    let issuer = Issuer::new(ca_params, ca_key);
    let server_params =
        CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .expect("server params");
    let server_key = KeyPair::generate().expect("server key");
    let server = server_params
        .signed_by(&server_key, &issuer)
        .expect("server certificate");
    let paths = (
        dir.join("ca.pem"),
        dir.join("server.pem"),
        dir.join("server.key"),
    );
    std::fs::write(&paths.0, ca.pem()).expect("ca.pem");
    std::fs::write(&paths.1, server.pem()).expect("server.pem");
    std::fs::write(&paths.2, server_key.serialize_pem()).expect("server.key");
    (paths.0, paths.1, paths.2)
}

/// What a plain-HTTP client gets from the HTTPS port: not an HTTP answer.
fn plaintext_answer(address: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let _ = stream.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

#[test]
fn over_tls_riptidectl_and_reqwest_with_the_ca_work_and_plaintext_is_refused() {
    let scratch = tempfile::tempdir().expect("temp dir");
    let (ca, cert, key) = certificates(scratch.path());
    let token_file = scratch.path().join("control.token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).expect("token file");
    let config = format!(
        "[control]\naddress = \"0.0.0.0:0\"\ntoken_file = \"{}\"\ntls_cert_file = \"{}\"\n\
         tls_key_file = \"{}\"\n[http]\nenabled = false\n",
        token_file.display(),
        cert.display(),
        key.display()
    );
    let env = [
        ("IGGY_TCP_ADDRESS", "127.0.0.1:0"),
        ("RIPTIDE_DATAPLANE_NETWORK_WORKERS", "1"),
        ("RIPTIDE_DATAPLANE_STORAGE_SHARDS", "1"),
    ];
    let Some(appliance) = Appliance::spawn(&env, Some(&config), false) else {
        return;
    };
    let base = format!("https://{}", appliance.control);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let pem = std::fs::read(&ca).expect("ca.pem");
    let trusting = reqwest::Client::builder()
        .tls_certs_only(reqwest::Certificate::from_pem_bundle(&pem).expect("CA"))
        .build()
        .expect("client");
    runtime.block_on(async {
        let deadline = Instant::now() + common::START_TIMEOUT;
        loop {
            let health = trusting.get(format!("{base}/health")).send().await;
            if health.is_ok_and(|r| r.status() == 200) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "not healthy:\n{}",
                appliance.log()
            );
            tokio::time::sleep(common::POLL_INTERVAL).await;
        }
        let status = trusting
            .get(format!("{base}/status"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("GET /status over TLS");
        assert_eq!(status.status(), 200);
        let anonymous = trusting
            .get(format!("{base}/status"))
            .send()
            .await
            .expect("GET");
        assert_eq!(
            anonymous.status(),
            401,
            "the token is still needed over TLS"
        );
        // A client that trusts only the system's roots does not accept the certificate.
        let stranger = reqwest::Client::new()
            .get(format!("{base}/health"))
            .send()
            .await;
        assert!(
            stranger.is_err(),
            "a certificate from an unknown CA was accepted"
        );
    });
    let answer = plaintext_answer(&appliance.control);
    assert!(
        !answer.starts_with("HTTP/"),
        "plain HTTP got an HTTP answer: {answer:?}"
    );
    assert!(http(&appliance.control, "GET", "/health", "").is_err());

    // riptidectl: https:// and the CA from its context, the token from its file.
    write_context(
        &appliance,
        &format!(
            "default = \"tls\"\n[contexts.tls]\ncontrol = \"{base}\"\ncontrol_token_file = \"{}\"\n\
             control_ca_file = \"{}\"\n",
            token_file.display(),
            ca.display()
        ),
    );
    let run = |args: &[&str]| {
        Command::new(ctl_bin())
            .args(args)
            .env("XDG_CONFIG_HOME", appliance.dir.path().join("xdg"))
            .env("RIPTIDE_ADDRESS", appliance.tcp_address())
            .env_remove("RIPTIDE_CONTROL")
            .env_remove("RIPTIDE_CONTEXT")
            .env_remove("RIPTIDE_CONTROL_TOKEN")
            .output()
            .expect("riptidectl")
    };
    let status = run(&["--json", "status"]);
    assert!(status.status.success(), "{}", stderr(&status));
    let metrics = run(&["metrics"]);
    assert!(metrics.status.success(), "{}", stderr(&metrics));
    let failures = metric(
        &String::from_utf8_lossy(&metrics.stdout),
        "riptide_control_tls_handshake_failures_total{listener=\"control\"}",
    );
    assert!(failures >= 3.0, "{failures} failed handshakes counted");
    // Without the CA (host:port over https, system roots only) riptidectl cannot verify it.
    let no_ca = Command::new(ctl_bin())
        .args(["--control", &base, "--control-token", TOKEN, "status"])
        .env("XDG_CONFIG_HOME", scratch.path().join("empty-xdg"))
        .env_remove("RIPTIDE_CONTROL_CA_FILE")
        .env_remove("RIPTIDE_CONTEXT")
        .output()
        .expect("riptidectl");
    assert_eq!(no_ca.status.code(), Some(3), "{}", stderr(&no_ca));
    assert!(
        stderr(&no_ca).to_lowercase().contains("certificate"),
        "{}",
        stderr(&no_ca)
    );
}

#[test]
fn the_http_api_serves_https_with_the_same_certificate() {
    let scratch = tempfile::tempdir().expect("temp dir");
    let (ca, cert, key) = certificates(scratch.path());
    let config = format!(
        "[http]\ntls_cert_file = \"{}\"\ntls_key_file = \"{}\"\n",
        cert.display(),
        key.display()
    );
    let Some(appliance) = Appliance::start_with(&[], Some(&config)) else {
        return;
    };
    let base = format!("https://{}", appliance.http_address());
    let status = appliance.status();
    assert_eq!(status["http"]["api_url"], base.as_str(), "{status}");
    let pem = std::fs::read(&ca).expect("ca.pem");
    let client = reqwest::Client::builder()
        .tls_certs_only(reqwest::Certificate::from_pem_bundle(&pem).expect("CA"))
        .build()
        .expect("client");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let login: Value = client
            .post(format!("{base}/users/login"))
            .json(&serde_json::json!({"username": "iggy", "password": "iggy"}))
            .send()
            .await
            .expect("login over TLS")
            .json()
            .await
            .expect("login JSON");
        let token = login["access_token"]["token"]
            .as_str()
            .unwrap_or_else(|| panic!("no token in {login}"));
        let streams = client
            .get(format!("{base}/streams"))
            .bearer_auth(token)
            .send()
            .await
            .expect("GET /streams");
        assert_eq!(streams.status(), 200);
    });
    let answer = plaintext_answer(&appliance.http_address());
    assert!(
        !answer.starts_with("HTTP/"),
        "plain HTTP answered: {answer:?}"
    );
    let (_, page) = http(&appliance.control, "GET", "/metrics", "").expect("metrics");
    let failures = metric(
        &page,
        "riptide_control_tls_handshake_failures_total{listener=\"http\"}",
    );
    assert!(failures >= 1.0, "{failures}");
}
