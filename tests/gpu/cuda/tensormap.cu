// Tensor maps (TMA, compute capability 9.0+) from a cudart program: the map
// is encoded on the host with cuTensorMapEncodeTiled (from
// cudaGetDriverEntryPointByVersion, no -lcuda), passed by value to a kernel
// as a __grid_constant__ parameter, and each block copies one 32x32 tile
// of a 100x72 float matrix into shared memory with cp.async.bulk.tensor
// (inline PTX, completion on an mbarrier). Edge tiles reach past the
// matrix: TMA fills those elements with zeros, which the per-tile sums
// check. cuTensorMapReplaceAddress then points the same map at a second
// matrix. The encoded bytes hold a device address, which differs between
// runs, so only results are printed. Invalid ranks must be refused.
#include <cuda.h>
#include <cstring>
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
#define DRV(name) auto d_##name = (decltype(&name))load(#name)

constexpr int W = 100, H = 72, T = 32;

__global__ void tma_tiles(const __grid_constant__ CUtensorMap map, float *out, float *sums) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    __shared__ alignas(128) float tile[T * T];
    __shared__ alignas(8) unsigned long long bar;
    const int x0 = blockIdx.x * T, y0 = blockIdx.y * T;
    unsigned b = (unsigned)__cvta_generic_to_shared(&bar);
    unsigned s = (unsigned)__cvta_generic_to_shared(tile);
    if (threadIdx.x == 0) {
        asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(b), "r"(1) : "memory");
        // Make the initialized barrier visible to the async (TMA) proxy.
        asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        asm volatile("{ .reg .b64 st; mbarrier.arrive.expect_tx.shared::cta.b64 st, [%0], %1; }" ::"r"(b),
                     "r"((unsigned)(T * T * sizeof(float)))
                     : "memory");
        asm volatile(
            "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3}], [%4];" ::"r"(s),
            "l"(reinterpret_cast<unsigned long long>(&map)), "r"(x0), "r"(y0), "r"(b)
            : "memory");
    }
    unsigned done = 0;
    while (!done) {
        asm volatile("{ .reg .pred p; mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2; selp.u32 %0, 1, 0, p; }"
                     : "=r"(done)
                     : "r"(b), "r"(0u)
                     : "memory");
    }
    // Every element of the tile, out-of-bounds zeros included, in the sum.
    __shared__ float part[256];
    float acc = 0;
    for (int i = threadIdx.x; i < T * T; i += blockDim.x) {
        int r = i / T, c = i % T, y = y0 + r, x = x0 + c;
        acc += tile[i];
        if (x < W && y < H) out[y * W + x] = tile[i] * 2.0f + 1.0f;
    }
    part[threadIdx.x] = acc;
    __syncthreads();
    for (int k = blockDim.x / 2; k > 0; k /= 2) {
        if (threadIdx.x < k) part[threadIdx.x] += part[threadIdx.x + k];
        __syncthreads();
    }
    if (threadIdx.x == 0) sums[blockIdx.y * gridDim.x + blockIdx.x] = part[0];
#endif
}

