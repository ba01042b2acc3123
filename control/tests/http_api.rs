//! Iggy's HTTP API at the HTTP level (reqwest, as curl would): every route, its status and JSON
//! shape, Iggy's error bodies for bad input (bad JSON, oversized bodies, bad and expired tokens,
//! unknown routes), sessions ending on logout and password changes, the console's own routes, and
//! many concurrent clients — after all of which the control process still serves.

mod common;

use base64::Engine as _;
use common::Appliance;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use std::os::unix::fs::PermissionsExt as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// A client of the API with an optional bearer token.
#[derive(Clone)]
struct Api {
    base: String,
    http: reqwest::Client,
    token: Option<String>,
}

struct Answer {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    text: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.text))
    }

    /// Asserts Iggy's error shape with this status and code; returns the body.
    fn iggy_error(&self, status: u16, id: u64) -> Value {
        assert_eq!(self.status.as_u16(), status, "{}", self.text);
        let body = self.json();
        assert_eq!(body["id"], id, "{body}");
        assert!(
            body["code"].is_string() && body["reason"].is_string(),
            "{body}"
        );
        assert!(
            body.get("field").is_some(),
            "Iggy's shape has a field key: {body}"
        );
        body
    }
}

impl Api {
    fn new(appliance: &Appliance) -> Api {
        Api {
            base: appliance.http_url(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap(),
            token: None,
        }
    }

    fn with_token(&self, token: &str) -> Api {
        Api {
            token: Some(token.to_string()),
            ..self.clone()
        }
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Answer {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request");
        Answer {
            status: response.status(),
            headers: response.headers().clone(),
            text: response.text().await.expect("body"),
        }
    }

    async fn raw(&self, method: Method, path: &str, body: &'static str, json: bool) -> Answer {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .body(body);
        if json {
            request = request.header("content-type", "application/json");
        }
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("request");
        Answer {
            status: response.status(),
            headers: response.headers().clone(),
            text: response.text().await.expect("body"),
        }
    }

    async fn ok(&self, method: Method, path: &str, body: Option<Value>, status: u16) -> Answer {
        let answer = self.call(method.clone(), path, body).await;
        assert_eq!(
            answer.status.as_u16(),
            status,
            "{method} {path}: {}",
            answer.text
        );
        answer
    }

    async fn login(&self, username: &str, password: &str) -> (Api, Value) {
        let answer = self
            .ok(
                Method::POST,
                "/users/login",
                Some(json!({"username": username, "password": password})),
                200,
            )
            .await;
        let identity = answer.json();
        let token = identity["access_token"]["token"].as_str().expect("token");
        (self.with_token(token), identity)
    }
}

fn run(appliance: &Appliance, scenario: impl std::future::Future<Output = ()>) {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(scenario);
    let (code, body) = common::http(&appliance.control, "GET", "/health", "").expect("health");
    assert_eq!(code, 200, "the control process keeps serving: {body}");
}

fn b64(text: &str) -> String {
    B64.encode(text)
}

#[test]
fn streams_topics_partitions_messages_offsets_and_groups_over_every_route() {
    let Some(appliance) = Appliance::start() else {
        return;
    };
    run(&appliance, async {
        let anonymous = Api::new(&appliance);
        let ping = anonymous.ok(Method::GET, "/ping", None, 200).await;
        assert_eq!(ping.text, "pong");
        let (api, identity) = anonymous.login("iggy", "iggy").await;
        assert_eq!(identity["user_id"], 0);
        assert!(identity["access_token"]["expiry"].as_u64().unwrap() > now_s());

        streams_and_topics(&api).await;
        partitions_and_segments(&api).await;
        messages_and_offsets(&api).await;
        consumer_groups(&api).await;
        system_routes(&api, &anonymous).await;
    });
}

/// With `[tls]` on, the dataplane speaks only TLS: the HTTP API's pool reaches it over TLS and
/// verifies its certificate with `http.dataplane_tls_ca_file` (certificates from `riptidectl tls
/// dev-cert`), so logins, sends and polls work as before.
#[test]
fn the_http_api_reaches_a_dataplane_that_speaks_only_tls() {
    let pki = tempfile::tempdir().expect("pki directory");
    let out = dev_cert(pki.path(), "pki");
    let Some(appliance) = tls_appliance(&out, &out.join("ca.pem")) else {
        return;
    };
    run(&appliance, async {
        let anonymous = Api::new(&appliance);
        let (api, _) = anonymous.login("iggy", "iggy").await;
        api.ok(Method::POST, "/streams", Some(json!({"name": "tls"})), 200)
            .await;
        api.ok(
            Method::POST,
            "/streams/tls/topics",
            Some(topic_body("t", 1)),
            200,
        )
        .await;
        let zero = B64.encode(0u32.to_le_bytes());
        let send = json!({
            "partitioning": {"kind": "partition_id", "value": zero},
            "messages": [{"payload": b64("over tls")}],
        });
        api.ok(
            Method::POST,
            "/streams/tls/topics/t/messages",
            Some(send),
            201,
        )
        .await;
        let polled = api
            .ok(
                Method::GET,
                "/streams/tls/topics/t/messages?consumer_id=1&partition_id=0&kind=offset&value=0&count=10",
                None,
                200,
            )
            .await
            .json();
        assert_eq!(
            polled["messages"][0]["payload"],
            b64("over tls"),
            "{polled}"
        );
    });
}

/// A dataplane whose certificate the configured CA did not sign is never sent a password: the
/// login is answered 503 (the dataplane cannot be reached), as for a dataplane that is down.
#[test]
fn the_http_api_refuses_a_dataplane_its_ca_did_not_sign() {
    let pki = tempfile::tempdir().expect("pki directory");
    let served = dev_cert(pki.path(), "served");
    let foreign = dev_cert(pki.path(), "foreign");
    let Some(appliance) = tls_appliance(&served, &foreign.join("ca.pem")) else {
        return;
    };
    run(&appliance, async {
        let refused = Api::new(&appliance)
            .ok(
                Method::POST,
                "/users/login",
                Some(json!({"username": "iggy", "password": "iggy"})),
                503,
            )
            .await;
        assert!(refused.text.contains("\"id\""), "{}", refused.text);
    });
}

/// An appliance whose dataplane speaks only TLS with the server certificate of `pki` (a dev-cert
/// directory), its HTTP pool verifying it against `pool_ca`.
fn tls_appliance(pki: &std::path::Path, pool_ca: &std::path::Path) -> Option<Appliance> {
    let file = |path: std::path::PathBuf| path.display().to_string();
    let (cert, key) = (
        file(pki.join("server.pem")),
        file(pki.join("server-key.pem")),
    );
    Appliance::start_with(
        &[
            ("RIPTIDE_TLS_ENABLED", "true"),
            ("RIPTIDE_TLS_CERT_FILE", &cert),
            ("RIPTIDE_TLS_KEY_FILE", &key),
            (
                "RIPTIDE_HTTP_DATAPLANE_TLS_CA_FILE",
                &file(pool_ca.to_path_buf()),
            ),
        ],
        None,
    )
}

/// `riptidectl tls dev-cert` into `parent/name`: a CA, a server certificate for localhost, a
/// client certificate.
fn dev_cert(parent: &std::path::Path, name: &str) -> std::path::PathBuf {
    let out = parent.join(name);
    riptide_control::cli::tls::dev_cert(&riptide_control::cli::DevCertArgs {
        out: out.clone(),
        config: None,
        names: Vec::new(),
        days: 1,
    })
    .expect("dev-cert");
    out
}

async fn streams_and_topics(api: &Api) {
    let stream = api
        .ok(Method::POST, "/streams", Some(json!({"name": "s"})), 200)
        .await
        .json();
    assert_eq!(
        (stream["name"].as_str(), stream["topics_count"].as_u64()),
        (Some("s"), Some(0))
    );
    let list = api.ok(Method::GET, "/streams", None, 200).await.json();
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    api.ok(Method::GET, "/streams/s", None, 200).await;
    api.ok(Method::GET, "/streams/0", None, 200).await;
    api.call(Method::GET, "/streams/missing", None)
        .await
        .iggy_error(404, 404);
    api.ok(Method::PUT, "/streams/s", Some(json!({"name": "s2"})), 204)
        .await;
    api.ok(Method::DELETE, "/streams/s2/purge", None, 204).await;
    let topic = json!({"name": "t", "partitions_count": 2, "compression_algorithm": "none",
                       "message_expiry": 0, "max_topic_size": 0});
    let created = api
        .ok(Method::POST, "/streams/s2/topics", Some(topic.clone()), 200)
        .await
        .json();
    assert_eq!(created["partitions_count"], 2, "{created}");
    assert_eq!(
        created["options"]["durability"]["value"], "persisted",
        "{created}"
    );
    let duplicate = api
        .call(Method::POST, "/streams/s2/topics", Some(topic))
        .await;
    let body = duplicate.iggy_error(400, 2013);
    assert_eq!(body["field"], "name");
    let topics = api
        .ok(Method::GET, "/streams/s2/topics", None, 200)
        .await
        .json();
    assert_eq!(topics[0]["name"], "t");
    api.ok(Method::GET, "/streams/s2/topics/t", None, 200).await;
    api.call(Method::GET, "/streams/s2/topics/none", None)
        .await
        .iggy_error(404, 404);
    let rename = json!({"name": "t2", "message_expiry": 3_600_000_000u64});
    api.ok(Method::PUT, "/streams/s2/topics/t", Some(rename), 204)
        .await;
    let updated = api
        .ok(Method::GET, "/streams/s2/topics/t2", None, 200)
        .await
        .json();
    assert_eq!(updated["message_expiry"], 3_600_000_000u64, "{updated}");
    api.ok(Method::DELETE, "/streams/s2/topics/t2/purge", None, 204)
        .await;
    let missing = api
        .call(Method::DELETE, "/streams/nope/topics/t2", None)
        .await;
    let body = missing.iggy_error(404, 1010);
    assert!(body["reason"].as_str().unwrap().contains("nope"), "{body}");
    api.ok(Method::DELETE, "/streams/s2/topics/t2", None, 204)
        .await;
    api.ok(Method::DELETE, "/streams/s2", None, 204).await;
}

fn topic_body(name: &str, partitions: u32) -> Value {
    json!({"name": name, "partitions_count": partitions, "compression_algorithm": "none",
           "message_expiry": 0, "max_topic_size": 0})
}

async fn partitions_and_segments(api: &Api) {
    api.ok(Method::POST, "/streams", Some(json!({"name": "p"})), 200)
        .await;
    api.ok(
        Method::POST,
        "/streams/p/topics",
        Some(topic_body("t", 1)),
        200,
    )
    .await;
    let added = api
        .ok(
            Method::POST,
            "/streams/p/topics/t/partitions",
            Some(json!({"partitions_count": 3})),
            200,
        )
        .await;
    assert!(
        added.text.is_empty(),
        "Iggy answers 200 with no body: {}",
        added.text
    );
    api.ok(
        Method::DELETE,
        "/streams/p/topics/t/partitions?partitions_count=2",
        None,
        204,
    )
    .await;
    let topic = api
        .ok(Method::GET, "/streams/p/topics/t", None, 200)
        .await
        .json();
    assert_eq!(topic["partitions_count"], 2, "{topic}");
    api.ok(
        Method::DELETE,
        "/streams/p/topics/t/partitions/0?segments_count=1",
        None,
        204,
    )
    .await;
    let no_count = api
        .call(Method::DELETE, "/streams/p/topics/t/partitions", None)
        .await;
    no_count.iggy_error(400, 400);
    api.ok(Method::DELETE, "/streams/p", None, 204).await;
}

async fn messages_and_offsets(api: &Api) {
    api.ok(Method::POST, "/streams", Some(json!({"name": "m"})), 200)
        .await;
    api.ok(
        Method::POST,
        "/streams/m/topics",
        Some(topic_body("t", 2)),
        200,
    )
    .await;
    let one = B64.encode(1u32.to_le_bytes());
    let send = json!({
        "partitioning": {"kind": "partition_id", "value": one},
        "messages": [
            {"id": 7, "payload": b64("first")},
            {"id": "00000000-0000-0000-0000-00000000002a", "payload": b64("{\"n\":2}"),
             "user_headers": [{"key": {"kind": "string", "value": b64("k")},
                               "value": {"kind": "string", "value": b64("v")}}]},
            {"payload": b64("raw"), "user_headers": null},
        ]
    });
    let sent = api
        .ok(
            Method::POST,
            "/streams/m/topics/t/messages",
            Some(send),
            201,
        )
        .await;
    assert_eq!(sent.headers["iggy-durability"], "persisted");
    let confirmations = sent.json();
    assert_eq!(
        confirmations["confirmations"][0]["partition_id"], 1,
        "{confirmations}"
    );
    assert_eq!(
        confirmations["confirmations"][0]["base_offset"], 0,
        "{confirmations}"
    );
    let balanced = json!({"partitioning": {"kind": "balanced", "value": ""},
                          "messages": [{"payload": b64("b")}]});
    api.ok(
        Method::POST,
        "/streams/m/topics/t/messages",
        Some(balanced),
        201,
    )
    .await;

    let poll =
        "/streams/m/topics/t/messages?consumer_id=1&partition_id=1&kind=offset&value=0&count=10";
    let polled = api.ok(Method::GET, poll, None, 200).await.json();
    assert_eq!(
        (polled["partition_id"].as_u64(), polled["count"].as_u64()),
        (Some(1), Some(3))
    );
    let messages = polled["messages"].as_array().unwrap();
    assert_eq!(messages[0]["header"]["id"], 7);
    assert_eq!(messages[0]["payload"], b64("first"));
    assert_eq!(messages[1]["header"]["id"], 42, "a UUID id: {polled}");
    assert_eq!(messages[1]["user_headers"][0]["value"]["value"], b64("v"));
    for (kind, value, expected) in [("first", 0, 0), ("last", 0, 2), ("offset", 2, 2)] {
        let query = format!(
            "/streams/m/topics/t/messages?consumer_id=1&partition_id=1&kind={kind}&value={value}&count=1"
        );
        let polled = api.ok(Method::GET, &query, None, 200).await.json();
        assert_eq!(
            polled["messages"][0]["header"]["offset"], expected,
            "{kind}: {polled}"
        );
    }
    let future_us = (now_s() + 3600) * 1_000_000;
    let query = format!("/streams/m/topics/t/messages?consumer_id=1&partition_id=1&kind=timestamp&value={future_us}&count=5");
    let later = api.ok(Method::GET, &query, None, 200).await.json();
    assert_eq!(later["count"], 0, "{later}");
    api.call(
        Method::GET,
        "/streams/none/topics/t/messages?consumer_id=1",
        None,
    )
    .await
    .iggy_error(404, 404);
    let bad_query = api
        .call(Method::GET, "/streams/m/topics/t/messages?count=many", None)
        .await;
    bad_query.iggy_error(400, 400);

    // Offsets: auto-commit through a poll, explicit store, read, delete.
    let next = "/streams/m/topics/t/messages?consumer_id=9&partition_id=1&kind=next&count=2&auto_commit=true";
    api.ok(Method::GET, next, None, 200).await;
    let offset = api
        .ok(
            Method::GET,
            "/streams/m/topics/t/consumer-offsets?consumer_id=9&partition_id=1",
            None,
            200,
        )
        .await
        .json();
    assert_eq!(
        (
            offset["stored_offset"].as_u64(),
            offset["current_offset"].as_u64()
        ),
        (Some(1), Some(2))
    );
    let store = json!({"consumer_id": 9, "partition_id": 1, "offset": 2});
    api.ok(
        Method::PUT,
        "/streams/m/topics/t/consumer-offsets",
        Some(store),
        204,
    )
    .await;
    api.ok(
        Method::DELETE,
        "/streams/m/topics/t/consumer-offsets/9?partition_id=1",
        None,
        204,
    )
    .await;
    api.call(
        Method::GET,
        "/streams/m/topics/t/consumer-offsets?consumer_id=9&partition_id=1",
        None,
    )
    .await
    .iggy_error(404, 404);
    let past_end = json!({"consumer_id": 9, "partition_id": 1, "offset": 99});
    api.call(
        Method::PUT,
        "/streams/m/topics/t/consumer-offsets",
        Some(past_end),
    )
    .await
    .iggy_error(400, 4100);

    // Bad message bodies.
    let empty = json!({"partitioning": {"kind": "balanced", "value": ""}, "messages": []});
    api.call(Method::POST, "/streams/m/topics/t/messages", Some(empty))
        .await
        .iggy_error(400, 4009);
    let not_base64 = json!({"partitioning": {"kind": "balanced", "value": ""},
                            "messages": [{"payload": "***"}]});
    api.call(
        Method::POST,
        "/streams/m/topics/t/messages",
        Some(not_base64),
    )
    .await
    .iggy_error(422, 422);
    let no_partition = json!({"partitioning": {"kind": "partition_id", "value": B64.encode(9u32.to_le_bytes())},
                              "messages": [{"payload": b64("x")}]});
    let answer = api
        .call(
            Method::POST,
            "/streams/m/topics/t/messages",
            Some(no_partition),
        )
        .await;
    assert_eq!(answer.status, 404, "{}", answer.text);
}

async fn consumer_groups(api: &Api) {
    let path = "/streams/m/topics/t/consumer-groups";
    let group = api
        .ok(Method::POST, path, Some(json!({"name": "g"})), 200)
        .await
        .json();
    assert_eq!(
        (group["name"].as_str(), group["partitions_count"].as_u64()),
        (Some("g"), Some(2))
    );
    let groups = api.ok(Method::GET, path, None, 200).await.json();
    assert_eq!(groups.as_array().map(Vec::len), Some(1), "{groups}");
    let by_name = api
        .ok(Method::GET, &format!("{path}/g"), None, 200)
        .await
        .json();
    assert_eq!(by_name["members"], json!([]));
    let lag = api
        .ok(Method::GET, "/ui/api/groups/m/t/g", None, 200)
        .await
        .json();
    assert_eq!(lag["partitions"].as_array().map(Vec::len), Some(2), "{lag}");
    assert!(lag["partitions"][1]["lag"].as_u64().unwrap() >= 3, "{lag}");
    api.ok(Method::DELETE, &format!("{path}/g"), None, 204)
        .await;
    api.call(Method::GET, &format!("{path}/g"), None)
        .await
        .iggy_error(404, 404);
}

async fn system_routes(api: &Api, anonymous: &Api) {
    let stats = api.ok(Method::GET, "/stats", None, 200).await.json();
    assert!(stats["streams_count"].as_u64().unwrap() >= 1, "{stats}");
    let clients = api.ok(Method::GET, "/clients", None, 200).await.json();
    let first = clients[0]["client_id"].as_u64().expect("a client");
    let client = api
        .ok(Method::GET, &format!("/clients/{first}"), None, 200)
        .await
        .json();
    assert_eq!(client["client_id"], first, "{client}");
    api.call(Method::GET, "/clients/4000000000", None)
        .await
        .iggy_error(404, 404);
    api.call(Method::GET, "/clients/abc", None)
        .await
        .iggy_error(400, 400);
    let metadata = api
        .ok(Method::GET, "/cluster/metadata", None, 200)
        .await
        .json();
    assert!(
        metadata["nodes"][0]["endpoints"]["http"].as_u64().unwrap() > 0,
        "{metadata}"
    );
    let metrics = api.ok(Method::GET, "/metrics", None, 200).await;
    let samples =
        riptide_control::metrics::parse_exposition(&metrics.text).expect("Prometheus text");
    assert!(samples
        .iter()
        .any(|s| s.name == "http_requests_total" && s.value > 0.0));
    assert!(samples
        .iter()
        .any(|s| s.name == "riptide_dataplane_up" && s.value == 1.0));
    anonymous
        .call(Method::GET, "/metrics", None)
        .await
        .iggy_error(401, 77);
    anonymous
        .call(Method::GET, "/stats", None)
        .await
        .iggy_error(401, 77);
    snapshot_route(api, anonymous).await;
    let topic_keys = api
        .ok(Method::GET, "/options/topic", None, 200)
        .await
        .json();
    assert_eq!(topic_keys.as_array().map(Vec::len), Some(9), "{topic_keys}");
    api.call(Method::GET, "/options/partition", None)
        .await
        .iggy_error(400, 3);
}

/// `POST /snapshot` with Iggy's body answers the dataplane's zip as an attachment.
async fn snapshot_route(api: &Api, anonymous: &Api) {
    let response = api
        .http
        .post(format!("{}/snapshot", api.base))
        .bearer_auth(api.token.as_deref().expect("signed in"))
        .json(&json!({"compression": "Deflated", "snapshot_types": ["All"]}))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    let header = |name: &str| {
        response.headers()[name]
            .to_str()
            .expect("ASCII header")
            .to_string()
    };
    assert_eq!(header("content-type"), "application/zip");
    let disposition = header("content-disposition");
    assert!(
        disposition.starts_with("attachment; filename=\"iggy_snapshot_")
            && disposition.ends_with(".zip\""),
        "{disposition}"
    );
    let archive = response.bytes().await.expect("body");
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(archive)).expect("a zip");
    let mut names: Vec<String> = zip
        .file_names()
        .map(|name| name.expect("a UTF-8 name").to_string())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "filesystem_overview.txt",
            "process_list.txt",
            "resource_usage.txt",
            "server_config.txt",
            "server_logs.txt",
            "stats.json"
        ]
    );
    let mut listing = String::new();
    std::io::Read::read_to_string(
        &mut zip.by_name("filesystem_overview.txt").expect("entry"),
        &mut listing,
    )
    .expect("text");
    assert!(
        listing.lines().any(|line| line.contains("/partitions/")),
        "{listing}"
    );
    api.call(
        Method::POST,
        "/snapshot",
        Some(json!({"compression": "Stored", "snapshot_types": ["All", "Test"]})),
    )
    .await
    .iggy_error(400, 3);
    anonymous
        .call(
            Method::POST,
            "/snapshot",
            Some(json!({"compression": "Stored", "snapshot_types": ["Test"]})),
        )
        .await
        .iggy_error(401, 77);
}

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The session id a token names (the middle part is base64url JSON).
fn claims_of(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("JWT payload");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("claims")
}

