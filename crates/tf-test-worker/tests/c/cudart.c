/* The real CUDA runtime (cudart 13, static or shared, from the pinned PyPI
 * wheel) through our libcuda.so.1 against tf-test-worker: the same steps as
 * tests/gpu/cudart/cudart_slice.cu, written in C with the few declarations
 * it needs so that it builds without nvcc or the CUDA headers.
 *
 * usage: cudart basic|extra   prints what it saw, then "PASS <mode> <digest>". */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef int cudaError_t;
enum { H2D = 1, D2H = 2, D2D = 3 };
struct cudaPointerAttributes {
    int type, device;
    void *devicePointer, *hostPointer;
    long unused, reserved[7];
};
cudaError_t cudaGetDeviceCount(int *);
cudaError_t cudaDriverGetVersion(int *);
cudaError_t cudaGetDeviceProperties(void *, int);
cudaError_t cudaDeviceGetAttribute(int *, int, int);
cudaError_t cudaSetDevice(int);
cudaError_t cudaGetDevice(int *);
cudaError_t cudaSetDeviceFlags(unsigned);
cudaError_t cudaGetDeviceFlags(unsigned *);
cudaError_t cudaMalloc(void **, size_t);
cudaError_t cudaFree(void *);
cudaError_t cudaMemcpy(void *, const void *, size_t, int);
cudaError_t cudaMemset(void *, int, size_t);
cudaError_t cudaMemGetInfo(size_t *, size_t *);
cudaError_t cudaDeviceSynchronize(void);
cudaError_t cudaGetLastError(void);
const char *cudaGetErrorName(cudaError_t);
cudaError_t cudaMallocHost(void **, size_t);
cudaError_t cudaFreeHost(void *);
cudaError_t cudaHostGetFlags(unsigned *, void *);
cudaError_t cudaPointerGetAttributes(struct cudaPointerAttributes *, const void *);
cudaError_t cudaDeviceGetStreamPriorityRange(int *, int *);
cudaError_t cudaDeviceSetLimit(int, size_t);
cudaError_t cudaDeviceGetLimit(size_t *, int);
cudaError_t cudaDeviceSetCacheConfig(int);
cudaError_t cudaDeviceGetCacheConfig(int *);
cudaError_t cudaDeviceReset(void);

static uint64_t digest = 0xcbf29ce484222325ULL;

static uint64_t fnv(const void *p, size_t n) {
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < n; i++) h = (h ^ ((const unsigned char *)p)[i]) * 0x100000001b3ULL;
    return h;
}

