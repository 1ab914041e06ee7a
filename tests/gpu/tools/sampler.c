/*
 * sampler.c - a tiny LD_PRELOAD sampling CPU profiler for machines without gdb/perf/py-spy.
 *
 * Build: gcc -O2 -shared -fPIC -o libsampler.so sampler.c -ldl -lpthread
 * Use:   TF_SAMPLER_OUT=/tmp/prof LD_PRELOAD=$PWD/libsampler.so python3 model.py
 *   writes /tmp/prof.<pid>.txt    (self/inclusive time by library and function, threads, stacks)
 *          /tmp/prof.<pid>.folded (root;...;leaf count - input for flamegraph.pl)
 * Env: TF_SAMPLER_OUT     output prefix; when unset the library does nothing at all
 *      TF_SAMPLER_HZ      samples per CPU-second (default 997; the kernel tick, CONFIG_HZ, caps
 *                         it per busy CPU: compare "samples/Hz" with the CPU time in the report)
 *      TF_SAMPLER_DELAY_S ignore samples from the first N seconds (skip start-up), default 0
 *      TF_SAMPLER_SECONDS stop sampling N seconds after the delay (default: until exit)
 *      TF_SAMPLER_MAX     sample buffer size (default 200000; excess samples are counted as dropped)
 * How: setitimer(ITIMER_PROF) sends SIGPROF to the thread that is burning CPU (time spent in the
 * kernel shows up as the syscall wrapper, e.g. libc!ioctl); the handler stores backtrace() into a
 * preallocated array (no malloc, locks or stdio). The report is written at exit (destructor or
 * atexit) or at _exit (os._exit: multiprocessing/DataLoader workers); a process that is killed
 * (SIGTERM from Pool.terminate(), SIGKILL, a crash) writes nothing, nor does one with no samples.
 * Forked children re-arm the timer and write their own file. exec*() wrappers disarm the timer
 * first, because interval timers survive execve and SIGPROF's default action would kill.
 * Limits: names are dynamic (exported) symbols only; other functions show as lib+0xSTART, the
 * function's start from its unwind info (`addr2line -f -e /path/lib 0xSTART` may name it); C++
 * names stay mangled (pipe the report through c++filt); the stack ends at code without unwind
 * info; samples that land inside libgcc's unwinder (a C++ throw or Rust panic in flight) keep
 * only the leaf, because unwinding from there can crash.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <execinfo.h>
#include <link.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

#define MAXF 48                /* frames kept per sample (leaf first) */
#define SKIPMAX 8              /* handler frames searched for the interrupted pc */
typedef struct { _Atomic int owner; int tid, depth; char comm[16]; void *pc[MAXF]; } Sample;

static Sample *g_buf;
static long g_cap = 200000;
static atomic_long g_n, g_leaf;       /* g_n = next slot, may run past g_cap (= dropped) */
static atomic_int g_on, g_done;       /* timer armed / report written */
static int g_active, g_pid, g_root_pid, g_hz = 997;
static int64_t g_t0, g_begin, g_end;  /* CLOCK_MONOTONIC ns: load/fork, window start, end (0=none) */
static uintptr_t g_ulo, g_uhi;        /* text segment of libgcc_s, the unwinder */
static char g_out[4096];
static struct sigaction g_sa;
static void (*real_exit)(int);

static int64_t now_ns(void) {         /* async-signal-safe (vDSO) */
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}
static void arm(int on) {             /* a plain syscall: fine inside the handler too */
  long us = on ? 1000000 / g_hz : 0;
  struct itimerval it = {{us / 1000000, us % 1000000}, {us / 1000000, us % 1000000}};
  setitimer(ITIMER_PROF, &it, NULL);
}

