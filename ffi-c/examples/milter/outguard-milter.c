/*
 * outguard-milter: the outguard engine as a milter for Postfix and Sendmail (libmilter).
 *
 *   outguard-milter [-E] [-a ADMIN_SOCKET] [-T SECONDS] POLICY SOCKET [STATEFILE]
 *
 * POLICY     the outguard policy (TOML).
 * SOCKET     where the MTA connects, in libmilter syntax: inet:PORT@127.0.0.1 or unix:/path.
 * STATEFILE  counters, blocks and audit trails are restored from it at start (when it exists)
 *            and written to it on SIGTERM/SIGINT, on SIGUSR1 and by the `snapshot` command.
 * -a PATH    a unix socket for operator commands (see below).
 * -T SECONDS libmilter's I/O timeout (default 7210, libmilter's default); with -E, how long
 *            an idle MTA connection is kept.
 * -E         serve the milter protocol from one thread with epoll instead of libmilter
 *            (events.c): the same decisions, a third of the CPU per message. libmilter stays
 *            the default: it is the reference implementation of the protocol.
 *
 * Per message:
 *   MAIL FROM  the tenant is attributed from {auth_authen} (as the authenticated user), the
 *              TLS client certificate when the MTA verified it ({cert_subject}, or with
 *              Sendmail {cn_subject} and {verify}: see cert_name) or the client address ({client_addr},
 *              else the address of the connect callback), and the message is decided with
 *              og_engine_check. A refusal is answered with the exact reply, split for
 *              smfi_setreply: "550", "5.7.750", "Service unavailable. Client blocked ...".
 *   headers    the content filter's verdict: "X-Spam-Flag: YES" is spam, "X-Bulk: yes" or
 *              "Precedence: bulk" is bulk, anything else clean.
 *   end        og_engine_record counts the message (accepted mail only: rejected mail never
 *              counts) and logs the events (a tenant blocked, warned, ...).
 *
 * Signals: SIGHUP reloads the policy (counters survive; a bad policy is logged and ignored);
 * SIGUSR1 writes the state file; SIGTERM and SIGINT stop the milter and write the state file.
 *
 * Admin commands (-a), one a line, each answered with one or more lines, the last of which
 * starts with "ok" or "error":
 *   release TENANT [RULE]   lift a block (RULE: tenant_threshold or unregistered_domain;
 *                           default every rule)
 *   lapsed TENANT | active TENANT
 *   status TENANT           counters and blocks
 *   restricted              every refused tenant, one a line
 *   reload                  like SIGHUP
 *   snapshot                like SIGUSR1
 *   e.g.  printf 'release contoso\n' | socat - UNIX-CONNECT:/run/outguard/admin.sock
 *
 * Postfix: smtpd_milters = inet:127.0.0.1:PORT; the milter asks for the macros it needs
 * during negotiation; with MTAs that do not support that, add {client_addr} to
 * milter_connect_macros and milter_mail_macros ({auth_authen} is sent at MAIL FROM by
 * default).
 *
 * Threads and signals: libmilter runs a thread per connection, all sharing one og_engine
 * handle (checks run in parallel, records serialise on the engine's write lock). libmilter's
 * own signal thread also waits for SIGHUP/SIGTERM/SIGINT and treats SIGHUP as "stop", so
 * smfi_main runs in a second thread and the main thread waits for the signals itself: the
 * kernel hands a process-directed signal to the main thread first when it is waiting for
 * it. Should libmilter take one anyway, smfi_main returns and the state is still saved.
 */
#define _GNU_SOURCE /* pthread_setattr_default_np */

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <sys/eventfd.h>

#include "milter.h"

static og_engine *engine;
static const char *policy_path;
static const char *state_path;
static const char *admin_path;
static int admin_fd = -1;
static pthread_t main_thread;
static atomic_int sessions;
static atomic_bool milter_done;

/* ----- logging ------------------------------------------------------------------------ */

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

void logf_(const char *fmt, ...) {
  va_list ap;
  struct timespec ts;
  struct tm tm;
  char when[32];
  clock_gettime(CLOCK_REALTIME, &ts);
  gmtime_r(&ts.tv_sec, &tm);
  strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
  pthread_mutex_lock(&log_lock);
  fprintf(stderr, "%s.%03ldZ outguard-milter: ", when, ts.tv_nsec / 1000000);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  fflush(stderr);
  pthread_mutex_unlock(&log_lock);
}

