/* Driver-API GPU program (no cudart): loads the kernels of kernels.cu as a
 * cubin, as PTX (JIT), as a fatbin, from a file and as a library; runs
 * vector add, a tiled matrix multiply with shared memory, thousands of small
 * kernels on several streams with events and timing, async memsets, by-value
 * struct parameters (also through `extra`), module globals, dynamic shared
 * memory, a cluster launch and a cooperative launch. Deterministic inputs;
 * stdout carries only results (compared native vs through the client),
 * timings go to stderr.
 *
 * usage: drv_vecadd DIR [hold]   (DIR holds kernels.cubin, kernels.ptx, kernels.fatbin;
 *        hold: stop at the streams and launch forever, to be killed) 
 * Built with -DCUDA_API_PER_THREAD_DEFAULT_STREAM it uses the _ptsz/_ptds
 * entry points. */
#include <cuda.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(call)                                                              \
    do {                                                                         \
        CUresult r_ = (call);                                                    \
        if (r_ != CUDA_SUCCESS) {                                                \
            const char *s_ = "?";                                                \
            cuGetErrorName(r_, &s_);                                             \
            printf("FAIL line %d: %s -> %d %s\n", __LINE__, #call, (int)r_, s_); \
            exit(1);                                                             \
        }                                                                        \
    } while (0)
#define EXPECT(cond, ...)                                                        \
    do {                                                                         \
        if (!(cond)) { printf("FAIL line %d: ", __LINE__); printf(__VA_ARGS__); printf("\n"); exit(1); } \
    } while (0)

static char *read_file(const char *dir, const char *name, size_t *len) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    EXPECT(f != NULL, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    EXPECT(fread(b, 1, (size_t)n, f) == (size_t)n, "read %s", path);
    fclose(f);
    b[n] = 0; /* PTX text needs its NUL */
    if (len) *len = (size_t)n;
    return b;
}

static uint64_t fnv(const void *p, size_t n) {
    const unsigned char *b = p;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) { h ^= b[i]; h *= 1099511628211ull; }
    return h;
}

enum { N = 1 << 20 };

/* c = a + b with the function `f`, checked against the host. */
static void vec_add_with(const char *what, CUfunction f, CUdeviceptr da, CUdeviceptr db, CUdeviceptr dc,
                         const float *a, const float *b, float *c) {
    int n = N;
    void *args[] = {&da, &db, &dc, &n};
    CHECK(cuMemsetD32(dc, 0, N));
    CHECK(cuLaunchKernel(f, (N + 255) / 256, 1, 1, 256, 1, 1, 0, 0, args, NULL));
    CHECK(cuCtxSynchronize());
    CHECK(cuMemcpyDtoH(c, dc, N * sizeof(float)));
    double sum = 0;
    for (int i = 0; i < N; i++) {
        EXPECT(c[i] == a[i] + b[i], "%s: c[%d] = %f, expected %f", what, i, c[i], a[i] + b[i]);
        sum += c[i];
    }
    printf("vec_add %-8s ok checksum %.1f\n", what, sum);
}

