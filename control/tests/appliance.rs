//! The control API and riptidectl against a running appliance: riptide-control starts the real
//! dataplane; every data-plane command goes through the official SDK inside riptidectl.

mod common;

use common::{http, stderr, stdout, Appliance};
use riptide_control::metrics::parse_exposition;
use serde_json::Value;
use std::time::{Duration, Instant};

fn exit_code(output: &std::process::Output) -> i32 {
    output.status.code().unwrap_or(-1)
}

#[test]
fn status_health_config_and_steering_answer_in_json() {
    let Some(appliance) = Appliance::start() else {
        return;
    };
    let status = appliance.ctl_json(&["status"]);
    assert_eq!(status["supervisor"]["state"], "running");
    assert_eq!(status["mode"], "kernel");
    assert_eq!(
        status["stats"]["workers"].as_array().map(Vec::len),
        Some(2),
        "{status}"
    );
    assert_eq!(
        status["stats"]["rings"].as_array().map(Vec::len),
        Some(2),
        "{status}"
    );
    assert_eq!(status["stats"]["tcp_address"], appliance.tcp_address());

    let (code, body) = http(&appliance.control, "GET", "/health", "").unwrap();
    assert_eq!(code, 200, "{body}");
    let config = appliance.ctl_json(&["config", "show"]);
    assert_eq!(
        config["config"]["root"]["password"], "********",
        "the password must not be shown"
    );
    assert_eq!(config["config"]["dataplane"]["network_workers"], 2);
    let toml_text = stdout(&appliance.ctl(&["config", "show", "--toml"]));
    assert!(toml_text.parse::<toml::Table>().is_ok(), "{toml_text}");
    let steering = appliance.ctl_json(&["steering", "show"]);
    assert_eq!(steering["policy"], "least_connections");
    assert!(steering["state"].is_string(), "{steering}");

    // The human table shows the same facts.
    let human = stdout(&appliance.ctl(&["status"]));
    assert!(
        human.contains("dataplane: running") && human.contains("ring occupancy"),
        "{human}"
    );
    let (code, _) = http(&appliance.control, "GET", "/nonexistent", "").unwrap();
    assert_eq!(code, 404);

    // Where the HTTP API and the console are, for the operator.
    let console = format!("{}/ui", appliance.http_url());
    assert!(
        human.contains(&format!("web console: {console}")),
        "{human}"
    );
    let located = appliance.ctl_json(&["http"]);
    assert_eq!(located["console_url"], console.as_str(), "{located}");
    assert_eq!(located["api_url"], appliance.http_url().as_str());
    let line = stdout(&appliance.ctl(&["console"]));
    assert!(line.contains(&console), "{line}");
    let (code, page) = http(&appliance.http_address(), "GET", "/ui", "").unwrap();
    assert!(code == 200 && page.contains("riptide console"), "{code}");
}

#[test]
fn streams_topics_and_partitions_are_managed_through_riptidectl() {
    let Some(appliance) = Appliance::start() else {
        return;
    };
    let created = appliance.ctl_json(&["stream", "create", "orders"]);
    assert_eq!(created["name"], "orders");
    let listed = appliance.ctl_json(&["stream", "list"]);
    assert_eq!(
        listed
            .as_array()
            .map(|a| a.iter().filter(|s| s["name"] == "orders").count()),
        Some(1),
        "{listed}"
    );

    let topic = appliance.ctl_json(&["topic", "create", "orders", "eu", "--partitions", "2"]);
    assert_eq!(topic["partitions_count"], 2, "{topic}");
    appliance.ctl_json(&["partition", "create", "orders", "eu", "--count", "1"]);
    let partitions = appliance.ctl_json(&["partition", "list", "orders", "eu"]);
    assert_eq!(partitions.as_array().map(Vec::len), Some(3), "{partitions}");
    appliance.ctl_json(&["partition", "delete", "orders", "eu", "--count", "1"]);
    let topic = appliance.ctl_json(&["topic", "get", "orders", "eu"]);
    assert_eq!(topic["partitions_count"], 2, "{topic}");
    let topics = appliance.ctl_json(&["topic", "list", "orders"]);
    assert_eq!(topics[0]["name"], "eu");

    appliance.ctl_json(&["stream", "update", "orders", "orders-v2"]);
    let renamed = appliance.ctl_json(&["stream", "get", "orders-v2"]);
    assert_eq!(renamed["topics_count"], 1, "{renamed}");
    appliance.ctl_json(&["topic", "delete", "orders-v2", "eu"]);
    appliance.ctl_json(&["stream", "delete", "orders-v2"]);

    let missing = appliance.ctl(&["stream", "get", "orders-v2"]);
    assert_eq!(
        exit_code(&missing),
        5,
        "not found is exit 5: {}",
        stderr(&missing)
    );
    let duplicate_name = appliance.ctl(&["stream", "create", "dup"]);
    assert!(duplicate_name.status.success());
    let again = appliance.ctl(&["stream", "create", "dup"]);
    assert_eq!(
        exit_code(&again),
        4,
        "a refused request is exit 4: {}",
        stderr(&again)
    );
}

