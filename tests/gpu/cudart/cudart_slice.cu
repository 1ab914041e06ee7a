// The CUDA runtime on the remoted slice, without kernels: built with nvcc
// both `-cudart static` and `-cudart shared`, it must print the same lines
// natively and through the TensorFusion client (scripts/gpu/40-cudart.sh).
//
// usage: cudart_slice basic   device query, cudaMalloc/Memcpy/Memset/Free,
//                             synchronization, deterministic checksums
//        cudart_slice extra   pinned host memory, pointer attributes,
//                             primary-context flags, cudaDeviceReset
// The last line is "PASS <mode> <digest>" or "FAIL <what>"; exit status 0/1.
// Only facts that must agree between the real driver and the client are
// printed (not free memory, not properties the client reports differently
// on purpose, such as canMapHostMemory).
#include <cuda_runtime.h>

#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

static uint64_t digest = 0xcbf29ce484222325ULL;

static void mix(const void *p, size_t n) {
    const unsigned char *b = static_cast<const unsigned char *>(p);
    for (size_t i = 0; i < n; i++) {
        digest ^= b[i];
        digest *= 0x100000001b3ULL;
    }
}

static uint64_t fnv(const void *p, size_t n) {
    uint64_t h = 0xcbf29ce484222325ULL;
    const unsigned char *b = static_cast<const unsigned char *>(p);
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

#define CHECK(call)                                                                        \
    do {                                                                                   \
        cudaError_t e_ = (call);                                                           \
        if (e_ != cudaSuccess) {                                                           \
            printf("FAIL %s: %d %s (line %d)\n", #call, (int)e_, cudaGetErrorName(e_),      \
                   __LINE__);                                                              \
            exit(1);                                                                       \
        }                                                                                  \
    } while (0)

// Deterministic bytes, never all zero.
static void fill(std::vector<unsigned char> &v, uint64_t seed) {
    uint64_t x = seed * 6364136223846793005ULL + 1442695040888963407ULL;
    for (auto &b : v) {
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        b = static_cast<unsigned char>(x >> 33);
    }
}

static void line(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void line(const char *fmt, ...) {
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    printf("%s\n", buf);
    mix(buf, strlen(buf));
}

static void query() {
    int n = 0, drv = 0, rt = 0;
    CHECK(cudaGetDeviceCount(&n));
    CHECK(cudaDriverGetVersion(&drv));
    CHECK(cudaRuntimeGetVersion(&rt));
    line("devices %d driver %d", n, drv);
    printf("runtime %d\n", rt);  // the build's, not the driver's: not compared
    for (int d = 0; d < n; d++) {
        cudaDeviceProp p;
        CHECK(cudaGetDeviceProperties(&p, d));
        char uuid[33];
        for (int i = 0; i < 16; i++) snprintf(uuid + 2 * i, 3, "%02x", (unsigned char)p.uuid.bytes[i]);
        line("device %d: %s, sm_%d%d, %d SMs, %zu bytes, uuid %s", d, p.name, p.major, p.minor,
             p.multiProcessorCount, p.totalGlobalMem, uuid);
        line("  warp %d, threads/block %d, block %dx%dx%d, grid %dx%dx%d", p.warpSize, p.maxThreadsPerBlock,
             p.maxThreadsDim[0], p.maxThreadsDim[1], p.maxThreadsDim[2], p.maxGridSize[0], p.maxGridSize[1],
             p.maxGridSize[2]);
        line("  shared/block %zu, shared/SM %zu, regs/block %d, L2 %d, bus %d bits, pci %04x:%02x:%02x",
             p.sharedMemPerBlock, p.sharedMemPerMultiprocessor, p.regsPerBlock, p.l2CacheSize, p.memoryBusWidth,
             p.pciDomainID, p.pciBusID, p.pciDeviceID);
        int attr = 0;
        CHECK(cudaDeviceGetAttribute(&attr, cudaDevAttrComputeCapabilityMajor, d));
        line("  attribute cc major %d", attr);
    }
}

static void copies() {
    CHECK(cudaSetDevice(0));
    CHECK(cudaFree(0));  // creates the primary context
    int dev = -1;
    CHECK(cudaGetDevice(&dev));
    line("current device %d", dev);
    size_t sizes[] = {1, 255, 4096, (1 << 20) + 3, 64u << 20};
    for (size_t s : sizes) {
        std::vector<unsigned char> in(s), out(s, 0), back(s, 0);
        fill(in, s);
        unsigned char *a = nullptr, *b = nullptr;
        CHECK(cudaMalloc(&a, s));
        CHECK(cudaMalloc(&b, s));
        CHECK(cudaMemcpy(a, in.data(), s, cudaMemcpyHostToDevice));
        CHECK(cudaMemset(b, 0x5A, s));
        // Copy the second half of `a` over the start of `b`, set a stripe.
        size_t half = s / 2;
        CHECK(cudaMemcpy(b, a + half, s - half, cudaMemcpyDeviceToDevice));
        if (s >= 16) CHECK(cudaMemset(b + s / 4, 0xC3, s / 8));
        CHECK(cudaDeviceSynchronize());
        CHECK(cudaMemcpy(out.data(), b, s, cudaMemcpyDeviceToHost));
        CHECK(cudaMemcpy(back.data(), a, s, cudaMemcpyDeviceToHost));
        if (back != in) {
            printf("FAIL round trip of %zu bytes\n", s);
            exit(1);
        }
        line("size %zu: in %016llx out %016llx", s, (unsigned long long)fnv(in.data(), s),
             (unsigned long long)fnv(out.data(), s));
        CHECK(cudaFree(a));
        CHECK(cudaFree(b));
    }
    // An impossible allocation fails the same way, and the error is cleared.
    void *huge = nullptr;
    cudaError_t e = cudaMalloc(&huge, size_t(1) << 52);
    line("huge cudaMalloc: %s", cudaGetErrorName(e));
    line("after it: %s", cudaGetErrorName(cudaGetLastError()));
    size_t free_b = 0, total = 0;
    CHECK(cudaMemGetInfo(&free_b, &total));
    line("total memory %zu", total);
    CHECK(cudaDeviceSynchronize());
}

static void extra() {
    CHECK(cudaSetDeviceFlags(cudaDeviceScheduleBlockingSync));
    CHECK(cudaSetDevice(0));
    CHECK(cudaFree(0));
    unsigned flags = 0;
    CHECK(cudaGetDeviceFlags(&flags));
    line("device flags %#x", flags);
    // Pinned host memory and pointer attributes.
    const size_t n = 8 << 20;
    unsigned char *h = nullptr, *d = nullptr;
    CHECK(cudaMallocHost(&h, n));
    CHECK(cudaMalloc(&d, n));
    std::vector<unsigned char> in(n);
    fill(in, 7);
    memcpy(h, in.data(), n);
    CHECK(cudaMemcpy(d, h, n, cudaMemcpyHostToDevice));
    memset(h, 0, n);
    CHECK(cudaMemcpy(h, d, n, cudaMemcpyDeviceToHost));
    line("pinned round trip %s %016llx", memcmp(h, in.data(), n) == 0 ? "ok" : "DIFFERS",
         (unsigned long long)fnv(h, n));
    cudaPointerAttributes ah, ad;
    CHECK(cudaPointerGetAttributes(&ah, h));
    CHECK(cudaPointerGetAttributes(&ad, d + 100));
    line("pointer types: host %d (device %d), device %d (device %d)", (int)ah.type, ah.device, (int)ad.type,
         ad.device);
    unsigned hf = 0;
    CHECK(cudaHostGetFlags(&hf, h));
    // Natively (UVA) pinned memory is also mapped into the device; the
    // client reports no mappable host memory (canMapHostMemory 0) until it
    // emulates it, so that bit is left out of the comparison.
    line("host alloc flags %#x", hf & ~(unsigned)cudaHostAllocMapped);
    int least = 0, greatest = 0;
    CHECK(cudaDeviceGetStreamPriorityRange(&least, &greatest));
    line("stream priorities %d %d", least, greatest);
    size_t stack = 0;
    CHECK(cudaDeviceSetLimit(cudaLimitStackSize, 4096));
    CHECK(cudaDeviceGetLimit(&stack, cudaLimitStackSize));
    line("stack limit %zu", stack);
    cudaFuncCache cache;
    CHECK(cudaDeviceSetCacheConfig(cudaFuncCachePreferShared));
    CHECK(cudaDeviceGetCacheConfig(&cache));
    line("cache config %d", (int)cache);
    CHECK(cudaFreeHost(h));
    CHECK(cudaFree(d));
    // A reset destroys the context; the next call makes a new one.
    CHECK(cudaDeviceReset());
    void *p = nullptr;
    CHECK(cudaMalloc(&p, 1 << 20));
    CHECK(cudaMemset(p, 1, 1 << 20));
    CHECK(cudaDeviceSynchronize());
    CHECK(cudaFree(p));
    line("after reset ok");
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "basic";
    if (strcmp(mode, "basic") == 0) {
        query();
        copies();
    } else if (strcmp(mode, "extra") == 0) {
        extra();
    } else {
        printf("usage: cudart_slice basic|extra\n");
        return 2;
    }
    printf("PASS %s %016llx\n", mode, (unsigned long long)digest);
    return 0;
}
