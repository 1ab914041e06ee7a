/* Probes the private export tables and a few conventions of a libcuda.so.1:
 * run against the real driver and through our client, the outputs say what
 * the driver does and whether the client does the same.
 *
 * usage: probe_tables LIBCUDA
 * Output lines: "= key value" must agree between the real driver and the
 * client; "i key value" is information (addresses, raw answers).
 * Build: cc -O1 -I<dir of tf_integrity.h> probe_tables.c -ldl -lpthread */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "tf_integrity.h"

typedef int CUresult;
typedef void *CUcontext;
typedef unsigned long long CUdeviceptr;

static void *lib;
static CUresult (*get_table)(const void **, const unsigned char *);

static void *sym(const char *n) {
    void *p = dlsym(lib, n);
    if (!p) {
        printf("i missing %s\n", n);
        fflush(stdout);
        exit(1);
    }
    return p;
}

static void guid(const char *hex, unsigned char out[16]) {
    for (int i = 0; i < 16; i++) sscanf(hex + 2 * i, "%2hhx", &out[i]);
}

static void **table(const char *hex) {
    unsigned char g[16];
    const void *t = 0;
    guid(hex, g);
    return get_table(&t, g) == 0 ? (void **)t : 0;
}

static const struct { const char *name, *guid; int sized; } tables[] = {
    {"cudart_interface", "6bd5fb6c5bf4e74a8987d93912fd9df9", 1},
    {"tools_tls", "42d85a8123f6cb478298f6e78a3aecdc", 1},
    {"callback_hooks", "a094798c2e742e7493f20800200c0a66", 1},
    {"context_local_storage", "c693336e1121df11a8c368f355d89593", 0},
    {"context_checks", "263e88607cd2614392f6bbd5006dfa7e", 1},
    {"integrity", "d4082055bde6704b8d34ba123c66e1f2", 1},
    {"requirements_f8cff951", "f8cff95121468b4eb9e2fb469e7c0dd9", 1},
    {"tools_context_21318c60", "21318c60971432488ca641ff7324c8f2", 1},
    {"ctx_create_bypass", "0ca50b8c1004929a89a7d0df10e77286", 1},
    {"module_tools_6e163fbe", "6e163fbeb958444d835ce182aff1991e", 1},
    {"heap_access_195bcbf4", "195bcbf4d67d024aacc51d29cea631ae", 1},
    {"device_extended_b10541e1", "b10541e1f7c7c74a9f64f223be99f1e2", 1},
    {"unknown_69a28e9f", "69a28e9f24498b47b030c5da330ea4e9", 1},
    {"unknown_da9151d3", "da9151d33ae6cc41a5c04f26d533e328", 1},
    {"unknown_1734dc26", "1734dc26800d47458726c0f1e7dd8bca", 1},
    {"all_zero", "00000000000000000000000000000000", 1},
};

static void describe_tables(void) {
    for (unsigned i = 0; i < sizeof tables / sizeof tables[0]; i++) {
        unsigned char g[16];
        const void *t = (void *)1;
        guid(tables[i].guid, g);
        CUresult r = get_table(&t, g);
        printf("= table %s rc %d%s\n", tables[i].name, r, r && t ? " (out-pointer left set)" : "");
        if (r || !t) continue;
        void *const *s = t;
        size_t n = tables[i].sized ? (size_t)s[0] / sizeof(void *) : 4;
        if (tables[i].sized) printf("= table %s size %zu\n", tables[i].name, (size_t)s[0]);
        if (n > 128) n = 128;
        printf("= table %s null slots:", tables[i].name);
        for (size_t k = tables[i].sized; k < n; k++)
            if (!s[k]) printf(" %zu", k);
        printf("\n");
    }
}

