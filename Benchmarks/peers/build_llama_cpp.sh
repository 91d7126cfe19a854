#!/usr/bin/env bash
# Builds llama.cpp's llama-bench, llama-perplexity, llama-cli, llama-server and llama-quantize from the source that the PyPI
# sdist of llama-cpp-python vendors (no GitHub needed), once, into a cache outside the repository:
#   ${CONDENSE_LLAMA_CPP_DIR:-$HOME/.cache/condense/llama.cpp}/bin
# About ten minutes on 2 cores. Needs cmake and a C++ compiler (Debian: apt-get install -y cmake g++).
set -euo pipefail
dest=${CONDENSE_LLAMA_CPP_DIR:-$HOME/.cache/condense/llama.cpp}
if [ -x "$dest/bin/llama-bench" ] && [ -x "$dest/bin/llama-perplexity" ] && [ -x "$dest/bin/llama-quantize" ]; then echo "$dest/bin"; exit 0; fi
mkdir -p "$dest/src"
cd "$dest/src"
if [ ! -d vendor-src ]; then
  # The sdist itself, from PyPI's JSON index (pip download would build its build dependencies
  # from source to read its metadata).
  mkdir -p sdist
  ls sdist/llama_cpp_python-*.tar.gz >/dev/null 2>&1 || python3 - <<'PY'
import json, urllib.parse, urllib.request
base = "https://pypi.org/pypi/llama-cpp-python/json"
d = json.load(urllib.request.urlopen(base, timeout=60))
f = [u for u in d["urls"] if u["packagetype"] == "sdist"][0]
urllib.request.urlretrieve(urllib.parse.urljoin(base, f["url"]), "sdist/" + f["filename"])
PY
  tar xzf sdist/llama_cpp_python-*.tar.gz
  mv llama_cpp_python-*/vendor/llama.cpp vendor-src
fi
cmake -S vendor-src -B build -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DLLAMA_BUILD_TOOLS=ON -DLLAMA_CURL=OFF \
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=ON -DLLAMA_BUILD_SERVER=ON >&2
cmake --build build -j"$(nproc)" --target llama-bench llama-perplexity llama-cli llama-server llama-quantize >&2
mkdir -p "$dest/bin"
cp build/bin/llama-* "$dest/bin/" 2>/dev/null || true
cp -P build/bin/*.so* "$dest/bin/" 2>/dev/null || true
echo "$dest/bin"
