/* Measures, natively, whether a kernel fault in one CUDA context of a process
 * poisons the process's other contexts (issue 3: tenant isolation in one
 * worker process). Usage: ctx_fault KERN.fatbin created|primary
 *   created: the faulting context and the bystander are both cuCtxCreate'd;
 *   primary: the primary context faults, the bystander is a created one.
 * Prints one line per step with the CUresult; "bystander ok" lines decide. */
#include <cuda.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define N 4096
static const char *fatbin;

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static const char *name(CUresult r)
{
    const char *s = "?";
    cuGetErrorName(r, &s);
    return s;
}

#define STEP(label, call)                                                   \
    do {                                                                    \
        CUresult r_ = (call);                                               \
        printf("%-44s %d %s\n", label, (int)r_, name(r_));                  \
        fflush(stdout);                                                     \
    } while (0)

/* One round of real work in ctx: alloc, upload, add1, download, check. */
static CUresult work(CUcontext ctx, CUmodule mod, int *ok)
{
    CUresult r;
    CUfunction f;
    CUdeviceptr d = 0;
    unsigned h[N], n = N;
    *ok = 0;
    if ((r = cuCtxSetCurrent(ctx)))
        return r;
    if ((r = cuModuleGetFunction(&f, mod, "add1")))
        return r;
    for (unsigned i = 0; i < N; i++)
        h[i] = i * 2654435761u;
    if ((r = cuMemAlloc(&d, sizeof h)))
        return r;
    if ((r = cuMemcpyHtoD(d, h, sizeof h)))
        goto out;
    void *args[] = {&d, &n};
    if ((r = cuLaunchKernel(f, N / 256, 1, 1, 256, 1, 1, 0, 0, args, 0)))
        goto out;
    if ((r = cuCtxSynchronize()))
        goto out;
    if ((r = cuMemcpyDtoH(h, d, sizeof h)))
        goto out;
    *ok = 1;
    for (unsigned i = 0; i < N; i++)
        if (h[i] != i * 2654435761u + 1)
            *ok = 0;
out:
    cuMemFree(d);
    return r;
}

struct bystander {
    CUcontext ctx;
    CUmodule mod;
    volatile int stop;
    int rounds, failures;
    CUresult first_error;
};

/* Keeps real work in flight in the bystander's context while the other
 * context faults. */
static void *keep_busy(void *p)
{
    struct bystander *b = p;
    CUfunction spin;
    cuCtxSetCurrent(b->ctx);
    cuModuleGetFunction(&spin, b->mod, "spin");
    while (!b->stop) {
        long long cycles = 2000000;
        void *args[] = {&cycles};
        int ok;
        CUresult r = cuLaunchKernel(spin, 1, 1, 1, 1, 1, 1, 0, 0, args, 0);
        if (!r)
            r = work(b->ctx, b->mod, &ok);
        else
            ok = 0;
        b->rounds++;
        if (r || !ok) {
            b->failures++;
            if (!b->first_error)
                b->first_error = r ? r : CUDA_ERROR_UNKNOWN;
        }
    }
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s KERN.fatbin created|primary\n", argv[0]);
        return 2;
    }
    fatbin = argv[1];
    int primary = !strcmp(argv[2], "primary");
    CUdevice dev;
    CUcontext a, b;
    CUmodule ma, mb;
    size_t free0, free1, total;
    int ok;
    STEP("cuInit", cuInit(0));
    STEP("cuDeviceGet", cuDeviceGet(&dev, 0));

    /* The faulting context. */
    if (primary) {
        STEP("faulting: cuDevicePrimaryCtxRetain", cuDevicePrimaryCtxRetain(&a, dev));
        cuCtxSetCurrent(a);
    } else {
        STEP("faulting: cuCtxCreate", cuCtxCreate(&a, NULL, 0, dev));
    }
    cuMemGetInfo(&free0, &total);
    double t0 = now();
    STEP("bystander: cuCtxCreate", cuCtxCreate(&b, NULL, 0, dev));
    double t1 = now();
    STEP("bystander: cuModuleLoad", cuModuleLoad(&mb, fatbin));
    cuMemGetInfo(&free1, &total);
    printf("context cost: %.1f ms to create, %.1f MiB of device memory (with its module)\n",
           (t1 - t0) * 1e3, (double)((long long)free0 - (long long)free1) / 1048576.0);

    /* Switching cost between contexts on one thread (the worker would switch
     * per request when sessions have their own contexts). */
    t0 = now();
    for (int i = 0; i < 100000; i++)
        cuCtxSetCurrent(i & 1 ? a : b);
    printf("cuCtxSetCurrent alternating: %.1f ns per call\n", (now() - t0) * 1e9 / 100000);

    cuCtxSetCurrent(a);
    STEP("faulting: cuModuleLoad", cuModuleLoad(&ma, fatbin));
    STEP("faulting: work before the fault", work(a, ma, &ok));
    printf("faulting: result before the fault %s\n", ok ? "ok" : "WRONG");
    STEP("bystander: work before the fault", work(b, mb, &ok));
    printf("bystander ok before the fault: %s\n", ok ? "yes" : "NO");

    struct bystander by = {.ctx = b, .mod = mb};
    pthread_t th;
    pthread_create(&th, NULL, keep_busy, &by);
    usleep(200000);

    CUfunction fault;
    CUdeviceptr bad = 0x10;
    void *args[] = {&bad};
    cuCtxSetCurrent(a);
    cuModuleGetFunction(&fault, ma, "fault");
    STEP("faulting: cuLaunchKernel(fault)", cuLaunchKernel(fault, 1, 1, 1, 1, 1, 1, 0, 0, args, 0));
    STEP("faulting: cuCtxSynchronize after the fault", cuCtxSynchronize());
    usleep(300000);
    by.stop = 1;
    pthread_join(th, NULL);
    printf("bystander thread during the fault: %d rounds, %d failed, first error %d %s\n",
           by.rounds, by.failures, (int)by.first_error, name(by.first_error));

    STEP("bystander: work after the fault", work(b, mb, &ok));
    printf("bystander ok after the fault: %s\n", ok ? "yes" : "NO");
    STEP("faulting: work after the fault", work(a, ma, &ok));

    if (primary) {
        cuCtxSetCurrent(NULL);
        STEP("faulting: cuDevicePrimaryCtxReset", cuDevicePrimaryCtxReset(dev));
        STEP("faulting: cuDevicePrimaryCtxRetain again", cuDevicePrimaryCtxRetain(&a, dev));
    } else {
        STEP("faulting: cuCtxDestroy", cuCtxDestroy(a));
        STEP("new: cuCtxCreate", cuCtxCreate(&a, NULL, 0, dev));
    }
    STEP("new: cuModuleLoad", cuModuleLoad(&ma, fatbin));
    STEP("new: work", work(a, ma, &ok));
    printf("new context ok after the fault: %s\n", ok ? "yes" : "NO");
    STEP("bystander: work at the end", work(b, mb, &ok));
    printf("bystander ok at the end: %s\n", ok ? "yes" : "NO");
    return 0;
}
