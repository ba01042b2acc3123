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