static uint64_t now_unix(void) { return (uint64_t)time(NULL); }

static void tenant_name(uint32_t index, char *buf, size_t len) {
  size_t n;
  if (index == OG_NO_TENANT || og_engine_tenant_id(engine, index, buf, len, &n) != OG_RESULT_OK)
    snprintf(buf, len, "-");
}

static void log_events(const char *why, const og_event *ev, size_t n) {
  for (size_t i = 0; i < n && i < OG_EVENTS_MAX; i++) {
    char id[256];
    tenant_name(ev[i].tenant, id, sizeof id);
    const char *rule = og_rule_name(ev[i].rule);
    logf_("event %s: tenant=%s rule=%s total=%u suspicious=%u unregistered=%u%s (%s)",
          og_event_kind_name(ev[i].kind), id, rule ? rule : "-", ev[i].total, ev[i].suspicious,
          ev[i].unregistered, ev[i].monitor ? " monitor" : "", why);
  }
}

static void save_state(const char *why) {
  if (state_path == NULL) return;
  og_result r = og_engine_snapshot_file(engine, state_path);
  if (r == OG_RESULT_OK)
    logf_("state saved to %s (%s)", state_path, why);
  else
    logf_("cannot save state to %s: %s", state_path, og_result_message(r));
}

static og_result reload_policy(char *msg, size_t len) {
  char err[4096] = "";
  og_reload_report rep;
  og_result r = og_engine_reload_file(engine, policy_path, &rep, err, sizeof err);
  if (r == OG_RESULT_OK) {
    snprintf(msg, len, "policy reloaded: %u tenant(s) added, %u removed", rep.added, rep.removed);
  } else {
    snprintf(msg, len, "policy NOT reloaded (%s): %s", og_result_message(r), err);
  }
  logf_("%s", msg);
  return r;
}

/* ----- per connection and per message state -------------------------------------------- */

static struct session *session_of(SMFICTX *ctx) {
  struct session *s = smfi_getpriv(ctx);
  if (s == NULL) {
    s = calloc(1, sizeof *s);
    if (s == NULL) return NULL;
    if (smfi_setpriv(ctx, s) != MI_SUCCESS) {
      free(s);
      return NULL;
    }
    atomic_fetch_add(&sessions, 1);
  }
  return s;
}

void reset_message(struct session *s) {
  s->in_message = false;
  s->mail_from_len = 0;
  s->auth_user[0] = s->cert_domain[0] = s->message_ip[0] = '\0';
  s->recipients = 0;
  s->verdict = OG_VERDICT_CLEAN;
}

static void copy_macro(char *dst, size_t len, const char *value) {
  if (value == NULL || value[0] == '\0') {
    dst[0] = '\0';
    return;
  }
  snprintf(dst, len, "%s", value);
}

/* The client certificate's name for attribution, or NULL. A certificate counts only when the
 * MTA verified it: Postfix sets {cert_subject} (the subject's CN) for a verified certificate
 * only and sends no {verify}; Sendmail sets its macros for any certificate presented and says
 * in {verify} whether it verified it ("OK"). The name is Sendmail's {cn_subject} when sent,
 * else {cert_subject} unless that holds a whole DN (Sendmail's {cert_subject}), whose parts
 * are not split here: a DN's escaping could pass another attribute off as the CN. */
const char *cert_name(const char *verify, const char *cn_subject, const char *cert_subject) {
  if (verify != NULL && verify[0] != '\0' && strcmp(verify, "OK") != 0) return NULL;
  if (cn_subject != NULL && cn_subject[0] != '\0') return cn_subject;
  if (cert_subject == NULL || cert_subject[0] == '/' || strchr(cert_subject, '=') != NULL)
    return NULL;
  return cert_subject;
}

