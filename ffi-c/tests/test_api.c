/* Every exported function of liboutguard, its success paths and its error paths. */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <unistd.h>

#include <arpa/inet.h>

#include "common.h"

static const char BAD_UTF8[] = "\xff\xfe";
static char tmpdir[] = "/tmp/og-test-XXXXXX";

static void path_in_tmp(char *out, size_t len, const char *name) {
  int n = snprintf(out, len, "%s/%s", tmpdir, name);
  CHECK(n > 0 && (size_t)n < len);
}

static void write_file(const char *path, const char *data, size_t len) {
  FILE *f = fopen(path, "wb");
  CHECK(f != NULL);
  CHECK(fwrite(data, 1, len, f) == len);
  CHECK(fclose(f) == 0);
}

/* ----- static texts ------------------------------------------------------------------- */

static void test_version_and_results(void) {
  const char *v = og_version();
  CHECK(v != NULL && strlen(v) >= 5 && strchr(v, '.') != NULL);

  STREQ(og_result_message(OG_RESULT_OK), "success");
  const og_result all[] = {
      OG_RESULT_NULL_PARAMETER,   OG_RESULT_INVALID_UTF8,      OG_RESULT_BUFFER_TOO_SMALL,
      OG_RESULT_INVALID_PARAMETER, OG_RESULT_PANIC,            OG_RESULT_IO,
      OG_RESULT_INVALID_SENDER,   OG_RESULT_INVALID_IP,        OG_RESULT_INVALID_RANGE,
      OG_RESULT_INVALID_DOMAIN,   OG_RESULT_INVALID_TENANT_ID, OG_RESULT_INVALID_NAME,
      OG_RESULT_UNKNOWN_LANGUAGE, OG_RESULT_UNKNOWN_REASON,    OG_RESULT_INVALID_NDR,
      OG_RESULT_UNKNOWN_TENANT,   OG_RESULT_DUPLICATE_TENANT,  OG_RESULT_DUPLICATE_DOMAIN,
      OG_RESULT_DUPLICATE_CONNECTOR, OG_RESULT_NOT_FOUND,      OG_RESULT_TABLE_FULL,
      OG_RESULT_TENANTS_FULL,     OG_RESULT_DOMAINS_FULL,      OG_RESULT_CONNECTORS_FULL,
      OG_RESULT_RANGES_FULL,      OG_RESULT_NAMES_FULL,        OG_RESULT_OVERRIDES_FULL,
      OG_RESULT_POLICY,           OG_RESULT_INVALID_RULE_PARAMETER,
      OG_RESULT_SNAPSHOT_TRUNCATED, OG_RESULT_SNAPSHOT_FOREIGN, OG_RESULT_SNAPSHOT_VERSION,
      OG_RESULT_SNAPSHOT_CHECKSUM, OG_RESULT_SNAPSHOT_CORRUPT, OG_RESULT_INTERNAL};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
    const char *m = og_result_message(all[i]);
    CHECK(m != NULL && m[0] != '\0');
    CHECK(strcmp(m, "unknown result code") != 0);
  }
  /* The numbers are part of the ABI. */
  CHECK(OG_RESULT_NULL_PARAMETER == 1 && OG_RESULT_BUFFER_TOO_SMALL == 3);
  CHECK(OG_RESULT_UNKNOWN_TENANT == 200 && OG_RESULT_POLICY == 400);
  CHECK(OG_RESULT_SNAPSHOT_CHECKSUM == 503 && OG_RESULT_INTERNAL == 900);
  STREQ(og_result_message(7), "unknown result code");
  STREQ(og_result_message(99999), "unknown result code");
}

static void test_reason_texts(void) {
  STREQ(og_reason_reply(OG_REASON_UNREGISTERED_DOMAIN),
        "550 5.7.750 Service unavailable. Client blocked from sending from unregistered domains");
  STREQ(og_reason_reply(OG_REASON_TENANT_THRESHOLD),
        "550 5.7.705 Access denied, tenant has exceeded threshold");
  STREQ(og_reason_reply(OG_REASON_TENANT_LAPSED),
        "550 5.7.705 Access denied, tenant has exceeded threshold");
  STREQ(og_reason_reply(OG_REASON_LOW_REPUTATION_IP),
        "550 5.7.708 Access denied, traffic not accepted from this IP");
  STREQ(og_reason_reply(OG_REASON_UNATTRIBUTED),
        "550 5.7.64 TenantAttribution; Relay Access Denied");
  CHECK(strncmp(og_reason_reply(OG_REASON_INVALID_SENDER), "550 5.1.7 ", 10) == 0);
  STREQ(og_reason_enhanced_code(OG_REASON_UNREGISTERED_DOMAIN), "5.7.750");
  STREQ(og_reason_enhanced_code(OG_REASON_INVALID_SENDER), "5.1.7");
  STREQ(og_reason_text(OG_REASON_LOW_REPUTATION_IP), "Access denied, traffic not accepted from this IP");
  STREQ(og_reason_name(OG_REASON_TENANT_LAPSED), "tenant_lapsed");
  CHECK(og_reason_smtp_code(OG_REASON_TENANT_THRESHOLD) == 550);
  /* reply == "<smtp> <enhanced> <text>" for every reason */
  for (og_reason r = 1; r <= 6; r++) {
    char joined[256];
    snprintf(joined, sizeof joined, "%u %s %s", og_reason_smtp_code(r), og_reason_enhanced_code(r),
             og_reason_text(r));
    STREQ(joined, og_reason_reply(r));
    CHECK(og_reason_name(r) != NULL);
  }
  /* none and unknown values */
  const og_reason bad[] = {OG_REASON_NONE, 7, 1000, UINT32_MAX};
  for (size_t i = 0; i < 4; i++) {
    CHECK(og_reason_reply(bad[i]) == NULL);
    CHECK(og_reason_enhanced_code(bad[i]) == NULL);
    CHECK(og_reason_text(bad[i]) == NULL);
    CHECK(og_reason_name(bad[i]) == NULL);
    CHECK(og_reason_smtp_code(bad[i]) == 0);
  }

  og_reason r = 99;
  OK(og_reason_from_code("5.7.750", &r));
  CHECK(r == OG_REASON_UNREGISTERED_DOMAIN);
  OK(og_reason_from_code("550 5.7.708", &r));
  CHECK(r == OG_REASON_LOW_REPUTATION_IP);
  OK(og_reason_from_code("5.7.705", &r));
  CHECK(r == OG_REASON_TENANT_THRESHOLD);
  r = 99;
  EXPECT(og_reason_from_code("5.7.999", &r), OG_RESULT_UNKNOWN_REASON);
  CHECK(r == 99); /* outputs only on success */
  EXPECT(og_reason_from_code(NULL, &r), OG_RESULT_NULL_PARAMETER);
  EXPECT(og_reason_from_code("5.7.750", NULL), OG_RESULT_NULL_PARAMETER);
  EXPECT(og_reason_from_code(BAD_UTF8, &r), OG_RESULT_INVALID_UTF8);
}

static void test_names(void) {
  STREQ(og_sender_class_name(OG_SENDER_CLASS_REGISTERED), "registered");
  STREQ(og_sender_class_name(OG_SENDER_CLASS_EXEMPT), "exempt");
  STREQ(og_sender_class_name(OG_SENDER_CLASS_UNREGISTERED), "unregistered");
  STREQ(og_sender_class_name(OG_SENDER_CLASS_NULL), "null");
  CHECK(og_sender_class_name(OG_SENDER_CLASS_NONE) == NULL);
  CHECK(og_sender_class_name(5) == NULL);

  STREQ(og_attribution_name(OG_ATTRIBUTION_EXPLICIT), "explicit");
  STREQ(og_attribution_name(OG_ATTRIBUTION_AUTH_USER), "auth_user");
  STREQ(og_attribution_name(OG_ATTRIBUTION_CERTIFICATE), "certificate");
  STREQ(og_attribution_name(OG_ATTRIBUTION_IP_CONNECTOR), "ip_connector");
  CHECK(og_attribution_name(OG_ATTRIBUTION_NONE) == NULL);
  CHECK(og_attribution_name(9) == NULL);

  STREQ(og_rule_name(OG_RULE_TENANT_THRESHOLD), "tenant_threshold");
  STREQ(og_rule_name(OG_RULE_UNREGISTERED_DOMAIN), "unregistered_domain");
  STREQ(og_rule_name(OG_RULE_LOW_REPUTATION_IP), "low_reputation_ip");
  CHECK(og_rule_name(OG_RULE_NONE) == NULL);
  CHECK(og_rule_name(4) == NULL);

  const char *kinds[] = {"warned", "blocked", "released", "expired", "lapsed", "reactivated"};
  for (og_event_kind k = 1; k <= 6; k++) STREQ(og_event_kind_name(k), kinds[k - 1]);
  CHECK(og_event_kind_name(0) == NULL);
  CHECK(og_event_kind_name(7) == NULL);
}

static void test_explain(void) {
  const char *langs[] = {"en", "uk", "pl", "pt-BR", "en-US", "pt_br", "PL"};
  for (og_reason r = 1; r <= 6; r++) {
    for (size_t l = 0; l < sizeof langs / sizeof langs[0]; l++) {
      for (og_audience a = 0; a <= 1; a++) {
        const char *t = NULL;
        OK(og_explain(r, langs[l], a, &t));
        CHECK(t != NULL && strlen(t) > 20);
      }
    }
  }
  const char *t = NULL;
  OK(og_explain(OG_REASON_UNREGISTERED_DOMAIN, "en", OG_AUDIENCE_ADMIN, &t));
  CHECK(strstr(t, "5.7.750") != NULL);
  const char *t2 = NULL;
  OK(og_explain(OG_REASON_UNREGISTERED_DOMAIN, "en", OG_AUDIENCE_ADMIN, &t2));
  CHECK(t == t2); /* static: the same pointer every time */
  OK(og_explain(OG_REASON_UNREGISTERED_DOMAIN, "uk", OG_AUDIENCE_SENDER, &t2));
  CHECK(t != t2);

  const char *keep = "untouched";
  t = keep;
  EXPECT(og_explain(OG_REASON_NONE, "en", OG_AUDIENCE_SENDER, &t), OG_RESULT_UNKNOWN_REASON);
  EXPECT(og_explain(42, "en", OG_AUDIENCE_SENDER, &t), OG_RESULT_UNKNOWN_REASON);
  EXPECT(og_explain(OG_REASON_UNATTRIBUTED, "de", OG_AUDIENCE_SENDER, &t), OG_RESULT_UNKNOWN_LANGUAGE);
  EXPECT(og_explain(OG_REASON_UNATTRIBUTED, "", OG_AUDIENCE_SENDER, &t), OG_RESULT_UNKNOWN_LANGUAGE);
  EXPECT(og_explain(OG_REASON_UNATTRIBUTED, "en", 2, &t), OG_RESULT_INVALID_PARAMETER);
  EXPECT(og_explain(OG_REASON_UNATTRIBUTED, NULL, OG_AUDIENCE_SENDER, &t), OG_RESULT_NULL_PARAMETER);
  EXPECT(og_explain(OG_REASON_UNATTRIBUTED, BAD_UTF8, OG_AUDIENCE_SENDER, &t), OG_RESULT_INVALID_UTF8);
  EXPECT(og_explain(OG_REASON_UNATTRIBUTED, "en", OG_AUDIENCE_SENDER, NULL), OG_RESULT_NULL_PARAMETER);
  CHECK(t == keep);
}

