// CUDA arrays, texture and surface objects: cudaMallocArray (float, 2D,
// surface load/store) and cudaMalloc3DArray; cudaMemcpy2DToArray /
// cudaMemcpy2DFromArray host↔array↔device with offsets; a kernel that reads
// a texture object over one array with point filtering (tex2D<float>) and
// writes a surface object over another (surf2Dwrite); cudaMemcpy3D
// host→array (a block at an offset), array→device, device→host. Every
// element is checked against the CPU; the digests are deterministic.
#include <vector>
#include "common.cuh"

__global__ void sample(cudaTextureObject_t t, cudaSurfaceObject_t s, int w, int h) {
    int x = blockIdx.x * blockDim.x + threadIdx.x, y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x < w && y < h) {
        // Unnormalized coordinates, point filtering: texel (x, y) exactly.
        float v = tex2D<float>(t, x + 0.5f, y + 0.5f);
        // Surface x is in bytes.
        surf2Dwrite(v * 2.0f + 1.0f, s, x * (int)sizeof(float), y);
    }
}

static float value(int x, int y) { return (float)(y * 64 + x) * 0.25f; }

int main() {
    // ---- 2D: host → array A (whole, then a window at an offset)
    const int W = 37, H = 19, WX = 3, WY = 2, WW = 5, WH = 4;
    std::vector<float> model(W * H), win(WW * WH), back(W * H), wback(WW * WH);
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) model[y * W + x] = value(x, y);
    for (int i = 0; i < WW * WH; i++) win[i] = -1000.0f - i;
    cudaChannelFormatDesc fd = cudaCreateChannelDesc<float>();
    cudaArray_t a, b, c;
    CK(cudaMallocArray(&a, &fd, W, H, cudaArraySurfaceLoadStore));
    CK(cudaMallocArray(&b, &fd, W, H, cudaArraySurfaceLoadStore));
    CK(cudaMallocArray(&c, &fd, W, H));
    CK(cudaMemcpy2DToArray(a, 0, 0, model.data(), W * 4, W * 4, H, cudaMemcpyHostToDevice));
    // wOffset is in bytes, hOffset in rows.
    CK(cudaMemcpy2DToArray(a, WX * 4, WY, win.data(), WW * 4, WW * 4, WH, cudaMemcpyHostToDevice));
    for (int y = 0; y < WH; y++)
        for (int x = 0; x < WW; x++) model[(WY + y) * W + WX + x] = win[y * WW + x];
    cudaChannelFormatDesc got;
    cudaExtent ext;
    unsigned flags;
    CK(cudaArrayGetInfo(&got, &ext, &flags, a));
    EXPECT(got.x == 32 && got.f == cudaChannelFormatKindFloat && ext.width == (size_t)W &&
               ext.height == (size_t)H && (flags & cudaArraySurfaceLoadStore),
           "array info: %d bits kind %d %zux%zu flags %u", got.x, (int)got.f, ext.width, ext.height, flags);

    // ---- texture object over A, surface object over B, one kernel
    cudaResourceDesc rd = {};
    rd.resType = cudaResourceTypeArray;
    rd.res.array.array = a;
    cudaTextureDesc td = {};
    td.addressMode[0] = td.addressMode[1] = cudaAddressModeClamp;
    td.filterMode = cudaFilterModePoint;
    td.readMode = cudaReadModeElementType;
    td.normalizedCoords = 0;
    cudaTextureObject_t tex;
    CK(cudaCreateTextureObject(&tex, &rd, &td, nullptr));
    cudaResourceDesc rd_back;
    CK(cudaGetTextureObjectResourceDesc(&rd_back, tex));
    EXPECT(rd_back.resType == cudaResourceTypeArray && rd_back.res.array.array == a, "texture resource differs");
    cudaResourceDesc sd = {};
    sd.resType = cudaResourceTypeArray;
    sd.res.array.array = b;
    cudaSurfaceObject_t surf;
    CK(cudaCreateSurfaceObject(&surf, &sd));
    sample<<<dim3((W + 15) / 16, (H + 7) / 8), dim3(16, 8)>>>(tex, surf, W, H);
    CK(cudaGetLastError());
    CK(cudaDeviceSynchronize());
    CK(cudaMemcpy2DFromArray(back.data(), W * 4, b, 0, 0, W * 4, H, cudaMemcpyDeviceToHost));
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            float want = model[y * W + x] * 2.0f + 1.0f;
            EXPECT(back[y * W + x] == want, "surface (%d,%d) = %f, want %f", x, y, back[y * W + x], want);
        }
    // The window, read back from B at the same offset.
    CK(cudaMemcpy2DFromArray(wback.data(), WW * 4, b, WX * 4, WY, WW * 4, WH, cudaMemcpyDeviceToHost));
    for (int i = 0; i < WW * WH; i++)
        EXPECT(wback[i] == win[i] * 2.0f + 1.0f, "window %d = %f", i, wback[i]);
    printf("2D ok digest %016llx\n", (unsigned long long)fnv(back.data(), back.size() * 4));

    // ---- array B → pitched device memory → array C → host
    float *d;
    size_t pitch;
    CK(cudaMallocPitch((void **)&d, &pitch, W * 4, H));
    CK(cudaMemcpy2DFromArray(d, pitch, b, 0, 0, W * 4, H, cudaMemcpyDeviceToDevice));
    CK(cudaMemcpy2DToArray(c, 0, 0, d, pitch, W * 4, H, cudaMemcpyDeviceToDevice));
    std::vector<float> cback(W * H, -7.0f);
    CK(cudaMemcpy2DFromArray(cback.data(), W * 4, c, 0, 0, W * 4, H, cudaMemcpyDeviceToHost));
    EXPECT(cback == back, "array -> device -> array round trip differs");
    CK(cudaDestroyTextureObject(tex));
    CK(cudaDestroySurfaceObject(surf));
    CK(cudaFree(d));
    CK(cudaFreeArray(a));
    CK(cudaFreeArray(b));
    CK(cudaFreeArray(c));

    // ---- 3D: host → array (zeros, then a block at an offset) → device → host
    const int NX = 9, NY = 7, NZ = 5, BX = 4, BY = 3, BZ = 2, PX = 2, PY = 1, PZ = 2;
    std::vector<float> vol(NX * NY * NZ, 0.0f), box(BX * BY * BZ), out3(NX * NY * NZ, -5.0f);
    for (int i = 0; i < BX * BY * BZ; i++) box[i] = 0.5f * i + 3.0f;
    cudaArray_t a3;
    CK(cudaMalloc3DArray(&a3, &fd, make_cudaExtent(NX, NY, NZ)));
    cudaMemcpy3DParms p = {};
    p.srcPtr = make_cudaPitchedPtr(vol.data(), NX * 4, NX, NY);
    p.dstArray = a3;
    p.extent = make_cudaExtent(NX, NY, NZ);  // elements of the array
    p.kind = cudaMemcpyHostToDevice;
    CK(cudaMemcpy3D(&p));
    p = {};
    p.srcPtr = make_cudaPitchedPtr(box.data(), BX * 4, BX, BY);
    p.dstArray = a3;
    p.dstPos = make_cudaPos(PX, PY, PZ);  // elements of the array
    p.extent = make_cudaExtent(BX, BY, BZ);
    p.kind = cudaMemcpyHostToDevice;
    CK(cudaMemcpy3D(&p));
    for (int z = 0; z < BZ; z++)
        for (int y = 0; y < BY; y++)
            for (int x = 0; x < BX; x++)
                vol[((PZ + z) * NY + PY + y) * NX + PX + x] = box[(z * BY + y) * BX + x];
    cudaPitchedPtr dp;
    CK(cudaMalloc3D(&dp, make_cudaExtent(NX * 4, NY, NZ)));
    p = {};
    p.srcArray = a3;
    p.dstPtr = dp;
    p.extent = make_cudaExtent(NX, NY, NZ);
    p.kind = cudaMemcpyDeviceToDevice;
    CK(cudaMemcpy3D(&p));
    p = {};
    p.srcPtr = dp;
    p.dstPtr = make_cudaPitchedPtr(out3.data(), NX * 4, NX, NY);
    p.extent = make_cudaExtent(NX * 4, NY, NZ);  // bytes: no array in this copy
    p.kind = cudaMemcpyDeviceToHost;
    CK(cudaMemcpy3D(&p));
    for (int i = 0; i < NX * NY * NZ; i++) EXPECT(out3[i] == vol[i], "3D element %d = %f, want %f", i, out3[i], vol[i]);
    // One slice straight from the array to the host.
    std::vector<float> slice(NX * NY, -9.0f);
    p = {};
    p.srcArray = a3;
    p.srcPos = make_cudaPos(0, 0, PZ + 1);
    p.dstPtr = make_cudaPitchedPtr(slice.data(), NX * 4, NX, NY);
    p.extent = make_cudaExtent(NX, NY, 1);
    p.kind = cudaMemcpyDeviceToHost;
    CK(cudaMemcpy3D(&p));
    for (int i = 0; i < NX * NY; i++)
        EXPECT(slice[i] == vol[(PZ + 1) * NX * NY + i], "slice element %d = %f", i, slice[i]);
    printf("3D ok digest %016llx\n", (unsigned long long)fnv(out3.data(), out3.size() * 4));
    CK(cudaFree(dp.ptr));
    CK(cudaFreeArray(a3));
    printf("PASS\n");
    return 0;
}
