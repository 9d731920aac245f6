/* rtls.c -- see rtls.h.
 *
 * One rtls_link per accepted local connection:
 *
 *   hiredis --plain--> local (uv_pipe) --SSL_write--> wbio --> remote (uv_tcp) --> Redis
 *   hiredis <--plain-- local <--SSL_read-- rbio <-- remote <--TLS-- Redis
 *
 * The SSL object works on two memory BIOs (rbio: bytes read from Redis, wbio: bytes to send to
 * it); the libuv streams move the bytes, so the whole relay runs on the loop without blocking.
 * The local side is read only once the handshake is done (hiredis' first commands wait in the
 * socket buffer meanwhile). Backpressure: the bytes handed to a stream and not yet written are
 * counted per side; over RTLS_QUEUE_MAX the other side is not read until they fall to half of
 * it, so a link holds at most RTLS_QUEUE_MAX plus one chunk per direction.
 *
 * Lifetime: a link owns three handles (local, remote, timer) and at most one name lookup; it is
 * freed when all are closed / answered. The rtls is freed after rtls_free() once its listener and
 * every link are gone. Pending writes are cancelled by uv_close (their callbacks run before the
 * handle's close callback, while the link is still alive). */
#include "rtls.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "log.h"

#define RTLS_CHUNK 16384
#define RTLS_LOGGED 4 /* distinct failures remembered per streak (causes may alternate) */

typedef struct rtls_link rtls_link;

struct rtls {
    uv_loop_t *loop;
    SSL_CTX *ctx;
    char host[256];
    char verify_name[256]; /* the name (or IP address) the certificate must carry */
    int verify_ip;         /* verify_name is an IP address */
    int port;
    char name[64];
    int log_failures;
    char dir[256]; /* the private 0700 directory of the socket; "" when not made */
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    uv_pipe_t listener;
    int listener_open;
    rtls_link *links;
    unsigned n_links;
    int closing;
    uv_mutex_t mu;      /* guards last_err (rtls_last_error may be called from another thread) */
    char last_err[256]; /* the last failure; "" after a successful handshake */
    rtls_stats stats;   /* guarded by mu too */
    char logged[RTLS_LOGGED][256]; /* failures logged at error level in this streak */
    unsigned n_logged;             /* how many of logged[] (a ring) are set */
};

struct rtls_link {
    rtls_link *prev, *next;
    rtls *t;
    uv_pipe_t local;
    uv_tcp_t remote;
    uv_timer_t timer; /* the connect + handshake deadline */
    uv_getaddrinfo_t gai;
    uv_connect_t conn;
    uv_shutdown_t shut;
    int open;        /* handles not closed yet */
    int gai_pending; /* a name lookup whose callback has not run */
    int family;      /* the address family asked for: AF_INET, then AF_INET6 (as hiredis does) */
    int connected, established, closing;
    int answered; /* Redis sent application data: the link works (a TLS 1.3 server may still
                     refuse the client's certificate right after the client's handshake ends) */
    int local_paused, remote_paused;
    size_t local_queued, remote_queued; /* bytes handed to the stream, not written yet */
    SSL *ssl;
    BIO *rbio, *wbio; /* owned by ssl */
    char lbuf[RTLS_CHUNK], rbuf[RTLS_CHUNK], pbuf[RTLS_CHUNK];
};

typedef struct rtls_wreq {
    uv_write_t req;
    rtls_link *l;
    int to_remote;
    size_t len;
    char data[];
} rtls_wreq;

/* ---- options ------------------------------------------------------------------------------ */

static rtls_opts g_opts;
static int g_opts_set;

void rtls_set_opts(const rtls_opts *o) {
    g_opts = *o;
    g_opts_set = 1;
}

static void env_copy(char *dst, size_t n, const char *var) {
    const char *v = getenv(var);
    snprintf(dst, n, "%s", v ? v : "");
}