/* An address for og_message.client_ip: "IPv6:" prefixes and brackets removed. */
static void normalise_ip(char *ip) {
  size_t skip = 0;
  if (strncasecmp(ip, "IPv6:", 5) == 0) skip = 5;
  if (ip[skip] == '[') skip++;
  memmove(ip, ip + skip, strlen(ip + skip) + 1);
  char *end = strchr(ip, ']');
  if (end) *end = '\0';
}

static og_message message_of(const struct session *s) {
  og_message m;
  memset(&m, 0, sizeof m);
  m.mail_from = s->mail_from;
  m.mail_from_len = s->mail_from_len;
  m.auth_user = s->auth_user[0] ? s->auth_user : NULL;
  m.cert_domain = s->cert_domain[0] ? s->cert_domain : NULL;
  if (s->message_ip[0])
    m.client_ip = s->message_ip;
  else
    m.client_addr = s->client_addr; /* binary: nothing to parse */
  m.recipients = s->recipients;
  return m;
}

/* ----- milter callbacks ---------------------------------------------------------------- */

/* Keeps the milter's cost per message low: the MTA sends neither HELO, end-of-header, body,
 * DATA nor unknown commands, and does not wait for replies to connect, RCPT and headers
 * (outguard decides at MAIL FROM and counts at end of message; everything else only
 * collects). When the MTA lets the milter choose its macros, the connect step is skipped too
 * ({client_addr} then comes with MAIL FROM), and RCPT and end of message carry only the
 * queue id. (Postfix still sends an empty macro command before each step, and one before
 * each header: about 20 commands per one-message session, each costing libmilter a poll and
 * two reads; the headers are how the verdict arrives, so they stay.) */
const unsigned long WANT_NO = SMFIP_NOHELO | SMFIP_NOEOH | SMFIP_NOBODY | SMFIP_NODATA |
                              SMFIP_NOUNKNOWN;
const unsigned long WANT_NR = SMFIP_NR_CONN | SMFIP_NR_RCPT | SMFIP_NR_HDR;
const struct macro_list MACRO_LISTS[3] = {
    {SMFIM_ENVFROM, "{auth_authen} {client_addr} {cert_subject} {cn_subject} {verify} i"},
    {SMFIM_ENVRCPT, "i"},
    {SMFIM_EOM, "i"},
};

static sfsistat on_negotiate(SMFICTX *ctx, unsigned long f0, unsigned long f1, unsigned long f2,
                             unsigned long f3, unsigned long *pf0, unsigned long *pf1,
                             unsigned long *pf2, unsigned long *pf3) {
  (void)f2;
  (void)f3;
  struct session *s = session_of(ctx);
  if (s == NULL) return SMFIS_TEMPFAIL;
  *pf0 = 0; /* no message modifications */
  unsigned long want = WANT_NO | WANT_NR;
  if ((f0 & SMFIF_SETSYMLIST) &&
      smfi_setsymlist(ctx, MACRO_LISTS[0].stage, (char *)MACRO_LISTS[0].macros) == MI_SUCCESS) {
    *pf0 |= SMFIF_SETSYMLIST;
    want |= SMFIP_NOCONNECT;
    for (size_t i = 1; i < sizeof MACRO_LISTS / sizeof MACRO_LISTS[0]; i++)
      smfi_setsymlist(ctx, MACRO_LISTS[i].stage, (char *)MACRO_LISTS[i].macros);
  }
  *pf1 = f1 & want;
  s->noreply = f1 & WANT_NR;
  *pf2 = 0;
  *pf3 = 0;
  return SMFIS_CONTINUE;
}

/* CONTINUE, or NOREPLY when the MTA agreed not to wait for this step. */
static sfsistat next(const struct session *s, unsigned long step) {
  return (s != NULL && (s->noreply & step)) ? SMFIS_NOREPLY : SMFIS_CONTINUE;
}

static sfsistat on_connect(SMFICTX *ctx, char *hostname, _SOCK_ADDR *addr) {
  (void)hostname;
  struct session *s = session_of(ctx);
  if (s == NULL) return SMFIS_TEMPFAIL;
  if (addr != NULL && addr->sa_family == AF_INET)
    set_client_addr(s, AF_INET, &((struct sockaddr_in *)(void *)addr)->sin_addr);
  else if (addr != NULL && addr->sa_family == AF_INET6)
    set_client_addr(s, AF_INET6, &((struct sockaddr_in6 *)(void *)addr)->sin6_addr);
  else
    set_client_addr(s, AF_UNSPEC, NULL);
  reset_message(s);
  return next(s, SMFIP_NR_CONN);
}

