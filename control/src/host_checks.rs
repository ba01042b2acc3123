//! Checks of a configuration against the machine it is about to run on: the dataplane's own
//! validation knows the file, these know the host (cores, isolation, hugepages, interfaces, PCI
//! devices, the XDP object, the data directory). Every finding names the key and the fix.

use riptide_config::{Backend, Config};
use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

/// How bad a finding is: errors refuse to start, warnings are logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Error,
    Warning,
}

/// One problem of the configuration on this host.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Finding {
    pub severity: Severity,
    /// The configuration key at fault, e.g. `dpdk.lcores`.
    pub key: String,
    pub problem: String,
    pub fix: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let label = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(
            f,
            "{label}: `{}`: {}; fix: {}",
            self.key, self.problem, self.fix
        )
    }
}

/// Where the host facts are read from: the real `/sys` by default; tests point it at a scratch
/// tree to stand in for states this machine cannot be put in (isolated cores, PCI NICs).
#[derive(Debug, Clone)]
pub struct HostPaths {
    pub sys: PathBuf,
}

impl Default for HostPaths {
    fn default() -> Self {
        HostPaths {
            sys: PathBuf::from("/sys"),
        }
    }
}

/// Runs every host check; an empty result means the host fits the configuration.
pub fn check_host(config: &Config, host: &HostPaths) -> Vec<Finding> {
    let mut findings = Vec::new();
    let facts = CpuFacts::read(host);
    check_kernel_cores(config, &facts, &mut findings);
    if config.dataplane.backend == Backend::Dpdk {
        check_dpdk_lcores(config, &facts, &mut findings);
        check_hugepages(config, host, &mut findings);
        check_vdevs(config, host, &mut findings);
        check_pci(config, host, &mut findings);
    }
    check_control_address(config, &mut findings);
    check_http_address(config, &mut findings);
    check_data_dir(&config.system.path, &mut findings);
    findings
}

/// True if any finding is an error.
pub fn has_errors(findings: &[Finding]) -> bool {
    findings.iter().any(|f| f.severity == Severity::Error)
}

struct CpuFacts {
    online: BTreeSet<usize>,
    isolated: BTreeSet<usize>,
    online_text: String,
}

impl CpuFacts {
    fn read(host: &HostPaths) -> CpuFacts {
        let cpu_dir = host.sys.join("devices/system/cpu");
        let online_text = read_trimmed(&cpu_dir.join("online"))
            .or_else(|| read_trimmed(&cpu_dir.join("present")))
            .unwrap_or_default();
        let isolated_text = read_trimmed(&cpu_dir.join("isolated")).unwrap_or_default();
        CpuFacts {
            online: parse_cpu_list(&online_text).unwrap_or_default(),
            isolated: parse_cpu_list(&isolated_text).unwrap_or_default(),
            online_text,
        }
    }
}

fn read_trimmed(path: &Path) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
}

/// Parses a kernel CPU list such as `0-3,8,10-11`.
///
/// # Errors
/// A message naming the part that is not a number or a range.
pub fn parse_cpu_list(text: &str) -> Result<BTreeSet<usize>, String> {
    let mut cpus = BTreeSet::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let bad = || format!("'{part}' is not a CPU number or range");
        match part.split_once('-') {
            Some((lo, hi)) => {
                let lo: usize = lo.parse().map_err(|_| bad())?;
                let hi: usize = hi.parse().map_err(|_| bad())?;
                if lo > hi {
                    return Err(bad());
                }
                cpus.extend(lo..=hi);
            }
            None => {
                cpus.insert(part.parse().map_err(|_| bad())?);
            }
        }
    }
    Ok(cpus)
}

/// Renders CPUs as a kernel CPU list (`1-3,6`), for messages and fixes.
pub fn format_cpu_list(cpus: &BTreeSet<usize>) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut iter = cpus.iter().copied().peekable();
    while let Some(start) = iter.next() {
        let mut end = start;
        while iter.peek() == Some(&(end + 1)) {
            end = iter.next().unwrap_or(end);
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
    }
    parts.join(",")
}

fn finding(severity: Severity, key: &str, problem: String, fix: String) -> Finding {
    Finding {
        severity,
        key: key.to_string(),
        problem,
        fix,
    }
}

