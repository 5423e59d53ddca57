/* The og_shared_* functions: a compiled policy image and a state file shared by processes.
 * Every function with its success path and its error paths (every NULL pointer, text that is
 * not UTF-8, unknown tenants, short buffers, missing and foreign files, a file in use for
 * repair), outputs left untouched on failure, and the counts of a forked child seen by the
 * parent. */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common.h"

#define BAD_UTF8 "\xff\xfe"

static char dir[64], policy[128], image[128], state[128], image2[128], state2[128];

static void write_file(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  CHECK(f != NULL);
  CHECK(fputs(text, f) >= 0);
  CHECK(fclose(f) == 0);
}

static void remove_all(void) {
  const char *files[] = {policy, image, state, image2, state2};
  for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) unlink(files[i]);
  rmdir(dir);
}

static og_shared_engine *open_engine(const char *img, const char *st) {
  og_shared_engine *e = NULL;
  char err[1024] = "";
  og_result r = og_shared_engine_open(img, st, &e, err, sizeof err);
  if (r != OG_RESULT_OK) fprintf(stderr, "open: %s\n", err);
  OK(r);
  CHECK(e != NULL);
  return e;
}

/* The other process (a fresh program, as an MTA's would be): 500 records for contoso. */
static int child_main(const char *st) {
  og_shared_engine *c = open_engine(NULL, st);
  og_message good = msg_for("contoso", "alice@contoso.com");
  for (int i = 0; i < 500; i++)
    OK(og_shared_engine_record(c, NOW + 30, &good, OG_VERDICT_CLEAN, NULL, 0, NULL));
  og_shared_engine_free(c);
  return 0;
}

