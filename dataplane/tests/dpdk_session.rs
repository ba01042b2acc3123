//! The real session layer on a DPDK lcore: the official `iggy` 0.11 SDK, over the kernel's TCP
//! stack in another namespace, logs in, creates a stream and a topic, sends messages (confirmed by
//! a real storage shard) and polls them back, through `net_af_packet` and smoltcp, with the
//! backend started from riptide.toml's `[dpdk]` section.
//!
//! One #[test] per binary: DPDK's EAL can be initialised once per process.

#![cfg(feature = "dpdk")]

mod dpdk_lab;

use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{anyhow, Context};
use dpdk_lab::{lab_eal_config, prerequisites_met, start_servers, VethLab};
use iggy::prelude::*;
use riptide_dataplane::net::dpdk::backend::{DpdkBackend, DpdkPlan};

const APPLIANCE_PORT: u16 = 8090;
const MESSAGES: u32 = 50;

#[test]
fn dpdk_session_serves_the_iggy_sdk() {
    if !prerequisites_met("dpdk_session_serves_the_iggy_sdk") {
        return;
    }
    let lab = VethLab::create("ss", 43);
    let data_dir = tempfile::tempdir().expect("data dir");
    let (servers, contexts) = start_servers(data_dir.path(), 1);
    let shared = std::sync::Arc::clone(&servers.shared);

    let mut config = shared.config.clone();
    config.dpdk.lcores = lab_eal_config(String::new())
        .lcores
        .iter()
        .map(|&l| l as usize)
        .collect();
    config.dpdk.no_huge = true;
    config.dpdk.memory_mb = 256;
    config.dpdk.vdevs = vec![format!("net_af_packet0,iface={}", lab.dataplane_iface)];
    config.dpdk.ip_address = lab.appliance_ip.to_string();
    config.dpdk.prefix_len = lab.prefix_len;
    config.dpdk.port = APPLIANCE_PORT;
    config.dpdk.idle_backoff_us = 200;
    let mut plan = DpdkPlan::from_config(&config, data_dir.path()).expect("plan");
    plan.eal.file_prefix = format!("riptide-test-session-{}", std::process::id());
    plan.eal.memory = riptide_dataplane::net::dpdk::eal::EalMemory::NoHuge { memory_mb: 256 };
    let backend = DpdkBackend::start(&plan, contexts).expect("DPDK backend");

    let address = format!("{}:{APPLIANCE_PORT}", lab.appliance_ip);
    let outcome = lab.in_namespace(|| sdk_scenario(&address));
    let running = backend.stats().expect("stats while running");
    assert_eq!(running.lcores.len(), 1);
    let stats = backend.stop().expect("final stats");
    servers.stop();
    outcome.expect("iggy SDK scenario over DPDK");
    println!("backend stats: {stats:?}");
    let lcore = stats.lcores[0];
    assert!(lcore.connections_accepted >= 1, "{lcore:?}");
    assert_eq!(lcore.rx_packets, stats.port.rx_packets);
    assert!(stats.port.tx_packets > 0, "{stats:?}");
    let counters = &shared.worker_counters[0];
    assert!(
        counters.requests.load(Ordering::Relaxed) >= 6,
        "session counted no requests"
    );
}

fn sdk_scenario(address: &str) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        tokio::time::timeout(Duration::from_secs(60), sdk_steps(address))
            .await
            .map_err(|_| anyhow!("the SDK scenario timed out"))?
    })
}

async fn sdk_steps(address: &str) -> anyhow::Result<()> {
    let connection = format!("iggy://iggy:iggy@{address}?reconnection_retries=2");
    let client = IggyClient::from_connection_string(&connection)?;
    client
        .connect()
        .await
        .context("connect + login over DPDK")?;
    client.ping().await.context("ping")?;
    let stream = client
        .create_stream("dpdk")
        .await
        .context("create_stream")?;
    let options = TopicCreateOptions {
        partitions_count: Some(1),
        ..Default::default()
    };
    let stream_id = Identifier::numeric(stream.id)?;
    let topic = client
        .create_topic(&stream_id, "t", &options)
        .await
        .context("create_topic")?;
    let topic_id = Identifier::numeric(topic.id)?;
    let mut batch: Vec<IggyMessage> = (0..MESSAGES)
        .map(|index| IggyMessage::from(format!("m-{index}")))
        .collect();
    let partitioning = Partitioning::partition_id(0);
    client
        .send_messages(&stream_id, &topic_id, &partitioning, &mut batch)
        .await
        .context("send_messages")?;
    let consumer = Consumer::new(Identifier::numeric(1)?);
    let polled = client
        .poll_messages(
            &stream_id,
            &topic_id,
            Some(0),
            &consumer,
            &PollingStrategy::offset(0),
            MESSAGES,
            false,
        )
        .await
        .context("poll_messages")?;
    let payloads: Vec<String> = polled
        .messages
        .iter()
        .map(|message| String::from_utf8_lossy(&message.payload).into_owned())
        .collect();
    let expected: Vec<String> = (0..MESSAGES).map(|index| format!("m-{index}")).collect();
    anyhow::ensure!(payloads == expected, "polled {payloads:?}");
    client.disconnect().await.context("disconnect")?;
    Ok(())
}
