/* End-to-end check of the remoted driver slice, run through our libcuda.so.1
 * and libnvidia-ml.so.1. Like cudart and PyTorch, it finds the driver with
 * dlopen("libcuda.so.1"), so it proves that both injection styles
 * (LD_LIBRARY_PATH and the guide's LD_PRELOAD line) reach our libraries.
 *
 * usage: slice full MAX_BYTES SEED   the whole slice, copies from 1 byte to MAX_BYTES
 *        slice hold BYTES            allocate, then copy forever (killed by the test)
 *        slice meminfo               print "free total" of cuMemGetInfo
 *        slice expect-init-error CODE  cuInit must fail with CODE
 * Exit 0 on success; on failure one line saying what differed. */
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef int CUresult;
typedef int CUdevice;
typedef unsigned long long CUdeviceptr;
typedef void *CUcontext;
typedef void *CUstream;

static void *cuda, *nvml;
/* SLICE_NATIVE=1: run against the real driver (the GPU check's baseline);
 * checks that only our client can make (bounds of allocations, not-yet-
 * remoted calls, bogus NVML handles) are skipped there. */
static int native_mode;
#define FN(lib, ret, name, args) static ret(*name) args;
#define LOAD(lib, name)                                                        \
    do {                                                                       \
        *(void **)&name = dlsym(lib, #name);                                   \
        if (!name) { printf("FAIL missing export %s\n", #name); exit(10); }    \
    } while (0)

FN(cuda, CUresult, cuInit, (unsigned))
FN(cuda, CUresult, cuDriverGetVersion, (int *))
FN(cuda, CUresult, cuDeviceGetCount, (int *))
FN(cuda, CUresult, cuDeviceGet, (CUdevice *, int))
FN(cuda, CUresult, cuDeviceGetName, (char *, int, CUdevice))
FN(cuda, CUresult, cuDeviceGetUuid, (unsigned char *, CUdevice))
FN(cuda, CUresult, cuDeviceGetAttribute, (int *, int, CUdevice))
FN(cuda, CUresult, cuDeviceTotalMem_v2, (size_t *, CUdevice))
FN(cuda, CUresult, cuDevicePrimaryCtxRetain, (CUcontext *, CUdevice))
FN(cuda, CUresult, cuDevicePrimaryCtxRelease_v2, (CUdevice))
FN(cuda, CUresult, cuDevicePrimaryCtxGetState, (CUdevice, unsigned *, int *))
FN(cuda, CUresult, cuCtxSetCurrent, (CUcontext))
FN(cuda, CUresult, cuCtxGetCurrent, (CUcontext *))
FN(cuda, CUresult, cuCtxSynchronize, (void))
FN(cuda, CUresult, cuMemAlloc_v2, (CUdeviceptr *, size_t))
FN(cuda, CUresult, cuMemFree_v2, (CUdeviceptr))
FN(cuda, CUresult, cuMemGetInfo_v2, (size_t *, size_t *))
FN(cuda, CUresult, cuMemcpyHtoD_v2, (CUdeviceptr, const void *, size_t))
FN(cuda, CUresult, cuMemcpyDtoH_v2, (void *, CUdeviceptr, size_t))
FN(cuda, CUresult, cuMemcpyDtoD_v2, (CUdeviceptr, CUdeviceptr, size_t))
FN(cuda, CUresult, cuMemcpyHtoDAsync_v2, (CUdeviceptr, const void *, size_t, CUstream))
FN(cuda, CUresult, cuMemcpyDtoHAsync_v2, (void *, CUdeviceptr, size_t, CUstream))
FN(cuda, CUresult, cuMemcpyDtoDAsync_v2, (CUdeviceptr, CUdeviceptr, size_t, CUstream))
FN(cuda, CUresult, cuMemsetD8_v2, (CUdeviceptr, unsigned char, size_t))
FN(cuda, CUresult, cuMemsetD32_v2, (CUdeviceptr, unsigned, size_t))
FN(cuda, CUresult, cuGetErrorString, (CUresult, const char **))
FN(cuda, CUresult, cuGetErrorName, (CUresult, const char **))
FN(cuda, CUresult, cuGraphicsMapResources, (unsigned, void **, CUstream))
FN(nvml, int, nvmlInit_v2, (void))
FN(nvml, int, nvmlShutdown, (void))
FN(nvml, int, nvmlDeviceGetCount_v2, (unsigned *))
FN(nvml, int, nvmlDeviceGetHandleByIndex_v2, (unsigned, void **))
FN(nvml, int, nvmlDeviceGetName, (void *, char *, unsigned))
FN(nvml, int, nvmlDeviceGetUUID, (void *, char *, unsigned))
typedef struct { unsigned long long total, free, used; } nvmlMemory_t;
FN(nvml, int, nvmlDeviceGetMemoryInfo, (void *, nvmlMemory_t *))
FN(nvml, const char *, nvmlErrorString, (int))

#define CHECK(call)                                                            \
    do {                                                                       \
        CUresult r_ = (call);                                                  \
        if (r_ != 0) {                                                         \
            const char *s_ = "?";                                              \
            cuGetErrorName(r_, &s_);                                           \
            printf("FAIL %s:%d %s -> %d %s\n", __FILE__, __LINE__, #call, r_, s_); \
            exit(1);                                                           \
        }                                                                      \
    } while (0)
#define EXPECT(cond, ...)                                                      \
    do {                                                                       \
        if (!(cond)) { printf("FAIL line %d: ", __LINE__); printf(__VA_ARGS__); printf("\n"); exit(1); } \
    } while (0)

static uint64_t rng;
static uint64_t next_rand(void) {
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    return rng;
}
static void fill(unsigned char *p, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) { uint64_t v = next_rand(); memcpy(p + i, &v, 8); }
    for (; i < n; i++) p[i] = (unsigned char)next_rand();
}
static uint64_t fnv(const unsigned char *p, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) { h ^= p[i]; h *= 1099511628211ull; }
    return h;
}

static void load(void) {
    cuda = dlopen("libcuda.so.1", RTLD_NOW);
    if (!cuda) { printf("FAIL dlopen libcuda.so.1: %s\n", dlerror()); exit(10); }
    nvml = dlopen("libnvidia-ml.so.1", RTLD_NOW);
    if (!nvml) { printf("FAIL dlopen libnvidia-ml.so.1: %s\n", dlerror()); exit(10); }
    /* Our libraries export this marker: proves we did not get a real driver. */
    native_mode = getenv("SLICE_NATIVE") && atoi(getenv("SLICE_NATIVE")) == 1;
    EXPECT(native_mode || dlsym(cuda, "TENSOR_FUSION_CLIENT") != NULL, "libcuda.so.1 is not the tensor-fusion client");
    LOAD(cuda, cuInit); LOAD(cuda, cuDriverGetVersion); LOAD(cuda, cuDeviceGetCount);
    LOAD(cuda, cuDeviceGet); LOAD(cuda, cuDeviceGetName); LOAD(cuda, cuDeviceGetUuid);
    LOAD(cuda, cuDeviceGetAttribute); LOAD(cuda, cuDeviceTotalMem_v2);
    LOAD(cuda, cuDevicePrimaryCtxRetain); LOAD(cuda, cuDevicePrimaryCtxRelease_v2);
    LOAD(cuda, cuDevicePrimaryCtxGetState); LOAD(cuda, cuCtxSetCurrent);
    LOAD(cuda, cuCtxGetCurrent); LOAD(cuda, cuCtxSynchronize); LOAD(cuda, cuMemAlloc_v2);
    LOAD(cuda, cuMemFree_v2); LOAD(cuda, cuMemGetInfo_v2); LOAD(cuda, cuMemcpyHtoD_v2);
    LOAD(cuda, cuMemcpyDtoH_v2); LOAD(cuda, cuMemcpyDtoD_v2); LOAD(cuda, cuMemcpyHtoDAsync_v2);
    LOAD(cuda, cuMemcpyDtoHAsync_v2); LOAD(cuda, cuMemcpyDtoDAsync_v2);
    LOAD(cuda, cuMemsetD8_v2); LOAD(cuda, cuMemsetD32_v2); LOAD(cuda, cuGetErrorString);
    LOAD(cuda, cuGetErrorName); LOAD(cuda, cuGraphicsMapResources);
    LOAD(nvml, nvmlInit_v2); LOAD(nvml, nvmlShutdown); LOAD(nvml, nvmlDeviceGetCount_v2);
    LOAD(nvml, nvmlDeviceGetHandleByIndex_v2); LOAD(nvml, nvmlDeviceGetName);
    LOAD(nvml, nvmlDeviceGetUUID); LOAD(nvml, nvmlDeviceGetMemoryInfo); LOAD(nvml, nvmlErrorString);
}

static CUcontext setup(void) {
    CUdevice dev;
    CUcontext ctx, cur;
    CHECK(cuInit(0));
    CHECK(cuDeviceGet(&dev, 0));
    CHECK(cuDevicePrimaryCtxRetain(&ctx, dev));
    CHECK(cuCtxSetCurrent(ctx));
    CHECK(cuCtxGetCurrent(&cur));
    EXPECT(cur == ctx, "cuCtxGetCurrent returned %p, expected %p", cur, ctx);
    return ctx;
}

/* One size: HtoD, DtoD, DtoH (sync and async) with random data; memsets. */
static uint64_t copy_round(size_t n) {
    unsigned char *src = malloc(n), *dst = malloc(n);
    EXPECT(src && dst, "host malloc of %zu bytes failed", n);
    fill(src, n);
    CUdeviceptr a, b;
    CHECK(cuMemAlloc_v2(&a, n));
    CHECK(cuMemAlloc_v2(&b, n));
    CHECK(cuMemcpyHtoD_v2(a, src, n));
    CHECK(cuMemcpyDtoD_v2(b, a, n));
    memset(dst, 0, n);
    CHECK(cuMemcpyDtoH_v2(dst, b, n));
    EXPECT(memcmp(src, dst, n) == 0, "sync round trip of %zu bytes differs", n);
    /* async forms on the default stream */
    fill(src, n);
    CHECK(cuMemcpyHtoDAsync_v2(b, src, n, NULL));
    CHECK(cuMemcpyDtoDAsync_v2(a, b, n, NULL));
    memset(dst, 0, n);
    CHECK(cuMemcpyDtoHAsync_v2(dst, a, n, NULL));
    CHECK(cuCtxSynchronize());
    EXPECT(memcmp(src, dst, n) == 0, "async round trip of %zu bytes differs", n);
    uint64_t h = fnv(dst, n);
    /* memset D8 on the whole buffer, D32 on the aligned part */
    CHECK(cuMemsetD8_v2(a, 0x5a, n));
    CHECK(cuMemcpyDtoH_v2(dst, a, n));
    for (size_t i = 0; i < n; i += 1 + n / 97) EXPECT(dst[i] == 0x5a, "memsetD8 byte %zu is %#x", i, dst[i]);
    if (n >= 4) {
        CHECK(cuMemsetD32_v2(a, 0xdeadbeefu, n / 4));
        CHECK(cuMemcpyDtoH_v2(dst, a, n));
        for (size_t i = 0; i + 4 <= n; i += 4 * (1 + n / 389)) {
            unsigned v; memcpy(&v, dst + i, 4);
            EXPECT(v == 0xdeadbeefu, "memsetD32 word at %zu is %#x", i, v);
        }
    }
    CHECK(cuMemFree_v2(a));
    CHECK(cuMemFree_v2(b));
    free(src); free(dst);
    return h;
}

static int full(size_t max, uint64_t seed) {
    int ver = 0, count = 0, sm = 0;
    char name[256];
    unsigned char uuid[16];
    size_t total = 0, mfree = 0, mtotal = 0;
    CHECK(cuDriverGetVersion(&ver));
    EXPECT(ver >= 12000, "driver version %d", ver);
    CUcontext ctx = setup();
    CHECK(cuDeviceGetCount(&count));
    EXPECT(count >= 1, "device count %d", count);
    CHECK(cuDeviceGetName(name, sizeof name, 0));
    CHECK(cuDeviceGetUuid(uuid, 0));
    CHECK(cuDeviceGetAttribute(&sm, 16 /* MULTIPROCESSOR_COUNT */, 0));
    EXPECT(sm > 0, "multiprocessor count %d", sm);
    CHECK(cuDeviceTotalMem_v2(&total, 0));
    unsigned flags; int active;
    CHECK(cuDevicePrimaryCtxGetState(0, &flags, &active));
    EXPECT(active == 1, "primary context not active after retain");
    CHECK(cuMemGetInfo_v2(&mfree, &mtotal));
    EXPECT(mtotal == total && mfree <= mtotal, "mem info %zu/%zu vs total %zu", mfree, mtotal, total);
    printf("device %s, %d SMs, %zu MiB, driver %d\n", name, sm, total >> 20, ver);
    fflush(stdout);

    rng = seed * 0x9E3779B97F4A7C15ull + 1; /* distinct, nonzero states for distinct seeds */
    size_t sizes[] = {1, 7, 4096, 65537, (1u << 20) + 3, (16u << 20) + 1, 64u << 20, 256u << 20};
    uint64_t digest = 0;
    for (unsigned i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        if (sizes[i] > max) continue;
        digest ^= copy_round(sizes[i]) + i;
    }
    /* errors: bad pointers, out of memory, strings, not-yet-remoted calls */
    CUdeviceptr p;
    char byte;
    EXPECT(cuMemFree_v2(0x1234) == 1, "freeing a bogus pointer must be CUDA_ERROR_INVALID_VALUE");
    CHECK(cuMemAlloc_v2(&p, 16));
    if (!native_mode) EXPECT(cuMemcpyDtoH_v2(&byte, p + 16, 1) == 1, "reading past an allocation must fail");
    CHECK(cuMemFree_v2(p));
    EXPECT(cuMemAlloc_v2(&p, (size_t)1 << 50) == 2, "a 1 PiB allocation must be CUDA_ERROR_OUT_OF_MEMORY");
    const char *s = NULL;
    CHECK(cuGetErrorString(2, &s));
    EXPECT(strcmp(s, "out of memory") == 0, "cuGetErrorString(2) = %s", s);
    /* Graphics interop is not remoted (streams are, since issue 3). */
    if (!native_mode) EXPECT(cuGraphicsMapResources(0, NULL, NULL) == 801, "a not-yet-remoted call must be CUDA_ERROR_NOT_SUPPORTED");
    CHECK(cuDevicePrimaryCtxRelease_v2(0));
    (void)ctx;

    /* NVML shares the session */
    unsigned n = 0;
    void *h;
    char uuid_s[96];
    nvmlMemory_t m;
    EXPECT(nvmlInit_v2() == 0, "nvmlInit_v2");
    EXPECT(nvmlDeviceGetCount_v2(&n) == 0 && n == (unsigned)count, "NVML count %u vs CUDA %d", n, count);
    EXPECT(nvmlDeviceGetHandleByIndex_v2(0, &h) == 0, "nvml handle");
    EXPECT(nvmlDeviceGetName(h, name, sizeof name) == 0, "nvml name");
    EXPECT(nvmlDeviceGetUUID(h, uuid_s, sizeof uuid_s) == 0 && strncmp(uuid_s, "GPU-", 4) == 0, "nvml uuid %s", uuid_s);
    /* NVML counts memory CUDA reserves for itself, so totals differ slightly. */
    EXPECT(nvmlDeviceGetMemoryInfo(h, &m) == 0 && m.total >= total - total / 8 && m.total <= total + total / 8,
           "nvml memory total %llu vs %zu", m.total, total);
    if (!native_mode) EXPECT(nvmlDeviceGetMemoryInfo((void *)0x10, &m) == 2, "a bogus NVML handle must be INVALID_ARGUMENT");
    EXPECT(strcmp(nvmlErrorString(3), "Not Supported") == 0, "nvmlErrorString");
    EXPECT(nvmlShutdown() == 0, "nvmlShutdown");
    printf("PASS digest %016llx\n", (unsigned long long)digest);
    return 0;
}

int main(int argc, char **argv) {
    load();
    if (argc >= 4 && strcmp(argv[1], "full") == 0) return full(strtoull(argv[2], 0, 10), strtoull(argv[3], 0, 10));
    if (argc >= 3 && strcmp(argv[1], "expect-init-error") == 0) {
        CUresult r = cuInit(0), want = atoi(argv[2]);
        EXPECT(r == want, "cuInit returned %d, expected %d", r, want);
        printf("PASS cuInit -> %d\n", r);
        return 0;
    }
    if (argc >= 2 && strcmp(argv[1], "meminfo") == 0) {
        size_t f, t;
        setup();
        CHECK(cuMemGetInfo_v2(&f, &t));
        printf("%zu %zu\n", f, t);
        return 0;
    }
    if (argc >= 3 && strcmp(argv[1], "hold") == 0) {
        size_t n = strtoull(argv[2], 0, 10);
        setup();
        CUdeviceptr a;
        unsigned char *buf = malloc(n);
        fill(buf, n);
        CHECK(cuMemAlloc_v2(&a, n));
        printf("holding\n");
        fflush(stdout);
        for (;;) CHECK(cuMemcpyHtoD_v2(a, buf, n));
    }
    printf("usage: slice full MAX SEED | hold BYTES | meminfo | expect-init-error CODE\n");
    return 2;
}
