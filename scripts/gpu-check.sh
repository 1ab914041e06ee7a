#!/usr/bin/env bash
# The whole GPU check in one call on the GPU machine (see docs/compatibility.md).
#
# Here (build machine):   scripts/gpu-check.sh prepare      # builds release, fills .gpu/
# There (device tool):    run command "scripts/gpu-check.sh run" with carry [".gpu"]
#
# "run" needs no Rust: it compiles the C test program with the host's cc,
# runs it natively against the real driver, then through the client against
# the real tensor-fusion-worker over NATIVE and SHMEM (both injection styles,
# 4 clients at once), checks nvidia-smi shows the worker with its memory,
# runs the transport benchmark with a native baseline, and writes a summary
# to $OUT (or .gpu/out when OUT is unset).
set -uo pipefail
cd "$(dirname "$0")/.."

prepare() {
    set -e
    cargo build --release --workspace
    cargo xtask dist --release
    rm -rf .gpu && mkdir -p .gpu
    cp -r dist .gpu/dist
    cp target/release/tf-bench target/release/tf-test-worker .gpu/
    cp crates/tf-test-worker/tests/c/slice.c .gpu/
    du -sh .gpu
}

run() {
    local out=${OUT:-.gpu/out}
    mkdir -p "$out"
    local real=/usr/local/nvidia/lib64
    [ -e "$real/libcuda.so.1" ] || real=$(dirname "$(ldconfig -p | awk '/libcuda.so.1 /{print $NF; exit}')")
    local client=$PWD/.gpu/dist/tensor-fusion-client/linux
    local worker=$PWD/.gpu/dist/tensor-fusion-worker
    local summary=$out/summary.md
    : >"$summary"
    row() { printf '| %s | %s | %s |\n' "$1" "$2" "$3" | tee -a "$summary"; }
    {
        echo "# GPU check $(date -u +%Y-%m-%dT%H:%MZ)"
        nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
        echo "real driver dir: $real"
        echo
        echo "| check | result | detail |"
        echo "|---|---|---|"
    } | tee -a "$summary"
    cc -O1 -o /tmp/slice .gpu/slice.c -ldl || { row build FAIL "cc slice.c"; return 1; }

    # Native baseline: the same program on the real driver.
    SLICE_NATIVE=1 LD_LIBRARY_PATH=$real /tmp/slice full 268435456 42 >"$out/native.txt" 2>&1
    local native_rc=$?
    row "slice, native driver" "$([ $native_rc = 0 ] && echo PASS || echo FAIL)" "$(tail -1 "$out/native.txt")"
    local want; want=$(tail -1 "$out/native.txt")

    for net in native shmem; do
        local log=$out/worker-$net.log info
        if [ $net = native ]; then
            TF_ENABLE_LOG=1 setsid "$worker" -n native -p 23456 >"$log" 2>&1 &
            info=native+127.0.0.1+23456+0
        else
            TF_ENABLE_LOG=1 setsid "$worker" -n shmem -m /tf_gpu_check -M 256 >"$log" 2>&1 &
            info=shmem+/dev/shm/tf_gpu_check+256+0
        fi
        local wpid=$!
        for _ in $(seq 100); do grep -q listening "$log" && break; sleep 0.1; done
        for style in path preload; do
            local pids=() ok=1
            for i in 1 2 3 4; do
                if [ $style = path ]; then
                    env LD_LIBRARY_PATH=$client TENSOR_FUSION_OPERATOR_CONNECTION_INFO=$info \
                        /tmp/slice full 268435456 42 >"$out/c-$net-$style-$i.txt" 2>&1 &
                else
                    env LD_PRELOAD=$client/libteleport.so:$client/libcuda.so:$client/libnvidia-ml.so \
                        TENSOR_FUSION_OPERATOR_CONNECTION_INFO=$info \
                        /tmp/slice full 268435456 42 >"$out/c-$net-$style-$i.txt" 2>&1 &
                fi
                pids+=($!)
            done
            for p in "${pids[@]}"; do wait "$p" || ok=0; done
            local got; got=$(tail -q -n1 "$out"/c-$net-$style-*.txt | sort -u)
            if [ $ok = 1 ] && [ "$got" = "$want" ]; then
                row "slice ×4, $net, $style" PASS "$got"
            else
                row "slice ×4, $net, $style" FAIL "$(tail -q -n1 "$out"/c-$net-$style-*.txt | tr '\n' ' ')"
            fi
        done
        if [ $net = native ]; then
            # The host's nvidia-smi shows the worker holding a client's memory.
            env LD_LIBRARY_PATH=$client TENSOR_FUSION_OPERATOR_CONNECTION_INFO=$info \
                /tmp/slice hold 1073741824 >"$out/hold.txt" 2>&1 &
            local hpid=$!
            sleep 3
            nvidia-smi >"$out/nvidia-smi.txt" 2>&1
            kill -9 $hpid; wait $hpid 2>/dev/null
            if grep -q tensor-fusion-worker "$out/nvidia-smi.txt"; then
                row "nvidia-smi shows the worker" PASS "$(grep tensor-fusion-worker "$out/nvidia-smi.txt" | tr -s ' ' | head -1)"
            else
                row "nvidia-smi shows the worker" FAIL "see nvidia-smi.txt"
            fi
        fi
        kill $wpid; wait $wpid 2>/dev/null
    done
    rm -f /dev/shm/tf_gpu_check

    echo | tee -a "$summary"
    echo '```' >>"$summary"
    .gpu/tf-bench --client-dir "$client" --worker "$worker" --native-lib-dir "$real" --iters 20000 --mib 256 2>&1 | tee -a "$summary"
    echo '```' >>"$summary"
}

case "${1:-}" in
    prepare) prepare ;;
    run) run ;;
    *) echo "usage: $0 prepare|run" >&2; exit 2 ;;
esac
