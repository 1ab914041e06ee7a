// Thousands of small kernels: the launch path's throughput (time on stderr).
#include <chrono>
#include "common.cuh"

__global__ void bump(int *x) { atomicAdd(x + threadIdx.x, 1); }

int main() {
    const int K = 10000;
    int *d, h[32];
    CK(cudaMalloc(&d, sizeof h));
    CK(cudaMemset(d, 0, sizeof h));
    cudaStream_t s;
    CK(cudaStreamCreate(&s));
    auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < K; i++) bump<<<1, 32, 0, i % 2 ? s : 0>>>(d);
    CK(cudaDeviceSynchronize());
    double us = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count();
    fprintf(stderr, "%d launches: %.2f us each\n", K, us / K);
    CK(cudaMemcpy(h, d, sizeof h, cudaMemcpyDeviceToHost));
    for (int i = 0; i < 32; i++) EXPECT(h[i] == K, "h[%d] = %d", i, h[i]);
    printf("%d kernels ok\nPASS\n", K);
    return 0;
}
