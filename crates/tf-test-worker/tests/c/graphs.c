/* End-to-end check of explicit CUDA graphs through our libcuda.so.1 against
 * the TEST backend (host memory, no GPU), which replays a graph's memset,
 * kernel (the emulated tf_test_* kernels), device copy and event nodes in
 * dependency order. The same graph shape on a GPU: tests/gpu/cuda/graphs.cu.
 *
 * usage: graphs full           build, launch, update, clone, refuse; "PASS ..."
 *        graphs host           copy nodes with pinned host sides and host
 *                              nodes (run in this process, in graph order)
 *        graphs hostexit       the process exits inside a host node's
 *                              function (the worker must not be stuck)
 *        graphs hold           build a graph; print "holding GRAPH NODE EXEC"
 *                              (its ids); sleep (killed by the test)
 *        graphs foreign G N E  another client's ids: every use is refused
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
typedef void *CUcontext, *CUstream, *CUevent, *CUmodule, *CUfunction, *CUgraph, *CUgraphNode, *CUgraphExec;

typedef struct {
    CUfunction func;
    unsigned gx, gy, gz, bx, by, bz, smem;
    void **kernelParams, **extra;
    void *kern;
    CUcontext ctx;
} KernelParams; /* CUDA_KERNEL_NODE_PARAMS_v2 */
typedef struct {
    CUdeviceptr dst;
    size_t pitch;
    unsigned value, elementSize;
    size_t width, height;
} MemsetParams; /* CUDA_MEMSET_NODE_PARAMS */
typedef struct {
    size_t srcXInBytes, srcY, srcZ, srcLOD;
    int srcMemoryType;
    const void *srcHost;
    CUdeviceptr srcDevice;
    void *srcArray, *reserved0;
    size_t srcPitch, srcHeight;
    size_t dstXInBytes, dstY, dstZ, dstLOD;
    int dstMemoryType;
    void *dstHost;
    CUdeviceptr dstDevice;
    void *dstArray, *reserved1;
    size_t dstPitch, dstHeight;
    size_t WidthInBytes, Height, Depth;
} Memcpy3D; /* CUDA_MEMCPY3D */
typedef struct { int result; CUgraphNode errorNode, errorFromNode; } UpdateInfo;
typedef struct { void (*fn)(void *); void *userData; } HostParams;

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
FN(CUresult, cuMemAllocHost_v2, (void **, size_t))
FN(CUresult, cuMemFreeHost, (void *))
FN(CUresult, cuStreamCreate, (CUstream *, unsigned))
FN(CUresult, cuStreamSynchronize, (CUstream))
FN(CUresult, cuEventCreate, (CUevent *, unsigned))
FN(CUresult, cuEventRecord, (CUevent, CUstream))
FN(CUresult, cuEventSynchronize, (CUevent))
FN(CUresult, cuModuleLoadData, (CUmodule *, const void *))
FN(CUresult, cuModuleGetFunction, (CUfunction *, CUmodule, const char *))
FN(CUresult, cuGraphCreate, (CUgraph *, unsigned))
FN(CUresult, cuGraphClone, (CUgraph *, CUgraph))
FN(CUresult, cuGraphDestroy, (CUgraph))
FN(CUresult, cuGraphAddKernelNode_v2, (CUgraphNode *, CUgraph, const CUgraphNode *, size_t, const KernelParams *))
FN(CUresult, cuGraphAddMemsetNode, (CUgraphNode *, CUgraph, const CUgraphNode *, size_t, const MemsetParams *, CUcontext))
FN(CUresult, cuGraphAddMemcpyNode, (CUgraphNode *, CUgraph, const CUgraphNode *, size_t, const Memcpy3D *, CUcontext))
FN(CUresult, cuGraphAddEmptyNode, (CUgraphNode *, CUgraph, const CUgraphNode *, size_t))
FN(CUresult, cuGraphAddEventRecordNode, (CUgraphNode *, CUgraph, const CUgraphNode *, size_t, CUevent))
FN(CUresult, cuGraphAddEventWaitNode, (CUgraphNode *, CUgraph, const CUgraphNode *, size_t, CUevent))
FN(CUresult, cuGraphAddHostNode, (CUgraphNode *, CUgraph, const CUgraphNode *, size_t, const HostParams *))
FN(CUresult, cuGraphAddDependencies, (CUgraph, const CUgraphNode *, const CUgraphNode *, size_t))
FN(CUresult, cuGraphGetNodes, (CUgraph, CUgraphNode *, size_t *))
FN(CUresult, cuGraphNodeGetType, (CUgraphNode, int *))
FN(CUresult, cuGraphKernelNodeGetParams_v2, (CUgraphNode, KernelParams *))
FN(CUresult, cuGraphKernelNodeSetParams_v2, (CUgraphNode, const KernelParams *))
FN(CUresult, cuGraphExecKernelNodeSetParams_v2, (CUgraphExec, CUgraphNode, const KernelParams *))
FN(CUresult, cuGraphInstantiateWithFlags, (CUgraphExec *, CUgraph, unsigned long long))
FN(CUresult, cuGraphLaunch, (CUgraphExec, CUstream))
FN(CUresult, cuGraphExecUpdate_v2, (CUgraphExec, CUgraph, UpdateInfo *))
FN(CUresult, cuGraphExecDestroy, (CUgraphExec))
FN(CUresult, cuGraphHostNodeGetParams, (CUgraphNode, HostParams *))
FN(CUresult, cuGraphHostNodeSetParams, (CUgraphNode, const HostParams *))
FN(CUresult, cuGraphExecHostNodeSetParams, (CUgraphExec, CUgraphNode, const HostParams *))