static void integrity(void) {
    void **t = table("d4082055bde6704b8d34ba123c66e1f2"), **cudart = table("6bd5fb6c5bf4e74a8987d93912fd9df9");
    if (!t || !cudart) return;
    CUresult (*check)(unsigned, unsigned long long, uint64_t *) = (CUresult(*)(unsigned, unsigned long long, uint64_t *))t[1];
    CUresult (*version)(int *) = sym("cuDriverGetVersion");
    CUresult (*count)(int *) = sym("cuDeviceGetCount");
    CUresult (*uuid)(unsigned char *, int) = sym("cuDeviceGetUuid");
    CUresult (*attr)(int *, int, int) = sym("cuDeviceGetAttribute");
    tf_integrity_device devs[16];
    tf_integrity_record rec;
    int n = 0, v = 0;
    version(&v);
    count(&n);
    if (n > 16) n = 16;
    for (int d = 0; d < n; d++) {
        uuid(devs[d].uuid, d);
        if (attr(&devs[d].pci_domain, 50, d)) devs[d].pci_domain = 0;
        if (attr(&devs[d].pci_bus, 33, d)) devs[d].pci_bus = 0;
        if (attr(&devs[d].pci_device, 34, d)) devs[d].pci_device = 0;
    }
    memset(&rec, 0, sizeof rec);
    rec.driver_version = (uint32_t)v;
    rec.pid = (uint32_t)getpid();
    rec.cudart_table = (uint64_t)(uintptr_t)cudart;
    rec.integrity_table = (uint64_t)(uintptr_t)t;
    rec.function = (uint64_t)(uintptr_t)t[1];
    unsigned versions[] = {12080, 12081, 12082, 12085, 12090, 12092, 13000, 13001, 13002, 13005, 13009};
    for (unsigned i = 0; i < sizeof versions / sizeof versions[0]; i++) {
        uint64_t got[2] = {0, 0}, a[2], b[2];
        rec.version = versions[i];
        rec.unix_seconds = 1763700000ULL + versions[i];
        CUresult r = check(versions[i], rec.unix_seconds, got);
        rec.tid = (uint32_t)(uintptr_t)pthread_self();
        tf_integrity(&rec, devs, n, a);
        rec.tid = (uint32_t)syscall(SYS_gettid);
        tf_integrity(&rec, devs, n, b);
        const char *match = got[0] == a[0] && got[1] == a[1] ? "hmac-md2 (thread = pthread_self)"
                            : got[0] == b[0] && got[1] == b[1] ? "hmac-md2 (thread = gettid)"
                                                               : "none";
        printf("= integrity version %u rc %d matches %s\n", versions[i], r, match);
        printf("i integrity version %u answer %016llx %016llx\n", versions[i], (unsigned long long)got[0],
               (unsigned long long)got[1]);
    }
    printf("i integrity inputs driver %d pid %u pthread_self %#lx gettid %ld cudart %p table %p fn %p devices %d\n", v,
           rec.pid, (unsigned long)pthread_self(), (long)syscall(SYS_gettid), (void *)cudart, (void *)t, t[1], n);
}

