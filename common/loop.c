/* loop.c -- see loop.h. */
#include "loop.h"

#include <signal.h>
#include <stdlib.h>

#include "log.h"

static const int watched[] = {SIGINT, SIGTERM, SIGHUP};
#define N_WATCHED (sizeof(watched) / sizeof(watched[0]))

/* The signal handles (one set per process); freed in their close callback. */
typedef struct loop_sigs {
    uv_signal_t h[N_WATCHED];
    loop_signal_fn *cb;
    void *priv;
    int open;
} loop_sigs;

static loop_sigs *sigs;

static void on_signal(uv_signal_t *h, int signum) {
    loop_sigs *s = h->data;
    if (s->cb) s->cb(signum, s->priv);
}

static void on_sig_closed(uv_handle_t *h) {
    loop_sigs *s = h->data;
    if (--s->open == 0) free(s);
}

int loop_signals_start(uv_loop_t *loop, loop_signal_fn *cb, void *priv) {
    if (sigs) return -1;
    signal(SIGPIPE, SIG_IGN);
    loop_sigs *s = calloc(1, sizeof(*s));
    if (!s) return -1;
    s->cb = cb;
    s->priv = priv;
    sigs = s;
    for (size_t i = 0; i < N_WATCHED; i++) {
        if (uv_signal_init(loop, &s->h[i]) != 0) break;
        s->h[i].data = s;
        s->open++;
        if (uv_signal_start(&s->h[i], on_signal, watched[i]) != 0) break;
        if (i + 1 == N_WATCHED) return 0;
    }
    log_error("cannot watch signals");
    loop_signals_stop();
    return -1;
}

void loop_signals_stop(void) {
    loop_sigs *s = sigs;
    if (!s) return;
    sigs = NULL;
    s->cb = NULL;
    int n = s->open;
    if (n == 0) {
        free(s);
        return;
    }
    for (int i = 0; i < n; i++)
        uv_close((uv_handle_t *)&s->h[i], on_sig_closed);
    /* Closing the watchers restored the default actions: a second Ctrl-C or a supervisor's
     * SIGTERM would now kill the process in the middle of its clean shutdown. */
    signal(SIGINT, SIG_IGN);
    signal(SIGTERM, SIG_IGN);
    signal(SIGHUP, SIG_IGN);
}

static void close_one(uv_handle_t *h, void *arg) {
    (void)arg;
    if (!uv_is_closing(h)) uv_close(h, NULL);
}

/* Handles still open here belong to owners that did not close them; closing them with no close
 * callback is the best that can be done (their memory stays the owner's). Handles already closing
 * (closed by their owners) just finish. A second pass catches handles opened by close callbacks.
 * Runs the loop in UV_RUN_DEFAULT mode: it returns once nothing is active or closing. */
int loop_close_all(uv_loop_t *loop) {
    if (sigs) loop_signals_stop();
    for (int pass = 0; pass < 2; pass++) {
        uv_walk(loop, close_one, NULL);
        uv_run(loop, UV_RUN_DEFAULT);
    }
    return uv_loop_close(loop);
}
