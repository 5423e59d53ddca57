/*
 * null_milter: a measuring stick for ffi-c/bench/postfix_throughput.sh, not a product.
 *
 * A single-threaded epoll server that speaks just enough of the milter protocol (version 6)
 * to sit where outguard-milter sits, negotiating the same steps and macros, and decides
 * nothing: every MAIL FROM and end of message is answered "continue". Run through the same
 * benchmark (MILTER=ffi-c/bench/null_milter), it shows what Postfix's side of the milter
 * protocol costs by itself, and so how much of outguard-milter's cost is libmilter's
 * (a thread hand-off, a poll and two reads per command) rather than Postfix's.
 *
 *   null_milter POLICY unix:/path        (POLICY is ignored; same arguments as the milter)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <libmilter/mfapi.h>

#define MAX_CONN 4096
#define BUF 65536

struct conn {
  int fd;
  size_t len;
  unsigned char buf[BUF];
};

static struct conn *conns[MAX_CONN];

static void put32(unsigned char *p, uint32_t v) {
  v = htonl(v);
  memcpy(p, &v, 4);
}

static uint32_t get32(const unsigned char *p) {
  uint32_t v;
  memcpy(&v, p, 4);
  return ntohl(v);
}

static int send_all(int fd, const unsigned char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return -1;
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

static int reply(int fd, char cmd) {
  unsigned char r[5];
  put32(r, 1);
  r[4] = (unsigned char)cmd;
  return send_all(fd, r, 5);
}

/* The same steps and macros outguard-milter negotiates with Postfix. */
static int negotiate(int fd, const unsigned char *data, uint32_t len) {
  if (len < 12) return -1;
  uint32_t offered = get32(data + 8);
  uint32_t want = SMFIP_NOHELO | SMFIP_NOEOH | SMFIP_NOBODY | SMFIP_NODATA | SMFIP_NOUNKNOWN |
                  SMFIP_NR_CONN | SMFIP_NR_RCPT | SMFIP_NR_HDR | SMFIP_NOCONNECT;
  unsigned char out[256];
  size_t n = 5;
  put32(out + n, 6);
  put32(out + n + 4, SMFIF_SETSYMLIST);
  put32(out + n + 8, offered & want);
  n += 12;
  static const struct {
    uint32_t stage;
    const char *macros;
  } lists[] = {{SMFIM_ENVFROM, "{auth_authen} {client_addr} {cert_subject} i"},
               {SMFIM_ENVRCPT, "i"},
               {SMFIM_EOM, "i"}};
  for (size_t i = 0; i < sizeof lists / sizeof lists[0]; i++) {
    size_t m = strlen(lists[i].macros) + 1;
    put32(out + n, lists[i].stage);
    memcpy(out + n + 4, lists[i].macros, m);
    n += 4 + m;
  }
  put32(out, (uint32_t)(n - 4));
  out[4] = SMFIC_OPTNEG;
  return send_all(fd, out, n);
}

/* Handles the complete packets in the buffer; -1 closes the connection. */
static int handle(struct conn *c) {
  size_t off = 0;
  while (c->len - off >= 5) {
    uint32_t len = get32(c->buf + off);
    if (len == 0 || len > BUF - 4) return -1;
    if (c->len - off < 4 + (size_t)len) break;
    unsigned char cmd = c->buf[off + 4];
    const unsigned char *data = c->buf + off + 5;
    int r = 0;
    switch (cmd) {
      case SMFIC_OPTNEG: r = negotiate(c->fd, data, len - 1); break;
      case SMFIC_MAIL:
      case SMFIC_BODYEOB:
      case SMFIC_DATA:
      case SMFIC_EOH:
      case SMFIC_HELO: r = reply(c->fd, SMFIR_CONTINUE); break;
      case SMFIC_QUIT: return -1;
      default: break; /* macros, connect, RCPT, headers: no reply negotiated; abort, QUIT_NC */
    }
    if (r < 0) return -1;
    off += 4 + (size_t)len;
  }
  memmove(c->buf, c->buf + off, c->len - off);
  c->len -= off;
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 3 || strncmp(argv[2], "unix:", 5) != 0) {
    fprintf(stderr, "usage: null_milter POLICY unix:/path\n");
    return 2;
  }
  const char *path = argv[2] + 5;
  int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
  unlink(path);
  if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(lfd, 256) != 0) {
    perror("null_milter: listen");
    return 1;
  }
  chmod(path, 0666);
  int ep = epoll_create1(EPOLL_CLOEXEC);
  struct epoll_event ev = {.events = EPOLLIN, .data.fd = lfd};
  epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
  struct epoll_event evs[64];
  for (;;) {
    int n = epoll_wait(ep, evs, 64, -1);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return 1;
    for (int i = 0; i < n; i++) {
      int fd = evs[i].data.fd;
      if (fd == lfd) {
        int cfd;
        while ((cfd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
          if (cfd >= MAX_CONN) {
            close(cfd);
            continue;
          }
          conns[cfd] = calloc(1, sizeof(struct conn));
          conns[cfd]->fd = cfd;
          struct epoll_event ce = {.events = EPOLLIN, .data.fd = cfd};
          epoll_ctl(ep, EPOLL_CTL_ADD, cfd, &ce);
        }
        continue;
      }
      struct conn *c = conns[fd];
      ssize_t r = read(fd, c->buf + c->len, BUF - c->len);
      if (r > 0) {
        c->len += (size_t)r;
        if (handle(c) == 0) continue;
      } else if (r < 0 && (errno == EAGAIN || errno == EINTR)) {
        continue;
      }
      epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
      close(fd);
      free(c);
      conns[fd] = NULL;
    }
  }
}