/* SIGPROF handler: only atomics, backtrace() (libgcc_s already loaded), memcpy and syscalls. */
static void on_prof(int sig, siginfo_t *si, void *ucv) {
  (void)sig; (void)si;
  int saved = errno;
  if (!atomic_load_explicit(&g_on, memory_order_relaxed)) goto out;
  int64_t t = now_ns();
  if (g_end && t >= g_end) { atomic_store(&g_on, 0); arm(0); goto out; }
  if (t < g_begin) goto out;
  long i = atomic_fetch_add_explicit(&g_n, 1, memory_order_relaxed);
  if (i >= g_cap) goto out;
  void *bt[MAXF + SKIPMAX], *pc = (void *)((ucontext_t *)ucv)->uc_mcontext.gregs[REG_RIP];
  /* Inside the unwinder (a throw in flight) the CFI is briefly wrong and unwinding from there
     segfaults (seen in testing): keep only the leaf. */
  int n = (uintptr_t)pc - g_ulo < g_uhi - g_ulo ? 0 : backtrace(bt, MAXF + SKIPMAX), k = 0;
  /* bt[0] is in this handler, bt[1] is __restore_rt: find the interrupted pc (exact, from the
     signal context) and drop what comes before it. If unwinding failed, keep the leaf. */
  while (k < n && k < SKIPMAX && bt[k] != pc) k++;
  if (k >= n || k >= SKIPMAX) { bt[0] = pc; n = 1; k = 0; atomic_fetch_add(&g_leaf, 1); }
  Sample *s = &g_buf[i];
  s->depth = n - k > MAXF ? MAXF : n - k;
  memcpy(s->pc, bt + k, (size_t)s->depth * sizeof(void *));
  s->tid = (int)syscall(SYS_gettid);
  prctl(PR_GET_NAME, s->comm);        /* name it now: the thread may be gone at exit */
  /* Publish. The owner pid marks the slot complete, and slots inherited from a parent through
     fork() (still carrying the parent's pid) are never mistaken for ours. */
  atomic_store_explicit(&s->owner, g_pid, memory_order_release);
out:
  errno = saved;
}

/* ---------- report: runs once, at exit, so malloc and stdio are fine ---------- */
static jmp_buf g_oom;
static void *xrealloc(void *p, size_t n) {
  void *q = realloc(p, n ? n : 1);
  if (!q) longjmp(g_oom, 1);          /* give up the report, never crash the host */
  return q;
}

/* String interner with counters, one per kind of key (function, library, thread, stack). */
typedef struct { char **s; long *self, *incl, *mark; int *aux, *slot; int n, cap, nslot; } Tab;
static uint64_t hstr(const char *s) {
  uint64_t h = 1469598103934665603ULL;
  while (*s) h = (h ^ (unsigned char)*s++) * 1099511628211ULL;
  return h;
}
static int intern(Tab *t, const char *s) {  /* note: may realloc t's arrays */
  if (2 * (t->n + 1) > t->nslot) {    /* grow and rehash, load factor <= 1/2 */
    int ns = t->nslot ? 2 * t->nslot : 1024, *sl = xrealloc(NULL, (size_t)ns * sizeof(int));
    memset(sl, -1, (size_t)ns * sizeof(int));
    for (int i = 0; i < t->n; i++) {
      uint64_t h = hstr(t->s[i]) & (uint64_t)(ns - 1);
      while (sl[h] >= 0) h = (h + 1) & (uint64_t)(ns - 1);
      sl[h] = i;
    }
    free(t->slot); t->slot = sl; t->nslot = ns;
  }
  uint64_t h = hstr(s) & (uint64_t)(t->nslot - 1);
  for (; t->slot[h] >= 0; h = (h + 1) & (uint64_t)(t->nslot - 1))
    if (!strcmp(t->s[t->slot[h]], s)) return t->slot[h];
  if (t->n == t->cap) {
    t->cap = t->cap ? 2 * t->cap : 1024;
    t->s = xrealloc(t->s, (size_t)t->cap * sizeof(char *));
    t->self = xrealloc(t->self, (size_t)t->cap * sizeof(long));
    t->incl = xrealloc(t->incl, (size_t)t->cap * sizeof(long));
    t->mark = xrealloc(t->mark, (size_t)t->cap * sizeof(long));
    t->aux = xrealloc(t->aux, (size_t)t->cap * sizeof(int));
  }
  size_t len = strlen(s) + 1;
  t->s[t->n] = memcpy(xrealloc(NULL, len), s, len);
  t->self[t->n] = t->incl[t->n] = 0; t->mark[t->n] = -1; t->aux[t->n] = 0;
  return t->slot[h] = t->n++;
}
static void count(Tab *t, const char *s) { int id = intern(t, s); t->self[id]++; }

