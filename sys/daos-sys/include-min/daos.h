/*
 * Minimal DAOS client header for proxystore-rs's daos-sys (unlinked mode).
 *
 * Transcribed from the public headers of DAOS v2.6.4 (tag v2.6.4 of
 * https://github.com/daos-stack/daos, BSD-2-Clause-Patent), holding only the
 * types, constants, error codes and functions the proxystore-daos connector
 * calls. Each block names the file it comes from. Declarations are copied as
 * DAOS spells them, so bindgen produces the same Rust items from this header
 * as from an installed DAOS; a build that finds DAOS (DAOS_DIR, pkg-config,
 * /usr, /opt/daos) parses the real headers instead, which is the check that
 * this transcription still matches.
 *
 * Versioned symbols: daos_pool.h, daos_cont.h and daos_obj.h `#define`
 * daos_pool_connect, daos_cont_open and daos_obj_generate_oid to their `2`
 * variants; bindgen never sees the macro, only the real symbol, so the
 * `2` names are what both this header and the real ones declare.
 * KV calls: the 2.x signatures (with `uint64_t flags`); DAOS 1.x had none.
 */
#ifndef PROXYSTORE_DAOS_MIN_H
#define PROXYSTORE_DAOS_MIN_H

#include <stdint.h>

/* The DAOS release this header was transcribed from (daos_version.h is
 * generated from daos_version.h.in at DAOS build time). */
#define DAOS_API_VERSION_MAJOR 2
#define DAOS_API_VERSION_MINOR 6
#define DAOS_API_VERSION_FIX 4

/* ---- daos_errno.h: enum daos_errno, GURT range (base 1000) and DAOS
 * range (base 2000). DAOS generates the enum with D_FOREACH_*_ERR; the
 * values below are that expansion's, for the codes the connector maps. */
enum daos_errno {
	DER_SUCCESS = 0,
	DER_NO_PERM = 1001,
	DER_NO_HDL = 1002,
	DER_INVAL = 1003,
	DER_EXIST = 1004,
	DER_NONEXIST = 1005,
	DER_UNREACH = 1006,
	DER_NOSPACE = 1007,
	DER_NOMEM = 1009,
	DER_NOSYS = 1010,
	DER_TIMEDOUT = 1011,
	DER_BUSY = 1012,
	DER_AGAIN = 1013,
	DER_UNINIT = 1015,
	DER_TRUNC = 1016,
	DER_CANCELED = 1018,
	DER_HG = 1020,
	DER_EXCLUDED = 1032,
	DER_IO = 2001,
	DER_KEY2BIG = 2012,
	DER_REC2BIG = 2013,
	DER_EQ_BUSY = 2015,
	DER_SHUTDOWN = 2017,
	DER_INPROGRESS = 2018,
	DER_CSUM = 2021,
	DER_DATA_LOSS = 2026,
	DER_RF = 2031,
	DER_AGENT_COMM = 2034,
	DER_NOTSUPPORTED = 2037,
	DER_NO_SERVICE = 2039,
	DER_CONT_NONEXIST = 2050,
};

/* daos_errno.h */
const char *
d_errstr(int errnum);

/* ---- daos_types.h */
typedef uint64_t	daos_size_t;

typedef struct {
	uint64_t	cookie;
} daos_handle_t;

#define DAOS_PC_RO	(1U << 0)
#define DAOS_PC_RW	(1U << 1)

typedef struct daos_event {
	int			ev_error;
	struct {
		uint64_t	space[20];
	}			ev_private;
	uint64_t		ev_debug;
} daos_event_t;

#define DAOS_EQ_WAIT            -1
#define DAOS_EQ_NOWAIT          0

typedef struct {
	uint64_t	lo;
	uint64_t	hi;
} daos_obj_id_t;

/* ---- daos_obj_class.h */
typedef uint32_t		daos_oclass_id_t;
typedef uint16_t		daos_oclass_hints_t;

int
daos_oclass_name2id(const char *name);

/* ---- daos_pool.h (daos_pool_info_t is only ever passed as NULL here) */
typedef struct daos_pool_info daos_pool_info_t;

int
daos_pool_connect2(const char *pool, const char *sys, unsigned int flags,
		   daos_handle_t *poh, daos_pool_info_t *info, daos_event_t *ev);

int
daos_pool_disconnect(daos_handle_t poh, daos_event_t *ev);

/* ---- daos_cont.h (daos_cont_info_t is only ever passed as NULL here) */
#define DAOS_COO_RO		(1U << 0)
#define DAOS_COO_RW		(1U << 1)

typedef struct daos_cont_info daos_cont_info_t;

int
daos_cont_open2(daos_handle_t poh, const char *cont, unsigned int flags, daos_handle_t *coh,
		daos_cont_info_t *info, daos_event_t *ev);

int
daos_cont_close(daos_handle_t coh, daos_event_t *ev);

/* ---- daos_obj.h */
enum daos_otype_t {
	DAOS_OT_KV_HASHED	= 8,
};

enum {
	DAOS_OO_RO             = (1 << 1),
	DAOS_OO_RW             = (1 << 2),
};

int
daos_obj_generate_oid2(daos_handle_t coh, daos_obj_id_t *oid,
		       enum daos_otype_t type, daos_oclass_id_t cid,
		       daos_oclass_hints_t hints, uint32_t args);

/* ---- daos_event.h */
int
daos_eq_create(daos_handle_t *eqh);

int
daos_eq_destroy(daos_handle_t eqh, int flags);

int
daos_eq_poll(daos_handle_t eqh, int wait_running,
	     int64_t timeout, unsigned int nevents, daos_event_t **events);

int
daos_event_init(daos_event_t *ev, daos_handle_t eqh, daos_event_t *parent);

int
daos_event_fini(daos_event_t *ev);

int
daos_event_abort(daos_event_t *ev);

/* ---- daos_kv.h */
int
daos_kv_open(daos_handle_t coh, daos_obj_id_t oid, unsigned int mode,
	     daos_handle_t *oh, daos_event_t *ev);

int
daos_kv_close(daos_handle_t oh, daos_event_t *ev);

int
daos_kv_put(daos_handle_t oh, daos_handle_t th, uint64_t flags, const char *key,
	    daos_size_t size, const void *buf, daos_event_t *ev);

int
daos_kv_get(daos_handle_t oh, daos_handle_t th, uint64_t flags, const char *key,
	    daos_size_t *size, void *buf, daos_event_t *ev);

int
daos_kv_remove(daos_handle_t oh, daos_handle_t th, uint64_t flags,
	       const char *key, daos_event_t *ev);

/* ---- daos.h */
int
daos_init(void);

int
daos_fini(void);

#endif /* PROXYSTORE_DAOS_MIN_H */
