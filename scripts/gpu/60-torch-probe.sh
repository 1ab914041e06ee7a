# Part: PyTorch and the other frameworks (issue 4). Each probe is a small
# program doing real work; it runs natively once, then through the client over
# NATIVE and over SHMEM, and a row says whether the remoted run printed the
# same last line (the client log names anything not remoted yet). A probe
# whose native run fails says so: that is the environment, not the client.
O=$PART_OUT
probe() {
    local name=$1 code=$2
    [ -f "$O/$name-native.txt" ] ||
        env LD_LIBRARY_PATH="$REAL_DIR" timeout 120 python3 -c "$code" >"$O/$name-native.txt" 2>&1
    through_client path env TF_ENABLE_LOG=1 TF_LOG_LEVEL=info TF_LOG_PATH="$O/$name.$NET.client.log" \
        timeout 120 python3 -c "$code" >"$O/$name-$NET.txt" 2>&1
    local st=$? want got
    want=$(tail -1 "$O/$name-native.txt")
    got=$(tail -1 "$O/$name-$NET.txt")
    local missing
    missing=$( (grep -o '[A-Za-z0-9_]* is not remoted by this client yet' "$O/$name.$NET.client.log" 2>/dev/null |
        awk '{print $1}'
        grep -o 'export table [^ ]* ([0-9a-f]*) slot [0-9]*\|export table [0-9a-f]* slot [0-9]*' "$O/$name.$NET.client.log" 2>/dev/null |
        sed 's/export table //') | sort -u | tr '\n' ' ' | cut -c1-300)
    if ! tail -1 "$O/$name-native.txt" | grep -q . || grep -q Traceback "$O/$name-native.txt"; then
        row "torch probe ($NET): $name" FAIL "the native run failed too (the probe or the environment is broken): $(tail -1 "$O/$name-native.txt" | cut -c1-120)"
    elif [ $st = 0 ] && [ "$got" = "$want" ]; then
        row "torch probe ($NET): $name" PASS "$got"
    else
        row "torch probe ($NET): $name" FAIL "exit $st: $(echo "$got" | cut -c1-160); not remoted: ${missing:-none}"
    fi
}
for NET in native shmem; do
start_worker $NET "$O/worker-$NET.log" || { row "torch probe ($NET)" FAIL "worker did not start"; continue; }
probe tensor 'import torch; x = torch.arange(1024, device="cuda", dtype=torch.float32); print(float((x * 2).sum()))'
probe matmul 'import torch; torch.manual_seed(0); a = torch.randn(256, 256, device="cuda"); b = a @ a.T; print(round(float(b.trace()), 2))'
probe conv 'import torch; torch.manual_seed(0); c = torch.nn.Conv2d(3, 8, 3).cuda(); x = torch.randn(2, 3, 32, 32, device="cuda"); print(round(float(c(x).abs().sum()), 3))'
probe gemm-dtypes 'import torch; torch.manual_seed(0); a = torch.randn(512, 512, device="cuda"); r = []
for dt in (torch.float32, torch.float16, torch.bfloat16):
    b = a.to(dt); r.append(round(float((b @ b.T).float().abs().sum()) / 1e6, 2))
torch.backends.cuda.matmul.allow_tf32 = True; r.append(round(float((a @ a.T).abs().sum()) / 1e6, 2)); print(r)'
probe conv-backward 'import torch; torch.manual_seed(0); c = torch.nn.Conv2d(3, 8, 3).cuda(); x = torch.randn(2, 3, 32, 32, device="cuda", requires_grad=True); c(x).square().sum().backward(); print(round(float(x.grad.abs().sum()), 2), round(float(c.weight.grad.abs().sum()), 2))'
probe cufft 'import torch; torch.manual_seed(0); x = torch.randn(4096, device="cuda"); print(round(float(torch.fft.fft(x).abs().sum()), 1))'
probe cusolver 'import torch; torch.manual_seed(0); a = torch.randn(64, 64, device="cuda", dtype=torch.float64); s = a @ a.T + 64 * torch.eye(64, device="cuda", dtype=torch.float64); b = torch.randn(64, 3, device="cuda", dtype=torch.float64); print(round(float(torch.linalg.solve(s, b).sum()), 6), round(float(torch.linalg.eigh(s)[0].sum()), 4))'
probe cusparse 'import torch; torch.manual_seed(0); i = torch.tensor([[0, 1, 2, 3], [1, 2, 3, 0]], device="cuda"); v = torch.tensor([1.0, 2.0, 3.0, 4.0], device="cuda"); s = torch.sparse_coo_tensor(i, v, (4, 4)); d = torch.arange(16.0, device="cuda").view(4, 4); print(torch.sparse.mm(s, d).sum().item())'
probe curand 'import torch; g = torch.Generator(device="cuda").manual_seed(7); print(round(float(torch.rand(1000, device="cuda", generator=g).sum()), 4))'
probe training 'import torch; torch.manual_seed(0); m = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10)).cuda(); o = torch.optim.SGD(m.parameters(), lr=0.1); x = torch.randn(256, 64, device="cuda"); y = torch.randint(0, 10, (256,), device="cuda")
for _ in range(20):
    o.zero_grad(); l = torch.nn.functional.cross_entropy(m(x), y); l.backward(); o.step()
