//! sk_reuseport steering over real listeners on loopback: each policy spreads 100 connections as
//! it says, and detaching falls back to the kernel's hashing without refusing a connection.

mod common;

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::os::fd::{AsFd, BorrowedFd, FromRawFd};
use std::time::Duration;

use riptide_ebpf::{ConnectionCounter, ReuseportSteering, SteeringPolicy};

const WORKERS: u32 = 3;
const CONNECTIONS: usize = 100;
/// How long to wait for a connected socket to show up in some listener's accept queue.
const ACCEPT_ATTEMPTS_MAX: usize = 2000;

fn reuseport_listener(port: u16) -> io::Result<TcpListener> {
    // SAFETY: plain socket(2); the fd is checked and then owned by the TcpListener.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is fresh and owned from here on.
    let listener = unsafe { TcpListener::from_raw_fd(fd) };
    let one: libc::c_int = 1;
    let address = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(Ipv4Addr::LOCALHOST).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: valid fd, option value and address buffers of the stated sizes.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_REUSEPORT,
            (&one as *const libc::c_int).cast(),
            4,
        );
        libc::bind(
            fd,
            (&address as *const libc::sockaddr_in).cast(),
            size_of::<libc::sockaddr_in>() as u32,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: valid fd.
    if unsafe { libc::listen(fd, 256) } != 0 {
        return Err(io::Error::last_os_error());
    }
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// WORKERS listeners in one SO_REUSEPORT group on a fresh loopback port.
fn listener_group() -> (Vec<TcpListener>, u16) {
    let first = reuseport_listener(0).expect("first listener");
    let port = first.local_addr().expect("local addr").port();
    let mut listeners = vec![first];
    for _ in 1..WORKERS {
        listeners.push(reuseport_listener(port).expect("group listener"));
    }
    (listeners, port)
}

/// Connects once and returns the client stream, the server stream and the worker that accepted.
fn connect_and_accept(listeners: &[TcpListener], port: u16) -> (TcpStream, TcpStream, u32) {
    let client =
        TcpStream::connect(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)).expect("connect refused");
    for _ in 0..ACCEPT_ATTEMPTS_MAX {
        for (worker, listener) in listeners.iter().enumerate() {
            match listener.accept() {
                Ok((server, _)) => return (client, server, worker as u32),
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                Err(error) => panic!("accept: {error}"),
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    panic!("connection never reached a listener");
}

fn fds(listeners: &[TcpListener]) -> Vec<BorrowedFd<'_>> {
    listeners.iter().map(|listener| listener.as_fd()).collect()
}

#[test]
fn hash_policy_gives_every_worker_some_connections() {
    if !common::kernel_features_available("hash_policy_gives_every_worker_some_connections") {
        return;
    }
    let (listeners, port) = listener_group();
    let mut steering = ReuseportSteering::load(SteeringPolicy::Hash, WORKERS).expect("load");
    steering.attach(&fds(&listeners)).expect("attach");
    let mut accepted = vec![0u64; WORKERS as usize];
    let mut streams = Vec::new();
    for _ in 0..CONNECTIONS {
        let (client, server, worker) = connect_and_accept(&listeners, port);
        accepted[worker as usize] += 1;
        streams.push((client, server));
    }
    let counters = steering.counters().expect("counters");
    println!("hash: accepted {accepted:?}, program counters: {counters}");
    assert!(
        accepted.iter().all(|&count| count > 0),
        "a worker got nothing: {accepted:?}"
    );
    assert_eq!(
        counters.selected, accepted,
        "the program's selections are the accepts"
    );
    assert_eq!(counters.select_failed, 0);

    // `riptide-steering show` reads the same counters from the kernel by program id.
    let program_id = steering.program_id().expect("program id");
    let report = riptide_ebpf::show::steering_report(None).expect("report");
    let shown = report
        .reuseport
        .iter()
        .find(|r| r.program_id == program_id)
        .expect("our program in the report");
    assert_eq!(shown.workers, WORKERS);
    assert_eq!(shown.counters.selected, accepted);
    assert!(report.to_string().contains(&format!(
        "program riptide_reuse id {program_id} for {WORKERS} workers"
    )));
}

fn assert_balanced(counter: &ConnectionCounter) {
    let open: Vec<u64> = (0..WORKERS)
        .map(|w| counter.open_connections(w).expect("count"))
        .collect();
    let (min, max) = (open.iter().min().unwrap(), open.iter().max().unwrap());
    assert!(max - min <= 1, "least connections drifted: {open:?}");
}

#[test]
fn least_connections_keeps_workers_within_one_while_connections_close() {
    if !common::kernel_features_available(
        "least_connections_keeps_workers_within_one_while_connections_close",
    ) {
        return;
    }
    let (listeners, port) = listener_group();
    // Start with hashing and switch live, as an operator would.
    let mut steering = ReuseportSteering::load(SteeringPolicy::Hash, WORKERS).expect("load");
    steering.attach(&fds(&listeners)).expect("attach");
    steering
        .set_policy(SteeringPolicy::LeastConnections)
        .expect("set policy");
    // The workers update counts from their own threads through this handle.
    let counter = steering.connection_counter();
    let mut open: Vec<Vec<(TcpStream, TcpStream)>> = (0..WORKERS).map(|_| Vec::new()).collect();
    let mut closed = 0;
    for i in 0..CONNECTIONS {
        let (client, server, worker) = connect_and_accept(&listeners, port);
        let handle = counter.clone();
        std::thread::spawn(move || handle.opened(worker))
            .join()
            .unwrap()
            .expect("opened");
        open[worker as usize].push((client, server));
        assert_balanced(&counter);
        // Every fifth connection, one closes on a rotating worker; the next new connection must
        // go to the worker that now has the fewest.
        if i % 5 == 4 {
            let victim = (i / 5) % WORKERS as usize;
            if open[victim].pop().is_some() {
                steering.connection_closed(victim as u32).expect("closed");
                closed += 1;
            }
        }
    }
    let counters = steering.counters().expect("counters");
    println!("least connections: closed {closed}, program counters: {counters}");
    assert!(
        closed >= 15,
        "the test closed too few connections: {closed}"
    );
    assert_eq!(counters.selected.iter().sum::<u64>(), CONNECTIONS as u64);
    assert_eq!(
        counters.open_connections.iter().sum::<u64>(),
        (CONNECTIONS - closed) as u64
    );
    assert_eq!(counters.policy, Some(SteeringPolicy::LeastConnections));
}

#[test]
fn detaching_falls_back_to_kernel_hashing_without_refusing_connections() {
    if !common::kernel_features_available(
        "detaching_falls_back_to_kernel_hashing_without_refusing_connections",
    ) {
        return;
    }
    let (listeners, port) = listener_group();
    let mut steering =
        ReuseportSteering::load(SteeringPolicy::LeastConnections, WORKERS).expect("load");
    steering.attach(&fds(&listeners)).expect("attach");
    let mut streams = Vec::new();
    for _ in 0..10 {
        streams.push(connect_and_accept(&listeners, port));
    }
    let before = steering.counters().expect("counters").selected;
    assert_eq!(before.iter().sum::<u64>(), 10);

    steering.detach().expect("detach");
    assert!(matches!(
        steering.detach(),
        Err(riptide_ebpf::EbpfError::NotAttached)
    ));
    let mut accepted = vec![0u64; WORKERS as usize];
    for _ in 0..CONNECTIONS {
        // connect_and_accept panics on a refused connection.
        let (client, server, worker) = connect_and_accept(&listeners, port);
        accepted[worker as usize] += 1;
        streams.push((client, server, worker));
    }
    println!("after detach: kernel hashing accepted {accepted:?}");
    assert!(
        accepted.iter().all(|&count| count > 0),
        "plain hashing should reach every worker: {accepted:?}"
    );
    assert_eq!(
        steering.counters().expect("counters").selected,
        before,
        "the program still ran after detach"
    );
    drop(steering);
    // Dropping the steering after detach leaves the group working too.
    connect_and_accept(&listeners, port);
}

#[test]
fn attach_rejects_a_wrong_listener_count() {
    if !common::kernel_features_available("attach_rejects_a_wrong_listener_count") {
        return;
    }
    let (listeners, _) = listener_group();
    let mut steering = ReuseportSteering::load(SteeringPolicy::Hash, WORKERS + 1).expect("load");
    let result = steering.attach(&fds(&listeners));
    assert!(
        matches!(result, Err(riptide_ebpf::EbpfError::InvalidArgument(_))),
        "{:?}",
        result.err()
    );
    assert!(steering.connection_opened(WORKERS + 1).is_err());
}
