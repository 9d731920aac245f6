/* email.c -- see email.h. MIME parsing and building by GMime 3; here only part selection,
 * charset conversion (iconv through glib), HTML tag stripping and quote removal. */
#include "email.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gmime/gmime.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "chan.h"

#define EMAIL_PARTS_MAX 256 /* MIME parts visited at most */
#define EMAIL_ADDR_MAX 254

static void email_gmime_init(void) {
    static gsize once = 0;
    if (g_once_init_enter(&once)) {
        g_mime_init();
        g_once_init_leave(&once, 1);
    }
}

/* ---- small string helpers ---- */

static int ascii_prefix_ci(const char *s, const char *prefix) {
    return g_ascii_strncasecmp(s, prefix, strlen(prefix)) == 0;
}

static int is_hex(char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* Copy UTF-8 (made valid first) into a fixed field, controls replaced, cut at a boundary. */
static void copy_text(char *dst, size_t n, const char *src) {
    if (!src) {
        dst[0] = '\0';
        return;
    }
    if (chan_copys(dst, n, src) == 0) return;
    gchar *valid = g_utf8_make_valid(src, -1);
    if (chan_copys(dst, n, valid) < 0) dst[0] = '\0';
    g_free(valid);
}

/* sha256 of len bytes as "sha256:" + 32 hex digits (128 bits) into out. */
static void sha_id(const char *prefix, const void *data, size_t len, char *out, size_t n) {
    unsigned char md[32];
    unsigned int mdlen = 0;
    char hex[65];
    if (!EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL)) memset(md, 0, sizeof(md));
    chan_hex_encode(md, 16, hex);
    snprintf(out, n, "%s%s", prefix, hex);
}

/* ---- charset conversion ---- */

/* The labels real mail uses for simplified Chinese, all decoded as GB18030 (a superset). */
static int is_gb_label(const char *cs) {
    static const char *const gb[] = {"gb2312",   "gbk",     "gb18030",     "gb_2312-80", "x-gbk",
                                     "cp936",    "ms936",   "windows-936", "euc-cn",     "x-euc-cn",
                                     "csgb2312", "chinese", "csgbk",       "gb231280"};
    for (size_t i = 0; i < sizeof(gb) / sizeof(gb[0]); i++)
        if (g_ascii_strcasecmp(cs, gb[i]) == 0) return 1;
    return 0;
}

/* Convert with iconv; an invalid or truncated input sequence becomes U+FFFD and conversion goes
 * on. Returns a new GString or NULL when the charset is unknown to iconv. *errors counts the
 * replaced sequences. */
static GString *iconv_to_utf8(const char *in, size_t len, const char *charset, size_t *errors) {
    GIConv cd = g_iconv_open("UTF-8", charset);
    if (cd == (GIConv)-1) return NULL;
    GString *out = g_string_sized_new(len * 3 / 2 + 16);
    char buf[4096];
    gchar *ip = (gchar *)in;
    gsize il = len;
    *errors = 0;
    while (il > 0) {
        gchar *op = buf;
        gsize ol = sizeof(buf);
        gsize r = g_iconv(cd, &ip, &il, &op, &ol);
        g_string_append_len(out, buf, (gssize)(op - buf));
        if (r != (gsize)-1) break;
        if (errno == E2BIG) continue;
        /* EILSEQ or EINVAL: replace one byte and resynchronise */
        g_string_append(out, "\xEF\xBF\xBD");
        (*errors)++;
        ip++;
        il--;
        g_iconv(cd, NULL, NULL, NULL, NULL);
    }
    /* flush shift state */
    gchar *op = buf;
    gsize ol = sizeof(buf);
    g_iconv(cd, NULL, NULL, &op, &ol);
    g_string_append_len(out, buf, (gssize)(op - buf));
    g_iconv_close(cd);
    return out;
}

/* Decode the bytes of a text part labelled charset (may be NULL) to valid UTF-8. */
static GString *to_utf8(const char *in, size_t len, const char *charset) {
    size_t errors = 0;
    GString *s = NULL;
    if (charset && *charset) {
        const char *name = is_gb_label(charset) ? "GB18030" : g_mime_charset_iconv_name(charset);
        if (g_ascii_strcasecmp(name, "utf-8") == 0 || g_ascii_strcasecmp(name, "utf8") == 0 ||
            g_ascii_strcasecmp(charset, "us-ascii") == 0) {
            if (g_utf8_validate(in, (gssize)len, NULL)) return g_string_new_len(in, (gssize)len);
        }
        s = iconv_to_utf8(in, len, name, &errors);
        if (s) return s;
    }
    /* no or unknown label: UTF-8 if it is, else GB18030 if it is, else windows-1252 */
    if (g_utf8_validate(in, (gssize)len, NULL)) return g_string_new_len(in, (gssize)len);
    s = iconv_to_utf8(in, len, "GB18030", &errors);
    if (s && errors == 0) return s;
    if (s) g_string_free(s, TRUE);
    s = iconv_to_utf8(in, len, "WINDOWS-1252", &errors);
    if (s) return s;
    gchar *valid = g_utf8_make_valid(in, (gssize)len);
    s = g_string_new(valid);
    g_free(valid);
    return s;
}

/* CRLF and lone CR -> LF; NUL and other C0 controls except tab and LF dropped. In place. */
static void normalize_newlines(GString *s) {
    size_t o = 0;
    for (size_t i = 0; i < s->len; i++) {
        unsigned char c = (unsigned char)s->str[i];
        if (c == '\r') {
            if (i + 1 < s->len && s->str[i + 1] == '\n') continue;
            c = '\n';
        }
        if ((c < 0x20 && c != '\n' && c != '\t') || c == 0x7f) continue;
        s->str[o++] = (char)c;
    }
    g_string_truncate(s, o);
}

