/* End-to-end check of the JIT linker (cuLink*) and tensor maps
 * (cuTensorMapEncode*, cuTensorMapReplaceAddress) through our libcuda.so.1
 * against the TEST backend. Its "linker" joins the inputs' PTX into one PTX
 * image (loadable by the same backend) and its tensor maps are a
 * deterministic fill: the address in the first 8 bytes, the rank at byte 9,
 * 0x7F in the last byte. What a real link and a real map do is proven on a
 * GPU by tests/gpu/cuda/link_jit.cu and tensormap.cu.
 *
 * usage: link full    everything below, then "PASS ..."
 * Exit 0 on success; on failure one line saying what differed. */
#define _GNU_SOURCE /* memmem */
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef int CUresult;
typedef int CUdevice;
typedef unsigned long long CUdeviceptr;
typedef void *CUcontext, *CUmodule, *CUfunction, *CUlinkState;
typedef struct { _Alignas(64) unsigned char b[128]; } CUtensorMap;

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
FN(CUresult, cuGetErrorName, (CUresult, const char **))
FN(CUresult, cuMemAlloc_v2, (CUdeviceptr *, size_t))
FN(CUresult, cuMemFree_v2, (CUdeviceptr))
FN(CUresult, cuModuleLoadData, (CUmodule *, const void *))
FN(CUresult, cuModuleUnload, (CUmodule))
FN(CUresult, cuModuleGetFunction, (CUfunction *, CUmodule, const char *))
FN(CUresult, cuLaunchKernel, (CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, void *, void **, void **))
FN(CUresult, cuLinkCreate_v2, (unsigned, int *, void **, CUlinkState *))
FN(CUresult, cuLinkCreate, (unsigned, int *, void **, CUlinkState *))
FN(CUresult, cuLinkAddData_v2, (CUlinkState, int, void *, size_t, const char *, unsigned, int *, void **))
FN(CUresult, cuLinkAddFile_v2, (CUlinkState, int, const char *, unsigned, int *, void **))
FN(CUresult, cuLinkComplete, (CUlinkState, void **, size_t *))
FN(CUresult, cuLinkDestroy, (CUlinkState))
FN(CUresult, cuTensorMapEncodeTiled, (CUtensorMap *, int, unsigned, void *, const unsigned long long *, const unsigned long long *, const unsigned *, const unsigned *, int, int, int, int))
FN(CUresult, cuTensorMapEncodeIm2col, (CUtensorMap *, int, unsigned, void *, const unsigned long long *, const unsigned long long *, const int *, const int *, unsigned, unsigned, const unsigned *, int, int, int, int))
FN(CUresult, cuTensorMapEncodeIm2colWide, (CUtensorMap *, int, unsigned, void *, const unsigned long long *, const unsigned long long *, int, int, unsigned, unsigned, const unsigned *, int, int, int, int, int))
FN(CUresult, cuTensorMapReplaceAddress, (CUtensorMap *, void *))

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

enum {
    INVALID_VALUE = 1, INVALID_IMAGE = 200, INVALID_PTX = 218, FILE_NOT_FOUND = 301,
    INVALID_HANDLE = 400, NOT_SUPPORTED = 801,
};
enum { JIT_WALL_TIME = 2, JIT_INFO_LOG = 3, JIT_INFO_LOG_SIZE = 4, JIT_ERROR_LOG = 5,
       JIT_ERROR_LOG_SIZE = 6, JIT_OPT_LEVEL = 7, JIT_SYMBOL_NAMES = 17 };
enum { IN_CUBIN = 0, IN_PTX = 1 };

/* Two "modules" calling across each other, and a third read from a file. */
static const char PTX_A[] =
    ".version 8.0\n.target sm_90\n.address_size 64\n"
    ".extern .func (.param .b32 r) helper(.param .b32 x);\n"
    ".visible .entry kern_a(\n .param .u64 out\n)\n{\n ret;\n}\n";
static const char PTX_B[] =
    ".version 8.0\n.target sm_90\n.address_size 64\n"
    ".visible .func (.param .b32 r) helper(.param .b32 x)\n{\n ret;\n}\n";
