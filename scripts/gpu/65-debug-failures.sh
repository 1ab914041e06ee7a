# Part: the probes that still fail through the client (cuFFT, JAX), with
# debug logs on both sides; rows list the failing calls each side saw.
O=$PART_OUT
dbg() {
    local name=$1 code=$2
    start_worker native "$O/worker-$name.log" TF_LOG_LEVEL=debug || return 0
    through_client path env TF_ENABLE_LOG=1 TF_LOG_LEVEL=debug TF_LOG_PATH="$O/$name.client.log" \
        timeout 120 python3 -c "$code" >"$O/$name.txt" 2>&1
    local st=$?
    stop_worker
    local w c
    w=$(grep -B1 'call failed' "$O/worker-$name.log" | grep -o 'op=[A-Za-z0-9_]*\|status=[0-9]*' | paste -sd' ' | cut -c1-300)
    c=$(grep -o 'status=[0-9]* at=[^ ]*' "$O/$name.client.log" | sort | uniq -c | sort -rn | head -8 | tr -s ' ' | tr '\n' ';')
    row "debug $name" "$([ $st = 0 ] && echo PASS || echo FAIL)" "$(tail -1 "$O/$name.txt" | cut -c1-100); worker: ${w:-none}; client: $c"
    grep -n 'call failed' -B3 "$O/worker-$name.log" | head -60 >"$O/$name-worker-failures.txt" || true
}
# cuFFT passes since session 2; JAX is the framework left.
dbg jax "$(cat .gpu/tests/frameworks/jax_check.py)"