/* ---- HTML reduced to text (tag stripping only; the document was decoded by GMime) ---- */

typedef struct html_out {
    GString *s;
    int bq; /* <blockquote> depth: its lines get a "> " prefix so quote removal drops them */
} html_out;

static void html_put(html_out *h, const char *p, size_t n) {
    int at_line_start = h->s->len == 0 || h->s->str[h->s->len - 1] == '\n';
    if (at_line_start && h->bq > 0) g_string_append(h->s, "> ");
    g_string_append_len(h->s, p, (gssize)n);
}

static void html_newline(html_out *h) {
    if (h->s->len > 0 && h->s->str[h->s->len - 1] == ' ') g_string_truncate(h->s, h->s->len - 1);
    g_string_append_c(h->s, '\n');
}

static void html_space(html_out *h) {
    size_t n = h->s->len;
    if (n == 0 || h->s->str[n - 1] == ' ' || h->s->str[n - 1] == '\n') return;
    g_string_append_c(h->s, ' ');
}

/* Decode the entity starting at s[0] == '&'; returns bytes consumed (0 = not an entity). */
static size_t html_entity(const char *s, size_t n, html_out *h) {
    static const struct {
        const char *name;
        const char *text;
    } named[] = {{"amp", "&"},  {"lt", "<"},   {"gt", ">"},         {"quot", "\""},
                 {"apos", "'"}, {"nbsp", " "}, {"copy", "\xC2\xA9"}};
    size_t end = 1;
    while (end < n && end < 12 && s[end] != ';')
        end++;
    if (end >= n || s[end] != ';' || end < 2) return 0;
    char name[12];
    memcpy(name, s + 1, end - 1);
    name[end - 1] = '\0';
    if (name[0] == '#') {
        char *ep = NULL;
        errno = 0;
        unsigned long cp = (name[1] == 'x' || name[1] == 'X') ? strtoul(name + 2, &ep, 16)
                                                              : strtoul(name + 1, &ep, 10);
        if (!ep || *ep || ep == name + 1 || errno) return 0;
        if (cp == 0 || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) cp = 0xFFFD;
        if (cp < 0x20 && cp != '\t' && cp != '\n') cp = ' ';
        char utf8[8];
        int k = g_unichar_to_utf8((gunichar)cp, utf8);
        html_put(h, utf8, (size_t)k);
        return end + 1;
    }
    for (size_t i = 0; i < sizeof(named) / sizeof(named[0]); i++) {
        if (g_ascii_strcasecmp(name, named[i].name) != 0) continue;
        html_put(h, named[i].text, strlen(named[i].text));
        return end + 1;
    }
    return 0;
}

/* Index just past the '>' closing the tag that starts at s[i] == '<' (quotes honoured), or n. */
static size_t html_tag_end(const char *s, size_t n, size_t i) {
    char q = 0;
    for (i++; i < n; i++) {
        if (q) {
            if (s[i] == q) q = 0;
        } else if (s[i] == '"' || s[i] == '\'') {
            q = s[i];
        } else if (s[i] == '>') {
            return i + 1;
        }
    }
    return n;
}

/* Position of the first case-insensitive occurrence of needle in s[i..n), or n. */
static size_t find_ci(const char *s, size_t n, size_t i, const char *needle) {
    size_t k = strlen(needle);
    for (; i + k <= n; i++)
        if (g_ascii_strncasecmp(s + i, needle, k) == 0) return i;
    return n;
}

static GString *html_to_text(const char *s, size_t n) {
    static const char *const blocks[] = {"br", "p",  "div", "tr", "li", "ul", "ol", "table",
                                         "h1", "h2", "h3",  "h4", "h5", "h6", "hr", "pre"};
    static const char *const skipped[] = {"script", "style", "head", "title"};
    html_out h = {g_string_sized_new(n / 2 + 16), 0};
    size_t i = 0;
    while (i < n) {
        char c = s[i];
        if (c == '&') {
            size_t k = html_entity(s + i, n - i, &h);
            if (k == 0) html_put(&h, "&", 1);
            i += k ? k : 1;
            continue;
        }
        if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
            html_space(&h);
            i++;
            continue;
        }
        if (c != '<') {
            size_t j = i;
            while (j < n && s[j] != '<' && s[j] != '&' && s[j] != ' ' && s[j] != '\t' &&
                   s[j] != '\r' && s[j] != '\n')
                j++;
            html_put(&h, s + i, j - i);
            i = j;
            continue;
        }
        if (i + 4 <= n && memcmp(s + i, "<!--", 4) == 0) {
            size_t e = find_ci(s, n, i + 4, "-->");
            i = e < n ? e + 3 : n;
            continue;
        }
        /* a tag: read its name */
        size_t j = i + 1;
        int closing = 0;
        if (j < n && s[j] == '/') {
            closing = 1;
            j++;
        }
        char name[12];
        size_t k = 0;
        while (j < n && k < sizeof(name) - 1 && g_ascii_isalnum(s[j]))
            name[k++] = g_ascii_tolower(s[j++]);
        name[k] = '\0';
        if (k == 0 && !closing && (j >= n || s[j] != '!')) { /* a lone '<' is text */
            html_put(&h, "<", 1);
            i++;
            continue;
        }
        i = html_tag_end(s, n, i);
        for (size_t b = 0; b < sizeof(skipped) / sizeof(skipped[0]); b++) {
            if (closing || strcmp(name, skipped[b]) != 0) continue;
            char end_tag[16];
            snprintf(end_tag, sizeof(end_tag), "</%s", skipped[b]);
            size_t e = find_ci(s, n, i, end_tag);
            i = e < n ? html_tag_end(s, n, e) : n;
        }
        if (strcmp(name, "blockquote") == 0) {
            html_newline(&h);
            h.bq += closing ? (h.bq > 0 ? -1 : 0) : 1;
            continue;
        }
        if (strcmp(name, "td") == 0 || strcmp(name, "th") == 0) {
            html_space(&h);
            continue;
        }
        for (size_t b = 0; b < sizeof(blocks) / sizeof(blocks[0]); b++) {
            if (strcmp(name, blocks[b]) != 0) continue;
            html_newline(&h);
            break;
        }
    }
    return h.s;
}

