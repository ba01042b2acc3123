//! Measures the loopback TCP ceiling for scripts/bench.sh: one sender and one receiver thread
//! move `--total-bytes` through a 127.0.0.1 connection in 1 MiB reads and writes (the size of a
//! default batch), and the figure is printed as `loopback_mb_per_sec=<MB/s>` (MB = 10^6 bytes).
//! Blocking sockets on plain threads: the ceiling should not carry an async runtime's overhead.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::ExitCode;
use std::time::Instant;

const CHUNK_BYTES: usize = 1 << 20;
const TOTAL_BYTES_DEFAULT: u64 = 4 << 30;

fn parse_total_bytes() -> Result<u64, String> {
    let mut args = std::env::args().skip(1);
    let mut total = TOTAL_BYTES_DEFAULT;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--total-bytes" => {
                let v = args.next().ok_or("--total-bytes needs a value")?;
                total = riptide_bench::args::parse_size_bytes(&v)?;
            }
            "-h" | "--help" => {
                return Err("usage: riptide-loopback-ceiling [--total-bytes SIZE]".into())
            }
            other => return Err(format!("unknown argument '{other}'")),
        }
    }
    Ok(total)
}

fn measure(total: u64) -> std::io::Result<f64> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let address = listener.local_addr()?;
    let receiver = std::thread::spawn(move || -> std::io::Result<u64> {
        let (mut socket, _) = listener.accept()?;
        let mut buf = vec![0u8; CHUNK_BYTES];
        let mut received = 0u64;
        loop {
            let n = socket.read(&mut buf)?;
            if n == 0 {
                return Ok(received);
            }
            received += n as u64;
        }
    });
    let mut socket = TcpStream::connect(address)?;
    socket.set_nodelay(true)?;
    let chunk = vec![0x5au8; CHUNK_BYTES];
    let start = Instant::now();
    let mut sent = 0u64;
    while sent < total {
        let n = (total - sent).min(CHUNK_BYTES as u64) as usize;
        socket.write_all(&chunk[..n])?;
        sent += n as u64;
    }
    socket.shutdown(std::net::Shutdown::Write)?;
    let received = receiver
        .join()
        .map_err(|_| std::io::Error::other("receiver thread panicked"))??;
    let elapsed_s = start.elapsed().as_secs_f64();
    if received != total {
        return Err(std::io::Error::other(format!(
            "received {received} of {total} bytes"
        )));
    }
    Ok(total as f64 / elapsed_s / 1e6)
}

fn main() -> ExitCode {
    let total = match parse_total_bytes() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("riptide-loopback-ceiling: {e}");
            return ExitCode::from(64);
        }
    };
    match measure(total) {
        Ok(mb_per_sec) => {
            println!("loopback_mb_per_sec={mb_per_sec:.1}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("riptide-loopback-ceiling: {e}");
            ExitCode::from(1)
        }
    }
}
