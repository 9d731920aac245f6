/* ws.c -- the libwebsockets protocol callback: one switch over the callback reasons.
 *
 * Endpoints: /ws/customer, /ws/agent and /ws/bridge (bridge.c); subprotocols chatgw.json.v1
 * (default) and chatgw.msgpack.v1. HTTP requests on callback mounts go to http.c; the body and
 * writeable callbacks of /channels/... requests go to webhook.c. A frame is reassembled up to
 * max_frame bytes (more: close 1009) and handed to client.c whole. Writes happen only in
 * SERVER_WRITEABLE, one lws_write per callback, from the session's send queue.
 *
 * Per-source limits (limit.c): every connection, HTTP or WebSocket, is counted against its
 * client address from its first request to WSI_DESTROY; over max_conns_per_ip the request (or
 * the upgrade) is answered 429 "too_many_connections: ...". A message must be whole within
 * frame_timeout_ms of its first bytes, however it is sent (continuation fragments, or one frame
 * trickled): else the connection is closed 1008 "message not finished in time", so a client
 * cannot hold a reassembly buffer forever.
 *
 * The hello and frame deadlines live in two queues of ours, not in lws' timers: lws 4.1 keeps
 * every timeout of every connection in one sorted list, and inserting a deadline later than all
 * the others walks the whole list, so with thousands of connections each new one cost a walk
 * over all of them (perf: ~76 % of the gateway's time in lws_dll2_add_sorted during a 10,000
 * connection slow-loris). Every deadline of a queue has the same duration, so a queue is in
 * order by construction: O(1) to add or remove, one uv timer for the earliest.
 *
 * Keepalive (ws_keepalive_policy): lws pings a connection ws_ping_interval seconds after its
 * last pong (or its handshake) and drops it when 3 x ws_ping_interval pass without one: a peer
 * that missed the pongs of two intervals is gone (a proxy cut it, the machine went away), and
 * idle chats keep traffic flowing through proxies that cut silent connections. */
#include "gw.h"
#include "webhook.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "../common/log.h"
#include "../common/util.h"

/* The close opcode lws uses internally (lws-write.h: "LWS_WRITE_CLOSE is handled by
 * lws_close_reason()"): a WRITEABLE callback that returns -1 makes lws 4.1 mark the socket
 * unusable, so its own close frame is never sent; we send it ourselves before returning -1. */
#define WS_WRITE_CLOSE ((enum lws_write_protocol)4)
#define WS_HTTP_TOO_MANY 429           /* RFC 6585 Too Many Requests (no lws name for it) */
#define WS_NO_HELLO "no hello in time" /* reason of the close after hello_timeout_ms */

/* Count the connection against its client address: 0, or -1 after answering 429. */
static int ws_limit(struct lws *wsi) {
    const char *why = NULL;
    if (lim_conn_open(wsi, &why) == 0) return 0;
    log_info("ws: refused a request: %s", why);
    lws_return_http_status(wsi, WS_HTTP_TOO_MANY, why);
    return -1;
}

/* FILTER_PROTOCOL_CONNECTION: the path, Host and Origin were checked at HTTP_CONFIRM_UPGRADE
 * (upgrade.c); checked again here for an upgrade that did not pass there, then the connection
 * is counted against its client address. */
static int ws_filter(struct lws *wsi) {
    if (upg_check_target(wsi) < 0) return -1;
    return ws_limit(wsi);
}

/* ---- deadlines: two FIFO queues (hello_timeout_ms, frame_timeout_ms), one timer ---- */
typedef struct ws_dlq {
    ws_deadline head; /* sentinel of a circular list; empty: next == &head */
    size_t off;       /* offsetof(ws_pss, the member this queue links) */
} ws_dlq;
static ws_dlq dl_hello = {{&dl_hello.head, &dl_hello.head, 0}, offsetof(ws_pss, hello_dl)};
static ws_dlq dl_frame = {{&dl_frame.head, &dl_frame.head, 0}, offsetof(ws_pss, frame_dl)};
static uv_timer_t dl_timer;
static int dl_timer_ready;

static ws_pss *ws_dl_pss(ws_dlq *q, ws_deadline *d) {
    return (ws_pss *)(void *)((char *)d - q->off);
}