/* ----- decisions: the same for both transports ----------------------------------------- */

void set_client_addr(struct session *s, int family, const void *addr) {
  s->client_ip[0] = '\0';
  memset(&s->client_addr, 0, sizeof s->client_addr);
  if (family == AF_INET) {
    s->client_addr.family = OG_IP_V4;
    memcpy(s->client_addr.bytes, addr, 4);
  } else if (family == AF_INET6) {
    s->client_addr.family = OG_IP_V6;
    memcpy(s->client_addr.bytes, addr, 16);
  } else {
    return;
  }
  inet_ntop(family, addr, s->client_ip, sizeof s->client_ip);
}

/* MAIL FROM: starts message `s` with the envelope sender and the macros of this step (NULL when
 * the MTA did not send one) and decides it. SMFIS_CONTINUE, SMFIS_TEMPFAIL, or SMFIS_REJECT
 * with *refusal set to the reason whose exact reply the MTA must give. */
sfsistat mail_decision(struct session *s, const char *from, const char *auth, const char *cert,
                       const char *client_addr, const char *qid, og_reason *refusal) {
  reset_message(s);
  if (from == NULL) from = "";
  size_t len = strlen(from);
  if (len >= sizeof s->mail_from) len = sizeof s->mail_from - 1; /* over-long: 5.1.7 anyway */
  memcpy(s->mail_from, from, len);
  s->mail_from_len = len;
  copy_macro(s->auth_user, sizeof s->auth_user, auth);
  copy_macro(s->cert_domain, sizeof s->cert_domain, cert);
  /* {client_addr} at MAIL FROM follows XCLIENT; the connect address is the fallback. */
  copy_macro(s->message_ip, sizeof s->message_ip, client_addr);
  normalise_ip(s->message_ip);

  og_message m = message_of(s);
  og_decision d;
  og_result r = og_engine_check(engine, now_unix(), &m, &d);
  if (r == OG_RESULT_INVALID_IP || r == OG_RESULT_INVALID_UTF8) {
    /* An address or macro we cannot read: decide without it rather than fail the mail. */
    logf_("ignoring unreadable client data (%s): ip=%s auth=%s", og_result_message(r),
          s->message_ip, s->auth_user);
    s->message_ip[0] = s->cert_domain[0] = '\0';
    memset(&s->client_addr, 0, sizeof s->client_addr);
    if (r == OG_RESULT_INVALID_UTF8) s->auth_user[0] = '\0';
    m = message_of(s);
    r = og_engine_check(engine, now_unix(), &m, &d);
  }
  if (r != OG_RESULT_OK) {
    logf_("check failed: %s", og_result_message(r));
    return SMFIS_TEMPFAIL;
  }
  char id[256];
  tenant_name(d.tenant, id, sizeof id);
  if (!d.accepted) {
    logf_("reject from=%.*s tenant=%s ip=%s auth=%s class=%s: %s%s%s", (int)s->mail_from_len,
          s->mail_from, id, s->message_ip[0] ? s->message_ip : s->client_ip[0] ? s->client_ip : "-",
          s->auth_user[0] ? s->auth_user : "-",
          d.sender_class ? og_sender_class_name(d.sender_class) : "-", og_reason_reply(d.reason),
          qid ? " queue_id=" : "", qid ? qid : "");
    *refusal = d.reason;
    return SMFIS_REJECT;
  }
  if (d.monitored != OG_REASON_NONE)
    logf_("monitor: would reject from=%.*s tenant=%s: %s", (int)s->mail_from_len, s->mail_from, id,
          og_reason_reply(d.monitored));
  s->in_message = true;
  return SMFIS_CONTINUE;
}

/* A recipient of the current message. */
void note_recipient(struct session *s) {
  if (s->recipients < UINT32_MAX) s->recipients++;
}