static void rtls_opts_current(rtls_opts *o) {
    if (g_opts_set) {
        *o = g_opts;
        return;
    }
    memset(o, 0, sizeof(*o));
    env_copy(o->ca, sizeof(o->ca), "CHATGW_REDIS_TLS_CA");
    env_copy(o->cert, sizeof(o->cert), "CHATGW_REDIS_TLS_CERT");
    env_copy(o->key, sizeof(o->key), "CHATGW_REDIS_TLS_KEY");
    env_copy(o->server_name, sizeof(o->server_name), "CHATGW_REDIS_TLS_SERVER_NAME");
}

/* The reason of the oldest queued OpenSSL error ("no such file", ...); clears the queue. */
static const char *ssl_reason(void) {
    unsigned long e = ERR_get_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    ERR_clear_error();
    return r ? r : "unknown error";
}

/* A client SSL_CTX from o: verify the peer against o->ca (or the system store), client
 * certificate when given. NULL with err naming the key and the file. */
static SSL_CTX *rtls_ctx(const rtls_opts *o, cg_err *err) {
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) {
        cg_err_set(err, "internal", "redis TLS: cannot create an OpenSSL context");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    const char *bad = NULL;
    if (o->ca[0] && SSL_CTX_load_verify_locations(ctx, o->ca, NULL) != 1)
        bad = "redis_tls_ca";
    else if (!o->ca[0] && SSL_CTX_set_default_verify_paths(ctx) != 1)
        bad = "the system's CA store";
    else if (!o->cert[0] != !o->key[0])
        bad = "redis_tls_cert and redis_tls_key";
    else if (o->cert[0] && SSL_CTX_use_certificate_chain_file(ctx, o->cert) != 1)
        bad = "redis_tls_cert";
    else if (o->key[0] && SSL_CTX_use_PrivateKey_file(ctx, o->key, SSL_FILETYPE_PEM) != 1)
        bad = "redis_tls_key";
    else if (o->cert[0] && SSL_CTX_check_private_key(ctx) != 1)
        bad = "redis_tls_key";
    if (!bad) return ctx;
    const char *file = !strcmp(bad, "redis_tls_ca")     ? o->ca
                       : !strcmp(bad, "redis_tls_cert") ? o->cert
                       : !strcmp(bad, "redis_tls_key")  ? o->key
                                                        : "";
    if (!strcmp(bad, "redis_tls_cert and redis_tls_key"))
        cg_err_set(err, "bad_config", "redis TLS: give both redis_tls_cert and redis_tls_key");
    else
        cg_err_set(err, "bad_config", "redis TLS: %s %s: cannot load it: %s", bad, file,
                   ssl_reason());
    SSL_CTX_free(ctx);
    return NULL;
}

/* ---- failures ----------------------------------------------------------------------------- */

/* Record a failure: kept for rtls_last_error and, with log_failures, logged at error level the
 * first time in a streak (the last RTLS_LOGGED distinct ones are remembered: a refused
 * certificate and the reset that follows it may alternate), else at debug level. A streak ends when
 * Redis answers on a link (rtls_ok), not when a handshake ends: with TLS 1.3 a server refuses a
 * client certificate only after the client has finished its handshake. */