#[test]
fn bad_input_tokens_sessions_and_many_clients() {
    let Some(appliance) = Appliance::start_with(
        &[(
            "RIPTIDE_HTTP_CORS_ALLOWED_ORIGINS",
            "https://console.example.com",
        )],
        None,
    ) else {
        return;
    };
    let secret_path = appliance.data_dir().join("http/jwt_secret");
    let mode = std::fs::metadata(&secret_path)
        .expect("secret kept")
        .permissions()
        .mode();
    assert_eq!(
        mode & 0o777,
        0o600,
        "the JWT secret is readable by its owner only"
    );
    let secret = std::fs::read_to_string(&secret_path).unwrap();
    run(&appliance, async {
        let anonymous = Api::new(&appliance);
        let (api, identity) = anonymous.login("iggy", "iggy").await;
        bad_bodies(&api).await;
        bad_tokens(&anonymous, &api, identity, secret.trim()).await;
        sessions_end(&anonymous).await;
        cors(&anonymous).await;
        console_routes(&anonymous, &api).await;
        many_clients(&anonymous).await;
        // The API still answers after all of it.
        api.ok(Method::GET, "/streams", None, 200).await;
    });
}

async fn bad_bodies(api: &Api) {
    let syntax = api.raw(Method::POST, "/streams", "{\"name\":", true).await;
    let body = syntax.iggy_error(400, 400);
    assert_eq!(body["code"], "invalid_format");
    api.raw(Method::POST, "/streams", "{\"nom\": 1}", true)
        .await
        .iggy_error(422, 422);
    api.raw(Method::POST, "/streams", "{\"name\": \"x\"}", false)
        .await
        .iggy_error(415, 415);
    // Over the 2 MB default limit: 413 in Iggy's shape, and the connection is closed.
    let big = format!("{{\"name\": \"{}\"}}", "x".repeat(3_000_000));
    let response = api
        .http
        .post(format!("{}/streams", api.base))
        .bearer_auth(api.token.as_deref().unwrap())
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .expect("oversized request answered");
    assert_eq!(response.status(), 413);
    assert_eq!(response.headers()["connection"], "close");
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        (body["id"].as_u64(), body["code"].as_str()),
        (Some(413), Some("payload_too_large"))
    );
    api.call(Method::GET, "/no/such/route", None)
        .await
        .iggy_error(404, 404);
    api.call(Method::PATCH, "/streams", None)
        .await
        .iggy_error(405, 405);
    let long_name = json!({"name": "n".repeat(300)});
    let answer = api.call(Method::POST, "/streams", Some(long_name)).await;
    assert_eq!(answer.status, 400, "{}", answer.text);
}

