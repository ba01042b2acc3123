//! Limits and defaults of the DPDK backend, in one place.

/// Mbufs taken from (or handed to) the driver in one rx/tx burst: DPDK's customary 32 amortises the
/// per-call cost without holding many packets back.
pub const BURST_PACKETS_MAX: usize = 32;

/// smoltcp egress passes per lcore turn (each lets every socket emit one segment): 64 passes are
/// ~90 KB per connection, two full tx bursts, before the turn goes back to received frames.
pub const EGRESS_PASSES_PER_TURN_MAX: usize = 64;

/// Received frames an lcore holds for smoltcp at once: one burst from its queue plus one burst
/// handed over by the other lcores of the port.
pub const RX_HELD_PACKETS_MAX: usize = 2 * BURST_PACKETS_MAX;

/// Frames each steering ring (one per ordered pair of lcores of a port) holds. It fills only
/// while its consumer lcore is descheduled (lcores sharing a CPU); a full ring drops the frame and
/// TCP retransmits it.
pub const STEERING_RING_FRAMES: usize = 1024;

/// An Ethernet header (no VLAN tag): a frame is the IP MTU plus this.
pub const ETHERNET_HEADER_BYTES: u16 = 14;

/// Bytes of an mbuf's data room after its headroom, at least (DPDK's RTE_MBUF_DEFAULT_DATAROOM):
/// more than a 1500-MTU frame; a larger MTU gets mbufs that hold its whole frame, so received
/// frames are always one segment.
pub const MBUF_DATA_BYTES_MIN: u16 = 2048;

/// af_packet (TPACKET_V2) frames. On receive the kernel writes the Ethernet frame at
/// TPACKET_ALIGN(TPACKET2_HDRLEN + 16) - 14 = 66 bytes into a ring frame (`framesz`) and truncates
/// what does not fit; the PMD copies up to `framesz` - 32 bytes (the tpacket2 header) into one
/// mbuf, and refuses a mempool whose mbufs hold less. Its default `framesz` is 2048.
pub const AF_PACKET_RX_FRAME_OFFSET_BYTES: usize = 66;
pub const AF_PACKET_HEADER_BYTES: usize = 32;
pub const AF_PACKET_FRAME_ALIGN_BYTES: usize = 16;
pub const AF_PACKET_FRAME_BYTES_DEFAULT: usize = 2048;

/// af_xdp (DPDK 22.11) receives into the mbufs of the queue's mempool, which is its UMEM: the
/// kernel writes a frame after the mbuf's headroom and XDP's own 256-byte headroom, and a UMEM
/// chunk (one whole mempool object) may not exceed a page.
pub const XDP_PACKET_HEADROOM_BYTES: usize = 256;

/// Flows whose highest sent sequence number an lcore remembers to count retransmissions (a
/// direct-mapped table of 256 KiB): thousands of concurrent connections rarely share a slot, and a
/// shared slot only makes the count miss a retransmission.
pub const RETRANSMIT_FLOWS: usize = 16_384;

/// Queues per port the backend configures at most (one per lcore).
pub const PORT_QUEUES_MAX: u16 = 64;

/// Descriptors per rx/tx ring when the configuration does not say (the driver may adjust them).
/// The rx ring holds what clients send while the lcore is descheduled: a client may send a whole
/// TCP window (up to the 2 MiB socket buffer, ~1440 frames) at once, and with 1024 descriptors
/// af_xdp's ring overflowed under two producers (1090 client retransmissions in a 200 MB run,
/// 114 with 4096).
pub const RX_DESCRIPTORS_DEFAULT: u16 = 4096;
pub const TX_DESCRIPTORS_DEFAULT: u16 = 1024;

/// Mbufs per queue's mempool: the rx ring, the tx ring, packets held by the lcore, plus slack.
/// DPDK advises 2^n - 1 for its ring-backed pools.
pub const MBUFS_PER_QUEUE_DEFAULT: u32 = 8191;

/// Per-lcore mbuf cache of a mempool (must not exceed DPDK's RTE_MEMPOOL_CACHE_MAX_SIZE, 512).
pub const MBUF_CACHE_SIZE: u32 = 256;
pub const MEMPOOL_CACHE_MAX_SIZE: u32 = 512;
const _: () = assert!(MBUF_CACHE_SIZE <= MEMPOOL_CACHE_MAX_SIZE);

