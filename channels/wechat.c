/* wechat.c -- see wechat.h. XML through expat with DTDs refused; crypto through OpenSSL. */
#include "wechat.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <expat.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "../common/util.h"
#include "chan.h"

#define WX_DEPTH_MAX 8

/* ---- signatures ---- */

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* hex(sha1(concat(sort(parts)))) into out[41]. Each part must be non-NULL and at most maxlen
 * bytes. Returns 0, or -1 with err "bad_value". */
static int sorted_sha1_hex(const char **parts, size_t n, size_t maxlen, char out[41], cg_err *err) {
    for (size_t i = 0; i < n; i++) {
        if (!parts[i]) return cg_err_set(err, "bad_value", "missing signature input");
        if (strlen(parts[i]) > maxlen && i < 3)
            return cg_err_set(err, "bad_value", "signature input too long");
    }
    qsort(parts, n, sizeof(parts[0]), cmp_str);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (!ctx) return cg_err_set(err, "nomem", "out of memory");
    int ok = EVP_DigestInit_ex(ctx, EVP_sha1(), NULL);
    for (size_t i = 0; ok && i < n; i++)
        ok = EVP_DigestUpdate(ctx, parts[i], strlen(parts[i]));
    unsigned char md[20];
    unsigned int mdlen = 0;
    if (ok) ok = EVP_DigestFinal_ex(ctx, md, &mdlen);
    EVP_MD_CTX_free(ctx);
    if (!ok || mdlen != sizeof(md)) return cg_err_set(err, "crypto", "sha1 failed");
    chan_hex_encode(md, sizeof(md), out);
    return 0;
}

/* Constant-time comparison of a computed lowercase hex digest with a given hex string. */
static int hex_matches(const char *computed, const char *given) {
    unsigned char a[20], b[20];
    if (!given || strlen(given) != 40) return 0;
    if (chan_hex_decode(computed, 40, a, sizeof(a)) < 0) return 0;
    if (chan_hex_decode(given, 40, b, sizeof(b)) < 0) return 0;
    return cg_ct_equal(a, sizeof(a), b, sizeof(b));
}

int wechat_verify_signature(const char *token, const char *timestamp, const char *nonce,
                            const char *signature, cg_err *err) {
    const char *parts[3] = {token, timestamp, nonce};
    char hex[41];
    if (!token || !*token) return cg_err_set(err, "bad_signature", "no token configured");
    if (sorted_sha1_hex(parts, 3, WECHAT_PARAM_MAX, hex, NULL) < 0)
        return cg_err_set(err, "bad_signature", "missing or over-long signature parameter");
    if (!hex_matches(hex, signature))
        return cg_err_set(err, "bad_signature", "signature does not match");
    return 0;
}

int wechat_msg_signature(const char *token, const char *timestamp, const char *nonce,
                         const char *encrypt, char out[41], cg_err *err) {
    const char *parts[4] = {token, timestamp, nonce, encrypt};
    if (!encrypt || strlen(encrypt) > WECHAT_BODY_MAX)
        return cg_err_set(err, "bad_value", "missing or over-long Encrypt");
    /* sorted_sha1_hex bounds the first three by WECHAT_PARAM_MAX before sorting */
    return sorted_sha1_hex(parts, 4, WECHAT_PARAM_MAX, out, err);
}

int wechat_verify_msg_signature(const char *token, const char *timestamp, const char *nonce,
                                const char *encrypt, const char *msg_signature, cg_err *err) {
    char hex[41];
    if (!token || !*token) return cg_err_set(err, "bad_signature", "no token configured");
    if (wechat_msg_signature(token, timestamp, nonce, encrypt, hex, NULL) < 0)
        return cg_err_set(err, "bad_signature", "missing or over-long signature parameter");
    if (!hex_matches(hex, msg_signature))
        return cg_err_set(err, "bad_signature", "msg_signature does not match");
    return 0;
}