static sfsistat on_envfrom(SMFICTX *ctx, char **argv) {
  struct session *s = session_of(ctx);
  if (s == NULL) return SMFIS_TEMPFAIL;
  og_reason why = OG_REASON_NONE;
  sfsistat st = mail_decision(s, argv ? argv[0] : NULL, smfi_getsymval(ctx, "{auth_authen}"),
                              cert_name(smfi_getsymval(ctx, "{verify}"),
                                        smfi_getsymval(ctx, "{cn_subject}"),
                                        smfi_getsymval(ctx, "{cert_subject}")),
                              smfi_getsymval(ctx, "{client_addr}"), smfi_getsymval(ctx, "i"), &why);
  if (st == SMFIS_REJECT) {
    char smtp[8];
    snprintf(smtp, sizeof smtp, "%u", og_reason_smtp_code(why));
    if (smfi_setreply(ctx, smtp, (char *)og_reason_enhanced_code(why),
                      (char *)og_reason_text(why)) != MI_SUCCESS)
      logf_("smfi_setreply failed");
  }
  return st;
}

static sfsistat on_envrcpt(SMFICTX *ctx, char **argv) {
  (void)argv;
  struct session *s = smfi_getpriv(ctx);
  if (s != NULL) note_recipient(s);
  return next(s, SMFIP_NR_RCPT);
}

static bool value_is(const char *value, const char *want) {
  while (*value == ' ' || *value == '\t') value++;
  size_t n = strlen(want);
  if (strncasecmp(value, want, n) != 0) return false;
  for (value += n; *value; value++)
    if (*value != ' ' && *value != '\t' && *value != '\r' && *value != '\n') return false;
  return true;
}

/* A header of the current message: the content filter's verdict. */
void note_header(struct session *s, const char *name, const char *value) {
  if (name == NULL || value == NULL) return;
  if (strcasecmp(name, "X-Spam-Flag") == 0 && value_is(value, "yes")) {
    s->verdict = OG_VERDICT_SPAM;
  } else if (s->verdict != OG_VERDICT_SPAM &&
             ((strcasecmp(name, "X-Bulk") == 0 && value_is(value, "yes")) ||
              (strcasecmp(name, "Precedence") == 0 && value_is(value, "bulk")))) {
    s->verdict = OG_VERDICT_BULK;
  }
}

/* End of message: counts an accepted message with its verdict. */
void end_message(struct session *s) {
  if (!s->in_message) return;
  og_message m = message_of(s);
  og_event ev[OG_EVENTS_MAX];
  size_t n = 0;
  og_result r = og_engine_record(engine, now_unix(), &m, s->verdict, ev, OG_EVENTS_MAX, &n);
  if (r != OG_RESULT_OK)
    logf_("record failed for from=%.*s: %s", (int)s->mail_from_len, s->mail_from,
          og_result_message(r));
  else
    log_events("record", ev, n);
  reset_message(s);
}

static sfsistat on_header(SMFICTX *ctx, char *name, char *value) {
  struct session *s = smfi_getpriv(ctx);
  if (s != NULL) note_header(s, name, value);
  return next(s, SMFIP_NR_HDR);
}

static sfsistat on_eom(SMFICTX *ctx) {
  struct session *s = smfi_getpriv(ctx);
  if (s != NULL) end_message(s);
  return SMFIS_CONTINUE;
}

static sfsistat on_abort(SMFICTX *ctx) {
  struct session *s = smfi_getpriv(ctx);
  if (s != NULL) reset_message(s);
  return SMFIS_CONTINUE;
}

static sfsistat on_close(SMFICTX *ctx) {
  struct session *s = smfi_getpriv(ctx);
  if (s != NULL) {
    smfi_setpriv(ctx, NULL);
    free(s);
    atomic_fetch_sub(&sessions, 1);
  }
  return SMFIS_CONTINUE;
}

static struct smfiDesc filter = {
    .xxfi_name = "outguard",
    .xxfi_version = SMFI_VERSION,
    .xxfi_flags = SMFIF_SETSYMLIST,
    .xxfi_connect = on_connect,
    .xxfi_envfrom = on_envfrom,
    .xxfi_envrcpt = on_envrcpt,
    .xxfi_header = on_header,
    .xxfi_eom = on_eom,
    .xxfi_abort = on_abort,
    .xxfi_close = on_close,
    .xxfi_negotiate = on_negotiate,
};

