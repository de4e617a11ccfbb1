#include "app.h"
#include "check.h"
#include "http.h"

#include <stdlib.h>
#include <string.h>

static enum http_parse_status parse(const char *text, struct http_request *req)
{
    return http_parse_request(text, strlen(text), req);
}

static void test_simple_get(void)
{
    struct http_request req;
    const char *text = "GET /health?x=1 HTTP/1.1\r\nHost: a\r\n\r\n";
    CHECK(parse(text, &req) == HTTP_PARSE_OK);
    CHECK(http_slice_eq(req.method, "GET"));
    CHECK(http_slice_eq(req.target, "/health?x=1"));
    CHECK(http_slice_eq(req.path, "/health"));
    CHECK(req.minor == 1);
    CHECK(req.keep_alive);
    CHECK(req.content_length == 0);
    CHECK(req.header_len == strlen(text));
}

static void test_incomplete(void)
{
    struct http_request req;
    const char *text = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
    for (size_t n = 0; n < strlen(text); n++)
        CHECK(http_parse_request(text, n, &req) == HTTP_PARSE_INCOMPLETE);
    CHECK(parse("\r\n\r\n", &req) == HTTP_PARSE_INCOMPLETE);  /* blank lines only */
}

static void test_keep_alive_rules(void)
{
    struct http_request req;
    CHECK(parse("GET / HTTP/1.1\r\nConnection: close\r\n\r\n", &req) == HTTP_PARSE_OK);
    CHECK(!req.keep_alive);
    CHECK(parse("GET / HTTP/1.1\r\nconnection: Upgrade, CLOSE\r\n\r\n", &req) == HTTP_PARSE_OK);
    CHECK(!req.keep_alive);
    CHECK(parse("GET / HTTP/1.0\r\n\r\n", &req) == HTTP_PARSE_OK);
    CHECK(req.minor == 0 && !req.keep_alive);
    CHECK(parse("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", &req) == HTTP_PARSE_OK);
    CHECK(req.keep_alive);
    CHECK(parse("GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n", &req) == HTTP_PARSE_OK);
    CHECK(!req.keep_alive);
}

static void test_line_endings(void)
{
    struct http_request req;
    const char *text = "\r\n\nGET /version HTTP/1.1\nHost:a\n\n";
    CHECK(parse(text, &req) == HTTP_PARSE_OK);
    CHECK(http_slice_eq(req.path, "/version"));
    CHECK(req.header_len == strlen(text));
}

static void test_pipelining(void)
{
    struct http_request req;
    const char *text = "POST /a HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"
                       "GET /b HTTP/1.1\r\n\r\n"
                       "GET /c";
    size_t len = strlen(text);
    CHECK(http_parse_request(text, len, &req) == HTTP_PARSE_OK);
    CHECK(http_slice_eq(req.method, "POST") && req.content_length == 5);
    CHECK(memcmp(text + req.header_len, "hello", 5) == 0);

    size_t off = req.header_len + req.content_length;
    CHECK(http_parse_request(text + off, len - off, &req) == HTTP_PARSE_OK);
    CHECK(http_slice_eq(req.path, "/b"));

    off += req.header_len;
    CHECK(http_parse_request(text + off, len - off, &req) == HTTP_PARSE_INCOMPLETE);
    CHECK(strcmp(text + off, "GET /c") == 0);
}