int wechat_time_ok(long long ts_s, long long now_s, cg_err *err) {
    long long d = ts_s - now_s;
    if (d >= -WECHAT_TIME_WINDOW_S && d <= WECHAT_TIME_WINDOW_S) return 0;
    return cg_err_set(err, "stale", "timestamp %lld s %s the server clock (window +-%d s)",
                      d < 0 ? -d : d, d < 0 ? "behind" : "ahead of", WECHAT_TIME_WINDOW_S);
}

int wechat_check_post_query(const char *token, const char *timestamp, const char *nonce,
                            const char *signature, const char *encrypt_type, int aes_required,
                            long long now_s, int *aes, cg_err *err) {
    *aes = 0;
    if (wechat_verify_signature(token, timestamp, nonce, signature, err) < 0) return -1;
    int64_t ts = 0;
    if (chan_parse_i64(timestamp, 0, 253402300799LL, &ts) < 0)
        return cg_err_set(err, "stale", "timestamp is not a unix time");
    if (wechat_time_ok(ts, now_s, err) < 0) return -1;
    int plain = !encrypt_type || !strcmp(encrypt_type, "raw");
    if (!plain && strcmp(encrypt_type, "aes"))
        return cg_err_set(err, "bad_value", "unsupported encrypt_type");
    if (plain && aes_required)
        return cg_err_set(err, "encryption_required",
                          "plain-text message refused: wechat_aes_key is set, safe mode "
                          "(encrypt_type=aes) is required");
    if (!plain && !aes_required)
        return cg_err_set(err, "no_key", "safe-mode message but wechat_aes_key is not set");
    *aes = !plain;
    return 0;
}

/* ---- safe-mode crypto ---- */

/* key = base64_decode(aes_key + "="), 32 bytes. */
static int wx_key(const char *aes_key, unsigned char key[32], cg_err *err) {
    if (!aes_key || strlen(aes_key) != WECHAT_AES_KEY_LEN)
        return cg_err_set(err, "bad_value", "EncodingAESKey must be 43 characters");
    unsigned char b64[WECHAT_AES_KEY_LEN + 1], raw[36];
    memcpy(b64, aes_key, WECHAT_AES_KEY_LEN);
    b64[WECHAT_AES_KEY_LEN] = '=';
    /* EVP_DecodeBlock counts the '=' as a zero byte: 44 characters -> 33 bytes */
    if (EVP_DecodeBlock(raw, b64, sizeof(b64)) != 33)
        return cg_err_set(err, "bad_value", "EncodingAESKey is not base64");
    memcpy(key, raw, 32);
    OPENSSL_cleanse(raw, sizeof(raw));
    return 0;
}

/* Decode base64 (whitespace tolerated). *out malloc'd. */
static int b64_decode(const char *in, size_t len, unsigned char **out, size_t *out_len,
                      cg_err *err) {
    EVP_ENCODE_CTX *ctx = EVP_ENCODE_CTX_new();
    unsigned char *buf = malloc(len / 4 * 3 + 80);
    if (!ctx || !buf) {
        EVP_ENCODE_CTX_free(ctx);
        free(buf);
        return cg_err_set(err, "nomem", "out of memory");
    }
    int n1 = 0, n2 = 0;
    EVP_DecodeInit(ctx);
    int rc = EVP_DecodeUpdate(ctx, buf, &n1, (const unsigned char *)in, (int)len);
    if (rc >= 0) rc = EVP_DecodeFinal(ctx, buf + n1, &n2);
    EVP_ENCODE_CTX_free(ctx);
    if (rc < 0) {
        free(buf);
        return cg_err_set(err, "bad_value", "Encrypt is not base64");
    }
    *out = buf;
    *out_len = (size_t)n1 + (size_t)n2;
    return 0;
}

