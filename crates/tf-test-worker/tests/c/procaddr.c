/* End-to-end check of what cudart needs before and beside the public API,
 * run through our libcuda.so.1 against tf-test-worker: cuGetProcAddress
 * (table rules, our own export addresses), cuGetExportTable (every table
 * cudart 12/13 asks for, slot behaviour, the integrity answer, unknown
 * tables and slots), contexts (stack, create/destroy, facts, limits,
 * primary-context state) and pinned host memory with pointer attributes.
 *
 * Like cudart it dlopen()s libcuda.so.1, resolves only cuGetProcAddress_v2
 * with dlsym, and everything else through it.
 *
 * usage: procaddr NOT_FOUND_V2 NOT_FOUND_V1 ABOVE_INVALID
 *   the table's conventions (tf_api::procaddr): the CUresult of a failed
 *   lookup from cuGetProcAddress_v2 and from cuGetProcAddress, and 1 when a
 *   version above the driver's is CUDA_ERROR_INVALID_VALUE (0: answered).
 * Prints one "ok ..." line per check, then "PASS procaddr"; on failure
 * "FAIL <what>" and exit 1. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tf_integrity.h"

typedef int CUresult;
typedef void *CUcontext;
typedef unsigned long long CUdeviceptr;
typedef CUresult (*GetProc)(const char *, void **, int, unsigned long long, int *);

static void *lib;
static GetProc get_proc;
static int not_found_v2, not_found_v1, above_invalid;

#define EXPECT(cond, ...)                                                      \
    do {                                                                       \
        if (!(cond)) {                                                         \
            printf("FAIL line %d: ", __LINE__);                                \
            printf(__VA_ARGS__);                                               \
            printf("\n");                                                      \
            exit(1);                                                           \
        }                                                                      \
    } while (0)
#define CHECK(call)                                                            \
    do {                                                                       \
        CUresult r_ = (call);                                                  \
        EXPECT(r_ == 0, "%s returned %d", #call, r_);                          \
    } while (0)

/* Resolves `name` at `version` (flags 0) as cudart does; exits on failure. */
static void *fn(const char *name, int version) {
    void *p = 0;
    int st = -1;
    CUresult r = get_proc(name, &p, version, 0, &st);
    EXPECT(r == 0 && st == 0 && p, "cuGetProcAddress(%s, %d) = %d status %d", name, version, r, st);
    return p;
}
#define F(type, name, version) ((type)fn(name, version))

static void expect_export(const char *name, int version, unsigned long long flags, const char *want) {
    void *p = 0;
    int st = -1;
    CUresult r = get_proc(name, &p, version, flags, &st);
    void *w = dlsym(lib, want);
    EXPECT(r == 0 && st == 0 && p == w && w, "%s v%d flags %llu: rc %d status %d %p, want %s %p",
           name, version, flags, r, st, p, want, w);
    Dl_info info;
    EXPECT(dladdr(p, &info) && strstr(info.dli_fname, "libcuda.so") && strcmp(info.dli_sname, want) == 0,
           "%s resolves into %s (%s), not our libcuda's export", want, info.dli_fname,
           info.dli_sname ? info.dli_sname : "?");
}

/* A failed lookup; status < 0: an invalid value, which (like driver 580)
 * writes neither the pointer nor the status. */
static void expect_lookup(const char *name, int version, unsigned long long flags, int rc, int status) {
    void *p = (void *)1;
    int st = -1;
    CUresult r = get_proc(name, &p, version, flags, &st);
    int untouched = p == (void *)1 && st == -1;
    EXPECT(r == rc && (status < 0 ? untouched : p == 0 && st == status),
           "%s v%d flags %llu: rc %d status %d pfn %p (want %d, %d)", name ? name : "(null)", version, flags, r,
           st, p, rc, status);
}

