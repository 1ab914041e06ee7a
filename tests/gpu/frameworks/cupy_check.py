"""CuPy: elementwise, reduction, cuBLAS matmul and a raw kernel, checked against NumPy."""
import cupy as cp
import numpy as np

SRC = r'''
extern "C" __global__ void square(float* x, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) x[i] = x[i] * x[i];
}
'''
n = 1 << 16
a = cp.arange(n, dtype=cp.float32) / n
cp.RawKernel(SRC, "square")((n // 256,), (256,), (a, cp.int32(n)))
host = (np.arange(n, dtype=np.float32) / n) ** 2
m = cp.asarray(np.random.default_rng(0).standard_normal((128, 128)).astype(np.float32))
ok = np.allclose(cp.asnumpy(a), host) and np.allclose(cp.asnumpy(m @ m), cp.asnumpy(m).astype(np.float64) @ cp.asnumpy(m), atol=1e-3)
ok = ok and abs(float((a * 2 + 1).sum()) - float((host * 2 + 1).sum())) < 1e-2
print("cupy", "ok" if ok else "MISMATCH", round(float(a.sum()), 3))
