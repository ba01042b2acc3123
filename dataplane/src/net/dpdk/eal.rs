//! EAL start-up from a configuration struct, with the checks DPDK itself reports poorly done
//! first: hugepages, interfaces and XDP objects named by virtual devices. Each error names the fix.
//!
//! The EAL can be initialised once per process (DPDK keeps global state and refuses a second
//! `rte_eal_init`, even after `rte_eal_cleanup`), so [`Eal`] is a process-wide handle.

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use super::constants::EAL_ARGS_MAX;
use super::ffi;

/// How the EAL gets its memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EalMemory {
    /// Hugepages reserved beforehand (scripts/hugepages.sh); `memory_mb` = None takes what is free.
    Hugepages { memory_mb: Option<u32> },
    /// Plain pages (`--no-huge -m memory_mb`): tests and small machines; slower TLB behaviour.
    NoHuge { memory_mb: u32 },
}

/// Everything `rte_eal_init` is told. Maps onto riptide.toml's `[dpdk]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EalConfig {
    /// Lcores the EAL runs; the first one is the main lcore (the caller's thread).
    pub lcores: Vec<u32>,
    /// The CPU each lcore runs on (same length as `lcores`); empty = lcore N runs on CPU N. Lets
    /// more lcores than CPUs share cores (`--lcores 0@0,1@1,2@1`).
    pub cpus: Vec<u32>,
    pub memory_channels: u32,
    pub memory: EalMemory,
    /// PCI devices to use (`-a`); empty means `--no-pci`, so the EAL grabs no PCI device.
    pub allow_pci: Vec<String>,
    /// Virtual devices, e.g. `net_af_xdp0,iface=eth1,xdp_prog=/path/xdp_steer.o`,
    /// `net_af_packet0,iface=eth1`, `net_tap0`.
    pub vdevs: Vec<String>,
    /// Distinguishes this instance's runtime files (/var/run/dpdk/<prefix>) from other instances.
    pub file_prefix: String,
    /// Extra driver objects or directories to load (`-d`); the default PMD directory of a shared
    /// DPDK build is loaded anyway.
    pub driver_paths: Vec<PathBuf>,
    /// EAL log level (`--log-level`), e.g. "notice"; None keeps DPDK's default.
    pub log_level: Option<String>,
    /// `--in-memory`: no runtime files and no hugetlbfs files (no secondary process can attach).
    /// Hugepages only: DPDK refuses it together with `--no-huge`.
    pub in_memory: bool,
}

/// Why the EAL could not start; each message names the fix.
#[derive(Debug, thiserror::Error)]
pub enum EalError {
    #[error("the EAL is already initialised in this process (DPDK allows it once per process)")]
    AlreadyInitialised,
    #[error("invalid DPDK configuration: {0}")]
    InvalidConfig(String),
    #[error(
        "no hugepages available ({free_mb} MiB free, {needed_mb} MiB needed): run \
         scripts/hugepages.sh (as root) to reserve them, or set [dpdk] no_huge = true"
    )]
    HugepagesMissing { free_mb: u64, needed_mb: u64 },
    #[error(
        "network interface '{iface}' of vdev '{vdev}' does not exist in this network namespace: \
         create it (scripts/netns-lab.sh sets up the veth lab) or fix [dpdk] vdevs"
    )]
    InterfaceMissing { vdev: String, iface: String },
    #[error(
        "XDP object '{path}' of vdev '{vdev}' does not exist: build it with `cargo build -p \
         riptide-ebpf` (it compiles ebpf/src/bpf/xdp_steer.c) or fix xdp_prog in [dpdk] vdevs"
    )]
    XdpObjectMissing { vdev: String, path: PathBuf },
    #[error(
        "rte_eal_init failed: {message} (rte_errno {errno}); see the EAL log above. Usual fixes: \
         run as root, reserve hugepages with scripts/hugepages.sh or set [dpdk] no_huge = true, \
         bind PCI devices with scripts/bind-nic.sh, check that [dpdk] lcores exist on this machine"
    )]
    InitFailed { errno: i32, message: String },
    #[error("lcore {lcore_id} cannot be launched: {reason}")]
    Launch { lcore_id: u32, reason: String },
}

/// Guards the once-per-process `rte_eal_init`.
static EAL_STARTED: AtomicBool = AtomicBool::new(false);

