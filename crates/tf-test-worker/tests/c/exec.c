/* End-to-end check of modules, kernels, launches, streams and events through
 * our libcuda.so.1 against the TEST backend (host memory, no GPU). Kernels
 * do not run there: launches are validated (function, geometry, parameter
 * buffer) and otherwise ignored; memsets and copies on streams really happen.
 * What kernels compute is proven on a GPU by tests/gpu/cuda/.
 *
 * usage: exec full    everything below, then "PASS ..."
 *        exec hold    create streams, events, modules, a library; print
 *                     "holding"; launch forever (killed by the test)
 *        exec printf  device printf ("tf_test_printf": a line per launch,
 *                     printed at synchronization) between the program's own
 *                     lines, each flushed, as tests/gpu/cuda/printf.cu does
 * Exit 0 on success; on failure one line saying what differed. */
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef int CUresult;
typedef int CUdevice;
typedef unsigned long long CUdeviceptr;
typedef void *CUcontext, *CUstream, *CUevent, *CUmodule, *CUfunction, *CUlibrary, *CUkernel;

typedef struct {
    unsigned id;
    char pad[4];
    union { char raw[64]; struct { unsigned x, y, z; } dim; int i; CUevent event; } v;
} CUlaunchAttribute;
typedef struct {
    unsigned gx, gy, gz, bx, by, bz, smem;
    CUstream stream;
    CUlaunchAttribute *attrs;
    unsigned nattrs;
} CUlaunchConfig;

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
FN(CUresult, cuCtxSynchronize, (void))
FN(CUresult, cuCtxGetId, (CUcontext, unsigned long long *))
FN(CUresult, cuMemHostAlloc, (void **, size_t, unsigned))
FN(CUresult, cuMemFreeHost, (void *))
FN(CUresult, cuGetErrorName, (CUresult, const char **))
FN(CUresult, cuMemAlloc_v2, (CUdeviceptr *, size_t))
FN(CUresult, cuDevicePrimaryCtxReset_v2, (CUdevice))
FN(CUresult, cuMemFree_v2, (CUdeviceptr))
FN(CUresult, cuMemcpyHtoD_v2, (CUdeviceptr, const void *, size_t))
FN(CUresult, cuMemcpyDtoH_v2, (void *, CUdeviceptr, size_t))
FN(CUresult, cuMemcpyHtoDAsync_v2, (CUdeviceptr, const void *, size_t, CUstream))
FN(CUresult, cuMemcpyDtoHAsync_v2, (void *, CUdeviceptr, size_t, CUstream))
FN(CUresult, cuMemcpyDtoDAsync_v2, (CUdeviceptr, CUdeviceptr, size_t, CUstream))
FN(CUresult, cuMemcpyHtoDAsync_v2_ptsz, (CUdeviceptr, const void *, size_t, CUstream))
FN(CUresult, cuMemcpyDtoHAsync_v2_ptsz, (void *, CUdeviceptr, size_t, CUstream))
FN(CUresult, cuMemsetD8Async, (CUdeviceptr, unsigned char, size_t, CUstream))
FN(CUresult, cuMemsetD16Async, (CUdeviceptr, unsigned short, size_t, CUstream))
FN(CUresult, cuMemsetD32Async, (CUdeviceptr, unsigned, size_t, CUstream))
FN(CUresult, cuMemsetD32Async_ptsz, (CUdeviceptr, unsigned, size_t, CUstream))
FN(CUresult, cuMemsetD2D8Async, (CUdeviceptr, size_t, unsigned char, size_t, size_t, CUstream))
FN(CUresult, cuMemsetD2D16Async, (CUdeviceptr, size_t, unsigned short, size_t, size_t, CUstream))
FN(CUresult, cuMemsetD2D32Async, (CUdeviceptr, size_t, unsigned, size_t, size_t, CUstream))
FN(CUresult, cuStreamCreate, (CUstream *, unsigned))
FN(CUresult, cuStreamCreateWithPriority, (CUstream *, unsigned, int))
FN(CUresult, cuStreamDestroy_v2, (CUstream))
FN(CUresult, cuStreamSynchronize, (CUstream))
FN(CUresult, cuStreamSynchronize_ptsz, (CUstream))
FN(CUresult, cuStreamQuery, (CUstream))
FN(CUresult, cuStreamWaitEvent, (CUstream, CUevent, unsigned))
FN(CUresult, cuStreamGetPriority, (CUstream, int *))
FN(CUresult, cuStreamGetFlags, (CUstream, unsigned *))
FN(CUresult, cuStreamGetCtx, (CUstream, CUcontext *))
FN(CUresult, cuStreamIsCapturing, (CUstream, int *))
FN(CUresult, cuStreamGetCaptureInfo_v2, (CUstream, int *, unsigned long long *, void **, const void **, size_t *))
FN(CUresult, cuEventCreate, (CUevent *, unsigned))
FN(CUresult, cuEventRecord, (CUevent, CUstream))
FN(CUresult, cuEventRecordWithFlags, (CUevent, CUstream, unsigned))
FN(CUresult, cuEventSynchronize, (CUevent))
FN(CUresult, cuEventQuery, (CUevent))
FN(CUresult, cuEventElapsedTime_v2, (float *, CUevent, CUevent))
FN(CUresult, cuEventDestroy_v2, (CUevent))
FN(CUresult, cuModuleLoad, (CUmodule *, const char *))
FN(CUresult, cuModuleLoadData, (CUmodule *, const void *))
FN(CUresult, cuModuleLoadDataEx, (CUmodule *, const void *, unsigned, int *, void **))
FN(CUresult, cuModuleLoadFatBinary, (CUmodule *, const void *))
FN(CUresult, cuModuleUnload, (CUmodule))
FN(CUresult, cuModuleGetFunction, (CUfunction *, CUmodule, const char *))
FN(CUresult, cuModuleGetGlobal_v2, (CUdeviceptr *, size_t *, CUmodule, const char *))
FN(CUresult, cuModuleGetLoadingMode, (int *))
FN(CUresult, cuLibraryLoadData, (CUlibrary *, const void *, int *, void **, unsigned, int *, void **, unsigned))
FN(CUresult, cuLibraryUnload, (CUlibrary))
FN(CUresult, cuLibraryGetKernel, (CUkernel *, CUlibrary, const char *))
FN(CUresult, cuLibraryGetModule, (CUmodule *, CUlibrary))
FN(CUresult, cuLibraryGetGlobal, (CUdeviceptr *, size_t *, CUlibrary, const char *))
FN(CUresult, cuKernelGetFunction, (CUfunction *, CUkernel))
FN(CUresult, cuKernelGetAttribute, (int *, int, CUkernel, CUdevice))
FN(CUresult, cuKernelSetAttribute, (int, int, CUkernel, CUdevice))
FN(CUresult, cuKernelGetParamInfo, (CUkernel, size_t, size_t *, size_t *))
FN(CUresult, cuFuncGetAttribute, (int *, int, CUfunction))
FN(CUresult, cuFuncSetAttribute, (CUfunction, int, int))
FN(CUresult, cuFuncSetCacheConfig, (CUfunction, int))
FN(CUresult, cuFuncGetParamInfo, (CUfunction, size_t, size_t *, size_t *))
FN(CUresult, cuOccupancyMaxActiveBlocksPerMultiprocessor, (int *, CUfunction, int, size_t))
FN(CUresult, cuOccupancyMaxActiveBlocksPerMultiprocessorWithFlags, (int *, CUfunction, int, size_t, unsigned))
FN(CUresult, cuOccupancyMaxPotentialBlockSize, (int *, int *, CUfunction, size_t (*)(int), size_t, int))
FN(CUresult, cuOccupancyAvailableDynamicSMemPerBlock, (size_t *, CUfunction, int, int))
FN(CUresult, cuOccupancyMaxActiveClusters, (int *, CUfunction, const CUlaunchConfig *))
FN(CUresult, cuModuleGetFunctionCount, (unsigned *, CUmodule))
FN(CUresult, cuModuleEnumerateFunctions, (CUfunction *, unsigned, CUmodule))
FN(CUresult, cuGetExportTable, (const void **, const unsigned char *))
FN(CUresult, cuLaunchKernel, (CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, CUstream, void **, void **))
FN(CUresult, cuLaunchKernel_ptsz, (CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, CUstream, void **, void **))
FN(CUresult, cuLaunchKernelEx, (const CUlaunchConfig *, CUfunction, void **, void **))
FN(CUresult, cuLaunchCooperativeKernel, (CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, CUstream, void **))

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

