#!/usr/bin/env bash
# Runs every fuzz target of the module, one after the other (go test fuzzes one target at a time),
# each for FUZZTIME (default 5s, as CI runs them). The targets are found by their declarations,
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
for dir in "${dirs[@]}"; do
	dir="./${dir#./}"
	for target in $(grep -h '^func Fuzz' "$dir"/*_test.go | sed -E 's/^func (Fuzz[A-Za-z0-9_]*).*/\1/' | sort -u); do
		echo "fuzz: $dir $target ($fuzztime)"
		go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" -fuzzminimizetime "$minimize" "$dir"
		n=$((n + 1))
	done
done
echo "fuzz: $n targets, no failure"
