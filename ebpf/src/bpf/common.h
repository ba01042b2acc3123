/* Shared by riptide's eBPF programs. Only kernel UAPI headers and libbpf's helper headers are used
 * (no vmlinux.h), so the objects build with Debian's linux-libc-dev and libbpf-dev alone. */
#ifndef RIPTIDE_BPF_COMMON_H
#define RIPTIDE_BPF_COMMON_H

#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

/* Adds one to slot `index` of a per-CPU counter array. Per-CPU slots need no atomics. */
#define RIPTIDE_COUNT(map, index)                                   \
    do {                                                            \
        __u32 riptide_key_ = (index);                               \
        __u64 *riptide_slot_ = bpf_map_lookup_elem(&(map), &riptide_key_); \
        if (riptide_slot_)                                          \
            *riptide_slot_ += 1;                                    \
    } while (0)

#endif
