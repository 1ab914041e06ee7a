// Host functions in streams: cudaLaunchHostFunc and cudaStreamAddCallback
// on three streams, interleaved with kernels and DtoH copies into pinned
// memory. Each callback checks that it sees the data of the copy before it
// in its stream and appends to that stream's log (printed in the end: it
// must follow stream order). A callback on stream 1 behind an event of
// stream 0 must see what stream 0's callback did. Finally a callback gates
// a copy: it writes a pinned buffer that the next HtoD copy of its stream
// reads.
#include <atomic>
#include <chrono>
#include <mutex>
#include <string>
#include <thread>
#include <vector>
#include "common.cuh"

static const int S = 3, K = 6, n = 1 << 16;
struct Ctx { int s, k; unsigned *h; };
static std::mutex mu;
static std::vector<std::string> logs[S];
static std::atomic<int> bad{0}, calls{0}, mark{0};

__global__ void fill(unsigned *x, int n, unsigned v) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) x[i] = v * 2654435761u + i;
}
__global__ void inc(unsigned *x, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) x[i] += 1;
}
static unsigned tag(int s, int k) { return (unsigned)(s * 100 + k + 1); }

static void note(int s, const std::string &line) {
    std::lock_guard<std::mutex> g(mu);
    logs[s].push_back(line);
}
static void check(Ctx *c, const char *kind, int status) {
    unsigned long long sum = 0, want = 0;
    for (int i = 0; i < n; i++) {
        sum += c->h[i];
        want += (unsigned)(tag(c->s, c->k) * 2654435761u + i);
    }
    // Slow callbacks, slower on lower streams: an ordering slip shows.
    std::this_thread::sleep_for(std::chrono::microseconds(300 * (S - c->s)));
    if (sum != want || status) bad++;
    calls++;
    note(c->s, std::string(kind) + " k=" + std::to_string(c->k) + (sum == want ? " data ok" : " DATA MISMATCH") +
                   (status ? " status " + std::to_string(status) : ""));
}
static void CUDART_CB host_fn(void *u) { check((Ctx *)u, "hostfunc", 0); }
static void CUDART_CB stream_cb(cudaStream_t, cudaError_t st, void *u) { check((Ctx *)u, "callback", (int)st); }
static void CUDART_CB set_mark(void *) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    mark = 1;
    note(0, "mark set");
}
static void CUDART_CB see_mark(void *) { note(1, std::string("mark seen ") + std::to_string(mark.load())); }
struct Gate { int s; unsigned *g; };
static void CUDART_CB open_gate(void *u) {
    Gate *g = (Gate *)u;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    for (int i = 0; i < n; i++) g->g[i] = (unsigned)(g->s * 1000 + i);
    note(g->s, "gate written");
}

int main() {
    cudaStream_t s[S];
    unsigned *h[S], *gate[S], *res[S], *d[S];
    Ctx ctx[S][K];
    Gate gates[S];
    cudaEvent_t ev;
    CK(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming));
    for (int i = 0; i < S; i++) {
        CK(cudaStreamCreateWithFlags(&s[i], cudaStreamNonBlocking));
        CK(cudaMallocHost((void **)&h[i], n * 4));
        CK(cudaMallocHost((void **)&gate[i], n * 4));
        CK(cudaMallocHost((void **)&res[i], n * 4));
        CK(cudaMalloc(&d[i], n * 4));
        for (int j = 0; j < n; j++) gate[i][j] = 0xFFFFFFFFu;
        gates[i] = {i, gate[i]};
        for (int k = 0; k < K; k++) ctx[i][k] = {i, k, h[i]};
    }
    for (int k = 0; k < K; k++)
        for (int i = 0; i < S; i++) {
            fill<<<n / 256, 256, 0, s[i]>>>(d[i], n, tag(i, k));
            CK(cudaMemcpyAsync(h[i], d[i], n * 4, cudaMemcpyDeviceToHost, s[i]));
            if ((k + i) % 2 == 0) CK(cudaLaunchHostFunc(s[i], host_fn, &ctx[i][k]));
            else CK(cudaStreamAddCallback(s[i], stream_cb, &ctx[i][k], 0));
        }
    CK(cudaGetLastError());
    // Stream 1 waits for stream 0's mark callback through an event.
    CK(cudaLaunchHostFunc(s[0], set_mark, nullptr));
    CK(cudaEventRecord(ev, s[0]));
    CK(cudaStreamWaitEvent(s[1], ev, 0));
    CK(cudaLaunchHostFunc(s[1], see_mark, nullptr));
    // Gated copies: the HtoD copy reads what the callback before it wrote.
    for (int i = 0; i < S; i++) {
        CK(cudaLaunchHostFunc(s[i], open_gate, &gates[i]));
        CK(cudaMemcpyAsync(d[i], gate[i], n * 4, cudaMemcpyHostToDevice, s[i]));
        inc<<<n / 256, 256, 0, s[i]>>>(d[i], n);
        CK(cudaMemcpyAsync(res[i], d[i], n * 4, cudaMemcpyDeviceToHost, s[i]));
    }
    for (int i = S - 1; i >= 0; i--) CK(cudaStreamSynchronize(s[i]));
    for (int i = 0; i < S; i++) {
        printf("stream %d:", i);
        std::lock_guard<std::mutex> g(mu);
        for (auto &l : logs[i]) printf(" %s;", l.c_str());
        printf("\n");
        for (int j = 0; j < n; j++) EXPECT(res[i][j] == (unsigned)(i * 1000 + j + 1), "gated copy stream %d [%d] = %08x", i, j, res[i][j]);
    }
    printf("%d callbacks, %d saw wrong data or status; gated copies ok\n", calls.load(), bad.load());
    EXPECT(bad == 0 && calls == S * K && mark == 1, "callbacks");
    for (int i = 0; i < S; i++) {
        CK(cudaStreamDestroy(s[i]));
        CK(cudaFreeHost(h[i]));
        CK(cudaFreeHost(gate[i]));
        CK(cudaFreeHost(res[i]));
        CK(cudaFree(d[i]));
    }
    CK(cudaEventDestroy(ev));
    printf("PASS\n");
    return 0;
}