#[test]
fn messages_round_trip_from_arguments_stdin_and_file() {
    let Some(appliance) = Appliance::start() else {
        return;
    };
    appliance.ctl_json(&["stream", "create", "s"]);
    appliance.ctl_json(&["topic", "create", "s", "t", "--partitions", "1"]);
    let sent = appliance.ctl_json(&[
        "message",
        "send",
        "s",
        "t",
        "--partition",
        "0",
        "one",
        "two",
    ]);
    assert_eq!(sent["sent"], 2);
    let from_stdin = appliance.ctl_with_stdin(
        &["message", "send", "s", "t", "--partition", "0"],
        Some(b"three\nfour\n"),
    );
    assert!(from_stdin.status.success(), "{}", stderr(&from_stdin));
    let binary: Vec<u8> = (0u8..=255).collect();
    let file = appliance.dir.path().join("blob.bin");
    std::fs::write(&file, &binary).unwrap();
    let file_arg = file.to_string_lossy().to_string();
    appliance.ctl_json(&[
        "message",
        "send",
        "s",
        "t",
        "--partition",
        "0",
        "--file",
        &file_arg,
        "--whole",
    ]);

    let polled = appliance.ctl_json(&[
        "message",
        "poll",
        "s",
        "t",
        "--partition",
        "0",
        "--count",
        "10",
    ]);
    let messages = polled["messages"].as_array().expect("messages");
    let payloads: Vec<&str> = messages
        .iter()
        .filter_map(|m| m["payload"].as_str())
        .collect();
    assert_eq!(payloads, vec!["one", "two", "three", "four"], "{polled}");
    let offsets: Vec<u64> = messages
        .iter()
        .filter_map(|m| m["offset"].as_u64())
        .collect();
    assert_eq!(offsets, vec![0, 1, 2, 3, 4]);
    use base64::Engine as _;
    let blob = base64::engine::general_purpose::STANDARD
        .decode(messages[4]["payload_base64"].as_str().unwrap())
        .unwrap();
    assert_eq!(blob, binary, "a binary payload comes back byte for byte");

    let raw = appliance.ctl(&[
        "message", "poll", "s", "t", "--offset", "1", "--count", "2", "--output", "raw",
    ]);
    assert_eq!(stdout(&raw), "two\nthree\n");
    let table = stdout(&appliance.ctl(&["message", "poll", "s", "t", "--last", "--count", "1"]));
    assert!(table.contains("offset"), "{table}");
}

fn sample_sum(samples: &[riptide_control::metrics::Sample], name: &str) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name)
        .map(|s| s.value)
        .sum()
}

