// CUDA graphs. (1) Stream capture in global mode with a fork/join to a
// second stream: memsetAsync, HtoD and DtoH memcpyAsync on pinned memory,
// kernels; cudaStreamIsCapturing / cudaStreamGetCaptureInfo states printed;
// instantiated, uploaded, replayed with new host input each time; then
// re-captured with another kernel argument and applied by cudaGraphExecUpdate.
// (2) Thread-local capture: this thread allocates in relaxed mode, another
// thread allocates freely. (3) An explicit graph: memset, event wait, kernel,
// 3D and 1D memcpy, host and event record nodes with dependencies; a kernel
// argument changed by cudaGraphExecKernelNodeSetParams, then by
// cudaGraphKernelNodeSetParams + cudaGraphExecUpdate. Every replay is checked.
#include <thread>
#include <vector>
#include "common.cuh"

__global__ void scale(const int *in, int *acc, int n, int k) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) acc[i] += in[i] * k;
}
__global__ void axpb(int *y, int n, int a, int b) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = y[i] * a + b;
}
__global__ void produce(int *p, int n, int r) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) p[i] = i % 101 + r;
}

static const int n = 1 << 16;
static const char *cap(cudaStream_t s) {
    static const char *names[] = {"none", "active", "invalidated"};
    cudaStreamCaptureStatus st;
    CK(cudaStreamIsCapturing(s, &st));
    return (unsigned)st < 3 ? names[st] : "?";
}
struct HostSum { const int *h; long long sum; int calls; };
static void CUDART_CB host_sum(void *u) {
    HostSum *l = (HostSum *)u;
    long long s = 0;
    for (int i = 0; i < n; i++) s += l->h[i];
    l->sum = s;
    l->calls++;
}