static void test_ndr(void) {
  const char *rcpts[] = {"bob@example.org", "carol@example.net"};
  og_ndr n;
  memset(&n, 0, sizeof n);
  n.reporting_mta = "mx.example.net";
  n.from = "MAILER-DAEMON@mx.example.net";
  n.to = "alice@contoso.com";
  n.recipients = rcpts;
  n.recipients_len = 2;
  n.reason = OG_REASON_UNREGISTERED_DOMAIN;
  n.lang = "pl";
  n.arrival = NOW - 60;
  n.now = NOW;
  n.boundary = "og-boundary-1";
  n.message_id = "1.ndr@mx.example.net";
  n.original_headers = "Subject: hi\r\nFrom: alice@contoso.com\r\n\r\nbody";

  static char buf[65536];
  size_t len = 0;
  OK(og_ndr_render(&n, buf, sizeof buf, &len));
  CHECK(len == strlen(buf));
  CHECK(strstr(buf, "multipart/report; report-type=delivery-status") != NULL);
  CHECK(strstr(buf, "Status: 5.7.750\r\n") != NULL);
  CHECK(strstr(buf, "Diagnostic-Code: smtp; 550 5.7.750 Service unavailable. Client blocked "
                    "from sending from unregistered domains\r\n") != NULL);
  CHECK(strstr(buf, "Final-Recipient: rfc822; carol@example.net") != NULL);
  CHECK(strstr(buf, "Content-Language: pl") != NULL);
  CHECK(strstr(buf, "text/rfc822-headers") != NULL);

  /* exactly fitting, one byte short (no room for the NUL), tiny, and a size query */
  static char small[65536];
  size_t need = 0;
  memset(small, 'x', sizeof small);
  EXPECT(og_ndr_render(&n, small, len, &need), OG_RESULT_BUFFER_TOO_SMALL);
  CHECK(need == len);
  CHECK(small[0] == 'x' && small[len - 1] == 'x'); /* nothing written */
  need = 0;
  EXPECT(og_ndr_render(&n, NULL, 0, &need), OG_RESULT_BUFFER_TOO_SMALL);
  CHECK(need == len);
  OK(og_ndr_render(&n, small, len + 1, &need));
  CHECK(need == len && memcmp(small, buf, len + 1) == 0);

  /* without original headers and recipients */
  n.original_headers = NULL;
  n.recipients = NULL;
  n.recipients_len = 0;
  OK(og_ndr_render(&n, buf, sizeof buf, &len));
  CHECK(strstr(buf, "text/rfc822-headers") == NULL);
  n.recipients = rcpts;
  n.recipients_len = 2;

  /* errors */
  size_t keep = 12345;
  EXPECT(og_ndr_render(NULL, buf, sizeof buf, &keep), OG_RESULT_NULL_PARAMETER);
  EXPECT(og_ndr_render(&n, buf, sizeof buf, NULL), OG_RESULT_NULL_PARAMETER);
  EXPECT(og_ndr_render(&n, NULL, 10, &keep), OG_RESULT_NULL_PARAMETER);
  og_ndr bad = n;
  bad.boundary = "bad boundary ";
  EXPECT(og_ndr_render(&bad, buf, sizeof buf, &keep), OG_RESULT_INVALID_NDR);
  bad = n;
  bad.to = "alice@contoso.com\r\nBcc: victim@example.org";
  EXPECT(og_ndr_render(&bad, buf, sizeof buf, &keep), OG_RESULT_INVALID_NDR);
  bad = n;
  bad.message_id = "no-at-sign";
  EXPECT(og_ndr_render(&bad, buf, sizeof buf, &keep), OG_RESULT_INVALID_NDR);
  bad = n;
  bad.reason = OG_REASON_NONE;
  EXPECT(og_ndr_render(&bad, buf, sizeof buf, &keep), OG_RESULT_UNKNOWN_REASON);
  bad = n;
  bad.lang = "fr";
  EXPECT(og_ndr_render(&bad, buf, sizeof buf, &keep), OG_RESULT_UNKNOWN_LANGUAGE);
  bad = n;
  bad.from = NULL;
  EXPECT(og_ndr_render(&bad, buf, sizeof buf, &keep), OG_RESULT_NULL_PARAMETER);
  bad = n;
  bad.recipients = NULL;
  EXPECT(og_ndr_render(&bad, buf, sizeof buf, &keep), OG_RESULT_NULL_PARAMETER);
  const char *bad_rcpts[] = {"ok@example.org", NULL};
  bad = n;
  bad.recipients = bad_rcpts;
  EXPECT(og_ndr_render(&bad, buf, sizeof buf, &keep), OG_RESULT_NULL_PARAMETER);
  bad = n;
  bad.reporting_mta = BAD_UTF8;
  EXPECT(og_ndr_render(&bad, buf, sizeof buf, &keep), OG_RESULT_INVALID_UTF8);
  CHECK(keep == 12345);
}

/* ----- building engines --------------------------------------------------------------- */

static void test_new(void) {
  og_engine *e = new_engine(POLICY);
  og_engine_free(e);
  og_engine_free(NULL); /* harmless */

  /* a bad policy: the error names the file and line */
  static const char bad[] = "[rules.unregistered_domain]\nlimit = \"lots\"\n";
  char err[1024];
  memset(err, 'x', sizeof err);
  og_engine *keep = (og_engine *)&err; /* any non-NULL marker: must stay untouched */
  og_engine *out = keep;
  EXPECT(og_engine_new_from_toml(bad, strlen(bad), "bad.toml", NULL, &out, err, sizeof err),
         OG_RESULT_POLICY);
  CHECK(out == keep);
  CHECK(memchr(err, '\0', sizeof err) != NULL);
  CHECK(strstr(err, "bad.toml:2") != NULL);
  CHECK(strstr(err, "limit") != NULL);

  /* a short error buffer gets a truncated, NUL-terminated message */
  char tiny[8];
  memset(tiny, 'x', sizeof tiny);
  EXPECT(og_engine_new_from_toml(bad, strlen(bad), "bad.toml", NULL, &out, tiny, sizeof tiny),
         OG_RESULT_POLICY);
  CHECK(tiny[7] == '\0' && strlen(tiny) == 7 && strncmp(tiny, "bad.tom", 7) == 0);
  /* no error buffer at all */
  EXPECT(og_engine_new_from_toml(bad, strlen(bad), NULL, NULL, &out, NULL, 0), OG_RESULT_POLICY);
  /* default file name */
  EXPECT(og_engine_new_from_toml(bad, strlen(bad), NULL, NULL, &out, err, sizeof err),
         OG_RESULT_POLICY);
  CHECK(strstr(err, "<string>") != NULL);

  /* pointer and encoding errors; the error buffer describes them too */
  EXPECT(og_engine_new_from_toml(NULL, 5, NULL, NULL, &out, err, sizeof err),
         OG_RESULT_NULL_PARAMETER);
  CHECK(strstr(err, "NULL") != NULL);
  EXPECT(og_engine_new_from_toml(POLICY, strlen(POLICY), NULL, NULL, NULL, err, sizeof err),
         OG_RESULT_NULL_PARAMETER);
  EXPECT(og_engine_new_from_toml(POLICY, strlen(POLICY), NULL, NULL, &out, NULL, 10),
         OG_RESULT_NULL_PARAMETER);
  EXPECT(og_engine_new_from_toml(BAD_UTF8, 2, NULL, NULL, &out, err, sizeof err),
         OG_RESULT_INVALID_UTF8);
  EXPECT(og_engine_new_from_toml(POLICY, strlen(POLICY), BAD_UTF8, NULL, &out, err, sizeof err),
         OG_RESULT_INVALID_UTF8);
  CHECK(out == keep);
  /* an empty policy is a valid policy with defaults and no tenants */
  OK(og_engine_new_from_toml(NULL, 0, NULL, NULL, &out, err, sizeof err));
  og_engine_free(out);

  /* from a file; the lists it names are read relative to it */
  char path[256], lowrep[256];
  path_in_tmp(path, sizeof path, "policy.toml");
  path_in_tmp(lowrep, sizeof lowrep, "lowrep.txt");
  write_file(lowrep, "# low-reputation ranges\n198.51.100.0/24\n", 40);
  static char with_file[8192];
  snprintf(with_file, sizeof with_file, "%s\n[rules.low_reputation_ip]\nfiles = [\"lowrep.txt\"]\n",
           "[rules.unregistered_domain]\nlimit = 5\n");
  write_file(path, with_file, strlen(with_file));
  out = NULL;
  OK(og_engine_new_from_file(path, &out, err, sizeof err));
  CHECK(out != NULL);
  bool low = false;
  OK(og_engine_is_low_reputation(out, "198.51.100.9", &low));
  CHECK(low);
  og_engine_free(out);
  /* and from text with a base directory */
  out = NULL;
  OK(og_engine_new_from_toml(with_file, strlen(with_file), "p.toml", tmpdir, &out, err, sizeof err));
  OK(og_engine_is_low_reputation(out, "198.51.100.9", &low));
  CHECK(low);
  og_engine_free(out);

  char missing[256];
  path_in_tmp(missing, sizeof missing, "missing.toml");
  out = keep;
  EXPECT(og_engine_new_from_file(missing, &out, err, sizeof err), OG_RESULT_POLICY);
  CHECK(strstr(err, "missing.toml") != NULL);
  CHECK(out == keep);
  EXPECT(og_engine_new_from_file(NULL, &out, err, sizeof err), OG_RESULT_NULL_PARAMETER);
  EXPECT(og_engine_new_from_file(path, NULL, err, sizeof err), OG_RESULT_NULL_PARAMETER);
}

/* ----- decisions ---------------------------------------------------------------------- */

