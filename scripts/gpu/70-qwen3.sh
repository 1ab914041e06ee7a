# Part: the deployment guide's Qwen3 check (issue 4), with the Qwen3-0.6B
# architecture built from its configuration and seeded random weights (no
# downloads on the GPU machine). Native first, then through the client over
# NATIVE and SHMEM; tokens must be identical and logits equal. While the
# remoted run works, the host's nvidia-smi must list the worker.
O=$PART_OUT
PY=.gpu/tests/torch/qwen3_check.py
env LD_LIBRARY_PATH="$REAL_DIR" timeout 300 python3 "$PY" run "$O/native.pt" >"$O/native.txt" 2>&1
row "qwen3: native" "$([ $? = 0 ] && echo PASS || echo FAIL)" "$(head -1 "$O/native.txt" | cut -c1-160)"
for net in native shmem; do
    start_worker $net "$O/worker-$net.log" || { row "qwen3: $net worker" FAIL "did not start"; continue; }
    # Sample the host's view every 2 s while the remoted run works; keep
    # the first sample that lists the worker.
    (for _ in $(seq 60); do
        nvidia-smi --query-compute-apps=pid,process_name,used_memory --format=csv >"$O/smi-apps-$net.tmp" 2>&1
        if grep -q tensor-fusion-worker "$O/smi-apps-$net.tmp"; then mv "$O/smi-apps-$net.tmp" "$O/smi-apps-$net.txt"; exit 0; fi
        cp "$O/smi-apps-$net.tmp" "$O/smi-apps-$net.txt"; sleep 2
    done) &
    spid=$!
    # TF_CALL_STATS: what the application waited for, printed to stderr at exit.
    through_client path env TF_ENABLE_LOG=1 TF_LOG_LEVEL=info TF_LOG_PATH="$O/client-$net.log" TF_CALL_STATS=1 \
        timeout 300 python3 "$PY" run "$O/client-$net.pt" >"$O/client-$net.txt" 2>"$O/client-$net.err"
    st=$?
    kill $spid 2>/dev/null; wait $spid 2>/dev/null
    if [ $st = 0 ]; then
        python3 "$PY" compare "$O/native.pt" "$O/client-$net.pt" >"$O/compare-$net.txt" 2>&1
        row "qwen3: client over $net" "$(tail -1 "$O/compare-$net.txt")" \
            "$(head -1 "$O/compare-$net.txt"); $(head -1 "$O/client-$net.txt" | cut -c1-100)"
    else
        missing=$(grep -o '[A-Za-z0-9_]* is not remoted by this client yet' "$O/client-$net.log" 2>/dev/null |
            awk '{print $1}' | sort -u | tr '\n' ' ' | cut -c1-200)
        why=$(sed '/call statistics/,$d' "$O/client-$net.err" | tail -1 | cut -c1-160)
        row "qwen3: client over $net" FAIL "exit $st: ${why:-$(tail -1 "$O/client-$net.txt" | cut -c1-160)}; not remoted: ${missing:-none}"
    fi
    if grep -q 'call statistics' "$O/client-$net.err"; then
        row "qwen3: requests waited for most ($net)" INFO \
            "$(sed -n '/call statistics/,$p' "$O/client-$net.err" | sed -n '3,9p' | tr -s ' ' | tr '\n' ';')"
    fi
    if grep -q tensor-fusion-worker "$O/smi-apps-$net.txt"; then
        row "qwen3: host nvidia-smi lists the worker ($net)" PASS "$(grep tensor-fusion-worker "$O/smi-apps-$net.txt" | head -1)"
    else
        row "qwen3: host nvidia-smi lists the worker ($net)" FAIL "$(tr '\n' ' ' <"$O/smi-apps-$net.txt" | cut -c1-160)"
    fi
    stop_worker
done
# Where the host time goes: 8 tokens under cProfile, native and over SHMEM
# (raw files profile-*.txt; the rows give the per-token time under the profiler).
env LD_LIBRARY_PATH="$REAL_DIR" timeout 300 python3 "$PY" profile >"$O/profile-native.txt" 2>&1
if start_worker shmem "$O/worker-profile.log"; then
    through_client path env TF_ENABLE_LOG=1 TF_LOG_LEVEL=info TF_LOG_PATH="$O/client-profile.log" TF_CALL_STATS=1 \
        timeout 300 python3 "$PY" profile >"$O/profile-shmem.txt" 2>&1
    stop_worker
fi
row "qwen3: host-time profile (8 tokens)" INFO \
    "native: $(grep -m1 'ms/token' "$O/profile-native.txt"); shmem: $(grep -m1 'ms/token' "$O/profile-shmem.txt" 2>/dev/null) (tables in raw profile-*.txt)"
rm -f "$O"/*.pt
