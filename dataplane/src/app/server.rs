//! Start-up and shutdown of the appliance in kernel mode.
//!
//! Order matters: the metadata store is opened (and the root user created on first boot), the
//! storage shards open and recover their partitions, the listeners bind and steering attaches,
//! the network workers start, and only then is `runtime/current_config.toml` written — tools
//! treat that file as "ready". SIGTERM or SIGINT stops accepting, lets in-flight requests
//! finish, and makes every shard sync before the process exits.

use crate::app::stats::write_snapshot;
use crate::clock::now_us;
use crate::mesh::ring::{build_mesh, Mesh, ShardEndpoint, Waker, WorkerLinks};
use crate::mesh::shard_thread::{IdleWait, ShardThread, SHARD_AWAKE_AFTER_REQUEST_MS};
use crate::metadata::MetadataService;
use crate::net::kernel::{bind_listeners, KernelWorker};
use crate::session::shared::Shared;
use crate::session::tls::{TlsFiles, TlsServer};
use crate::session::{WorkerContext, WorkerCore};
use crate::shard::{storage_config, PartitionDirectory, ShardCore, ShardEnv};
use riptide_config::stats::{StatsSnapshot, STATS_PUBLISH_INTERVAL_MS};
use riptide_config::{Config, KtlsMode, SteeringPolicy};
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::path::Path;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Why the appliance could not start (each names what to do).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("data directory {path}: {source} (check system.path / IGGY_SYSTEM_PATH)")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error("metadata store: {0}")]
    Metadata(String),
    #[error("cannot listen on {address}: {source} (check tcp.address / IGGY_TCP_ADDRESS)")]
    Listen {
        address: String,
        source: std::io::Error,
    },
    #[error("storage shard {shard}: {message}")]
    Shard { shard: usize, message: String },
    /// A configuration the files or the host cannot serve (exit code EX_CONFIG).
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Other(String),
}

/// The network side of the appliance: kernel network workers, or the DPDK backend's lcores.
enum Frontend {
    Kernel {
        threads: Vec<std::thread::JoinHandle<()>>,
        wakers: Vec<Arc<crate::mesh::ring::Waker>>,
        /// Boxed: the loaded program's state is large and the enum is moved around.
        steering: Option<Box<riptide_ebpf::reuseport::ReuseportSteering>>,
    },
    #[cfg(feature = "dpdk")]
    Dpdk(Box<crate::net::dpdk::backend::DpdkBackend>),
}

impl Frontend {
    /// Stops taking connections and lets in-flight requests finish.
    fn stop(self) {
        match self {
            Frontend::Kernel {
                threads,
                wakers,
                steering,
            } => {
                for waker in &wakers {
                    waker.wake();
                }
                for thread in threads {
                    let _ = thread.join();
                }
                drop(steering);
            }
            #[cfg(feature = "dpdk")]
            Frontend::Dpdk(backend) => {
                if let Err(error) = (*backend).stop() {
                    tracing::warn!(%error, "DPDK backend did not stop cleanly");
                }
            }
        }
    }

    /// Switches the sk_reuseport policy (kernel mode with the program loaded).
    fn set_steering_policy(&mut self, policy: SteeringPolicy) -> Result<(), String> {
        match self {
            Frontend::Kernel {
                steering: Some(steering),
                ..
            } => steering
                .set_policy(ebpf_policy(policy))
                .map_err(|e| e.summary()),
            _ => Err("no sk_reuseport steering program is loaded".to_string()),
        }
    }

    /// What the sk_reuseport program reports (kernel mode with the program loaded).
    fn steering_counters(&self) -> Option<riptide_config::stats::SteeringSnapshot> {
        let Frontend::Kernel {
            steering: Some(steering),
            ..
        } = self
        else {
            return None;
        };
        let counters = steering.counters().ok()?;
        // The policy the program's config map holds, in riptide.toml's spelling.
        let policy = match counters.policy.unwrap_or_else(|| steering.policy()) {
            riptide_ebpf::reuseport::SteeringPolicy::Hash => "hash",
            riptide_ebpf::reuseport::SteeringPolicy::LeastConnections => "least_connections",
        };
        Some(riptide_config::stats::SteeringSnapshot {
            policy: policy.to_string(),
            selected: counters.selected,
            open_connections: counters.open_connections,
            select_failed: counters.select_failed,
        })
    }

    /// What riptide's XDP program counted (DPDK over net_af_xdp only).
    fn xdp_counters(&self) -> Option<riptide_config::stats::XdpSnapshot> {
        match self {
            Frontend::Kernel { .. } => None,
            #[cfg(feature = "dpdk")]
            Frontend::Dpdk(backend) => {
                backend
                    .xdp_counters()
                    .map(|counters| riptide_config::stats::XdpSnapshot {
                        steered_tcp: counters.steered_tcp,
                        steered_arp: counters.steered_arp,
                        passed: counters.passed,
                        dropped_no_socket: counters.dropped_no_socket,
                        dropped_redirect_failed: counters.dropped_redirect_failed,
                    })
            }
        }
    }

