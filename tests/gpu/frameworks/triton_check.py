"""A standalone Triton kernel, checked against the CPU."""
import torch
import triton
import triton.language as tl


@triton.jit
def double(x, y, n, BLOCK: tl.constexpr):
    o = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = o < n
    tl.store(y + o, tl.load(x + o, mask=m) * 2, mask=m)


x = torch.arange(1000.0, device="cuda")
y = torch.empty_like(x)
double[(4,)](x, y, 1000, BLOCK=256)
ok = torch.equal(y.cpu(), torch.arange(1000.0) * 2)
print("triton", "ok" if ok else "MISMATCH", float(y.sum()))
