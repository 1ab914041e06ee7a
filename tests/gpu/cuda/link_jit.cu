// The driver's JIT linker from a cudart program (functions from
// cudaGetDriverEntryPointByVersion, no -lcuda), as NVRTC users and
// numba/CuPy link relocatable device code at run time: two device
// functions in one PTX input (added from a file, cuLinkAddFile) and a
// kernel calling them in another (cuLinkAddData), linked with info and
// error logs, loaded with cuModuleLoadData, launched, checked against the
// CPU. Then the failures the driver reports: a PTX syntax error (with its
// error log) and an unresolved function. Through the client the link runs
// on the worker at cuLinkComplete, so a PTX error surfaces there rather
// than at cuLinkAddData: the program prints the first failing call's
// result of the sequence, which is the same either way.
#include <cuda.h>
#include <unistd.h>
#include <cstring>
#include <vector>
#include "common.cuh"

#define CKD(call)                                                                          \
    do {                                                                                   \
        CUresult r_ = (call);                                                              \
        if (r_ != CUDA_SUCCESS) { printf("FAIL line %d: %s -> CUresult %d\n", __LINE__, #call, (int)r_); exit(1); } \
    } while (0)

static void *load(const char *name) {
    void *fn = nullptr;
    cudaDriverEntryPointQueryResult q = cudaDriverEntryPointSymbolNotFound;
    CK(cudaGetDriverEntryPointByVersion(name, &fn, 12000, cudaEnableDefault, &q));
    EXPECT(q == cudaDriverEntryPointSuccess && fn, "%s: query result %d", name, (int)q);
    return fn;
}
// d_NAME: the driver's NAME with the type cuda.h declares for it (cuda.h
// maps cuLinkCreate & co. to their _v2 names; the query asks by base name).
#define DRV(name) auto d_##name = (decltype(&name))load(#name)

static const char PTX_LIB[] = R"(
.version 7.0
.target sm_50
.address_size 64

.visible .func (.param .b32 func_retval0) scale_add(
	.param .b32 scale_add_param_0,
	.param .b32 scale_add_param_1
)
{
	.reg .b32 %r<5>;
	ld.param.u32 %r1, [scale_add_param_0];
	ld.param.u32 %r2, [scale_add_param_1];
	mul.lo.s32 %r3, %r1, 3;
	add.s32 %r4, %r3, %r2;
	st.param.b32 [func_retval0+0], %r4;
	ret;
}

.visible .func (.param .b32 func_retval0) mix(
	.param .b32 mix_param_0
)
{
	.reg .b32 %r<3>;
	ld.param.u32 %r1, [mix_param_0];
	xor.b32 %r2, %r1, 23130;
	st.param.b32 [func_retval0+0], %r2;
	ret;
}
)";

static const char PTX_MAIN[] = R"(
.version 7.0
.target sm_50
.address_size 64

.extern .func (.param .b32 func_retval0) scale_add(
	.param .b32 scale_add_param_0,
	.param .b32 scale_add_param_1
);
.extern .func (.param .b32 func_retval0) mix(
	.param .b32 mix_param_0
);

.visible .entry link_kernel(
	.param .u64 link_kernel_param_0,
	.param .u64 link_kernel_param_1,
	.param .u32 link_kernel_param_2
)
{
	.reg .pred %p<2>;
	.reg .b32 %r<9>;
	.reg .b64 %rd<8>;

	ld.param.u64 %rd1, [link_kernel_param_0];
	ld.param.u64 %rd2, [link_kernel_param_1];
	ld.param.u32 %r2, [link_kernel_param_2];
	mov.u32 %r3, %ctaid.x;
	mov.u32 %r4, %ntid.x;
	mov.u32 %r5, %tid.x;
	mad.lo.s32 %r1, %r3, %r4, %r5;
	setp.ge.u32 %p1, %r1, %r2;
	@%p1 bra $L__done;
	cvta.to.global.u64 %rd3, %rd2;
	mul.wide.u32 %rd4, %r1, 4;
	add.s64 %rd5, %rd3, %rd4;
	ld.global.u32 %r6, [%rd5];
	{
	.param .b32 param0;
	st.param.b32 [param0+0], %r6;
	.param .b32 param1;
	st.param.b32 [param1+0], %r1;
	.param .b32 retval0;
	call.uni (retval0), scale_add, (param0, param1);
	ld.param.b32 %r7, [retval0+0];
	}
	{
	.param .b32 param0;
	st.param.b32 [param0+0], %r7;
	.param .b32 retval0;
	call.uni (retval0), mix, (param0);
	ld.param.b32 %r8, [retval0+0];
	}
	cvta.to.global.u64 %rd6, %rd1;
	add.s64 %rd7, %rd6, %rd4;
	st.global.u32 [%rd7], %r8;
$L__done:
	ret;
}
)";

static const char PTX_BROKEN[] = R"(
.version 7.0
.target sm_50
.address_size 64
.visible .entry broken() { this is not ptx; }
)";

