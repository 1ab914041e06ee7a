# Part: PyTorch probe (issue 4, not yet a pass/fail suite). Small PyTorch
# steps run natively and through the client over NATIVE; each row says
# whether the remoted run printed the same line, and the client log names
# what PyTorch asked for that is not remoted yet, for the next step.
O=$PART_OUT
probe() {
    local name=$1 code=$2
    env LD_LIBRARY_PATH="$REAL_DIR" timeout 120 python3 -c "$code" >"$O/$name-native.txt" 2>&1
    through_client path env TF_ENABLE_LOG=1 TF_LOG_LEVEL=info TF_LOG_PATH="$O/$name.client.log" \
        timeout 120 python3 -c "$code" >"$O/$name-client.txt" 2>&1
    local st=$? want got
    want=$(tail -1 "$O/$name-native.txt")
    got=$(tail -1 "$O/$name-client.txt")
    local missing
    missing=$(grep -o '[A-Za-z0-9_]* is not remoted by this client yet' "$O/$name.client.log" 2>/dev/null |
        awk '{print $1}' | sort -u | tr '\n' ' ' | cut -c1-300)
    if [ $st = 0 ] && [ "$got" = "$want" ]; then
        row "torch probe: $name" PASS "$got"
    else
        row "torch probe: $name" FAIL "exit $st: $(echo "$got" | cut -c1-160); not remoted: ${missing:-none}"
    fi
}
start_worker native "$O/worker.log" || { row "torch probe" FAIL "worker did not start"; return 0; }
probe tensor 'import torch; x = torch.arange(1024, device="cuda", dtype=torch.float32); print(float((x * 2).sum()))'
probe matmul 'import torch; torch.manual_seed(0); a = torch.randn(256, 256, device="cuda"); b = a @ a.T; print(round(float(b.trace()), 2))'
probe conv 'import torch; torch.manual_seed(0); c = torch.nn.Conv2d(3, 8, 3).cuda(); x = torch.randn(2, 3, 32, 32, device="cuda"); print(round(float(c(x).abs().sum()), 3))'
stop_worker

# The first cuBLAS call of the Qwen3 check (rotary embedding, k = 1), with
# debug logs on both sides: failing calls are logged as "call failed".
start_worker native "$O/worker-rope.log" TF_LOG_LEVEL=debug || return 0
through_client path env TF_ENABLE_LOG=1 TF_LOG_LEVEL=debug TF_LOG_PATH="$O/rope.client.log" timeout 120 python3 -c '
import torch
inv = torch.arange(64, device="cuda", dtype=torch.float32)[None, :, None]
pos = torch.arange(24, device="cuda", dtype=torch.float32)[None, None, :]
print(float((inv @ pos).sum()))' >"$O/rope-client.txt" 2>&1
row "torch probe: rope matmul (k=1)" "$([ $? = 0 ] && echo PASS || echo FAIL)" \
    "$(tail -1 "$O/rope-client.txt" | cut -c1-120); worker failures: $(grep -c 'call failed' "$O/worker-rope.log")"
stop_worker
grep -B2 'call failed' "$O/worker-rope.log" | head -40 >"$O/rope-failures.txt" || true
grep 'call failed' "$O/rope.client.log" | sort | uniq -c | sort -rn | head -20 >"$O/rope-client-failures.txt" || true
row "torch probe: client-side failures (rope)" INFO "$(cut -c1-60 <"$O/rope-client-failures.txt" | head -0)$(grep -o 'status=[0-9]* at=[^ ]*' "$O/rope.client.log" | sort | uniq -c | sort -rn | head -6 | tr -s ' ' | tr '\n' ';')"
