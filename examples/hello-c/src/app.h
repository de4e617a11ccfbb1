/* hello-c's routes: maps a parsed request to a response. No I/O. */
#ifndef HELLO_APP_H
#define HELLO_APP_H

#include "http.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

struct app_ctx {
    const char *version;
    int health_status;
    int health_fail_percent;
    atomic_uint_fast64_t *health_seq;   /* counts /health answers */
};

void app_handle(const struct http_request *req, const struct app_ctx *ctx,
                struct http_response *res);

/* A plain-text error response such as "404 Not Found\n". */
void app_error(int status, struct http_response *res);

/* Whether /health answer number seq (0, 1, ...) fails when percent of them
 * should. Spreads failures evenly: exactly percent of every 100 answers fail,
 * the first one included when percent > 0. */
bool app_health_fails(uint64_t seq, int percent);

#endif
