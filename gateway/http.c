/* http.c -- plain HTTP on the gateway's listener: /healthz, the webhooks and the static pages.
 *
 * Static files (the demo widget at / and the agent console at /agent) are served by lws file
 * mounts from www_dir. Callback mounts (/healthz) answer here: the response is prepared in
 * http_request() and written in one go from HTTP_WRITEABLE. Requests under /channels (a callback
 * mount too) are the platform webhooks: webhook.c; /metrics, /canned, /desk and /customer
 * (metrics.c, canned.c, desk.c, custinfo.c) use the same request machinery. A path nothing serves
 * (lws hands a file mount's misses to http_request too) is answered 404.
 *
 * Every HTTP response carries http_headers (lws adds a vhost's headers to each status line it
 * writes): a Content-Security-Policy that allows only the gateway's own scripts, styles, images
 * and connections (the pages have no inline script or style), X-Frame-Options DENY,
 * X-Content-Type-Options nosniff and Referrer-Policy no-referrer (the console's URL carries its
 * token in the fragment). Who may frame a response is a second policy, added per response
 * (http_add_headers): the widget's frame page (HTTP_FRAME_PAGE, which shops embed through
 * widget.js) says frame-ancestors 'self' and the allowed_origins, every other response
 * frame-ancestors 'none' (the console must never be framed). Browsers that know frame-ancestors
 * ignore X-Frame-Options when it is present; older ones refuse to frame anything. */
#include "gw.h"
#include "webhook.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "../common/log.h"

#define HTTP_CSP                                                                                   \
    "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "               \
    "form-action 'self'"
#define HTTP_FRAME_PAGE "/widget-frame.html"
#define HTTP_HEAD_MAX 4096 /* room for a response's status line and headers */
#define HTTP_NO_FRAMING "frame-ancestors 'none'"

static const struct lws_protocol_vhost_options h_referrer = {NULL, NULL,
                                                             "referrer-policy:", "no-referrer"};
static const struct lws_protocol_vhost_options h_nosniff = {&h_referrer, NULL,
                                                            "x-content-type-options:", "nosniff"};
static const struct lws_protocol_vhost_options h_frame = {&h_nosniff, NULL,
                                                          "x-frame-options:", "DENY"};
static const struct lws_protocol_vhost_options h_csp = {&h_frame, NULL,
                                                        "content-security-policy:", HTTP_CSP};
const struct lws_protocol_vhost_options *http_headers = &h_csp;

/* "frame-ancestors 'self' <allowed_origins>": the frame page's framing policy (http_setup_frame) */
static char frame_policy[sizeof(G.cfg.allowed_origins) + 64];

static struct lws_http_mount m_root, m_agent, m_healthz, m_channels, m_metrics, m_canned, m_desk,
    m_customer;
const struct lws_http_mount *http_mounts = &m_healthz;

/* Fill m as the mount of path, chained to next: origin is the protocol name of a callback mount
 * (LWSMPRO_CALLBACK) or the directory of a file mount (LWSMPRO_FILE, def its default file). */
static void http_mount(struct lws_http_mount *m, const char *path, const char *origin,
                       unsigned char proto, const char *def, const struct lws_http_mount *next) {
    memset(m, 0, sizeof(*m));
    m->mountpoint = path;
    m->mountpoint_len = (unsigned char)strlen(path);
    m->origin = origin;
    m->origin_protocol = proto;
    m->def = def;
    m->mount_next = next;
    /* file mounts: lws asks this protocol for extra headers (LWS_CALLBACK_ADD_HEADERS) */
    if (proto == LWSMPRO_FILE) m->protocol = "chatgw.json.v1";
}

void http_setup_mounts(const char *www_dir) {
    http_mount(&m_healthz, "/healthz", "chatgw.json.v1", LWSMPRO_CALLBACK, NULL, &m_channels);
    http_mount(&m_channels, "/channels", "chatgw.json.v1", LWSMPRO_CALLBACK, NULL, &m_metrics);
    http_mount(&m_metrics, "/metrics", "chatgw.json.v1", LWSMPRO_CALLBACK, NULL, &m_canned);
    http_mount(&m_canned, "/canned", "chatgw.json.v1", LWSMPRO_CALLBACK, NULL, &m_desk);
    http_mount(&m_desk, "/desk", "chatgw.json.v1", LWSMPRO_CALLBACK, NULL, &m_customer);
    http_mount(&m_customer, "/customer", "chatgw.json.v1", LWSMPRO_CALLBACK, NULL, &m_agent);
    http_mount(&m_agent, "/agent", www_dir, LWSMPRO_FILE, "agent.html", &m_root);
    http_mount(&m_root, "/", www_dir, LWSMPRO_FILE, "index.html", NULL);
}

/* 1 when c may appear in an origin of frame-ancestors: scheme, host, port (no space, ';', ',' or
 * quote that would end the source or the directive). */
static int http_origin_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           strchr(":/.-_[]", c) != NULL;
}

int http_setup_frame(const char *allowed_origins, cg_err *err) {
    size_t n = (size_t)snprintf(frame_policy, sizeof(frame_policy), "frame-ancestors 'self'");
    for (const char *p = allowed_origins; *p;) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        while (len && *p == ' ')
            p++, len--;
        while (len && p[len - 1] == ' ')
            len--;
        for (size_t i = 0; i < len; i++)
            if (!http_origin_char(p[i]))
                return cg_err_set(err, "bad_config",
                                  "allowed_origins: '%.*s' is not an origin like "
                                  "https://shop.example",
                                  (int)(len > 80 ? 80 : len), p);
        if (len)
            n += (size_t)snprintf(frame_policy + n, sizeof(frame_policy) - n, " %.*s", (int)len, p);
        if (n >= sizeof(frame_policy))
            return cg_err_set(err, "bad_config", "allowed_origins is too long");
        if (!e) break;
        p = e + 1;
    }
    return 0;
}

