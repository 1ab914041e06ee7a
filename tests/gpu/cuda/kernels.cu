// Kernels for the driver-API programs (drv_vecadd.c), built with nvcc into a
// cubin, PTX and a fatbin by scripts/gpu/50-cuda-programs.sh. extern "C"
// keeps the names unmangled for cuModuleGetFunction.
#include <cooperative_groups.h>
namespace cg = cooperative_groups;

#define TILE 16

// A by-value struct with padding, and a 128-byte, 64-aligned one laid out
// like a CUtensorMap parameter.
struct Small {
    int a;
    double b;
    char c;
};
struct __align__(64) Big {
    float v[32];
};

__device__ float scale_factor;

extern "C" {

__global__ void vec_add(const float *a, const float *b, float *c, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) c[i] = a[i] + b[i];
}

// Tiled matrix multiply with shared memory, C = A * B, n x n.
__global__ void matmul(const float *A, const float *B, float *C, int n) {
    __shared__ float As[TILE][TILE];
    __shared__ float Bs[TILE][TILE];
    int tx = threadIdx.x, ty = threadIdx.y;
    int r = blockIdx.y * TILE + ty, c = blockIdx.x * TILE + tx;
    float acc = 0.0f;
    for (int t = 0; t < n; t += TILE) {
        As[ty][tx] = (r < n && t + tx < n) ? A[r * n + t + tx] : 0.0f;
        Bs[ty][tx] = (c < n && t + ty < n) ? B[(t + ty) * n + c] : 0.0f;
        __syncthreads();
        for (int k = 0; k < TILE; k++) acc += As[ty][k] * Bs[k][tx];
        __syncthreads();
    }
    if (r < n && c < n) C[r * n + c] = acc;
}

__global__ void add_one(float *x, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) x[i] += 1.0f;
}

__global__ void scale(float *x, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) x[i] *= scale_factor;
}

__global__ void by_value(char flag, struct Small s, struct Big big, int k, float *out) {
    if (threadIdx.x == 0 && blockIdx.x == 0) {
        float sum = 0.0f;
        for (int i = 0; i < 32; i++) sum += big.v[i];
        out[0] = sum;
        out[1] = (float)s.a + (float)s.b + (float)s.c;
        out[2] = (float)(flag * k);
    }
}

__global__ void dyn_smem(float *out) {
    extern __shared__ float buf[];
    buf[threadIdx.x] = (float)threadIdx.x;
    __syncthreads();
    out[blockIdx.x * blockDim.x + threadIdx.x] = buf[blockDim.x - 1 - threadIdx.x];
}

__global__ void cluster_rank(int *out) {
#if __CUDA_ARCH__ >= 900
    cg::cluster_group cl = cg::this_cluster();
    if (threadIdx.x == 0) out[blockIdx.x] = (int)cl.block_rank();
#else
    if (threadIdx.x == 0) out[blockIdx.x] = -1;
#endif
}

// Each block adds its part, the grid synchronizes, block 0 adds the parts.
__global__ void coop_sum(const int *data, int *partial, int *out, int n) {
    cg::grid_group g = cg::this_grid();
    if (threadIdx.x == 0) {
        int s = 0;
        for (int i = blockIdx.x; i < n; i += gridDim.x) s += data[i];
        partial[blockIdx.x] = s;
    }
    g.sync();
    if (blockIdx.x == 0 && threadIdx.x == 0) {
        int s = 0;
        for (unsigned b = 0; b < gridDim.x; b++) s += partial[b];
        *out = s;
    }
}

}  // extern "C"