static void proc_address(void) {
    get_proc = (GetProc)dlsym(lib, "cuGetProcAddress_v2");
    EXPECT(get_proc, "no cuGetProcAddress_v2 export");
    /* cudart's first lookups: cuGetProcAddress itself, then use that pointer. */
    expect_export("cuGetProcAddress", 12000, 0, "cuGetProcAddress_v2");
    expect_export("cuGetProcAddress", 11030, 0, "cuGetProcAddress");
    get_proc = (GetProc)fn("cuGetProcAddress", 12000);
    expect_export("cuInit", 2000, 0, "cuInit");
    expect_export("cuMemAlloc", 2000, 0, "cuMemAlloc");
    expect_export("cuMemAlloc", 3020, 0, "cuMemAlloc_v2");
    expect_export("cuMemAlloc", 13000, 1, "cuMemAlloc_v2");
    expect_export("cuCtxGetDevice", 13000, 0, "cuCtxGetDevice_v2");
    expect_export("cuCtxGetDevice", 2000, 0, "cuCtxGetDevice");
    expect_export("cuLaunchKernel", 7000, 2, "cuLaunchKernel_ptsz");
    expect_export("cuLaunchKernel", 7000, 1, "cuLaunchKernel");
    expect_export("cuMemcpyHtoD", 7000, 2, "cuMemcpyHtoD_v2_ptds");
    expect_lookup("cuMemcpyHtoD", 3020, 2, not_found_v2, 2); /* before its _ptds */
    expect_export("cuMemAlloc", 3020, 2, "cuMemAlloc_v2");   /* no per-thread variant */
    expect_export("cuDevicePrimaryCtxRelease", 11000, 0, "cuDevicePrimaryCtxRelease_v2");
    expect_export("cuLaunchKernel", 7000, 3, "cuLaunchKernel_ptsz"); /* per-thread bit wins */
    expect_lookup("cuLaunchKernel", 4000, 2, not_found_v2, 2); /* before its _ptsz */
    expect_lookup("cuMemAlloc", 1000, 0, not_found_v2, 2);     /* VERSION_NOT_SUFFICIENT */
    expect_lookup("cuNoSuchFunction", 12000, 0, not_found_v2, 1); /* SYMBOL_NOT_FOUND */
    expect_lookup("cuMemAlloc_v2", 12000, 0, not_found_v2, 1);  /* base names only */
    expect_lookup("cuMemAlloc", 12000, 4, 1, -1);      /* unknown flags */
    expect_export("cuMemAlloc", -1, 0, "cuMemAlloc_v2"); /* negative: the newest */
    if (above_invalid)
        expect_lookup("cuMemAlloc", 99999, 0, 1, -1);
    else
        expect_export("cuMemAlloc", 99999, 0, "cuMemAlloc_v2"); /* as at the driver's version */
    expect_lookup(0, 12000, 0, 1, -1);
    EXPECT(get_proc("cuInit", 0, 12000, 0, 0) == 1, "null pfn accepted");
    /* The CUDA 11.3 entry point has no status argument. */
    typedef CUresult (*GetProcV1)(const char *, void **, int, unsigned long long);
    GetProcV1 v1 = (GetProcV1)fn("cuGetProcAddress", 11030);
    void *p = 0;
    CHECK(v1("cuMemcpyHtoD", &p, 3020, 0));
    EXPECT(p == dlsym(lib, "cuMemcpyHtoD_v2"), "v1 lookup");
    EXPECT(v1("cuNoSuchFunction", &p, 12000, 0) == not_found_v1 && !p, "v1 unknown name");
    printf("ok cuGetProcAddress\n");
}

/* --- export tables ---------------------------------------------------- */

typedef CUresult (*GetTable)(const void **, const unsigned char *);
static GetTable get_table;

static void guid(const char *hex, unsigned char out[16]) {
    for (int i = 0; i < 16; i++) sscanf(hex + 2 * i, "%2hhx", &out[i]);
}

static void **table(const char *hex) {
    unsigned char g[16];
    const void *t = 0;
    guid(hex, g);
    CUresult r = get_table(&t, g);
    EXPECT(r == 0 && t, "cuGetExportTable(%s) = %d", hex, r);
    return (void **)t;
}

#define CUDART "6bd5fb6c5bf4e74a8987d93912fd9df9"
#define TOOLS_TLS "42d85a8123f6cb478298f6e78a3aecdc"
#define HOOKS "a094798c2e742e7493f20800200c0a66"
#define CLS "c693336e1121df11a8c368f355d89593"
#define CHECKS "263e88607cd2614392f6bbd5006dfa7e"
#define INTEGRITY "d4082055bde6704b8d34ba123c66e1f2"
#define REQUIREMENTS "f8cff95121468b4eb9e2fb469e7c0dd9"
#define TOOLS_CONTEXT "21318c60971432488ca641ff7324c8f2"
#define BYPASS "0ca50b8c1004929a89a7d0df10e77286"