/* ----- admin socket ---------------------------------------------------------------------- */

static void reply(int fd, const char *fmt, ...) {
  char buf[8192];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, sizeof buf - 1, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  if ((size_t)n > sizeof buf - 2) n = (int)sizeof buf - 2;
  buf[n++] = '\n';
  for (int off = 0; off < n;) {
    ssize_t w = write(fd, buf + off, (size_t)(n - off));
    if (w <= 0) return;
    off += (int)w;
  }
}

static void admin_command(int fd, char *line) {
  char *save = NULL;
  char *cmd = strtok_r(line, " \t\r\n", &save);
  char *arg = strtok_r(NULL, " \t\r\n", &save);
  char *arg2 = strtok_r(NULL, " \t\r\n", &save);
  og_event ev[OG_EVENTS_MAX];
  size_t n = 0;
  og_result r;
  if (cmd == NULL) return;
  if (strcmp(cmd, "release") == 0 && arg) {
    og_rule rule = OG_RULE_NONE;
    if (arg2 && strcmp(arg2, "tenant_threshold") == 0) rule = OG_RULE_TENANT_THRESHOLD;
    else if (arg2 && strcmp(arg2, "unregistered_domain") == 0) rule = OG_RULE_UNREGISTERED_DOMAIN;
    else if (arg2) {
      reply(fd, "error unknown rule %s", arg2);
      return;
    }
    r = og_engine_release(engine, arg, rule, now_unix(), ev, OG_EVENTS_MAX, &n);
    if (r != OG_RESULT_OK) { reply(fd, "error %s", og_result_message(r)); return; }
    log_events("admin release", ev, n);
    logf_("admin: release %s: %zu block(s) lifted", arg, n);
    { reply(fd, "ok released %s (%zu block(s) lifted)", arg, n); return; }
  }
  if ((strcmp(cmd, "lapsed") == 0 || strcmp(cmd, "active") == 0) && arg) {
    r = cmd[0] == 'l' ? og_engine_mark_lapsed(engine, arg, now_unix(), ev, OG_EVENTS_MAX, &n)
                      : og_engine_mark_active(engine, arg, now_unix(), ev, OG_EVENTS_MAX, &n);
    if (r != OG_RESULT_OK) { reply(fd, "error %s", og_result_message(r)); return; }
    log_events("admin", ev, n);
    { reply(fd, "ok %s %s", arg, cmd); return; }
  }
  if (strcmp(cmd, "status") == 0 && arg) {
    og_tenant_status st;
    r = og_engine_status(engine, arg, now_unix(), &st);
    if (r != OG_RESULT_OK) { reply(fd, "error %s", og_result_message(r)); return; }
    { reply(fd,
                 "ok tenant=%s licensed=%d lapsed=%d threshold_blocked=%d warned=%d "
                 "unregistered_blocked=%d total=%u suspicious=%u unregistered=%u limit=%u",
                 arg, st.licensed, st.lapsed, st.threshold.blocked, st.threshold.warned,
                 st.unregistered.blocked, st.counters.total, st.counters.suspicious,
                 st.counters.unregistered, st.counters.limit); return; }
  }
  if (strcmp(cmd, "restricted") == 0) {
    og_restriction rs[256];
    r = og_engine_restricted(engine, now_unix(), rs, 256, &n);
    if (r == OG_RESULT_BUFFER_TOO_SMALL) n = 0;
    else if (r != OG_RESULT_OK) { reply(fd, "error %s", og_result_message(r)); return; }
    for (size_t i = 0; i < n; i++) {
      char id[256];
      tenant_name(rs[i].tenant, id, sizeof id);
      if (rs[i].ends == OG_UNTIL_RELEASE)
        reply(fd, "%s %s since=%llu until=release%s", id, og_reason_enhanced_code(rs[i].reason),
              (unsigned long long)rs[i].since, rs[i].monitor ? " monitor" : "");
      else
        reply(fd, "%s %s since=%llu until=%llu%s", id, og_reason_enhanced_code(rs[i].reason),
              (unsigned long long)rs[i].since, (unsigned long long)rs[i].ends,
              rs[i].monitor ? " monitor" : "");
    }
    { reply(fd, r == OG_RESULT_OK ? "ok %zu restricted" : "error more than 256 restricted",
                 n); return; }
  }
  if (strcmp(cmd, "reload") == 0) {
    char msg[4400];
    r = reload_policy(msg, sizeof msg);
    { reply(fd, "%s %s", r == OG_RESULT_OK ? "ok" : "error", msg); return; }
  }
  if (strcmp(cmd, "snapshot") == 0) {
    if (state_path == NULL) { reply(fd, "error no state file given"); return; }
    r = og_engine_snapshot_file(engine, state_path);
    if (r != OG_RESULT_OK) { reply(fd, "error %s", og_result_message(r)); return; }
    { reply(fd, "ok saved %s", state_path); return; }
  }
  reply(fd, "error unknown command (release TENANT [RULE] | lapsed TENANT | active TENANT | "
            "status TENANT | restricted | reload | snapshot)");
}