int main() {
    const int G = n / 256, R = 20;
    int *hin, *hout, *din, *acc, *aux, *x, *y, *P;
    CK(cudaMallocHost((void **)&hin, n * 4));
    CK(cudaMallocHost((void **)&hout, n * 4));
    for (int **p : {&din, &acc, &aux, &x, &y, &P}) CK(cudaMalloc(p, n * 4));
    cudaStream_t s, s2;
    cudaEvent_t fork, join, evIn, evOut;
    CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    CK(cudaStreamCreateWithFlags(&s2, cudaStreamNonBlocking));
    for (cudaEvent_t *e : {&fork, &join, &evIn, &evOut}) CK(cudaEventCreateWithFlags(e, cudaEventDisableTiming));

    // (1) hout = hin * (k + 2): acc = hin * k on s, aux = hin * 2 on s2.
    auto capture = [&](int k, bool verbose) {
        cudaGraph_t g;
        CK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
        CK(cudaMemsetAsync(acc, 0, n * 4, s));
        CK(cudaMemcpyAsync(din, hin, n * 4, cudaMemcpyHostToDevice, s));
        CK(cudaEventRecord(fork, s));
        CK(cudaStreamWaitEvent(s2, fork, 0));
        if (verbose) printf("capturing: s %s, s2 %s\n", cap(s), cap(s2));
        scale<<<G, 256, 0, s>>>(din, acc, n, k);
        CK(cudaMemsetAsync(aux, 0, n * 4, s2));
        scale<<<G, 256, 0, s2>>>(din, aux, n, 2);
        CK(cudaEventRecord(join, s2));
        CK(cudaStreamWaitEvent(s, join, 0));
        scale<<<G, 256, 0, s>>>(aux, acc, n, 1);
        CK(cudaMemcpyAsync(hout, acc, n * 4, cudaMemcpyDeviceToHost, s));
        cudaStreamCaptureStatus st;
        unsigned long long id;
        CK(cudaStreamGetCaptureInfo(s, &st, &id));
        CK(cudaStreamEndCapture(s, &g));
        size_t nodes = 0;
        CK(cudaGraphGetNodes(g, nullptr, &nodes));
        if (verbose) printf("capture info status %d; after end: s %s, s2 %s; %zu nodes\n", (int)st, cap(s), cap(s2), nodes);
        return g;
    };
    auto replay = [&](cudaGraphExec_t ex, int k, const char *what) {
        long long total = 0;
        for (int r = 0; r < R; r++) {
            for (int i = 0; i < n; i++) hin[i] = i * 3 + r;
            CK(cudaGraphLaunch(ex, s));
            CK(cudaStreamSynchronize(s));
            for (int i = 0; i < n; i++) EXPECT(hout[i] == (i * 3 + r) * (k + 2), "%s replay %d [%d] = %d", what, r, i, hout[i]);
            total += hout[n - 1];
        }
        printf("%s: %d replays ok, total %lld\n", what, R, total);
    };
    printf("before capture: s %s\n", cap(s));
    cudaGraph_t g1 = capture(5, true), g2 = capture(9, false);
    cudaGraphExec_t ex;
    CK(cudaGraphInstantiate(&ex, g1, 0));
    CK(cudaGraphUpload(ex, s));
    replay(ex, 5, "captured graph");
    cudaGraphExecUpdateResultInfo info = {};
    CK(cudaGraphExecUpdate(ex, g2, &info));
    printf("exec update from a re-capture: result %d\n", (int)info.result);
    replay(ex, 9, "updated captured graph");

    // (2) Thread-local capture; acc gets 3 kernels per replay, then aux = acc.
    CK(cudaMemsetAsync(acc, 0, n * 4, s));
    CK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
    for (int k = 1; k <= 3; k++) scale<<<G, 256, 0, s>>>(din, acc, n, k);
    cudaStreamCaptureMode mode = cudaStreamCaptureModeRelaxed;
    CK(cudaThreadExchangeStreamCaptureMode(&mode));
    const int was = (int)mode;
    int *tmp = nullptr, *tmp2 = nullptr;
    cudaError_t mine = cudaMalloc(&tmp, 4096), other = cudaSuccess;
    CK(cudaThreadExchangeStreamCaptureMode(&mode));
    std::thread([&] { other = cudaMalloc(&tmp2, 4096); }).join();
    CK(cudaMemcpyAsync(aux, acc, n * 4, cudaMemcpyDeviceToDevice, s));
    printf("thread-local capture %s; mode was %d, relaxed cudaMalloc %d, other thread's cudaMalloc %d, mode back %d\n",
           cap(s), was, (int)mine, (int)other, (int)mode);
    cudaGraph_t g3;
    CK(cudaStreamEndCapture(s, &g3));
    CK(mine);
    CK(other);
    CK(cudaFree(tmp));
    CK(cudaFree(tmp2));
    cudaGraphExec_t ex3;
    CK(cudaGraphInstantiateWithFlags(&ex3, g3, 0));
    for (int r = 0; r < 5; r++) CK(cudaGraphLaunch(ex3, s));
    std::vector<int> hv(n), hy(n);
    CK(cudaMemcpyAsync(hv.data(), aux, n * 4, cudaMemcpyDeviceToHost, s));
    CK(cudaStreamSynchronize(s));
    // din holds the last HtoD of (1): i * 3 + R - 1.
    for (int i = 0; i < n; i++) EXPECT(hv[i] == 5 * 6 * (i * 3 + R - 1), "thread-local [%d] = %d", i, hv[i]);
    printf("thread-local graph ok digest %016llx\n", (unsigned long long)fnv(hv.data(), n * 4));

    // (3) Explicit: x = 7; wait evIn (P produced on s2); x += P * 3; y = x;
    // y = y * a + b; hout = y; host sum; record evOut.
    cudaGraph_t g;
    CK(cudaGraphCreate(&g, 0));
    cudaGraphNode_t nSet, nWait, nAdd, nCopy, nAx, nD2H, nHost, nRec;
    cudaMemsetParams mp = {};
    mp.dst = x;
    mp.value = 7;
    mp.elementSize = 4;
    mp.width = n;
    mp.height = 1;
    CK(cudaGraphAddMemsetNode(&nSet, g, nullptr, 0, &mp));
    CK(cudaGraphAddEventWaitNode(&nWait, g, nullptr, 0, evIn));
    int nn = n, three = 3, a = 3, b = 1;
    void *addArgs[] = {&P, &x, &nn, &three}, *axArgs[] = {&y, &nn, &a, &b};
    cudaKernelNodeParams kp = {};
    kp.func = (void *)scale;
    kp.gridDim = dim3(G);
    kp.blockDim = dim3(256);
    kp.kernelParams = addArgs;
    cudaGraphNode_t deps[2] = {nSet, nWait};
    CK(cudaGraphAddKernelNode(&nAdd, g, deps, 2, &kp));
    cudaMemcpy3DParms cp = {};
    cp.srcPtr = make_cudaPitchedPtr(x, n * 4, n, 1);
    cp.dstPtr = make_cudaPitchedPtr(y, n * 4, n, 1);
    cp.extent = make_cudaExtent(n * 4, 1, 1);
    cp.kind = cudaMemcpyDeviceToDevice;
    CK(cudaGraphAddMemcpyNode(&nCopy, g, &nAdd, 1, &cp));
    cudaKernelNodeParams kx = kp;
    kx.func = (void *)axpb;
    kx.kernelParams = axArgs;
    CK(cudaGraphAddKernelNode(&nAx, g, &nCopy, 1, &kx));
    CK(cudaGraphAddMemcpyNode1D(&nD2H, g, &nAx, 1, hout, y, n * 4, cudaMemcpyDeviceToHost));
    HostSum hs = {hout, 0, 0};
    cudaHostNodeParams hp = {};
    hp.fn = host_sum;
    hp.userData = &hs;
    CK(cudaGraphAddHostNode(&nHost, g, &nD2H, 1, &hp));
    CK(cudaGraphAddEventRecordNode(&nRec, g, &nAx, 1, evOut));
    printf("node types:");
    for (cudaGraphNode_t nd : {nSet, nWait, nAdd, nCopy, nAx, nD2H, nHost, nRec}) {
        cudaGraphNodeType t;
        CK(cudaGraphNodeGetType(nd, &t));
        printf(" %d", (int)t);
    }
    size_t nodes = 0;
    CK(cudaGraphGetNodes(g, nullptr, &nodes));
    printf("; %zu nodes\n", nodes);
    cudaGraphExec_t ex1;
    CK(cudaGraphInstantiate(&ex1, g, 0));
    int rr = 0;
    for (int phase = 0; phase < 3; phase++) {
        if (phase == 1) {
            a = 5, b = 2;
            CK(cudaGraphExecKernelNodeSetParams(ex1, nAx, &kx));
        } else if (phase == 2) {
            a = 7, b = 3;
            CK(cudaGraphKernelNodeSetParams(nAx, &kx));
            CK(cudaGraphExecUpdate(ex1, g, &info));
            printf("exec update after a node change: result %d\n", (int)info.result);
        }
        long long total = 0;
        for (int r = 0; r < 10; r++, rr++) {
            produce<<<G, 256, 0, s2>>>(P, n, rr);
            CK(cudaEventRecord(evIn, s2));
            CK(cudaGraphLaunch(ex1, s));
            CK(cudaStreamWaitEvent(s2, evOut, 0));
            CK(cudaMemcpyAsync(hy.data(), y, n * 4, cudaMemcpyDeviceToHost, s2));
            CK(cudaStreamSynchronize(s));
            CK(cudaStreamSynchronize(s2));
            long long want = 0;
            for (int i = 0; i < n; i++) {
                int v = (7 + (i % 101 + rr) * 3) * a + b;
                EXPECT(hout[i] == v && hy[i] == v, "explicit phase %d replay %d [%d] = %d %d, want %d", phase, r, i, hout[i], hy[i], v);
                want += v;
            }
            EXPECT(hs.sum == want && hs.calls == rr + 1, "host node: sum %lld want %lld, calls %d", hs.sum, want, hs.calls);
            total += want;
        }
        printf("explicit graph phase %d (a=%d b=%d): 10 replays ok, total %lld\n", phase, a, b, total);
    }
    for (cudaGraphExec_t e : {ex, ex1, ex3}) CK(cudaGraphExecDestroy(e));
    for (cudaGraph_t gg : {g, g1, g2, g3}) CK(cudaGraphDestroy(gg));
    printf("PASS\n");
    return 0;
}
