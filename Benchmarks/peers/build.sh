#!/usr/bin/env bash
# Builds the C peer runners into Benchmarks/peers/bin. Needs Debian's libdnnl-dev.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
mkdir -p "$here/bin"
if [ ! -e /usr/include/dnnl.h ]; then
  echo "oneDNN headers missing: apt-get install -y libdnnl-dev" >&2
  exit 1
fi
cc -O2 -o "$here/bin/gemm_onednn" "$here/gemm_onednn.c" -ldnnl
