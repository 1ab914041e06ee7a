# Part: the rest of the issue-3 CUDA suite. Sourced by scripts/gpu-check.sh run.
#
# tests/gpu/cuda: pinned memory and copy/kernel overlap, pitched 2D/3D
# copies and memsets, stream-ordered allocation and memory pools, the
# driver's VMM API reached through cudaGetDriverEntryPointByVersion (what
# PyTorch's expandable segments do), graphs (stream capture and explicit),
# host functions and stream callbacks, device printf, a kernel that faults
# (sticky error) and allocation failures. Like 50-cuda-programs: each is
# built with nvcc -cudart static and shared, runs natively (it checks its
# own results against the CPU and prints PASS), then through the client
# (LD_LIBRARY_PATH) against a worker over NATIVE and SHMEM; its stdout must
# equal the native one. A failing row names what the client's log says it
# does not remote yet. illegal_address runs while `bystander` (another
# client of the same worker) keeps verified work going: the fault must end
# only the faulting client's session (the worker serves each client in its
# own process), the bystander must pass and the worker keep serving. The
# programs that fault or fail allocations run last.
SU_CUDA=${CUDA_HOME:-/usr/local/cuda}
SU_NVCC=$SU_CUDA/bin/nvcc
SU_SRC=.gpu/tests/cuda
SU_BIN=$PART_OUT/bin
SU_LIST=(pinned_overlap copy2d3d mempool vmm link_jit tensormap graphs graphs_device mapped_flag host_callbacks arrays printf oom bystander illegal_address)
SU_CHECK=copy2d3d_static # rerun after the faulting client

if [ ! -x "$SU_NVCC" ]; then row "cuda suite: build" FAIL "no nvcc at $SU_NVCC"; return 0; fi
if [ ! -d "$SU_SRC" ]; then row "cuda suite: build" FAIL "no $SU_SRC (run: scripts/gpu-check.sh prepare)"; return 0; fi
mkdir -p "$SU_BIN"
su_cc=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d ' .')
SU_ARCH=sm_${su_cc:-90}

su_t0=$SECONDS
su_pids=()
for p in "${SU_LIST[@]}"; do
    for rt in static shared; do
        "$SU_NVCC" -arch="$SU_ARCH" -O2 -std=c++17 -cudart $rt -Xlinker -rpath -Xlinker "$SU_CUDA/lib64" \
            -o "$SU_BIN/${p}_$rt" "$SU_SRC/$p.cu" >"$SU_BIN/${p}_$rt.build.log" 2>&1 &
        su_pids+=($!)
    done
done
for pid in "${su_pids[@]}"; do wait "$pid"; done
su_failed=0
for p in "${SU_LIST[@]}"; do
    for rt in static shared; do
        [ -x "$SU_BIN/${p}_$rt" ] && continue
        su_failed=$((su_failed + 1))
        row "cuda suite: build ${p}_$rt ($SU_ARCH)" FAIL "$(grep -m1 -i 'error' "$SU_BIN/${p}_$rt.build.log" | cut -c1-200)"
    done
done
if [ $su_failed = 0 ]; then
    row "cuda suite: build ($SU_ARCH)" PASS "$((${#SU_LIST[@]} * 2)) programs in $((SECONDS - su_t0)) s, nvcc $("$SU_NVCC" --version | sed -n 's/.*release \([0-9.]*\).*/\1/p')"
fi

SU_PROGRAMS=()
for p in "${SU_LIST[@]}"; do SU_PROGRAMS+=("${p}_static" "${p}_shared"); done

# One line saying why a run failed: its FAIL line, else the end of stderr.
su_why() {
    local out=$1 rc=$2 f
    f=$(grep -m1 '^FAIL' "$out")
    [ -n "$f" ] || f=$(tail -n2 "$out.err" | tr '\n' ' ' | cut -c1-200)
    [ "$rc" = 124 ] && f="timed out; $f"
    echo "exit $rc: $f"
}
# What the client's log says it does not remote yet.
su_missing() {
    local m
    m=$(grep -o '[A-Za-z0-9_]* is not remoted by this client yet' "$1" 2>/dev/null | cut -d' ' -f1 | sort -u | paste -sd' ')
    [ -n "$m" ] && echo "; not remoted: $m"
}
# Device printf must really have printed, natively, in the expected amounts.
su_extra_ok() {
    case $1 in
    printf_*) [ "$(grep -c '^device line' "$2")" = 340 ] && [ "$(grep -c '^block 0 thread' "$2")" = 8 ] &&
        [ "$(grep -c '^launch ' "$2")" = 5 ] ;;
    *) true ;;
    esac
}

for b in "${SU_PROGRAMS[@]}"; do
    [ -x "$SU_BIN/$b" ] || continue
    out=$PART_OUT/$b.driver.txt
    timeout 120 env LD_LIBRARY_PATH="$REAL_DIR" "$SU_BIN/$b" >"$out" 2>"$out.err"
    rc=$?
    if [ $rc = 0 ] && grep -q '^PASS' "$out" && su_extra_ok "$b" "$out"; then
        row "cuda suite $b, native driver" PASS "$(grep -v '^PASS' "$out" | tail -n1 | cut -c1-120)"
    elif [ $rc = 0 ] && grep -q '^PASS' "$out"; then
        row "cuda suite $b, native driver" FAIL "device printf lines missing ($(grep -c '^device line' "$out") of 340)"
        mv "$out" "$out.bad"
    else
        row "cuda suite $b, native driver" FAIL "$(su_why "$out" $rc)"
        mv "$out" "$out.bad"
    fi
