// The classic vector add through cudart.
#include "common.cuh"

__global__ void add(const float *a, const float *b, float *c, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) c[i] = a[i] + b[i];
}

int main() {
    const int n = 1 << 22;
    float *a = (float *)malloc(n * 4), *b = (float *)malloc(n * 4), *c = (float *)malloc(n * 4);
    for (int i = 0; i < n; i++) { a[i] = (float)(i % 1013) * 0.5f; b[i] = (float)(i % 97) + 0.25f; }
    float *da, *db, *dc;
    CK(cudaMalloc(&da, n * 4));
    CK(cudaMalloc(&db, n * 4));
    CK(cudaMalloc(&dc, n * 4));
    CK(cudaMemcpy(da, a, n * 4, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(db, b, n * 4, cudaMemcpyHostToDevice));
    add<<<(n + 255) / 256, 256>>>(da, db, dc, n);
    CK(cudaGetLastError());
    CK(cudaMemcpy(c, dc, n * 4, cudaMemcpyDeviceToHost));
    double sum = 0;
    for (int i = 0; i < n; i++) {
        EXPECT(c[i] == a[i] + b[i], "c[%d] = %f", i, c[i]);
        sum += c[i];
    }
    printf("vector add %d ok checksum %.2f\n", n, sum);
    CK(cudaFree(da));
    CK(cudaFree(db));
    CK(cudaFree(dc));
    printf("PASS\n");
    return 0;
}