/* ---- quoted text removal ---- */

static const char *skip_ws(const char *s, const char *end) {
    while (s < end && (*s == ' ' || *s == '\t'))
        s++;
    return s;
}

static int contains(const char *s, size_t n, const char *needle) {
    size_t k = strlen(needle);
    for (size_t i = 0; i + k <= n; i++)
        if (memcmp(s + i, needle, k) == 0) return 1;
    return 0;
}

static int ends_with_trimmed(const char *s, size_t n, const char *suffix) {
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        n--;
    size_t k = strlen(suffix);
    return n >= k && memcmp(s + n - k, suffix, k) == 0;
}

/* 1 when the line (n bytes, next line nn bytes or NULL) starts the quoted earlier message. */
static int is_quote_header(const char *l, size_t n, const char *next, size_t nn) {
    const char *end = l + n, *p = skip_ws(l, end);
    size_t m = (size_t)(end - p);
    if (contains(p, m, "-----Original Message-----") ||
        contains(p, m, "----- Original Message -----") || contains(p, m, "-----原始邮件-----"))
        return 1;
    if (m >= 3 && memcmp(p, "On ", 3) == 0)
        return ends_with_trimmed(p, m, "wrote:") || (next && ends_with_trimmed(next, nn, "wrote:"));
    if (m >= 3 && memcmp(p, "在", 3) == 0) {
        if (contains(p, m, "写道：") || contains(p, m, "写道:")) return 1;
        return next &&
               (ends_with_trimmed(next, nn, "写道：") || ends_with_trimmed(next, nn, "写道:"));
    }
    if (m >= 20 && strspn(p, "_") >= 20 && next) {
        const char *q = skip_ws(next, next + nn);
        return ascii_prefix_ci(q, "From:") || strncmp(q, "发件人", strlen("发件人")) == 0;
    }
    return 0;
}

/* The new text of a reply: lines starting with '>' dropped, everything from a quote header on
 * dropped, surrounding blank lines trimmed. Returns a new GString. */
static GString *strip_quotes(const GString *in) {
    GString *out = g_string_sized_new(in->len + 1);
    const char *s = in->str, *end = s + in->len;
    while (s < end) {
        const char *nl = memchr(s, '\n', (size_t)(end - s));
        const char *le = nl ? nl : end;
        const char *next = nl ? nl + 1 : NULL;
        size_t nn = 0;
        if (next) {
            const char *nl2 = memchr(next, '\n', (size_t)(end - next));
            nn = (size_t)((nl2 ? nl2 : end) - next);
        }
        if (is_quote_header(s, (size_t)(le - s), next, nn)) break;
        const char *p = skip_ws(s, le);
        if (!(p < le && *p == '>')) {
            g_string_append_len(out, s, (gssize)(le - s));
            g_string_append_c(out, '\n');
        }
        s = next ? next : end;
    }
    /* trim trailing whitespace lines, leading blank lines, and collapse 3+ newlines */
    while (out->len > 0 && g_ascii_isspace(out->str[out->len - 1]))
        g_string_truncate(out, out->len - 1);
    size_t lead = 0;
    while (lead < out->len && (out->str[lead] == '\n' || out->str[lead] == ' '))
        lead++;
    g_string_erase(out, 0, (gssize)lead);
    size_t o = 0, run = 0;
    for (size_t i = 0; i < out->len; i++) {
        run = out->str[i] == '\n' ? run + 1 : 0;
        if (run > 2) continue;
        out->str[o++] = out->str[i];
    }
    g_string_truncate(out, o);
    return out;
}

/* ---- headers ---- */

/* RFC 2047 4.2 "Q" payload to bytes: '_' is a space, "=XX" a byte, anything else itself. */
static GString *q_decode(const char *s, size_t n) {
    GString *out = g_string_sized_new(n);
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '_') {
            g_string_append_c(out, ' ');
        } else if (s[i] == '=' && i + 2 < n && is_hex(s[i + 1]) && is_hex(s[i + 2])) {
            g_string_append_c(
                out, (char)(g_ascii_xdigit_value(s[i + 1]) << 4 | g_ascii_xdigit_value(s[i + 2])));
            i += 2;
        } else {
            g_string_append_c(out, s[i]);
        }
    }
    return out;
}

static gboolean q_to_b(const GMatchInfo *mi, GString *res, gpointer data) {
    (void)data;
    gchar *charset = g_match_info_fetch(mi, 1), *payload = g_match_info_fetch(mi, 2);
    GString *bytes = q_decode(payload, strlen(payload));
    gchar *b64 = g_base64_encode((const guchar *)bytes->str, bytes->len);
    g_string_append_printf(res, "=?%s?B?%s?=", charset, b64);
    g_free(b64);
    g_string_free(bytes, TRUE);
    g_free(charset);
    g_free(payload);
    return FALSE;
}

/* The decoded Subject. GMime 3.2 joins the bytes of adjacent encoded-words only when they share
 * both charset and encoding, and real mail splits one character over a B-word and a Q-word. So
 * Q-words are first rewritten as the equivalent B-words (GRegex finds them; only the payload is
 * recoded), then GMime decodes the whole value. Returns a g_malloc'd string or NULL. */