    /// Per-port packet counters (DPDK only).
    fn ports(&self) -> Vec<riptide_config::stats::PortSnapshot> {
        match self {
            Frontend::Kernel { .. } => Vec::new(),
            #[cfg(feature = "dpdk")]
            Frontend::Dpdk(backend) => backend
                .stats()
                .map(|stats| dpdk_ports(&stats))
                .unwrap_or_default(),
        }
    }
}

/// The configured backend's polling threads: network workers, or DPDK polling lcores.
fn frontend_threads(config: &Config) -> Result<usize, StartError> {
    match config.dataplane.backend {
        riptide_config::Backend::Kernel => Ok(config.network_workers()),
        #[cfg(feature = "dpdk")]
        riptide_config::Backend::Dpdk => Ok(config.dpdk.lcores.len().saturating_sub(1).max(1)),
        #[cfg(not(feature = "dpdk"))]
        riptide_config::Backend::Dpdk => Err(StartError::Other(
            "dataplane.backend = \"dpdk\" needs a build with the `dpdk` feature".to_string(),
        )),
    }
}

/// Runs the appliance until SIGTERM/SIGINT.
///
/// # Errors
/// A [`StartError`] when start-up fails; nothing is left running then.
pub fn run(config: Config) -> Result<(), StartError> {
    let signals = block_termination_signals()?;
    let workers = frontend_threads(&config)?;
    let (servers, worker_links) = Servers::start(&config, workers)?;
    let shared = Arc::clone(&servers.shared);
    let cores = servers.cores.clone();
    let started = match config.dataplane.backend {
        riptide_config::Backend::Kernel => start_kernel(&shared, worker_links, &cores[..workers]),
        #[cfg(feature = "dpdk")]
        riptide_config::Backend::Dpdk => start_dpdk(&shared, worker_links),
        #[cfg(not(feature = "dpdk"))]
        riptide_config::Backend::Dpdk => unreachable!("refused by frontend_threads"),
    };
    let (frontend, bound, label) = match started {
        Ok(started) => started,
        Err(error) => {
            servers.stop();
            return Err(error);
        }
    };
    shared.set_bound_address(bound);
    let data_dir = &config.system.path;
    write_current_config(data_dir, bound, &config)?;
    tracing::info!(address = %bound, workers, shards = shared.shards(), steering = %label, data = %data_dir.display(), "riptide is ready");

    let mut frontend = frontend;
    wait_for_signal(&shared, &signals, &cores, &label, &mut frontend);
    tracing::info!("shutting down: draining connections and syncing storage");
    shared.lifecycle.request_shutdown();
    frontend.stop();
    servers.stop();
    tracing::info!("riptide stopped");
    Ok(())
}

/// Everything behind the network threads: the shared state, the metadata service (or, in
/// cluster mode, the cluster node), the storage shards with their partitions open, and the
/// batch-buffer refill thread.
pub struct Servers {
    pub shared: Arc<Shared>,
    /// The core each thread is pinned to: the network threads first, then the shards.
    pub cores: Vec<Option<usize>>,
    metadata_thread: Option<std::thread::JoinHandle<()>>,
    metadata_waker: Arc<Waker>,
    shard_threads: Vec<std::thread::JoinHandle<()>>,
    shard_wakers: Vec<Arc<Waker>>,
    refill_thread: Option<std::thread::JoinHandle<()>>,
}

/// How the metadata is served: by a single node's store, or by a cluster.
enum MetadataServer {
    Single(MetadataService),
    Cluster {
        checkpoint: crate::cluster::state_machine::Checkpoint,
        catalog: riptide_storage::metadata::Catalog,
    },
}

impl Servers {
    /// Opens the metadata store (creating the root user on first boot) or, in cluster mode, the
    /// node's checkpoint; builds the rings for `workers` network threads; starts the shards,
    /// each having recovered its partitions, and then the metadata service or cluster node.
    /// Returns each network thread's links.
    ///
    /// # Errors
    /// A [`StartError`]; nothing is left running then.
    pub fn start(
        config: &Config,
        workers: usize,
    ) -> Result<(Servers, Vec<WorkerLinks>), StartError> {
        let data_dir = &config.system.path;
        // Each new directory's name is synced into its parent: on a fresh data directory a power
        // cut must not take it (and `metadata/` in it: every stream, topic and user) away.
        for dir in [data_dir.clone(), data_dir.join("runtime")] {
            riptide_storage::io::create_dir_all_durable(&dir).map_err(|source| {
                StartError::DataDir {
                    path: dir.display().to_string(),
                    source,
                }
            })?;
        }
        let shards = config.storage_shards();
        let directory = Arc::new(PartitionDirectory::new(data_dir, shards));
        let (server, catalog_view, cluster_view) = open_metadata(config, &directory)?;
        remove_unnamed_partitions(&directory, &catalog_view.load())?;
        let mut shared = Shared::new(config.clone(), catalog_view, directory, workers, now_us());
        shared.cluster = cluster_view;
        shared.tls = tls_server(config)?;
        let clients = usize::from(matches!(server, MetadataServer::Cluster { .. }));
        let mesh = build_mesh(workers, shards, clients, config.dataplane.ring_capacity)
            .map_err(|e| StartError::Other(format!("eventfd: {e}")))?;
        let mut servers = Servers {
            cores: pin_plan(config, workers + shards),
            metadata_thread: None,
            metadata_waker: Arc::clone(&mesh.metadata_waker),
            shard_threads: Vec::new(),
            shard_wakers: mesh.shard_wakers.clone(),
            refill_thread: None,
            shared: Arc::new(shared),
        };
        match servers.start_threads(server, mesh, workers) {
            Ok(links) => Ok((servers, links)),
            Err(error) => {
                servers.stop();
                Err(error)
            }
        }
    }