/* AES-256-CBC without padding over n bytes (a multiple of 16), IV = key[0:16]. */
static int aes_cbc(int enc, const unsigned char key[32], const unsigned char *in, size_t n,
                   unsigned char *out) {
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    if (!ctx) return -1;
    int l1 = 0, l2 = 0;
    int ok = EVP_CipherInit_ex(ctx, EVP_aes_256_cbc(), NULL, key, key, enc) &&
             EVP_CIPHER_CTX_set_padding(ctx, 0) && EVP_CipherUpdate(ctx, out, &l1, in, (int)n) &&
             EVP_CipherFinal_ex(ctx, out + l1, &l2);
    EVP_CIPHER_CTX_free(ctx);
    return ok && (size_t)(l1 + l2) == n ? 0 : -1;
}

int wechat_decrypt(const char *aes_key, const char *appid_expected, const char *b64, size_t b64_len,
                   char **out, size_t *out_len, cg_err *err) {
    unsigned char key[32];
    if (!b64 || !appid_expected || !*appid_expected)
        return cg_err_set(err, "bad_value", "missing Encrypt or appid");
    if (b64_len > WECHAT_BODY_MAX) return cg_err_set(err, "too_large", "Encrypt too long");
    if (wx_key(aes_key, key, err) < 0) return -1;

    unsigned char *cipher = NULL, *plain = NULL;
    size_t n = 0;
    int rc = -1;
    if (b64_decode(b64, b64_len, &cipher, &n, err) < 0) goto done;
    if (n < 32 || n % 16 != 0) {
        cg_err_set(err, "bad_cipher", "cipher text length %zu is not whole blocks", n);
        goto done;
    }
    plain = malloc(n + 1);
    if (!plain) {
        cg_err_set(err, "nomem", "out of memory");
        goto done;
    }
    if (aes_cbc(0, key, cipher, n, plain) < 0) {
        cg_err_set(err, "bad_cipher", "decryption failed");
        goto done;
    }
    /* PKCS#7 to 32-byte blocks: pad in 1..32, every pad byte equal to pad (checked without an
     * early exit; the msg_signature check before this call already authenticates the body). */
    unsigned pad = plain[n - 1];
    unsigned bad = (pad == 0) | (pad > 32);
    for (unsigned i = 0; i < 32; i++) {
        unsigned in_pad = (unsigned)(i < pad);
        bad |= in_pad & (unsigned)(plain[n - 1 - i] != pad);
    }
    if (bad) {
        cg_err_set(err, "bad_cipher", "bad padding");
        goto done;
    }
    size_t body = n - pad;
    if (body < 20) {
        cg_err_set(err, "bad_cipher", "plain text too short");
        goto done;
    }
    size_t mlen = (size_t)plain[16] << 24 | (size_t)plain[17] << 16 | (size_t)plain[18] << 8 |
                  (size_t)plain[19];
    if (mlen > body - 20) {
        cg_err_set(err, "bad_cipher", "inner length out of range");
        goto done;
    }
    const unsigned char *appid = plain + 20 + mlen;
    size_t appid_len = body - 20 - mlen;
    if (!cg_ct_equal(appid, appid_len, appid_expected, strlen(appid_expected))) {
        cg_err_set(err, "bad_appid", "message is for another appid");
        goto done;
    }
    char *res = malloc(mlen + 1);
    if (!res) {
        cg_err_set(err, "nomem", "out of memory");
        goto done;
    }
    memcpy(res, plain + 20, mlen);
    res[mlen] = '\0';
    *out = res;
    *out_len = mlen;
    rc = 0;
done:
    OPENSSL_cleanse(key, sizeof(key));
    if (plain) OPENSSL_cleanse(plain, n);
    free(plain);
    free(cipher);
    return rc;
}

