#!/usr/bin/env bash
# Builds the DocC catalog of every public module with warnings as errors, so a renamed symbol or
# a broken link fails the test command instead of leaving the documentation stale.
# Part of the README's test command; the archives land in .build/plugins/Swift-DocC/outputs.
set -euo pipefail
cd "$(dirname "$0")/../.."
for target in Condense CondenseInference CondenseCompression CondenseTraining CondenseServer CondenseSIMDKit; do
    echo "== DocC: $target"
    swift package generate-documentation --target "$target" --warnings-as-errors
done