static char *subject_decode(GMimeMessage *gm, GMimeParserOptions *opts) {
    GMimeHeaderList *hl = g_mime_object_get_header_list(GMIME_OBJECT(gm));
    GMimeHeader *h = hl ? g_mime_header_list_get_header(hl, "Subject") : NULL;
    const char *raw = h ? g_mime_header_get_raw_value(h) : NULL;
    if (!raw) return NULL;
    static GRegex *q_word;
    static gsize once = 0;
    if (g_once_init_enter(&once)) {
        q_word =
            g_regex_new("=\\?([^?\\s]{1,40})\\?[Qq]\\?([^?\\s]*)\\?=", G_REGEX_OPTIMIZE, 0, NULL);
        g_once_init_leave(&once, 1);
    }
    gchar *unfolded = g_mime_utils_header_unfold(raw);
    gchar *rewritten =
        q_word ? g_regex_replace_eval(q_word, unfolded, -1, 0, 0, q_to_b, NULL, NULL) : NULL;
    char *res = g_mime_utils_header_decode_text(opts, rewritten ? rewritten : unfolded);
    g_free(rewritten);
    g_free(unfolded);
    return res;
}

/* Strip "Re:", "Fwd:", "回复：", ... repeatedly from the front of s (in place). */
static void strip_subject_prefixes(char *s) {
    static const char *const ascii[] = {"re:", "fw:", "fwd:", "aw:", "wg:"};
    static const char *const cjk[] = {"回复:", "回复：", "答复:", "答复：",
                                      "转发:", "转发：", "回覆:", "回覆："};
    char *p = s;
    for (;;) {
        while (*p == ' ' || *p == '\t')
            p++;
        size_t k = 0;
        for (size_t i = 0; !k && i < sizeof(ascii) / sizeof(ascii[0]); i++)
            if (ascii_prefix_ci(p, ascii[i])) k = strlen(ascii[i]);
        for (size_t i = 0; !k && i < sizeof(cjk) / sizeof(cjk[0]); i++)
            if (strncmp(p, cjk[i], strlen(cjk[i])) == 0) k = strlen(cjk[i]);
        if (!k) break;
        p += k;
    }
    memmove(s, p, strlen(p) + 1);
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        s[--n] = '\0';
}

/* Find "<marker><32 hex><term>" in s; copy the lowercase hex to tok and return a pointer to the
 * marker, or NULL. */
static const char *find_token(const char *s, const char *marker, char term,
                              char tok[EMAIL_TOKEN_LEN + 1]) {
    size_t ml = strlen(marker);
    for (const char *p = s; p && *p; p++) {
        if (g_ascii_strncasecmp(p, marker, ml) != 0) continue;
        const char *h = p + ml;
        size_t i = 0;
        while (i < EMAIL_TOKEN_LEN && is_hex(h[i]))
            i++;
        if (i != EMAIL_TOKEN_LEN || h[i] != term) continue;
        for (i = 0; i < EMAIL_TOKEN_LEN; i++)
            tok[i] = g_ascii_tolower(h[i]);
        tok[EMAIL_TOKEN_LEN] = '\0';
        return p;
    }
    return NULL;
}

/* Remove "[#cg-<hex>]" from subject (in place), recording the token. */
static void subject_token(char *subject, email_info *info) {
    char tok[EMAIL_TOKEN_LEN + 1];
    const char *p = find_token(subject, "[#cg-", ']', tok);
    if (!p) return;
    memcpy(info->conv_token, tok, sizeof(tok));
    char *start = (char *)p, *after = start + 5 + EMAIL_TOKEN_LEN + 1;
    while (start > subject && start[-1] == ' ')
        start--;
    memmove(start, after, strlen(after) + 1);
}

/* A "+cg-<hex>@" plus-address among the recipients (To, Cc, Delivered-To, X-Original-To). */
static void recipient_token(GMimeMessage *gm, email_info *info) {
    static const char *const hdrs[] = {"Delivered-To", "X-Original-To"};
    const GMimeAddressType types[] = {GMIME_ADDRESS_TYPE_TO, GMIME_ADDRESS_TYPE_CC};
    char tok[EMAIL_TOKEN_LEN + 1];
    if (info->conv_token[0]) return;
    for (size_t t = 0; t < 2; t++) {
        InternetAddressList *l = g_mime_message_get_addresses(gm, types[t]);
        int n = l ? internet_address_list_length(l) : 0;
        for (int i = 0; i < n && i < 50; i++) {
            InternetAddress *ia = internet_address_list_get_address(l, i);
            if (!INTERNET_ADDRESS_IS_MAILBOX(ia)) continue;
            const char *a = internet_address_mailbox_get_addr(INTERNET_ADDRESS_MAILBOX(ia));
            if (a && find_token(a, "+cg-", '@', tok)) {
                memcpy(info->conv_token, tok, sizeof(tok));
                return;
            }
        }
    }
    for (size_t i = 0; i < 2; i++) {
        const char *v = g_mime_object_get_header(GMIME_OBJECT(gm), hdrs[i]);
        if (v && find_token(v, "+cg-", '@', tok)) {
            memcpy(info->conv_token, tok, sizeof(tok));
            return;
        }
    }
}

/* The first word of a header value, lowercased, into out. */
static void header_word(const char *v, char *out, size_t n) {
    size_t k = 0;
    while (*v == ' ' || *v == '\t')
        v++;
    while (*v && *v != ';' && *v != ' ' && *v != '\t' && *v != '\r' && *v != '\n' && k + 1 < n)
        out[k++] = g_ascii_tolower(*v++);
    out[k] = '\0';
}

