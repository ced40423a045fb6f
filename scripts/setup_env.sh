#!/usr/bin/env bash
# One-command set-up of resnest_plugin's environment (the pinned MMPose 0.x
# stack on Python 3.11 + torch 2.14.1).
#
# Creates $VENV (default: <repo>/.venv) with torch/torchvision, mmcv-full 1.7.0
# built from its sdist with compiled ops, mmpose 0.29.0, mmdet 2.28.2,
# xtcocotools and the test tools, then installs this plugin in editable mode.
# Every pip call uses requirements/constraints.txt.
#
# The mmcv-full wheel is cached outside the clone, keyed by mmcv version,
# torch version, Python tag and ops flavour, so a second set-up on the same
# machine only installs it (STACK.md: the cold build is ~14 min on 2 cores).
#
# Idempotent: a stamp in the venv records the hash of the requirement files;
# when it matches and the smoke import passes, nothing is reinstalled.
#
# Environment:
#   VENV=path              where to create the virtualenv (default .venv)
#   PYTHON=python3.11      interpreter for the venv (default python3)
#   FORCE_CUDA=1           build mmcv-full's CUDA ops too (needs nvcc)
#   MAX_JOBS=N             parallel compile jobs for mmcv-full (default: nproc)
#   RESNEST_PLUGIN_CACHE   wheel cache (default ~/.cache/resnest_plugin)
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$REPO/.venv}"
PYTHON="${PYTHON:-python3}"
CONSTRAINTS="$REPO/requirements/constraints.txt"
CACHE="${RESNEST_PLUGIN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/resnest_plugin}"
MMCV_VERSION="1.7.0"
TORCH_VERSION="2.14.1"
TORCHVISION_VERSION="0.29.1"
T_START=$(date +%s)

step_start=0
step() { step_start=$(date +%s); printf '\n==> [setup] %s\n' "$*"; }
step_done() { printf '    done in %ss\n' "$(( $(date +%s) - step_start ))"; }
die() { printf '\n[setup] ERROR: %s\n' "$*" >&2; exit 1; }

