/* hello-c: a tiny HTTP/1.1 service used to exercise blue-green deployments.
 * One detached thread per connection; the main thread accepts connections
 * and handles signals through a self-pipe. */
#include "app.h"
#include "http.h"
#include "ini.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#ifndef HELLO_VERSION
#error "HELLO_VERSION must be defined by the build"
#endif

#define DEFAULT_CONFIG "conf/config.ini"
#define IDLE_TIMEOUT_MS 60000   /* idle keep-alive or stalled request */
#define SEND_TIMEOUT_S 10
#define LINGER_MS 500           /* reading leftovers after a final response */
#define MAX_CONNECTIONS 1024
#define LISTEN_BACKLOG 128
#define THREAD_STACK (256 * 1024)   /* buffers live on the heap */

struct conn {
    int fd;
    size_t len;                 /* bytes buffered in buf */
    char buf[HTTP_MAX_HEADER];
};

/* What happens to a connection after a request. */
enum conn_next {
    NEXT_REQUEST,   /* keep-alive: read the next one */
    END_CLOSE,      /* close now */
    END_LINGER,     /* a final response was sent: close gracefully */
};

static struct config g_cfg;             /* read-only once serving, except faults */
static const char *g_config_path;
static atomic_int g_health_status;
static atomic_int g_health_fail_percent;
static atomic_int g_latency_ms;
static atomic_uint_fast64_t g_health_seq;
static atomic_int g_active;             /* open connections (threads) */
static atomic_bool g_draining;
static int g_signal_pipe[2] = {-1, -1};
static int g_drain_pipe[2] = {-1, -1};  /* write end closed when draining starts */

/* ---- small helpers ---- */

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static int set_flags(int fd, int fd_flags, int fl_flags)
{
    if (fd_flags && fcntl(fd, F_SETFD, fcntl(fd, F_GETFD) | fd_flags) < 0)
        return -1;
    if (fl_flags && fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | fl_flags) < 0)
        return -1;
    return 0;
}

static int make_pipe(int p[2])
{
    if (pipe(p) != 0)
        return -1;
    for (int i = 0; i < 2; i++)
        if (set_flags(p[i], FD_CLOEXEC, O_NONBLOCK) != 0)
            return -1;
    return 0;
}

static void apply_faults(const struct faults *f)
{
    atomic_store(&g_health_status, f->health_status);
    atomic_store(&g_health_fail_percent, f->health_fail_percent);
    atomic_store(&g_latency_ms, f->latency_ms);
}

/* ---- connection threads ---- */

static bool send_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return false;
        p += w;
        n -= (size_t)w;
    }
    return true;
}

/* Waits until fd is readable (or has hung up). When idle, that is with no
 * request under way, the start of draining ends the wait too. Returns false
 * when the connection should be closed instead. */
static bool wait_readable(int fd, bool idle)
{
    struct pollfd pfd[2] = {{.fd = fd, .events = POLLIN},
                            {.fd = g_drain_pipe[0], .events = POLLIN}};
    int n;
    do
        n = poll(pfd, idle ? 2 : 1, IDLE_TIMEOUT_MS);
    while (n < 0 && errno == EINTR);
    return n > 0 && pfd[0].revents != 0;
}

/* Reads more request bytes into the buffer. False ends the connection. */
static bool fill(struct conn *c)
{
    if (c->len == sizeof c->buf || !wait_readable(c->fd, c->len == 0))
        return false;
    ssize_t n;
    do
        n = recv(c->fd, c->buf + c->len, sizeof c->buf - c->len, 0);
    while (n < 0 && errno == EINTR);
    if (n <= 0)
        return false;
    c->len += (size_t)n;
    return true;
}

static void consume(struct conn *c, size_t n)
{
    memmove(c->buf, c->buf + n, c->len - n);
    c->len -= n;
}

