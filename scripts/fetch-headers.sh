#!/usr/bin/env bash
# Fetches the pinned NVIDIA CUDA driver and NVML headers into .headers/include/.
#
# The headers are only needed to regenerate the API tables (`cargo xtask codegen`);
# they are never committed (NVIDIA's license), so every checkout that runs the
# generator or its `--check` fetches them with this script. The wheels come from
# PyPI through pip, pinned by version AND sha256 so that a changed upload cannot
# silently change the generated ABI. Idempotent: a verified wheel already in
# .headers/wheels/ is not downloaded again, and extraction is skipped when the
# headers of exactly these wheels are already in place.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="$root/.headers"
wheels="$dest/wheels"
include="$dest/include"
python="${PYTHON:-python3}"
platform="manylinux2014_x86_64.manylinux_2_17_x86_64"

# package version sha256 (the wheel name is derived from package and version)
pins=(
    "nvidia-cuda-runtime 13.5.37 df2b79a8852f10d1fef8c848489c49eebb5754051bf870202a862831412b179d"
    "nvidia-nvml-dev 13.5.37 7394fcbefa9ba537e8238cbb1caa4cd2db6bbfbff208d217a8a884947113ae6d"
)

die() {
    echo "fetch-headers: error: $*" >&2
    exit 1
}

sha256_of() {
    # Python is required anyway (pip), so hash with it rather than depend on
    # sha256sum (GNU) vs shasum (macOS).
    "$python" -c 'import hashlib,sys; print(hashlib.sha256(open(sys.argv[1],"rb").read()).hexdigest())' "$1"
}

mkdir -p "$wheels"
stamp_want=""
for pin in "${pins[@]}"; do
    read -r pkg ver sha <<<"$pin"
    file="${pkg//-/_}-${ver}-py3-none-${platform}.whl"
    path="$wheels/$file"
    stamp_want+="$file $sha"$'\n'

    if [[ -f "$path" && "$(sha256_of "$path")" == "$sha" ]]; then
        echo "fetch-headers: $file already present and verified"
        continue
    fi
    rm -f "$path"
    echo "fetch-headers: downloading $pkg==$ver"
    # --platform/--only-binary pick the x86_64 wheel even on other hosts; the
    # headers inside are architecture independent.
    "$python" -m pip download --quiet --no-deps --only-binary=:all: \
        --platform manylinux2014_x86_64 --python-version 3 \
        --dest "$wheels" "$pkg==$ver" ||
        die "pip download of $pkg==$ver failed (is PyPI reachable?)"
    [[ -f "$path" ]] || die "pip did not produce $file in $wheels"
    got="$(sha256_of "$path")"
    if [[ "$got" != "$sha" ]]; then
        mv "$path" "$path.bad"
        die "sha256 mismatch for $file: expected $sha, got $got (moved to $path.bad)"
    fi
    echo "fetch-headers: verified $file"
done

stamp="$include/.fetched-from"
if [[ -f "$stamp" && "$(cat "$stamp")" == "${stamp_want%$'\n'}" ]]; then
    echo "fetch-headers: headers in $include are up to date"
    exit 0
fi

rm -rf "$include"
mkdir -p "$include"
for pin in "${pins[@]}"; do
    read -r pkg ver _ <<<"$pin"
    file="${pkg//-/_}-${ver}-py3-none-${platform}.whl"
    # Extract only nvidia/cu*/include/**, flattened to .headers/include/**.
    "$python" - "$wheels/$file" "$include" <<'EOF'
import os, re, sys, zipfile
wheel, out = sys.argv[1], sys.argv[2]
n = 0
with zipfile.ZipFile(wheel) as z:
    for info in z.infolist():
        m = re.match(r"nvidia/cu\d+/include/(.+)", info.filename)
        if not m or info.is_dir():
            continue
        rel = os.path.normpath(m.group(1))
        if rel.startswith(".."):
            sys.exit(f"refusing suspicious path {info.filename}")
        target = os.path.join(out, rel)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with z.open(info) as src, open(target, "wb") as dst:
            dst.write(src.read())
        n += 1
if n == 0:
    sys.exit(f"no include/ files found in {wheel}")
print(f"fetch-headers: extracted {n} files from {os.path.basename(wheel)}")
EOF
done

for h in cuda.h cudaTypedefs.h nvml.h; do
    [[ -f "$include/$h" ]] || die "$h missing after extraction"
done
printf '%s' "${stamp_want%$'\n'}" >"$stamp"
echo "fetch-headers: headers ready in $include"
