# Part: where Qwen3 decode loses time through the client (issue 4 speed).
# Times 8 tokens per allowed attention backend natively and over SHMEM, then
# samples the remoted process's native stacks with gdb (when the machine has
# it) and logs the worker's own time per request (TF_CALL_STATS on both sides).
O=$PART_OUT
PY=.gpu/tests/torch/sdpa_probe.py
env LD_LIBRARY_PATH="$REAL_DIR" timeout 300 python3 "$PY" >"$O/native.txt" 2>&1
if start_worker shmem "$O/worker.log" TF_CALL_STATS=1; then
    through_client path env TF_ENABLE_LOG=1 TF_LOG_PATH="$O/client.log" TF_CALL_STATS=1 \
        timeout 300 python3 "$PY" >"$O/shmem.txt" 2>"$O/shmem.err"
    stop_worker
fi
for c in default flash efficient cudnn math; do
    row "sdpa $c" INFO "native: $(grep "^$c " "$O/native.txt" | cut -d' ' -f2- | cut -c1-90); shmem: $(grep "^$c " "$O/shmem.txt" | cut -d' ' -f2- | cut -c1-90)"
done
row "sdpa choice" INFO "native: $(grep -m1 'choice' "$O/native.txt"); shmem: $(grep -m1 'choice' "$O/shmem.txt")"
# Where the client process spends its CPU while decoding with new sequence
# lengths: the repo's SIGPROF sampler (tests/gpu/tools/sampler.c), natively
# and over SHMEM, start-up skipped. Reports: raw */sampler.*.txt.
if gcc -O2 -shared -fPIC -o "$O/libsampler.so" .gpu/tests/tools/sampler.c -ldl -lpthread 2>"$O/sampler-build.txt"; then
    env LD_LIBRARY_PATH="$REAL_DIR" LD_PRELOAD="$O/libsampler.so" TF_SAMPLER_OUT="$O/sampler-native" TF_SAMPLER_DELAY_S=15 \
        timeout 120 python3 "$PY" spin 30 >"$O/spin-native.txt" 2>&1
    if start_worker shmem "$O/worker-spin.log" TF_CALL_STATS=1; then
        through_client path env LD_PRELOAD="$O/libsampler.so" TF_SAMPLER_OUT="$O/sampler-shmem" TF_SAMPLER_DELAY_S=15 TF_CALL_STATS=1 \
            timeout 120 python3 "$PY" spin 30 >"$O/spin-shmem.txt" 2>"$O/spin-shmem.err"
        sleep 1
        stop_worker
    fi
    for v in native shmem; do
        f=$(ls "$O"/sampler-$v.*.txt 2>/dev/null | head -1)
        row "sdpa sampler ($v): rounds and top libraries" INFO "$(grep -m1 rounds "$O/spin-$v.txt"); $(sed -n '/self time by library/,/^$/p' "$f" 2>/dev/null | sed -n '2,7p' | tr -s ' ' | tr '\n' ';' | cut -c1-400)"
    done
else
    row "sdpa sampler" FAIL "build: $(head -2 "$O/sampler-build.txt")"
fi
