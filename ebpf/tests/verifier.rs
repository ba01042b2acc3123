//! The programs pass this kernel's verifier; a broken one yields a readable error with the log.

mod common;

use riptide_ebpf::{EbpfError, ReuseportSteering, SteeringPolicy};

#[test]
fn broken_program_yields_readable_verifier_error() {
    if !common::kernel_features_available("broken_program_yields_readable_verifier_error") {
        return;
    }
    let error = riptide_ebpf::load_broken_program().expect_err("the verifier must reject broken.c");
    let EbpfError::Verifier(verifier) = &error else {
        panic!("expected a verifier error, got: {error}");
    };
    assert_eq!(verifier.program, "riptide_broken");
    assert!(!verifier.log_lines.is_empty(), "no verifier log");
    let text = error.to_string();
    println!("{text}");
    assert!(
        text.starts_with("the kernel verifier rejected eBPF program riptide_broken ("),
        "{text}"
    );
    // The kernel names the bad packet access; the log is one line per instruction, indented.
    assert!(text.contains("invalid access to packet"), "{text}");
    assert!(
        text.lines().skip(1).all(|line| line.starts_with("    ")),
        "{text}"
    );
}

#[test]
fn reuseport_program_passes_the_verifier() {
    if !common::kernel_features_available("reuseport_program_passes_the_verifier") {
        return;
    }
    let steering = ReuseportSteering::load(SteeringPolicy::LeastConnections, 4).expect("load");
    assert!(steering.program_id().expect("program id") > 0);
    let counters = steering.counters().expect("counters");
    assert_eq!(counters.selected, vec![0; 4]);
    assert_eq!(counters.policy, Some(SteeringPolicy::LeastConnections));
}

/// The C programs repeat the limits in `constants.rs`; the loaded maps must agree with them.
#[test]
fn map_sizes_match_the_rust_constants() {
    if !common::kernel_features_available("map_sizes_match_the_rust_constants") {
        return;
    }
    use riptide_ebpf::constants::*;
    let find = |maps: &[riptide_ebpf::show::MapSummary], name: &str| {
        maps.iter()
            .find(|map| map.name == name)
            .cloned()
            .unwrap_or_else(|| panic!("no map {name}"))
    };
    let config = riptide_ebpf::XdpConfig {
        ip: std::net::Ipv4Addr::new(192, 0, 2, 1),
        ports: vec![1],
    };
    let xdp = riptide_ebpf::XdpProgram::load(&config).expect("load XDP");
    let maps = riptide_ebpf::show::program_maps(xdp.program_id()).expect("XDP maps");
    assert_eq!(find(&maps, XSKS_MAP_NAME).max_entries, XSKS_QUEUES_MAX);
    // struct xdp_config: address, count, XDP_PORTS_MAX ports of 2 bytes.
    assert_eq!(
        find(&maps, XDP_CONFIG_MAP_NAME).value_size_bytes as usize,
        8 + 2 * XDP_PORTS_MAX
    );
    assert_eq!(find(&maps, XDP_COUNTERS_MAP_NAME).max_entries, 5);

    let reuse = ReuseportSteering::load(SteeringPolicy::Hash, 1).expect("load reuseport");
    let maps =
        riptide_ebpf::show::program_maps(reuse.program_id().expect("id")).expect("reuseport maps");
    for name in [
        REUSE_WORKERS_MAP_NAME,
        REUSE_CONNS_MAP_NAME,
        REUSE_SELECTED_MAP_NAME,
    ] {
        assert_eq!(
            find(&maps, name).max_entries,
            REUSEPORT_WORKERS_MAX,
            "{name}"
        );
    }
}
