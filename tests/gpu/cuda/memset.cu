// Memset variants: sync and async, 1D and 2D, checked by a digest.
#include "common.cuh"

int main() {
    const size_t n = 8 << 20;
    unsigned char *d, *h = (unsigned char *)malloc(n);
    CK(cudaMalloc(&d, n));
    cudaStream_t s;
    CK(cudaStreamCreate(&s));
    CK(cudaMemset(d, 0x5A, n));
    CK(cudaMemsetAsync(d + 4096, 0x11, 100000, s));
    CK(cudaMemset2DAsync(d + (1 << 20), 2048, 0x22, 1000, 300, s));
    CK(cudaStreamSynchronize(s));
    CK(cudaMemcpy(h, d, n, cudaMemcpyDeviceToHost));
    EXPECT(h[0] == 0x5A && h[4096] == 0x11 && h[(1 << 20) + 2048] == 0x22 && h[(1 << 20) + 1000] == 0x5A, "bytes");
    printf("memsets ok digest %016llx\nPASS\n", (unsigned long long)fnv(h, n));
    return 0;
}