/// The initialised EAL. Dropping it calls `rte_eal_cleanup`; the EAL cannot start again after.
#[derive(Debug)]
pub struct Eal {
    main_lcore_id: u32,
    /// The EAL's runtime directory (config and memory maps), removed after `rte_eal_cleanup`,
    /// which leaves it behind; None with `--in-memory`.
    runtime_dir: Option<PathBuf>,
}

impl Eal {
    /// Checks the configuration against the machine, then runs `rte_eal_init`.
    ///
    /// Errors: [`EalError::AlreadyInitialised`] on a second call in the process, the pre-flight
    /// errors of [`EalConfig::check`], and [`EalError::InitFailed`] with DPDK's reason.
    pub fn init(config: &EalConfig) -> Result<Eal, EalError> {
        config.check()?;
        let args = config.args()?;
        if EAL_STARTED.swap(true, Ordering::SeqCst) {
            return Err(EalError::AlreadyInitialised);
        }
        // The EAL may keep pointers into argv (device arguments) for the life of the process,
        // so the strings are leaked on purpose: once per process, a few hundred bytes.
        let strings: Vec<CString> = args
            .iter()
            .map(|arg| CString::new(arg.as_str()))
            .collect::<Result<_, _>>()
            .map_err(|_| EalError::InvalidConfig("an EAL argument contains a NUL byte".into()))?;
        let argv: &'static mut [*mut c_char] = Box::leak(
            strings
                .into_iter()
                .map(CString::into_raw)
                .collect::<Vec<_>>()
                .into_boxed_slice(),
        );
        let argc = c_int::try_from(argv.len())
            .map_err(|_| EalError::InvalidConfig("too many EAL arguments".into()))?;
        // SAFETY: argv holds argc valid NUL-terminated strings that live for the whole process;
        // EAL_STARTED guarantees this is the only rte_eal_init call of the process.
        let parsed = unsafe { ffi::rte_eal_init(argc, argv.as_mut_ptr()) };
        if parsed < 0 {
            // SAFETY: reading rte_errno (a per-thread variable) right after the failing call.
            let errno = unsafe { ffi::riptide_errno() };
            return Err(EalError::InitFailed {
                errno,
                message: rte_strerror(errno),
            });
        }
        // SAFETY: the EAL is initialised; this only reads its configuration.
        let main_lcore_id = unsafe { ffi::rte_get_main_lcore() };
        tracing::info!(args = ?args, main_lcore_id, "DPDK EAL initialised");
        let runtime_dir = (!config.in_memory).then(|| runtime_dir(&config.file_prefix));
        Ok(Eal {
            main_lcore_id,
            runtime_dir,
        })
    }

    pub fn main_lcore_id(&self) -> u32 {
        self.main_lcore_id
    }

    /// Lcores the EAL runs (the main lcore included).
    pub fn lcore_count(&self) -> u32 {
        // SAFETY: the EAL is initialised; this only reads its configuration.
        unsafe { ffi::rte_lcore_count() }
    }

    /// Runs `work` on worker lcore `lcore_id` (a thread the EAL pinned to that CPU).
    ///
    /// Errors: [`EalError::Launch`] when the lcore is the main lcore, not an EAL lcore, or busy.
    pub fn launch<F>(&self, lcore_id: u32, work: F) -> Result<LcoreJoin, EalError>
    where
        F: FnOnce() + Send + 'static,
    {
        if lcore_id == self.main_lcore_id {
            let reason = "it is the main lcore; run the work on the calling thread".to_string();
            return Err(EalError::Launch { lcore_id, reason });
        }
        let boxed: Box<Box<dyn FnOnce() + Send>> = Box::new(Box::new(work));
        let arg = Box::into_raw(boxed).cast::<c_void>();
        // SAFETY: launch_trampoline takes ownership of arg exactly once when the lcore runs it;
        // if the launch is refused, ownership comes back to us below.
        let result = unsafe { ffi::rte_eal_remote_launch(Some(launch_trampoline), arg, lcore_id) };
        if result != 0 {
            // SAFETY: the EAL refused the launch, so the trampoline never saw arg.
            drop(unsafe { Box::from_raw(arg.cast::<Box<dyn FnOnce() + Send>>()) });
            let reason = format!("rte_eal_remote_launch: {}", rte_strerror(-result));
            return Err(EalError::Launch { lcore_id, reason });
        }
        Ok(LcoreJoin { lcore_id })
    }
}

