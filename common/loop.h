/* loop.h -- glue shared by the two processes around their one libuv loop. */
#ifndef CG_LOOP_H
#define CG_LOOP_H

#include <uv.h>

typedef void loop_signal_fn(int signum, void *priv);

/* Watch SIGINT, SIGTERM and SIGHUP on loop and call cb from the loop (never from a signal
 * handler). SIGPIPE is ignored. -1 on failure. */
int loop_signals_start(uv_loop_t *loop, loop_signal_fn *cb, void *priv);
/* Stop watching (closes the handles; run the loop to let them close). From then on SIGINT,
 * SIGTERM and SIGHUP are ignored, so a repeated signal cannot cut a clean shutdown short. */
void loop_signals_stop(void);

/* Close every handle still open on loop, run it until they are closed, and close it.
 * Returns uv_loop_close()'s result: 0 means a clean shutdown. */
int loop_close_all(uv_loop_t *loop);

#endif
