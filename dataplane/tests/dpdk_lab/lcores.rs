//! Two polling lcores on one port: the DPDK backend, started from riptide.toml's `[dpdk]` section
//! with three EAL lcores placed on the machine's two CPUs (`cpus = [0, 0, 1]`), serves many
//! concurrent `iggy` SDK clients over a veth with two queues. Each connection's frames must reach
//! the lcore owning its socket whichever queue they arrive on, and every lcore must learn the
//! client's MAC from ARP that arrived at one queue only.

use std::time::Duration;

use anyhow::{anyhow, Context};
use iggy::prelude::*;
use riptide_dataplane::net::dpdk::backend::{DpdkBackend, DpdkPlan, DpdkStats};
use riptide_dataplane::net::dpdk::eal::EalMemory;
use riptide_dataplane::net::dpdk::lcore::LcoreStatsSnapshot;

use super::{start_servers, VethLab};

const APPLIANCE_PORT: u16 = 8090;
const POLLING_LCORES: usize = 2;
const CLIENTS: u32 = 16;
const MESSAGES_PER_CLIENT: u32 = 40;

/// Runs the scenario over the port's virtual device `driver` (e.g. `net_af_packet`); the backend
/// adds the queue count. (DPDK 22.11's af_xdp PMD takes several queues only from a device with
/// combined channels, which a veth does not have.)
pub fn serve_sdk_clients_on_two_lcores(lab: &VethLab, driver: &str) {
    let data_dir = tempfile::tempdir().expect("data dir");
    let (servers, contexts) = start_servers(data_dir.path(), POLLING_LCORES);
    let shared = std::sync::Arc::clone(&servers.shared);

    let mut config = shared.config.clone();
    // The main lcore sleeps; the two polling lcores get a CPU each.
    config.dpdk.lcores = vec![0, 1, 2];
    config.dpdk.cpus = vec![0, 0, 1];
    config.dpdk.no_huge = true;
    config.dpdk.memory_mb = 256;
    config.dpdk.vdevs = vec![format!("{driver}0,iface={}", lab.dataplane_iface)];
    config.dpdk.ip_address = lab.appliance_ip.to_string();
    config.dpdk.prefix_len = lab.prefix_len;
    config.dpdk.port = APPLIANCE_PORT;
    config.dpdk.idle_backoff_us = 200;
    let mut plan = DpdkPlan::from_config(&config, data_dir.path()).expect("plan");
    plan.eal.file_prefix = format!("riptide-test-lcores-{}", std::process::id());
    plan.eal.memory = EalMemory::NoHuge { memory_mb: 256 };
    let backend = DpdkBackend::start(&plan, contexts).expect("DPDK backend");

    let address = format!("{}:{APPLIANCE_PORT}", lab.appliance_ip);
    let outcome = lab.in_namespace(|| clients_scenario(&address));
    let settled = outcome.as_ref().ok().map(|()| wait_until_settled(&backend));
    backend.stop().expect("stop the backend");
    servers.stop();
    outcome.expect("iggy SDK clients over two lcores");
    let stats = settled.expect("settled after the clients");
    println!("backend stats: {stats:#?}");
    check_both_lcores_served(&stats);
}