/* Drops the request's header and body, keeping any pipelined bytes after it. */
static bool skip_request(struct conn *c, const struct http_request *req)
{
    size_t buffered = c->len - req->header_len;
    size_t take = buffered < req->content_length ? buffered : req->content_length;
    size_t remaining = req->content_length - take;
    consume(c, req->header_len + take);
    if (remaining > 0 && req->expect_continue) {
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        if (!send_all(c->fd, cont, sizeof cont - 1))
            return false;
    }
    while (remaining > 0) {     /* the buffer is empty here: use it as scratch */
        if (!wait_readable(c->fd, false))
            return false;
        size_t want = remaining < sizeof c->buf ? remaining : sizeof c->buf;
        ssize_t n = recv(c->fd, c->buf, want, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return false;
        remaining -= (size_t)n;
    }
    return true;
}

/* Sends res after the latency fault. Returns whether the connection stays open. */
static bool respond(struct conn *c, const struct http_response *res,
                    bool keep_alive, bool head_only)
{
    int latency = atomic_load(&g_latency_ms);
    if (latency > 0)
        sleep_ms(latency);
    keep_alive = keep_alive && !atomic_load(&g_draining);
    char out[HTTP_RESPONSE_MAX];
    size_t n = http_format_response(out, sizeof out, res, g_cfg.version,
                                    keep_alive, head_only);
    return n > 0 && send_all(c->fd, out, n) && keep_alive;
}

static enum conn_next serve_request(struct conn *c, const struct http_request *req)
{
    struct app_ctx ctx = {
        .version = g_cfg.version,
        .health_status = atomic_load(&g_health_status),
        .health_fail_percent = atomic_load(&g_health_fail_percent),
        .health_seq = &g_health_seq,
    };
    struct http_response res;
    app_handle(req, &ctx, &res);
    bool head_only = http_slice_eq(req->method, "HEAD");
    bool keep_alive = req->keep_alive;
    if (!skip_request(c, req))  /* invalidates req's slices */
        return END_CLOSE;
    return respond(c, &res, keep_alive, head_only) ? NEXT_REQUEST : END_LINGER;
}

static enum conn_next serve_connection(struct conn *c)
{
    for (;;) {
        struct http_request req;
        enum http_parse_status st = http_parse_request(c->buf, c->len, &req);
        if (st == HTTP_PARSE_INCOMPLETE) {
            if (!fill(c))
                return END_CLOSE;
        } else if (st == HTTP_PARSE_OK) {
            enum conn_next next = serve_request(c, &req);
            if (next != NEXT_REQUEST)
                return next;
        } else {
            struct http_response res;
            app_error(http_parse_error_status(st), &res);
            respond(c, &res, false, false);
            return END_LINGER;
        }
    }
}

/* After a final response: stop sending, then read what the client still sends
 * for a moment, so that closing does not reset the connection and destroy the
 * response before the client has read it. */
static void linger_close(int fd)
{
    shutdown(fd, SHUT_WR);
    long long deadline = now_ms() + LINGER_MS;
    char scratch[4096];
    for (long long left = LINGER_MS; left > 0; left = deadline - now_ms()) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (poll(&pfd, 1, (int)left) <= 0 || recv(fd, scratch, sizeof scratch, 0) <= 0)
            break;
    }
}

static void *conn_main(void *arg)
{
    struct conn *c = arg;
    if (serve_connection(c) == END_LINGER)
        linger_close(c->fd);
    close(c->fd);
    free(c);
    atomic_fetch_sub(&g_active, 1);
    return NULL;
}

/* ---- accepting ---- */

