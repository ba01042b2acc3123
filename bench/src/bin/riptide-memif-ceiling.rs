//! The memif lab's wire ceiling, for scripts/bench-memif.sh: a trivial DPDK TCP service on a
//! memif server port (the dataplane's own polling lcore and smoltcp, with a sink/source in place
//! of the appliance's sessions), and the bench's memif client moving bytes through it on one
//! connection: `up` (the producers' direction) sends N bytes that the server discards, then waits
//! for its 8-byte acknowledgement; `down` (the consumers') asks for N bytes and reads them.
//!
//! `riptide-memif-ceiling server --socket S [--ip-address 10.77.0.1/24] [--port 8091] [--cpu N]`
//! serves until SIGTERM/SIGINT.
//! `riptide-memif-ceiling client up|down --socket S --server-address A [--bytes N] [--cpu N]`
//! prints `ceiling: mb_per_sec=X bytes=N seconds=S`.

use anyhow::{ensure, Context};
use clap::{Parser, Subcommand};
use riptide_bench::memif::{MemifOptions, MemifTransport};
use riptide_dataplane::mesh::messages::ConnectionId;
use riptide_dataplane::net::dpdk::eal::{Eal, EalConfig};
use riptide_dataplane::net::dpdk::lcore::{Lcore, LcoreConfig, Service};
use riptide_dataplane::net::dpdk::port::{Port, PortConfig};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Debug, Parser)]
struct Cli {
    #[command(subcommand)]
    role: Role,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Direction {
    Up,
    Down,
}

#[derive(Debug, Subcommand)]
enum Role {
    /// The sink/source on a memif server port.
    Server {
        #[arg(long)]
        socket: PathBuf,
        #[arg(long, default_value = "10.77.0.1/24")]
        ip_address: String,
        #[arg(long, default_value_t = 8091)]
        port: u16,
        #[arg(long, default_value_t = 1)]
        cpu: u32,
        #[arg(long, default_value = "riptide-memif-sink")]
        file_prefix: String,
    },
    /// One connection through the sink/source.
    Client {
        direction: Direction,
        #[arg(long)]
        socket: PathBuf,
        #[arg(long)]
        server_address: String,
        #[arg(long, default_value = "10.77.0.2/24")]
        ip_address: String,
        #[arg(long, default_value_t = 1 << 30)]
        bytes: u64,
        /// Connections moving the bytes at once (as many as the bench's actors).
        #[arg(long, default_value_t = 1)]
        connections: u64,
        #[arg(long, default_value_t = 0)]
        cpu: u32,
        #[arg(long, default_value = "riptide-memif-ceiling")]
        file_prefix: String,
    },
}

/// The header's top bit: the client asks for the bytes (down) instead of sending them (up).
const DOWN_FLAG: u64 = 1 << 63;
/// What the source sends from: zeros, as many times as asked. The lcore copies at most one
/// chunk of the service's output into a socket per turn, so the chunk fills a socket's send
/// buffer (1 MiB, `SOCKET_TX_BUFFER_DEFAULT_BYTES`), as an appliance's reply does.
const SOURCE_BYTES: usize = 1024 * 1024;
static SOURCE: [u8; SOURCE_BYTES] = [0; SOURCE_BYTES];

/// One connection of the sink/source: its 8-byte header, then what it is owed.
#[derive(Debug, Default)]
struct Transfer {
    id: Option<ConnectionId>,
    header: Vec<u8>,
    /// Bytes the client still sends (up) or is still sent (down).
    remaining: u64,
    down: bool,
    /// The acknowledgement of an upload, once every byte arrived (and what of it is sent).
    acknowledgement: Option<([u8; 8], usize)>,
}

/// A sink (up) and source (down) of bytes: nothing is copied or kept, so the lcore's TCP and
/// the memif are all that is measured.
#[derive(Debug, Default)]
struct SinkSource {
    transfers: Vec<Transfer>,
    /// Connections accepted so far: each one's generation.
    accepted: u32,
    received_bytes: u64,
    sent_bytes: u64,
}

impl SinkSource {
    fn transfer(&self, id: ConnectionId) -> Option<&Transfer> {
        self.transfers
            .get(id.slot as usize)
            .filter(|t| t.id == Some(id))
    }

