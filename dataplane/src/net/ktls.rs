//! kTLS: the kernel's TLS record layer (`CONFIG_TLS`). Kernel mode asks once at start-up whether
//! the kernel offers it: the TLS upper-layer protocol attaches only to an established TCP socket,
//! so the probe connects a loopback pair and attaches it to one end.

use rustls::{ConnectionTrafficSecrets, ExtractedSecrets};
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

/// Hands a connection's record layer to the kernel: the TLS upper-layer protocol, then the
/// negotiated TLS 1.3 keys and sequence numbers for sending and receiving. From here the socket
/// carries plaintext for the application; records the kernel does not decrypt for it (alerts,
/// KeyUpdate, tickets) make a plain receive fail (EIO), and the connection closes.
///
/// # Errors
/// The setsockopt error (the connection is unusable then: close it).
pub fn install(socket: &impl AsRawFd, secrets: ExtractedSecrets) -> io::Result<()> {
    attach_ulp(socket)?;
    set_keys(socket, libc::TLS_TX, secrets.tx)?;
    set_keys(socket, libc::TLS_RX, secrets.rx)
}

fn set_keys(
    socket: &impl AsRawFd,
    direction: libc::c_int,
    (sequence, secrets): (u64, ConnectionTrafficSecrets),
) -> io::Result<()> {
    let info = |cipher_type| libc::tls_crypto_info {
        version: libc::TLS_1_3_VERSION,
        cipher_type,
    };
    let rec_seq = sequence.to_be_bytes();
    // TLS 1.3's 12-byte IV: the kernel wants its first 4 bytes as the salt, the rest as the IV.
    match secrets {
        ConnectionTrafficSecrets::Aes128Gcm { key, iv } => {
            let iv = iv.as_ref();
            let mut crypto = libc::tls12_crypto_info_aes_gcm_128 {
                info: info(libc::TLS_CIPHER_AES_GCM_128),
                iv: [0; 8],
                key: [0; 16],
                salt: [0; 4],
                rec_seq,
            };
            crypto.key.copy_from_slice(key.as_ref());
            crypto.salt.copy_from_slice(&iv[..4]);
            crypto.iv.copy_from_slice(&iv[4..12]);
            set_tls_option(socket, direction, &crypto)
        }
        ConnectionTrafficSecrets::Aes256Gcm { key, iv } => {
            let iv = iv.as_ref();
            let mut crypto = libc::tls12_crypto_info_aes_gcm_256 {
                info: info(libc::TLS_CIPHER_AES_GCM_256),
                iv: [0; 8],
                key: [0; 32],
                salt: [0; 4],
                rec_seq,
            };
            crypto.key.copy_from_slice(key.as_ref());
            crypto.salt.copy_from_slice(&iv[..4]);
            crypto.iv.copy_from_slice(&iv[4..12]);
            set_tls_option(socket, direction, &crypto)
        }
        ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv } => {
            let mut crypto = libc::tls12_crypto_info_chacha20_poly1305 {
                info: info(libc::TLS_CIPHER_CHACHA20_POLY1305),
                iv: [0; 12],
                key: [0; 32],
                salt: [],
                rec_seq,
            };
            crypto.key.copy_from_slice(key.as_ref());
            crypto.iv.copy_from_slice(iv.as_ref());
            set_tls_option(socket, direction, &crypto)
        }
        _ => Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "a cipher suite kTLS does not take",
        )),
    }
}

fn set_tls_option<T>(socket: &impl AsRawFd, option: libc::c_int, value: &T) -> io::Result<()> {
    // SAFETY: a valid descriptor and a plain-old-data struct of the given size.
    let result = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_TLS,
            option,
            (value as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
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