impl Drop for Eal {
    fn drop(&mut self) {
        // SAFETY: the EAL was initialised by this handle; ports and pools are dropped by their
        // owners before (they borrow nothing from Eal, so callers must keep this order).
        let result = unsafe { ffi::rte_eal_cleanup() };
        if result != 0 {
            tracing::warn!(result, "rte_eal_cleanup failed");
        }
        if let Some(dir) = &self.runtime_dir {
            if let Err(error) = std::fs::remove_dir_all(dir) {
                tracing::warn!(dir = %dir.display(), %error, "cannot remove the EAL runtime dir");
            }
        }
    }
}

/// A launched lcore's work; `join` waits for it.
#[derive(Debug)]
#[must_use = "join the lcore to know whether its work panicked"]
pub struct LcoreJoin {
    lcore_id: u32,
}

impl LcoreJoin {
    /// Waits for the work to finish; false if it panicked.
    pub fn join(self) -> bool {
        // SAFETY: waits on an lcore we launched; the EAL is alive while LcoreJoin exists only if
        // the caller keeps Eal alive, which the EAL requires anyway (documented on Eal::launch).
        let result = unsafe { ffi::rte_eal_wait_lcore(self.lcore_id) };
        result == 0
    }
}

/// Entry of a launched lcore: runs the boxed closure, catching a panic so it never unwinds into C.
extern "C" fn launch_trampoline(arg: *mut c_void) -> c_int {
    // SAFETY: arg came from Box::into_raw in Eal::launch and is consumed here exactly once.
    let work = unsafe { Box::from_raw(arg.cast::<Box<dyn FnOnce() + Send>>()) };
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)) {
        Ok(()) => 0,
        Err(_) => -1,
    }
}

/// Where the EAL keeps its runtime files: /var/run/dpdk/<prefix> for root, else under
/// $XDG_RUNTIME_DIR (or /tmp), as DPDK's eal_get_runtime_dir decides.
fn runtime_dir(file_prefix: &str) -> PathBuf {
    // SAFETY: geteuid has no preconditions.
    let base = if unsafe { libc::geteuid() } == 0 {
        PathBuf::from("/var/run")
    } else {
        std::env::var_os("XDG_RUNTIME_DIR").map_or_else(|| PathBuf::from("/tmp"), PathBuf::from)
    };
    base.join("dpdk").join(file_prefix)
}

/// DPDK's text for an rte_errno value.
pub fn rte_strerror(errno: i32) -> String {
    // SAFETY: rte_strerror returns a pointer to a static or thread-local NUL-terminated string.
    let text = unsafe { CStr::from_ptr(ffi::rte_strerror(errno)) };
    text.to_string_lossy().into_owned()
}

impl EalConfig {
    /// A configuration for tests and small machines: `--no-huge`, the given lcores, no PCI.
    pub fn no_huge(lcores: Vec<u32>, memory_mb: u32, file_prefix: &str) -> EalConfig {
        EalConfig {
            lcores,
            cpus: Vec::new(),
            memory_channels: 1,
            memory: EalMemory::NoHuge { memory_mb },
            allow_pci: Vec::new(),
            vdevs: Vec::new(),
            file_prefix: file_prefix.to_string(),
            driver_paths: Vec::new(),
            log_level: None,
            in_memory: false,
        }
    }

