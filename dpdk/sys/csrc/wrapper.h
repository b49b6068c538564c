/* Headers fulcrum binds. bindgen reads this file; build.rs passes the
 * `pkg-config --cflags libdpdk` flags (including `-include rte_config.h`). */
#include <rte_config.h>
#include <rte_version.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_lcore.h>
#include <rte_launch.h>
#include <rte_cycles.h>
#include <rte_prefetch.h>
#include <rte_memory.h>
#include <rte_mempool.h>
#include <rte_mbuf.h>
#include <rte_ring.h>
#include <rte_ether.h>
#include <rte_ethdev.h>
#include <rte_bus_vdev.h>
#include <rte_telemetry.h>
#if __has_include(<rte_pdump.h>)
#include <rte_pdump.h>
#endif

#include "shim.h"