static const char PTX_C[] =
    ".version 8.0\n.target sm_90\n.address_size 64\n"
    ".visible .entry kern_c(\n .param .align 64 .b8 tmap[128],\n .param .u32 k\n)\n{\n ret;\n}\n";
static const char PTX_BAD[] =
    ".version 8.0\n.target sm_90\n.address_size 64\n// tf_test_link_error\n";

static void setup(void) {
    CUdevice dev;
    CUcontext ctx;
    CHECK(cuInit(0));
    CHECK(cuDeviceGet(&dev, 0));
    CHECK(cuDevicePrimaryCtxRetain(&ctx, dev));
    CHECK(cuCtxSetCurrent(ctx));
}

static void load(void) {
    cuda = dlopen("libcuda.so.1", RTLD_NOW);
    if (!cuda) { printf("FAIL dlopen libcuda.so.1: %s\n", dlerror()); exit(10); }
    EXPECT(dlsym(cuda, "TENSOR_FUSION_CLIENT") != NULL, "libcuda.so.1 is not the tensor-fusion client");
    LOAD(cuInit); LOAD(cuDeviceGet); LOAD(cuDevicePrimaryCtxRetain); LOAD(cuCtxSetCurrent);
    LOAD(cuCtxSynchronize); LOAD(cuGetErrorName); LOAD(cuMemAlloc_v2); LOAD(cuMemFree_v2);
    LOAD(cuModuleLoadData); LOAD(cuModuleUnload); LOAD(cuModuleGetFunction); LOAD(cuLaunchKernel);
    LOAD(cuLinkCreate_v2); LOAD(cuLinkCreate); LOAD(cuLinkAddData_v2); LOAD(cuLinkAddFile_v2);
    LOAD(cuLinkComplete); LOAD(cuLinkDestroy);
    LOAD(cuTensorMapEncodeTiled); LOAD(cuTensorMapEncodeIm2col); LOAD(cuTensorMapEncodeIm2colWide);
    LOAD(cuTensorMapReplaceAddress);
}

/* A file holding `text`; the caller unlinks it. */
static void temp_file(char *path, const char *text) {
    strcpy(path, "/tmp/tf-link-XXXXXX");
    int fd = mkstemp(path);
    EXPECT(fd >= 0, "mkstemp");
    EXPECT(write(fd, text, strlen(text)) == (ssize_t)strlen(text), "write");
    close(fd);
}

/* Links A (size without its NUL), B (with it) and C from a file, with logs
 * and the wall time; loads the image and launches from both sides. */
