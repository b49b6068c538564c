/* Non-inline wrappers for DPDK's static inline functions (see shim.c). */
#ifndef FULCRUM_DPDK_SHIM_H
#define FULCRUM_DPDK_SHIM_H

#include <stdint.h>

struct rte_mbuf;
struct rte_mempool;
struct rte_ring;

uint16_t fulcrum_rte_eth_rx_burst(uint16_t port_id, uint16_t queue_id,
				  struct rte_mbuf **rx_pkts, uint16_t nb_pkts);
uint16_t fulcrum_rte_eth_tx_burst(uint16_t port_id, uint16_t queue_id,
				  struct rte_mbuf **tx_pkts, uint16_t nb_pkts);

struct rte_mbuf *fulcrum_rte_pktmbuf_alloc(struct rte_mempool *mp);
int fulcrum_rte_pktmbuf_alloc_bulk(struct rte_mempool *mp,
				   struct rte_mbuf **mbufs, unsigned int count);
void fulcrum_rte_pktmbuf_free(struct rte_mbuf *m);
void fulcrum_rte_pktmbuf_free_bulk(struct rte_mbuf **mbufs, unsigned int count);

char *fulcrum_rte_pktmbuf_prepend(struct rte_mbuf *m, uint16_t len);
char *fulcrum_rte_pktmbuf_adj(struct rte_mbuf *m, uint16_t len);
int fulcrum_rte_pktmbuf_trim(struct rte_mbuf *m, uint16_t len);
char *fulcrum_rte_pktmbuf_append(struct rte_mbuf *m, uint16_t len);
uint16_t fulcrum_rte_pktmbuf_headroom(const struct rte_mbuf *m);
uint16_t fulcrum_rte_pktmbuf_tailroom(const struct rte_mbuf *m);

/* rte_pktmbuf_mtod(m, uint8_t *): the first byte of the first segment. */
uint8_t *fulcrum_rte_pktmbuf_mtod(const struct rte_mbuf *m);
/* Bytes in the first segment (m->data_len). */
uint16_t fulcrum_rte_pktmbuf_data_len(const struct rte_mbuf *m);
/* Bytes in the whole chain (m->pkt_len). */
uint32_t fulcrum_rte_pktmbuf_pkt_len(const struct rte_mbuf *m);
/* Segments in the chain (m->nb_segs). */
uint16_t fulcrum_rte_pktmbuf_nb_segs(const struct rte_mbuf *m);
/* The port the mbuf was received on (m->port). */
uint16_t fulcrum_rte_pktmbuf_port(const struct rte_mbuf *m);
/* Writes the RSS hash to *hash and returns 1 when ol_flags has
 * RTE_MBUF_F_RX_RSS_HASH; returns 0 otherwise. */
int fulcrum_rte_pktmbuf_rss_hash(const struct rte_mbuf *m, uint32_t *hash);

uint16_t fulcrum_rte_mbuf_refcnt_read(const struct rte_mbuf *m);
uint16_t fulcrum_rte_mbuf_refcnt_update(struct rte_mbuf *m, int16_t value);

unsigned int fulcrum_rte_lcore_id(void);
int fulcrum_rte_errno(void);
void fulcrum_rte_prefetch0(const volatile void *p);
uint64_t fulcrum_rte_get_tsc_cycles(void);
uint64_t fulcrum_rte_get_tsc_hz(void);

unsigned int fulcrum_rte_ring_enqueue_burst(struct rte_ring *r, void *const *objs,
					    unsigned int n, unsigned int *free_space);
unsigned int fulcrum_rte_ring_dequeue_burst(struct rte_ring *r, void **objs,
					    unsigned int n, unsigned int *available);

/* RTE_ETH_RSS_IP | RTE_ETH_RSS_TCP | RTE_ETH_RSS_UDP (function-like macros
 * bindgen cannot evaluate). */
uint64_t fulcrum_rte_eth_rss_ip_tcp_udp(void);
/* The default mbuf data room, RTE_MBUF_DEFAULT_BUF_SIZE. */
uint16_t fulcrum_rte_mbuf_default_buf_size(void);

#endif