static void test_check(void) {
  og_engine *e = new_engine(POLICY);
  og_decision d;

  og_message m = msg_for("contoso", "alice@contoso.com");
  OK(og_engine_check(e, NOW, &m, &d));
  CHECK(d.accepted && d.reason == OG_REASON_NONE && d.rule == OG_RULE_NONE);
  CHECK(d.sender_class == OG_SENDER_CLASS_REGISTERED);
  CHECK(d.attribution == OG_ATTRIBUTION_EXPLICIT);
  CHECK(d.block_ends == 0);
  CHECK(d.counters.limit == 3 && d.counters.min_messages == 10);
  uint32_t idx = 0;
  OK(og_engine_tenant_index(e, "contoso", &idx));
  CHECK(d.tenant == idx);

  /* subdomain opt-in, unvalidated domain, <> wrapping, null sender */
  m = msg_for("contoso", "<x@mail.fabrikam.com>");
  OK(og_engine_check(e, NOW, &m, &d));
  CHECK(d.sender_class == OG_SENDER_CLASS_REGISTERED);
  m = msg_for("contoso", "x@contoso.net");
  OK(og_engine_check(e, NOW, &m, &d));
  CHECK(d.accepted && d.sender_class == OG_SENDER_CLASS_UNREGISTERED);
  m = msg_for("contoso", "<>");
  OK(og_engine_check(e, NOW, &m, &d));
  CHECK(d.accepted && d.sender_class == OG_SENDER_CLASS_NULL);
  m = msg_for("contoso", NULL); /* empty: the null sender */
  OK(og_engine_check(e, NOW, &m, &d));
  CHECK(d.sender_class == OG_SENDER_CLASS_NULL);

  /* mail_from is pointer + length: no NUL needed, the rest of the buffer ignored */
  static const char raw[] = "bob@contoso.comXXXX";
  m = msg_for("contoso", raw);
  m.mail_from_len = 15;
  OK(og_engine_check(e, NOW, &m, &d));
  CHECK(d.sender_class == OG_SENDER_CLASS_REGISTERED);

  /* the tenant id may be given by length too: no NUL needed, the rest ignored */
  static const char tenants[] = "contosoXcontoso";
  m = msg_for(tenants, "alice@contoso.com");
  m.tenant_len = 7;
  OK(og_engine_check(e, NOW, &m, &d));
  CHECK(d.accepted && d.attribution == OG_ATTRIBUTION_EXPLICIT && d.tenant == idx);
  m.tenant_len = 8; /* "contosoX": no such tenant */
  OK(og_engine_check(e, NOW, &m, &d));
  CHECK(d.reason == OG_REASON_UNATTRIBUTED);
  static const char with_nul[] = "contoso\0";
  m.tenant = with_nul;
  m.tenant_len = 8; /* the NUL is part of the id: no such tenant */
  OK(og_engine_check(e, NOW, &m, &d));
  CHECK(d.reason == OG_REASON_UNATTRIBUTED);

  /* attribution: auth user, certificate connector (exempt), IP connector */
  m = msg_for(NULL, "bob@contoso.com");
  m.auth_user = "bob@contoso.com";
  OK(og_engine_check(e, NOW, &m, &d));
  CHECK(d.accepted && d.attribution == OG_ATTRIBUTION_AUTH_USER);
  m = msg_for(NULL, "bob@unrelated.example");
  m.cert_domain = "mail.contoso.com";
  OK(og_engine_check(e, NOW, &m, &d));
  CHECK(d.attribution == OG_ATTRIBUTION_CERTIFICATE);
  m = msg_for(NULL, "bob@contoso.com");
  m.client_ip = "203.0.113.77";
  OK(og_engine_check(e, NOW, &m, &d));
  CHECK(d.accepted && d.attribution == OG_ATTRIBUTION_IP_CONNECTOR && d.tenant == idx);
  /* forwarded with SPF: exempt */
  m = msg_for("contoso", "someone@elsewhere.example");
  m.flags = OG_MESSAGE_FORWARDED | OG_MESSAGE_SPF_PASS;
  OK(og_engine_check(e, NOW, &m, &d));
  CHECK(d.sender_class == OG_SENDER_CLASS_EXEMPT);
  m.flags = OG_MESSAGE_FORWARDED | OG_MESSAGE_DKIM_PASS;
  OK(og_engine_check(e, NOW, &m, &d));
  CHECK(d.sender_class == OG_SENDER_CLASS_EXEMPT);

  /* refusals that are decisions, not errors */
  m = msg_for("contoso", "not an address");
  OK(og_engine_check(e, NOW, &m, &d));
  CHECK(!d.accepted && d.reason == OG_REASON_INVALID_SENDER && d.tenant == OG_NO_TENANT);
  CHECK(d.sender_class == OG_SENDER_CLASS_NONE);
  m = msg_for(NULL, "x@nowhere.example");
  m.client_ip = "198.18.0.1";
  OK(og_engine_check(e, NOW, &m, &d));
  CHECK(!d.accepted && d.reason == OG_REASON_UNATTRIBUTED && d.tenant == OG_NO_TENANT);
  STREQ(og_reason_reply(d.reason), "550 5.7.64 TenantAttribution; Relay Access Denied");
  m = msg_for("no-such-tenant", "x@contoso.com");
  OK(og_engine_check(e, NOW, &m, &d));
  CHECK(d.reason == OG_REASON_UNATTRIBUTED);
  m = msg_for("contoso", "alice@contoso.com");
  m.client_ip = "2001:db8:bad::25";
  OK(og_engine_check(e, NOW, &m, &d));
  CHECK(d.reason == OG_REASON_LOW_REPUTATION_IP && d.rule == OG_RULE_LOW_REPUTATION_IP);
  /* the same addresses in binary form (og_message.client_addr) decide the same */
  m = msg_for("contoso", "alice@contoso.com");
  m.client_addr.family = OG_IP_V6;
  CHECK(inet_pton(AF_INET6, "2001:db8:bad::25", m.client_addr.bytes) == 1);
  OK(og_engine_check(e, NOW, &m, &d));
  CHECK(d.reason == OG_REASON_LOW_REPUTATION_IP && d.rule == OG_RULE_LOW_REPUTATION_IP);
  m = msg_for(NULL, "bob@contoso.com");
  m.client_addr.family = OG_IP_V4;
  CHECK(inet_pton(AF_INET, "203.0.113.77", m.client_addr.bytes) == 1);
  OK(og_engine_check(e, NOW, &m, &d));
  CHECK(d.accepted && d.attribution == OG_ATTRIBUTION_IP_CONNECTOR && d.tenant == idx);
  /* only the first 4 bytes count for IPv4 */
  memset(m.client_addr.bytes + 4, 0xEE, 12);
  OK(og_engine_check(e, NOW, &m, &d));
  CHECK(d.accepted && d.attribution == OG_ATTRIBUTION_IP_CONNECTOR && d.tenant == idx);
  m.client_addr.family = OG_IP_V6; /* 203.0.113.77 read as an IPv6 address: no connector */
  OK(og_engine_check(e, NOW, &m, &d));
  CHECK(d.attribution != OG_ATTRIBUTION_IP_CONNECTOR);

  /* errors: nothing is written to the decision */
  og_decision untouched;
  memset(&untouched, 0xAB, sizeof untouched);
  og_decision d2 = untouched;
  m = msg_for("contoso", "alice@contoso.com");
  EXPECT(og_engine_check(NULL, NOW, &m, &d2), OG_RESULT_NULL_PARAMETER);
  EXPECT(og_engine_check(e, NOW, NULL, &d2), OG_RESULT_NULL_PARAMETER);
  EXPECT(og_engine_check(e, NOW, &m, NULL), OG_RESULT_NULL_PARAMETER);
  m.client_ip = "300.1.2.3";
  EXPECT(og_engine_check(e, NOW, &m, &d2), OG_RESULT_INVALID_IP);
  /* client_addr: an unknown family, or given together with client_ip */
  m = msg_for("contoso", "alice@contoso.com");
  m.client_addr.family = 5;
  EXPECT(og_engine_check(e, NOW, &m, &d2), OG_RESULT_INVALID_PARAMETER);
  EXPECT(og_engine_record(e, NOW, &m, OG_VERDICT_CLEAN, NULL, 0, NULL), OG_RESULT_INVALID_PARAMETER);
  m.client_addr.family = OG_IP_V4;
  m.client_ip = "203.0.113.77";
  EXPECT(og_engine_check(e, NOW, &m, &d2), OG_RESULT_INVALID_PARAMETER);
  m = msg_for("contoso", "alice@contoso.com");
  m.client_ip = "300.1.2.3";
  m.client_ip = BAD_UTF8;
  EXPECT(og_engine_check(e, NOW, &m, &d2), OG_RESULT_INVALID_UTF8);
  m = msg_for(BAD_UTF8, "alice@contoso.com");
  EXPECT(og_engine_check(e, NOW, &m, &d2), OG_RESULT_INVALID_UTF8);
  m = msg_for(NULL, "alice@contoso.com");
  m.auth_user = BAD_UTF8;
  EXPECT(og_engine_check(e, NOW, &m, &d2), OG_RESULT_INVALID_UTF8);
  m = msg_for(NULL, "alice@contoso.com");
  m.cert_domain = BAD_UTF8;
  EXPECT(og_engine_check(e, NOW, &m, &d2), OG_RESULT_INVALID_UTF8);
  m = msg_for("contoso", "alice@contoso.com");
  m.flags = 8;
  EXPECT(og_engine_check(e, NOW, &m, &d2), OG_RESULT_INVALID_PARAMETER);
  m = msg_for("contoso", NULL);
  m.mail_from_len = 3;
  EXPECT(og_engine_check(e, NOW, &m, &d2), OG_RESULT_NULL_PARAMETER);
  m = msg_for(NULL, "alice@contoso.com");
  m.tenant_len = 7; /* a length without text */
  EXPECT(og_engine_check(e, NOW, &m, &d2), OG_RESULT_NULL_PARAMETER);
  static const char bad_tenant[] = "ok\xff";
  m = msg_for(bad_tenant, "alice@contoso.com");
  m.tenant_len = 3; /* bad UTF-8 within the length */
  EXPECT(og_engine_check(e, NOW, &m, &d2), OG_RESULT_INVALID_UTF8);
  m.tenant_len = SIZE_MAX; /* a length no buffer has */
  EXPECT(og_engine_check(e, NOW, &m, &d2), OG_RESULT_INVALID_PARAMETER);
  /* bad bytes in mail_from are a 5.1.7 decision, never an error */
  m = msg_for("contoso", "\xff@contoso.com");
  OK(og_engine_check(e, NOW, &m, &d));
  CHECK(d.reason == OG_REASON_INVALID_SENDER);
  CHECK(memcmp(&d2, &untouched, sizeof d2) == 0);
  og_engine_free(e);
}

/* Non-ASCII text: tenant ids, U-label senders and names. The same decisions whatever the
   length of a string and wherever its non-ASCII bytes are. */
static const char IDNA_POLICY[] =
    "[[tenants]]\n"
    "id = \"b\xc3\xbc" "cher\"\n"
    "domains = [\"b\xc3\xbc" "cher.example\"]\n"
    "connectors = [{ name = \"tls\", certificate = \"mail.b\xc3\xbc" "cher.example\" }]\n"
    "\n"
    "[[tenants]]\n"
    "id = \"contoso\"\n"
    "domains = [\"contoso.com\"]\n";

