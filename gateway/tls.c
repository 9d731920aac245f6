/* tls.c -- see tls.h. */
#include "tls.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>

/* lws serves only unencrypted keys (no ssl_private_key_password is configured): refuse the
 * passphrase prompt OpenSSL would otherwise put on the terminal. */
static int tls_no_passphrase(char *buf, int size, int rwflag, void *u) {
    (void)buf, (void)size, (void)rwflag, (void)u;
    return -1;
}

/* OpenSSL's last queued reason as text (and the queue emptied), for error messages. */
static const char *tls_reason(char *buf, size_t n) {
    unsigned long e = ERR_peek_last_error();
    if (e)
        ERR_error_string_n(e, buf, n);
    else
        snprintf(buf, n, "unknown error");
    ERR_clear_error();
    return buf;
}

/* The last n characters of a path for an error message (the file name end matters most). */
static const char *tls_tail(const char *path, size_t n) {
    size_t len = strlen(path);
    return len > n ? path + len - n : path;
}

/* The unencrypted PEM private key in path, or NULL with err naming the key and the reason. The
 * caller frees it (EVP_PKEY_free). */
static EVP_PKEY *tls_read_key(const char *path, cg_err *err) {
    char why[160];
    FILE *f = fopen(path, "r");
    if (!f) {
        cg_err_set(err, "bad_config", "tls_key '%s': %s", tls_tail(path, 100), strerror(errno));
        return NULL;
    }
    EVP_PKEY *pk = PEM_read_PrivateKey(f, NULL, tls_no_passphrase, NULL);
    fclose(f);
    if (!pk)
        cg_err_set(err, "bad_config", "tls_key '%s' is not an unencrypted PEM private key: %s",
                   tls_tail(path, 60), tls_reason(why, sizeof(why)));
    return pk;
}

int tls_check(const char *cert, const char *key, cg_err *err) {
    if (!cert[0] && !key[0]) return 0;
    if (!cert[0] || !key[0])
        return cg_err_set(err, "bad_config", "tls_cert and tls_key go together: %s is not set",
                          cert[0] ? "tls_key" : "tls_cert");
    char why[160];
    FILE *f = fopen(cert, "r");
    if (!f)
        return cg_err_set(err, "bad_config", "tls_cert '%s': %s", tls_tail(cert, 100),
                          strerror(errno));
    fclose(f);
    EVP_PKEY *pk = tls_read_key(key, err);
    if (!pk) return -1;
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    int rv = -1;
    if (!ctx)
        cg_err_set(err, "bad_config", "TLS: %s", tls_reason(why, sizeof(why)));
    else if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1)
        cg_err_set(err, "bad_config", "tls_cert '%s' is not a PEM certificate: %s",
                   tls_tail(cert, 60), tls_reason(why, sizeof(why)));
    else if (SSL_CTX_use_PrivateKey(ctx, pk) != 1 || SSL_CTX_check_private_key(ctx) != 1)
        cg_err_set(err, "bad_config", "tls_key '%s' does not match tls_cert '%s'",
                   tls_tail(key, 60), tls_tail(cert, 60));
    else
        rv = 1;
    ERR_clear_error();
    SSL_CTX_free(ctx);
    EVP_PKEY_free(pk);
    return rv;
}