    fn start_threads(
        &mut self,
        server: MetadataServer,
        mut mesh: Mesh,
        workers: usize,
    ) -> Result<Vec<WorkerLinks>, StartError> {
        let shared = Arc::clone(&self.shared);
        self.refill_thread = Some(start_buffer_refill(&shared)?);
        let shard_threads = start_shards(
            &shared,
            std::mem::take(&mut mesh.shards),
            &mesh.shard_wakers,
            &self.cores[workers..],
        );
        // Started shards are joined by `stop` even when a later one failed.
        match shard_threads {
            Ok(threads) => self.shard_threads = threads,
            Err((threads, error)) => {
                self.shard_threads = threads;
                return Err(error);
            }
        }
        let endpoints = std::mem::take(&mut mesh.metadata);
        let lifecycle = Arc::clone(&shared.lifecycle);
        let waker = Arc::clone(&mesh.metadata_waker);
        let run: Box<dyn FnOnce() + Send> = match server {
            MetadataServer::Single(service) => Box::new(move || {
                crate::mesh::metadata_thread::run(service, endpoints, &waker, &lifecycle)
            }),
            MetadataServer::Cluster {
                checkpoint,
                catalog,
            } => {
                let client = mesh.shard_clients.pop().ok_or_else(|| {
                    StartError::Other("no shard links for the cluster thread".to_string())
                })?;
                let parts = crate::cluster::node::NodeParts {
                    config: shared.config.clone(),
                    directory: Arc::clone(&shared.directory),
                    catalog_view: Arc::clone(&shared.catalog),
                    cluster_view: shared.cluster.clone().ok_or_else(|| {
                        StartError::Other("cluster mode without a cluster view".to_string())
                    })?,
                    lifecycle,
                    endpoints,
                    requests_waker: waker,
                    shard_links: client.shards,
                    replies_waker: client.waker,
                    checkpoint,
                    catalog,
                };
                Box::new(move || crate::cluster::node::run(parts))
            }
        };
        let thread = std::thread::Builder::new()
            .name("riptide-metadata".to_string())
            .spawn(run)
            .map_err(|e| StartError::Other(format!("spawn metadata thread: {e}")))?;
        self.metadata_thread = Some(thread);
        Ok(mesh.workers)
    }

    /// Stops them (after every network thread stopped, so nothing can send them requests any
    /// more): the metadata thread first (a cluster node may still apply to the shards), then the
    /// shards, each syncing its partitions.
    pub fn stop(self) {
        let lifecycle = &self.shared.lifecycle;
        lifecycle.request_shutdown();
        lifecycle.request_metadata_stop();
        self.metadata_waker.wake();
        if let Some(thread) = self.metadata_thread {
            let _ = thread.join();
        }
        lifecycle.request_shards_stop();
        for waker in &self.shard_wakers {
            waker.wake();
        }
        for thread in self.shard_threads.into_iter().chain(self.refill_thread) {
            let _ = thread.join();
        }
    }
}

/// The metadata as this node serves it: a single node's store, or a cluster node's checkpoint
/// (the catalog the shards open their partitions from; the node then replays its log).
type OpenedMetadata = (
    MetadataServer,
    Arc<crate::metadata::CatalogView>,
    Option<Arc<crate::cluster::ClusterView>>,
);

fn open_metadata(
    config: &Config,
    directory: &Arc<PartitionDirectory>,
) -> Result<OpenedMetadata, StartError> {
    let data_dir = &config.system.path;
    if !config.cluster.enabled {
        let service = MetadataService::open(config, data_dir, Arc::clone(directory))
            .map_err(|e| StartError::Metadata(e.to_string()))?;
        let view = service.view();
        return Ok((MetadataServer::Single(service), view, None));
    }
    let (checkpoint, catalog) =
        crate::cluster::state_machine::load_checkpoint(&data_dir.join("raft"))
            .map_err(StartError::Metadata)?;
    let view = Arc::new(crate::metadata::CatalogView::new(catalog.clone()));
    let status = riptide_config::cluster::ClusterStatus {
        node_id: config.cluster.node_id,
        ..Default::default()
    };
    let cluster = Arc::new(crate::cluster::ClusterView::new(
        config.cluster.node_id,
        status,
    ));
    Ok((
        MetadataServer::Cluster {
            checkpoint,
            catalog,
        },
        view,
        Some(cluster),
    ))
}

