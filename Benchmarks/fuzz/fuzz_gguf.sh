#!/usr/bin/env bash
# Coverage-guided fuzzing of the GGUF reader (libFuzzer + AddressSanitizer), bounded in time. A
# crasher lands in Benchmarks/fuzz/crashers/: fix the reader, then copy it into
# Tests/CondenseTests/Fixtures/gguf-corpus/ so GGUFTests replays it forever (that folder also holds
# seeds and a sample of the corpus that reaches the deeper checks).
#   Benchmarks/fuzz/fuzz_gguf.sh [seconds=60]
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-60}
out=.build/fuzz
mkdir -p "$out" Benchmarks/fuzz/crashers "$out/gguf-corpus"
swiftc -O -parse-as-library -sanitize=fuzzer,address -module-name CondenseFuzz \
  Sources/Condense/Files/GGUF.swift Sources/Condense/Files/GGUFWriter.swift Sources/Condense/Files/FileIO.swift \
  Sources/Condense/Files/CheckedSize.swift Sources/Condense/CondenseError.swift Benchmarks/fuzz/GGUFFuzz.swift -o "$out/fuzz-gguf"
cp Tests/CondenseTests/Fixtures/gguf-corpus/* "$out/gguf-corpus/" 2>/dev/null || true
"$out/fuzz-gguf" "$out/gguf-corpus" -max_total_time="$secs" -max_len=4096 -artifact_prefix=Benchmarks/fuzz/crashers/ -print_final_stats=1