print(round(float(l), 5))'
probe mem-get-info 'import torch; x = torch.empty(256 << 20, dtype=torch.uint8, device="cuda"); f, t = torch.cuda.mem_get_info(); print(t > 0, f <= t)'
probe expandable-segments 'import os; os.environ["PYTORCH_CUDA_ALLOC_CONF"] = "expandable_segments:True"; import torch; x = torch.ones(64 << 20, device="cuda"); y = x * 3; del x; z = torch.ones(32 << 20, device="cuda"); print(float(y.sum() + z.sum()))'
probe cuda-graph 'import torch; s = torch.cuda.Stream(); x = torch.ones(1024, device="cuda"); torch.cuda.synchronize()
g = torch.cuda.CUDAGraph()
with torch.cuda.graph(g):
    y = x * 2 + 1
x.fill_(3.0); g.replay(); torch.cuda.synchronize(); print(float(y.sum()))'
probe graphed-callables 'import torch; torch.manual_seed(0); m = torch.nn.Linear(64, 64).cuda(); x = torch.randn(8, 64, device="cuda", requires_grad=True)
g = torch.cuda.make_graphed_callables(m, (x,))
y = g(x); y.sum().backward(); torch.cuda.synchronize(); print(round(float(y.sum()), 3), round(float(m.weight.grad.sum()), 3))'
probe nccl 'import os, torch, torch.distributed as dist
os.environ["MASTER_ADDR"] = "127.0.0.1"; os.environ["MASTER_PORT"] = "29533"
dist.init_process_group("nccl", rank=0, world_size=1, device_id=torch.device("cuda:0"))
t = torch.arange(16.0, device="cuda"); dist.all_reduce(t); torch.cuda.synchronize(); print(float(t.sum())); dist.destroy_process_group()'
probe dataloader-fork 'import torch
from torch.utils.data import DataLoader, TensorDataset
s = torch.zeros(4, device="cuda")
for (b,) in DataLoader(TensorDataset(torch.arange(256.0).reshape(64, 4)), batch_size=16, num_workers=2): s += b.cuda().sum(0)
print(s.tolist())'
probe torch-compile 'import torch; f = torch.compile(lambda a, b: (a * b).sin().sum()); a = torch.arange(4096.0, device="cuda"); print(round(float(f(a, a)), 3))'
probe streams-events 'import torch; s = torch.cuda.Stream(); e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
with torch.cuda.stream(s):
    e0.record(); x = torch.ones(1 << 20, device="cuda").cumsum(0); e1.record()
torch.cuda.synchronize(); print(float(x[-1]), e0.elapsed_time(e1) >= 0)'
probe cupy "$(cat tests/gpu/frameworks/cupy_check.py)"
probe jax "$(cat tests/gpu/frameworks/jax_check.py)"
probe numba "$(cat tests/gpu/frameworks/numba_check.py)"
stop_worker
# Triton needs its kernels in a file (it reads their source).
start_worker $NET "$O/worker-triton-$NET.log" || continue
[ -f "$O/triton-native.txt" ] ||
    env LD_LIBRARY_PATH="$REAL_DIR" timeout 120 python3 tests/gpu/frameworks/triton_check.py >"$O/triton-native.txt" 2>&1
through_client path env TF_ENABLE_LOG=1 TF_LOG_PATH="$O/triton.$NET.client.log" TRITON_LIBCUDA_PATH="$CLIENT_DIR" \
    timeout 120 python3 tests/gpu/frameworks/triton_check.py >"$O/triton-$NET.txt" 2>&1
st=$?
row "torch probe ($NET): triton" "$([ $st = 0 ] && [ "$(tail -1 "$O/triton-$NET.txt")" = "$(tail -1 "$O/triton-native.txt")" ] && echo PASS || echo FAIL)" \
    "exit $st: $(tail -1 "$O/triton-$NET.txt" | cut -c1-120) (native: $(tail -1 "$O/triton-native.txt" | cut -c1-60))"
stop_worker
done