/// Removes the partition directories a deletion left behind when a crash or power cut came
/// between its durable metadata change and the removal of its directory (see
/// `PartitionDirectory::remove_unnamed`), before any shard opens a partition. `catalog` is
/// what this node recovered: the metadata store's, or in a cluster the checkpoint's (a
/// partition created after the checkpoint is created again, empty, when its command is
/// applied again, and its batches with it: the Raft log holds every command after the
/// checkpoint).
fn remove_unnamed_partitions(
    directory: &PartitionDirectory,
    catalog: &riptide_storage::metadata::Catalog,
) -> Result<(), StartError> {
    let removed = directory
        .remove_unnamed(catalog)
        .map_err(|(path, source)| StartError::DataDir {
            path: path.display().to_string(),
            source,
        })?;
    for dir in removed {
        tracing::warn!(dir = %dir.display(), "removed a stream, topic or partition directory the metadata does not name (its deletion was cut short by a crash or power loss)");
    }
    Ok(())
}

/// `[tls]` enabled: the certificate files read and checked, and whether kTLS takes the record
/// layer after handshakes (kernel mode, probed once here).
///
/// # Errors
/// [`StartError::Config`] naming the key of a file at fault, or `tls.ktls = "on"` on a kernel
/// without kTLS.
fn tls_server(config: &Config) -> Result<Option<Arc<TlsServer>>, StartError> {
    if !config.tls.enabled {
        return Ok(None);
    }
    let ktls = match (config.dataplane.backend, config.tls.ktls) {
        (_, KtlsMode::Off) => false,
        (riptide_config::Backend::Dpdk, KtlsMode::On) => {
            return Err(StartError::Config(
                "configuration key `tls.ktls`: \"on\" needs kernel mode (dpdk mode has no kernel \
                 socket to hand the record layer to); use \"auto\" or \"off\""
                    .to_string(),
            ))
        }
        (riptide_config::Backend::Dpdk, KtlsMode::Auto) => false,
        (riptide_config::Backend::Kernel, mode) => {
            match crate::net::ktls::probe() {
                Ok(()) => true,
                Err(reason) if mode == KtlsMode::On => {
                    return Err(StartError::Config(format!(
                        "configuration key `tls.ktls`: \"on\" but kTLS is unavailable: {reason}; \
                     set tls.ktls = \"auto\" or \"off\" to encrypt in userspace"
                    )))
                }
                Err(reason) => {
                    tracing::warn!("kTLS unavailable, TLS records are encrypted by rustls in userspace: {reason}");
                    false
                }
            }
        }
    };
    let server = TlsServer::new(TlsFiles::from_config(&config.tls), ktls)
        .map_err(|e| StartError::Config(e.to_string()))?;
    tracing::info!(
        cert_file = %config.tls.cert_file.display(),
        mutual = config.tls.mutual(),
        ktls,
        "TLS 1.3 on the binary protocol"
    );
    Ok(Some(Arc::new(server)))
}

/// Kernel mode: SO_REUSEPORT listeners, the sk_reuseport steering program, io_uring network
/// threads.
fn start_kernel(
    shared: &Arc<Shared>,
    links: Vec<WorkerLinks>,
    cores: &[Option<usize>],
) -> Result<(Frontend, SocketAddr, String), StartError> {
    let config = &shared.config;
    let address = config
        .tcp_address()
        .map_err(|e| StartError::Other(e.to_string()))?;
    let listeners = bind_listeners(address, links.len()).map_err(|source| StartError::Listen {
        address: config.tcp.address.clone(),
        source,
    })?;
    let bound = listeners[0]
        .local_addr()
        .map_err(|e| StartError::Other(e.to_string()))?;
    let steering = attach_steering(config, &listeners);
    let counter = steering
        .as_ref()
        .map(riptide_ebpf::reuseport::ReuseportSteering::connection_counter);
    let label = steering
        .as_ref()
        .map_or("so_reuseport_hash".to_string(), |s| {
            format!("ebpf_{}", s.policy())
        });
    let wakers = links.iter().map(|l| Arc::clone(&l.waker)).collect();
    let threads = start_workers(shared, listeners, links, cores, counter)?;
    Ok((
        Frontend::Kernel {
            threads,
            wakers,
            steering: steering.map(Box::new),
        },
        bound,
        label,
    ))
}