static int http_is(struct lws *wsi, const char *path);

int http_add_headers(struct lws *wsi, unsigned char **p, unsigned char *end) {
    int framed = http_is(wsi, HTTP_FRAME_PAGE);
    const char *csp = framed ? frame_policy : HTTP_NO_FRAMING;
    return lws_add_http_header_by_name(wsi, (const unsigned char *)"content-security-policy:",
                                       (const unsigned char *)csp, (int)strlen(csp), p, end)
               ? 1
               : 0;
}

/* Write the whole response (status, headers, body) now, in one lws_write from the HTTP
 * callback, and end the transaction: a second request already read from the same connection (a
 * pipelined one) is answered after this one, never with its headers between this one's headers
 * and body. Returns what the HTTP callback returns: 0, or -1 to close the connection. */
static int http_respond(struct lws *wsi, int status, const char *type, const char *body) {
    size_t len = strlen(body), room = HTTP_HEAD_MAX + len;
    unsigned char *buf = malloc(LWS_PRE + room);
    if (!buf) return -1;
    unsigned char *start = buf + LWS_PRE, *p = start, *end = start + room;
    if (lws_add_http_common_headers(wsi, (unsigned)status, type, (lws_filepos_t)len, &p, end) ||
        lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_CACHE_CONTROL,
                                     (const unsigned char *)"no-store", 8, &p, end) ||
        http_add_headers(wsi, &p, end) || lws_finalize_http_header(wsi, &p, end) ||
        (size_t)(end - p) < len) {
        free(buf);
        return -1;
    }
    memcpy(p, body, len);
    p += len;
    int n = (int)(p - start);
    int written = lws_write(wsi, start, (size_t)n, LWS_WRITE_HTTP_FINAL);
    free(buf);
    if (written != n) return -1;
    return lws_http_transaction_completed(wsi) ? -1 : 0;
}

int http_refuse(struct lws *wsi, int status, const char *text) {
    unsigned char buf[LWS_PRE + 2048], *start = buf + LWS_PRE, *p = start,
                                       *end = buf + sizeof(buf) - 1;
    size_t len = strlen(text) + 1;
    if (lws_add_http_common_headers(wsi, (unsigned)status, "text/plain; charset=utf-8",
                                    (lws_filepos_t)len, &p, end) ||
        lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_CACHE_CONTROL,
                                     (const unsigned char *)"no-store", 8, &p, end) ||
        lws_add_http_header_by_token(wsi, WSI_TOKEN_CONNECTION, (const unsigned char *)"close", 5,
                                     &p, end) ||
        http_add_headers(wsi, &p, end) || lws_finalize_http_header(wsi, &p, end))
        return -1;
    if ((size_t)(end - p) < len) return -1;
    memcpy(p, text, len - 1);
    p[len - 1] = '\n';
    p += len;
    int n = (int)(p - start);
    return lws_write(wsi, start, (size_t)n, LWS_WRITE_HTTP) == n ? 0 : -1;
}

int http_filter(struct lws *wsi) {
    const char *why = NULL;
    if (guard_http(wsi, &why) == 0) return 0;
    log_info("http: refused a request: %s", why);
    lws_return_http_status(wsi, HTTP_STATUS_BAD_REQUEST, why);
    return -1;
}

/* 1 when the request on wsi is GET or HEAD of exactly path. */
static int http_is(struct lws *wsi, const char *path) {
    char uri[64];
    if (lws_hdr_copy(wsi, uri, sizeof(uri), WSI_TOKEN_GET_URI) <= 0 &&
        lws_hdr_copy(wsi, uri, sizeof(uri), WSI_TOKEN_HEAD_URI) <= 0)
        return 0;
    return !strcmp(uri, path);
}

/* GET /healthz: 200 {"status":"ok",...} when Redis is usable and no live router reports a
 * problem, else 503 {"status":"unavailable","reason":...}; both name the Redis state and list
 * the routers of the last health round (rstate.c) with their states. */
int http_request(struct lws *wsi, const char *uri) {
    (void)uri;
    ws_pss *pss = lws_wsi_user(wsi);
    if (pss && wh_is_webhook(wsi)) return wh_http(wsi, &pss->wh);
    if (!http_is(wsi, "/healthz"))
        return http_respond(wsi, HTTP_STATUS_NOT_FOUND, "text/plain", "not found\n");
    char reason[256];
    int bad = rs_problem(reason, sizeof(reason));
    json_t *o = json_object(), *routers = json_object();
    const rs_router *list;
    unsigned n = rs_routers(&list);
    for (unsigned i = 0; routers && i < n; i++)
        json_object_set_new(routers, list[i].id,
                            json_string(list[i].state[0] ? list[i].state : "?"));
    if (o) {
        json_object_set_new(o, "status", json_string(bad ? "unavailable" : "ok"));
        json_object_set_new(o, "redis", json_string(rs_redis_state()));
        json_object_set_new(o, "gateway", json_string(G.cfg.gateway_id));
        json_object_set_new(o, "connections", json_integer(G.n_sessions + G.n_ws_waiting));
        if (bad) json_object_set_new(o, "reason", json_string(reason));
        if (routers) json_object_set(o, "routers", routers);
    }
    json_decref(routers);
    char *body = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    int rc = http_respond(wsi, bad ? HTTP_STATUS_SERVICE_UNAVAILABLE : HTTP_STATUS_OK,
                          "application/json", body ? body : "{\"status\":\"unavailable\"}");
    free(body);
    return rc;
}
