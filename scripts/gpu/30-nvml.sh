# Part: NVML through the client (issue 5). nvidia-smi (plain, -q and
# --query-gpu), a pynvml script (tests/gpu/nvml/pynvml_check.py) and
# PyTorch's NVML-based device count run natively, then through the client
# against a worker started with TF_CUDA_MEMORY_LIMIT=8192: the client must
# show the same GPU with 8192 MiB total. The client runs with only our
# libraries on the library path; where that does not reach our NVML (a
# program may dlopen NVML by absolute path or from its RUNPATH), the guide's
# LD_PRELOAD line is tried too and the rows say which style worked.
# Outputs: native-*, *-path.*, *-preload.* and the client logs (*.client.log,
# which list every NVML function and export-table slot not remoted yet).
NV_LIMIT=8192
NV_ALLOC=256
NV_PY=.gpu/tests/nvml/pynvml_check.py
NV_QUERY=name,uuid,memory.total,memory.used,utilization.gpu
NV_TORCH='import os; os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"]="1"; import torch; print(torch.cuda.device_count())'
O=$PART_OUT

# nv_native NAME CMD...: CMD on the real driver, output in $O/native-NAME.txt.
nv_native() {
    local name=$1
    shift
    env LD_LIBRARY_PATH="$REAL_DIR" timeout 120 "$@" >"$O/native-$name.txt" 2>&1
}

# nv_client STYLE NAME CMD...: CMD through the client (STYLE path|preload),
# output in $O/NAME-STYLE.txt, client log in $O/NAME-STYLE.client.log.
nv_client() {
    local style=$1 name=$2
    shift 2
    rm -f "$O/$name-$style.client.log"
    through_client "$style" env TF_ENABLE_LOG=1 TF_LOG_LEVEL=info \
        TF_LOG_PATH="$O/$name-$style.client.log" timeout 120 "$@" >"$O/$name-$style.txt" 2>&1
}

# nv_ours NAME STYLE: did that run load our client (it logs its connection)?
nv_ours() { grep -q "connected" "$O/$1-$2.client.log" 2>/dev/null; }

# nv_loaded STYLE: every libnvidia-ml nvidia-smi loads in that style (two
# paths mean it also opened the real one, e.g. by absolute path).
nv_loaded() {
    through_client "$1" env LD_DEBUG=libs timeout 60 nvidia-smi -L >"$O/ld-debug-$1.txt" 2>&1
    grep -o 'calling init: [^ ]*libnvidia-ml[^ ]*' "$O/ld-debug-$1.txt" | sed 's/calling init: //' |
        sort -u | tr '\n' ' '
}

# nv_fb_total FILE: "Total" of the "FB Memory Usage" section of nvidia-smi -q.
nv_fb_total() { awk '/FB Memory Usage/{f=1} f&&/Total/{sub(/.*: */,""); print; exit}' "$1"; }

if ! command -v nvidia-smi >/dev/null; then
    row "nvml: nvidia-smi" FAIL "nvidia-smi not found on the GPU machine"
fi
nv_have_pynvml=1
python3 -c 'import pynvml' 2>/dev/null || { nv_have_pynvml=0; row "nvml: pynvml" FAIL "python3 cannot import pynvml (nvidia-ml-py)"; }

# --- Native baseline.
nv_native smi nvidia-smi
nv_native smi-q nvidia-smi -q
nv_native query nvidia-smi --query-gpu=$NV_QUERY --format=csv
[ $nv_have_pynvml = 1 ] && nv_native pynvml python3 "$NV_PY" collect "$O/native-pynvml.json" --alloc-mib $NV_ALLOC
nv_native torch python3 -c "$NV_TORCH"
nv_name=$(sed -n 2p "$O/native-query.txt" | cut -d, -f1)
nv_uuid=$(sed -n 2p "$O/native-query.txt" | cut -d, -f2 | tr -d ' ')
row "nvml: native baseline" "$([ -n "$nv_uuid" ] && echo PASS || echo FAIL)" "$nv_name $nv_uuid, torch: $(tail -1 "$O/native-torch.txt")"