static void test_non_ascii_text(void) {
  og_engine *e = new_engine(IDNA_POLICY);
  const char *tenant = "b\xc3\xbc" "cher";
  uint32_t idx = OG_NO_TENANT;
  OK(og_engine_tenant_index(e, tenant, &idx));
  og_decision d;
  /* a U-label sender is decided on its A-labels, named tenant or not */
  og_message m = msg_for(tenant, "j\xc3\xbcrgen@b\xc3\xbc" "cher.example");
  OK(og_engine_check(e, NOW, &m, &d));
  CHECK(d.accepted && d.tenant == idx && d.sender_class == OG_SENDER_CLASS_REGISTERED);
  m = msg_for(NULL, "<j\xc3\xbcrgen@B\xc3\xbc" "cher.example>");
  m.cert_domain = "mail.b\xc3\xbc" "cher.example";
  OK(og_engine_check(e, NOW, &m, &d));
  CHECK(d.accepted && d.tenant == idx && d.attribution == OG_ATTRIBUTION_CERTIFICATE);
  CHECK(d.sender_class == OG_SENDER_CLASS_REGISTERED);
  m = msg_for(NULL, "alice@xn--bcher-kva.example");
  m.auth_user = "j\xc3\xbcrgen@b\xc3\xbc" "cher.example";
  OK(og_engine_check(e, NOW, &m, &d));
  CHECK(d.accepted && d.tenant == idx && d.attribution == OG_ATTRIBUTION_AUTH_USER);
  /* a non-ASCII local part with an A-label domain; a U-label route before the address */
  m = msg_for(tenant, "j\xc3\xbcrgen@xn--bcher-kva.example");
  OK(og_engine_check(e, NOW, &m, &d));
  CHECK(d.accepted && d.tenant == idx && d.sender_class == OG_SENDER_CLASS_REGISTERED);
  m = msg_for("contoso", "<@b\xc3\xbc" "cher.example:alice@contoso.com>");
  OK(og_engine_check(e, NOW, &m, &d));
  CHECK(d.accepted && d.sender_class == OG_SENDER_CLASS_REGISTERED);
  /* unparsable, whether or not it holds U-labels: a decision, not an error */
  m = msg_for(tenant, "alice@b\xc3\xbc" "cher..example");
  OK(og_engine_check(e, NOW, &m, &d));
  CHECK(d.reason == OG_REASON_INVALID_SENDER);
  m = msg_for(tenant, "alice@b\xfc" "cher.example");
  OK(og_engine_check(e, NOW, &m, &d));
  CHECK(d.reason == OG_REASON_INVALID_SENDER);
  /* the same as og_engine_evaluate, which converts before counting */
  og_decision ev;
  m = msg_for(tenant, "j\xc3\xbcrgen@b\xc3\xbc" "cher.example");
  OK(og_engine_check(e, NOW, &m, &d));
  OK(og_engine_evaluate(e, NOW, &m, OG_VERDICT_CLEAN, &ev, NULL, 0, NULL));
  CHECK(ev.accepted == d.accepted && ev.tenant == d.tenant && ev.sender_class == d.sender_class);

  /* tenant ids of every length up to 20 bytes: valid UTF-8 (ASCII or not) is looked up,
     invalid UTF-8 anywhere in it is OG_RESULT_INVALID_UTF8 and writes nothing */
  og_decision untouched;
  memset(&untouched, 0xAB, sizeof untouched);
  for (size_t len = 1; len <= 20; len++) {
    char id[32];
    memset(id, 't', len);
    id[len] = '\0';
    m = msg_for(id, "alice@contoso.com");
    OK(og_engine_check(e, NOW, &m, &d));
    CHECK(d.reason == OG_REASON_UNATTRIBUTED);
    for (size_t i = 0; i < len; i++) {
      char bad[32];
      memcpy(bad, id, len + 1);
      bad[i] = (char)0xFF;
      og_decision d2 = untouched;
      m = msg_for(bad, "alice@contoso.com");
      EXPECT(og_engine_check(e, NOW, &m, &d2), OG_RESULT_INVALID_UTF8);
      CHECK(memcmp(&d2, &untouched, sizeof d2) == 0);
      bad[i] = (char)0xC3; /* a sequence cut short (or followed by ASCII) */
      EXPECT(og_engine_check(e, NOW, &m, &d2), OG_RESULT_INVALID_UTF8);
      m.tenant = "contoso";
      m.auth_user = bad;
      EXPECT(og_engine_check(e, NOW, &m, &d2), OG_RESULT_INVALID_UTF8);
      m.auth_user = NULL;
      m.cert_domain = bad;
      EXPECT(og_engine_check(e, NOW, &m, &d2), OG_RESULT_INVALID_UTF8);
      CHECK(memcmp(&d2, &untouched, sizeof d2) == 0);
    }
    if (len >= 2) { /* "t..tü": valid UTF-8, not ASCII, an unknown tenant */
      id[len - 2] = (char)0xC3;
      id[len - 1] = (char)0xBC;
      m = msg_for(id, "alice@contoso.com");
      OK(og_engine_check(e, NOW, &m, &d));
      CHECK(d.reason == OG_REASON_UNATTRIBUTED);
    }
  }
  og_engine_free(e);
}

static int callback_events;
static og_event_kind callback_last_kind;
static void on_event(void *userdata, const og_event *ev) {
  CHECK(userdata == (void *)&callback_events);
  CHECK(ev != NULL);
  callback_events++;
  callback_last_kind = ev->kind;
}

static void test_unregistered_flow(void) {
  og_engine *e = new_engine(POLICY);
  OK(og_engine_set_event_callback(e, on_event, &callback_events));
  og_message bad = msg_for("contoso", "x@evil.example");
  og_message good = msg_for("contoso", "alice@contoso.com");
  og_decision d;
  og_event ev[OG_EVENTS_MAX];
  size_t n = 99;

  /* exactly `limit` (3) unregistered messages go out; the third trips the block */
  for (int i = 0; i < 3; i++) {
    OK(og_engine_evaluate(e, NOW + (uint64_t)i, &bad, OG_VERDICT_CLEAN, &d, ev, OG_EVENTS_MAX, &n));
    CHECK(d.accepted && d.sender_class == OG_SENDER_CLASS_UNREGISTERED);
    CHECK(n == (i == 2 ? 1u : 0u));
  }
  CHECK(ev[0].kind == OG_EVENT_BLOCKED && ev[0].rule == OG_RULE_UNREGISTERED_DOMAIN);
  CHECK(ev[0].until == OG_UNTIL_RELEASE && ev[0].unregistered == 3 && ev[0].time == NOW + 2);
  CHECK(!ev[0].monitor);
  CHECK(callback_events == 1 && callback_last_kind == OG_EVENT_BLOCKED);

  OK(og_engine_check(e, NOW + 10, &bad, &d));
  CHECK(!d.accepted && d.reason == OG_REASON_UNREGISTERED_DOMAIN);
  CHECK(d.rule == OG_RULE_UNREGISTERED_DOMAIN && d.block_ends == OG_UNTIL_RELEASE);
  CHECK(d.counters.unregistered == 3);
  STREQ(og_reason_reply(d.reason),
        "550 5.7.750 Service unavailable. Client blocked from sending from unregistered domains");
  /* the registered domain keeps flowing, and is counted */
  OK(og_engine_evaluate(e, NOW + 11, &good, OG_VERDICT_CLEAN, &d, NULL, 0, NULL));
  CHECK(d.accepted);
  /* refused mail is never counted */
  OK(og_engine_evaluate(e, NOW + 12, &bad, OG_VERDICT_CLEAN, &d, ev, OG_EVENTS_MAX, &n));
  CHECK(!d.accepted && n == 0);

  og_tenant_status st;
  OK(og_engine_status(e, "contoso", NOW + 13, &st));
  CHECK(st.unregistered.blocked && !st.threshold.blocked && st.licensed && !st.lapsed);
  CHECK(st.unregistered.block_ends == OG_UNTIL_RELEASE && st.unregistered.blocked_at == NOW + 2);
  CHECK(st.counters.total == 4 && st.counters.unregistered == 3);

  /* restricted tenants, with a size query first */
  og_restriction rs[4];
  size_t rn = 0;
  EXPECT(og_engine_restricted(e, NOW + 13, NULL, 0, &rn), OG_RESULT_BUFFER_TOO_SMALL);
  CHECK(rn == 1);
  OK(og_engine_restricted(e, NOW + 13, rs, 4, &rn));
  CHECK(rn == 1 && rs[0].reason == OG_REASON_UNREGISTERED_DOMAIN && rs[0].since == NOW + 2);
  CHECK(rs[0].ends == OG_UNTIL_RELEASE && !rs[0].monitor);
  char id[64];
  size_t idn = 0;
  OK(og_engine_tenant_id(e, rs[0].tenant, id, sizeof id, &idn));
  STREQ(id, "contoso");
  CHECK(idn == 7);

  /* audit trail */
  og_event trail[32];
  size_t tn = 0;
  OK(og_engine_audit(e, "contoso", trail, 32, &tn));
  CHECK(tn == 1 && trail[0].kind == OG_EVENT_BLOCKED);
  EXPECT(og_engine_audit(e, "contoso", trail, 0, &tn), OG_RESULT_BUFFER_TOO_SMALL);
  CHECK(tn == 1);

  /* release: mail flows again; the grace period keeps the rule from tripping at once */
  OK(og_engine_release(e, "contoso", OG_RULE_UNREGISTERED_DOMAIN, NOW + 20, ev, OG_EVENTS_MAX, &n));
  CHECK(n == 1 && ev[0].kind == OG_EVENT_RELEASED && callback_events == 2);
  OK(og_engine_check(e, NOW + 21, &bad, &d));
  CHECK(d.accepted);
  OK(og_engine_restricted(e, NOW + 21, rs, 4, &rn));
  CHECK(rn == 0);
  OK(og_engine_status(e, "contoso", NOW + 21, &st));
  CHECK(!st.unregistered.blocked && st.unregistered.grace_until == NOW + 20 + 3600);
  /* releasing again: no event; every rule */
  OK(og_engine_release(e, "contoso", OG_RULE_NONE, NOW + 22, ev, OG_EVENTS_MAX, &n));
  CHECK(n == 0);
  OK(og_engine_release(e, "contoso", OG_RULE_NONE, NOW + 22, NULL, 0, NULL));

  /* clearing the callback */
  OK(og_engine_set_event_callback(e, NULL, NULL));
  OK(og_engine_mark_lapsed(e, "contoso", NOW + 30, NULL, 0, NULL));
  CHECK(callback_events == 2);
  EXPECT(og_engine_set_event_callback(NULL, on_event, NULL), OG_RESULT_NULL_PARAMETER);
  og_engine_free(e);
}

