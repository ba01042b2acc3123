/* sk_reuseport steering for the kernel network backend.
 *
 * The N network workers each own one listener; the listeners form one SO_REUSEPORT group and sit in
 * `reuse_workers` at their worker index. For every new connection this program picks the worker:
 *   - POLICY_HASH: the kernel's hash of the 4-tuple modulo the worker count;
 *   - POLICY_LEAST_CONN: the worker with the fewest open connections, from `reuse_conns`, which the
 *     workers keep up to date (mmapped by the loader, updated with atomic adds); ties are broken by
 *     starting the scan at the hash so equal workers share new connections.
 * When the chosen slot holds no socket the program returns SK_PASS without a selection and the kernel
 * falls back to its own reuseport hashing; that is counted.
 *
 * Keep the layouts and indices in sync with ebpf/src/reuseport.rs. */
#include "common.h"

#define WORKERS_MAX 64
#define POLICY_HASH 0
#define POLICY_LEAST_CONN 1

/* Slots of reuse_events after the per-worker selection counters. */
#define EVT_SELECT_FAILED 0
#define EVT_NOT_CONFIGURED 1
#define EVT_SLOTS 2

struct reuse_config {
    __u32 policy;
    __u32 workers; /* listeners in reuse_workers, 1..=WORKERS_MAX; 0 = not configured */
};

struct {
    __uint(type, BPF_MAP_TYPE_REUSEPORT_SOCKARRAY);
    __uint(max_entries, WORKERS_MAX);
    __type(key, __u32);
    __type(value, __u32); /* a socket fd on update */
} reuse_workers SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct reuse_config);
} reuse_config SEC(".maps");

/* Open connections per worker. Mmappable so the workers count with one atomic add, no syscall. */
struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, WORKERS_MAX);
    __uint(map_flags, BPF_F_MMAPABLE);
    __type(key, __u32);
    __type(value, __u64);
} reuse_conns SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, WORKERS_MAX);
    __type(key, __u32);
    __type(value, __u64);
} reuse_selected SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, EVT_SLOTS);
    __type(key, __u32);
    __type(value, __u64);
} reuse_events SEC(".maps");

static __always_inline __u32 least_connections(__u32 workers, __u32 start)
{
    __u32 best = start;
    __u64 best_count = ~0ULL;
    for (__u32 step = 0; step < WORKERS_MAX; step++) {
        if (step >= workers)
            break;
        __u32 index = start + step;
        if (index >= workers)
            index -= workers;
        __u64 *count = bpf_map_lookup_elem(&reuse_conns, &index);
        if (count && *count < best_count) {
            best_count = *count;
            best = index;
        }
    }
    return best;
}

SEC("sk_reuseport")
int riptide_reuse(struct sk_reuseport_md *reuse)
{
    __u32 zero = 0;
    struct reuse_config *cfg = bpf_map_lookup_elem(&reuse_config, &zero);
    if (!cfg || cfg->workers == 0 || cfg->workers > WORKERS_MAX) {
        RIPTIDE_COUNT(reuse_events, EVT_NOT_CONFIGURED);
        return SK_PASS;
    }
    __u32 workers = cfg->workers;
    __u32 index = reuse->hash % workers;
    if (cfg->policy == POLICY_LEAST_CONN)
        index = least_connections(workers, index);
    if (bpf_sk_select_reuseport(reuse, &reuse_workers, &index, 0) != 0) {
        RIPTIDE_COUNT(reuse_events, EVT_SELECT_FAILED);
        return SK_PASS;
    }
    RIPTIDE_COUNT(reuse_selected, index);
    return SK_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
