// Built with --default-stream per-thread: host threads each launch into
// their own per-thread default stream, synchronize it, and check.
#include <thread>
#include <vector>
#include "common.cuh"

__global__ void fill(int *x, int n, int v) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) x[i] = v + i % 7;
}

int main() {
    const int T = 4, n = 1 << 18;
    std::vector<long long> sums(T);
    std::vector<std::thread> th;
    for (int t = 0; t < T; t++)
        th.emplace_back([&, t] {
            int *d;
            CK(cudaMalloc(&d, n * 4));
            for (int r = 0; r < 20; r++) fill<<<n / 256, 256>>>(d, n, t * 100 + r);
            CK(cudaStreamSynchronize(cudaStreamPerThread));
            std::vector<int> h(n);
            CK(cudaMemcpy(h.data(), d, n * 4, cudaMemcpyDeviceToHost));
            long long s = 0;
            for (int v : h) s += v;
            sums[t] = s;
            CK(cudaFree(d));
        });
    for (auto &x : th) x.join();
    for (int t = 0; t < T; t++) printf("thread %d sum %lld\n", t, sums[t]);
    printf("PASS\n");
    return 0;
}