#define CHECK(call)                                                                    \
    do {                                                                               \
        cudaError_t e_ = (call);                                                       \
        if (e_) {                                                                      \
            printf("FAIL %s: %d %s (line %d)\n", #call, e_, cudaGetErrorName(e_), __LINE__); \
            exit(1);                                                                   \
        }                                                                              \
    } while (0)
#define LINE(...)                                                                      \
    do {                                                                               \
        char b_[512];                                                                  \
        snprintf(b_, sizeof b_, __VA_ARGS__);                                          \
        printf("%s\n", b_);                                                            \
        digest = (digest ^ fnv(b_, strlen(b_))) * 0x100000001b3ULL;                    \
    } while (0)

static void fill(unsigned char *v, size_t n, uint64_t seed) {
    uint64_t x = seed * 6364136223846793005ULL + 1442695040888963407ULL;
    for (size_t i = 0; i < n; i++) {
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        v[i] = (unsigned char)(x >> 33);
    }
}

static void basic(void) {
    int n = 0, drv = 0, v = 0, dev = -1;
    CHECK(cudaGetDeviceCount(&n));
    CHECK(cudaDriverGetVersion(&drv));
    LINE("devices %d driver %d", n, drv);
    for (int d = 0; d < n; d++) {
        /* cudaDeviceProp starts with char name[256] and the 16-byte UUID;
         * its size changes between releases, so the buffer is generous. */
        static unsigned char prop[16384];
        CHECK(cudaGetDeviceProperties(prop, d));
        CHECK(cudaDeviceGetAttribute(&v, 16, d));
        LINE("device %d: %s, %d SMs, uuid %016llx", d, (const char *)prop, v,
             (unsigned long long)fnv(prop + 256, 16));
    }
    CHECK(cudaSetDevice(0));
    CHECK(cudaFree(0));
    CHECK(cudaGetDevice(&dev));
    LINE("current device %d", dev);
    size_t sizes[] = {1, 255, 4096, (1 << 20) + 3, 16u << 20};
    for (unsigned i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        size_t s = sizes[i], half = s / 2;
        unsigned char *in = malloc(s), *out = malloc(s), *back = malloc(s), *a, *b;
        fill(in, s, s);
        CHECK(cudaMalloc((void **)&a, s));
        CHECK(cudaMalloc((void **)&b, s));
        CHECK(cudaMemcpy(a, in, s, H2D));
        CHECK(cudaMemset(b, 0x5A, s));
        CHECK(cudaMemcpy(b, a + half, s - half, D2D));
        if (s >= 16) CHECK(cudaMemset(b + s / 4, 0xC3, s / 8));
        CHECK(cudaDeviceSynchronize());
        CHECK(cudaMemcpy(out, b, s, D2H));
        CHECK(cudaMemcpy(back, a, s, D2H));
        if (memcmp(back, in, s) != 0) {
            printf("FAIL round trip of %zu bytes\n", s);
            exit(1);
        }
        LINE("size %zu: in %016llx out %016llx", s, (unsigned long long)fnv(in, s),
             (unsigned long long)fnv(out, s));
        CHECK(cudaFree(a));
        CHECK(cudaFree(b));
        free(in);
        free(out);
        free(back);
    }
    void *huge = 0;
    LINE("huge cudaMalloc: %s", cudaGetErrorName(cudaMalloc(&huge, (size_t)1 << 52)));
    LINE("after it: %s", cudaGetErrorName(cudaGetLastError()));
    size_t f = 0, t = 0;
    CHECK(cudaMemGetInfo(&f, &t));
    LINE("total memory %zu", t);
}

static void extra(void) {
    unsigned flags = 0, hf = 9;
    CHECK(cudaSetDeviceFlags(4)); /* cudaDeviceScheduleBlockingSync */
    CHECK(cudaSetDevice(0));
    CHECK(cudaFree(0));
    CHECK(cudaGetDeviceFlags(&flags));
    LINE("device flags %#x", flags);
    size_t n = 4 << 20;
    unsigned char *h = 0, *d = 0, *in = malloc(n);
    fill(in, n, 7);
    CHECK(cudaMallocHost((void **)&h, n));
    CHECK(cudaMalloc((void **)&d, n));
    memcpy(h, in, n);
    CHECK(cudaMemcpy(d, h, n, H2D));
    memset(h, 0, n);
    CHECK(cudaMemcpy(h, d, n, D2H));
    LINE("pinned round trip %s %016llx", memcmp(h, in, n) ? "DIFFERS" : "ok", (unsigned long long)fnv(h, n));
    struct cudaPointerAttributes ah, ad;
    CHECK(cudaPointerGetAttributes(&ah, h));
    CHECK(cudaPointerGetAttributes(&ad, d + 100));
    LINE("pointer types: host %d (device %d), device %d (device %d)", ah.type, ah.device, ad.type, ad.device);
    CHECK(cudaHostGetFlags(&hf, h));
    LINE("host alloc flags %#x", hf & ~2u); /* as cudart_slice.cu: without the mapped bit */
    int least = 0, greatest = 0, cache = -1;
    CHECK(cudaDeviceGetStreamPriorityRange(&least, &greatest));
    LINE("stream priorities %d %d", least, greatest);
    size_t stack = 0;
    CHECK(cudaDeviceSetLimit(0, 4096));
    CHECK(cudaDeviceGetLimit(&stack, 0));
    LINE("stack limit %zu", stack);
    CHECK(cudaDeviceSetCacheConfig(1)); /* cudaFuncCachePreferShared */
    CHECK(cudaDeviceGetCacheConfig(&cache));
    LINE("cache config %d", cache);
    CHECK(cudaFreeHost(h));
    CHECK(cudaFree(d));
    CHECK(cudaDeviceReset());
    void *p = 0;
    CHECK(cudaMalloc(&p, 1 << 20));
    CHECK(cudaMemset(p, 1, 1 << 20));
    CHECK(cudaDeviceSynchronize());
    CHECK(cudaFree(p));
    LINE("after reset ok");
    free(in);
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "basic";
    if (strcmp(mode, "basic") == 0)
        basic();
    else if (strcmp(mode, "extra") == 0)
        extra();
    else {
        printf("usage: cudart basic|extra\n");
        return 2;
    }
    printf("PASS %s %016llx\n", mode, (unsigned long long)digest);
    return 0;
}