static int dtor_calls;
static void *dtor_value;
static void dtor(CUcontext c, void *key, void *value) {
    (void)c;
    (void)key;
    dtor_calls++;
    dtor_value = value;
}

static void integrity(void) {
    void **t = table(INTEGRITY), **cudart = table(CUDART);
    CUresult (*check)(unsigned, unsigned long long, uint64_t *) = t[1];
    CUresult (*version)(int *) = fn("cuDriverGetVersion", 2020);
    CUresult (*count)(int *) = fn("cuDeviceGetCount", 2000);
    CUresult (*uuid)(unsigned char *, int) = fn("cuDeviceGetUuid", 9020);
    CUresult (*attr)(int *, int, int) = fn("cuDeviceGetAttribute", 2000);
    tf_integrity_record rec;
    tf_integrity_device devs[8];
    int n = 0, v = 0;
    CHECK(version(&v));
    CHECK(count(&n));
    EXPECT(n > 0 && n <= 8, "%d devices", n);
    for (int d = 0; d < n; d++) {
        CHECK(uuid(devs[d].uuid, d));
        /* Attributes the device does not report count as 0, as in the client. */
        if (attr(&devs[d].pci_domain, 50, d)) devs[d].pci_domain = 0;
        if (attr(&devs[d].pci_bus, 33, d)) devs[d].pci_bus = 0;
        if (attr(&devs[d].pci_device, 34, d)) devs[d].pci_device = 0;
    }
    memset(&rec, 0, sizeof rec);
    rec.driver_version = (uint32_t)v;
    rec.pid = (uint32_t)getpid();
    rec.tid = (uint32_t)(uintptr_t)pthread_self();
    rec.cudart_table = (uint64_t)(uintptr_t)cudart;
    rec.integrity_table = (uint64_t)(uintptr_t)t;
    rec.function = (uint64_t)(uintptr_t)t[1];
    for (unsigned version_ = 13000; version_ < 13010; version_++) {
        uint64_t got[2] = {0, 0}, want[2];
        rec.version = version_;
        rec.unix_seconds = 1763700000ULL + version_;
        CHECK(check(version_, rec.unix_seconds, got));
        tf_integrity(&rec, devs, n, want);
        EXPECT(got[0] == want[0] && got[1] == want[1], "integrity v%u: %016llx %016llx, want %016llx %016llx",
               version_, (unsigned long long)got[0], (unsigned long long)got[1],
               (unsigned long long)want[0], (unsigned long long)want[1]);
    }
    EXPECT(check(13002, 1, 0) == 1, "null result accepted");
    printf("ok integrity check\n");
}

static void export_tables(void) {
    get_table = (GetTable)fn("cuGetExportTable", 3000);
    struct { const char *g; long size; } sizes[] = {
        {CUDART, 13}, {TOOLS_TLS, 3}, {HOOKS, 7}, {CHECKS, 15}, {INTEGRITY, 3},
        {REQUIREMENTS, 3}, {TOOLS_CONTEXT, 93}, {BYPASS, 2},
    };
    for (unsigned i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        void **t = table(sizes[i].g);
        EXPECT((long)(uintptr_t)t[0] == sizes[i].size * 8, "%s size word %ld", sizes[i].g, (long)(uintptr_t)t[0]);
        EXPECT(t == table(sizes[i].g), "%s moved", sizes[i].g);
    }
    /* Unimplemented slots fail cleanly, every time. */
    EXPECT(table(CUDART)[10] == 0, "CUDART_INTERFACE[10] is null in the driver's table");
    CUresult (*trap)(void) = table(CUDART)[9];
    EXPECT(trap() == 801 && trap() == 801, "CUDART_INTERFACE[9] is not a clean failure");
    CUresult (*load_compilers)(void) = table(CUDART)[12];
    CHECK(load_compilers());
    /* A table the client does not know but the worker's driver has. */
    void **u = table("54462d544553542d5441424c452d3031"); /* "TF-TEST-TABLE-01" */
    EXPECT((uintptr_t)u[0] == 40, "unknown table size %lu", (unsigned long)(uintptr_t)u[0]);
    EXPECT(u[3] == 0, "the driver's null slot 3 is not null");
    for (int s = 1; s < 5; s++)
        if (s != 3) EXPECT(((CUresult(*)(void))u[s])() == 801, "unknown slot %d", s);
    void **ns = table("54462d544553542d4e4f53495a452d31"); /* "TF-TEST-NOSIZE-1": no size word */
    EXPECT(((CUresult(*)(void))ns[0])() == 801, "unsized table slot 0 is not a trap");
    /* One the driver does not have: its error, the out-pointer cleared. */
    unsigned char g[16];
    const void *t = (void *)1;
    guid("00112233445566778899aabbccddeeff", g);
    EXPECT(get_table(&t, g) == 1 && t == 0, "unknown GUID");
    EXPECT(get_table(0, g) == 1 && get_table(&t, 0) == 1, "null arguments");
    printf("ok export tables\n");
}