async fn bad_tokens(anonymous: &Api, api: &Api, identity: Value, secret: &str) {
    anonymous
        .call(Method::GET, "/streams", None)
        .await
        .iggy_error(401, 77);
    anonymous
        .with_token("not-a-token")
        .call(Method::GET, "/streams", None)
        .await
        .iggy_error(401, 40);
    anonymous
        .with_token("a.b.c")
        .call(Method::GET, "/streams", None)
        .await
        .iggy_error(401, 40);
    let token = identity["access_token"]["token"].as_str().unwrap();
    let mut tampered = token.to_string();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    anonymous
        .with_token(&tampered)
        .call(Method::GET, "/streams", None)
        .await
        .iggy_error(401, 40);
    // Signed with the kept secret, for the live session, but expired an hour ago.
    let sid = claims_of(token)["sid"].as_str().unwrap().to_string();
    let keys = riptide_control::http::jwt::JwtKeys::new(secret.as_bytes(), 3600, 5);
    let (expired, _) = keys.issue(0, &sid, now_s() - 7200).unwrap();
    anonymous
        .with_token(&expired)
        .call(Method::GET, "/streams", None)
        .await
        .iggy_error(401, 40);
    // Validly signed but naming no session: tokens alone are not credentials.
    let (orphan, _) = keys.issue(0, "no-such-session", now_s()).unwrap();
    anonymous
        .with_token(&orphan)
        .call(Method::GET, "/streams", None)
        .await
        .iggy_error(401, 40);
    let refreshed = anonymous
        .ok(
            Method::POST,
            "/users/refresh-token",
            Some(json!({"token": token})),
            200,
        )
        .await
        .json();
    let new_token = refreshed["access_token"]["token"].as_str().unwrap();
    assert_ne!(new_token, token);
    anonymous
        .with_token(new_token)
        .ok(Method::GET, "/streams", None, 200)
        .await;
    api.ok(Method::GET, "/streams", None, 200).await;
    anonymous
        .call(
            Method::POST,
            "/users/refresh-token",
            Some(json!({"token": expired})),
        )
        .await
        .iggy_error(401, 40);
    anonymous
        .call(
            Method::POST,
            "/users/login",
            Some(json!({"username": "iggy", "password": "nope"})),
        )
        .await
        .iggy_error(400, 42);
    anonymous
        .call(
            Method::POST,
            "/personal-access-tokens/login",
            Some(json!({"token": "bogus"})),
        )
        .await
        .iggy_error(401, 53);
}

