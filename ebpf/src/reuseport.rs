//! sk_reuseport steering for the kernel network backend (`src/bpf/reuseport_steer.c`).
//!
//! The dataplane's N network workers each open a listener with SO_REUSEPORT on the same address.
//! [`ReuseportSteering::attach`] puts listener `i` at index `i` of the program's sockarray and
//! attaches the program to the group (SO_ATTACH_REUSEPORT_EBPF); from then on the program picks the
//! worker for each new connection by the [`SteeringPolicy`], which can be changed live.
//!
//! For the least-connections policy the workers report opens and closes through a
//! [`ConnectionCounter`]: the per-worker counts live in an mmapped BPF array, so an update is one
//! atomic add in shared memory, with no system call, from any thread.
//!
//! When [`ReuseportSteering::load`] or `attach` fails, the listeners still work: the kernel's plain
//! SO_REUSEPORT hashing spreads connections. The error says why, for the dataplane's one log line.

use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use aya::maps::{Array, MapData, PerCpuArray, ReusePortSockArray};
use aya::programs::SkReuseport;
use aya::{Ebpf, EbpfLoader, Pod};

use crate::constants::{
    REUSEPORT_PROGRAM_NAME, REUSEPORT_WORKERS_MAX, REUSE_CONFIG_MAP_NAME, REUSE_CONNS_MAP_NAME,
    REUSE_EVENTS_MAP_NAME, REUSE_SELECTED_MAP_NAME, REUSE_WORKERS_MAP_NAME,
};
use crate::error::{load_error, EbpfError};
use crate::object::REUSEPORT_STEER_OBJECT;

const OBJECT: &str = "reuseport_steer";

/// Event slots in `reuse_events` (EVT_* in the C program).
mod event {
    pub const SELECT_FAILED: u32 = 0;
    pub const NOT_CONFIGURED: u32 = 1;
}

/// How new connections are spread over the workers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SteeringPolicy {
    /// The kernel's hash of the 4-tuple, modulo the worker count.
    #[default]
    Hash,
    /// The worker with the fewest open connections (ties broken by the hash).
    LeastConnections,
}

impl SteeringPolicy {
    fn raw(self) -> u32 {
        match self {
            SteeringPolicy::Hash => 0,
            SteeringPolicy::LeastConnections => 1,
        }
    }

    fn from_raw(raw: u32) -> Option<SteeringPolicy> {
        match raw {
            0 => Some(SteeringPolicy::Hash),
            1 => Some(SteeringPolicy::LeastConnections),
            _ => None,
        }
    }
}

impl fmt::Display for SteeringPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SteeringPolicy::Hash => "hash",
            SteeringPolicy::LeastConnections => "least-connections",
        })
    }
}

/// `struct reuse_config` of the C program.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct RawReuseConfig {
    pub(crate) policy: u32,
    pub(crate) workers: u32,
}

// SAFETY: two u32 fields, no padding, every bit pattern valid.
unsafe impl Pod for RawReuseConfig {}

/// What the sk_reuseport program has done, per worker.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReuseportCounters {
    /// The policy in the config map.
    pub policy: Option<SteeringPolicy>,
    /// New connections steered to each worker (summed over CPUs).
    pub selected: Vec<u64>,
    /// Open connections per worker as the workers reported them.
    pub open_connections: Vec<u64>,
    /// Selections that found no socket at the chosen index (the kernel then hashed).
    pub select_failed: u64,
    /// Runs before the config map was written.
    pub not_configured: u64,
}

impl fmt::Display for ReuseportCounters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let policy = self.policy.map_or("unknown".to_string(), |p| p.to_string());
        writeln!(
            f,
            "policy {policy}, select failed {}, not configured {}",
            self.select_failed, self.not_configured
        )?;
        for (worker, (selected, open)) in
            self.selected.iter().zip(&self.open_connections).enumerate()
        {
            writeln!(
                f,
                "  worker {worker}: selected {selected}, open connections {open}"
            )?;
        }
        Ok(())
    }
}

/// The mmapped `reuse_conns` array. Unmapped when the last [`ConnectionCounter`] clone goes.
struct ConnsMapping {
    base: NonNull<AtomicU64>,
    length_bytes: usize,
    workers: u32,
}

// SAFETY: the mapping is shared memory accessed only through atomics; the pointer stays valid until
// Drop, which runs once, after every clone of the owning Arc is gone.
unsafe impl Send for ConnsMapping {}
// SAFETY: as above; all access is atomic.
unsafe impl Sync for ConnsMapping {}

impl Drop for ConnsMapping {
    fn drop(&mut self) {
        // SAFETY: base/length_bytes are exactly what mmap returned; nothing uses the mapping after.
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.length_bytes) };
    }
}