/* Called with a retained, current primary context of device 0. */
static void runtime_slots(CUcontext ctx) {
    CUresult (*get_current)(CUcontext *) = fn("cuCtxGetCurrent", 4000);
    CUcontext c = 0, cur = 0;
    CUresult (*tls_current)(CUcontext *) = table(TOOLS_TLS)[2];
    CHECK(tls_current(&c));
    CHECK(get_current(&cur));
    EXPECT(c == cur && c == ctx, "TOOLS_TLS[2] %p, current %p", c, cur);

    void **cls = table(CLS);
    CUresult (*put)(CUcontext, void *, void *, void (*)(CUcontext, void *, void *)) = cls[0];
    CUresult (*del)(CUcontext, void *) = cls[1];
    CUresult (*get)(void **, CUcontext, void *) = cls[2];
    EXPECT(cls[3] == 0, "CLS[3] not null");
    void *v = (void *)1;
    EXPECT(get(&v, 0, (void *)0x10) == 400 && v == (void *)1, "missing key: value must stay untouched");
    CHECK(put(0, (void *)0x10, (void *)0xBEEF, dtor));
    CHECK(get(&v, ctx, (void *)0x10));
    EXPECT(v == (void *)0xBEEF, "CLS get %p", v);
    CHECK(put(ctx, (void *)0x20, (void *)0xF00D, 0));
    CHECK(del(0, (void *)0x20));
    EXPECT(get(&v, 0, (void *)0x20) != 0, "deleted key found");

    void **checks = table(CHECKS);
    unsigned flags = 7;
    CHECK(((CUresult(*)(CUcontext, unsigned *, void **))checks[2])(ctx, &flags, 0));
    EXPECT(flags == 0 && ((unsigned (*)(void))checks[3])() == 0, "context checks");

    void *buf = 0;
    size_t size = 0;
    ((void (*)(void **, size_t *))table(HOOKS)[2])(&buf, &size);
    EXPECT(buf && size == 1024, "hooks buffer %p %zu", buf, size);

    unsigned long long id = 0, id2 = 0;
    CUresult (*ctx_id)(CUcontext, unsigned long long *) = fn("cuCtxGetId", 12000);
    CHECK(((CUresult(*)(CUcontext, unsigned long long *))table(TOOLS_CONTEXT)[4])(ctx, &id));
    CHECK(ctx_id(0, &id2));
    EXPECT(id == id2 && id != 0, "context ids %llu %llu", id, id2);
    printf("ok runtime slots\n");
}

/* --- contexts --------------------------------------------------------- */

