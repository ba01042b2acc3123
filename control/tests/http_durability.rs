//! An HTTP send has the durability of a TCP send: every send the API acknowledged (201) is there
//! after the dataplane is killed with SIGKILL and restarted by riptide-control, and the HTTP
//! session (held by the control process) outlives the dataplane.

mod common;

use base64::Engine as _;
use common::Appliance;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
const SENDS: usize = 20;
const MESSAGES_PER_SEND: usize = 10;

#[test]
fn acknowledged_http_sends_survive_a_dataplane_sigkill() {
    let Some(appliance) = Appliance::start() else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let http = reqwest::Client::new();
    let base = appliance.http_url();
    let token = runtime.block_on(async {
        let identity: Value = http
            .post(format!("{base}/users/login"))
            .json(&json!({"username": "iggy", "password": "iggy"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let token = identity["access_token"]["token"].as_str().unwrap().to_string();
        for (path, body) in [
            ("/streams", json!({"name": "durable"})),
            (
                "/streams/durable/topics",
                json!({"name": "t", "partitions_count": 1, "compression_algorithm": "none",
                       "message_expiry": 0, "max_topic_size": 0}),
            ),
        ] {
            let response = http
                .post(format!("{base}{path}"))
                .bearer_auth(&token)
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
        }
        for send in 0..SENDS {
            let messages: Vec<Value> = (0..MESSAGES_PER_SEND)
                .map(|i| json!({"payload": B64.encode(format!("m-{send}-{i}"))}))
                .collect();
            let body = json!({"partitioning": {"kind": "partition_id", "value": B64.encode(0u32.to_le_bytes())},
                              "messages": messages});
            let response = http
                .post(format!("{base}/streams/durable/topics/t/messages"))
                .bearer_auth(&token)
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 201, "send {send} acknowledged");
            assert_eq!(response.headers()["iggy-durability"], "persisted");
        }
        token
    });

    let pid = appliance.dataplane_pid();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("SIGKILL the dataplane");
    let deadline = Instant::now() + common::START_TIMEOUT;
    while appliance.status()["supervisor"]["pid"].as_i64() == Some(i64::from(pid))
        || appliance.status()["supervisor"]["state"] != "running"
    {
        assert!(
            Instant::now() < deadline,
            "no restart:\n{}",
            appliance.log()
        );
        std::thread::sleep(common::POLL_INTERVAL);
    }
    appliance.wait_healthy();

    let payloads: Vec<String> = runtime.block_on(async {
        let url = format!(
            "{base}/streams/durable/topics/t/messages?consumer_id=1&partition_id=0&kind=first&count=1000"
        );
        // The first request after the restart may still meet the old connections' end: the
        // session (in riptide-control) is the same, and a retry gets a fresh connection.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let response = http.get(&url).bearer_auth(&token).send().await.unwrap();
            let status = response.status();
            let text = response.text().await.unwrap();
            if status == 200 {
                let polled: Value = serde_json::from_str(&text).unwrap();
                break polled["messages"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|m| String::from_utf8(B64.decode(m["payload"].as_str().unwrap()).unwrap()).unwrap())
                    .collect();
            }
            assert_eq!(status, 503, "only the dataplane's absence may fail a poll: {text}");
            assert!(Instant::now() < deadline, "no poll after the restart: {text}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let expected: Vec<String> = (0..SENDS)
        .flat_map(|send| (0..MESSAGES_PER_SEND).map(move |i| format!("m-{send}-{i}")))
        .collect();
    assert_eq!(payloads, expected, "every acknowledged message, in order");
}
