//! riptide-steering: shows riptide's eBPF steering (XDP per interface, sk_reuseport programs) and
//! counters; `attach-xdp` attaches the XDP program and holds it until stdin closes or the process
//! dies (the kernel then detaches it), for manual tests and the crash-cleanup test.
//!
//! Usage:
//!   riptide-steering [show] [--interface IF]
//!   riptide-steering write-object DIR             (the object for DPDK's xdp_prog=)
//!   riptide-steering remove-stale IF
//!   riptide-steering attach-xdp IF IPV4 PORT[,PORT...] [native|generic|auto]

use std::io::Read;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use riptide_ebpf::{show, xdp, XdpConfig, XdpModePreference, XdpSteering};

const USAGE: &str =
    "usage: riptide-steering [show] [--interface IF] | write-object DIR | remove-stale IF | \
attach-xdp IF IPV4 PORT[,PORT...] [native|generic|auto]";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("riptide-steering: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &[String]) -> Result<()> {
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    match words.as_slice() {
        ["-h"] | ["--help"] | ["help"] => println!("{USAGE}"),
        [] | ["show"] => print!("{}", show::steering_report(None)?),
        ["--interface", interface] | ["show", "--interface", interface] => {
            print!("{}", show::steering_report(Some(interface))?)
        }
        ["write-object", dir] => println!(
            "{}",
            riptide_ebpf::write_xdp_object(Path::new(dir))?.display()
        ),
        ["remove-stale", interface] => match xdp::remove_stale(interface)? {
            Some(id) => println!("detached stale riptide XDP program {id} from {interface}"),
            None => println!("no XDP program on {interface}"),
        },
        ["attach-xdp", interface, ip, ports, rest @ ..] => {
            attach_and_hold(interface, ip, ports, rest)?
        }
        _ => bail!("{USAGE}"),
    }
    Ok(())
}

fn attach_and_hold(interface: &str, ip: &str, ports: &str, rest: &[&str]) -> Result<()> {
    let ip: Ipv4Addr = ip
        .parse()
        .with_context(|| format!("bad IPv4 address {ip:?}"))?;
    let ports = ports
        .split(',')
        .map(|port| {
            port.parse::<u16>()
                .with_context(|| format!("bad port {port:?}"))
        })
        .collect::<Result<Vec<_>>>()?;
    let preference = match rest {
        [] | ["auto"] => XdpModePreference::NativeThenGeneric,
        ["native"] => XdpModePreference::NativeOnly,
        ["generic"] => XdpModePreference::GenericOnly,
        _ => bail!("{USAGE}"),
    };
    let steering = XdpSteering::attach(interface, &XdpConfig { ip, ports }, preference)?;
    if let Some(reason) = steering.fallback_reason() {
        eprintln!("riptide-steering: {reason}");
    }
    println!(
        "attached program {} to {interface} in {} mode; close stdin to detach",
        steering.program_id(),
        steering.mode()
    );
    // Hold until stdin closes. Ctrl-C or a crash needs no handler: the bpf_link dies with us.
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    steering.detach()?;
    Ok(())
}
