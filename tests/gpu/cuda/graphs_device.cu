// CUDA graphs with device memory only (what a graph replayed on the worker
// can do through the client; host memory in graphs is refused by design,
// see graphs.cu). (1) Stream capture of memset, kernels and a device copy,
// replayed, re-captured with another argument and applied by
// cudaGraphExecUpdate. (2) An explicit graph: memset, event wait, kernel,
// 3D device copy, kernel and event record nodes with dependencies, node
// types and count; a kernel argument changed by
// cudaGraphExecKernelNodeSetParams, then by cudaGraphKernelNodeSetParams +
// cudaGraphExecUpdate; a clone. Every replay is checked.
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

int main() {
    const int G = n / 256;
    int *P, *acc, *x, *y;
    for (int **p : {&P, &acc, &x, &y}) CK(cudaMalloc(p, n * 4));
    std::vector<int> hy(n), hx(n);
    cudaStream_t s, s2;
    cudaEvent_t evIn, evOut;
    CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    CK(cudaStreamCreateWithFlags(&s2, cudaStreamNonBlocking));
    for (cudaEvent_t *e : {&evIn, &evOut}) CK(cudaEventCreateWithFlags(e, cudaEventDisableTiming));

    // (1) acc = 0; acc += P * k; x = acc; x = x * 2 + 1.
    auto capture = [&](int k) {
        cudaGraph_t g;
        CK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
        CK(cudaMemsetAsync(acc, 0, n * 4, s));
        scale<<<G, 256, 0, s>>>(P, acc, n, k);
        CK(cudaMemcpyAsync(x, acc, n * 4, cudaMemcpyDeviceToDevice, s));
        axpb<<<G, 256, 0, s>>>(x, n, 2, 1);
        CK(cudaStreamEndCapture(s, &g));
        return g;
    };
    cudaGraph_t g1 = capture(5), g2 = capture(9);
    size_t count = 0;
    CK(cudaGraphGetNodes(g1, nullptr, &count));
    printf("captured graph: %zu nodes\n", count);
    cudaGraphExec_t ex;
    CK(cudaGraphInstantiate(&ex, g1, 0));
    int rr = 0;
    for (int phase = 0; phase < 2; phase++) {
        int k = phase ? 9 : 5;
        if (phase) {
            cudaGraphExecUpdateResultInfo info = {};
            CK(cudaGraphExecUpdate(ex, g2, &info));
            printf("exec update to k=9: result %d\n", (int)info.result);
        }
        for (int r = 0; r < 10; r++, rr++) {
            produce<<<G, 256, 0, s>>>(P, n, rr);
            CK(cudaGraphLaunch(ex, s));
            CK(cudaMemcpyAsync(hx.data(), x, n * 4, cudaMemcpyDeviceToHost, s));
            CK(cudaStreamSynchronize(s));
            for (int i = 0; i < n; i++)
                EXPECT(hx[i] == (i % 101 + rr) * k * 2 + 1, "captured k=%d replay %d [%d] = %d", k, r, i, hx[i]);
        }
        printf("captured graph k=%d: 10 replays ok digest %016llx\n", k, (unsigned long long)fnv(hx.data(), n * 4));
    }

    // (2) x = 7; wait evIn (P produced on s2); x += P * 3; y = x; y = y * a + b; record evOut.
    cudaGraph_t g;
    CK(cudaGraphCreate(&g, 0));
    cudaGraphNode_t nSet, nWait, nAdd, nCopy, nAx, nRec;
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
    CK(cudaGraphAddEventRecordNode(&nRec, g, &nAx, 1, evOut));
    printf("node types:");
    for (cudaGraphNode_t nd : {nSet, nWait, nAdd, nCopy, nAx, nRec}) {
        cudaGraphNodeType t;
        CK(cudaGraphNodeGetType(nd, &t));
        printf(" %d", (int)t);
    }
    CK(cudaGraphGetNodes(g, nullptr, &count));
    printf("; %zu nodes\n", count);
    cudaGraphExec_t ex1;
    CK(cudaGraphInstantiate(&ex1, g, 0));
    rr = 0;
    for (int phase = 0; phase < 3; phase++) {
        if (phase == 1) {
            a = 5, b = 2;
            CK(cudaGraphExecKernelNodeSetParams(ex1, nAx, &kx));
        } else if (phase == 2) {
            a = 7, b = 3;
            CK(cudaGraphKernelNodeSetParams(nAx, &kx));
            cudaGraphExecUpdateResultInfo info = {};
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
            CK(cudaStreamSynchronize(s2));
            for (int i = 0; i < n; i++) {
                int v = (7 + (i % 101 + rr) * 3) * a + b;
                EXPECT(hy[i] == v, "explicit phase %d replay %d [%d] = %d, want %d", phase, r, i, hy[i], v);
                total += v;
            }
        }
        printf("explicit graph phase %d (a=%d b=%d): 10 replays ok, total %lld\n", phase, a, b, total);
    }
    cudaGraph_t gc;
    CK(cudaGraphClone(&gc, g));
    cudaGraphExec_t exc;
    CK(cudaGraphInstantiate(&exc, gc, 0));
    produce<<<G, 256, 0, s2>>>(P, n, 1000);
    CK(cudaEventRecord(evIn, s2));
    CK(cudaGraphLaunch(exc, s));
    CK(cudaStreamSynchronize(s));
    CK(cudaMemcpy(hy.data(), y, n * 4, cudaMemcpyDeviceToHost));
    for (int i = 0; i < n; i++) EXPECT(hy[i] == (7 + (i % 101 + 1000) * 3) * 7 + 3, "clone [%d] = %d", i, hy[i]);
    printf("clone replay ok digest %016llx\n", (unsigned long long)fnv(hy.data(), n * 4));
    for (cudaGraphExec_t e : {ex, ex1, exc}) CK(cudaGraphExecDestroy(e));
    for (cudaGraph_t gg : {g, g1, g2, gc}) CK(cudaGraphDestroy(gg));
    printf("PASS\n");
    return 0;
}
