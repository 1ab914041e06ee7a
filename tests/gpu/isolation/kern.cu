// Kernels for ctx_fault.c, built with `nvcc -fatbin` and loaded per context.
extern "C" __global__ void add1(unsigned *p, unsigned n)
{
    unsigned i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        p[i] += 1;
}

// Stores through a pointer the context never mapped: an illegal address.
extern "C" __global__ void fault(unsigned *p)
{
    *p = 7;
}

// Spins for about `cycles` clocks so a bystander's work is in flight.
extern "C" __global__ void spin(long long cycles)
{
    long long t = clock64();
    while (clock64() - t < cycles) {
    }
}
