//! The XDP program's life cycle around other processes: nothing stays attached after a crash, a
//! program attached through netlink (as DPDK's af_xdp PMD does) is reachable through its maps and
//! is cleaned up at the next start, someone else's program is never touched, and a driver without
//! native XDP falls back to generic mode with the reason reported.

mod common;

use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::frames::{self, PacketSender};
use common::VethLab;
use riptide_ebpf::netlink::{query_xdp, XdpAttachMode};
use riptide_ebpf::{show, xdp, EbpfError, XdpConfig, XdpMaps, XdpModePreference, XdpSteering};

const DETACH_WAIT: Duration = Duration::from_secs(5);

fn lab() -> (VethLab, Ipv4Addr, Ipv4Addr) {
    let [a, b, c] = common::unique_subnet();
    let lab = VethLab::new(&format!("{a}.{b}.{c}.1/24"), &format!("{a}.{b}.{c}.2/24"));
    (lab, Ipv4Addr::new(a, b, c, 2), Ipv4Addr::new(a, b, c, 100))
}

/// Attaches an object through netlink with iproute2 (libbpf loads it, as DPDK's af_xdp PMD does);
/// the attachment outlives the `ip` process. `mode` is "xdp" (the kernel picks, like the PMD) or
/// "xdpgeneric".
fn attach_with_iproute(interface: &str, object: &[u8], tag: &str, mode: &str) {
    let dir = std::env::temp_dir().join(format!("riptide-ebpf-{tag}-{}", common::unique_name("")));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("prog.o");
    std::fs::write(&path, object).expect("write object");
    common::run(
        "ip",
        &[
            "link",
            "set",
            "dev",
            interface,
            mode,
            "obj",
            path.to_str().unwrap(),
            "sec",
            "xdp",
        ],
    );
    std::fs::remove_dir_all(&dir).expect("remove temp dir");
}