static void test_threshold_and_lapsed(void) {
  og_engine *e = new_engine(POLICY);
  og_message m = msg_for("contoso", "alice@contoso.com");
  og_decision d;
  og_event ev[OG_EVENTS_MAX];
  size_t n = 0, warned = 0, blocked = 0;
  /* 10 messages, every other one spam: ratio 0.5 >= max_ratio with 5 suspicious */
  for (int i = 0; i < 10; i++) {
    og_verdict v = (i % 2) ? OG_VERDICT_SPAM : OG_VERDICT_CLEAN;
    OK(og_engine_record(e, NOW + (uint64_t)i, &m, v, ev, OG_EVENTS_MAX, &n));
    for (size_t k = 0; k < n; k++) {
      if (ev[k].kind == OG_EVENT_WARNED) warned++;
      if (ev[k].kind == OG_EVENT_BLOCKED) {
        blocked++;
        CHECK(ev[k].rule == OG_RULE_TENANT_THRESHOLD && ev[k].suspicious == 5 && ev[k].total == 10);
      }
    }
  }
  CHECK(blocked == 1);
  CHECK(warned <= 1);
  OK(og_engine_check(e, NOW + 20, &m, &d));
  CHECK(!d.accepted && d.reason == OG_REASON_TENANT_THRESHOLD && d.rule == OG_RULE_TENANT_THRESHOLD);
  STREQ(og_reason_reply(d.reason), "550 5.7.705 Access denied, tenant has exceeded threshold");
  /* the whole tenant: registered, null sender, IP-attributed mail */
  og_message viaip = msg_for(NULL, "<>");
  viaip.client_ip = "203.0.113.9";
  OK(og_engine_check(e, NOW + 20, &viaip, &d));
  CHECK(d.reason == OG_REASON_TENANT_THRESHOLD);
  OK(og_engine_release(e, "contoso", OG_RULE_TENANT_THRESHOLD, NOW + 30, ev, OG_EVENTS_MAX, &n));
  CHECK(n == 1 && ev[0].kind == OG_EVENT_RELEASED && ev[0].rule == OG_RULE_TENANT_THRESHOLD);
  OK(og_engine_check(e, NOW + 31, &m, &d));
  CHECK(d.accepted);

  /* lapsed subscriptions */
  OK(og_engine_mark_lapsed(e, "contoso", NOW + 40, ev, OG_EVENTS_MAX, &n));
  CHECK(n == 1 && ev[0].kind == OG_EVENT_LAPSED);
  OK(og_engine_check(e, NOW + 41, &m, &d));
  CHECK(!d.accepted && d.reason == OG_REASON_TENANT_LAPSED && d.block_ends == OG_UNTIL_RELEASE);
  og_tenant_status st;
  OK(og_engine_status(e, "contoso", NOW + 41, &st));
  CHECK(st.lapsed);
  OK(og_engine_mark_active(e, "contoso", NOW + 50, ev, OG_EVENTS_MAX, &n));
  CHECK(n == 1 && ev[0].kind == OG_EVENT_REACTIVATED);
  OK(og_engine_check(e, NOW + 51, &m, &d));
  CHECK(d.accepted);

  /* errors */
  EXPECT(og_engine_record(e, NOW, &m, 5, ev, OG_EVENTS_MAX, &n), OG_RESULT_INVALID_PARAMETER);
  EXPECT(og_engine_record(e, NOW, &m, UINT32_MAX, NULL, 0, NULL), OG_RESULT_INVALID_PARAMETER);
  og_message bad = msg_for("contoso", "no address");
  EXPECT(og_engine_record(e, NOW, &bad, OG_VERDICT_CLEAN, NULL, 0, NULL), OG_RESULT_INVALID_SENDER);
  og_message nobody = msg_for("nobody", "a@contoso.com");
  EXPECT(og_engine_record(e, NOW, &nobody, OG_VERDICT_CLEAN, NULL, 0, NULL), OG_RESULT_UNKNOWN_TENANT);
  EXPECT(og_engine_record(NULL, NOW, &m, OG_VERDICT_CLEAN, NULL, 0, NULL), OG_RESULT_NULL_PARAMETER);
  EXPECT(og_engine_record(e, NOW, NULL, OG_VERDICT_CLEAN, NULL, 0, NULL), OG_RESULT_NULL_PARAMETER);
  EXPECT(og_engine_record(e, NOW, &m, OG_VERDICT_CLEAN, NULL, 4, &n), OG_RESULT_NULL_PARAMETER);
  og_message badip = m;
  badip.client_ip = "nope";
  EXPECT(og_engine_record(e, NOW, &badip, OG_VERDICT_CLEAN, NULL, 0, NULL), OG_RESULT_INVALID_IP);
  og_decision d2;
  memset(&d2, 0xAB, sizeof d2);
  EXPECT(og_engine_evaluate(e, NOW, &m, 17, &d2, NULL, 0, NULL), OG_RESULT_INVALID_PARAMETER);
  EXPECT(og_engine_evaluate(e, NOW, &m, OG_VERDICT_CLEAN, NULL, NULL, 0, NULL), OG_RESULT_NULL_PARAMETER);
  EXPECT(og_engine_evaluate(e, NOW, NULL, OG_VERDICT_CLEAN, &d2, NULL, 0, NULL), OG_RESULT_NULL_PARAMETER);
  EXPECT(og_engine_evaluate(NULL, NOW, &m, OG_VERDICT_CLEAN, &d2, NULL, 0, NULL), OG_RESULT_NULL_PARAMETER);
  EXPECT(og_engine_evaluate(e, NOW, &m, OG_VERDICT_CLEAN, &d2, NULL, 1, NULL), OG_RESULT_NULL_PARAMETER);
  EXPECT(og_engine_evaluate(e, NOW, &badip, OG_VERDICT_CLEAN, &d2, NULL, 0, NULL), OG_RESULT_INVALID_IP);
  /* evaluate of an unparsable sender: a 5.1.7 decision, nothing counted */
  OK(og_engine_evaluate(e, NOW, &bad, OG_VERDICT_CLEAN, &d2, NULL, 0, NULL));
  CHECK(d2.reason == OG_REASON_INVALID_SENDER);

  const og_result tenant_errs[] = {OG_RESULT_NULL_PARAMETER, OG_RESULT_INVALID_UTF8, OG_RESULT_UNKNOWN_TENANT};
  const char *tenants[] = {NULL, BAD_UTF8, "nobody"};
  for (int i = 0; i < 3; i++) {
    EXPECT(og_engine_release(e, tenants[i], OG_RULE_NONE, NOW, NULL, 0, NULL), tenant_errs[i]);
    EXPECT(og_engine_mark_lapsed(e, tenants[i], NOW, NULL, 0, NULL), tenant_errs[i]);
    EXPECT(og_engine_mark_active(e, tenants[i], NOW, NULL, 0, NULL), tenant_errs[i]);
    EXPECT(og_engine_status(e, tenants[i], NOW, &st), tenant_errs[i]);
    size_t k;
    EXPECT(og_engine_audit(e, tenants[i], NULL, 0, &k), tenant_errs[i]);
    uint32_t ix;
    EXPECT(og_engine_tenant_index(e, tenants[i], &ix), tenant_errs[i]);
  }
  EXPECT(og_engine_release(e, "contoso", 4, NOW, NULL, 0, NULL), OG_RESULT_INVALID_PARAMETER);
  EXPECT(og_engine_release(e, "contoso", OG_RULE_NONE, NOW, NULL, 1, NULL), OG_RESULT_NULL_PARAMETER);
  EXPECT(og_engine_release(NULL, "contoso", OG_RULE_NONE, NOW, NULL, 0, NULL), OG_RESULT_NULL_PARAMETER);
  EXPECT(og_engine_mark_lapsed(NULL, "contoso", NOW, NULL, 0, NULL), OG_RESULT_NULL_PARAMETER);
  EXPECT(og_engine_mark_active(e, "contoso", NOW, NULL, 2, NULL), OG_RESULT_NULL_PARAMETER);
  EXPECT(og_engine_status(NULL, "contoso", NOW, &st), OG_RESULT_NULL_PARAMETER);
  EXPECT(og_engine_status(e, "contoso", NOW, NULL), OG_RESULT_NULL_PARAMETER);
  size_t k = 0;
  EXPECT(og_engine_audit(NULL, "contoso", NULL, 0, &k), OG_RESULT_NULL_PARAMETER);
  EXPECT(og_engine_audit(e, "contoso", NULL, 3, &k), OG_RESULT_NULL_PARAMETER);
  EXPECT(og_engine_audit(e, "contoso", NULL, 0, NULL), OG_RESULT_NULL_PARAMETER);
  EXPECT(og_engine_restricted(NULL, NOW, NULL, 0, &k), OG_RESULT_NULL_PARAMETER);
  EXPECT(og_engine_restricted(e, NOW, NULL, 1, &k), OG_RESULT_NULL_PARAMETER);
  EXPECT(og_engine_restricted(e, NOW, NULL, 0, NULL), OG_RESULT_NULL_PARAMETER);
  og_engine_free(e);
}

static void test_timed_block_and_expire(void) {
  og_engine *e = new_engine(POLICY);
  og_message bad = msg_for("tailspin", "x@evil.example");
  og_decision d;
  og_event ev[OG_EVENTS_MAX];
  size_t n = 0;
  OK(og_engine_evaluate(e, NOW, &bad, OG_VERDICT_CLEAN, &d, ev, OG_EVENTS_MAX, &n));
  CHECK(d.accepted && n == 1 && ev[0].kind == OG_EVENT_BLOCKED && ev[0].until == NOW + 3600);
  OK(og_engine_check(e, NOW + 1, &bad, &d));
  CHECK(d.reason == OG_REASON_UNREGISTERED_DOMAIN && d.block_ends == NOW + 3600);
  /* nothing to expire yet */
  OK(og_engine_expire(e, NOW + 10, ev, OG_EVENTS_MAX, &n));
  CHECK(n == 0);
  /* after the hour: one Expired event; a short array still learns the count */
  OK(og_engine_expire(e, NOW + 3601, NULL, 0, &n));
  CHECK(n == 1);
  OK(og_engine_check(e, NOW + 3602, &bad, &d));
  CHECK(d.accepted);
  EXPECT(og_engine_expire(NULL, NOW, NULL, 0, NULL), OG_RESULT_NULL_PARAMETER);
  EXPECT(og_engine_expire(e, NOW, NULL, 1, NULL), OG_RESULT_NULL_PARAMETER);
  OK(og_engine_expire(e, NOW, NULL, 0, NULL));

  /* the low-reputation rule on the unlicensed tenant, and IP exceptions */
  og_message m = msg_for("tailspin", "a@tailspin.example");
  m.client_ip = "192.0.2.7";
  OK(og_engine_check(e, NOW, &m, &d));
  CHECK(d.reason == OG_REASON_LOW_REPUTATION_IP);
  STREQ(og_reason_reply(d.reason), "550 5.7.708 Access denied, traffic not accepted from this IP");
  OK(og_engine_grant_exception(e, "tailspin", "192.0.2.7/32", NOW + 100));
  OK(og_engine_check(e, NOW, &m, &d));
  CHECK(d.accepted);
  OK(og_engine_check(e, NOW + 100, &m, &d)); /* expired */
  CHECK(d.reason == OG_REASON_LOW_REPUTATION_IP);
  OK(og_engine_grant_exception(e, "tailspin", "192.0.2.7/32", OG_UNTIL_RELEASE));
  OK(og_engine_check(e, NOW + 100, &m, &d));
  CHECK(d.accepted);
  OK(og_engine_revoke_exception(e, "tailspin", "192.0.2.7/32"));
  OK(og_engine_check(e, NOW, &m, &d));
  CHECK(d.reason == OG_REASON_LOW_REPUTATION_IP);
  EXPECT(og_engine_revoke_exception(e, "tailspin", "192.0.2.7/32"), OG_RESULT_NOT_FOUND);
  EXPECT(og_engine_grant_exception(e, "tailspin", "192.0.2.7/33", NOW), OG_RESULT_INVALID_RANGE);
  EXPECT(og_engine_grant_exception(e, "tailspin", "banana", NOW), OG_RESULT_INVALID_RANGE);
  EXPECT(og_engine_grant_exception(e, "nobody", "192.0.2.7/32", NOW), OG_RESULT_UNKNOWN_TENANT);
  EXPECT(og_engine_grant_exception(e, "tailspin", NULL, NOW), OG_RESULT_NULL_PARAMETER);
  EXPECT(og_engine_grant_exception(e, "tailspin", BAD_UTF8, NOW), OG_RESULT_INVALID_UTF8);
  EXPECT(og_engine_grant_exception(NULL, "tailspin", "192.0.2.7/32", NOW), OG_RESULT_NULL_PARAMETER);
  EXPECT(og_engine_revoke_exception(e, NULL, "192.0.2.7/32"), OG_RESULT_NULL_PARAMETER);
  EXPECT(og_engine_revoke_exception(e, "tailspin", "x"), OG_RESULT_INVALID_RANGE);
  EXPECT(og_engine_revoke_exception(NULL, "tailspin", "192.0.2.7/32"), OG_RESULT_NULL_PARAMETER);

  /* the low-reputation list itself */
  bool low = false;
  OK(og_engine_is_low_reputation(e, "192.0.2.200", &low));
  CHECK(low);
  OK(og_engine_remove_low_reputation(e, "192.0.2.0/24"));
  OK(og_engine_is_low_reputation(e, "192.0.2.200", &low));
  CHECK(!low);
  EXPECT(og_engine_remove_low_reputation(e, "192.0.2.0/24"), OG_RESULT_NOT_FOUND);
  OK(og_engine_add_low_reputation(e, "192.0.2.0/24"));
  OK(og_engine_add_low_reputation(e, "192.0.2.0/24")); /* twice is harmless */
  OK(og_engine_is_low_reputation(e, "192.0.2.200", &low));
  CHECK(low);
  EXPECT(og_engine_add_low_reputation(e, "1.2.3.4/99"), OG_RESULT_INVALID_RANGE);
  EXPECT(og_engine_add_low_reputation(e, NULL), OG_RESULT_NULL_PARAMETER);
  EXPECT(og_engine_add_low_reputation(NULL, "1.2.3.0/24"), OG_RESULT_NULL_PARAMETER);
  EXPECT(og_engine_remove_low_reputation(e, BAD_UTF8), OG_RESULT_INVALID_UTF8);
  EXPECT(og_engine_remove_low_reputation(NULL, "1.2.3.0/24"), OG_RESULT_NULL_PARAMETER);
  low = true;
  EXPECT(og_engine_is_low_reputation(e, "192.0.2", &low), OG_RESULT_INVALID_IP);
  EXPECT(og_engine_is_low_reputation(e, NULL, &low), OG_RESULT_NULL_PARAMETER);
  EXPECT(og_engine_is_low_reputation(e, "192.0.2.1", NULL), OG_RESULT_NULL_PARAMETER);
  EXPECT(og_engine_is_low_reputation(NULL, "192.0.2.1", &low), OG_RESULT_NULL_PARAMETER);
  CHECK(low);
  og_engine_free(e);
}