/// Longest mempool name DPDK accepts (RTE_MEMPOOL_NAMESIZE minus the "MP_" prefix it adds).
pub const MEMPOOL_NAME_MAX_BYTES: usize = 26;

/// EAL arguments riptide builds at most (lcores, memory, devices, ...); a bound on config size.
pub const EAL_ARGS_MAX: usize = 256;

/// TCP connections one lcore serves at once; the configuration picks a value up to this.
pub const CONNECTIONS_PER_LCORE_MAX: usize = 65_536;

/// Listening sockets kept ready per lcore by default: smoltcp needs one listening socket per
/// connection being accepted, so this many SYNs can be in progress at once.
pub const LISTEN_BACKLOG_DEFAULT: usize = 16;

/// Socket buffers per TCP connection by default (smoltcp allocates them once, at start-up).
/// The receive buffer is the window the peer may send into: a default 1 MB batch fits at once
/// (with 64 KiB it took 16 round trips). Memory is reserved, and touched only as it is used.
pub const SOCKET_RX_BUFFER_DEFAULT_BYTES: usize = 2 * 1024 * 1024;
pub const SOCKET_TX_BUFFER_DEFAULT_BYTES: usize = 1024 * 1024;
/// Largest socket buffer: TCP window scaling reaches 1 GiB, memory per connection is the limit.
pub const SOCKET_BUFFER_MAX_BYTES: usize = 64 * 1024 * 1024;

/// Idle polling turns before an lcore starts sleeping, and the default sleep between empty turns.
pub const IDLE_TURNS_BEFORE_SLEEP_DEFAULT: u32 = 64;
pub const IDLE_SLEEP_DEFAULT_US: u64 = 50;
/// Longest sleep of an idle lcore: bounds the added latency of the first packet after a pause.
pub const IDLE_SLEEP_MAX_US: u64 = 10_000;
/// Timer slack of a polling lcore's thread. Linux lets a thread's sleep overrun by its slack,
/// 50 us unless set: the default 50 us idle sleep lasted 70-120 us (1198 of 1754 sleeps in an
/// af_packet consumer run), and a request or shard reply arriving meanwhile waited that long.
pub const LCORE_TIMER_SLACK_NS: u64 = 1_000;

/// Without keep-alive (`tcp.keepalive_s = 0`), a TCP connection that hears nothing for this long
/// (dead peer, unanswered FIN, or a live peer that stays quiet) is reset, so its socket slot comes
/// back. With keep-alive the timeout is the keep-alive's dead time instead.
pub const SOCKET_TIMEOUT_S: u64 = 120;

/// TCP connections per polling lcore when `[tcp] connections_max` would give more: each costs
/// its socket buffers (3 MiB by default), reserved at start-up.
pub const LCORE_CONNECTIONS_DEFAULT: usize = 512;

/// How long a stopping lcore goes on answering the requests it already read (SIGTERM) before it
/// resets the connections.
pub const STOP_DRAIN_TIMEOUT_MS: u64 = 5_000;
/// How long the backend waits for a launched lcore to set up its TCP stack.
pub const LCORE_START_TIMEOUT_MS: u64 = 5_000;

/// DPDK 22.11's memif reports frames of at most 1518 bytes (`RTE_ETHER_MAX_LEN`): MTU 1500.
pub const MEMIF_MTU_MAX: u16 = 1500;
/// memif's ring buffer bytes unless `bsize` is given (`ETH_MEMIF_DEFAULT_PKT_BUFFER_SIZE`).
pub const MEMIF_BUFFER_BYTES_DEFAULT: usize = 2048;
/// The largest `rsize` memif takes (`ETH_MEMIF_MAX_LOG2_RING_SIZE`).
pub const MEMIF_LOG2_RING_SIZE_MAX: u32 = 14;
/// The memif server's socket file in the runtime directory unless `socket` is given.
pub const MEMIF_SOCKET_FILE: &str = "memif.sock";
/// A Unix socket path's room (`sun_path`), its NUL included.
pub const MEMIF_SOCKET_PATH_MAX_BYTES: usize = 108;