int wechat_encrypt(const char *aes_key, const char *appid, const char *plain, size_t len,
                   const unsigned char *random16, char **out, cg_err *err) {
    unsigned char key[32];
    if (!appid || !*appid || strlen(appid) > WECHAT_PARAM_MAX || (!plain && len))
        return cg_err_set(err, "bad_value", "missing appid or plain text");
    if (len > WECHAT_BODY_MAX / 2) return cg_err_set(err, "too_large", "plain text too long");
    if (wx_key(aes_key, key, err) < 0) return -1;

    size_t alen = strlen(appid), body = 20 + len + alen;
    size_t pad = 32 - body % 32, n = body + pad;
    unsigned char *buf = malloc(n), *cipher = malloc(n);
    char *b64 = malloc(4 * ((n + 2) / 3) + 1);
    int rc = -1;
    if (!buf || !cipher || !b64) {
        cg_err_set(err, "nomem", "out of memory");
        goto done;
    }
    if (random16) {
        memcpy(buf, random16, 16);
    } else if (RAND_bytes(buf, 16) != 1) {
        cg_err_set(err, "crypto", "RNG failed");
        goto done;
    }
    buf[16] = (unsigned char)(len >> 24);
    buf[17] = (unsigned char)(len >> 16);
    buf[18] = (unsigned char)(len >> 8);
    buf[19] = (unsigned char)len;
    if (len) memcpy(buf + 20, plain, len);
    memcpy(buf + 20 + len, appid, alen);
    memset(buf + body, (int)pad, pad);
    if (aes_cbc(1, key, buf, n, cipher) < 0) {
        cg_err_set(err, "crypto", "encryption failed");
        goto done;
    }
    EVP_EncodeBlock((unsigned char *)b64, cipher, (int)n);
    *out = b64;
    b64 = NULL;
    rc = 0;
done:
    OPENSSL_cleanse(key, sizeof(key));
    if (buf) OPENSSL_cleanse(buf, n);
    free(buf);
    free(cipher);
    free(b64);
    return rc;
}

/* ---- XML ---- */

/* The children of <xml> we read; everything else is ignored. */
enum wx_field {
    F_FROM,
    F_CREATETIME,
    F_MSGTYPE,
    F_CONTENT,
    F_MSGID,
    F_PICURL,
    F_MEDIAID,
    F_FORMAT,
    F_RECOGNITION,
    F_LOCX,
    F_LOCY,
    F_LABEL,
    F_TITLE,
    F_DESC,
    F_URL,
    F_EVENT,
    F_ENCRYPT,
    F_COUNT
};

static const char *const wx_field_names[F_COUNT] = {
    "FromUserName", "CreateTime",  "MsgType",     "Content",    "MsgId",      "PicUrl",
    "MediaId",      "Format",      "Recognition", "Location_X", "Location_Y", "Label",
    "Title",        "Description", "Url",         "Event",      "Encrypt",
};

typedef struct wx_buf {
    char *s; /* NUL-terminated once seen */
    size_t len, cap;
    int seen;
} wx_buf;

typedef struct wx_doc {
    XML_Parser p;
    int depth;
    int cur; /* field collected at depth 2, -1 none */
    int root_seen;
    const char *why; /* first reason to refuse, NULL = none */
    const char *code;
    wx_buf f[F_COUNT];
} wx_doc;

static void wx_fail(wx_doc *d, const char *code, const char *why) {
    if (!d->why) {
        d->why = why;
        d->code = code;
    }
    XML_StopParser(d->p, XML_FALSE);
}

static void XMLCALL wx_start(void *ud, const XML_Char *name, const XML_Char **atts) {
    wx_doc *d = ud;
    (void)atts;
    if (++d->depth > WX_DEPTH_MAX) {
        wx_fail(d, "bad_xml", "XML nested too deeply");
        return;
    }
    if (d->depth == 1) {
        if (strcmp(name, "xml") != 0) wx_fail(d, "bad_xml", "root element is not <xml>");
        d->root_seen = 1;
        return;
    }
    d->cur = -1;
    if (d->depth != 2) return;
    for (int i = 0; i < F_COUNT; i++) {
        if (strcmp(name, wx_field_names[i]) != 0) continue;
        if (d->f[i].seen) {
            wx_fail(d, "bad_xml", "duplicate element");
            return;
        }
        d->f[i].seen = 1;
        d->cur = i;
        return;
    }
}