static void ws_dl_fire(uv_timer_t *t);

/* Arm the timer for the earliest deadline of both queues (stop it when both are empty). */
static void ws_dl_arm(void) {
    uint64_t at = UINT64_MAX;
    if (dl_hello.head.next != &dl_hello.head) at = dl_hello.head.next->at_ms;
    if (dl_frame.head.next != &dl_frame.head && dl_frame.head.next->at_ms < at)
        at = dl_frame.head.next->at_ms;
    if (!dl_timer_ready) {
        if (uv_timer_init(G.loop, &dl_timer) != 0) return;
        uv_unref((uv_handle_t *)&dl_timer); /* never keeps the loop running */
        dl_timer_ready = 1;
    }
    if (uv_is_closing((uv_handle_t *)&dl_timer)) return;
    if (at == UINT64_MAX) {
        uv_timer_stop(&dl_timer);
        return;
    }
    uint64_t now = uv_now(G.loop);
    uv_timer_start(&dl_timer, ws_dl_fire, at > now ? at - now : 0, 0);
}

/* Remove d from its queue (no-op when not queued). */
static void ws_dl_remove(ws_deadline *d) {
    if (!d->next) return;
    d->prev->next = d->next;
    d->next->prev = d->prev;
    d->next = d->prev = NULL;
}

/* Queue d at the tail of q, due in ms; the timer is armed when q was empty. */
static void ws_dl_add(ws_dlq *q, ws_deadline *d, long long ms) {
    ws_dl_remove(d);
    int was_empty = q->head.next == &q->head;
    d->at_ms = uv_now(G.loop) + (uint64_t)ms;
    d->prev = q->head.prev;
    d->next = &q->head;
    q->head.prev->next = d;
    q->head.prev = d;
    if (was_empty) ws_dl_arm();
}

static int ws_frame_timeout(struct lws *wsi, ws_pss *pss);

/* The timer: close the connections that did not say hello in time (unless the session is
 * authenticated by now) and time out the messages not whole in time; then re-arm. */
static void ws_dl_fire(uv_timer_t *t) {
    uint64_t now = uv_now(G.loop);
    while (dl_hello.head.next != &dl_hello.head && dl_hello.head.next->at_ms <= now) {
        ws_deadline *d = dl_hello.head.next;
        ws_pss *pss = ws_dl_pss(&dl_hello, d);
        ws_dl_remove(d);
        if (pss->s && pss->s->authed) continue;
        log_debug("ws: a connection did not say hello within hello_timeout_ms: closing 1008");
        if (pss->s) {
            sess_close(pss->s, LWS_CLOSE_STATUS_POLICY_VIOLATION, WS_NO_HELLO);
        } else {
            pss->no_hello = 1; /* closed from its WRITEABLE callback (no session to queue on) */
            lws_callback_on_writable(pss->wsi);
        }
    }
    while (dl_frame.head.next != &dl_frame.head && dl_frame.head.next->at_ms <= now) {
        ws_deadline *d = dl_frame.head.next;
        ws_pss *pss = ws_dl_pss(&dl_frame, d);
        ws_dl_remove(d);
        if (ws_frame_timeout(pss->wsi, pss) < 0) { /* out of memory: closed all the same */
            pss->no_hello = 1;
            lws_callback_on_writable(pss->wsi);
        }
    }
    ws_dl_arm();
}

static void ws_flush_drop(void);

void ws_shutdown(void) {
    if (dl_timer_ready) uv_timer_stop(&dl_timer);
    ws_flush_drop();
}

/* ESTABLISHED: remember the role and codec; the session comes with the first whole message
 * (ws_sess), so a connection that never sends one costs lws' state and the ws_pss only. A
 * connection that does not say hello in time is closed (hello_timeout_ms). */
static int ws_established(struct lws *wsi, ws_pss *pss) {
    sess_role role;
    if (!pss || upg_role(wsi, &role) < 0) return -1;
    const struct lws_protocols *p = lws_get_protocol(wsi);
    pss->role = (unsigned char)role;
    pss->codec = (p && p->name && strstr(p->name, "msgpack")) ? CODEC_MSGPACK : CODEC_JSON;
    pss->waiting = 1;
    pss->wsi = wsi;
    sess_conn_waiting(1);
    ws_dl_add(&dl_hello, &pss->hello_dl, G.cfg.hello_timeout_ms);
    return 0;
}

