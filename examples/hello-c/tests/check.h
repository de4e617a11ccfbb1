/* A minimal check macro: report and count failures, keep going. */
#ifndef HELLO_CHECK_H
#define HELLO_CHECK_H

#include <stdio.h>

static int check_failures;

#define CHECK(cond)                                                            \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__,  \
                    #cond);                                                    \
            check_failures++;                                                  \
        }                                                                      \
    } while (0)

/* Returns the exit status for main and prints a summary. */
static inline int check_report(const char *name)
{
    if (check_failures == 0)
        printf("%s: all checks passed\n", name);
    else
        fprintf(stderr, "%s: %d check(s) failed\n", name, check_failures);
    return check_failures == 0 ? 0 : 1;
}

#endif
