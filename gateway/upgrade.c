/* upgrade.c -- the checks of a WebSocket upgrade request, before libwebsockets performs it.
 *
 * lws 4.1 (lib/roles/http/server/server.c, lib/roles/ws/server-ws.c of v4.1.6) hands every
 * upgrade to LWS_CALLBACK_HTTP_CONFIRM_UPGRADE first; for "websocket" it then checks the
 * Connection header, picks the subprotocol, runs FILTER_PROTOCOL_CONNECTION and answers the
 * handshake. Several of its refusals in between close the connection without any HTTP status:
 * a Connection header that does not list "upgrade", a Sec-WebSocket-Protocol header that offers
 * none of ours (or is malformed, longer than 126 bytes, or has a name longer than 62 bytes), a
 * missing or too long Sec-WebSocket-Key. upg_confirm makes those decisions first, with lws' own
 * tokenizer, flags and limits (so it refuses exactly what lws would refuse, never more), and
 * answers each with 400 and a text naming the problem; before them the path (404) and the Host
 * and Origin (403, guard.c). FILTER_PROTOCOL_CONNECTION (ws.c) repeats the path and guard
 * checks for an upgrade that does not pass here (none over HTTP/1.1).
 *
 * The subprotocol lws 4.1 picks: no Sec-WebSocket-Protocol header (or an empty one): the vhost's
 * default protocol, ws_protocols[0] (chatgw.json.v1). Otherwise the first offered name, in the
 * client's order, that is one of ws_protocols (exact, case-sensitive match); names that are not
 * ours are skipped; when none is ours lws would close the connection: here that is answered
 * "400 unknown subprotocol: <offered>; supported: <ours>".
 *
 * CVE-2025-11677 (upstream fix 2f082ec3, "UAF depending on upgrade allowed"; Debian 12's
 * 4.1.6-3 has it): for an Upgrade value other than websocket and h2c, lws answers 403 and
 * completes the transaction first; on a keep-alive connection (one that served a request before)
 * that detaches or resets the header table, and lws still calls HTTP_CONFIRM_UPGRADE with `in`
 * pointing into it, then, when the callback returns 0, compares that stale pointer itself. So
 * upg_confirm never reads `in`: it reads the Upgrade header with lws_hdr_copy, which sees nothing
 * once the table is gone, and returns -1 (hang up, lws reads nothing more) for any value but
 * websocket and h2c; the client has had lws' 403 by then. Without this callback the gateway was
 * exposed all the same: lws' default handler returns 0 and lws then read the freed header table
 * (a read only: at worst a crash; an ASan build shows the heap-use-after-free). */
#include "gw.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "../common/log.h"

/* What lws_process_ws_upgrade (v4.1.6) tokenizes Connection and Sec-WebSocket-Protocol with:
 * a buffer of 128 bytes read with room 127 (a header of 127 bytes or more fails), names of at
 * most 62 bytes (lws_tokenize_cstr into 64 fails from 63), these flags. */
#define UPG_HDR_BUF 128
#define UPG_NAME_BUF 64
#define UPG_TOKENIZE                                                                               \
    (LWS_TOKENIZE_F_COMMA_SEP_LIST | LWS_TOKENIZE_F_MINUS_NONTERM | LWS_TOKENIZE_F_DOT_NONTERM |   \
     LWS_TOKENIZE_F_RFC7230_DELIMS)
#define UPG_KEY_MAX 127 /* handshake_0405: a Sec-WebSocket-Key of 128 bytes or more fails */
#define UPG_TEXT_MAX 512

int upg_role(struct lws *wsi, sess_role *role) {
    char uri[128];
    if (lws_hdr_copy(wsi, uri, sizeof(uri), WSI_TOKEN_GET_URI) <= 0) return -1;
    if (!strcmp(uri, "/ws/customer"))
        *role = SESS_CUSTOMER;
    else if (!strcmp(uri, "/ws/agent"))
        *role = SESS_AGENT;
    else if (!strcmp(uri, "/ws/bridge"))
        *role = SESS_BRIDGE;
    else
        return -1;
    return 0;
}

/* Answer status with text and log why (static): -1, what the lws callback returns so that lws
 * closes the connection after the answer. */
static int upg_refuse(struct lws *wsi, int status, const char *why, const char *text) {
    log_info("ws: refused upgrade: %s", why);
    http_refuse(wsi, status, text);
    return -1;
}

int upg_check_target(struct lws *wsi) {
    sess_role role;
    if (upg_role(wsi, &role) < 0)
        return upg_refuse(wsi, HTTP_STATUS_NOT_FOUND, "unknown path", "unknown WebSocket path");
    const char *why = NULL;
    if (guard_ws(wsi, &why) == 0) return 0;
    log_warn("ws: refused upgrade: %s", why);
    http_refuse(wsi, HTTP_STATUS_FORBIDDEN, why);
    return -1;
}

