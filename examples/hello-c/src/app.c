#include "app.h"

#include <stdarg.h>
#include <stdio.h>

static void text(struct http_response *res, int status, const char *type,
                 const char *fmt, ...)
{
    res->status = status;
    res->content_type = type;
    res->allow = NULL;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(res->body, sizeof res->body, fmt, ap);
    va_end(ap);
    res->body_len = n < 0 ? 0 : (size_t)n < sizeof res->body ? (size_t)n
                                                              : sizeof res->body - 1;
}

void app_error(int status, struct http_response *res)
{
    text(res, status, "text/plain", "%d %s\n", status, http_reason(status));
}

bool app_health_fails(uint64_t seq, int percent)
{
    uint64_t n = seq % 100, p = (uint64_t)percent;
    /* answer n fails if the running total of failures, ceil(n * p / 100), steps up */
    return ((n + 1) * p + 99) / 100 > (n * p + 99) / 100;
}

static void health(const struct app_ctx *ctx, struct http_response *res)
{
    int status = ctx->health_status;
    uint64_t seq = atomic_fetch_add(ctx->health_seq, 1);
    if (app_health_fails(seq, ctx->health_fail_percent))
        status = 500;
    text(res, status, "application/json", "{\"status\":\"%s\",\"version\":\"%s\"}",
         status == 200 ? "ok" : "fail", ctx->version);
}

void app_handle(const struct http_request *req, const struct app_ctx *ctx,
                struct http_response *res)
{
    if (!http_slice_eq(req->method, "GET") && !http_slice_eq(req->method, "HEAD")) {
        app_error(405, res);
        res->allow = "GET, HEAD";
    } else if (http_slice_eq(req->path, "/health")) {
        health(ctx, res);
    } else if (http_slice_eq(req->path, "/version")) {
        text(res, 200, "text/plain", "%s\n", ctx->version);
    } else if (http_slice_eq(req->path, "/")) {
        text(res, 200, "text/plain", "hello from hello-c %s\n", ctx->version);
    } else {
        app_error(404, res);
    }
}