/// The worker core of network thread `index`, reckoning wall-clock time from now.
fn worker_core(shared: &Arc<Shared>, index: usize, links: WorkerLinks) -> WorkerCore {
    let anchor = (Instant::now(), now_us());
    WorkerCore::new(WorkerContext::new(index, Arc::clone(shared), links, anchor))
}

/// Starts the network threads; each builds its io_uring inside its own thread.
fn start_workers(
    shared: &Arc<Shared>,
    listeners: Vec<std::net::TcpListener>,
    links: Vec<WorkerLinks>,
    cores: &[Option<usize>],
    counter: Option<riptide_ebpf::reuseport::ConnectionCounter>,
) -> Result<Vec<std::thread::JoinHandle<()>>, StartError> {
    let (ready_tx, ready_rx) = mpsc::channel();
    let mut threads = Vec::new();
    for (index, (listener, worker_links)) in listeners.into_iter().zip(links).enumerate() {
        let waker = Arc::clone(&worker_links.waker);
        let thread_shared = Arc::clone(shared);
        let (counter, ready, pin_core) = (counter.clone(), ready_tx.clone(), cores[index]);
        let thread = std::thread::Builder::new()
            .name(format!("riptide-net-{index}"))
            .spawn(move || {
                pin(pin_core, "network worker", index);
                // The core holds continuations that are not Send: it is built on its thread.
                let core = worker_core(&thread_shared, index, worker_links);
                match KernelWorker::new(listener, core, waker, counter, index) {
                    Ok(worker) => {
                        let _ = ready.send(Ok(()));
                        worker.run();
                    }
                    Err(error) => {
                        let _ = ready.send(Err(format!(
                            "io_uring for network worker {index}: {error} (is io_uring disabled by seccomp or kernel.io_uring_disabled?)"
                        )));
                    }
                }
            })
            .map_err(|e| StartError::Other(format!("spawn network worker: {e}")))?;
        threads.push(thread);
    }
    drop(ready_tx);
    for _ in 0..threads.len() {
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(message)) => {
                shared.lifecycle.request_shutdown();
                return Err(StartError::Other(message));
            }
            Err(_) => {
                return Err(StartError::Other(
                    "a network worker exited during start-up".to_string(),
                ))
            }
        }
    }
    Ok(threads)
}

/// With `dpdk.shard_nap_us`, DPDK polling lcores push requests without waking the shards while
/// those nap (a wake is a write(2) on the lcore); otherwise, and for kernel network workers,
/// shards block until woken.
fn shard_idle_wait(config: &Config) -> IdleWait {
    match config.dataplane.backend {
        riptide_config::Backend::Dpdk if config.dpdk.shard_nap_us > 0 => IdleWait::Nap {
            nap: Duration::from_micros(config.dpdk.shard_nap_us),
            awake_for: Duration::from_millis(SHARD_AWAKE_AFTER_REQUEST_MS),
        },
        _ => IdleWait::Block,
    }
}

/// Starts the shard threads and waits until each has opened its partitions.
fn start_shards(
    shared: &Arc<Shared>,
    endpoints: Vec<Vec<ShardEndpoint>>,
    wakers: &[Arc<Waker>],
    cores: &[Option<usize>],
) -> Result<Vec<std::thread::JoinHandle<()>>, StartedWithError> {
    let (ready_tx, ready_rx) = mpsc::channel();
    let mut threads = Vec::new();
    let catalog = shared.catalog();
    for (index, shard_endpoints) in endpoints.into_iter().enumerate() {
        let env = ShardEnv {
            index,
            storage: storage_config(&shared.config),
            wakeup_fd: wakers[index].fd(),
            directory: Arc::clone(&shared.directory),
            counters: Arc::clone(&shared.shard_counters[index]),
            cleaner_interval_ms: Arc::clone(&shared.cleaner_interval_ms),
            stats_interval: Duration::from_millis(STATS_PUBLISH_INTERVAL_MS),
        };
        let partitions =
            shared
                .directory
                .owned_partitions(&catalog, index, shared.config.storage.ack_floor);
        let (lifecycle, pool) = (
            Arc::clone(&shared.lifecycle),
            Arc::clone(&shared.batch_buffers),
        );
        // The waker's eventfd is watched by the shard's ring: it must outlive the thread.
        let waker = Arc::clone(&wakers[index]);
        let idle_wait = shard_idle_wait(&shared.config);
        let (ready, pin_core) = (ready_tx.clone(), cores[index]);
        let thread = std::thread::Builder::new()
            .name(format!("riptide-shard-{index}"))
            .spawn(move || {
                pin(pin_core, "storage shard", index);
                let counters = Arc::clone(&env.counters);
                match ShardCore::open(env, partitions, Instant::now()) {
                    Ok(core) => {
                        let _ = ready.send((index, Ok(())));
                        let shard = ShardThread::new(
                            core,
                            Arc::clone(&waker),
                            idle_wait,
                            shard_endpoints,
                            &lifecycle,
                            &pool,
                        );
                        shard.run(&counters);
                    }
                    Err(error) => {
                        let _ = ready.send((index, Err(error.to_string())));
                    }
                }
                drop(waker);
            });
        match thread {
            Ok(thread) => threads.push(thread),
            Err(e) => {
                let error = StartError::Other(format!("spawn storage shard: {e}"));
                return Err((threads, error));
            }
        }
    }
    drop(ready_tx);
    for _ in 0..threads.len() {
        let error = match ready_rx.recv() {
            Ok((_, Ok(()))) => continue,
            Ok((shard, Err(message))) => StartError::Shard { shard, message },
            Err(_) => StartError::Other("a storage shard exited during start-up".to_string()),
        };
        return Err((threads, error));
    }
    Ok(threads)
}