static void load(void) {
    cuda = dlopen("libcuda.so.1", RTLD_NOW);
    if (!cuda) { printf("FAIL dlopen libcuda.so.1: %s\n", dlerror()); exit(10); }
    LOAD(cuInit); LOAD(cuDeviceGet); LOAD(cuDevicePrimaryCtxRetain); LOAD(cuCtxSetCurrent);
    LOAD(cuGetErrorName); LOAD(cuMemAlloc_v2); LOAD(cuMemFree_v2); LOAD(cuMemcpyHtoD_v2);
    LOAD(cuMemcpyDtoH_v2); LOAD(cuMemAllocHost_v2); LOAD(cuMemFreeHost); LOAD(cuStreamCreate);
    LOAD(cuStreamSynchronize); LOAD(cuEventCreate); LOAD(cuEventRecord); LOAD(cuEventSynchronize);
    LOAD(cuModuleLoadData); LOAD(cuModuleGetFunction); LOAD(cuGraphCreate); LOAD(cuGraphClone);
    LOAD(cuGraphDestroy); LOAD(cuGraphAddKernelNode_v2); LOAD(cuGraphAddMemsetNode);
    LOAD(cuGraphAddMemcpyNode); LOAD(cuGraphAddEmptyNode); LOAD(cuGraphAddEventRecordNode);
    LOAD(cuGraphAddEventWaitNode); LOAD(cuGraphAddHostNode); LOAD(cuGraphAddDependencies);
    LOAD(cuGraphGetNodes); LOAD(cuGraphNodeGetType); LOAD(cuGraphKernelNodeGetParams_v2);
    LOAD(cuGraphKernelNodeSetParams_v2); LOAD(cuGraphExecKernelNodeSetParams_v2);
    LOAD(cuGraphInstantiateWithFlags); LOAD(cuGraphLaunch); LOAD(cuGraphExecUpdate_v2);
    LOAD(cuGraphExecDestroy); LOAD(cuGraphHostNodeGetParams); LOAD(cuGraphHostNodeSetParams);
    LOAD(cuGraphExecHostNodeSetParams);
}

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

enum { INVALID_VALUE = 1, INVALID_HANDLE = 400, NOT_SUPPORTED = 801 };
enum { T_KERNEL = 0, T_MEMCPY = 1, T_MEMSET = 2, T_EMPTY = 5, T_WAIT = 6, T_RECORD = 7 };
enum { HOST = 1, DEVICE = 2 };

