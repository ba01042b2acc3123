//! `iggy snapshot` against a real appliance: the iggy 0.11 SDK's `SystemClient::snapshot` gets a
//! zip whose entries are what they claim to be, in both compressions riptide builds; the codes
//! it refuses are iggy's.

mod common;

use anyhow::{ensure, Context};
use common::raw::RawConnection;
use common::*;
use iggy::prelude::*;
use std::collections::BTreeMap;
use std::io::Read;
use std::time::Duration;

const TEST_LIMIT: Duration = Duration::from_secs(60);
const GET_SNAPSHOT_FILE: u32 = 11;
const INVALID_COMMAND: u32 = 3;
const FEATURE_UNAVAILABLE: u32 = 5;
const UNAUTHENTICATED: u32 = 40;
const UNAUTHORIZED: u32 = 41;

/// The archive's entries by name, as text.
fn entries(archive: &[u8]) -> anyhow::Result<BTreeMap<String, String>> {
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(archive)).context("open the zip")?;
    let mut entries = BTreeMap::new();
    for index in 0..zip.len() {
        let mut file = zip.by_index(index)?;
        let mut text = String::new();
        file.read_to_string(&mut text)?;
        entries.insert(file.name()?.to_string(), text);
    }
    Ok(entries)
}

fn compression_of(archive: &[u8], name: &str) -> anyhow::Result<zip::CompressionMethod> {
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(archive))?;
    let method = zip.by_name(name)?.compression();
    Ok(method)
}

#[tokio::test]
async fn the_sdk_gets_every_entry_deflated_and_stored() {
    let server = Server::start().expect("server starts");
    bounded(TEST_LIMIT, async {
        let client = server.client().await?;
        client.create_stream("snap").await.sdk("create_stream")?;
        let options = TopicCreateOptions {
            partitions_count: Some(1),
            ..Default::default()
        };
        client
            .create_topic(&id(0), "t", &options)
            .await
            .sdk("create_topic")?;

        let archive = client
            .snapshot(SnapshotCompression::Deflated, vec![SystemSnapshotType::All])
            .await
            .sdk("snapshot all")?
            .0;
        let all = entries(&archive)?;
        let names: Vec<&str> = all.keys().map(String::as_str).collect();
        ensure!(
            names
                == [
                    "filesystem_overview.txt",
                    "process_list.txt",
                    "resource_usage.txt",
                    "server_config.txt",
                    "server_logs.txt",
                    "stats.json"
                ],
            "entries {names:?}"
        );
        ensure!(
            compression_of(&archive, "server_config.txt")? == zip::CompressionMethod::Deflated,
            "deflated entries"
        );

        let config: toml::Value =
            toml::from_str(&all["server_config.txt"]).context("the config entry is TOML")?;
        ensure!(
            config["system"]["path"].as_str() == server.data_path().to_str(),
            "the config names the data directory: {config:?}"
        );
        ensure!(
            config["tcp"]["address"].as_str() == Some(&server.address().to_string()),
            "the config shows the bound address"
        );
        ensure!(
            config["root"]["password"].as_str() != Some(ROOT_PASSWORD),
            "the root password is masked"
        );
        let stats: serde_json::Value =
            serde_json::from_str(&all["stats.json"]).context("stats.json is JSON")?;
        ensure!(stats.get("error").is_none(), "stats published: {stats}");
        ensure!(
            all["filesystem_overview.txt"]
                .lines()
                .any(|line| line.ends_with(" streams/0/topics/0/partitions/0")),
            "the partition's directory is listed:\n{}",
            all["filesystem_overview.txt"]
        );
        ensure!(
            all["process_list.txt"].contains(&format!("Pid:\t{}", server_pid(&server)?)),
            "the process list is the server's:\n{}",
            all["process_list.txt"]
        );
        ensure!(
            all["resource_usage.txt"].contains("user_cpu_s: "),
            "resource usage:\n{}",
            all["resource_usage.txt"]
        );
        // The test server's stderr goes to a file, so the entry holds its tail.
        ensure!(
            all["server_logs.txt"].contains("riptide is ready"),
            "server logs:\n{}",
            all["server_logs.txt"]
        );

        let stored = client
            .snapshot(
                SnapshotCompression::Stored,
                vec![SystemSnapshotType::Test, SystemSnapshotType::ServerConfig],
            )
            .await
            .sdk("snapshot stored")?
            .0;
        let two = entries(&stored)?;
        ensure!(
            two.keys().collect::<Vec<_>>() == ["server_config.txt", "test.txt"],
            "{:?}",
            two.keys()
        );
        ensure!(
            two["test.txt"] == "test\n",
            "test entry {:?}",
            two["test.txt"]
        );
        ensure!(
            compression_of(&stored, "server_config.txt")? == zip::CompressionMethod::Stored,
            "stored entries"
        );
        Ok(())
    })
    .await
    .expect("test body");
    server.finish().expect("server still healthy");
}

