//! The DPDK appliance end to end: the real `riptide-dataplane` binary with `backend = "dpdk"`,
//! attached to the lab's veth end, serves the official `iggy` SDK and `riptide-bench` running in
//! the lab's namespace over the kernel's TCP stack. Used by `dpdk_appliance_af_xdp.rs` and
//! `dpdk_appliance_af_packet.rs`: one appliance process per test binary, its phases in turn.

#![allow(dead_code)] // Each binary uses its own attachment.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{ensure, Context};
use iggy::prelude::*;
use serde_json::Value;

use crate::common::scenarios::{
    self, all_stored_messages, check_after_restart, stream_and_topic, StoredMessage,
};
use crate::common::{bounded, id, ClientTls, Endpoint, Findings, Server};
use crate::dpdk_lab::{run, VethLab};
use riptide_config::stats::{stats_path, PortSnapshot, StatsSnapshot, STATS_PUBLISH_INTERVAL_MS};

/// Bound on one phase run from the lab's namespace (a hung appliance fails the test).
const PHASE_TIMEOUT: Duration = Duration::from_secs(60);
/// riptide-bench volume: 2 producers × 20 batches × 50 messages of 200 bytes, verified.
const BENCH_GLOBAL_ARGS: [&str; 7] = ["-m", "200", "-P", "50", "-b", "20", "--verify"];
const BENCH_MESSAGES: u64 = 2 * 20 * 50;
const BENCH_MESSAGE_BYTES: u64 = 200;
/// The lossy-wire phase drops one in this many frames the appliance sends, at random. (A
/// deterministic every-nth dropper can lock onto smoltcp's go-back-N retransmissions, which have
/// no SACK: the same hole is dropped on every round and a reply stalls for minutes.)
const LOSSY_WIRE_DROP_EVERY: u32 = 10;
/// The MTU of an Ethernet wire without jumbo frames, riptide's default.
pub const DEFAULT_MTU: u16 = 1500;
/// IPv4 and TCP headers without options: a TCP segment's payload is at most the MTU less these.
const IPV4_TCP_HEADERS_BYTES: u16 = 40;

/// How the appliance attaches to the lab's veth end.
#[derive(Debug, Clone, Copy)]
pub enum Attachment {
    /// `net_af_xdp`; the appliance adds riptide's XDP program (`xdp_steer.o`) itself.
    AfXdp,
    AfPacket,
}

/// The appliance process and the lab it is attached to.
pub struct DpdkAppliance<'lab> {
    pub lab: &'lab VethLab,
    pub attachment: Attachment,
    pub server: Server,
    /// `[tls]` appliances: how the SDK verifies them.
    pub tls: Option<&'static ClientTls>,
}

impl<'lab> DpdkAppliance<'lab> {
    /// Starts `riptide-dataplane` with `backend = "dpdk"` on the lab's dataplane end.
    pub fn start(lab: &'lab VethLab, attachment: Attachment) -> DpdkAppliance<'lab> {
        DpdkAppliance::start_with_mtu(lab, attachment, DEFAULT_MTU)
    }

    /// As [`DpdkAppliance::start`] with `[dpdk] mtu` (the lab's ends must take it).
    pub fn start_with_mtu(
        lab: &'lab VethLab,
        attachment: Attachment,
        mtu: u16,
    ) -> DpdkAppliance<'lab> {
        DpdkAppliance::start_with(lab, attachment, mtu, "", None)
    }

