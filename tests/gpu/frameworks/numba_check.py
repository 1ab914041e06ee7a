"""numba-cuda: a @cuda.jit kernel, checked against NumPy."""
import numpy as np

# The GPU machine's numba-cuda still calls np.row_stack, which NumPy 2.x
# removed (the native run failed with AttributeError). It was an alias of
# vstack; restore it so the probe measures the client, not that mismatch.
if not hasattr(np, "row_stack"):
    np.row_stack = np.vstack

from numba import cuda  # noqa: E402


@cuda.jit
def add(a, b, c):
    i = cuda.grid(1)
    if i < a.size:
        c[i] = a[i] + b[i]


a = np.arange(4096, dtype=np.float32)
d_a, d_c = cuda.to_device(a), cuda.device_array_like(a)
add[16, 256](d_a, d_a, d_c)
c = d_c.copy_to_host()
print("numba", "ok" if np.array_equal(c, 2 * a) else "MISMATCH", float(c.sum()))
