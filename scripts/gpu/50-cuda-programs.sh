# Part: CUDA programs (issue 3, part B). Sourced by scripts/gpu-check.sh run.
#
# Builds tests/gpu/cuda here with nvcc: kernels.cu as a cubin, PTX and a
# fatbin for the driver-API program drv_vecadd.c (no cudart: modules,
# launches, streams and events on their own; also built with
# -DCUDA_API_PER_THREAD_DEFAULT_STREAM for the _ptsz/_ptds entry points),
# and the cudart programs with -cudart static and shared. Each runs natively,
# then through the client (LD_LIBRARY_PATH) against a worker over NATIVE and
# SHMEM; its stdout must equal the native one (timings go to stderr).
# cudart programs need cudart's start-up remoted (cuGetProcAddress, export
# tables): if the first one cannot even query the device through the client,
# the other cudart rows say so instead of waiting on each.
CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}
NVCC=$CUDA_HOME/bin/nvcc
SRC=.gpu/tests/cuda
BIN=$PART_OUT/bin
CUDART=(device_query vector_add matmul streams_events many_kernels memset ptds multithread cluster)

if [ ! -x "$NVCC" ]; then row "cuda programs: build" FAIL "no nvcc at $NVCC"; return 0; fi
if [ ! -d "$SRC" ]; then row "cuda programs: build" FAIL "no $SRC (run: scripts/gpu-check.sh prepare)"; return 0; fi
mkdir -p "$BIN"
cc_tag=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d ' .')
ARCH=sm_${cc_tag:-90}

# Builds run in parallel; each failure leaves its name in $BIN/failed.
build() {
    local out=$1
    shift
    ("$@" >"$BIN/$out.build.log" 2>&1 || echo "$out" >>"$BIN/failed") &
}
t0=$SECONDS
rm -f "$BIN/failed"
build kernels.cubin "$NVCC" -arch="$ARCH" -cubin -o "$BIN/kernels.cubin" "$SRC/kernels.cu"
build kernels.ptx "$NVCC" -arch="$ARCH" -ptx -o "$BIN/kernels.ptx" "$SRC/kernels.cu"
build kernels.fatbin "$NVCC" -arch="$ARCH" -fatbin -o "$BIN/kernels.fatbin" "$SRC/kernels.cu"
DRV=(-O2 -Wall -I"$CUDA_HOME/include" "$SRC/drv_vecadd.c" -L"$CUDA_HOME/lib64/stubs" -lcuda)
build drv_vecadd cc -o "$BIN/drv_vecadd" "${DRV[@]}"
build drv_vecadd_ptds cc -DCUDA_API_PER_THREAD_DEFAULT_STREAM -o "$BIN/drv_vecadd_ptds" "${DRV[@]}"
for p in "${CUDART[@]}"; do
    extra=()
    [ "$p" = ptds ] && extra=(--default-stream per-thread)
    build "${p}_static" "$NVCC" -arch="$ARCH" -O2 "${extra[@]}" -cudart static -o "$BIN/${p}_static" "$SRC/$p.cu"
    build "${p}_shared" "$NVCC" -arch="$ARCH" -O2 "${extra[@]}" -cudart shared \
        -Xlinker -rpath -Xlinker "$CUDA_HOME/lib64" -o "$BIN/${p}_shared" "$SRC/$p.cu"
done
wait
if [ -s "$BIN/failed" ]; then
    first=$(head -1 "$BIN/failed")
    row "cuda programs: build ($ARCH)" FAIL "failed: $(tr '\n' ' ' <"$BIN/failed")— $(grep -m1 -i error "$BIN/$first.build.log")"
else
    row "cuda programs: build ($ARCH)" PASS "$((SECONDS - t0)) s, nvcc $("$NVCC" --version | sed -n 's/.*release \([0-9.]*\).*/\1/p')"
fi

PROGRAMS=(drv_vecadd drv_vecadd_ptds)
for p in "${CUDART[@]}"; do PROGRAMS+=("${p}_static" "${p}_shared"); done
args_of() { case $1 in drv_*) echo "$BIN" ;; esac; }

# One line saying why a run failed: its FAIL line, else the end of stderr.
why() {
    local out=$1 rc=$2
    local f
    f=$(grep -m1 '^FAIL' "$out")
    [ -n "$f" ] || f=$(tail -n2 "$out.err" | tr '\n' ' ' | cut -c1-200)
    [ "$rc" = 124 ] && f="timed out; $f"
    echo "exit $rc: $f"
}