static void test_malformed(void)
{
    static const char *const bad[] = {
        "GARBAGE\r\n\r\n",
        "GET\r\n\r\n",
        "GET /\r\n\r\n",
        "GET  / HTTP/1.1\r\n\r\n",
        "GET / HTTP/1.1 \r\n\r\n",
        " GET / HTTP/1.1\r\n\r\n",
        "G(T / HTTP/1.1\r\n\r\n",
        "GET / HTTX/1.1\r\n\r\n",
        "GET / HTTP/1\r\n\r\n",
        "GET / HTTP/1.10\r\n\r\n",
        "GET /a\x01 HTTP/1.1\r\n\r\n",
        "GET / HTTP/1.1\r\nNoColon\r\n\r\n",
        "GET / HTTP/1.1\r\n: empty-name\r\n\r\n",
        "GET / HTTP/1.1\r\nName : space-before-colon\r\n\r\n",
        "GET / HTTP/1.1\r\nA: b\r\n folded\r\n\r\n",
        "GET / HTTP/1.1\r\nA: b\rc\r\n\r\n",
        "GET / HTTP/1.1\r\nA: b\x7f\r\n\r\n",
        "GET / HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
        "GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
        "GET / HTTP/1.1\r\nContent-Length:\r\n\r\n",
        "GET / HTTP/1.1\r\nContent-Length: 1, 1\r\n\r\n",
        "GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
    };
    struct http_request req;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (parse(bad[i], &req) != HTTP_PARSE_BAD) {
            fprintf(stderr, "  not rejected: case %zu\n", i);
            CHECK(!"malformed request accepted");
        }
    }
    /* Junk is rejected before the line ends, so a bad client does not hang. */
    CHECK(parse("\x16\x03\x01\x02", &req) == HTTP_PARSE_BAD);
    CHECK(parse("GET / HTTP/1.1\r\nA: b\x01", &req) == HTTP_PARSE_BAD);
    CHECK(parse("GET / HTTP/1.1\r", &req) == HTTP_PARSE_INCOMPLETE);
    /* Same value twice is fine. */
    CHECK(parse("GET / HTTP/1.1\r\nContent-Length: 3\r\ncontent-length: 3\r\n\r\n", &req)
          == HTTP_PARSE_OK);
}

static void test_other_failures(void)
{
    struct http_request req;
    CHECK(parse("GET / HTTP/2.0\r\n\r\n", &req) == HTTP_PARSE_BAD_VERSION);
    CHECK(parse("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", &req)
          == HTTP_PARSE_UNSUPPORTED);
    CHECK(parse("POST / HTTP/1.1\r\nContent-Length: 1048577\r\n\r\n", &req)
          == HTTP_PARSE_BODY_TOO_LARGE);
    CHECK(parse("POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n", &req)
          == HTTP_PARSE_BODY_TOO_LARGE);
    CHECK(parse("POST / HTTP/1.1\r\nContent-Length: 1048576\r\n\r\n", &req) == HTTP_PARSE_OK);
    CHECK(http_parse_error_status(HTTP_PARSE_BAD) == 400);
    CHECK(http_parse_error_status(HTTP_PARSE_TOO_LARGE) == 431);
    CHECK(http_parse_error_status(HTTP_PARSE_BODY_TOO_LARGE) == 413);
    CHECK(http_parse_error_status(HTTP_PARSE_UNSUPPORTED) == 501);
    CHECK(http_parse_error_status(HTTP_PARSE_BAD_VERSION) == 505);
}

/* A request whose header section is exactly size bytes long. */
static char *request_of_size(size_t size)
{
    const char *head = "GET / HTTP/1.1\r\nX-Pad: ";
    char *buf = malloc(size + 1);
    size_t pad = size - strlen(head) - 4;
    strcpy(buf, head);
    memset(buf + strlen(head), 'a', pad);
    strcpy(buf + strlen(head) + pad, "\r\n\r\n");
    return buf;
}

static void test_header_limit(void)
{
    struct http_request req;
    char *ok = request_of_size(HTTP_MAX_HEADER);
    CHECK(parse(ok, &req) == HTTP_PARSE_OK && req.header_len == HTTP_MAX_HEADER);
    free(ok);

    char *big = request_of_size(HTTP_MAX_HEADER + 1);
    CHECK(parse(big, &req) == HTTP_PARSE_TOO_LARGE);
    /* A full buffer without the end of the header section. */
    CHECK(http_parse_request(big, HTTP_MAX_HEADER, &req) == HTTP_PARSE_TOO_LARGE);
    CHECK(http_parse_request(big, HTTP_MAX_HEADER - 1, &req) == HTTP_PARSE_INCOMPLETE);
    free(big);
}

static void test_format(void)
{
    struct http_response res = {.status = 200, .content_type = "text/plain"};
    strcpy(res.body, "hi\n");
    res.body_len = 3;
    char out[HTTP_RESPONSE_MAX];
    size_t n = http_format_response(out, sizeof out, &res, "1.2.3", true, false);
    const char *want = "HTTP/1.1 200 OK\r\n"
                       "Content-Type: text/plain\r\n"
                       "Content-Length: 3\r\n"
                       "X-App-Version: 1.2.3\r\n"
                       "Connection: keep-alive\r\n"
                       "\r\n"
                       "hi\n";
    CHECK(n == strlen(want) && memcmp(out, want, n) == 0);

    n = http_format_response(out, sizeof out, &res, "1.2.3", false, true);
    out[n] = '\0';
    CHECK(strstr(out, "Connection: close\r\n") != NULL);
    CHECK(strstr(out, "Content-Length: 3\r\n") != NULL);
    CHECK(n >= 4 && strcmp(out + n - 4, "\r\n\r\n") == 0);     /* HEAD: no body */

    res.allow = "GET, HEAD";
    n = http_format_response(out, sizeof out, &res, "1.2.3", true, false);
    out[n] = '\0';
    CHECK(strstr(out, "\r\nAllow: GET, HEAD\r\n") != NULL);

    CHECK(http_format_response(out, 40, &res, "1.2.3", true, false) == 0);
    CHECK(strcmp(http_reason(404), "Not Found") == 0);
    CHECK(strcmp(http_reason(599), "Server Error") == 0);
}

