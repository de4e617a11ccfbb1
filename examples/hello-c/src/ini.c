#include "ini.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LINE_MAX_LEN 1024

enum section { SEC_NONE, SEC_SERVER, SEC_FAULTS };

struct parser {
    const char *name;
    int lineno;
    enum section section;
    struct config *cfg;
    char *err;
    size_t errlen;
};

static int fail(struct parser *p, const char *fmt, ...)
{
    int n = snprintf(p->err, p->errlen, "%s:%d: ", p->name, p->lineno);
    if (n < 0 || (size_t)n >= p->errlen)
        return -1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->err + n, p->errlen - (size_t)n, fmt, ap);
    va_end(ap);
    return -1;
}

static int bad_value(struct parser *p, const char *key, const char *expected,
                     const char *value)
{
    return fail(p, "%s: expected %s, got '%s'", key, expected, value);
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v';
}

/* Trims s in place and returns the start of the trimmed text. */
static char *trim(char *s)
{
    while (is_space(*s))
        s++;
    size_t n = strlen(s);
    while (n > 0 && is_space(s[n - 1]))
        s[--n] = '\0';
    return s;
}

/* Parses a decimal integer in [min, max]; digits only. */
static bool parse_int(const char *s, int min, int max, int *out)
{
    long v = 0;
    if (*s == '\0')
        return false;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return false;
        v = v * 10 + (*s - '0');
        if (v > max)
            return false;
    }
    if (v < min)
        return false;
    *out = (int)v;
    return true;
}

static bool parse_bool(const char *s, bool *out)
{
    static const char *const yes[] = {"true", "yes", "on", "1"};
    static const char *const no[] = {"false", "no", "off", "0"};
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
        if (strcmp(s, yes[i]) == 0) {
            *out = true;
            return true;
        }
        if (strcmp(s, no[i]) == 0) {
            *out = false;
            return true;
        }
    }
    return false;
}

bool config_valid_version(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n >= CONFIG_VERSION_MAX)
        return false;
    return strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                     "0123456789._+-") == n;
}

/* 1xx, 204, 205 and 304 responses cannot carry the JSON body. */
static bool valid_health_status(int status)
{
    return status != 204 && status != 205 && status != 304;
}

static int set_int(struct parser *p, const char *key, const char *value,
                   int min, int max, int *out)
{
    if (parse_int(value, min, max, out))
        return 0;
    char expected[64];
    snprintf(expected, sizeof expected, "an integer %d-%d", min, max);
    return bad_value(p, key, expected, value);
}

static int set_server(struct parser *p, const char *key, const char *value)
{
    struct config *c = p->cfg;
    if (strcmp(key, "bind") == 0) {
        struct in_addr addr;
        if (strlen(value) >= sizeof c->bind || inet_pton(AF_INET, value, &addr) != 1)
            return bad_value(p, key, "an IPv4 address like 127.0.0.1", value);
        strcpy(c->bind, value);
        return 0;
    }
    if (strcmp(key, "port") == 0)
        return set_int(p, key, value, 0, 65535, &c->port);
    if (strcmp(key, "version") == 0) {
        if (!config_valid_version(value))
            return bad_value(p, key, "1-63 characters of [A-Za-z0-9._+-]", value);
        strcpy(c->version, value);
        return 0;
    }
    if (strcmp(key, "drain_timeout_ms") == 0)
        return set_int(p, key, value, 0, 3600000, &c->drain_timeout_ms);
    return fail(p, "unknown key '%s' in [server]", key);
}

static int set_faults(struct parser *p, const char *key, const char *value)
{
    struct faults *f = &p->cfg->faults;
    if (strcmp(key, "health_status") == 0) {
        int status;
        if (!parse_int(value, 200, 599, &status) || !valid_health_status(status))
            return bad_value(p, key, "an HTTP status 200-599 (not 204, 205 or 304)", value);
        f->health_status = status;
        return 0;
    }
    if (strcmp(key, "health_fail_percent") == 0)
        return set_int(p, key, value, 0, 100, &f->health_fail_percent);
    if (strcmp(key, "latency_ms") == 0)
        return set_int(p, key, value, 0, 600000, &f->latency_ms);
    if (strcmp(key, "fail_at_startup") == 0) {
        if (!parse_bool(value, &f->fail_at_startup))
            return bad_value(p, key, "true or false", value);
        return 0;
    }
    return fail(p, "unknown key '%s' in [faults]", key);
}

