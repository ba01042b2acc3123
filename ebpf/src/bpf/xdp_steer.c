/* XDP steering for the AF_XDP dataplane.
 *
 * The appliance shares its NIC with the host. Frames that belong to the appliance -- IPv4 to its own
 * address with TCP to one of its ports, and ARP that concerns its address -- are redirected to the
 * AF_XDP socket bound to the receiving queue (`xsks_map`, keyed by rx queue index, the name and key
 * DPDK's af_xdp PMD expects for its `xdp_prog=` argument). Everything else is passed to the kernel
 * untouched, so ssh and monitoring keep working.
 *
 * The address and ports live in `xdp_config`, written by the Rust loader (or by the dataplane after
 * the PMD loaded this object). Until an address is configured nothing is steered.
 *
 * Keep the counter indices and the config layout in sync with ebpf/src/xdp.rs. */
#include "common.h"
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/in.h>
#include <linux/tcp.h>

#define XDP_PORTS_MAX 8
#define XSKS_QUEUES_MAX 64

/* Counter slots (per CPU). */
#define CNT_STEERED_TCP 0
#define CNT_STEERED_ARP 1
#define CNT_PASSED 2
#define CNT_DROP_NO_SOCKET 3
#define CNT_DROP_REDIRECT 4
#define CNT_SLOTS 5

#define ARP_HLEN_IPV4_ETH 28
#define IP_FRAG_OFFSET_MASK 0x1fff

struct xdp_config {
    __u32 ipv4_be;      /* appliance address, network byte order; 0 = steer nothing */
    __u32 ports_count;  /* valid entries in ports_be */
    __u16 ports_be[XDP_PORTS_MAX];
};

struct {
    __uint(type, BPF_MAP_TYPE_XSKMAP);
    __uint(max_entries, XSKS_QUEUES_MAX);
    __type(key, __u32);
    __type(value, __u32);
} xsks_map SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct xdp_config);
} xdp_config SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, CNT_SLOTS);
    __type(key, __u32);
    __type(value, __u64);
} xdp_counters SEC(".maps");

static __always_inline int port_is_ours(const struct xdp_config *cfg, __u16 port_be)
{
    __u32 count = cfg->ports_count;
    for (__u32 i = 0; i < XDP_PORTS_MAX; i++) {
        if (i >= count)
            break;
        if (cfg->ports_be[i] == port_be)
            return 1;
    }
    return 0;
}

/* Returns 1 when the IPv4 packet at `l3` is TCP to the appliance address and one of its ports.
 * Non-first fragments carry no TCP header; they belong to the appliance by address alone. */
static __always_inline int ipv4_is_ours(const struct xdp_config *cfg, void *l3, void *end)
{
    struct iphdr *ip = l3;
    if ((void *)(ip + 1) > end)
        return 0;
    if (ip->daddr != cfg->ipv4_be || ip->protocol != IPPROTO_TCP)
        return 0;
    if (bpf_ntohs(ip->frag_off) & IP_FRAG_OFFSET_MASK)
        return 1;
    __u32 ihl_bytes = ip->ihl * 4;
    if (ihl_bytes < sizeof(*ip))
        return 0;
    struct tcphdr *tcp = l3 + ihl_bytes;
    if ((void *)(tcp + 1) > end)
        return 0;
    return port_is_ours(cfg, tcp->dest);
}

/* ARP for Ethernet/IPv4: 8-byte header, then sha[6] spa[4] tha[6] tpa[4]. A request for the
 * appliance or a reply to it names the address as target; its own announcements name it as sender. */
static __always_inline int arp_is_ours(const struct xdp_config *cfg, __u8 *arp, void *end)
{
    if ((void *)(arp + ARP_HLEN_IPV4_ETH) > end)
        return 0;
    __u32 spa, tpa;
    __builtin_memcpy(&spa, arp + 14, 4);
    __builtin_memcpy(&tpa, arp + 24, 4);
    return spa == cfg->ipv4_be || tpa == cfg->ipv4_be;
}

static __always_inline int steer(struct xdp_md *ctx, __u32 counter)
{
    __u32 queue = ctx->rx_queue_index;
    if (!bpf_map_lookup_elem(&xsks_map, &queue)) {
        RIPTIDE_COUNT(xdp_counters, CNT_DROP_NO_SOCKET);
        return XDP_DROP;
    }
    long action = bpf_redirect_map(&xsks_map, queue, XDP_DROP);
    if (action != XDP_REDIRECT) {
        RIPTIDE_COUNT(xdp_counters, CNT_DROP_REDIRECT);
        return XDP_DROP;
    }
    RIPTIDE_COUNT(xdp_counters, counter);
    return XDP_REDIRECT;
}

SEC("xdp")
int riptide_xdp(struct xdp_md *ctx)
{
    void *data = (void *)(long)ctx->data;
    void *end = (void *)(long)ctx->data_end;
    __u32 zero = 0;
    struct xdp_config *cfg = bpf_map_lookup_elem(&xdp_config, &zero);
    struct ethhdr *eth = data;

    if (!cfg || cfg->ipv4_be == 0 || (void *)(eth + 1) > end)
        goto pass;
    if (eth->h_proto == bpf_htons(ETH_P_IP)) {
        if (ipv4_is_ours(cfg, eth + 1, end))
            return steer(ctx, CNT_STEERED_TCP);
    } else if (eth->h_proto == bpf_htons(ETH_P_ARP)) {
        if (arp_is_ours(cfg, (__u8 *)(eth + 1), end))
            return steer(ctx, CNT_STEERED_ARP);
    }
pass:
    RIPTIDE_COUNT(xdp_counters, CNT_PASSED);
    return XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