/// A cheap, cloneable, `Send + Sync` handle the workers use to report their open connections.
#[derive(Clone)]
pub struct ConnectionCounter {
    mapping: Arc<ConnsMapping>,
}

impl ConnectionCounter {
    fn map(fd: BorrowedFd<'_>, workers: u32) -> Result<ConnectionCounter, EbpfError> {
        // SAFETY: sysconf has no preconditions.
        let page_bytes = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as usize;
        let length_bytes =
            (REUSEPORT_WORKERS_MAX as usize * size_of::<u64>()).next_multiple_of(page_bytes);
        // SAFETY: mapping a BPF_F_MMAPABLE array map by its fd; the kernel checks the size and flags,
        // and the result is checked before use.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                length_bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(EbpfError::Os {
                call: "mmap reuse_conns",
                source: io::Error::last_os_error(),
            });
        }
        let base = NonNull::new(base.cast::<AtomicU64>()).ok_or_else(|| EbpfError::Os {
            call: "mmap reuse_conns",
            source: io::Error::other("null mapping"),
        })?;
        Ok(ConnectionCounter {
            mapping: Arc::new(ConnsMapping {
                base,
                length_bytes,
                workers,
            }),
        })
    }

    fn slot(&self, worker: u32) -> Result<&AtomicU64, EbpfError> {
        if worker >= self.mapping.workers {
            return Err(EbpfError::InvalidArgument(format!(
                "worker {worker} >= {}",
                self.mapping.workers
            )));
        }
        // SAFETY: worker < workers <= REUSEPORT_WORKERS_MAX, so the slot lies inside the mapping,
        // which is 8-byte aligned (page aligned) and lives as long as self.
        Ok(unsafe { &*self.mapping.base.as_ptr().add(worker as usize) })
    }

    /// Worker `worker` accepted a connection.
    ///
    /// # Errors
    /// [`EbpfError::InvalidArgument`] for a worker index out of range.
    pub fn opened(&self, worker: u32) -> Result<(), EbpfError> {
        self.slot(worker)?.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Worker `worker` closed a connection. Never goes below zero.
    ///
    /// # Errors
    /// [`EbpfError::InvalidArgument`] for a worker index out of range.
    pub fn closed(&self, worker: u32) -> Result<(), EbpfError> {
        let slot = self.slot(worker)?;
        // The closure never returns None, so the update cannot fail.
        let _ = slot.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |count| {
            Some(count.saturating_sub(1))
        });
        Ok(())
    }

    /// Open connections of `worker` as reported.
    ///
    /// # Errors
    /// [`EbpfError::InvalidArgument`] for a worker index out of range.
    pub fn open_connections(&self, worker: u32) -> Result<u64, EbpfError> {
        Ok(self.slot(worker)?.load(Ordering::Relaxed))
    }
}

/// The sk_reuseport steering program and its maps.
pub struct ReuseportSteering {
    ebpf: Ebpf,
    workers: u32,
    policy: SteeringPolicy,
    config: Array<MapData, RawReuseConfig>,
    sockets: ReusePortSockArray<MapData>,
    selected: PerCpuArray<MapData, u64>,
    events: PerCpuArray<MapData, u64>,
    counter: ConnectionCounter,
    /// A duplicate of one listener of the attached group, to detach through.
    group: Option<OwnedFd>,
}

impl ReuseportSteering {
    /// Loads the program for `workers` listeners (1..=[`REUSEPORT_WORKERS_MAX`]) with `policy`.
    /// Nothing is attached yet.
    ///
    /// # Errors
    /// [`EbpfError::InvalidArgument`] for a bad worker count, [`EbpfError::Object`] when the maps
    /// cannot be created (no CAP_BPF, old kernel), [`EbpfError::Verifier`] with the verifier log.
    pub fn load(policy: SteeringPolicy, workers: u32) -> Result<ReuseportSteering, EbpfError> {
        if workers == 0 || workers > REUSEPORT_WORKERS_MAX {
            return Err(EbpfError::InvalidArgument(format!(
                "sk_reuseport steering takes 1..={REUSEPORT_WORKERS_MAX} workers, got {workers}"
            )));
        }
        let mut ebpf = EbpfLoader::new()
            .load(REUSEPORT_STEER_OBJECT)
            .map_err(|source| EbpfError::Object {
                object: OBJECT,
                source,
            })?;
        let config = Array::try_from(take(&mut ebpf, REUSE_CONFIG_MAP_NAME)?)
            .map_err(map_error(REUSE_CONFIG_MAP_NAME))?;
        let sockets = ReusePortSockArray::try_from(take(&mut ebpf, REUSE_WORKERS_MAP_NAME)?)
            .map_err(map_error(REUSE_WORKERS_MAP_NAME))?;
        let selected = PerCpuArray::try_from(take(&mut ebpf, REUSE_SELECTED_MAP_NAME)?)
            .map_err(map_error(REUSE_SELECTED_MAP_NAME))?;
        let events = PerCpuArray::try_from(take(&mut ebpf, REUSE_EVENTS_MAP_NAME)?)
            .map_err(map_error(REUSE_EVENTS_MAP_NAME))?;
        // The mapping keeps the map alive in the kernel; the MapData itself is not needed after.
        let aya::maps::Map::Array(conns) = take(&mut ebpf, REUSE_CONNS_MAP_NAME)? else {
            return Err(missing("array map", REUSE_CONNS_MAP_NAME));
        };
        let counter = ConnectionCounter::map(conns.fd().as_fd(), workers)?;

        let program = reuse_program(&mut ebpf)?;
        program
            .load()
            .map_err(|error| load_error(REUSEPORT_PROGRAM_NAME, error))?;
        let mut steering = ReuseportSteering {
            ebpf,
            workers,
            policy,
            config,
            sockets,
            selected,
            events,
            counter,
            group: None,
        };
        steering.write_config(policy)?;
        Ok(steering)
    }

