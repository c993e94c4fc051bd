#!/usr/bin/env bash
# Builds and tests strata the way CI does (.ci/run calls this):
#   1. the dev preset (warnings are errors), then every test: unit, fuse, crash;
#   2. the asan-ubsan preset, then the unit tests under the sanitizers;
#   3. the tsan preset, then the unit tests under ThreadSanitizer (the read, seal and journal
#      paths run on several thread pools);
#   4. clang-format on every C++ file in the repository.
# Every step runs even if an earlier one failed (a failed build skips its tests); the summary
# at the end lists each step, and the exit status is non-zero if any step failed.
#
# The fuse and crash tests mount real filesystems: run as root on a machine with /dev/fuse
# (without it they are skipped, and the summary says so). Budget: well under 20 minutes on
# 2 cores. Useful while developing:
#   ctest --test-dir build/dev -L unit                 # seconds
#   ctest --test-dir build/dev -L fuse -LE crash       # mount tests
#   STRATA_CRASH_ITERATIONS=200 ctest --test-dir build/dev -L crash
set -uo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo" || exit 1
jobs=2

step_names=()
step_results=()
step_seconds=()
failed=0

# run_step NAME COMMAND... : runs the command, records PASS/FAIL and its duration.
run_step() {
  local name=$1
  shift
  local start=$SECONDS
  printf '\n\033[1m==== %s\033[0m\n' "$name"
  if "$@"; then
    step_results+=(PASS)
  else
    step_results+=(FAIL)
    failed=1
  fi
  step_names+=("$name")
  step_seconds+=($((SECONDS - start)))
}

skip_step() {
  step_names+=("$1")
  step_results+=("SKIP ($2)")
  step_seconds+=(0)
}

configure_and_build() {
  local preset=$1
  shift
  cmake --preset "$preset" "$@" && cmake --build --preset "$preset" -j"$jobs"
}

format_check() {
  local files=()
  if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    # Tracked files plus new ones not yet added (but not ignored ones such as build/).
    mapfile -t files < <(git ls-files --cached --others --exclude-standard -- '*.cc' '*.h' | sort -u)
  else
    mapfile -t files < <(find . -path ./build -prune -o \( -name '*.cc' -o -name '*.h' \) -print)
  fi
  local existing=()
  for f in "${files[@]}"; do
    [[ -f "$f" ]] && existing+=("$f")
  done
  echo "clang-format: checking ${#existing[@]} files"
  [[ ${#existing[@]} -eq 0 ]] && return 0
  clang-format --dry-run -Werror "${existing[@]}"
}

total_start=$SECONDS

run_step "setup (packages)" bash scripts/setup.sh

run_step "build: dev" configure_and_build dev
if [[ ${step_results[-1]} == PASS ]]; then
  run_step "test: dev (all labels)" \
    ctest --test-dir build/dev --output-on-failure -j"$jobs" --timeout 300
else
  skip_step "test: dev (all labels)" "build failed"
fi

# The integration tests are not built here: only unit tests run under the sanitizers.
run_step "build: asan-ubsan" configure_and_build asan-ubsan -DSTRATA_INTEGRATION_TESTS=OFF
if [[ ${step_results[-1]} == PASS ]]; then
  run_step "test: asan-ubsan (unit)" \
    env ASAN_OPTIONS="${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1}" \
    UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}" \
    ctest --test-dir build/asan -L unit --output-on-failure -j"$jobs" --timeout 300 \
    --no-tests=error
else
  skip_step "test: asan-ubsan (unit)" "build failed"
fi

run_step "build: tsan" configure_and_build tsan -DSTRATA_INTEGRATION_TESTS=OFF
if [[ ${step_results[-1]} == PASS ]]; then
  run_step "test: tsan (unit)" \
    env TSAN_OPTIONS="${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1}" \
    ctest --test-dir build/tsan -L unit --output-on-failure -j"$jobs" --timeout 300 \
    --no-tests=error
else
  skip_step "test: tsan (unit)" "build failed"
fi

run_step "clang-format" format_check

total=$((SECONDS - total_start))
printf '\n\033[1m==== summary\033[0m\n'
for i in "${!step_names[@]}"; do
  printf '  %-28s %-22s %4ds\n' "${step_names[$i]}" "${step_results[$i]}" "${step_seconds[$i]}"
done
printf '  %-28s %-22s %4ds\n' "total" "" "$total"
if [[ $(id -u) -ne 0 || ! -w /dev/fuse ]]; then
  echo "  note: not root or no usable /dev/fuse: the fuse and crash tests were skipped"
fi
if ((total > 20 * 60)); then
  echo "  note: over the 20-minute budget"
fi
if ((failed)); then
  echo "FAILED"
  exit 1
fi
echo "OK"
