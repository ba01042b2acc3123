//! What steering costs, each figure next to a ceiling measured in the same run:
//! - the XDP program per frame (kernel-measured, BPF_PROG_TEST_RUN) against a program that only
//!   returns XDP_PASS, for an appliance frame and for a frame passed to the kernel;
//! - a worker's connection report (`ConnectionCounter::opened`) against a bare atomic add.
//!
//! `cargo bench -p riptide-ebpf` (root). Prints; asserts nothing about time.

use std::hint::black_box;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use aya::programs::{TestRun, TestRunOptions, Xdp};
use riptide_ebpf::{ReuseportSteering, SteeringPolicy, XdpConfig, XdpProgram, FOREIGN_TEST_OBJECT};

const XDP_REPEAT: u32 = 200_000;
const COUNTER_OPERATIONS: u64 = 5_000_000;

fn syn(destination: Ipv4Addr, port: u16) -> Vec<u8> {
    let mut frame = vec![0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1, 0x08, 0x00];
    frame.extend_from_slice(&[0x45, 0, 0, 40, 0, 1, 0x40, 0, 64, 6, 0, 0, 192, 0, 2, 1]);
    frame.extend_from_slice(&destination.octets());
    frame.extend_from_slice(&40000u16.to_be_bytes());
    frame.extend_from_slice(&port.to_be_bytes());
    frame.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0]);
    frame
}

fn ceiling_ns(frame: &[u8]) -> u64 {
    let mut ebpf = aya::Ebpf::load(FOREIGN_TEST_OBJECT).expect("load ceiling object");
    let program: &mut Xdp = ebpf
        .program_mut("other_pass")
        .expect("program")
        .try_into()
        .expect("xdp");
    program.load().expect("load ceiling program");
    let options = TestRunOptions {
        data_in: Some(frame),
        repeat: XDP_REPEAT,
        ..TestRunOptions::default()
    };
    program
        .test_run(options)
        .expect("test run")
        .duration
        .as_nanos() as u64
}

fn xdp_cost() {
    let appliance = Ipv4Addr::new(192, 0, 2, 10);
    let program = XdpProgram::load(&XdpConfig {
        ip: appliance,
        ports: vec![8090],
    })
    .expect("load riptide_xdp");
    for (what, frame) in [
        ("appliance SYN", syn(appliance, 8090)),
        ("host SYN (passed)", syn(appliance, 22)),
    ] {
        let ours = program
            .run(&frame, XDP_REPEAT)
            .expect("run")
            .duration_per_run_ns;
        let ceiling = ceiling_ns(&frame);
        println!(
            "xdp {what}: riptide_xdp {ours} ns/frame, XDP_PASS-only ceiling {ceiling} ns/frame, ratio {:.2}",
            ours as f64 / ceiling.max(1) as f64
        );
    }
}

fn counter_cost() {
    let steering =
        ReuseportSteering::load(SteeringPolicy::LeastConnections, 4).expect("load riptide_reuse");
    let counter = steering.connection_counter();
    let start = Instant::now();
    for _ in 0..COUNTER_OPERATIONS {
        counter.opened(black_box(1)).expect("opened");
    }
    let ours = start.elapsed().as_nanos() as f64 / COUNTER_OPERATIONS as f64;
    let plain = AtomicU64::new(0);
    let start = Instant::now();
    for _ in 0..COUNTER_OPERATIONS {
        black_box(&plain).fetch_add(1, Ordering::Relaxed);
    }
    let ceiling = start.elapsed().as_nanos() as f64 / COUNTER_OPERATIONS as f64;
    println!(
        "connection report: opened() {ours:.2} ns, bare atomic add ceiling {ceiling:.2} ns, ratio {:.2}",
        ours / ceiling.max(f64::MIN_POSITIVE)
    );
}

fn main() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        println!("steering_cost: needs root to load eBPF programs; skipped");
        return;
    }
    xdp_cost();
    counter_cost();
}
