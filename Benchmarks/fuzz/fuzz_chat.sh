#!/usr/bin/env bash
# Coverage-guided fuzzing of the chat-template interpreter and the SentencePiece tokenizer
# (libFuzzer + AddressSanitizer), bounded in time. A crasher lands in Benchmarks/fuzz/crashers/:
# fix the interpreter or tokenizer, then add the input to JinjaTests or SentencePieceHostileTests.
#   Benchmarks/fuzz/fuzz_chat.sh [seconds=60]
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-60}
out=.build/fuzz
mkdir -p "$out/chat-src" "$out/chat-corpus" Benchmarks/fuzz/crashers
# One module: the sources without their imports of Condense's own modules.
for f in Sources/Condense/CondenseError.swift Sources/Condense/Files/GGUF.swift Sources/Condense/Files/FileIO.swift \
         Sources/Condense/Files/CheckedSize.swift Sources/CondenseInference/Models/Jinja.swift \
         Sources/CondenseInference/Tokenizers/Tokenizer.swift Sources/CondenseInference/Tokenizers/SentencePiece.swift \
         Sources/CondenseInference/Tokenizers/ByteLevelBPE.swift; do
  sed -e '/^import Condense$/d' "$f" > "$out/chat-src/$(basename "$f")"
done
swiftc -O -parse-as-library -sanitize=fuzzer,address -module-name CondenseFuzz "$out"/chat-src/*.swift Benchmarks/fuzz/ChatFuzz.swift \
  -o "$out/fuzz-chat"
# Seeds: the test templates.
cp Tests/CondenseInferenceTests/Fixtures/chat-templates/*.jinja "$out/chat-corpus/"
"$out/fuzz-chat" "$out/chat-corpus" -max_total_time="$secs" -max_len=2048 -timeout=10 -artifact_prefix=Benchmarks/fuzz/crashers/ -print_final_stats=1
