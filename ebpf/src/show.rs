//! What riptide's steering programs are doing on this machine: which interface runs which XDP
//! program in which mode, the loaded sk_reuseport programs, their maps and counters. Read from the
//! kernel by id, so it works whichever process (riptide, DPDK's PMD) loaded the programs. Used by
//! the `riptide-steering` binary and, later, `riptidectl steering show`.

use std::fmt;

use aya::maps::{Array, MapData, PerCpuArray};
use aya::programs::ProgramInfo;

use crate::constants::{
    REUSEPORT_PROGRAM_NAME, REUSE_CONFIG_MAP_NAME, REUSE_CONNS_MAP_NAME, REUSE_EVENTS_MAP_NAME,
    REUSE_SELECTED_MAP_NAME, XDP_PROGRAM_NAME,
};
use crate::error::EbpfError;
use crate::kernel;
use crate::netlink::XdpAttachMode;
use crate::reuseport::{read_counters, RawReuseConfig, ReuseportCounters};
use crate::xdp::{self, XdpConfig, XdpCounters, XdpMaps};

/// One map of a program.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapSummary {
    /// Kernel map id.
    pub id: u32,
    /// Map name.
    pub name: String,
    /// Map type, as aya names it.
    pub kind: String,
    /// Entries the map can hold.
    pub max_entries: u32,
    /// Bytes of one value.
    pub value_size_bytes: u32,
}

/// The XDP program on one interface.
#[derive(Clone, Debug)]
pub struct XdpReport {
    /// Interface name.
    pub interface: String,
    /// Kernel program id.
    pub program_id: u32,
    /// Program name as the kernel reports it.
    pub program_name: String,
    /// Attach mode.
    pub mode: XdpAttachMode,
    /// The program's maps.
    pub maps: Vec<MapSummary>,
    /// Address and ports (riptide's program only; `None` when not configured).
    pub config: Option<XdpConfig>,
    /// Counters (riptide's program only).
    pub counters: Option<XdpCounters>,
}

/// One loaded riptide sk_reuseport program.
#[derive(Clone, Debug)]
pub struct ReuseportReport {
    /// Kernel program id.
    pub program_id: u32,
    /// The program's maps.
    pub maps: Vec<MapSummary>,
    /// Workers configured in the program's config map.
    pub workers: u32,
    /// Selections per worker and open connections as reported.
    pub counters: ReuseportCounters,
}

/// Everything `riptide-steering show` prints.
#[derive(Clone, Debug, Default)]
pub struct SteeringReport {
    /// Interfaces with an XDP program attached.
    pub xdp: Vec<XdpReport>,
    /// riptide's loaded sk_reuseport programs.
    pub reuseport: Vec<ReuseportReport>,
}

/// Collects the report, for one interface or (with `None`) every interface of this network
/// namespace.
///
/// # Errors
/// [`EbpfError::InterfaceNotFound`] for an unknown interface; netlink and bpf syscall errors (e.g.
/// without root).
pub fn steering_report(interface: Option<&str>) -> Result<SteeringReport, EbpfError> {
    let interfaces = match interface {
        Some(name) => vec![name.to_string()],
        None => interface_names()?,
    };
    let mut report = SteeringReport::default();
    // Other processes load and unload programs and delete interfaces while this walks them; what
    // vanished meanwhile is left out. Only the interface the caller named must exist.
    for name in interfaces {
        match xdp_report(&name) {
            Ok(Some(xdp)) => report.xdp.push(xdp),
            Ok(None) => {}
            Err(error) if interface.is_none() && kernel::vanished(&error) => {}
            Err(error) => return Err(error),
        }
    }
    for program in kernel::programs_named(REUSEPORT_PROGRAM_NAME)? {
        match reuseport_report(&program) {
            Ok(reuse) => report.reuseport.push(reuse),
            Err(error) if kernel::vanished(&error) => {}
            Err(error) => return Err(error),
        }
    }
    Ok(report)
}

fn interface_names() -> Result<Vec<String>, EbpfError> {
    let entries = std::fs::read_dir("/sys/class/net").map_err(|source| EbpfError::Os {
        call: "list /sys/class/net",
        source,
    })?;
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    Ok(names)
}

fn xdp_report(interface: &str) -> Result<Option<XdpReport>, EbpfError> {
    let if_index = xdp::interface_index(interface)?;
    let Some(attachment) = xdp::query(interface, if_index)? else {
        return Ok(None);
    };
    let Some(program) = kernel::program_by_id(attachment.program_id)? else {
        return Ok(None); // detached between the two queries
    };
    let program_name = program.name_as_str().unwrap_or("").to_string();
    let (config, counters) = if program_name == XDP_PROGRAM_NAME {
        let maps = XdpMaps::of_program(&program)?;
        (maps.config()?, Some(maps.counters()?))
    } else {
        (None, None)
    };
    Ok(Some(XdpReport {
        interface: interface.to_string(),
        program_id: attachment.program_id,
        program_name,
        mode: attachment.mode,
        maps: map_summaries(&program)?,
        config,
        counters,
    }))
}