/// Threads started before a start-up error, to be joined once the servers are told to stop.
type StartedWithError = (Vec<std::thread::JoinHandle<()>>, StartError);

/// The batch-buffer pool's refill thread (see `batch_buffers`), at SCHED_IDLE: it only ever
/// takes CPU nothing else wants. It ends once shutdown is requested.
fn start_buffer_refill(shared: &Arc<Shared>) -> Result<std::thread::JoinHandle<()>, StartError> {
    let shared = Arc::clone(shared);
    std::thread::Builder::new()
        .name("riptide-buffers".to_string())
        .spawn(move || {
            let idle = libc::sched_param { sched_priority: 0 };
            // SAFETY: a plain system call on the calling thread (0) with a valid parameter.
            if unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &idle) } != 0 {
                tracing::warn!(
                    error = %std::io::Error::last_os_error(),
                    "buffer refill thread stays at normal priority (SCHED_IDLE refused)"
                );
            }
            shared.batch_buffers.run_refill(|| shared.shutting_down());
        })
        .map_err(|e| StartError::Other(format!("spawn buffer refill thread: {e}")))
}

/// DPDK mode: the EAL, the port and one polling lcore per worker context, on the appliance's
/// own address (`[dpdk] ip_address` and `port`).
#[cfg(feature = "dpdk")]
fn start_dpdk(
    shared: &Arc<Shared>,
    links: Vec<WorkerLinks>,
) -> Result<(Frontend, SocketAddr, String), StartError> {
    use crate::net::dpdk::backend::{DpdkBackend, DpdkPlan};
    let config = &shared.config;
    let plan = DpdkPlan::from_config(config, &config.system.path.join("runtime"))
        .map_err(|e| StartError::Other(format!("dpdk: {e}")))?;
    if plan.worker_lcores.len() != links.len() {
        return Err(StartError::Other(format!(
            "dpdk.lcores: {} polling lcores planned for {} worker links",
            plan.worker_lcores.len(),
            links.len()
        )));
    }
    let contexts = links
        .into_iter()
        .enumerate()
        .map(|(index, worker_links)| {
            let anchor = (Instant::now(), now_us());
            WorkerContext::new(index, Arc::clone(shared), worker_links, anchor)
        })
        .collect();
    let backend =
        DpdkBackend::start(&plan, contexts).map_err(|e| StartError::Other(format!("dpdk: {e}")))?;
    let ip: std::net::Ipv4Addr = config
        .dpdk
        .ip_address
        .parse()
        .map_err(|_| StartError::Other("dpdk.ip_address".into()))?;
    let label = if plan.xdp_iface.is_some() {
        "xdp_af_xdp"
    } else {
        "dpdk_port"
    };
    Ok((
        Frontend::Dpdk(Box::new(backend)),
        SocketAddr::from((ip, config.dpdk.port)),
        label.to_string(),
    ))
}

#[cfg(feature = "dpdk")]
fn dpdk_ports(
    stats: &crate::net::dpdk::backend::DpdkStats,
) -> Vec<riptide_config::stats::PortSnapshot> {
    use crate::net::dpdk::lcore::LcoreStatsSnapshot;
    let port = &stats.port;
    let connections: u64 = stats.lcores.iter().map(|l| l.connections_active).sum();
    let mut ports = vec![riptide_config::stats::PortSnapshot {
        port: port.port_id,
        queue: None,
        rx_packets: port.rx_packets,
        tx_packets: port.tx_packets,
        rx_bytes: port.rx_bytes,
        tx_bytes: port.tx_bytes,
        rx_dropped: port.rx_missed + port.rx_errors,
        tx_dropped: port.tx_errors + stats.lcores.iter().map(|l| l.tx_dropped).sum::<u64>(),
        mbuf_alloc_failures: port.rx_no_mbuf
            + stats.lcores.iter().map(|l| l.tx_no_mbuf).sum::<u64>(),
        tcp_retransmits: stats.lcores.iter().map(|l| l.tcp_retransmits).sum(),
        tcp_connections: connections,
    }];
    // Polling lcore i serves queue i: the lcore's counters belong to its queue's row.
    ports.extend(port.queues.iter().map(|queue| {
        let lcore = stats.lcores.get(usize::from(queue.queue_id));
        let of_lcore = |counter: fn(&LcoreStatsSnapshot) -> u64| lcore.map_or(0, counter);
        riptide_config::stats::PortSnapshot {
            port: port.port_id,
            queue: Some(queue.queue_id),
            rx_packets: queue.rx_packets,
            tx_packets: queue.tx_packets,
            rx_bytes: queue.rx_bytes,
            tx_bytes: queue.tx_bytes,
            rx_dropped: queue.rx_dropped,
            tx_dropped: of_lcore(|l| l.tx_dropped),
            mbuf_alloc_failures: of_lcore(|l| l.tx_no_mbuf),
            tcp_retransmits: of_lcore(|l| l.tcp_retransmits),
            tcp_connections: of_lcore(|l| l.connections_active),
        }
    }));
    ports
}