static void XMLCALL wx_end(void *ud, const XML_Char *name) {
    wx_doc *d = ud;
    (void)name;
    d->cur = -1;
    d->depth--;
}

static void XMLCALL wx_text(void *ud, const XML_Char *s, int len) {
    wx_doc *d = ud;
    if (d->cur < 0 || d->depth != 2 || len <= 0) return;
    wx_buf *b = &d->f[d->cur];
    if (b->len + (size_t)len > WECHAT_BODY_MAX) {
        wx_fail(d, "too_large", "element text too long");
        return;
    }
    if (b->len + (size_t)len + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->len + (size_t)len + 1)
            cap *= 2;
        char *ns = realloc(b->s, cap);
        if (!ns) {
            wx_fail(d, "nomem", "out of memory");
            return;
        }
        b->s = ns;
        b->cap = cap;
    }
    memcpy(b->s + b->len, s, (size_t)len);
    b->len += (size_t)len;
    b->s[b->len] = '\0';
}

static void XMLCALL wx_doctype(void *ud, const XML_Char *name, const XML_Char *sysid,
                               const XML_Char *pubid, int has_internal_subset) {
    (void)name, (void)sysid, (void)pubid, (void)has_internal_subset;
    wx_fail(ud, "bad_xml", "DOCTYPE not allowed");
}

static void XMLCALL wx_entity_decl(void *ud, const XML_Char *name, int is_param,
                                   const XML_Char *value, int value_len, const XML_Char *base,
                                   const XML_Char *sysid, const XML_Char *pubid,
                                   const XML_Char *notation) {
    (void)name, (void)is_param, (void)value, (void)value_len, (void)base, (void)sysid, (void)pubid,
        (void)notation;
    wx_fail(ud, "bad_xml", "entity declarations not allowed");
}

static int XMLCALL wx_ext_entity(XML_Parser p, const XML_Char *context, const XML_Char *base,
                                 const XML_Char *sysid, const XML_Char *pubid) {
    (void)p, (void)context, (void)base, (void)sysid, (void)pubid;
    return XML_STATUS_ERROR;
}

static void wx_doc_free(wx_doc *d) {
    for (int i = 0; i < F_COUNT; i++)
        free(d->f[i].s);
}

/* Parse body into d (zeroed here); 0 or -1 with err. d must be wx_doc_free()d either way. */
static int wx_doc_parse(wx_doc *d, const char *body, size_t len, cg_err *err) {
    memset(d, 0, sizeof(*d));
    d->cur = -1;
    if (!body || len == 0) return cg_err_set(err, "bad_xml", "empty body");
    if (len > WECHAT_BODY_MAX)
        return cg_err_set(err, "too_large", "body of %zu bytes exceeds %d", len, WECHAT_BODY_MAX);
    d->p = XML_ParserCreate("UTF-8");
    if (!d->p) return cg_err_set(err, "nomem", "out of memory");
    XML_SetUserData(d->p, d);
    XML_SetElementHandler(d->p, wx_start, wx_end);
    XML_SetCharacterDataHandler(d->p, wx_text);
    XML_SetStartDoctypeDeclHandler(d->p, wx_doctype);
    XML_SetEntityDeclHandler(d->p, wx_entity_decl);
    XML_SetExternalEntityRefHandler(d->p, wx_ext_entity);
    XML_SetParamEntityParsing(d->p, XML_PARAM_ENTITY_PARSING_NEVER);
    enum XML_Status st = XML_Parse(d->p, body, (int)len, XML_TRUE);
    int rc = 0;
    if (d->why) {
        rc = cg_err_set(err, d->code, "%s", d->why);
    } else if (st != XML_STATUS_OK) {
        rc = cg_err_set(err, "bad_xml", "XML error at line %lu: %s",
                        (unsigned long)XML_GetCurrentLineNumber(d->p),
                        XML_ErrorString(XML_GetErrorCode(d->p)));
    } else if (!d->root_seen) {
        rc = cg_err_set(err, "bad_xml", "no root element");
    }
    XML_ParserFree(d->p);
    d->p = NULL;
    return rc;
}