    fn transfer_mut(&mut self, id: ConnectionId) -> Option<&mut Transfer> {
        self.transfers
            .get_mut(id.slot as usize)
            .filter(|t| t.id == Some(id))
    }
}

impl Service for SinkSource {
    fn accept(&mut self, _peer: std::net::SocketAddr, _now: Instant) -> Option<ConnectionId> {
        let slot = match self.transfers.iter().position(|t| t.id.is_none()) {
            Some(slot) => slot,
            None => {
                self.transfers.push(Transfer::default());
                self.transfers.len() - 1
            }
        };
        self.accepted = self.accepted.wrapping_add(1);
        let id = ConnectionId {
            slot: slot as u32,
            generation: self.accepted,
        };
        self.transfers[slot] = Transfer {
            id: Some(id),
            ..Transfer::default()
        };
        Some(id)
    }

    fn on_received(&mut self, id: ConnectionId, mut bytes: &[u8], _now: Instant) {
        self.received_bytes += bytes.len() as u64;
        let Some(transfer) = self.transfer_mut(id) else {
            return;
        };
        if transfer.header.len() < 8 {
            let take = bytes.len().min(8 - transfer.header.len());
            transfer.header.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if transfer.header.len() == 8 {
                let header = u64::from_le_bytes(transfer.header[..8].try_into().unwrap_or([0; 8]));
                transfer.down = header & DOWN_FLAG != 0;
                transfer.remaining = header & !DOWN_FLAG;
            }
        }
        if transfer.header.len() == 8 && !transfer.down {
            transfer.remaining = transfer.remaining.saturating_sub(bytes.len() as u64);
            if transfer.remaining == 0 && transfer.acknowledgement.is_none() {
                let total = u64::from_le_bytes(transfer.header[..8].try_into().unwrap_or([0; 8]));
                transfer.acknowledgement = Some((total.to_le_bytes(), 0));
            }
        }
    }

    fn transmit(&self, id: ConnectionId) -> impl Iterator<Item = &[u8]> {
        let chunk: Option<&[u8]> = self.transfer(id).and_then(|t| match t.acknowledgement {
            Some((ref bytes, sent)) if sent < 8 => Some(&bytes[sent..]),
            _ if t.down && t.remaining > 0 => {
                Some(&SOURCE[..t.remaining.min(SOURCE_BYTES as u64) as usize])
            }
            _ => None,
        });
        chunk.into_iter()
    }

    fn on_sent(&mut self, id: ConnectionId, sent_bytes: usize) {
        self.sent_bytes += sent_bytes as u64;
        if let Some(transfer) = self.transfer_mut(id) {
            if let Some((_, sent)) = transfer.acknowledgement.as_mut() {
                *sent += sent_bytes;
            } else if transfer.down {
                transfer.remaining = transfer.remaining.saturating_sub(sent_bytes as u64);
            }
        }
    }

    fn wants_read(&self, _id: ConnectionId) -> bool {
        true
    }

    fn wants_close(&self, _id: ConnectionId) -> bool {
        false
    }

