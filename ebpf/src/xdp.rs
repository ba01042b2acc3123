//! XDP steering for the AF_XDP dataplane (`src/bpf/xdp_steer.c`).
//!
//! Two ways to run it:
//! - riptide attaches it itself: [`XdpSteering::attach`] (native mode, falling back to generic mode
//!   with the reason reported), then registers its AF_XDP sockets per queue;
//! - DPDK's af_xdp PMD loads the object file ([`crate::write_xdp_object`], `xdp_prog=<path>`) and
//!   fills `xsks_map` itself; the dataplane then reaches the program's maps through the interface
//!   with [`XdpMaps::open_attached`] to write the address and ports and read the counters.
//!
//! Cleanup after a crash: [`XdpSteering`] attaches through a bpf_link that is never pinned, so the
//! kernel detaches the program when the process exits for any reason, SIGKILL included. A program
//! attached through netlink (the PMD's way, or aya's fallback on kernels without XDP links) would
//! outlive a crash; [`remove_stale`] detaches such a leftover riptide program at the next start, and
//! [`XdpSteering::attach`] calls it first. A program that is not riptide's is never touched.

use std::ffi::CString;
use std::fmt;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::{Duration, Instant};

use aya::maps::{Array, MapData, PerCpuArray, XskMap};
use aya::programs::{Xdp, XdpMode};
use aya::{Ebpf, EbpfLoader, Pod};

use crate::constants::{
    XDP_CONFIG_MAP_NAME, XDP_COUNTERS_MAP_NAME, XDP_PORTS_MAX, XDP_PROGRAM_NAME, XSKS_MAP_NAME,
    XSKS_QUEUES_MAX,
};
use crate::error::{load_error, EbpfError};
use crate::kernel;
use crate::netlink::{self, XdpAttachMode};
use crate::object::XDP_STEER_OBJECT;

const OBJECT: &str = "xdp_steer";

/// Counter slots in `xdp_counters` (CNT_* in the C program).
mod slot {
    pub const STEERED_TCP: u32 = 0;
    pub const STEERED_ARP: u32 = 1;
    pub const PASSED: u32 = 2;
    pub const DROP_NO_SOCKET: u32 = 3;
    pub const DROP_REDIRECT: u32 = 4;
    pub const COUNT: u32 = 5;
}

/// `struct xdp_config` of the C program.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct RawXdpConfig {
    ipv4_be: u32,
    ports_count: u32,
    ports_be: [u16; XDP_PORTS_MAX],
}

// SAFETY: plain-old-data with no padding (4 + 4 + 2*8 bytes) and no invalid bit patterns.
unsafe impl Pod for RawXdpConfig {}

/// What the XDP program steers to the appliance: TCP to `ip` on one of `ports`, and ARP about `ip`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XdpConfig {
    /// The appliance's own IPv4 address (not one the host owns).
    pub ip: Ipv4Addr,
    /// The appliance's TCP ports, at most [`XDP_PORTS_MAX`].
    pub ports: Vec<u16>,
}

impl XdpConfig {
    fn to_raw(&self) -> Result<RawXdpConfig, EbpfError> {
        if self.ip.is_unspecified() {
            return Err(EbpfError::InvalidArgument(
                "the XDP appliance address must not be 0.0.0.0".into(),
            ));
        }
        if self.ports.is_empty() || self.ports.len() > XDP_PORTS_MAX {
            return Err(EbpfError::InvalidArgument(format!(
                "the XDP program takes 1..={XDP_PORTS_MAX} ports, got {}",
                self.ports.len()
            )));
        }
        if self.ports.contains(&0) {
            return Err(EbpfError::InvalidArgument(
                "port 0 cannot be steered".into(),
            ));
        }
        let mut raw = RawXdpConfig {
            ipv4_be: u32::from_ne_bytes(self.ip.octets()),
            ports_count: self.ports.len() as u32,
            ports_be: [0; XDP_PORTS_MAX],
        };
        for (slot, port) in raw.ports_be.iter_mut().zip(&self.ports) {
            *slot = port.to_be();
        }
        Ok(raw)
    }

