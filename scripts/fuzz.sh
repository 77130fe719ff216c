#!/usr/bin/env bash
# A fuzzing session of every target in fuzz/ (FUZZ_SECONDS each, default 60), starting from the
# committed corpus in fuzz/corpus/<target>/. A crash stops the script with the input saved under
# fuzz/artifacts/<target>/; turn it into a regression test before fixing it.
#
# cargo-fuzz passes a few -Z flags (sanitizer, coverage) to rustc; RUSTC_BOOTSTRAP=1 lets the
# stable toolchain accept them, so no nightly is needed.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds=${FUZZ_SECONDS:-60}
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz@0.13.2
export RUSTC_BOOTSTRAP=1
for target in $(cargo fuzz list); do
  # Runs add inputs; they go to a scratch copy so the committed corpus only changes on purpose.
  scratch=$(mktemp -d)
  if [ -d "corpus/$target" ]; then cp -r "corpus/$target/." "$scratch/"; fi
  echo "fuzzing $target for ${seconds}s"
  status=0
  cargo fuzz run "$target" "$scratch" -- -max_total_time="$seconds" -max_len=4096 -print_final_stats=1 \
    >"$scratch.log" 2>&1 || status=$?
  grep -E '^(stat::number_of_executed_units|Done)|panicked|ERROR|SUMMARY|Test unit written' "$scratch.log" || true
  [ "$status" -eq 0 ] || tail -40 "$scratch.log"
  rm -rf "$scratch" "$scratch.log"
  [ "$status" -eq 0 ] || { echo "fuzz target $target failed" >&2; exit "$status"; }
done