    /// The EAL's command line for this configuration (argv[0] included).
    ///
    /// Errors: [`EalError::InvalidConfig`] when a field cannot be expressed (no lcores, ...).
    pub fn args(&self) -> Result<Vec<String>, EalError> {
        let invalid = |text: &str| Err(EalError::InvalidConfig(text.to_string()));
        let Some(main_lcore) = self.lcores.first() else {
            return invalid("[dpdk] lcores is empty; give at least one CPU id");
        };
        if self.file_prefix.is_empty() || self.file_prefix.contains(['/', ' ', ',']) {
            return invalid("the EAL file prefix must be a non-empty name without '/', ' ' or ','");
        }
        let mut args = vec!["riptide-dataplane".to_string()];
        if self.cpus.is_empty() {
            let lcores: Vec<String> = self.lcores.iter().map(u32::to_string).collect();
            args.extend(["-l".to_string(), lcores.join(",")]);
        } else if self.cpus.len() == self.lcores.len() {
            let placed: Vec<String> = (self.lcores.iter().zip(&self.cpus))
                .map(|(lcore, cpu)| format!("{lcore}@{cpu}"))
                .collect();
            args.extend(["--lcores".to_string(), placed.join(",")]);
        } else {
            return invalid("[dpdk] cpus needs one CPU per lcore (or none)");
        }
        args.extend([
            "--main-lcore".to_string(),
            main_lcore.to_string(),
            "-n".to_string(),
            self.memory_channels.max(1).to_string(),
            "--file-prefix".to_string(),
            self.file_prefix.clone(),
        ]);
        match self.memory {
            EalMemory::Hugepages {
                memory_mb: Some(memory_mb),
            } => {
                args.extend(["-m".to_string(), memory_mb.to_string()]);
            }
            EalMemory::Hugepages { memory_mb: None } => {}
            EalMemory::NoHuge { memory_mb } => {
                args.extend([
                    "--no-huge".to_string(),
                    "-m".to_string(),
                    memory_mb.to_string(),
                ]);
            }
        }
        if self.allow_pci.is_empty() {
            args.push("--no-pci".to_string());
        }
        for pci in &self.allow_pci {
            args.extend(["-a".to_string(), pci.clone()]);
        }
        for vdev in &self.vdevs {
            args.extend(["--vdev".to_string(), vdev.clone()]);
        }
        for path in &self.driver_paths {
            args.extend(["-d".to_string(), path.display().to_string()]);
        }
        if self.in_memory {
            if matches!(self.memory, EalMemory::NoHuge { .. }) {
                return invalid("--in-memory needs hugepages; DPDK refuses it with no_huge");
            }
            args.push("--in-memory".to_string());
        }
        if let Some(level) = &self.log_level {
            args.extend(["--log-level".to_string(), level.clone()]);
        }
        if args.len() > EAL_ARGS_MAX {
            return invalid("too many EAL arguments (devices, driver paths)");
        }
        Ok(args)
    }

    /// Pre-flight checks with errors that name the fix, before DPDK gets a chance to fail with a
    /// less helpful message (or, for a missing interface, to fail deep in a PMD probe).
    ///
    /// Errors: [`EalError::HugepagesMissing`], [`EalError::InterfaceMissing`],
    /// [`EalError::XdpObjectMissing`], [`EalError::InvalidConfig`].
    pub fn check(&self) -> Result<(), EalError> {
        if let EalMemory::Hugepages { memory_mb } = self.memory {
            check_hugepages(Path::new(HUGEPAGES_SYSFS_DIR), memory_mb)?;
        }
        for vdev in &self.vdevs {
            let parsed = Vdev::parse(vdev)?;
            parsed.check()?;
        }
        Ok(())
    }
}

/// Where the kernel lists each hugepage size's pools.
const HUGEPAGES_SYSFS_DIR: &str = "/sys/kernel/mm/hugepages";

/// Free hugepage memory across all page sizes must cover `memory_mb` (or be non-zero).
fn check_hugepages(sysfs_dir: &Path, memory_mb: Option<u32>) -> Result<(), EalError> {
    let free_mb = free_hugepages_mb(sysfs_dir);
    let needed_mb = u64::from(memory_mb.unwrap_or(1));
    if free_mb < needed_mb {
        return Err(EalError::HugepagesMissing { free_mb, needed_mb });
    }
    Ok(())
}

/// Sum of free_hugepages x page size over `hugepages-<size>kB` directories; 0 when unreadable.
fn free_hugepages_mb(sysfs_dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(sysfs_dir) else {
        return 0;
    };
    let mut free_kb: u64 = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(size_kb) = name
            .to_str()
            .and_then(|name| name.strip_prefix("hugepages-"))
            .and_then(|rest| rest.strip_suffix("kB"))
            .and_then(|size| size.parse::<u64>().ok())
        else {
            continue;
        };
        let free_pages = std::fs::read_to_string(entry.path().join("free_hugepages"))
            .ok()
            .and_then(|text| text.trim().parse::<u64>().ok())
            .unwrap_or(0);
        free_kb = free_kb.saturating_add(free_pages.saturating_mul(size_kb));
    }
    free_kb / 1024
}

