//! A minimal AF_XDP receiver for the tests: one UMEM, a fill ring and an rx ring, bound to one
//! queue of an interface in copy mode. Enough to prove which frames the XDP program redirects.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

const FRAME_BYTES: usize = 4096;
const FRAMES: usize = 64;
const RING_ENTRIES: u32 = 64;

fn check(rc: libc::c_int, what: &str) -> io::Result<()> {
    if rc < 0 {
        let error = io::Error::last_os_error();
        return Err(io::Error::new(error.kind(), format!("{what}: {error}")));
    }
    Ok(())
}

/// A mmapped region, unmapped on drop.
struct Mapping {
    base: *mut u8,
    length_bytes: usize,
}

impl Mapping {
    fn new(length_bytes: usize, fd: Option<(BorrowedFd<'_>, i64)>) -> io::Result<Mapping> {
        let (flags, raw_fd, offset) = match fd {
            Some((fd, offset)) => (
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd.as_raw_fd(),
                offset,
            ),
            None => (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0),
        };
        // SAFETY: a fresh mapping of the requested size; the result is checked.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                length_bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                raw_fd,
                offset,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Mapping {
            base: base.cast(),
            length_bytes,
        })
    }

    /// # Safety
    /// `offset` must be 4-byte aligned and inside the mapping.
    unsafe fn atomic_u32(&self, offset: u64) -> &AtomicU32 {
        // SAFETY: per the caller's contract.
        unsafe { &*self.base.add(offset as usize).cast::<AtomicU32>() }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: exactly the region mmap returned.
        unsafe { libc::munmap(self.base.cast(), self.length_bytes) };
    }
}

/// An AF_XDP socket receiving on one queue.
pub struct XskReceiver {
    fill: Mapping,
    fill_offsets: libc::xdp_ring_offset,
    rx: Mapping,
    rx_offsets: libc::xdp_ring_offset,
    umem: Mapping,
    fd: OwnedFd,
}

