//! Minimal rtnetlink client for an interface's XDP attachment: which program is attached and in
//! which mode (RTM_GETLINK), and detaching a program that was attached through netlink (RTM_SETLINK
//! with fd -1). aya attaches through bpf_link and does not expose either query.
//!
//! Messages are built and parsed as plain bytes; every read from a reply is bounds-checked, so a
//! malformed reply is an error, never a panic.

use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::constants::NETLINK_REPLY_BYTES_MAX;

const NLMSG_HEADER_BYTES: usize = 16;
const IFINFOMSG_BYTES: usize = 16;
const NLA_HEADER_BYTES: usize = 4;
const NLA_F_NESTED: u16 = 1 << 15;
const NLA_TYPE_MASK: u16 = !(NLA_F_NESTED | (1 << 14));

// From linux/if_link.h.
const IFLA_XDP: u16 = 43;
const IFLA_XDP_FD: u16 = 1;
const IFLA_XDP_ATTACHED: u16 = 2;
const IFLA_XDP_FLAGS: u16 = 3;
const IFLA_XDP_PROG_ID: u16 = 4;
const XDP_ATTACHED_NONE: u8 = 0;
const XDP_ATTACHED_DRV: u8 = 1;
const XDP_ATTACHED_SKB: u8 = 2;
const XDP_ATTACHED_HW: u8 = 3;
const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;
const XDP_FLAGS_HW_MODE: u32 = 1 << 3;

/// How an XDP program runs on an interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XdpAttachMode {
    /// In the driver (native XDP).
    Native,
    /// In the kernel's generic path (skb mode), for drivers without native XDP.
    Generic,
    /// Offloaded to the NIC.
    Offloaded,
    /// Several programs in several modes; the id is the first.
    Multiple,
}

impl XdpAttachMode {
    pub(crate) fn flags(self) -> u32 {
        match self {
            XdpAttachMode::Native => XDP_FLAGS_DRV_MODE,
            XdpAttachMode::Generic => XDP_FLAGS_SKB_MODE,
            XdpAttachMode::Offloaded => XDP_FLAGS_HW_MODE,
            XdpAttachMode::Multiple => 0,
        }
    }
}

impl std::fmt::Display for XdpAttachMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            XdpAttachMode::Native => "native",
            XdpAttachMode::Generic => "generic",
            XdpAttachMode::Offloaded => "offloaded",
            XdpAttachMode::Multiple => "multiple",
        })
    }
}

/// The XDP program attached to an interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XdpAttachment {
    /// Kernel program id.
    pub program_id: u32,
    /// Mode it runs in.
    pub mode: XdpAttachMode,
}

struct Socket(OwnedFd);

