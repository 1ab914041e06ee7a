/* End-to-end check of CUDA arrays, copies with an array end, texture and
 * surface objects through our libcuda.so.1 against the TEST backend (arrays
 * are host buffers there; nothing samples the objects). The same calls on a
 * GPU, with a kernel sampling and writing the objects, are in
 * tests/gpu/cuda/arrays.cu.
 *
 * usage: arrays full           everything below, then "PASS ..."
 *        arrays limit          under a 64 MB worker limit: arrays are charged
 *        arrays hold           create an array and a texture object, print
 *                              "holding <array> <tex>", wait for a line on
 *                              stdin, check the array is intact, PASS
 *        arrays intrude A T    name another session's array A and object T:
 *                              refused; then a round trip of its own, PASS
 * Exit 0 on success; on failure one line saying what differed. */
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef int CUresult;
typedef int CUdevice;
typedef unsigned long long CUdeviceptr, CUtexObject, CUsurfObject;
typedef void *CUcontext, *CUstream, *CUarray;

/* Layouts as in cuda.h (checked below with _Static_assert). */
typedef struct { size_t Width, Height; int Format; unsigned NumChannels; } CUDA_ARRAY_DESCRIPTOR;
typedef struct { size_t Width, Height, Depth; int Format; unsigned NumChannels, Flags; } CUDA_ARRAY3D_DESCRIPTOR;
typedef struct {
    size_t srcXInBytes, srcY; int srcMemoryType; const void *srcHost; CUdeviceptr srcDevice;
    CUarray srcArray; size_t srcPitch;
    size_t dstXInBytes, dstY; int dstMemoryType; void *dstHost; CUdeviceptr dstDevice;
    CUarray dstArray; size_t dstPitch;
    size_t WidthInBytes, Height;
} CUDA_MEMCPY2D;
typedef struct {
    size_t srcXInBytes, srcY, srcZ, srcLOD; int srcMemoryType; const void *srcHost;
    CUdeviceptr srcDevice; CUarray srcArray; void *reserved0; size_t srcPitch, srcHeight;
    size_t dstXInBytes, dstY, dstZ, dstLOD; int dstMemoryType; void *dstHost;
    CUdeviceptr dstDevice; CUarray dstArray; void *reserved1; size_t dstPitch, dstHeight;
    size_t WidthInBytes, Height, Depth;
} CUDA_MEMCPY3D;
typedef struct {
    int resType;
    union {
        struct { CUarray hArray; } array;
        struct { void *hMipmappedArray; } mipmap;
        struct { CUdeviceptr devPtr; int format; unsigned numChannels; size_t sizeInBytes; } linear;
        struct { CUdeviceptr devPtr; int format; unsigned numChannels; size_t width, height, pitchInBytes; } pitch2D;
        struct { int reserved[32]; } reserved;
    } res;
    unsigned flags;
} CUDA_RESOURCE_DESC;
typedef struct {
    int addressMode[3]; int filterMode; unsigned flags, maxAnisotropy; int mipmapFilterMode;
    float mipmapLevelBias, minMipmapLevelClamp, maxMipmapLevelClamp, borderColor[4];
    int reserved[12];
} CUDA_TEXTURE_DESC;
_Static_assert(sizeof(CUDA_ARRAY_DESCRIPTOR) == 24, "CUDA_ARRAY_DESCRIPTOR");
_Static_assert(sizeof(CUDA_ARRAY3D_DESCRIPTOR) == 40, "CUDA_ARRAY3D_DESCRIPTOR");
_Static_assert(sizeof(CUDA_MEMCPY2D) == 128, "CUDA_MEMCPY2D");
_Static_assert(sizeof(CUDA_MEMCPY3D) == 200, "CUDA_MEMCPY3D");
_Static_assert(sizeof(CUDA_RESOURCE_DESC) == 144, "CUDA_RESOURCE_DESC");
_Static_assert(sizeof(CUDA_TEXTURE_DESC) == 104, "CUDA_TEXTURE_DESC");

