//! The provisioning scripts, the Vagrantfile and the systemd unit: static checks (shellcheck,
//! `ruby -c`), dry runs on this machine, and real runs where they are safe here (hugepages,
//! the network-namespace lab, core isolation on a scratch grub file, provisioning into a scratch
//! root with the reboot-only steps skipped).

mod common;

use common::{in_ci, is_root, require, workspace_root};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn script(name: &str) -> PathBuf {
    workspace_root().join("scripts").join(name)
}

fn run(program: &Path, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", program.display()))
}

fn run_env(program: &Path, args: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut command = Command::new(program);
    command.args(args);
    for (key, value) in env {
        command.env(key, value);
    }
    command
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", program.display()))
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

const OWN_SCRIPTS: [&str; 6] = [
    "bench-http.sh",
    "hugepages.sh",
    "isolate-cores.sh",
    "bind-nic.sh",
    "netns-lab.sh",
    "provision.sh",
];

#[test]
fn shellcheck_passes_on_every_script() {
    if !require(
        have("shellcheck"),
        "shellcheck is not installed (scripts/install-deps.sh)",
    ) {
        return;
    }
    let mut scripts: Vec<PathBuf> = std::fs::read_dir(workspace_root().join("scripts"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "sh"))
        .collect();
    scripts.sort();
    assert!(scripts.len() > OWN_SCRIPTS.len(), "{scripts:?}");
    // The libraries the scripts source, checked through them (-x) and on their own.
    scripts.extend(
        std::fs::read_dir(workspace_root().join("scripts/lib"))
            .unwrap()
            .flatten()
            .map(|e| e.path()),
    );
    let output = Command::new("shellcheck")
        .arg("-x")
        .args(&scripts)
        .current_dir(workspace_root())
        .output()
        .unwrap();
    assert!(output.status.success(), "shellcheck:\n{}", text(&output));
}

#[test]
fn every_script_has_usage_strict_mode_and_refuses_unknown_arguments() {
    for name in OWN_SCRIPTS {
        let source = std::fs::read_to_string(script(name)).unwrap();
        assert!(source.contains("set -euo pipefail"), "{name}");
        let help = run(&script(name), &["--help"]);
        assert!(
            help.status.success() && text(&help).contains("Usage:"),
            "{name}: {}",
            text(&help)
        );
        let bad = run(&script(name), &["--no-such-option"]);
        assert_eq!(bad.status.code(), Some(2), "{name}: {}", text(&bad));
        assert!(
            text(&bad).contains("--no-such-option"),
            "{name} names the bad argument"
        );
    }
}

#[test]
fn vagrantfile_is_valid_ruby_and_asks_for_what_the_vm_needs() {
    if !require(
        have("ruby"),
        "ruby is not installed (scripts/install-deps.sh)",
    ) {
        return;
    }
    let path = workspace_root().join("vagrant/Vagrantfile");
    let output = run(Path::new("ruby"), &["-c", &path.to_string_lossy()]);
    assert!(
        output.status.success() && text(&output).contains("Syntax OK"),
        "{}",
        text(&output)
    );
    let source = std::fs::read_to_string(&path).unwrap();
    for needle in [
        "debian/bookworm64",
        "CPUS = 4",
        "MEMORY_MB = 4096",
        "private_network",
        "host-passthrough",
        "--cpu-profile",
        "scripts/provision.sh",
    ] {
        assert!(source.contains(needle), "Vagrantfile lacks {needle}");
    }
}

#[test]
fn the_unit_starts_riptide_control_and_never_restarts_a_configuration_error() {
    let unit =
        std::fs::read_to_string(workspace_root().join("systemd/riptide-control.service")).unwrap();
    let value = |key: &str| {
        unit.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .map(str::to_string)
    };
    assert_eq!(
        value("ExecStart").as_deref(),
        Some("/usr/local/bin/riptide-control --config /etc/riptide/riptide.toml")
    );
    assert_eq!(value("RestartPreventExitStatus").as_deref(), Some("78"));
    assert_eq!(value("KillMode").as_deref(), Some("mixed"));
    assert_eq!(value("WantedBy").as_deref(), Some("multi-user.target"));
    for section in ["[Unit]", "[Service]", "[Install]"] {
        assert!(unit.contains(section), "{section}");
    }
    if have("systemd-analyze") {
        let output = run(
            Path::new("systemd-analyze"),
            &[
                "verify",
                "--man=no",
                &workspace_root()
                    .join("systemd/riptide-control.service")
                    .to_string_lossy(),
            ],
        );
        // verify complains about the missing binary on a build machine; only syntax errors matter.
        assert!(
            !text(&output).contains("Unknown key") && !text(&output).contains("Invalid section"),
            "{}",
            text(&output)
        );
    }
}

/// hugepages.sh pointed at a scratch mount point, state directory, fstab and unit directory.
struct HugepagesScratch {
    _dir: tempfile::TempDir,
    mount: PathBuf,
    state: PathBuf,
    fstab: PathBuf,
    units: PathBuf,
    knob: PathBuf,
}

const FSTAB_BEFORE: &str = "UUID=x / ext4 defaults 0 1\n";

impl HugepagesScratch {
    fn new() -> HugepagesScratch {
        let dir = tempfile::tempdir().unwrap();
        let node_knob =
            Path::new("/sys/devices/system/node/node0/hugepages/hugepages-2048kB/nr_hugepages");
        let knob = if node_knob.exists() {
            node_knob.to_path_buf()
        } else {
            PathBuf::from("/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages")
        };
        let scratch = HugepagesScratch {
            mount: dir.path().join("mnt"),
            state: dir.path().join("state"),
            fstab: dir.path().join("fstab"),
            units: dir.path().join("units"),
            knob,
            _dir: dir,
        };
        std::fs::write(&scratch.fstab, FSTAB_BEFORE).unwrap();
        std::fs::create_dir_all(&scratch.units).unwrap();
        scratch
    }

    fn run(&self, extra: &[&str]) -> Output {
        let (mount, state) = (self.mount.to_string_lossy(), self.state.to_string_lossy());
        let args = [
            &["--nodes", "0", "--mount", &mount, "--state-dir", &state][..],
            extra,
        ]
        .concat();
        let env = [
            ("RIPTIDE_FSTAB", self.fstab.as_path()),
            ("RIPTIDE_UNIT_DIR", self.units.as_path()),
        ];
        run_env(&script("hugepages.sh"), &args, &env)
    }

    fn count(&self) -> u64 {
        std::fs::read_to_string(&self.knob)
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    fn mounted(&self) -> bool {
        let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
        let mount = self.mount.to_string_lossy();
        mounts
            .lines()
            .any(|l| l.contains(&*mount) && l.contains("hugetlbfs"))
    }

    /// What a real run must have left: pages, the mount, the unit and the fstab entry.
    fn check_applied(&self, before: u64, wanted: &str) {
        assert!(self.mounted(), "hugetlbfs mounted");
        assert!(self.count() > before, "pages reserved");
        let unit = std::fs::read_to_string(self.units.join("riptide-hugepages.service")).unwrap();
        assert!(unit.contains(&format!("echo {wanted} > ")), "{unit}");
        let fstab = std::fs::read_to_string(&self.fstab).unwrap();
        let entry = format!("nodev {} hugetlbfs pagesize=2M 0 0", self.mount.display());
        assert!(fstab.contains(&entry), "{fstab}");
    }
}

#[test]
fn hugepages_reserve_mount_persist_and_undo_for_real() {
    let supported = Path::new("/sys/kernel/mm/hugepages/hugepages-2048kB").exists();
    if !require(
        is_root() && supported,
        "needs root and 2 MiB hugepages support",
    ) {
        return;
    }
    let scratch = HugepagesScratch::new();
    let before = scratch.count();
    let wanted = (before + 2).to_string();

    let dry = scratch.run(&["--pages", &wanted, "--dry-run"]);
    assert!(dry.status.success(), "{}", text(&dry));
    assert!(
        text(&dry).contains(&format!("would write '{wanted}'")),
        "{}",
        text(&dry)
    );
    assert_eq!(scratch.count(), before, "a dry run changes nothing");
    assert!(!scratch.mount.exists());

    let real = scratch.run(&["--pages", &wanted]);
    assert!(real.status.success(), "{}", text(&real));
    // Undo even when a check fails, so the machine is left as it was.
    let applied = std::panic::catch_unwind(|| scratch.check_applied(before, &wanted));
    let undo = scratch.run(&["--undo"]);
    assert!(undo.status.success(), "{}", text(&undo));
    applied.unwrap();
    assert_eq!(scratch.count(), before, "undo restores the earlier count");
    assert!(!scratch.mounted());
    assert_eq!(
        std::fs::read_to_string(&scratch.fstab).unwrap(),
        FSTAB_BEFORE
    );
    assert!(!scratch.units.join("riptide-hugepages.service").exists());

    let bad = run(&script("hugepages.sh"), &["--nodes", "999", "--dry-run"]);
    let complaint = text(&bad);
    assert!(
        !bad.status.success() && complaint.contains("node 999 does not exist"),
        "{complaint}"
    );
}

#[test]
fn isolate_cores_shows_the_diff_asks_and_edits_grub() {
    let dir = tempfile::tempdir().unwrap();
    let grub = dir.path().join("grub");
    let original = "GRUB_DEFAULT=0\nGRUB_CMDLINE_LINUX_DEFAULT=\"quiet isolcpus=7\"\nGRUB_CMDLINE_LINUX=\"\"\n";
    std::fs::write(&grub, original).unwrap();
    let grub_arg = grub.to_string_lossy().to_string();
    let cpus = std::fs::read_to_string("/sys/devices/system/cpu/present").unwrap();
    let last_cpu = cpus.trim().rsplit(['-', ',']).next().unwrap().to_string();
    if !require(
        last_cpu != "0",
        "this machine has one CPU: nothing can be isolated",
    ) {
        return;
    }
    let base = [
        "--grub-file",
        &grub_arg,
        "--no-update-grub",
        "--cores",
        &last_cpu,
    ];

    let dry = run(
        &script("isolate-cores.sh"),
        &[&base[..], &["--dry-run"]].concat(),
    );
    assert!(dry.status.success(), "{}", text(&dry));
    assert!(
        text(&dry).contains(&format!(
            "+GRUB_CMDLINE_LINUX_DEFAULT=\"quiet isolcpus={last_cpu} nohz_full={last_cpu}"
        )),
        "{}",
        text(&dry)
    );
    assert_eq!(
        std::fs::read_to_string(&grub).unwrap(),
        original,
        "a dry run changes nothing"
    );

    // No terminal and no --yes: refuses rather than changing the boot configuration unasked.
    let unasked = Command::new(script("isolate-cores.sh"))
        .args(base)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(
        !unasked.status.success() && text(&unasked).contains("--yes"),
        "{}",
        text(&unasked)
    );
    assert_eq!(std::fs::read_to_string(&grub).unwrap(), original);

    let applied = run(
        &script("isolate-cores.sh"),
        &[&base[..], &["--yes"]].concat(),
    );
    assert!(applied.status.success(), "{}", text(&applied));
    let edited = std::fs::read_to_string(&grub).unwrap();
    assert!(
        edited.contains(&format!("rcu_nocbs={last_cpu} irqaffinity=0")),
        "{edited}"
    );
    assert!(
        !edited.contains("isolcpus=7"),
        "old values are replaced: {edited}"
    );
    let again = run(
        &script("isolate-cores.sh"),
        &[&base[..], &["--yes"]].concat(),
    );
    assert!(
        text(&again).contains("nothing to do"),
        "idempotent: {}",
        text(&again)
    );

    let undo = run(
        &script("isolate-cores.sh"),
        &[
            "--grub-file",
            &grub_arg,
            "--no-update-grub",
            "--undo",
            "--yes",
        ],
    );
    assert!(undo.status.success(), "{}", text(&undo));
    assert!(std::fs::read_to_string(&grub)
        .unwrap()
        .contains("GRUB_CMDLINE_LINUX_DEFAULT=\"quiet\""));
}

#[test]
fn isolate_cores_refuses_bad_requests_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let grub = dir.path().join("grub");
    std::fs::write(&grub, "GRUB_CMDLINE_LINUX_DEFAULT=\"quiet\"\n").unwrap();
    let grub_arg = grub.to_string_lossy().to_string();
    let cpus = std::fs::read_to_string("/sys/devices/system/cpu/present").unwrap();
    for (cores, complaint) in [
        ("9999", "does not exist"),
        ("x", "not a CPU number"),
        (cpus.trim(), "no housekeeping CPU"),
    ] {
        let bad = run(
            &script("isolate-cores.sh"),
            &["--grub-file", &grub_arg, "--cores", cores, "--dry-run"],
        );
        assert!(
            !bad.status.success() && text(&bad).contains(complaint),
            "{cores}: {}",
            text(&bad)
        );
    }
    let no_grub = run(
        &script("isolate-cores.sh"),
        &["--grub-file", "/nonexistent/grub", "--dry-run"],
    );
    assert!(
        !no_grub.status.success() && text(&no_grub).contains("not found"),
        "{}",
        text(&no_grub)
    );
}

#[test]
fn bind_nic_explains_what_is_wrong_and_dry_runs_on_a_real_nic() {
    if !require(
        have("dpdk-devbind.py"),
        "dpdk-devbind.py is not installed (Debian package dpdk)",
    ) {
        return;
    }
    let lo = run(&script("bind-nic.sh"), &["--dry-run", "lo"]);
    assert!(
        !lo.status.success() && text(&lo).contains("not a PCI device"),
        "{}",
        text(&lo)
    );
    let missing = run(&script("bind-nic.sh"), &["--dry-run", "0000:ff:1f.7"]);
    assert!(
        !missing.status.success() && text(&missing).contains("does not exist"),
        "{}",
        text(&missing)
    );
    let garbage = run(&script("bind-nic.sh"), &["--dry-run", "not/a/device"]);
    assert!(
        !garbage.status.success()
            && text(&garbage).contains("neither an interface name nor a PCI address")
    );
    let undo_unknown = run(
        &script("bind-nic.sh"),
        &[
            "--dry-run",
            "--undo",
            "--state-dir",
            "/nonexistent",
            "0000:ff:1f.7",
        ],
    );
    assert!(!undo_unknown.status.success());

    // A real PCI NIC, if this machine has one: the dry run shows the plan and changes nothing.
    let pci_nic = std::fs::read_dir("/sys/class/net")
        .unwrap()
        .flatten()
        .find_map(|entry| {
            let device = std::fs::canonicalize(entry.path().join("device")).ok()?;
            device
                .to_string_lossy()
                .contains("/pci")
                .then(|| entry.file_name().to_string_lossy().to_string())
        });
    let Some(nic) = pci_nic else {
        eprintln!("no PCI NIC here: only the error paths were checked");
        return;
    };
    let dry = run(&script("bind-nic.sh"), &["--dry-run", "--force", &nic]);
    assert!(dry.status.success(), "{}", text(&dry));
    assert!(
        text(&dry).contains("would run: dpdk-devbind.py --bind="),
        "{}",
        text(&dry)
    );
}

#[test]
fn netns_lab_comes_up_carries_traffic_and_goes_away() {
    if !require(is_root() && have("ip"), "needs root and iproute2") {
        return;
    }
    // Names unique to this process so parallel runs do not collide (15-character limit).
    let tag = std::process::id() % 100_000;
    let (ns, host_if, ns_if) = (
        format!("rtc-lab-{tag}"),
        format!("rtch{tag}"),
        format!("rtcn{tag}"),
    );
    let args = |action: &str| -> Vec<String> {
        [
            "--ns",
            &ns,
            "--host-if",
            &host_if,
            "--ns-if",
            &ns_if,
            "--host-addr",
            "10.76.0.1/24",
            "--ns-addr",
            "10.76.0.2/24",
            action,
        ]
        .map(str::to_string)
        .to_vec()
    };
    let lab = |action: &str| {
        let a = args(action);
        run(
            &script("netns-lab.sh"),
            &a.iter().map(String::as_str).collect::<Vec<_>>(),
        )
    };
    let up = lab("up");
    let result = std::panic::catch_unwind(|| {
        assert!(up.status.success(), "{}", text(&up));
        let again = lab("up");
        assert!(again.status.success(), "up is idempotent: {}", text(&again));
        let status = lab("status");
        assert!(
            status.status.success() && text(&status).contains("10.76.0.2/24"),
            "{}",
            text(&status)
        );
        let ping = Command::new("ip")
            .args([
                "netns",
                "exec",
                &ns,
                "ping",
                "-c",
                "1",
                "-W",
                "2",
                "10.76.0.1",
            ])
            .output()
            .unwrap();
        assert!(
            ping.status.success(),
            "the namespace reaches the host end: {}",
            text(&ping)
        );
    });
    let down = lab("down");
    assert!(down.status.success(), "{}", text(&down));
    result.unwrap();
    let status = lab("status");
    assert_eq!(
        status.status.code(),
        Some(1),
        "status after down: {}",
        text(&status)
    );
    assert!(!Path::new(&format!("/sys/class/net/{host_if}")).exists());
    let bad = run(
        &script("netns-lab.sh"),
        &["--host-if", "an-interface-name-too-long", "up"],
    );
    assert!(
        !bad.status.success() && text(&bad).contains("1..15 characters"),
        "{}",
        text(&bad)
    );
}

#[test]
fn provision_dry_run_shows_every_step_and_skips_the_reboot_ones() {
    let dry = run(&script("provision.sh"), &["--dry-run", "--no-reboot-steps"]);
    assert!(dry.status.success(), "{}", text(&dry));
    let plan = text(&dry);
    for step in [
        "packages",
        "hugepages",
        "core isolation: skipped",
        "release build",
        "install into /",
        "riptide-control.service",
    ] {
        assert!(plan.contains(step), "the plan shows '{step}':\n{plan}");
    }
    assert!(plan.contains("would run: cargo build --release"), "{plan}");
}

#[test]
fn provision_installs_into_a_scratch_root_and_keeps_the_operators_configuration() {
    let Some(dataplane) = common::dataplane_bin() else {
        assert!(!in_ci(), "riptide-dataplane must be built in CI");
        eprintln!("SKIPPED (install part): riptide-dataplane is not built");
        return;
    };
    // The three binaries side by side, as a release build leaves them.
    let dir = tempfile::tempdir().unwrap();
    let bin_dir = dir.path().join("bin");
    std::fs::create_dir_all(&bin_dir).unwrap();
    for (name, source) in [
        ("riptide-dataplane", dataplane),
        ("riptide-control", common::control_bin()),
        ("riptidectl", common::ctl_bin()),
    ] {
        std::os::unix::fs::symlink(source, bin_dir.join(name)).unwrap();
    }
    let root = dir.path().join("root");
    let output = run(
        &script("provision.sh"),
        &[
            "--no-reboot-steps",
            "--skip-deps",
            "--skip-build",
            "--bin-dir",
            &bin_dir.to_string_lossy(),
            "--destdir",
            &root.to_string_lossy(),
            "--prefix",
            "/opt/riptide",
        ],
    );
    assert!(output.status.success(), "{}", text(&output));
    for name in ["riptide-dataplane", "riptide-control", "riptidectl"] {
        assert!(
            root.join("opt/riptide/bin").join(name).is_file(),
            "{name} installed"
        );
    }
    let unit =
        std::fs::read_to_string(root.join("etc/systemd/system/riptide-control.service")).unwrap();
    assert!(
        unit.contains(
            "ExecStart=/opt/riptide/bin/riptide-control --config /etc/riptide/riptide.toml"
        ),
        "{unit}"
    );
    let config = std::fs::read_to_string(root.join("etc/riptide/riptide.toml")).unwrap();
    assert_eq!(
        config,
        std::fs::read_to_string(workspace_root().join("config/riptide.toml")).unwrap()
    );
    let completions =
        std::fs::read_to_string(root.join("usr/share/bash-completion/completions/riptidectl"))
            .unwrap();
    assert!(completions.contains("riptidectl"));
    // A second run keeps the operator's configuration.
    std::fs::write(root.join("etc/riptide/riptide.toml"), "# edited\n").unwrap();
    let again = run(
        &script("provision.sh"),
        &[
            "--no-reboot-steps",
            "--skip-deps",
            "--skip-build",
            "--bin-dir",
            &bin_dir.to_string_lossy(),
            "--destdir",
            &root.to_string_lossy(),
        ],
    );
    assert!(again.status.success(), "{}", text(&again));
    assert_eq!(
        std::fs::read_to_string(root.join("etc/riptide/riptide.toml")).unwrap(),
        "# edited\n"
    );
}
