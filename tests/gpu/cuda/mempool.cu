// Stream-ordered allocation: cudaMallocAsync/cudaFreeAsync on streams
// (allocated on one, used and freed on another after an event), churn of
// many sizes, the default pool's attributes, a pool of our own
// (cudaMemPoolCreate, cudaMallocFromPoolAsync, release threshold, access,
// used/reserved memory, watermark reset, cudaMemPoolTrimTo), the device's
// current pool switched to ours and back. Kernels use every allocation.
// Reserved sizes and high watermarks are the driver's business: stderr.
#include "common.cuh"

__global__ void fill(int *x, int n, int v) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) x[i] = v + i % 97;
}
__global__ void axpb(const int *a, int *b, int n, int k) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) b[i] = a[i] * k + 1;
}
__global__ void accum(const int *x, int *acc, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) acc[i] += x[i];
}

static unsigned long long get(cudaMemPool_t p, cudaMemPoolAttr a) {
    unsigned long long v = 0;  // cuuint64_t for the size attributes
    CK(cudaMemPoolGetAttribute(p, a, &v));
    return v;
}
static void watermarks(const char *when, cudaMemPool_t p) {
    fprintf(stderr, "%s: reserved %llu (high %llu), used %llu (high %llu)\n", when, get(p, cudaMemPoolAttrReservedMemCurrent),
            get(p, cudaMemPoolAttrReservedMemHigh), get(p, cudaMemPoolAttrUsedMemCurrent), get(p, cudaMemPoolAttrUsedMemHigh));
}

