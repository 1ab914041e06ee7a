#!/usr/bin/env bash
# Self-test for sampler.c (the LD_PRELOAD CPU sampler). Needs only gcc and python3.
#   bash tests/gpu/tools/sampler-selftest.sh        -> exit 0 on success, 1 on failure
# Builds libsampler.so in a temporary folder, then checks that:
#   1. a zlib-bound python loop reports libz as the top self-time library;
#   2. a fork()ed multiprocessing worker that leaves through os._exit writes its own report,
#      also dominated by libz;
#   3. a fork()ed child that execs a CPU-bound program without LD_PRELOAD is not killed by
#      SIGPROF (interval timers survive execve; the sampler disarms them in its exec wrappers).
# Set KEEP=1 to keep the temporary folder.
set -u
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/tf-sampler.XXXXXX")
[ "${KEEP:-0}" = 1 ] && echo "keeping $tmp" || trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

gcc -O2 -shared -fPIC -o "$tmp/libsampler.so" "$here/sampler.c" -ldl -lpthread || fail "build"
# The real interpreter, not a wrapper script such as a pyenv shim.
py=$(python3 -c 'import sys; print(sys.executable)') || fail "python3 not found"

# top_lib FILE: first entry of the "self time by library" section
top_lib() { awk '/^== self time by library/ {getline; print $3; exit}' "$1"; }

# 1. zlib in the main process
TF_SAMPLER_OUT="$tmp/zlib" LD_PRELOAD="$tmp/libsampler.so" "$py" -c \
  'import zlib; [zlib.compress(bytes(1 << 20)) for _ in range(200)]' || fail "python run (zlib)"
rep=$(ls "$tmp"/zlib.*.txt 2>/dev/null | head -1)
[ -n "$rep" ] || fail "no report written"
sed -n '1,12p' "$rep"
lib=$(top_lib "$rep")
case "$lib" in libz.so*) echo "ok 1: top self-time library is $lib" ;; *) fail "top self-time library is '$lib', expected libz" ;; esac
[ -s "${rep%.txt}.folded" ] || fail "empty folded file"

# 2 + 3. forked worker (os._exit) and fork+exec without the preload
cat > "$tmp/fork.py" <<'EOF'
import multiprocessing as mp, os, subprocess, sys, zlib
def work(n):
    return sum(len(zlib.compress(bytes(1 << 20))) for _ in range(n))
if __name__ == "__main__":
    with mp.get_context("fork").Pool(1) as pool:
        pool.map(work, [150])
        pool.close(); pool.join()          # workers leave through os._exit
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    # preexec_fn makes subprocess use fork() rather than vfork(), so the timer is re-armed
    # in the child before it execs a program that has no SIGPROF handler.
    r = subprocess.run([sys.executable, "-c", "sum(i * i for i in range(3000000))"],
                       env=env, preexec_fn=lambda: None)
    sys.exit(0 if r.returncode == 0 else 3)
EOF
TF_SAMPLER_OUT="$tmp/fork" LD_PRELOAD="$tmp/libsampler.so" "$py" "$tmp/fork.py"
rc=$?
[ $rc = 3 ] && fail "fork+exec child died (SIGPROF after exec?)"
[ $rc = 0 ] || fail "python run (fork) exited $rc"
echo "ok 3: fork+exec child without the preload survived"
child=$(grep -l '\[forked child\]' "$tmp"/fork.*.txt 2>/dev/null | head -1)
[ -n "$child" ] || fail "forked worker wrote no report"
lib=$(top_lib "$child")
case "$lib" in libz.so*) echo "ok 2: forked worker report $(basename "$child"), top library $lib" ;; *) fail "forked worker top library is '$lib', expected libz" ;; esac
echo "PASS"