    /// As [`DpdkAppliance::start_with_mtu`] with more riptide.toml sections (`extra_toml`, e.g.
    /// `[tls]`) and the SDK's TLS options for it.
    pub fn start_with(
        lab: &'lab VethLab,
        attachment: Attachment,
        mtu: u16,
        extra_toml: &str,
        tls: Option<&'static ClientTls>,
    ) -> DpdkAppliance<'lab> {
        let config = format!("{}\n{extra_toml}", appliance_config(lab, attachment, mtu));
        let server = Server::start_with_config(Some(&config), &[])
            .unwrap_or_else(|error| panic!("the DPDK appliance did not start: {error:#}"));
        DpdkAppliance {
            lab,
            attachment,
            server,
            tls,
        }
    }

    pub fn endpoint(&self) -> Endpoint {
        Endpoint {
            tls: self.tls,
            ..self.server.endpoint()
        }
    }

    /// Runs an SDK phase on a thread inside the lab's namespace (the client side of the wire).
    pub fn in_lab<T, F>(&self, phase: impl FnOnce(Endpoint) -> F + Send) -> anyhow::Result<T>
    where
        F: Future<Output = anyhow::Result<T>>,
        T: Send,
    {
        in_lab(self.lab, self.endpoint(), phase)
    }

    /// A kernel TCP connection from the lab's namespace settles on segments of the MTU less the
    /// IPv4 and TCP headers: smoltcp announced the MSS of the appliance's MTU.
    pub fn negotiates_the_mss_of(&self, mtu: u16) {
        let address = self.endpoint().address;
        let mss = self.lab.in_namespace(move || {
            let stream = std::net::TcpStream::connect_timeout(&address, PHASE_TIMEOUT)
                .expect("connect to the appliance");
            let mut mss: libc::c_int = 0;
            let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
            // SAFETY: a connected socket; mss and len are writable and sized for TCP_MAXSEG.
            let result = unsafe {
                libc::getsockopt(
                    std::os::fd::AsRawFd::as_raw_fd(&stream),
                    libc::IPPROTO_TCP,
                    libc::TCP_MAXSEG,
                    (&mut mss as *mut libc::c_int).cast(),
                    &mut len,
                )
            };
            assert_eq!(result, 0, "TCP_MAXSEG: {}", std::io::Error::last_os_error());
            mss
        });
        assert_eq!(
            mss,
            libc::c_int::from(mtu - IPV4_TCP_HEADERS_BYTES),
            "the client's segment size towards an appliance of MTU {mtu}"
        );
    }

    /// The conformance suite's core scenarios, each over its own SDK connections.
    pub fn run_core_scenarios(&self) {
        let mut findings = Findings::default();
        findings.check(
            self.in_lab(|e| async move { scenarios::ping_login_by_password_and_logout(&e).await })
                .context("login"),
        );
        findings.check(
            self.in_lab(|e| async move {
                scenarios::send_messages_with_every_partitioning_confirms_offsets(&e).await
            })
            .context("send with confirmations"),
        );
        findings.check(
            self.in_lab(|e| async move {
                scenarios::poll_with_every_strategy_and_auto_commit(&e).await
            })
            .context("poll by every strategy"),
        );
        findings.check(
            self.in_lab(|e| async move { scenarios::consumer_offsets_store_get_delete(&e).await })
                .context("consumer offsets"),
        );
        findings.check(
            self.in_lab(|e| async move {
                scenarios::consumer_group_rebalances_on_join_leave_and_disconnect(&e).await
            })
            .context("consumer groups"),
        );
        if let Err(error) = findings.finish() {
            panic!("core scenarios over DPDK: {error:#}");
        }
    }

    /// `riptide-bench --verify`, pinned producers and consumers at once, then pinned producers
    /// and then pinned consumers with four requests in flight per connection: nothing lost.
    pub fn run_bench_verified(&self) {
        let both = self.bench(&[], &["ppc", "-p", "2", "-c", "2"]);
        check_bench_counts(&both, BENCH_MESSAGES, BENCH_MESSAGES);
        let pipelined = ["--inflight", "4"];
        let produced = self.bench(&pipelined, &["pp", "-p", "2"]);
        check_bench_counts(&produced, BENCH_MESSAGES, 0);
        let consumed = self.bench(&pipelined, &["pc", "-c", "2"]);
        check_bench_counts(&consumed, 0, BENCH_MESSAGES);
    }

    /// A lossy wire: the namespace's netfilter drops one in `LOSSY_WIRE_DROP_EVERY` frames the
    /// appliance sends, at random. `riptide-bench --verify` still loses and garbles nothing, and stats.json
    /// counts the userspace stack's retransmissions, on the port and on its queue.
    pub fn survives_a_lossy_wire(&self) {
        let retransmits_before = self.port_stats().0.tcp_retransmits;
        let nft = |args: &[&str]| {
            run(
                "ip",
                &[&["netns", "exec", &self.lab.namespace, "nft"], args].concat(),
            )
        };
        nft(&["add", "table", "ip", "riptide_lossy"]);
        let chain = "{ type filter hook prerouting priority -300; }";
        nft(&["add", "chain", "ip", "riptide_lossy", "in", chain]);
        let rule = format!(
            "ip saddr {} numgen random mod {LOSSY_WIRE_DROP_EVERY} == 0 drop",
            self.lab.appliance_ip
        );
        nft(&["add", "rule", "ip", "riptide_lossy", "in", &rule]);
        let both = self.bench(&[], &["ppc", "-p", "2", "-c", "2"]);
        nft(&["delete", "table", "ip", "riptide_lossy"]);
        check_bench_counts(&both, BENCH_MESSAGES, BENCH_MESSAGES);
        let (total, queue) = self.port_stats();
        assert!(
            total.tcp_retransmits > retransmits_before,
            "no retransmission counted after dropping one in {LOSSY_WIRE_DROP_EVERY} frames: {total:?}"
        );
        assert_eq!(total.tcp_retransmits, queue.tcp_retransmits, "{queue:?}");
    }

    /// The port's and queue 0's counters from stats.json, once it was rewritten.
    fn port_stats(&self) -> (PortSnapshot, PortSnapshot) {
        std::thread::sleep(Duration::from_millis(2 * STATS_PUBLISH_INTERVAL_MS));
        let path = stats_path(self.server.data_path());
        let text = std::fs::read_to_string(&path).expect("runtime/stats.json");
        let stats: StatsSnapshot = serde_json::from_str(&text).expect("stats.json parses");
        let entry = |queue| stats.ports.iter().find(|port| port.queue == queue).cloned();
        match (entry(None), entry(Some(0))) {
            (Some(total), Some(queue)) => (total, queue),
            _ => panic!("no port and queue 0 entries in stats.json: {text}"),
        }
    }

    /// Runs riptide-bench inside the lab's namespace; returns its results.json after checking
    /// its exit status.
    fn bench(&self, global_args: &[&str], bench_args: &[&str]) -> Value {
        let output_dir = tempfile::tempdir().expect("bench output dir");
        let address = self.endpoint().address.to_string();
        let output = Command::new("ip")
            .args(["netns", "exec", &self.lab.namespace])
            .arg(bench_binary())
            .args(BENCH_GLOBAL_ARGS)
            .args(global_args)
            .args(bench_args)
            .args(["tcp", "--server-address", &address, "output", "-o"])
            .arg(output_dir.path())
            .output()
            .expect("run riptide-bench");
        assert!(
            output.status.success(),
            "riptide-bench {bench_args:?} over DPDK failed ({}):\n{}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let json = std::fs::read(output_dir.path().join("results.json")).expect("results.json");
        serde_json::from_slice(&json).expect("results.json parses")
    }

    /// stats.json shows the DPDK port's traffic (at least the bench's payload each way), in total
    /// and on its one queue, and counts a connection that is open.
    pub fn check_port_stats(&self) {
        let path = stats_path(self.server.data_path());
        let (text, stats) = self
            .in_lab(|endpoint| async move {
                let _open = endpoint.client().await?;
                // Rewritten every STATS_PUBLISH_INTERVAL_MS: wait for one with the connection.
                tokio::time::sleep(Duration::from_millis(2 * STATS_PUBLISH_INTERVAL_MS)).await;
                let text = std::fs::read_to_string(&path).context("runtime/stats.json")?;
                let stats: StatsSnapshot = serde_json::from_str(&text)?;
                Ok((text, stats))
            })
            .expect("stats.json with a connection open");
        println!("stats.json ports: {:?}", stats.ports);
        assert_eq!(stats.mode, "dpdk", "{text}");
        let entry = |queue| stats.ports.iter().find(|port| port.queue == queue);
        let (Some(total), Some(queue)) = (entry(None), entry(Some(0))) else {
            panic!("no port and queue 0 entries in stats.json: {text}");
        };
        // ppc, then pp and pc: each direction carried at least two runs' payloads.
        let payload_bytes = 2 * BENCH_MESSAGES * BENCH_MESSAGE_BYTES;
        assert!(
            total.rx_bytes > payload_bytes && total.tx_bytes > payload_bytes,
            "{total:?}"
        );
        assert!(total.rx_packets > 0 && total.tx_packets > 0, "{total:?}");
        let traffic = |port: &PortSnapshot| {
            (
                port.rx_packets,
                port.rx_bytes,
                port.tx_packets,
                port.tx_bytes,
            )
        };
        assert_eq!(traffic(total), traffic(queue), "one queue carries it all");
        assert!(total.tcp_connections >= 1, "{total:?}");
        assert!(queue.tcp_connections >= 1, "{queue:?}");
        // One queue: its retransmissions are the port's.
        assert_eq!(total.tcp_retransmits, queue.tcp_retransmits, "{total:?}");
        match (self.attachment, &stats.xdp_counters) {
            (Attachment::AfXdp, Some(xdp)) => assert!(
                xdp.steered_tcp > total.rx_packets / 2 && xdp.steered_arp >= 1,
                "the XDP program's counters in stats.json: {xdp:?} against {total:?}"
            ),
            (Attachment::AfPacket, None) => {}
            (attachment, xdp) => panic!("{attachment:?} with XDP counters {xdp:?}: {text}"),
        }
    }

    /// A SIGTERM restart, then a SIGKILL and a start, on the same data directory: each time every
    /// message confirmed before is polled back byte for byte, by a new client and by one
    /// connected before (the SDK reconnects), and offsets, groups, users and tokens are kept.
    pub fn restarts_keep_everything(&mut self) {
        let (stored_sender, stored_receiver) = std::sync::mpsc::channel();
        let (restarted_sender, restarted_receiver) = tokio::sync::mpsc::unbounded_channel();
        let server = &mut self.server;
        let lab = self.lab;
        let endpoint = server.endpoint();
        let client_side = std::thread::scope(|scope| {
            let client_side = scope.spawn(move || {
                in_lab(lab, endpoint, |endpoint| {
                    client_side_of_restarts(endpoint, stored_sender, restarted_receiver)
                })
            });
            for stop in RESTARTS {
                let Ok(messages_count) = stored_receiver.recv() else {
                    break;
                };
                println!("{stop:?} of the DPDK appliance with {messages_count} messages stored");
                let stopped = match stop {
                    Stop::Sigterm => server.stop_gracefully(),
                    Stop::Sigkill => server.sigkill(),
                };
                stopped.unwrap_or_else(|error| panic!("{stop:?}: {error:#}"));
                // At the first attempt: nothing left behind may stand in the way.
                let restarted = server.start_again_once();
                restarted.unwrap_or_else(|error| panic!("start after {stop:?}: {error:#}"));
                let _ = restarted_sender.send(());
            }
            drop(restarted_sender);
            client_side.join().expect("client side of the restarts")
        });
        client_side.expect("everything confirmed before a restart is kept");
    }

    /// SIGTERM: the appliance must still be alive and exit cleanly.
    pub fn finish(self) {
        self.server
            .finish()
            .expect("the DPDK appliance stays up and stops on SIGTERM");
    }
}