    /// `None` for the unconfigured (all-zero) map entry.
    fn from_raw(raw: &RawXdpConfig) -> Option<XdpConfig> {
        if raw.ipv4_be == 0 {
            return None;
        }
        let count = (raw.ports_count as usize).min(XDP_PORTS_MAX);
        Some(XdpConfig {
            ip: Ipv4Addr::from(raw.ipv4_be.to_ne_bytes()),
            ports: raw.ports_be[..count]
                .iter()
                .map(|port| u16::from_be(*port))
                .collect(),
        })
    }
}

/// Sums over all CPUs of the XDP program's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XdpCounters {
    /// TCP frames redirected to an AF_XDP socket.
    pub steered_tcp: u64,
    /// ARP frames redirected to an AF_XDP socket.
    pub steered_arp: u64,
    /// Frames passed to the kernel.
    pub passed: u64,
    /// Appliance frames dropped because no AF_XDP socket is bound on the receiving queue.
    pub dropped_no_socket: u64,
    /// Appliance frames dropped because the redirect failed.
    pub dropped_redirect_failed: u64,
}

impl fmt::Display for XdpCounters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "steered tcp {} arp {}, passed {}, dropped: no socket on queue {}, redirect failed {}",
            self.steered_tcp,
            self.steered_arp,
            self.passed,
            self.dropped_no_socket,
            self.dropped_redirect_failed
        )
    }
}

/// The configuration and counter maps of a loaded XDP steering program, whoever loaded it.
pub struct XdpMaps {
    config: Array<MapData, RawXdpConfig>,
    counters: PerCpuArray<MapData, u64>,
}

impl XdpMaps {
    fn from_maps(config: aya::maps::Map, counters: aya::maps::Map) -> Result<XdpMaps, EbpfError> {
        let config = Array::try_from(config).map_err(|source| EbpfError::Map {
            map: XDP_CONFIG_MAP_NAME,
            source,
        })?;
        let counters = PerCpuArray::try_from(counters).map_err(|source| EbpfError::Map {
            map: XDP_COUNTERS_MAP_NAME,
            source,
        })?;
        Ok(XdpMaps { config, counters })
    }

    /// Opens the maps of riptide's XDP program attached to `interface` by someone else (DPDK's
    /// af_xdp PMD loading our object file), found through the program's map ids.
    ///
    /// # Errors
    /// [`EbpfError::NoXdpProgram`] when nothing is attached, [`EbpfError::ForeignXdpProgram`] when the
    /// attached program is not riptide's, and map/netlink errors.
    pub fn open_attached(interface: &str) -> Result<XdpMaps, EbpfError> {
        let if_index = interface_index(interface)?;
        let attachment =
            query(interface, if_index)?.ok_or_else(|| EbpfError::NoXdpProgram(interface.into()))?;
        let program = kernel::program_by_id(attachment.program_id)?
            .ok_or_else(|| EbpfError::NoXdpProgram(interface.into()))?;
        let name = program.name_as_str().unwrap_or("").to_string();
        if name != XDP_PROGRAM_NAME {
            return Err(EbpfError::ForeignXdpProgram {
                interface: interface.into(),
                program_id: attachment.program_id,
                name,
            });
        }
        XdpMaps::of_program(&program)
    }

    /// The maps of a loaded riptide XDP program.
    pub(crate) fn of_program(program: &aya::programs::ProgramInfo) -> Result<XdpMaps, EbpfError> {
        let mut maps = kernel::maps_of(program, XDP_PROGRAM_NAME)?;
        let config = kernel::take_map(&mut maps, OBJECT, XDP_CONFIG_MAP_NAME)?;
        let counters = kernel::take_map(&mut maps, OBJECT, XDP_COUNTERS_MAP_NAME)?;
        XdpMaps::from_maps(config, counters)
    }

    /// Sets the address and ports to steer; takes effect for the next frame.
    ///
    /// # Errors
    /// [`EbpfError::InvalidArgument`] for an unspecified address or a bad port list; map errors.
    pub fn configure(&mut self, config: &XdpConfig) -> Result<(), EbpfError> {
        let raw = config.to_raw()?;
        self.config.set(0, raw, 0).map_err(|source| EbpfError::Map {
            map: XDP_CONFIG_MAP_NAME,
            source,
        })
    }

    /// The configuration in the map (`None` until configured).
    ///
    /// # Errors
    /// Map read errors.
    pub fn config(&self) -> Result<Option<XdpConfig>, EbpfError> {
        let raw = self.config.get(&0, 0).map_err(|source| EbpfError::Map {
            map: XDP_CONFIG_MAP_NAME,
            source,
        })?;
        Ok(XdpConfig::from_raw(&raw))
    }