static void *admin_loop(void *arg) {
  (void)arg;
  for (;;) {
    int fd = accept(admin_fd, NULL, NULL);
    if (fd < 0) {
      if (errno == EINTR) continue;
      if (atomic_load(&milter_done)) return NULL;
      continue;
    }
    char buf[4096];
    size_t have = 0;
    for (;;) {
      ssize_t r = read(fd, buf + have, sizeof buf - 1 - have);
      if (r <= 0) break;
      have += (size_t)r;
      buf[have] = '\0';
      char *nl;
      while ((nl = memchr(buf, '\n', have)) != NULL) {
        *nl = '\0';
        admin_command(fd, buf);
        size_t used = (size_t)(nl - buf) + 1;
        memmove(buf, nl + 1, have - used);
        have -= used;
        buf[have] = '\0';
      }
      if (have == sizeof buf - 1) have = 0; /* an over-long line: dropped */
    }
    if (have > 0) admin_command(fd, buf); /* last command without newline */
    close(fd);
  }
}

static int open_admin(const char *path) {
  struct sockaddr_un sa;
  memset(&sa, 0, sizeof sa);
  sa.sun_family = AF_UNIX;
  if (strlen(path) >= sizeof sa.sun_path) return -1;
  strcpy(sa.sun_path, path);
  int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  unlink(path);
  mode_t old = umask(077); /* operator commands: owner only */
  int ok = bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0 && listen(fd, 16) == 0;
  umask(old);
  if (!ok) {
    close(fd);
    return -1;
  }
  return fd;
}

/* ----- main ----------------------------------------------------------------------------- */

static int events_fd = -1, events_wake = -1, events_timeout;

static void *milter_thread(void *arg) {
  (void)arg;
  int r = MI_SUCCESS;
  if (events_fd >= 0)
    events_run(events_fd, events_wake, events_timeout);
  else
    r = smfi_main();
  logf_("milter loop ended (%s)", r == MI_SUCCESS ? "ok" : "failure");
  atomic_store(&milter_done, true);
  pthread_kill(main_thread, SIGUSR2);
  return NULL;
}

static void usage(void) {
  fprintf(stderr,
          "usage: outguard-milter [-E] [-a ADMIN_SOCKET] [-T SECONDS] POLICY SOCKET [STATEFILE]\n");
  exit(2);
}