typedef struct { Tab *t; int incl; } SortBy;
static int by_count(const void *a, const void *b, void *ctx) {
  SortBy *c = ctx;
  int x = *(const int *)a, y = *(const int *)b;
  long cx = c->incl ? c->t->incl[x] : c->t->self[x], cy = c->incl ? c->t->incl[y] : c->t->self[y];
  return cx != cy ? (cx < cy ? 1 : -1) : strcmp(c->t->s[x], c->t->s[y]);
}
static void top(FILE *f, const char *title, Tab *t, int incl, int k, long total) {
  int *ids = xrealloc(NULL, (size_t)t->n * sizeof(int));
  for (int i = 0; i < t->n; i++) ids[i] = i;
  SortBy c = {t, incl};
  qsort_r(ids, (size_t)t->n, sizeof(int), by_count, &c);
  fprintf(f, "\n== %s (top %d of %d) ==\n", title, k < t->n ? k : t->n, t->n);
  for (int i = 0; i < k && i < t->n; i++) {
    long v = incl ? t->incl[ids[i]] : t->self[ids[i]];
    if (v) fprintf(f, "%8ld %6.2f%%  %s\n", v, 100.0 * (double)v / (double)total, t->s[ids[i]]);
  }
}
static int cmp_addr(const void *a, const void *b) {
  uintptr_t x = *(const uintptr_t *)a, y = *(const uintptr_t *)b;
  return x < y ? -1 : x > y;
}
#define BUFSZ 65536
static size_t app(char *b, size_t len, const char *sep, const char *s) {  /* truncating append */
  int w = snprintf(b + len, BUFSZ - len, "%s%s", sep, s);
  return (w < 0 || len + (size_t)w >= BUFSZ) ? BUFSZ - 1 : len + (size_t)w;
}

