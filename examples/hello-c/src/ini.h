/* INI configuration for hello-c: parsing and validation. */
#ifndef HELLO_INI_H
#define HELLO_INI_H

#include <stdbool.h>
#include <stddef.h>

#define CONFIG_BIND_MAX 16      /* dotted-quad IPv4 plus NUL */
#define CONFIG_VERSION_MAX 64
#define CONFIG_ERR_MAX 512
#define CONFIG_FILE_MAX (1024 * 1024)

struct faults {
    int health_status;          /* status /health answers with */
    int health_fail_percent;    /* 0-100: share of /health answers that get 500 */
    int latency_ms;             /* delay before every response */
    bool fail_at_startup;       /* exit 1 at start-up */
};

struct config {
    char bind[CONFIG_BIND_MAX];
    int port;                   /* 0 = ephemeral */
    char version[CONFIG_VERSION_MAX];
    int drain_timeout_ms;
    struct faults faults;
};

/* Fills cfg with the defaults; version is the compiled-in label. */
void config_defaults(struct config *cfg, const char *version);

/* Parses INI text (len bytes, need not be NUL-terminated) on top of the values
 * already in cfg. name is used in error messages. Returns 0, or -1 with a
 * message in err. cfg may be partly updated on error. */
int config_parse(const char *text, size_t len, const char *name,
                 struct config *cfg, char *err, size_t errlen);

/* Reads and parses the file at path on top of cfg. Returns 0 or -1 (err set). */
int config_load(const char *path, struct config *cfg, char *err, size_t errlen);

/* True if s is a usable version label: 1-63 characters of [A-Za-z0-9._+-]. */
bool config_valid_version(const char *s);

#endif
