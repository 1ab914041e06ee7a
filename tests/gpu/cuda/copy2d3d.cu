// Pitched 2D and 3D memory: cudaMallocPitch, cudaMemcpy2D (HtoD, DtoH,
// DtoD of a sub-rectangle), cudaMemcpy2DAsync (HtoD of a column, DtoH),
// cudaMemset2D; cudaMalloc3D, cudaMemcpy3D between a padded host volume and
// the device (HtoD of part of it, DtoH), cudaMemcpy3DAsync DtoD with
// offsets, cudaMemset3D of all and of a sub-box. Every element is checked,
// and the host padding must stay untouched.
#include <vector>
#include "common.cuh"

__global__ void k2(char *d, size_t pitch, int w, int h) {
    int x = blockIdx.x * blockDim.x + threadIdx.x, y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x < w && y < h) { int *row = (int *)(d + y * pitch); row[x] = row[x] * 3 + x - y; }
}
__global__ void k3(cudaPitchedPtr p, int nx, int ny, int nz) {
    int x = blockIdx.x * blockDim.x + threadIdx.x, y = blockIdx.y, z = blockIdx.z;
    if (x < nx && y < ny && z < nz) ((int *)((char *)p.ptr + (z * ny + y) * p.pitch))[x] ^= x + 131 * y + 7919 * z;
}