int main() {
    const int n = 1 << 20, m = 1 << 16, iters = 50;
    int supported = 0;
    CK(cudaDeviceGetAttribute(&supported, cudaDevAttrMemoryPoolsSupported, 0));
    printf("memory pools supported %d\n", supported);
    cudaMemPool_t def, cur, pool;
    CK(cudaDeviceGetDefaultMemPool(&def, 0));
    CK(cudaDeviceGetMemPool(&cur, 0));
    printf("current pool is the default: %d\n", cur == def);
    int reuse[3];
    cudaMemPoolAttr ra[3] = {cudaMemPoolReuseFollowEventDependencies, cudaMemPoolReuseAllowOpportunistic,
                             cudaMemPoolReuseAllowInternalDependencies};
    for (int k = 0; k < 3; k++) CK(cudaMemPoolGetAttribute(def, ra[k], &reuse[k]));
    printf("default pool: release threshold %llu, reuse %d %d %d\n", get(def, cudaMemPoolAttrReleaseThreshold), reuse[0], reuse[1], reuse[2]);
    unsigned long long thr = 64ull << 20;
    CK(cudaMemPoolSetAttribute(def, cudaMemPoolAttrReleaseThreshold, &thr));
    printf("default pool: release threshold now %llu\n", get(def, cudaMemPoolAttrReleaseThreshold));

    cudaStream_t s0, s1;
    cudaEvent_t e;
    CK(cudaStreamCreateWithFlags(&s0, cudaStreamNonBlocking));
    CK(cudaStreamCreateWithFlags(&s1, cudaStreamNonBlocking));
    CK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
    int *h = (int *)malloc(n * 4);
    // Allocated on s0, handed to s1 by an event, freed on s1.
    int *a, *b;
    CK(cudaMallocAsync((void **)&a, n * 4, s0));
    fill<<<n / 256, 256, 0, s0>>>(a, n, 5);
    CK(cudaEventRecord(e, s0));
    CK(cudaStreamWaitEvent(s1, e, 0));
    CK(cudaMallocAsync((void **)&b, n * 4, s1));
    axpb<<<n / 256, 256, 0, s1>>>(a, b, n, 3);
    CK(cudaFreeAsync(a, s1));
    CK(cudaMemcpyAsync(h, b, n * 4, cudaMemcpyDeviceToHost, s1));
    CK(cudaFreeAsync(b, s1));
    CK(cudaStreamSynchronize(s1));
    for (int i = 0; i < n; i++) EXPECT(h[i] == (5 + i % 97) * 3 + 1, "cross-stream [%d] = %d", i, h[i]);
    printf("cross-stream ok digest %016llx\n", (unsigned long long)fnv(h, n * 4));
    // Churn: allocations of changing sizes, each filled and summed, then freed.
    int *acc;
    CK(cudaMalloc(&acc, m * 4));
    CK(cudaMemset(acc, 0, m * 4));
    CK(cudaDeviceSynchronize());
    for (int it = 0; it < iters; it++) {
        int cnt = m * (1 + it % 7) + it * 13;
        int *x;
        CK(cudaMallocAsync((void **)&x, (size_t)cnt * 4, s0));
        fill<<<(cnt + 255) / 256, 256, 0, s0>>>(x, cnt, it);
        accum<<<m / 256, 256, 0, s0>>>(x, acc, m);
        CK(cudaFreeAsync(x, s0));
    }
    CK(cudaMemcpyAsync(h, acc, m * 4, cudaMemcpyDeviceToHost, s0));
    CK(cudaStreamSynchronize(s0));
    for (int i = 0; i < m; i++) EXPECT(h[i] == iters * (iters - 1) / 2 + iters * (i % 97), "churn [%d] = %d", i, h[i]);
    printf("churn of %d allocations ok digest %016llx\n", iters, (unsigned long long)fnv(h, m * 4));
    watermarks("default pool after churn", def);

    cudaMemPoolProps props = {};
    props.allocType = cudaMemAllocationTypePinned;
    props.handleTypes = cudaMemHandleTypeNone;
    props.location.type = cudaMemLocationTypeDevice;
    props.location.id = 0;
    CK(cudaMemPoolCreate(&pool, &props));
    thr = 32ull << 20;
    CK(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &thr));
    cudaMemLocation loc = {};
    loc.type = cudaMemLocationTypeDevice;
    loc.id = 0;
    cudaMemAccessFlags fl;
    CK(cudaMemPoolGetAccess(&fl, pool, &loc));
    printf("own pool: release threshold %llu, access %d\n", get(pool, cudaMemPoolAttrReleaseThreshold), (int)fl);
    int *p[4];
    for (int k = 0; k < 4; k++) {
        CK(cudaMallocFromPoolAsync((void **)&p[k], (size_t)(k + 1) << 20, pool, s0));
        fill<<<((k + 1) << 18) / 256, 256, 0, s0>>>(p[k], (k + 1) << 18, 100 * k);
    }
    for (int k = 1; k < 4; k++) accum<<<m / 256, 256, 0, s0>>>(p[k], p[0], m);
    CK(cudaMemcpyAsync(h, p[0], m * 4, cudaMemcpyDeviceToHost, s0));
    CK(cudaStreamSynchronize(s0));
    for (int i = 0; i < m; i++) EXPECT(h[i] == 600 + 4 * (i % 97), "own pool [%d] = %d", i, h[i]);
    printf("own pool ok, used %llu\n", get(pool, cudaMemPoolAttrUsedMemCurrent));
    watermarks("own pool, 4 allocations", pool);
    for (int k = 0; k < 4; k++) CK(cudaFreeAsync(p[k], k % 2 ? s1 : s0));
    CK(cudaStreamSynchronize(s0));
    CK(cudaStreamSynchronize(s1));
    printf("own pool after frees: used %llu\n", get(pool, cudaMemPoolAttrUsedMemCurrent));
    watermarks("own pool after frees", pool);
    CK(cudaMemPoolTrimTo(pool, 0));
    printf("own pool after trim: reserved %llu\n", get(pool, cudaMemPoolAttrReservedMemCurrent));
    unsigned long long zero = 0;
    CK(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrUsedMemHigh, &zero));
    CK(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReservedMemHigh, &zero));
    watermarks("own pool after trim and reset", pool);
    // Our pool as the device's current one: cudaMallocAsync takes from it.
    CK(cudaDeviceSetMemPool(0, pool));
    CK(cudaDeviceGetMemPool(&cur, 0));
    printf("current pool is ours: %d\n", cur == pool);
    int *x;
    CK(cudaMallocAsync((void **)&x, n * 4, s1));
    fill<<<n / 256, 256, 0, s1>>>(x, n, 77);
    CK(cudaMemcpyAsync(h, x, n * 4, cudaMemcpyDeviceToHost, s1));
    CK(cudaStreamSynchronize(s1));
    printf("through the current pool: used %llu\n", get(pool, cudaMemPoolAttrUsedMemCurrent));
    for (int i = 0; i < n; i++) EXPECT(h[i] == 77 + i % 97, "current pool [%d] = %d", i, h[i]);
    CK(cudaFreeAsync(x, s1));
    CK(cudaStreamSynchronize(s1));
    CK(cudaDeviceSetMemPool(0, def));
    // An async allocation on the legacy stream, freed synchronously.
    CK(cudaMallocAsync((void **)&x, 4096, 0));
    CK(cudaMemsetAsync(x, 0x3C, 4096, 0));
    CK(cudaMemcpy(h, x, 4096, cudaMemcpyDeviceToHost));
    EXPECT(h[0] == 0x3C3C3C3C && h[1023] == 0x3C3C3C3C, "legacy-stream allocation %08x", h[0]);
    CK(cudaFree(x));
    CK(cudaMemPoolDestroy(pool));
    thr = 0;
    CK(cudaMemPoolSetAttribute(def, cudaMemPoolAttrReleaseThreshold, &thr));
    CK(cudaFree(acc));
    CK(cudaEventDestroy(e));
    CK(cudaStreamDestroy(s0));
    CK(cudaStreamDestroy(s1));
    printf("PASS\n");
    return 0;
}
