#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

void proc_init(struct proc *p)
{
    memset(p, 0, sizeof *p);
    p->out.fd = p->err.fd = -1;
}

void reader_init(struct reader *r, int fd)
{
    r->fd = fd;
    r->len = 0;
}

/* Reads more bytes before the deadline. 1 = got some, 0 = EOF, -1 = timeout/error. */
static int reader_fill(struct reader *r, long long deadline)
{
    if (r->len == sizeof r->buf)
        return -1;
    long long left = deadline - now_ms();
    struct pollfd pfd = {.fd = r->fd, .events = POLLIN};
    if (left <= 0 || poll(&pfd, 1, (int)left) <= 0)
        return -1;
    ssize_t n = read(r->fd, r->buf + r->len, sizeof r->buf - r->len);
    if (n < 0)
        return errno == ECONNRESET ? 0 : -1;
    r->len += (size_t)n;
    return n > 0;
}

static void reader_consume(struct reader *r, size_t n)
{
    memmove(r->buf, r->buf + n, r->len - n);
    r->len -= n;
}

int reader_line(struct reader *r, char *line, size_t cap, int timeout_ms)
{
    long long deadline = now_ms() + timeout_ms;
    for (;;) {
        char *nl = memchr(r->buf, '\n', r->len);
        if (nl != NULL) {
            size_t n = (size_t)(nl - r->buf);
            snprintf(line, cap, "%.*s", (int)n, r->buf);
            reader_consume(r, n + 1);
            return 1;
        }
        int rc = reader_fill(r, deadline);
        if (rc <= 0)
            return rc;
    }
}

int reader_eof(struct reader *r, int timeout_ms)
{
    long long deadline = now_ms() + timeout_ms;
    for (;;) {
        r->len = 0;
        int rc = reader_fill(r, deadline);
        if (rc <= 0)
            return rc == 0;
    }
}

int proc_write_config(struct proc *p, const char *text)
{
    if (p->config[0] == '\0') {
        snprintf(p->config, sizeof p->config, "/tmp/hello-c-test-XXXXXX");
        int fd = mkstemp(p->config);
        if (fd < 0)
            return -1;
        close(fd);
    }
    FILE *f = fopen(p->config, "w");
    if (f == NULL)
        return -1;
    int ok = fputs(text, f) >= 0;
    return (fclose(f) == 0 && ok) ? 0 : -1;
}

static int cloexec_pipe(int p[2])
{
    if (pipe(p) != 0)
        return -1;
    fcntl(p[0], F_SETFD, FD_CLOEXEC);
    fcntl(p[1], F_SETFD, FD_CLOEXEC);
    return 0;
}

int proc_spawn(struct proc *p, const char *bin, const char *const *args)
{
    const char *argv[16] = {bin};
    for (int i = 0; args[i] != NULL && i < 14; i++)
        argv[i + 1] = args[i];
    int out[2], err[2];
    if (cloexec_pipe(out) != 0 || cloexec_pipe(err) != 0)
        return -1;
    fflush(NULL);
    p->pid = fork();
    if (p->pid < 0)
        return -1;
    if (p->pid == 0) {
        dup2(out[1], STDOUT_FILENO);
        dup2(err[1], STDERR_FILENO);
        execv(bin, (char *const *)argv);
        fprintf(stderr, "exec %s: %s\n", bin, strerror(errno));
        _exit(127);
    }
    close(out[1]);
    close(err[1]);
    reader_init(&p->out, out[0]);
    reader_init(&p->err, err[0]);
    return 0;
}

int proc_start_server(struct proc *p, const char *bin, const char *config_text)
{
    char arg[128], line[256];
    if (proc_write_config(p, config_text) != 0)
        return -1;
    snprintf(arg, sizeof arg, "--config=%s", p->config);
    const char *args[] = {arg, NULL};
    if (proc_spawn(p, bin, args) != 0)
        return -1;
    if (reader_line(&p->out, line, sizeof line, 10000) != 1) {
        fprintf(stderr, "server printed no 'listening on' line\n");
        return -1;
    }
    char addr[64], version[64];
    if (sscanf(line, "listening on %63[^:]:%d version %63s", addr, &p->port, version) != 3
        || p->port <= 0) {
        fprintf(stderr, "unexpected first line: '%s'\n", line);
        return -1;
    }
    return 0;
}