/// Cores that do not exist are errors; cores that exist but are not isolated are errors only when
/// something busy-polls on them (`busy_polling`), since a pinned thread that sleeps when idle
/// shares its core without starving anyone.
fn check_cores(
    key: &str,
    cores: &[usize],
    busy_polling: bool,
    facts: &CpuFacts,
    out: &mut Vec<Finding>,
) {
    let wanted: BTreeSet<usize> = cores.iter().copied().collect();
    let missing: BTreeSet<usize> = wanted.difference(&facts.online).copied().collect();
    if !missing.is_empty() {
        out.push(finding(
            Severity::Error,
            key,
            format!(
                "CPU(s) {} do not exist or are offline (online: {})",
                format_cpu_list(&missing),
                facts.online_text
            ),
            format!("use CPUs from {}", facts.online_text),
        ));
    }
    let present: BTreeSet<usize> = wanted.intersection(&facts.online).copied().collect();
    let shared: BTreeSet<usize> = present.difference(&facts.isolated).copied().collect();
    if !shared.is_empty() {
        let list = format_cpu_list(&shared);
        out.push(finding(
            if busy_polling {
                Severity::Error
            } else {
                Severity::Warning
            },
            key,
            format!("CPU(s) {list} are not isolated, so the scheduler runs other work on them"),
            format!("run scripts/isolate-cores.sh --cores {list} and reboot"),
        ));
    }
}

fn check_kernel_cores(config: &Config, facts: &CpuFacts, out: &mut Vec<Finding>) {
    check_cores(
        "dataplane.cores",
        &config.dataplane.cores,
        false,
        facts,
        out,
    );
}

/// The CPUs the lcores run on: `dpdk.cpus` when set (lcore ids are then only names), else the
/// lcore ids themselves.
fn check_dpdk_lcores(config: &Config, facts: &CpuFacts, out: &mut Vec<Finding>) {
    let busy_polling = config.dpdk.idle_backoff_us == 0;
    let (key, cpus) = if config.dpdk.cpus.is_empty() {
        ("dpdk.lcores", &config.dpdk.lcores)
    } else {
        ("dpdk.cpus", &config.dpdk.cpus)
    };
    check_cores(key, cpus, busy_polling, facts, out);
}

/// Free hugepage memory across all page sizes, in bytes.
fn free_hugepage_bytes(host: &HostPaths) -> u64 {
    let Ok(entries) = std::fs::read_dir(host.sys.join("kernel/mm/hugepages")) else {
        return 0;
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().to_string();
            let size_kb: u64 = name
                .strip_prefix("hugepages-")?
                .strip_suffix("kB")?
                .parse()
                .ok()?;
            let free: u64 = read_trimmed(&entry.path().join("free_hugepages"))?
                .parse()
                .ok()?;
            Some(size_kb * 1024 * free)
        })
        .sum()
}

fn check_hugepages(config: &Config, host: &HostPaths, out: &mut Vec<Finding>) {
    if config.dpdk.no_huge {
        return;
    }
    let needed_bytes = u64::from(config.dpdk.memory_mb) << 20;
    let free_bytes = free_hugepage_bytes(host);
    if free_bytes < needed_bytes {
        let pages_2m = needed_bytes.div_ceil(2 << 20);
        out.push(finding(
            Severity::Error,
            "dpdk.memory_mb",
            format!(
                "{} MiB of hugepages are needed but {} MiB are free",
                config.dpdk.memory_mb,
                free_bytes >> 20
            ),
            format!(
                "reserve them with scripts/hugepages.sh --pages {pages_2m}, lower dpdk.memory_mb, \
                 or set dpdk.no_huge = true (slower; for tests)"
            ),
        ));
    }
}

/// The `key=value` arguments of a DPDK device string such as `net_af_xdp0,iface=eth1,xdp_prog=x.o`.
fn device_args(device: &str) -> impl Iterator<Item = (&str, &str)> {
    device
        .split(',')
        .skip(1)
        .filter_map(|arg| arg.split_once('='))
}

