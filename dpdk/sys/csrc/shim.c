/* Non-inline wrappers for DPDK's static inline functions, so Rust can call
 * them. Each wrapper does exactly what the inline function does. */
#include <rte_config.h>
#include <rte_errno.h>
#include <rte_lcore.h>
#include <rte_cycles.h>
#include <rte_prefetch.h>
#include <rte_mbuf.h>
#include <rte_ring.h>
#include <rte_ethdev.h>

#include "shim.h"

uint16_t fulcrum_rte_eth_rx_burst(uint16_t port_id, uint16_t queue_id,
				  struct rte_mbuf **rx_pkts, uint16_t nb_pkts)
{
	return rte_eth_rx_burst(port_id, queue_id, rx_pkts, nb_pkts);
}

uint16_t fulcrum_rte_eth_tx_burst(uint16_t port_id, uint16_t queue_id,
				  struct rte_mbuf **tx_pkts, uint16_t nb_pkts)
{
	return rte_eth_tx_burst(port_id, queue_id, tx_pkts, nb_pkts);
}

struct rte_mbuf *fulcrum_rte_pktmbuf_alloc(struct rte_mempool *mp)
{
	return rte_pktmbuf_alloc(mp);
}

int fulcrum_rte_pktmbuf_alloc_bulk(struct rte_mempool *mp,
				   struct rte_mbuf **mbufs, unsigned int count)
{
	return rte_pktmbuf_alloc_bulk(mp, mbufs, count);
}

void fulcrum_rte_pktmbuf_free(struct rte_mbuf *m)
{
	rte_pktmbuf_free(m);
}

void fulcrum_rte_pktmbuf_free_bulk(struct rte_mbuf **mbufs, unsigned int count)
{
	rte_pktmbuf_free_bulk(mbufs, count);
}

char *fulcrum_rte_pktmbuf_prepend(struct rte_mbuf *m, uint16_t len)
{
	return rte_pktmbuf_prepend(m, len);
}

char *fulcrum_rte_pktmbuf_adj(struct rte_mbuf *m, uint16_t len)
{
	return rte_pktmbuf_adj(m, len);
}

int fulcrum_rte_pktmbuf_trim(struct rte_mbuf *m, uint16_t len)
{
	return rte_pktmbuf_trim(m, len);
}

char *fulcrum_rte_pktmbuf_append(struct rte_mbuf *m, uint16_t len)
{
	return rte_pktmbuf_append(m, len);
}

uint16_t fulcrum_rte_pktmbuf_headroom(const struct rte_mbuf *m)
{
	return rte_pktmbuf_headroom(m);
}

uint16_t fulcrum_rte_pktmbuf_tailroom(const struct rte_mbuf *m)
{
	return rte_pktmbuf_tailroom(m);
}

uint8_t *fulcrum_rte_pktmbuf_mtod(const struct rte_mbuf *m)
{
	return rte_pktmbuf_mtod(m, uint8_t *);
}

uint16_t fulcrum_rte_pktmbuf_data_len(const struct rte_mbuf *m)
{
	return m->data_len;
}

uint32_t fulcrum_rte_pktmbuf_pkt_len(const struct rte_mbuf *m)
{
	return m->pkt_len;
}

uint16_t fulcrum_rte_pktmbuf_nb_segs(const struct rte_mbuf *m)
{
	return m->nb_segs;
}

uint16_t fulcrum_rte_pktmbuf_port(const struct rte_mbuf *m)
{
	return m->port;
}

int fulcrum_rte_pktmbuf_rss_hash(const struct rte_mbuf *m, uint32_t *hash)
{
	if (m->ol_flags & RTE_MBUF_F_RX_RSS_HASH) {
		*hash = m->hash.rss;
		return 1;
	}
	return 0;
}

uint16_t fulcrum_rte_mbuf_refcnt_read(const struct rte_mbuf *m)
{
	return rte_mbuf_refcnt_read(m);
}

uint16_t fulcrum_rte_mbuf_refcnt_update(struct rte_mbuf *m, int16_t value)
{
	return rte_mbuf_refcnt_update(m, value);
}

unsigned int fulcrum_rte_lcore_id(void)
{
	return rte_lcore_id();
}

int fulcrum_rte_errno(void)
{
	return rte_errno;
}

void fulcrum_rte_prefetch0(const volatile void *p)
{
	rte_prefetch0(p);
}

uint64_t fulcrum_rte_get_tsc_cycles(void)
{
	return rte_get_tsc_cycles();
}

uint64_t fulcrum_rte_get_tsc_hz(void)
{
	return rte_get_tsc_hz();
}

unsigned int fulcrum_rte_ring_enqueue_burst(struct rte_ring *r, void *const *objs,
					    unsigned int n, unsigned int *free_space)
{
	return rte_ring_enqueue_burst(r, objs, n, free_space);
}

unsigned int fulcrum_rte_ring_dequeue_burst(struct rte_ring *r, void **objs,
					    unsigned int n, unsigned int *available)
{
	return rte_ring_dequeue_burst(r, objs, n, available);
}

uint64_t fulcrum_rte_eth_rss_ip_tcp_udp(void)
{
	return RTE_ETH_RSS_IP | RTE_ETH_RSS_TCP | RTE_ETH_RSS_UDP;
}

uint16_t fulcrum_rte_mbuf_default_buf_size(void)
{
	return RTE_MBUF_DEFAULT_BUF_SIZE;
}