static int detect_auto(GMimeMessage *gm, const char *from_addr) {
    GMimeObject *o = GMIME_OBJECT(gm);
    char w[32];
    const char *v = g_mime_object_get_header(o, "Auto-Submitted");
    if (v) {
        header_word(v, w, sizeof(w));
        if (strcmp(w, "no") != 0) return 1;
    }
    if ((v = g_mime_object_get_header(o, "Precedence"))) {
        header_word(v, w, sizeof(w));
        if (!strcmp(w, "bulk") || !strcmp(w, "junk") || !strcmp(w, "auto_reply") ||
            !strcmp(w, "list"))
            return 1;
    }
    if (g_mime_object_get_header(o, "X-Autoreply") || g_mime_object_get_header(o, "X-Autorespond"))
        return 1;
    if ((v = g_mime_object_get_header(o, "Return-Path"))) {
        header_word(v, w, sizeof(w));
        if (strcmp(w, "<>") == 0) return 1;
    }
    if (ascii_prefix_ci(from_addr, "mailer-daemon@") ||
        g_ascii_strcasecmp(from_addr, "mailer-daemon") == 0)
        return 1;
    GMimeObject *body = g_mime_message_get_mime_part(gm);
    if (body &&
        g_mime_content_type_is_type(g_mime_object_get_content_type(body), "multipart", "report"))
        return 1;
    return 0;
}

/* Copy id into dst when a reply can carry it (email_msgid_ok), else leave dst "". Threading
 * headers a reply could not render back are dropped here, at ingestion: the mail is kept, it
 * just does not thread by that id. Returns 1 when copied. */
static int thread_id_copy(char *dst, size_t n, const char *id) {
    dst[0] = '\0';
    if (!email_msgid_ok(id)) return 0;
    copy_text(dst, n, id);
    return 1;
}

/* Message-ID, In-Reply-To and the first EMAIL_REFS_MAX References (renderable ones only). */
static void thread_ids(GMimeMessage *gm, GMimeParserOptions *opts, email_info *info) {
    thread_id_copy(info->message_id, sizeof(info->message_id), g_mime_message_get_message_id(gm));
    const char *v = g_mime_object_get_header(GMIME_OBJECT(gm), "In-Reply-To");
    GMimeReferences *r = v ? g_mime_references_parse(opts, v) : NULL;
    int n = r ? g_mime_references_length(r) : 0;
    for (int i = 0; i < n && !info->in_reply_to[0]; i++)
        thread_id_copy(info->in_reply_to, sizeof(info->in_reply_to),
                       g_mime_references_get_message_id(r, i));
    if (r) g_mime_references_free(r);
    v = g_mime_object_get_header(GMIME_OBJECT(gm), "References");
    r = v ? g_mime_references_parse(opts, v) : NULL;
    n = r ? g_mime_references_length(r) : 0;
    for (int i = 0; i < n && info->n_references < EMAIL_REFS_MAX; i++)
        info->n_references += thread_id_copy(info->references[info->n_references], MSG_META_MAX,
                                             g_mime_references_get_message_id(r, i));
    if (r) g_mime_references_free(r);
}

/* The first mailbox of From that a reply can be addressed to (email_addr_ok: what
 * email_render_reply accepts as To). 0; -1 when From has no mailbox; -2 when it has only
 * mailboxes a reply cannot go to (quoted or special characters, no domain...). */
static int from_mailbox(GMimeMessage *gm, email_info *info) {
    InternetAddressList *l = g_mime_message_get_from(gm);
    int n = l ? internet_address_list_length(l) : 0, seen = 0;
    for (int i = 0; i < n && i < 50; i++) {
        InternetAddress *ia = internet_address_list_get_address(l, i);
        if (!INTERNET_ADDRESS_IS_MAILBOX(ia)) continue;
        const char *a = internet_address_mailbox_get_addr(INTERNET_ADDRESS_MAILBOX(ia));
        if (!a || !*a) continue;
        seen = 1;
        if (!email_addr_ok(a) || chan_copys(info->from_addr, sizeof(info->from_addr), a) < 0)
            continue;
        copy_text(info->from_name, sizeof(info->from_name), internet_address_get_name(ia));
        return 0;
    }
    return seen ? -2 : -1;
}

/* ---- body and attachments ---- */

typedef struct walk_ctx {
    GMimeObject *plain, *html; /* first inline text/plain and text/html */
    msg *m;
    email_info *info;
    const char *att_base; /* message id for attachment references */
    int visited;
} walk_ctx;

/* Decoded size of a part's content (or of a whole attached message). */
static uint64_t decoded_size(GMimeObject *o) {
    GMimeStream *null = g_mime_stream_null_new();
    if (GMIME_IS_PART(o)) {
        GMimeDataWrapper *dw = g_mime_part_get_content(GMIME_PART(o));
        if (dw) g_mime_data_wrapper_write_to_stream(dw, null);
    } else {
        g_mime_object_write_to_stream(o, NULL, null);
    }
    uint64_t n = GMIME_STREAM_NULL(null)->written;
    g_object_unref(null);
    return n;
}

static void add_attachment(walk_ctx *w, GMimeObject *o, const char *default_name) {
    unsigned idx = w->info->n_attachments++;
    if (w->m->n_att >= MSG_ATT_MAX) return;
    char url[MSG_URL_MAX], name[MSG_NAME_MAX];
    snprintf(url, sizeof(url), "email-att:%s/%u", w->att_base, idx);
    const char *fn = GMIME_IS_PART(o) ? g_mime_part_get_filename(GMIME_PART(o)) : NULL;
    copy_text(name, sizeof(name), fn ? fn : default_name);
    char *mime = g_mime_content_type_get_mime_type(g_mime_object_get_content_type(o));
    char mime_s[MSG_CODE_MAX];
    copy_text(mime_s, sizeof(mime_s), mime);
    g_free(mime);
    (void)chan_msg_add_att(w->m, url, mime_s, name, decoded_size(o), NULL);
}