/* The value of a field, or NULL when the element was absent or empty. */
static const char *wx_get(const wx_doc *d, enum wx_field f) {
    return d->f[f].seen && d->f[f].len ? d->f[f].s : NULL;
}

int wechat_parse_encrypted_envelope(const char *body, size_t len, char **encrypt, cg_err *err) {
    wx_doc d;
    int rc = wx_doc_parse(&d, body, len, err);
    if (rc == 0 && !wx_get(&d, F_ENCRYPT))
        rc = cg_err_set(err, "missing_field", "no <Encrypt> element");
    if (rc == 0) {
        *encrypt = d.f[F_ENCRYPT].s;
        d.f[F_ENCRYPT].s = NULL;
    }
    wx_doc_free(&d);
    return rc;
}

/* 1 when s is a decimal MsgId that fits in 64 unsigned bits. */
static int msgid_ok(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n > 20) return 0;
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9') return 0;
    return n < 20 || strcmp(s, "18446744073709551615") <= 0;
}

/* Set text from a printf-style format; too long or bad UTF-8 -> -1 with err. */

static const char *nz(const char *s) {
    return s ? s : "";
}

/* Fill out from the message-type specific fields of d. */
static int wx_fill_content(const wx_doc *d, const char *type, msg *out, int *ignored, cg_err *err) {
    const char *media = wx_get(d, F_MEDIAID);
    char url[MSG_URL_MAX];

    if (strcmp(type, "text") == 0) {
        const char *c = wx_get(d, F_CONTENT);
        if (!c) return cg_err_set(err, "missing_field", "text message without Content");
        chan_msg_inbound(out, MSG_TEXT, CH_WECHAT);
        return msg_set_text(out, c, d->f[F_CONTENT].len, err);
    }
    if (strcmp(type, "image") == 0) {
        const char *pic = wx_get(d, F_PICURL);
        if (!pic && !media) return cg_err_set(err, "missing_field", "image without PicUrl");
        chan_msg_inbound(out, MSG_ATTACHMENT, CH_WECHAT);
        if (pic)
            snprintf(url, sizeof(url), "%s", pic);
        else
            snprintf(url, sizeof(url), "wechat-media:%s", media);
        return chan_msg_add_att(out, url, "image/*", media, 0, err);
    }
    if (strcmp(type, "voice") == 0 || strcmp(type, "video") == 0 ||
        strcmp(type, "shortvideo") == 0) {
        if (!media || !chan_id_ok(media, 200))
            return cg_err_set(err, "missing_field", "%s without a valid MediaId", type);
        chan_msg_inbound(out, MSG_ATTACHMENT, CH_WECHAT);
        char mime[MSG_CODE_MAX] = "video/*";
        const char *fmt = wx_get(d, F_FORMAT);
        if (type[0] == 'v' && type[1] == 'o')
            snprintf(mime, sizeof(mime), "audio/%s", fmt && chan_id_ok(fmt, 16) ? fmt : "*");
        snprintf(url, sizeof(url), "wechat-media:%s", media);
        if (chan_msg_add_att(out, url, mime, media, 0, err) < 0) return -1;
        const char *rec = wx_get(d, F_RECOGNITION);
        return rec ? msg_set_text(out, rec, d->f[F_RECOGNITION].len, err) : 0;
    }
    if (strcmp(type, "location") == 0) {
        const char *x = wx_get(d, F_LOCX), *y = wx_get(d, F_LOCY), *label = wx_get(d, F_LABEL);
        if (!x || !y) return cg_err_set(err, "missing_field", "location without coordinates");
        chan_msg_inbound(out, MSG_TEXT, CH_WECHAT);
        return chan_set_textf(out, err, "[location] %s%s(%s,%s)", nz(label), label ? " " : "", x,
                              y);
    }
    if (strcmp(type, "link") == 0) {
        const char *t = wx_get(d, F_TITLE), *desc = wx_get(d, F_DESC), *u = wx_get(d, F_URL);
        if (!u) return cg_err_set(err, "missing_field", "link without Url");
        chan_msg_inbound(out, MSG_TEXT, CH_WECHAT);
        return chan_set_textf(out, err, "[link] %s%s%s%s%s", nz(t), t ? "\n" : "", nz(desc),
                              desc ? "\n" : "", u);
    }
    if (strcmp(type, "event") == 0) {
        const char *ev = wx_get(d, F_EVENT);
        if (ev && strcmp(ev, "subscribe") == 0) {
            chan_msg_inbound(out, MSG_JOIN, CH_WECHAT);
            return 0;
        }
        chan_msg_inbound(out, MSG_UNKNOWN, CH_WECHAT);
        *ignored = 1;
        return 0;
    }
    chan_msg_inbound(out, MSG_TEXT, CH_WECHAT);
    return chan_set_textf(out, err, "[unsupported wechat message: %s]",
                          chan_id_ok(type, 32) ? type : "?");
}