/* The test backend runs these two by name (host_kernels.rs). */
static const char PTX[] =
    "//\n.version 8.0\n.target sm_90\n.address_size 64\n"
    ".visible .entry tf_test_scale(\n .param .u64 in,\n .param .u64 acc,\n .param .u32 n,\n .param .u32 k\n)\n{\n ret;\n}\n"
    ".visible .entry tf_test_axpb(\n .param .u64 y,\n .param .u32 n,\n .param .u32 a,\n .param .u32 b\n)\n{\n ret;\n}\n";

#define N 1024
static CUfunction f_scale, f_axpb;
static CUdeviceptr x, y, P;
static CUevent ev_in, ev_out;
static int n = N, three = 3, a = 3, b = 1;
static void *add_args[] = {&P, &x, &n, &three}, *ax_args[] = {&y, &n, &a, &b};

static void setup(void) {
    CUdevice dev;
    CUcontext ctx;
    CHECK(cuInit(0));
    CHECK(cuDeviceGet(&dev, 0));
    CHECK(cuDevicePrimaryCtxRetain(&ctx, dev));
    CHECK(cuCtxSetCurrent(ctx));
    CUmodule m;
    CHECK(cuModuleLoadData(&m, PTX));
    CHECK(cuModuleGetFunction(&f_scale, m, "tf_test_scale"));
    CHECK(cuModuleGetFunction(&f_axpb, m, "tf_test_axpb"));
    CHECK(cuMemAlloc_v2(&x, N * 4));
    CHECK(cuMemAlloc_v2(&y, N * 4));
    CHECK(cuMemAlloc_v2(&P, N * 4));
    CHECK(cuEventCreate(&ev_in, 0));
    CHECK(cuEventCreate(&ev_out, 0));
}

static KernelParams kernel(CUfunction f, void **args) {
    KernelParams k;
    memset(&k, 0, sizeof k);
    k.func = f;
    k.gx = N / 256; k.gy = 1; k.gz = 1;
    k.bx = 256; k.by = 1; k.bz = 1;
    k.kernelParams = args;
    return k;
}

/* x → y, as 2 slices of 2 rows of N bytes: a 3D device copy. */
static Memcpy3D copy_x_to_y(void) {
    Memcpy3D c;
    memset(&c, 0, sizeof c);
    c.srcMemoryType = DEVICE; c.srcDevice = x; c.srcPitch = N; c.srcHeight = 2;
    c.dstMemoryType = DEVICE; c.dstDevice = y; c.dstPitch = N; c.dstHeight = 2;
    c.WidthInBytes = N; c.Height = 2; c.Depth = 2;
    return c;
}

/* x = 7; wait ev_in; x += P * 3; y = x (3D copy); y = y * a + b; record ev_out.
 * `nodes` gets {set, wait, add, copy, ax, rec, empty}. */
static CUgraph build(CUgraphNode nodes[7]) {
    CUgraph g;
    CHECK(cuGraphCreate(&g, 0));
    MemsetParams mp = {x, 0, 7, 4, N, 1};
    CHECK(cuGraphAddMemsetNode(&nodes[0], g, NULL, 0, &mp, NULL));
    CHECK(cuGraphAddEventWaitNode(&nodes[1], g, NULL, 0, ev_in));
    KernelParams kp = kernel(f_scale, add_args);
    CHECK(cuGraphAddKernelNode_v2(&nodes[2], g, nodes, 2, &kp));
    Memcpy3D cp = copy_x_to_y();
    CHECK(cuGraphAddMemcpyNode(&nodes[3], g, &nodes[2], 1, &cp, NULL));
    KernelParams kx = kernel(f_axpb, ax_args);
    CHECK(cuGraphAddKernelNode_v2(&nodes[4], g, &nodes[3], 1, &kx));
    CHECK(cuGraphAddEventRecordNode(&nodes[5], g, &nodes[4], 1, ev_out));
    /* An empty root ahead of the memset, by an explicit edge. */
    CHECK(cuGraphAddEmptyNode(&nodes[6], g, NULL, 0));
    CHECK(cuGraphAddDependencies(g, &nodes[6], &nodes[0], 1));
    return g;
}