static void walk(walk_ctx *w, GMimeObject *o, int depth) {
    if (!o || depth > EMAIL_DEPTH_MAX || ++w->visited > EMAIL_PARTS_MAX) return;
    if (GMIME_IS_MULTIPART(o)) {
        GMimeMultipart *mp = GMIME_MULTIPART(o);
        int n = g_mime_multipart_get_count(mp);
        for (int i = 0; i < n; i++)
            walk(w, g_mime_multipart_get_part(mp, i), depth + 1);
        return;
    }
    if (GMIME_IS_MESSAGE_PART(o)) { /* a forwarded message: listed, not opened */
        add_attachment(w, o, "message.eml");
        return;
    }
    if (!GMIME_IS_PART(o)) return;
    GMimeContentType *ct = g_mime_object_get_content_type(o);
    int inline_part = !g_mime_part_is_attachment(GMIME_PART(o));
    if (inline_part && !w->plain && g_mime_content_type_is_type(ct, "text", "plain")) {
        w->plain = o;
        return;
    }
    if (inline_part && !w->html && g_mime_content_type_is_type(ct, "text", "html")) {
        w->html = o;
        return;
    }
    add_attachment(w, o, "attachment");
}

/* The text of a text part, transfer-decoded by GMime and converted to UTF-8. */
static GString *part_text(GMimeObject *o) {
    GMimeDataWrapper *dw = g_mime_part_get_content(GMIME_PART(o));
    if (!dw) return g_string_new("");
    GMimeStream *mem = g_mime_stream_mem_new();
    g_mime_data_wrapper_write_to_stream(dw, mem);
    GByteArray *ba = g_mime_stream_mem_get_byte_array(GMIME_STREAM_MEM(mem));
    GString *s = to_utf8((const char *)ba->data, ba->len,
                         g_mime_object_get_content_type_parameter(o, "charset"));
    g_object_unref(mem);
    normalize_newlines(s);
    return s;
}

/* Choose and clean the body text; cut to MSG_TEXT_MAX at a character boundary. */
static GString *body_text(walk_ctx *w) {
    GString *raw = w->plain ? part_text(w->plain) : NULL;
    int blank = !raw || strspn(raw->str, " \t\n") == raw->len;
    if (blank && w->html) {
        if (raw) g_string_free(raw, TRUE);
        GString *h = part_text(w->html);
        raw = html_to_text(h->str, h->len);
        g_string_free(h, TRUE);
    }
    if (!raw) return g_string_new("");
    GString *t = strip_quotes(raw);
    if (t->len == 0) { /* nothing but quotes: keep what was sent */
        g_string_assign(t, raw->str);
        while (t->len > 0 && g_ascii_isspace(t->str[t->len - 1]))
            g_string_truncate(t, t->len - 1);
    }
    g_string_free(raw, TRUE);
    if (t->len > MSG_TEXT_MAX) {
        size_t n = MSG_TEXT_MAX;
        while (n > 0 && ((unsigned char)t->str[n] & 0xC0) == 0x80)
            n--;
        g_string_truncate(t, n);
        w->info->truncated = 1;
    }
    return t;
}

/* ---- parse ---- */

static int email_fill(GMimeMessage *gm, GMimeParserOptions *opts, const char *raw, size_t len,
                      msg *out, email_info *info, cg_err *err) {
    int from = from_mailbox(gm, info);
    if (from == -1) return cg_err_set(err, "missing_field", "no From address");
    if (from < 0)
        return cg_err_set(err, "bad_value",
                          "the From address cannot be answered by mail: it is not a plain "
                          "address (quoted, with spaces or special characters)");
    thread_ids(gm, opts, info);
    char *subject = subject_decode(gm, opts);
    copy_text(info->subject, sizeof(info->subject), subject);
    g_free(subject);
    subject_token(info->subject, info);
    strip_subject_prefixes(info->subject);
    recipient_token(gm, info);
    info->is_auto = detect_auto(gm, info->from_addr);

    if (info->message_id[0])
        copy_text(out->meta.platform_msg_id, sizeof(out->meta.platform_msg_id), info->message_id);
    else
        sha_id("sha256:", raw, len, out->meta.platform_msg_id, sizeof(out->meta.platform_msg_id));
    copy_text(out->meta.thread_id, sizeof(out->meta.thread_id), info->message_id);
    copy_text(out->meta.in_reply_to, sizeof(out->meta.in_reply_to), info->in_reply_to);
    copy_text(out->meta.subject, sizeof(out->meta.subject), info->subject);
    copy_text(out->meta.platform_chat_id, sizeof(out->meta.platform_chat_id), info->from_addr);
    copy_text(out->sender_name, sizeof(out->sender_name), info->from_name);
    if (strlen(info->from_addr) < sizeof(out->sender_id)) {
        for (size_t i = 0; info->from_addr[i]; i++)
            out->sender_id[i] = g_ascii_tolower(info->from_addr[i]);
    } else {
        gchar *lower = g_ascii_strdown(info->from_addr, -1);
        sha_id("h:", lower, strlen(lower), out->sender_id, sizeof(out->sender_id));
        g_free(lower);
    }
    GDateTime *dt = g_mime_message_get_date(gm);
    if (dt && g_date_time_to_unix(dt) > 0)
        out->ts_client_ms = g_date_time_to_unix(dt) * 1000 + g_date_time_get_microsecond(dt) / 1000;

    walk_ctx w = {.m = out, .info = info, .att_base = out->meta.platform_msg_id};
    walk(&w, g_mime_message_get_mime_part(gm), 1);
    GString *t = body_text(&w);
    if (t->len == 0 && info->subject[0]) g_string_assign(t, info->subject);
    if (t->len == 0 && out->n_att == 0) g_string_assign(t, "[empty e-mail]");
    chan_msg_inbound(out, t->len == 0 && out->n_att > 0 ? MSG_ATTACHMENT : MSG_TEXT, CH_EMAIL);
    int rc = t->len > 0 ? msg_set_text(out, t->str, t->len, err) : 0;
    g_string_free(t, TRUE);
    return rc;
}