// Runs the kernel over the matrix `map` describes and checks it against `src`.
static void run(const CUtensorMap &map, const std::vector<float> &src, const char *what) {
    dim3 grid((W + T - 1) / T, (H + T - 1) / T);
    int nt = grid.x * grid.y;
    float *out, *sums;
    CK(cudaMalloc(&out, W * H * 4));
    CK(cudaMalloc(&sums, nt * 4));
    CK(cudaMemset(out, 0, W * H * 4));
    tma_tiles<<<grid, 256>>>(map, out, sums);
    CK(cudaGetLastError());
    CK(cudaDeviceSynchronize());
    std::vector<float> hout(W * H), hs(nt);
    CK(cudaMemcpy(hout.data(), out, W * H * 4, cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(hs.data(), sums, nt * 4, cudaMemcpyDeviceToHost));
    int bad = 0;
    for (int i = 0; i < W * H; i++) bad += hout[i] != src[i] * 2.0f + 1.0f;
    EXPECT(bad == 0, "%s: %d of %d elements differ", what, bad, W * H);
    for (unsigned by = 0; by < grid.y; by++)
        for (unsigned bx = 0; bx < grid.x; bx++) {
            double want = 0;  // out-of-bounds elements count as zeros
            for (int r = 0; r < T; r++)
                for (int c = 0; c < T; c++) {
                    int y = by * T + r, x = bx * T + c;
                    if (x < W && y < H) want += src[y * W + x];
                }
            float got = hs[by * grid.x + bx];
            EXPECT(got == (float)want, "%s: tile (%u,%u) sum %f, expected %f", what, bx, by, got, want);
        }
    printf("%s: %d elements and %d tile sums match the CPU, fnv %016llx\n", what, W * H, nt,
           (unsigned long long)fnv(hout.data(), W * H * 4));
    CK(cudaFree(out));
    CK(cudaFree(sums));
}

int main() {
    CK(cudaSetDevice(0));
    CK(cudaFree(0));
    int major = 0;
    CK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, 0));
    if (major < 9) {
        printf("tensor maps need compute capability 9.0; skipped\nPASS tensormap\n");
        return 0;
    }
    DRV(cuTensorMapEncodeTiled);
    DRV(cuTensorMapReplaceAddress);
    // Small integers: every sum is exact in float.
    std::vector<float> a(W * H), b(W * H);
    for (int i = 0; i < W * H; i++) {
        a[i] = (float)(i % 97);
        b[i] = (float)((i * 7) % 31);
    }
    float *da, *db;
    CK(cudaMalloc(&da, W * H * 4));
    CK(cudaMalloc(&db, W * H * 4));
    CK(cudaMemcpy(da, a.data(), W * H * 4, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(db, b.data(), W * H * 4, cudaMemcpyHostToDevice));

    CUtensorMap map;
    cuuint64_t dims[2] = {W, H}, strides[1] = {W * sizeof(float)};
    cuuint32_t box[2] = {T, T}, es[2] = {1, 1};
    CKD(d_cuTensorMapEncodeTiled(&map, CU_TENSOR_MAP_DATA_TYPE_FLOAT32, 2, da, dims, strides, box, es,
                                 CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_NONE,
                                 CU_TENSOR_MAP_L2_PROMOTION_L2_128B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE));
    run(map, a, "tiled map");
    CKD(d_cuTensorMapReplaceAddress(&map, db));
    run(map, b, "after cuTensorMapReplaceAddress");

    CUtensorMap bad;
    CUresult r0 = d_cuTensorMapEncodeTiled(&bad, CU_TENSOR_MAP_DATA_TYPE_FLOAT32, 0, da, dims, strides, box, es,
                                           CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_NONE,
                                           CU_TENSOR_MAP_L2_PROMOTION_NONE, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
    cuuint64_t dims6[6] = {W, H, 1, 1, 1, 1}, strides6[5] = {W * 4, W * H * 4, W * H * 4, W * H * 4, W * H * 4};
    cuuint32_t box6[6] = {T, T, 1, 1, 1, 1}, es6[6] = {1, 1, 1, 1, 1, 1};
    CUresult r6 = d_cuTensorMapEncodeTiled(&bad, CU_TENSOR_MAP_DATA_TYPE_FLOAT32, 6, da, dims6, strides6, box6, es6,
                                           CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_NONE,
                                           CU_TENSOR_MAP_L2_PROMOTION_NONE, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
    cuuint32_t box0[2] = {0, T};
    CUresult rb = d_cuTensorMapEncodeTiled(&bad, CU_TENSOR_MAP_DATA_TYPE_FLOAT32, 2, da, dims, strides, box0, es,
                                           CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_NONE,
                                           CU_TENSOR_MAP_L2_PROMOTION_NONE, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
    printf("rank 0 -> %d, rank 6 -> %d, box 0 -> %d\n", (int)r0, (int)r6, (int)rb);
    EXPECT(r0 == CUDA_ERROR_INVALID_VALUE && r6 == CUDA_ERROR_INVALID_VALUE && rb == CUDA_ERROR_INVALID_VALUE,
           "invalid tensor maps must be refused");
    CK(cudaFree(da));
    CK(cudaFree(db));
    printf("PASS tensormap\n");
    return 0;
}