int main() {
    cudaStream_t s;  // blocking: ordered after the legacy-stream copies and memsets
    CK(cudaStreamCreate(&s));
    // ---- 2D
    const int W = 1000, H = 300, HP = W + 24, W2 = 600, H2 = 200, OP = W2 + 8;
    const int x0 = 100, y0 = 50, rw = 400, rh = 120, x1 = 150, y1 = 30, cx = 500;
    std::vector<int> h(HP * H, -1), col(3 * H), out(W * H), out2(OP * H2, -2);
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) h[y * HP + x] = y * 100003 + x * 7 + 1;
    for (int i = 0; i < 3 * H; i++) col[i] = -1000 - i;
    char *d, *d2;
    size_t pitch, pitch2;
    CK(cudaMallocPitch((void **)&d, &pitch, W * 4, H));
    CK(cudaMallocPitch((void **)&d2, &pitch2, W2 * 4, H2));
    printf("pitches %zu %zu\n", pitch, pitch2);
    CK(cudaMemcpy2D(d, pitch, h.data(), HP * 4, W * 4, H, cudaMemcpyHostToDevice));
    k2<<<dim3((W + 31) / 32, (H + 7) / 8), dim3(32, 8), 0, s>>>(d, pitch, W, H);
    CK(cudaGetLastError());
    CK(cudaMemcpy2DAsync(d + cx * 4, pitch, col.data(), 3 * 4, 3 * 4, H, cudaMemcpyHostToDevice, s));
    CK(cudaStreamSynchronize(s));
    CK(cudaMemset2D(d2, pitch2, 0x7F, W2 * 4, H2));
    CK(cudaMemcpy2D(d2 + y1 * pitch2 + x1 * 4, pitch2, d + y0 * pitch + x0 * 4, pitch, rw * 4, rh, cudaMemcpyDeviceToDevice));
    CK(cudaMemcpy2DAsync(out2.data(), OP * 4, d2, pitch2, W2 * 4, H2, cudaMemcpyDeviceToHost, s));
    CK(cudaMemcpy2D(out.data(), W * 4, d, pitch, W * 4, H, cudaMemcpyDeviceToHost));
    CK(cudaStreamSynchronize(s));
    auto e2 = [&](int x, int y) { return x >= cx && x < cx + 3 ? col[y * 3 + x - cx] : h[y * HP + x] * 3 + x - y; };
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) EXPECT(out[y * W + x] == e2(x, y), "2D (%d,%d) = %d, want %d", x, y, out[y * W + x], e2(x, y));
    for (int y = 0; y < H2; y++)
        for (int x = 0; x < OP; x++) {
            int want = x >= W2 ? -2 : x >= x1 && x < x1 + rw && y >= y1 && y < y1 + rh ? e2(x - x1 + x0, y - y1 + y0) : 0x7F7F7F7F;
            EXPECT(out2[y * OP + x] == want, "2D DtoD (%d,%d) = %d, want %d", x, y, out2[y * OP + x], want);
        }
    printf("2D ok digests %016llx %016llx\n", (unsigned long long)fnv(out.data(), out.size() * 4),
           (unsigned long long)fnv(out2.data(), out2.size() * 4));
    // ---- 3D
    const int NX = 64, NY = 40, NZ = 12, HX = NX + 5, HY = NY + 2, OX = NX + 3, OY = NY + 1;
    const int bx = 4, by = 2, bz = 1, BX = 40, BY = 30, BZ = 8;
    cudaExtent ext = make_cudaExtent(NX * 4, NY, NZ);
    cudaPitchedPtr dp, dq;
    CK(cudaMalloc3D(&dp, ext));
    CK(cudaMalloc3D(&dq, ext));
    printf("3D pitch %zu xsize %zu ysize %zu\n", dp.pitch, dp.xsize, dp.ysize);
    std::vector<int> h3(HX * HY * NZ, -1), o3(OX * OY * NZ, -3), o4(OX * OY * NZ, -4), E(NX * NY * NZ);
    for (int z = 0; z < NZ; z++)
        for (int y = 0; y < NY; y++)
            for (int x = 0; x < NX; x++) h3[(z * HY + y) * HX + x] = z * 1000003 + y * 1009 + x + 5;
    CK(cudaMemset3D(dp, 0x01, ext));
    CK(cudaMemset3D(dq, 0, ext));
    cudaMemcpy3DParms p = {};
    p.srcPtr = make_cudaPitchedPtr(h3.data(), HX * 4, NX, HY);
    p.dstPtr = dp;
    p.extent = make_cudaExtent(NX * 4, NY, NZ - 2);
    p.kind = cudaMemcpyHostToDevice;
    CK(cudaMemcpy3D(&p));
    cudaPitchedPtr sub = make_cudaPitchedPtr((char *)dp.ptr + (2 * NY + 4) * dp.pitch + 8 * 4, dp.pitch, dp.xsize, dp.ysize);
    CK(cudaMemset3D(sub, 0x22, make_cudaExtent(16 * 4, 10, 3)));
    k3<<<dim3(1, NY, NZ), NX, 0, s>>>(dp, NX, NY, NZ);
    CK(cudaGetLastError());
    cudaMemcpy3DParms q = {};
    q.srcPtr = dp;
    q.srcPos = make_cudaPos(bx * 4, by, bz);
    q.dstPtr = dq;
    q.extent = make_cudaExtent(BX * 4, BY, BZ);
    q.kind = cudaMemcpyDeviceToDevice;
    CK(cudaMemcpy3DAsync(&q, s));
    CK(cudaStreamSynchronize(s));
    for (int k = 0; k < 2; k++) {
        cudaMemcpy3DParms r = {};
        r.srcPtr = k ? dq : dp;
        r.dstPtr = make_cudaPitchedPtr(k ? o4.data() : o3.data(), OX * 4, NX, OY);
        r.extent = ext;
        r.kind = cudaMemcpyDeviceToHost;
        CK(cudaMemcpy3D(&r));
    }
    for (int z = 0; z < NZ; z++)
        for (int y = 0; y < NY; y++)
            for (int x = 0; x < NX; x++) {
                int v = z < NZ - 2 ? h3[(z * HY + y) * HX + x] : 0x01010101;
                if (x >= 8 && x < 24 && y >= 4 && y < 14 && z >= 2 && z < 5) v = 0x22222222;
                E[(z * NY + y) * NX + x] = v ^ (x + 131 * y + 7919 * z);
            }
    for (int z = 0; z < NZ; z++)
        for (int y = 0; y < OY; y++)
            for (int x = 0; x < OX; x++) {
                bool in = x < NX && y < NY;
                int a = o3[(z * OY + y) * OX + x], b = o4[(z * OY + y) * OX + x];
                int wa = in ? E[(z * NY + y) * NX + x] : -3;
                int wb = !in ? -4 : x < BX && y < BY && z < BZ ? E[((z + bz) * NY + y + by) * NX + x + bx] : 0;
                EXPECT(a == wa && b == wb, "3D (%d,%d,%d) = %d %d, want %d %d", x, y, z, a, b, wa, wb);
            }
    printf("3D ok digests %016llx %016llx\n", (unsigned long long)fnv(o3.data(), o3.size() * 4),
           (unsigned long long)fnv(o4.data(), o4.size() * 4));
    CK(cudaFree(d));
    CK(cudaFree(d2));
    CK(cudaFree(dp.ptr));
    CK(cudaFree(dq.ptr));
    CK(cudaStreamDestroy(s));
    printf("PASS\n");
    return 0;
}
