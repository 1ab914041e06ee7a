# Part: does a kernel fault in one CUDA context poison the process's other
# contexts? Measured natively (no client), it decides how the worker isolates
# tenants: contexts per session if the driver keeps them apart, otherwise a
# process per session (issue 3). Also prints a context's cost.
O=$PART_OUT
T=.gpu/tests/isolation
if nvcc -fatbin -arch=native -o "$O/kern.fatbin" "$T/kern.cu" >"$O/build.txt" 2>&1 &&
    nvcc -o "$O/ctx_fault" "$T/ctx_fault.c" -lcuda -lpthread >>"$O/build.txt" 2>&1; then
    for mode in created primary; do
        env LD_LIBRARY_PATH="$REAL_DIR" timeout 60 "$O/ctx_fault" "$O/kern.fatbin" $mode >"$O/$mode.txt" 2>&1
        st=$?
        row "isolation ($mode faults): bystander context after the fault" \
            "$(grep -q 'bystander ok after the fault: yes' "$O/$mode.txt" && echo ISOLATED || echo POISONED)" \
            "exit $st; $(grep -E 'after the fault|during the fault|new context ok' "$O/$mode.txt" | tr -s ' ' | tr '\n' ';' | cut -c1-400)"
        row "isolation ($mode): context cost" INFO "$(grep -E 'context cost|alternating' "$O/$mode.txt" | tr '\n' ';')"
    done
else
    row "isolation probe" FAIL "build failed: $(tail -2 "$O/build.txt" | tr '\n' ' ')"
fi
