// Pinned host memory and overlap: inputs from cudaMallocHost, cudaHostAlloc
// and cudaHostRegister, outputs in cudaHostAlloc buffers; on four streams a
// chunked pipeline of HtoD copy, kernel, DtoH copy, so copies in both
// directions overlap kernels of other streams. Each stream's completion is
// observed a different way (stream sync, event sync, event and stream
// polling) and checked right then. Then a bounce: DtoH into pinned memory on
// one stream, HtoD from it on another after an event, without the host.
#include <chrono>
#include "common.cuh"

__host__ __device__ unsigned mixv(unsigned v, unsigned tag) {
    for (int k = 0; k < 16; k++) v = v * 1664525u + 1013904223u + tag;
    return v;
}
__global__ void mix(const unsigned *in, unsigned *out, int n, unsigned tag) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = mixv(in[i], tag);
}

int main() {
    const int S = 4, C = 8, n = 1 << 21, chunk = n / C;
    const size_t bytes = n * sizeof(unsigned), cbytes = chunk * sizeof(unsigned);
    cudaStream_t s[S];
    cudaEvent_t done[S];
    unsigned *hin[S], *hout[S], *din[S], *dout[S];
    for (int i = 0; i < S; i++) {
        CK(cudaStreamCreateWithFlags(&s[i], cudaStreamNonBlocking));
        CK(cudaEventCreateWithFlags(&done[i], cudaEventDisableTiming));
        if (i < 2) CK(cudaMallocHost((void **)&hin[i], bytes));
        else if (i == 2) CK(cudaHostAlloc((void **)&hin[i], bytes, cudaHostAllocPortable));
        else {
            hin[i] = (unsigned *)aligned_alloc(4096, bytes);
            CK(cudaHostRegister(hin[i], bytes, cudaHostRegisterDefault));
        }
        CK(cudaHostAlloc((void **)&hout[i], bytes, i % 2 ? cudaHostAllocPortable : cudaHostAllocDefault));
        CK(cudaMalloc(&din[i], bytes));
        CK(cudaMalloc(&dout[i], bytes));
    }
    for (int i = 0; i < 3; i++) {
        unsigned f = 0;
        CK(cudaHostGetFlags(&f, hin[i]));
        printf("input %d host flags %u\n", i, f);
    }
    for (int r = 0; r < 2; r++) {
        for (int i = 0; i < S; i++)
            for (int j = 0; j < n; j++) hin[i][j] = (unsigned)j * 2654435761u ^ (unsigned)(i << 24) ^ (unsigned)(r * 7919);
        auto t0 = std::chrono::steady_clock::now();
        // Chunks interleaved across streams: stream i's HtoD of chunk c runs
        // while stream i-1 computes and stream i-2 copies back.
        for (int c = 0; c < C; c++)
            for (int i = 0; i < S; i++) {
                size_t off = (size_t)c * chunk;
                CK(cudaMemcpyAsync(din[i] + off, hin[i] + off, cbytes, cudaMemcpyHostToDevice, s[i]));
                mix<<<chunk / 256, 256, 0, s[i]>>>(din[i] + off, dout[i] + off, chunk, (unsigned)(i * 10 + r));
                CK(cudaMemcpyAsync(hout[i] + off, dout[i] + off, cbytes, cudaMemcpyDeviceToHost, s[i]));
            }
        CK(cudaGetLastError());
        for (int i = 0; i < S; i++) CK(cudaEventRecord(done[i], s[i]));
        for (int i = 0; i < S; i++) {
            cudaError_t e = cudaSuccess;
            if (i == 0) CK(cudaStreamSynchronize(s[0]));
            else if (i == 1) CK(cudaEventSynchronize(done[1]));
            else if (i == 2) while ((e = cudaEventQuery(done[2])) == cudaErrorNotReady) {}
            else while ((e = cudaStreamQuery(s[3])) == cudaErrorNotReady) {}
            CK(e);
            for (int j = 0; j < n; j++) {
                unsigned want = mixv(hin[i][j], (unsigned)(i * 10 + r));
                EXPECT(hout[i][j] == want, "round %d stream %d [%d] = %08x, want %08x", r, i, j, hout[i][j], want);
            }
            printf("round %d stream %d ok digest %016llx\n", r, i, (unsigned long long)fnv(hout[i], bytes));
        }
        double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
        fprintf(stderr, "round %d: %.2f ms, %.2f GB/s both directions\n", r, ms, 2.0 * S * bytes / ms / 1e6);
    }
    // Bounce through pinned memory: stream 0 copies dout[0] to hout[2] and
    // records; stream 1 waits, copies hout[2] to din[1], mixes, copies back.
    CK(cudaMemcpyAsync(hout[2], dout[0], bytes, cudaMemcpyDeviceToHost, s[0]));
    CK(cudaEventRecord(done[0], s[0]));
    CK(cudaStreamWaitEvent(s[1], done[0], 0));
    CK(cudaMemcpyAsync(din[1], hout[2], bytes, cudaMemcpyHostToDevice, s[1]));
    mix<<<n / 256, 256, 0, s[1]>>>(din[1], dout[1], n, 99u);
    CK(cudaMemcpyAsync(hout[1], dout[1], bytes, cudaMemcpyDeviceToHost, s[1]));
    CK(cudaStreamSynchronize(s[1]));
    for (int j = 0; j < n; j++) {
        unsigned want = mixv(mixv(hin[0][j], 1u), 99u);
        EXPECT(hout[2][j] == mixv(hin[0][j], 1u) && hout[1][j] == want, "bounce [%d] = %08x, want %08x", j, hout[1][j], want);
    }
    printf("bounce ok digest %016llx\n", (unsigned long long)fnv(hout[1], bytes));
    for (int i = 0; i < S; i++) {
        if (i < 3) CK(cudaFreeHost(hin[i]));
        else { CK(cudaHostUnregister(hin[i])); free(hin[i]); }
        CK(cudaFreeHost(hout[i]));
        CK(cudaFree(din[i]));
        CK(cudaFree(dout[i]));
        CK(cudaEventDestroy(done[i]));
        CK(cudaStreamDestroy(s[i]));
    }
    printf("PASS\n");
    return 0;
}