/// A `--vdev` argument split into its driver name and `key=value` options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vdev {
    pub name: String,
    pub options: Vec<(String, String)>,
}

impl Vdev {
    /// Errors: [`EalError::InvalidConfig`] for an empty name or an option without `=`.
    pub fn parse(text: &str) -> Result<Vdev, EalError> {
        let mut parts = text.split(',');
        let name = parts.next().unwrap_or("").trim().to_string();
        if name.is_empty() {
            return Err(EalError::InvalidConfig(format!(
                "vdev '{text}' has no device name"
            )));
        }
        let mut options = Vec::new();
        for part in parts {
            let Some((key, value)) = part.split_once('=') else {
                let reason = format!("vdev '{text}': option '{part}' is not key=value");
                return Err(EalError::InvalidConfig(reason));
            };
            options.push((key.trim().to_string(), value.trim().to_string()));
        }
        Ok(Vdev { name, options })
    }

    pub fn option(&self, key: &str) -> Option<&str> {
        self.options
            .iter()
            .find(|(name, _)| name == key)
            .map(|(_, value)| value.as_str())
    }

    /// The device driver: the name without its instance number (`net_af_xdp0` -> `net_af_xdp`).
    pub fn driver(&self) -> &str {
        self.name.trim_end_matches(|c: char| c.is_ascii_digit())
    }

    /// Checks what the PMD will need from the host: the interface and the XDP object.
    pub fn check(&self) -> Result<(), EalError> {
        let needs_iface = matches!(self.driver(), "net_af_xdp" | "net_af_packet");
        if needs_iface {
            let Some(iface) = self.option("iface") else {
                let reason = format!("vdev '{}' needs iface=<interface>", self.name);
                return Err(EalError::InvalidConfig(reason));
            };
            if !interface_exists(iface) {
                let vdev = self.name.clone();
                return Err(EalError::InterfaceMissing {
                    vdev,
                    iface: iface.to_string(),
                });
            }
        }
        if let Some(path) = self.option("xdp_prog") {
            if !Path::new(path).is_file() {
                let vdev = self.name.clone();
                return Err(EalError::XdpObjectMissing {
                    vdev,
                    path: PathBuf::from(path),
                });
            }
        }
        Ok(())
    }
}

