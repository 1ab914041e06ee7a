# Part: native probes of private-table slots the client must reproduce
# (tests/gpu/private). Real driver only; the outputs go to the raw folder and
# their "key = value" lines into the summary, to settle how a slot behaves
# before the client implements it.
PP=$PART_OUT
if cc -O1 -o /tmp/pp-module-iter .gpu/tests/private/module_iter.c -ldl >"$PP/build.txt" 2>&1; then
    LD_LIBRARY_PATH=$REAL_DIR timeout 60 /tmp/pp-module-iter "$REAL_DIR/libcuda.so.1" >"$PP/module_iter.txt" 2>&1
    rc=$?
    row "private probe: 6e163fbe[7] module function iteration (native)" "$([ $rc = 0 ] && echo INFO || echo FAIL)" \
        "rc $rc; $(tr '\n' ';' <"$PP/module_iter.txt" | cut -c1-900)"
else
    row "private probe: build" FAIL "$(tail -2 "$PP/build.txt" | tr '\n' ' ')"
fi