enum { INVALID_VALUE = 1, INVALID_IMAGE = 200, INVALID_HANDLE = 400, NOT_FOUND = 500 };

static const char PTX[] =
    "//\n.version 8.0\n.target sm_90\n.address_size 64\n"
    ".visible .global .align 4 .b8 table[1024];\n"
    ".visible .entry vec_add(\n .param .u64 a,\n .param .u64 b,\n .param .u64 c,\n .param .u32 n\n)\n{\n ret;\n}\n"
    ".visible .entry by_value(\n .param .u8 flag,\n .param .align 8 .b8 s[24],\n"
    " .param .align 64 .b8 tmap[128],\n .param .u32 k\n)\n{\n ret;\n}\n";

/* A fatbin: 16-byte header, then (64-byte entry header, payload padded to 8). */
static size_t fatbin_entry(unsigned char *p, unsigned short kind, unsigned flags, const void *data, size_t n) {
    size_t padded = (n + 7) / 8 * 8;
    memset(p, 0, 64 + padded);
    memcpy(p, &kind, 2);
    unsigned hs = 64; memcpy(p + 4, &hs, 4);
    unsigned long long sz = padded; memcpy(p + 8, &sz, 8);
    if (flags) { unsigned c = (unsigned)n; memcpy(p + 16, &c, 4); }
    unsigned arch = 90; memcpy(p + 28, &arch, 4);
    unsigned long long f = flags; memcpy(p + 40, &f, 8);
    unsigned long long dec = n * 3; memcpy(p + 56, &dec, 8);
    memcpy(p + 64, data, n);
    return 64 + padded;
}
static unsigned char *make_fatbin(size_t *len) {
    unsigned char *p = calloc(1, 16 + 64 + sizeof PTX + 8 + 64 + 512);
    unsigned char junk[300];
    for (unsigned i = 0; i < sizeof junk; i++) junk[i] = (unsigned char)(i * 7 + 1);
    size_t body = fatbin_entry(p + 16, 1, 0, PTX, sizeof PTX);
    body += fatbin_entry(p + 16 + body, 2, 0x8000 /* zstd */, junk, sizeof junk);
    unsigned magic = 0xBA55ED50; memcpy(p, &magic, 4);
    unsigned short v = 1, hs = 16; memcpy(p + 4, &v, 2); memcpy(p + 6, &hs, 2);
    unsigned long long b = body; memcpy(p + 8, &b, 8);
    *len = 16 + body;
    return p;
}
/* A minimal ELF64: header, one section, the null + one section headers. */
static unsigned char *make_elf(size_t *len) {
    size_t n = 64 + 40 + 2 * 64;
    unsigned char *p = calloc(1, n + 16);
    memcpy(p, "\x7f" "ELF", 4); p[4] = 2; p[5] = 1; p[6] = 1;
    unsigned long long shoff = 104; memcpy(p + 40, &shoff, 8);
    unsigned short shentsize = 64, shnum = 2; memcpy(p + 58, &shentsize, 2); memcpy(p + 60, &shnum, 2);
    memset(p + 64, 0x5c, 40);
    unsigned type = 1; memcpy(p + 104 + 64 + 4, &type, 4);
    unsigned long long off = 64, sz = 40; memcpy(p + 104 + 64 + 24, &off, 8); memcpy(p + 104 + 64 + 32, &sz, 8);
    memset(p + n, 0xEE, 16); /* bytes after the image must not be sent */
    *len = n;
    return p;
}

