// Streams with events and timing: work on four streams, cross-stream
// waits, async copies in both directions, queries and elapsed times.
#include "common.cuh"

__global__ void inc(float *x, int n, float v) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) x[i] += v;
}

int main() {
    const int S = 4, n = 1 << 20, reps = 50;
    cudaStream_t s[S];
    cudaEvent_t start[S], stop[S];
    float *d[S], *h[S];
    for (int i = 0; i < S; i++) {
        CK(cudaStreamCreateWithFlags(&s[i], i % 2 ? cudaStreamNonBlocking : cudaStreamDefault));
        CK(cudaEventCreate(&start[i]));
        CK(cudaEventCreate(&stop[i]));
        CK(cudaMalloc(&d[i], n * 4));
        h[i] = (float *)malloc(n * 4);
        for (int j = 0; j < n; j++) h[i][j] = (float)(j % 100 + i);
    }
    for (int i = 0; i < S; i++) {
        CK(cudaEventRecord(start[i], s[i]));
        CK(cudaMemcpyAsync(d[i], h[i], n * 4, cudaMemcpyHostToDevice, s[i]));
        for (int r = 0; r < reps; r++) inc<<<n / 256, 256, 0, s[i]>>>(d[i], n, 1.0f + i);
        CK(cudaEventRecord(stop[i], s[i]));
    }
    // Stream 0 waits for the others, then copies everything back.
    for (int i = 1; i < S; i++) CK(cudaStreamWaitEvent(s[0], stop[i], 0));
    for (int i = 0; i < S; i++) CK(cudaMemcpyAsync(h[i], d[i], n * 4, cudaMemcpyDeviceToHost, s[0]));
    CK(cudaStreamSynchronize(s[0]));
    for (int i = 0; i < S; i++) {
        for (int j = 0; j < n; j += 999) EXPECT(h[i][j] == (float)(j % 100 + i) + reps * (1.0f + i), "s%d h[%d] = %f", i, j, h[i][j]);
        float ms = 0;
        CK(cudaEventElapsedTime(&ms, start[i], stop[i]));
        EXPECT(cudaEventQuery(stop[i]) == cudaSuccess && cudaStreamQuery(s[i]) == cudaSuccess, "queries");
        fprintf(stderr, "stream %d: %.3f ms\n", i, ms);
        printf("stream %d digest %016llx\n", i, (unsigned long long)fnv(h[i], n * 4));
    }
    int lo = 0, hi = 0;
    CK(cudaDeviceGetStreamPriorityRange(&lo, &hi));
    printf("priority range %d..%d\n", lo, hi);
    for (int i = 0; i < S; i++) {
        CK(cudaStreamDestroy(s[i]));
        CK(cudaEventDestroy(start[i]));
        CK(cudaEventDestroy(stop[i]));
        CK(cudaFree(d[i]));
    }
    printf("PASS\n");
    return 0;
}
