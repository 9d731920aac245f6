/* csat.c -- customer satisfaction: the survey after a close and the customer's rating.
 *
 * After every close the customer gets a `survey` event (template survey, cmid cg:survey), written
 * by the close's own call (redis/event.lua, router/close.c close_texts). It has a text, so bridged
 * channels (e-mail, social) send it like any desk message, and the web widget shows 1-5 buttons.
 * The answer is decided in Redis, atomically, by cg_message (redis/conv.lua): within
 * survey_window_s of the close, a `rating` frame, or on a bridged channel a text that is just one
 * digit 1-5, is attached to the closed conversation (HSET rating, rated_at) instead of opening a
 * new one, and its cg:in entry gets the field r. Here the router sees that entry come through cg:in
 * (job->rated): a one-digit text also gets a `rating` event in the transcript (a rating frame is
 * one already), and the customer is thanked (template rating_thanks). */
#include "router.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/log.h"
#include "../common/util.h"

int csat_on_customer(job *j) {
    const msg *m = &j->m;
    /* Only what cg_message took as the survey's answer (entry field r) is a rating: a digit the
     * customer sent while the conversation was still open is a message, even when the router
     * only gets to it after the close. */
    int rating = j->rated;
    if (!rating) return m->type == MSG_RATING; /* a rating of an open conversation: no action */
    char n[8];
    log_info("conv %s rated %d by its customer", j->conv, rating);
    snprintf(n, sizeof(n), "%d", rating);
    tmpl_var vars[] = {{"rating", n}};
    variant_spec thanks = {.type = MSG_TEXT,
                           .role = ROLE_BOT,
                           .key = TMPL_RATING_THANKS,
                           .off_when_empty = 1,
                           .vars = vars,
                           .n_vars = 1};
    size_t len = 0;
    unsigned char *ev = NULL;
    if (m->type != MSG_RATING) { /* a one-digit text: its rating event too */
        msg r;
        msg_init(&r);
        r.type = MSG_RATING;
        r.role = ROLE_SYSTEM;
        r.dir = DIR_OUT;
        r.ts_ms = j->now_ms;
        r.rating = (uint8_t)rating;
        cg_strlcpy(r.sender_id, "chatgw", sizeof(r.sender_id));
        ev = msg_encode_msgpack(&r, 0, &len);
        msg_free(&r);
    }
    evarg a;
    evarg_init(&a);
    evarg_str(&a, "conv", j->conv);
    evarg_int(&a, "now", j->now_ms);
    evarg_str(&a, "entry", j->id);
    evarg_bytes(&a, "rating_event", ev ? (const char *)ev : "", ev ? len : 0);
    free(ev);
    variant_locales(&a, j->r);
    variant_pack(&a, "rating_thanks", j, &thanks);
    evarg_call(j, "cg_customer_rating", NULL, &a);
    return 1;
}
