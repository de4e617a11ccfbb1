#include "http.h"

#include <stdio.h>
#include <string.h>

static bool is_tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return true;
    return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static bool is_token(struct http_slice s)
{
    if (s.len == 0)
        return false;
    for (size_t i = 0; i < s.len; i++)
        if (!is_tchar((unsigned char)s.ptr[i]))
            return false;
    return true;
}

/* Control characters other than HTAB are never valid in a header section. */
static bool is_ctl(unsigned char c)
{
    return (c < 0x20 && c != '\t') || c == 0x7f;
}

static char lower(char c)
{
    return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

static bool slice_eq_ci(struct http_slice s, const char *lit)
{
    size_t n = strlen(lit);
    if (s.len != n)
        return false;
    for (size_t i = 0; i < n; i++)
        if (lower(s.ptr[i]) != lower(lit[i]))
            return false;
    return true;
}

bool http_slice_eq(struct http_slice s, const char *lit)
{
    return s.len == strlen(lit) && memcmp(s.ptr, lit, s.len) == 0;
}

static struct http_slice trim_ows(struct http_slice s)
{
    while (s.len > 0 && (s.ptr[0] == ' ' || s.ptr[0] == '\t')) {
        s.ptr++;
        s.len--;
    }
    while (s.len > 0 && (s.ptr[s.len - 1] == ' ' || s.ptr[s.len - 1] == '\t'))
        s.len--;
    return s;
}

/* Takes the next LF-terminated line from buf at *pos, without its CR LF. */
static bool next_line(const char *buf, size_t len, size_t *pos, struct http_slice *line)
{
    const char *nl = memchr(buf + *pos, '\n', len - *pos);
    if (nl == NULL)
        return false;
    line->ptr = buf + *pos;
    line->len = (size_t)(nl - line->ptr);
    if (line->len > 0 && line->ptr[line->len - 1] == '\r')
        line->len--;
    *pos = (size_t)(nl - buf) + 1;
    return true;
}

static bool has_ctl(struct http_slice s)
{
    for (size_t i = 0; i < s.len; i++)
        if (is_ctl((unsigned char)s.ptr[i]))
            return true;
    return false;
}

/* The unterminated tail of the buffer: reject junk early, enforce the limit. */
static enum http_parse_status incomplete(const char *buf, size_t len, size_t pos)
{
    if (len >= HTTP_MAX_HEADER)
        return HTTP_PARSE_TOO_LARGE;
    for (size_t i = pos; i < len; i++)
        if (is_ctl((unsigned char)buf[i]) && !(buf[i] == '\r' && i + 1 == len))
            return HTTP_PARSE_BAD;
    return HTTP_PARSE_INCOMPLETE;
}

static enum http_parse_status parse_version(struct http_slice v, struct http_request *req)
{
    if (v.len != 8 || memcmp(v.ptr, "HTTP/", 5) != 0 || v.ptr[6] != '.')
        return HTTP_PARSE_BAD;
    char major = v.ptr[5], minor = v.ptr[7];
    if (major < '0' || major > '9' || minor < '0' || minor > '9')
        return HTTP_PARSE_BAD;
    if (major != '1')
        return HTTP_PARSE_BAD_VERSION;
    req->minor = minor - '0';
    return HTTP_PARSE_OK;
}

/* method SP request-target SP HTTP-version */
static enum http_parse_status parse_request_line(struct http_slice line,
                                                 struct http_request *req)
{
    const char *end = line.ptr + line.len;
    const char *sp1 = memchr(line.ptr, ' ', line.len);
    if (sp1 == NULL)
        return HTTP_PARSE_BAD;
    req->method = (struct http_slice){line.ptr, (size_t)(sp1 - line.ptr)};
    const char *t = sp1 + 1;
    const char *sp2 = memchr(t, ' ', (size_t)(end - t));
    if (sp2 == NULL || sp2 == t || !is_token(req->method))
        return HTTP_PARSE_BAD;
    req->target = (struct http_slice){t, (size_t)(sp2 - t)};
    for (size_t i = 0; i < req->target.len; i++) {
        unsigned char c = (unsigned char)t[i];
        if (c <= 0x20 || c >= 0x7f)
            return HTTP_PARSE_BAD;
    }
    const char *q = memchr(t, '?', req->target.len);
    req->path = (struct http_slice){t, q ? (size_t)(q - t) : req->target.len};
    return parse_version((struct http_slice){sp2 + 1, (size_t)(end - sp2 - 1)}, req);
}

struct header_state {
    bool seen_length;
    bool conn_close;
    bool conn_keep_alive;
};

static enum http_parse_status parse_content_length(struct http_slice v,
                                                   struct http_request *req,
                                                   struct header_state *hs)
{
    size_t n = 0;
    if (v.len == 0)
        return HTTP_PARSE_BAD;
    for (size_t i = 0; i < v.len; i++) {
        if (v.ptr[i] < '0' || v.ptr[i] > '9')
            return HTTP_PARSE_BAD;
        if (n <= HTTP_MAX_BODY)     /* saturate instead of overflowing */
            n = n * 10 + (size_t)(v.ptr[i] - '0');
    }
    if (n > HTTP_MAX_BODY)
        return HTTP_PARSE_BODY_TOO_LARGE;
    if (hs->seen_length && n != req->content_length)
        return HTTP_PARSE_BAD;
    hs->seen_length = true;
    req->content_length = n;
    return HTTP_PARSE_OK;
}

static void parse_connection(struct http_slice v, struct header_state *hs)
{
    while (v.len > 0) {
        const char *comma = memchr(v.ptr, ',', v.len);
        size_t n = comma ? (size_t)(comma - v.ptr) : v.len;
        struct http_slice tok = trim_ows((struct http_slice){v.ptr, n});
        if (slice_eq_ci(tok, "close"))
            hs->conn_close = true;
        else if (slice_eq_ci(tok, "keep-alive"))
            hs->conn_keep_alive = true;
        v.ptr += comma ? n + 1 : n;
        v.len -= comma ? n + 1 : n;
    }
}

static enum http_parse_status parse_header(struct http_slice line, struct http_request *req,
                                           struct header_state *hs)
{
    const char *colon = memchr(line.ptr, ':', line.len);
    if (colon == NULL || has_ctl(line))
        return HTTP_PARSE_BAD;
    /* Also rejects obsolete line folding and space before the colon. */
    struct http_slice name = {line.ptr, (size_t)(colon - line.ptr)};
    if (!is_token(name))
        return HTTP_PARSE_BAD;
    struct http_slice value = trim_ows((struct http_slice){colon + 1,
                                       line.len - name.len - 1});
    if (slice_eq_ci(name, "content-length"))
        return parse_content_length(value, req, hs);
    if (slice_eq_ci(name, "transfer-encoding"))
        return HTTP_PARSE_UNSUPPORTED;
    if (slice_eq_ci(name, "connection"))
        parse_connection(value, hs);
    else if (slice_eq_ci(name, "expect") && slice_eq_ci(value, "100-continue"))
        req->expect_continue = true;
    return HTTP_PARSE_OK;
}

enum http_parse_status http_parse_request(const char *buf, size_t len,
                                          struct http_request *req)
{
    memset(req, 0, sizeof *req);
    size_t pos = 0;
    struct http_slice line;
    do {    /* empty lines before the request line are ignored */
        if (!next_line(buf, len, &pos, &line))
            return incomplete(buf, len, pos);
    } while (line.len == 0);

    enum http_parse_status st = parse_request_line(line, req);
    if (st != HTTP_PARSE_OK)
        return st;

    struct header_state hs = {0};
    for (;;) {
        if (!next_line(buf, len, &pos, &line))
            return incomplete(buf, len, pos);
        if (pos > HTTP_MAX_HEADER)
            return HTTP_PARSE_TOO_LARGE;
        if (line.len == 0)
            break;
        st = parse_header(line, req, &hs);
        if (st != HTTP_PARSE_OK)
            return st;
    }
    req->header_len = pos;
    req->keep_alive = req->minor >= 1 ? !hs.conn_close
                                      : hs.conn_keep_alive && !hs.conn_close;
    return HTTP_PARSE_OK;
}

int http_parse_error_status(enum http_parse_status st)
{
    switch (st) {
    case HTTP_PARSE_TOO_LARGE:
        return 431;
    case HTTP_PARSE_BODY_TOO_LARGE:
        return 413;
    case HTTP_PARSE_UNSUPPORTED:
        return 501;
    case HTTP_PARSE_BAD_VERSION:
        return 505;
    default:
        return 400;
    }
}

const char *http_reason(int status)
{
    static const struct { int status; const char *reason; } reasons[] = {
        {100, "Continue"}, {200, "OK"}, {201, "Created"}, {202, "Accepted"},
        {203, "Non-Authoritative Information"}, {206, "Partial Content"},
        {301, "Moved Permanently"}, {302, "Found"}, {303, "See Other"},
        {307, "Temporary Redirect"}, {308, "Permanent Redirect"},
        {400, "Bad Request"}, {401, "Unauthorized"}, {403, "Forbidden"},
        {404, "Not Found"}, {405, "Method Not Allowed"}, {408, "Request Timeout"},
        {409, "Conflict"}, {410, "Gone"}, {413, "Content Too Large"},
        {418, "I'm a teapot"}, {429, "Too Many Requests"},
        {431, "Request Header Fields Too Large"}, {500, "Internal Server Error"},
        {501, "Not Implemented"}, {502, "Bad Gateway"}, {503, "Service Unavailable"},
        {504, "Gateway Timeout"}, {505, "HTTP Version Not Supported"},
    };
    for (size_t i = 0; i < sizeof reasons / sizeof reasons[0]; i++)
        if (reasons[i].status == status)
            return reasons[i].reason;
    switch (status / 100) {
    case 1: return "Informational";
    case 2: return "Success";
    case 3: return "Redirection";
    case 4: return "Client Error";
    default: return "Server Error";
    }
}

size_t http_format_response(char *out, size_t cap, const struct http_response *res,
                            const char *version, bool keep_alive, bool head_only)
{
    int n = snprintf(out, cap,
                     "HTTP/1.1 %d %s\r\n"
                     "Content-Type: %s\r\n"
                     "Content-Length: %zu\r\n"
                     "X-App-Version: %s\r\n"
                     "%s%s%s"
                     "Connection: %s\r\n"
                     "\r\n",
                     res->status, http_reason(res->status), res->content_type,
                     res->body_len, version,
                     res->allow ? "Allow: " : "", res->allow ? res->allow : "",
                     res->allow ? "\r\n" : "",
                     keep_alive ? "keep-alive" : "close");
    if (n < 0 || (size_t)n >= cap)
        return 0;
    size_t total = (size_t)n;
    if (!head_only) {
        if (res->body_len > cap - total)
            return 0;
        memcpy(out + total, res->body, res->body_len);
        total += res->body_len;
    }
    return total;
}
