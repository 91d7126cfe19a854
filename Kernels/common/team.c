/* A persistent thread team: workers started once, woken per call by a generation counter they
 * spin on (then sleep on a condition variable after about a millisecond idle), the caller
 * working as thread 0. The fork/join of a warm libomp region costs 0.6–1.6 µs here; a GEMV of
 * 768×768 takes 16 µs. One job at a time: a second caller, or a call from inside a job, runs
 * its work alone on its own thread (nt = 1), so concurrent callers never oversubscribe. */
#include "internal.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#if CONDENSE_X86
#include <immintrin.h>
#define CPU_RELAX() _mm_pause()
#elif defined(__aarch64__)
#define CPU_RELAX() __asm__ volatile("yield")
#else
#define CPU_RELAX() ((void)0)
#endif

#define TEAM_SPIN 20000   /* polls before sleeping (about 1 ms of pause instructions) */

/* Waiting on other team members: spin, then yield the core, which matters when more threads are
 * asked for than there are cores (a spinning waiter would hold the core the awaited one needs). */
static _Atomic int oversubscribed;   /* the last job asked for more threads than processors */

static inline void relax(int *spins) {
    if (++*spins < 4096 && !atomic_load_explicit(&oversubscribed, memory_order_relaxed)) CPU_RELAX();
    else sched_yield();
}

static struct {
    pthread_once_t once;
    pthread_mutex_t busy;       /* held by the caller whose job runs */
    pthread_mutex_t grow;       /* starting workers */
    int started;                /* workers running */
    _Atomic unsigned gen;       /* bumped per job */
    _Atomic int pending;        /* participating workers not yet done */
    condense_team_fn fn;
    void *ctx;
    int nt;
    pthread_mutex_t sleep_mu;
    pthread_cond_t sleep_cv;
    _Atomic int sleepers;
    _Atomic unsigned quiesce;   /* bumped to send spinning workers to sleep now */
    _Atomic int bar_count;
    _Atomic unsigned bar_gen;
} T = {.once = PTHREAD_ONCE_INIT};

static _Thread_local int in_job;

static int procs;

static void team_init(void) {
    procs = condense_num_procs();
    pthread_mutex_init(&T.busy, NULL);
    pthread_mutex_init(&T.grow, NULL);
    pthread_mutex_init(&T.sleep_mu, NULL);
    pthread_cond_init(&T.sleep_cv, NULL);
}

/* A worker's index and the generation current when it was started (the caller holds `busy`, so
 * no job is in flight): a worker that first runs after the next job was posted still sees it. */
typedef struct { int idx; unsigned gen; } worker_arg;

static void *worker(void *arg) {
    const worker_arg a = *(const worker_arg *)arg;
    free(arg);
    const int idx = a.idx;
    unsigned seen = a.gen;
    for (;;) {
        unsigned g;
        int spins = 0;
        const unsigned q = atomic_load_explicit(&T.quiesce, memory_order_relaxed);
        while ((g = atomic_load_explicit(&T.gen, memory_order_acquire)) == seen) {
            if (++spins < TEAM_SPIN && atomic_load_explicit(&T.quiesce, memory_order_relaxed) == q) {
                if (atomic_load_explicit(&oversubscribed, memory_order_relaxed)) sched_yield();
                else CPU_RELAX();
                continue;
            }
            pthread_mutex_lock(&T.sleep_mu);
            atomic_fetch_add(&T.sleepers, 1);
            while (atomic_load(&T.gen) == seen) pthread_cond_wait(&T.sleep_cv, &T.sleep_mu);
            atomic_fetch_sub(&T.sleepers, 1);
            pthread_mutex_unlock(&T.sleep_mu);
            spins = 0;
        }
        seen = g;
        if (idx < T.nt) {
            in_job = 1;
            T.fn(T.ctx, idx, T.nt);
            in_job = 0;
            atomic_fetch_sub_explicit(&T.pending, 1, memory_order_release);
        }
    }
    return NULL;
}

