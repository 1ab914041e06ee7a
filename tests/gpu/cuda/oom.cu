// Allocation failures that do not depend on the GPU's size (nor on a
// worker's memory limit): absurd sizes through cudaMalloc, cudaMallocAsync,
// cudaMallocPitch, cudaMalloc3D and cudaMallocHost; each error is printed
// as it comes, cudaGetLastError returns and clears it, and normal
// allocations work afterwards. Also the edge cases of size 0 and bad frees.
#include "common.cuh"

int main() {
    const size_t huge = 1ull << 50;  // 1 PiB: more than any GPU, and than a 47-bit host address space
    void *p = nullptr;
    SHOW(cudaMalloc(&p, huge));
    printf("pointer after failed cudaMalloc is null: %d\n", p == nullptr);
    SHOW(cudaPeekAtLastError());
    SHOW(cudaGetLastError());
    SHOW(cudaGetLastError());
    // A normal allocation works and holds data.
    int *d, h[256];
    CK(cudaMalloc(&d, 1 << 20));
    CK(cudaMemset(d, 0x11, 1 << 20));
    CK(cudaMemcpy(h, (char *)d + (1 << 20) - sizeof h, sizeof h, cudaMemcpyDeviceToHost));
    EXPECT(h[0] == 0x11111111 && h[255] == 0x11111111, "after the failure: %08x", h[0]);
    printf("1 MiB allocation after the failure ok\n");
    // Stream-ordered: fails at once; the stream is still usable.
    cudaStream_t s;
    CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    void *q = nullptr;
    SHOW(cudaMallocAsync(&q, huge, s));
    SHOW(cudaGetLastError());
    CK(cudaMallocAsync(&q, 4096, s));
    CK(cudaMemsetAsync(q, 0x22, 4096, s));
    CK(cudaMemcpyAsync(h, q, sizeof h, cudaMemcpyDeviceToHost, s));
    CK(cudaFreeAsync(q, s));
    CK(cudaStreamSynchronize(s));
    EXPECT(h[0] == 0x22222222, "async allocation after the failure: %08x", h[0]);
    printf("async allocation after the failure ok\n");
    // Pitched and 3D.
    size_t pitch = 0;
    SHOW(cudaMallocPitch(&p, &pitch, 1 << 20, 1 << 30));
    SHOW(cudaGetLastError());
    cudaPitchedPtr pp = {};
    SHOW(cudaMalloc3D(&pp, make_cudaExtent(1 << 16, 1 << 16, 1 << 16)));
    SHOW(cudaGetLastError());
    // Pinned host memory: the driver cannot pin 1 PiB.
    void *ph = nullptr;
    SHOW(cudaMallocHost(&ph, huge));
    SHOW(cudaGetLastError());
    SHOW(cudaHostAlloc(&ph, huge, cudaHostAllocDefault));
    SHOW(cudaGetLastError());
    // Size 0 and frees of what was never allocated.
    p = (void *)1;
    SHOW(cudaMalloc(&p, 0));
    printf("size-0 allocation gives null: %d\n", p == nullptr);
    SHOW(cudaFree(nullptr));
    SHOW(cudaFree((void *)0x1000));
    SHOW(cudaGetLastError());
    SHOW(cudaFreeHost((void *)0x1000));
    SHOW(cudaGetLastError());
    // Still fine.
    CK(cudaMemset(d, 0x33, 1 << 20));
    CK(cudaMemcpy(h, d, sizeof h, cudaMemcpyDeviceToHost));
    EXPECT(h[0] == 0x33333333, "at the end: %08x", h[0]);
    CK(cudaFree(d));
    CK(cudaStreamDestroy(s));
    printf("PASS\n");
    return 0;
}
