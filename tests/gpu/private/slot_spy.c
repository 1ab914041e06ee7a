/* Native spy on private export-table slots the client does not implement
 * yet: da9151d3 (slots 1-6) and 1734dc26 (slots 1-16), which cuDNN's
 * runtime-compiled engines call while building attention plans (issue 4:
 * through the client they answer NOT_SUPPORTED and cuDNN recompiles about
 * ten times more with NVRTC).
 *
 * Linked into the counting pass-through libcuda of ../shared/tools/cutrace
 * (scripts/gpu/26-slot-spy.sh patches its cuGetExportTable to call
 * tf_spy first). For the two tables it hands out a copy whose slots are
 * wrappers that log every call: the arguments (as 8 integer registers and
 * stack words), 64 bytes behind each argument that is readable memory,
 * before and after the call, and the return value. Output: $TF_SPY_OUT.<pid>.
 * A measuring instrument for the GPU machine, not part of the product. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

typedef uintptr_t (*fn8)(uintptr_t, uintptr_t, uintptr_t, uintptr_t, uintptr_t, uintptr_t,
                         uintptr_t, uintptr_t);

static const unsigned char G_DA[16] = {0xda, 0x91, 0x51, 0xd3, 0x3a, 0xe6, 0xcc, 0x41,
                                       0xa5, 0xc0, 0x4f, 0x26, 0xd5, 0x33, 0xe3, 0x28};
static const unsigned char G_17[16] = {0x17, 0x34, 0xdc, 0x26, 0x80, 0x0d, 0x47, 0x45,
                                       0x87, 0x26, 0xc3, 0x0e, 0x7d, 0xd8, 0xbc, 0xa8};
#define SLOTS 17
static fn8 real_da[SLOTS], real_17[SLOTS];
static uintptr_t copy_da[SLOTS + 1], copy_17[SLOTS + 1];
static int calls_da[SLOTS], calls_17[SLOTS];
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static FILE *out;

/* Reads n bytes at p if that is mapped memory (no fault when it is not). */
static int peek(uintptr_t p, unsigned char *buf, size_t n)
{
    if (p < 4096)
        return 0;
    struct iovec local = {buf, n}, remote = {(void *)p, n};
    return process_vm_readv(getpid(), &local, 1, &remote, 1, 0) == (ssize_t)n;
}

static void dump(const char *when, int i, uintptr_t p)
{
    unsigned char b[64];
    if (!peek(p, b, sizeof b))
        return;
    fprintf(out, "    %s arg%d @%#lx:", when, i, (unsigned long)p);
    for (int k = 0; k < 64; k++)
        fprintf(out, "%s%02x", k % 8 ? "" : " ", b[k]);
    fprintf(out, " |");
    for (int k = 0; k < 64; k++)
        fputc(b[k] >= 32 && b[k] < 127 ? b[k] : '.', out);
    fprintf(out, "|\n");
}

static uintptr_t spy(const char *table, int slot, int *calls, fn8 real, uintptr_t a[8])
{
    int n;
    pthread_mutex_lock(&mu);
    n = ++calls[slot];
    if (out && n <= 25) {
        fprintf(out, "call %s[%d] #%d tid %ld args", table, slot, n, (long)gettid());
        for (int i = 0; i < 8; i++)
            fprintf(out, " %#lx", (unsigned long)a[i]);
        fprintf(out, "\n");
        for (int i = 0; i < 6; i++)
            dump("before", i, a[i]);
        fflush(out);
    }
    pthread_mutex_unlock(&mu);
    uintptr_t r = real(a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7]);
    pthread_mutex_lock(&mu);
    if (out && n <= 25) {
        fprintf(out, "  ret %s[%d] #%d = %#lx (%ld)\n", table, slot, n, (unsigned long)r, (long)(int)r);
        for (int i = 0; i < 6; i++)
            dump("after", i, a[i]);
        fflush(out);
    }
    pthread_mutex_unlock(&mu);
    return r;
}

#define WRAP(T, K)                                                                          \
    static uintptr_t w_##T##_##K(uintptr_t a0, uintptr_t a1, uintptr_t a2, uintptr_t a3,   \
                                 uintptr_t a4, uintptr_t a5, uintptr_t a6, uintptr_t a7)   \
    {                                                                                       \
        uintptr_t a[8] = {a0, a1, a2, a3, a4, a5, a6, a7};                                  \
        return spy(#T, K, calls_##T, real_##T[K], a);                                       \
    }
#define WRAPS(T)                                                                            \
    WRAP(T, 1) WRAP(T, 2) WRAP(T, 3) WRAP(T, 4) WRAP(T, 5) WRAP(T, 6) WRAP(T, 7) WRAP(T, 8) \
    WRAP(T, 9) WRAP(T, 10) WRAP(T, 11) WRAP(T, 12) WRAP(T, 13) WRAP(T, 14) WRAP(T, 15)      \
    WRAP(T, 16)                                                                             \
    static const void *wrappers_##T[SLOTS] = {                                              \
        0, w_##T##_1, w_##T##_2, w_##T##_3, w_##T##_4, w_##T##_5, w_##T##_6, w_##T##_7,     \
        w_##T##_8, w_##T##_9, w_##T##_10, w_##T##_11, w_##T##_12, w_##T##_13, w_##T##_14,   \
        w_##T##_15, w_##T##_16};
WRAPS(da)
WRAPS(17)

static void wrap(const char *name, const void **t, fn8 *real, uintptr_t *copy,
                 const void **wrappers)
{
    const uintptr_t *orig = *t;
    int n = (int)(orig[0] / 8);
    if (n > SLOTS)
        n = SLOTS;
    if (!copy[0]) {
        memcpy(copy, orig, n * sizeof *copy);
        for (int k = 1; k < n; k++) {
            real[k] = (fn8)orig[k];
            if (orig[k])
                copy[k] = (uintptr_t)wrappers[k];
        }
        if (out) {
            fprintf(out, "table %s: size word %lu, slots", name, (unsigned long)orig[0]);
            for (int k = 1; k < n; k++)
                fprintf(out, " [%d]=%#lx", k, (unsigned long)orig[k]);
            fprintf(out, "\n");
            fflush(out);
        }
    }
    *t = copy;
}

/* Called by the patched cuGetExportTable after the real one succeeded:
 * nonzero when the table was replaced by a spying copy. */
int tf_spy(const void **t, const unsigned char *id)
{
    pthread_mutex_lock(&mu);
    if (!out) {
        const char *o = getenv("TF_SPY_OUT");
        char path[512];
        snprintf(path, sizeof path, "%s.%d", o ? o : "/tmp/tf-spy", (int)getpid());
        out = fopen(path, "w");
    }
    int hit = 1;
    if (!memcmp(id, G_DA, 16))
        wrap("da9151d3", t, real_da, copy_da, wrappers_da);
    else if (!memcmp(id, G_17, 16))
        wrap("1734dc26", t, real_17, copy_17, wrappers_17);
    else
        hit = 0;
    pthread_mutex_unlock(&mu);
    return hit;
}