/* The session of a connection that has none yet (its first whole message came, or a message
 * ran out of time): NULL out of memory. */
static sess *ws_sess(struct lws *wsi, ws_pss *pss) {
    if (pss->s) return pss->s;
    sess *s =
        sess_new(wsi, (sess_role)pss->role, (codec)pss->codec, (unsigned)G.cfg.send_queue_max);
    if (!s) return NULL;
    pss->s = s;
    pss->waiting = 0;
    if (G.n_ws_waiting) G.n_ws_waiting--; /* now counted among the sessions */
    cg_strlcpy(s->addr, lim_conn_addr(wsi), sizeof(s->addr));
    log_debug("ws: %s connected as %s (%s)", s->sock,
              s->role == SESS_AGENT    ? "agent"
              : s->role == SESS_BRIDGE ? "bridge"
                                       : "customer",
              s->codec == CODEC_JSON ? "json" : "msgpack");
    return s;
}

/* The connection is gone (CLOSED, or WSI_DESTROY for one closed before): release its session
 * and its reassembly buffer. Idempotent. */
static void ws_gone(ws_pss *pss) {
    if (!pss) return;
    ws_dl_remove(&pss->hello_dl);
    ws_dl_remove(&pss->frame_dl);
    if (pss->s) {
        client_closed(pss->s);
        sess_detach(pss->s);
        pss->s = NULL;
    } else if (pss->waiting) {
        pss->waiting = 0;
        sess_conn_waiting(0);
    }
    free(pss->rx);
    pss->rx = NULL;
    pss->rx_len = pss->rx_cap = 0;
}

/* The message being received is not whole frame_timeout_ms after its first bytes (the frame
 * deadline queue): close 1008 after what is queued. -1 out of memory. */
static int ws_frame_timeout(struct lws *wsi, ws_pss *pss) {
    if (!pss || !pss->rx_pending) return 0;
    pss->rx_pending = 0;
    sess *s = ws_sess(wsi, pss); /* the close goes out through a session's queue */
    if (!s) return -1;
    if (s->closing) return 0;
    LIM.frame_timeouts++;
    log_info("ws: %s message not whole after frame_timeout_ms (%lld ms): closing 1008", s->sock,
             G.cfg.frame_timeout_ms);
    sess_close(s, LWS_CLOSE_STATUS_POLICY_VIOLATION, "message not finished in time");
    return 0;
}

/* Room for len more bytes of the message being reassembled: the buffer starts at WS_RX_FIRST
 * bytes and doubles, up to max_frame. 0, or -1 out of memory. */
#define WS_RX_FIRST 256
static int ws_rx_room(ws_pss *pss, size_t len) {
    if (pss->rx_len + len <= pss->rx_cap) return 0;
    size_t cap = pss->rx_cap ? pss->rx_cap : WS_RX_FIRST;
    while (cap < pss->rx_len + len)
        cap *= 2;
    if (cap > (size_t)G.cfg.max_frame) cap = (size_t)G.cfg.max_frame;
    unsigned char *n = realloc(pss->rx, cap);
    if (!n) return -1;
    pss->rx = n;
    pss->rx_cap = cap;
    return 0;
}

/* RECEIVE: append the fragment; on the last fragment hand the whole frame to client.c (the
 * connection's first whole message creates its session). The first bytes of a message that is
 * not whole with them queue its frame_timeout_ms deadline; the last one removes it. */