/// Runs an SDK phase on a thread inside the lab's namespace with its own runtime.
fn in_lab<T, F>(
    lab: &VethLab,
    endpoint: Endpoint,
    phase: impl FnOnce(Endpoint) -> F + Send,
) -> anyhow::Result<T>
where
    F: Future<Output = anyhow::Result<T>>,
    T: Send,
{
    lab.in_namespace(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(bounded(PHASE_TIMEOUT, phase(endpoint)))
    })
}

/// How the appliance is stopped before a start on the same data directory.
#[derive(Debug, Clone, Copy)]
enum Stop {
    Sigterm,
    /// No chance to clean up: the PMD's XDP program stays attached, clients get no reset.
    Sigkill,
}

const RESTARTS: [Stop; 2] = [Stop::Sigterm, Stop::Sigkill];

/// Writes what a restart must keep, then before each restart reads everything back, tells the
/// main thread how much is stored and waits for the restart to check it all again. Producers
/// send during the SIGTERM: what is stored afterwards is exactly what they had confirmed.
async fn client_side_of_restarts(
    endpoint: Endpoint,
    stored: std::sync::mpsc::Sender<usize>,
    mut restarted: tokio::sync::mpsc::UnboundedReceiver<()>,
) -> anyhow::Result<()> {
    let stream_id = scenarios::write_what_a_restart_must_keep(&endpoint).await?;
    let survivor = endpoint.client().await?;
    let (producer_stream, producer_topic) =
        stream_and_topic(&survivor, "sent-during-stop", "t", 1).await?;
    let producer_partition = (producer_stream, producer_topic, 0);
    // check_after_restart appends one message each time.
    for (&restart, messages_count) in RESTARTS.iter().zip(13..) {
        let before = all_stored_messages(&survivor).await?;
        let producer = match restart {
            Stop::Sigterm => Some(start_producers(&endpoint, producer_partition).await?),
            Stop::Sigkill => None,
        };
        stored.send(before.len())?;
        restarted
            .recv()
            .await
            .with_context(|| format!("no start after {restart:?}"))?;
        let context = || format!("after {restart:?} and a start");
        let mut after = all_stored_messages(&survivor)
            .await
            .context("reads on a client connected before the restart (the SDK reconnects)")
            .with_context(context)?;
        let fresh = all_stored_messages(&endpoint.client().await?).await?;
        scenarios::ensure_same_messages(&after, &fresh).with_context(context)?;
        if let Some(producer) = producer {
            let confirmed = producer.await??;
            let mut stored = take_partition(&mut after, producer_partition);
            stored.sort();
            ensure!(
                stored == confirmed,
                "producers sending during the SIGTERM had {} messages confirmed, {} stored",
                confirmed.len(),
                stored.len()
            );
        }
        scenarios::ensure_same_messages(&before, &after).with_context(context)?;
        check_after_restart(&endpoint, stream_id, messages_count)
            .await
            .with_context(context)?;
    }
    Ok(())
}

