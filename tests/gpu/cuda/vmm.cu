// The driver's virtual memory management from a cudart program, the way
// PyTorch's expandable segments use it: driver functions come from
// cudaGetDriverEntryPointByVersion (no -lcuda). Reserve an address range,
// map a pinned device chunk, grow the mapping by a second chunk right
// after the first, use both from kernels, cudaMemcpy and cudaMemset across
// the boundary, shrink (unmap the second) and grow again with a new chunk,
// then unmap, release and free the range. Every element is checked.
#include <cuda.h>
#include <vector>
#include "common.cuh"

#define CKD(call)                                                                          \
    do {                                                                                   \
        CUresult r_ = (call);                                                              \
        if (r_ != CUDA_SUCCESS) { printf("FAIL line %d: %s -> CUresult %d\n", __LINE__, #call, (int)r_); exit(1); } \
    } while (0)

static void *load(const char *name) {
    void *fn = nullptr;
    cudaDriverEntryPointQueryResult q = cudaDriverEntryPointSymbolNotFound;
    CK(cudaGetDriverEntryPointByVersion(name, &fn, 12000, cudaEnableDefault, &q));
    EXPECT(q == cudaDriverEntryPointSuccess && fn, "%s: query result %d", name, (int)q);
    return fn;
}
// d_NAME: the driver's NAME with the type cuda.h declares for it.
#define DRV(name) auto d_##name = (decltype(&name))load(#name)

__global__ void fill(int *x, size_t n, int v) {
    size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i < n) x[i] = v ^ (int)((unsigned)i * 2654435761u);
}
__global__ void rot(const int *x, int *y, size_t n, size_t sh) {
    size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (i < n) y[i] = x[(i + sh) % n] ^ 0x1234;
}
static int fv(size_t i, int v) { return v ^ (int)((unsigned)i * 2654435761u); }

int main() {
    CK(cudaSetDevice(0));
    CK(cudaFree(0));  // cudart's primary context is current from here
    DRV(cuDeviceGet);
    DRV(cuDeviceGetAttribute);
    DRV(cuMemGetAllocationGranularity);
    DRV(cuMemAddressReserve);
    DRV(cuMemAddressFree);
    DRV(cuMemCreate);
    DRV(cuMemRelease);
    DRV(cuMemMap);
    DRV(cuMemUnmap);
    DRV(cuMemSetAccess);
    DRV(cuMemGetAccess);
    DRV(cuMemGetAddressRange);
    CUdevice dev;
    int vmm = 0;
    CKD(d_cuDeviceGet(&dev, 0));
    CKD(d_cuDeviceGetAttribute(&vmm, CU_DEVICE_ATTRIBUTE_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED, dev));
    printf("virtual memory management supported %d\n", vmm);
    CUmemAllocationProp prop = {};
    prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
    prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
    prop.location.id = dev;
    size_t gmin = 0, grec = 0;
    CKD(d_cuMemGetAllocationGranularity(&gmin, &prop, CU_MEM_ALLOC_GRANULARITY_MINIMUM));
    CKD(d_cuMemGetAllocationGranularity(&grec, &prop, CU_MEM_ALLOC_GRANULARITY_RECOMMENDED));
    printf("granularity minimum %zu recommended %zu\n", gmin, grec);
    EXPECT(gmin > 0 && grec >= gmin, "granularity");
    const size_t chunk = 2 * grec, R = 16 * chunk, n0 = chunk / 4, N = 2 * n0;
    CUmemAccessDesc acc = {};
    acc.location = prop.location;
    acc.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
    CUdeviceptr base = 0;
    CKD(d_cuMemAddressReserve(&base, R, 0, 0, 0));
    printf("reserved %zu bytes, base aligned to granularity %d\n", R, (int)(base % gmin == 0));
    // First chunk.
    CUmemGenericAllocationHandle h0, h1, h2;
    CKD(d_cuMemCreate(&h0, chunk, &prop, 0));
    CKD(d_cuMemMap(base, chunk, 0, h0, 0));
    CKD(d_cuMemSetAccess(base, chunk, &acc, 1));
    int *x = (int *)base;
    std::vector<int> hv(N), hy(N);
    fill<<<(unsigned)(n0 / 256), 256>>>(x, n0, 1);
    CK(cudaGetLastError());
    CK(cudaMemcpy(hv.data(), x, chunk, cudaMemcpyDeviceToHost));
    for (size_t i = 0; i < n0; i++) EXPECT(hv[i] == fv(i, 1), "chunk 0 [%zu] = %d", i, hv[i]);
    printf("one chunk mapped ok digest %016llx\n", (unsigned long long)fnv(hv.data(), chunk));
    // Grow: a second chunk right after the first; its handle is released at
    // once (the mapping keeps the memory).
    CKD(d_cuMemCreate(&h1, chunk, &prop, 0));
    CKD(d_cuMemMap(base + chunk, chunk, 0, h1, 0));
    CKD(d_cuMemSetAccess(base + chunk, chunk, &acc, 1));
    CKD(d_cuMemRelease(h1));
    fill<<<(unsigned)(n0 / 256), 256>>>(x + n0, n0, 2);
    int *y;
    CK(cudaMalloc(&y, N * 4));
    const size_t sh = n0 + 12345;
    rot<<<(unsigned)(N / 256), 256>>>(x, y, N, sh);
    CK(cudaGetLastError());
    CK(cudaMemset((char *)x + chunk - 4096, 0x5A, 8192));
    CK(cudaMemcpy(hv.data(), x, 2 * chunk, cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(hy.data(), y, 2 * chunk, cudaMemcpyDeviceToHost));
    auto before = [&](size_t i) { return i < n0 ? fv(i, 1) : fv(i - n0, 2); };
    for (size_t i = 0; i < N; i++) {
        int want = i >= n0 - 1024 && i < n0 + 1024 ? 0x5A5A5A5A : before(i);
        EXPECT(hv[i] == want, "grown [%zu] = %d, want %d", i, hv[i], want);
        EXPECT(hy[i] == (before((i + sh) % N) ^ 0x1234), "rotated [%zu] = %d", i, hy[i]);
    }
    printf("grown to two chunks ok digests %016llx %016llx\n", (unsigned long long)fnv(hv.data(), 2 * chunk),
           (unsigned long long)fnv(hy.data(), 2 * chunk));
    CUdeviceptr rb = 0;
    size_t rs = 0;
    CKD(d_cuMemGetAddressRange(&rb, &rs, base + chunk + 100));
    cudaPointerAttributes pa;
    CK(cudaPointerGetAttributes(&pa, (char *)x + chunk + 100));
    unsigned long long fl = 0;
    CUmemLocation loc = prop.location;
    CKD(d_cuMemGetAccess(&fl, &loc, base + chunk));
    printf("address range of chunk 1: offset %lld size %zu; pointer type %d device %d; access %llu\n",
           (long long)(rb - base), rs, (int)pa.type, pa.device, fl);
    // Shrink and grow again: chunk 0 must keep its data.
    CK(cudaDeviceSynchronize());
    CKD(d_cuMemUnmap(base + chunk, chunk));
    CKD(d_cuMemCreate(&h2, chunk, &prop, 0));
    CKD(d_cuMemMap(base + chunk, chunk, 0, h2, 0));
    CKD(d_cuMemSetAccess(base + chunk, chunk, &acc, 1));
    fill<<<(unsigned)(n0 / 256), 256>>>(x + n0, n0, 3);
    CK(cudaMemcpy(hy.data(), x, 2 * chunk, cudaMemcpyDeviceToHost));
    for (size_t i = 0; i < N; i++) {
        int want = i >= n0 - 1024 && i < n0 ? 0x5A5A5A5A : i < n0 ? fv(i, 1) : fv(i - n0, 3);
        EXPECT(hy[i] == want, "regrown [%zu] = %d, want %d", i, hy[i], want);
    }
    printf("shrunk and regrown ok digest %016llx\n", (unsigned long long)fnv(hy.data(), 2 * chunk));
    CK(cudaDeviceSynchronize());
    CKD(d_cuMemUnmap(base, chunk));
    CKD(d_cuMemUnmap(base + chunk, chunk));
    CKD(d_cuMemRelease(h0));
    CKD(d_cuMemRelease(h2));
    CKD(d_cuMemAddressFree(base, R));
    CK(cudaFree(y));
    printf("PASS\n");
    return 0;
}
