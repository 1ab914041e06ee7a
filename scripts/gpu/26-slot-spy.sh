# Part: native spy on the private-table slots cuDNN calls while building
# attention plans (da9151d3, 1734dc26), which the client does not implement
# yet (issue 4 speed: through the client cuDNN recompiles ~10x more). Uses the
# counting pass-through libcuda of ../shared/tools/cutrace (copied into .gpu by
# `prepare` when that folder exists) with tests/gpu/private/slot_spy.c linked
# in: every call of those slots is logged with its arguments, the memory they
# point to before and after, and the return value (raw spy.* files).
O=$PART_OUT
CT=.gpu/cutrace
if [ ! -f "$CT/gen.py" ]; then
    row "slot spy" FAIL "no cutrace in .gpu (prepare copies ../shared/tools/cutrace)"
    return 0
fi
mkdir -p "$O/shim"
cp "$CT/gen.py" "$O/shim/"
ROOT=$PWD
if (cd "$O/shim" && python3 gen.py "$ROOT/$CT/libcuda.exports.txt") >"$O/build.txt" 2>&1 &&
    sed -i 's|^  note(b); if (r == 0 \&\& t \&\& \*t \&\& !keep|  { extern int tf_spy(const void**, const unsigned char*); if (r == 0 \&\& t \&\& *t \&\& tf_spy(t, id)) { note(b); return r; } }\n  note(b); if (r == 0 \&\& t \&\& *t \&\& !keep|' "$O/shim/shim.c" &&
    grep -q tf_spy "$O/shim/shim.c" &&
    gcc -O2 -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$O/shim/libcuda.so.1" "$O/shim/shim.c" "$O/shim/shim.S" \
        .gpu/tests/private/slot_spy.c -ldl -lpthread >>"$O/build.txt" 2>&1; then
    ln -sf libcuda.so.1 "$O/shim/libcuda.so"
    env CUTRACE_REAL="$REAL_DIR/libcuda.so.1" CUTRACE_OUT="$O/cutrace" TF_SPY_OUT="$O/spy" \
        LD_LIBRARY_PATH="$O/shim:$REAL_DIR" TRITON_LIBCUDA_PATH="$O/shim" \
        timeout 150 python3 .gpu/tests/torch/sdpa_probe.py spin 12 >"$O/spin.txt" 2>&1
    rc=$?
    f=$(ls "$O"/spy.* 2>/dev/null | head -1)
    row "slot spy (native, decode with growing prompts)" "$([ $rc = 0 ] && echo INFO || echo FAIL)" \
        "exit $rc, $(grep -m1 rounds "$O/spin.txt"); $(grep -c '^call' "$f" 2>/dev/null) calls logged; $(grep '^table' "$f" 2>/dev/null | tr '\n' ';' | cut -c1-300)"
    row "slot spy: first calls" INFO "$(grep -E '^call|^  ret' "$f" 2>/dev/null | head -16 | tr -s ' ' | tr '\n' ';' | cut -c1-1500)"
else
    row "slot spy: build" FAIL "$(tail -3 "$O/build.txt" | tr '\n' ' ')"
fi