/// Whether an interface of that name exists in the calling thread's network namespace.
pub fn interface_exists(iface: &str) -> bool {
    let Ok(name) = CString::new(iface) else {
        return false;
    };
    // SAFETY: if_nametoindex only reads the NUL-terminated name.
    unsafe { libc::if_nametoindex(name.as_ptr()) != 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> EalConfig {
        EalConfig::no_huge(vec![0, 1], 256, "riptide-test")
    }

    #[test]
    fn args_for_no_huge_vdev_config() {
        let mut config = config();
        config.vdevs.push("net_af_packet0,iface=lo".to_string());
        config.log_level = Some("notice".to_string());
        let args = config.args().unwrap();
        let expected = [
            "riptide-dataplane",
            "-l",
            "0,1",
            "--main-lcore",
            "0",
            "-n",
            "1",
            "--file-prefix",
            "riptide-test",
            "--no-huge",
            "-m",
            "256",
            "--no-pci",
            "--vdev",
            "net_af_packet0,iface=lo",
            "--log-level",
            "notice",
        ];
        assert_eq!(args, expected);
    }

    #[test]
    fn lcores_placed_on_fewer_cpus() {
        let mut config = EalConfig::no_huge(vec![0, 1, 2], 256, "riptide-test");
        config.cpus = vec![0, 1, 1];
        let args = config.args().unwrap();
        assert_eq!(args[1..5], ["--lcores", "0@0,1@1,2@1", "--main-lcore", "0"]);
        config.cpus = vec![0, 1];
        assert!(
            matches!(config.args(), Err(EalError::InvalidConfig(text)) if text.contains("cpus"))
        );
    }

    #[test]
    fn args_for_hugepages_and_pci() {
        let mut config = config();
        config.memory = EalMemory::Hugepages {
            memory_mb: Some(512),
        };
        config.allow_pci = vec!["0000:03:00.0".to_string()];
        config.memory_channels = 4;
        let args = config.args().unwrap();
        assert!(args.windows(2).any(|pair| pair == ["-m", "512"]));
        assert!(args.windows(2).any(|pair| pair == ["-a", "0000:03:00.0"]));
        assert!(args.windows(2).any(|pair| pair == ["-n", "4"]));
        assert!(!args
            .iter()
            .any(|arg| arg == "--no-pci" || arg == "--no-huge"));
    }

    #[test]
    fn in_memory_needs_hugepages() {
        let mut config = config();
        config.in_memory = true;
        assert!(matches!(config.args(), Err(EalError::InvalidConfig(_))));
        config.memory = EalMemory::Hugepages { memory_mb: None };
        assert!(config.args().unwrap().contains(&"--in-memory".to_string()));
    }

    #[test]
    fn args_reject_empty_lcores_and_bad_prefix() {
        let mut empty = config();
        empty.lcores.clear();
        assert!(matches!(empty.args(), Err(EalError::InvalidConfig(_))));
        let mut bad_prefix = config();
        bad_prefix.file_prefix = "a/b".to_string();
        assert!(matches!(bad_prefix.args(), Err(EalError::InvalidConfig(_))));
    }

    #[test]
    fn vdev_parse_and_driver() {
        let vdev = Vdev::parse("net_af_xdp0,iface=eth1,xdp_prog=/x/steer.o").unwrap();
        assert_eq!(vdev.name, "net_af_xdp0");
        assert_eq!(vdev.driver(), "net_af_xdp");
        assert_eq!(vdev.option("iface"), Some("eth1"));
        assert_eq!(vdev.option("xdp_prog"), Some("/x/steer.o"));
        assert_eq!(vdev.option("queue_count"), None);
        assert!(matches!(Vdev::parse(""), Err(EalError::InvalidConfig(_))));
        assert!(matches!(
            Vdev::parse("net_tap0,broken"),
            Err(EalError::InvalidConfig(_))
        ));
    }

    #[test]
    fn missing_interface_is_named_with_the_fix() {
        let mut config = config();
        config
            .vdevs
            .push("net_af_packet0,iface=rt-no-such0".to_string());
        let error = config.check().unwrap_err();
        assert!(
            matches!(&error, EalError::InterfaceMissing { iface, .. } if iface == "rt-no-such0")
        );
        assert!(error.to_string().contains("scripts/netns-lab.sh"));
    }

    #[test]
    fn missing_xdp_object_is_named_with_the_fix() {
        let mut config = config();
        config
            .vdevs
            .push("net_af_xdp0,iface=lo,xdp_prog=/nonexistent/xdp_steer.o".to_string());
        let error = config.check().unwrap_err();
        assert!(matches!(error, EalError::XdpObjectMissing { .. }));
        assert!(error.to_string().contains("riptide-ebpf"));
    }

    #[test]
    fn af_packet_without_iface_is_invalid() {
        let mut config = config();
        config.vdevs.push("net_af_packet0".to_string());
        assert!(matches!(config.check(), Err(EalError::InvalidConfig(_))));
        config.vdevs = vec![
            "net_tap0".to_string(),
            "net_af_packet0,iface=lo".to_string(),
        ];
        config.check().unwrap();
    }

    #[test]
    fn hugepages_counted_from_sysfs_layout() {
        let dir = tempfile::tempdir().unwrap();
        let pool_2m = dir.path().join("hugepages-2048kB");
        let pool_1g = dir.path().join("hugepages-1048576kB");
        std::fs::create_dir(&pool_2m).unwrap();
        std::fs::create_dir(&pool_1g).unwrap();
        std::fs::write(pool_2m.join("free_hugepages"), "256\n").unwrap();
        std::fs::write(pool_1g.join("free_hugepages"), "1\n").unwrap();
        assert_eq!(free_hugepages_mb(dir.path()), 512 + 1024);
        check_hugepages(dir.path(), Some(1536)).unwrap();
        let error = check_hugepages(dir.path(), Some(2048)).unwrap_err();
        assert!(matches!(
            error,
            EalError::HugepagesMissing {
                free_mb: 1536,
                needed_mb: 2048
            }
        ));
        assert!(error.to_string().contains("scripts/hugepages.sh"));
    }

    #[test]
    fn no_hugepages_at_all_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let error = check_hugepages(dir.path(), None).unwrap_err();
        assert!(matches!(
            error,
            EalError::HugepagesMissing {
                free_mb: 0,
                needed_mb: 1
            }
        ));
    }
}