/// Cores for each thread in order (workers, then shards): the configured list, else the
/// available cores round-robin. `None` when the machine reports no core ids.
fn pin_plan(config: &Config, threads: usize) -> Vec<Option<usize>> {
    let available: Vec<usize> = core_affinity::get_core_ids()
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.id)
        .collect();
    let plan: &[usize] = if config.dataplane.cores.is_empty() {
        &available
    } else {
        &config.dataplane.cores
    };
    (0..threads)
        .map(|i| (!plan.is_empty()).then(|| plan[i % plan.len()]))
        .collect()
}

fn pin(core: Option<usize>, role: &str, index: usize) {
    let Some(id) = core else {
        tracing::warn!(role, index, "no core ids reported: thread left unpinned");
        return;
    };
    if !core_affinity::set_for_current(core_affinity::CoreId { id }) {
        tracing::warn!(
            role,
            index,
            core = id,
            "pinning failed: thread left unpinned"
        );
    }
}

fn ebpf_policy(policy: SteeringPolicy) -> riptide_ebpf::reuseport::SteeringPolicy {
    match policy {
        SteeringPolicy::Hash => riptide_ebpf::reuseport::SteeringPolicy::Hash,
        SteeringPolicy::LeastConnections => {
            riptide_ebpf::reuseport::SteeringPolicy::LeastConnections
        }
    }
}

/// Loads the sk_reuseport steering program; on any failure plain SO_REUSEPORT hashing spreads
/// connections and the log says why, in one line.
fn attach_steering(
    config: &Config,
    listeners: &[std::net::TcpListener],
) -> Option<riptide_ebpf::reuseport::ReuseportSteering> {
    if !config.steering.enabled || listeners.len() < 2 {
        return None;
    }
    let policy = match config.steering.policy {
        SteeringPolicy::Hash => riptide_ebpf::reuseport::SteeringPolicy::Hash,
        SteeringPolicy::LeastConnections => {
            riptide_ebpf::reuseport::SteeringPolicy::LeastConnections
        }
    };
    let fds: Vec<_> = listeners.iter().map(AsFd::as_fd).collect();
    let attached = riptide_ebpf::reuseport::ReuseportSteering::load(policy, listeners.len() as u32)
        .and_then(|mut steering| steering.attach(&fds).map(|()| steering));
    match attached {
        Ok(steering) => Some(steering),
        Err(error) => {
            tracing::warn!(reason = %error.summary(), "sk_reuseport steering program not loaded; falling back to plain SO_REUSEPORT hashing");
            None
        }
    }
}

/// `<data>/runtime/current_config.toml`: the bound address (as iggy-server writes it) and the
/// effective configuration, written atomically.
fn write_current_config(
    data_dir: &Path,
    bound: SocketAddr,
    config: &Config,
) -> Result<(), StartError> {
    let mut effective = config.clone();
    effective.tcp.address = bound.to_string();
    let text = effective.to_toml_masked();
    let path = data_dir.join("runtime").join("current_config.toml");
    let temp = path.with_extension("toml.tmp");
    std::fs::write(&temp, text)
        .and_then(|()| std::fs::rename(&temp, &path))
        .map_err(|source| StartError::DataDir {
            path: path.display().to_string(),
            source,
        })
}

/// Blocks SIGTERM and SIGINT in every thread (threads inherit the mask) and returns a signalfd
/// the main thread polls.
fn block_termination_signals() -> Result<nix::sys::signalfd::SignalFd, StartError> {
    use nix::sys::signal::{SigSet, Signal};
    use nix::sys::signalfd::{SfdFlags, SignalFd};
    let mut set = SigSet::empty();
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGINT);
    set.thread_block()
        .map_err(|e| StartError::Other(format!("block signals: {e}")))?;
    SignalFd::with_flags(&set, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
        .map_err(|e| StartError::Other(format!("signalfd: {e}")))
}