static void rtls_fail(rtls *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void rtls_fail(rtls *t, const char *fmt, ...) {
    char msg[sizeof(t->last_err)];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    uv_mutex_lock(&t->mu);
    memcpy(t->last_err, msg, sizeof(msg));
    uv_mutex_unlock(&t->mu);
    if (!t->log_failures) return;
    for (unsigned i = 0; i < t->n_logged && i < RTLS_LOGGED; i++) {
        if (strcmp(msg, t->logged[i]) == 0) {
            log_debug("redis %s: %s (again)", t->name, msg);
            return;
        }
    }
    log_error("redis %s: %s", t->name, msg);
    memcpy(t->logged[t->n_logged++ % RTLS_LOGGED], msg, sizeof(msg));
}

static void rtls_ok(rtls *t) {
    uv_mutex_lock(&t->mu);
    t->last_err[0] = '\0';
    uv_mutex_unlock(&t->mu);
    t->n_logged = 0;
}

const char *rtls_last_error(rtls *t, char *buf, size_t n) {
    uv_mutex_lock(&t->mu);
    snprintf(buf, n, "%s", t->last_err);
    uv_mutex_unlock(&t->mu);
    return buf;
}

void rtls_get_stats(rtls *t, rtls_stats *out) {
    uv_mutex_lock(&t->mu);
    *out = t->stats;
    uv_mutex_unlock(&t->mu);
}

const char *rtls_path(const rtls *t) {
    return t->path;
}

/* ---- link lifetime ------------------------------------------------------------------------ */

static void rtls_maybe_destroy(rtls *t) {
    if (!t->closing || t->listener_open || t->links) return;
    if (t->ctx) SSL_CTX_free(t->ctx);
    uv_mutex_destroy(&t->mu);
    free(t);
}

static void link_maybe_free(rtls_link *l) {
    if (l->open || l->gai_pending) return;
    rtls *t = l->t;
    if (l->prev)
        l->prev->next = l->next;
    else
        t->links = l->next;
    if (l->next) l->next->prev = l->prev;
    t->n_links--;
    if (l->ssl) SSL_free(l->ssl);
    free(l);
    rtls_maybe_destroy(t);
}

static void link_on_closed(uv_handle_t *h) {
    rtls_link *l = h->data;
    l->open--;
    link_maybe_free(l);
}

static void link_on_shutdown(uv_shutdown_t *req, int status) {
    (void)status;
    rtls_link *l = req->data;
    uv_close((uv_handle_t *)&l->local, link_on_closed);
}

/* Close the link. flush_local: Redis ended the connection in order; the replies already queued
 * for hiredis are still written before the local side closes. No close_notify is sent to Redis:
 * closing the TCP connection is what a client that exits does, and Redis takes it as such. */
static void link_close(rtls_link *l, int flush_local) {
    if (l->closing) return;
    l->closing = 1;
    uv_close((uv_handle_t *)&l->timer, link_on_closed);
    uv_close((uv_handle_t *)&l->remote, link_on_closed);
    l->shut.data = l;
    if (flush_local && uv_is_writable((uv_stream_t *)&l->local) &&
        uv_shutdown(&l->shut, (uv_stream_t *)&l->local, link_on_shutdown) == 0)
        return;
    uv_close((uv_handle_t *)&l->local, link_on_closed);
}

/* The handshake (or a later TLS read/write) failed: one message naming what went wrong and what
 * to check, then the link closes. */
static void link_tls_fail(rtls_link *l) {
    rtls *t = l->t;
    long vr = l->ssl ? SSL_get_verify_result(l->ssl) : X509_V_OK;
    unsigned long e = ERR_get_error();
    const char *reason = e ? ERR_reason_error_string(e) : NULL;
    ERR_clear_error();
    if (vr != X509_V_OK) {
        int name = vr == X509_V_ERR_HOSTNAME_MISMATCH || vr == X509_V_ERR_IP_ADDRESS_MISMATCH;
        rtls_fail(t, "TLS with %s:%d failed: certificate verify failed: %s (%s)", t->host, t->port,
                  X509_verify_cert_error_string(vr),
                  name ? "the certificate does not name this server: check the URL's host or "
                         "redis_tls_server_name"
                       : "check redis_tls_ca / CHATGW_REDIS_TLS_CA, the CA that signed it");
    } else if (reason && strstr(reason, "certificate")) {
        rtls_fail(t,
                  "TLS with %s:%d failed: %s (Redis wants a client certificate it trusts: check "
                  "redis_tls_cert and redis_tls_key / CHATGW_REDIS_TLS_CERT, _KEY)",
                  t->host, t->port, reason);
    } else if (reason) {
        rtls_fail(t, "TLS with %s:%d failed: %s (is port %d Redis' tls-port?)", t->host, t->port,
                  reason, t->port);
    } else {
        rtls_fail(t,
                  "TLS with %s:%d failed: the server closed the connection (is port %d Redis' "
                  "tls-port?)",
                  t->host, t->port, t->port);
    }
    link_close(l, 0);
}

/* ---- pumping ------------------------------------------------------------------------------ */

static void link_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
    (void)suggested;
    rtls_link *l = h->data;
    if ((void *)h == (void *)&l->local)
        *buf = uv_buf_init(l->lbuf, sizeof(l->lbuf));
    else
        *buf = uv_buf_init(l->rbuf, sizeof(l->rbuf));
}