fn check_vdevs(config: &Config, host: &HostPaths, out: &mut Vec<Finding>) {
    for vdev in &config.dpdk.vdevs {
        for (name, value) in device_args(vdev) {
            match name {
                "iface" if !host.sys.join("class/net").join(value).exists() => {
                    out.push(finding(
                        Severity::Error,
                        "dpdk.vdevs",
                        format!("interface '{value}' (in '{vdev}') does not exist"),
                        "correct the name (ip -br link lists them), or create the lab \
                         interfaces with scripts/netns-lab.sh up"
                            .to_string(),
                    ));
                }
                "xdp_prog" => {
                    if let Err(e) = std::fs::File::open(value) {
                        out.push(finding(
                            Severity::Error,
                            "dpdk.vdevs",
                            format!("XDP object '{value}' (in '{vdev}') cannot be read: {e}"),
                            "point xdp_prog at the steering object installed with riptide \
                             (built by the ebpf crate), readable by root"
                                .to_string(),
                        ));
                    }
                }
                _ => {}
            }
        }
    }
}

/// Drivers DPDK can drive a PCI NIC through.
const DPDK_PCI_DRIVERS: [&str; 3] = ["vfio-pci", "uio_pci_generic", "igb_uio"];

fn check_pci(config: &Config, host: &HostPaths, out: &mut Vec<Finding>) {
    for address in &config.dpdk.allow_pci {
        let full = if address.matches(':').count() == 1 {
            format!("0000:{address}")
        } else {
            address.clone()
        };
        let device = host.sys.join("bus/pci/devices").join(&full);
        if !device.exists() {
            out.push(finding(
                Severity::Error,
                "dpdk.allow_pci",
                format!("PCI device '{address}' does not exist"),
                "list the NICs with dpdk-devbind.py --status-dev net and use one of their addresses"
                    .to_string(),
            ));
            continue;
        }
        let driver = std::fs::read_link(device.join("driver"))
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().to_string()));
        if !driver
            .as_deref()
            .is_some_and(|d| DPDK_PCI_DRIVERS.contains(&d))
        {
            out.push(finding(
                Severity::Error,
                "dpdk.allow_pci",
                format!(
                    "PCI device '{address}' is bound to {}, which DPDK cannot use",
                    driver.as_deref().unwrap_or("no driver")
                ),
                format!("bind it with scripts/bind-nic.sh {address}"),
            ));
        }
    }
}

/// Off loopback the configuration already demands a token; without TLS it travels in
/// plaintext with every request.
fn check_control_address(config: &Config, out: &mut Vec<Finding>) {
    match config.control.socket_address() {
        Err(e) => out.push(finding(
            Severity::Error,
            "control.address",
            e.to_string(),
            "use e.g. 127.0.0.1:9091".to_string(),
        )),
        Ok(address) if !address.ip().is_loopback() && config.control.tls_files().is_none() => out
            .push(finding(
                Severity::Warning,
                "control.address",
                format!(
                    "{address} is reachable from the network and the control API serves plain \
                     HTTP: its token and answers cross the network in the clear"
                ),
                "set control.tls_cert_file and control.tls_key_file, or bind it to 127.0.0.1 \
                 and reach it through ssh"
                    .to_string(),
            )),
        Ok(_) => {}
    }
}

/// The HTTP API asks for credentials, but with the development ones (`iggy`/`iggy`) anyone who
/// reaches a non-loopback address can log in.
fn check_http_address(config: &Config, out: &mut Vec<Finding>) {
    let Ok(address) = config.http.socket_address() else {
        return; // refused by the configuration's own validation
    };
    let development = config.root.password == "iggy";
    if config.http.enabled && !address.ip().is_loopback() && development {
        out.push(finding(
            Severity::Warning,
            "http.address",
            format!(
                "the HTTP API and console on {address} are reachable from the network and the \
                 root user still has the development password"
            ),
            "change root.password (IGGY_ROOT_PASSWORD) before the first start, or change the \
             password with riptidectl user password"
                .to_string(),
        ));
    }
}

