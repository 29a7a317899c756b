#!/usr/bin/env bash
# Runs every fuzz target of the module, one after the other (go test fuzzes one target at a time),
# each for FUZZTIME (default 5s; CI runs them for 3s). The targets are found by their declarations,
# so a new one is picked up without editing this script. docs/reliability.md, "Fuzzing".
#
#   tools/fuzz.sh                     every target for 5 s
#   FUZZTIME=10m tools/fuzz.sh        the long run
#   tools/fuzz.sh ./httpd             the targets of some packages only
set -euo pipefail
cd "$(dirname "$0")/.."

fuzztime="${FUZZTIME:-5s}"
# Each new interesting input is minimized with at most this many runs: the default (60 s of
# runs) stalls a short run of a target in a big binary (cmd/paynotify links everything, and
# every run there is slower) for most of its time.
minimize="${FUZZMINIMIZETIME:-100x}"
if [ $# -gt 0 ]; then
	dirs=("$@")
else
	mapfile -t dirs < <(git ls-files '*_test.go' | xargs grep -l '^func Fuzz' | xargs -n1 dirname | sort -u | sed 's|^|./|')
fi

n=0
flakes=0
for dir in "${dirs[@]}"; do
	dir="./${dir#./}"
	for target in $(grep -h '^func Fuzz' "$dir"/*_test.go | sed -E 's/^func (Fuzz[A-Za-z0-9_]*).*/\1/' | sort -u); do
		echo "fuzz: $dir $target ($fuzztime)"
		corpus="$dir/testdata/fuzz/$target"
		before=$({ ls "$corpus" 2>/dev/null || true; } | wc -l)
		out=$(mktemp)
		if ! go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" -fuzzminimizetime "$minimize" "$dir" 2>&1 | tee "$out"; then
			after=$({ ls "$corpus" 2>/dev/null || true; } | wc -l)
			# Go 1.26's fuzz coordinator can report its own -fuzztime deadline as a failure,
			# "context deadline exceeded" with no failing input (go.dev/issue/75804, fixed in
			# Go 1.27). Only that exact outcome is let through; a crasher is always written to
			# the corpus directory and fails the run.
			if [ "$after" = "$before" ] && grep -q '^    context deadline exceeded$' "$out" && ! grep -q 'Failing input written' "$out"; then
				echo "fuzz: $target: the -fuzztime deadline reported as a failure, no failing input (go.dev/issue/75804): not a crash"
				flakes=$((flakes + 1))
			else
				rm -f "$out"
				exit 1
			fi
		fi
		rm -f "$out"
		n=$((n + 1))
	done
done
echo "fuzz: $n targets, no failure ($flakes ended by go.dev/issue/75804)"