int main(int argc, char **argv) {
  (void)new_engine; /* common.h's in-memory engine: not used here */
  if (argc == 3 && strcmp(argv[1], "child") == 0) return child_main(argv[2]);
  snprintf(dir, sizeof dir, "/tmp/og-shared-c-XXXXXX");
  CHECK(mkdtemp(dir) != NULL);
  snprintf(policy, sizeof policy, "%s/policy.toml", dir);
  snprintf(image, sizeof image, "%s/policy.img", dir);
  snprintf(state, sizeof state, "%s/state", dir);
  snprintf(image2, sizeof image2, "%s/policy-2.img", dir);
  snprintf(state2, sizeof state2, "%s/state-2", dir);
  atexit(remove_all);
  write_file(policy, POLICY);
  char err[2048] = "";

  /* compile and create, with their errors */
  OK(og_shared_compile(policy, image, err, sizeof err));
  err[0] = '\0';
  EXPECT(og_shared_compile(NULL, image, err, sizeof err), OG_RESULT_NULL_PARAMETER);
  CHECK(strstr(err, "NULL") != NULL); /* the error buffer describes it too */
  EXPECT(og_shared_compile(policy, NULL, err, sizeof err), OG_RESULT_NULL_PARAMETER);
  EXPECT(og_shared_compile(NULL, image, NULL, 0), OG_RESULT_NULL_PARAMETER); /* no error buffer */
  EXPECT(og_shared_compile(policy, image2, NULL, 8), OG_RESULT_NULL_PARAMETER);
  CHECK(access(image2, F_OK) != 0); /* nothing written */
  char bad_policy[160];
  snprintf(bad_policy, sizeof bad_policy, "%s/bad.toml", dir);
  write_file(bad_policy, "[rules.unregistered_domain]\nlimit = \"many\"\n");
  err[0] = '\0';
  EXPECT(og_shared_compile(bad_policy, image2, err, sizeof err), OG_RESULT_POLICY);
  CHECK(strstr(err, "limit") != NULL);
  unlink(bad_policy);
  CHECK(access(image2, F_OK) != 0); /* nothing written for a bad policy */
  OK(og_shared_create_state(image, state, err, sizeof err));
  err[0] = '\0';
  EXPECT(og_shared_create_state(image, state, err, sizeof err), OG_RESULT_IO);
  CHECK(strstr(err, "exists") != NULL);
  EXPECT(og_shared_create_state(NULL, state, err, sizeof err), OG_RESULT_NULL_PARAMETER);
  EXPECT(og_shared_create_state(image, NULL, err, sizeof err), OG_RESULT_NULL_PARAMETER);
  EXPECT(og_shared_create_state(image, state2, NULL, 8), OG_RESULT_NULL_PARAMETER);
  CHECK(access(state2, F_OK) != 0); /* nothing created */

  /* open: by the image the state names, and refusals */
  og_shared_engine *e = open_engine(NULL, state);
  og_shared_engine *other = open_engine(image, state);
  {
    char msg[8];
    size_t len = 99;
    OK(og_shared_engine_last_error(e, msg, sizeof msg, &len)); /* nothing failed yet */
    CHECK(len == 0 && msg[0] == '\0');
  }
  og_shared_engine *none = (og_shared_engine *)&err; /* must stay untouched */
  char missing[160];
  snprintf(missing, sizeof missing, "%s/missing", dir);
  EXPECT(og_shared_engine_open(image, missing, &none, err, sizeof err), OG_RESULT_IO);
  CHECK(none == (og_shared_engine *)&err);
  EXPECT(og_shared_engine_open(state, state, &none, err, sizeof err), OG_RESULT_SNAPSHOT_FOREIGN);
  EXPECT(og_shared_engine_open(NULL, policy, &none, err, sizeof err), OG_RESULT_SNAPSHOT_FOREIGN);
  EXPECT(og_shared_engine_open(image, NULL, &none, err, sizeof err), OG_RESULT_NULL_PARAMETER);
  EXPECT(og_shared_engine_open(image, state, NULL, err, sizeof err), OG_RESULT_NULL_PARAMETER);
  EXPECT(og_shared_engine_open(image, state, &none, NULL, 8), OG_RESULT_NULL_PARAMETER);
  /* file names are bytes, not text: one that is not UTF-8 is looked for, not refused */
  char nonutf8[160];
  snprintf(nonutf8, sizeof nonutf8, "%s/" BAD_UTF8, dir);
  EXPECT(og_shared_engine_open(image, nonutf8, &none, err, sizeof err), OG_RESULT_IO);
  CHECK(none == (og_shared_engine *)&err);

  /* decisions, counts and blocks; the other handle sees them */
  og_message good = msg_for("contoso", "alice@contoso.com");
  og_message bad = msg_for("contoso", "x@unregistered.example");
  og_decision d;
  og_event ev[OG_EVENTS_MAX];
  size_t n = 0;
  OK(og_shared_engine_check(e, NOW, &good, &d));
  CHECK(d.accepted);
  int blocked = 0;
  for (int i = 0; i < 4; i++) {
    OK(og_shared_engine_record(e, NOW + (uint64_t)i, &bad, OG_VERDICT_CLEAN, ev, OG_EVENTS_MAX, &n));
    for (size_t k = 0; k < n; k++) blocked += ev[k].kind == OG_EVENT_BLOCKED;
  }
  CHECK(blocked == 1);
  OK(og_shared_engine_check(other, NOW + 10, &bad, &d));
  CHECK(!d.accepted && d.reason == OG_REASON_UNREGISTERED_DOMAIN);
  OK(og_shared_engine_check(other, NOW + 10, &good, &d));
  CHECK(d.accepted);
  og_decision d2;
  memset(&d2, 0, sizeof d2);
  OK(og_shared_engine_evaluate(other, NOW + 11, &good, OG_VERDICT_CLEAN, &d2, NULL, 0, NULL));
  CHECK(d2.accepted && d2.tenant != OG_NO_TENANT);
  og_tenant_status st;
  OK(og_shared_engine_status(e, "contoso", NOW + 12, &st));
  CHECK(st.counters.unregistered == 4 && st.counters.total == 5 && st.unregistered.blocked);
  EXPECT(og_shared_engine_status(e, "nobody", NOW, &st), OG_RESULT_UNKNOWN_TENANT);
  EXPECT(og_shared_engine_status(e, BAD_UTF8, NOW, &st), OG_RESULT_INVALID_UTF8);

  /* tenant names, with a short buffer */
  char name[64];
  OK(og_shared_engine_tenant_id(e, d2.tenant, name, sizeof name, &n));
  STREQ(name, "contoso");
  CHECK(n == 7);
  OK(og_shared_engine_tenant_id(e, d2.tenant, name, 8, &n)); /* exactly the id and its NUL */
  STREQ(name, "contoso");
  memset(name, 'x', sizeof name);
  n = 0;
  EXPECT(og_shared_engine_tenant_id(e, d2.tenant, name, 3, &n), OG_RESULT_BUFFER_TOO_SMALL);
  CHECK(n == 7 && name[0] == 'x' && name[2] == 'x'); /* the length needed; nothing copied */
  n = 0;
  EXPECT(og_shared_engine_tenant_id(e, d2.tenant, name, 7, &n), OG_RESULT_BUFFER_TOO_SMALL);
  CHECK(n == 7 && name[0] == 'x' && name[6] == 'x'); /* no room for the NUL */
  n = 0;
  EXPECT(og_shared_engine_tenant_id(e, d2.tenant, NULL, 0, &n), OG_RESULT_BUFFER_TOO_SMALL);
  CHECK(n == 7);
  EXPECT(og_shared_engine_tenant_id(e, 999999, name, sizeof name, &n), OG_RESULT_UNKNOWN_TENANT);
  EXPECT(og_shared_engine_tenant_id(e, OG_NO_TENANT, name, sizeof name, &n), OG_RESULT_UNKNOWN_TENANT);
  n = 99;
  EXPECT(og_shared_engine_tenant_id(NULL, d2.tenant, name, sizeof name, &n), OG_RESULT_NULL_PARAMETER);
  EXPECT(og_shared_engine_tenant_id(e, d2.tenant, NULL, 5, &n), OG_RESULT_NULL_PARAMETER);
  EXPECT(og_shared_engine_tenant_id(e, d2.tenant, name, sizeof name, NULL), OG_RESULT_NULL_PARAMETER);
  CHECK(n == 99 && name[0] == 'x');

  /* release and lapse */
  OK(og_shared_engine_release(other, "contoso", OG_RULE_NONE, NOW + 20, ev, OG_EVENTS_MAX, &n));
  CHECK(n == 1 && ev[0].kind == OG_EVENT_RELEASED);
  OK(og_shared_engine_check(e, NOW + 21, &bad, &d));
  CHECK(d.accepted); /* grace after the release */
  OK(og_shared_engine_set_lapsed(e, "tailspin", true, NOW + 22, ev, OG_EVENTS_MAX, &n));
  CHECK(n == 1 && ev[0].kind == OG_EVENT_LAPSED);
  OK(og_shared_engine_status(other, "tailspin", NOW + 23, &st));
  CHECK(st.lapsed);
  OK(og_shared_engine_set_lapsed(e, "tailspin", false, NOW + 24, NULL, 0, NULL));
  EXPECT(og_shared_engine_release(e, "nobody", OG_RULE_NONE, NOW, NULL, 0, NULL), OG_RESULT_UNKNOWN_TENANT);
  EXPECT(og_shared_engine_release(e, "contoso", 9, NOW, NULL, 0, NULL), OG_RESULT_INVALID_PARAMETER);

  /* NULLs and bad values on the handle's calls: nothing written */
  memset(&d, 0xAB, sizeof d);
  og_decision untouched = d;
  EXPECT(og_shared_engine_check(NULL, NOW, &good, &d), OG_RESULT_NULL_PARAMETER);
  EXPECT(og_shared_engine_check(e, NOW, NULL, &d), OG_RESULT_NULL_PARAMETER);
  EXPECT(og_shared_engine_check(e, NOW, &good, NULL), OG_RESULT_NULL_PARAMETER);
  og_message badip = good;
  badip.client_ip = "300.1.1.1";
  EXPECT(og_shared_engine_check(e, NOW, &badip, &d), OG_RESULT_INVALID_IP);
  CHECK(memcmp(&d, &untouched, sizeof d) == 0);
  EXPECT(og_shared_engine_record(e, NOW, &good, 77, NULL, 0, NULL), OG_RESULT_INVALID_PARAMETER);
  EXPECT(og_shared_engine_record(e, NOW, &good, OG_VERDICT_CLEAN, NULL, 2, NULL), OG_RESULT_NULL_PARAMETER);
  og_message nobody = msg_for("nobody", "a@contoso.com");
  EXPECT(og_shared_engine_record(e, NOW, &nobody, OG_VERDICT_CLEAN, NULL, 0, NULL), OG_RESULT_UNKNOWN_TENANT);
  EXPECT(og_shared_engine_evaluate(e, NOW, &good, OG_VERDICT_CLEAN, NULL, NULL, 0, NULL), OG_RESULT_NULL_PARAMETER);
  EXPECT(og_shared_engine_status(e, "contoso", NOW, NULL), OG_RESULT_NULL_PARAMETER);
  EXPECT(og_shared_engine_sync(NULL), OG_RESULT_NULL_PARAMETER);
  OK(og_shared_engine_sync(e));

  /* the tenant calls: NULL, text that is not UTF-8, a tenant the policy lacks; nothing
     written, nothing changed */
  OK(og_shared_engine_status(e, "contoso", NOW + 25, &st));
  uint32_t total = st.counters.total;
  og_event ev_untouched[OG_EVENTS_MAX];
  memset(ev_untouched, 0xCD, sizeof ev_untouched);
  og_tenant_status st_untouched;
  memset(&st_untouched, 0xAB, sizeof st_untouched);
  const og_result tenant_errs[] = {OG_RESULT_NULL_PARAMETER, OG_RESULT_INVALID_UTF8, OG_RESULT_UNKNOWN_TENANT};
  const char *tenants[] = {NULL, BAD_UTF8, "nobody"};
  for (int i = 0; i < 3; i++) {
    memcpy(ev, ev_untouched, sizeof ev);
    n = 99;
    EXPECT(og_shared_engine_release(e, tenants[i], OG_RULE_NONE, NOW + 25, ev, OG_EVENTS_MAX, &n), tenant_errs[i]);
    EXPECT(og_shared_engine_set_lapsed(e, tenants[i], true, NOW + 25, ev, OG_EVENTS_MAX, &n), tenant_errs[i]);
    EXPECT(og_shared_engine_set_lapsed(e, tenants[i], false, NOW + 25, ev, OG_EVENTS_MAX, &n), tenant_errs[i]);
    CHECK(n == 99 && memcmp(ev, ev_untouched, sizeof ev) == 0);
    og_tenant_status s = st_untouched;
    EXPECT(og_shared_engine_status(e, tenants[i], NOW + 25, &s), tenant_errs[i]);
    CHECK(memcmp(&s, &st_untouched, sizeof s) == 0);
  }
  EXPECT(og_shared_engine_release(NULL, "contoso", OG_RULE_NONE, NOW + 25, NULL, 0, NULL), OG_RESULT_NULL_PARAMETER);
  EXPECT(og_shared_engine_release(e, "contoso", OG_RULE_NONE, NOW + 25, NULL, 1, NULL), OG_RESULT_NULL_PARAMETER);
  EXPECT(og_shared_engine_set_lapsed(NULL, "tailspin", true, NOW + 25, NULL, 0, NULL), OG_RESULT_NULL_PARAMETER);
  EXPECT(og_shared_engine_set_lapsed(e, "tailspin", true, NOW + 25, NULL, 2, NULL), OG_RESULT_NULL_PARAMETER);
  EXPECT(og_shared_engine_set_lapsed(e, "tailspin", false, NOW + 25, NULL, 2, NULL), OG_RESULT_NULL_PARAMETER);
  EXPECT(og_shared_engine_status(NULL, "contoso", NOW + 25, &st), OG_RESULT_NULL_PARAMETER);
  OK(og_shared_engine_status(other, "tailspin", NOW + 25, &st));
  CHECK(!st.lapsed); /* none of the refused calls lapsed it */

  /* the message calls: NULLs, text that is not UTF-8 in each of the message's strings */
  EXPECT(og_shared_engine_record(NULL, NOW, &good, OG_VERDICT_CLEAN, NULL, 0, NULL), OG_RESULT_NULL_PARAMETER);
  EXPECT(og_shared_engine_record(e, NOW, NULL, OG_VERDICT_CLEAN, NULL, 0, NULL), OG_RESULT_NULL_PARAMETER);
  EXPECT(og_shared_engine_evaluate(NULL, NOW, &good, OG_VERDICT_CLEAN, &d, NULL, 0, NULL), OG_RESULT_NULL_PARAMETER);
  EXPECT(og_shared_engine_evaluate(e, NOW, NULL, OG_VERDICT_CLEAN, &d, NULL, 0, NULL), OG_RESULT_NULL_PARAMETER);
  EXPECT(og_shared_engine_evaluate(e, NOW, &good, OG_VERDICT_CLEAN, &d, NULL, 1, NULL), OG_RESULT_NULL_PARAMETER);
  EXPECT(og_shared_engine_evaluate(e, NOW, &good, 77, &d, NULL, 0, NULL), OG_RESULT_INVALID_PARAMETER);
  og_message bad_text[4];
  for (int i = 0; i < 4; i++) bad_text[i] = good;
  bad_text[0].tenant = BAD_UTF8;
  bad_text[1].client_ip = BAD_UTF8;
  bad_text[2].tenant = NULL;
  bad_text[2].auth_user = BAD_UTF8;
  bad_text[3].tenant = NULL;
  bad_text[3].cert_domain = BAD_UTF8;
  for (int i = 0; i < 4; i++) {
    memcpy(ev, ev_untouched, sizeof ev);
    n = 99;
    EXPECT(og_shared_engine_check(e, NOW + 25, &bad_text[i], &d), OG_RESULT_INVALID_UTF8);
    EXPECT(og_shared_engine_record(e, NOW + 25, &bad_text[i], OG_VERDICT_CLEAN, ev, OG_EVENTS_MAX, &n),
           OG_RESULT_INVALID_UTF8);
    EXPECT(og_shared_engine_evaluate(e, NOW + 25, &bad_text[i], OG_VERDICT_CLEAN, &d, ev, OG_EVENTS_MAX, &n),
           OG_RESULT_INVALID_UTF8);
    CHECK(n == 99 && memcmp(ev, ev_untouched, sizeof ev) == 0);
  }
  CHECK(memcmp(&d, &untouched, sizeof d) == 0);
  /* an unknown tenant is a decision for check and evaluate (an error only for record) */
  OK(og_shared_engine_check(e, NOW + 25, &nobody, &d));
  CHECK(!d.accepted && d.reason == OG_REASON_UNATTRIBUTED && d.tenant == OG_NO_TENANT);
  memset(&d, 0xAB, sizeof d);
  OK(og_shared_engine_evaluate(e, NOW + 25, &nobody, OG_VERDICT_CLEAN, &d, NULL, 0, NULL));
  CHECK(!d.accepted && d.reason == OG_REASON_UNATTRIBUTED && d.tenant == OG_NO_TENANT);
  OK(og_shared_engine_status(e, "contoso", NOW + 25, &st));
  CHECK(st.counters.total == total); /* nothing counted by the refused calls */

  /* the last error: a short buffer gets nothing, and the length needed */
  size_t len = 0;
  OK(og_shared_engine_last_error(e, name, sizeof name, &len)); /* the unknown tenant above */
  CHECK(len > 0 && strlen(name) == len);
  memset(name, 'x', sizeof name);
  size_t need = 0;
  EXPECT(og_shared_engine_last_error(e, name, len, &need), OG_RESULT_BUFFER_TOO_SMALL);
  CHECK(need == len && name[0] == 'x' && name[len - 1] == 'x');
  need = 0;
  EXPECT(og_shared_engine_last_error(e, NULL, 0, &need), OG_RESULT_BUFFER_TOO_SMALL);
  CHECK(need == len);
  need = 99;
  EXPECT(og_shared_engine_last_error(NULL, name, sizeof name, &need), OG_RESULT_NULL_PARAMETER);
  EXPECT(og_shared_engine_last_error(e, NULL, 5, &need), OG_RESULT_NULL_PARAMETER);
  EXPECT(og_shared_engine_last_error(e, name, sizeof name, NULL), OG_RESULT_NULL_PARAMETER);
  CHECK(need == 99 && name[0] == 'x');

  /* another process records; this one sees every count */
  OK(og_shared_engine_status(e, "contoso", NOW + 30, &st));
  uint32_t before = st.counters.total;
  fflush(NULL);
  pid_t child = fork();
  CHECK(child >= 0);
  if (child == 0) {
    execl(argv[0], argv[0], "child", state, (char *)NULL); /* argv[0]: a path, from make */
    _exit(127);
  }
  int status = 0;
  CHECK(waitpid(child, &status, 0) == child);
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  OK(og_shared_engine_status(e, "contoso", NOW + 30, &st));
  CHECK(st.counters.total == before + 500);

  /* repair needs the file idle */
  og_repair_report rep;
  memset(&rep, 0xEE, sizeof rep);
  err[0] = '\0';
  EXPECT(og_shared_repair(image, state, &rep, err, sizeof err), OG_RESULT_IN_USE);
  CHECK(rep.locks_reset == 0xEEEEEEEEu); /* not written on failure */
  EXPECT(og_shared_repair(image, state, &rep, NULL, 8), OG_RESULT_NULL_PARAMETER);
  CHECK(rep.locks_reset == 0xEEEEEEEEu);
  CHECK(strstr(og_result_message(OG_RESULT_IN_USE), "open in another process") != NULL);
  og_shared_engine_free(other);
  og_shared_engine_free(e);
  og_shared_engine_free(NULL);
  OK(og_shared_repair(NULL, state, &rep, err, sizeof err));
  CHECK(rep.locks_reset == 0 && rep.rolled_back == 0 && rep.published == 0);
  EXPECT(og_shared_repair(image, NULL, &rep, err, sizeof err), OG_RESULT_NULL_PARAMETER);
  EXPECT(og_shared_repair(image, missing, &rep, err, sizeof err), OG_RESULT_IO);
  EXPECT(og_shared_repair(image, nonutf8, &rep, err, sizeof err), OG_RESULT_IO);
  OK(og_shared_repair(image, state, NULL, NULL, 0)); /* no report, no error buffer */

  /* migrate to a policy with one more tenant: counts of the remaining tenants kept */
  char policy2[sizeof POLICY + 128];
  snprintf(policy2, sizeof policy2, "%s\n[[tenants]]\nid = \"northwind\"\ndomains = [\"northwind.example\"]\n", POLICY);
  write_file(policy, policy2);
  OK(og_shared_compile(policy, image2, err, sizeof err));
  og_reload_report rr;
  OK(og_shared_migrate(image, state, image2, state2, &rr, err, sizeof err));
  CHECK(rr.added == 1 && rr.removed == 0);
  e = open_engine(NULL, state2);
  OK(og_shared_engine_status(e, "contoso", NOW + 30, &st));
  CHECK(st.counters.total == before + 500);
  OK(og_shared_engine_status(e, "northwind", NOW + 30, &st));
  CHECK(st.counters.total == 0);
  memset(&rr, 0xEE, sizeof rr);
  EXPECT(og_shared_migrate(NULL, state, image2, state2, &rr, err, sizeof err), OG_RESULT_NULL_PARAMETER);
  EXPECT(og_shared_migrate(image, NULL, image2, state2, &rr, err, sizeof err), OG_RESULT_NULL_PARAMETER);
  EXPECT(og_shared_migrate(image, state, NULL, state2, &rr, err, sizeof err), OG_RESULT_NULL_PARAMETER);
  EXPECT(og_shared_migrate(image, state, image2, NULL, &rr, err, sizeof err), OG_RESULT_NULL_PARAMETER);
  EXPECT(og_shared_migrate(image, state, image2, state2, &rr, NULL, 8), OG_RESULT_NULL_PARAMETER);
  CHECK(rr.added == 0xEEEEEEEEu && rr.removed == 0xEEEEEEEEu); /* not written on failure */
  og_shared_engine_free(e);
  /* in place, without a report or an error buffer: the counts stay */
  OK(og_shared_migrate(image2, state2, image2, state2, NULL, NULL, 0));
  e = open_engine(NULL, state2);
  OK(og_shared_engine_status(e, "contoso", NOW + 30, &st));
  CHECK(st.counters.total == before + 500);
  og_shared_engine_free(e);

  printf("test_shared: %d checks passed\n", og_test_checks);
  return 0;
}
