// Tiled matrix multiply with shared memory through cudart; exact in float.
#include "common.cuh"
#define T 16

__global__ void mm(const float *A, const float *B, float *C, int n) {
    __shared__ float As[T][T], Bs[T][T];
    int tx = threadIdx.x, ty = threadIdx.y, r = blockIdx.y * T + ty, c = blockIdx.x * T + tx;
    float acc = 0;
    for (int t = 0; t < n; t += T) {
        As[ty][tx] = A[r * n + t + tx];
        Bs[ty][tx] = B[(t + ty) * n + c];
        __syncthreads();
        for (int k = 0; k < T; k++) acc += As[ty][k] * Bs[k][tx];
        __syncthreads();
    }
    C[r * n + c] = acc;
}

int main() {
    const int n = 1024;
    size_t bytes = (size_t)n * n * 4;
    float *A = (float *)malloc(bytes), *B = (float *)malloc(bytes), *C = (float *)malloc(bytes);
    for (int i = 0; i < n * n; i++) { A[i] = (float)((i * 7 + 3) % 17 - 8); B[i] = (float)((i * 5 + 1) % 13 - 6); }
    float *dA, *dB, *dC;
    CK(cudaMalloc(&dA, bytes));
    CK(cudaMalloc(&dB, bytes));
    CK(cudaMalloc(&dC, bytes));
    CK(cudaMemcpy(dA, A, bytes, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(dB, B, bytes, cudaMemcpyHostToDevice));
    cudaEvent_t e0, e1;
    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));
    CK(cudaEventRecord(e0));
    mm<<<dim3(n / T, n / T), dim3(T, T)>>>(dA, dB, dC, n);
    CK(cudaEventRecord(e1));
    CK(cudaEventSynchronize(e1));
    float ms = 0;
    CK(cudaEventElapsedTime(&ms, e0, e1));
    fprintf(stderr, "matmul %d: %.3f ms\n", n, ms);
    CK(cudaMemcpy(C, dC, bytes, cudaMemcpyDeviceToHost));
    for (int i = 0; i < n; i += 61)
        for (int j = 0; j < n; j += 67) {
            float want = 0;
            for (int k = 0; k < n; k++) want += A[i * n + k] * B[k * n + j];
            EXPECT(C[i * n + j] == want, "C[%d][%d] = %f, expected %f", i, j, C[i * n + j], want);
        }
    printf("matmul %dx%d ok digest %016llx\n", n, n, (unsigned long long)fnv(C, bytes));
    printf("PASS\n");
    return 0;
}