/// Producers sending during the SIGTERM, so that some request is in flight when it lands.
const PRODUCERS: u32 = 4;
/// Batches one producer sends at most (the stop ends it much earlier).
const PRODUCER_BATCHES_MAX: u32 = 100_000;
/// The stop comes once the producers are under way.
const PRODUCER_CONFIRMED_BEFORE_STOP: usize = 8;

/// Producers sending one-message batches in lockstep, as the SDK does, until their connections
/// fail (the stop); returns once they are under way, with the task that yields every payload
/// they had confirmed, sorted.
async fn start_producers(
    endpoint: &Endpoint,
    partition: (u32, u32, u32),
) -> anyhow::Result<tokio::task::JoinHandle<anyhow::Result<Vec<Vec<u8>>>>> {
    let confirmed_count = Arc::new(AtomicUsize::new(0));
    let mut producers = Vec::new();
    for producer in 0..PRODUCERS {
        let client = endpoint.client().await?;
        let counter = Arc::clone(&confirmed_count);
        producers.push(tokio::spawn(produce_until_stopped(
            client, partition, producer, counter,
        )));
    }
    let all = tokio::spawn(async move {
        let mut confirmed = Vec::new();
        for producer in producers {
            confirmed.extend(producer.await??);
        }
        confirmed.sort();
        Ok(confirmed)
    });
    while confirmed_count.load(Ordering::Relaxed) < PRODUCER_CONFIRMED_BEFORE_STOP {
        ensure!(!all.is_finished(), "the producers stopped before the stop");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(all)
}

async fn produce_until_stopped(
    client: IggyClient,
    (stream_id, topic_id, partition_id): (u32, u32, u32),
    producer: u32,
    confirmed_count: Arc<AtomicUsize>,
) -> anyhow::Result<Vec<Vec<u8>>> {
    let mut confirmed = Vec::new();
    let partitioning = Partitioning::partition_id(partition_id);
    for index in 0..PRODUCER_BATCHES_MAX {
        let payload = format!("sent-during-stop-{producer}-{index}").into_bytes();
        let mut batch = vec![IggyMessage::from(payload.clone())];
        let sent = client
            .send_messages(&id(stream_id), &id(topic_id), &partitioning, &mut batch)
            .await;
        if sent.is_err() {
            return Ok(confirmed);
        }
        confirmed.push(payload);
        confirmed_count.fetch_add(1, Ordering::Relaxed);
    }
    anyhow::bail!("producer {producer} sent {PRODUCER_BATCHES_MAX} batches and was never stopped")
}

/// Removes the messages of one partition from `messages`; returns their payloads in order.
fn take_partition(messages: &mut Vec<StoredMessage>, location: (u32, u32, u32)) -> Vec<Vec<u8>> {
    let (taken, rest): (Vec<_>, Vec<_>) = std::mem::take(messages)
        .into_iter()
        .partition(|(at, _)| *at == location);
    *messages = rest;
    taken
        .into_iter()
        .map(|(_, message)| message.payload.to_vec())
        .collect()
}

/// The appliance's riptide.toml: DPDK on the first two CPUs without hugepages, the appliance's
/// own address in the lab's subnet on a port unique to this process (it names the EAL's files).
fn appliance_config(lab: &VethLab, attachment: Attachment, mtu: u16) -> String {
    let cores = core_affinity::get_core_ids().expect("CPU list");
    let lcores: Vec<String> = cores.iter().take(2).map(|c| c.id.to_string()).collect();
    let vdev = match attachment {
        Attachment::AfXdp => format!("net_af_xdp0,iface={}", lab.dataplane_iface),
        Attachment::AfPacket => format!("net_af_packet0,iface={}", lab.dataplane_iface),
    };
    let port = 20_000 + std::process::id() % 10_000;
    format!(
        "[dataplane]\nbackend = \"dpdk\"\n\n[dpdk]\nlcores = [{}]\nno_huge = true\nmemory_mb = 256\n\
         vdevs = [\"{vdev}\"]\nip_address = \"{}\"\nprefix_len = {}\nport = {port}\n\
         idle_backoff_us = 200\nmtu = {mtu}\n",
        lcores.join(", "),
        lab.appliance_ip,
        lab.prefix_len,
    )
}

/// An appliance asked for a larger MTU than its interface has does not start; its error names
/// the interface and the command that raises the MTU.
pub fn refuses_an_mtu_above_its_interfaces(lab: &VethLab, attachment: Attachment, mtu: u16) {
    let dir = tempfile::tempdir().expect("data directory");
    let config = format!(
        "[system]\npath = \"{}\"\n\n{}",
        dir.path().display(),
        appliance_config(lab, attachment, mtu)
    );
    let config_path = dir.path().join("riptide.toml");
    std::fs::write(&config_path, config).expect("write riptide.toml");
    let output = Command::new(env!("CARGO_BIN_EXE_riptide-dataplane"))
        .arg("--config")
        .arg(&config_path)
        .output()
        .expect("run riptide-dataplane");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let fix = format!("ip link set dev {} mtu {mtu}", lab.dataplane_iface);
    assert!(
        !output.status.success() && stderr.contains(&fix),
        "expected a start-up error naming `{fix}`, got {}:\n{stderr}",
        output.status
    );
}

/// riptide-bench beside the dataplane binary (scripts/test.sh builds every binary first).
fn bench_binary() -> PathBuf {
    let path = Path::new(env!("CARGO_BIN_EXE_riptide-dataplane")).with_file_name("riptide-bench");
    assert!(
        path.is_file(),
        "{} is missing: build it first (`cargo build -p riptide-bench`; scripts/test.sh builds \
         every binary before the tests)",
        path.display()
    );
    path
}

/// Messages sent and received as expected, and --verify found every message once, intact.
fn check_bench_counts(results: &Value, sent: u64, received: u64) {
    let check = || -> anyhow::Result<()> {
        ensure!(results["messages_sent"].as_u64() == Some(sent), "sent");
        ensure!(
            results["messages_received"].as_u64() == Some(received),
            "received"
        );
        if received > 0 {
            let verify = &results["verify"];
            ensure!(verify["mismatches"].as_u64() == Some(0), "mismatches");
            ensure!(
                verify["messages_unique"].as_u64() == Some(received),
                "unique"
            );
            ensure!(
                verify["messages_expected"].as_u64() == Some(received),
                "expected"
            );
        }
        Ok(())
    };
    if let Err(what) = check() {
        panic!(
            "riptide-bench over DPDK: {what} (expected {sent} sent, {received} received): \
             sent {}, received {}, verify {}",
            results["messages_sent"], results["messages_received"], results["verify"]
        );
    }
}