if ! start_worker native "$O/worker-native.log" TF_CUDA_MEMORY_LIMIT=$NV_LIMIT; then
    row "nvml: worker (native, TF_CUDA_MEMORY_LIMIT=$NV_LIMIT)" FAIL "did not start: $(tail -1 "$O/worker-native.log")"
    return 0
fi

# --- nvidia-smi: which style reaches our NVML.
nv_style=""
for style in path preload; do
    lib=$(nv_loaded $style)
    nv_client $style smi nvidia-smi
    st=$?
    if ! nv_ours smi $style; then
        row "nvml: nvidia-smi ($style)" FAIL "did not load our NVML (exit $st; loaded: ${lib:-unknown}, see ld-debug-$style.txt)"
    elif [ $st != 0 ]; then
        row "nvml: nvidia-smi ($style)" FAIL "exit $st: $(tail -1 "$O/smi-$style.txt")"
    elif ! grep -q "${NV_LIMIT}MiB" "$O/smi-$style.txt"; then
        row "nvml: nvidia-smi ($style)" FAIL "no ${NV_LIMIT}MiB total in the table (see smi-$style.txt)"
    else
        row "nvml: nvidia-smi ($style)" PASS "${NV_LIMIT}MiB total; NVML loaded from ${lib:-?}"
        [ -z "$nv_style" ] && nv_style=$style
    fi
done
[ -n "$nv_style" ] || nv_style=path

# --- nvidia-smi -q and --query-gpu, in the style that worked.
nv_client $nv_style smi-q nvidia-smi -q
st=$?
fb=$(nv_fb_total "$O/smi-q-$nv_style.txt")
if [ $st = 0 ] && [ "$fb" = "$NV_LIMIT MiB" ]; then
    row "nvml: nvidia-smi -q ($nv_style)" PASS "FB Memory Usage Total: $fb (native: $(nv_fb_total "$O/native-smi-q.txt"))"
else
    row "nvml: nvidia-smi -q ($nv_style)" FAIL "exit $st, FB Memory Usage Total: '${fb}', want '$NV_LIMIT MiB'"
fi
nv_client $nv_style query nvidia-smi --query-gpu=$NV_QUERY --format=csv
st=$?
line=$(sed -n 2p "$O/query-$nv_style.txt")
c_name=$(echo "$line" | cut -d, -f1)
c_uuid=$(echo "$line" | cut -d, -f2 | tr -d ' ')
c_total=$(echo "$line" | cut -d, -f3 | sed 's/^ *//')
c_util=$(echo "$line" | cut -d, -f5 | sed 's/^ *//')
if [ $st = 0 ] && [ "$c_name" = "$nv_name" ] && [ "$c_uuid" = "$nv_uuid" ] && [ "$c_total" = "$NV_LIMIT MiB" ] &&
    echo "$c_util" | grep -Eq '^[0-9]+ %$'; then
    row "nvml: nvidia-smi --query-gpu ($nv_style)" PASS "$line"
else
    row "nvml: nvidia-smi --query-gpu ($nv_style)" FAIL "exit $st: '$line' (want name/uuid as native, memory.total $NV_LIMIT MiB, a utilization)"
fi
# What nvidia-smi asked for that the client does not remote yet (for the next step).
missing=$(cat "$O"/smi*-"$nv_style".client.log 2>/dev/null | grep -o '[A-Za-z0-9_]* is not remoted by this client yet' |
    awk '{print $1}' | sort -u)
slots=$(cat "$O"/smi*-"$nv_style".client.log 2>/dev/null | grep -o 'slot [0-9]* of NVML' | awk '{print $2}' | sort -nu | tr '\n' ' ')
row "nvml: nvidia-smi calls not remoted yet" INFO "$(echo "$missing" | grep -c . ) functions: $(echo $missing | cut -c1-400); export-table slots: ${slots:-none}"

