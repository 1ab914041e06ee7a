# Part: cuGetProcAddress and the private export tables (issue 3 part A).
#
# 1. Sweeps the real driver's cuGetProcAddress_v2 (tests/gpu/procaddr/sweep.c):
#    $PART_OUT/procaddr.tsv. Bring it back, then
#      cargo xtask procaddr import procaddr.tsv && cargo xtask codegen
#    to replace the provisional table with the driver's own answers.
# 2. Sweeps our client the same way, with the same names, against a worker on
#    this host, and compares answer by answer (procaddr-diff.txt).
# 3. Probes the private tables and a few conventions (probe_tables.c) on the
#    real driver and through the client: the "=" lines must agree
#    (probe-diff.txt); the integrity answers of the real driver must match
#    the HMAC-MD2 computation (tests/c/tf_integrity.h) the client uses.
# Client logs (debug level: every lookup and export-table slot) are kept.
PA=$PART_OUT
PA_SRC=.gpu/tests/procaddr

cc -O1 -o /tmp/pa-sweep "$PA_SRC/sweep.c" -ldl >"$PA/build.txt" 2>&1 &&
    cc -O1 -I .gpu/c -o /tmp/pa-probe "$PA_SRC/probe_tables.c" -ldl -lpthread >>"$PA/build.txt" 2>&1 ||
    { row "procaddr: build" FAIL "$(tail -3 "$PA/build.txt" | tr '\n' ' ')"; return 0; }

# --- 1. The real driver.
LD_LIBRARY_PATH=$REAL_DIR timeout 300 /tmp/pa-sweep "$REAL_DIR/libcuda.so.1" --names-out "$PA/names.txt" \
    >"$PA/procaddr.tsv" 2>"$PA/sweep.err"
if [ $? = 0 ] && grep -q '^@driver-version' "$PA/procaddr.tsv"; then
    row "procaddr: sweep of the real driver" PASS "$(cat "$PA/sweep.err"); $(grep -c '^#.*probe' "$PA/procaddr.tsv") probes; import procaddr.tsv"
else
    row "procaddr: sweep of the real driver" FAIL "$(tail -2 "$PA/sweep.err" | tr '\n' ' ')"
fi
LD_LIBRARY_PATH=$REAL_DIR timeout 120 /tmp/pa-probe "$REAL_DIR/libcuda.so.1" >"$PA/probe-native.txt" 2>&1

# --- 2 and 3. The client, against a worker on this host.
if start_worker native "$PA/worker.log"; then
    through_client path env TF_ENABLE_LOG=1 TF_LOG_LEVEL=info TF_LOG_PATH="$PA/sweep-client.log" \
        timeout 300 /tmp/pa-sweep libcuda.so.1 --names "$PA/names.txt" >"$PA/procaddr-client.tsv" 2>"$PA/sweep-client.err"
    python3 - "$PA/procaddr.tsv" "$PA/procaddr-client.tsv" >"$PA/procaddr-diff.txt" 2>&1 <<'EOF'
# Answer by answer, at every version up to the real driver's, plus the
# conventions (@ lines other than the source).
import sys, collections
def load(p):
    rows, dirs = collections.defaultdict(list), {}
    for l in open(p):
        l = l.rstrip("\n")
        if l.startswith("@"):
            k, _, v = l[1:].partition("\t"); dirs[k] = v
        elif l and not l.startswith("#"):
            n, f, v, a, _ = l.split("\t"); rows[(n, f)].append((int(v), a))
    return rows, dirs
(a, da), (b, db) = load(sys.argv[1]), load(sys.argv[2])
top = int(da["driver-version"])
def at(rows, k, v):
    r = rows.get(k)
    if not r: return "!notfound"
    x = [y for (fv, y) in r if fv <= v]
    return x[-1] if x else "!version"
diffs = 0
for k in ("above-driver", "not-found-result", "not-found-result-v1"):
    if da.get(k) != db.get(k):
        print(f"convention {k}: driver {da.get(k)}, client {db.get(k)}"); diffs += 1
for k in sorted(set(a) | set(b)):
    for v in sorted({fv for fv, _ in a.get(k, []) + b.get(k, []) if fv <= top}):
        if at(a, k, v) != at(b, k, v):
            print(f"{k[0]} flags {k[1]} at {v}: driver {at(a, k, v)}, client {at(b, k, v)}"); diffs += 1
            break
print(f"{diffs} differences")
EOF
    pa_diff=$(tail -1 "$PA/procaddr-diff.txt")
    if [ "$pa_diff" = "0 differences" ]; then
        row "procaddr: client answers as the driver" PASS "every name, version and flags the driver answers"
    else
        row "procaddr: client answers as the driver" FAIL "$pa_diff (procaddr-diff.txt): $(head -2 "$PA/procaddr-diff.txt" | tr '\n' ';')"
    fi

    through_client path env TF_ENABLE_LOG=1 TF_LOG_LEVEL=debug TF_LOG_PATH="$PA/probe-client.log" \
        timeout 120 /tmp/pa-probe libcuda.so.1 >"$PA/probe-client.txt" 2>&1
    stop_worker
    diff <(grep '^=' "$PA/probe-native.txt") <(grep '^=' "$PA/probe-client.txt") >"$PA/probe-diff.txt"
    if [ -s "$PA/probe-diff.txt" ]; then
        row "private tables: client behaves as the driver" FAIL "$(grep -c '^<' "$PA/probe-diff.txt") lines differ (probe-diff.txt): $(grep '^<' "$PA/probe-diff.txt" | head -2 | tr '\n' ';')"
    else
        row "private tables: client behaves as the driver" PASS "$(grep -c '^=' "$PA/probe-native.txt") observations agree"
    fi
else
    row "procaddr: client runs" FAIL "the worker did not start (worker.log)"
fi

# The real driver's integrity answers, against the computation the client uses.
pa_int=$(grep '^= integrity' "$PA/probe-native.txt")
if [ -n "$pa_int" ] && ! grep -q 'matches none' <<<"$pa_int"; then
    row "integrity check: real driver = HMAC-MD2 of the client's inputs" PASS "$(grep -c . <<<"$pa_int") challenges ($(grep -o 'thread = [a-z_]*' <<<"$pa_int" | sort -u | tr '\n' ' '))"
else
    row "integrity check: real driver = HMAC-MD2 of the client's inputs" FAIL "$(grep 'matches none' <<<"$pa_int" | head -2 | tr '\n' ';') (probe-native.txt)"
fi
