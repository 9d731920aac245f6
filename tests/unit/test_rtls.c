/* test_rtls.c -- the TLS relay against a real redis-server listening on a TLS port only (a test CA
 * and server certificate made with the openssl CLI): an 8 MiB value goes through it both ways
 * intact while the queues stay bounded (a client that does not read makes the relay stop reading
 * Redis, and it resumes), a wrong CA is a named failure, unusable options are refused at
 * creation, the private socket directory is gone after rtls_free, and the blocking connection of
 * the tools (rblock) works over rediss://. The relay runs on its own loop in a second thread; the
 * test talks to its unix socket with blocking I/O and parses replies with hiredis' reader. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "common/log.h"
#include "common/rblock.h"
#include "common/rtls.h"
#include "testnet.h"

#define BIG (8u * 1024u * 1024u)

typedef struct fixture {
    char dir[64];
    char ca[128], other_ca[128];
    pid_t redis_pid;
    int port;
    uv_loop_t loop;
    uv_async_t stop;
    uv_thread_t thread;
    rtls *t;
} fixture;

static void sh(const char *fmt, ...) {
    char cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    assert_int_equal(system(cmd), 0);
}

/* A CA, a server certificate for 127.0.0.1 signed by it, and a CA that signed nothing. */
static void make_certs(fixture *f) {
    const char *ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    sh("cd %s && openssl req -x509 %s -days 2 -subj /CN=ca -keyout ca.key -out ca.crt "
       "-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign "
       ">/dev/null 2>&1",
       f->dir, ec);
    sh("cd %s && openssl req -x509 %s -days 2 -subj /CN=other -keyout other.key -out other.crt "
       ">/dev/null 2>&1",
       f->dir, ec);
    sh("cd %s && openssl req %s -subj /CN=redis -keyout srv.key -out srv.csr >/dev/null 2>&1 && "
       "echo subjectAltName=IP:127.0.0.1 > srv.ext && openssl x509 -req -in srv.csr -CA ca.crt "
       "-CAkey ca.key -CAcreateserial -days 2 -extfile srv.ext -out srv.crt >/dev/null 2>&1",
       f->dir, ec);
    snprintf(f->ca, sizeof(f->ca), "%s/ca.crt", f->dir);
    snprintf(f->other_ca, sizeof(f->other_ca), "%s/other.crt", f->dir);
}

static void redis_start(fixture *f) {
    char port[16], crt[128], key[128];
    snprintf(port, sizeof(port), "%d", f->port);
    snprintf(crt, sizeof(crt), "%s/srv.crt", f->dir);
    snprintf(key, sizeof(key), "%s/srv.key", f->dir);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int devnull = open("/dev/null", O_RDWR);
        dup2(devnull, 0);
        dup2(devnull, 1);
        dup2(devnull, 2);
        execlp("redis-server", "redis-server", "--port", "0", "--tls-port", port, "--bind",
               "127.0.0.1", "--tls-cert-file", crt, "--tls-key-file", key, "--tls-ca-cert-file",
               f->ca, "--tls-auth-clients", "no", "--save", "", "--appendonly", "no", "--dir",
               f->dir, (char *)NULL);
        _exit(127);
    }
    f->redis_pid = pid;
    for (int i = 0; i < 1000; i++) {
        if (port_accepts(f->port)) return;
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    fail_msg("redis-server does not accept connections");
}

static void on_stop(uv_async_t *a) {
    fixture *f = a->data;
    rtls_free(f->t);
    f->t = NULL;
    uv_close((uv_handle_t *)a, NULL);
}

static void run_loop(void *arg) {
    fixture *f = arg;
    uv_run(&f->loop, UV_RUN_DEFAULT);
}

/* A relay with CA ca on the fixture's loop, running in the second thread. */
static void relay_start(fixture *f, const char *ca) {
    rtls_opts o;
    memset(&o, 0, sizeof(o));
    snprintf(o.ca, sizeof(o.ca), "%s", ca);
    rtls_set_opts(&o);
    cg_err err;
    assert_int_equal(uv_loop_init(&f->loop), 0);
    uv_async_init(&f->loop, &f->stop, on_stop);
    f->stop.data = f;
    f->t = rtls_new(&f->loop, "127.0.0.1", f->port, "test", 0, &err);
    assert_non_null(f->t);
    assert_int_equal(uv_thread_create(&f->thread, run_loop, f), 0);
}

/* Stops the relay; its directory must be gone and its loop close cleanly (nothing left open). */
static void relay_stop(fixture *f, const char *path) {
    uv_async_send(&f->stop);
    uv_thread_join(&f->thread);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    struct stat st;
    assert_int_equal(stat(path, &st), -1);
}

static int connect_unix(const char *path) {
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    return fd;
}

static void write_all(int fd, const char *p, size_t n) {
    while (n) {
        ssize_t k = write(fd, p, n);
        assert_true(k > 0);
        p += k;
        n -= (size_t)k;
    }
}

/* Reads until reader has one reply; NULL when the relay closed first. */
static redisReply *read_reply(int fd, redisReader *rd) {
    static char buf[65536];
    for (;;) {
        void *r = NULL;
        assert_int_equal(redisReaderGetReply(rd, &r), REDIS_OK);
        if (r) return r;
        ssize_t k = read(fd, buf, sizeof(buf));
        if (k <= 0) return NULL;
        assert_int_equal(redisReaderFeed(rd, buf, (size_t)k), REDIS_OK);
    }
}