static int rr;
static void replay(CUgraphExec e, CUstream s, int times, int wa, int wb, const char *what) {
    static int hp[N], hy[N];
    for (int r = 0; r < times; r++, rr++) {
        for (int i = 0; i < N; i++) hp[i] = i % 101 + rr;
        CHECK(cuMemcpyHtoD_v2(P, hp, sizeof hp));
        CHECK(cuEventRecord(ev_in, s));
        CHECK(cuGraphLaunch(e, s));
        CHECK(cuStreamSynchronize(s));
        CHECK(cuEventSynchronize(ev_out));
        CHECK(cuMemcpyDtoH_v2(hy, y, sizeof hy));
        for (int i = 0; i < N; i++) {
            int want = (7 + (i % 101 + rr) * 3) * wa + wb;
            EXPECT(hy[i] == want, "%s replay %d: y[%d] = %d, want %d", what, r, i, hy[i], want);
        }
    }
}

static void refusals(CUgraph g, CUgraphNode nodes[7]) {
    CUgraphNode nd = 0;
    CUgraph other;
    KernelParams kp = kernel(f_scale, add_args);
    MemsetParams mp = {x, 0, 7, 4, N, 1};
    CUgraph bogus_graph = (CUgraph)(uintptr_t)0x4752000000009999ull;
    CUgraphNode bogus_node = (CUgraphNode)(uintptr_t)0x474E000000009999ull;
    EXPECT_RC(INVALID_VALUE, cuGraphAddEmptyNode(&nd, (CUgraph)(uintptr_t)0x1234, NULL, 0));
    EXPECT_RC(INVALID_VALUE, cuGraphAddEmptyNode(&nd, bogus_graph, NULL, 0));
    EXPECT_RC(INVALID_VALUE, cuGraphAddEmptyNode(&nd, g, &bogus_node, 1));
    EXPECT_RC(INVALID_VALUE, cuGraphNodeGetType(bogus_node, &(int){0}));
    EXPECT_RC(INVALID_VALUE, cuGraphAddDependencies(g, &nodes[0], &bogus_node, 1));
    /* A node of another graph is no dependency of this one. */
    CHECK(cuGraphCreate(&other, 0));
    EXPECT_RC(INVALID_VALUE, cuGraphAddKernelNode_v2(&nd, other, &nodes[0], 1, &kp));
    EXPECT_RC(INVALID_VALUE, cuGraphAddDependencies(other, &nodes[0], &nodes[1], 1));
    /* An edge that exists already. */
    EXPECT_RC(INVALID_VALUE, cuGraphAddDependencies(g, &nodes[6], &nodes[0], 1));
    /* A function or event this client never had. */
    KernelParams bad = kp;
    bad.func = (CUfunction)(uintptr_t)0x464E000000009999ull;
    EXPECT_RC(INVALID_HANDLE, cuGraphAddKernelNode_v2(&nd, other, NULL, 0, &bad));
    EXPECT_RC(INVALID_HANDLE, cuGraphAddEventRecordNode(&nd, other, NULL, 0, (CUevent)(uintptr_t)0x4556000000009999ull));
    /* Device memory that is not the client's; a bad element size. */
    MemsetParams wild = mp;
    wild.dst = 0x10000;
    EXPECT_RC(INVALID_VALUE, cuGraphAddMemsetNode(&nd, other, NULL, 0, &wild, NULL));
    wild = mp;
    wild.elementSize = 3;
    EXPECT_RC(INVALID_VALUE, cuGraphAddMemsetNode(&nd, other, NULL, 0, &wild, NULL));
    Memcpy3D cp = copy_x_to_y();
    cp.srcDevice = 0x10000;
    EXPECT_RC(INVALID_VALUE, cuGraphAddMemcpyNode(&nd, other, NULL, 0, &cp, NULL));
    /* Pageable host memory in a graph: refused (the graph replays on the
     * worker, which reaches only pinned memory, through its mirror). */
    static int host[N];
    cp = copy_x_to_y();
    cp.srcMemoryType = HOST; cp.srcHost = host; cp.srcDevice = 0;
    EXPECT_RC(NOT_SUPPORTED, cuGraphAddMemcpyNode(&nd, other, NULL, 0, &cp, NULL));
    /* Pinned memory, but the copy runs past its end. */
    void *pinned = NULL;
    CHECK(cuMemAllocHost_v2(&pinned, 2048));
    cp = copy_x_to_y();
    cp.dstMemoryType = HOST; cp.dstHost = pinned; cp.dstDevice = 0;
    EXPECT_RC(NOT_SUPPORTED, cuGraphAddMemcpyNode(&nd, other, NULL, 0, &cp, NULL));
    CHECK(cuMemFreeHost(pinned));
    HostParams hp = {NULL, NULL};
    EXPECT_RC(INVALID_VALUE, cuGraphAddHostNode(&nd, other, NULL, 0, &hp));
    /* Nothing failed half-way: the other graph is still empty. */
    size_t count = 99;
    CHECK(cuGraphGetNodes(other, NULL, &count));
    EXPECT(count == 0, "refused nodes were added: %zu", count);
    CHECK(cuGraphDestroy(other));
    EXPECT_RC(INVALID_VALUE, cuGraphInstantiateWithFlags(&(CUgraphExec){0}, bogus_graph, 0));
}

