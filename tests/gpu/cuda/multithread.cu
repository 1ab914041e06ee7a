// Several host threads sharing the device's context, each with its own
// stream, and one with the legacy default stream.
#include <thread>
#include <vector>
#include "common.cuh"

__global__ void sq(float *x, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) x[i] = x[i] * x[i];
}

int main() {
    const int T = 6, n = 1 << 16;
    CK(cudaSetDevice(0));
    std::vector<double> sums(T);
    std::vector<std::thread> th;
    for (int t = 0; t < T; t++)
        th.emplace_back([&, t] {
            cudaStream_t s = 0;
            if (t > 0) CK(cudaStreamCreate(&s));
            std::vector<float> h(n);
            for (int i = 0; i < n; i++) h[i] = (float)((i + t) % 50);
            float *d;
            CK(cudaMalloc(&d, n * 4));
            CK(cudaMemcpyAsync(d, h.data(), n * 4, cudaMemcpyHostToDevice, s));
            sq<<<n / 256, 256, 0, s>>>(d, n);
            CK(cudaMemcpyAsync(h.data(), d, n * 4, cudaMemcpyDeviceToHost, s));
            CK(cudaStreamSynchronize(s));
            double sum = 0;
            for (float v : h) sum += v;
            sums[t] = sum;
            CK(cudaFree(d));
            if (s) CK(cudaStreamDestroy(s));
        });
    for (auto &x : th) x.join();
    for (int t = 0; t < T; t++) printf("thread %d sum %.1f\n", t, sums[t]);
    printf("PASS\n");
    return 0;
}
