// Device query through cudart: the facts the client caches at cuInit.
#include "common.cuh"

int main() {
    int n = 0, drv = 0, rt = 0;
    CK(cudaGetDeviceCount(&n));
    CK(cudaDriverGetVersion(&drv));
    CK(cudaRuntimeGetVersion(&rt));
    EXPECT(n >= 1, "%d devices", n);
    for (int d = 0; d < n; d++) {
        cudaDeviceProp p;
        CK(cudaGetDeviceProperties(&p, d));
        printf("device %d: %s, sm_%d%d, %d SMs, %zu MiB, warp %d, max threads %d, smem/block %zu, l2 %d\n", d,
               p.name, p.major, p.minor, p.multiProcessorCount, p.totalGlobalMem >> 20, p.warpSize,
               p.maxThreadsPerBlock, p.sharedMemPerBlock, p.l2CacheSize);
    }
    printf("driver %d runtime %d\nPASS\n", drv, rt);
    return 0;
}
