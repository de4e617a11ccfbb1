#include "check.h"
#include "ini.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char err[CONFIG_ERR_MAX];

static int parse(const char *text, struct config *cfg)
{
    config_defaults(cfg, "0.0.1");
    err[0] = '\0';
    return config_parse(text, strlen(text), "test.ini", cfg, err, sizeof err);
}

/* Parses text expecting an error that contains each of the given fragments. */
static void expect_error(const char *text, const char *frag1, const char *frag2)
{
    struct config cfg;
    int rc = parse(text, &cfg);
    CHECK(rc == -1);
    if (strstr(err, frag1) == NULL || (frag2 && strstr(err, frag2) == NULL)) {
        fprintf(stderr, "  for input: %s\n  error was: %s\n", text, err);
        CHECK(!"error message lacks expected text");
    }
}

static void test_defaults(void)
{
    struct config cfg;
    CHECK(parse("", &cfg) == 0);
    CHECK(strcmp(cfg.bind, "127.0.0.1") == 0);
    CHECK(cfg.port == 8080);
    CHECK(strcmp(cfg.version, "0.0.1") == 0);
    CHECK(cfg.drain_timeout_ms == 10000);
    CHECK(cfg.faults.health_status == 200);
    CHECK(cfg.faults.health_fail_percent == 0);
    CHECK(cfg.faults.latency_ms == 0);
    CHECK(!cfg.faults.fail_at_startup);
}

static void test_full_file(void)
{
    struct config cfg;
    const char *text =
        "; leading comment\n"
        "# another comment\n"
        "\n"
        "[server]\n"
        "bind = 127.0.0.2\n"
        "  port=0   ; ephemeral\n"
        "version = 2.3.4-rc.1+build5 # trailing hash comment\n"
        "drain_timeout_ms = 250\r\n"
        "[ faults ]   ; spaces inside brackets\n"
        "health_status = 503\n"
        "health_fail_percent = 100\n"
        "latency_ms = 1500\n"
        "fail_at_startup = yes";     /* no final newline */
    CHECK(parse(text, &cfg) == 0);
    CHECK(strcmp(cfg.bind, "127.0.0.2") == 0);
    CHECK(cfg.port == 0);
    CHECK(strcmp(cfg.version, "2.3.4-rc.1+build5") == 0);
    CHECK(cfg.drain_timeout_ms == 250);
    CHECK(cfg.faults.health_status == 503);
    CHECK(cfg.faults.health_fail_percent == 100);
    CHECK(cfg.faults.latency_ms == 1500);
    CHECK(cfg.faults.fail_at_startup);
}

static void test_bools(void)
{
    const char *yes[] = {"true", "yes", "on", "1"}, *no[] = {"false", "no", "off", "0"};
    char text[128];
    struct config cfg;
    for (int i = 0; i < 4; i++) {
        snprintf(text, sizeof text, "[faults]\nfail_at_startup = %s\n", yes[i]);
        CHECK(parse(text, &cfg) == 0 && cfg.faults.fail_at_startup);
        snprintf(text, sizeof text, "[faults]\nfail_at_startup=%s\n", no[i]);
        CHECK(parse(text, &cfg) == 0 && !cfg.faults.fail_at_startup);
    }
    expect_error("[faults]\nfail_at_startup = maybe\n", "fail_at_startup", "true or false");
}

static void test_structure_errors(void)
{
    expect_error("[server]\nport = 1\n[clients]\n", "test.ini:3:", "unknown section [clients]");
    expect_error("[server]\ncolour = blue\n", "test.ini:2:", "unknown key 'colour' in [server]");
    expect_error("[faults]\nport = 1\n", "test.ini:2:", "unknown key 'port' in [faults]");
    expect_error("port = 1\n", "test.ini:1:", "outside of any section");
    expect_error("[server]\n\njust words\n", "test.ini:3:", "expected 'key = value'");
    expect_error("[server\n", "test.ini:1:", "']'");
    expect_error("[server]\n = 5\n", "test.ini:2:", "missing key");
    expect_error("[server]\nPort = 5\n", "unknown key 'Port'", NULL);
    char longline[2000];
    memset(longline, 'x', sizeof longline);
    memcpy(longline, "[server]\n", 9);
    longline[sizeof longline - 1] = '\0';
    expect_error(longline, "test.ini:2:", "longer than");
}