static void link_on_local_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);
static void link_on_remote_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);
static void link_pump_in(rtls_link *l);

static void link_on_written(uv_write_t *req, int status) {
    rtls_wreq *w = (rtls_wreq *)req;
    rtls_link *l = w->l;
    int to_remote = w->to_remote;
    if (to_remote)
        l->remote_queued -= w->len;
    else
        l->local_queued -= w->len;
    free(w);
    if (l->closing) return;
    if (status < 0) {
        if (to_remote)
            rtls_fail(l->t, "writing to %s:%d failed: %s", l->t->host, l->t->port,
                      uv_strerror(status));
        link_close(l, 0);
        return;
    }
    if (to_remote && l->local_paused && l->remote_queued <= RTLS_QUEUE_MAX / 2) {
        l->local_paused = 0;
        uv_read_start((uv_stream_t *)&l->local, link_alloc, link_on_local_read);
    } else if (!to_remote && l->remote_paused && l->local_queued <= RTLS_QUEUE_MAX / 2) {
        l->remote_paused = 0;
        uv_read_start((uv_stream_t *)&l->remote, link_alloc, link_on_remote_read);
        link_pump_in(l); /* what rbio still held when the reading paused */
    }
}

/* Hand len bytes to one side (copied). Over the bound, the other side stops being read. -1 when
 * the link was closed. */
static int link_write(rtls_link *l, int to_remote, const void *data, size_t len) {
    rtls_wreq *w = malloc(sizeof(*w) + len);
    if (!w) {
        link_close(l, 0);
        return -1;
    }
    w->l = l;
    w->to_remote = to_remote;
    w->len = len;
    memcpy(w->data, data, len);
    uv_buf_t b = uv_buf_init(w->data, (unsigned)len);
    uv_stream_t *s = to_remote ? (uv_stream_t *)&l->remote : (uv_stream_t *)&l->local;
    if (uv_write(&w->req, s, &b, 1, link_on_written) != 0) {
        free(w);
        link_close(l, 0);
        return -1;
    }
    int paused_now = 0; /* this write stopped the other side's reading */
    if (to_remote) {
        l->remote_queued += len;
        if (l->remote_queued > RTLS_QUEUE_MAX && !l->local_paused) {
            l->local_paused = paused_now = 1;
            uv_read_stop((uv_stream_t *)&l->local);
        }
    } else {
        l->local_queued += len;
        if (l->local_queued > RTLS_QUEUE_MAX && !l->remote_paused) {
            l->remote_paused = paused_now = 1;
            uv_read_stop((uv_stream_t *)&l->remote);
        }
    }
    /* the stats change at a pause or a new maximum only: the lock is rarely taken */
    rtls_stats *st = &l->t->stats;
    size_t q = to_remote ? l->remote_queued : l->local_queued;
    size_t *max = to_remote ? &st->max_remote_queued : &st->max_local_queued;
    if (paused_now || q > *max) {
        uv_mutex_lock(&l->t->mu);
        if (q > *max) *max = q;
        if (paused_now && to_remote) st->paused_local++;
        if (paused_now && !to_remote) st->paused_remote++;
        uv_mutex_unlock(&l->t->mu);
    }
    return 0;
}

/* Send what OpenSSL wrote into wbio to Redis. -1 when the link was closed. */
static int link_flush(rtls_link *l) {
    size_t n;
    while ((n = BIO_ctrl_pending(l->wbio)) > 0) {
        if (n > sizeof(l->pbuf)) n = sizeof(l->pbuf);
        int got = BIO_read(l->wbio, l->pbuf, (int)n);
        if (got <= 0) break;
        if (link_write(l, 1, l->pbuf, (size_t)got) != 0) return -1;
    }
    return 0;
}