static void nodes_and_types(CUgraph g, CUgraphNode nodes[7]) {
    static const int want[7] = {T_MEMSET, T_WAIT, T_KERNEL, T_MEMCPY, T_KERNEL, T_RECORD, T_EMPTY};
    for (int i = 0; i < 7; i++) {
        int t = -1;
        CHECK(cuGraphNodeGetType(nodes[i], &t));
        EXPECT(t == want[i], "node %d type %d, want %d", i, t, want[i]);
    }
    size_t count = 0;
    CHECK(cuGraphGetNodes(g, NULL, &count));
    EXPECT(count == 7, "%zu nodes, want 7", count);
    CUgraphNode list[9];
    count = 9;
    CHECK(cuGraphGetNodes(g, list, &count));
    EXPECT(count == 7 && list[7] == NULL && list[8] == NULL, "listed %zu nodes", count);
    for (int i = 0; i < 7; i++) {
        int found = 0;
        for (int j = 0; j < 7; j++) found |= list[j] == nodes[i];
        EXPECT(found, "node %d (%p) is not listed", i, nodes[i]);
    }
    count = 3;
    CHECK(cuGraphGetNodes(g, list, &count));
    EXPECT(count == 3, "a 3-slot list got %zu", count);
}

static void full(void) {
    CUstream s;
    CHECK(cuStreamCreate(&s, 0));
    CUgraphNode nodes[7];
    CUgraph g = build(nodes);
    nodes_and_types(g, nodes);
    refusals(g, nodes);
    CUgraphExec e;
    CHECK(cuGraphInstantiateWithFlags(&e, g, 0));
    replay(e, s, 5, 3, 1, "built graph");
    /* The executable graph's copy of the node changes; the graph's does not. */
    a = 5, b = 2;
    KernelParams kx = kernel(f_axpb, ax_args);
    CHECK(cuGraphExecKernelNodeSetParams_v2(e, nodes[4], &kx));
    replay(e, s, 3, 5, 2, "exec node update");
    KernelParams got;
    CHECK(cuGraphKernelNodeGetParams_v2(nodes[4], &got));
    EXPECT(got.func == f_axpb && got.gx == N / 256 && got.bx == 256 && *(int *)got.kernelParams[2] == 3,
           "kernel node params read back: func %p grid %u block %u a %d", got.func, got.gx, got.bx,
           *(int *)got.kernelParams[2]);
    /* The graph's node changes; the executable graph follows at the update. */
    a = 7, b = 3;
    CHECK(cuGraphKernelNodeSetParams_v2(nodes[4], &kx));
    CHECK(cuGraphKernelNodeGetParams_v2(nodes[4], &got));
    EXPECT(*(int *)got.kernelParams[2] == 7 && *(int *)got.kernelParams[3] == 3, "params after set");
    replay(e, s, 1, 5, 2, "before the exec update");
    UpdateInfo info = {-1, NULL, NULL};
    CHECK(cuGraphExecUpdate_v2(e, g, &info));
    EXPECT(info.result == 0, "exec update result %d", info.result);
    replay(e, s, 3, 7, 3, "after the exec update");
    /* Wrong ids and kinds for per-node updates. */
    EXPECT_RC(INVALID_VALUE, cuGraphExecKernelNodeSetParams_v2(e, nodes[0], &kx));
    EXPECT_RC(INVALID_VALUE, cuGraphKernelNodeSetParams_v2(nodes[3], &kx));
    EXPECT_RC(INVALID_VALUE, cuGraphExecKernelNodeSetParams_v2((CUgraphExec)(uintptr_t)0x4758000000009999ull, nodes[4], &kx));
    /* A clone replays the same work; its nodes are listed with new ids. */
    CUgraph c;
    CHECK(cuGraphClone(&c, g));
    CUgraphNode list[7];
    size_t count = 7;
    CHECK(cuGraphGetNodes(c, list, &count));
    EXPECT(count == 7, "clone has %zu nodes", count);
    int kernels = 0;
    for (int i = 0; i < 7; i++) {
        int t = -1;
        CHECK(cuGraphNodeGetType(list[i], &t));
        kernels += t == T_KERNEL;
        for (int j = 0; j < 7; j++) EXPECT(list[i] != nodes[j], "clone shares node %p", nodes[j]);
    }
    EXPECT(kernels == 2, "clone has %d kernel nodes", kernels);
    CUgraphExec ce;
    CHECK(cuGraphInstantiateWithFlags(&ce, c, 0));
    replay(ce, s, 2, 7, 3, "cloned graph");
    CHECK(cuGraphExecDestroy(ce));
    CHECK(cuGraphDestroy(c));
    CHECK(cuGraphExecDestroy(e));
    CHECK(cuGraphDestroy(g));
    /* Nodes go with their graph. */
    EXPECT_RC(INVALID_VALUE, cuGraphNodeGetType(nodes[0], &(int){0}));
    EXPECT_RC(INVALID_VALUE, cuGraphNodeGetType(list[0], &(int){0}));
    printf("PASS explicit graphs: %d replays of memset, event wait, kernel, 3D device copy, kernel, event record; "
           "node types and lists, exec and graph kernel node updates, clone, refusals\n", rr);
}