/* How many bytes of a 0xAA-filled buffer an attribute query writes. */
static int written(CUresult (*attr)(void *, int, CUdeviceptr), int a, CUdeviceptr p, unsigned long long *value) {
    unsigned char buf[16];
    memset(buf, 0xAA, sizeof buf);
    if (attr(buf, a, p)) return -1;
    int n = 0;
    for (int i = 0; i < 16; i++) n = buf[i] != 0xAA ? i + 1 : n;
    *value = 0;
    memcpy(value, buf, n < 8 ? (n > 0 ? n : 0) : 8);
    return n;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: probe_tables LIBCUDA\n");
        return 2;
    }
    lib = dlopen(argv[1], RTLD_NOW | RTLD_GLOBAL);
    if (!lib) {
        printf("i dlopen %s: %s\n", argv[1], dlerror());
        return 1;
    }
    CUresult (*init)(unsigned) = sym("cuInit");
    get_table = sym("cuGetExportTable");
    printf("= cuInit %d\n", init(0));
    int v = 0, n = 0;
    ((CUresult(*)(int *))sym("cuDriverGetVersion"))(&v);
    ((CUresult(*)(int *))sym("cuDeviceGetCount"))(&n);
    printf("= driver version %d devices %d\n", v, n);
    describe_tables();

    CUresult (*retain)(CUcontext *, int) = sym("cuDevicePrimaryCtxRetain");
    CUresult (*release)(int) = sym("cuDevicePrimaryCtxRelease_v2");
    CUresult (*state)(int, unsigned *, int *) = sym("cuDevicePrimaryCtxGetState");
    CUresult (*set_current)(CUcontext) = sym("cuCtxSetCurrent");
    CUresult (*get_current)(CUcontext *) = sym("cuCtxGetCurrent");
    void **cudart = table("6bd5fb6c5bf4e74a8987d93912fd9df9");
    CUcontext early = 0, ctx = 0, cur = 0;
    unsigned flags = 0;
    int active = -1;
    if (cudart) {
        CUresult r = ((CUresult(*)(CUcontext *, int))cudart[2])(&early, 0);
        state(0, &flags, &active);
        printf("= cudart_interface[2] rc %d context %s; primary active after it %d\n", r, early ? "set" : "null", active);
    }
    retain(&ctx, 0);
    set_current(ctx);
    printf("= retained primary %s the cudart_interface[2] context\n", ctx == early ? "is" : "is not");

    void **tls = table("42d85a8123f6cb478298f6e78a3aecdc");
    if (tls) {
        CUcontext x = (CUcontext)0x5E5E5E5E;
        CUresult r = ((CUresult(*)(CUcontext *))tls[2])(&x);
        get_current(&cur);
        printf("= tools_tls[2] rc %d writes the current context %d\n", r, x == cur);
    }
    void **checks = table("263e88607cd2614392f6bbd5006dfa7e");
    if (checks) {
        unsigned f = 7;
        const void *detail = (void *)0x5E5E;
        CUresult r = ((CUresult(*)(CUcontext, unsigned *, const void **))checks[2])(ctx, &f, &detail);
        printf("= context_checks[2] rc %d flags %u detail %s\n", r, f,
               detail == (void *)0x5E5E ? "untouched" : detail ? "set" : "null");
        printf("= context_checks[3] returns %u\n", ((unsigned (*)(void))checks[3])());
    }
    void **cls = table("c693336e1121df11a8c368f355d89593");
    if (cls) {
        void *val = (void *)1;
        CUresult (*put)(CUcontext, void *, void *, void *) = (CUresult(*)(CUcontext, void *, void *, void *))cls[0];
        CUresult (*del)(CUcontext, void *) = (CUresult(*)(CUcontext, void *))cls[1];
        CUresult (*get)(void **, CUcontext, void *) = (CUresult(*)(void **, CUcontext, void *))cls[2];
        CUresult r = get(&val, 0, (void *)0x7777);
        printf("= cls get of a missing key rc %d value %s\n", r, val == (void *)1 ? "untouched" : val ? "set" : "null");
        CUresult p = put(0, (void *)0x7777, (void *)0x1234, 0);
        r = get(&val, ctx, (void *)0x7777);
        printf("= cls put rc %d get rc %d same %d\n", p, r, val == (void *)0x1234);
        p = del(ctx, (void *)0x7777);
        r = get(&val, 0, (void *)0x7777);
        printf("= cls delete rc %d then get rc %d\n", p, r);
        printf("i cls[3] %s\n", cls[3] ? "set" : "null");
    }
    void **hooks = table("a094798c2e742e7493f20800200c0a66");
    if (hooks) {
        void *b1 = 0, *b2 = 0;
        size_t n1 = 0, n2 = 0;
        ((void (*)(void **, size_t *))hooks[2])(&b1, &n1);
        ((void (*)(void **, size_t *))hooks[6])(&b2, &n2);
        printf("= callback_hooks[2] size %zu [6] size %zu buffers %s\n", n1, n2, b1 && b2 ? "set" : "missing");
    }
    void **tc = table("21318c60971432488ca641ff7324c8f2");
    CUresult (*ctx_id)(CUcontext, unsigned long long *) = dlsym(lib, "cuCtxGetId");
    if (tc && ctx_id) {
        unsigned long long a = 0, b = 0;
        CUresult r = ((CUresult(*)(CUcontext, unsigned long long *))tc[4])(ctx, &a);
        ctx_id(ctx, &b);
        printf("= tools_context[4] rc %d equals cuCtxGetId %d\n", r, a == b);
    }
    integrity();

    /* Context facts. */
    unsigned api = 0;
    int least = 0, greatest = 0;
    size_t stack = 0;
    ((CUresult(*)(CUcontext, unsigned *))sym("cuCtxGetApiVersion"))(ctx, &api);
    ((CUresult(*)(int *, int *))sym("cuCtxGetStreamPriorityRange"))(&least, &greatest);
    ((CUresult(*)(size_t *, int))sym("cuCtxGetLimit"))(&stack, 0);
    ((CUresult(*)(unsigned *))sym("cuCtxGetFlags"))(&flags);
    printf("= context api version %u priorities %d %d flags %u\n", api, least, greatest, flags);
    printf("i context stack limit %zu\n", stack);

    /* Pointer attributes: values, and how many bytes the driver writes. */
    CUresult (*alloc)(CUdeviceptr *, size_t) = sym("cuMemAlloc_v2");
    CUresult (*mfree)(CUdeviceptr) = sym("cuMemFree_v2");
    CUresult (*attr)(void *, int, CUdeviceptr) = sym("cuPointerGetAttribute");
    CUdeviceptr d = 0;
    alloc(&d, 1 << 20);
    int attrs[] = {2, 6, 8, 9, 10, 12, 13, 15, 16};
    for (unsigned i = 0; i < sizeof attrs / sizeof attrs[0]; i++) {
        unsigned long long val = 0;
        int w = written(attr, attrs[i], d + 64, &val);
        printf("= pointer attribute %d of device memory: %d bytes written, value %llu\n", attrs[i], w, val);
    }
    void *h = 0;
    CUresult r = ((CUresult(*)(void **, size_t, unsigned))sym("cuMemHostAlloc"))(&h, 1 << 16, 0);
    unsigned long long val = 0;
    int w = r ? -1 : written(attr, 2, (CUdeviceptr)(uintptr_t)h, &val);
    printf("= pointer memory type of cuMemHostAlloc memory: rc %d, %d bytes, value %llu\n", r, w, val);
    if (!r) ((CUresult(*)(void *))sym("cuMemFreeHost"))(h);
    mfree(d);
    release(0);
    state(0, &flags, &active);
    printf("= primary active after the last release %d\n", active);
    printf("i done\n");
    return 0;
}