    /// Puts listener `i` at worker index `i` and attaches the program to their SO_REUSEPORT group.
    /// The listeners must be listening TCP sockets with SO_REUSEPORT, bound to one address, one per
    /// worker. A duplicate of the first listener is kept until [`ReuseportSteering::detach`] or drop,
    /// to detach through.
    ///
    /// # Errors
    /// [`EbpfError::InvalidArgument`] when the count differs from the worker count; the kernel's
    /// error when a socket is not a listening reuseport socket.
    pub fn attach(&mut self, listener_fds: &[BorrowedFd<'_>]) -> Result<(), EbpfError> {
        if listener_fds.len() != self.workers as usize {
            return Err(EbpfError::InvalidArgument(format!(
                "{} listeners for {} workers",
                listener_fds.len(),
                self.workers
            )));
        }
        for (index, fd) in listener_fds.iter().enumerate() {
            self.sockets
                .set(index as u32, fd, 0)
                .map_err(map_error(REUSE_WORKERS_MAP_NAME))?;
        }
        let group = listener_fds[0]
            .try_clone_to_owned()
            .map_err(|source| EbpfError::Os {
                call: "dup listener",
                source,
            })?;
        let program = reuse_program(&mut self.ebpf)?;
        program
            .attach(group.as_fd())
            .map_err(|source| EbpfError::Program {
                program: REUSEPORT_PROGRAM_NAME,
                action: "attach",
                source,
            })?;
        self.group = Some(group);
        Ok(())
    }

    /// Detaches the program from the group: the kernel's plain SO_REUSEPORT hashing takes over at
    /// once, and no connection is refused.
    ///
    /// # Errors
    /// [`EbpfError::NotAttached`], or the kernel's error.
    pub fn detach(&mut self) -> Result<(), EbpfError> {
        let group = self.group.take().ok_or(EbpfError::NotAttached)?;
        SkReuseport::detach(group.as_fd()).map_err(|source| EbpfError::Program {
            program: REUSEPORT_PROGRAM_NAME,
            action: "detach",
            source,
        })
    }

    /// Switches the policy; the next connection uses it.
    ///
    /// # Errors
    /// Map write errors.
    pub fn set_policy(&mut self, policy: SteeringPolicy) -> Result<(), EbpfError> {
        self.write_config(policy)
    }

    /// The current policy.
    pub fn policy(&self) -> SteeringPolicy {
        self.policy
    }

    /// The number of workers.
    pub fn workers(&self) -> u32 {
        self.workers
    }

    /// A handle for the workers to report opened and closed connections.
    pub fn connection_counter(&self) -> ConnectionCounter {
        self.counter.clone()
    }

    /// Worker `worker` accepted a connection; see [`ConnectionCounter::opened`].
    ///
    /// # Errors
    /// [`EbpfError::InvalidArgument`] for a worker index out of range.
    pub fn connection_opened(&self, worker: u32) -> Result<(), EbpfError> {
        self.counter.opened(worker)
    }

    /// Worker `worker` closed a connection; see [`ConnectionCounter::closed`].
    ///
    /// # Errors
    /// [`EbpfError::InvalidArgument`] for a worker index out of range.
    pub fn connection_closed(&self, worker: u32) -> Result<(), EbpfError> {
        self.counter.closed(worker)
    }

    /// Per-worker selections, open connections and failure counts.
    ///
    /// # Errors
    /// Map read errors.
    pub fn counters(&self) -> Result<ReuseportCounters, EbpfError> {
        let mut counters = read_counters(&self.config, &self.selected, &self.events, self.workers)?;
        counters.open_connections = (0..self.workers)
            .map(|worker| self.counter.open_connections(worker))
            .collect::<Result<_, _>>()?;
        Ok(counters)
    }

    /// The kernel id of the loaded program.
    ///
    /// # Errors
    /// aya's info error.
    pub fn program_id(&self) -> Result<u32, EbpfError> {
        let program = self
            .ebpf
            .program(REUSEPORT_PROGRAM_NAME)
            .ok_or_else(|| missing("program", REUSEPORT_PROGRAM_NAME))?;
        let program: &SkReuseport = program.try_into().map_err(|source| EbpfError::Program {
            program: REUSEPORT_PROGRAM_NAME,
            action: "type check",
            source,
        })?;
        let info = program.info().map_err(|source| EbpfError::Program {
            program: REUSEPORT_PROGRAM_NAME,
            action: "info",
            source,
        })?;
        Ok(info.id())
    }

    fn write_config(&mut self, policy: SteeringPolicy) -> Result<(), EbpfError> {
        let raw = RawReuseConfig {
            policy: policy.raw(),
            workers: self.workers,
        };
        self.config
            .set(0, raw, 0)
            .map_err(map_error(REUSE_CONFIG_MAP_NAME))?;
        self.policy = policy;
        Ok(())
    }
}

impl Drop for ReuseportSteering {
    fn drop(&mut self) {
        // Leaving the program attached after the maps' owner is gone would freeze the
        // least-connections counts; plain hashing is the better fallback. Errors cannot be
        // reported from drop and leave the group as it was.
        if self.group.is_some() {
            let _ = self.detach();
        }
    }
}

/// Reads selections and events from the maps of a loaded reuseport program (ours or another
/// process's, for `riptide-steering show`). `open_connections` is left empty.
pub(crate) fn read_counters(
    config: &Array<MapData, RawReuseConfig>,
    selected: &PerCpuArray<MapData, u64>,
    events: &PerCpuArray<MapData, u64>,
    workers: u32,
) -> Result<ReuseportCounters, EbpfError> {
    let sum = |map: &PerCpuArray<MapData, u64>,
               name: &'static str,
               index: u32|
     -> Result<u64, EbpfError> {
        let values = map.get(&index, 0).map_err(map_error(name))?;
        Ok(values.iter().copied().fold(0u64, u64::wrapping_add))
    };
    let raw = config
        .get(&0, 0)
        .map_err(map_error(REUSE_CONFIG_MAP_NAME))?;
    Ok(ReuseportCounters {
        policy: SteeringPolicy::from_raw(raw.policy),
        selected: (0..workers)
            .map(|w| sum(selected, REUSE_SELECTED_MAP_NAME, w))
            .collect::<Result<_, _>>()?,
        open_connections: Vec::new(),
        select_failed: sum(events, REUSE_EVENTS_MAP_NAME, event::SELECT_FAILED)?,
        not_configured: sum(events, REUSE_EVENTS_MAP_NAME, event::NOT_CONFIGURED)?,
    })
}

fn take(ebpf: &mut Ebpf, name: &'static str) -> Result<aya::maps::Map, EbpfError> {
    ebpf.take_map(name).ok_or_else(|| missing("map", name))
}

fn missing(kind: &'static str, name: &str) -> EbpfError {
    EbpfError::Missing {
        object: OBJECT,
        kind,
        name: name.to_string(),
    }
}

fn map_error(map: &'static str) -> impl Fn(aya::maps::MapError) -> EbpfError {
    move |source| EbpfError::Map { map, source }
}

fn reuse_program(ebpf: &mut Ebpf) -> Result<&mut SkReuseport, EbpfError> {
    let program = ebpf
        .program_mut(REUSEPORT_PROGRAM_NAME)
        .ok_or_else(|| missing("program", REUSEPORT_PROGRAM_NAME))?;
    program.try_into().map_err(|source| EbpfError::Program {
        program: REUSEPORT_PROGRAM_NAME,
        action: "type check",
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_counter_is_shareable_across_worker_threads() {
        fn shareable<T: Send + Sync + Clone + 'static>() {}
        shareable::<ConnectionCounter>();
    }

    #[test]
    fn policies_round_trip() {
        for policy in [SteeringPolicy::Hash, SteeringPolicy::LeastConnections] {
            assert_eq!(SteeringPolicy::from_raw(policy.raw()), Some(policy));
        }
        assert_eq!(SteeringPolicy::from_raw(7), None);
    }

    #[test]
    fn worker_counts_outside_the_limits_are_errors() {
        for workers in [0, REUSEPORT_WORKERS_MAX + 1] {
            assert!(matches!(
                ReuseportSteering::load(SteeringPolicy::Hash, workers),
                Err(EbpfError::InvalidArgument(_))
            ));
        }
    }
}