/* Decrypt what rbio holds and hand it to hiredis, until OpenSSL wants more bytes or the local
 * queue is over its bound (then link_on_written calls this again). */
static void link_pump_in(rtls_link *l) {
    while (!l->closing && !l->remote_paused) {
        ERR_clear_error();
        int n = SSL_read(l->ssl, l->pbuf, sizeof(l->pbuf));
        if (n > 0) {
            if (!l->answered) {
                l->answered = 1;
                rtls_ok(l->t); /* the end of a failing streak */
            }
            if (link_write(l, 0, l->pbuf, (size_t)n) != 0) return;
            continue;
        }
        int e = SSL_get_error(l->ssl, n);
        if (link_flush(l) != 0) return; /* e.g. a key update's answer */
        if (e == SSL_ERROR_WANT_READ) return;
        if (e == SSL_ERROR_ZERO_RETURN) { /* close_notify: Redis ended the connection */
            link_close(l, 1);
            return;
        }
        link_tls_fail(l);
        return;
    }
}

static void link_handshake(rtls_link *l) {
    ERR_clear_error();
    int rv = SSL_do_handshake(l->ssl);
    int e = rv == 1 ? SSL_ERROR_NONE : SSL_get_error(l->ssl, rv);
    if (e != SSL_ERROR_NONE && e != SSL_ERROR_WANT_READ) {
        link_tls_fail(l);
        return;
    }
    if (link_flush(l) != 0 || e == SSL_ERROR_WANT_READ) return;
    l->established = 1;
    uv_timer_stop(&l->timer);
    log_debug("redis %s: TLS to %s:%d established (%s)", l->t->name, l->t->host, l->t->port,
              SSL_get_version(l->ssl));
    uv_read_start((uv_stream_t *)&l->local, link_alloc, link_on_local_read);
    link_pump_in(l);
}

static void link_on_remote_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
    rtls_link *l = s->data;
    if (nread == 0 || l->closing) return;
    if (nread < 0) {
        rtls *t = l->t;
        if (!l->established)
            link_tls_fail(l);
        else if (nread == UV_EOF)
            link_close(l, 1);
        else {
            rtls_fail(t, "connection to %s:%d lost: %s", t->host, t->port, uv_strerror((int)nread));
            link_close(l, 1);
        }
        return;
    }
    BIO_write(l->rbio, buf->base, (int)nread);
    if (!l->established)
        link_handshake(l);
    else
        link_pump_in(l);
}

/* Plain bytes from hiredis: encrypt and send. EOF: hiredis closed, which is no failure. */
static void link_on_local_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
    rtls_link *l = s->data;
    if (nread == 0 || l->closing) return;
    if (nread < 0) {
        /* before the handshake finished: the client's own timeout came first (rconn's watchdog
         * is shorter than RTLS_HANDSHAKE_MS); say what it waited for */
        if (!l->established)
            rtls_fail(l->t, "no TLS connection to %s:%d yet when the client gave up (%s)",
                      l->t->host, l->t->port,
                      l->connected ? "the TLS handshake got no answer"
                                   : "the TCP connect got no answer");
        link_close(l, 0);
        return;
    }
    ERR_clear_error();
    if (SSL_write(l->ssl, buf->base, (int)nread) != (int)nread) {
        link_tls_fail(l);
        return;
    }
    link_flush(l);
}

/* ---- connecting --------------------------------------------------------------------------- */

