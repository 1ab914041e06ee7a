// Another tenant's work while a client faults (the worker's process per
// session, issue 3): keeps verified kernel work and copies going for
// argv[1] seconds (default 4) and prints PASS only if every round gave the
// right result. Natively it runs alone; through the client it runs while
// illegal_address faults in another client of the same worker.
#include "common.cuh"
#include <chrono>
#include <vector>

__global__ void axpb(unsigned *x, unsigned a, unsigned b, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) x[i] = x[i] * a + b;
}

int main(int argc, char **argv) {
    double secs = argc > 1 ? atof(argv[1]) : 4.0;
    const int n = 1 << 16;
    std::vector<unsigned> h(n), want(n);
    unsigned *d;
    CK(cudaMalloc(&d, n * sizeof(unsigned)));
    auto t0 = std::chrono::steady_clock::now();
    int rounds = 0;
    while (std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() < secs) {
        for (int i = 0; i < n; i++) h[i] = want[i] = i * 2654435761u + rounds;
        CK(cudaMemcpy(d, h.data(), n * sizeof(unsigned), cudaMemcpyHostToDevice));
        for (int k = 0; k < 8; k++) {
            axpb<<<n / 256, 256>>>(d, 3 + k, rounds, n);
            for (int i = 0; i < n; i++) want[i] = want[i] * (3 + k) + rounds;
        }
        CK(cudaGetLastError());
        CK(cudaMemcpy(h.data(), d, n * sizeof(unsigned), cudaMemcpyDeviceToHost));
        for (int i = 0; i < n; i++)
            EXPECT(h[i] == want[i], "round %d: element %d is %u, expected %u", rounds, i, h[i], want[i]);
        rounds++;
    }
    CK(cudaFree(d));
    fprintf(stderr, "%d rounds\n", rounds);
    printf("PASS bystander\n");
    return 0;
}