    /// Reads and sums the per-CPU counters.
    ///
    /// # Errors
    /// Map read errors.
    pub fn counters(&self) -> Result<XdpCounters, EbpfError> {
        let read = |index: u32| -> Result<u64, EbpfError> {
            let values = self
                .counters
                .get(&index, 0)
                .map_err(|source| EbpfError::Map {
                    map: XDP_COUNTERS_MAP_NAME,
                    source,
                })?;
            Ok(values.iter().copied().fold(0u64, u64::wrapping_add))
        };
        const _: () = assert!(slot::COUNT == 5);
        Ok(XdpCounters {
            steered_tcp: read(slot::STEERED_TCP)?,
            steered_arp: read(slot::STEERED_ARP)?,
            passed: read(slot::PASSED)?,
            dropped_no_socket: read(slot::DROP_NO_SOCKET)?,
            dropped_redirect_failed: read(slot::DROP_REDIRECT)?,
        })
    }
}

/// Which XDP mode to try.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum XdpModePreference {
    /// Native mode, and generic mode when the driver has no native XDP (reported).
    #[default]
    NativeThenGeneric,
    /// Native mode only.
    NativeOnly,
    /// Generic mode only.
    GenericOnly,
}

/// What the XDP program decided for a frame (its return code).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XdpAction {
    /// XDP_ABORTED.
    Aborted,
    /// XDP_DROP.
    Drop,
    /// XDP_PASS: to the kernel.
    Pass,
    /// XDP_TX.
    Tx,
    /// XDP_REDIRECT: to the AF_XDP socket.
    Redirect,
    /// Any other code.
    Other(u32),
}

impl XdpAction {
    fn from_code(code: u32) -> XdpAction {
        match code {
            0 => XdpAction::Aborted,
            1 => XdpAction::Drop,
            2 => XdpAction::Pass,
            3 => XdpAction::Tx,
            4 => XdpAction::Redirect,
            other => XdpAction::Other(other),
        }
    }
}

/// The outcome of running frames through the program with BPF_PROG_TEST_RUN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XdpRun {
    /// The program's decision.
    pub action: XdpAction,
    /// Mean time of one run, as the kernel measured it.
    pub duration_per_run_ns: u64,
}

/// riptide's XDP program loaded into the kernel but not attached to any interface: the first half
/// of [`XdpSteering::attach`], and on its own a way to run frames through the real program in the
/// kernel (tests, benchmarks, checking a configuration).
pub struct XdpProgram {
    ebpf: Ebpf,
    maps: XdpMaps,
    xsks: XskMap<MapData>,
    program_id: u32,
}

impl XdpProgram {
    /// Loads the program (through the verifier) and writes `config`.
    ///
    /// # Errors
    /// [`EbpfError::Object`] when the maps cannot be created, [`EbpfError::Verifier`] with the
    /// verifier log, [`EbpfError::InvalidArgument`] for a bad configuration.
    pub fn load(config: &XdpConfig) -> Result<XdpProgram, EbpfError> {
        let mut ebpf =
            EbpfLoader::new()
                .load(XDP_STEER_OBJECT)
                .map_err(|source| EbpfError::Object {
                    object: OBJECT,
                    source,
                })?;
        let config_map = take(&mut ebpf, XDP_CONFIG_MAP_NAME)?;
        let counters_map = take(&mut ebpf, XDP_COUNTERS_MAP_NAME)?;
        let mut maps = XdpMaps::from_maps(config_map, counters_map)?;
        maps.configure(config)?;
        let xsks =
            XskMap::try_from(take(&mut ebpf, XSKS_MAP_NAME)?).map_err(|source| EbpfError::Map {
                map: XSKS_MAP_NAME,
                source,
            })?;
        let program = xdp_program(&mut ebpf)?;
        program
            .load()
            .map_err(|error| load_error(XDP_PROGRAM_NAME, error))?;
        let program_id = program
            .info()
            .map_err(|source| EbpfError::Program {
                program: XDP_PROGRAM_NAME,
                action: "info",
                source,
            })?
            .id();
        Ok(XdpProgram {
            ebpf,
            maps,
            xsks,
            program_id,
        })
    }

