/*
 * Unlinked mode of daos-sys: every function of include-min/daos.h, defined
 * against that same header (so the compiler checks each signature), doing
 * nothing and returning -DER_NOSYS. Linked into builds that found no DAOS;
 * proxystore-daos never reaches these for a real pool (it reports
 * Error::Unsupported naming DAOS_DIR first), they only keep the link whole.
 */
#include <stddef.h>
#include "daos.h"

#define NOSYS (-DER_NOSYS)

const char *d_errstr(int errnum) { (void)errnum; return "DER_NOSYS (libdaos not linked)"; }
int daos_oclass_name2id(const char *name) { (void)name; return 0; }
int daos_pool_connect2(const char *pool, const char *sys, unsigned int flags, daos_handle_t *poh,
		       daos_pool_info_t *info, daos_event_t *ev)
{ (void)pool; (void)sys; (void)flags; (void)poh; (void)info; (void)ev; return NOSYS; }
int daos_pool_disconnect(daos_handle_t poh, daos_event_t *ev) { (void)poh; (void)ev; return NOSYS; }
int daos_cont_open2(daos_handle_t poh, const char *cont, unsigned int flags, daos_handle_t *coh,
		    daos_cont_info_t *info, daos_event_t *ev)
{ (void)poh; (void)cont; (void)flags; (void)coh; (void)info; (void)ev; return NOSYS; }
int daos_cont_close(daos_handle_t coh, daos_event_t *ev) { (void)coh; (void)ev; return NOSYS; }
int daos_obj_generate_oid2(daos_handle_t coh, daos_obj_id_t *oid, enum daos_otype_t type,
			   daos_oclass_id_t cid, daos_oclass_hints_t hints, uint32_t args)
{ (void)coh; (void)oid; (void)type; (void)cid; (void)hints; (void)args; return NOSYS; }
int daos_eq_create(daos_handle_t *eqh) { (void)eqh; return NOSYS; }
int daos_eq_destroy(daos_handle_t eqh, int flags) { (void)eqh; (void)flags; return NOSYS; }
int daos_eq_poll(daos_handle_t eqh, int wait_running, int64_t timeout, unsigned int nevents,
		 daos_event_t **events)
{ (void)eqh; (void)wait_running; (void)timeout; (void)nevents; (void)events; return NOSYS; }
int daos_event_init(daos_event_t *ev, daos_handle_t eqh, daos_event_t *parent)
{ (void)ev; (void)eqh; (void)parent; return NOSYS; }
int daos_event_fini(daos_event_t *ev) { (void)ev; return NOSYS; }
int daos_event_abort(daos_event_t *ev) { (void)ev; return NOSYS; }
int daos_kv_open(daos_handle_t coh, daos_obj_id_t oid, unsigned int mode, daos_handle_t *oh,
		 daos_event_t *ev)
{ (void)coh; (void)oid; (void)mode; (void)oh; (void)ev; return NOSYS; }
int daos_kv_close(daos_handle_t oh, daos_event_t *ev) { (void)oh; (void)ev; return NOSYS; }
int daos_kv_put(daos_handle_t oh, daos_handle_t th, uint64_t flags, const char *key,
		daos_size_t size, const void *buf, daos_event_t *ev)
{ (void)oh; (void)th; (void)flags; (void)key; (void)size; (void)buf; (void)ev; return NOSYS; }
int daos_kv_get(daos_handle_t oh, daos_handle_t th, uint64_t flags, const char *key,
		daos_size_t *size, void *buf, daos_event_t *ev)
{ (void)oh; (void)th; (void)flags; (void)key; (void)size; (void)buf; (void)ev; return NOSYS; }
int daos_kv_remove(daos_handle_t oh, daos_handle_t th, uint64_t flags, const char *key,
		   daos_event_t *ev)
{ (void)oh; (void)th; (void)flags; (void)key; (void)ev; return NOSYS; }
int daos_init(void) { return NOSYS; }
int daos_fini(void) { return NOSYS; }
