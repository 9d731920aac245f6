/* rcfg.h -- the routing sections of the configuration file: [queue <name>], [rule <name>],
 * [priority <name>] and the queues' canned replies [canned <queue>] (docs/configuration.md), read
 * into a cls_set and checked.
 *
 * No Redis, no router state: the caller passes its cfg_opt table (so the file's ordinary keys are
 * loaded in the same pass) and gets a finished cls_set, or an error naming file:line and key. */
#ifndef CG_RCFG_H
#define CG_RCFG_H

#include "../common/config.h"
#include "../common/err.h"
#include "classify.h"

/* Load `path` (NULL or "" = none) with cfg_load(opts, ...) and build *out from its routing
 * sections. Keys of [router] that opts does not know are errors; other sections are someone
 * else's and ignored. The file is read twice: the first pass stores every key, the second checks
 * the references between sections (a rule's queue, a queue's overflow, a [canned] section's
 * queue) so that those errors too
 * name the line. default_queue is the buffer opts fills for `default_queue` (read after the first
 * pass); it need not have a [queue] section (it is then a push queue with priority 5).
 * 0, or -1 with err ("file:line: key 'k': problem") and *out untouched. */
int rcfg_load(const cfg_opt *opts, const char *path, const char *default_queue, cls_set *out,
              cg_err *err);
/* A `rings` item "<seconds>:<queue>" of a [queue]: 0 with *secs (1 - 604800) and the queue's name
 * in q (size n), or -1 when it is not one. */
int rcfg_ring_item(const char *item, long long *secs, char *q, size_t n);

#endif
