//! Facts about the host and this process for `get_stats`, read from /proc, uname and statvfs.
//! Each fact that cannot be read is zero or empty: stats are informative, never fatal.

use std::path::Path;

#[derive(Debug, Default)]
pub struct HostFacts {
    pub process_rss_bytes: u64,
    pub process_read_bytes: u64,
    pub process_written_bytes: u64,
    pub memory_total_bytes: u64,
    pub memory_available_bytes: u64,
    pub disk_free_bytes: u64,
    pub disk_total_bytes: u64,
    pub hostname: String,
    pub os_name: String,
    pub os_version: String,
    pub kernel_version: String,
}

impl HostFacts {
    pub fn read(data_dir: &Path) -> HostFacts {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let io = std::fs::read_to_string("/proc/self/io").unwrap_or_default();
        let (disk_free_bytes, disk_total_bytes) = disk_space(data_dir);
        let uname = nix::sys::utsname::uname().ok();
        let field = |f: fn(&nix::sys::utsname::UtsName) -> &std::ffi::OsStr| {
            uname
                .as_ref()
                .map(|u| f(u).to_string_lossy().into_owned())
                .unwrap_or_default()
        };
        HostFacts {
            process_rss_bytes: kib_field(&status, "VmRSS:") * 1024,
            process_read_bytes: plain_field(&io, "read_bytes:"),
            process_written_bytes: plain_field(&io, "write_bytes:"),
            memory_total_bytes: memory_total_in(&meminfo),
            memory_available_bytes: kib_field(&meminfo, "MemAvailable:") * 1024,
            disk_free_bytes,
            disk_total_bytes,
            hostname: field(|u| u.nodename()),
            os_name: field(|u| u.sysname()),
            os_version: field(|u| u.version()),
            kernel_version: field(|u| u.release()),
        }
    }
}

/// The machine's physical memory (MemTotal), 0 when /proc/meminfo cannot be read.
pub fn memory_total_bytes() -> u64 {
    memory_total_in(&std::fs::read_to_string("/proc/meminfo").unwrap_or_default())
}

fn memory_total_in(meminfo: &str) -> u64 {
    kib_field(meminfo, "MemTotal:") * 1024
}

fn plain_field(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|line| line.strip_prefix(name))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|value| value.parse().ok())
        .unwrap_or(0)
}

fn kib_field(text: &str, name: &str) -> u64 {
    plain_field(text, name)
}

fn disk_space(path: &Path) -> (u64, u64) {
    match nix::sys::statvfs::statvfs(path) {
        Ok(stat) => {
            let fragment = stat.fragment_size();
            (stat.blocks_available() * fragment, stat.blocks() * fragment)
        }
        Err(_) => (0, 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_real_facts_of_this_machine() {
        let facts = HostFacts::read(Path::new("/"));
        assert!(facts.memory_total_bytes > 0);
        assert!(facts.process_rss_bytes > 0);
        assert!(facts.disk_total_bytes > 0);
        assert_eq!(facts.os_name, "Linux");
    }

    #[test]
    fn fields_parse_by_name() {
        assert_eq!(kib_field("VmRSS:\t  1234 kB\n", "VmRSS:"), 1234);
        assert_eq!(plain_field("read_bytes: 77\n", "read_bytes:"), 77);
        assert_eq!(plain_field("", "x:"), 0);
    }
}