static CUcontext setup(void) {
    CUdevice dev;
    CUcontext ctx;
    CHECK(cuInit(0));
    CHECK(cuDeviceGet(&dev, 0));
    CHECK(cuDevicePrimaryCtxRetain(&ctx, dev));
    CHECK(cuCtxSetCurrent(ctx));
    return ctx;
}

static size_t smem_for(int block) { return block > 256 ? (size_t)1 << 20 : 1024; }

static void load(void) {
    cuda = dlopen("libcuda.so.1", RTLD_NOW);
    if (!cuda) { printf("FAIL dlopen libcuda.so.1: %s\n", dlerror()); exit(10); }
    EXPECT(dlsym(cuda, "TENSOR_FUSION_CLIENT") != NULL, "libcuda.so.1 is not the tensor-fusion client");
    LOAD(cuInit); LOAD(cuDeviceGet); LOAD(cuDevicePrimaryCtxRetain); LOAD(cuCtxSetCurrent);
    LOAD(cuCtxSynchronize); LOAD(cuMemHostAlloc); LOAD(cuMemFreeHost);
    LOAD(cuCtxGetId); LOAD(cuGetErrorName); LOAD(cuMemAlloc_v2); LOAD(cuMemFree_v2);
    LOAD(cuDevicePrimaryCtxReset_v2);
    LOAD(cuMemcpyHtoD_v2); LOAD(cuMemcpyDtoH_v2); LOAD(cuMemcpyHtoDAsync_v2); LOAD(cuMemcpyDtoHAsync_v2);
    LOAD(cuMemcpyDtoDAsync_v2); LOAD(cuMemcpyHtoDAsync_v2_ptsz); LOAD(cuMemcpyDtoHAsync_v2_ptsz);
    LOAD(cuMemsetD8Async); LOAD(cuMemsetD16Async); LOAD(cuMemsetD32Async); LOAD(cuMemsetD32Async_ptsz);
    LOAD(cuMemsetD2D8Async); LOAD(cuMemsetD2D16Async); LOAD(cuMemsetD2D32Async);
    LOAD(cuStreamCreate); LOAD(cuStreamCreateWithPriority); LOAD(cuStreamDestroy_v2);
    LOAD(cuStreamSynchronize); LOAD(cuStreamSynchronize_ptsz); LOAD(cuStreamQuery); LOAD(cuStreamWaitEvent);
    LOAD(cuStreamGetPriority); LOAD(cuStreamGetFlags); LOAD(cuStreamGetCtx); LOAD(cuStreamIsCapturing); LOAD(cuStreamGetCaptureInfo_v2);
    LOAD(cuEventCreate); LOAD(cuEventRecord); LOAD(cuEventRecordWithFlags); LOAD(cuEventSynchronize);
    LOAD(cuEventQuery); LOAD(cuEventElapsedTime_v2); LOAD(cuEventDestroy_v2);
    LOAD(cuModuleGetFunctionCount); LOAD(cuModuleEnumerateFunctions); LOAD(cuGetExportTable);
    LOAD(cuModuleLoad); LOAD(cuModuleLoadData); LOAD(cuModuleLoadDataEx); LOAD(cuModuleLoadFatBinary);
    LOAD(cuModuleUnload); LOAD(cuModuleGetFunction); LOAD(cuModuleGetGlobal_v2); LOAD(cuModuleGetLoadingMode);
    LOAD(cuLibraryLoadData); LOAD(cuLibraryUnload); LOAD(cuLibraryGetKernel); LOAD(cuLibraryGetModule);
    LOAD(cuLibraryGetGlobal); LOAD(cuKernelGetFunction); LOAD(cuKernelGetAttribute); LOAD(cuKernelSetAttribute);
    LOAD(cuKernelGetParamInfo); LOAD(cuFuncGetAttribute); LOAD(cuFuncSetAttribute); LOAD(cuFuncSetCacheConfig);
    LOAD(cuFuncGetParamInfo); LOAD(cuOccupancyMaxActiveBlocksPerMultiprocessor);
    LOAD(cuOccupancyMaxActiveBlocksPerMultiprocessorWithFlags); LOAD(cuOccupancyMaxPotentialBlockSize);
    LOAD(cuOccupancyAvailableDynamicSMemPerBlock); LOAD(cuOccupancyMaxActiveClusters);
    LOAD(cuLaunchKernel); LOAD(cuLaunchKernel_ptsz); LOAD(cuLaunchKernelEx); LOAD(cuLaunchCooperativeKernel);
}

static void expect_param(CUfunction f, size_t i, size_t off, size_t size) {
    size_t o = 99, s = 99;
    CHECK(cuFuncGetParamInfo(f, i, &o, &s));
    EXPECT(o == off && s == size, "param %zu at %zu size %zu, expected %zu/%zu", i, o, s, off, size);
}

static int visits;
static CUfunction iter_add;
static void visit(void *user, CUfunction fn, uint64_t name) {
    const char *n = (const char *)(uintptr_t)name;
    if (user != (void *)0x77 || !n || *(const uint64_t *)((const char *)fn + 8) != name) {
        printf("FAIL module iteration visitor got user %p name %p\n", user, (void *)n);
        exit(1);
    }
    if (strcmp(n, "vec_add") == 0) iter_add = fn;
    visits++;
}