static void good_link(CUtensorMap *map) {
    char info[256], err[256];
    memset(info, 'x', sizeof info);
    memset(err, 'x', sizeof err);
    int opts[] = {JIT_INFO_LOG, JIT_INFO_LOG_SIZE, JIT_ERROR_LOG, JIT_ERROR_LOG_SIZE, JIT_WALL_TIME, JIT_OPT_LEVEL};
    void *vals[] = {info, (void *)(uintptr_t)sizeof info, err, (void *)(uintptr_t)sizeof err, 0, (void *)(uintptr_t)3};
    CUlinkState st;
    CHECK(cuLinkCreate_v2(6, opts, vals, &st));
    CHECK(cuLinkAddData_v2(st, IN_PTX, (void *)PTX_A, strlen(PTX_A), "a.ptx", 0, NULL, NULL));
    int lvl = JIT_OPT_LEVEL; void *lv = (void *)(uintptr_t)2;
    CHECK(cuLinkAddData_v2(st, IN_PTX, (void *)PTX_B, sizeof PTX_B, "b.ptx", 1, &lvl, &lv));
    char path[64];
    temp_file(path, PTX_C);
    CHECK(cuLinkAddFile_v2(st, IN_PTX, path, 0, NULL, NULL));
    unlink(path);
    void *cubin = NULL;
    size_t size = 0;
    CHECK(cuLinkComplete(st, &cubin, &size));
    const char *head = "// tf-test-worker linked image of 3 inputs";
    EXPECT(cubin && size > strlen(head) && memcmp(cubin, head, strlen(head)) == 0, "linked image: %.60s", (char *)cubin);
    EXPECT(((const char *)cubin)[size - 1] == 0, "the linked image ends with its NUL");
    EXPECT(strstr(info, "linked 3 inputs") != NULL, "info log: %.200s", info);
    EXPECT((uintptr_t)vals[1] == strlen(info), "info log size %zu vs %zu", (size_t)(uintptr_t)vals[1], strlen(info));
    EXPECT(err[0] == 0 && (uintptr_t)vals[3] == 0, "error log should be empty: %.100s", err);
    float wall;
    memcpy(&wall, &vals[4], sizeof wall);
    EXPECT(wall == 0.25f, "wall time %f", wall);
    EXPECT((uintptr_t)vals[5] == 3, "a plain option value is left alone");

    CUmodule m;
    CUfunction fa, fc;
    CHECK(cuModuleLoadData(&m, cubin));
    CHECK(cuModuleGetFunction(&fa, m, "kern_a"));
    CHECK(cuModuleGetFunction(&fc, m, "kern_c"));
    CUdeviceptr out;
    CHECK(cuMemAlloc_v2(&out, 256));
    void *pa[] = {&out};
    CHECK(cuLaunchKernel(fa, 1, 1, 1, 32, 1, 1, 0, NULL, pa, NULL));
    unsigned k = 7;
    void *pc[] = {map, &k}; /* a tensor map passed by value to a kernel */
    CHECK(cuLaunchKernel(fc, 1, 1, 1, 32, 1, 1, 0, NULL, pc, NULL));
    CHECK(cuCtxSynchronize());
    CHECK(cuModuleUnload(m));
    CHECK(cuMemFree_v2(out));
    CHECK(cuLinkDestroy(st));
    EXPECT_RC(INVALID_HANDLE, cuLinkDestroy(st));
}

/* An image larger than a frame both ways: staged parts up, LinkRead down. */
static void big_link(void) {
    size_t n = 20u << 20;
    char *big = malloc(n + 1);
    memcpy(big, PTX_B, strlen(PTX_B));
    memset(big + strlen(PTX_B), ' ', n - strlen(PTX_B) - 1);
    big[n - 1] = '\n';
    big[n] = 0;
    for (size_t i = strlen(PTX_B); i + 64 < n; i += 4096) memcpy(big + i, "//", 2), big[i + 63] = '\n';
    CUlinkState st;
    CHECK(cuLinkCreate(0, NULL, NULL, &st));
    CHECK(cuLinkAddData_v2(st, IN_PTX, big, n, "big.ptx", 0, NULL, NULL));
    CHECK(cuLinkAddData_v2(st, IN_PTX, (void *)PTX_A, sizeof PTX_A, "a.ptx", 0, NULL, NULL));
    void *cubin;
    size_t size;
    CHECK(cuLinkComplete(st, &cubin, &size));
    EXPECT(size > n && memmem(cubin, size, "kern_a", 6) != NULL, "big image: %zu bytes", size);
    /* The big input comes through intact, byte for byte. */
    EXPECT(memmem(cubin, size, big + n - 8192, 8192) != NULL, "the big input's tail is in the image");
    CUmodule m;
    CUfunction f;
    CHECK(cuModuleLoadData(&m, cubin));
    CHECK(cuModuleGetFunction(&f, m, "kern_a"));
    CHECK(cuModuleUnload(m));
    CHECK(cuLinkDestroy(st));
    free(big);
}