static void dump(void) {
  if (!g_active || atomic_exchange(&g_done, 1)) return;
  atomic_store(&g_on, 0);
  arm(0);                             /* stop first: no new samples while we read */
  int64_t t_exit = now_ns();
  long n = atomic_load(&g_n), kept = n < g_cap ? n : g_cap, nv = 0;
  if (setjmp(g_oom)) { fprintf(stderr, "tf-sampler: out of memory, no report for pid %d\n", g_pid); return; }
  static Tab funcs, libs, threads, stacks, folded;
  Sample **v = xrealloc(NULL, (size_t)(kept + 1) * sizeof(Sample *));
  size_t na = 0, nu = 0;
  for (long i = 0; i < kept; i++)     /* only slots published by this process */
    if (atomic_load_explicit(&g_buf[i].owner, memory_order_acquire) == g_pid) {
      v[nv++] = &g_buf[i]; na += (size_t)g_buf[i].depth;
    }
  if (nv == 0) return;                /* e.g. a shell that only exec'd: write no file */
  /* Symbolize each distinct address once. Return addresses (all but the leaf) point after the
     call, so look up addr-1 to stay inside the calling function. */
  uintptr_t *ad = xrealloc(NULL, (na + 1) * sizeof(uintptr_t));
  na = 0;
  for (long i = 0; i < nv; i++)
    for (int j = 0; j < v[i]->depth; j++)
      ad[na++] = (uintptr_t)(v[i]->pc[j] = (char *)v[i]->pc[j] - (j > 0));
  qsort(ad, na, sizeof *ad, cmp_addr);
  for (size_t i = 0; i < na; i++) if (!nu || ad[i] != ad[nu - 1]) ad[nu++] = ad[i];
  int *fid = xrealloc(NULL, (nu + 1) * sizeof(int)), last = -1;
  uintptr_t lo = 1, hi = 0, last_fn = 0;  /* extent of the last symbol, start of its function */
  char name[2048], *buf = xrealloc(NULL, BUFSZ);
  void *gcc = dlopen("libgcc_s.so.1", RTLD_NOW | RTLD_NOLOAD);  /* loaded by backtrace() */
  const void *(*find_fde)(void *, void *) = gcc ? (const void *(*)(void *, void *))dlsym(gcc, "_Unwind_Find_FDE") : NULL;
  for (size_t u = 0; u < nu; u++) {
    /* dladdr costs O(#symbols in the library), ~1 ms in libtorch-sized ones: call it once per
       function. Addresses are sorted, and the unwind info (FDE) gives each function's start. */
    struct { void *tbase, *dbase, *func; } b = {0};
    uintptr_t fn = find_fde && find_fde((void *)ad[u], &b) ? (uintptr_t)b.func : 0;
    if ((ad[u] >= lo && ad[u] < hi) || (fn && fn == last_fn)) { fid[u] = last; continue; }
    Dl_info di; const ElfW(Sym) *sym = NULL; const char *lib = "[unknown]";
    lo = 1; hi = 0; last_fn = fn;
    if (dladdr1((void *)ad[u], &di, (void **)&sym, RTLD_DL_SYMENT) && di.dli_fname) {
      const char *sl = strrchr(di.dli_fname, '/');
      lib = sl ? sl + 1 : di.dli_fname;
      if (!*lib) lib = program_invocation_short_name;  /* the main executable has no name */
      if (di.dli_sname) {
        snprintf(name, sizeof name, "%s!%s", lib, di.dli_sname);
        if (sym) { lo = (uintptr_t)di.dli_saddr; hi = lo + sym->st_size; }
      } else                          /* no symbol: name it by its function's start */
        snprintf(name, sizeof name, "%s+0x%lx", lib, (unsigned long)((fn ? fn : ad[u]) - (uintptr_t)di.dli_fbase));
    } else snprintf(name, sizeof name, "[unknown]");  /* JIT code, or a dlclose'd library */
    fid[u] = last = intern(&funcs, name);
    funcs.aux[last] = intern(&libs, lib);
  }
  for (long i = 0; i < nv; i++) {     /* count; frames become function ids in place */
    Sample *s = v[i];
    for (int j = 0; j < s->depth; j++) {
      uintptr_t *p = bsearch(&s->pc[j], ad, nu, sizeof *ad, cmp_addr);
      int f = fid[p - ad], l = funcs.aux[f];
      s->pc[j] = (void *)(intptr_t)f;
      if (j == 0) { funcs.self[f]++; libs.self[l]++; }
      if (funcs.mark[f] != i) { funcs.mark[f] = i; funcs.incl[f]++; }  /* once per sample */
      if (libs.mark[l] != i) { libs.mark[l] = i; libs.incl[l]++; }
    }
    snprintf(buf, BUFSZ, "tid %d (%.16s)", s->tid, s->comm);
    count(&threads, buf);
    size_t len = 0; buf[0] = 0;
    for (int j = 0; j < s->depth && j < 12; j++)
      len = app(buf, len, j ? " < " : "", funcs.s[(intptr_t)s->pc[j]]);
    count(&stacks, buf);
    len = 0; buf[0] = 0;
    for (int j = s->depth - 1; j >= 0; j--)
      len = app(buf, len, j == s->depth - 1 ? "" : ";", funcs.s[(intptr_t)s->pc[j]]);
    count(&folded, buf);
  }
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  double cpu = (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
  int64_t ws = g_begin > g_t0 ? g_begin : g_t0, we = g_end && g_end < t_exit ? g_end : t_exit;
  char path[4200];
  snprintf(path, sizeof path, "%s.%d.txt", g_out, g_pid);
  FILE *f = fopen(path, "w");
  if (!f) { fprintf(stderr, "tf-sampler: cannot write %s: %s\n", path, strerror(errno)); return; }
  fprintf(f, "tf-sampler report: pid %d (%s)%s\n", g_pid, program_invocation_short_name,
          g_pid != g_root_pid ? " [forked child]" : "");
  fprintf(f, "samples %ld, dropped (buffer full) %ld, leaf-only (in the unwinder or unwinding failed) %ld\n",
          nv, n - kept, atomic_load(&g_leaf));
  fprintf(f, "sampled window %.3f s of %.3f s wall; requested %d Hz per CPU-second\n",
          we > ws ? (double)(we - ws) / 1e9 : 0.0, (double)(t_exit - g_t0) / 1e9, g_hz);
  fprintf(f, "process CPU time (whole life, all threads) %.3f s; samples/Hz = %.3f s\n", cpu, (double)nv / g_hz);
  top(f, "self time by library", &libs, 0, 25, nv);
  top(f, "self time by function", &funcs, 0, 40, nv);
  top(f, "inclusive time by function", &funcs, 1, 60, nv);
  top(f, "inclusive time by library", &libs, 1, 25, nv);
  top(f, "samples by thread", &threads, 0, 20, nv);
  top(f, "top stacks (leaf first, 12 frames)", &stacks, 0, 30, nv);
  if (fclose(f)) fprintf(stderr, "tf-sampler: error writing %s\n", path);
  snprintf(path, sizeof path, "%s.%d.folded", g_out, g_pid);
  if (!(f = fopen(path, "w"))) { fprintf(stderr, "tf-sampler: cannot write %s: %s\n", path, strerror(errno)); return; }
  for (int i = 0; i < folded.n; i++) fprintf(f, "%s %ld\n", folded.s[i], folded.self[i]);
  if (fclose(f)) fprintf(stderr, "tf-sampler: error writing %s\n", path);
}

/* ---------- process life cycle ---------- */
static void after_fork_child(void) {  /* fork() cleared the itimer: give the child its own run */
  g_pid = getpid(); g_t0 = now_ns();
  atomic_store(&g_n, 0); atomic_store(&g_leaf, 0); atomic_store(&g_done, 0);
  if (atomic_load(&g_on)) arm(1);
}

/* exec*: the itimer survives execve but our handler does not, so disarm and ignore SIGPROF
   (which also discards a pending one) before exec; restore if the exec failed. A vfork child
   (pid differs) has no timer, so it is left alone and nothing is written to shared memory. */
static int exec_guard(int stop) {
  if (!g_active || !atomic_load(&g_on) || getpid() != g_pid) return 0;
  if (stop) { struct sigaction ign = {0}; ign.sa_handler = SIG_IGN; arm(0); sigaction(SIGPROF, &ign, NULL); }
  else { sigaction(SIGPROF, &g_sa, NULL); arm(1); }
  return 1;
}
#define EXECS(X) \
  X(execve, (const char *p, char *const a[], char *const e[]), (p, a, e)) \
  X(execv, (const char *p, char *const a[]), (p, a)) \
  X(execvp, (const char *p, char *const a[]), (p, a)) \
  X(execvpe, (const char *p, char *const a[], char *const e[]), (p, a, e)) \
  X(fexecve, (int p, char *const a[], char *const e[]), (p, a, e))
#define DECL(n, P, A) static int (*real_##n) P;
#define RESOLVE(n, P, A) real_##n = (int (*) P)dlsym(RTLD_NEXT, #n);
#define WRAP(n, P, A) int n P { \
    if (!real_##n) { errno = ENOSYS; return -1; } \
    int g = exec_guard(1), r = real_##n A, err = errno; \
    if (g) exec_guard(0); \
    errno = err; return r; }
EXECS(DECL)
EXECS(WRAP)
/* execl* are variadic: build argv as glibc does and go through the wrappers above. */
static int exec_list(int kind, const char *p, const char *a0, va_list ap) {
  int n = 1;
  va_list c; va_copy(c, ap);
  while (va_arg(c, char *)) n++;
  va_end(c);
  char **argv = __builtin_alloca((size_t)(n + 1) * sizeof(char *));
  argv[0] = (char *)a0;
  for (int i = 1; i <= n; i++) argv[i] = va_arg(ap, char *);  /* argv[n] is the NULL */
  if (kind == 2) return execve(p, argv, va_arg(ap, char **));
  return kind ? execvp(p, argv) : execv(p, argv);
}
#define LWRAP(n, k) int n(const char *p, const char *a, ...) { \
    va_list ap; va_start(ap, a); int r = exec_list(k, p, a, ap); va_end(ap); return r; }
