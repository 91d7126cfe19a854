#!/usr/bin/env bash
# Coverage-guided fuzzing of the safetensors reader (libFuzzer + AddressSanitizer), bounded in
# time. A crasher lands in Benchmarks/fuzz/crashers/: fix the parser, then copy it into
# Tests/CondenseTests/Fixtures/safetensors-corpus/ so SafeTensorsTests replays it forever (that
# folder also holds a sample of the corpus: inputs that reach the deeper checks).
#   Benchmarks/fuzz/fuzz_safetensors.sh [seconds=60]
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-60}
out=.build/fuzz
mkdir -p "$out" Benchmarks/fuzz/crashers "$out/corpus"
swiftc -O -parse-as-library -sanitize=fuzzer,address -module-name CondenseFuzz \
  Sources/Condense/Files/SafeTensors.swift Sources/Condense/Files/JSONDuplicateKeys.swift Sources/Condense/Files/FileIO.swift \
  Sources/Condense/Files/CheckedSize.swift Sources/Condense/CondenseError.swift Benchmarks/fuzz/SafeTensorsFuzz.swift -o "$out/fuzz-safetensors"
# Seeds: valid files of each dtype layout, and the regression inputs.
python3 - "$out/corpus" <<'PY'
import json, struct, sys
d = sys.argv[1]
def st(header, data=b""):
    h = json.dumps(header).encode()
    return struct.pack("<Q", len(h)) + h + data
open(f"{d}/seed1", "wb").write(st({"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}}, b"\0" * 16))
open(f"{d}/seed2", "wb").write(st({"__metadata__": {"format": "pt"}, "a": {"dtype": "I8", "shape": [3], "data_offsets": [0, 3]},
                                   "b": {"dtype": "U16", "shape": [1, 2], "data_offsets": [3, 7]}}, b"\1" * 7))
open(f"{d}/seed3", "wb").write(st({}))
PY
cp Tests/CondenseTests/Fixtures/safetensors-corpus/* "$out/corpus/" 2>/dev/null || true
"$out/fuzz-safetensors" "$out/corpus" -max_total_time="$secs" -max_len=4096 -artifact_prefix=Benchmarks/fuzz/crashers/ -print_final_stats=1
