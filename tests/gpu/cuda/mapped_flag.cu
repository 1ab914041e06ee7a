// Mapped host memory through unified addressing, the way XLA's delay kernel
// uses it: a kernel spins on a flag in pinned host memory until the host
// sets it, then writes a result into another pinned buffer; the host reads
// it after synchronizing. Also a kernel that accumulates into pinned memory
// across launches with host writes in between. Through the client the
// pinned buffers are mirrored in the session's process (see README).
#include <chrono>
#include <thread>
#include "common.cuh"

__global__ void wait_flag(volatile unsigned *flag, unsigned *out, long long spins) {
    long long i = 0;
    while (*flag == 0 && i < spins) i++;
    out[0] = *flag == 0 ? 0xdead : *flag + 1;
    out[1] = i > 0 ? 1 : 0;  // it did wait
}

__global__ void accumulate(unsigned *acc, unsigned add) { acc[threadIdx.x] += add + threadIdx.x; }

int main() {
    unsigned *flag, *out, *acc;
    CK(cudaHostAlloc((void **)&flag, sizeof(unsigned), cudaHostAllocDefault));
    CK(cudaHostAlloc((void **)&out, 2 * sizeof(unsigned), cudaHostAllocDefault));
    CK(cudaHostAlloc((void **)&acc, 32 * sizeof(unsigned), cudaHostAllocDefault));
    *flag = 0;
    out[0] = out[1] = 0;
    wait_flag<<<1, 1>>>(flag, out, 1ll << 40);
    CK(cudaGetLastError());
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    *(volatile unsigned *)flag = 7;
    CK(cudaDeviceSynchronize());
    printf("flag kernel: result %u, waited %u\n", out[0], out[1]);
    EXPECT(out[0] == 8, "the kernel did not see the host's flag (%x)", out[0]);
    for (int i = 0; i < 32; i++) acc[i] = 1000 * i;
    for (unsigned r = 1; r <= 5; r++) {
        accumulate<<<1, 32>>>(acc, r);
        if (r == 3) {
            CK(cudaDeviceSynchronize());
            acc[0] += 1000000;  // a host write between launches
        }
    }
    CK(cudaDeviceSynchronize());
    uint64_t sum = 0;
    for (int i = 0; i < 32; i++) sum += acc[i];
    printf("accumulate: acc[0] %u acc[31] %u sum %llu\n", acc[0], acc[31], (unsigned long long)sum);
    EXPECT(acc[0] == 1000000 + 15 && acc[31] == 31000 + 15 + 5 * 31, "accumulate %u %u", acc[0], acc[31]);
    for (unsigned *p : {flag, out, acc}) CK(cudaFreeHost(p));
    printf("PASS\n");
    return 0;
}