# --- Experiment: what nvidia-smi needs from the unknown export-table slots
# (TF_NVML_EXPORT_SLOTS: unsupported is the default run above).
for mode in success null; do
    nv_client $nv_style smi-$mode env TF_NVML_EXPORT_SLOTS=$mode nvidia-smi
    st=$?
    nv_client $nv_style smiq-$mode env TF_NVML_EXPORT_SLOTS=$mode nvidia-smi -q
    qst=$?
    fb=$(nv_fb_total "$O/smiq-$mode-$nv_style.txt")
    row "nvml: nvidia-smi with export slots=$mode" "$([ $st = 0 ] && grep -q "${NV_LIMIT}MiB" "$O/smi-$mode-$nv_style.txt" && echo PASS || echo FAIL)" \
        "exit $st: $(grep -m1 -E "${NV_LIMIT}MiB|rror" "$O/smi-$mode-$nv_style.txt" | tr -s ' ' | cut -c1-160); -q exit $qst, FB total '$fb'"
done

# --- pynvml: every function of issue 5, compared with the native run.
if [ $nv_have_pynvml = 1 ]; then
    for style in path preload; do
        nv_client $style pynvml python3 "$NV_PY" collect "$O/pynvml-$style.json" --alloc-mib $NV_ALLOC
        st=$?
        if [ $st = 0 ] && nv_ours pynvml $style; then
            python3 "$NV_PY" compare "$O/native-pynvml.json" "$O/pynvml-$style.json" \
                --total-mib $NV_LIMIT --alloc-mib $NV_ALLOC >"$O/pynvml-compare-$style.txt" 2>&1
            cst=$?
            row "nvml: pynvml ($style)" "$([ $cst = 0 ] && echo PASS || echo FAIL)" \
                "$(tail -1 "$O/pynvml-compare-$style.txt"); $(grep DIFF "$O/pynvml-compare-$style.txt" | head -3 | tr '\n' ' ' | cut -c1-300)"
            break
        fi
        row "nvml: pynvml ($style)" FAIL "exit $st$(nv_ours pynvml $style || echo ', our NVML not loaded'): $(tail -1 "$O/pynvml-$style.txt")"
    done
fi

# --- PyTorch's NVML-based device count.
for style in path preload; do
    nv_client $style torch python3 -c "$NV_TORCH"
    st=$?
    got=$(tail -1 "$O/torch-$style.txt")
    want=$(tail -1 "$O/native-torch.txt")
    if [ $st = 0 ] && [ "$got" = "$want" ] && [ "$got" -ge 1 ] 2>/dev/null && nv_ours torch $style; then
        row "nvml: torch.cuda.device_count() with PYTORCH_NVML_BASED_CUDA_CHECK=1 ($style)" PASS "$got (native $want)"
        break
    fi
    row "nvml: torch.cuda.device_count() with PYTORCH_NVML_BASED_CUDA_CHECK=1 ($style)" FAIL \
        "exit $st: '$got' (native '$want')$(nv_ours torch $style || echo ', our NVML not loaded')"
done
stop_worker

# --- The same pynvml comparison over SHMEM.
if [ $nv_have_pynvml = 1 ]; then
    if start_worker shmem "$O/worker-shmem.log" TF_CUDA_MEMORY_LIMIT=$NV_LIMIT; then
        nv_client path pynvml-shmem python3 "$NV_PY" collect "$O/pynvml-shmem.json" --alloc-mib $NV_ALLOC
        python3 "$NV_PY" compare "$O/native-pynvml.json" "$O/pynvml-shmem.json" \
            --total-mib $NV_LIMIT --alloc-mib $NV_ALLOC >"$O/pynvml-compare-shmem.txt" 2>&1
        cst=$?
        row "nvml: pynvml over SHMEM (path)" "$([ $cst = 0 ] && echo PASS || echo FAIL)" \
            "$(tail -1 "$O/pynvml-compare-shmem.txt"); $(grep DIFF "$O/pynvml-compare-shmem.txt" | head -3 | tr '\n' ' ' | cut -c1-300)"
        stop_worker
    else
        row "nvml: worker (shmem)" FAIL "did not start: $(tail -1 "$O/worker-shmem.log")"
    fi
fi