static void contexts(void) {
    CUresult (*retain)(CUcontext *, int) = fn("cuDevicePrimaryCtxRetain", 7000);
    CUresult (*release)(int) = fn("cuDevicePrimaryCtxRelease", 11000);
    CUresult (*state)(int, unsigned *, int *) = fn("cuDevicePrimaryCtxGetState", 7000);
    CUresult (*set_flags)(int, unsigned) = fn("cuDevicePrimaryCtxSetFlags", 11000);
    CUresult (*set_current)(CUcontext) = fn("cuCtxSetCurrent", 4000);
    CUresult (*get_current)(CUcontext *) = fn("cuCtxGetCurrent", 4000);
    CUresult (*get_device)(int *, CUcontext) = fn("cuCtxGetDevice", 13000);
    CUresult (*push)(CUcontext) = fn("cuCtxPushCurrent", 4000);
    CUresult (*pop)(CUcontext *) = fn("cuCtxPopCurrent", 4000);
    CUresult (*create)(CUcontext *, unsigned, int) = fn("cuCtxCreate", 3020);
    CUresult (*destroy)(CUcontext) = fn("cuCtxDestroy", 4000);
    CUresult (*get_limit)(size_t *, int) = fn("cuCtxGetLimit", 3010);
    CUresult (*set_limit)(int, size_t) = fn("cuCtxSetLimit", 3010);
    CUresult (*prio)(int *, int *) = fn("cuCtxGetStreamPriorityRange", 5050);
    CUresult (*api)(CUcontext, unsigned *) = fn("cuCtxGetApiVersion", 3020);
    CUresult (*ctx_flags)(unsigned *) = fn("cuCtxGetFlags", 7000);
    CUresult (*set_cache)(int) = fn("cuCtxSetCacheConfig", 3020);
    CUresult (*get_cache)(int *) = fn("cuCtxGetCacheConfig", 3020);
    CUresult (*sync)(CUcontext) = fn("cuCtxSynchronize", 13000);
    CUresult (*alloc)(CUdeviceptr *, size_t) = fn("cuMemAlloc", 3020);
    CUresult (*mfree)(CUdeviceptr) = fn("cuMemFree", 3020);
    CUresult (*cc)(int *, int *, int) = fn("cuDeviceComputeCapability", 2000);

    /* cudart learns the primary context first, without activating it. */
    CUcontext early = 0, ctx = 0, c = 0;
    unsigned flags = 99;
    int active = 9, dev = -1;
    CHECK(((CUresult(*)(CUcontext *, int))table(CUDART)[2])(&early, 0));
    CHECK(state(0, &flags, &active));
    EXPECT(early && active == 0 && flags == 0, "early primary %p active %d flags %u", early, active, flags);
    CHECK(set_flags(0, 4)); /* CU_CTX_SCHED_BLOCKING_SYNC */
    CHECK(retain(&ctx, 0));
    EXPECT(ctx == early, "retained %p, early %p", ctx, early);
    CHECK(state(0, &flags, &active));
    EXPECT(active == 1 && flags == 4, "active %d flags %u", active, flags);
    CHECK(set_current(ctx));
    CHECK(get_device(&dev, 0));
    EXPECT(dev == 0, "device %d", dev);
    CHECK(ctx_flags(&flags));
    EXPECT(flags == 4, "context flags %u", flags);
    runtime_slots(ctx);

    int least = 9, greatest = 9, major = 0, minor = 0, cache = -1;
    unsigned version = 0;
    CHECK(prio(&least, &greatest));
    CHECK(api(0, &version));
    CHECK(cc(&major, &minor, 0));
    EXPECT(least == 0 && greatest == -5 && version == 3020 && major == 9, "facts %d %d %u %d.%d", least,
           greatest, version, major, minor);
    size_t stack = 0;
    CHECK(get_limit(&stack, 0));
    CHECK(set_limit(0, 1000));
    CHECK(get_limit(&stack, 0));
    EXPECT(stack == 1008, "stack limit %zu (the driver rounds it)", stack);
    EXPECT(get_limit(&stack, 77) == 215, "unknown limit");
    CHECK(set_cache(2));
    CHECK(get_cache(&cache));
    EXPECT(cache == 2, "cache config %d", cache);
    CHECK(sync(0));
    CHECK(sync(ctx));

    /* A created context becomes current, owns its memory, goes away. */
    CUcontext mine = 0;
    CUdeviceptr d = 0;
    CHECK(create(&mine, 0, 0));
    CHECK(get_current(&c));
    EXPECT(mine && mine != ctx && c == mine, "created %p current %p", mine, c);
    CHECK(get_device(&dev, mine));
    CHECK(alloc(&d, 4096));
    CHECK(sync(0));
    CHECK(destroy(mine));
    CHECK(get_current(&c));
    EXPECT(c == ctx, "after destroy, current %p", c);
    EXPECT(mfree(d) != 0, "memory of a destroyed context freed");
    EXPECT(destroy(ctx) != 0, "destroying a primary context");

    /* The per-thread stack. */
    CHECK(push(ctx));
    CHECK(pop(&c));
    EXPECT(c == ctx, "popped %p", c);
    CHECK(get_current(&c));
    EXPECT(c == ctx, "after pop %p", c);
    CHECK(pop(&c));
    CHECK(get_current(&c));
    EXPECT(c == 0 && pop(&c) == 201, "empty stack");
    CHECK(set_current(ctx));
    printf("ok contexts\n");

    /* Pinned host memory and pointer attributes, answered in the client. */
    CUresult (*host_alloc)(void **, size_t, unsigned) = fn("cuMemHostAlloc", 3020);
    CUresult (*free_host)(void *) = fn("cuMemFreeHost", 2000);
    CUresult (*host_flags)(unsigned *, void *) = fn("cuMemHostGetFlags", 2030);
    CUresult (*reg)(void *, size_t, unsigned) = fn("cuMemHostRegister", 6050);
    CUresult (*unreg)(void *) = fn("cuMemHostUnregister", 4000);
    CUresult (*devptr)(CUdeviceptr *, void *, unsigned) = fn("cuMemHostGetDevicePointer", 3020);
    CUresult (*attr1)(void *, int, CUdeviceptr) = fn("cuPointerGetAttribute", 4000);
    CUresult (*attrs)(unsigned, int *, void **, CUdeviceptr) = fn("cuPointerGetAttributes", 7000);
    void *h = 0;
    unsigned type = 0, hf = 0;
    int ordinal = -1;
    size_t range = 0;
    CHECK(host_alloc(&h, 1 << 20, 1));
    memset(h, 0x5A, 1 << 20);
    CHECK(host_flags(&hf, (char *)h + 100));
    CHECK(attr1(&type, 2, (CUdeviceptr)(uintptr_t)h + 5));
    /* PORTABLE as asked, plus DEVICEMAP, which the real driver reports for
     * every page-locked range (measured on driver 580, tests/gpu/cuda/pinned_overlap.cu). */
    EXPECT(hf == 3 && type == 1, "host flags %u type %u", hf, type);
    /* Unified addressing: the device address of pinned memory is its host address. */
    EXPECT(devptr(&d, (char *)h + 16, 0) == 0 && d == (CUdeviceptr)(uintptr_t)h + 16, "device pointer of pinned memory");
    CHECK(alloc(&d, 1 << 16));
    CHECK(attr1(&type, 2, d + 10));
    CHECK(attr1(&ordinal, 9, d));
    CHECK(attr1(&range, 12, d + 10));
    EXPECT(type == 2 && ordinal == 0 && range == 1 << 16, "device pointer: type %u ordinal %d range %zu", type,
           ordinal, range);
    int which[2] = {2, 9};
    void *out[2] = {&type, &ordinal};
    char local[64];
    CHECK(attrs(2, which, out, (CUdeviceptr)(uintptr_t)local));
    EXPECT(type == 0 && ordinal == -2, "unregistered pointer: type %u ordinal %d", type, ordinal);
    EXPECT(attr1(&type, 2, (CUdeviceptr)(uintptr_t)local) == 1, "unknown pointer");
    CHECK(reg(local, sizeof local, 0));
    EXPECT(reg(local + 8, 8, 0) == 712, "double registration");
    CHECK(unreg(local));
    EXPECT(unreg(local) == 713, "double unregistration");
    CHECK(mfree(d));
    CHECK(free_host(h));
    EXPECT(free_host(h) == 1, "double free");
    printf("ok host memory\n");

    /* The last release destroys the primary context: its storage goes. */
    CHECK(release(0));
    EXPECT(dtor_calls == 1 && dtor_value == (void *)0xBEEF, "CLS destructor ran %d times", dtor_calls);
    CHECK(state(0, &flags, &active));
    EXPECT(active == 0, "active after release");
    printf("ok release\n");
}

int main(int argc, char **argv) {
    if (argc != 4) {
        printf("usage: procaddr NOT_FOUND_V2 NOT_FOUND_V1 ABOVE_INVALID\n");
        return 2;
    }
    not_found_v2 = atoi(argv[1]);
    not_found_v1 = atoi(argv[2]);
    above_invalid = atoi(argv[3]);
    lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_GLOBAL);
    EXPECT(lib, "dlopen libcuda.so.1: %s", dlerror());
    proc_address();
    CUresult (*init)(unsigned) = fn("cuInit", 2000);
    CHECK(init(0));
    export_tables();
    integrity();
    contexts();
    printf("PASS procaddr\n");
    return 0;
}
