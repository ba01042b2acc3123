/* Deliberately rejected by the verifier: it reads packet memory without checking it against
 * data_end. The test suite loads it to prove that a verifier failure comes back as a readable error
 * carrying the verifier log. Never attached anywhere. */
#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("xdp")
int riptide_broken(struct xdp_md *ctx)
{
    __u8 *data = (__u8 *)(long)ctx->data;
    return data[12] == 0x08 ? XDP_PASS : XDP_DROP;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
