/* Real symbols for DPDK's static inline fast-path functions; see shim.h for why. */
#include "shim.h"

uint16_t riptide_rx_burst(uint16_t port_id, uint16_t queue_id, struct rte_mbuf **mbufs,
                          uint16_t mbufs_count) {
    return rte_eth_rx_burst(port_id, queue_id, mbufs, mbufs_count);
}

uint16_t riptide_tx_burst(uint16_t port_id, uint16_t queue_id, struct rte_mbuf **mbufs,
                          uint16_t mbufs_count) {
    return rte_eth_tx_burst(port_id, queue_id, mbufs, mbufs_count);
}

struct rte_mbuf *riptide_pktmbuf_alloc(struct rte_mempool *pool) {
    return rte_pktmbuf_alloc(pool);
}

void riptide_pktmbuf_free(struct rte_mbuf *mbuf) { rte_pktmbuf_free(mbuf); }

void riptide_pktmbuf_free_bulk(struct rte_mbuf **mbufs, unsigned int mbufs_count) {
    rte_pktmbuf_free_bulk(mbufs, mbufs_count);
}

void *riptide_pktmbuf_data(struct rte_mbuf *mbuf) { return rte_pktmbuf_mtod(mbuf, void *); }

uint16_t riptide_pktmbuf_data_len(const struct rte_mbuf *mbuf) { return rte_pktmbuf_data_len(mbuf); }

uint32_t riptide_pktmbuf_pkt_len(const struct rte_mbuf *mbuf) { return rte_pktmbuf_pkt_len(mbuf); }

uint16_t riptide_pktmbuf_segs_count(const struct rte_mbuf *mbuf) { return mbuf->nb_segs; }

char *riptide_pktmbuf_append(struct rte_mbuf *mbuf, uint16_t len) {
    return rte_pktmbuf_append(mbuf, len);
}

char *riptide_pktmbuf_prepend(struct rte_mbuf *mbuf, uint16_t len) {
    return rte_pktmbuf_prepend(mbuf, len);
}

uint16_t riptide_pktmbuf_tailroom(const struct rte_mbuf *mbuf) { return rte_pktmbuf_tailroom(mbuf); }

unsigned int riptide_lcore_id(void) { return rte_lcore_id(); }

int riptide_errno(void) { return rte_errno; }

uint64_t riptide_rss_hf_ip_tcp(void) { return RTE_ETH_RSS_IP | RTE_ETH_RSS_TCP; }