/* Host nodes and pinned copy nodes: hin → x (host-to-device node); x = x * 3 + 1;
 * x → hout (device-to-host node); host node: sum hout, hnext = hout + 1;
 * hnext → y (host-to-device node, after the host node). */
static int *hin, *hout, *hnext;
static long long host_sum;
static int host_calls, other_calls;
static void sum_out(void *u) {
    long long s = 0;
    for (int i = 0; i < N; i++) { s += hout[i]; hnext[i] = hout[i] + 1; }
    host_sum = s;
    host_calls += *(int *)u;
}
static void other_fn(void *u) { (void)u; other_calls++; }

static Memcpy3D pinned_copy(int to_host, void *h, CUdeviceptr d) {
    Memcpy3D c;
    memset(&c, 0, sizeof c);
    if (to_host) {
        c.srcMemoryType = DEVICE; c.srcDevice = d;
        c.dstMemoryType = HOST; c.dstHost = h;
    } else {
        c.srcMemoryType = HOST; c.srcHost = h;
        c.dstMemoryType = DEVICE; c.dstDevice = d;
    }
    c.WidthInBytes = N * 4; c.Height = 1; c.Depth = 1;
    return c;
}

static int host_graph(void) {
    setup();
    CUstream s;
    CHECK(cuStreamCreate(&s, 0));
    CHECK(cuMemAllocHost_v2((void **)&hin, N * 4));
    CHECK(cuMemAllocHost_v2((void **)&hout, N * 4));
    CHECK(cuMemAllocHost_v2((void **)&hnext, N * 4));
    CUgraph g;
    CHECK(cuGraphCreate(&g, 0));
    CUgraphNode c1, k, c2, h, c3;
    Memcpy3D cp = pinned_copy(0, hin, x);
    CHECK(cuGraphAddMemcpyNode(&c1, g, NULL, 0, &cp, NULL));
    static int a3 = 3, b1 = 1;
    void *args[] = {&x, &n, &a3, &b1};
    KernelParams kp = kernel(f_axpb, args);
    CHECK(cuGraphAddKernelNode_v2(&k, g, &c1, 1, &kp));
    cp = pinned_copy(1, hout, x);
    CHECK(cuGraphAddMemcpyNode(&c2, g, &k, 1, &cp, NULL));
    static int one = 1;
    HostParams hp = {sum_out, &one};
    CHECK(cuGraphAddHostNode(&h, g, &c2, 1, &hp));
    cp = pinned_copy(0, hnext, y);
    CHECK(cuGraphAddMemcpyNode(&c3, g, &h, 1, &cp, NULL));
    int t = -1;
    CHECK(cuGraphNodeGetType(h, &t));
    EXPECT(t == 3, "host node type %d", t);
    HostParams got = {NULL, NULL};
    CHECK(cuGraphHostNodeGetParams(h, &got));
    EXPECT(got.fn == sum_out && got.userData == &one, "host node params read back");
    CUgraphExec e;
    CHECK(cuGraphInstantiateWithFlags(&e, g, 0));
    static int hy[N];
    int replays = 0;
    for (int r = 0; r < 6; r++, replays++) {
        for (int i = 0; i < N; i++) hin[i] = i * 2 + r;
        CHECK(cuGraphLaunch(e, s));
        CHECK(cuStreamSynchronize(s));
        long long want = 0;
        for (int i = 0; i < N; i++) {
            int v = (i * 2 + r) * 3 + 1;
            EXPECT(hout[i] == v, "replay %d: hout[%d] = %d, want %d", r, i, hout[i], v);
            want += v;
        }
        EXPECT(host_sum == want && host_calls == r + 1, "replay %d: host node sum %lld (want %lld), calls %d",
               r, host_sum, want, host_calls);
        CHECK(cuMemcpyDtoH_v2(hy, y, sizeof hy));
        for (int i = 0; i < N; i++)
            EXPECT(hy[i] == hout[i] + 1, "replay %d: y[%d] = %d, want %d (written by the host node)", r, i, hy[i], hout[i] + 1);
    }
    /* The executable graph's node runs another function; the graph's keeps its own. */
    HostParams other = {other_fn, NULL};
    CHECK(cuGraphExecHostNodeSetParams(e, h, &other));
    CHECK(cuGraphLaunch(e, s));
    CHECK(cuStreamSynchronize(s));
    EXPECT(other_calls == 1 && host_calls == 6, "after the exec update: other %d, host %d", other_calls, host_calls);
    CHECK(cuGraphHostNodeGetParams(h, &got));
    EXPECT(got.fn == sum_out, "the graph's host node changed with the exec's");
    static int two = 2;
    HostParams twice = {sum_out, &two};
    CHECK(cuGraphHostNodeSetParams(h, &twice));
    CUgraphExec e2;
    CHECK(cuGraphInstantiateWithFlags(&e2, g, 0));
    CHECK(cuGraphLaunch(e2, s));
    CHECK(cuGraphLaunch(e, s));
    CHECK(cuStreamSynchronize(s));
    EXPECT(host_calls == 8 && other_calls == 2, "after the graph update: host %d other %d", host_calls, other_calls);
    EXPECT_RC(INVALID_VALUE, cuGraphHostNodeSetParams(k, &twice));
    CHECK(cuGraphExecDestroy(e2));
    CHECK(cuGraphExecDestroy(e));
    CHECK(cuGraphDestroy(g));
    CHECK(cuMemFreeHost(hin));
    CHECK(cuMemFreeHost(hout));
    CHECK(cuMemFreeHost(hnext));
    printf("PASS host nodes and pinned copy nodes: %d replays, host node ran %d times\n", replays, host_calls);
    return 0;
}

