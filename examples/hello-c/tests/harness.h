/* Helpers for the end-to-end tests: run hello-c, talk HTTP to it. */
#ifndef HELLO_HARNESS_H
#define HELLO_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* Buffered reads from a pipe or socket, with timeouts. */
struct reader {
    int fd;
    size_t len;
    char buf[32768];
};

struct proc {
    pid_t pid;
    struct reader out;          /* child's stdout */
    struct reader err;          /* child's stderr, echoed to ours as it is read */
    char config[64];            /* temporary config file */
    int port;
};

struct reply {
    int status;
    char head[8192];            /* status line and headers, NUL-terminated */
    char body[8192];
    size_t body_len;
};

long long now_ms(void);
void sleep_ms(int ms);

void reader_init(struct reader *r, int fd);
/* Reads a line (without '\n'). 1 = got one, 0 = EOF, -1 = timeout or error. */
int reader_line(struct reader *r, char *line, size_t cap, int timeout_ms);
/* 1 if the peer closes within timeout_ms (any buffered data is discarded). */
int reader_eof(struct reader *r, int timeout_ms);

void proc_init(struct proc *p);
/* Writes text to a new temporary config file (path in p->config). */
int proc_write_config(struct proc *p, const char *text);
/* Starts bin with argv (argv[0] is set for you; NULL-terminated). */
int proc_spawn(struct proc *p, const char *bin, const char *const *args);
/* Writes the config, starts the server and waits for its "listening on" line. */
int proc_start_server(struct proc *p, const char *bin, const char *config_text);
/* Waits for a stderr line containing text. */
bool proc_wait_stderr(struct proc *p, const char *text, int timeout_ms);
/* Waits for exit; returns the wait status or -1 on timeout. */
int proc_wait(struct proc *p, int timeout_ms);
/* Kills (if still running), reaps, echoes remaining stderr, removes the config. */
void proc_cleanup(struct proc *p);

/* Connects to 127.0.0.1:port. Returns the fd, or -errno. */
int tcp_connect(int port);
bool send_str(int fd, const char *s);
/* Reads one response. head_only: the request was HEAD. 0 on success. */
int read_reply(struct reader *r, struct reply *rep, bool head_only, int timeout_ms);
/* Copies the value of header name (case-insensitive) into out; false if absent. */
bool reply_header(const struct reply *rep, const char *name, char *out, size_t cap);
/* Sends req on a new connection and reads the reply; closes the connection. */
int http_once(int port, const char *req, struct reply *rep);

#endif