static void modules(CUcontext ctx, CUfunction *f_add, CUfunction *f_bv, CUlibrary *lib_out) {
    CUmodule m, m2;
    CUfunction f;
    CHECK(cuModuleLoadData(&m, PTX));
    CHECK(cuModuleGetFunction(f_add, m, "vec_add"));
    CHECK(cuModuleGetFunction(&f, m, "vec_add"));
    EXPECT(f == *f_add, "a second lookup gives another handle");
    expect_param(*f_add, 3, 24, 4);
    CHECK(cuModuleGetFunction(f_bv, m, "by_value"));
    expect_param(*f_bv, 1, 8, 24);
    expect_param(*f_bv, 2, 64, 128);
    expect_param(*f_bv, 3, 192, 4);
    size_t o, s;
    EXPECT_RC(INVALID_VALUE, cuFuncGetParamInfo(*f_bv, 4, &o, &s));
    EXPECT_RC(NOT_FOUND, cuModuleGetFunction(&f, m, "no_such_kernel"));

    /* Enumeration, public and through cuFFT's private module iteration
     * (tools-module table 6e163fbe, slot 7: a visitor per function with a
     * function object whose word at offset 8 is the name; returns the count). */
    unsigned nf = 0;
    CHECK(cuModuleGetFunctionCount(&nf, m));
    EXPECT(nf == 2, "function count %u", nf);
    CUfunction listed[2] = {0, 0};
    CHECK(cuModuleEnumerateFunctions(listed, 2, m));
    EXPECT((listed[0] == *f_add && listed[1] == *f_bv) || (listed[1] == *f_add && listed[0] == *f_bv),
           "enumerated functions are not the looked-up ones");
    static const unsigned char tools_module[16] = {0x6e, 0x16, 0x3f, 0xbe, 0xb9, 0x58, 0x44, 0x4d,
                                                   0x83, 0x5c, 0xe1, 0x82, 0xaf, 0xf1, 0x99, 0x1e};
    const uintptr_t *tm = 0;
    CHECK(cuGetExportTable((const void **)&tm, tools_module));
    EXPECT(tm[0] == 99 * 8, "tools-module table size word %lu", (unsigned long)tm[0]);
    size_t (*iterate)(CUcontext, CUmodule, void (*)(void *, CUfunction, uint64_t), void *) = (void *)tm[7];
    visits = 0;
    EXPECT(iterate(0, m, visit, (void *)0x77) == 2 && visits == 2, "module iteration visited %d", visits);
    /* An iteration object works wherever a CUfunction does. */
    expect_param(iter_add, 3, 24, 4);

    /* A module global behaves as the session's memory. */
    CUdeviceptr g;
    size_t gsize = 0;
    CHECK(cuModuleGetGlobal_v2(&g, &gsize, m, "table"));
    EXPECT(gsize == 1024, "global size %zu", gsize);
    unsigned char in[1024], back[1024];
    for (int i = 0; i < 1024; i++) in[i] = (unsigned char)(i * 13 + 5);
    CHECK(cuMemcpyHtoD_v2(g, in, sizeof in));
    CHECK(cuMemcpyDtoH_v2(back, g, sizeof back));
    EXPECT(memcmp(in, back, sizeof in) == 0, "global round trip differs");

    /* Every image kind, sized by the client and validated by the worker. */
    size_t fb_len, elf_len;
    unsigned char *fb = make_fatbin(&fb_len);
    CHECK(cuModuleLoadFatBinary(&m2, fb));
    CHECK(cuModuleGetFunction(&f, m2, "vec_add"));
    struct { unsigned magic, version; const void *data, *extra; } w1 = {0x466243B1, 1, fb, NULL};
    CHECK(cuModuleLoadData(&m2, &w1));
    CHECK(cuModuleGetFunction(&f, m2, "by_value"));
    size_t fb2_len;
    unsigned char *fb2 = make_fatbin(&fb2_len);
    const void *prelinked[] = {fb2, NULL};
    struct { unsigned magic, version; const void *data, *extra; } w2 = {0x466243B1, 2, fb, prelinked};
    CHECK(cuModuleLoadData(&m2, &w2));
    CHECK(cuModuleGetFunction(&f, m2, "vec_add"));
    unsigned char *elf = make_elf(&elf_len);
    CHECK(cuModuleLoadData(&m2, elf));
    EXPECT_RC(NOT_FOUND, cuModuleGetFunction(&f, m2, "vec_add"));
    unsigned char ar[8 + 60 + 4];
    memcpy(ar, "!<arch>\n", 8);
    memcpy(ar + 8, "k.cubin/        0           0     0     644     4         `\n", 60);
    memcpy(ar + 68, "abcd", 4);
    CHECK(cuModuleLoadData(&m2, ar));
    CHECK(cuModuleUnload(m2));
    unsigned char bad[16];
    memcpy(bad, fb, 16);
    bad[6] = 8; /* header size below 16 */
    EXPECT_RC(INVALID_IMAGE, cuModuleLoadData(&m2, bad));

    /* JIT options with logs and wall time wait for their answer. */
    char info[256] = "", err[256] = "";
    int opts[] = {3, 4, 5, 6, 2};
    void *vals[] = {info, (void *)(uintptr_t)sizeof info, err, (void *)(uintptr_t)sizeof err, 0};
    CHECK(cuModuleLoadDataEx(&m2, PTX, 5, opts, vals));
    EXPECT(strstr(info, "test backend") != NULL, "info log: '%s'", info);
    CHECK(cuModuleGetFunction(&f, m2, "vec_add"));

    /* From a file: PTX without its NUL. */
    char path[] = "/tmp/tf-exec-XXXXXX";
    int fd = mkstemp(path);
    EXPECT(fd >= 0, "mkstemp");
    EXPECT(write(fd, PTX, sizeof PTX - 1) == (ssize_t)(sizeof PTX - 1), "write");
    close(fd);
    CHECK(cuModuleLoad(&m2, path));
    unlink(path);
    CHECK(cuModuleGetFunction(&f, m2, "by_value"));

    /* An image larger than one frame travels in parts. */
    size_t big_len = (size_t)20 << 20;
    char *big = malloc(big_len + sizeof PTX);
    memset(big, ' ', big_len);
    for (size_t i = 0; i + 1 < big_len; i += 4096) { big[i] = '/'; big[i + 1] = '/'; big[i + 4095] = '\n'; }
    big[big_len - 1] = '\n';
    memcpy(big + big_len, PTX, sizeof PTX);
    CHECK(cuModuleLoadData(&m2, big));
    CHECK(cuModuleGetFunction(&f, m2, "by_value"));
    expect_param(f, 2, 64, 128);
    free(big);

    /* Unloading forgets the functions. */
    CUmodule gone;
    CUfunction fgone;
    CHECK(cuModuleLoadFatBinary(&gone, fb));
    CHECK(cuModuleGetFunction(&fgone, gone, "vec_add"));
    CHECK(cuModuleUnload(gone));
    EXPECT_RC(INVALID_HANDLE, cuModuleGetFunction(&f, gone, "vec_add"));
    EXPECT_RC(INVALID_HANDLE, cuLaunchKernel(fgone, 1, 1, 1, 1, 1, 1, 0, NULL, NULL, NULL));

    int mode = 0;
    CHECK(cuModuleGetLoadingMode(&mode));
    EXPECT(mode == 1 || mode == 2, "loading mode %d", mode);

    /* Libraries, kernels and attributes. */
    CUlibrary lib;
    CUkernel k, k2;
    CHECK(cuLibraryLoadData(&lib, PTX, NULL, NULL, 0, NULL, NULL, 0));
    CHECK(cuLibraryGetKernel(&k, lib, "vec_add"));
    CHECK(cuLibraryGetKernel(&k2, lib, "vec_add"));
    EXPECT(k == k2, "kernel lookups differ");
    CHECK(cuKernelGetParamInfo(k, 0, &o, &s));
    EXPECT(o == 0 && s == 8, "kernel param 0: %zu/%zu", o, s);
    CHECK(cuKernelGetFunction(&f, k));
    expect_param(f, 3, 24, 4);
    CUmodule lm;
    CHECK(cuLibraryGetModule(&lm, lib));
    CHECK(cuModuleGetFunction(&f, lm, "by_value"));
    CHECK(cuLibraryGetGlobal(&g, &gsize, lib, "table"));
    EXPECT(gsize == 1024, "library global size %zu", gsize);
    int v = 0;
    CHECK(cuKernelGetAttribute(&v, 0, k, 0));
    EXPECT(v == 1024, "max threads %d", v);
    CHECK(cuKernelSetAttribute(8, 65536, k, 0));
    CHECK(cuKernelGetAttribute(&v, 8, k, 0));
    EXPECT(v == 65536, "dynamic shared %d", v);
    CHECK(cuFuncGetAttribute(&v, 8, *f_add));
    EXPECT(v == 0, "func dynamic shared %d", v);
    CHECK(cuFuncSetAttribute(*f_add, 8, 100000));
    CHECK(cuFuncGetAttribute(&v, 8, *f_add));
    EXPECT(v == 100000, "func dynamic shared after set %d", v);
    EXPECT_RC(INVALID_VALUE, cuFuncSetAttribute(*f_add, 8, 1 << 30));
    CHECK(cuFuncSetCacheConfig(*f_add, 1));

    /* Occupancy (the callback runs in this process). */
    int n = 0, grid = 0, block = 0;
    CHECK(cuOccupancyMaxActiveBlocksPerMultiprocessor(&n, *f_add, 256, 0));
    EXPECT(n == 8, "blocks per SM %d", n);
    CHECK(cuOccupancyMaxActiveBlocksPerMultiprocessorWithFlags(&n, *f_add, 1024, 0, 1));
    EXPECT(n == 2, "blocks per SM %d", n);
    CHECK(cuOccupancyMaxPotentialBlockSize(&grid, &block, *f_add, NULL, 0, 0));
    EXPECT(block == 1024 && grid > 0, "potential block %d grid %d", block, grid);
    CHECK(cuOccupancyMaxPotentialBlockSize(&grid, &block, *f_add, smem_for, 0, 0));
    EXPECT(block == 256, "potential block with callback %d", block);
    size_t avail = 0;
    CHECK(cuOccupancyAvailableDynamicSMemPerBlock(&avail, *f_add, 2, 128));
    EXPECT(avail > 0, "available smem %zu", avail);
    CUlaunchAttribute cl = {4, {0}, {{0}}};
    cl.v.dim.x = 2; cl.v.dim.y = 1; cl.v.dim.z = 1;
    CUlaunchConfig cfg = {4, 1, 1, 128, 1, 1, 0, NULL, &cl, 1};
    CHECK(cuOccupancyMaxActiveClusters(&n, *f_add, &cfg));
    EXPECT(n > 0, "clusters %d", n);
    *lib_out = lib;
    (void)ctx;
}

