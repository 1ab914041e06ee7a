/* End-to-end check of the VMM API, stream-ordered pools, stream memory
 * operations, address ranges, host functions, stream capture and graphs
 * through our libcuda.so.1
 * against the TEST backend (host memory, no GPU). The same calls on a GPU
 * are proven by tests/gpu/cuda (vmm.cu, mempool.cu, host_callbacks.cu).
 *
 * usage: mem full     everything below, then "PASS ..."
 *        mem limit    under a worker memory limit of 64 MB: cuMemCreate and
 *                     cuMemAllocAsync are charged to it
 *        mem hold     map VMM memory, keep pool allocations; print "holding";
 *                     sleep (killed by the test)
 * Exit 0 on success; on failure one line saying what differed. */
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef int CUresult;
typedef int CUdevice;
typedef unsigned long long CUdeviceptr, CUmemGenericAllocationHandle;
typedef void *CUcontext, *CUstream, *CUmemoryPool;

typedef struct { int type; int id; } CUmemLocation;
typedef struct {
    int type, requestedHandleTypes;
    CUmemLocation location;
    void *win32HandleMetaData;
    unsigned char compressionType, gpuDirectRDMACapable;
    unsigned short usage;
    unsigned char reserved[4];
} CUmemAllocationProp;
typedef struct { CUmemLocation location; int flags; } CUmemAccessDesc;
typedef struct {
    int allocType, handleTypes;
    CUmemLocation location;
    void *win32SecurityAttributes;
    size_t maxSize;
    unsigned short usage;
    unsigned char gpuDirectRDMACapable;
    unsigned char reserved[53];
} CUmemPoolProps;
typedef union {
    int operation;
    struct { int operation; CUdeviceptr address; unsigned long long value; unsigned flags; CUdeviceptr alias; } v;
    unsigned long long pad[6];
} CUstreamBatchMemOpParams;

