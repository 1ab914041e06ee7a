// Device printf: the driver prints the device's lines at synchronization.
// Only orders the hardware guarantees: one thread printing in a loop, the
// threads of one block taking turns (__syncthreads between), and separate
// launches in one stream. Host stdout is flushed around each launch so the
// host's and the device's lines interleave the same way every time.
#include "common.cuh"

__global__ void one_thread(int lines) {
    for (int i = 0; i < lines; i++)
        printf("device line %d: int %d hex %x unsigned %u long %lld float %.3f char %c str %s\n", i, -i * 7, i * 4099,
               (unsigned)i * 3000000000u, (long long)i << 40, i * 0.125f, 'a' + i % 26, i % 2 ? "odd" : "even");
}
__global__ void take_turns(const int *data) {
    __shared__ int sum;
    if (threadIdx.x == 0) sum = 0;
    __syncthreads();
    atomicAdd(&sum, data[threadIdx.x]);
    __syncthreads();
    for (int t = 0; t < blockDim.x; t++) {
        if (threadIdx.x == t) printf("block %d thread %d of %d: data %d, block sum %d\n", blockIdx.x, t, blockDim.x, data[t], sum);
        __syncthreads();
    }
}
__global__ void each_launch(int k, double x) {
    if (threadIdx.x == 0 && blockIdx.x == 0) printf("launch %d: %g %e %10.4f|%-6d|%+d\n", k, x, x * 1e10, x, k, k);
}

int main() {
    // The FIFO's size can only change before the first kernel that prints.
    size_t fifo = 0;
    CK(cudaDeviceGetLimit(&fifo, cudaLimitPrintfFifoSize));
    printf("printf fifo %zu bytes\n", fifo);
    CK(cudaDeviceSetLimit(cudaLimitPrintfFifoSize, 4 << 20));
    CK(cudaDeviceGetLimit(&fifo, cudaLimitPrintfFifoSize));
    printf("printf fifo now %zu bytes\n", fifo);
    int h[8] = {3, 1, 4, 1, 5, 9, 2, 6}, *d;
    CK(cudaMalloc(&d, sizeof h));
    CK(cudaMemcpy(d, h, sizeof h, cudaMemcpyHostToDevice));
    fflush(stdout);
    one_thread<<<1, 1>>>(40);
    CK(cudaGetLastError());
    CK(cudaDeviceSynchronize());
    fflush(stdout);
    printf("host: after one_thread\n");
    fflush(stdout);
    take_turns<<<1, 8>>>(d);
    CK(cudaDeviceSynchronize());
    fflush(stdout);
    printf("host: after take_turns\n");
    fflush(stdout);
    cudaStream_t s;
    CK(cudaStreamCreate(&s));
    for (int k = 0; k < 5; k++) each_launch<<<2, 32, 0, s>>>(k, 1.5 + k / 3.0);
    CK(cudaStreamSynchronize(s));
    fflush(stdout);
    printf("host: after 5 launches\n");
    fflush(stdout);
    // A burst from one thread.
    one_thread<<<1, 1>>>(300);
    CK(cudaDeviceSynchronize());
    fflush(stdout);
    CK(cudaFree(d));
    CK(cudaStreamDestroy(s));
    printf("PASS\n");
    return 0;
}
