#!/usr/bin/env bash
# The whole GPU check in one call on the GPU machine (results: docs/compatibility.md).
#
# Here (build machine):   scripts/gpu-check.sh prepare      # release build, fills .gpu/
# There (device tool):    scripts/gpu-check.sh run [PART...] # with carry [".gpu"]
#
# "run" needs no Rust on the GPU machine. It runs every part in scripts/gpu/
# (or only those named, e.g. "10-slice"), in order. Each part compares a
# native run against runs through the client over NATIVE and SHMEM and adds
# rows to $OUT/summary.md; its raw outputs go to a work folder that ends up
# as $OUT/raw.tgz (the device tool returns at most 8 files). A part that
# cannot run says so in a row, never silently.
set -uo pipefail
cd "$(dirname "$0")/.."

prepare() {
    set -e
    cargo build --release --workspace
    cargo xtask dist --release
    rm -rf .gpu && mkdir -p .gpu
    cp -r dist .gpu/dist
    cp target/release/tf-bench target/release/tf-test-worker .gpu/
    cp -r crates/tf-test-worker/tests/c .gpu/c
    [ -d tests/gpu ] && cp -r tests/gpu .gpu/tests
    # Measuring instruments of the team (not part of the repo), for part 26.
    if [ -f ../shared/tools/cutrace/gen.py ]; then
        mkdir -p .gpu/cutrace
        cp ../shared/tools/cutrace/gen.py .gpu/cutrace/
        cp ../shared/reference/libcuda-580.159.04.exports.txt .gpu/cutrace/libcuda.exports.txt
    fi
    # Debug info is not needed there and the carry limit is 64 MiB.
    find .gpu -type f \( -name '*.so*' -o -perm -u+x \) -exec strip --strip-debug {} + 2>/dev/null || true
    du -sh .gpu
}

# Shared by the parts: paths, a worker launcher and the summary writer.
setup_env() {
    export OUT=${OUT:-$PWD/.gpu/out}
    WORK=/tmp/gpu-check
    rm -rf "$WORK" && mkdir -p "$OUT" "$WORK"
    REAL_DIR=/usr/local/nvidia/lib64
    [ -e "$REAL_DIR/libcuda.so.1" ] || REAL_DIR=$(dirname "$(ldconfig -p | awk '/libcuda.so.1 /{print $NF; exit}')")
    CLIENT_DIR=$PWD/.gpu/dist/tensor-fusion-client/linux
    WORKER=$PWD/.gpu/dist/tensor-fusion-worker
    SUMMARY=$WORK/summary.md
    export REAL_DIR CLIENT_DIR WORKER SUMMARY WORK
}

row() { printf '| %s | %s | %s |\n' "$1" "$2" "$3" | tee -a "$SUMMARY"; }

# start_worker native|shmem LOG [ENV=VALUE...]: starts a real worker in the
# background, sets WORKER_PID and INFO (the client's connection info).
start_worker() {
    local net=$1 log=$2
    shift 2
    if [ "$net" = native ]; then
        env TF_ENABLE_LOG=1 "$@" setsid "$WORKER" -n native -p 23456 >"$log" 2>&1 &
        INFO=native+127.0.0.1+23456+0
    else
        env TF_ENABLE_LOG=1 "$@" setsid "$WORKER" -n shmem -m /tf_gpu_check -M 256 >"$log" 2>&1 &
        INFO=shmem+/dev/shm/tf_gpu_check+256+0
    fi
    WORKER_PID=$!
    for _ in $(seq 100); do grep -q listening "$log" && return 0; sleep 0.1; done
    echo "worker did not start: $(tail -3 "$log")"
    return 1
}

stop_worker() {
    kill "$WORKER_PID" 2>/dev/null
    wait "$WORKER_PID" 2>/dev/null
    rm -f /dev/shm/tf_gpu_check
}

# through_client [path|preload] CMD...: runs CMD with the client injected
# through LD_LIBRARY_PATH (default) or the guide's LD_PRELOAD line.
through_client() {
    [ "$1" = path ] && shift
    if [ "$1" = preload ]; then
        shift
        env LD_PRELOAD="$CLIENT_DIR/libteleport.so:$CLIENT_DIR/libcuda.so:$CLIENT_DIR/libnvidia-ml.so" \
            TENSOR_FUSION_OPERATOR_CONNECTION_INFO="$INFO" "$@"
    else
        env LD_LIBRARY_PATH="$CLIENT_DIR" TENSOR_FUSION_OPERATOR_CONNECTION_INFO="$INFO" "$@"
    fi
}

run() {
    setup_env
    {
        echo "# GPU check $(date -u +%Y-%m-%dT%H:%MZ)"
        echo
        nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
        echo "real driver: $REAL_DIR"
        echo
        echo "| check | result | detail |"
        echo "|---|---|---|"
    } | tee "$SUMMARY"
    local parts=("$@")
    [ ${#parts[@]} -gt 0 ] || parts=($(ls scripts/gpu/ | sed -n 's/\.sh$//p'))
    for p in "${parts[@]}"; do
        mkdir -p "$WORK/$p"
        PART_OUT=$WORK/$p
        export PART_OUT
        # shellcheck disable=SC1090
        source "scripts/gpu/$p.sh" || row "$p" FAIL "part exited with an error"
    done
    cp "$SUMMARY" "$OUT/summary.md"
    tar czf "$OUT/raw.tgz" -C "$WORK" .
}

case "${1:-}" in
    prepare) prepare ;;
    run) shift; run "$@" ;;
    *) echo "usage: $0 prepare | run [PART...]" >&2; exit 2 ;;
esac
