/*
 * What outguard-milter's two transports share: the per-connection state and the decisions.
 * outguard-milter.c holds the decisions and the libmilter transport; events.c the
 * libmilter-free one (-E).
 */
#ifndef OUTGUARD_MILTER_H
#define OUTGUARD_MILTER_H

#include <arpa/inet.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libmilter/mfapi.h>

#include "outguard.h"

#define MAX_ADDR 1100 /* longest envelope sender kept (the core accepts 1024 bytes) */

struct session {
  unsigned long noreply;            /* SMFIP_NR_* steps the MTA agreed not to wait for */
  char client_ip[INET6_ADDRSTRLEN]; /* from the connect step, for the log */
  og_ip client_addr;                /* the same, binary, for og_message */
  /* the current message */
  bool in_message;
  char mail_from[MAX_ADDR];
  size_t mail_from_len;
  char auth_user[256];
  char cert_domain[256];
  char message_ip[INET6_ADDRSTRLEN]; /* {client_addr} at MAIL FROM, when the MTA sent it */
  uint32_t recipients;
  og_verdict verdict;
};

/* The protocol steps the milter asks the MTA to skip (SMFIP_NO*) and not to wait for
 * (SMFIP_NR_*). */
extern const unsigned long WANT_NO, WANT_NR;
struct macro_list {
  int stage;          /* SMFIM_* */
  const char *macros; /* space-separated names */
};
/* The macros asked for, MAIL FROM's first (the MTA accepting it decides the rest). */
extern const struct macro_list MACRO_LISTS[3];

void logf_(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void reset_message(struct session *s);
/* The connect step's client address (AF_INET / AF_INET6 and the address bytes). */
void set_client_addr(struct session *s, int family, const void *addr);
const char *cert_name(const char *verify, const char *cn_subject, const char *cert_subject);
sfsistat mail_decision(struct session *s, const char *from, const char *auth, const char *cert,
                       const char *client_addr, const char *qid, og_reason *refusal);
void note_recipient(struct session *s);
void note_header(struct session *s, const char *name, const char *value);
void end_message(struct session *s);

/* events.c: listens on CONN (libmilter syntax: unix:/path, local:/path, inet:PORT[@HOST],
 * inet6:PORT[@HOST]) and returns the socket, or -1 with errno set. */
int events_listen(const char *conn);
/* Serves MTA connections on `listen_fd` in this thread until `wake_fd` (an eventfd) becomes
 * readable; connections idle for `timeout` seconds are closed. */
void events_run(int listen_fd, int wake_fd, int timeout);

#endif