LWRAP(execl, 0) LWRAP(execlp, 1) LWRAP(execle, 2)

/* os._exit() (multiprocessing and DataLoader workers) skips atexit and destructors. */
void _exit(int status) {
  if (g_active && getpid() == g_pid) dump();  /* never in a vfork child: memory is shared */
  if (real_exit) real_exit(status);
  for (;;) syscall(SYS_exit_group, status);
}
void _Exit(int status) { _exit(status); }

static int find_text(struct dl_phdr_info *i, size_t sz, void *fn) {  /* segment holding fn */
  (void)sz;
  for (int j = 0; j < i->dlpi_phnum; j++) {
    uintptr_t lo = i->dlpi_addr + i->dlpi_phdr[j].p_vaddr, hi = lo + i->dlpi_phdr[j].p_memsz;
    if (i->dlpi_phdr[j].p_type == PT_LOAD && (uintptr_t)fn - lo < hi - lo) { g_ulo = lo; g_uhi = hi; return 1; }
  }
  return 0;
}
static double env_num(const char *k, double def) {
  const char *s = getenv(k);
  char *end;
  double x = s && *s ? strtod(s, &end) : def;
  if (s && *s && (*end || x < 0)) { fprintf(stderr, "tf-sampler: ignoring bad %s=%s\n", k, s); x = def; }
  return x;
}

