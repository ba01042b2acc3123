//! kTLS: the kernel's TLS record layer (`CONFIG_TLS`). Kernel mode asks once at start-up whether
//! the kernel offers it: the TLS upper-layer protocol attaches only to an established TCP socket,
//! so the probe connects a loopback pair and attaches it to one end.

use std::io;
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;

/// `TCP_ULP` (linux/tcp.h): attach an upper-layer protocol to a TCP socket.
const TCP_ULP: libc::c_int = 31;

/// Attaches the kernel's TLS upper-layer protocol to an established TCP socket.
///
/// # Errors
/// The setsockopt error: ENOENT when the kernel has no TLS module (`CONFIG_TLS` unset).
pub fn attach_ulp(socket: &impl AsRawFd) -> io::Result<()> {
    let name = b"tls";
    // SAFETY: a valid descriptor and a buffer of the given length.
    let result = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_TCP,
            TCP_ULP,
            name.as_ptr().cast(),
            name.len() as libc::socklen_t,
        )
    };
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Whether this kernel offers kTLS; `Err` says why not, in words for the operator.
///
/// # Errors
/// Why kTLS is unavailable.
pub fn probe() -> Result<(), String> {
    let pair = || -> io::Result<(TcpStream, TcpStream)> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let client = TcpStream::connect(listener.local_addr()?)?;
        let (server, _) = listener.accept()?;
        Ok((client, server))
    };
    let (_client, server) =
        pair().map_err(|e| format!("the probe's loopback connection failed: {e}"))?;
    match attach_ulp(&server) {
        Ok(()) => Ok(()),
        Err(error) if error.raw_os_error() == Some(libc::ENOENT) => Err(format!(
            "the kernel has no TLS upper-layer protocol (CONFIG_TLS not set, or the tls module \
             not loaded: modprobe tls): {error}"
        )),
        Err(error) => Err(format!("setsockopt(TCP_ULP, \"tls\") failed: {error}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The probe and a direct attach agree on this kernel, whatever it offers.
    #[test]
    fn the_probe_matches_the_kernel() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let _client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        let direct = attach_ulp(&server);
        match (probe(), direct) {
            (Ok(()), Ok(())) => {}
            (Err(reason), Err(error)) => assert!(reason.contains(&error.to_string()), "{reason}"),
            (probe, direct) => panic!("probe {probe:?} but attach {direct:?}"),
        }
    }
}
