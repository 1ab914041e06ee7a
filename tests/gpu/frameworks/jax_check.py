"""JAX: jit matmul and a small training step, checked against NumPy."""
import jax
import jax.numpy as jnp
import numpy as np

x = np.arange(256.0, dtype=np.float32).reshape(16, 16) / 256
f = jax.jit(lambda a: a @ a.T)
ok = np.allclose(np.asarray(f(x)), x @ x.T, atol=1e-4)
w = jnp.zeros(16)
loss = lambda w: jnp.mean((x @ w - 1.0) ** 2)
step = jax.jit(lambda w: w - 0.1 * jax.grad(loss)(w))
for _ in range(10):
    w = step(w)
print("jax", jax.devices()[0].platform, "ok" if ok else "MISMATCH", round(float(loss(w)), 5))