int wechat_parse_xml(const char *body, size_t len, msg *out, int *is_event_ignored, cg_err *err) {
    wx_doc d;
    int ignored = 0;
    msg_free(out);
    if (wx_doc_parse(&d, body, len, err) < 0) goto fail;

    const char *from = wx_get(&d, F_FROM), *type = wx_get(&d, F_MSGTYPE);
    const char *ct = wx_get(&d, F_CREATETIME), *id = wx_get(&d, F_MSGID);
    int64_t created = 0;
    if (!from || !type || !ct) {
        cg_err_set(err, "missing_field", "FromUserName, MsgType and CreateTime are required");
        goto fail;
    }
    if (!chan_id_ok(from, MSG_ID_MAX - 1)) {
        cg_err_set(err, "bad_value", "FromUserName is not a valid openid");
        goto fail;
    }
    if (chan_parse_i64(ct, 0, 253402300799LL, &created) < 0) {
        cg_err_set(err, "bad_value", "CreateTime is not a unix time");
        goto fail;
    }
    if (id && !msgid_ok(id)) {
        cg_err_set(err, "bad_value", "MsgId is not a 64-bit decimal");
        goto fail;
    }
    if (!id && strcmp(type, "event") != 0) {
        cg_err_set(err, "missing_field", "message without MsgId");
        goto fail;
    }
    if (wx_fill_content(&d, type, out, &ignored, err) < 0) goto fail;

    chan_copys(out->sender_id, sizeof(out->sender_id), from);
    chan_copys(out->meta.platform_chat_id, sizeof(out->meta.platform_chat_id), from);
    out->ts_client_ms = created * 1000;
    if (id)
        snprintf(out->meta.platform_msg_id, sizeof(out->meta.platform_msg_id), "%s", id);
    else
        snprintf(out->meta.platform_msg_id, sizeof(out->meta.platform_msg_id), "ev:%s:%s", from,
                 ct);
    wx_doc_free(&d);
    if (is_event_ignored) *is_event_ignored = ignored;
    return 0;
fail:
    wx_doc_free(&d);
    msg_free(out);
    if (is_event_ignored) *is_event_ignored = 0;
    return -1;
}

int wechat_render_reply_json(const msg *m, const char *openid, char **out, cg_err *err) {
    if (!chan_id_ok(openid, MSG_META_MAX - 1))
        return cg_err_set(err, "bad_value", "invalid openid");
    size_t len = 0;
    char *text = chan_reply_text(m, &len, err);
    if (!text) return -1;
    json_t *root = json_pack("{s:s, s:s, s:{s:s%}}", "touser", openid, "msgtype", "text", "text",
                             "content", text, len);
    free(text);
    char *s = root ? json_dumps(root, JSON_COMPACT) : NULL;
    json_decref(root);
    if (!s) return cg_err_set(err, "nomem", "cannot render JSON");
    *out = s;
    return 0;
}