async fn sessions_end(anonymous: &Api) {
    let (root, _) = anonymous.login("iggy", "iggy").await;
    let user = json!({"username": "bob", "password": "bob-pass", "status": "active",
                      "permissions": {"global": {"manage_servers": false, "read_servers": true,
                      "manage_users": false, "read_users": false, "manage_streams": false,
                      "read_streams": true, "manage_topics": false, "read_topics": true,
                      "poll_messages": false, "send_messages": false}, "streams": null}});
    let bob = root
        .ok(Method::POST, "/users", Some(user), 200)
        .await
        .json();
    let bob_id = bob["id"].as_u64().unwrap();
    let users = root.ok(Method::GET, "/users", None, 200).await.json();
    assert!(
        users
            .as_array()
            .unwrap()
            .iter()
            .any(|u| u["username"] == "bob"),
        "{users}"
    );
    let (bob_a, _) = anonymous.login("bob", "bob-pass").await;
    let (bob_b, _) = anonymous.login("bob", "bob-pass").await;
    let me = bob_a.ok(Method::GET, "/users/me", None, 200).await.json();
    assert_eq!(me["id"], bob_id, "{me}");
    // No right to create a stream: 403 with Iggy's Unauthorized (41).
    bob_a
        .call(Method::POST, "/streams", Some(json!({"name": "bobs"})))
        .await
        .iggy_error(403, 41);
    bob_a
        .call(Method::GET, "/users", None)
        .await
        .iggy_error(403, 41);
    // Bob changes his password: his other session ends, his own goes on.
    let change = json!({"current_password": "bob-pass", "new_password": "bob-new"});
    bob_a
        .ok(
            Method::PUT,
            &format!("/users/{bob_id}/password"),
            Some(change),
            204,
        )
        .await;
    bob_a.ok(Method::GET, "/streams", None, 200).await;
    bob_b
        .call(Method::GET, "/streams", None)
        .await
        .iggy_error(401, 40);
    // Logout ends the session at once.
    bob_a.ok(Method::DELETE, "/users/logout", None, 204).await;
    bob_a
        .call(Method::GET, "/streams", None)
        .await
        .iggy_error(401, 40);
    // Tokens: created, listed, logged in with, deleted.
    let (bob_c, _) = anonymous.login("bob", "bob-new").await;
    let token = bob_c
        .ok(
            Method::POST,
            "/personal-access-tokens",
            Some(json!({"name": "bob-ci", "expiry": u64::MAX})),
            200,
        )
        .await
        .json();
    let raw = token["token"].as_str().unwrap();
    let tokens = bob_c
        .ok(Method::GET, "/personal-access-tokens", None, 200)
        .await
        .json();
    assert_eq!(tokens[0]["name"], "bob-ci", "{tokens}");
    let identity = anonymous
        .ok(
            Method::POST,
            "/personal-access-tokens/login",
            Some(json!({"token": raw})),
            200,
        )
        .await
        .json();
    assert_eq!(identity["user_id"], bob_id);
    anonymous
        .with_token(raw)
        .ok(Method::GET, "/streams", None, 200)
        .await;
    bob_c
        .ok(Method::DELETE, "/personal-access-tokens/bob-ci", None, 204)
        .await;
    anonymous
        .with_token(raw)
        .call(Method::GET, "/streams", None)
        .await
        .iggy_error(401, 40);
    // Permissions and status changes, then deletion, by root.
    let perms = json!({"permissions": null});
    root.ok(
        Method::PUT,
        &format!("/users/{bob_id}/permissions"),
        Some(perms),
        204,
    )
    .await;
    bob_c
        .call(Method::GET, "/streams", None)
        .await
        .iggy_error(403, 41);
    root.ok(
        Method::PUT,
        &format!("/users/{bob_id}"),
        Some(json!({"status": "inactive"})),
        204,
    )
    .await;
    bob_c
        .call(Method::GET, "/streams", None)
        .await
        .iggy_error(401, 40);
    root.ok(Method::GET, &format!("/users/{bob_id}"), None, 200)
        .await;
    root.ok(Method::DELETE, &format!("/users/{bob_id}"), None, 204)
        .await;
    root.call(Method::GET, "/users/bob", None)
        .await
        .iggy_error(404, 404);
}

