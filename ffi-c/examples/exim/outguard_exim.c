/*
 * outguard_exim.so: an Exim ${dlfunc} function over outguard's shared state.
 *
 * Exim forks a process per SMTP connection and loads a dlfunc library afresh in each, so the
 * counters cannot live in process memory: this function opens an outguard engine over a
 * compiled policy image and a shared state file (mapped by every Exim process at once), once
 * per process, and keeps it open for the process's later calls.
 *
 *   ${dlfunc{/usr/lib/outguard/outguard_exim.so}{outguard_check}
 *           {IMAGE}{STATE}{$sender_address}{$authenticated_id}{$sender_host_address}
 *           {check}}
 *   ${dlfunc{...}{outguard_check}{IMAGE}{STATE}{$sender_address}{$authenticated_id}
 *           {$sender_host_address}{record}{clean}{$recipients_count}}
 *
 * Arguments:
 *   1 IMAGE   the compiled policy image; empty: the image the state file names (recommended:
 *             a reload then needs no change to Exim's configuration)
 *   2 STATE   the shared state file (readable and writable by the Exim user)
 *   3 sender  the envelope sender ($sender_address; empty for <>)
 *   4 who     the authenticated user ($authenticated_id): containing '@', it is the SASL user
 *             (the tenant is the owner of its domain); otherwise, when not empty, a tenant id
 *   5 ip      the client IP ($sender_host_address), may be empty
 *   6 mode    "check": decide, count nothing; "record": count an accepted message
 *   7 verdict (record) clean | spam | bulk | phish | malware; default clean
 *   8 rcpts   (record) number of recipients; default 1
 *
 * Result (Exim's *yield, return value):
 *   check:  OK with "accept", or OK with the exact reply, e.g.
 *           "550 5.7.750 Service unavailable. Client blocked from sending from unregistered domains"
 *   record: OK with "recorded (pid N)", or OK with "unattributed" for mail of no tenant
 *   errors: ERROR with "outguard: <what went wrong>" (Exim then fails the expansion: the ACL
 *           defers with a temporary error, or use ${if ...} around it to fail open)
 *
 * Build (see Makefile): cc -shared -fPIC ... outguard_exim.c liboutguard.a
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "outguard.h"

typedef unsigned char uschar;

/* Exim's return codes (local_scan.h). */
#define OG_EXIM_OK 0
#define OG_EXIM_ERROR 3

/* One engine per process: Exim calls from one thread. */
static og_shared_engine *engine;
static char engine_image[4096];
static char engine_state[4096];
/* Exim copies the result; a static buffer outlives the call. */
static char result[1024];

static int fail(uschar **yield, const char *what, const char *detail)
{
    snprintf(result, sizeof result, "outguard: %s%s%s", what, *detail ? ": " : "", detail);
    *yield = (uschar *)result;
    return OG_EXIM_ERROR;
}

static int engine_error(uschar **yield, const char *what, og_result r)
{
    char detail[512];
    size_t n = 0;
    if (engine == NULL || og_shared_engine_last_error(engine, detail, sizeof detail, &n) != OG_RESULT_OK || n == 0)
        snprintf(detail, sizeof detail, "%s", og_result_message(r));
    return fail(yield, what, detail);
}

/* Opens the engine, or reuses this process's (same files). 0 on success. */
static int open_engine(const char *image, const char *state, uschar **yield)
{
    if (engine != NULL && strcmp(image, engine_image) == 0 && strcmp(state, engine_state) == 0)
        return 0;
    og_shared_engine_free(engine);
    engine = NULL;
    if (strlen(image) >= sizeof engine_image || strlen(state) >= sizeof engine_state)
        return fail(yield, "path too long", ""), -1;
    char err[512] = "";
    og_result r = og_shared_engine_open(*image ? image : NULL, state, &engine, err, sizeof err);
    if (r != OG_RESULT_OK) {
        engine = NULL;
        return fail(yield, "cannot open shared state", err), -1;
    }
    strcpy(engine_image, image);
    strcpy(engine_state, state);
    return 0;
}

static int verdict_of(const char *s, og_verdict *out)
{
    static const struct { const char *name; og_verdict v; } names[] = {
        {"clean", OG_VERDICT_CLEAN}, {"spam", OG_VERDICT_SPAM}, {"bulk", OG_VERDICT_BULK},
        {"phish", OG_VERDICT_PHISH}, {"malware", OG_VERDICT_MALWARE},
    };
    if (*s == '\0') {
        *out = OG_VERDICT_CLEAN;
        return 0;
    }
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcmp(s, names[i].name) == 0) {
            *out = names[i].v;
            return 0;
        }
    return -1;
}

int outguard_check(uschar **yield, int argc, uschar *argv[]);

int outguard_check(uschar **yield, int argc, uschar *argv[])
{
    if (argc < 6)
        return fail(yield, "usage", "IMAGE STATE SENDER WHO IP check|record [VERDICT [RCPTS]]");
    const char *image = (const char *)argv[0];
    const char *state = (const char *)argv[1];
    const char *sender = (const char *)argv[2];
    const char *who = (const char *)argv[3];
    const char *ip = (const char *)argv[4];
    const char *mode = (const char *)argv[5];
    if (open_engine(image, state, yield) != 0)
        return OG_EXIM_ERROR;

    og_message m;
    memset(&m, 0, sizeof m);
    m.mail_from = sender;
    m.mail_from_len = strlen(sender);
    if (*who != '\0') {
        if (strchr(who, '@') != NULL)
            m.auth_user = who;
        else
            m.tenant = who;
    }
    if (*ip != '\0')
        m.client_ip = ip;
    m.recipients = 1;
    uint64_t now = (uint64_t)time(NULL);

    if (strcmp(mode, "check") == 0) {
        og_decision d;
        og_result r = og_shared_engine_check(engine, now, &m, &d);
        if (r != OG_RESULT_OK)
            return engine_error(yield, "check failed", r);
        const char *reply = d.accepted ? NULL : og_reason_reply(d.reason);
        snprintf(result, sizeof result, "%s", reply != NULL ? reply : "accept");
        *yield = (uschar *)result;
        return OG_EXIM_OK;
    }
    if (strcmp(mode, "record") == 0) {
        og_verdict v;
        if (verdict_of(argc > 6 ? (const char *)argv[6] : "", &v) != 0)
            return fail(yield, "unknown verdict", (const char *)argv[6]);
        if (argc > 7 && argv[7][0] != '\0') {
            long n = strtol((const char *)argv[7], NULL, 10);
            m.recipients = n > 0 && n < 1000000 ? (uint32_t)n : 1;
        }
        og_result r = og_shared_engine_record(engine, now, &m, v, NULL, 0, NULL);
        if (r == OG_RESULT_UNKNOWN_TENANT || r == OG_RESULT_INVALID_SENDER) {
            snprintf(result, sizeof result, "unattributed");
        } else if (r != OG_RESULT_OK) {
            return engine_error(yield, "record failed", r);
        } else {
            snprintf(result, sizeof result, "recorded (pid %ld)", (long)getpid());
        }
        *yield = (uschar *)result;
        return OG_EXIM_OK;
    }
    return fail(yield, "unknown mode (expected check or record)", mode);
}