/* ----- operator actions on tenants, domains, connectors -------------------------------- */

static void test_operator_tables(void) {
  og_engine *e = new_engine(POLICY);
  og_decision d;

  OK(og_engine_add_tenant(e, "northwind", false));
  EXPECT(og_engine_add_tenant(e, "northwind", true), OG_RESULT_DUPLICATE_TENANT);
  EXPECT(og_engine_add_tenant(e, "", true), OG_RESULT_INVALID_TENANT_ID);
  EXPECT(og_engine_add_tenant(e, " padded", true), OG_RESULT_INVALID_TENANT_ID);
  EXPECT(og_engine_add_tenant(e, "tab\there", true), OG_RESULT_INVALID_TENANT_ID);
  EXPECT(og_engine_add_tenant(e, NULL, true), OG_RESULT_NULL_PARAMETER);
  EXPECT(og_engine_add_tenant(e, BAD_UTF8, true), OG_RESULT_INVALID_UTF8);
  EXPECT(og_engine_add_tenant(NULL, "x", true), OG_RESULT_NULL_PARAMETER);

  /* domains */
  og_message m = msg_for("northwind", "a@sub.northwind.example");
  OK(og_engine_add_domain(e, "northwind", "northwind.example", OG_DOMAIN_SUBDOMAINS));
  OK(og_engine_check(e, NOW, &m, &d));
  CHECK(d.sender_class == OG_SENDER_CLASS_UNREGISTERED); /* not validated yet */
  OK(og_engine_validate_domain(e, "northwind", "northwind.example"));
  OK(og_engine_check(e, NOW, &m, &d));
  CHECK(d.sender_class == OG_SENDER_CLASS_REGISTERED);
  EXPECT(og_engine_add_domain(e, "northwind", "northwind.example", OG_DOMAIN_VALIDATED),
         OG_RESULT_DUPLICATE_DOMAIN);
  EXPECT(og_engine_add_domain(e, "northwind", "bad..example", 0), OG_RESULT_INVALID_DOMAIN);
  EXPECT(og_engine_add_domain(e, "northwind", "x.example", 4), OG_RESULT_INVALID_PARAMETER);
  EXPECT(og_engine_add_domain(e, "nobody", "x.example", 0), OG_RESULT_UNKNOWN_TENANT);
  EXPECT(og_engine_add_domain(e, "northwind", NULL, 0), OG_RESULT_NULL_PARAMETER);
  EXPECT(og_engine_add_domain(e, NULL, "x.example", 0), OG_RESULT_NULL_PARAMETER);
  EXPECT(og_engine_add_domain(NULL, "northwind", "x.example", 0), OG_RESULT_NULL_PARAMETER);
  EXPECT(og_engine_add_domain(e, "northwind", BAD_UTF8, 0), OG_RESULT_INVALID_UTF8);
  OK(og_engine_remove_domain(e, "northwind", "northwind.example"));
  OK(og_engine_check(e, NOW, &m, &d));
  CHECK(d.sender_class == OG_SENDER_CLASS_UNREGISTERED);
  EXPECT(og_engine_remove_domain(e, "northwind", "northwind.example"), OG_RESULT_NOT_FOUND);
  EXPECT(og_engine_validate_domain(e, "northwind", "northwind.example"), OG_RESULT_NOT_FOUND);
  EXPECT(og_engine_validate_domain(e, "northwind", "bad..example"), OG_RESULT_INVALID_DOMAIN);
  EXPECT(og_engine_validate_domain(e, "nobody", "a.example"), OG_RESULT_UNKNOWN_TENANT);
  EXPECT(og_engine_validate_domain(e, "northwind", NULL), OG_RESULT_NULL_PARAMETER);
  EXPECT(og_engine_validate_domain(NULL, "northwind", "a.example"), OG_RESULT_NULL_PARAMETER);
  EXPECT(og_engine_remove_domain(e, "nobody", "a.example"), OG_RESULT_UNKNOWN_TENANT);
  EXPECT(og_engine_remove_domain(e, "northwind", BAD_UTF8), OG_RESULT_INVALID_UTF8);
  EXPECT(og_engine_remove_domain(NULL, "northwind", "a.example"), OG_RESULT_NULL_PARAMETER);

  /* licensing and the unlicensed scope are policy; the flag itself round-trips */
  og_tenant_status st;
  OK(og_engine_status(e, "northwind", NOW, &st));
  CHECK(!st.licensed);
  OK(og_engine_set_licensed(e, "northwind", true));
  OK(og_engine_status(e, "northwind", NOW, &st));
  CHECK(st.licensed);
  EXPECT(og_engine_set_licensed(e, "nobody", true), OG_RESULT_UNKNOWN_TENANT);
  EXPECT(og_engine_set_licensed(e, NULL, true), OG_RESULT_NULL_PARAMETER);
  EXPECT(og_engine_set_licensed(NULL, "northwind", true), OG_RESULT_NULL_PARAMETER);

  /* connectors */
  OK(og_engine_add_connector(e, "northwind", "branch", NULL, NOW - 10));
  OK(og_engine_add_connector_range(e, "northwind", "branch", "198.18.5.0/24"));
  og_message viaip = msg_for(NULL, "a@northwind.example");
  viaip.client_ip = "198.18.5.5";
  OK(og_engine_check(e, NOW, &viaip, &d));
  CHECK(d.accepted && d.attribution == OG_ATTRIBUTION_IP_CONNECTOR);
  char id[16];
  size_t idn;
  OK(og_engine_tenant_id(e, d.tenant, id, sizeof id, &idn));
  STREQ(id, "northwind");
  EXPECT(og_engine_add_connector_range(e, "contoso", "hq", "198.18.5.0/24"), OG_RESULT_DUPLICATE_DOMAIN);
  EXPECT(og_engine_add_connector_range(e, "northwind", "nope", "198.18.6.0/24"), OG_RESULT_NOT_FOUND);
  EXPECT(og_engine_add_connector_range(e, "northwind", "branch", "198.18.6.0/40"), OG_RESULT_INVALID_RANGE);
  EXPECT(og_engine_add_connector_range(e, "nobody", "branch", "198.18.6.0/24"), OG_RESULT_UNKNOWN_TENANT);
  EXPECT(og_engine_add_connector_range(e, "northwind", NULL, "198.18.6.0/24"), OG_RESULT_NULL_PARAMETER);
  EXPECT(og_engine_add_connector_range(e, "northwind", "branch", NULL), OG_RESULT_NULL_PARAMETER);
  EXPECT(og_engine_add_connector_range(NULL, "northwind", "branch", "198.18.6.0/24"), OG_RESULT_NULL_PARAMETER);
  OK(og_engine_add_connector(e, "northwind", "edge", "edge.northwind.example", 0));
  EXPECT(og_engine_add_connector(e, "northwind", "edge", NULL, 0), OG_RESULT_DUPLICATE_CONNECTOR);
  EXPECT(og_engine_add_connector(e, "northwind", "", NULL, 0), OG_RESULT_INVALID_NAME);
  EXPECT(og_engine_add_connector(e, "northwind", "c2", "bad..cert", 0), OG_RESULT_INVALID_DOMAIN);
  EXPECT(og_engine_add_connector(e, "northwind", "c2", BAD_UTF8, 0), OG_RESULT_INVALID_UTF8);
  EXPECT(og_engine_add_connector(e, "nobody", "c2", NULL, 0), OG_RESULT_UNKNOWN_TENANT);
  EXPECT(og_engine_add_connector(e, "northwind", NULL, NULL, 0), OG_RESULT_NULL_PARAMETER);
  EXPECT(og_engine_add_connector(NULL, "northwind", "c2", NULL, 0), OG_RESULT_NULL_PARAMETER);
  og_message viacert = msg_for(NULL, "a@northwind.example");
  viacert.cert_domain = "edge.northwind.example";
  OK(og_engine_check(e, NOW, &viacert, &d));
  CHECK(d.attribution == OG_ATTRIBUTION_CERTIFICATE);
  OK(og_engine_remove_connector(e, "northwind", "branch"));
  OK(og_engine_check(e, NOW, &viaip, &d));
  CHECK(d.reason == OG_REASON_UNATTRIBUTED);
  EXPECT(og_engine_remove_connector(e, "northwind", "branch"), OG_RESULT_NOT_FOUND);
  EXPECT(og_engine_remove_connector(e, "nobody", "branch"), OG_RESULT_UNKNOWN_TENANT);
  EXPECT(og_engine_remove_connector(e, "northwind", NULL), OG_RESULT_NULL_PARAMETER);
  EXPECT(og_engine_remove_connector(NULL, "northwind", "edge"), OG_RESULT_NULL_PARAMETER);

  /* tenant ids into buffers */
  uint32_t ix = 0;
  OK(og_engine_tenant_index(e, "northwind", &ix));
  char small[9]; /* "northwind" needs 10 bytes with the NUL */
  memset(small, 'x', sizeof small);
  idn = 0;
  EXPECT(og_engine_tenant_id(e, ix, small, sizeof small, &idn), OG_RESULT_BUFFER_TOO_SMALL);
  CHECK(idn == 9 && small[0] == 'x');
  EXPECT(og_engine_tenant_id(e, ix, NULL, 0, &idn), OG_RESULT_BUFFER_TOO_SMALL);
  CHECK(idn == 9);
  EXPECT(og_engine_tenant_id(e, OG_NO_TENANT, id, sizeof id, &idn), OG_RESULT_UNKNOWN_TENANT);
  EXPECT(og_engine_tenant_id(e, 12345, id, sizeof id, &idn), OG_RESULT_UNKNOWN_TENANT);
  EXPECT(og_engine_tenant_id(e, ix, NULL, 5, &idn), OG_RESULT_NULL_PARAMETER);
  EXPECT(og_engine_tenant_id(e, ix, id, sizeof id, NULL), OG_RESULT_NULL_PARAMETER);
  EXPECT(og_engine_tenant_id(NULL, ix, id, sizeof id, &idn), OG_RESULT_NULL_PARAMETER);
  EXPECT(og_engine_tenant_index(NULL, "northwind", &ix), OG_RESULT_NULL_PARAMETER);
  EXPECT(og_engine_tenant_index(e, "northwind", NULL), OG_RESULT_NULL_PARAMETER);

  OK(og_engine_remove_tenant(e, "northwind"));
  EXPECT(og_engine_remove_tenant(e, "northwind"), OG_RESULT_UNKNOWN_TENANT);
  EXPECT(og_engine_tenant_id(e, ix, id, sizeof id, &idn), OG_RESULT_UNKNOWN_TENANT);
  EXPECT(og_engine_remove_tenant(e, NULL), OG_RESULT_NULL_PARAMETER);
  EXPECT(og_engine_remove_tenant(e, BAD_UTF8), OG_RESULT_INVALID_UTF8);
  EXPECT(og_engine_remove_tenant(NULL, "contoso"), OG_RESULT_NULL_PARAMETER);

  /* filling the tenant table: a value, never a crash */
  og_result r = OG_RESULT_OK;
  for (int i = 0; i < 100000 && r == OG_RESULT_OK; i++) {
    char name[32];
    snprintf(name, sizeof name, "filler-%d", i);
    r = og_engine_add_tenant(e, name, true);
  }
  CHECK(r == OG_RESULT_TENANTS_FULL || r == OG_RESULT_NAMES_FULL);
  og_engine_free(e);
}