async fn cors(anonymous: &Api) {
    let preflight = |origin: &'static str| {
        anonymous
            .http
            .request(Method::OPTIONS, format!("{}/streams", anonymous.base))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization,content-type",
            )
            .send()
    };
    let allowed = preflight("https://console.example.com").await.unwrap();
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://console.example.com"
    );
    let other = preflight("https://evil.example").await.unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());
}

async fn console_routes(anonymous: &Api, api: &Api) {
    let page = anonymous.ok(Method::GET, "/ui", None, 200).await;
    assert!(page.text.contains("riptide console"));
    let csp = page.headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
        "{csp}"
    );
    for asset in ["/ui/app.js", "/ui/style.css"] {
        let answer = anonymous.ok(Method::GET, asset, None, 200).await;
        assert!(
            !answer.text.contains("http://") && !answer.text.contains("https://"),
            "{asset} loads nothing from elsewhere"
        );
    }
    anonymous
        .call(Method::GET, "/ui/api/overview", None)
        .await
        .iggy_error(401, 77);
    let overview = api
        .ok(Method::GET, "/ui/api/overview", None, 200)
        .await
        .json();
    assert_eq!(overview["status"]["mode"], "kernel", "{overview}");
    assert!(overview["samples"].is_array(), "{overview}");
    let config = api
        .ok(Method::GET, "/ui/api/config", None, 200)
        .await
        .json();
    assert_eq!(config["config"]["root"]["password"], "********");
    let change = api
        .call(
            Method::PUT,
            "/ui/api/config",
            Some(json!({"log.level": "debug"})),
        )
        .await;
    assert_eq!(change.status, 200, "{}", change.text);
    let refused = api
        .call(
            Method::PUT,
            "/ui/api/config",
            Some(json!({"tcp.address": "0.0.0.0:1"})),
        )
        .await;
    assert_eq!(refused.status, 409, "{}", refused.text);
    let steering = api
        .ok(Method::GET, "/ui/api/steering", None, 200)
        .await
        .json();
    assert!(steering["policy"].is_string(), "{steering}");
    // A user without read_servers sees none of it.
    let user = json!({"username": "carol", "password": "carol-pass", "status": "active", "permissions": null});
    let carol = api.ok(Method::POST, "/users", Some(user), 200).await.json();
    let (carol_api, _) = anonymous.login("carol", "carol-pass").await;
    carol_api
        .call(Method::GET, "/ui/api/overview", None)
        .await
        .iggy_error(403, 41);
    carol_api
        .call(
            Method::PUT,
            "/ui/api/config",
            Some(json!({"log.level": "info"})),
        )
        .await
        .iggy_error(403, 41);
    api.ok(
        Method::DELETE,
        &format!("/users/{}", carol["id"]),
        None,
        204,
    )
    .await;
}

