#!/usr/bin/env bash
# A new user's first hour, timed: a fresh clone of this repository's HEAD, an empty
# mmcv wheel cache, and the README's commands exactly as written, one after another:
#
#   make demo; make test; make setup STACK=mmpose1; make test STACK=mmpose1
#
# or the commands given after OUT (e.g. one row of the support matrix:
# "make setup STACK=mmpose0-legacy" "make test STACK=mmpose0-legacy"), which
# are appended to OUT instead of replacing it.
#
# Writes one tab-separated line per command (command, rc, wall seconds) to OUT,
# followed by the set-up steps that command ran ("  step", "-", seconds, from
# setup_env.sh's "==> [setup]" / "done in" lines); the full logs stay in the
# clone's temporary folder. The README's set-up times come from this file
# (docs/measured/cold-setup.tsv).
#
# Usage: bash benchmarks/cold_setup.sh docs/measured/cold-setup.tsv [COMMAND ...]
#   CACHE=dir  the empty wheel cache to use (default: a new temporary folder);
#              pointing it at ~/.cache/resnest_plugin while that is empty also
#              leaves the built wheels there for later set-ups.
set -uo pipefail
OUT="${1:?usage: bash benchmarks/cold_setup.sh OUT.tsv [COMMAND ...]}"
shift
COMMANDS=("make demo" "make test" "make setup STACK=mmpose1" "make test STACK=mmpose1")
APPEND=0
[ "$#" -eq 0 ] || { COMMANDS=("$@"); APPEND=1; }
case "$OUT" in /*) ;; *) OUT="$PWD/$OUT" ;; esac
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/resnest-cold.XXXXXX")"
CACHE="${CACHE:-$WORK/cache}"
mkdir -p "$CACHE" "$(dirname "$OUT")"
if [ -n "$(ls -A "$CACHE")" ]; then
  echo "[cold] ERROR: CACHE=$CACHE is not empty: a cold run needs an empty wheel cache" >&2
  exit 2
fi
git clone -q "$REPO" "$WORK/resnest_plugin" || exit 1
cd "$WORK/resnest_plugin" || exit 1
export RESNEST_PLUGIN_CACHE="$CACHE"
[ "$APPEND" = 1 ] && [ -s "$OUT" ] || printf 'command\trc\twall_s\n' >"$OUT"
for command in "${COMMANDS[@]}"; do
  log="$WORK/$(echo "$command" | tr ' =' '__').log"
  start=$(date +%s)
  $command >"$log" 2>&1
  rc=$?
  printf '%s\t%s\t%s\n' "$command" "$rc" "$(( $(date +%s) - start ))" | tee -a "$OUT"
  awk '/^==> \[setup\] /{sub(/^==> \[setup\] /, ""); step=$0}
       /^    done in [0-9]+s$/{sub(/^    done in /, ""); sub(/s$/, ""); printf "  %s\t-\t%s\n", step, $0}' \
    "$log" | tee -a "$OUT"
done
echo "[cold] clone $WORK/resnest_plugin (HEAD $(git rev-parse --short HEAD)); cache $CACHE"
