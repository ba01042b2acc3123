/*
 * riptide's C shim over DPDK 22.11.
 *
 * DPDK's fast-path functions (rx/tx bursts, mbuf allocation and data access, the lcore id, errno)
 * are `static inline` in its headers, so they have no symbol a Rust binding could link to. Each
 * `riptide_*` function below wraps one of them in a real symbol; shim.c compiles them with the
 * flags libdpdk.pc gives, so the inlined code is exactly what a C application would get.
 *
 * This header is also the input of bindgen (build.rs): it includes the DPDK headers whose
 * exported functions and types the Rust side uses directly.
 */
#ifndef RIPTIDE_DPDK_SHIM_H
#define RIPTIDE_DPDK_SHIM_H

#include <stdint.h>

#include <rte_config.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_launch.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>

uint16_t riptide_rx_burst(uint16_t port_id, uint16_t queue_id, struct rte_mbuf **mbufs,
                          uint16_t mbufs_count);
uint16_t riptide_tx_burst(uint16_t port_id, uint16_t queue_id, struct rte_mbuf **mbufs,
                          uint16_t mbufs_count);

struct rte_mbuf *riptide_pktmbuf_alloc(struct rte_mempool *pool);
void riptide_pktmbuf_free(struct rte_mbuf *mbuf);
void riptide_pktmbuf_free_bulk(struct rte_mbuf **mbufs, unsigned int mbufs_count);
void *riptide_pktmbuf_data(struct rte_mbuf *mbuf);
uint16_t riptide_pktmbuf_data_len(const struct rte_mbuf *mbuf);
uint32_t riptide_pktmbuf_pkt_len(const struct rte_mbuf *mbuf);
uint16_t riptide_pktmbuf_segs_count(const struct rte_mbuf *mbuf);
char *riptide_pktmbuf_append(struct rte_mbuf *mbuf, uint16_t len);
char *riptide_pktmbuf_prepend(struct rte_mbuf *mbuf, uint16_t len);
uint16_t riptide_pktmbuf_tailroom(const struct rte_mbuf *mbuf);

unsigned int riptide_lcore_id(void);
int riptide_errno(void);
/* RSS hash functions riptide asks for (IPv4/IPv6 and TCP); RTE_BIT64 macros are not bindgen-able. */
uint64_t riptide_rss_hf_ip_tcp(void);

#endif