/* 1 when the Connection header lists "upgrade" as lws 4.1 reads it (a token that is a prefix of
 * "upgrade", case-insensitive, is enough for lws: so it is here), else 0. */
static int upg_connection_ok(struct lws *wsi) {
    char buf[UPG_HDR_BUF];
    int n = lws_hdr_copy(wsi, buf, sizeof(buf) - 1, WSI_TOKEN_CONNECTION);
    if (n <= 0) return 0;
    struct lws_tokenize ts;
    lws_tokenize_init(&ts, buf, UPG_TOKENIZE);
    ts.len = (size_t)n;
    for (;;) {
        lws_tokenize_elem e = lws_tokenize(&ts);
        if (e == LWS_TOKZE_TOKEN && !strncasecmp(ts.token, "upgrade", ts.token_len)) return 1;
        if (e != LWS_TOKZE_TOKEN && e != LWS_TOKZE_DELIMITER) return 0;
    }
}

/* ", "-separated names of ws_protocols into out (size n). */
static void upg_supported(char *out, size_t n) {
    size_t used = 0;
    out[0] = '\0';
    for (const struct lws_protocols *p = ws_protocols; p->name && used < n; p++)
        used += (size_t)snprintf(out + used, n - used, "%s%s", used ? ", " : "", p->name);
}

/* The Sec-WebSocket-Protocol check, lws 4.1's choice made first (see the top of the file): 0
 * when lws will bind one of ours (or the default: no header); else the problem's name (static)
 * in *why and the answer's text in text (size n): -1. */
static int upg_subprotocol(struct lws *wsi, const char **why, char *text, size_t n) {
    char buf[UPG_HDR_BUF], name[UPG_NAME_BUF], offered[2 * UPG_HDR_BUF], ours[128];
    size_t used = 0;
    upg_supported(ours, sizeof(ours));
    int len = lws_hdr_copy(wsi, buf, sizeof(buf) - 1, WSI_TOKEN_PROTOCOL);
    if (len == 0) return 0; /* none asked for: the default, chatgw.json.v1 */
    *why = "Sec-WebSocket-Protocol header too long";
    if (len < 0) {
        snprintf(text, n, "%s (at most %d bytes); supported: %s", *why, UPG_HDR_BUF - 2, ours);
        return -1;
    }
    struct lws_tokenize ts;
    lws_tokenize_init(&ts, buf, UPG_TOKENIZE);
    ts.len = (size_t)len;
    offered[0] = '\0';
    for (;;) {
        lws_tokenize_elem e = lws_tokenize(&ts);
        if (e == LWS_TOKZE_DELIMITER) continue;
        if (e == LWS_TOKZE_ENDED) break;
        if (e != LWS_TOKZE_TOKEN) {
            *why = "malformed Sec-WebSocket-Protocol header";
            snprintf(text, n, "%s; supported: %s", *why, ours);
            return -1;
        }
        if (lws_tokenize_cstr(&ts, name, sizeof(name))) {
            *why = "subprotocol name too long";
            snprintf(text, n, "%s (at most %d bytes); supported: %s", *why, UPG_NAME_BUF - 2, ours);
            return -1;
        }
        if (lws_vhost_name_to_protocol(lws_get_vhost(wsi), name)) return 0; /* lws binds it */
        if (used < sizeof(offered))
            used += (size_t)snprintf(offered + used, sizeof(offered) - used, "%s%s",
                                     used ? ", " : "", name);
    }
    *why = "unknown subprotocol";
    snprintf(text, n, "%s%s: %s; supported: %s", *why, strchr(offered, ',') ? "s" : "", offered,
             ours);
    return -1;
}

int upg_confirm(struct lws *wsi) {
    char up[16];
    if (lws_hdr_copy(wsi, up, sizeof(up), WSI_TOKEN_UPGRADE) <= 0) return -1; /* see the top */
    if (!strcasecmp(up, "h2c")) return 0; /* lws' own business, as before */
    if (strcasecmp(up, "websocket")) return -1;
    if (upg_check_target(wsi) < 0) return -1;
    if (!upg_connection_ok(wsi))
        return upg_refuse(wsi, HTTP_STATUS_BAD_REQUEST, "no upgrade in Connection",
                          "the Connection header must list upgrade");
    int key = lws_hdr_total_length(wsi, WSI_TOKEN_KEY);
    if (key <= 0)
        return upg_refuse(wsi, HTTP_STATUS_BAD_REQUEST, "no Sec-WebSocket-Key",
                          "missing Sec-WebSocket-Key header");
    if (key > UPG_KEY_MAX)
        return upg_refuse(wsi, HTTP_STATUS_BAD_REQUEST, "Sec-WebSocket-Key too long",
                          "Sec-WebSocket-Key header too long");
    const char *why = NULL;
    char text[UPG_TEXT_MAX];
    if (upg_subprotocol(wsi, &why, text, sizeof(text)) < 0)
        return upg_refuse(wsi, HTTP_STATUS_BAD_REQUEST, why, text);
    return 0;
}
