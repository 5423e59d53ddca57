/* Shared helpers of the C tests: assertions that name the failing line, and the policy. */
#ifndef OG_TEST_COMMON_H
#define OG_TEST_COMMON_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "outguard.h"

static _Atomic int og_test_checks;

#define CHECK(cond)                                                                   \
  do {                                                                                \
    og_test_checks++;                                                                 \
    if (!(cond)) {                                                                    \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);        \
      exit(1);                                                                        \
    }                                                                                 \
  } while (0)

/* Expect a result code; on mismatch print both with their messages. */
#define EXPECT(call, want)                                                            \
  do {                                                                                \
    og_result got_ = (call);                                                          \
    og_test_checks++;                                                                 \
    if (got_ != (og_result)(want)) {                                                  \
      fprintf(stderr, "%s:%d: %s\n  returned %u (%s), expected %u (%s)\n", __FILE__,  \
              __LINE__, #call, (unsigned)got_, og_result_message(got_),               \
              (unsigned)(want), og_result_message(want));                             \
      exit(1);                                                                        \
    }                                                                                 \
  } while (0)

#define OK(call) EXPECT(call, OG_RESULT_OK)

#define STREQ(a, b)                                                                   \
  do {                                                                                \
    const char *a_ = (a), *b_ = (b);                                                  \
    og_test_checks++;                                                                 \
    if (a_ == NULL || b_ == NULL || strcmp(a_, b_) != 0) {                            \
      fprintf(stderr, "%s:%d: \"%s\" != \"%s\"\n", __FILE__, __LINE__,               \
              a_ ? a_ : "(null)", b_ ? b_ : "(null)");                                \
      exit(1);                                                                        \
    }                                                                                 \
  } while (0)

/* 2026-09-21, a fixed clock: the engine takes time as an argument. */
#define NOW ((uint64_t)1790000000u)

/* The policy every test starts from (SPEC section 2). Small limits so rules trip quickly. */
static const char POLICY[] =
    "[rules.tenant_threshold]\n"
    "mode = \"enforce\"\n"
    "window = \"24h\"\n"
    "slots = 24\n"
    "suspicious = [\"spam\", \"bulk\"]\n"
    "min_messages = 10\n"
    "min_suspicious = 5\n"
    "max_ratio = 0.5\n"
    "warn_ratio = 0.25\n"
    "block = \"manual\"\n"
    "grace = \"24h\"\n"
    "\n"
    "[rules.unregistered_domain]\n"
    "mode = \"enforce\"\n"
    "window = \"24h\"\n"
    "limit = 3\n"
    "block = \"manual\"\n"
    "grace = \"1h\"\n"
    "\n"
    "[rules.low_reputation_ip]\n"
    "mode = \"enforce\"\n"
    "scope = \"all\"\n"
    "ranges = [\"192.0.2.0/24\", \"2001:db8:bad::/48\"]\n"
    "\n"
    "[[tenants]]\n"
    "id = \"contoso\"\n"
    "licensed = true\n"
    "domains = [\n"
    "  \"contoso.com\",\n"
    "  { name = \"fabrikam.com\", subdomains = true },\n"
    "  { name = \"contoso.net\", validated = false },\n"
    "]\n"
    "connectors = [\n"
    "  { name = \"onprem\", certificate = \"mail.contoso.com\", created = \"2026-01-10T00:00:00Z\" },\n"
    "  { name = \"hq\", ranges = [\"203.0.113.0/24\"] },\n"
    "]\n"
    "\n"
    "[[tenants]]\n"
    "id = \"tailspin\"\n"
    "licensed = false\n"
    "domains = [\"tailspin.example\"]\n"
    "rules.unregistered_domain.limit = 1\n"
    "rules.unregistered_domain.block = \"1h\"\n";

static og_engine *new_engine(const char *policy) {
  og_engine *e = NULL;
  char err[2048] = {0};
  og_result r = og_engine_new_from_toml(policy, strlen(policy), "test.toml", NULL, &e, err,
                                        sizeof err);
  if (r != OG_RESULT_OK) {
    fprintf(stderr, "cannot build the test policy (%u): %s\n", (unsigned)r, err);
    exit(1);
  }
  return e;
}

/* A message from `from` for an explicit tenant (NULL: attribute by other fields). */
static og_message msg_for(const char *tenant, const char *from) {
  og_message m;
  memset(&m, 0, sizeof m);
  m.mail_from = from;
  m.mail_from_len = from ? strlen(from) : 0;
  m.tenant = tenant;
  m.recipients = 1;
  return m;
}

#endif
