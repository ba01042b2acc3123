//! riptide-ebpf: riptide's eBPF programs and their loader.
//!
//! - [`xdp`]: XDP steering for the AF_XDP dataplane (appliance frames to AF_XDP sockets, the rest
//!   to the kernel), attached by riptide or loaded by DPDK's af_xdp PMD from
//!   [`write_xdp_object`]'s file.
//! - [`reuseport`]: sk_reuseport steering of new connections over the kernel backend's workers.
//! - [`show`]: what is attached where, with counters (`riptide-steering`, later `riptidectl`).
//!
//! The programs are C (`src/bpf/`), compiled by build.rs and embedded; see `docs/internals.md`.

pub mod constants;
pub mod error;
mod kernel;
pub mod netlink;
mod object;
pub mod reuseport;
pub mod show;
pub mod xdp;

pub use error::{EbpfError, VerifierError};
#[doc(hidden)]
pub use object::FOREIGN_TEST_OBJECT;
pub use object::{
    write_xdp_object, REUSEPORT_STEER_OBJECT, XDP_OBJECT_FILE_NAME, XDP_STEER_OBJECT,
};
pub use reuseport::{ConnectionCounter, ReuseportCounters, ReuseportSteering, SteeringPolicy};
pub use xdp::{
    XdpAction, XdpConfig, XdpCounters, XdpMaps, XdpModePreference, XdpProgram, XdpRun, XdpSteering,
};

/// Loads the deliberately broken test program (`src/bpf/tests/broken.c`) and returns the verifier's
/// verdict. Exists so the tests (and a curious operator) can see what a verifier error looks like.
///
/// # Errors
/// Always, on a kernel with a working verifier: [`EbpfError::Verifier`].
#[doc(hidden)]
pub fn load_broken_program() -> Result<(), EbpfError> {
    let mut ebpf = aya::EbpfLoader::new()
        .load(object::BROKEN_OBJECT)
        .map_err(|source| EbpfError::Object {
            object: "broken",
            source,
        })?;
    let program = ebpf
        .program_mut("riptide_broken")
        .ok_or_else(|| EbpfError::Missing {
            object: "broken",
            kind: "program",
            name: "riptide_broken".into(),
        })?;
    let program: &mut aya::programs::Xdp =
        program.try_into().map_err(|source| EbpfError::Program {
            program: "riptide_broken",
            action: "type check",
            source,
        })?;
    program
        .load()
        .map_err(|error| error::load_error("riptide_broken", error))
}