/* The SSL object of a connected link: memory BIOs, SNI, the name or address to verify. */
static int link_ssl(rtls_link *l) {
    rtls *t = l->t;
    l->ssl = SSL_new(t->ctx);
    l->rbio = BIO_new(BIO_s_mem());
    l->wbio = BIO_new(BIO_s_mem());
    if (!l->ssl || !l->rbio || !l->wbio) {
        BIO_free(l->rbio);
        BIO_free(l->wbio);
        return -1;
    }
    SSL_set_bio(l->ssl, l->rbio, l->wbio);
    SSL_set_connect_state(l->ssl);
    if (t->verify_ip)
        return X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(l->ssl), t->verify_name) == 1 ? 0 : -1;
    if (SSL_set_tlsext_host_name(l->ssl, t->verify_name) != 1) return -1;
    return SSL_set1_host(l->ssl, t->verify_name) == 1 ? 0 : -1;
}

static void link_on_connected(uv_connect_t *req, int status) {
    rtls_link *l = req->data;
    rtls *t = l->t;
    if (l->closing) return;
    if (status < 0) {
        rtls_fail(t, "cannot connect to %s:%d: %s", t->host, t->port, uv_strerror(status));
        link_close(l, 0);
        return;
    }
    l->connected = 1;
    uv_tcp_nodelay(&l->remote, 1);
    uv_tcp_keepalive(&l->remote, 1, 60);
    if (link_ssl(l) != 0) {
        rtls_fail(t, "TLS with %s:%d: cannot set up OpenSSL: %s", t->host, t->port, ssl_reason());
        link_close(l, 0);
        return;
    }
    uv_read_start((uv_stream_t *)&l->remote, link_alloc, link_on_remote_read);
    link_handshake(l);
}

static int link_resolve(rtls_link *l);

static void link_on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
    rtls_link *l = req->data;
    rtls *t = l->t;
    l->gai_pending = 0;
    if (l->closing) {
        uv_freeaddrinfo(res);
        link_maybe_free(l);
        return;
    }
    if (status < 0 && l->family == AF_INET) { /* no IPv4 address: try IPv6, as hiredis does */
        l->family = AF_INET6;
        if (link_resolve(l) == 0) return;
    }
    if (status < 0) {
        rtls_fail(t, "cannot resolve %s: %s", t->host, uv_strerror(status));
        link_close(l, 0);
        return;
    }
    l->conn.data = l;
    int rv = uv_tcp_connect(&l->conn, &l->remote, res->ai_addr, link_on_connected);
    uv_freeaddrinfo(res);
    if (rv < 0) {
        rtls_fail(t, "cannot connect to %s:%d: %s", t->host, t->port, uv_strerror(rv));
        link_close(l, 0);
    }
}

static int link_resolve(rtls_link *l) {
    char port[16];
    snprintf(port, sizeof(port), "%d", l->t->port);
    struct addrinfo hints;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = l->family;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    l->gai.data = l;
    if (uv_getaddrinfo(l->t->loop, &l->gai, link_on_resolved, l->t->host, port, &hints) != 0)
        return -1;
    l->gai_pending = 1;
    return 0;
}

static void link_on_timeout(uv_timer_t *tm) {
    rtls_link *l = tm->data;
    rtls *t = l->t;
    if (l->established || l->closing) return;
    rtls_fail(t, "no TLS connection to %s:%d after %d ms (%s)", t->host, t->port, RTLS_HANDSHAKE_MS,
              l->connected ? "the TLS handshake got no answer" : "the TCP connect got no answer");
    link_close(l, 0);
}

/* A local connection: a link with its three handles, then the name lookup. */
static void rtls_on_accept(uv_stream_t *server, int status) {
    rtls *t = server->data;
    if (status < 0 || t->closing) return;
    rtls_link *l = calloc(1, sizeof(*l));
    if (!l) return;
    l->t = t;
    uv_pipe_init(t->loop, &l->local, 0);
    uv_tcp_init(t->loop, &l->remote);
    uv_timer_init(t->loop, &l->timer);
    l->local.data = l->remote.data = l->timer.data = l;
    l->open = 3;
    l->family = AF_INET;
    l->next = t->links;
    if (t->links) t->links->prev = l;
    t->links = l;
    t->n_links++;
    uv_mutex_lock(&t->mu);
    t->stats.links++;
    uv_mutex_unlock(&t->mu);
    if (uv_accept(server, (uv_stream_t *)&l->local) != 0) {
        link_close(l, 0);
        return;
    }
    if (t->n_links > RTLS_LINKS_MAX) {
        log_warn("redis %s: more than %d local connections to the TLS relay: refused", t->name,
                 RTLS_LINKS_MAX);
        link_close(l, 0);
        return;
    }
    uv_timer_start(&l->timer, link_on_timeout, RTLS_HANDSHAKE_MS, 0);
    if (link_resolve(l) != 0) {
        rtls_fail(t, "cannot resolve %s", t->host);
        link_close(l, 0);
    }
}