__attribute__((constructor)) static void init(void) {
  real_exit = (void (*)(int))dlsym(RTLD_NEXT, "_exit");
  EXECS(RESOLVE)                      /* resolve now: dlsym is unsafe in a vfork child */
  const char *out = getenv("TF_SAMPLER_OUT");
  if (!out || !*out) return;
  double hz = env_num("TF_SAMPLER_HZ", 997), delay = env_num("TF_SAMPLER_DELAY_S", 0),
         secs = env_num("TF_SAMPLER_SECONDS", 0), max = env_num("TF_SAMPLER_MAX", 200000);
  g_hz = hz < 1 ? 1 : hz > 100000 ? 100000 : (int)hz;
  g_cap = max < 1 ? 1 : (long)max;
  snprintf(g_out, sizeof g_out, "%s", out);
  g_t0 = now_ns();
  g_begin = g_t0 + (int64_t)(delay * 1e9);
  g_end = secs > 0 ? g_begin + (int64_t)(secs * 1e9) : 0;
  g_buf = mmap(NULL, (size_t)g_cap * sizeof(Sample), PROT_READ | PROT_WRITE,  /* pages are */
               MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);          /* touched lazily */
  if (g_buf == MAP_FAILED) { fprintf(stderr, "tf-sampler: mmap failed, not sampling\n"); return; }
  void *warm[4], *gcc;
  backtrace(warm, 4);                 /* glibc dlopens libgcc_s on first use: do it here */
  if ((gcc = dlopen("libgcc_s.so.1", RTLD_NOW | RTLD_NOLOAD)))
    dl_iterate_phdr(find_text, dlsym(gcc, "_Unwind_Backtrace"));
  struct sigaction old;
  if (sigaction(SIGPROF, NULL, &old) == 0 && (old.sa_flags & SA_SIGINFO ? old.sa_sigaction != NULL
      : (old.sa_handler != SIG_DFL && old.sa_handler != SIG_IGN)))
    { fprintf(stderr, "tf-sampler: SIGPROF already has a handler, not sampling\n"); return; }
  g_sa.sa_sigaction = on_prof;        /* empty sa_mask: SIGPROF alone is blocked while it runs */
  g_sa.sa_flags = SA_SIGINFO | SA_RESTART;  /* SA_RESTART: no EINTR in the host's syscalls */
  if (sigaction(SIGPROF, &g_sa, NULL)) { fprintf(stderr, "tf-sampler: sigaction failed\n"); return; }
  g_pid = g_root_pid = getpid();
  g_active = 1;
  pthread_atfork(NULL, NULL, after_fork_child);
  atexit(dump);
  atomic_store(&g_on, 1);
  arm(1);
}
__attribute__((destructor)) static void fini(void) { dump(); }