static int ws_receive(struct lws *wsi, ws_pss *pss, const void *in, size_t len) {
    if (!pss || (pss->s && pss->s->closing)) return 0;
    int whole = lws_is_final_fragment(wsi) && !lws_remaining_packet_payload(wsi);
    if (!pss->rx_pending && !whole) {
        pss->rx_pending = 1;
        ws_dl_add(&dl_frame, &pss->frame_dl, G.cfg.frame_timeout_ms);
    }
    if (pss->rx_len + len > (size_t)G.cfg.max_frame) {
        log_info("ws: %s frame over max_frame (%lld bytes): closing 1009",
                 pss->s ? pss->s->sock : "(no hello yet)", G.cfg.max_frame);
        lws_close_reason(wsi, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE,
                         (unsigned char *)"frame too large", 15);
        return -1;
    }
    if (ws_rx_room(pss, len) < 0) return -1;
    if (len) memcpy(pss->rx + pss->rx_len, in, len);
    pss->rx_len += len;
    if (!whole) return 0;
    if (pss->rx_pending) {
        pss->rx_pending = 0;
        ws_dl_remove(&pss->frame_dl);
    }
    sess *s = ws_sess(wsi, pss);
    if (!s) return -1;
    size_t n = pss->rx_len;
    pss->rx_len = 0;
    client_frame(s, pss->rx ? pss->rx : (const unsigned char *)"", n, lws_frame_is_binary(wsi));
    return 0;
}

/* After a write: ask for the next one while frames or a close are left, and let the watches and
 * the bridge reader fill the queue again once it is half empty. */
static int ws_written(struct lws *wsi, sess *s) {
    if (s->q_len || (s->closing && s->close_code)) lws_callback_on_writable(wsi);
    if (s->q_len < s->q_cap / 2) {
        sub_drained(s);
        bridge_drained(s);
    }
    return 0;
}

/* The RFC 6455 (5.2) header of an unmasked, final server frame of len payload bytes (opcode
 * text or binary) into out (room for WS_HDR_MAX): its length. lws writes one frame per send();
 * to send several queued frames in one write they go into one buffer, framed here, and lws
 * sends that buffer as it is (LWS_WRITE_RAW). No extension is negotiated on these connections
 * (no permessage-deflate), so a frame is just this header and the payload. */
#define WS_HDR_MAX 4       /* a payload under 64 KiB: 2 bytes, or 4 with a 16-bit length */
#define WS_BATCH_MAX 65536 /* bytes of frames in one write; a bigger frame goes alone */
static size_t ws_frame_header(unsigned char *out, size_t len, int binary) {
    out[0] = (unsigned char)(0x80 | (binary ? 0x2 : 0x1)); /* FIN + opcode */
    if (len < 126) {
        out[1] = (unsigned char)len;
        return 2;
    }
    out[1] = 126; /* len < WS_BATCH_MAX: the 16-bit length always fits */
    out[2] = (unsigned char)(len >> 8);
    out[3] = (unsigned char)len;
    return 4;
}

/* Several frames are queued: as many as fit in WS_BATCH_MAX leave in one write. 0 written, -1
 * the connection failed. */
static int ws_write_batch(struct lws *wsi, sess *s) {
    /* one buffer for every batch: the process writes from its one loop thread, and lws_write
     * sends it at once or copies what the socket did not take (lws_partial_buffered) */
    static unsigned char buf[LWS_PRE + WS_BATCH_MAX];
    size_t used = 0;
    int binary = s->codec != CODEC_JSON;
    while (s->q_len) {
        frame *f = s->q[s->q_head];
        if (used + WS_HDR_MAX + f->len > WS_BATCH_MAX) break;
        f = sess_pop(s);
        used += ws_frame_header(buf + LWS_PRE + used, f->len, binary);
        memcpy(buf + LWS_PRE + used, f->buf + LWS_PRE, f->len);
        used += f->len;
        frame_unref(f);
    }
    int n = used ? lws_write(wsi, buf + LWS_PRE, used, LWS_WRITE_RAW) : 0;
    if (n < 0) return -1;
    if (used) G.ws_writes++;
    return 0;
}

/* Write a close frame (code + reason) before the WRITEABLE callback returns -1: lws 4.1 drops
 * its own close frame when a WRITEABLE callback returns -1 after lws_close_reason(). */
static void ws_write_close(struct lws *wsi, int code, const char *reason) {
    unsigned char cf[LWS_PRE + 2 + 64];
    size_t rn = strlen(reason);
    if (rn > 64) rn = 64;
    cf[LWS_PRE] = (unsigned char)(code >> 8);
    cf[LWS_PRE + 1] = (unsigned char)(code & 0xff);
    memcpy(cf + LWS_PRE + 2, reason, rn);
    lws_write(wsi, cf + LWS_PRE, 2 + rn, WS_WRITE_CLOSE);
}