static void bad_links(void) {
    CUlinkState st;
    int sym = JIT_SYMBOL_NAMES; void *symv = NULL;
    EXPECT_RC(NOT_SUPPORTED, cuLinkCreate_v2(1, &sym, &symv, &st));
    EXPECT_RC(INVALID_VALUE, cuLinkCreate_v2(0, NULL, NULL, NULL));
    char err[256];
    int opts[] = {JIT_ERROR_LOG, JIT_ERROR_LOG_SIZE};
    void *vals[] = {err, (void *)(uintptr_t)sizeof err};
    CHECK(cuLinkCreate_v2(2, opts, vals, &st));
    void *cubin = NULL;
    size_t size;
    EXPECT_RC(INVALID_VALUE, cuLinkComplete(st, &cubin, &size)); /* no inputs yet */
    EXPECT_RC(INVALID_VALUE, cuLinkAddData_v2(st, 6, (void *)PTX_A, sizeof PTX_A, "t", 0, NULL, NULL));
    EXPECT_RC(INVALID_VALUE, cuLinkAddData_v2(st, 99, (void *)PTX_A, sizeof PTX_A, "t", 0, NULL, NULL));
    EXPECT_RC(INVALID_VALUE, cuLinkAddData_v2(st, IN_PTX, NULL, 10, "t", 0, NULL, NULL));
    EXPECT_RC(INVALID_VALUE, cuLinkAddData_v2(st, IN_PTX, (void *)PTX_A, 0, "t", 0, NULL, NULL));
    /* Oversize: refused from the size alone, nothing is read. */
    EXPECT_RC(INVALID_VALUE, cuLinkAddData_v2(st, IN_PTX, (void *)PTX_A, (size_t)300 << 20, "t", 0, NULL, NULL));
    EXPECT_RC(INVALID_IMAGE, cuLinkAddData_v2(st, IN_CUBIN, (void *)PTX_A, sizeof PTX_A, "t", 0, NULL, NULL));
    int il = JIT_INFO_LOG; void *ilv = err;
    EXPECT_RC(NOT_SUPPORTED, cuLinkAddData_v2(st, IN_PTX, (void *)PTX_A, sizeof PTX_A, "t", 1, &il, &ilv));
    EXPECT_RC(FILE_NOT_FOUND, cuLinkAddFile_v2(st, IN_PTX, "/nonexistent/tf-link.ptx", 0, NULL, NULL));
    EXPECT_RC(INVALID_VALUE, cuLinkAddFile_v2(st, IN_PTX, NULL, 0, NULL, NULL));
    EXPECT_RC(INVALID_HANDLE, cuLinkAddData_v2((CUlinkState)0x1234, IN_PTX, (void *)PTX_A, sizeof PTX_A, "t", 0, NULL, NULL));
    EXPECT_RC(INVALID_HANDLE, cuLinkComplete((CUlinkState)0x1234, &cubin, &size));
    /* A compile error: reported by cuLinkComplete with its error log. */
    CHECK(cuLinkAddData_v2(st, IN_PTX, (void *)PTX_A, sizeof PTX_A, "a.ptx", 0, NULL, NULL));
    CHECK(cuLinkAddData_v2(st, IN_PTX, (void *)PTX_BAD, sizeof PTX_BAD, "bad.ptx", 0, NULL, NULL));
    EXPECT_RC(INVALID_PTX, cuLinkComplete(st, &cubin, &size));
    EXPECT(strstr(err, "'bad.ptx': tf_test_link_error") != NULL, "error log: %.200s", err);
    EXPECT((uintptr_t)vals[1] == strlen(err), "error log size");
    EXPECT_RC(INVALID_VALUE, cuLinkComplete(st, NULL, &size));
    CHECK(cuLinkDestroy(st));
}

