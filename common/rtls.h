/* rtls.h -- rediss://: Redis over TLS for hiredis 0.14 (which has no TLS), as an in-process relay.
 *
 * An rtls listens on a private unix socket (a fresh 0700 directory under $TMPDIR or /tmp, removed
 * by rtls_free). For each local connection accepted there (hiredis' redisAsyncConnectUnix or
 * redisConnectUnix to rtls_path()), it opens a TCP connection to Redis, does the TLS handshake
 * with OpenSSL (memory BIOs on libuv streams), verifies the server's certificate and name, and
 * then pumps bytes both ways with bounded queues: a side is not read while the other side's write
 * queue is over RTLS_QUEUE_MAX. A failure (name lookup, connect, handshake, certificate, a TLS
 * alert later) closes the local connection, which hiredis sees as the server closing it: rconn
 * reconnects with its back-off, and every new local connection is a new TLS connection.
 *
 * Why a relay and not TLS inside hiredis: hiredis 0.14 reads and writes its fd itself (no I/O
 * hooks, no redisAsyncConnectFd), so the only way to keep its parser (no hand-written RESP) is to
 * give it a plain socket whose other end is ours. A unix socket in a 0700 directory is reachable
 * by this user only, who could read redis_url's password anyway.
 *
 * The relay parses nothing from the network itself (OpenSSL parses TLS, hiredis parses RESP; the
 * relay only moves opaque bytes between them), so it has no fuzz target of its own.
 *
 * Options (rtls_opts): the CA that signed Redis' certificate (PEM file; empty: the system store),
 * an optional client certificate and key (Redis' tls-auth-clients yes), and the name to verify
 * (and send as SNI; empty: the URL's host; an IP address is verified against the certificate's
 * IP SANs). There is no switch to skip verification: give the CA of a self-signed certificate.
 *
 * Threads: an rtls lives on one libuv loop and is used from that loop's thread only, except
 * rtls_last_error(), which any thread may call. */
#ifndef CG_RTLS_H
#define CG_RTLS_H

#include <stddef.h>
#include <uv.h>

#include "err.h"

#define RTLS_QUEUE_MAX (256u * 1024u) /* bytes queued towards one side before the other pauses */
#define RTLS_HANDSHAKE_MS 10000       /* TCP connect + TLS handshake must finish within this */
#define RTLS_LINKS_MAX 16             /* local connections served at once per relay */

typedef struct rtls_opts {
    char ca[512];          /* redis_tls_ca: PEM CA file; "" the system's default store */
    char cert[512];        /* redis_tls_cert: PEM client certificate (chain); "" none */
    char key[512];         /* redis_tls_key: PEM private key of cert */
    char server_name[256]; /* redis_tls_server_name: name to verify and send as SNI; "" host */
} rtls_opts;

/* The options every later rtls_new() uses (the gateway's config keys). Without a call, they come
 * from the environment: CHATGW_REDIS_TLS_CA, _CERT, _KEY, _SERVER_NAME. Call before any rtls_new,
 * from the main thread. */
void rtls_set_opts(const rtls_opts *o);

typedef struct rtls rtls;

/* A relay to host:port on loop, listening at once. name is used in log lines (rconn's name).
 * log_failures: 1 logs each failure (error level once per streak of the same failure, debug for
 * its repeats); 0 logs nothing (the caller reads rtls_last_error). NULL with err when the options
 * are unusable (a CA, certificate or key file that cannot be loaded: the message names the file
 * and the key) or the socket cannot be made. The caller frees with rtls_free. */
rtls *rtls_new(uv_loop_t *loop, const char *host, int port, const char *name, int log_failures,
               cg_err *err);

/* The unix socket path hiredis connects to. */
const char *rtls_path(const rtls *t);

/* Copies the last failure of the relay into buf (n bytes, "" when none since the last successful
 * handshake) and returns buf. Any thread. */
const char *rtls_last_error(rtls *t, char *buf, size_t n);

/* What the relay did, for tests and benchmarks: local connections accepted, how often one side
 * stopped being read because the other side's queue was over RTLS_QUEUE_MAX, and the largest
 * queue seen on each side (at most RTLS_QUEUE_MAX plus one chunk). Any thread. */
typedef struct rtls_stats {
    unsigned long long links;
    unsigned long long paused_local;  /* hiredis not read: the queue to Redis was full */
    unsigned long long paused_remote; /* Redis not read: the queue to hiredis was full */
    size_t max_local_queued, max_remote_queued;
} rtls_stats;
void rtls_get_stats(rtls *t, rtls_stats *out);

/* Closes the listener (removing the socket and its directory) and every link; the memory is
 * released once the loop has run the close callbacks. NULL is ignored. */
void rtls_free(rtls *t);

#endif
