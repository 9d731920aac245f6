/* chatgw-token -- mint a signed agent (or bridge) token for the desk.
 *
 *   CHATGW_JWT_SECRET=... chatgw-token --agent alice --name "Alice" --skills general,faq --cap 3
 *
 * Prints the token on stdout. The secret comes from the environment (CHATGW_JWT_SECRET) or
 * --secret-file, never from the command line (it would show in ps). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/token.h"
#include "../common/util.h"

static int usage(int rc) {
    fprintf(rc ? stderr : stdout,
            "usage: chatgw-token (--agent ID | --bridge NAME) [--name NAME] [--skills a,b]\n"
            "                    [--cap N] [--ttl SECONDS] [--secret-file FILE]\n"
            "The HS256 secret is read from CHATGW_JWT_SECRET or --secret-file.\n");
    return rc;
}

static int read_secret(const char *path, char *out, size_t n) {
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    size_t k = fread(out, 1, n - 1, f);
    fclose(f);
    out[k] = 0;
    while (k && (out[k - 1] == '\n' || out[k - 1] == '\r'))
        out[--k] = 0;
    return 0;
}

int main(int argc, char **argv) {
    token_claims c;
    memset(&c, 0, sizeof(c));
    c.cap = 1;
    long long ttl = 86400;
    char secret[512] = "";
    const char *env = getenv("CHATGW_JWT_SECRET");
    if (env) cg_strlcpy(secret, env, sizeof(secret));
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help")) return usage(0);
        if (!v) return usage(2);
        i++;
        if (!strcmp(a, "--agent")) {
            c.role = TOKEN_AGENT;
            cg_strlcpy(c.sub, v, sizeof(c.sub));
        } else if (!strcmp(a, "--bridge")) {
            c.role = TOKEN_BRIDGE;
            cg_strlcpy(c.sub, v, sizeof(c.sub));
        } else if (!strcmp(a, "--name")) {
            cg_strlcpy(c.name, v, sizeof(c.name));
        } else if (!strcmp(a, "--skills")) {
            char buf[1024];
            cg_strlcpy(buf, v, sizeof(buf));
            for (char *save = NULL, *t = strtok_r(buf, ",", &save);
                 t && c.n_skills < TOKEN_SKILLS_MAX; t = strtok_r(NULL, ",", &save))
                cg_strlcpy(c.skills[c.n_skills++], t, TOKEN_STR_MAX);
        } else if (!strcmp(a, "--cap")) {
            long long n;
            if (cg_parse_ll(v, 1, 100, &n) < 0) return fprintf(stderr, "--cap: 1..100\n"), 2;
            c.cap = (int)n;
        } else if (!strcmp(a, "--ttl")) {
            if (cg_parse_ll(v, 0, 315360000, &ttl) < 0)
                return fprintf(stderr, "--ttl: seconds\n"), 2;
        } else if (!strcmp(a, "--secret-file")) {
            if (read_secret(v, secret, sizeof(secret)) < 0)
                return fprintf(stderr, "cannot read %s\n", v), 2;
        } else
            return usage(2);
    }
    if (!c.role || !c.sub[0]) return usage(2);
    if (strlen(secret) < 32) {
        fprintf(stderr,
                "chatgw-token: set CHATGW_JWT_SECRET (at least 32 bytes) or --secret-file\n");
        return 2;
    }
    c.iat = cg_now_s();
    c.exp = ttl ? c.iat + ttl : 0;
    char *tok = NULL;
    cg_err err;
    if (token_sign(&c, secret, strlen(secret), &tok, &err) < 0) {
        fprintf(stderr, "chatgw-token: %s\n", err.msg);
        return 1;
    }
    printf("%s\n", tok);
    free(tok);
    return 0;
}