static void exit_now(void *u) {
    (void)u;
    printf("exiting inside a host node\n");
    fflush(stdout);
    _exit(0);
}

static int host_exit(void) {
    setup();
    CUstream s;
    CHECK(cuStreamCreate(&s, 0));
    CUgraph g;
    CHECK(cuGraphCreate(&g, 0));
    CUgraphNode m, h, after;
    MemsetParams mp = {x, 0, 7, 4, N, 1};
    CHECK(cuGraphAddMemsetNode(&m, g, NULL, 0, &mp, NULL));
    HostParams hp = {exit_now, NULL};
    CHECK(cuGraphAddHostNode(&h, g, &m, 1, &hp));
    CHECK(cuGraphAddMemsetNode(&after, g, &h, 1, &mp, NULL));
    CUgraphExec e;
    CHECK(cuGraphInstantiateWithFlags(&e, g, 0));
    CHECK(cuGraphLaunch(e, s));
    CHECK(cuGraphLaunch(e, s));
    cuStreamSynchronize(s);
    printf("FAIL the host node did not run\n");
    return 1;
}

int main(int argc, char **argv) {
    load();
    if (argc < 2) { printf("usage: graphs full | hold | foreign G N E\n"); return 2; }
    setup();
    if (strcmp(argv[1], "host") == 0) return host_graph();
    if (strcmp(argv[1], "hostexit") == 0) return host_exit();
    if (strcmp(argv[1], "full") == 0) {
        full();
        return 0;
    }
    if (strcmp(argv[1], "hold") == 0) {
        CUgraphNode nodes[7];
        CUgraph g = build(nodes);
        CUgraphExec e;
        CHECK(cuGraphInstantiateWithFlags(&e, g, 0));
        printf("holding %p %p %p\n", g, nodes[2], e);
        fflush(stdout);
        for (;;) sleep(1);
    }
    if (strcmp(argv[1], "foreign") == 0 && argc == 5) {
        CUgraph g = (CUgraph)(uintptr_t)strtoull(argv[2], NULL, 16);
        CUgraphNode nd = (CUgraphNode)(uintptr_t)strtoull(argv[3], NULL, 16);
        CUgraphExec e = (CUgraphExec)(uintptr_t)strtoull(argv[4], NULL, 16);
        CUgraphNode mine;
        KernelParams kx = kernel(f_axpb, ax_args);
        EXPECT_RC(INVALID_VALUE, cuGraphAddEmptyNode(&mine, g, NULL, 0));
        EXPECT_RC(INVALID_VALUE, cuGraphNodeGetType(nd, &(int){0}));
        EXPECT_RC(INVALID_VALUE, cuGraphKernelNodeSetParams_v2(nd, &kx));
        EXPECT_RC(INVALID_VALUE, cuGraphExecKernelNodeSetParams_v2(e, nd, &kx));
        EXPECT_RC(INVALID_VALUE, cuGraphInstantiateWithFlags(&(CUgraphExec){0}, g, 0));
        size_t count = 0;
        EXPECT_RC(INVALID_VALUE, cuGraphGetNodes(g, NULL, &count));
        /* Its own graph with a node of the other client as a dependency. */
        CUgraph own;
        CHECK(cuGraphCreate(&own, 0));
        EXPECT_RC(INVALID_VALUE, cuGraphAddEmptyNode(&mine, own, &nd, 1));
        CHECK(cuGraphDestroy(own));
        printf("PASS another client's graph, node and executable graph are refused\n");
        return 0;
    }
    printf("usage: graphs full | hold | foreign G N E\n");
    return 2;
}