impl XskReceiver {
    /// Creates the socket and binds it to `queue` of interface `if_index` (copy mode).
    pub fn bind(if_index: u32, queue: u32) -> io::Result<XskReceiver> {
        // SAFETY: plain socket(2); checked, then owned.
        let raw = unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        check(raw, "socket(AF_XDP)")?;
        // SAFETY: raw is a fresh fd nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let umem = Mapping::new(FRAME_BYTES * FRAMES, None)?;
        let registration = libc::xdp_umem_reg {
            addr: umem.base as u64,
            len: (FRAME_BYTES * FRAMES) as u64,
            chunk_size: FRAME_BYTES as u32,
            headroom: 0,
            flags: 0,
            tx_metadata_len: 0,
        };
        set_option(&fd, libc::XDP_UMEM_REG, &registration, "XDP_UMEM_REG")?;
        for option in [
            libc::XDP_UMEM_FILL_RING,
            libc::XDP_UMEM_COMPLETION_RING,
            libc::XDP_RX_RING,
        ] {
            set_option(&fd, option, &RING_ENTRIES, "ring size")?;
        }
        let (fill, fill_offsets, rx, rx_offsets) = map_rings(&fd)?;
        let receiver = XskReceiver {
            fill,
            fill_offsets,
            rx,
            rx_offsets,
            umem,
            fd,
        };
        let addresses: Vec<u64> = (0..RING_ENTRIES as u64)
            .map(|frame| frame * FRAME_BYTES as u64)
            .collect();
        receiver.refill(&addresses);

        let address = libc::sockaddr_xdp {
            sxdp_family: libc::AF_XDP as u16,
            sxdp_flags: libc::XDP_COPY,
            sxdp_ifindex: if_index,
            sxdp_queue_id: queue,
            sxdp_shared_umem_fd: 0,
        };
        // SAFETY: address is a valid sockaddr_xdp of the stated size.
        let rc = unsafe {
            libc::bind(
                receiver.fd.as_raw_fd(),
                (&raw const address).cast(),
                size_of::<libc::sockaddr_xdp>() as u32,
            )
        };
        check(rc, "bind(AF_XDP)")?;
        Ok(receiver)
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Gives frames back to the kernel through the fill ring (single producer: this thread).
    fn refill(&self, addresses: &[u64]) {
        // SAFETY: the kernel's offsets point at aligned u32 indices inside the mapping.
        let producer = unsafe { self.fill.atomic_u32(self.fill_offsets.producer) };
        let mut head = producer.load(Ordering::Relaxed);
        for address in addresses {
            let slot = (head & (RING_ENTRIES - 1)) as usize;
            // SAFETY: slot < RING_ENTRIES, inside the descriptor array the kernel sized.
            unsafe {
                self.fill
                    .base
                    .add(self.fill_offsets.desc as usize)
                    .cast::<u64>()
                    .add(slot)
                    .write(*address)
            };
            head = head.wrapping_add(1);
        }
        producer.store(head, Ordering::Release);
    }

    /// Receives frames until `count` arrived or `timeout` passed; returns copies of them.
    pub fn receive(&self, count: usize, timeout: Duration) -> Vec<Vec<u8>> {
        let deadline = Instant::now() + timeout;
        let mut frames = Vec::new();
        while frames.len() < count && Instant::now() < deadline {
            self.poll(Duration::from_millis(50));
            frames.extend(self.drain());
        }
        frames
    }

    fn poll(&self, timeout: Duration) {
        let mut pollfd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut pollfd, 1, timeout.as_millis() as i32) };
    }

    fn drain(&self) -> Vec<Vec<u8>> {
        // SAFETY: aligned u32 indices inside the rx mapping, per the kernel's offsets.
        let (producer, consumer) = unsafe {
            (
                self.rx.atomic_u32(self.rx_offsets.producer),
                self.rx.atomic_u32(self.rx_offsets.consumer),
            )
        };
        let head = producer.load(Ordering::Acquire);
        let mut tail = consumer.load(Ordering::Relaxed);
        let mut frames = Vec::new();
        let mut returned = Vec::new();
        while tail != head {
            let slot = (tail & (RING_ENTRIES - 1)) as usize;
            // SAFETY: slot < RING_ENTRIES; the kernel published this descriptor before `head`.
            let desc = unsafe {
                self.rx
                    .base
                    .add(self.rx_offsets.desc as usize)
                    .cast::<libc::xdp_desc>()
                    .add(slot)
                    .read()
            };
            let in_umem = desc.addr as usize + desc.len as usize <= self.umem.length_bytes;
            assert!(
                in_umem,
                "descriptor outside the UMEM: {}+{}",
                desc.addr, desc.len
            );
            // SAFETY: checked just above to lie inside the UMEM.
            let bytes = unsafe {
                std::slice::from_raw_parts(
                    self.umem.base.add(desc.addr as usize),
                    desc.len as usize,
                )
            };
            frames.push(bytes.to_vec());
            returned.push(desc.addr - desc.addr % FRAME_BYTES as u64);
            tail = tail.wrapping_add(1);
        }
        consumer.store(tail, Ordering::Release);
        self.refill(&returned);
        frames
    }
}

/// Maps the fill and rx rings the kernel sized after the ring-size options.
fn map_rings(
    fd: &OwnedFd,
) -> io::Result<(
    Mapping,
    libc::xdp_ring_offset,
    Mapping,
    libc::xdp_ring_offset,
)> {
    // SAFETY: an all-zero xdp_mmap_offsets is a valid value (plain integers).
    let mut offsets: libc::xdp_mmap_offsets = unsafe { std::mem::zeroed() };
    let mut length = size_of::<libc::xdp_mmap_offsets>() as libc::socklen_t;
    // SAFETY: offsets/length describe a writable buffer of the right size.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_XDP,
            libc::XDP_MMAP_OFFSETS,
            (&raw mut offsets).cast(),
            &mut length,
        )
    };
    check(rc, "XDP_MMAP_OFFSETS")?;
    let fill_bytes = offsets.fr.desc as usize + RING_ENTRIES as usize * size_of::<u64>();
    let fill = Mapping::new(
        fill_bytes,
        Some((fd.as_fd(), libc::XDP_UMEM_PGOFF_FILL_RING as i64)),
    )?;
    let rx_bytes = offsets.rx.desc as usize + RING_ENTRIES as usize * size_of::<libc::xdp_desc>();
    let rx = Mapping::new(rx_bytes, Some((fd.as_fd(), libc::XDP_PGOFF_RX_RING)))?;
    Ok((fill, offsets.fr, rx, offsets.rx))
}

fn set_option<T>(fd: &OwnedFd, option: libc::c_int, value: &T, what: &str) -> io::Result<()> {
    // SAFETY: value is a valid T of the stated size for the call.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_XDP,
            option,
            (value as *const T).cast(),
            size_of::<T>() as u32,
        )
    };
    check(rc, what)
}