static void *cuda;
#define FN(ret, name, args) static ret(*name) args;
#define LOAD(name)                                                             \
    do {                                                                       \
        *(void **)&name = dlsym(cuda, #name);                                  \
        if (!name) { printf("FAIL missing export %s\n", #name); exit(10); }    \
    } while (0)

FN(CUresult, cuInit, (unsigned))
FN(CUresult, cuDeviceGet, (CUdevice *, int))
FN(CUresult, cuDevicePrimaryCtxRetain, (CUcontext *, CUdevice))
FN(CUresult, cuCtxSetCurrent, (CUcontext))
FN(CUresult, cuGetErrorName, (CUresult, const char **))
FN(CUresult, cuMemAlloc_v2, (CUdeviceptr *, size_t))
FN(CUresult, cuMemFree_v2, (CUdeviceptr))
FN(CUresult, cuMemcpyHtoD_v2, (CUdeviceptr, const void *, size_t))
FN(CUresult, cuMemcpyDtoH_v2, (void *, CUdeviceptr, size_t))
FN(CUresult, cuMemcpyHtoDAsync_v2, (CUdeviceptr, const void *, size_t, CUstream))
FN(CUresult, cuMemsetD32Async, (CUdeviceptr, unsigned, size_t, CUstream))
FN(CUresult, cuMemHostAlloc, (void **, size_t, unsigned))
FN(CUresult, cuMemFreeHost, (void *))
FN(CUresult, cuMemcpyDtoHAsync_v2, (void *, CUdeviceptr, size_t, CUstream))
FN(CUresult, cuMemcpyDtoD_v2, (CUdeviceptr, CUdeviceptr, size_t))
FN(CUresult, cuStreamCreate, (CUstream *, unsigned))
FN(CUresult, cuStreamDestroy_v2, (CUstream))
FN(CUresult, cuStreamSynchronize, (CUstream))
FN(CUresult, cuMemGetAllocationGranularity, (size_t *, const CUmemAllocationProp *, int))
FN(CUresult, cuMemAddressReserve, (CUdeviceptr *, size_t, size_t, CUdeviceptr, unsigned long long))
FN(CUresult, cuMemAddressFree, (CUdeviceptr, size_t))
FN(CUresult, cuMemCreate, (CUmemGenericAllocationHandle *, size_t, const CUmemAllocationProp *, unsigned long long))
FN(CUresult, cuMemRelease, (CUmemGenericAllocationHandle))
FN(CUresult, cuMemMap, (CUdeviceptr, size_t, size_t, CUmemGenericAllocationHandle, unsigned long long))
FN(CUresult, cuMemUnmap, (CUdeviceptr, size_t))
FN(CUresult, cuMemSetAccess, (CUdeviceptr, size_t, const CUmemAccessDesc *, size_t))
FN(CUresult, cuMemGetAccess, (unsigned long long *, const CUmemLocation *, CUdeviceptr))
FN(CUresult, cuMemRetainAllocationHandle, (CUmemGenericAllocationHandle *, void *))
FN(CUresult, cuMemGetAllocationPropertiesFromHandle, (CUmemAllocationProp *, CUmemGenericAllocationHandle))
FN(CUresult, cuMemGetAddressRange_v2, (CUdeviceptr *, size_t *, CUdeviceptr))
FN(CUresult, cuMemAllocAsync, (CUdeviceptr *, size_t, CUstream))
FN(CUresult, cuMemAllocFromPoolAsync, (CUdeviceptr *, size_t, CUmemoryPool, CUstream))
FN(CUresult, cuMemFreeAsync, (CUdeviceptr, CUstream))
FN(CUresult, cuDeviceGetDefaultMemPool, (CUmemoryPool *, CUdevice))
FN(CUresult, cuDeviceGetMemPool, (CUmemoryPool *, CUdevice))
FN(CUresult, cuDeviceSetMemPool, (CUdevice, CUmemoryPool))
FN(CUresult, cuMemPoolCreate, (CUmemoryPool *, const CUmemPoolProps *))
FN(CUresult, cuMemPoolDestroy, (CUmemoryPool))
FN(CUresult, cuMemPoolSetAttribute, (CUmemoryPool, int, void *))
FN(CUresult, cuMemPoolGetAttribute, (CUmemoryPool, int, void *))
FN(CUresult, cuMemPoolTrimTo, (CUmemoryPool, size_t))
FN(CUresult, cuStreamWriteValue32_v2, (CUstream, CUdeviceptr, unsigned, unsigned))
FN(CUresult, cuStreamWaitValue32_v2, (CUstream, CUdeviceptr, unsigned, unsigned))
FN(CUresult, cuStreamWriteValue64_v2, (CUstream, CUdeviceptr, unsigned long long, unsigned))
FN(CUresult, cuStreamWaitValue64_v2, (CUstream, CUdeviceptr, unsigned long long, unsigned))
FN(CUresult, cuStreamBatchMemOp_v2, (CUstream, unsigned, CUstreamBatchMemOpParams *, unsigned))
FN(CUresult, cuLaunchHostFunc, (CUstream, void (*)(void *), void *))
FN(CUresult, cuStreamAddCallback, (CUstream, void (*)(CUstream, CUresult, void *), void *, unsigned))
typedef void *CUgraph, *CUgraphExec;
typedef struct {
    size_t srcXInBytes, srcY; int srcMemoryType; const void *srcHost; CUdeviceptr srcDevice; void *srcArray; size_t srcPitch;
    size_t dstXInBytes, dstY; int dstMemoryType; void *dstHost; CUdeviceptr dstDevice; void *dstArray; size_t dstPitch;
    size_t WidthInBytes, Height;
} CUDA_MEMCPY2D;
typedef struct {
    size_t srcXInBytes, srcY, srcZ, srcLOD; int srcMemoryType; const void *srcHost; CUdeviceptr srcDevice; void *srcArray;
    void *reserved0; size_t srcPitch, srcHeight;
    size_t dstXInBytes, dstY, dstZ, dstLOD; int dstMemoryType; void *dstHost; CUdeviceptr dstDevice; void *dstArray;
    void *reserved1; size_t dstPitch, dstHeight;
    size_t WidthInBytes, Height, Depth;
} CUDA_MEMCPY3D;
FN(CUresult, cuMemAllocPitch_v2, (CUdeviceptr *, size_t *, size_t, size_t, unsigned))
FN(CUresult, cuMemcpy2D_v2, (const CUDA_MEMCPY2D *))
FN(CUresult, cuMemcpy2DAsync_v2, (const CUDA_MEMCPY2D *, CUstream))
FN(CUresult, cuMemcpy3D_v2, (const CUDA_MEMCPY3D *))
FN(CUresult, cuMemsetD2D8_v2, (CUdeviceptr, size_t, unsigned char, size_t, size_t))
FN(CUresult, cuMemcpy, (CUdeviceptr, CUdeviceptr, size_t))
FN(CUresult, cuMemcpyAsync, (CUdeviceptr, CUdeviceptr, size_t, CUstream))
FN(CUresult, cuStreamBeginCapture_v2, (CUstream, int))
FN(CUresult, cuStreamEndCapture, (CUstream, CUgraph *))
FN(CUresult, cuStreamIsCapturing, (CUstream, int *))
FN(CUresult, cuStreamGetCaptureInfo_v2, (CUstream, int *, unsigned long long *, CUgraph *, const void **, size_t *))
FN(CUresult, cuThreadExchangeStreamCaptureMode, (int *))
FN(CUresult, cuGraphInstantiateWithFlags, (CUgraphExec *, CUgraph, unsigned long long))
FN(CUresult, cuGraphLaunch, (CUgraphExec, CUstream))
FN(CUresult, cuGraphGetNodes, (CUgraph, void **, size_t *))
FN(CUresult, cuGraphExecDestroy, (CUgraphExec))
FN(CUresult, cuGraphDestroy, (CUgraph))
FN(CUresult, cuStreamGetId, (CUstream, unsigned long long *))

#define CHECK(call)                                                            \
    do {                                                                       \
        CUresult r_ = (call);                                                  \
        if (r_ != 0) {                                                         \
            const char *s_ = "?";                                              \
            cuGetErrorName(r_, &s_);                                           \
            printf("FAIL line %d: %s -> %d %s\n", __LINE__, #call, r_, s_);   \
            exit(1);                                                           \
        }                                                                      \
    } while (0)
#define EXPECT_RC(want, call)                                                  \
    do {                                                                       \
        CUresult r_ = (call);                                                  \
        if (r_ != (want)) {                                                    \
            printf("FAIL line %d: %s -> %d, expected %d\n", __LINE__, #call, r_, (want)); \
            exit(1);                                                           \
        }                                                                      \
    } while (0)
#define EXPECT(cond, ...)                                                      \
    do {                                                                       \
        if (!(cond)) { printf("FAIL line %d: ", __LINE__); printf(__VA_ARGS__); printf("\n"); exit(1); } \
    } while (0)

enum { INVALID_VALUE = 1, OUT_OF_MEMORY = 2, INVALID_HANDLE = 400, NOT_FOUND = 500 };
enum { RELEASE_THRESHOLD = 4, REUSE_ALLOW_OPPORTUNISTIC = 2 };
#define MB (1ull << 20)

static void load(void) {
    cuda = dlopen("libcuda.so.1", RTLD_NOW);
    if (!cuda) { printf("FAIL dlopen libcuda.so.1: %s\n", dlerror()); exit(10); }
    LOAD(cuInit); LOAD(cuDeviceGet); LOAD(cuDevicePrimaryCtxRetain); LOAD(cuCtxSetCurrent);
    LOAD(cuGetErrorName); LOAD(cuMemAlloc_v2); LOAD(cuMemFree_v2); LOAD(cuMemcpyHtoD_v2);
    LOAD(cuMemcpyDtoH_v2); LOAD(cuMemcpyHtoDAsync_v2); LOAD(cuMemsetD32Async);
    LOAD(cuStreamCreate); LOAD(cuStreamDestroy_v2); LOAD(cuStreamSynchronize);
    LOAD(cuMemGetAllocationGranularity); LOAD(cuMemAddressReserve); LOAD(cuMemAddressFree);
    LOAD(cuMemCreate); LOAD(cuMemRelease); LOAD(cuMemMap); LOAD(cuMemUnmap);
    LOAD(cuMemSetAccess); LOAD(cuMemGetAccess); LOAD(cuMemRetainAllocationHandle);
    LOAD(cuMemGetAllocationPropertiesFromHandle); LOAD(cuMemGetAddressRange_v2);
    LOAD(cuMemAllocAsync); LOAD(cuMemAllocFromPoolAsync); LOAD(cuMemFreeAsync);
    LOAD(cuDeviceGetDefaultMemPool); LOAD(cuDeviceGetMemPool); LOAD(cuDeviceSetMemPool);
    LOAD(cuMemPoolCreate); LOAD(cuMemPoolDestroy); LOAD(cuMemPoolSetAttribute);
    LOAD(cuMemPoolGetAttribute); LOAD(cuMemPoolTrimTo); LOAD(cuStreamWriteValue32_v2);
    LOAD(cuStreamWaitValue32_v2); LOAD(cuStreamWriteValue64_v2); LOAD(cuStreamWaitValue64_v2);
    LOAD(cuStreamBatchMemOp_v2); LOAD(cuLaunchHostFunc); LOAD(cuStreamAddCallback);
    LOAD(cuStreamBeginCapture_v2); LOAD(cuStreamEndCapture); LOAD(cuStreamIsCapturing);
    LOAD(cuStreamGetCaptureInfo_v2); LOAD(cuThreadExchangeStreamCaptureMode);
    LOAD(cuGraphInstantiateWithFlags); LOAD(cuGraphLaunch); LOAD(cuGraphGetNodes);
    LOAD(cuGraphExecDestroy); LOAD(cuGraphDestroy); LOAD(cuStreamGetId);
    LOAD(cuMemAllocPitch_v2); LOAD(cuMemcpy2D_v2); LOAD(cuMemcpy2DAsync_v2); LOAD(cuMemcpy3D_v2);
    LOAD(cuMemsetD2D8_v2); LOAD(cuMemcpy); LOAD(cuMemcpyAsync);
    LOAD(cuMemHostAlloc); LOAD(cuMemFreeHost); LOAD(cuMemcpyDtoHAsync_v2); LOAD(cuMemcpyDtoD_v2);
}

static CUcontext setup(void) {
    CUdevice dev;
    CUcontext ctx;
    CHECK(cuInit(0));
    CHECK(cuDeviceGet(&dev, 0));
    CHECK(cuDevicePrimaryCtxRetain(&ctx, dev));
    CHECK(cuCtxSetCurrent(ctx));
    return ctx;
}

static CUmemAllocationProp device_prop(void) {
    CUmemAllocationProp p;
    memset(&p, 0, sizeof p);
    p.type = 1;          /* PINNED */
    p.location.type = 1; /* DEVICE */
    p.location.id = 0;
    return p;
}

static void fill(unsigned char *p, size_t n, unsigned seed) {
    for (size_t i = 0; i < n; i++) { seed = seed * 1103515245u + 12345u; p[i] = (unsigned char)(seed >> 16); }
}

static void vmm(void) {
    CUmemAllocationProp prop = device_prop();
    size_t g = 0;
    CHECK(cuMemGetAllocationGranularity(&g, &prop, 0));
    EXPECT(g > 0 && (g & (g - 1)) == 0, "granularity %zu is not a power of two", g);
    size_t again = 0;
    CHECK(cuMemGetAllocationGranularity(&again, &prop, 0)); /* answered from the cache */
    EXPECT(again == g, "granularity changed: %zu then %zu", g, again);

    CUdeviceptr base = 0;
    CHECK(cuMemAddressReserve(&base, 4 * g, 0, 0, 0));
    EXPECT(base != 0 && base % g == 0, "reservation %llx not aligned to %zu", base, g);
    CUmemGenericAllocationHandle h1, h2, bogus = 0x1234;
    CHECK(cuMemCreate(&h1, g, &prop, 0));
    CHECK(cuMemCreate(&h2, g, &prop, 0));
    EXPECT(h1 != h2, "two allocations got one handle");
    CHECK(cuMemMap(base, g, 0, h1, 0));
    /* Grow the mapping right after the first chunk, as expandable segments do. */
    CHECK(cuMemMap(base + g, g, 0, h2, 0));
    EXPECT_RC(INVALID_VALUE, cuMemMap(base, g, 0, h2, 0));             /* already mapped */
    EXPECT_RC(INVALID_VALUE, cuMemMap(base + 4 * g, g, 0, h2, 0));     /* outside the reservation */
    EXPECT_RC(INVALID_HANDLE, cuMemMap(base + 2 * g, g, 0, bogus, 0)); /* not a handle */
    CUmemAccessDesc acc = { { 1, 0 }, 3 /* READWRITE */ };
    CHECK(cuMemSetAccess(base, 2 * g, &acc, 1));
    unsigned long long flags = 0;
    CHECK(cuMemGetAccess(&flags, &acc.location, base + g + 64));
    EXPECT(flags == 3, "access flags %llu", flags);

    size_t n = 64 << 10;
    unsigned char *src = malloc(n), *dst = malloc(n);
    for (int chunk = 0; chunk < 2; chunk++) {
        CUdeviceptr at = base + chunk * g + 4096;
        fill(src, n, 7 + chunk);
        CHECK(cuMemcpyHtoD_v2(at, src, n));
        memset(dst, 0, n);
        CHECK(cuMemcpyDtoH_v2(dst, at, n));
        EXPECT(memcmp(src, dst, n) == 0, "data through mapping %d differs", chunk);
    }
    EXPECT_RC(INVALID_VALUE, cuMemcpyHtoD_v2(base + 2 * g, src, 16)); /* reserved, not mapped */

    CUmemGenericAllocationHandle r = 0;
    CHECK(cuMemRetainAllocationHandle(&r, (void *)(uintptr_t)(base + g + 100)));
    EXPECT(r == h2, "retained handle %llx is not %llx", r, h2);
    CHECK(cuMemRelease(r));
    CUmemAllocationProp back;
    memset(&back, 0xFF, sizeof back);
    CHECK(cuMemGetAllocationPropertiesFromHandle(&back, h1));
    EXPECT(back.type == 1 && back.location.type == 1 && back.location.id == 0,
           "properties from handle: type %d location %d/%d", back.type, back.location.type, back.location.id);
    CUdeviceptr rb = 0;
    size_t rs = 0;
    CHECK(cuMemGetAddressRange_v2(&rb, &rs, base + g + 5));
    EXPECT(rb == base + g && rs == g, "address range %llx+%zu", rb, rs);

    EXPECT_RC(INVALID_VALUE, cuMemAddressFree(base, 4 * g)); /* still mapped */
    CHECK(cuMemUnmap(base, 2 * g));                          /* both mappings at once */
    EXPECT_RC(INVALID_VALUE, cuMemcpyHtoD_v2(base + 4096, src, 16));
    CHECK(cuMemRelease(h1));
    CHECK(cuMemRelease(h2));
    EXPECT_RC(INVALID_VALUE, cuMemRelease(h1));
    CHECK(cuMemAddressFree(base, 4 * g));
    EXPECT_RC(INVALID_VALUE, cuMemAddressFree(base, 4 * g));
    free(src);
    free(dst);
}

static void pools(CUstream s) {
    size_t n = 1 << 20;
    unsigned char *src = malloc(n), *dst = malloc(n);
    fill(src, n, 99);
    CUdeviceptr p = 0;
    CHECK(cuMemAllocAsync(&p, n, s));
    CHECK(cuMemcpyHtoDAsync_v2(p, src, n, s));
    CHECK(cuStreamSynchronize(s));
    CHECK(cuMemcpyDtoH_v2(dst, p, n));
    EXPECT(memcmp(src, dst, n) == 0, "pool allocation data differs");
    CUdeviceptr rb = 0;
    size_t rs = 0;
    CHECK(cuMemGetAddressRange_v2(&rb, &rs, p + 77));
    EXPECT(rb == p && rs == n, "pool address range %llx+%zu", rb, rs);
    CHECK(cuMemFreeAsync(p, s));
    CHECK(cuStreamSynchronize(s));
    EXPECT_RC(INVALID_VALUE, cuMemcpyHtoD_v2(p, src, 16)); /* freed */
    EXPECT_RC(NOT_FOUND, cuMemGetAddressRange_v2(&rb, &rs, p));

    CUmemoryPool def = 0, cur = 0, mine = 0;
    CHECK(cuDeviceGetDefaultMemPool(&def, 0));
    CHECK(cuDeviceGetMemPool(&cur, 0));
    EXPECT(def && def == cur, "default pool %p, current %p", def, cur);
    CUmemPoolProps props;
    memset(&props, 0, sizeof props);
    props.allocType = 1;
    props.location.type = 1;
    CHECK(cuMemPoolCreate(&mine, &props));
    unsigned long long thr = ~0ull, thr_back = 0;
    CHECK(cuMemPoolSetAttribute(mine, RELEASE_THRESHOLD, &thr));
    CHECK(cuMemPoolGetAttribute(mine, RELEASE_THRESHOLD, &thr_back));
    EXPECT(thr_back == thr, "release threshold %llx", thr_back);
    int opp = 0, opp_back = 7;
    CHECK(cuMemPoolSetAttribute(mine, REUSE_ALLOW_OPPORTUNISTIC, &opp));
    CHECK(cuMemPoolGetAttribute(mine, REUSE_ALLOW_OPPORTUNISTIC, &opp_back));
    EXPECT(opp_back == 0, "int attribute read back %d", opp_back);
    CUdeviceptr q = 0;
    CHECK(cuMemAllocFromPoolAsync(&q, 4096, mine, s));
    CHECK(cuMemsetD32Async(q, 0xC0FFEE11u, 1024, s));
    CHECK(cuStreamSynchronize(s));
    unsigned words[1024];
    CHECK(cuMemcpyDtoH_v2(words, q, sizeof words));
    for (int i = 0; i < 1024; i++) EXPECT(words[i] == 0xC0FFEE11u, "word %d = %x", i, words[i]);
    CHECK(cuMemFreeAsync(q, s));
    CHECK(cuDeviceSetMemPool(0, mine));
    CHECK(cuDeviceGetMemPool(&cur, 0));
    EXPECT(cur == mine, "current pool after set: %p", cur);
    EXPECT_RC(INVALID_VALUE, cuMemPoolDestroy(def)); /* a device's default pool */
    CHECK(cuMemPoolTrimTo(mine, 0));
    CHECK(cuStreamSynchronize(s));
    CHECK(cuMemPoolDestroy(mine));
    CHECK(cuDeviceGetMemPool(&cur, 0));
    EXPECT(cur == def, "current pool after destroying it: %p", cur);
    EXPECT_RC(INVALID_VALUE, cuMemPoolTrimTo(mine, 0));
    free(src);
    free(dst);
}

static void mem_ops(CUstream s) {
    CUdeviceptr d = 0;
    CHECK(cuMemAlloc_v2(&d, 64));
    CHECK(cuStreamWriteValue32_v2(s, d, 42, 0));
    CHECK(cuStreamWaitValue32_v2(s, d, 42, 1 /* EQ */));
    CHECK(cuStreamWriteValue64_v2(s, d + 8, 1ull << 40, 0));
    CHECK(cuStreamWaitValue64_v2(s, d + 8, 1ull << 39, 0 /* GEQ */));
    CUstreamBatchMemOpParams ops[2];
    memset(ops, 0, sizeof ops);
    ops[0].v.operation = 2; /* WRITE_VALUE_32 */
    ops[0].v.address = d + 16;
    ops[0].v.value = 7;
    ops[1].v.operation = 1; /* WAIT_VALUE_32 */
    ops[1].v.address = d + 16;
    ops[1].v.value = 7;
    CHECK(cuStreamBatchMemOp_v2(s, 2, ops, 0));
    CHECK(cuStreamSynchronize(s));
    unsigned char back[24];
    CHECK(cuMemcpyDtoH_v2(back, d, sizeof back));
    unsigned v32, v16;
    unsigned long long v64;
    memcpy(&v32, back, 4);
    memcpy(&v64, back + 8, 8);
    memcpy(&v16, back + 16, 4);
    EXPECT(v32 == 42 && v64 == 1ull << 40 && v16 == 7, "stream values %u %llx %u", v32, v64, v16);
    /* Outside this client's memory: the enqueued call fails at the next sync. */
    CHECK(cuStreamWriteValue32_v2(s, d + 4096, 1, 0));
    EXPECT_RC(INVALID_VALUE, cuStreamSynchronize(s));
    ops[0].v.address = 0x10;
    CHECK(cuStreamBatchMemOp_v2(s, 1, ops, 0));
    EXPECT_RC(INVALID_VALUE, cuStreamSynchronize(s));
    CHECK(cuMemFree_v2(d));
}

static int order[8], norder;
static CUstream seen_stream;
static CUresult seen_status = -1;
static unsigned char *host_buf;
static CUdeviceptr dev_buf;
static void host_fn(void *arg) {
    order[norder++] = (int)(intptr_t)arg;
    /* Stream order: the copy enqueued before this function is complete. */
    unsigned char b[256];
    if (cuMemcpyDtoH_v2(b, dev_buf, sizeof b) != 0 || memcmp(b, host_buf, sizeof b) != 0)
        order[norder++] = -1;
}
static void callback(CUstream s, CUresult status, void *arg) {
    seen_stream = s;
    seen_status = status;
    order[norder++] = (int)(intptr_t)arg;
}

static void host_funcs(CUstream s) {
    host_buf = malloc(256);
    fill(host_buf, 256, 5);
    CHECK(cuMemAlloc_v2(&dev_buf, 256));
    CHECK(cuMemcpyHtoDAsync_v2(dev_buf, host_buf, 256, s));
    CHECK(cuLaunchHostFunc(s, host_fn, (void *)1));
    CHECK(cuStreamAddCallback(s, callback, (void *)2, 0));
    CHECK(cuLaunchHostFunc(s, host_fn, (void *)3));
    CHECK(cuStreamSynchronize(s));
    EXPECT(norder == 3 && order[0] == 1 && order[1] == 2 && order[2] == 3,
           "host function order: %d entries, %d %d %d", norder, order[0], order[1], order[2]);
    EXPECT(seen_stream == s && seen_status == 0, "callback got stream %p status %d", seen_stream, seen_status);
    EXPECT_RC(INVALID_VALUE, cuStreamAddCallback(s, callback, 0, 1)); /* flags must be 0 */
    CHECK(cuMemFree_v2(dev_buf));
    free(host_buf);
}

enum { CAPTURE_UNSUPPORTED = 900 };
static void captured_fn(void *arg) { (void)arg; }

static void graphs(CUstream s) {
    int st = -1;
    CHECK(cuStreamIsCapturing(s, &st));
    EXPECT(st == 0, "capturing before the capture: %d", st);
    CUdeviceptr d = 0;
    CHECK(cuMemAlloc_v2(&d, 4096));
    CHECK(cuStreamBeginCapture_v2(s, 0 /* global */));
    CHECK(cuStreamIsCapturing(s, &st));
    EXPECT(st == 1, "not capturing during the capture: %d", st);
    unsigned long long id = 0;
    CUgraph during = 0;
    size_t ndeps = 99;
    CHECK(cuStreamGetCaptureInfo_v2(s, &st, &id, &during, 0, &ndeps));
    EXPECT(st == 1 && id != 0 && during != 0 && ndeps == 0, "capture info %d %llu %p %zu", st, id, during, ndeps);
    int mode = 2; /* relaxed */
    CHECK(cuThreadExchangeStreamCaptureMode(&mode));
    EXPECT(mode == 0, "previous capture mode %d", mode);
    CHECK(cuThreadExchangeStreamCaptureMode(&mode));
    EXPECT(mode == 2, "capture mode read back %d", mode);
    CHECK(cuMemsetD32Async(d, 7, 1024, s));
    unsigned char host[16] = { 0 };
    /* Pageable host memory cannot be captured through the client: refused,
     * clearly. A host function is captured as a host node. */
    EXPECT_RC(CAPTURE_UNSUPPORTED, cuMemcpyHtoDAsync_v2(d, host, 16, s));
    CHECK(cuLaunchHostFunc(s, captured_fn, 0));
    CUgraph g = 0;
    CHECK(cuStreamEndCapture(s, &g));
    EXPECT(g == during, "graph %p is not the one being captured %p", g, during);
    CHECK(cuStreamIsCapturing(s, &st));
    EXPECT(st == 0, "capturing after the capture: %d", st);
    size_t n = 99;
    CHECK(cuGraphGetNodes(g, 0, &n));
    CUgraphExec e = 0;
    CHECK(cuGraphInstantiateWithFlags(&e, g, 0));
    for (int i = 0; i < 3; i++) CHECK(cuGraphLaunch(e, s));
    CHECK(cuStreamSynchronize(s));
    EXPECT_RC(INVALID_VALUE, cuGraphInstantiateWithFlags(&e, (CUgraph)(uintptr_t)0x1234, 0));
    CHECK(cuGraphExecDestroy(e));
    CHECK(cuGraphDestroy(g));
    /* Destroyed ids are refused at the next synchronization. */
    CHECK(cuGraphLaunch(e, s));
    EXPECT_RC(INVALID_VALUE, cuStreamSynchronize(s));
    CUgraph none = 0;
    EXPECT_RC(401 /* ILLEGAL_STATE */, cuStreamEndCapture(s, &none));
    unsigned long long sid1 = 0, sid2 = 0;
    CHECK(cuStreamGetId(s, &sid1));
    CHECK(cuStreamGetId(0, &sid2));
    EXPECT(sid1 != 0 && sid1 != sid2, "stream ids %llu %llu", sid1, sid2);
    CHECK(cuMemFree_v2(d));
}

/* 2D and 3D copies between padded host buffers and pitched device memory. */
static void copies(CUstream s) {
    enum { W = 100, H = 37, HP = 128 /* host pitch */ };
    CUdeviceptr d = 0, d2 = 0;
    size_t pitch = 0, pitch2 = 0;
    CHECK(cuMemAllocPitch_v2(&d, &pitch, W, H, 4));
    CHECK(cuMemAllocPitch_v2(&d2, &pitch2, W, H, 4));
    EXPECT(pitch >= W && pitch2 >= W, "pitch %zu", pitch);
    unsigned char *src = malloc(HP * H), *dst = malloc(HP * H);
    fill(src, HP * H, 3);
    CUDA_MEMCPY2D c;
    memset(&c, 0, sizeof c);
    c.srcMemoryType = 1; c.srcHost = src; c.srcPitch = HP;
    c.dstMemoryType = 2; c.dstDevice = d; c.dstPitch = pitch;
    c.WidthInBytes = W; c.Height = H;
    CHECK(cuMemcpy2D_v2(&c));
    /* Device to device into the second allocation, then back to a host buffer
     * with a different pitch, offset by (x 5, y 2) on the source. */
    memset(&c, 0, sizeof c);
    c.srcMemoryType = 2; c.srcDevice = d; c.srcPitch = pitch;
    c.dstMemoryType = 2; c.dstDevice = d2; c.dstPitch = pitch2;
    c.WidthInBytes = W; c.Height = H;
    CHECK(cuMemcpy2DAsync_v2(&c, s));
    CHECK(cuStreamSynchronize(s));
    memset(dst, 0xEE, HP * H);
    memset(&c, 0, sizeof c);
    c.srcMemoryType = 2; c.srcDevice = d2; c.srcPitch = pitch2; c.srcXInBytes = 5; c.srcY = 2;
    c.dstMemoryType = 1; c.dstHost = dst; c.dstPitch = HP;
    c.WidthInBytes = W - 5; c.Height = H - 2;
    CHECK(cuMemcpy2D_v2(&c));
    for (int y = 0; y < H - 2; y++) {
        EXPECT(memcmp(dst + y * HP, src + (y + 2) * HP + 5, W - 5) == 0, "2D row %d differs", y);
        EXPECT(dst[y * HP + W - 5] == 0xEE, "2D copy wrote past its width in row %d", y);
    }
    /* A row range outside the allocation is refused. */
    memset(&c, 0, sizeof c);
    c.srcMemoryType = 1; c.srcHost = src; c.srcPitch = HP;
    c.dstMemoryType = 2; c.dstDevice = d; c.dstPitch = pitch;
    c.WidthInBytes = W; c.Height = H + 1;
    EXPECT_RC(INVALID_VALUE, cuMemcpy2D_v2(&c));
    /* 3D: two slices of 10 rows each from a padded host volume. */
    enum { D = 2, R = 10 };
    CUDA_MEMCPY3D t;
    memset(&t, 0, sizeof t);
    t.srcMemoryType = 1; t.srcHost = src; t.srcPitch = HP; t.srcHeight = 12;
    t.dstMemoryType = 2; t.dstDevice = d; t.dstPitch = pitch; t.dstHeight = R;
    t.WidthInBytes = W; t.Height = R; t.Depth = D;
    CHECK(cuMemcpy3D_v2(&t));
    memset(dst, 0, HP * H);
    memset(&t, 0, sizeof t);
    t.srcMemoryType = 2; t.srcDevice = d; t.srcPitch = pitch; t.srcHeight = R;
    t.dstMemoryType = 1; t.dstHost = dst; t.dstPitch = W; t.dstHeight = R;
    t.WidthInBytes = W; t.Height = R; t.Depth = D;
    CHECK(cuMemcpy3D_v2(&t));
    for (int z = 0; z < D; z++)
        for (int y = 0; y < R; y++)
            EXPECT(memcmp(dst + (z * R + y) * W, src + (z * 12 + y) * HP, W) == 0, "3D slice %d row %d differs", z, y);
    CHECK(cuMemsetD2D8_v2(d, pitch, 0x42, W, H));
    CHECK(cuMemcpyDtoH_v2(dst, d + (H - 1) * pitch, W));
    for (int i = 0; i < W; i++) EXPECT(dst[i] == 0x42, "2D memset byte %d = %x", i, dst[i]);
    CHECK(cuMemFree_v2(d));
    CHECK(cuMemFree_v2(d2));
    /* Unified-address copies: the direction comes from what each address is. */
    {
        enum { N = 3000 };
        unsigned char a[N], b[N];
        fill(a, N, 11);
        memset(b, 0, N);
        CUdeviceptr u1, u2;
        CHECK(cuMemAlloc_v2(&u1, N));
        CHECK(cuMemAlloc_v2(&u2, N));
        CHECK(cuMemcpy(u1, (CUdeviceptr)(uintptr_t)a, N));          /* host to device */
        CHECK(cuMemcpyAsync(u2, u1, N, s));                         /* device to device */
        CHECK(cuMemcpyAsync((CUdeviceptr)(uintptr_t)b, u2, N, s));  /* device to host */
        CHECK(cuStreamSynchronize(s));
        EXPECT(memcmp(a, b, N) == 0, "unified copies differ");
        memset(b, 0, N);
        CHECK(cuMemcpy((CUdeviceptr)(uintptr_t)b, (CUdeviceptr)(uintptr_t)a, N)); /* host to host */
        EXPECT(memcmp(a, b, N) == 0, "host-to-host unified copy differs");
        CHECK(cuMemFree_v2(u1));
        CHECK(cuMemFree_v2(u2));
    }
    /* Pinned host memory named by device calls (unified addressing), as XLA
     * does: a memset and a "device to host" read-back of a pinned buffer,
     * and device-to-device copies with a pinned side. */
    {
        unsigned *pin = NULL, back[4] = {0};
        CHECK(cuMemHostAlloc((void **)&pin, 4096, 0));
        CUdeviceptr hp = (CUdeviceptr)(uintptr_t)pin;
        CHECK(cuMemsetD32Async(hp, 0x12345678, 2, s));
        CHECK(cuMemcpyDtoHAsync_v2(back, hp, 8, s));
        CHECK(cuStreamSynchronize(s));
        EXPECT(pin[0] == 0x12345678 && pin[1] == 0x12345678 && pin[2] == 0, "pinned memset %x %x %x", pin[0], pin[1], pin[2]);
        EXPECT(back[0] == 0x12345678 && back[1] == 0x12345678 && back[2] == 0, "pinned read-back %x %x", back[0], back[1]);
        CUdeviceptr dv;
        CHECK(cuMemAlloc_v2(&dv, 64));
        pin[2] = 0xABCD;
        CHECK(cuMemcpyDtoD_v2(dv, hp, 16));          /* pinned to device */
        CHECK(cuMemsetD32Async(hp, 0, 4, s));
        CHECK(cuStreamSynchronize(s));
        CHECK(cuMemcpyDtoD_v2(hp, dv, 16));          /* device to pinned */
        EXPECT(pin[0] == 0x12345678 && pin[2] == 0xABCD, "pinned round trip %x %x", pin[0], pin[2]);
        /* A span running past the pinned buffer is not host memory: refused. */
        CHECK(cuMemsetD32Async(hp + 4092, 0, 2, s));
        EXPECT_RC(INVALID_VALUE, cuStreamSynchronize(s));
        CHECK(cuStreamSynchronize(s));
        CHECK(cuMemFree_v2(dv));
        CHECK(cuMemFreeHost(pin));
    }
    /* cuMemFree also frees a stream-ordered allocation. */
    CUdeviceptr p = 0;
    CHECK(cuMemAllocAsync(&p, 4096, s));
    CHECK(cuStreamSynchronize(s));
    CHECK(cuMemFree_v2(p));
    EXPECT_RC(INVALID_VALUE, cuMemFree_v2(p));
    free(src);
    free(dst);
}

static int limit(void) {
    CUstream s;
    CHECK(cuStreamCreate(&s, 0));
    CUmemAllocationProp prop = device_prop();
    CUmemGenericAllocationHandle h;
    CUdeviceptr p;
    EXPECT_RC(OUT_OF_MEMORY, cuMemCreate(&h, 128 * MB, &prop, 0));
    CHECK(cuMemCreate(&h, 48 * MB, &prop, 0));
    EXPECT_RC(OUT_OF_MEMORY, cuMemAllocAsync(&p, 32 * MB, s)); /* 48 + 32 > 64 */
    CHECK(cuMemRelease(h));
    CHECK(cuMemAllocAsync(&p, 60 * MB, s));
    CHECK(cuMemFreeAsync(p, s));
    CHECK(cuStreamSynchronize(s));
    printf("PASS memory limit on cuMemCreate and cuMemAllocAsync\n");
    return 0;
}

static int hold(void) {
    CUstream s;
    CHECK(cuStreamCreate(&s, 0));
    CUmemAllocationProp prop = device_prop();
    size_t g = 0;
    CHECK(cuMemGetAllocationGranularity(&g, &prop, 0));
    CUdeviceptr base, p;
    CUmemGenericAllocationHandle h;
    CHECK(cuMemAddressReserve(&base, 16 * g, 0, 0, 0));
    CHECK(cuMemCreate(&h, 16 * g, &prop, 0));
    CHECK(cuMemMap(base, 16 * g, 0, h, 0));
    CHECK(cuMemAllocAsync(&p, 8 * MB, s));
    CUmemPoolProps props;
    memset(&props, 0, sizeof props);
    props.allocType = 1;
    props.location.type = 1;
    CUmemoryPool mine;
    CHECK(cuMemPoolCreate(&mine, &props));
    CHECK(cuStreamSynchronize(s));
    printf("holding\n");
    fflush(stdout);
    for (;;) pause();
}

int main(int argc, char **argv) {
    load();
    if (argc < 2) { printf("usage: mem full | limit | hold\n"); return 2; }
    setup();
    if (strcmp(argv[1], "hold") == 0) return hold();
    if (strcmp(argv[1], "limit") == 0) return limit();
    if (strcmp(argv[1], "full") == 0) {
        CUstream s;
        CHECK(cuStreamCreate(&s, 0));
        vmm();
        pools(s);
        mem_ops(s);
        host_funcs(s);
        graphs(s);
        copies(s);
        CHECK(cuStreamDestroy_v2(s));
        printf("PASS vmm, pools, stream memory operations, host functions, capture and graphs, 2D/3D copies\n");
        return 0;
    }
    printf("usage: mem full | limit | hold\n");
    return 2;
}