fn reuseport_report(program: &ProgramInfo) -> Result<ReuseportReport, EbpfError> {
    let summaries = map_summaries(program)?;
    let mut maps = kernel::maps_of(program, REUSEPORT_PROGRAM_NAME)?;
    let object = "reuseport_steer";
    let map_error = |map: &'static str| move |source| EbpfError::Map { map, source };
    let config: Array<MapData, RawReuseConfig> =
        Array::try_from(kernel::take_map(&mut maps, object, REUSE_CONFIG_MAP_NAME)?)
            .map_err(map_error(REUSE_CONFIG_MAP_NAME))?;
    let selected: PerCpuArray<MapData, u64> = PerCpuArray::try_from(kernel::take_map(
        &mut maps,
        object,
        REUSE_SELECTED_MAP_NAME,
    )?)
    .map_err(map_error(REUSE_SELECTED_MAP_NAME))?;
    let events: PerCpuArray<MapData, u64> =
        PerCpuArray::try_from(kernel::take_map(&mut maps, object, REUSE_EVENTS_MAP_NAME)?)
            .map_err(map_error(REUSE_EVENTS_MAP_NAME))?;
    let conns: Array<MapData, u64> =
        Array::try_from(kernel::take_map(&mut maps, object, REUSE_CONNS_MAP_NAME)?)
            .map_err(map_error(REUSE_CONNS_MAP_NAME))?;
    let workers = config
        .get(&0, 0)
        .map_err(map_error(REUSE_CONFIG_MAP_NAME))?
        .workers
        .min(selected.len());
    let mut counters = read_counters(&config, &selected, &events, workers)?;
    counters.open_connections = (0..workers)
        .map(|w| conns.get(&w, 0).map_err(map_error(REUSE_CONNS_MAP_NAME)))
        .collect::<Result<_, _>>()?;
    Ok(ReuseportReport {
        program_id: program.id(),
        maps: summaries,
        workers,
        counters,
    })
}

/// The maps of loaded program `program_id`, sorted by name (empty when it no longer exists).
///
/// # Errors
/// bpf syscall errors (e.g. without root).
pub fn program_maps(program_id: u32) -> Result<Vec<MapSummary>, EbpfError> {
    match kernel::program_by_id(program_id)? {
        Some(program) => map_summaries(&program),
        None => Ok(Vec::new()),
    }
}

fn map_summaries(program: &ProgramInfo) -> Result<Vec<MapSummary>, EbpfError> {
    let mut out = Vec::new();
    for (name, map) in kernel::maps_of(program, "(listed)")? {
        let info = map.info().map_err(|source| EbpfError::Map {
            map: "(listed)",
            source,
        })?;
        let kind = info
            .map_type()
            .map_or_else(|_| "unknown".to_string(), |kind| format!("{kind:?}"));
        out.push(MapSummary {
            id: info.id(),
            name,
            kind,
            max_entries: info.max_entries(),
            value_size_bytes: info.value_size(),
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

fn write_maps(f: &mut fmt::Formatter<'_>, maps: &[MapSummary]) -> fmt::Result {
    for map in maps {
        writeln!(
            f,
            "    map {} id {} ({}, {} entries)",
            map.name, map.id, map.kind, map.max_entries
        )?;
    }
    Ok(())
}

impl fmt::Display for SteeringReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.xdp.is_empty() {
            writeln!(f, "xdp: no program attached")?;
        }
        for xdp in &self.xdp {
            writeln!(
                f,
                "xdp {}: program {} id {} mode {}",
                xdp.interface, xdp.program_name, xdp.program_id, xdp.mode
            )?;
            match &xdp.config {
                Some(config) => writeln!(
                    f,
                    "    steers {} tcp ports {:?} and its arp",
                    config.ip, config.ports
                )?,
                None if xdp.program_name == XDP_PROGRAM_NAME => {
                    writeln!(f, "    not configured: steers nothing")?
                }
                None => writeln!(f, "    not riptide's program")?,
            }
            if let Some(counters) = &xdp.counters {
                writeln!(f, "    {counters}")?;
            }
            write_maps(f, &xdp.maps)?;
        }
        if self.reuseport.is_empty() {
            writeln!(f, "sk_reuseport: no riptide program loaded")?;
        }
        for reuse in &self.reuseport {
            writeln!(
                f,
                "sk_reuseport: program {REUSEPORT_PROGRAM_NAME} id {} for {} workers",
                reuse.program_id, reuse.workers
            )?;
            write!(f, "    {}", reuse.counters)?;
            write_maps(f, &reuse.maps)?;
        }
        Ok(())
    }
}
