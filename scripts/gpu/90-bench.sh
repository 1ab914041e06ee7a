# Part: transport benchmark with the real worker and a native baseline.
{
    echo
    echo '```'
    .gpu/tf-bench --client-dir "$CLIENT_DIR" --worker "$WORKER" --native-lib-dir "$REAL_DIR" --iters 20000 --mib 256 2>&1
    echo '```'
} | tee "$PART_OUT/bench.txt" >>"$SUMMARY"
