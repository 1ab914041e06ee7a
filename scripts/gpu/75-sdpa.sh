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
if command -v gdb >/dev/null; then
    if start_worker shmem "$O/worker-spin.log"; then
        through_client path timeout 120 python3 "$PY" spin 200 >"$O/spin.txt" 2>&1 &
        spid=$!
        sleep 25
        pid=$(pgrep -f "sdpa_probe.py spin" | head -1)
        for i in $(seq 6); do
            timeout 20 gdb -p "$pid" -batch -ex "thread apply all bt 30" >"$O/stack-$i.txt" 2>&1
            sleep 0.5
        done
        kill $spid 2>/dev/null; pkill -f "sdpa_probe.py spin"; wait $spid 2>/dev/null
        stop_worker
        # The innermost frames of the main thread, counted over the samples.
        for f in "$O"/stack-*.txt; do awk '/^Thread 1 /{on=1;n=0;next} /^Thread /{on=0} on&&/^#/{if(n<8)printf "%s ",$4;n++} END{print ""}' "$f"; done |
            sort | uniq -c | sort -rn >"$O/stacks-main.txt"
        row "sdpa stack samples (main thread)" INFO "$(head -4 "$O/stacks-main.txt" | tr -s ' ' | tr '\n' ';' | cut -c1-600)"
    fi
else
    row "sdpa stack samples" INFO "no gdb on this machine"
fi