#[test]
fn metrics_parse_as_prometheus_text_and_count_the_traffic() {
    let Some(appliance) = Appliance::start() else {
        return;
    };
    appliance.ctl_json(&["stream", "create", "m"]);
    appliance.ctl_json(&["topic", "create", "m", "t"]);
    appliance.ctl_json(&[
        "message",
        "send",
        "m",
        "t",
        "--partition",
        "0",
        "a",
        "b",
        "c",
    ]);
    // The snapshot is rewritten every 500 ms: wait until it shows the three messages.
    let deadline = Instant::now() + Duration::from_secs(20);
    let samples = loop {
        let (code, body) = http(&appliance.control, "GET", "/metrics", "").unwrap();
        assert_eq!(code, 200);
        let samples = parse_exposition(&body).unwrap_or_else(|e| panic!("{e}\n{body}"));
        if sample_sum(&samples, "riptide_messages_in_total") >= 3.0 {
            break samples;
        }
        assert!(Instant::now() < deadline, "messages never counted:\n{body}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(sample_sum(&samples, "riptide_dataplane_up"), 1.0);
    assert!(sample_sum(&samples, "riptide_bytes_in_total") > 0.0);
    assert!(sample_sum(&samples, "riptide_append_latency_seconds_count") >= 1.0);
    assert_eq!(sample_sum(&samples, "riptide_streams"), 1.0);
    let parsed = appliance.ctl_json(&["metrics"]);
    assert!(
        parsed.as_array().is_some_and(|a| !a.is_empty()),
        "riptidectl metrics --json parses the page"
    );
}

#[test]
fn live_changes_apply_and_others_ask_for_a_restart() {
    let Some(appliance) = Appliance::start() else {
        return;
    };
    let applied = appliance.ctl_json(&["config", "set", "log.level=debug", "steering.policy=hash"]);
    assert_eq!(
        applied["applied"].as_array().map(Vec::len),
        Some(2),
        "{applied}"
    );
    let live: toml::Table = std::fs::read_to_string(appliance.data_dir().join("runtime/live.toml"))
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(live["log"]["level"].as_str(), Some("debug"));
    assert_eq!(live["steering"]["policy"].as_str(), Some("hash"));
    let shown = appliance.ctl_json(&["config", "show"]);
    assert_eq!(shown["config"]["log"]["level"], "debug");

    let restart = appliance.ctl(&["config", "set", "tcp.address=127.0.0.1:1"]);
    assert_eq!(exit_code(&restart), 6, "{}", stderr(&restart));
    assert!(stderr(&restart).contains("tcp.address"));
    let invalid = appliance.ctl(&["config", "set", "retention.cleaner_interval_ms=0"]);
    assert_eq!(exit_code(&invalid), 78, "{}", stderr(&invalid));
    assert!(
        stderr(&invalid).contains("retention.cleaner_interval_ms"),
        "{}",
        stderr(&invalid)
    );
    // Straight HTTP: the same contract.
    let (code, body) = http(
        &appliance.control,
        "PUT",
        "/config",
        "[tcp]\naddress = \"127.0.0.1:1\"\n",
    )
    .unwrap();
    assert_eq!(code, 409, "{body}");
    let (code, body) = http(&appliance.control, "PUT", "/config", "not toml [").unwrap();
    assert_eq!(code, 400, "{body}");
}

fn wait_for(appliance: &Appliance, what: &str, condition: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = appliance.status();
        if condition(&status) {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "{what} never happened: {status}\n{}",
            appliance.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_killed_dataplane_comes_back_with_its_data() {
    let Some(appliance) = Appliance::start() else {
        return;
    };
    appliance.ctl_json(&["stream", "create", "durable"]);
    appliance.ctl_json(&["topic", "create", "durable", "t"]);
    appliance.ctl_json(&[
        "message",
        "send",
        "durable",
        "t",
        "--partition",
        "0",
        "kept-1",
        "kept-2",
    ]);
    let before = appliance.status();
    let pid = before["supervisor"]["pid"].as_i64().expect("pid") as i32;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();

    let after = wait_for(&appliance, "a restart", |s| {
        s["supervisor"]["restarts"] == 1
            && s["supervisor"]["state"] == "running"
            && s["supervisor"]["pid"].as_i64() != Some(i64::from(pid))
    });
    assert_eq!(
        after["supervisor"]["last_exit"]["kind"], "signaled",
        "{after}"
    );
    appliance.wait_healthy();
    // The new dataplane may take a moment to write its bound address.
    let deadline = Instant::now() + Duration::from_secs(30);
    let polled = loop {
        let output = appliance.ctl(&[
            "--json",
            "message",
            "poll",
            "durable",
            "t",
            "--partition",
            "0",
        ]);
        if output.status.success() {
            break serde_json::from_slice::<Value>(&output.stdout).unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "poll after restart failed: {}\n{}",
            stderr(&output),
            appliance.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let payloads: Vec<&str> = polled["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["payload"].as_str())
        .collect();
    assert_eq!(payloads, vec!["kept-1", "kept-2"]);
}

#[test]
fn down_stops_the_dataplane_cleanly_and_exits_zero() {
    let Some(mut appliance) = Appliance::start() else {
        return;
    };
    let pid = appliance.status()["supervisor"]["pid"]
        .as_i64()
        .expect("pid") as i32;
    let down = appliance.ctl(&["down"]);
    assert!(down.status.success(), "{}", stderr(&down));
    let status = appliance.wait_exit(Duration::from_secs(60));
    assert_eq!(status.code(), Some(0), "{}", appliance.log());
    let dataplane_alive = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z");
    assert!(!dataplane_alive, "the dataplane must be gone");
    let unreachable = appliance.ctl(&["status"]);
    assert_eq!(exit_code(&unreachable), 3, "{}", stderr(&unreachable));
}

#[test]
fn up_starts_in_the_background_and_contexts_select_the_appliance() {
    if !common::require(
        common::dataplane_bin().is_some(),
        "riptide-dataplane is not built",
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let control = format!("127.0.0.1:{port}");
    let config = dir.path().join("riptide.toml");
    std::fs::write(
        &config,
        format!(
            "[system]\npath = \"{}\"\n[tcp]\naddress = \"127.0.0.1:0\"\n[control]\naddress = \"{control}\"\n\
             [http]\naddress = \"127.0.0.1:0\"\n[dataplane]\nnetwork_workers = 1\nstorage_shards = 1\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let run = |args: &[&str]| {
        std::process::Command::new(common::ctl_bin())
            .args(args)
            .env("XDG_CONFIG_HOME", dir.path().join("xdg"))
            .env_remove("RIPTIDE_CONTROL")
            .env_remove("RIPTIDE_ADDRESS")
            .output()
            .unwrap()
    };
    let log = dir.path().join("control.log").to_string_lossy().to_string();
    let control_bin = common::control_bin().to_string_lossy().to_string();
    let dataplane_bin = common::dataplane_bin()
        .unwrap()
        .to_string_lossy()
        .to_string();
    let config_arg = config.to_string_lossy().to_string();
    let up = run(&[
        "--json",
        "up",
        "--config",
        &config_arg,
        "--control-bin",
        &control_bin,
        "--dataplane-bin",
        &dataplane_bin,
        "--log",
        &log,
    ]);
    assert!(
        up.status.success(),
        "{}{}",
        stderr(&up),
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let up_json: Value = serde_json::from_slice(&up.stdout).unwrap();
    assert_eq!(up_json["status"], "up");

    // A context file names the appliance; no flags, no environment.
    let tcp: toml::Table =
        std::fs::read_to_string(dir.path().join("data/runtime/current_config.toml"))
            .unwrap()
            .parse()
            .unwrap();
    let address = tcp["tcp"]["address"].as_str().unwrap();
    std::fs::create_dir_all(dir.path().join("xdg/riptide")).unwrap();
    std::fs::write(
        dir.path().join("xdg/riptide/contexts.toml"),
        format!("default = \"lab\"\n[contexts.lab]\naddress = \"{address}\"\ncontrol = \"{control}\"\n[contexts.elsewhere]\ncontrol = \"127.0.0.1:1\"\n"),
    )
    .unwrap();
    let status = run(&["--json", "status"]);
    assert!(status.status.success(), "{}", stderr(&status));
    let streams = run(&["--json", "stream", "list"]);
    assert!(streams.status.success(), "{}", stderr(&streams));
    let elsewhere = run(&["--context", "elsewhere", "status"]);
    assert_eq!(exit_code(&elsewhere), 3, "{}", stderr(&elsewhere));
    let unknown = run(&["--context", "nope", "status"]);
    assert_eq!(exit_code(&unknown), 2, "{}", stderr(&unknown));

    let down = run(&["down"]);
    assert!(down.status.success(), "{}", stderr(&down));
}

#[test]
fn a_bad_configuration_is_refused_with_the_key_named_and_nothing_started() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cases = [
        ("[storage]\nsegment_sise = 1\n", "storage.segment_sise"),
        ("[dataplane]\ncores = [4096]\n", "dataplane.cores"),
        ("[dataplane]\nbackend = \"dpdk\"\n[dpdk]\nvdevs = [\"net_af_packet0,iface=riptide-nosuch0\"]\nno_huge = true\n", "dpdk.vdevs"),
        ("[control]\naddress = \"nowhere\"\n", "control.address"),
    ];
    for (text, key) in cases {
        let config = dir.path().join("bad.toml");
        std::fs::write(
            &config,
            format!("[system]\npath = \"{}\"\n{text}", data.display()),
        )
        .unwrap();
        let started = Instant::now();
        let output = std::process::Command::new(common::control_bin())
            .arg("--config")
            .arg(&config)
            .arg("--dataplane-bin")
            .arg("/bin/false")
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(78), "{key}: {}", stderr(&output));
        assert!(
            stderr(&output).contains(key),
            "the error names `{key}`: {}",
            stderr(&output)
        );
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "refused at once, no restart loop"
        );
        assert!(
            !data.join("runtime/stats.json").exists(),
            "no dataplane was started"
        );

        let validate = std::process::Command::new(common::ctl_bin())
            .args(["config", "validate"])
            .arg(&config)
            .output()
            .unwrap();
        assert_eq!(validate.status.code(), Some(78));
        assert!(stderr(&validate).contains(key), "{}", stderr(&validate));
    }
    let good = dir.path().join("good.toml");
    std::fs::write(&good, format!("[system]\npath = \"{}\"\n", data.display())).unwrap();
    let validate = std::process::Command::new(common::ctl_bin())
        .args(["--json", "config", "validate"])
        .arg(&good)
        .output()
        .unwrap();
    assert!(validate.status.success(), "{}", stderr(&validate));
    let answer: Value = serde_json::from_slice(&validate.stdout).unwrap();
    assert_eq!(answer["valid"], true);
}

#[test]
fn shell_completions_are_generated() {
    for shell in ["bash", "zsh", "fish"] {
        let output = std::process::Command::new(common::ctl_bin())
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(output.status.success());
        let text = stdout(&output);
        assert!(
            text.contains("riptidectl") && text.contains("consumer-group"),
            "{shell}"
        );
    }
    let usage = std::process::Command::new(common::ctl_bin())
        .args(["stream", "frobnicate"])
        .output()
        .unwrap();
    assert_eq!(usage.status.code(), Some(2));
}

#[test]
fn an_unreachable_appliance_is_exit_code_3_for_both_planes() {
    let data_plane = std::process::Command::new(common::ctl_bin())
        .args(["--address", "127.0.0.1:1", "stream", "list"])
        .env_remove("RIPTIDE_CONTEXT")
        .output()
        .unwrap();
    assert_eq!(exit_code(&data_plane), 3, "{}", stderr(&data_plane));
    assert!(stderr(&data_plane).contains("127.0.0.1:1"));
    let control = std::process::Command::new(common::ctl_bin())
        .args(["--control", "127.0.0.1:1", "metrics"])
        .output()
        .unwrap();
    assert_eq!(exit_code(&control), 3, "{}", stderr(&control));
    assert!(
        stderr(&control).contains("riptidectl up"),
        "says what to do"
    );
}

#[test]
fn consumer_groups_and_users_are_managed_through_riptidectl() {
    let Some(appliance) = Appliance::start() else {
        return;
    };
    appliance.ctl_json(&["stream", "create", "g"]);
    appliance.ctl_json(&["topic", "create", "g", "t", "--partitions", "2"]);
    let group = appliance.ctl_json(&["consumer-group", "create", "g", "t", "workers"]);
    assert_eq!(group["name"], "workers", "{group}");
    let groups = appliance.ctl_json(&["consumer-group", "list", "g", "t"]);
    assert_eq!(groups.as_array().map(Vec::len), Some(1), "{groups}");
    let details = appliance.ctl_json(&["consumer-group", "get", "g", "t", "workers"]);
    assert_eq!(details["members_count"], 0, "{details}");
    appliance.ctl_json(&["consumer-group", "delete", "g", "t", "workers"]);
    let gone = appliance.ctl(&["consumer-group", "get", "g", "t", "workers"]);
    assert_eq!(exit_code(&gone), 5, "{}", stderr(&gone));

    let user = appliance.ctl_json(&["user", "create", "alice", "secret-pass"]);
    assert_eq!(user["username"], "alice", "{user}");
    let users = appliance.ctl_json(&["user", "list"]);
    let names: Vec<&str> = users
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|u| u["username"].as_str())
        .collect();
    assert!(
        names.contains(&"alice") && names.contains(&"iggy"),
        "{users}"
    );
    appliance.ctl_json(&["user", "update", "alice", "--status", "inactive"]);
    let alice = appliance.ctl_json(&["user", "get", "alice"]);
    assert_eq!(alice["status"], "inactive", "{alice}");
    appliance.ctl_json(&["user", "delete", "alice"]);
    let gone = appliance.ctl(&["user", "get", "alice"]);
    assert_eq!(exit_code(&gone), 5, "{}", stderr(&gone));
}

#[test]
fn topics_update_consumers_commit_offsets_and_purges_clear_messages() {
    let Some(appliance) = Appliance::start() else {
        return;
    };
    appliance.ctl_json(&["stream", "create", "p"]);
    appliance.ctl_json(&["topic", "create", "p", "t", "--partitions", "1"]);
    appliance.ctl_json(&[
        "message",
        "send",
        "p",
        "t",
        "--partition",
        "0",
        "a",
        "b",
        "c",
    ]);
    appliance.ctl_json(&[
        "topic",
        "update",
        "p",
        "t",
        "--name",
        "t2",
        "--message-expiry",
        "1h",
    ]);
    let topic = appliance.ctl_json(&["topic", "get", "p", "t2"]);
    assert_eq!(topic["message_expiry"], 3_600_000_000u64, "{topic}");

    // --next with --auto-commit resumes where the consumer stopped.
    let raw = |args: &[&str]| {
        stdout(&appliance.ctl(&[&["message", "poll", "p", "t2", "-o", "raw"], args].concat()))
    };
    assert_eq!(raw(&["--next", "--auto-commit", "-n", "2"]), "a\nb\n");
    assert_eq!(raw(&["--next", "--auto-commit", "-n", "2"]), "c\n");

    // DeleteSegments on every segment: whether the open segment goes too is the server's call
    // (reported to the lead), so only the command's success is checked here.
    let purged = appliance.ctl_json(&["partition", "purge", "p", "t2", "0"]);
    assert_eq!(purged["segments_deleted"], 1, "{purged}");
    appliance.ctl_json(&["message", "send", "p", "t2", "--partition", "0", "d"]);
    appliance.ctl_json(&["topic", "purge", "p", "t2"]);
    appliance.ctl_json(&["stream", "purge", "p"]);
    let stream = appliance.ctl_json(&["stream", "get", "p"]);
    assert_eq!(stream["messages_count"], 0, "{stream}");
}