int email_parse(const char *raw, size_t len, msg *out, email_info *info, cg_err *err) {
    msg_free(out);
    memset(info, 0, sizeof(*info));
    if (!raw || len == 0) return cg_err_set(err, "bad_email", "empty message");
    if (len > EMAIL_RAW_MAX)
        return cg_err_set(err, "too_large", "message of %zu bytes exceeds %d", len, EMAIL_RAW_MAX);
    email_gmime_init();

    GMimeStream *stream = g_mime_stream_mem_new_with_buffer(raw, len);
    GMimeParser *parser = g_mime_parser_new_with_stream(stream);
    GMimeParserOptions *opts = g_mime_parser_options_new();
    static const char *fallback[] = {"UTF-8", "GB18030", "windows-1252", NULL};
    g_mime_parser_options_set_fallback_charsets(opts, fallback);
    g_mime_parser_options_set_rfc2047_compliance_mode(opts, GMIME_RFC_COMPLIANCE_LOOSE);
    g_mime_parser_options_set_address_compliance_mode(opts, GMIME_RFC_COMPLIANCE_LOOSE);
    g_mime_parser_options_set_parameter_compliance_mode(opts, GMIME_RFC_COMPLIANCE_LOOSE);
    g_mime_parser_set_format(parser, GMIME_FORMAT_MESSAGE);
    GMimeMessage *gm = g_mime_parser_construct_message(parser, opts);
    int rc;
    if (!gm)
        rc = cg_err_set(err, "bad_email", "not a MIME message");
    else
        rc = email_fill(gm, opts, raw, len, out, info, err);
    if (gm) g_object_unref(gm);
    g_mime_parser_options_free(opts);
    g_object_unref(parser);
    g_object_unref(stream);
    if (rc < 0) {
        msg_free(out);
        memset(info, 0, sizeof(*info));
    }
    return rc;
}

/* ---- render ---- */

int email_addr_ok(const char *a) {
    if (!a || !*a || strlen(a) > EMAIL_ADDR_MAX || !msg_utf8_valid(a, strlen(a))) return 0;
    const char *at = strchr(a, '@');
    if (!at || at == a || !at[1] || strchr(at + 1, '@')) return 0;
    for (const char *p = a; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c <= 0x20 || c == 0x7f || strchr("<>()[]\\,;:\"", c)) return 0;
    }
    return 1;
}

int email_msgid_ok(const char *s) {
    if (!s || !*s || strlen(s) > 250) return 0;
    for (const char *p = s; *p; p++)
        if (*p <= 0x20 || *p >= 0x7f || *p == '<' || *p == '>') return 0;
    return 1;
}

/* Controls (C0, DEL) in a fixed UTF-8 field become spaces, in place. */
static void blank_controls(char *s) {
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f) *s = ' ';
}

int email_inbound_check(msg *m, cg_err *err) {
    if (!email_addr_ok(m->meta.platform_chat_id))
        return cg_err_set(err, "bad_value",
                          "the reply address (meta.platform_chat_id, else sender_id) cannot be "
                          "answered by mail: it is not a plain address");
    if (m->meta.thread_id[0] && !email_msgid_ok(m->meta.thread_id)) m->meta.thread_id[0] = '\0';
    if (m->meta.in_reply_to[0] && !email_msgid_ok(m->meta.in_reply_to))
        m->meta.in_reply_to[0] = '\0';
    blank_controls(m->meta.subject);
    blank_controls(m->sender_name);
    return 0;
}

static int domain_ok(const char *s) {
    if (!s || !*s || strlen(s) > 200) return 0;
    for (const char *p = s; *p; p++)
        if (!g_ascii_isalnum(*p) && *p != '.' && *p != '-') return 0;
    return 1;
}

static int optional_text_ok(const char *s, size_t max) {
    if (!s) return 1;
    size_t n = strlen(s);
    if (n > max || !msg_utf8_valid(s, n)) return 0;
    for (const char *p = s; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f) return 0;
    return 1;
}

static int token_ok(const char *t) {
    if (!t || !*t) return 1;
    if (strlen(t) != EMAIL_TOKEN_LEN) return 0;
    for (size_t i = 0; i < EMAIL_TOKEN_LEN; i++)
        if (!is_hex(t[i])) return 0;
    return 1;
}

static int reply_check(const email_reply *r, cg_err *err) {
    if (!email_addr_ok(r->from_addr))
        return cg_err_set(err, "bad_value", "the desk's From address is not a plain address");
    if (!email_addr_ok(r->to_addr))
        return cg_err_set(err, "bad_value",
                          "the customer's address cannot be put in a To header "
                          "(not a plain address)");
    if (!domain_ok(r->message_id_domain))
        return cg_err_set(err, "bad_value", "invalid Message-ID domain");
    if (!optional_text_ok(r->from_name, MSG_NAME_MAX - 1) ||
        !optional_text_ok(r->to_name, MSG_NAME_MAX - 1) ||
        !optional_text_ok(r->subject, MSG_META_MAX - 1))
        return cg_err_set(err, "bad_value", "invalid name or subject");
    if (r->in_reply_to && *r->in_reply_to && !email_msgid_ok(r->in_reply_to))
        return cg_err_set(err, "bad_value",
                          "the Message-ID answered cannot be put in an In-Reply-To header");
    if (r->n_references > 0 && !r->references)
        return cg_err_set(err, "bad_value", "references missing");
    for (size_t i = 0; i < r->n_references; i++)
        if (!email_msgid_ok(r->references[i]))
            return cg_err_set(err, "bad_value",
                              "a Message-ID of the thread cannot be put in a References header");
    if (!token_ok(r->conv_token)) return cg_err_set(err, "bad_value", "invalid conversation token");
    return 0;
}