/* Write queued frames in one lws_write: several in one buffer, or the first alone. 0 written
 * (or nothing queued), -1 the connection failed. */
static int ws_write_queued(struct lws *wsi, sess *s) {
    if (s->q_len > 1 && s->q[s->q_head]->len + WS_HDR_MAX <= WS_BATCH_MAX)
        return ws_write_batch(wsi, s);
    frame *f = sess_pop(s);
    if (!f) return 0;
    enum lws_write_protocol wp = s->codec == CODEC_JSON ? LWS_WRITE_TEXT : LWS_WRITE_BINARY;
    int n = lws_write(wsi, f->buf + LWS_PRE, f->len, wp);
    frame_unref(f);
    if (n < 0) return -1;
    G.ws_writes++;
    return 0;
}

/* SERVER_WRITEABLE: write the queued frames (several in one write), or perform a requested
 * close. */
static int ws_writeable(struct lws *wsi, sess *s) {
    if (!s->q_len) {
        if (s->closing && s->close_code) {
            ws_write_close(wsi, s->close_code, s->close_reason);
            return -1;
        }
        return 0;
    }
    if (ws_write_queued(wsi, s) < 0) return -1;
    return ws_written(wsi, s);
}

/* ---- the end-of-turn flush ----
 * Frames queued for a connection during one loop turn are written at its end, before the loop
 * blocks (a prepare handle), straight from here: asking lws for a WRITEABLE callback instead
 * costs a POLLOUT round trip, and with lws' libuv glue four epoll_ctl calls (uv_poll_start
 * removes the fd from epoll and adds it again, once to add POLLOUT and once to drop it). A
 * direct lws_write is safe for these connections (HTTP/1 WebSocket, no extension): lws keeps
 * what the socket does not take (lws_partial_buffered) and writes it from its own WRITEABLE
 * callback, and only then do we go that way too. A close, a connection that lws is still
 * draining and a failed write go through the WRITEABLE callback as before. */
#define WS_FLUSH_ROUNDS 8 /* batches one connection writes in one flush */
static sess **flush_list;
static size_t flush_n, flush_cap;
static uv_prepare_t flush_prep;
static int flush_ready;

/* Write s's queued frames now (ws_flush). */
static void ws_flush_one(sess *s) {
    s->flush_queued = 0;
    struct lws *wsi = s->wsi;
    if (!wsi) return;
    for (int i = 0; i < WS_FLUSH_ROUNDS && s->q_len; i++) {
        if (s->closing || lws_partial_buffered(wsi)) break;
        if (ws_write_queued(wsi, s) < 0) {
            lws_set_timeout(wsi, PENDING_TIMEOUT_CLOSE_SEND, LWS_TO_KILL_ASYNC);
            return;
        }
    }
    if (s->q_len || (s->closing && s->close_code)) lws_callback_on_writable(wsi);
    if (s->q_len < s->q_cap / 2) {
        sub_drained(s); /* may queue more: s is listed again, for this same flush */
        bridge_drained(s);
    }
}

/* The prepare handle: every listed session, also those listed while it runs; a fire-and-forget
 * Redis write of the turn leaves first (e.g. an e-mail's Message-ID is in Redis before the frame
 * that depends on it reaches its client); commands awaiting replies keep their batch. */
static void ws_flush(uv_prepare_t *h) {
    uv_prepare_stop(h);
    rconn_flush_blind(G.redis);
    for (size_t i = 0; i < flush_n; i++) {
        sess *s = flush_list[i];
        ws_flush_one(s);
        sess_unref(s);
    }
    flush_n = 0;
}

/* At shutdown: nothing more is written; the listed sessions are let go. */
static void ws_flush_drop(void) {
    if (flush_ready) uv_prepare_stop(&flush_prep);
    for (size_t i = 0; i < flush_n; i++) {
        flush_list[i]->flush_queued = 0;
        sess_unref(flush_list[i]);
    }
    flush_n = 0;
    free(flush_list);
    flush_list = NULL;
    flush_cap = 0;
}