fn check_data_dir(path: &Path, out: &mut Vec<Finding>) {
    let problem = if path.exists() {
        if !path.is_dir() {
            Some(format!(
                "'{}' exists and is not a directory",
                path.display()
            ))
        } else if std::fs::metadata(path).is_ok_and(|m| m.permissions().readonly()) {
            Some(format!("'{}' is read-only", path.display()))
        } else {
            None
        }
    } else {
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        (!parent.is_dir()).then(|| {
            format!(
                "'{}' cannot be created: its parent '{}' does not exist",
                path.display(),
                parent.display()
            )
        })
    };
    if let Some(problem) = problem {
        out.push(finding(
            Severity::Error,
            "system.path",
            problem,
            "point system.path (or IGGY_SYSTEM_PATH) at a writable directory".to_string(),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn config_with(file: &str) -> Config {
        Config::load_from(Some((Path::new("test.toml"), file)), &[]).expect("test configuration")
    }

    /// A scratch /sys with the given online and isolated CPU lists and free 2 MiB pages.
    fn fake_sys(online: &str, isolated: &str, free_2m_pages: u64) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let cpu = dir.path().join("devices/system/cpu");
        std::fs::create_dir_all(&cpu).unwrap();
        std::fs::write(cpu.join("online"), format!("{online}\n")).unwrap();
        std::fs::write(cpu.join("isolated"), format!("{isolated}\n")).unwrap();
        let huge = dir.path().join("kernel/mm/hugepages/hugepages-2048kB");
        std::fs::create_dir_all(&huge).unwrap();
        std::fs::write(huge.join("free_hugepages"), format!("{free_2m_pages}\n")).unwrap();
        std::fs::create_dir_all(dir.path().join("class/net/veth-dp")).unwrap();
        dir
    }

    fn host(dir: &tempfile::TempDir) -> HostPaths {
        HostPaths {
            sys: dir.path().to_path_buf(),
        }
    }

    #[test]
    fn cpu_lists_parse_and_format_both_ways() {
        let cpus = parse_cpu_list("0-2,5,7-8").unwrap();
        assert_eq!(
            cpus.iter().copied().collect::<Vec<_>>(),
            vec![0, 1, 2, 5, 7, 8]
        );
        assert_eq!(format_cpu_list(&cpus), "0-2,5,7-8");
        assert!(parse_cpu_list("3-1").is_err());
        assert!(parse_cpu_list("x").is_err());
        assert!(parse_cpu_list("").unwrap().is_empty());
    }

    #[test]
    fn missing_core_is_an_error_naming_the_key() {
        let sys = fake_sys("0-3", "2-3", 0);
        let findings = check_host(&config_with("[dataplane]\ncores = [1, 9]\n"), &host(&sys));
        let error = findings
            .iter()
            .find(|f| f.severity == Severity::Error)
            .expect("an error");
        assert_eq!(error.key, "dataplane.cores");
        assert!(error.problem.contains('9'), "{error}");
        // CPU 1 exists but is not isolated: only a warning for the kernel backend.
        assert!(findings
            .iter()
            .any(|f| f.severity == Severity::Warning
                && f.problem.contains("CPU(s) 1 are not isolated")));
    }

    #[test]
    fn busy_polling_lcores_must_be_isolated_and_hugepages_must_be_free() {
        let sys = fake_sys("0-3", "3", 10);
        let file =
            "[dataplane]\nbackend = \"dpdk\"\n[dpdk]\nlcores = [2, 3]\nidle_backoff_us = 0\n\
                    memory_mb = 512\nvdevs = [\"net_af_packet0,iface=veth-dp\"]\n";
        let findings = check_host(&config_with(file), &host(&sys));
        let keys: Vec<(&str, Severity)> = findings
            .iter()
            .map(|f| (f.key.as_str(), f.severity))
            .collect();
        assert!(
            keys.contains(&("dpdk.lcores", Severity::Error)),
            "{findings:?}"
        );
        assert!(
            keys.contains(&("dpdk.memory_mb", Severity::Error)),
            "{findings:?}"
        );
        assert!(
            !keys.iter().any(|(k, _)| *k == "dpdk.vdevs"),
            "veth-dp exists: {findings:?}"
        );
        let huge = findings.iter().find(|f| f.key == "dpdk.memory_mb").unwrap();
        assert!(
            huge.fix.contains("scripts/hugepages.sh --pages 256"),
            "{huge}"
        );
    }

    #[test]
    fn lcores_placed_with_cpus_are_checked_on_those_cpus() {
        let sys = fake_sys("0-3", "3", 1024);
        let on_isolated = "[dataplane]\nbackend = \"dpdk\"\n[dpdk]\nlcores = [0, 1]\n\
                           cpus = [3, 3]\nidle_backoff_us = 0\nvdevs = [\"net_tap0\"]\n";
        let findings = check_host(&config_with(on_isolated), &host(&sys));
        assert!(
            !findings
                .iter()
                .any(|f| f.key.starts_with("dpdk.lcores") || f.key.starts_with("dpdk.cpus")),
            "lcores 0 and 1 run on isolated CPU 3: {findings:?}"
        );
        let on_shared = "[dataplane]\nbackend = \"dpdk\"\n[dpdk]\nlcores = [3]\n\
                         cpus = [2]\nidle_backoff_us = 0\nvdevs = [\"net_tap0\"]\n";
        let findings = check_host(&config_with(on_shared), &host(&sys));
        assert!(
            findings
                .iter()
                .any(|f| f.key == "dpdk.cpus" && f.severity == Severity::Error),
            "lcore 3 runs on CPU 2, which is not isolated: {findings:?}"
        );
    }

    #[test]
    fn unknown_interface_and_unreadable_xdp_object_are_errors() {
        let sys = fake_sys("0-3", "1-3", 1024);
        let file = "[dataplane]\nbackend = \"dpdk\"\n[dpdk]\nlcores = [1]\n\
                    vdevs = [\"net_af_xdp0,iface=nosuch0,xdp_prog=/nonexistent/steer.o\"]\n";
        let findings = check_host(&config_with(file), &host(&sys));
        let problems: Vec<&str> = findings
            .iter()
            .filter(|f| f.key == "dpdk.vdevs")
            .map(|f| f.problem.as_str())
            .collect();
        assert_eq!(problems.len(), 2, "{findings:?}");
        assert!(problems[0].contains("nosuch0"));
        assert!(problems[1].contains("/nonexistent/steer.o"));
        assert!(has_errors(&findings));
    }

    #[test]
    fn a_missing_pci_device_is_an_error() {
        let sys = fake_sys("0-3", "1-3", 1024);
        let file = "[dataplane]\nbackend = \"dpdk\"\n[dpdk]\nlcores = [1]\nallow_pci = [\"0000:42:00.0\"]\n";
        let findings = check_host(&config_with(file), &host(&sys));
        assert!(findings
            .iter()
            .any(|f| f.key == "dpdk.allow_pci" && f.fix.contains("dpdk-devbind")));
    }

    #[test]
    fn a_network_facing_control_api_without_tls_is_a_warning() {
        let sys = fake_sys("0-3", "", 0);
        let open = "[control]\naddress = \"0.0.0.0:9091\"\ntoken = \"0123456789abcdef\"\n";
        let findings = check_host(&config_with(open), &host(&sys));
        assert!(findings.iter().any(|f| f.key == "control.address"
            && f.severity == Severity::Warning
            && f.fix.contains("control.tls_cert_file")));
        let with_tls = format!("{open}tls_cert_file = \"c.pem\"\ntls_key_file = \"k.pem\"\n");
        let findings = check_host(&config_with(&with_tls), &host(&sys));
        assert!(!findings.iter().any(|f| f.key == "control.address"));
    }

    #[test]
    fn a_network_facing_http_api_with_development_credentials_is_a_warning() {
        let sys = fake_sys("0-3", "", 0);
        let open = check_host(
            &config_with("[http]\naddress = \"0.0.0.0:3000\"\n"),
            &host(&sys),
        );
        assert!(open
            .iter()
            .any(|f| f.key == "http.address" && f.severity == Severity::Warning));
        let local = check_host(&config_with(""), &host(&sys));
        assert!(!local.iter().any(|f| f.key == "http.address"));
        let secured = "[http]\naddress = \"0.0.0.0:3000\"\n[root]\npassword = \"s3cret-pass\"\n";
        let secured = check_host(&config_with(secured), &host(&sys));
        assert!(!secured.iter().any(|f| f.key == "http.address"));
    }

    #[test]
    fn the_default_configuration_passes_on_this_machine() {
        // Real /sys: the default (kernel backend, no pinned cores, loopback control API) fits any host.
        let dir = tempfile::tempdir().unwrap();
        let file = format!(
            "[system]\npath = \"{}\"\n",
            dir.path().join("data").display()
        );
        let findings = check_host(&config_with(&file), &HostPaths::default());
        assert!(!has_errors(&findings), "{findings:?}");
    }

    #[test]
    fn data_dir_under_a_missing_parent_is_refused() {
        let file = "[system]\npath = \"/nonexistent-riptide-parent/data\"\n";
        let findings = check_host(&config_with(file), &HostPaths::default());
        assert!(findings
            .iter()
            .any(|f| f.key == "system.path" && f.severity == Severity::Error));
    }
}