static void spawn_connection(int fd)
{
    if (atomic_load(&g_active) >= MAX_CONNECTIONS) {
        close(fd);
        return;
    }
    struct conn *c = malloc(sizeof *c);
    if (c == NULL) {
        close(fd);
        return;
    }
    c->fd = fd;
    c->len = 0;
    int one = 1;
    struct timeval send_timeout = {SEND_TIMEOUT_S, 0};
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &send_timeout, sizeof send_timeout);

    /* Signals go to the main thread only: new threads start with them blocked. */
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, THREAD_STACK);
    atomic_fetch_add(&g_active, 1);
    pthread_t tid;
    int err = pthread_create(&tid, &attr, conn_main, c);
    pthread_attr_destroy(&attr);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (err != 0) {
        fprintf(stderr, "hello-c: cannot create thread: %s\n", strerror(err));
        atomic_fetch_sub(&g_active, 1);
        close(fd);
        free(c);
    }
}

/* Accepts all pending connections. Returns -1 when accepting should pause
 * (e.g. out of file descriptors). */
static int accept_pending(int lfd)
{
    for (;;) {
        int fd = accept(lfd, NULL, NULL);
        if (fd >= 0) {
            spawn_connection(fd);
            continue;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return 0;
        if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO)
            continue;
        fprintf(stderr, "hello-c: accept: %s\n", strerror(errno));
        return -1;
    }
}

/* ---- signals ---- */

static void on_signal(int sig)
{
    int saved = errno;
    unsigned char b = (unsigned char)sig;
    ssize_t r = write(g_signal_pipe[1], &b, 1);
    (void)r;    /* a full pipe already holds a wake-up */
    errno = saved;
}

static int install_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_IGN;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGPIPE, &sa, NULL) != 0)
        return -1;
    sa.sa_handler = on_signal;
    const int sigs[] = {SIGTERM, SIGINT, SIGHUP};
    sigset_t set;
    sigemptyset(&set);
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) {
        if (sigaction(sigs[i], &sa, NULL) != 0)
            return -1;
        sigaddset(&set, sigs[i]);
    }
    /* We may have been started with them blocked. */
    return pthread_sigmask(SIG_UNBLOCK, &set, NULL) == 0 ? 0 : -1;
}

static void reload_faults(void)
{
    struct config fresh;
    char err[CONFIG_ERR_MAX];
    config_defaults(&fresh, HELLO_VERSION);
    if (config_load(g_config_path, &fresh, err, sizeof err) != 0) {
        fprintf(stderr, "hello-c: reload failed, keeping current faults: %s\n", err);
        return;
    }
    apply_faults(&fresh.faults);
    fprintf(stderr, "hello-c: reloaded faults: health_status=%d health_fail_percent=%d"
            " latency_ms=%d\n", fresh.faults.health_status,
            fresh.faults.health_fail_percent, fresh.faults.latency_ms);
}

/* Handles queued signals. Returns true when asked to shut down. */
static bool handle_signals(void)
{
    unsigned char sigs[64];
    bool stop = false;
    ssize_t n;
    while ((n = read(g_signal_pipe[0], sigs, sizeof sigs)) > 0) {
        for (ssize_t i = 0; i < n; i++) {
            if (sigs[i] == SIGHUP)
                reload_faults();
            else
                stop = true;
        }
    }
    return stop;
}

/* ---- main loop ---- */