static void *cuda;
#define FN(ret, name, args) static ret(*name) args;
#define LOAD(name)                                                             \
    do {                                                                       \
        *(void **)&name = dlsym(cuda, #name);                                  \
        if (!name) { printf("FAIL missing export %s\n", #name); exit(10); }    \
    } while (0)

FN(CUresult, cuInit, (unsigned))
FN(CUresult, cuDeviceGet, (CUdevice *, int))
FN(CUresult, cuDevicePrimaryCtxRetain, (CUcontext *, CUdevice))
FN(CUresult, cuCtxSetCurrent, (CUcontext))
FN(CUresult, cuGetErrorName, (CUresult, const char **))
FN(CUresult, cuMemAlloc_v2, (CUdeviceptr *, size_t))
FN(CUresult, cuMemFree_v2, (CUdeviceptr))
FN(CUresult, cuMemcpyHtoD_v2, (CUdeviceptr, const void *, size_t))
FN(CUresult, cuMemcpyDtoH_v2, (void *, CUdeviceptr, size_t))
FN(CUresult, cuStreamCreate, (CUstream *, unsigned))
FN(CUresult, cuStreamDestroy_v2, (CUstream))
FN(CUresult, cuStreamSynchronize, (CUstream))
FN(CUresult, cuArrayCreate_v2, (CUarray *, const CUDA_ARRAY_DESCRIPTOR *))
FN(CUresult, cuArray3DCreate_v2, (CUarray *, const CUDA_ARRAY3D_DESCRIPTOR *))
FN(CUresult, cuArrayDestroy, (CUarray))
FN(CUresult, cuArrayGetDescriptor_v2, (CUDA_ARRAY_DESCRIPTOR *, CUarray))
FN(CUresult, cuArray3DGetDescriptor_v2, (CUDA_ARRAY3D_DESCRIPTOR *, CUarray))
FN(CUresult, cuMipmappedArrayCreate, (void **, const CUDA_ARRAY3D_DESCRIPTOR *, unsigned))
FN(CUresult, cuMemcpy2D_v2, (const CUDA_MEMCPY2D *))
FN(CUresult, cuMemcpy2DAsync_v2, (const CUDA_MEMCPY2D *, CUstream))
FN(CUresult, cuMemcpy3D_v2, (const CUDA_MEMCPY3D *))
FN(CUresult, cuMemcpy3DAsync_v2, (const CUDA_MEMCPY3D *, CUstream))
FN(CUresult, cuMemcpyHtoA_v2, (CUarray, size_t, const void *, size_t))
FN(CUresult, cuMemcpyAtoH_v2, (void *, CUarray, size_t, size_t))
FN(CUresult, cuMemcpyAtoD_v2, (CUdeviceptr, CUarray, size_t, size_t))
FN(CUresult, cuMemcpyDtoA_v2, (CUarray, size_t, CUdeviceptr, size_t))
FN(CUresult, cuMemcpyAtoA_v2, (CUarray, size_t, CUarray, size_t, size_t))
FN(CUresult, cuMemcpyHtoAAsync_v2, (CUarray, size_t, const void *, size_t, CUstream))
FN(CUresult, cuMemcpyAtoHAsync_v2, (void *, CUarray, size_t, size_t, CUstream))
FN(CUresult, cuTexObjectCreate, (CUtexObject *, const CUDA_RESOURCE_DESC *, const CUDA_TEXTURE_DESC *, const void *))
FN(CUresult, cuTexObjectDestroy, (CUtexObject))
FN(CUresult, cuTexObjectGetResourceDesc, (CUDA_RESOURCE_DESC *, CUtexObject))
FN(CUresult, cuSurfObjectCreate, (CUsurfObject *, const CUDA_RESOURCE_DESC *))
FN(CUresult, cuSurfObjectDestroy, (CUsurfObject))

#define CHECK(call)                                                            \
    do {                                                                       \
        CUresult r_ = (call);                                                  \
        if (r_ != 0) {                                                         \
            const char *s_ = "?";                                              \
            cuGetErrorName(r_, &s_);                                           \
            printf("FAIL line %d: %s -> %d %s\n", __LINE__, #call, r_, s_);   \
            exit(1);                                                           \
        }                                                                      \
    } while (0)
#define EXPECT_RC(want, call)                                                  \
    do {                                                                       \
        CUresult r_ = (call);                                                  \
        if (r_ != (want)) {                                                    \
            printf("FAIL line %d: %s -> %d, expected %d\n", __LINE__, #call, r_, (want)); \
            exit(1);                                                           \
        }                                                                      \
    } while (0)
#define EXPECT(cond, ...)                                                      \
    do {                                                                       \
        if (!(cond)) { printf("FAIL line %d: ", __LINE__); printf(__VA_ARGS__); printf("\n"); exit(1); } \
    } while (0)

enum { INVALID_VALUE = 1, OUT_OF_MEMORY = 2, INVALID_HANDLE = 400, NOT_SUPPORTED = 801 };
enum { U8 = 0x01, U16 = 0x02, FLOAT = 0x20, HOST = 1, DEVICE = 2, ARRAY = 3 };
enum { SURFACE_LDST = 0x02 };
#define MB (1ull << 20)

static void load(void) {
    cuda = dlopen("libcuda.so.1", RTLD_NOW);
    if (!cuda) { printf("FAIL dlopen libcuda.so.1: %s\n", dlerror()); exit(10); }
    LOAD(cuInit); LOAD(cuDeviceGet); LOAD(cuDevicePrimaryCtxRetain); LOAD(cuCtxSetCurrent);
    LOAD(cuGetErrorName); LOAD(cuMemAlloc_v2); LOAD(cuMemFree_v2); LOAD(cuMemcpyHtoD_v2);
    LOAD(cuMemcpyDtoH_v2); LOAD(cuStreamCreate); LOAD(cuStreamDestroy_v2);
    LOAD(cuStreamSynchronize); LOAD(cuArrayCreate_v2); LOAD(cuArray3DCreate_v2);
    LOAD(cuArrayDestroy); LOAD(cuArrayGetDescriptor_v2); LOAD(cuArray3DGetDescriptor_v2);
    LOAD(cuMipmappedArrayCreate); LOAD(cuMemcpy2D_v2); LOAD(cuMemcpy2DAsync_v2);
    LOAD(cuMemcpy3D_v2); LOAD(cuMemcpy3DAsync_v2); LOAD(cuMemcpyHtoA_v2); LOAD(cuMemcpyAtoH_v2);
    LOAD(cuMemcpyAtoD_v2); LOAD(cuMemcpyDtoA_v2); LOAD(cuMemcpyAtoA_v2);
    LOAD(cuMemcpyHtoAAsync_v2); LOAD(cuMemcpyAtoHAsync_v2); LOAD(cuTexObjectCreate);
    LOAD(cuTexObjectDestroy); LOAD(cuTexObjectGetResourceDesc); LOAD(cuSurfObjectCreate);
    LOAD(cuSurfObjectDestroy);
}

static void setup(void) {
    CUdevice dev;
    CUcontext ctx;
    CHECK(cuInit(0));
    CHECK(cuDeviceGet(&dev, 0));
    CHECK(cuDevicePrimaryCtxRetain(&ctx, dev));
    CHECK(cuCtxSetCurrent(ctx));
}

static unsigned char pattern(size_t i, unsigned seed) { return (unsigned char)(i * 131u + seed * 17u + 7u); }

static CUarray array2d(size_t w, size_t h, int format, unsigned channels) {
    CUDA_ARRAY_DESCRIPTOR d = { w, h, format, channels };
    CUarray a;
    CHECK(cuArrayCreate_v2(&a, &d));
    return a;
}

static CUDA_MEMCPY2D copy2d(size_t w, size_t h) {
    CUDA_MEMCPY2D c;
    memset(&c, 0, sizeof c);
    c.WidthInBytes = w;
    c.Height = h;
    return c;
}

/* 2D: host → array A (a window at an offset) → device (whole) → array B →
 * host, checked byte for byte against a model of A. */
static void two_d(CUstream s) {
    enum { W = 13, H = 7, ELEM = 8 }; /* FLOAT × 2 channels */
    const size_t row = W * ELEM;
    CUarray a = array2d(W, H, FLOAT, 2), b = array2d(W, H, FLOAT, 2);
    CUDA_ARRAY_DESCRIPTOR got;
    CHECK(cuArrayGetDescriptor_v2(&got, a));
    EXPECT(got.Width == W && got.Height == H && got.Format == FLOAT && got.NumChannels == 2,
           "descriptor %zu x %zu format %d channels %u", got.Width, got.Height, got.Format, got.NumChannels);

    unsigned char model[H][W * ELEM], zero[H][W * ELEM], src[3][40], back[H][W * ELEM];
    memset(zero, 0, sizeof zero);
    /* Start from zeros everywhere, through the whole-array path. */
    CUDA_MEMCPY2D c = copy2d(row, H);
    c.srcMemoryType = HOST; c.srcHost = zero; c.srcPitch = row;
    c.dstMemoryType = ARRAY; c.dstArray = a;
    CHECK(cuMemcpy2D_v2(&c));
    memcpy(model, zero, sizeof model);
    /* A 5-element × 3-row window at element 1, row 2, from a host buffer
     * with a wider pitch (only 40 of its bytes per row are copied). */
    unsigned char wide[3][64];
    for (size_t i = 0; i < sizeof wide; i++) ((unsigned char *)wide)[i] = pattern(i, 1);
    c = copy2d(40, 3);
    c.srcMemoryType = HOST; c.srcHost = wide; c.srcPitch = 64;
    c.dstMemoryType = ARRAY; c.dstArray = a; c.dstXInBytes = ELEM; c.dstY = 2;
    CHECK(cuMemcpy2D_v2(&c));
    for (int y = 0; y < 3; y++) memcpy(&model[2 + y][ELEM], wide[y], 40);
    (void)src;

    /* Array → pitched device memory (pitch 128 > row 104), whole. */
    CUdeviceptr d;
    const size_t pitch = 128;
    CHECK(cuMemAlloc_v2(&d, pitch * H));
    c = copy2d(row, H);
    c.srcMemoryType = ARRAY; c.srcArray = a;
    c.dstMemoryType = DEVICE; c.dstDevice = d; c.dstPitch = pitch;
    CHECK(cuMemcpy2D_v2(&c));
    /* Device → array B on a stream, then B → host on the stream. */
    c = copy2d(row, H);
    c.srcMemoryType = DEVICE; c.srcDevice = d; c.srcPitch = pitch;
    c.dstMemoryType = ARRAY; c.dstArray = b;
    CHECK(cuMemcpy2DAsync_v2(&c, s));
    memset(back, 0xEE, sizeof back);
    c = copy2d(row, H);
    c.srcMemoryType = ARRAY; c.srcArray = b;
    c.dstMemoryType = HOST; c.dstHost = back; c.dstPitch = row;
    CHECK(cuMemcpy2DAsync_v2(&c, s));
    CHECK(cuStreamSynchronize(s));
    for (int y = 0; y < H; y++)
        for (size_t x = 0; x < row; x++)
            EXPECT(back[y][x] == model[y][x], "2D round trip: row %d byte %zu is %u, want %u", y, x, back[y][x], model[y][x]);

    /* A window read back from an offset: rows 2..4, bytes 8..48 of B. */
    unsigned char win[3][40];
    c = copy2d(40, 3);
    c.srcMemoryType = ARRAY; c.srcArray = b; c.srcXInBytes = ELEM; c.srcY = 2;
    c.dstMemoryType = HOST; c.dstHost = win; c.dstPitch = 40;
    CHECK(cuMemcpy2D_v2(&c));
    for (int y = 0; y < 3; y++)
        EXPECT(memcmp(win[y], wide[y], 40) == 0, "window row %d differs", y);

    /* Regions outside the array are refused: one byte too wide, one row
     * too many, and a width beyond a whole row. */
    c = copy2d(40, 3);
    c.srcMemoryType = HOST; c.srcHost = wide; c.srcPitch = 64;
    c.dstMemoryType = ARRAY; c.dstArray = a; c.dstXInBytes = row - 39; c.dstY = 0;
    EXPECT_RC(INVALID_VALUE, cuMemcpy2D_v2(&c));
    c.dstXInBytes = 0; c.dstY = H - 2;
    EXPECT_RC(INVALID_VALUE, cuMemcpy2D_v2(&c));
    c = copy2d(row + 1, 1);
    c.srcMemoryType = ARRAY; c.srcArray = a;
    c.dstMemoryType = DEVICE; c.dstDevice = d; c.dstPitch = pitch;
    EXPECT_RC(INVALID_VALUE, cuMemcpy2D_v2(&c));
    /* An array copy into device memory beyond the allocation. */
    c = copy2d(row, H);
    c.srcMemoryType = ARRAY; c.srcArray = a;
    c.dstMemoryType = DEVICE; c.dstDevice = d + pitch; c.dstPitch = pitch;
    EXPECT_RC(INVALID_VALUE, cuMemcpy2D_v2(&c));

    /* Texture and surface objects over A; the resource comes back. */
    CUDA_RESOURCE_DESC rd;
    memset(&rd, 0, sizeof rd);
    rd.resType = 0;
    rd.res.array.hArray = a;
    CUDA_TEXTURE_DESC td;
    memset(&td, 0, sizeof td);
    td.filterMode = 0; /* point */
    CUtexObject t;
    CHECK(cuTexObjectCreate(&t, &rd, &td, NULL));
    EXPECT(t != 0, "texture object 0");
    CUDA_RESOURCE_DESC back_rd;
    CHECK(cuTexObjectGetResourceDesc(&back_rd, t));
    EXPECT(back_rd.resType == 0 && back_rd.res.array.hArray == a, "resource desc differs");
    CUsurfObject so;
    CHECK(cuSurfObjectCreate(&so, &rd));
    CHECK(cuSurfObjectDestroy(so));
    CHECK(cuTexObjectDestroy(t));
    EXPECT_RC(INVALID_VALUE, cuTexObjectDestroy(t));
    /* Linear and pitch-2D textures over the session's memory; a range
     * beyond the allocation is refused. */
    memset(&rd, 0, sizeof rd);
    rd.resType = 2;
    rd.res.linear.devPtr = d; rd.res.linear.format = FLOAT; rd.res.linear.numChannels = 1;
    rd.res.linear.sizeInBytes = pitch * H;
    CHECK(cuTexObjectCreate(&t, &rd, &td, NULL));
    CHECK(cuTexObjectDestroy(t));
    rd.res.linear.sizeInBytes = pitch * H + 4;
    EXPECT_RC(INVALID_VALUE, cuTexObjectCreate(&t, &rd, &td, NULL));
    memset(&rd, 0, sizeof rd);
    rd.resType = 3;
    rd.res.pitch2D.devPtr = d; rd.res.pitch2D.format = FLOAT; rd.res.pitch2D.numChannels = 2;
    rd.res.pitch2D.width = W; rd.res.pitch2D.height = H; rd.res.pitch2D.pitchInBytes = pitch;
    CHECK(cuTexObjectCreate(&t, &rd, &td, NULL));
    CHECK(cuTexObjectDestroy(t));
    rd.res.pitch2D.height = H + 1;
    EXPECT_RC(INVALID_VALUE, cuTexObjectCreate(&t, &rd, &td, NULL));
    /* Mipmapped resources are not remoted. */
    memset(&rd, 0, sizeof rd);
    rd.resType = 1;
    rd.res.mipmap.hMipmappedArray = (void *)0x1234;
    EXPECT_RC(NOT_SUPPORTED, cuTexObjectCreate(&t, &rd, &td, NULL));

    CHECK(cuMemFree_v2(d));
    CHECK(cuArrayDestroy(b));
    /* A destroyed array is refused everywhere it can be named. */
    c = copy2d(row, 1);
    c.srcMemoryType = ARRAY; c.srcArray = b;
    c.dstMemoryType = HOST; c.dstHost = back; c.dstPitch = row;
    EXPECT_RC(INVALID_HANDLE, cuMemcpy2D_v2(&c));
    EXPECT_RC(INVALID_HANDLE, cuArrayDestroy(b));
    EXPECT_RC(INVALID_HANDLE, cuArrayGetDescriptor_v2(&got, b));
    memset(&rd, 0, sizeof rd);
    rd.res.array.hArray = b;
    EXPECT_RC(INVALID_HANDLE, cuTexObjectCreate(&t, &rd, &td, NULL));
    CHECK(cuArrayDestroy(a));
}

/* 3D: host → a block of slices at (x, y, z) offsets → device → host. */
static void three_d(CUstream s) {
    enum { W = 6, H = 5, D = 4, ELEM = 2 }; /* U16 × 1 */
    const size_t row = W * ELEM;
    CUDA_ARRAY3D_DESCRIPTOR desc = { W, H, D, U16, 1, SURFACE_LDST };
    CUarray a;
    CHECK(cuArray3DCreate_v2(&a, &desc));
    CUDA_ARRAY3D_DESCRIPTOR got;
    CHECK(cuArray3DGetDescriptor_v2(&got, a));
    EXPECT(got.Width == W && got.Height == H && got.Depth == D && got.Format == U16 &&
               got.NumChannels == 1 && got.Flags == SURFACE_LDST, "3D descriptor differs");

    unsigned char model[D][H][W * ELEM];
    memset(model, 0, sizeof model);
    CUDA_MEMCPY3D c;
    memset(&c, 0, sizeof c);
    c.srcMemoryType = HOST; c.srcHost = model; c.srcPitch = row; c.srcHeight = H;
    c.dstMemoryType = ARRAY; c.dstArray = a;
    c.WidthInBytes = row; c.Height = H; c.Depth = D;
    CHECK(cuMemcpy3D_v2(&c));
    /* A 3 × 2 × 2 element block (6 bytes × 2 rows × 2 slices) at element 2,
     * row 1, slice 1, from a host box of pitch 10 and 3 rows per slice. */
    unsigned char box[2][3][10];
    for (size_t i = 0; i < sizeof box; i++) ((unsigned char *)box)[i] = pattern(i, 3);
    memset(&c, 0, sizeof c);
    c.srcMemoryType = HOST; c.srcHost = box; c.srcPitch = 10; c.srcHeight = 3;
    c.dstMemoryType = ARRAY; c.dstArray = a; c.dstXInBytes = 2 * ELEM; c.dstY = 1; c.dstZ = 1;
    c.WidthInBytes = 6; c.Height = 2; c.Depth = 2;
    CHECK(cuMemcpy3DAsync_v2(&c, s));
    for (int z = 0; z < 2; z++)
        for (int y = 0; y < 2; y++) memcpy(&model[1 + z][1 + y][2 * ELEM], box[z][y], 6);

    /* Whole array → device (pitch 16, 6 rows per slice) → host. */
    CUdeviceptr d;
    const size_t pitch = 16, rows = 6;
    CHECK(cuMemAlloc_v2(&d, pitch * rows * D));
    memset(&c, 0, sizeof c);
    c.srcMemoryType = ARRAY; c.srcArray = a;
    c.dstMemoryType = DEVICE; c.dstDevice = d; c.dstPitch = pitch; c.dstHeight = rows;
    c.WidthInBytes = row; c.Height = H; c.Depth = D;
    CHECK(cuMemcpy3DAsync_v2(&c, s));
    CHECK(cuStreamSynchronize(s));
    unsigned char flat[D * 6 * 16];
    CHECK(cuMemcpyDtoH_v2(flat, d, sizeof flat));
    for (int z = 0; z < D; z++)
        for (int y = 0; y < H; y++)
            for (size_t x = 0; x < row; x++)
                EXPECT(flat[(z * rows + y) * pitch + x] == model[z][y][x],
                       "3D round trip: slice %d row %d byte %zu is %u, want %u", z, y, x,
                       flat[(z * rows + y) * pitch + x], model[z][y][x]);
    /* Device → array → host for one slice at z = 3, read back directly. */
    unsigned char slice[H][W * ELEM];
    memset(&c, 0, sizeof c);
    c.srcMemoryType = ARRAY; c.srcArray = a; c.srcZ = 2;
    c.dstMemoryType = HOST; c.dstHost = slice; c.dstPitch = row; c.dstHeight = H;
    c.WidthInBytes = row; c.Height = H; c.Depth = 1;
    CHECK(cuMemcpy3D_v2(&c));
    EXPECT(memcmp(slice, model[2], sizeof slice) == 0, "slice 2 differs");
    /* A block reaching past the last slice is refused. */
    memset(&c, 0, sizeof c);
    c.srcMemoryType = HOST; c.srcHost = box; c.srcPitch = 10; c.srcHeight = 3;
    c.dstMemoryType = ARRAY; c.dstArray = a; c.dstZ = D - 1;
    c.WidthInBytes = 6; c.Height = 2; c.Depth = 2;
    EXPECT_RC(INVALID_VALUE, cuMemcpy3D_v2(&c));
    /* Array ↔ array with z on both ends: slice 1 of A into slice 0 of B. */
    CUarray b;
    CHECK(cuArray3DCreate_v2(&b, &desc));
    memset(&c, 0, sizeof c);
    c.srcMemoryType = ARRAY; c.srcArray = a; c.srcZ = 1;
    c.dstMemoryType = ARRAY; c.dstArray = b; c.dstZ = 0;
    c.WidthInBytes = row; c.Height = H; c.Depth = 1;
    CHECK(cuMemcpy3D_v2(&c));
    memset(&c, 0, sizeof c);
    c.srcMemoryType = ARRAY; c.srcArray = b;
    c.dstMemoryType = HOST; c.dstHost = slice; c.dstPitch = row; c.dstHeight = H;
    c.WidthInBytes = row; c.Height = H; c.Depth = 1;
    CHECK(cuMemcpy3D_v2(&c));
    EXPECT(memcmp(slice, model[1], sizeof slice) == 0, "array-to-array slice differs");
    CHECK(cuArrayDestroy(b));
    CHECK(cuMemFree_v2(d));
    CHECK(cuArrayDestroy(a));
}

/* The legacy copies on 1D arrays (byte offsets). */
static void legacy(CUstream s) {
    enum { N = 64 };
    CUarray a = array2d(N, 0, U8, 1), b = array2d(N, 0, U8, 1);
    unsigned char src[N], back[N];
    for (int i = 0; i < N; i++) src[i] = pattern(i, 5);
    CHECK(cuMemcpyHtoA_v2(a, 0, src, N));
    CUdeviceptr d;
    CHECK(cuMemAlloc_v2(&d, N));
    CHECK(cuMemcpyAtoD_v2(d, a, 8, 40));        /* a[8..48] → d[0..40] */
    CHECK(cuMemcpyHtoAAsync_v2(b, 0, src, N, s));
    CHECK(cuMemcpyDtoA_v2(b, 16, d, 40));       /* d[0..40] → b[16..56] */
    CHECK(cuMemcpyAtoA_v2(a, 0, b, 16, 8));     /* b[16..24] → a[0..8] */
    memset(back, 0, N);
    CHECK(cuMemcpyAtoHAsync_v2(back, b, 0, N, s));
    CHECK(cuStreamSynchronize(s));
    for (int i = 0; i < N; i++) {
        unsigned char want = (i >= 16 && i < 56) ? src[i - 8] : src[i];
        EXPECT(back[i] == want, "legacy b[%d] is %u, want %u", i, back[i], want);
    }
    CHECK(cuMemcpyAtoH_v2(back, a, 0, N));
    for (int i = 0; i < N; i++) {
        unsigned char want = i < 8 ? src[i + 8] : src[i];
        EXPECT(back[i] == want, "legacy a[%d] is %u, want %u", i, back[i], want);
    }
    EXPECT_RC(INVALID_VALUE, cuMemcpyHtoA_v2(a, N - 4, src, 8));
    EXPECT_RC(INVALID_VALUE, cuMemcpyAtoD_v2(d + 8, a, 0, N)); /* past the allocation */
    CHECK(cuMemFree_v2(d));
    CHECK(cuArrayDestroy(a));
    CHECK(cuArrayDestroy(b));
}

/* Descriptors no driver accepts, and mipmapped arrays. */
static void bad_input(void) {
    CUarray a;
    CUDA_ARRAY_DESCRIPTOR d = { 8, 8, 0x77, 1 };
    EXPECT_RC(INVALID_VALUE, cuArrayCreate_v2(&a, &d));
    d.Format = FLOAT; d.NumChannels = 3;
    EXPECT_RC(INVALID_VALUE, cuArrayCreate_v2(&a, &d));
    d.NumChannels = 0;
    EXPECT_RC(INVALID_VALUE, cuArrayCreate_v2(&a, &d));
    d.NumChannels = 1; d.Width = 0;
    EXPECT_RC(INVALID_VALUE, cuArrayCreate_v2(&a, &d));
    CUDA_ARRAY3D_DESCRIPTOR d3 = { 8, 8, 2, FLOAT, 1, 0x40 /* sparse */ };
    EXPECT_RC(NOT_SUPPORTED, cuArray3DCreate_v2(&a, &d3));
    d3.Flags = 0;
    void *m;
    EXPECT_RC(NOT_SUPPORTED, cuMipmappedArrayCreate(&m, &d3, 2));
}

static int limit(void) {
    /* 48 MB arrays under a 64 MB limit: the second does not fit until the
     * first is destroyed. */
    CUDA_ARRAY3D_DESCRIPTOR d = { 1024, 1024, 12, FLOAT, 1, 0 };
    CUarray a, b;
    CHECK(cuArray3DCreate_v2(&a, &d));
    EXPECT_RC(OUT_OF_MEMORY, cuArray3DCreate_v2(&b, &d));
    CUdeviceptr p;
    EXPECT_RC(OUT_OF_MEMORY, cuMemAlloc_v2(&p, 32 * MB));
    CHECK(cuArrayDestroy(a));
    CHECK(cuArray3DCreate_v2(&b, &d));
    CHECK(cuArrayDestroy(b));
    CHECK(cuMemAlloc_v2(&p, 60 * MB));
    CHECK(cuMemFree_v2(p));
    printf("PASS arrays are charged to the memory limit\n");
    return 0;
}

static int hold(void) {
    CUarray a = array2d(16, 4, U8, 4);
    unsigned char src[4 * 64], back[4 * 64];
    for (size_t i = 0; i < sizeof src; i++) src[i] = pattern(i, 9);
    CUDA_MEMCPY2D c = copy2d(64, 4);
    c.srcMemoryType = HOST; c.srcHost = src; c.srcPitch = 64;
    c.dstMemoryType = ARRAY; c.dstArray = a;
    CHECK(cuMemcpy2D_v2(&c));
    CUDA_RESOURCE_DESC rd;
    memset(&rd, 0, sizeof rd);
    rd.res.array.hArray = a;
    CUDA_TEXTURE_DESC td;
    memset(&td, 0, sizeof td);
    CUtexObject t;
    CHECK(cuTexObjectCreate(&t, &rd, &td, NULL));
    printf("holding %llu %llu\n", (unsigned long long)(uintptr_t)a, t);
    fflush(stdout);
    char line[64];
    if (!fgets(line, sizeof line, stdin)) { printf("FAIL no go-ahead\n"); return 1; }
    c = copy2d(64, 4);
    c.srcMemoryType = ARRAY; c.srcArray = a;
    c.dstMemoryType = HOST; c.dstHost = back; c.dstPitch = 64;
    CHECK(cuMemcpy2D_v2(&c));
    EXPECT(memcmp(src, back, sizeof src) == 0, "the held array changed");
    CHECK(cuTexObjectDestroy(t));
    CHECK(cuArrayDestroy(a));
    printf("PASS the held array and texture object were left alone\n");
    return 0;
}

static int intrude(CUarray a, CUtexObject t) {
    unsigned char buf[64] = { 1 };
    EXPECT_RC(INVALID_HANDLE, cuMemcpyHtoA_v2(a, 0, buf, sizeof buf));
    EXPECT_RC(INVALID_HANDLE, cuMemcpyAtoH_v2(buf, a, 0, sizeof buf));
    EXPECT_RC(INVALID_HANDLE, cuArrayDestroy(a));
    CUDA_RESOURCE_DESC rd;
    memset(&rd, 0, sizeof rd);
    rd.res.array.hArray = a;
    CUDA_TEXTURE_DESC td;
    memset(&td, 0, sizeof td);
    CUtexObject mine;
    EXPECT_RC(INVALID_HANDLE, cuTexObjectCreate(&mine, &rd, &td, NULL));
    EXPECT_RC(INVALID_VALUE, cuTexObjectDestroy(t));
    EXPECT_RC(INVALID_VALUE, cuSurfObjectDestroy(t));
    /* The worker keeps serving this session. */
    CUarray own = array2d(64, 0, U8, 1);
    unsigned char back[64];
    for (int i = 0; i < 64; i++) buf[i] = pattern(i, 11);
    CHECK(cuMemcpyHtoA_v2(own, 0, buf, 64));
    CHECK(cuMemcpyAtoH_v2(back, own, 0, 64));
    EXPECT(memcmp(buf, back, 64) == 0, "own array round trip differs");
    CHECK(cuArrayDestroy(own));
    printf("PASS another session's array and texture object were refused\n");
    return 0;
}

int main(int argc, char **argv) {
    load();
    if (argc < 2) { printf("usage: arrays full | limit | hold | intrude A T\n"); return 2; }
    setup();
    if (strcmp(argv[1], "limit") == 0) return limit();
    if (strcmp(argv[1], "hold") == 0) return hold();
    if (strcmp(argv[1], "intrude") == 0 && argc == 4)
        return intrude((CUarray)(uintptr_t)strtoull(argv[2], NULL, 10), strtoull(argv[3], NULL, 10));
    if (strcmp(argv[1], "full") == 0) {
        CUstream s;
        CHECK(cuStreamCreate(&s, 0));
        bad_input();
        two_d(s);
        three_d(s);
        legacy(s);
        CHECK(cuStreamDestroy_v2(s));
        printf("PASS 2D and 3D arrays, copies with array ends, texture and surface objects\n");
        return 0;
    }
    printf("usage: arrays full | limit | hold | intrude A T\n");
    return 2;
}