int main() {
    CK(cudaSetDevice(0));
    CK(cudaFree(0));  // cudart's primary context is current from here
    DRV(cuLinkCreate);
    DRV(cuLinkAddData);
    DRV(cuLinkAddFile);
    DRV(cuLinkComplete);
    DRV(cuLinkDestroy);
    DRV(cuModuleLoadData);
    DRV(cuModuleGetFunction);
    DRV(cuModuleUnload);
    DRV(cuLaunchKernel);

    // The library PTX comes from a file, as cuLinkAddFile users have it.
    char path[] = "/tmp/tf-link-jit-XXXXXX";
    int fd = mkstemp(path);
    EXPECT(fd >= 0, "mkstemp");
    EXPECT(write(fd, PTX_LIB, strlen(PTX_LIB)) == (ssize_t)strlen(PTX_LIB), "write");
    close(fd);

    char info[4096], error[4096];
    memset(info, 0, sizeof info);
    memset(error, 0, sizeof error);
    float wall = -1;
    CUjit_option opts[] = {CU_JIT_INFO_LOG_BUFFER, CU_JIT_INFO_LOG_BUFFER_SIZE_BYTES, CU_JIT_ERROR_LOG_BUFFER,
                           CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES, CU_JIT_WALL_TIME, CU_JIT_OPTIMIZATION_LEVEL};
    void *vals[] = {info, (void *)(uintptr_t)sizeof info, error, (void *)(uintptr_t)sizeof error, nullptr,
                    (void *)(uintptr_t)3};
    CUlinkState st;
    CKD(d_cuLinkCreate(6, opts, vals, &st));
    CKD(d_cuLinkAddFile(st, CU_JIT_INPUT_PTX, path, 0, nullptr, nullptr));
    CKD(d_cuLinkAddData(st, CU_JIT_INPUT_PTX, (void *)PTX_MAIN, sizeof PTX_MAIN, "main.ptx", 0, nullptr, nullptr));
    unlink(path);
    void *cubin = nullptr;
    size_t size = 0;
    CKD(d_cuLinkComplete(st, &cubin, &size));
    memcpy(&wall, &vals[4], sizeof wall);
    printf("linked: cubin %d (ELF %d), error log empty %d, wall time reported %d\n", (int)(size > 0),
           (int)(size >= 4 && memcmp(cubin, "\x7f" "ELF", 4) == 0), (int)(error[0] == 0 && (uintptr_t)vals[3] == 0),
           (int)(wall >= 0));
    fprintf(stderr, "cubin %zu bytes, info log %zu bytes, wall %.3f ms\n", size, (size_t)(uintptr_t)vals[1], wall);

    CUmodule mod;
    CUfunction fn;
    CKD(d_cuModuleLoadData(&mod, cubin));  // before cuLinkDestroy: the state owns the image
    CKD(d_cuLinkDestroy(st));
    CKD(d_cuModuleGetFunction(&fn, mod, "link_kernel"));
    const unsigned n = 1 << 20;
    std::vector<unsigned> hin(n), hout(n);
    for (unsigned i = 0; i < n; i++) hin[i] = i * 2654435761u;
    unsigned *din, *dout;
    CK(cudaMalloc(&din, n * 4));
    CK(cudaMalloc(&dout, n * 4));
    CK(cudaMemcpy(din, hin.data(), n * 4, cudaMemcpyHostToDevice));
    unsigned nn = n;
    void *params[] = {&dout, &din, &nn};
    CKD(d_cuLaunchKernel(fn, (n + 255) / 256, 1, 1, 256, 1, 1, 0, nullptr, params, nullptr));
    CK(cudaDeviceSynchronize());
    CK(cudaMemcpy(hout.data(), dout, n * 4, cudaMemcpyDeviceToHost));
    unsigned bad = 0;
    for (unsigned i = 0; i < n; i++) bad += hout[i] != ((hin[i] * 3u + i) ^ 0x5a5au);
    EXPECT(bad == 0, "%u of %u elements differ from the CPU", bad, n);
    printf("kernel across two linked inputs: %u elements match the CPU, fnv %016llx\n", n,
           (unsigned long long)fnv(hout.data(), n * 4));
    CKD(d_cuModuleUnload(mod));

    // A PTX syntax error: natively cuLinkAddData fails, through the client
    // cuLinkComplete does; either way INVALID_PTX with an error log.
    memset(error, 0, sizeof error);
    CUjit_option eopts[] = {CU_JIT_ERROR_LOG_BUFFER, CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES};
    void *evals[] = {error, (void *)(uintptr_t)sizeof error};
    CKD(d_cuLinkCreate(2, eopts, evals, &st));
    CUresult r = d_cuLinkAddData(st, CU_JIT_INPUT_PTX, (void *)PTX_BROKEN, sizeof PTX_BROKEN, "broken.ptx", 0,
                                 nullptr, nullptr);
    if (r == CUDA_SUCCESS) r = d_cuLinkComplete(st, &cubin, &size);
    printf("broken PTX: %d, error log written %d\n", (int)r, (int)(error[0] != 0));
    fprintf(stderr, "error log: %s\n", error);
    EXPECT(r == CUDA_ERROR_INVALID_PTX, "broken PTX answered %d", (int)r);
    CKD(d_cuLinkDestroy(st));

    // A kernel whose functions were never added: the link itself fails.
    CKD(d_cuLinkCreate(0, nullptr, nullptr, &st));
    r = d_cuLinkAddData(st, CU_JIT_INPUT_PTX, (void *)PTX_MAIN, sizeof PTX_MAIN, "main.ptx", 0, nullptr, nullptr);
    if (r == CUDA_SUCCESS) r = d_cuLinkComplete(st, &cubin, &size);
    printf("unresolved functions: refused %d\n", (int)(r != CUDA_SUCCESS));
    EXPECT(r != CUDA_SUCCESS, "a link with undefined functions succeeded");
    CKD(d_cuLinkDestroy(st));

    CK(cudaFree(din));
    CK(cudaFree(dout));
    printf("PASS link_jit\n");
    return 0;
}