static int open_listener(void)
{
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)g_cfg.port)};
    inet_pton(AF_INET, g_cfg.bind, &addr.sin_addr);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    if (fd < 0 || set_flags(fd, FD_CLOEXEC, O_NONBLOCK) != 0
        || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0
        || bind(fd, (struct sockaddr *)&addr, sizeof addr) != 0
        || listen(fd, LISTEN_BACKLOG) != 0) {
        fprintf(stderr, "hello-c: cannot listen on %s:%d: %s\n", g_cfg.bind, g_cfg.port,
                strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

static int bound_port(int fd)
{
    struct sockaddr_in addr;
    socklen_t len = sizeof addr;
    if (getsockname(fd, (struct sockaddr *)&addr, &len) != 0)
        return -1;
    return ntohs(addr.sin_port);
}

/* Accepts connections until SIGTERM or SIGINT. */
static void serve(int lfd)
{
    struct pollfd pfd[2] = {{.fd = g_signal_pipe[0], .events = POLLIN},
                            {.fd = lfd, .events = POLLIN}};
    bool paused = false;
    for (;;) {
        pfd[1].fd = paused ? -1 : lfd;  /* poll ignores negative fds */
        int n = poll(pfd, 2, paused ? 100 : -1);
        paused = false;
        if (n < 0 && errno != EINTR) {
            fprintf(stderr, "hello-c: poll: %s\n", strerror(errno));
            sleep_ms(100);
        }
        if (n <= 0)
            continue;
        if ((pfd[0].revents & POLLIN) && handle_signals())
            return;
        if (pfd[1].revents & POLLIN)
            paused = accept_pending(lfd) != 0;
    }
}

/* Stops accepting, waits for connections to finish, up to drain_timeout_ms. */
static void drain(int lfd)
{
    close(lfd);
    atomic_store(&g_draining, true);
    close(g_drain_pipe[1]);     /* wakes idle connections, which then close */
    fprintf(stderr, "draining\n");
    long long deadline = now_ms() + g_cfg.drain_timeout_ms;
    while (atomic_load(&g_active) > 0 && now_ms() < deadline)
        sleep_ms(5);
    int left = atomic_load(&g_active);
    if (left > 0)
        fprintf(stderr, "drain timeout after %d ms: abandoned %d busy connection(s)\n",
                g_cfg.drain_timeout_ms, left);
    fprintf(stderr, "drained, exiting\n");
}

static int usage(FILE *out, int code)
{
    fprintf(out, "usage: hello-c [--config=PATH | --config PATH] [--version]\n"
                 "  default config: %s\n", DEFAULT_CONFIG);
    return code;
}

/* Returns -1 to go on serving, or an exit code. */
static int parse_args(int argc, char **argv, const char **config_path)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--version") == 0) {
            printf("%s\n", HELLO_VERSION);
            return 0;
        }
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)
            return usage(stdout, 0);
        if (strncmp(a, "--config=", 9) == 0) {
            *config_path = a + 9;
        } else if (strcmp(a, "--config") == 0) {
            if (i + 1 == argc) {
                fprintf(stderr, "hello-c: --config needs a path\n");
                return usage(stderr, 2);
            }
            *config_path = argv[++i];
        } else {
            fprintf(stderr, "hello-c: bad argument '%s'\n", a);
            return usage(stderr, 2);
        }
        if (**config_path == '\0') {
            fprintf(stderr, "hello-c: empty config path\n");
            return usage(stderr, 2);
        }
    }
    return -1;
}

int main(int argc, char **argv)
{
    g_config_path = DEFAULT_CONFIG;
    int rc = parse_args(argc, argv, &g_config_path);
    if (rc >= 0)
        return rc;

    char err[CONFIG_ERR_MAX];
    config_defaults(&g_cfg, HELLO_VERSION);
    if (config_load(g_config_path, &g_cfg, err, sizeof err) != 0) {
        fprintf(stderr, "hello-c: %s\n", err);
        return 2;
    }
    if (g_cfg.faults.fail_at_startup) {
        fprintf(stderr, "hello-c: fail_at_startup is set in %s: refusing to start"
                " (simulated broken release)\n", g_config_path);
        return 1;
    }
    apply_faults(&g_cfg.faults);

    if (make_pipe(g_signal_pipe) != 0 || make_pipe(g_drain_pipe) != 0
        || install_signals() != 0) {
        fprintf(stderr, "hello-c: start-up failed: %s\n", strerror(errno));
        return 1;
    }
    int lfd = open_listener();
    if (lfd < 0)
        return 1;
    printf("listening on %s:%d version %s\n", g_cfg.bind, bound_port(lfd), g_cfg.version);
    fflush(stdout);

    serve(lfd);
    drain(lfd);
    return 0;
}