static void tensor_maps(CUtensorMap *keep) {
    CUdeviceptr buf;
    CHECK(cuMemAlloc_v2(&buf, 64 * 64 * 4));
    unsigned long long dims[2] = {64, 64}, strides[1] = {64 * 4};
    unsigned box[2] = {32, 32}, es[2] = {1, 1};
    CUtensorMap map;
    memset(&map, 0xAB, sizeof map);
    CHECK(cuTensorMapEncodeTiled(&map, 7, 2, (void *)buf, dims, strides, box, es, 0, 0, 0, 0));
    unsigned long long addr;
    memcpy(&addr, map.b, 8);
    EXPECT(addr == buf && map.b[9] == 2 && map.b[127] == 0x7F, "encoded map: addr %llx rank %d", addr, map.b[9]);
    CUtensorMap before = map;
    CHECK(cuTensorMapReplaceAddress(&map, (void *)(buf + 256)));
    memcpy(&addr, map.b, 8);
    EXPECT(addr == buf + 256 && memcmp(map.b + 8, before.b + 8, 120) == 0, "replaced address");
    *keep = map;
    /* Bad ranks, null or misaligned pointers, values the driver refuses. */
    EXPECT_RC(INVALID_VALUE, cuTensorMapEncodeTiled(&map, 7, 0, (void *)buf, dims, strides, box, es, 0, 0, 0, 0));
    EXPECT_RC(INVALID_VALUE, cuTensorMapEncodeTiled(&map, 7, 6, (void *)buf, dims, strides, box, es, 0, 0, 0, 0));
    EXPECT_RC(INVALID_VALUE, cuTensorMapEncodeTiled(&map, 7, 2, (void *)buf, NULL, strides, box, es, 0, 0, 0, 0));
    EXPECT_RC(INVALID_VALUE, cuTensorMapEncodeTiled(&map, 7, 2, (void *)buf, dims, NULL, box, es, 0, 0, 0, 0));
    EXPECT_RC(INVALID_VALUE, cuTensorMapEncodeTiled(NULL, 7, 2, (void *)buf, dims, strides, box, es, 0, 0, 0, 0));
    EXPECT_RC(INVALID_VALUE, cuTensorMapEncodeTiled((CUtensorMap *)(map.b + 8), 7, 2, (void *)buf, dims, strides, box, es, 0, 0, 0, 0));
    unsigned zero_box[2] = {0, 32};
    EXPECT_RC(INVALID_VALUE, cuTensorMapEncodeTiled(&map, 7, 2, (void *)buf, dims, strides, zero_box, es, 0, 0, 0, 0));
    EXPECT_RC(INVALID_VALUE, cuTensorMapEncodeTiled(&map, 7, 2, (void *)(buf + 4), dims, strides, box, es, 0, 0, 0, 0));
    CUtensorMap junk;
    memset(&junk, 0, sizeof junk);
    EXPECT_RC(INVALID_VALUE, cuTensorMapReplaceAddress(&junk, (void *)buf));
    /* im2col: rank 3..5, corners of rank - 2 entries. */
    unsigned long long d3[3] = {16, 8, 8}, s3[2] = {64, 512};
    unsigned e3[3] = {1, 1, 1};
    int lo[1] = {0}, up[1] = {0};
    CHECK(cuTensorMapEncodeIm2col(&map, 7, 3, (void *)buf, d3, s3, lo, up, 16, 8, e3, 0, 0, 0, 0));
    EXPECT(map.b[9] == 3 && map.b[14] == 1, "im2col map");
    EXPECT_RC(INVALID_VALUE, cuTensorMapEncodeIm2col(&map, 7, 2, (void *)buf, d3, s3, lo, up, 16, 8, e3, 0, 0, 0, 0));
    EXPECT_RC(INVALID_VALUE, cuTensorMapEncodeIm2col(&map, 7, 3, (void *)buf, d3, s3, NULL, up, 16, 8, e3, 0, 0, 0, 0));
    CHECK(cuTensorMapEncodeIm2colWide(&map, 7, 3, (void *)buf, d3, s3, 0, 0, 16, 8, e3, 0, 0, 0, 0, 0));
    EXPECT(map.b[14] == 2, "im2col wide map");
    EXPECT_RC(INVALID_VALUE, cuTensorMapEncodeIm2colWide(&map, 7, 6, (void *)buf, d3, s3, 0, 0, 16, 8, e3, 0, 0, 0, 0, 0));
    CHECK(cuMemFree_v2(buf));
}

static int full(void) {
    setup();
    CUtensorMap map;
    tensor_maps(&map);
    bad_links();
    good_link(&map);
    big_link();
    /* The worker kept serving through every refusal. */
    CUdeviceptr p;
    CHECK(cuMemAlloc_v2(&p, 4096));
    CHECK(cuMemFree_v2(p));
    printf("PASS link, tensor maps\n");
    return 0;
}

int main(int argc, char **argv) {
    load();
    if (argc >= 2 && strcmp(argv[1], "full") == 0) return full();
    printf("usage: link full\n");
    return 2;
}
