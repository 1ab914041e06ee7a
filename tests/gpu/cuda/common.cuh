// Shared by the cudart test programs: error checks and a digest. Results go
// to stdout (compared native vs remote); timings go to stderr.
#pragma once
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cuda_runtime.h>

#define CK(call)                                                                          \
    do {                                                                                  \
        cudaError_t e_ = (call);                                                          \
        if (e_ != cudaSuccess) {                                                          \
            printf("FAIL line %d: %s -> %d %s\n", __LINE__, #call, (int)e_, cudaGetErrorName(e_)); \
            exit(1);                                                                      \
        }                                                                                 \
    } while (0)
#define EXPECT(cond, ...)                                                                 \
    do {                                                                                  \
        if (!(cond)) { printf("FAIL line %d: ", __LINE__); printf(__VA_ARGS__); printf("\n"); exit(1); } \
    } while (0)

static inline uint64_t fnv(const void *p, size_t n) {
    const unsigned char *b = (const unsigned char *)p;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) { h ^= b[i]; h *= 1099511628211ull; }
    return h;
}

// Prints a call's result as it comes, for checks that the client answers
// like the native driver (error codes included).
static inline cudaError_t show(const char *what, cudaError_t e) {
    printf("%s -> %d %s\n", what, (int)e, cudaGetErrorName(e));
    return e;
}
#define SHOW(call) show(#call, (call))