static void launches(CUcontext ctx, CUfunction f_add, CUfunction f_bv, CUlibrary lib) {
    enum { N = 4096 };
    CUstream s1, s2, s3;
    CUevent e0, e1, e_nt;
    CHECK(cuStreamCreate(&s1, 0));
    CHECK(cuStreamCreate(&s2, 1));
    CHECK(cuStreamCreateWithPriority(&s3, 0, -100));
    unsigned flags = 9;
    int prio = 9, cap = 9;
    CUcontext sc = NULL;
    CHECK(cuStreamGetFlags(s2, &flags));
    EXPECT(flags == 1, "stream flags %u", flags);
    CHECK(cuStreamGetPriority(s3, &prio));
    EXPECT(prio == -5, "clamped priority %d", prio);
    CHECK(cuStreamGetPriority(s1, &prio));
    EXPECT(prio == 0, "default priority %d", prio);
    CHECK(cuStreamGetCtx(s1, &sc));
    EXPECT(sc == ctx, "stream context");
    CHECK(cuStreamIsCapturing(s1, &cap));
    EXPECT(cap == 0, "capturing %d", cap);
    {
        /* as cuSOLVER asks before each call: never capturing, outputs cleared */
        int st = 7; unsigned long long id = 9; void *g = (void *)1; const void *d = (void *)1; size_t nd = 5;
        CHECK(cuStreamGetCaptureInfo_v2(s1, &st, &id, &g, &d, &nd));
        EXPECT(st == 0 && id == 0 && g == NULL && d == NULL && nd == 0, "capture info %d %llu %p %p %zu", st, id, g, d, nd);
        EXPECT(cuStreamGetCaptureInfo_v2((CUstream)0x123456, &st, &id, NULL, NULL, NULL) != 0, "capture info of a bogus stream must fail");
    }
    CHECK(cuEventCreate(&e0, 0));
    CHECK(cuEventCreate(&e1, 0));
    CHECK(cuEventCreate(&e_nt, 2 /* DISABLE_TIMING */));

    CUdeviceptr a, b, c;
    CHECK(cuMemAlloc_v2(&a, N));
    CHECK(cuMemAlloc_v2(&b, N));
    CHECK(cuMemAlloc_v2(&c, N));
    unsigned n = N / 4;
    void *args[] = {&a, &b, &c, &n};

    /* Launches in every form. */
    CHECK(cuEventRecord(e0, s1));
    CHECK(cuLaunchKernel(f_add, 4, 1, 1, 256, 1, 1, 0, s1, args, NULL));
    unsigned char buf[28] = {0};
    memcpy(buf, &a, 8); memcpy(buf + 8, &b, 8); memcpy(buf + 16, &c, 8); memcpy(buf + 24, &n, 4);
    size_t size = sizeof buf;
    void *extra[] = {(void *)1, buf, (void *)2, &size, (void *)0};
    CHECK(cuLaunchKernel(f_add, 4, 1, 1, 256, 1, 1, 0, s1, NULL, extra));
    struct { unsigned x; unsigned long long y; unsigned char z; } sv = {1, 2, 3};
    struct { _Alignas(64) unsigned char bytes[128]; } tm;
    for (int i = 0; i < 128; i++) tm.bytes[i] = (unsigned char)i;
    unsigned char flag = 1;
    int kk = 7;
    void *bv_args[] = {&flag, &sv, &tm, &kk};
    CHECK(cuLaunchKernel(f_bv, 1, 1, 1, 32, 1, 1, 0, s2, bv_args, NULL));
    CHECK(cuLaunchKernel_ptsz(f_add, 2, 1, 1, 64, 1, 1, 0, NULL, args, NULL));
    CHECK(cuStreamSynchronize_ptsz(NULL));
    CUlaunchAttribute attrs[3];
    memset(attrs, 0, sizeof attrs);
    attrs[0].id = 4; attrs[0].v.dim.x = 2; attrs[0].v.dim.y = 1; attrs[0].v.dim.z = 1;
    attrs[1].id = 8; attrs[1].v.i = 1;
    attrs[2].id = 12; attrs[2].v.event = e1;
    CUlaunchConfig cfg = {4, 1, 1, 128, 1, 1, 0, s3, attrs, 3};
    CHECK(cuLaunchKernelEx(&cfg, f_add, args, NULL));
    CHECK(cuLaunchCooperativeKernel(f_add, 2, 1, 1, 64, 1, 1, 0, s1, args));
    CUkernel k;
    CHECK(cuLibraryGetKernel(&k, lib, "vec_add"));
    CHECK(cuLaunchKernel((CUfunction)k, 1, 1, 1, 32, 1, 1, 0, s1, args, NULL));
    CHECK(cuEventRecord(e1, s1));
    CHECK(cuStreamSynchronize(s1));
    CHECK(cuStreamSynchronize(s3));

    /* A bad launch is accepted (enqueued) and reported at the next sync. */
    CHECK(cuLaunchKernel(f_add, 1, 1, 1, 2048, 1, 1, 0, s1, args, NULL));
    EXPECT_RC(INVALID_VALUE, cuStreamSynchronize(s1));
    CHECK(cuStreamSynchronize(s1));
    size_t short_size = 8;
    void *short_extra[] = {(void *)1, buf, (void *)2, &short_size, (void *)0};
    CHECK(cuLaunchKernel(f_add, 1, 1, 1, 32, 1, 1, 0, s2, NULL, short_extra));
    EXPECT_RC(INVALID_VALUE, cuCtxSynchronize());
    CHECK(cuCtxSynchronize());

    /* Events and timing. */
    CHECK(cuEventSynchronize(e1));
    CHECK(cuEventQuery(e1));
    float ms = -1;
    CHECK(cuEventElapsedTime_v2(&ms, e0, e1));
    EXPECT(ms >= 0, "elapsed %f", ms);
    EXPECT_RC(INVALID_HANDLE, cuEventElapsedTime_v2(&ms, e0, e_nt));
    CHECK(cuEventRecordWithFlags(e_nt, s2, 0));
    CHECK(cuStreamWaitEvent(s2, e1, 0));
    CHECK(cuStreamQuery(s2));

    /* Async memsets in stream order, checked through copies. */
    unsigned char h[N];
    CHECK(cuMemsetD8Async(a, 0x11, N, s1));
    CHECK(cuMemsetD16Async(b, 0x2233, N / 2, s2));
    CHECK(cuMemsetD32Async(c, 0x44556677u, N / 4, s3));
    CHECK(cuMemsetD2D8Async(a, 64, 0x99, 16, 4, s1));
    CHECK(cuStreamSynchronize(s1));
    CHECK(cuMemcpyDtoH_v2(h, a, N));
    EXPECT(h[0] == 0x99 && h[15] == 0x99 && h[16] == 0x11 && h[64 * 3 + 15] == 0x99 && h[64 * 3 + 16] == 0x11 && h[64 * 4] == 0x11,
           "2D memset rows %x %x %x", h[0], h[16], h[64 * 4]);
    CHECK(cuMemsetD2D16Async(b, 128, 0xABCD, 8, 2, s2));
    CHECK(cuMemsetD2D32Async(c, 256, 0x01020304u, 4, 3, s3));
    CHECK(cuStreamSynchronize(s2));
    CHECK(cuStreamSynchronize(s3));
    unsigned short h16[N / 2];
    unsigned h32[N / 4];
    CHECK(cuMemcpyDtoH_v2(h16, b, N));
    CHECK(cuMemcpyDtoH_v2(h32, c, N));
    EXPECT(h16[0] == 0xABCD && h16[7] == 0xABCD && h16[8] == 0x2233 && h16[64] == 0xABCD && h16[72] == 0x2233,
           "2D memset16 %x %x", h16[8], h16[64]);
    EXPECT(h32[0] == 0x01020304u && h32[4] == 0x44556677u && h32[128] == 0x01020304u, "2D memset32 %x", h32[4]);
    CHECK(cuMemsetD32Async_ptsz(c, 0x0BADF00Du, N / 4, NULL));
    CHECK(cuMemcpyDtoHAsync_v2_ptsz(h32, c, N, NULL));
    EXPECT(h32[N / 4 - 1] == 0x0BADF00Du, "ptsz memset %x", h32[N / 4 - 1]);
    CHECK(cuMemsetD32Async(c + 2, 1, 4, s1)); /* misaligned: reported at the sync */
    EXPECT_RC(INVALID_VALUE, cuStreamSynchronize(s1));

    /* Async copies on created streams. */
    unsigned char src[N], dst[N];
    for (int i = 0; i < N; i++) src[i] = (unsigned char)(i * 31 + 7);
    CHECK(cuMemcpyHtoDAsync_v2(a, src, N, s2));
    CHECK(cuMemcpyDtoDAsync_v2(b, a, N, s2));
    memset(dst, 0, N);
    CHECK(cuMemcpyDtoHAsync_v2(dst, b, N, s2));
    CHECK(cuStreamSynchronize(s2));
    EXPECT(memcmp(src, dst, N) == 0, "stream copies differ");
    CHECK(cuMemcpyHtoDAsync_v2_ptsz(c, src, N, NULL));
    memset(dst, 0, N);
    CHECK(cuMemcpyDtoHAsync_v2_ptsz(dst, c, N, NULL));
    EXPECT(memcmp(src, dst, N) == 0, "per-thread stream copies differ");

    /* Handles the client never gave out, or took back. */
    EXPECT_RC(INVALID_HANDLE, cuStreamSynchronize((CUstream)0xdead));
    EXPECT_RC(INVALID_HANDLE, cuEventRecord((CUevent)0xbeef, s1));
    EXPECT_RC(INVALID_HANDLE, cuLaunchKernel((CUfunction)0x1234, 1, 1, 1, 1, 1, 1, 0, s1, args, NULL));
    EXPECT_RC(INVALID_HANDLE, cuMemcpyHtoDAsync_v2(a, src, 16, (CUstream)0x77));
    CHECK(cuEventDestroy_v2(e_nt));
    EXPECT_RC(INVALID_HANDLE, cuEventQuery(e_nt));
    CHECK(cuStreamDestroy_v2(s3));
    EXPECT_RC(INVALID_HANDLE, cuStreamQuery(s3));

    CHECK(cuEventDestroy_v2(e0));
    CHECK(cuEventDestroy_v2(e1));
    CHECK(cuStreamDestroy_v2(s1));
    CHECK(cuStreamDestroy_v2(s2));
    CHECK(cuMemFree_v2(a));
    CHECK(cuMemFree_v2(b));
    CHECK(cuMemFree_v2(c));
    CHECK(cuCtxSynchronize());
}

