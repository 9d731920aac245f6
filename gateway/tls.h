/* tls.h -- the gateway's own TLS listener (https:// and wss://), checked before lws sees it.
 *
 * libwebsockets (built with OpenSSL) serves TLS itself when the vhost gets a certificate and a
 * key (main.c sets info.ssl_cert_filepath / ssl_private_key_filepath); it then accepts TLS only
 * on that port. When the files are wrong, lws fails to create the context with nothing better
 * than "cannot listen"; tls_check() loads them the same way first, so the start-up error names
 * the key, the file and OpenSSL's reason. */
#ifndef CG_GW_TLS_H
#define CG_GW_TLS_H

#include "../common/err.h"

/* 0: TLS off (both empty). 1: on, the certificate (chain) and the unencrypted private key are
 * readable PEM and the key matches the certificate. -1 with err (code "bad_config") when only
 * one of them is set, a file cannot be read or parsed, the key is encrypted, or they do not
 * match. */
int tls_check(const char *cert, const char *key, cg_err *err);

#endif
