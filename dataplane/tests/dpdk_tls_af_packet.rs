//! TLS in DPDK mode: the appliance binary with `backend = "dpdk"` over `net_af_packet` and
//! `[tls]` enabled (rustls in the worker core on the lcore, over smoltcp). The official `iggy`
//! SDK with TLS in the lab's namespace runs the conformance core scenarios, and an AF_PACKET
//! capture of the lab's veth during a signed-in send shows neither the password nor the payload
//! (while the ClientHello's server name, sent in clear, shows the capture sees the stream).

#![cfg(feature = "dpdk")]

mod common;
mod dpdk_appliance;
mod dpdk_lab;

use common::pki::{tls_section, TestCa};
use common::{scenarios, ClientTls};
use dpdk_appliance::{Attachment, DpdkAppliance, DEFAULT_MTU};
use dpdk_lab::{prerequisites_met, VethLab};
use iggy::prelude::*;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};

const WIRE_USER: &str = "wire-user";
const WIRE_PASSWORD: &str = "Tr0ub4dor-dpdk-secret";
const WIRE_PAYLOAD: &str = "PAYLOAD-dpdk-needle";

/// Every frame seen on `iface` (run inside the lab's namespace) until `stop`.
fn capture(iface: &str, stop: &AtomicBool) -> Vec<u8> {
    let protocol = (libc::ETH_P_ALL as u16).to_be();
    // SAFETY: socket(2) with constant arguments; the descriptor is owned below.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, i32::from(protocol)) };
    assert!(
        fd >= 0,
        "AF_PACKET socket: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: a new descriptor this function owns.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    let name = std::ffi::CString::new(iface).expect("interface name");
    // SAFETY: a NUL-terminated name.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    assert!(index > 0, "no interface {iface}");
    // SAFETY: sockaddr_ll is plain old data; all zeroes is valid before the fields are set.
    let mut address: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    address.sll_family = libc::AF_PACKET as u16;
    address.sll_protocol = protocol;
    address.sll_ifindex = index as i32;
    // SAFETY: a valid socket and a sockaddr_ll of the given size.
    let bound = unsafe {
        libc::bind(
            socket.as_raw_fd(),
            (&address as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    assert_eq!(bound, 0, "bind: {}", std::io::Error::last_os_error());
    let timeout = libc::timeval {
        tv_sec: 0,
        tv_usec: 100_000,
    };
    // SAFETY: a valid socket and a timeval of the given size.
    unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&timeout as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    let mut seen = Vec::new();
    let mut frame = vec![0u8; 65536];
    while !stop.load(Ordering::Relaxed) {
        // SAFETY: a valid socket and a writable buffer of the given length.
        let n = unsafe {
            libc::recv(
                socket.as_raw_fd(),
                frame.as_mut_ptr().cast(),
                frame.len(),
                0,
            )
        };
        if n > 0 {
            seen.extend_from_slice(&frame[..n as usize]);
        }
    }
    seen
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

#[test]
fn dpdk_appliance_serves_the_sdk_over_tls_and_the_wire_shows_no_secret() {
    if !prerequisites_met("dpdk_tls_af_packet") {
        return;
    }
    let lab = VethLab::create("ta", 48);
    let dir = tempfile::tempdir().expect("certificates directory");
    let ca = TestCa::new(dir.path(), "dpdk").expect("CA");
    let server = ca.server("server").expect("server certificate");
    let tls = ClientTls::leak("localhost", &ca.ca_file);
    let appliance = DpdkAppliance::start_with(
        &lab,
        Attachment::AfPacket,
        DEFAULT_MTU,
        &tls_section(&server, None, "auto"),
        Some(tls),
    );
    appliance.run_core_scenarios();

    let stop = AtomicBool::new(false);
    let seen = std::thread::scope(|scope| {
        let capturing = scope.spawn(|| lab.in_namespace(|| capture(&lab.client_iface, &stop)));
        std::thread::sleep(std::time::Duration::from_millis(300));
        let sent = appliance.in_lab(|endpoint| async move {
            let root = endpoint.client().await?;
            scenarios::create_sending_user(&root, WIRE_USER, WIRE_PASSWORD).await?;
            let (s, t) = scenarios::stream_and_topic(&root, "wire", "t", 1).await?;
            let user = endpoint.client_for(WIRE_USER, WIRE_PASSWORD).await?;
            scenarios::send_to(
                &user,
                s,
                t,
                &Partitioning::partition_id(0),
                WIRE_PAYLOAD,
                20,
            )
            .await?;
            let consumer = Consumer::new(Identifier::numeric(1)?);
            let polled =
                scenarios::poll(&user, s, t, 0, &consumer, PollingStrategy::offset(0), 20).await?;
            anyhow::ensure!(
                polled.messages.len() == 20,
                "polled {}",
                polled.messages.len()
            );
            Ok(())
        });
        stop.store(true, Ordering::Relaxed);
        let seen = capturing.join().expect("capture thread");
        sent.expect("signed-in send over TLS through the veth");
        seen
    });
    assert!(
        contains(&seen, b"localhost"),
        "the capture ({} bytes) does not show the ClientHello's server name: it saw no stream",
        seen.len()
    );
    assert!(
        !contains(&seen, WIRE_PASSWORD.as_bytes()),
        "the password crossed the veth in clear"
    );
    assert!(
        !contains(&seen, WIRE_PAYLOAD.as_bytes()),
        "the payload crossed the veth in clear"
    );
    appliance.finish();
}