/// 48 clients at once, each logging in and sending and polling on its own stream, with the
/// pool's per-user bound making most of them wait for a connection.
async fn many_clients(anonymous: &Api) {
    let (root, _) = anonymous.login("iggy", "iggy").await;
    root.ok(Method::POST, "/streams", Some(json!({"name": "busy"})), 200)
        .await;
    root.ok(
        Method::POST,
        "/streams/busy/topics",
        Some(topic_body("t", 4)),
        200,
    )
    .await;
    let mut tasks = Vec::new();
    for n in 0..48u32 {
        let anonymous = anonymous.clone();
        tasks.push(tokio::spawn(async move {
            let (api, _) = anonymous.login("iggy", "iggy").await;
            let partition = B64.encode((n % 4).to_le_bytes());
            for round in 0..3 {
                let send = json!({"partitioning": {"kind": "partition_id", "value": partition},
                                  "messages": [{"payload": B64.encode(format!("{n}-{round}"))}]});
                api.ok(
                    Method::POST,
                    "/streams/busy/topics/t/messages",
                    Some(send),
                    201,
                )
                .await;
                api.ok(Method::GET, "/streams/busy/topics/t", None, 200)
                    .await;
            }
        }));
    }
    for task in tasks {
        task.await.expect("a client task");
    }
    let topic = root
        .ok(Method::GET, "/streams/busy/topics/t", None, 200)
        .await
        .json();
    assert_eq!(
        topic["messages_count"], 144,
        "every acknowledged send is there: {topic}"
    );
}
