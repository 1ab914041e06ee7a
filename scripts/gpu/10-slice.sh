# Part: the foundation slice (issue 2) on the real driver. The C program of
# crates/tf-test-worker/tests/c/slice.c runs natively, then 4 at once through
# the client over NATIVE and SHMEM with both injection styles; outputs must
# match. Then nvidia-smi on the host must show the worker with its memory.
cc -O1 -o /tmp/slice .gpu/c/slice.c -ldl || { row "slice: build" FAIL "cc slice.c"; return 0; }
SLICE_NATIVE=1 LD_LIBRARY_PATH=$REAL_DIR /tmp/slice full 268435456 42 >"$PART_OUT/native.txt" 2>&1
row "slice, native driver" "$([ $? = 0 ] && echo PASS || echo FAIL)" "$(tail -1 "$PART_OUT/native.txt")"
want=$(tail -1 "$PART_OUT/native.txt")
for net in native shmem; do
    start_worker $net "$PART_OUT/worker-$net.log" || { row "slice, $net worker" FAIL "did not start"; continue; }
    for style in path preload; do
        pids=() ok=1
        for i in 1 2 3 4; do
            through_client $style /tmp/slice full 268435456 42 >"$PART_OUT/$net-$style-$i.txt" 2>&1 &
            pids+=($!)
        done
        for p in "${pids[@]}"; do wait "$p" || ok=0; done
        got=$(tail -q -n1 "$PART_OUT"/$net-$style-*.txt | sort -u)
        if [ $ok = 1 ] && [ "$got" = "$want" ]; then
            row "slice ×4, $net, $style" PASS "$got"
        else
            row "slice ×4, $net, $style" FAIL "$(tail -q -n1 "$PART_OUT"/$net-$style-*.txt | tr '\n' ' ')"
        fi
    done
    if [ $net = native ]; then
        through_client path /tmp/slice hold 1073741824 >"$PART_OUT/hold.txt" 2>&1 &
        hpid=$!
        sleep 3
        nvidia-smi >"$PART_OUT/nvidia-smi.txt" 2>&1
        kill -9 $hpid; wait $hpid 2>/dev/null
        if grep -q tensor-fusion-worker "$PART_OUT/nvidia-smi.txt"; then
            row "host nvidia-smi shows the worker" PASS "$(grep tensor-fusion-worker "$PART_OUT/nvidia-smi.txt" | tr -s ' ' | head -1)"
        else
            row "host nvidia-smi shows the worker" FAIL "process not listed (see nvidia-smi.txt; a container may hide host pids)"
        fi
    fi
    stop_worker
done