    fn on_closed(&mut self, id: ConnectionId) {
        if let Some(transfer) = self.transfer_mut(id) {
            transfer.id = None;
        }
    }
}

/// Bytes per write and read of the client.
const CHUNK_BYTES: usize = 256 * 1024;

/// Set by SIGTERM/SIGINT: the sink/source lcore stops.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

fn main() -> ExitCode {
    let result = match Cli::parse().role {
        Role::Server {
            socket,
            ip_address,
            port,
            cpu,
            file_prefix,
        } => serve(socket, &ip_address, port, cpu, &file_prefix),
        Role::Client {
            direction,
            socket,
            server_address,
            ip_address,
            bytes,
            connections,
            cpu,
            file_prefix,
        } => {
            let target = (
                direction,
                server_address.as_str(),
                bytes,
                connections.max(1),
            );
            push(socket, target, &ip_address, cpu, file_prefix)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("riptide-memif-ceiling: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn address_and_prefix(text: &str) -> anyhow::Result<(std::net::Ipv4Addr, u8)> {
    let (address, prefix) = text.split_once('/').context("address/prefix")?;
    Ok((address.parse()?, prefix.parse()?))
}

fn serve(
    socket: PathBuf,
    ip_address: &str,
    port: u16,
    cpu: u32,
    file_prefix: &str,
) -> anyhow::Result<()> {
    let (address, prefix_len) = address_and_prefix(ip_address)?;
    let mut eal_config = EalConfig::no_huge(vec![cpu], 512, file_prefix);
    eal_config.vdevs = vec![format!(
        "net_memif0,role=server,socket={},socket-abstract=no,rsize=12",
        socket.display()
    )];
    let eal = Eal::init(&eal_config)?;
    let port_handle = Port::open(&eal, "net_memif0", &PortConfig::default())?;
    let config = LcoreConfig::new(address, prefix_len, port);
    let mut lcore = Lcore::new(port_handle.queue(0)?, config, SinkSource::default())?;
    // SAFETY: the handler only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
    }
    println!(
        "sink/source serving on {address}:{port} over {}",
        socket.display()
    );
    lcore.run(&STOP);
    let service = lcore.service();
    println!(
        "received {} bytes, sent {} bytes",
        service.received_bytes, service.sent_bytes
    );
    drop(lcore);
    drop(port_handle);
    drop(eal);
    let _ = std::fs::remove_file(&socket);
    Ok(())
}

fn push(
    socket: PathBuf,
    (direction, server_address, bytes, connections): (Direction, &str, u64, u64),
    ip_address: &str,
    cpu: u32,
    file_prefix: String,
) -> anyhow::Result<()> {
    let (address, prefix_len) = address_and_prefix(ip_address)?;
    let options = MemifOptions {
        socket,
        ip_address: address,
        prefix_len,
        cpu,
        file_prefix,
        memory_mb: 512,
    };
    let remote: std::net::SocketAddrV4 = server_address.parse()?;
    let transport = MemifTransport::start(&options)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()?;
    let net = transport.net();
    let result = runtime.block_on(async {
        let driver = tokio::spawn(net.clone().drive());
        let start = Instant::now();
        let transfers: Vec<_> = (0..connections)
            .map(|_| {
                tokio::spawn(transfer(
                    net.clone(),
                    remote,
                    direction,
                    bytes / connections,
                ))
            })
            .collect();
        let mut result = Ok(start.elapsed());
        for transfer in transfers {
            match transfer.await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => result = Err(error),
                Err(error) => result = Err(error.into()),
            }
        }
        let result = result.map(|_| start.elapsed());
        net.stop();
        let _ = driver.await;
        result
    });
    drop(net);
    drop(runtime);
    drop(transport);
    let elapsed = result?;
    let bytes = bytes / connections * connections;
    println!(
        "ceiling: mb_per_sec={:.1} bytes={bytes} seconds={:.3}",
        bytes as f64 / elapsed.as_secs_f64() / 1e6,
        elapsed.as_secs_f64()
    );
    Ok(())
}

/// One connection's transfer of `bytes` in `direction`.
async fn transfer(
    net: riptide_bench::memif::MemifNet,
    remote: std::net::SocketAddrV4,
    direction: Direction,
    bytes: u64,
) -> anyhow::Result<()> {
    let mut stream = net.connect(remote).await?;
    let mut chunk = vec![0x5a_u8; CHUNK_BYTES];
    let header = match direction {
        Direction::Up => bytes,
        Direction::Down => bytes | DOWN_FLAG,
    };
    stream.write_all(&header.to_le_bytes()).await?;
    match direction {
        Direction::Up => {
            let mut written = 0u64;
            while written < bytes {
                let len = (bytes - written).min(CHUNK_BYTES as u64) as usize;
                stream.write_all(&chunk[..len]).await?;
                written += len as u64;
            }
            let mut acknowledgement = [0u8; 8];
            stream.read_exact(&mut acknowledgement).await?;
            ensure!(
                u64::from_le_bytes(acknowledgement) == bytes,
                "the sink acknowledged {} bytes",
                u64::from_le_bytes(acknowledgement)
            );
        }
        Direction::Down => {
            let mut read = 0u64;
            while read < bytes {
                let n = stream.read(&mut chunk).await?;
                ensure!(n > 0, "the source closed after {read} bytes");
                read += n as u64;
            }
        }
    }
    Ok(())
}