int main(int argc, char **argv) {
    EXPECT(argc >= 2, "usage: drv_vecadd DIR");
    const char *dir = argv[1];
    CUdevice dev;
    CUcontext ctx;
    int major = 0, sms = 0;
    char name[256];
    CHECK(cuInit(0));
    CHECK(cuDeviceGet(&dev, 0));
    CHECK(cuDeviceGetName(name, sizeof name, dev));
    CHECK(cuDeviceGetAttribute(&major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, dev));
    CHECK(cuDeviceGetAttribute(&sms, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, dev));
    CHECK(cuDevicePrimaryCtxRetain(&ctx, dev));
    CHECK(cuCtxSetCurrent(ctx));
    printf("device %s, sm_%d0, %d SMs\n", name, major, sms);

    /* Modules from every kind of image. */
    size_t cubin_len, fatbin_len;
    char *cubin = read_file(dir, "kernels.cubin", &cubin_len);
    char *ptx = read_file(dir, "kernels.ptx", NULL);
    char *fatbin = read_file(dir, "kernels.fatbin", &fatbin_len);
    CUmodule m_cubin, m_ptx, m_fatbin, m_file, m_lib;
    CHECK(cuModuleLoadData(&m_cubin, cubin));
    char info[4096] = "", err[4096] = "";
    float walltime = -1;
    CUjit_option opts[] = {CU_JIT_INFO_LOG_BUFFER, CU_JIT_INFO_LOG_BUFFER_SIZE_BYTES, CU_JIT_ERROR_LOG_BUFFER,
                           CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES, CU_JIT_WALL_TIME};
    void *vals[] = {info, (void *)(uintptr_t)sizeof info, err, (void *)(uintptr_t)sizeof err, NULL};
    CHECK(cuModuleLoadDataEx(&m_ptx, ptx, 5, opts, vals));
    memcpy(&walltime, &vals[4], sizeof walltime);
    EXPECT(walltime >= 0, "JIT wall time %f", walltime);
    fprintf(stderr, "ptx jit: %.3f ms, info log: %s\n", walltime, info);
    CHECK(cuModuleLoadFatBinary(&m_fatbin, fatbin));
    char path[4096];
    snprintf(path, sizeof path, "%s/kernels.cubin", dir);
    CHECK(cuModuleLoad(&m_file, path));
    CUlibrary lib;
    CUkernel k_add;
    CHECK(cuLibraryLoadData(&lib, fatbin, NULL, NULL, 0, NULL, NULL, 0));
    CHECK(cuLibraryGetKernel(&k_add, lib, "vec_add"));
    CHECK(cuLibraryGetModule(&m_lib, lib));
    printf("modules: cubin %zu bytes, fatbin %zu bytes, ptx jit, file, library\n", cubin_len, fatbin_len);

    /* Vector add through each of them. */
    float *a = malloc(N * sizeof(float)), *b = malloc(N * sizeof(float)), *c = malloc(N * sizeof(float));
    for (int i = 0; i < N; i++) { a[i] = (float)(i % 1000) * 0.5f; b[i] = (float)(i % 777) * 0.25f + 1.0f; }
    CUdeviceptr da, db, dc;
    CHECK(cuMemAlloc(&da, N * sizeof(float)));
    CHECK(cuMemAlloc(&db, N * sizeof(float)));
    CHECK(cuMemAlloc(&dc, N * sizeof(float)));
    CHECK(cuMemcpyHtoD(da, a, N * sizeof(float)));
    CHECK(cuMemcpyHtoD(db, b, N * sizeof(float)));
    CUfunction f;
    CHECK(cuModuleGetFunction(&f, m_cubin, "vec_add"));
    vec_add_with("cubin", f, da, db, dc, a, b, c);
    CHECK(cuModuleGetFunction(&f, m_ptx, "vec_add"));
    vec_add_with("ptx", f, da, db, dc, a, b, c);
    CHECK(cuModuleGetFunction(&f, m_fatbin, "vec_add"));
    vec_add_with("fatbin", f, da, db, dc, a, b, c);
    CHECK(cuModuleGetFunction(&f, m_file, "vec_add"));
    vec_add_with("file", f, da, db, dc, a, b, c);
    vec_add_with("kernel", (CUfunction)k_add, da, db, dc, a, b, c);
    CHECK(cuKernelGetFunction(&f, k_add));
    vec_add_with("kfunc", f, da, db, dc, a, b, c);
    CHECK(cuModuleGetFunction(&f, m_lib, "vec_add"));
    vec_add_with("libmod", f, da, db, dc, a, b, c);
    CUfunction f_add = f;
    size_t off = 0, size = 0;
    CHECK(cuFuncGetParamInfo(f_add, 3, &off, &size));
    printf("vec_add param 3 at %zu, %zu bytes\n", off, size);

    /* A module global, set from the host. */
    CUdeviceptr g;
    size_t gsize = 0;
    float factor = 2.5f;
    CHECK(cuModuleGetGlobal(&g, &gsize, m_cubin, "scale_factor"));
    EXPECT(gsize == sizeof(float), "global size %zu", gsize);
    CHECK(cuMemcpyHtoD(g, &factor, sizeof factor));
    CHECK(cuModuleGetFunction(&f, m_cubin, "scale"));
    int n = N;
    void *sargs[] = {&dc, &n};
    CHECK(cuLaunchKernel(f, N / 256, 1, 1, 256, 1, 1, 0, 0, sargs, NULL));
    CHECK(cuMemcpyDtoH(c, dc, N * sizeof(float)));
    for (int i = 0; i < N; i++) EXPECT(c[i] == (a[i] + b[i]) * 2.5f, "scale[%d] = %f", i, c[i]);
    printf("global scale_factor ok\n");

    /* Tiled matrix multiply, exact in float (small integers). */
    enum { M = 512 };
    float *A = malloc(M * M * sizeof(float)), *B = malloc(M * M * sizeof(float)), *C = malloc(M * M * sizeof(float));
    for (int i = 0; i < M * M; i++) { A[i] = (float)((i * 7 + 3) % 17 - 8); B[i] = (float)((i * 5 + 1) % 13 - 6); }
    CUdeviceptr dA, dB, dC;
    CHECK(cuMemAlloc(&dA, M * M * sizeof(float)));
    CHECK(cuMemAlloc(&dB, M * M * sizeof(float)));
    CHECK(cuMemAlloc(&dC, M * M * sizeof(float)));
    CHECK(cuMemcpyHtoD(dA, A, M * M * sizeof(float)));
    CHECK(cuMemcpyHtoD(dB, B, M * M * sizeof(float)));
    CHECK(cuModuleGetFunction(&f, m_fatbin, "matmul"));
    int m = M;
    void *margs[] = {&dA, &dB, &dC, &m};
    CHECK(cuLaunchKernel(f, M / 16, M / 16, 1, 16, 16, 1, 0, 0, margs, NULL));
    CHECK(cuMemcpyDtoH(C, dC, M * M * sizeof(float)));
    double msum = 0;
    for (int i = 0; i < M; i += 37)
        for (int j = 0; j < M; j += 41) {
            float want = 0;
            for (int k = 0; k < M; k++) want += A[i * M + k] * B[k * M + j];
            EXPECT(C[i * M + j] == want, "C[%d][%d] = %f, expected %f", i, j, C[i * M + j], want);
        }
    for (int i = 0; i < M * M; i++) msum += C[i];
    int regs = 0;
    CHECK(cuFuncGetAttribute(&regs, CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK, f));
    printf("matmul %dx%d ok checksum %.1f (max threads %d)\n", M, M, msum, regs);

    /* Thousands of small kernels on four streams, ordered by events. */
    enum { STREAMS = 4, PER = 1000, LEN = 256 };
    CUstream s[STREAMS];
    CUevent ev0[STREAMS], ev1[STREAMS];
    CUdeviceptr x[STREAMS];
    CHECK(cuStreamCreate(&s[0], CU_STREAM_NON_BLOCKING));
    CHECK(cuStreamCreate(&s[1], CU_STREAM_DEFAULT));
    CHECK(cuStreamCreateWithPriority(&s[2], CU_STREAM_NON_BLOCKING, -1));
    CHECK(cuStreamCreate(&s[3], CU_STREAM_NON_BLOCKING));
    int prio = 0;
    unsigned sflags = 9;
    CHECK(cuStreamGetPriority(s[2], &prio));
    CHECK(cuStreamGetFlags(s[0], &sflags));
    printf("stream priority %d, flags %u\n", prio, sflags);
    CUfunction f_one;
    CHECK(cuModuleGetFunction(&f_one, m_cubin, "add_one"));
    for (int i = 0; i < STREAMS; i++) {
        CHECK(cuEventCreate(&ev0[i], CU_EVENT_DEFAULT));
        CHECK(cuEventCreate(&ev1[i], CU_EVENT_DEFAULT));
        CHECK(cuMemAlloc(&x[i], LEN * sizeof(float)));
        CHECK(cuMemsetD32Async(x[i], 0, LEN, s[i]));
    }
    int len = LEN;
    if (argc >= 3 && strcmp(argv[2], "hold") == 0) {
        /* Killed by the GPU check while it holds streams, events, modules
         * and a library, to see the worker release them on the real driver. */
        printf("holding\n");
        fflush(stdout);
        for (unsigned long i = 0;; i++) {
            void *kargs[] = {&x[i % STREAMS], &len};
            CHECK(cuLaunchKernel(f_one, 1, 1, 1, LEN, 1, 1, 0, s[i % STREAMS], kargs, NULL));
            CHECK(cuEventRecord(ev1[i % STREAMS], s[i % STREAMS]));
            if (i % 1000 == 0) CHECK(cuStreamSynchronize(s[i % STREAMS]));
        }
    }
    for (int i = 0; i < STREAMS; i++) {
        void *kargs[] = {&x[i], &len};
        CHECK(cuEventRecord(ev0[i], s[i]));
        for (int k = 0; k < PER; k++) CHECK(cuLaunchKernel(f_one, 1, 1, 1, LEN, 1, 1, 0, s[i], kargs, NULL));
        CHECK(cuEventRecord(ev1[i], s[i]));
    }
    for (int i = 1; i < STREAMS; i++) CHECK(cuStreamWaitEvent(s[0], ev1[i], 0));
    float hx[STREAMS][LEN];
    for (int i = 0; i < STREAMS; i++) CHECK(cuMemcpyDtoHAsync(hx[i], x[i], sizeof hx[i], s[0]));
    CHECK(cuStreamSynchronize(s[0]));
    for (int i = 0; i < STREAMS; i++)
        for (int j = 0; j < LEN; j++) EXPECT(hx[i][j] == PER, "stream %d x[%d] = %f", i, j, hx[i][j]);
    for (int i = 0; i < STREAMS; i++) {
        float ms = -1;
        CHECK(cuEventSynchronize(ev1[i]));
        CHECK(cuEventQuery(ev1[i]));
        CHECK(cuEventElapsedTime(&ms, ev0[i], ev1[i]));
        EXPECT(ms >= 0, "elapsed %f", ms);
        fprintf(stderr, "stream %d: %d kernels in %.3f ms\n", i, PER, ms);
        CHECK(cuStreamQuery(s[i]));
    }
    printf("%d small kernels on %d streams ok\n", STREAMS * PER, STREAMS);

    /* Async memsets, 1D and 2D, checked by a digest. */
    enum { MS = 1 << 20 };
    unsigned char *hm = malloc(MS);
    CUdeviceptr dm;
    CHECK(cuMemAlloc(&dm, MS));
    CHECK(cuMemsetD8Async(dm, 0x5A, MS, s[1]));
    CHECK(cuMemsetD16Async(dm + 4096, 0xBEEF, 1000, s[1]));
    CHECK(cuMemsetD32Async(dm + 65536, 0x01020304u, 5000, s[1]));
    CHECK(cuMemsetD2D8Async(dm + 200000, 1024, 0x11, 100, 50, s[1]));
    CHECK(cuMemsetD2D16Async(dm + 300000, 2048, 0x2233, 300, 40, s[1]));
    CHECK(cuMemsetD2D32Async(dm + 500000, 4096, 0x44556677u, 700, 30, s[1]));
    CHECK(cuStreamSynchronize(s[1]));
    CHECK(cuMemcpyDtoH(hm, dm, MS));
    EXPECT(hm[0] == 0x5A && hm[4096] == 0xEF && hm[4097] == 0xBE && hm[65536] == 0x04 && hm[200000 + 1024] == 0x11,
           "memset bytes %x %x %x", hm[0], hm[4096], hm[65536]);
    printf("memsets ok digest %016llx\n", (unsigned long long)fnv(hm, MS));

    /* By-value parameters: a padded struct and a 128-byte aligned one,
     * with kernelParams and with the extra buffer (laid out by cuFuncGetParamInfo). */
    struct Small { int a; double b; char c; } sv = {3, 0.5, 2};
    struct Big { _Alignas(64) float v[32]; } big;
    for (int i = 0; i < 32; i++) big.v[i] = (float)(i + 1);
    char flag = 3;
    int kk = 7;
    CUdeviceptr dout;
    float out[3];
    CHECK(cuMemAlloc(&dout, sizeof out));
    CUfunction f_bv;
    CHECK(cuModuleGetFunction(&f_bv, m_cubin, "by_value"));
    void *bargs[] = {&flag, &sv, &big, &kk, &dout};
    CHECK(cuLaunchKernel(f_bv, 1, 1, 1, 32, 1, 1, 0, 0, bargs, NULL));
    CHECK(cuMemcpyDtoH(out, dout, sizeof out));
    EXPECT(out[0] == 528 && out[1] == 5.5f && out[2] == 21, "by_value %f %f %f", out[0], out[1], out[2]);
    unsigned char buf[256] = {0};
    size_t total = 0;
    for (size_t i = 0; i < 5; i++) {
        CHECK(cuFuncGetParamInfo(f_bv, i, &off, &size));
        memcpy(buf + off, bargs[i], size);
        total = off + size;
    }
    void *extra[] = {CU_LAUNCH_PARAM_BUFFER_POINTER, buf, CU_LAUNCH_PARAM_BUFFER_SIZE, &total, CU_LAUNCH_PARAM_END};
    CHECK(cuMemsetD32(dout, 0, 3));
    CHECK(cuLaunchKernel(f_bv, 1, 1, 1, 32, 1, 1, 0, 0, NULL, extra));
    CHECK(cuMemcpyDtoH(out, dout, sizeof out));
    EXPECT(out[0] == 528 && out[1] == 5.5f && out[2] == 21, "by_value extra %f %f %f", out[0], out[1], out[2]);
    printf("by-value parameters ok (%zu bytes), extra ok\n", total);

    /* Dynamic shared memory beyond 48 KiB. */
    CUfunction f_dyn;
    CHECK(cuModuleGetFunction(&f_dyn, m_cubin, "dyn_smem"));
    CHECK(cuFuncSetAttribute(f_dyn, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, 64 * 1024));
    void *dargs[] = {&dc};
    CHECK(cuLaunchKernel(f_dyn, 4, 1, 1, 256, 1, 1, 64 * 1024, s[3], dargs, NULL));
    CHECK(cuStreamSynchronize(s[3]));
    CHECK(cuMemcpyDtoH(c, dc, 1024 * sizeof(float)));
    for (int i = 0; i < 1024; i++) EXPECT(c[i] == (float)(255 - i % 256), "dyn_smem[%d] = %f", i, c[i]);
    printf("dynamic shared memory 64 KiB ok\n");

    /* Occupancy answers (the same driver natively and remotely). */
    int blocks = 0, min_grid = 0, best = 0;
    CHECK(cuOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, f_add, 256, 0));
    CHECK(cuOccupancyMaxPotentialBlockSize(&min_grid, &best, f_add, NULL, 0, 0));
    printf("occupancy: %d blocks/SM at 256, best block %d, min grid %d\n", blocks, best, min_grid);

    /* Cluster launch (Hopper and later) and a cooperative launch. */
    CUdeviceptr dr;
    int ranks[8];
    CHECK(cuMemAlloc(&dr, sizeof ranks));
    if (major >= 9) {
        CUfunction f_cl;
        CHECK(cuModuleGetFunction(&f_cl, m_cubin, "cluster_rank"));
        CUlaunchAttribute attr;
        memset(&attr, 0, sizeof attr);
        attr.id = CU_LAUNCH_ATTRIBUTE_CLUSTER_DIMENSION;
        attr.value.clusterDim.x = 2;
        attr.value.clusterDim.y = 1;
        attr.value.clusterDim.z = 1;
        CUlaunchConfig cfg = {8, 1, 1, 32, 1, 1, 0, s[3], &attr, 1};
        void *cargs[] = {&dr};
        CHECK(cuLaunchKernelEx(&cfg, f_cl, cargs, NULL));
        CHECK(cuStreamSynchronize(s[3]));
        CHECK(cuMemcpyDtoH(ranks, dr, sizeof ranks));
        printf("cluster ranks");
        for (int i = 0; i < 8; i++) { printf(" %d", ranks[i]); EXPECT(ranks[i] == i % 2, "rank %d", ranks[i]); }
        printf("\n");
    } else {
        printf("cluster launch skipped (sm_%d0)\n", major);
    }
    CUfunction f_coop;
    CHECK(cuModuleGetFunction(&f_coop, m_cubin, "coop_sum"));
    int data[4096], total_sum = 0, got = 0;
    for (int i = 0; i < 4096; i++) { data[i] = i % 100; total_sum += data[i]; }
    CUdeviceptr ddata, dpart, dsum;
    CHECK(cuMemAlloc(&ddata, sizeof data));
    CHECK(cuMemAlloc(&dpart, 64 * sizeof(int)));
    CHECK(cuMemAlloc(&dsum, sizeof(int)));
    CHECK(cuMemcpyHtoD(ddata, data, sizeof data));
    int nd = 4096;
    void *coargs[] = {&ddata, &dpart, &dsum, &nd};
    CHECK(cuLaunchCooperativeKernel(f_coop, 8, 1, 1, 64, 1, 1, 0, s[0], coargs));
    CHECK(cuStreamSynchronize(s[0]));
    CHECK(cuMemcpyDtoH(&got, dsum, sizeof got));
    EXPECT(got == total_sum, "cooperative sum %d, expected %d", got, total_sum);
    printf("cooperative launch ok sum %d\n", got);

    /* A launch the driver refuses: natively at once, remotely at the next
     * synchronization. Either way the program sees it, then goes on. */
    void *args[] = {&da, &db, &dc, &n};
    CUresult bad = cuLaunchKernel(f_add, 1, 1, 1, 2048, 1, 1, 0, s[0], args, NULL);
    if (bad == CUDA_SUCCESS) bad = cuStreamSynchronize(s[0]);
    printf("bad launch -> %d\n", (int)bad);
    CHECK(cuStreamSynchronize(s[0]));

    for (int i = 0; i < STREAMS; i++) {
        CHECK(cuEventDestroy(ev0[i]));
        CHECK(cuEventDestroy(ev1[i]));
        CHECK(cuStreamDestroy(s[i]));
        CHECK(cuMemFree(x[i]));
    }
    CHECK(cuModuleUnload(m_cubin));
    CHECK(cuModuleUnload(m_ptx));
    CHECK(cuModuleUnload(m_fatbin));
    CHECK(cuModuleUnload(m_file));
    CHECK(cuLibraryUnload(lib));
    CHECK(cuCtxSynchronize());
    printf("PASS\n");
    return 0;
}
