# Part: the CUDA runtime through the client (issue 3 part A).
# tests/gpu/cudart/cudart_slice.cu (no kernels) is built with nvcc twice,
# `-cudart static` and `-cudart shared`, and each build runs in two modes:
# `basic` (device query, cudaMalloc/Memcpy/Memset/Free, synchronization) and
# `extra` (pinned memory, pointer attributes, flags, limits, cudaDeviceReset).
# Natively first, then through the client against a worker on this host over
# NATIVE (library path and the guide's LD_PRELOAD line) and SHMEM; the output
# must be identical to the native one, line for line (the runtime version
# line excepted). Client logs are at debug level: every cuGetProcAddress and
# cuGetExportTable answered, every export-table slot called (with counts at
# exit), and every function the client does not remote yet.
CR=$PART_OUT
CR_NVCC=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)
if [ ! -x "$CR_NVCC" ]; then
    row "cudart: nvcc" FAIL "nvcc not found (PATH, /usr/local/cuda/bin)"
    return 0
fi
CR_LIB=$(cd "$(dirname "$CR_NVCC")/.." && pwd)/lib64
for cr_rt in static shared; do
    if ! "$CR_NVCC" -O2 -cudart $cr_rt -Xlinker -rpath,"$CR_LIB" -o /tmp/cudart_slice_$cr_rt \
        .gpu/tests/cudart/cudart_slice.cu >"$CR/build-$cr_rt.txt" 2>&1; then
        row "cudart: nvcc -cudart $cr_rt" FAIL "$(tail -2 "$CR/build-$cr_rt.txt" | tr '\n' ' ')"
    fi
done

# cr_compare WANT GOT: same lines, the runtime version excepted.
cr_compare() { diff <(grep -v '^runtime ' "$1") <(grep -v '^runtime ' "$2") >/dev/null; }

# cr_detail LOG OUT: what a failed client run says, and what it asked for
# that is not implemented.
cr_detail() {
    local missing slots
    missing=$(grep -o '[A-Za-z0-9_]* is not remoted by this client yet' "$1" 2>/dev/null | cut -d' ' -f1 | sort -u | tr '\n' ' ')
    slots=$(grep -o 'export table [^ ]* ([0-9a-f]*) slot [0-9]* is not implemented' "$1" 2>/dev/null | sort -u | sed 's/ is not implemented//' | tr '\n' ';')
    echo "$(grep -h 'FAIL' "$2" | head -1) not remoted: ${missing:-none}; unimplemented slots: ${slots:-none}"
}

for cr_rt in static shared; do
    [ -x /tmp/cudart_slice_$cr_rt ] || continue
    for cr_mode in basic extra; do
        LD_LIBRARY_PATH=$REAL_DIR timeout 180 /tmp/cudart_slice_$cr_rt $cr_mode >"$CR/native-$cr_rt-$cr_mode.txt" 2>&1
        row "cudart $cr_rt $cr_mode, native driver" "$([ $? = 0 ] && echo PASS || echo FAIL)" "$(tail -1 "$CR/native-$cr_rt-$cr_mode.txt")"
    done
done

for cr_net in native shmem; do
    start_worker $cr_net "$CR/worker-$cr_net.log" || { row "cudart, $cr_net worker" FAIL "did not start"; continue; }
    cr_styles="path"
    [ $cr_net = native ] && cr_styles="path preload"
    for cr_style in $cr_styles; do
        for cr_rt in static shared; do
            [ -x /tmp/cudart_slice_$cr_rt ] || continue
            for cr_mode in basic extra; do
                cr_name=$cr_net-$cr_style-$cr_rt-$cr_mode
                rm -f "$CR/client-$cr_name.log"
                through_client $cr_style env TF_ENABLE_LOG=1 TF_LOG_LEVEL=debug TF_LOG_PATH="$CR/client-$cr_name.log" \
                    timeout 180 /tmp/cudart_slice_$cr_rt $cr_mode >"$CR/out-$cr_name.txt" 2>&1
                cr_rc=$?
                if [ $cr_rc = 0 ] && cr_compare "$CR/native-$cr_rt-$cr_mode.txt" "$CR/out-$cr_name.txt"; then
                    row "cudart $cr_rt $cr_mode, $cr_net, $cr_style" PASS "$(tail -1 "$CR/out-$cr_name.txt"), identical to native"
                else
                    row "cudart $cr_rt $cr_mode, $cr_net, $cr_style" FAIL "exit $cr_rc: $(cr_detail "$CR/client-$cr_name.log" "$CR/out-$cr_name.txt")"
                fi
            done
        done
    done
    stop_worker
done

# What the runtime asked of the client, over all runs (for the next step).
{
    echo "# export tables requested (GUID, answer)"
    grep -ho 'cuGetExportTable guid=[0-9a-f]* answer=[A-Za-z]*' "$CR"/client-*.log 2>/dev/null | sort | uniq -c
    echo "# export table slot calls (last run of each kind)"
    grep -h 'export table slot calls' "$CR"/client-native-path-*.log 2>/dev/null | sed 's/^[^]]*] //' | sort | uniq -c
    echo "# not remoted yet"
    grep -ho '[A-Za-z0-9_]* is not remoted by this client yet' "$CR"/client-*.log 2>/dev/null | sort | uniq -c
    echo "# slots not implemented"
    grep -ho 'export table .* is not implemented' "$CR"/client-*.log 2>/dev/null | sort | uniq -c
    echo "# distinct cuGetProcAddress requests"
    grep -ho 'cuGetProcAddress symbol=[^ ]* version=[0-9-]* flags=[0-9]* answer=[^ ]*' "$CR"/client-*.log 2>/dev/null | sort -u | wc -l
} >"$CR/asked.txt"
row "cudart: what the runtime asked for" PASS "asked.txt: $(grep -c 'is not remoted' "$CR/asked.txt") functions not remoted yet, $(grep -c 'is not implemented' "$CR/asked.txt") slots not implemented"