    /// Runs `frame` through the program `repeat` times (at least once) on receive queue 0 and
    /// returns its decision. Counters count these runs like real frames. A redirect is decided
    /// but not carried out.
    ///
    /// # Errors
    /// The kernel's error, e.g. EINVAL for a frame shorter than an Ethernet header.
    pub fn run(&self, frame: &[u8], repeat: u32) -> Result<XdpRun, EbpfError> {
        use aya::programs::{TestRun, TestRunOptions};
        let program: &Xdp = self
            .ebpf
            .program(XDP_PROGRAM_NAME)
            .ok_or_else(|| EbpfError::Missing {
                object: OBJECT,
                kind: "program",
                name: XDP_PROGRAM_NAME.into(),
            })?
            .try_into()
            .map_err(|source| EbpfError::Program {
                program: XDP_PROGRAM_NAME,
                action: "type check",
                source,
            })?;
        let options = TestRunOptions {
            data_in: Some(frame),
            repeat: repeat.max(1),
            ..TestRunOptions::default()
        };
        let result = program
            .test_run(options)
            .map_err(|source| EbpfError::Program {
                program: XDP_PROGRAM_NAME,
                action: "test run",
                source,
            })?;
        Ok(XdpRun {
            action: XdpAction::from_code(result.return_value),
            duration_per_run_ns: result.duration.as_nanos() as u64,
        })
    }

    /// The configuration and counter maps.
    pub fn maps(&mut self) -> &mut XdpMaps {
        &mut self.maps
    }

    /// The kernel id of the loaded program.
    pub fn program_id(&self) -> u32 {
        self.program_id
    }
}

/// How long [`XdpSteering::detach`] waits for the kernel to release the program.
pub const DETACH_WAIT: Duration = Duration::from_secs(2);

/// riptide's XDP steering program, loaded and attached by this process.
pub struct XdpSteering {
    // Holds the program and its link; dropping it detaches.
    ebpf: Ebpf,
    maps: XdpMaps,
    xsks: XskMap<MapData>,
    interface: String,
    mode: XdpAttachMode,
    fallback_reason: Option<String>,
    program_id: u32,
}

impl XdpSteering {
    /// Loads the program, writes `config`, and attaches it to `interface` as `preference` says.
    /// A leftover riptide program attached through netlink (after a crash) is detached first.
    ///
    /// # Errors
    /// [`EbpfError::InterfaceNotFound`], [`EbpfError::ForeignXdpProgram`] / [`EbpfError::XdpInUse`]
    /// when the interface is taken, [`EbpfError::Verifier`] with the verifier log, and the attach
    /// error of the last mode tried.
    pub fn attach(
        interface: &str,
        config: &XdpConfig,
        preference: XdpModePreference,
    ) -> Result<XdpSteering, EbpfError> {
        // Check everything that can be checked before touching the interface.
        config.to_raw()?;
        let if_index = interface_index(interface)?;
        remove_stale(interface)?;
        let XdpProgram {
            mut ebpf,
            maps,
            xsks,
            program_id,
        } = XdpProgram::load(config)?;
        let program = xdp_program(&mut ebpf)?;
        let (mode, fallback_reason) =
            attach_with_preference(program, interface, if_index, preference)?;
        Ok(XdpSteering {
            ebpf,
            maps,
            xsks,
            interface: interface.into(),
            mode,
            fallback_reason,
            program_id,
        })
    }

    /// Rewrites the address and ports; see [`XdpMaps::configure`].
    ///
    /// # Errors
    /// As [`XdpMaps::configure`].
    pub fn configure(&mut self, config: &XdpConfig) -> Result<(), EbpfError> {
        self.maps.configure(config)
    }

    /// The program's counters; see [`XdpMaps::counters`].
    ///
    /// # Errors
    /// Map read errors.
    pub fn counters(&self) -> Result<XdpCounters, EbpfError> {
        self.maps.counters()
    }

    /// The configuration and counter maps.
    pub fn maps(&self) -> &XdpMaps {
        &self.maps
    }

