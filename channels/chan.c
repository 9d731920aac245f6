/* chan.c -- see chan.h. */
#include "chan.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include <stdlib.h>
#include <string.h>

/* Length of the UTF-8 sequence starting with byte c (1..4), 0 for a continuation byte. */
static size_t utf8_seq_len(unsigned char c) {
    if (c < 0x80) return 1;
    if ((c & 0xE0) == 0xC0) return 2;
    if ((c & 0xF0) == 0xE0) return 3;
    if ((c & 0xF8) == 0xF0) return 4;
    return 0;
}

int chan_copy(char *dst, size_t n, const char *src, size_t len) {
    dst[0] = '\0';
    if (!msg_utf8_valid(src, len)) return -1;
    size_t o = 0, i = 0;
    while (i < len) {
        size_t sl = utf8_seq_len((unsigned char)src[i]);
        if (sl == 0 || i + sl > len) break; /* cannot happen after msg_utf8_valid */
        if (o + sl > n - 1) break;
        if (sl == 1) {
            unsigned char c = (unsigned char)src[i];
            dst[o] = (c < 0x20 || c == 0x7f) ? ' ' : (char)c;
        } else {
            memcpy(dst + o, src + i, sl);
        }
        o += sl;
        i += sl;
    }
    dst[o] = '\0';
    return 0;
}

int chan_copys(char *dst, size_t n, const char *src) {
    if (!src) {
        dst[0] = '\0';
        return 0;
    }
    return chan_copy(dst, n, src, strlen(src));
}

int chan_id_ok(const char *s, size_t max) {
    if (!s || !*s) return 0;
    size_t len = strlen(s);
    if (len > max) return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) continue;
        if (c != '\0' && strchr("._:@+=/-", c)) continue;
        return 0;
    }
    return 1;
}

static int hexval(unsigned char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

int chan_hex_decode(const char *hex, size_t hexlen, unsigned char *out, size_t outlen) {
    if (hexlen != 2 * outlen) return -1;
    for (size_t i = 0; i < outlen; i++) {
        int hi = hexval((unsigned char)hex[2 * i]), lo = hexval((unsigned char)hex[2 * i + 1]);
        if (hi < 0 || lo < 0) return -1;
        out[i] = (unsigned char)(hi << 4 | lo);
    }
    return 0;
}

void chan_hex_encode(const unsigned char *in, size_t len, char *out) {
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * len] = '\0';
}

int chan_parse_i64(const char *s, int64_t min, int64_t max, int64_t *out) {
    if (!s) return -1;
    int neg = 0;
    if (*s == '-') {
        neg = 1;
        s++;
    }
    size_t nd = strlen(s);
    if (nd == 0 || nd > 19) return -1;
    uint64_t v = 0;
    for (size_t i = 0; i < nd; i++) {
        if (s[i] < '0' || s[i] > '9') return -1;
        v = v * 10 + (uint64_t)(s[i] - '0'); /* 19 digits never overflow uint64 */
    }
    if (!neg && v > (uint64_t)INT64_MAX) return -1;
    if (neg && v > (uint64_t)INT64_MAX + 1) return -1;
    int64_t r = neg ? (int64_t)(0 - v) : (int64_t)v;
    if (r < min || r > max) return -1;
    *out = r;
    return 0;
}

const char *chan_json_str(const json_t *obj, const char *key) {
    if (!json_is_object(obj)) return NULL;
    const json_t *v = json_object_get(obj, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

json_t *chan_json_load(const char *body, size_t len, cg_err *err) {
    if (!body || len == 0) {
        cg_err_set(err, "bad_json", "empty body");
        return NULL;
    }
    if (len > CHAN_BODY_MAX) {
        cg_err_set(err, "too_large", "body of %zu bytes exceeds %d", len, CHAN_BODY_MAX);
        return NULL;
    }
    json_error_t jerr;
    json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        cg_err_set(err, "bad_json", "invalid JSON at line %d column %d", jerr.line, jerr.column);
        return NULL;
    }
    if (!json_is_object(root)) {
        json_decref(root);
        cg_err_set(err, "bad_json", "top level is not an object");
        return NULL;
    }
    return root;
}

char *chan_reply_text(const msg *m, size_t *len, cg_err *err) {
    size_t total = m->text ? m->text_len : 0;
    uint8_t natt = m->n_att > MSG_ATT_MAX ? MSG_ATT_MAX : m->n_att;
    for (uint8_t i = 0; i < natt; i++)
        total += 1 + strnlen(m->att[i].url, MSG_URL_MAX);
    if (total == 0) {
        cg_err_set(err, "missing_field", "nothing to send: no text and no attachment");
        return NULL;
    }
    char *out = malloc(total + 1);
    if (!out) {
        cg_err_set(err, "nomem", "out of memory");
        return NULL;
    }
    size_t o = 0;
    if (m->text && m->text_len) {
        memcpy(out, m->text, m->text_len);
        o = m->text_len;
    }
    for (uint8_t i = 0; i < natt; i++) {
        size_t ul = strnlen(m->att[i].url, MSG_URL_MAX);
        if (ul == 0) continue;
        if (o > 0) out[o++] = '\n';
        memcpy(out + o, m->att[i].url, ul);
        o += ul;
    }
    out[o] = '\0';
    if (o == 0 || !msg_utf8_valid(out, o)) {
        free(out);
        cg_err_set(err, o ? "bad_utf8" : "missing_field", "nothing valid to send");
        return NULL;
    }
    *len = o;
    return out;
}

void chan_msg_inbound(msg *m, msg_type type, msg_channel ch) {
    m->type = type;
    m->channel = ch;
    m->dir = DIR_IN;
    m->role = ROLE_CUSTOMER;
}

int chan_msg_add_att(msg *m, const char *url, const char *mime, const char *name, uint64_t size,
                     cg_err *err) {
    if (m->n_att >= MSG_ATT_MAX)
        return cg_err_set(err, "too_large", "more than %d attachments", MSG_ATT_MAX);
    if (!url || !*url) return cg_err_set(err, "missing_field", "attachment without reference");
    if (strlen(url) >= MSG_URL_MAX) return cg_err_set(err, "too_large", "attachment url too long");
    msg_attachment *a = msg_att_slot(m);
    if (!a) return cg_err_set(err, "nomem", "out of memory");
    if (chan_copys(a->url, sizeof(a->url), url) < 0)
        return cg_err_set(err, "bad_value", "attachment url is not UTF-8");
    if (chan_copys(a->mime, sizeof(a->mime), mime) < 0) a->mime[0] = '\0';
    if (chan_copys(a->name, sizeof(a->name), name) < 0) a->name[0] = '\0';
    a->size = size;
    m->n_att++;
    return 0;
}

int chan_set_textf(msg *m, cg_err *err, const char *fmt, ...) {
    va_list ap;
    char *s = NULL;
    va_start(ap, fmt);
    int n = vasprintf(&s, fmt, ap);
    va_end(ap);
    if (n < 0) return cg_err_set(err, "nomem", "out of memory");
    int rc = msg_set_text(m, s, (size_t)n, err);
    free(s);
    return rc;
}