static int parse_section(struct parser *p, char *line)
{
    size_t n = strlen(line);
    if (line[n - 1] != ']')
        return fail(p, "expected ']' to close the section header");
    line[n - 1] = '\0';
    char *name = trim(line + 1);
    if (strcmp(name, "server") == 0)
        p->section = SEC_SERVER;
    else if (strcmp(name, "faults") == 0)
        p->section = SEC_FAULTS;
    else
        return fail(p, "unknown section [%s]", name);
    return 0;
}

static int parse_line(struct parser *p, char *line)
{
    line[strcspn(line, ";#")] = '\0';   /* comments, whole-line or trailing */
    line = trim(line);
    if (*line == '\0')
        return 0;
    if (*line == '[')
        return parse_section(p, line);

    char *eq = strchr(line, '=');
    if (eq == NULL)
        return fail(p, "expected 'key = value' or '[section]', got '%s'", line);
    *eq = '\0';
    char *key = trim(line);
    char *value = trim(eq + 1);
    if (*key == '\0')
        return fail(p, "missing key before '='");
    switch (p->section) {
    case SEC_SERVER:
        return set_server(p, key, value);
    case SEC_FAULTS:
        return set_faults(p, key, value);
    case SEC_NONE:
        break;
    }
    return fail(p, "key '%s' outside of any section", key);
}

int config_parse(const char *text, size_t len, const char *name,
                 struct config *cfg, char *err, size_t errlen)
{
    struct parser p = {.name = name, .section = SEC_NONE, .cfg = cfg,
                       .err = err, .errlen = errlen};
    if (len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0) {   /* UTF-8 BOM */
        text += 3;
        len -= 3;
    }
    while (len > 0) {
        const char *nl = memchr(text, '\n', len);
        size_t n = nl ? (size_t)(nl - text) : len;
        p.lineno++;
        if (n >= LINE_MAX_LEN)
            return fail(&p, "line longer than %d bytes", LINE_MAX_LEN - 1);
        char line[LINE_MAX_LEN];
        memcpy(line, text, n);
        line[n] = '\0';
        if (strlen(line) != n)
            return fail(&p, "unexpected NUL byte");
        if (parse_line(&p, line) != 0)
            return -1;
        size_t step = nl ? n + 1 : n;
        text += step;
        len -= step;
    }
    return 0;
}

void config_defaults(struct config *cfg, const char *version)
{
    memset(cfg, 0, sizeof *cfg);
    strcpy(cfg->bind, "127.0.0.1");
    cfg->port = 8080;
    snprintf(cfg->version, sizeof cfg->version, "%s", version);
    cfg->drain_timeout_ms = 10000;
    cfg->faults.health_status = 200;
}

int config_load(const char *path, struct config *cfg, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        snprintf(err, errlen, "cannot open config file '%s': %s", path, strerror(errno));
        return -1;
    }
    char *buf = malloc(CONFIG_FILE_MAX + 1);
    size_t len = buf ? fread(buf, 1, CONFIG_FILE_MAX + 1, f) : 0;
    int rc = -1;
    if (buf == NULL)
        snprintf(err, errlen, "%s: out of memory", path);
    else if (ferror(f))
        snprintf(err, errlen, "cannot read config file '%s': %s", path, strerror(errno));
    else if (len > CONFIG_FILE_MAX)
        snprintf(err, errlen, "%s: file larger than %d bytes", path, CONFIG_FILE_MAX);
    else
        rc = config_parse(buf, len, path, cfg, err, errlen);
    free(buf);
    fclose(f);
    return rc;
}