/// Publishes statistics until a termination signal arrives.
fn wait_for_signal(
    shared: &Shared,
    signals: &nix::sys::signalfd::SignalFd,
    cores: &[Option<usize>],
    steering: &str,
    frontend: &mut Frontend,
) {
    let mut next_publish = Instant::now();
    let mut live = crate::app::live::LiveWatcher::new(&shared.config.system.path);
    loop {
        if let Ok(Some(signal)) = signals.read_signal() {
            tracing::info!(signal = signal.ssi_signo, "termination signal received");
            return;
        }
        if Instant::now() >= next_publish {
            next_publish = Instant::now() + Duration::from_millis(STATS_PUBLISH_INTERVAL_MS);
            if let Some(changes) = live.poll() {
                apply_live(shared, frontend, changes);
            }
            reload_tls(shared, None);
            if let Err(error) = write_snapshot(
                &shared.config.system.path,
                &snapshot(shared, cores, steering, frontend),
            ) {
                tracing::debug!(%error, "stats snapshot not written");
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Applies a new version of `runtime/live.toml`; each outcome is logged in one line.
fn apply_live(
    shared: &Shared,
    frontend: &mut Frontend,
    changes: Result<riptide_config::live::LiveChanges, String>,
) {
    let changes = match changes {
        Ok(changes) => changes,
        Err(error) => {
            tracing::warn!(%error, "runtime/live.toml ignored");
            return;
        }
    };
    if let Some(level) = &changes.log_level {
        match crate::app::logging::set_level(level) {
            Ok(()) => tracing::info!(level = %level, "log.level applied live"),
            Err(error) => tracing::warn!(%error, "log.level not applied"),
        }
    }
    if let Some(interval_ms) = changes.cleaner_interval_ms {
        shared.set_cleaner_interval_ms(interval_ms);
        tracing::info!(interval_ms, "retention.cleaner_interval_ms applied live");
    }
    if let Some(policy) = changes.steering_policy {
        match frontend.set_steering_policy(policy) {
            Ok(()) => tracing::info!(?policy, "steering.policy applied live"),
            Err(error) => tracing::warn!(%error, "steering.policy not applied"),
        }
    }
    if changes.tls_cert_file.is_some() || changes.tls_key_file.is_some() {
        let Some(tls) = &shared.tls else {
            tracing::warn!("tls.cert_file/tls.key_file not applied: [tls] is not enabled");
            return;
        };
        let mut files = tls.files();
        if let Some(path) = &changes.tls_cert_file {
            files.cert_file = path.clone();
        }
        if let Some(path) = &changes.tls_key_file {
            files.key_file = path.clone();
        }
        reload_tls(shared, Some(files));
    }
}

/// Rebuilds the TLS configuration when its files changed on disk or live.toml named new ones:
/// new handshakes get the new certificate, open connections keep theirs. A broken new file is
/// reported once and the previous certificate stays in use.
fn reload_tls(shared: &Shared, files: Option<TlsFiles>) {
    let Some(tls) = &shared.tls else {
        return;
    };
    match tls.reload_if_changed(files) {
        None => {}
        Some(Ok(files)) => tracing::info!(
            cert_file = %files.cert_file.display(),
            "TLS certificate reloaded; new handshakes use it"
        ),
        Some(Err(error)) => {
            tracing::warn!(%error, "TLS certificate not reloaded; the previous one stays in use")
        }
    }
}

fn snapshot(
    shared: &Shared,
    cores: &[Option<usize>],
    steering: &str,
    frontend: &Frontend,
) -> StatsSnapshot {
    let workers = shared.worker_counters.len();
    let catalog = shared.catalog();
    let topics: usize = catalog.streams().values().map(|s| s.topics.len()).sum();
    let partitions: usize = catalog
        .streams()
        .values()
        .flat_map(|s| s.topics.values())
        .map(|t| t.partitions.len())
        .sum();
    StatsSnapshot {
        version: env!("CARGO_PKG_VERSION").to_string(),
        pid: std::process::id(),
        mode: match shared.config.dataplane.backend {
            riptide_config::Backend::Kernel => "kernel",
            riptide_config::Backend::Dpdk => "dpdk",
        }
        .to_string(),
        tcp_address: shared
            .bound_address()
            .map(|a| a.to_string())
            .unwrap_or_default(),
        started_at_us: shared.started_at_us,
        written_at_us: now_us(),
        steering: steering.to_string(),
        ring_capacity: shared.config.dataplane.ring_capacity as u64,
        workers: shared
            .worker_counters
            .iter()
            .enumerate()
            .map(|(i, c)| c.snapshot(i, cores[i]))
            .collect(),
        shards: shared
            .shard_counters
            .iter()
            .enumerate()
            .map(|(i, c)| c.snapshot(i, cores[workers + i]))
            .collect(),
        ports: frontend.ports(),
        steering_counters: frontend.steering_counters(),
        xdp_counters: frontend.xdp_counters(),
        streams: catalog.streams().len() as u64,
        topics: topics as u64,
        partitions: partitions as u64,
        cluster: shared
            .cluster
            .as_ref()
            .map(|cluster| cluster.status().as_ref().clone()),
    }
}