bool proc_wait_stderr(struct proc *p, const char *text, int timeout_ms)
{
    long long deadline = now_ms() + timeout_ms;
    char line[1024];
    for (;;) {
        long long left = deadline - now_ms();
        if (left <= 0 || reader_line(&p->err, line, sizeof line, (int)left) != 1)
            return false;
        fprintf(stderr, "  [hello-c] %s\n", line);
        if (strstr(line, text) != NULL)
            return true;
    }
}

int proc_wait(struct proc *p, int timeout_ms)
{
    long long deadline = now_ms() + timeout_ms;
    int status;
    while (p->pid > 0) {
        pid_t r = waitpid(p->pid, &status, WNOHANG);
        if (r == p->pid) {
            p->pid = 0;
            return status;
        }
        if (r < 0 || now_ms() >= deadline)
            return -1;
        sleep_ms(5);
    }
    return -1;
}

void proc_cleanup(struct proc *p)
{
    if (p->pid > 0) {
        kill(p->pid, SIGKILL);
        waitpid(p->pid, NULL, 0);
        p->pid = 0;
    }
    char line[1024];
    while (p->err.fd >= 0 && reader_line(&p->err, line, sizeof line, 2000) == 1)
        fprintf(stderr, "  [hello-c] %s\n", line);
    if (p->out.fd >= 0)
        close(p->out.fd);
    if (p->err.fd >= 0)
        close(p->err.fd);
    p->out.fd = p->err.fd = -1;
    if (p->config[0] != '\0')
        unlink(p->config);
    p->config[0] = '\0';
}

int tcp_connect(int port)
{
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -errno;
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    return fd;
}

bool send_str(int fd, const char *s)
{
    size_t n = strlen(s);
    while (n > 0) {
        ssize_t w = send(fd, s, n, MSG_NOSIGNAL);
        if (w <= 0)
            return false;
        s += w;
        n -= (size_t)w;
    }
    return true;
}

bool reply_header(const struct reply *rep, const char *name, char *out, size_t cap)
{
    size_t n = strlen(name);
    for (const char *line = strstr(rep->head, "\r\n"); line != NULL;
         line = strstr(line + 2, "\r\n")) {
        const char *h = line + 2;
        if (strncasecmp(h, name, n) == 0 && h[n] == ':') {
            const char *v = h + n + 1;
            while (*v == ' ')
                v++;
            size_t len = strcspn(v, "\r");
            snprintf(out, cap, "%.*s", (int)len, v);
            return true;
        }
    }
    return false;
}

/* Length of the header section buffered in r, or 0 if it is not complete. */
static size_t head_length(const struct reader *r)
{
    for (size_t i = 0; i + 4 <= r->len; i++)
        if (memcmp(r->buf + i, "\r\n\r\n", 4) == 0)
            return i + 4;
    return 0;
}

int read_reply(struct reader *r, struct reply *rep, bool head_only, int timeout_ms)
{
    long long deadline = now_ms() + timeout_ms;
    size_t head_len;
    while ((head_len = head_length(r)) == 0)
        if (reader_fill(r, deadline) <= 0)
            return -1;
    if (head_len >= sizeof rep->head)
        return -1;
    memcpy(rep->head, r->buf, head_len);
    rep->head[head_len] = '\0';
    reader_consume(r, head_len);
    if (sscanf(rep->head, "HTTP/1.1 %d ", &rep->status) != 1)
        return -1;

    char value[32];
    rep->body_len = 0;
    if (!head_only && reply_header(rep, "Content-Length", value, sizeof value))
        rep->body_len = strtoul(value, NULL, 10);
    if (rep->body_len >= sizeof rep->body)
        return -1;
    while (r->len < rep->body_len)
        if (reader_fill(r, deadline) <= 0)
            return -1;
    memcpy(rep->body, r->buf, rep->body_len);
    rep->body[rep->body_len] = '\0';
    reader_consume(r, rep->body_len);
    return 0;
}

int http_once(int port, const char *req, struct reply *rep)
{
    int fd = tcp_connect(port);
    if (fd < 0)
        return -1;
    static struct reader r;
    reader_init(&r, fd);
    int rc = send_str(fd, req) ? read_reply(&r, rep, false, 10000) : -1;
    close(fd);
    return rc;
}
