/* End-to-end tests: run the hello-c binary and talk to it over loopback.
 * usage: itest MODE /path/to/hello-c APP_VERSION */
#include "check.h"
#include "harness.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define REQUIRE(cond)                                                          \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "%s:%d: required: %s\n", __FILE__, __LINE__, #cond); \
            check_failures++;                                                  \
            goto out;                                                          \
        }                                                                      \
    } while (0)

static const char *bin;             /* hello-c under test */
static const char *app_version;     /* compiled-in version */

static bool exited_ok(int status)
{
    return status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

static bool header_is(const struct reply *rep, const char *name, const char *want)
{
    char v[256];
    if (!reply_header(rep, name, v, sizeof v) || strcmp(v, want) != 0) {
        fprintf(stderr, "  header %s: want '%s', response was:\n%s\n", name, want, rep->head);
        return false;
    }
    return true;
}

/* Sends req on fd and reads the reply from r. */
static int exchange(int fd, struct reader *r, const char *req, struct reply *rep)
{
    if (!send_str(fd, req))
        return -1;
    return read_reply(r, rep, strncmp(req, "HEAD ", 5) == 0, 5000);
}

/* ---- smoke ---- */

static void test_smoke(void)
{
    struct proc p;
    struct reader conn;
    struct reply rep;
    int fd = -1;
    proc_init(&p);
    REQUIRE(proc_start_server(&p, bin, "[server]\nbind = 127.0.0.1\nport = 0\n"
                                       "version = 7.7.7-smoke\n") == 0);
    fd = tcp_connect(p.port);
    REQUIRE(fd >= 0);
    reader_init(&conn, fd);

    REQUIRE(exchange(fd, &conn, "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", &rep) == 0);
    CHECK(rep.status == 200);
    CHECK(strcmp(rep.body, "{\"status\":\"ok\",\"version\":\"7.7.7-smoke\"}") == 0);
    CHECK(header_is(&rep, "X-App-Version", "7.7.7-smoke"));
    CHECK(header_is(&rep, "Content-Type", "application/json"));
    CHECK(header_is(&rep, "Connection", "keep-alive"));

    /* keep-alive: a second request on the same connection */
    REQUIRE(exchange(fd, &conn, "GET /version HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", &rep) == 0);
    CHECK(rep.status == 200 && strcmp(rep.body, "7.7.7-smoke\n") == 0);
    CHECK(header_is(&rep, "X-App-Version", "7.7.7-smoke"));

    REQUIRE(kill(p.pid, SIGTERM) == 0);
    CHECK(reader_eof(&conn, 2000));     /* the idle connection is closed */
    CHECK(proc_wait_stderr(&p, "drained, exiting", 5000));
    CHECK(exited_ok(proc_wait(&p, 5000)));
out:
    if (fd >= 0)
        close(fd);
    proc_cleanup(&p);
}

/* ---- drain ---- */

static void test_drain(void)
{
    struct proc p;
    struct reader slow, idle;
    struct reply rep;
    int slow_fd = -1, idle_fd = -1;
    proc_init(&p);
    REQUIRE(proc_start_server(&p, bin, "[server]\nport = 0\nversion = 2.0.0\n"
                                       "drain_timeout_ms = 10000\n"
                                       "[faults]\nlatency_ms = 1500\n") == 0);
    idle_fd = tcp_connect(p.port);
    slow_fd = tcp_connect(p.port);
    REQUIRE(idle_fd >= 0 && slow_fd >= 0);
    reader_init(&idle, idle_fd);
    reader_init(&slow, slow_fd);
    long long start = now_ms();
    REQUIRE(send_str(slow_fd, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n"));

    sleep_ms(300);
    REQUIRE(kill(p.pid, SIGTERM) == 0);
    REQUIRE(proc_wait_stderr(&p, "draining", 3000));
    long long drain_start = now_ms();

    int fd = tcp_connect(p.port);
    CHECK(fd == -ECONNREFUSED);
    if (fd >= 0)
        close(fd);

    CHECK(reader_eof(&idle, 1000));
    long long idle_ms = now_ms() - drain_start;
    fprintf(stderr, "  idle connection closed %lld ms after 'draining'\n", idle_ms);
    CHECK(idle_ms < 500);

    REQUIRE(read_reply(&slow, &rep, false, 5000) == 0);
    long long slow_ms = now_ms() - start;
    fprintf(stderr, "  slow request answered after %lld ms\n", slow_ms);
    CHECK(slow_ms >= 1400);
    CHECK(rep.status == 200);
    CHECK(strcmp(rep.body, "{\"status\":\"ok\",\"version\":\"2.0.0\"}") == 0);
    CHECK(header_is(&rep, "Connection", "close"));
    CHECK(reader_eof(&slow, 2000));

    CHECK(proc_wait_stderr(&p, "drained, exiting", 5000));
    CHECK(exited_ok(proc_wait(&p, 5000)));
out:
    if (slow_fd >= 0)
        close(slow_fd);
    if (idle_fd >= 0)
        close(idle_fd);
    proc_cleanup(&p);
}

/* Busy connections past drain_timeout_ms are abandoned; exit is still 0. */
static void test_drain_timeout(void)
{
    struct proc p;
    struct reader slow;
    struct reply rep;
    int fd = -1;
    proc_init(&p);
    REQUIRE(proc_start_server(&p, bin, "[server]\nport = 0\ndrain_timeout_ms = 300\n"
                                       "[faults]\nlatency_ms = 5000\n") == 0);
    fd = tcp_connect(p.port);
    REQUIRE(fd >= 0);
    reader_init(&slow, fd);
    REQUIRE(send_str(fd, "GET / HTTP/1.1\r\n\r\n"));
    sleep_ms(200);
    long long start = now_ms();
    REQUIRE(kill(p.pid, SIGTERM) == 0);
    CHECK(proc_wait_stderr(&p, "abandoned 1 busy connection", 3000));
    CHECK(proc_wait_stderr(&p, "drained, exiting", 3000));
    CHECK(exited_ok(proc_wait(&p, 3000)));
    long long took = now_ms() - start;
    fprintf(stderr, "  exited %lld ms after SIGTERM\n", took);
    CHECK(took < 2500);
    CHECK(read_reply(&slow, &rep, false, 1000) != 0);  /* no answer: it was cut off */
out:
    if (fd >= 0)
        close(fd);
    proc_cleanup(&p);
}

/* ---- protocol ---- */

static void check_pipelining(int port)
{
    struct reader r;
    struct reply rep;
    int fd = tcp_connect(port);
    REQUIRE(fd >= 0);
    reader_init(&r, fd);
    REQUIRE(send_str(fd, "GET /health HTTP/1.1\r\n\r\n"
                         "GET /version HTTP/1.1\r\n\r\n"
                         "HEAD / HTTP/1.1\r\n\r\n"
                         "GET /nope?x=1 HTTP/1.1\r\n\r\n"
                         "GET /health?probe=1 HTTP/1.1\r\n\r\n"));
    REQUIRE(read_reply(&r, &rep, false, 5000) == 0);
    CHECK(rep.status == 200 && strstr(rep.body, "\"ok\"") != NULL);
    REQUIRE(read_reply(&r, &rep, false, 5000) == 0);
    CHECK(rep.status == 200 && strcmp(rep.body, "3.3.3\n") == 0);
    REQUIRE(read_reply(&r, &rep, true, 5000) == 0);
    CHECK(rep.status == 200 && header_is(&rep, "Content-Length", "25"));
    REQUIRE(read_reply(&r, &rep, false, 5000) == 0);
    CHECK(rep.status == 404 && header_is(&rep, "X-App-Version", "3.3.3"));
    REQUIRE(read_reply(&r, &rep, false, 5000) == 0);
    CHECK(rep.status == 200 && header_is(&rep, "Connection", "keep-alive"));
    CHECK(r.len == 0);      /* HEAD sent no body */
out:
    if (fd >= 0)
        close(fd);
}

static void check_bodies(int port)
{
    struct reader r;
    struct reply rep;
    int fd = tcp_connect(port);
    REQUIRE(fd >= 0);
    reader_init(&r, fd);
    /* body in the same packet, followed by a pipelined request */
    REQUIRE(send_str(fd, "POST /health HTTP/1.1\r\nContent-Length: 11\r\n\r\nhello=world"
                         "GET /version HTTP/1.1\r\n\r\n"));
    REQUIRE(read_reply(&r, &rep, false, 5000) == 0);
    CHECK(rep.status == 405 && header_is(&rep, "Allow", "GET, HEAD"));
    CHECK(header_is(&rep, "Connection", "keep-alive"));
    REQUIRE(read_reply(&r, &rep, false, 5000) == 0);
    CHECK(rep.status == 200 && strcmp(rep.body, "3.3.3\n") == 0);

    /* a larger body arriving in pieces */
    static char chunk[20001];
    memset(chunk, 'b', sizeof chunk - 1);
    REQUIRE(send_str(fd, "PUT /x HTTP/1.1\r\nContent-Length: 40000\r\n\r\n"));
    REQUIRE(send_str(fd, chunk));
    sleep_ms(50);
    REQUIRE(send_str(fd, chunk));
    REQUIRE(send_str(fd, "GET / HTTP/1.1\r\n\r\n"));
    REQUIRE(read_reply(&r, &rep, false, 5000) == 0);
    CHECK(rep.status == 405);
    REQUIRE(read_reply(&r, &rep, false, 5000) == 0);
    CHECK(rep.status == 200 && strcmp(rep.body, "hello from hello-c 3.3.3\n") == 0);

    /* Expect: 100-continue */
    REQUIRE(exchange(fd, &r, "POST / HTTP/1.1\r\nExpect: 100-continue\r\n"
                             "Content-Length: 4\r\n\r\n", &rep) == 0);
    CHECK(rep.status == 100);
    REQUIRE(exchange(fd, &r, "abcd", &rep) == 0);
    CHECK(rep.status == 405);
out:
    if (fd >= 0)
        close(fd);
}

/* Sends req on a new connection; expects status and a closed connection. */
static void check_closes(int port, const char *req, int status, const char *what)
{
    struct reader r;
    struct reply rep;
    int fd = tcp_connect(port);
    REQUIRE(fd >= 0);
    reader_init(&r, fd);
    REQUIRE(exchange(fd, &r, req, &rep) == 0);
    if (rep.status != status)
        fprintf(stderr, "  %s: got status %d, want %d\n", what, rep.status, status);
    CHECK(rep.status == status);
    CHECK(header_is(&rep, "Connection", "close"));
    CHECK(header_is(&rep, "X-App-Version", "3.3.3"));
    CHECK(reader_eof(&r, 2000));
out:
    if (fd >= 0)
        close(fd);
}

static void check_connection_rules(int port)
{
    struct reader r;
    struct reply rep;
    check_closes(port, "GET / HTTP/1.1\r\nConnection: close\r\n\r\n", 200, "1.1 close");
    check_closes(port, "GET / HTTP/1.0\r\n\r\n", 200, "1.0");
    check_closes(port, "BLAH\r\n\r\n", 400, "malformed");
    check_closes(port, "GET / HTTP/1.1\r\nBad Header: x\r\n\r\n", 400, "bad header");
    check_closes(port, "\x16\x03\x01\x02\x00", 400, "binary junk");
    check_closes(port, "GET / HTTP/2.0\r\n\r\n", 505, "version");
    check_closes(port, "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 501,
                 "chunked");
    check_closes(port, "POST / HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n", 413, "huge body");

    static char big[9300];
    int n = snprintf(big, sizeof big, "GET / HTTP/1.1\r\nX-Big: ");
    memset(big + n, 'a', 9000);
    strcpy(big + n + 9000, "\r\n\r\n");
    check_closes(port, big, 431, "header limit");

    int fd = tcp_connect(port);     /* HTTP/1.0 keep-alive stays open */
    REQUIRE(fd >= 0);
    reader_init(&r, fd);
    REQUIRE(exchange(fd, &r, "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", &rep) == 0);
    CHECK(header_is(&rep, "Connection", "keep-alive"));
    REQUIRE(exchange(fd, &r, "GET /version HTTP/1.0\r\n\r\n", &rep) == 0);
    CHECK(rep.status == 200 && header_is(&rep, "Connection", "close"));
out:
    if (fd >= 0)
        close(fd);
}

/* Clients that vanish mid-request or hold many connections. */
static void check_misbehaviour(int port)
{
    struct reply rep;
    for (int i = 0; i < 20; i++) {
        int fd = tcp_connect(port);
        REQUIRE(fd >= 0);
        send_str(fd, i % 2 ? "GET /hea" : "GET / HTTP/1.1\r\n\r\n");
        close(fd);      /* may reset the connection before the answer is sent */
    }
    enum { N = 50 };
    int fds[N];
    struct reader *rs = calloc(N, sizeof *rs);
    REQUIRE(rs != NULL);
    for (int i = 0; i < N; i++) {
        fds[i] = tcp_connect(port);
        reader_init(&rs[i], fds[i]);
        CHECK(fds[i] >= 0 && send_str(fds[i], "GET /health HTTP/1.1\r\n\r\n"));
    }
    for (int i = 0; i < N; i++) {
        CHECK(fds[i] >= 0 && read_reply(&rs[i], &rep, false, 5000) == 0 && rep.status == 200);
        if (fds[i] >= 0)
            close(fds[i]);
    }
    free(rs);
    CHECK(http_once(port, "GET /health HTTP/1.1\r\n\r\n", &rep) == 0 && rep.status == 200);
out:;
}

static void test_protocol(void)
{
    struct proc p;
    proc_init(&p);
    REQUIRE(proc_start_server(&p, bin, "[server]\nport = 0\nversion = 3.3.3\n") == 0);
    check_pipelining(p.port);
    check_bodies(p.port);
    check_connection_rules(p.port);
    check_misbehaviour(p.port);
    REQUIRE(kill(p.pid, SIGINT) == 0);
    CHECK(exited_ok(proc_wait(&p, 5000)));
out:
    proc_cleanup(&p);
}

/* ---- reload ---- */

static int count_health_failures(int port, int n)
{
    struct reply rep;
    int fails = 0;
    for (int i = 0; i < n; i++)
        if (http_once(port, "GET /health HTTP/1.1\r\n\r\n", &rep) != 0 || rep.status != 200)
            fails++;
    return fails;
}

static void test_reload(void)
{
    struct proc p;
    struct reply rep;
    proc_init(&p);
    REQUIRE(proc_start_server(&p, bin, "[server]\nport = 0\nversion = 5.0.0\n") == 0);
    CHECK(count_health_failures(p.port, 3) == 0);

    /* Only [faults] is taken from the new file. */
    REQUIRE(proc_write_config(&p, "[server]\nport = 1\nversion = 9.9.9\n"
                                  "[faults]\nhealth_status = 503\n") == 0);
    REQUIRE(kill(p.pid, SIGHUP) == 0);
    REQUIRE(proc_wait_stderr(&p, "reloaded faults", 3000));
    REQUIRE(http_once(p.port, "GET /health HTTP/1.1\r\n\r\n", &rep) == 0);
    CHECK(rep.status == 503);
    CHECK(strcmp(rep.body, "{\"status\":\"fail\",\"version\":\"5.0.0\"}") == 0);
    CHECK(header_is(&rep, "X-App-Version", "5.0.0"));

    REQUIRE(proc_write_config(&p, "[server]\nport = 0\n[faults]\nhealth_fail_percent = 50\n")
            == 0);
    REQUIRE(kill(p.pid, SIGHUP) == 0);
    REQUIRE(proc_wait_stderr(&p, "reloaded faults", 3000));
    CHECK(count_health_failures(p.port, 10) == 5);

    /* A bad file is reported and ignored. */
    REQUIRE(proc_write_config(&p, "[faults]\nhealth_status = banana\n") == 0);
    REQUIRE(kill(p.pid, SIGHUP) == 0);
    REQUIRE(proc_wait_stderr(&p, "reload failed", 3000));
    CHECK(count_health_failures(p.port, 10) == 5);

    REQUIRE(kill(p.pid, SIGTERM) == 0);
    CHECK(exited_ok(proc_wait(&p, 5000)));
out:
    proc_cleanup(&p);
}

/* ---- command line and start-up failures ---- */

/* Runs bin with args to completion; returns its exit code (-1 if it did not
 * exit normally) and collects stdout and stderr. */
static int run(const char *const *args, const char *config, char *out, char *err, size_t cap)
{
    struct proc p;
    proc_init(&p);
    if (config != NULL && proc_write_config(&p, config) != 0)
        return -1;
    char cfg_arg[128];
    const char *argv[8];
    int n = 0;
    for (; args[n] != NULL; n++)
        argv[n] = args[n];
    if (config != NULL) {
        snprintf(cfg_arg, sizeof cfg_arg, "--config=%s", p.config);
        argv[n++] = cfg_arg;
    }
    argv[n] = NULL;
    int status = proc_spawn(&p, bin, argv) == 0 ? proc_wait(&p, 10000) : -1;
    out[0] = err[0] = '\0';
    char line[1024];
    while (reader_line(&p.out, line, sizeof line, 1000) == 1)
        snprintf(out + strlen(out), cap - strlen(out), "%s\n", line);
    while (reader_line(&p.err, line, sizeof line, 1000) == 1)
        snprintf(err + strlen(err), cap - strlen(err), "%s\n", line);
    proc_cleanup(&p);
    return status != -1 && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void expect_run(const char *const *args, const char *config, int code,
                       const char *err_text)
{
    char out[4096], err[4096];
    int rc = run(args, config, out, err, sizeof out);
    bool ok = rc == code && strstr(err, err_text) != NULL;
    if (!ok)
        fprintf(stderr, "  %s ...: exit %d (want %d), stderr:\n%s  (want '%s')\n",
                args[0] ? args[0] : "(no args)", rc, code, err, err_text);
    CHECK(ok);
}

static void test_cli(void)
{
    char out[4096], err[4096], want[128];
    const char *version[] = {"--version", NULL};
    CHECK(run(version, NULL, out, err, sizeof out) == 0);
    snprintf(want, sizeof want, "%s\n", app_version);
    CHECK(strcmp(out, want) == 0);

    expect_run((const char *[]){"--bogus", NULL}, NULL, 2, "usage:");
    expect_run((const char *[]){"--config", NULL}, NULL, 2, "usage:");
    expect_run((const char *[]){"--config=", NULL}, NULL, 2, "empty config path");
    expect_run((const char *[]){"--config=/nonexistent/x.ini", NULL}, NULL, 2,
               "/nonexistent/x.ini");
    expect_run((const char *[]){NULL}, "[server]\nport = 0\nfoo = 1\n", 2, ":3: unknown key 'foo'");
    expect_run((const char *[]){NULL}, "[server]\nport = http\n", 2, "port: expected an integer");
    expect_run((const char *[]){NULL}, "[faults]\nfail_at_startup = true\n", 1, "fail_at_startup");

    /* --config PATH form; version defaults to the compiled-in one */
    struct proc p;
    struct reply rep;
    proc_init(&p);
    REQUIRE(proc_write_config(&p, "[server]\nport = 0\n") == 0);
    REQUIRE(proc_spawn(&p, bin, (const char *[]){"--config", p.config, NULL}) == 0);
    char line[256];
    REQUIRE(reader_line(&p.out, line, sizeof line, 10000) == 1);
    REQUIRE(sscanf(line, "listening on 127.0.0.1:%d", &p.port) == 1);
    snprintf(want, sizeof want, " version %s", app_version);
    CHECK(strstr(line, want) != NULL);
    REQUIRE(http_once(p.port, "GET /health HTTP/1.1\r\n\r\n", &rep) == 0);
    CHECK(header_is(&rep, "X-App-Version", app_version));

    /* A second server on the same port cannot start. */
    char cfg[128];
    snprintf(cfg, sizeof cfg, "[server]\nport = %d\n", p.port);
    expect_run((const char *[]){NULL}, cfg, 1, "cannot listen");

    REQUIRE(kill(p.pid, SIGINT) == 0);
    CHECK(exited_ok(proc_wait(&p, 5000)));
out:
    proc_cleanup(&p);
}

int main(int argc, char **argv)
{
    static const struct { const char *name; void (*run)(void); } modes[] = {
        {"smoke", test_smoke}, {"drain", test_drain}, {"drain_timeout", test_drain_timeout},
        {"protocol", test_protocol}, {"reload", test_reload}, {"cli", test_cli},
    };
    if (argc != 4) {
        fprintf(stderr, "usage: itest MODE HELLO_C_BINARY APP_VERSION\n");
        return 2;
    }
    bin = argv[2];
    app_version = argv[3];
    for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++) {
        if (strcmp(argv[1], modes[i].name) == 0) {
            modes[i].run();
            return check_report(argv[1]);
        }
    }
    fprintf(stderr, "itest: unknown mode '%s'\n", argv[1]);
    return 2;
}
