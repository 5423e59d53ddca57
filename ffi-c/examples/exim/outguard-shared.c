/*
 * outguard-shared: compile a policy into an image, create or migrate a state file, show a
 * tenant's state. A small admin tool over the C API (the full command line comes later).
 *
 *   outguard-shared compile POLICY.toml IMAGE
 *   outguard-shared create IMAGE STATE
 *   outguard-shared migrate OLD_IMAGE OLD_STATE NEW_IMAGE NEW_STATE
 *   outguard-shared status IMAGE STATE TENANT      (IMAGE may be "": the one STATE names)
 *   outguard-shared repair IMAGE STATE             (no process may have STATE open)
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "outguard.h"

static int usage(void)
{
    fputs("usage: outguard-shared compile POLICY IMAGE | create IMAGE STATE |\n"
          "       migrate OLD_IMAGE OLD_STATE NEW_IMAGE NEW_STATE | status IMAGE STATE TENANT |\n"
          "       repair IMAGE STATE\n",
          stderr);
    return 2;
}

static int report(og_result r, const char *err)
{
    if (r == OG_RESULT_OK)
        return 0;
    fprintf(stderr, "outguard-shared: %s\n", *err ? err : og_result_message(r));
    return 1;
}

int main(int argc, char **argv)
{
    char err[4096] = "";
    if (argc == 4 && strcmp(argv[1], "compile") == 0)
        return report(og_shared_compile(argv[2], argv[3], err, sizeof err), err);
    if (argc == 4 && strcmp(argv[1], "create") == 0)
        return report(og_shared_create_state(argv[2], argv[3], err, sizeof err), err);
    if (argc == 6 && strcmp(argv[1], "migrate") == 0) {
        og_reload_report rep;
        og_result r = og_shared_migrate(argv[2], argv[3], argv[4], argv[5], &rep, err, sizeof err);
        if (r == OG_RESULT_OK)
            printf("migrated: %u tenants added, %u removed\n", rep.added, rep.removed);
        return report(r, err);
    }
    if (argc == 4 && strcmp(argv[1], "repair") == 0) {
        og_repair_report rep;
        og_result r = og_shared_repair(*argv[2] ? argv[2] : NULL, argv[3], &rep, err, sizeof err);
        if (r == OG_RESULT_OK)
            printf("repaired: %u lock(s) reset, %u write(s) rolled back, %u published\n",
                   rep.locks_reset, rep.rolled_back, rep.published);
        return report(r, err);
    }
    if (argc == 5 && strcmp(argv[1], "status") == 0) {
        og_shared_engine *e = NULL;
        og_result r = og_shared_engine_open(*argv[2] ? argv[2] : NULL, argv[3], &e, err, sizeof err);
        if (r != OG_RESULT_OK)
            return report(r, err);
        og_tenant_status s;
        r = og_shared_engine_status(e, argv[4], (uint64_t)time(NULL), &s);
        if (r == OG_RESULT_OK)
            printf("tenant %s: unregistered %u/%u%s, total %u, suspicious %u%s%s\n", argv[4],
                   s.counters.unregistered, s.counters.limit,
                   s.unregistered.blocked ? " (blocked: 5.7.750)" : "", s.counters.total,
                   s.counters.suspicious, s.threshold.blocked ? " (blocked: 5.7.705)" : "",
                   s.lapsed ? " (lapsed)" : "");
        else
            og_shared_engine_last_error(e, err, sizeof err, &(size_t){0});
        og_shared_engine_free(e);
        return report(r, err);
    }
    return usage();
}