void ws_want_write(sess *s) {
    if (!s->wsi || s->flush_queued) return;
    if (s->closing || !G.loop) {
        lws_callback_on_writable(s->wsi);
        return;
    }
    if (flush_n == flush_cap) {
        size_t cap = flush_cap ? flush_cap * 2 : 64;
        sess **l = realloc(flush_list, cap * sizeof(*l));
        if (!l) {
            lws_callback_on_writable(s->wsi);
            return;
        }
        flush_list = l;
        flush_cap = cap;
    }
    if (!flush_ready) {
        uv_prepare_init(G.loop, &flush_prep);
        flush_ready = 1;
    }
    s->flush_queued = 1;
    flush_list[flush_n++] = sess_ref(s);
    uv_prepare_start(&flush_prep, ws_flush);
}

const lws_retry_bo_t *ws_keepalive_policy(long long interval_s) {
    static lws_retry_bo_t policy;
    memset(&policy, 0, sizeof(policy));
    if (interval_s <= 0) return &policy; /* no validity timer at all: never pinged */
    policy.secs_since_valid_ping = (uint16_t)interval_s;
    policy.secs_since_valid_hangup = (uint16_t)(3 * interval_s);
    return &policy;
}

static int ws_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                       size_t len) {
    ws_pss *pss = user;
    switch (reason) {
    case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE: /* never read `in` here: see upgrade.c */
        return upg_confirm(wsi);
    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
        return ws_filter(wsi);
    case LWS_CALLBACK_ESTABLISHED:
        return ws_established(wsi, pss);
    case LWS_CALLBACK_RECEIVE:
        return pss ? ws_receive(wsi, pss, in, len) : -1;
    case LWS_CALLBACK_WSI_DESTROY:
        ws_gone(pss);
        lim_conn_close(wsi);
        return 0;
    case LWS_CALLBACK_SERVER_WRITEABLE:
        if (pss && !pss->s && pss->no_hello) {
            ws_write_close(wsi, LWS_CLOSE_STATUS_POLICY_VIOLATION, WS_NO_HELLO);
            return -1;
        }
        return pss && pss->s ? ws_writeable(wsi, pss->s) : 0;
    case LWS_CALLBACK_CLOSED:
        ws_gone(pss);
        return 0;
    case LWS_CALLBACK_FILTER_NETWORK_CONNECTION: { /* user: lws_filter_network_conn_args */
        const struct lws_filter_network_conn_args *na = user;
        return na && lim_conn_accept(&na->cli_addr) < 0 ? -1 : 0;
    }
    case LWS_CALLBACK_SERVER_NEW_CLIENT_INSTANTIATED:
        lim_conn_new(wsi);
        return 0;
    case LWS_CALLBACK_FILTER_HTTP_CONNECTION:
        if (http_filter(wsi)) return -1;
        return ws_limit(wsi);
    case LWS_CALLBACK_HTTP:
        return http_request(wsi, in);
    case LWS_CALLBACK_ADD_HEADERS: { /* the static files' responses */
        struct lws_process_html_args *a = in;
        unsigned char *p = (unsigned char *)a->p;
        if (http_add_headers(wsi, &p, p + a->max_len)) return 1;
        a->p = (char *)p;
        return 0;
    }
    case LWS_CALLBACK_HTTP_BODY:
        if (pss && pss->wh) return wh_body(wsi, pss->wh, in, len);
        break;
    case LWS_CALLBACK_HTTP_BODY_COMPLETION:
        if (pss && pss->wh) return wh_body_done(wsi, pss->wh);
        break;
    case LWS_CALLBACK_HTTP_WRITEABLE:
        if (pss && pss->wh) return wh_writeable(wsi, &pss->wh);
        break;
    case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
    case LWS_CALLBACK_CLOSED_HTTP:
        if (pss) wh_detach(&pss->wh);
        break;
    default:
        break;
    }
    return lws_callback_http_dummy(wsi, reason, user, in, len);
}

const struct lws_protocols ws_protocols[] = {
    {"chatgw.json.v1", ws_callback, sizeof(ws_pss), 1024, 0, NULL, 65536 + 16},
    {"chatgw.msgpack.v1", ws_callback, sizeof(ws_pss), 1024, 0, NULL, 65536 + 16},
    {NULL, NULL, 0, 0, 0, NULL, 0}};