/* ----- suspicious connectors ---------------------------------------------------------- */

/* The entry of `sc` (n entries) for the connector `name` of `tenant`; NULL when none is. */
static const og_suspicious_connector *find_connector(og_engine *e, const og_suspicious_connector *sc,
                                                     size_t n, const char *tenant, const char *name) {
  const og_suspicious_connector *found = NULL;
  for (size_t i = 0; i < n; i++) {
    char cn[256], tn[256];
    size_t cl = 0, tl = 0;
    OK(og_engine_connector_name(e, sc[i].connector, cn, sizeof cn, &cl));
    CHECK(cl == strlen(cn));
    OK(og_engine_tenant_id(e, sc[i].tenant, tn, sizeof tn, &tl));
    CHECK(sc[i].why != 0);
    if (strcmp(cn, name) == 0 && strcmp(tn, tenant) == 0) {
      CHECK(found == NULL); /* one entry per connector */
      found = &sc[i];
    }
  }
  return found;
}

static void test_suspicious_connectors(void) {
  og_engine *e = new_engine(POLICY);
  const uint64_t old = NOW - 60 * 86400;
  og_suspicious_connector sc[8];
  const og_suspicious_connector *s;
  size_t n = 99;

  /* The policy's onprem connector: its certificate mail.contoso.com is no accepted domain
     (contoso.com does not take subdomains); it was created 2026-01-10 (policy `created`),
     so it was also recent for the 7 days after that. hq is old, on a clean range. */
  OK(og_engine_suspicious_connectors(e, NOW, sc, 8, &n));
  CHECK(n == 1);
  s = find_connector(e, sc, n, "contoso", "onprem");
  CHECK(s != NULL && s->why == OG_SUSPICION_CERTIFICATE_NOT_ACCEPTED && s->created == 1768003200u);
  OK(og_engine_suspicious_connectors(e, 1768003200u + 3600, sc, 8, &n));
  CHECK(n == 1);
  s = find_connector(e, sc, n, "contoso", "onprem");
  CHECK(s != NULL && s->why == (OG_SUSPICION_RECENT | OG_SUSPICION_CERTIFICATE_NOT_ACCEPTED));
  OK(og_engine_suspicious_connectors(e, 1768003200u + 7 * 86400, sc, 8, &n));
  CHECK(n == 1 && sc[0].why == OG_SUSPICION_CERTIFICATE_NOT_ACCEPTED);

  /* without it, nothing is suspicious */
  OK(og_engine_remove_connector(e, "contoso", "onprem"));
  n = 99;
  OK(og_engine_suspicious_connectors(e, NOW, sc, 8, &n));
  CHECK(n == 0);
  n = 99;
  OK(og_engine_suspicious_connectors(e, NOW, NULL, 0, &n));
  CHECK(n == 0);

  /* one connector for each reason, one with all three, two that are fine */
  OK(og_engine_add_connector(e, "contoso", "fresh", NULL, NOW - 3600));
  OK(og_engine_add_connector(e, "contoso", "partner", "relay.attacker.example", old));
  OK(og_engine_add_connector(e, "tailspin", "cheap-vps", NULL, old));
  OK(og_engine_add_connector_range(e, "tailspin", "cheap-vps", "192.0.2.64/26"));
  OK(og_engine_add_domain(e, "tailspin", "tailspin.net", OG_DOMAIN_SUBDOMAINS));
  OK(og_engine_add_connector(e, "tailspin", "unvalidated", "mx.tailspin.net", old));
  OK(og_engine_add_connector(e, "contoso", "all", "x.attacker.example", NOW - 10));
  OK(og_engine_add_connector_range(e, "contoso", "all", "192.0.2.7/32"));
  OK(og_engine_add_connector(e, "contoso", "relay", "mail.fabrikam.com", old));
  OK(og_engine_add_connector(e, "tailspin", "clean", NULL, 0));
  OK(og_engine_add_connector_range(e, "tailspin", "clean", "198.51.100.0/24"));

  memset(sc, 0xab, sizeof sc);
  n = 0;
  OK(og_engine_suspicious_connectors(e, NOW, sc, 8, &n));
  CHECK(n == 5);
  s = find_connector(e, sc, n, "contoso", "fresh");
  CHECK(s != NULL && s->why == OG_SUSPICION_RECENT && s->created == NOW - 3600);
  s = find_connector(e, sc, n, "contoso", "partner");
  CHECK(s != NULL && s->why == OG_SUSPICION_CERTIFICATE_NOT_ACCEPTED && s->created == old);
  s = find_connector(e, sc, n, "tailspin", "cheap-vps");
  CHECK(s != NULL && s->why == OG_SUSPICION_LOW_REPUTATION_RANGE && s->created == old);
  s = find_connector(e, sc, n, "tailspin", "unvalidated");
  CHECK(s != NULL && s->why == OG_SUSPICION_CERTIFICATE_NOT_ACCEPTED);
  s = find_connector(e, sc, n, "contoso", "all");
  CHECK(s != NULL && s->created == NOW - 10);
  CHECK(s->why == (OG_SUSPICION_RECENT | OG_SUSPICION_CERTIFICATE_NOT_ACCEPTED |
                   OG_SUSPICION_LOW_REPUTATION_RANGE));
  CHECK(find_connector(e, sc, n, "contoso", "relay") == NULL);
  CHECK(find_connector(e, sc, n, "tailspin", "clean") == NULL);
  CHECK(find_connector(e, sc, n, "contoso", "hq") == NULL);
  /* the entry slots past n are not written */
  for (size_t i = n; i < 8; i++) CHECK(sc[i].connector == 0xabababab && sc[i].why == 0xabababab);

  /* a size query, a short array (nothing written, the number needed reported), an exact fit */
  n = 0;
  EXPECT(og_engine_suspicious_connectors(e, NOW, NULL, 0, &n), OG_RESULT_BUFFER_TOO_SMALL);
  CHECK(n == 5);
  og_suspicious_connector shortarr[4], before[4];
  memset(shortarr, 0xcd, sizeof shortarr);
  memcpy(before, shortarr, sizeof shortarr);
  n = 0;
  EXPECT(og_engine_suspicious_connectors(e, NOW, shortarr, 4, &n), OG_RESULT_BUFFER_TOO_SMALL);
  CHECK(n == 5);
  CHECK(memcmp(shortarr, before, sizeof shortarr) == 0);
  n = 0;
  OK(og_engine_suspicious_connectors(e, NOW, sc, 5, &n));
  CHECK(n == 5);

  /* "recent" is relative to now; validating the domain clears the certificate reason */
  OK(og_engine_suspicious_connectors(e, NOW + 30 * 86400, sc, 8, &n));
  CHECK(n == 4 && find_connector(e, sc, n, "contoso", "fresh") == NULL);
  s = find_connector(e, sc, n, "contoso", "all");
  CHECK(s != NULL &&
        s->why == (OG_SUSPICION_CERTIFICATE_NOT_ACCEPTED | OG_SUSPICION_LOW_REPUTATION_RANGE));
  OK(og_engine_validate_domain(e, "tailspin", "tailspin.net"));
  OK(og_engine_suspicious_connectors(e, NOW, sc, 8, &n));
  CHECK(n == 4 && find_connector(e, sc, n, "tailspin", "unvalidated") == NULL);

  /* connector names into buffers */
  s = find_connector(e, sc, n, "tailspin", "cheap-vps");
  CHECK(s != NULL);
  const uint32_t ci = s->connector;
  char name[16];
  size_t nn = 0;
  OK(og_engine_connector_name(e, ci, name, sizeof name, &nn));
  STREQ(name, "cheap-vps");
  CHECK(nn == 9);
  char small[9]; /* "cheap-vps" needs 10 bytes with the NUL */
  memset(small, 'x', sizeof small);
  nn = 0;
  EXPECT(og_engine_connector_name(e, ci, small, sizeof small, &nn), OG_RESULT_BUFFER_TOO_SMALL);
  CHECK(nn == 9 && small[0] == 'x');
  nn = 0;
  EXPECT(og_engine_connector_name(e, ci, NULL, 0, &nn), OG_RESULT_BUFFER_TOO_SMALL);
  CHECK(nn == 9);
  nn = 77;
  EXPECT(og_engine_connector_name(e, 12345, name, sizeof name, &nn), OG_RESULT_NOT_FOUND);
  EXPECT(og_engine_connector_name(e, UINT32_MAX, name, sizeof name, &nn), OG_RESULT_NOT_FOUND);
  EXPECT(og_engine_connector_name(e, ci, NULL, 5, &nn), OG_RESULT_NULL_PARAMETER);
  EXPECT(og_engine_connector_name(e, ci, name, sizeof name, NULL), OG_RESULT_NULL_PARAMETER);
  EXPECT(og_engine_connector_name(NULL, ci, name, sizeof name, &nn), OG_RESULT_NULL_PARAMETER);
  CHECK(nn == 77);

  /* removed connectors, and the connectors of a removed tenant, are gone */
  OK(og_engine_remove_connector(e, "contoso", "partner"));
  OK(og_engine_suspicious_connectors(e, NOW, sc, 8, &n));
  CHECK(n == 3 && find_connector(e, sc, n, "contoso", "partner") == NULL);
  OK(og_engine_remove_tenant(e, "tailspin"));
  EXPECT(og_engine_connector_name(e, ci, name, sizeof name, &nn), OG_RESULT_NOT_FOUND);
  OK(og_engine_suspicious_connectors(e, NOW, sc, 8, &n));
  CHECK(n == 2 && find_connector(e, sc, n, "contoso", "fresh") != NULL &&
        find_connector(e, sc, n, "contoso", "all") != NULL);

  /* NULL: the engine, the array with a length, the count; outputs untouched */
  n = 77;
  EXPECT(og_engine_suspicious_connectors(NULL, NOW, sc, 8, &n), OG_RESULT_NULL_PARAMETER);
  EXPECT(og_engine_suspicious_connectors(e, NOW, NULL, 1, &n), OG_RESULT_NULL_PARAMETER);
  EXPECT(og_engine_suspicious_connectors(e, NOW, sc, 8, NULL), OG_RESULT_NULL_PARAMETER);
  EXPECT(og_engine_suspicious_connectors(e, NOW, NULL, 0, NULL), OG_RESULT_NULL_PARAMETER);
  CHECK(n == 77);
  og_engine_free(e);
}