static int hold(void) {
    setup();
    CUstream s[3];
    CUevent e[2];
    CUmodule m[2];
    CUlibrary lib;
    CUfunction f;
    size_t fb_len;
    for (int i = 0; i < 3; i++) CHECK(cuStreamCreate(&s[i], 0));
    for (int i = 0; i < 2; i++) CHECK(cuEventCreate(&e[i], 0));
    CHECK(cuModuleLoadData(&m[0], PTX));
    CHECK(cuModuleLoadFatBinary(&m[1], make_fatbin(&fb_len)));
    CHECK(cuLibraryLoadData(&lib, PTX, NULL, NULL, 0, NULL, NULL, 0));
    CHECK(cuModuleGetFunction(&f, m[0], "vec_add"));
    CUdeviceptr a;
    CHECK(cuMemAlloc_v2(&a, 4096));
    unsigned n = 1024;
    void *args[] = {&a, &a, &a, &n};
    printf("holding\n");
    fflush(stdout);
    for (unsigned long i = 0;; i++) {
        CHECK(cuLaunchKernel(f, 4, 1, 1, 256, 1, 1, 0, s[i % 3], args, NULL));
        CHECK(cuEventRecord(e[i % 2], s[i % 3]));
        if (i % 64 == 0) CHECK(cuStreamSynchronize(s[i % 3]));
    }
}

