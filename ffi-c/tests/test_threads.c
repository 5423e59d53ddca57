/* One engine handle, many threads: 8 threads x 100 000 decisions, exact counts afterwards.
 * Threads alternate between og_engine_evaluate (write lock) and og_engine_check followed by
 * og_engine_record (read lock, then write lock), so readers and writers contend. Every tenth
 * message of a thread comes from an unregistered domain. The iteration count can be lowered
 * with OG_THREAD_ITERS (valgrind runs use it; the sanitizer run uses the full count). */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdatomic.h>

#include "common.h"

#define THREADS 8

static const char THREAD_POLICY[] =
    "[rules.tenant_threshold]\nmin_messages = 100\n"
    "[rules.unregistered_domain]\nlimit = 1000000000\n"
    "[[tenants]]\nid = \"contoso\"\ndomains = [\"contoso.com\"]\n"
    "connectors = [ { name = \"hq\", ranges = [\"203.0.113.0/24\"] } ]\n";

static og_engine *engine;
static long iters = 100000;
static atomic_long accepted;
static atomic_long events;

static void on_event(void *userdata, const og_event *ev) {
  (void)userdata;
  (void)ev;
  atomic_fetch_add(&events, 1);
}

static void *worker(void *arg) {
  long id = (long)(intptr_t)arg;
  og_message good = msg_for(NULL, "alice@contoso.com");
  good.client_ip = "203.0.113.5"; /* IP connector: attribution by CIDR lookup */
  og_message bad = msg_for("contoso", "x@unregistered.example");
  og_decision d;
  for (long i = 0; i < iters; i++) {
    const og_message *m = (i % 10 == 0) ? &bad : &good;
    if (id % 2 == 0) {
      OK(og_engine_evaluate(engine, NOW, m, OG_VERDICT_CLEAN, &d, NULL, 0, NULL));
    } else {
      OK(og_engine_check(engine, NOW, m, &d));
      if (d.accepted) OK(og_engine_record(engine, NOW, m, OG_VERDICT_CLEAN, NULL, 0, NULL));
    }
    if (d.accepted) atomic_fetch_add(&accepted, 1);
  }
  return NULL;
}

int main(void) {
  const char *env = getenv("OG_THREAD_ITERS");
  if (env != NULL) iters = strtol(env, NULL, 10);
  CHECK(iters > 0);
  engine = new_engine(THREAD_POLICY);
  OK(og_engine_set_event_callback(engine, on_event, NULL));
  pthread_t t[THREADS];
  for (long i = 0; i < THREADS; i++)
    CHECK(pthread_create(&t[i], NULL, worker, (void *)(intptr_t)i) == 0);
  for (int i = 0; i < THREADS; i++) CHECK(pthread_join(t[i], NULL) == 0);

  long total = THREADS * iters;
  long unregistered = THREADS * ((iters + 9) / 10);
  og_tenant_status st;
  OK(og_engine_status(engine, "contoso", NOW, &st));
  CHECK(atomic_load(&accepted) == total);
  CHECK((long)st.counters.total == total);
  CHECK((long)st.counters.unregistered == unregistered);
  CHECK(st.counters.suspicious == 0);
  CHECK(atomic_load(&events) == 0);
  og_engine_free(engine);
  printf("test_threads: %d threads x %ld decisions, total=%u unregistered=%u: %d checks passed\n",
         THREADS, iters, st.counters.total, st.counters.unregistered, (int)og_test_checks);
  return 0;
}