static int setup(void **state) {
    fixture *f = calloc(1, sizeof(*f));
    signal(SIGPIPE, SIG_IGN);
    log_init("test_rtls", LOG_WARN);
    snprintf(f->dir, sizeof(f->dir), "/tmp/test_rtls-XXXXXX");
    if (!mkdtemp(f->dir)) return -1;
    f->port = free_port();
    *state = f;
    make_certs(f);
    redis_start(f);
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    if (f->redis_pid > 0) {
        kill(f->redis_pid, SIGKILL);
        waitpid(f->redis_pid, NULL, 0);
    }
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", f->dir);
    free(f);
    return 0;
}

/* 8 MiB up (SET) and down (GET) intact; while the client does not read the GET's answer the
 * relay stops reading Redis; the queues never exceed their bound. */
static void test_big_value_bounded(void **state) {
    fixture *f = *state;
    relay_start(f, f->ca);
    char path[128];
    snprintf(path, sizeof(path), "%s", rtls_path(f->t));
    int fd = connect_unix(path);
    char *val = malloc(BIG);
    for (size_t i = 0; i < BIG; i++)
        val[i] = (char)('a' + (i * 7 + i / 4096) % 26);
    char *cmd = NULL;
    int n = redisFormatCommand(&cmd, "SET big %b", val, (size_t)BIG);
    assert_true(n > 0);
    write_all(fd, cmd, (size_t)n);
    redisFreeCommand(cmd);
    redisReader *rd = redisReaderCreate();
    redisReply *r = read_reply(fd, rd);
    assert_non_null(r);
    assert_string_equal(r->str, "OK");
    freeReplyObject(r);

    write_all(fd, "*2\r\n$3\r\nGET\r\n$3\r\nbig\r\n", 22);
    rtls_stats st;
    for (int i = 0; i < 1000; i++) { /* until the relay pauses Redis (it must, 8 MiB unread) */
        rtls_get_stats(f->t, &st);
        if (st.paused_remote) break;
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    assert_true(st.paused_remote >= 1);
    r = read_reply(fd, rd);
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    assert_int_equal(r->len, BIG);
    assert_memory_equal(r->str, val, BIG);
    freeReplyObject(r);
    rtls_get_stats(f->t, &st);
    assert_int_equal(st.links, 1);
    assert_true(st.max_local_queued <= RTLS_QUEUE_MAX + 2 * 16384);
    assert_true(st.max_remote_queued <= RTLS_QUEUE_MAX + 2 * 16384);
    char e[256];
    assert_string_equal(rtls_last_error(f->t, e, sizeof(e)), "");
    redisReaderFree(rd);
    free(val);
    close(fd);
    relay_stop(f, path);
}

/* A CA that did not sign Redis' certificate: the connection ends, the failure is named. */
static void test_wrong_ca(void **state) {
    fixture *f = *state;
    relay_start(f, f->other_ca);
    char path[128];
    snprintf(path, sizeof(path), "%s", rtls_path(f->t));
    int fd = connect_unix(path);
    write_all(fd, "PING\r\n", 6);
    redisReader *rd = redisReaderCreate();
    assert_null(read_reply(fd, rd));
    char e[256];
    rtls_last_error(f->t, e, sizeof(e));
    assert_non_null(strstr(e, "certificate verify failed"));
    assert_non_null(strstr(e, "redis_tls_ca"));
    redisReaderFree(rd);
    close(fd);
    relay_stop(f, path);
}

/* Unusable options are refused at creation, naming the key and the file. */
static void test_bad_options(void **state) {
    fixture *f = *state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    rtls_opts o;
    memset(&o, 0, sizeof(o));
    snprintf(o.ca, sizeof(o.ca), "%s/missing.pem", f->dir);
    rtls_set_opts(&o);
    cg_err err;
    assert_null(rtls_new(&loop, "127.0.0.1", f->port, "t", 1, &err));
    assert_non_null(strstr(err.msg, "redis_tls_ca"));
    assert_non_null(strstr(err.msg, "missing.pem"));
    memset(&o, 0, sizeof(o));
    snprintf(o.cert, sizeof(o.cert), "%s/srv.crt", f->dir);
    rtls_set_opts(&o);
    assert_null(rtls_new(&loop, "127.0.0.1", f->port, "t", 1, &err));
    assert_non_null(strstr(err.msg, "both redis_tls_cert and redis_tls_key"));
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

/* The tools' blocking connection over rediss://, and its named failure with a wrong CA. */
static void test_rblock(void **state) {
    fixture *f = *state;
    char url[64];
    snprintf(url, sizeof(url), "rediss://127.0.0.1:%d/3", f->port);
    rtls_opts o;
    memset(&o, 0, sizeof(o));
    snprintf(o.ca, sizeof(o.ca), "%s", f->ca);
    rtls_set_opts(&o);
    cg_err err;
    redisContext *c = rblock_connect(url, 2000, &err);
    assert_non_null(c);
    redisReply *r = redisCommand(c, "SET k v");
    assert_non_null(r);
    freeReplyObject(r);
    r = redisCommand(c, "GET k");
    assert_string_equal(r->str, "v");
    freeReplyObject(r);
    rblock_free(c);
    snprintf(o.ca, sizeof(o.ca), "%s", f->other_ca);
    rtls_set_opts(&o);
    assert_null(rblock_connect(url, 2000, &err));
    assert_non_null(strstr(err.msg, "certificate verify failed"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_big_value_bounded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_ca, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_options, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rblock, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
