/* HTTP/1.x request parsing and response formatting. No I/O. */
#ifndef HELLO_HTTP_H
#define HELLO_HTTP_H

#include <stdbool.h>
#include <stddef.h>

#define HTTP_MAX_HEADER 8192            /* request line + headers + blank line */
#define HTTP_MAX_BODY (1024 * 1024)     /* larger bodies get 413 */
#define HTTP_BODY_MAX 256               /* our own response bodies */
#define HTTP_RESPONSE_MAX 1024

enum http_parse_status {
    HTTP_PARSE_OK,
    HTTP_PARSE_INCOMPLETE,      /* need more bytes */
    HTTP_PARSE_BAD,             /* 400 */
    HTTP_PARSE_TOO_LARGE,       /* 431: header section over HTTP_MAX_HEADER */
    HTTP_PARSE_BODY_TOO_LARGE,  /* 413 */
    HTTP_PARSE_UNSUPPORTED,     /* 501: Transfer-Encoding */
    HTTP_PARSE_BAD_VERSION,     /* 505 */
};

struct http_slice {
    const char *ptr;
    size_t len;
};

/* Slices point into the buffer that was parsed. */
struct http_request {
    struct http_slice method;
    struct http_slice target;
    struct http_slice path;     /* target without the query string */
    int minor;                  /* HTTP/1.<minor> */
    bool keep_alive;
    bool expect_continue;
    size_t content_length;
    size_t header_len;          /* bytes up to and including the blank line */
};

struct http_response {
    int status;
    const char *content_type;
    const char *allow;          /* Allow header value, or NULL */
    char body[HTTP_BODY_MAX];
    size_t body_len;
};

/* Parses one request from the start of buf. On HTTP_PARSE_OK, the body (if
 * any) starts at buf + req->header_len; bytes after it belong to the next
 * request. */
enum http_parse_status http_parse_request(const char *buf, size_t len,
                                          struct http_request *req);

/* Status code to answer a failed parse with. */
int http_parse_error_status(enum http_parse_status st);

const char *http_reason(int status);

bool http_slice_eq(struct http_slice s, const char *lit);

/* Writes status line, headers and (unless head_only) body to out. Returns the
 * length, or 0 if it does not fit in cap. */
size_t http_format_response(char *out, size_t cap, const struct http_response *res,
                            const char *version, bool keep_alive, bool head_only);

#endif
