// Thread-block clusters (sm_90+): compile-time cluster dims and a launch
// with a cluster attribute through cudaLaunchKernelEx.
#include <cooperative_groups.h>
#include "common.cuh"
namespace cg = cooperative_groups;

__global__ void __cluster_dims__(2, 1, 1) fixed(int *out) {
    if (threadIdx.x == 0) out[blockIdx.x] = (int)cg::this_cluster().block_rank();
}
__global__ void flexible(int *out) {
    if (threadIdx.x == 0) out[blockIdx.x] = (int)cg::this_cluster().block_rank() + 10 * (int)cg::this_cluster().num_blocks();
}

int main() {
    cudaDeviceProp p;
    CK(cudaGetDeviceProperties(&p, 0));
    if (p.major < 9) { printf("cluster launch needs sm_90 (have sm_%d%d)\nPASS\n", p.major, p.minor); return 0; }
    int *d, h[16];
    CK(cudaMalloc(&d, sizeof h));
    fixed<<<16, 64>>>(d);
    CK(cudaMemcpy(h, d, sizeof h, cudaMemcpyDeviceToHost));
    printf("fixed:");
    for (int i = 0; i < 16; i++) printf(" %d", h[i]);
    cudaLaunchConfig_t cfg = {};
    cudaLaunchAttribute a[1];
    a[0].id = cudaLaunchAttributeClusterDimension;
    a[0].val.clusterDim.x = 4;
    a[0].val.clusterDim.y = 1;
    a[0].val.clusterDim.z = 1;
    cfg.gridDim = dim3(16);
    cfg.blockDim = dim3(64);
    cfg.attrs = a;
    cfg.numAttrs = 1;
    CK(cudaLaunchKernelEx(&cfg, flexible, d));
    CK(cudaMemcpy(h, d, sizeof h, cudaMemcpyDeviceToHost));
    printf("\nflexible:");
    for (int i = 0; i < 16; i++) printf(" %d", h[i]);
    printf("\nPASS\n");
    return 0;
}