/* Routes text through the parser and app_handle. */
static void route(const char *text, struct app_ctx *ctx, struct http_response *res)
{
    struct http_request req;
    CHECK(parse(text, &req) == HTTP_PARSE_OK);
    app_handle(&req, ctx, res);
    res->body[res->body_len < sizeof res->body ? res->body_len : 0] = '\0';
}

static void test_routes(void)
{
    atomic_uint_fast64_t seq = 0;
    struct app_ctx ctx = {.version = "4.5.6", .health_status = 200, .health_seq = &seq};
    struct http_response res;

    route("GET /health HTTP/1.1\r\n\r\n", &ctx, &res);
    CHECK(res.status == 200 && strcmp(res.content_type, "application/json") == 0);
    CHECK(strcmp(res.body, "{\"status\":\"ok\",\"version\":\"4.5.6\"}") == 0);
    route("HEAD /health?probe=1 HTTP/1.1\r\n\r\n", &ctx, &res);
    CHECK(res.status == 200);
    route("GET /version HTTP/1.1\r\n\r\n", &ctx, &res);
    CHECK(res.status == 200 && strcmp(res.body, "4.5.6\n") == 0);
    route("GET / HTTP/1.1\r\n\r\n", &ctx, &res);
    CHECK(res.status == 200 && strcmp(res.body, "hello from hello-c 4.5.6\n") == 0);
    CHECK(strcmp(res.content_type, "text/plain") == 0);
    route("GET /nope HTTP/1.1\r\n\r\n", &ctx, &res);
    CHECK(res.status == 404 && res.allow == NULL);
    route("GET /health/ HTTP/1.1\r\n\r\n", &ctx, &res);
    CHECK(res.status == 404);
    route("POST /health HTTP/1.1\r\n\r\n", &ctx, &res);
    CHECK(res.status == 405 && strcmp(res.allow, "GET, HEAD") == 0);
    route("get /health HTTP/1.1\r\n\r\n", &ctx, &res);
    CHECK(res.status == 405);

    ctx.health_status = 503;
    route("GET /health HTTP/1.1\r\n\r\n", &ctx, &res);
    CHECK(res.status == 503);
    CHECK(strcmp(res.body, "{\"status\":\"fail\",\"version\":\"4.5.6\"}") == 0);
}

static void test_fail_percent(void)
{
    for (int p = 0; p <= 100; p++) {
        int fails = 0;
        for (uint64_t n = 0; n < 100; n++)
            fails += app_health_fails(n, p);
        CHECK(fails == p);
        CHECK(app_health_fails(0, p) == (p > 0));
    }
    CHECK(app_health_fails(0, 50) && !app_health_fails(1, 50) && app_health_fails(2, 50));
    CHECK(app_health_fails(UINT64_MAX, 100));

    atomic_uint_fast64_t seq = 0;
    struct app_ctx ctx = {.version = "1", .health_status = 200, .health_fail_percent = 50,
                          .health_seq = &seq};
    struct http_response res;
    int statuses[4];
    for (int i = 0; i < 4; i++) {
        route("GET /health HTTP/1.1\r\n\r\n", &ctx, &res);
        statuses[i] = res.status;
    }
    CHECK(statuses[0] == 500 && statuses[1] == 200 && statuses[2] == 500 && statuses[3] == 200);
    CHECK(seq == 4);
}

int main(void)
{
    test_simple_get();
    test_incomplete();
    test_keep_alive_rules();
    test_line_endings();
    test_pipelining();
    test_malformed();
    test_other_failures();
    test_header_limit();
    test_format();
    test_routes();
    test_fail_percent();
    return check_report("unit_http");
}
