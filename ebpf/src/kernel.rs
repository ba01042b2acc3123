//! Finding riptide's programs and maps that are already loaded in the kernel, by id and name. This
//! is how the dataplane reaches the maps of the XDP program that DPDK's af_xdp PMD loaded from our
//! object file, and how `riptide-steering show` reads counters of programs other processes own.

use std::collections::HashMap;

use aya::maps::{Map, MapData};
use aya::programs::{loaded_links, loaded_programs, ProgramInfo};

use crate::error::EbpfError;

/// The loaded program with kernel id `program_id`, if it still exists.
pub(crate) fn program_by_id(program_id: u32) -> Result<Option<ProgramInfo>, EbpfError> {
    for info in loaded_programs() {
        let info = info.map_err(|source| EbpfError::Program {
            program: "(any)",
            action: "list programs",
            source,
        })?;
        if info.id() == program_id {
            return Ok(Some(info));
        }
    }
    Ok(None)
}

/// Every loaded program whose kernel name is `name`. Programs unloaded while the list is walked are
/// skipped.
pub(crate) fn programs_named(name: &str) -> Result<Vec<ProgramInfo>, EbpfError> {
    let mut out = Vec::new();
    for info in loaded_programs() {
        let info = match info {
            Ok(info) => info,
            Err(source) => {
                let error = EbpfError::Program {
                    program: "(any)",
                    action: "list programs",
                    source,
                };
                if vanished(&error) {
                    continue;
                }
                return Err(error);
            }
        };
        if info.name_as_str() == Some(name) {
            out.push(info);
        }
    }
    Ok(out)
}

/// True when `error` comes from a kernel object (program, map, interface) that disappeared between
/// listing it and reading it: ENOENT or ENODEV somewhere in its chain of causes.
pub(crate) fn vanished(error: &EbpfError) -> bool {
    if matches!(error, EbpfError::InterfaceNotFound(_)) {
        return true;
    }
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = cause {
        if let Some(io) = current.downcast_ref::<std::io::Error>() {
            if matches!(io.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENODEV)) {
                return true;
            }
        }
        cause = current.source();
    }
    false
}

/// True when a bpf_link holds program `program_id` (links die with the last fd that refers to
/// them, so this means a live process, or a pin, keeps it attached).
pub(crate) fn held_by_link(program_id: u32) -> bool {
    loaded_links()
        .filter_map(Result::ok)
        .any(|link| link.program_id() == program_id)
}

/// The maps a loaded program uses, by name.
pub(crate) fn maps_of(
    program: &ProgramInfo,
    program_name: &'static str,
) -> Result<HashMap<String, MapData>, EbpfError> {
    let ids = program
        .map_ids()
        .map_err(|source| EbpfError::Program {
            program: program_name,
            action: "read map ids",
            source,
        })?
        .unwrap_or_default();
    let mut out = HashMap::new();
    for id in ids {
        let map = MapData::from_id(id).map_err(|source| EbpfError::Map {
            map: "(by id)",
            source,
        })?;
        let info = map.info().map_err(|source| EbpfError::Map {
            map: "(by id)",
            source,
        })?;
        if let Some(name) = info.name_as_str() {
            out.insert(name.to_string(), map);
        }
    }
    Ok(out)
}

/// Takes map `name` out of `maps` as an aya [`Map`] of the right kind.
pub(crate) fn take_map(
    maps: &mut HashMap<String, MapData>,
    object: &'static str,
    name: &'static str,
) -> Result<Map, EbpfError> {
    let data = maps.remove(name).ok_or_else(|| EbpfError::Missing {
        object,
        kind: "map",
        name: name.to_string(),
    })?;
    Map::from_map_data(data).map_err(|source| EbpfError::Map { map: name, source })
}