/* Mapped host memory: a kernel given a pinned host pointer (the test
 * backend's "tf_test_host_incr" adds 1 to *p through the worker's mirror)
 * sees the application's writes and its own are seen after a sync. */
static int mapped(void) {
    static const char INCR[] = "//\n.version 8.0\n.target sm_90\n.address_size 64\n"
                               ".visible .entry tf_test_host_incr(.param .u64 p)\n{\n ret;\n}\n";
    setup();
    CUmodule m;
    CUfunction f;
    CHECK(cuModuleLoadData(&m, INCR));
    CHECK(cuModuleGetFunction(&f, m, "tf_test_host_incr"));
    volatile unsigned *p = NULL;
    CHECK(cuMemHostAlloc((void **)&p, 64, 0));
    p[0] = 41;
    p[1] = 5;
    void *args[] = {(void *)&p};
    CHECK(cuLaunchKernel(f, 1, 1, 1, 1, 1, 1, 0, 0, args, NULL));
    CHECK(cuCtxSynchronize());
    EXPECT(p[0] == 42 && p[1] == 5, "after one launch: %u %u", p[0], p[1]);
    p[0] = 100; /* a host write before the next launches */
    CHECK(cuLaunchKernel(f, 1, 1, 1, 1, 1, 1, 0, 0, args, NULL));
    CHECK(cuLaunchKernel(f, 1, 1, 1, 1, 1, 1, 0, 0, args, NULL));
    CHECK(cuCtxSynchronize());
    EXPECT(p[0] == 102 && p[1] == 5, "after a host write and two launches: %u %u", p[0], p[1]);
    CHECK(cuMemFreeHost((void *)p));
    printf("PASS mapped host memory\n");
    return 0;
}