int main(int argc, char **argv) {
  int timeout = 7210, opt;
  bool events = false;
  while ((opt = getopt(argc, argv, "Ea:T:h")) != -1) {
    switch (opt) {
      case 'E': events = true; break;
      case 'a': admin_path = optarg; break;
      case 'T': timeout = atoi(optarg); break;
      default: usage();
    }
  }
  if (argc - optind < 2 || argc - optind > 3) usage();
  policy_path = argv[optind];
  const char *conn = argv[optind + 1];
  state_path = argc - optind == 3 ? argv[optind + 2] : NULL;

  /* Block the signals we wait for before any thread exists, so every thread inherits it. */
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGHUP);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGUSR1);
  sigaddset(&set, SIGUSR2);
  pthread_sigmask(SIG_BLOCK, &set, NULL);
  signal(SIGPIPE, SIG_IGN);
  main_thread = pthread_self();

  char err[8192] = "";
  og_result r = og_engine_new_from_file(policy_path, &engine, err, sizeof err);
  if (r != OG_RESULT_OK) {
    logf_("cannot load policy: %s", err);
    return 1;
  }
  logf_("outguard %s, policy %s", og_version(), policy_path);
  if (state_path != NULL && access(state_path, F_OK) == 0) {
    og_restore_report rep;
    r = og_engine_restore_file(engine, state_path, &rep);
    if (r == OG_RESULT_OK)
      logf_("state restored from %s: %u tenant(s), %u unknown", state_path, rep.restored, rep.unknown);
    else
      logf_("state file %s NOT restored (%s); starting clean", state_path, og_result_message(r));
  }

  if (events) {
    events_fd = events_listen(conn);
    events_wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    events_timeout = timeout;
    if (events_fd < 0 || events_wake < 0) {
      logf_("cannot listen on %s: %s", conn, strerror(errno));
      return 1;
    }
  } else {
    if (smfi_register(filter) != MI_SUCCESS || smfi_setconn((char *)conn) != MI_SUCCESS ||
        smfi_settimeout(timeout) != MI_SUCCESS) {
      logf_("cannot register the milter on %s", conn);
      return 1;
    }
    if (strncmp(conn, "unix:", 5) == 0 || strncmp(conn, "local:", 6) == 0)
      smfi_opensocket(true); /* remove a stale socket */
  }

  /* libmilter starts its threads with default attributes; our callbacks need little stack.
   * Small stacks stay in glibc's stack cache, so a thread per SMTP session costs no mmap. The
   * admin thread, which may reload a large policy, keeps the usual 8 MiB. */
  pthread_attr_t small, big;
  pthread_attr_init(&small);
  pthread_attr_setstacksize(&small, 256 * 1024);
  pthread_setattr_default_np(&small);
  pthread_attr_init(&big);
  pthread_attr_setstacksize(&big, 8 * 1024 * 1024);

  pthread_t admin_tid, milter_tid;
  if (admin_path != NULL) {
    admin_fd = open_admin(admin_path);
    if (admin_fd < 0) {
      logf_("cannot listen on admin socket %s: %s", admin_path, strerror(errno));
      return 1;
    }
    pthread_create(&admin_tid, &big, admin_loop, NULL);
    pthread_detach(admin_tid);
  }
  if (pthread_create(&milter_tid, NULL, milter_thread, NULL) != 0) {
    logf_("cannot start the milter thread");
    return 1;
  }
  logf_("listening on %s%s%s%s", conn, events ? " (event loop)" : "",
        admin_path ? ", admin on " : "", admin_path ? admin_path : "");

  bool stop = false;
  while (!stop) {
    struct timespec tick = {60, 0};
    int sig = sigtimedwait(&set, NULL, &tick);
    if (sig < 0) {
      if (errno == EAGAIN) { /* once a minute: expire timed blocks of idle tenants */
        og_event ev[OG_EVENTS_MAX];
        size_t n = 0;
        if (og_engine_expire(engine, now_unix(), ev, OG_EVENTS_MAX, &n) == OG_RESULT_OK)
          log_events("expire", ev, n);
      }
      continue;
    }
    char msg[4400];
    switch (sig) {
      case SIGHUP: reload_policy(msg, sizeof msg); break;
      case SIGUSR1: save_state("SIGUSR1"); break;
      case SIGUSR2: stop = atomic_load(&milter_done); break;
      default:
        logf_("signal %d: stopping", sig);
        stop = true;
    }
  }
  if (!atomic_load(&milter_done)) {
    if (events_wake >= 0) {
      uint64_t one = 1;
      if (write(events_wake, &one, sizeof one) != sizeof one) logf_("cannot wake the event loop");
    } else {
      smfi_stop();
    }
  }
  pthread_join(milter_tid, NULL);
  save_state("exit");
  if (admin_path != NULL) unlink(admin_path);
  /* Free the engine only when no session can still use it. */
  for (int i = 0; i < 50 && atomic_load(&sessions) > 0; i++) usleep(20000);
  if (atomic_load(&sessions) == 0) og_engine_free(engine);
  logf_("stopped");
  return 0;
}
