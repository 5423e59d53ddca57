/* og_engine_check (and record, evaluate, snapshot) allocate nothing per call.
 * The test replaces malloc and friends with counting wrappers around glibc's own
 * (__libc_malloc, ...), so it is linked without sanitizers and not run under valgrind,
 * which replace the allocator themselves. glibc only. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdatomic.h>

#include "common.h"

extern void *__libc_malloc(size_t size);
extern void *__libc_calloc(size_t n, size_t size);
extern void *__libc_realloc(void *p, size_t size);
extern void *__libc_memalign(size_t align, size_t size);
extern void __libc_free(void *p);

static atomic_int counting;
static atomic_long allocations;

static void count(void) {
  if (atomic_load(&counting)) atomic_fetch_add(&allocations, 1);
}
void *malloc(size_t size) {
  count();
  return __libc_malloc(size);
}
void *calloc(size_t n, size_t size) {
  count();
  return __libc_calloc(n, size);
}
void *realloc(void *p, size_t size) {
  count();
  return __libc_realloc(p, size);
}
void free(void *p) { __libc_free(p); }
int posix_memalign(void **out, size_t align, size_t size) {
  count();
  void *p = __libc_memalign(align, size);
  if (p == NULL) return ENOMEM;
  *out = p;
  return 0;
}
void *aligned_alloc(size_t align, size_t size) {
  count();
  return __libc_memalign(align, size);
}
void *memalign(size_t align, size_t size) {
  count();
  return __libc_memalign(align, size);
}

int main(void) {
  og_engine *e = new_engine(POLICY);
  og_message msgs[7];
  msgs[0] = msg_for("contoso", "alice@contoso.com");
  msgs[1] = msg_for("contoso", "x@unregistered.example");
  msgs[2] = msg_for(NULL, "alice@contoso.com");
  msgs[2].client_ip = "203.0.113.5";
  msgs[3] = msg_for("contoso", "alice@contoso.com");
  msgs[3].client_ip = "2001:db8:bad::1";
  msgs[4] = msg_for(NULL, "not an address");
  msgs[5] = msg_for(NULL, "bob@contoso.com");
  msgs[5].auth_user = "bob@contoso.com";
  msgs[6] = msg_for(NULL, "alice@contoso.com"); /* 203.0.113.5, binary */
  msgs[6].client_addr.family = OG_IP_V4;
  memcpy(msgs[6].client_addr.bytes, (const uint8_t[]){203, 0, 113, 5}, 4);
  og_decision d;
  static uint8_t snap[1 << 16];
  size_t n;
  /* warm up: first use of the static text table allocates once */
  OK(og_engine_check(e, NOW, &msgs[0], &d));
  CHECK(og_reason_reply(OG_REASON_UNREGISTERED_DOMAIN) != NULL);

  atomic_store(&counting, 1);
  long decisions = 0;
  for (int i = 0; i < 100000; i++) {
    OK(og_engine_check(e, NOW, &msgs[i % 7], &d));
    decisions++;
  }
  long after_check = atomic_load(&allocations);
  og_event ev[OG_EVENTS_MAX];
  for (int i = 0; i < 1000; i++) {
    OK(og_engine_evaluate(e, NOW + (uint64_t)i, &msgs[0], OG_VERDICT_CLEAN, &d, ev, OG_EVENTS_MAX, &n));
    OK(og_engine_record(e, NOW + (uint64_t)i, &msgs[5], OG_VERDICT_SPAM, ev, OG_EVENTS_MAX, &n));
  }
  OK(og_engine_snapshot(e, snap, sizeof snap, &n));
  CHECK(og_reason_reply(OG_REASON_UNREGISTERED_DOMAIN) != NULL);
  atomic_store(&counting, 0);
  long total = atomic_load(&allocations);

  if (after_check != 0 || total != 0) {
    fprintf(stderr, "allocations: %ld during %ld checks, %ld in all\n", after_check, decisions, total);
  }
  CHECK(after_check == 0);
  CHECK(total == 0);
  og_engine_free(e);
  printf("test_noalloc: %ld checks, 2000 records, 1 snapshot, 0 allocations: %d checks passed\n",
         decisions, (int)og_test_checks);
  return 0;
}