for p in "${PROGRAMS[@]}"; do
    [ -x "$BIN/$p" ] || continue
    out=$PART_OUT/$p.driver.txt
    # shellcheck disable=SC2046
    timeout 120 env LD_LIBRARY_PATH="$REAL_DIR" "$BIN/$p" $(args_of "$p") >"$out" 2>"$out.err"
    rc=$?
    if [ $rc = 0 ] && grep -q '^PASS' "$out"; then
        row "cuda $p, native driver" PASS "$(grep -v '^PASS' "$out" | tail -n1 | cut -c1-120)"
    else
        row "cuda $p, native driver" FAIL "$(why "$out" $rc)"
    fi
done

for net in native shmem; do
    log=$PART_OUT/worker-$net.log
    start_worker $net "$log" || { row "cuda programs, $net worker" FAIL "did not start"; continue; }
    cudart_ok=1
    cudart_why=""
    for p in "${PROGRAMS[@]}"; do
        [ -x "$BIN/$p" ] || continue
        want=$PART_OUT/$p.driver.txt
        out=$PART_OUT/$p.via-$net.txt
        if [ "${p#drv_}" = "$p" ] && [ $cudart_ok = 0 ]; then
            row "cuda $p, via client $net" FAIL "not run: $cudart_why"
            continue
        fi
        # shellcheck disable=SC2046
        timeout 60 env LD_LIBRARY_PATH="$CLIENT_DIR" TENSOR_FUSION_OPERATOR_CONNECTION_INFO="$INFO" \
            "$BIN/$p" $(args_of "$p") >"$out" 2>"$out.err"
        rc=$?
        if [ $rc = 0 ] && grep -q '^PASS' "$out" && diff -q "$want" "$out" >/dev/null; then
            row "cuda $p, via client $net" PASS "same output as native ($(wc -l <"$out") lines)"
        elif [ $rc = 0 ] && grep -q '^PASS' "$out"; then
            row "cuda $p, via client $net" FAIL "output differs: $(diff "$want" "$out" | grep '^[<>]' | head -2 | tr '\n' ' ' | cut -c1-200)"
        else
            row "cuda $p, via client $net" FAIL "$(why "$out" $rc)"
            if [ "$p" = device_query_static ]; then
                cudart_ok=0
                cudart_why="device_query_static failed through the client ($(why "$out" $rc | cut -c1-120))"
            fi
        fi
    done
    # SIGKILL a client holding streams, events, modules and a library while
    # it launches: the worker must release them all on the real driver.
    if [ -x "$BIN/drv_vecadd" ]; then
        hold=$PART_OUT/hold-$net.txt
        env LD_LIBRARY_PATH="$CLIENT_DIR" TENSOR_FUSION_OPERATOR_CONNECTION_INFO="$INFO" \
            "$BIN/drv_vecadd" "$BIN" hold >"$hold" 2>&1 &
        hpid=$!
        for _ in $(seq 100); do grep -q holding "$hold" && break; sleep 0.1; done
        sleep 1
        before=$(grep -c "released the session's" "$log")
        kill -9 $hpid
        wait $hpid 2>/dev/null
        for _ in $(seq 50); do [ "$(grep -c "released the session's" "$log")" -gt "$before" ] && break; sleep 0.1; done
        rel=$(grep "released the session's" "$log" | tail -n1)
        if grep -q holding "$hold" && [ "$(grep -c "released the session's" "$log")" -gt "$before" ] &&
            echo "$rel" | grep -q "streams=4 events=8 modules=4 libraries=1 failed=0"; then
            row "cuda killed client, $net" PASS "released: ${rel#*modules }"
        else
            row "cuda killed client, $net" FAIL "$(tail -n1 "$hold" | cut -c1-80); last release: ${rel#*modules }"
        fi
    fi
    stop_worker
    if grep -q "freeing a departed client's" "$log"; then
        row "cuda programs, $net worker cleanup" FAIL "$(grep -m1 "freeing a departed client's" "$log" | cut -c1-200)"
    else
        row "cuda programs, $net worker cleanup" PASS "$(grep -c "session ended" "$log") sessions ended, no failed release"
    fi
done