/* Starts workers 1…nt−1; returns how many threads can take part (1 if none could start). */
static int ensure_workers(int nt) {
    pthread_mutex_lock(&T.grow);
    while (T.started + 1 < nt) {
        pthread_t th;
        pthread_attr_t at;
        pthread_attr_init(&at);
        pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
        worker_arg *wa = malloc(sizeof *wa);
        if (!wa) { pthread_attr_destroy(&at); break; }
        wa->idx = T.started + 1;
        wa->gen = atomic_load(&T.gen);
        const int rc = pthread_create(&th, &at, worker, wa);
        pthread_attr_destroy(&at);
        if (rc != 0) { free(wa); break; }
        T.started++;
    }
    const int have = T.started + 1;
    pthread_mutex_unlock(&T.grow);
    return have < nt ? have : nt;
}

void condense_team_run(int nt, condense_team_fn fn, void *ctx) {
    if (nt > CONDENSE_MAX_THREADS) nt = CONDENSE_MAX_THREADS;
    pthread_once(&T.once, team_init);
    if (nt <= 1 || in_job || pthread_mutex_trylock(&T.busy) != 0) {
        fn(ctx, 0, 1);
        return;
    }
    nt = ensure_workers(nt);
    if (nt <= 1) {
        pthread_mutex_unlock(&T.busy);
        fn(ctx, 0, 1);
        return;
    }
    atomic_store_explicit(&oversubscribed, nt > procs, memory_order_relaxed);
    T.fn = fn;
    T.ctx = ctx;
    T.nt = nt;
    atomic_store(&T.bar_count, 0);
    atomic_store(&T.pending, nt - 1);
    atomic_fetch_add_explicit(&T.gen, 1, memory_order_seq_cst);
    if (atomic_load(&T.sleepers) > 0) {
        pthread_mutex_lock(&T.sleep_mu);
        pthread_cond_broadcast(&T.sleep_cv);
        pthread_mutex_unlock(&T.sleep_mu);
    }
    in_job = 1;
    fn(ctx, 0, nt);
    in_job = 0;
    int spins = 0;
    while (atomic_load_explicit(&T.pending, memory_order_acquire) > 0) relax(&spins);
    pthread_mutex_unlock(&T.busy);
}

void condense_team_quiesce(void) { atomic_fetch_add(&T.quiesce, 1); }

void condense_team_barrier(int nt) {
    if (nt <= 1) return;
    const unsigned g = atomic_load_explicit(&T.bar_gen, memory_order_acquire);
    if (atomic_fetch_add_explicit(&T.bar_count, 1, memory_order_acq_rel) == nt - 1) {
        atomic_store_explicit(&T.bar_count, 0, memory_order_relaxed);
        atomic_fetch_add_explicit(&T.bar_gen, 1, memory_order_release);
    } else {
        int spins = 0;
        while (atomic_load_explicit(&T.bar_gen, memory_order_acquire) == g) relax(&spins);
    }
}

/* ---- A self-check the tests call (public: condense_team_check) ----------------------------- */

typedef struct {
    int rounds, nested;
    _Atomic int arrived, errors, ran;
} check_ctx;

static void nested_job(void *ctx, int t, int nt) {
    check_ctx *c = ctx;
    if (t != 0 || nt != 1) atomic_fetch_add(&c->errors, 1);   /* a job inside a job runs alone */
}

static void check_job(void *ctx, int t, int nt) {
    check_ctx *c = ctx;
    atomic_fetch_add(&c->ran, 1);
    for (int r = 0; r < c->rounds; r++) {
        atomic_fetch_add(&c->arrived, 1);
        condense_team_barrier(nt);
        /* Between the two barriers every thread of the job has arrived r + 1 times. */
        if (atomic_load(&c->arrived) != nt * (r + 1)) atomic_fetch_add(&c->errors, 1);
        condense_team_barrier(nt);
    }
    if (c->nested && t == 0) condense_team_run(nt, nested_job, c);
}

int condense_team_check(int nt, int rounds) {
    check_ctx c = {.rounds = rounds, .nested = 1};
    condense_team_run(nt, check_job, &c);
    const int ran = atomic_load(&c.ran);
    /* Either the whole team ran it, or (team busy) the caller alone. */
    if (ran != (nt < 1 ? 1 : nt) && ran != 1) return -1;
    return atomic_load(&c.errors);
}

void condense_parallel(int nt, void (*fn)(void *ctx, int t, int nt), void *ctx) {
    if (nt < 1) nt = condense_get_num_threads();
    condense_team_run(nt, fn, ctx);
}