    /// Puts the AF_XDP socket `xsk` in `xsks_map` for rx queue `queue`.
    ///
    /// # Errors
    /// [`EbpfError::InvalidArgument`] for a queue beyond [`XSKS_QUEUES_MAX`]; the kernel's error when
    /// the fd is not a bound AF_XDP socket.
    pub fn register_socket(&mut self, queue: u32, xsk: BorrowedFd<'_>) -> Result<(), EbpfError> {
        if queue >= XSKS_QUEUES_MAX {
            return Err(EbpfError::InvalidArgument(format!(
                "queue {queue} >= {XSKS_QUEUES_MAX}"
            )));
        }
        self.xsks
            .set(queue, xsk.as_raw_fd(), 0)
            .map_err(|source| EbpfError::Map {
                map: XSKS_MAP_NAME,
                source,
            })
    }

    /// Removes the socket of rx queue `queue` from `xsks_map`.
    ///
    /// # Errors
    /// Map errors (including a queue with no socket).
    pub fn unregister_socket(&mut self, queue: u32) -> Result<(), EbpfError> {
        self.xsks.unset(queue).map_err(|source| EbpfError::Map {
            map: XSKS_MAP_NAME,
            source,
        })
    }

    /// The mode the program runs in.
    pub fn mode(&self) -> XdpAttachMode {
        self.mode
    }

    /// Why native mode was not used, when the attach fell back to generic mode.
    pub fn fallback_reason(&self) -> Option<&str> {
        self.fallback_reason.as_deref()
    }

    /// The kernel id of the attached program.
    pub fn program_id(&self) -> u32 {
        self.program_id
    }

    /// The interface it is attached to.
    pub fn interface(&self) -> &str {
        &self.interface
    }