/* ----- reload, snapshot, restore ------------------------------------------------------ */

static void bump_unregistered(og_engine *e, const char *tenant, int count) {
  og_message bad = msg_for(tenant, "x@evil.example");
  for (int i = 0; i < count; i++) OK(og_engine_record(e, NOW, &bad, OG_VERDICT_CLEAN, NULL, 0, NULL));
}

static void test_reload(void) {
  og_engine *e = new_engine(POLICY);
  bump_unregistered(e, "contoso", 2);
  og_tenant_status st;
  char err[1024];

  /* a bad policy changes nothing */
  static const char bad[] = "[[tenants]]\nid = \"contoso\"\ndomains = [\"exa mple.com\"]\n";
  EXPECT(og_engine_reload_toml(e, bad, strlen(bad), "new.toml", NULL, NULL, err, sizeof err),
         OG_RESULT_POLICY);
  CHECK(strstr(err, "new.toml:3") != NULL);
  OK(og_engine_status(e, "contoso", NOW, &st));
  CHECK(st.counters.unregistered == 2 && st.counters.limit == 3);
  uint32_t ix;
  OK(og_engine_tenant_index(e, "tailspin", &ix));

  /* a new limit, a tenant less, a tenant more: counters survive */
  static const char next[] =
      "[rules.unregistered_domain]\nlimit = 5\n"
      "[[tenants]]\nid = \"contoso\"\ndomains = [\"contoso.com\"]\n"
      "[[tenants]]\nid = \"woodgrove\"\ndomains = [\"woodgrove.example\"]\n"
      "[[tenants]]\nid = \"litware\"\n";
  og_reload_report rep = {99, 99};
  OK(og_engine_reload_toml(e, next, strlen(next), NULL, NULL, &rep, err, sizeof err));
  CHECK(rep.added == 2 && rep.removed == 1);
  OK(og_engine_status(e, "contoso", NOW, &st));
  CHECK(st.counters.unregistered == 2 && st.counters.limit == 5);
  EXPECT(og_engine_tenant_index(e, "tailspin", &ix), OG_RESULT_UNKNOWN_TENANT);
  OK(og_engine_reload_toml(e, next, strlen(next), NULL, NULL, NULL, NULL, 0)); /* report optional */

  /* from a file */
  char path[256];
  path_in_tmp(path, sizeof path, "reload.toml");
  write_file(path, POLICY, strlen(POLICY));
  OK(og_engine_reload_file(e, path, &rep, err, sizeof err));
  CHECK(rep.added == 1 && rep.removed == 2);
  OK(og_engine_status(e, "contoso", NOW, &st));
  CHECK(st.counters.unregistered == 2 && st.counters.limit == 3);
  char missing[256];
  path_in_tmp(missing, sizeof missing, "nope.toml");
  EXPECT(og_engine_reload_file(e, missing, &rep, err, sizeof err), OG_RESULT_POLICY);
  CHECK(strstr(err, "nope.toml") != NULL);
  EXPECT(og_engine_reload_file(e, NULL, &rep, err, sizeof err), OG_RESULT_NULL_PARAMETER);
  EXPECT(og_engine_reload_file(NULL, path, &rep, err, sizeof err), OG_RESULT_NULL_PARAMETER);
  EXPECT(og_engine_reload_file(e, path, &rep, NULL, 3), OG_RESULT_NULL_PARAMETER);
  EXPECT(og_engine_reload_toml(NULL, next, strlen(next), NULL, NULL, &rep, err, sizeof err),
         OG_RESULT_NULL_PARAMETER);
  EXPECT(og_engine_reload_toml(e, NULL, 3, NULL, NULL, &rep, err, sizeof err), OG_RESULT_NULL_PARAMETER);
  EXPECT(og_engine_reload_toml(e, BAD_UTF8, 2, NULL, NULL, &rep, err, sizeof err), OG_RESULT_INVALID_UTF8);
  OK(og_engine_status(e, "contoso", NOW, &st));
  CHECK(st.counters.unregistered == 2);
  og_engine_free(e);
}

static void test_snapshot(void) {
  og_engine *e = new_engine(POLICY);
  bump_unregistered(e, "contoso", 3); /* blocked */
  OK(og_engine_mark_lapsed(e, "tailspin", NOW, NULL, 0, NULL));

  size_t len = 0;
  OK(og_engine_snapshot_len(e, &len));
  CHECK(len > 32);
  uint8_t *buf = malloc(len + 16);
  CHECK(buf != NULL);
  size_t n = 0;
  memset(buf, 0xEE, len + 16);
  EXPECT(og_engine_snapshot(e, buf, len - 1, &n), OG_RESULT_BUFFER_TOO_SMALL);
  CHECK(n == len && buf[0] == 0xEE);
  EXPECT(og_engine_snapshot(e, NULL, 0, &n), OG_RESULT_BUFFER_TOO_SMALL);
  OK(og_engine_snapshot(e, buf, len + 16, &n));
  CHECK(n == len && memcmp(buf, "OUTGUARD", 8) == 0 && buf[len] == 0xEE);
  EXPECT(og_engine_snapshot(e, NULL, 5, &n), OG_RESULT_NULL_PARAMETER);
  EXPECT(og_engine_snapshot(e, buf, len, NULL), OG_RESULT_NULL_PARAMETER);
  EXPECT(og_engine_snapshot(NULL, buf, len, &n), OG_RESULT_NULL_PARAMETER);
  EXPECT(og_engine_snapshot_len(NULL, &len), OG_RESULT_NULL_PARAMETER);
  EXPECT(og_engine_snapshot_len(e, NULL), OG_RESULT_NULL_PARAMETER);

  /* restore into a fresh engine: the block and the lapse come back */
  og_engine *f = new_engine(POLICY);
  og_restore_report rep = {99, 99};
  OK(og_engine_restore(f, buf, n, &rep));
  CHECK(rep.restored == 2 && rep.unknown == 0);
  og_decision d;
  og_message bad = msg_for("contoso", "x@evil.example");
  OK(og_engine_check(f, NOW + 5, &bad, &d));
  CHECK(d.reason == OG_REASON_UNREGISTERED_DOMAIN);
  og_message ts = msg_for("tailspin", "a@tailspin.example");
  OK(og_engine_check(f, NOW + 5, &ts, &d));
  CHECK(d.reason == OG_REASON_TENANT_LAPSED);

  /* corrupt, foreign, truncated snapshots change nothing */
  og_engine *g = new_engine(POLICY);
  buf[len - 1] ^= 0x55;
  EXPECT(og_engine_restore(g, buf, n, &rep), OG_RESULT_SNAPSHOT_CHECKSUM);
  buf[len - 1] ^= 0x55;
  EXPECT(og_engine_restore(g, buf, n - 1, &rep), OG_RESULT_SNAPSHOT_TRUNCATED);
  EXPECT(og_engine_restore(g, buf, 4, &rep), OG_RESULT_SNAPSHOT_TRUNCATED);
  EXPECT(og_engine_restore(g, (const uint8_t *)"NOTASNAPSHOT-AT-ALL-REALLY-NOT!!!", 33, &rep),
         OG_RESULT_SNAPSHOT_FOREIGN);
  uint8_t v = buf[8];
  buf[8] = 0x7f;
  EXPECT(og_engine_restore(g, buf, n, &rep), OG_RESULT_SNAPSHOT_VERSION);
  buf[8] = v;
  EXPECT(og_engine_restore(g, NULL, 0, &rep), OG_RESULT_SNAPSHOT_TRUNCATED);
  EXPECT(og_engine_restore(g, NULL, 10, &rep), OG_RESULT_NULL_PARAMETER);
  EXPECT(og_engine_restore(NULL, buf, n, &rep), OG_RESULT_NULL_PARAMETER);
  OK(og_engine_check(g, NOW + 5, &bad, &d));
  CHECK(d.accepted);
  CHECK(rep.restored == 2); /* untouched by the failures */
  OK(og_engine_restore(g, buf, n, NULL)); /* report optional */
  OK(og_engine_check(g, NOW + 5, &bad, &d));
  CHECK(d.reason == OG_REASON_UNREGISTERED_DOMAIN);

  /* files */
  char path[256];
  path_in_tmp(path, sizeof path, "state.bin");
  OK(og_engine_snapshot_file(e, path));
  og_engine *h = new_engine(POLICY);
  OK(og_engine_restore_file(h, path, &rep));
  CHECK(rep.restored == 2);
  OK(og_engine_check(h, NOW + 5, &bad, &d));
  CHECK(d.reason == OG_REASON_UNREGISTERED_DOMAIN);
  char missing[256], nodir[256];
  path_in_tmp(missing, sizeof missing, "nope.bin");
  path_in_tmp(nodir, sizeof nodir, "no/such/dir/state.bin");
  EXPECT(og_engine_restore_file(h, missing, &rep), OG_RESULT_IO);
  EXPECT(og_engine_snapshot_file(e, nodir), OG_RESULT_IO);
  EXPECT(og_engine_restore_file(h, NULL, &rep), OG_RESULT_NULL_PARAMETER);
  EXPECT(og_engine_restore_file(NULL, path, &rep), OG_RESULT_NULL_PARAMETER);
  EXPECT(og_engine_snapshot_file(e, NULL), OG_RESULT_NULL_PARAMETER);
  EXPECT(og_engine_snapshot_file(NULL, path), OG_RESULT_NULL_PARAMETER);
  write_file(path, "garbage", 7);
  EXPECT(og_engine_restore_file(h, path, &rep), OG_RESULT_SNAPSHOT_FOREIGN);

  free(buf);
  og_engine_free(e);
  og_engine_free(f);
  og_engine_free(g);
  og_engine_free(h);
}

int main(void) {
  CHECK(mkdtemp(tmpdir) != NULL);
  test_version_and_results();
  test_reason_texts();
  test_names();
  test_explain();
  test_ndr();
  test_new();
  test_check();
  test_non_ascii_text();
  test_unregistered_flow();
  test_threshold_and_lapsed();
  test_timed_block_and_expire();
  test_operator_tables();
  test_suspicious_connectors();
  test_reload();
  test_snapshot();
  char cmd[512];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
  CHECK(system(cmd) == 0);
  printf("test_api: %d checks passed\n", (int)og_test_checks);
  return 0;
}