/* "Re: <subject> [#cg-<token>]" (the token only when given and not already there). */
static char *reply_subject(const email_reply *r) {
    char tok[EMAIL_TOKEN_LEN + 1];
    char *subject = g_strdup(r->subject ? r->subject : "");
    email_info scratch;
    memset(&scratch, 0, sizeof(scratch));
    subject_token(subject, &scratch); /* never two tokens */
    strip_subject_prefixes(subject);
    char *res;
    if (r->conv_token && *r->conv_token) {
        for (size_t i = 0; i <= EMAIL_TOKEN_LEN; i++)
            tok[i] = g_ascii_tolower(r->conv_token[i]);
        res = g_strdup_printf("Re: %s%s[#cg-%s]", subject, *subject ? " " : "", tok);
    } else {
        res = g_strdup_printf("Re: %s", subject);
    }
    g_free(subject);
    return res;
}

/* A text/plain; charset=utf-8 part holding the len bytes at text (new reference). */
static GMimePart *text_part(const char *text, size_t len) {
    GMimePart *part = g_mime_part_new_with_type("text", "plain");
    g_mime_object_set_content_type_parameter(GMIME_OBJECT(part), "charset", "utf-8");
    GMimeStream *stream = g_mime_stream_mem_new_with_buffer(text, len);
    GMimeDataWrapper *dw =
        g_mime_data_wrapper_new_with_stream(stream, GMIME_CONTENT_ENCODING_DEFAULT);
    g_mime_part_set_content(part, dw);
    g_object_unref(dw);
    g_object_unref(stream);
    return part;
}

/* The body part (new reference): 7bit or quoted-printable when that suits the text (GMime
 * writes CRLF line ends on output), else base64 over the CRLF canonical form (RFC 2045 6.8). */
static GMimeObject *reply_body(const char *text, size_t len) {
    GMimePart *part = text_part(text, len);
    GMimeContentEncoding enc =
        g_mime_part_get_best_content_encoding(part, GMIME_ENCODING_CONSTRAINT_7BIT);
    if (enc == GMIME_CONTENT_ENCODING_BASE64) {
        g_object_unref(part);
        GString *crlf = g_string_sized_new(len + len / 16 + 2);
        for (size_t i = 0; i < len; i++) {
            if (text[i] == '\n' && (i == 0 || text[i - 1] != '\r')) g_string_append_c(crlf, '\r');
            g_string_append_c(crlf, text[i]);
        }
        part = text_part(crlf->str, crlf->len);
        g_string_free(crlf, TRUE);
    }
    g_mime_part_set_content_encoding(part, enc);
    return GMIME_OBJECT(part);
}

int email_render_reply(const msg *m, const email_reply *r, char **out, size_t *out_len,
                       char message_id[MSG_META_MAX], cg_err *err) {
    if (!r) return cg_err_set(err, "missing_field", "no reply parameters");
    if (reply_check(r, err) < 0) return -1;
    size_t tlen = 0;
    char *text = chan_reply_text(m, &tlen, err);
    if (!text) return -1;
    email_gmime_init();

    unsigned char rnd[16];
    char hex[33], id[MSG_META_MAX];
    if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
        free(text);
        return cg_err_set(err, "crypto", "RNG failed");
    }
    chan_hex_encode(rnd, sizeof(rnd), hex);
    snprintf(id, sizeof(id), "cg-%s@%s", hex, r->message_id_domain);

    GMimeMessage *gm = g_mime_message_new(TRUE);
    GMimeObject *o = GMIME_OBJECT(gm);
    g_mime_message_add_mailbox(gm, GMIME_ADDRESS_TYPE_FROM, r->from_name, r->from_addr);
    g_mime_message_add_mailbox(gm, GMIME_ADDRESS_TYPE_TO, r->to_name, r->to_addr);
    char *subject = reply_subject(r);
    g_mime_message_set_subject(gm, subject, "utf-8");
    g_free(subject);
    GDateTime *dt = r->date_ms > 0 ? g_date_time_new_from_unix_utc(r->date_ms / 1000)
                                   : g_date_time_new_now_utc();
    g_mime_message_set_date(gm, dt);
    g_date_time_unref(dt);
    g_mime_message_set_message_id(gm, id);

    int has_irt = r->in_reply_to && *r->in_reply_to;
    if (has_irt) {
        char *v = g_strdup_printf("<%s>", r->in_reply_to);
        g_mime_object_set_header(o, "In-Reply-To", v, NULL);
        g_free(v);
    }
    if (r->n_references > 0 || has_irt) {
        GString *refs = g_string_new("");
        for (size_t i = 0; i < r->n_references && i < 2 * EMAIL_REFS_MAX; i++)
            g_string_append_printf(refs, "%s<%s>", refs->len ? " " : "", r->references[i]);
        if (has_irt && (r->n_references == 0 ||
                        strcmp(r->references[r->n_references - 1], r->in_reply_to) != 0))
            g_string_append_printf(refs, "%s<%s>", refs->len ? " " : "", r->in_reply_to);
        g_mime_object_set_header(o, "References", refs->str, NULL);
        g_string_free(refs, TRUE);
    }
    GMimeObject *body = reply_body(text, tlen);
    free(text);
    g_mime_message_set_mime_part(gm, body);
    g_object_unref(body);

    GMimeFormatOptions *fo = g_mime_format_options_new();
    g_mime_format_options_set_newline_format(fo, GMIME_NEWLINE_FORMAT_DOS);
    char *s = g_mime_object_to_string(o, fo);
    g_mime_format_options_free(fo);
    g_object_unref(gm);
    if (!s) return cg_err_set(err, "nomem", "cannot render message");
    size_t n = strlen(s);
    char *res = malloc(n + 1);
    if (!res) {
        g_free(s);
        return cg_err_set(err, "nomem", "out of memory");
    }
    memcpy(res, s, n + 1);
    g_free(s);
    *out = res;
    if (out_len) *out_len = n;
    if (message_id) snprintf(message_id, MSG_META_MAX, "%s", id);
    return 0;
}