#[test]
fn killed_process_leaves_no_program_attached() {
    if !common::kernel_features_available("killed_process_leaves_no_program_attached") {
        return;
    }
    let (lab, _, appliance) = lab();
    let mut child = Command::new(env!("CARGO_BIN_EXE_riptide-steering"))
        .args([
            "attach-xdp",
            &lab.host_if,
            &appliance.to_string(),
            "8090,8091",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn riptide-steering");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .expect("read");
    assert!(
        line.starts_with("attached program"),
        "riptide-steering said: {line:?}"
    );
    let if_index = common::if_index(&lab.host_if);
    assert!(query_xdp(if_index).expect("query").is_some());

    let report = show::steering_report(Some(&lab.host_if)).expect("report");
    let text = report.to_string();
    println!("{text}");
    assert_eq!(report.xdp.len(), 1);
    assert_eq!(
        report.xdp[0].config,
        Some(XdpConfig {
            ip: appliance,
            ports: vec![8090, 8091]
        })
    );
    assert!(
        text.contains("mode native") && text.contains("map xsks_map"),
        "{text}"
    );

    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
    let deadline = Instant::now() + DETACH_WAIT;
    while query_xdp(if_index).expect("query").is_some() {
        assert!(
            Instant::now() < deadline,
            "the XDP program outlived the killed process"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// What the dataplane does after DPDK's PMD attached our object: configure through the maps found
/// via the interface, then check the configured program acts on an appliance frame.
fn configure_through_maps_and_see_a_drop(lab: &VethLab, peer: Ipv4Addr, appliance: Ipv4Addr) {
    let mut maps = XdpMaps::open_attached(&lab.host_if).expect("maps of the attached program");
    assert_eq!(maps.config().expect("config"), None);
    maps.configure(&XdpConfig {
        ip: appliance,
        ports: vec![8090],
    })
    .expect("configure");
    let peer_if = lab.peer_if.clone();
    lab.run_in_namespace(move || {
        PacketSender::new(&peer_if)
            .expect("sender")
            .send(&frames::arp_request(peer, appliance))
            .expect("send");
    });
    // No AF_XDP socket is bound, so the configured program drops the appliance's ARP and says why.
    let deadline = Instant::now() + DETACH_WAIT;
    while maps.counters().expect("counters").dropped_no_socket == 0 {
        assert!(
            Instant::now() < deadline,
            "the configured program never saw the ARP"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn netlink_attached_program_is_configurable_and_removed_as_stale() {
    if !common::kernel_features_available(
        "netlink_attached_program_is_configurable_and_removed_as_stale",
    ) {
        return;
    }
    let (lab, peer, appliance) = lab();
    attach_with_iproute(&lab.host_if, riptide_ebpf::XDP_STEER_OBJECT, "pmd", "xdp");
    let if_index = common::if_index(&lab.host_if);
    let attached = query_xdp(if_index).expect("query").expect("attached");
    assert_eq!(attached.mode, XdpAttachMode::Native);

    configure_through_maps_and_see_a_drop(&lab, peer, appliance);

    // At the next start riptide detaches the leftover and attaches its own program.
    let steering = XdpSteering::attach(
        &lab.host_if,
        &XdpConfig {
            ip: appliance,
            ports: vec![8090],
        },
        XdpModePreference::NativeThenGeneric,
    )
    .expect("attach over a stale program");
    assert_ne!(steering.program_id(), attached.program_id);
    // Ours is held by a live bpf_link: not stale, not removable by another start.
    assert!(matches!(
        xdp::remove_stale(&lab.host_if),
        Err(EbpfError::XdpInUse { .. })
    ));
    steering.detach().expect("detach");
    assert_eq!(
        xdp::remove_stale(&lab.host_if).expect("nothing attached"),
        None
    );

    attach_with_iproute(
        &lab.host_if,
        riptide_ebpf::XDP_STEER_OBJECT,
        "stale",
        "xdpgeneric",
    );
    let stale = query_xdp(if_index)
        .expect("query")
        .expect("attached")
        .program_id;
    assert_eq!(
        xdp::remove_stale(&lab.host_if).expect("remove stale"),
        Some(stale)
    );
    assert_eq!(query_xdp(if_index).expect("query"), None);
}

#[test]
fn foreign_program_is_never_replaced() {
    if !common::kernel_features_available("foreign_program_is_never_replaced") {
        return;
    }
    let (lab, _, appliance) = lab();
    attach_with_iproute(
        &lab.host_if,
        riptide_ebpf::FOREIGN_TEST_OBJECT,
        "foreign",
        "xdp",
    );
    let if_index = common::if_index(&lab.host_if);
    let foreign = query_xdp(if_index).expect("query").expect("attached");
    let config = XdpConfig {
        ip: appliance,
        ports: vec![8090],
    };
    let attach = XdpSteering::attach(&lab.host_if, &config, XdpModePreference::NativeThenGeneric);
    assert!(
        matches!(attach, Err(EbpfError::ForeignXdpProgram { .. })),
        "{:?}",
        attach.err().map(|e| e.to_string())
    );
    assert!(matches!(
        xdp::remove_stale(&lab.host_if),
        Err(EbpfError::ForeignXdpProgram { .. })
    ));
    assert!(matches!(
        XdpMaps::open_attached(&lab.host_if),
        Err(EbpfError::ForeignXdpProgram { .. })
    ));
    let report = show::steering_report(Some(&lab.host_if))
        .expect("report")
        .to_string();
    assert!(
        report.contains("program other_pass") && report.contains("not riptide's program"),
        "{report}"
    );
    assert_eq!(
        query_xdp(if_index).expect("query"),
        Some(foreign),
        "the foreign program was touched"
    );
}

#[test]
fn driver_without_native_xdp_falls_back_to_generic_and_says_why() {
    if !common::kernel_features_available(
        "driver_without_native_xdp_falls_back_to_generic_and_says_why",
    ) {
        return;
    }
    let (lab, _, appliance) = lab();
    // Loopback has no native XDP and every namespace has one; the attach runs in the lab's
    // namespace so the host's own loopback is never touched.
    let (mode, reason, native_only) = lab.run_in_namespace(move || {
        let config = XdpConfig {
            ip: appliance,
            ports: vec![8090],
        };
        let steering = XdpSteering::attach("lo", &config, XdpModePreference::NativeThenGeneric)
            .expect("attach");
        let outcome = (
            steering.mode(),
            steering.fallback_reason().map(str::to_string),
        );
        steering.detach().expect("detach");
        let native_only = XdpSteering::attach("lo", &config, XdpModePreference::NativeOnly)
            .err()
            .map(|e| e.to_string());
        (outcome.0, outcome.1, native_only)
    });
    assert_eq!(mode, XdpAttachMode::Generic);
    let reason = reason.expect("a fallback must be reported");
    assert!(reason.contains("native XDP unavailable on lo"), "{reason}");
    assert!(
        native_only.is_some(),
        "native-only attach to loopback must fail"
    );
}

#[test]
fn riptide_steering_writes_the_object_for_the_pmd() {
    let dir = std::env::temp_dir().join(format!("riptide-ebpf-obj-{}", common::unique_name("")));
    let output = Command::new(env!("CARGO_BIN_EXE_riptide-steering"))
        .args(["write-object", dir.to_str().unwrap()])
        .output()
        .expect("run riptide-steering");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let path = String::from_utf8(output.stdout).expect("utf-8");
    let written = std::fs::read(path.trim()).expect("read the written object");
    assert_eq!(written, riptide_ebpf::XDP_STEER_OBJECT);
    std::fs::remove_dir_all(&dir).expect("clean up");

    let output = Command::new(env!("CARGO_BIN_EXE_riptide-steering"))
        .arg("bogus")
        .output()
        .expect("run");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("usage:"));
}