impl Socket {
    fn open() -> io::Result<Socket> {
        // SAFETY: plain socket(2) call; the returned fd is checked and then owned.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh descriptor that nothing else owns.
        Ok(Socket(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// Sends one request and returns the first reply message (header included).
    fn request(&self, message: &[u8]) -> io::Result<Vec<u8>> {
        // SAFETY: the kernel is the default destination of an unbound netlink socket; the buffer is
        // valid for its length.
        let sent = unsafe {
            libc::send(
                self.0.as_raw_fd(),
                message.as_ptr().cast(),
                message.len(),
                0,
            )
        };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut reply = vec![0u8; NETLINK_REPLY_BYTES_MAX];
        // SAFETY: reply is writable for its whole length and outlives the call.
        let received = unsafe {
            libc::recv(
                self.0.as_raw_fd(),
                reply.as_mut_ptr().cast(),
                reply.len(),
                0,
            )
        };
        if received < 0 {
            return Err(io::Error::last_os_error());
        }
        reply.truncate(received as usize);
        Ok(reply)
    }
}

fn message(kind: u16, flags: u16, if_index: u32, attributes: &[u8]) -> Vec<u8> {
    let length = NLMSG_HEADER_BYTES + IFINFOMSG_BYTES + attributes.len();
    let mut out = Vec::with_capacity(length);
    out.extend_from_slice(&(length as u32).to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(&(flags | libc::NLM_F_REQUEST as u16).to_ne_bytes());
    out.extend_from_slice(&1u32.to_ne_bytes()); // sequence
    out.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel fills it in
    out.extend_from_slice(&[libc::AF_UNSPEC as u8, 0]);
    out.extend_from_slice(&0u16.to_ne_bytes()); // device type
    out.extend_from_slice(&(if_index as i32).to_ne_bytes());
    out.extend_from_slice(&0u32.to_ne_bytes()); // flags
    out.extend_from_slice(&0u32.to_ne_bytes()); // change mask
    out.extend_from_slice(attributes);
    out
}

fn attribute(kind: u16, payload: &[u8]) -> Vec<u8> {
    let length = NLA_HEADER_BYTES + payload.len();
    let mut out = Vec::with_capacity(length.next_multiple_of(4));
    out.extend_from_slice(&(length as u16).to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(payload);
    out.resize(length.next_multiple_of(4), 0);
    out
}

fn malformed(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("malformed netlink reply: {what}"),
    )
}

/// Reads `(type, payload)` pairs from a run of netlink attributes.
fn attributes(mut bytes: &[u8]) -> io::Result<Vec<(u16, &[u8])>> {
    let mut out = Vec::new();
    while bytes.len() >= NLA_HEADER_BYTES {
        let length = u16::from_ne_bytes([bytes[0], bytes[1]]) as usize;
        let kind = u16::from_ne_bytes([bytes[2], bytes[3]]) & NLA_TYPE_MASK;
        if length < NLA_HEADER_BYTES || length > bytes.len() {
            return Err(malformed("attribute length"));
        }
        out.push((kind, &bytes[NLA_HEADER_BYTES..length]));
        bytes = &bytes[length.next_multiple_of(4).min(bytes.len())..];
    }
    Ok(out)
}

/// Returns an error for an NLMSG_ERROR reply with a non-zero code; `Ok(None)` for an ack,
/// `Ok(Some(body))` for any other message.
fn check_reply(reply: &[u8]) -> io::Result<Option<(u16, &[u8])>> {
    if reply.len() < NLMSG_HEADER_BYTES {
        return Err(malformed("short header"));
    }
    let length = u32::from_ne_bytes([reply[0], reply[1], reply[2], reply[3]]) as usize;
    let kind = u16::from_ne_bytes([reply[4], reply[5]]);
    if length < NLMSG_HEADER_BYTES || length > reply.len() {
        return Err(malformed("message length"));
    }
    let body = &reply[NLMSG_HEADER_BYTES..length];
    if kind == libc::NLMSG_ERROR as u16 {
        let code = body
            .get(..size_of::<i32>())
            .ok_or_else(|| malformed("short error"))?;
        let code = i32::from_ne_bytes([code[0], code[1], code[2], code[3]]);
        return if code == 0 {
            Ok(None)
        } else {
            Err(io::Error::from_raw_os_error(-code))
        };
    }
    Ok(Some((kind, body)))
}

fn parse_xdp(nested: &[u8]) -> io::Result<Option<XdpAttachment>> {
    let mut attached = XDP_ATTACHED_NONE;
    let mut program_id = 0u32;
    for (kind, payload) in attributes(nested)? {
        match kind {
            IFLA_XDP_ATTACHED => {
                attached = *payload.first().ok_or_else(|| malformed("attached"))?
            }
            IFLA_XDP_PROG_ID => {
                let bytes: [u8; 4] = payload
                    .get(..4)
                    .and_then(|b| b.try_into().ok())
                    .ok_or_else(|| malformed("prog id"))?;
                program_id = u32::from_ne_bytes(bytes);
            }
            _ => {}
        }
    }
    let mode = match attached {
        XDP_ATTACHED_NONE => return Ok(None),
        XDP_ATTACHED_DRV => XdpAttachMode::Native,
        XDP_ATTACHED_SKB => XdpAttachMode::Generic,
        XDP_ATTACHED_HW => XdpAttachMode::Offloaded,
        _ => XdpAttachMode::Multiple,
    };
    Ok(Some(XdpAttachment { program_id, mode }))
}

/// The XDP program attached to interface `if_index`, if any.
pub fn query_xdp(if_index: u32) -> io::Result<Option<XdpAttachment>> {
    let socket = Socket::open()?;
    let reply = socket.request(&message(libc::RTM_GETLINK, 0, if_index, &[]))?;
    let Some((_, body)) = check_reply(&reply)? else {
        return Err(malformed("ack instead of link"));
    };
    let attributes_bytes = body
        .get(IFINFOMSG_BYTES..)
        .ok_or_else(|| malformed("short ifinfomsg"))?;
    for (kind, payload) in attributes(attributes_bytes)? {
        if kind == IFLA_XDP {
            return parse_xdp(payload);
        }
    }
    Ok(None)
}

/// Detaches the netlink-attached XDP program running in `mode` from `if_index`. The kernel refuses
/// (EBUSY) when the program is held by a bpf_link; only its owner can detach it then.
pub fn detach_xdp(if_index: u32, mode: XdpAttachMode) -> io::Result<()> {
    let mut nested = attribute(IFLA_XDP_FD, &(-1i32).to_ne_bytes());
    nested.extend_from_slice(&attribute(IFLA_XDP_FLAGS, &mode.flags().to_ne_bytes()));
    let attributes = attribute(IFLA_XDP | NLA_F_NESTED, &nested);
    let socket = Socket::open()?;
    let reply = socket.request(&message(
        libc::RTM_SETLINK,
        libc::NLM_F_ACK as u16,
        if_index,
        &attributes,
    ))?;
    match check_reply(&reply)? {
        None => Ok(()),
        Some(_) => Err(malformed("expected an ack")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_parse_and_reject_bad_lengths() {
        let mut bytes = attribute(IFLA_XDP_ATTACHED, &[XDP_ATTACHED_SKB]);
        bytes.extend_from_slice(&attribute(IFLA_XDP_PROG_ID, &42u32.to_ne_bytes()));
        assert_eq!(
            parse_xdp(&bytes).unwrap(),
            Some(XdpAttachment {
                program_id: 42,
                mode: XdpAttachMode::Generic
            })
        );
        let mut bad = bytes.clone();
        bad[0] = 200;
        assert!(attributes(&bad).is_err());
        assert_eq!(
            parse_xdp(&attribute(IFLA_XDP_ATTACHED, &[XDP_ATTACHED_NONE])).unwrap(),
            None
        );
        assert!(parse_xdp(&attribute(IFLA_XDP_PROG_ID, &[1])).is_err());
    }

    #[test]
    fn error_replies_become_errnos() {
        let mut reply = vec![0u8; NLMSG_HEADER_BYTES + 4];
        let length = reply.len() as u32;
        reply[..4].copy_from_slice(&length.to_ne_bytes());
        reply[4..6].copy_from_slice(&(libc::NLMSG_ERROR as u16).to_ne_bytes());
        reply[16..20].copy_from_slice(&(-libc::EBUSY).to_ne_bytes());
        assert_eq!(
            check_reply(&reply).unwrap_err().raw_os_error(),
            Some(libc::EBUSY)
        );
        assert!(check_reply(&reply[..10]).is_err());
    }

    #[test]
    fn loopback_has_no_xdp_program() {
        // SAFETY: the string is NUL-terminated.
        let lo = unsafe { libc::if_nametoindex(c"lo".as_ptr()) };
        assert!(lo > 0);
        assert_eq!(query_xdp(lo).expect("RTM_GETLINK on lo"), None);
    }
}
