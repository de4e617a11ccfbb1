/* plain-c: serve a document root over HTTP/1.1, one thread per connection.
 *
 *   plain-c --listen ADDRESS:PORT --root DIR [--conf FILE]
 *
 * FILE holds "header = Name: value" lines added to every response. SIGTERM ends the
 * process at once (the default action): no draining, like many small servers.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#define MAX_REQUEST 8192
#define MAX_HEADERS 2048
#define IDLE_SECONDS 5

static const char *doc_root;
static char extra_headers[MAX_HEADERS];

static void die(const char *what) {
    fprintf(stderr, "plain-c: %s\n", what);
    exit(2);
}

static void load_conf(const char *path) {
    FILE *in = fopen(path, "r");
    char line[512];
    size_t used = 0;
    if (!in) {
        fprintf(stderr, "plain-c: cannot open %s: %s\n", path, strerror(errno));
        exit(2);
    }
    while (fgets(line, sizeof line, in)) {
        char *value;
        line[strcspn(line, "\r\n")] = '\0';
        if (strncmp(line, "header = ", 9) != 0) continue;
        value = line + 9;
        if (!strchr(value, ':') || used + strlen(value) + 3 >= sizeof extra_headers)
            die("bad header line in --conf file");
        used += (size_t)snprintf(extra_headers + used, sizeof extra_headers - used,
                                 "%s\r\n", value);
    }
    fclose(in);
}

static const char *content_type(const char *path) {
    const char *dot = strrchr(path, '.');
    if (!dot) return "application/octet-stream";
    if (!strcmp(dot, ".html")) return "text/html; charset=utf-8";
    if (!strcmp(dot, ".txt")) return "text/plain; charset=utf-8";
    if (!strcmp(dot, ".css")) return "text/css";
    if (!strcmp(dot, ".json")) return "application/json";
    return "application/octet-stream";
}

static int send_all(int fd, const char *data, size_t size) {
    while (size > 0) {
        ssize_t sent = send(fd, data, size, MSG_NOSIGNAL);
        if (sent <= 0) return -1;
        data += sent;
        size -= (size_t)sent;
    }
    return 0;
}

static int respond(int fd, int status, const char *reason, const char *type,
                   const char *body, size_t size, int head_only) {
    char head[MAX_HEADERS + 256];
    int length = snprintf(head, sizeof head,
                          "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                          "%s\r\n", status, reason, type, size, extra_headers);
    if (send_all(fd, head, (size_t)length) < 0) return -1;
    return head_only ? 0 : send_all(fd, body, size);
}

static int serve_file(int fd, const char *target, int head_only) {
    char path[4096];
    struct stat info;
    char *body;
    FILE *in;
    int ok;
    if (target[0] != '/' || strstr(target, "..")) {
        return respond(fd, 400, "Bad Request", "text/plain", "bad path\n", 9, head_only);
    }
    snprintf(path, sizeof path, "%s%s%s", doc_root, target,
             target[strlen(target) - 1] == '/' ? "index.html" : "");
    if (stat(path, &info) != 0 || !S_ISREG(info.st_mode) || !(in = fopen(path, "rb"))) {
        return respond(fd, 404, "Not Found", "text/plain", "not found\n", 10, head_only);
    }
    body = malloc((size_t)info.st_size + 1);
    if (!body || fread(body, 1, (size_t)info.st_size, in) != (size_t)info.st_size) {
        fclose(in);
        free(body);
        return respond(fd, 500, "Internal Server Error", "text/plain", "read\n", 5, head_only);
    }
    fclose(in);
    ok = respond(fd, 200, "OK", content_type(path), body, (size_t)info.st_size, head_only);
    free(body);
    return ok;
}

static void *connection(void *arg) {
    int fd = (int)(long)arg;
    char request[MAX_REQUEST];
    size_t used = 0;
    struct timeval idle = {IDLE_SECONDS, 0};
    request[0] = '\0';
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &idle, sizeof idle);
    for (;;) {
        char method[8], target[2048], version[16];
        char *end = NULL;
        size_t consumed;
        while (!(end = strstr(request, "\r\n\r\n"))) {
            ssize_t got;
            if (used >= sizeof request - 1) goto done;
            got = recv(fd, request + used, sizeof request - 1 - used, 0);
            if (got <= 0) goto done;
            used += (size_t)got;
            request[used] = '\0';
        }
        if (sscanf(request, "%7s %2047s %15s", method, target, version) != 3) goto done;
        if (strcmp(method, "GET") && strcmp(method, "HEAD")) {
            respond(fd, 405, "Method Not Allowed", "text/plain", "GET only\n", 9, 0);
            goto done;
        }
        if (serve_file(fd, target, !strcmp(method, "HEAD")) < 0) goto done;
        consumed = (size_t)(end + 4 - request);
        memmove(request, request + consumed, used - consumed + 1);
        used -= consumed;
    }
done:
    close(fd);
    return NULL;
}

static int listen_on(const char *spec) {
    char address[64];
    const char *colon = strrchr(spec, ':');
    struct sockaddr_in where = {0};
    int fd, yes = 1;
    long port;
    if (!colon || (size_t)(colon - spec) >= sizeof address) die("--listen wants ADDRESS:PORT");
    memcpy(address, spec, (size_t)(colon - spec));
    address[colon - spec] = '\0';
    port = strtol(colon + 1, NULL, 10);
    where.sin_family = AF_INET;
    where.sin_port = htons((unsigned short)port);
    if (port < 1 || port > 65535 || inet_pton(AF_INET, address, &where.sin_addr) != 1)
        die("--listen wants an IPv4 ADDRESS:PORT");
    fd = socket(AF_INET, SOCK_STREAM, 0);
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
    if (fd < 0 || bind(fd, (struct sockaddr *)&where, sizeof where) != 0 ||
        listen(fd, 512) != 0) {
        fprintf(stderr, "plain-c: cannot listen on %s: %s\n", spec, strerror(errno));
        exit(1);
    }
    printf("listening on %s\n", spec);
    fflush(stdout);
    return fd;
}

int main(int argc, char **argv) {
    const char *listen_spec = NULL;
    int server, i;
    for (i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--listen")) listen_spec = argv[i + 1];
        else if (!strcmp(argv[i], "--root")) doc_root = argv[i + 1];
        else if (!strcmp(argv[i], "--conf")) load_conf(argv[i + 1]);
        else die("usage: plain-c --listen ADDRESS:PORT --root DIR [--conf FILE]");
    }
    if (!listen_spec || !doc_root || i != argc)
        die("usage: plain-c --listen ADDRESS:PORT --root DIR [--conf FILE]");
    signal(SIGPIPE, SIG_IGN);
    server = listen_on(listen_spec);
    for (;;) {
        pthread_t thread;
        int client = accept(server, NULL, NULL);
        if (client < 0) continue;
        if (pthread_create(&thread, NULL, connection, (void *)(long)client) != 0) {
            close(client);
            continue;
        }
        pthread_detach(thread);
    }
}