/* ---- the relay ---------------------------------------------------------------------------- */

static void rtls_on_listener_closed(uv_handle_t *h) {
    rtls *t = h->data;
    t->listener_open = 0;
    rtls_maybe_destroy(t);
}

void rtls_free(rtls *t) {
    if (!t || t->closing) return;
    t->closing = 1;
    if (t->dir[0]) {
        unlink(t->path);
        rmdir(t->dir);
    }
    for (rtls_link *l = t->links; l; l = l->next)
        link_close(l, 0);
    if (t->listener_open)
        uv_close((uv_handle_t *)&t->listener, rtls_on_listener_closed);
    else
        rtls_maybe_destroy(t);
}

/* The private directory and the listening socket in it. -1 with err. */
static int rtls_listen(rtls *t, cg_err *err) {
    const char *tmp = getenv("TMPDIR");
    if (!tmp || !tmp[0]) tmp = "/tmp";
    int n = snprintf(t->dir, sizeof(t->dir), "%s/chatgw-rtls-XXXXXX", tmp);
    if (n < 0 || (size_t)n >= sizeof(t->dir) ||
        (size_t)n + sizeof("/redis.sock") > sizeof(t->path)) {
        t->dir[0] = '\0';
        return cg_err_set(err, "bad_config", "redis TLS: $TMPDIR is too long for a unix socket");
    }
    if (!mkdtemp(t->dir)) { /* mode 0700 */
        t->dir[0] = '\0';
        return cg_err_set(err, "bad_config", "redis TLS: cannot make a directory in %s (TMPDIR)",
                          tmp);
    }
    memcpy(t->path, t->dir, (size_t)n); /* fits: checked above */
    memcpy(t->path + n, "/redis.sock", sizeof("/redis.sock"));
    uv_pipe_init(t->loop, &t->listener, 0);
    t->listener.data = t;
    t->listener_open = 1;
    int rv = uv_pipe_bind(&t->listener, t->path);
    if (rv == 0) rv = uv_listen((uv_stream_t *)&t->listener, 16, rtls_on_accept);
    if (rv != 0)
        return cg_err_set(err, "internal", "redis TLS: cannot listen on %s: %s", t->path,
                          uv_strerror(rv));
    return 0;
}

rtls *rtls_new(uv_loop_t *loop, const char *host, int port, const char *name, int log_failures,
               cg_err *err) {
    rtls_opts o;
    rtls_opts_current(&o);
    rtls *t = calloc(1, sizeof(*t));
    if (!t || uv_mutex_init(&t->mu) != 0) {
        free(t);
        cg_err_set(err, "internal", "out of memory");
        return NULL;
    }
    t->loop = loop;
    t->port = port;
    t->log_failures = log_failures;
    snprintf(t->host, sizeof(t->host), "%s", host);
    snprintf(t->name, sizeof(t->name), "%s", name ? name : "redis");
    snprintf(t->verify_name, sizeof(t->verify_name), "%s", o.server_name[0] ? o.server_name : host);
    unsigned char ip[16];
    t->verify_ip =
        inet_pton(AF_INET, t->verify_name, ip) == 1 || inet_pton(AF_INET6, t->verify_name, ip) == 1;
    t->ctx = rtls_ctx(&o, err);
    if (!t->ctx || rtls_listen(t, err) != 0) {
        rtls_free(t); /* the loop releases it once the listener (if any) is closed */
        return NULL;
    }
    return t;
}