/// The counters once the clients are gone: every connection retired and every frame handed from
/// one lcore to another taken by it (frames still in a ring when the lcores stop are dropped).
fn wait_until_settled(backend: &DpdkBackend) -> DpdkStats {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let stats = backend.stats().expect("stats while running");
        let sum =
            |field: fn(&LcoreStatsSnapshot) -> u64| stats.lcores.iter().map(field).sum::<u64>();
        let retired = stats
            .lcores
            .iter()
            .all(|lcore| lcore.connections_active == 0);
        let handed_over = sum(|lcore| lcore.steered_out) + sum(|lcore| lcore.arp_copies);
        let taken = sum(|lcore| lcore.steered_in) + sum(|lcore| lcore.steer_dropped);
        let counted = sum(|lcore| lcore.rx_packets) == stats.port.rx_packets;
        if retired && handed_over == taken && counted {
            return stats;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the lcores did not settle: {stats:#?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Every lcore accepted connections and moved packets; every frame taken from a queue was
/// processed once, where its flow lives; nothing was dropped on the way between lcores.
fn check_both_lcores_served(stats: &DpdkStats) {
    assert_eq!(stats.lcores.len(), POLLING_LCORES);
    for (index, lcore) in stats.lcores.iter().enumerate() {
        assert!(
            lcore.connections_accepted > 0 && lcore.rx_packets + lcore.steered_in > 0,
            "lcore {index} served nothing: {lcore:?}"
        );
        assert!(
            lcore.tx_packets > 0,
            "lcore {index} sent nothing: {lcore:?}"
        );
        assert_eq!(lcore.steer_dropped, 0, "lcore {index}: {lcore:?}");
        assert_eq!(lcore.rx_dropped_segmented, 0, "lcore {index}: {lcore:?}");
    }
    let sum = |field: fn(&LcoreStatsSnapshot) -> u64| stats.lcores.iter().map(field).sum::<u64>();
    let accepted = sum(|lcore| lcore.connections_accepted);
    // The setup client plus one per producer-consumer client.
    assert_eq!(accepted, u64::from(CLIENTS) + 1);
    assert_eq!(sum(|lcore| lcore.rx_packets), stats.port.rx_packets);
    assert_eq!(
        sum(|lcore| lcore.steered_in),
        sum(|lcore| lcore.steered_out) + sum(|lcore| lcore.arp_copies)
    );
    // The client's ARP request reached one lcore and was shared with the other.
    assert!(sum(|lcore| lcore.arp_copies) > 0, "{stats:?}");
    // 17 flows spread by the client's kernel over two queues and by the flow hash over two
    // lcores: some frames arrive at the lcore that does not own their flow.
    assert!(sum(|lcore| lcore.steered_out) > 0, "{stats:?}");
}

fn clients_scenario(address: &str) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        tokio::time::timeout(Duration::from_secs(90), clients(address))
            .await
            .map_err(|_| anyhow!("the clients timed out"))?
    })
}

async fn connect(address: &str) -> anyhow::Result<IggyClient> {
    let connection = format!("iggy://iggy:iggy@{address}?reconnection_retries=2");
    let client = IggyClient::from_connection_string(&connection)?;
    client.connect().await.context("connect + login")?;
    Ok(client)
}

/// One client creates a stream with a partition per client; then every client, on its own
/// connection, sends its messages to its partition and polls them back.
async fn clients(address: &str) -> anyhow::Result<()> {
    let setup = connect(address).await?;
    let stream = setup
        .create_stream("lcores")
        .await
        .context("create_stream")?;
    let options = TopicCreateOptions {
        partitions_count: Some(CLIENTS),
        ..Default::default()
    };
    let stream_id = Identifier::numeric(stream.id)?;
    let topic = setup
        .create_topic(&stream_id, "t", &options)
        .await
        .context("create_topic")?;
    let topic_id = Identifier::numeric(topic.id)?;
    let mut tasks = tokio::task::JoinSet::new();
    for client_index in 0..CLIENTS {
        let (address, stream_id, topic_id) =
            (address.to_string(), stream_id.clone(), topic_id.clone());
        tasks.spawn(async move {
            produce_and_consume(&address, &stream_id, &topic_id, client_index).await
        });
    }
    while let Some(result) = tasks.join_next().await {
        result.context("client task")??;
    }
    setup.disconnect().await.context("disconnect")?;
    Ok(())
}

async fn produce_and_consume(
    address: &str,
    stream_id: &Identifier,
    topic_id: &Identifier,
    partition_id: u32,
) -> anyhow::Result<()> {
    let client = connect(address).await?;
    let payload = |index: u32| format!("client-{partition_id}-m-{index}");
    let partitioning = Partitioning::partition_id(partition_id);
    // Several sends per client, so every connection carries traffic both ways for a while.
    for round in 0..4 {
        let per_round = MESSAGES_PER_CLIENT / 4;
        let mut batch: Vec<IggyMessage> = (round * per_round..(round + 1) * per_round)
            .map(|index| IggyMessage::from(payload(index)))
            .collect();
        client
            .send_messages(stream_id, topic_id, &partitioning, &mut batch)
            .await
            .with_context(|| format!("client {partition_id}: send_messages"))?;
    }
    let consumer = Consumer::new(Identifier::numeric(partition_id + 1)?);
    let polled = client
        .poll_messages(
            stream_id,
            topic_id,
            Some(partition_id),
            &consumer,
            &PollingStrategy::offset(0),
            MESSAGES_PER_CLIENT,
            false,
        )
        .await
        .with_context(|| format!("client {partition_id}: poll_messages"))?;
    let payloads: Vec<String> = polled
        .messages
        .iter()
        .map(|message| String::from_utf8_lossy(&message.payload).into_owned())
        .collect();
    let expected: Vec<String> = (0..MESSAGES_PER_CLIENT).map(payload).collect();
    anyhow::ensure!(
        payloads == expected,
        "client {partition_id} polled {payloads:?}"
    );
    client.disconnect().await.context("disconnect")?;
    Ok(())
}