static void test_value_errors(void)
{
    expect_error("[server]\nport = 65536\n", "test.ini:2: port: expected an integer 0-65535",
                 "got '65536'");
    expect_error("[server]\nport = abc\n", "port: expected an integer", "'abc'");
    expect_error("[server]\nport = -1\n", "port: expected", NULL);
    expect_error("[server]\nport = 80x\n", "port: expected", NULL);
    expect_error("[server]\nport =\n", "port: expected", "got ''");
    expect_error("[server]\nport = 99999999999999999999\n", "port: expected", NULL);
    expect_error("[server]\nbind = localhost\n", "bind: expected an IPv4 address", NULL);
    expect_error("[server]\nbind = 127.0.0.256\n", "bind: expected", NULL);
    expect_error("[server]\nversion = has space\n", "version: expected", NULL);
    expect_error("[server]\nversion = quote\"d\n", "version: expected", NULL);
    expect_error("[server]\nversion =\n", "version: expected", NULL);
    expect_error("[server]\ndrain_timeout_ms = 3600001\n", "drain_timeout_ms: expected", NULL);
    expect_error("[faults]\nhealth_status = 199\n", "health_status: expected", NULL);
    expect_error("[faults]\nhealth_status = 600\n", "health_status: expected", NULL);
    expect_error("[faults]\nhealth_status = 204\n", "health_status: expected", NULL);
    expect_error("[faults]\nhealth_fail_percent = 101\n", "health_fail_percent: expected", "0-100");
    expect_error("[faults]\nlatency_ms = 1.5\n", "latency_ms: expected", NULL);
}

static void test_version_label(void)
{
    CHECK(config_valid_version("1.0.0"));
    CHECK(config_valid_version("v2_rc-1+meta.7"));
    CHECK(!config_valid_version(""));
    CHECK(!config_valid_version("a b"));
    CHECK(!config_valid_version("x\r\nSet-Cookie: 1"));
    char longv[80];
    memset(longv, '1', sizeof longv);
    longv[63] = '\0';
    CHECK(config_valid_version(longv));
    longv[63] = '1';
    longv[64] = '\0';
    CHECK(!config_valid_version(longv));
}

static void test_nul_and_bom(void)
{
    struct config cfg;
    config_defaults(&cfg, "0.0.1");
    const char nul[] = "[server]\nport = 1\0\n";
    CHECK(config_parse(nul, sizeof nul - 1, "t", &cfg, err, sizeof err) == -1);
    CHECK(strstr(err, "NUL") != NULL);
    CHECK(parse("\xEF\xBB\xBF[server]\nport = 7\n", &cfg) == 0 && cfg.port == 7);
}

static void test_load(void)
{
    struct config cfg;
    config_defaults(&cfg, "0.0.1");
    CHECK(config_load("/nonexistent/hello.ini", &cfg, err, sizeof err) == -1);
    CHECK(strstr(err, "/nonexistent/hello.ini") != NULL);
    CHECK(strstr(err, "No such file") != NULL);

    char path[] = "/tmp/unit_ini_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd < 0)
        return;
    const char text[] = "[server]\nport = 9\n[faults]\nlatency_ms = x\n";
    CHECK(write(fd, text, sizeof text - 1) == (ssize_t)(sizeof text - 1));
    close(fd);
    CHECK(config_load(path, &cfg, err, sizeof err) == -1);
    CHECK(strstr(err, path) != NULL && strstr(err, ":4: latency_ms") != NULL);
    unlink(path);
}

int main(void)
{
    test_defaults();
    test_full_file();
    test_bools();
    test_structure_errors();
    test_value_errors();
    test_version_label();
    test_nul_and_bom();
    test_load();
    return check_report("unit_ini");
}