done

# su_client B OUT [LEVEL]: runs B through the client (stdout to OUT, the
# client's log at LEVEL, default info, to OUT.client.log); sets su_rc.
su_client() {
    local b=$1 out=$2 level=${3:-info}
    rm -f "$out.client.log"
    timeout 60 env LD_LIBRARY_PATH="$CLIENT_DIR" TENSOR_FUSION_OPERATOR_CONNECTION_INFO="$INFO" \
        TF_ENABLE_LOG=1 TF_LOG_LEVEL=$level TF_LOG_PATH="$out.client.log" "$SU_BIN/$b" >"$out" 2>"$out.err"
    su_rc=$?
}

for net in native shmem; do
    log=$PART_OUT/worker-$net.log
    start_worker $net "$log" || { row "cuda suite, $net worker" FAIL "did not start"; continue; }
    su_timed_out=""
    for b in "${SU_PROGRAMS[@]}"; do
        [ -x "$SU_BIN/$b" ] || continue
        want=$PART_OUT/$b.driver.txt
        out=$PART_OUT/$b.via-$net.txt
        if [ ! -f "$want" ]; then
            row "cuda suite $b, via client $net" FAIL "not run: the native run failed"
            continue
        fi
        if [ "$su_timed_out" = "${b%_shared}_static" ]; then
            row "cuda suite $b, via client $net" FAIL "not run: ${b%_shared}_static timed out through the client"
            continue
        fi
        case $b in bystander*) continue ;; esac
        su_debug=""
        case $b in illegal_address*)
            # Another tenant working while this client faults.
            su_debug=debug
            timeout 60 env LD_LIBRARY_PATH="$CLIENT_DIR" TENSOR_FUSION_OPERATOR_CONNECTION_INFO="$INFO" \
                TF_ENABLE_LOG=1 TF_LOG_PATH="$PART_OUT/bystander-$b-$net.client.log" "$SU_BIN/bystander_static" 4 \
                >"$PART_OUT/bystander-$b-$net.txt" 2>"$PART_OUT/bystander-$b-$net.err" &
            su_by=$!
            sleep 1.5
            ;;
        esac
        su_client "$b" "$out" $su_debug
        if [ $su_rc = 0 ] && grep -q '^PASS' "$out" && diff -q "$want" "$out" >/dev/null; then
            row "cuda suite $b, via client $net" PASS "same output as native ($(wc -l <"$out") lines)"
        elif [ $su_rc = 0 ] && grep -q '^PASS' "$out"; then
            row "cuda suite $b, via client $net" FAIL "output differs: $(diff "$want" "$out" | grep '^[<>]' | head -2 | tr '\n' ' ' | cut -c1-200)$(su_missing "$out.client.log")"
        else
            row "cuda suite $b, via client $net" FAIL "$(su_why "$out" $su_rc)$(su_missing "$out.client.log")"
            [ $su_rc = 124 ] && su_timed_out=$b
        fi
        case $b in illegal_address*)
            # The fault must end only this client's session: the bystander
            # (another client, started before the fault) passes, and the
            # worker keeps serving (checked below by a new client).
            wait $su_by
            by_rc=$?
            if [ $by_rc = 0 ] && grep -q '^PASS' "$PART_OUT/bystander-$b-$net.txt"; then
                row "cuda suite: another client during the fault of $b, $net" PASS "bystander verified every round ($(cat "$PART_OUT/bystander-$b-$net.err" | tail -1))"
            else
                row "cuda suite: another client during the fault of $b, $net" FAIL "exit $by_rc: $(tail -1 "$PART_OUT/bystander-$b-$net.txt") $(tail -1 "$PART_OUT/bystander-$b-$net.err" | cut -c1-120)"
            fi
            if kill -0 "$WORKER_PID" 2>/dev/null && grep -q "other clients run in their own processes" "$log"; then
                row "cuda suite: worker after the fault of $b, $net" PASS "still serving; it said: $(grep -m1 -o 'faulted (CUDA error [0-9]*): this client.s GPU context is lost' "$log")"
            else
                row "cuda suite: worker after the fault of $b, $net" FAIL "$(kill -0 "$WORKER_PID" 2>/dev/null && echo 'no word of the fault in its log' || echo 'the worker exited'): $(tail -1 "$log" | cut -c1-160)"
                kill -0 "$WORKER_PID" 2>/dev/null || start_worker $net "$log.restarted"
            fi
            ;;
        esac
    done
    # The faulting client is gone: a new one must get native results.
    if [ -x "$SU_BIN/illegal_address_static" ] && [ -f "$PART_OUT/$SU_CHECK.driver.txt" ]; then
        out=$PART_OUT/$SU_CHECK.again-via-$net.txt
        su_client "$SU_CHECK" "$out"
        if [ $su_rc = 0 ] && diff -q "$PART_OUT/$SU_CHECK.driver.txt" "$out" >/dev/null; then
            row "cuda suite: a new client after the faulting one, $net" PASS "$SU_CHECK same output as native"
        else
            row "cuda suite: a new client after the faulting one, $net" FAIL "$SU_CHECK: $(su_why "$out" $su_rc)"
        fi
    fi
    stop_worker
    if grep -q "freeing a departed client's" "$log"; then
        row "cuda suite, $net worker cleanup" FAIL "$(grep -m1 "freeing a departed client's" "$log" | cut -c1-200)"
    else
        row "cuda suite, $net worker cleanup" PASS "$(grep -c "session ended" "$log") sessions ended, no failed release"
    fi
done