/// The pid of the test's server: the process whose data directory this is.
fn server_pid(server: &Server) -> anyhow::Result<u32> {
    let data = server
        .data_path()
        .to_str()
        .context("data path")?
        .to_string();
    for entry in std::fs::read_dir("/proc")?.filter_map(Result::ok) {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
        let names_data = |bytes: &[u8]| String::from_utf8_lossy(bytes).contains(&data);
        if String::from_utf8_lossy(&cmdline).contains("riptide-dataplane")
            && (names_data(&cmdline) || names_data(&environ))
        {
            return Ok(pid);
        }
    }
    anyhow::bail!("no riptide-dataplane process for {data}")
}

#[tokio::test]
async fn refusals_carry_iggys_codes() {
    let server = Server::start().expect("server starts");
    bounded(TEST_LIMIT, async {
        let root = server.client().await?;
        expect_code(
            root.snapshot(
                SnapshotCompression::Deflated,
                vec![SystemSnapshotType::All, SystemSnapshotType::Test],
            )
            .await,
            INVALID_COMMAND,
            "All next to another type",
        )?;
        expect_code(
            root.snapshot(SnapshotCompression::Zstd, vec![SystemSnapshotType::Test])
                .await,
            FEATURE_UNAVAILABLE,
            "a compression riptide does not build",
        )?;

        root.create_user("reader", "pw-reader", UserStatus::Active, None)
            .await
            .sdk("create_user")?;
        let reader = server.client_for("reader", "pw-reader").await?;
        expect_code(
            reader
                .snapshot(SnapshotCompression::Deflated, vec![SystemSnapshotType::All])
                .await,
            UNAUTHORIZED,
            "a user without read_servers",
        )?;
        let anonymous = server.anonymous_client().await?;
        expect_code(
            anonymous
                .snapshot(SnapshotCompression::Deflated, vec![SystemSnapshotType::All])
                .await,
            UNAUTHENTICATED,
            "no user signed in",
        )?;

        // Codes the SDK's enums cannot send: [compression][count][types].
        let mut connection = RawConnection::connect(server.address()).await?;
        connection.login_root().await?;
        for (body, what) in [
            (&[9u8, 1, 4][..], "unknown compression"),
            (&[2, 1, 42][..], "unknown type"),
            (&[2, 2, 4][..], "a type count longer than the body"),
        ] {
            let reply = connection.call(GET_SNAPSHOT_FILE, body).await?;
            ensure!(
                reply.is_reply() && reply.status() == INVALID_COMMAND,
                "{what}: {}",
                reply.describe()
            );
        }
        let reply = connection.call(GET_SNAPSHOT_FILE, &[1, 1, 4]).await?;
        ensure!(reply.status() == 0, "{}", reply.describe());
        ensure!(
            reply.body.starts_with(b"PK\x03\x04"),
            "a zip after the refusals"
        );
        Ok(())
    })
    .await
    .expect("test body");
    server.finish().expect("server still healthy");
}