# --- Python --------------------------------------------------------------
command -v "$PYTHON" >/dev/null || die "interpreter '$PYTHON' not found; set PYTHON=python3.11"
PYVER=$("$PYTHON" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
if [ "$PYVER" != "3.11" ]; then
  echo "[setup] WARNING: Python $PYVER found; the pins are measured on 3.11" \
       "(torch $TORCH_VERSION wheels, xtcocotools cp311). Set PYTHON=python3.11 if this fails." >&2
fi

# --- idempotence stamp -----------------------------------------------------
stamp_hash() {
  cat "$CONSTRAINTS" "$REPO"/requirements/*.txt "$REPO/setup.py" "$REPO/scripts/setup_env.sh" \
    | sha256sum | cut -c1-16
}
STAMP="$VENV/.resnest_plugin_setup"
WANT="$(stamp_hash) cuda=${FORCE_CUDA:-0}"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ] \
   && "$VENV/bin/python" "$REPO/scripts/smoke_check.py" --quiet; then
  echo "[setup] environment in $VENV is up to date (stamp $WANT); nothing to do."
  exit 0
fi

# --no-compile: byte-compiling torch's ~10k modules at install costs ~30 s of
# a warm set-up; Python compiles what is imported, when it is imported.
PIP() { "$VENV/bin/python" -m pip --disable-pip-version-check "$@" -c "$CONSTRAINTS"; }
PIP_INSTALL() { PIP install --no-compile "$@"; }

step "virtualenv $VENV (Python $PYVER)"
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PIP_INSTALL -q "setuptools" wheel
step_done

step "torch $TORCH_VERSION + torchvision $TORCHVISION_VERSION"
PIP_INSTALL -q "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION"
step_done

step "runtime dependencies of mmcv-full / mmpose / mmdet (requirements/runtime.txt)"
PIP_INSTALL -q -r "$REPO/requirements/runtime.txt"
step_done

# --- mmcv-full with compiled ops --------------------------------------------
FLAVOUR=cpu
if [ "${FORCE_CUDA:-0}" = "1" ]; then
  command -v nvcc >/dev/null || die "FORCE_CUDA=1 but nvcc is not on PATH; install the CUDA toolkit or unset FORCE_CUDA"
  FLAVOUR="cuda$(nvcc --version | sed -n 's/.*release \([0-9.]*\).*/\1/p')"
fi
PYTAG=$("$VENV/bin/python" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
WHEEL_DIR="$CACHE/wheels/mmcv-full-${MMCV_VERSION}_torch-${TORCH_VERSION}_${PYTAG}_${FLAVOUR}"

if ls "$WHEEL_DIR"/mmcv_full-*.whl >/dev/null 2>&1; then
  step "mmcv-full $MMCV_VERSION from the wheel cache ($WHEEL_DIR)"
else
  step "mmcv-full $MMCV_VERSION: building from sdist with $FLAVOUR ops (cold: ~12 min on 2 cores)"
  BUILD_ROOT="$(mktemp -d "${TMPDIR:-/tmp}/mmcv-build.XXXXXX")"
  # Fetching the sdist runs its setup.py for metadata, which imports
  # pkg_resources and torch: no build isolation (an isolated build cannot see
  # torch and silently skips the ops).
  PIP download -q --no-deps --no-build-isolation --no-binary mmcv-full \
      "mmcv-full==$MMCV_VERSION" -d "$BUILD_ROOT"
  tar -xzf "$BUILD_ROOT"/mmcv-full-"$MMCV_VERSION".tar.gz -C "$BUILD_ROOT"
  SRC="$BUILD_ROOT/mmcv-full-$MMCV_VERSION"
  # torch >= 2.13 headers need C++17, torch 2.14 headers C++20, but mmcv-full
  # 1.7.0's setup.py appends -std=c++14 after torch's flags (mmcv#3341).
  sed -i -e 's/-std=c++14/-std=c++20/g' -e 's/-std=c++17/-std=c++20/g' "$SRC/setup.py"
  grep -q 'std=c++20' "$SRC/setup.py" || die "could not patch the C++ standard in $SRC/setup.py"
  LOG="$BUILD_ROOT/build.log"
  echo "    source: $SRC; log: $LOG"
  (
    cd "$SRC"
    MMCV_WITH_OPS=1 MAX_JOBS="${MAX_JOBS:-$(nproc)}" FORCE_CUDA="${FORCE_CUDA:-0}" \
      "$VENV/bin/python" -m pip --disable-pip-version-check wheel -v --no-deps \
      --no-build-isolation . -w "$BUILD_ROOT/dist" -c "$CONSTRAINTS" >"$LOG" 2>&1
  ) &
  BUILD_PID=$!
  # Should this script stop (error, Ctrl-C), do not leave the compiler running.
  trap 'kill "$BUILD_PID" 2>/dev/null || true' EXIT
  while kill -0 "$BUILD_PID" 2>/dev/null; do
    sleep 30
    # ninja prints "[done/total]" per translation unit (72 for the CPU ops). Before
    # the first one, grep finds nothing and fails: "|| true", or set -e (with
    # pipefail) would end the script while the build goes on in the background.
    PROGRESS=$(grep -o '^ *\[[0-9]*/[0-9]*\]' "$LOG" 2>/dev/null | tail -n 1 | tr -d ' []' || true)
    printf '    [%s] mmcv-full ops compiled: %s translation units, %ss elapsed\n' \
      "$(date +%H:%M:%S)" "${PROGRESS:-0/?}" "$(( $(date +%s) - step_start ))"
  done
  if ! wait "$BUILD_PID"; then
    tail -n 40 "$LOG" >&2
    die "mmcv-full build failed; full log: $LOG"
  fi
  trap - EXIT
  mkdir -p "$WHEEL_DIR"
  cp "$BUILD_ROOT"/dist/mmcv_full-*.whl "$WHEEL_DIR/"
  rm -rf "$BUILD_ROOT"
  echo "    cached $(ls "$WHEEL_DIR") in $WHEEL_DIR"
fi
PIP_INSTALL -q --no-deps --force-reinstall "$WHEEL_DIR"/mmcv_full-*.whl
step_done

step "mmpose 0.29.0 + mmdet 2.28.2 (--no-deps: their real deps are in runtime.txt; no chumpy)"
PIP_INSTALL -q --no-deps "mmpose==0.29.0" "mmdet==2.28.2"
step_done

step "test / benchmark tools (requirements/tests.txt)"
PIP_INSTALL -q -r "$REPO/requirements/tests.txt"
step_done

step "resnest_plugin (editable)"
PIP_INSTALL -q --no-deps --no-build-isolation -e "$REPO"
step_done

step "smoke check"
"$VENV/bin/python" "$REPO/scripts/smoke_check.py"
step_done

echo "$WANT" > "$STAMP"
printf '\n[setup] environment ready in %ss: %s\n' "$(( $(date +%s) - T_START ))" "$VENV"