    /// Detaches the program from the interface and unloads it, and returns once the kernel no
    /// longer shows it attached. Dropping detaches too, without waiting or reporting errors.
    ///
    /// Closing the link's fd does not always detach at once: a child another thread of this
    /// process is forking holds a copy of every fd until it execs, and the link lives as long.
    ///
    /// # Errors
    /// aya's detach error; [`EbpfError::XdpInUse`] when the program is still attached after
    /// [`DETACH_WAIT`].
    pub fn detach(mut self) -> Result<(), EbpfError> {
        let program = xdp_program(&mut self.ebpf)?;
        program.unload().map_err(|source| EbpfError::Program {
            program: XDP_PROGRAM_NAME,
            action: "detach",
            source,
        })?;
        let if_index = interface_index(&self.interface)?;
        let deadline = Instant::now() + DETACH_WAIT;
        loop {
            let still_ours = query(&self.interface, if_index)?
                .is_some_and(|attachment| attachment.program_id == self.program_id);
            if !still_ours {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(EbpfError::XdpInUse {
                    interface: self.interface.clone(),
                    program_id: self.program_id,
                });
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

fn take(ebpf: &mut Ebpf, name: &'static str) -> Result<aya::maps::Map, EbpfError> {
    ebpf.take_map(name).ok_or_else(|| EbpfError::Missing {
        object: OBJECT,
        kind: "map",
        name: name.into(),
    })
}

fn xdp_program(ebpf: &mut Ebpf) -> Result<&mut Xdp, EbpfError> {
    let program = ebpf
        .program_mut(XDP_PROGRAM_NAME)
        .ok_or_else(|| EbpfError::Missing {
            object: OBJECT,
            kind: "program",
            name: XDP_PROGRAM_NAME.into(),
        })?;
    program.try_into().map_err(|source| EbpfError::Program {
        program: XDP_PROGRAM_NAME,
        action: "type check",
        source,
    })
}

fn attach_with_preference(
    program: &mut Xdp,
    interface: &str,
    if_index: u32,
    preference: XdpModePreference,
) -> Result<(XdpAttachMode, Option<String>), EbpfError> {
    let attach_error = |source| EbpfError::Program {
        program: XDP_PROGRAM_NAME,
        action: "attach",
        source,
    };
    match preference {
        XdpModePreference::GenericOnly => {
            program
                .attach_to_if_index(if_index, XdpMode::Skb)
                .map_err(attach_error)?;
            Ok((XdpAttachMode::Generic, None))
        }
        XdpModePreference::NativeOnly => {
            program
                .attach_to_if_index(if_index, XdpMode::Driver)
                .map_err(attach_error)?;
            Ok((XdpAttachMode::Native, None))
        }
        XdpModePreference::NativeThenGeneric => {
            match program.attach_to_if_index(if_index, XdpMode::Driver) {
                Ok(_) => Ok((XdpAttachMode::Native, None)),
                Err(native_error) => {
                    let reason = format!("native XDP unavailable on {interface} ({native_error}); running in generic mode");
                    program
                        .attach_to_if_index(if_index, XdpMode::Skb)
                        .map_err(attach_error)?;
                    Ok((XdpAttachMode::Generic, Some(reason)))
                }
            }
        }
    }
}

/// The kernel index of `interface`.
pub(crate) fn interface_index(interface: &str) -> Result<u32, EbpfError> {
    let name =
        CString::new(interface).map_err(|_| EbpfError::InterfaceNotFound(interface.into()))?;
    // SAFETY: name is a valid NUL-terminated string for the duration of the call.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if index == 0 {
        return Err(EbpfError::InterfaceNotFound(interface.into()));
    }
    Ok(index)
}

pub(crate) fn query(
    interface: &str,
    if_index: u32,
) -> Result<Option<netlink::XdpAttachment>, EbpfError> {
    netlink::query_xdp(if_index).map_err(|source| EbpfError::Netlink {
        interface: interface.into(),
        action: "query XDP program",
        source,
    })
}

/// Detaches riptide's XDP program from `interface` when it was left attached through netlink by a
/// process that is gone (a crashed dataplane or PMD). Returns the detached program's id.
///
/// # Errors
/// [`EbpfError::ForeignXdpProgram`] when another program is attached (never touched),
/// [`EbpfError::XdpInUse`] when a live process holds riptide's program through a bpf_link, and
/// netlink errors.
pub fn remove_stale(interface: &str) -> Result<Option<u32>, EbpfError> {
    let if_index = interface_index(interface)?;
    let Some(attachment) = query(interface, if_index)? else {
        return Ok(None);
    };
    let name = kernel::program_by_id(attachment.program_id)?
        .and_then(|info| info.name_as_str().map(str::to_string))
        .unwrap_or_default();
    if name != XDP_PROGRAM_NAME {
        return Err(EbpfError::ForeignXdpProgram {
            interface: interface.into(),
            program_id: attachment.program_id,
            name,
        });
    }
    if kernel::held_by_link(attachment.program_id) {
        return Err(EbpfError::XdpInUse {
            interface: interface.into(),
            program_id: attachment.program_id,
        });
    }
    netlink::detach_xdp(if_index, attachment.mode).map_err(|source| EbpfError::Netlink {
        interface: interface.into(),
        action: "detach stale XDP program",
        source,
    })?;
    Ok(Some(attachment.program_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_round_trips_through_the_raw_layout() {
        let config = XdpConfig {
            ip: Ipv4Addr::new(10, 1, 2, 3),
            ports: vec![8090, 443],
        };
        let raw = config.to_raw().unwrap();
        assert_eq!(raw.ipv4_be.to_ne_bytes(), [10, 1, 2, 3]);
        assert_eq!(raw.ports_be[0].to_ne_bytes(), 8090u16.to_be_bytes());
        assert_eq!(XdpConfig::from_raw(&raw), Some(config));
        assert_eq!(XdpConfig::from_raw(&RawXdpConfig::default()), None);
        assert_eq!(std::mem::size_of::<RawXdpConfig>(), 8 + 2 * XDP_PORTS_MAX);
    }

    #[test]
    fn bad_configs_are_errors() {
        let ip = Ipv4Addr::new(10, 0, 0, 1);
        for config in [
            XdpConfig {
                ip: Ipv4Addr::UNSPECIFIED,
                ports: vec![1],
            },
            XdpConfig { ip, ports: vec![] },
            XdpConfig { ip, ports: vec![0] },
            XdpConfig {
                ip,
                ports: (1..=XDP_PORTS_MAX as u16 + 1).collect(),
            },
        ] {
            assert!(
                matches!(config.to_raw(), Err(EbpfError::InvalidArgument(_))),
                "{config:?}"
            );
        }
    }

    #[test]
    fn unknown_interfaces_are_errors() {
        assert!(matches!(
            interface_index("no-such-if0"),
            Err(EbpfError::InterfaceNotFound(_))
        ));
        assert!(matches!(
            interface_index("bad\0name"),
            Err(EbpfError::InterfaceNotFound(_))
        ));
    }
}
