#!/usr/bin/env bash
# Builds and runs every example package under Examples/ as a consumer would (each depends on
# Condense by path). Part of the README's test command; run from anywhere.
set -euo pipefail
cd "$(dirname "$0")"
# Each package builds in its own folder, as it would in a user's checkout (SwiftPM cannot share
# one build folder between root packages).
run() { local pkg=$1; shift; echo "== Examples/$pkg: $*"; swift run --package-path "$pkg" "$@"; }
run StreamingLLM StreamingLLM
run EmbeddingServer EmbeddingServer --self-test
echo "== Examples/CustomBackend: built and timed by swift test (target CondenseExampleBackend)"
