//! The compiled eBPF objects, embedded at build time (build.rs compiles `src/bpf/*.c`).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// The XDP steering object (`xdp_steer.c`), as clang wrote it.
pub const XDP_STEER_OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/xdp_steer.o"));

/// The sk_reuseport steering object (`reuseport_steer.c`).
pub const REUSEPORT_STEER_OBJECT: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/reuseport_steer.o"));

/// A program the verifier must reject (`tests/broken.c`); only the tests load it.
#[doc(hidden)]
pub const BROKEN_OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/broken.o"));

/// A valid XDP program that is not riptide's (`tests/foreign_pass.c`); only the tests use it.
#[doc(hidden)]
pub const FOREIGN_TEST_OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/foreign_pass.o"));

/// File name used by [`write_xdp_object`].
pub const XDP_OBJECT_FILE_NAME: &str = "riptide_xdp_steer.o";

/// Writes the XDP steering object into `dir` (created if missing) and returns its path, for DPDK's
/// af_xdp PMD argument `xdp_prog=<path>`. Written to a temporary name and renamed, so a PMD starting
/// concurrently never reads a half-written file.
///
/// # Errors
/// Any I/O error creating the directory or writing the file.
pub fn write_xdp_object(dir: &Path) -> io::Result<PathBuf> {
    fs::create_dir_all(dir)?;
    let path = dir.join(XDP_OBJECT_FILE_NAME);
    let temporary = dir.join(format!(".{XDP_OBJECT_FILE_NAME}.{}", std::process::id()));
    fs::write(&temporary, XDP_STEER_OBJECT)?;
    fs::rename(&temporary, &path)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ELF_MAGIC: &[u8] = b"\x7fELF";
    const EM_BPF: u16 = 247;

    fn machine(object: &[u8]) -> u16 {
        u16::from_le_bytes([object[18], object[19]])
    }

    #[test]
    fn objects_are_bpf_elf_files() {
        for object in [
            XDP_STEER_OBJECT,
            REUSEPORT_STEER_OBJECT,
            BROKEN_OBJECT,
            FOREIGN_TEST_OBJECT,
        ] {
            assert_eq!(&object[..4], ELF_MAGIC);
            assert_eq!(machine(object), EM_BPF);
        }
    }

    #[test]
    fn write_xdp_object_writes_the_embedded_bytes() {
        let dir = std::env::temp_dir().join(format!("riptide-ebpf-obj-{}", std::process::id()));
        let path = write_xdp_object(&dir).expect("write object");
        assert_eq!(fs::read(&path).expect("read back"), XDP_STEER_OBJECT);
        fs::remove_dir_all(&dir).expect("clean up");
    }
}