/* A kernel that faults (the test backend's "tf_test_fault"): the sticky
 * error at the next synchronization; then wait for a line on stdin, so the
 * test can try another client while this one still holds its session. */
static int fault(void) {
    static const char FAULTY[] = "//\n.version 8.0\n.target sm_90\n.address_size 64\n"
                                 ".visible .entry tf_test_fault()\n{\n ret;\n}\n";
    CUcontext ctx = setup();
    CUmodule m;
    CUfunction f;
    CHECK(cuModuleLoadData(&m, FAULTY));
    CHECK(cuModuleGetFunction(&f, m, "tf_test_fault"));
    CHECK(cuLaunchKernel(f, 1, 1, 1, 1, 1, 1, 0, 0, NULL, NULL));
    EXPECT_RC(700 /* ILLEGAL_ADDRESS */, cuCtxSynchronize());
    /* Sticky, as natively: every later call that needs the context fails
     * with it, also stream creation; a reset succeeds and leaves the device
     * unavailable (46), as driver 580 answers. */
    CUdeviceptr d;
    CUstream st;
    EXPECT_RC(700, cuMemAlloc_v2(&d, 16));
    EXPECT_RC(700, cuStreamCreate(&st, 0));
    /* cudart's cudaDeviceReset asks for the context id first: answered. */
    unsigned long long cid = 0;
    EXPECT_RC(0, cuCtxGetId(ctx, &cid));
    EXPECT_RC(0, cuDevicePrimaryCtxReset_v2(0));
    EXPECT_RC(46, cuMemAlloc_v2(&d, 16));
    printf("faulted\n");
    fflush(stdout);
    char line[8];
    if (!fgets(line, sizeof line, stdin)) return 0;
    return 0;
}

/* Device printf through the test backend's "tf_test_printf" kernel: its
 * lines must reach this process's stdout at each synchronization (context,
 * synchronous copy, stream), before the line printed after it. */
static int device_printf(void) {
    static const char PRINTS[] = "//\n.version 8.0\n.target sm_90\n.address_size 64\n"
                                 ".visible .entry tf_test_printf(\n .param .u32 k\n)\n{\n ret;\n}\n";
    setup();
    CUmodule m;
    CUfunction f;
    CUstream s;
    CUdeviceptr d;
    unsigned k, host[4];
    void *args[] = {&k};
    CHECK(cuModuleLoadData(&m, PRINTS));
    CHECK(cuModuleGetFunction(&f, m, "tf_test_printf"));
    CHECK(cuStreamCreate(&s, 0));
    CHECK(cuMemAlloc_v2(&d, sizeof host));
    printf("before launches\n");
    fflush(stdout);
    for (k = 1; k <= 3; k++) CHECK(cuLaunchKernel(f, 1, 1, 1, 1, 1, 1, 0, 0, args, NULL));
    CHECK(cuCtxSynchronize());
    printf("after sync\n");
    fflush(stdout);
    k = 4;
    CHECK(cuLaunchKernel(f, 1, 1, 1, 1, 1, 1, 0, 0, args, NULL));
    CHECK(cuMemcpyDtoH_v2(host, d, sizeof host));
    printf("after copy\n");
    fflush(stdout);
    for (k = 5; k <= 6; k++) CHECK(cuLaunchKernel(f, 1, 1, 1, 1, 1, 1, 0, s, args, NULL));
    CHECK(cuStreamSynchronize(s));
    printf("after stream sync\n");
    printf("PASS printf\n");
    fflush(stdout);
    /* Printed by a release the client does not wait for (an enqueue call):
     * still delivered at exit, before the connection closes. */
    k = 7;
    CHECK(cuLaunchKernel(f, 1, 1, 1, 1, 1, 1, 0, 0, args, NULL));
    CHECK(cuModuleUnload(m));
    return 0;
}

static int full(void) {
    CUfunction f_add, f_bv;
    CUlibrary lib;
    CUcontext ctx = setup();
    modules(ctx, &f_add, &f_bv, &lib);
    launches(ctx, f_add, f_bv, lib);
    CHECK(cuLibraryUnload(lib));
    printf("PASS modules, launches, streams, events\n");
    return 0;
}

int main(int argc, char **argv) {
    load();
    if (argc >= 2 && strcmp(argv[1], "hold") == 0) return hold();
    if (argc >= 2 && strcmp(argv[1], "fault") == 0) return fault();
    if (argc >= 2 && strcmp(argv[1], "init") == 0) {
        printf("init %d\n", cuInit(0));
        return 0;
    }
    if (argc >= 2 && strcmp(argv[1], "full") == 0) return full();
    if (argc >= 2 && strcmp(argv[1], "mapped") == 0) return mapped();
    if (argc >= 2 && strcmp(argv[1], "printf") == 0) return device_printf();
    /* Connected first, working later: a bystander of another client's fault. */
    if (argc >= 2 && strcmp(argv[1], "ready") == 0) {
        setup();
        printf("ready\n");
        fflush(stdout);
        char line[8];
        if (!fgets(line, sizeof line, stdin)) return 1;
        return full();
    }
    printf("usage: exec full | hold | fault | init | ready | printf\n");
    return 2;
}
