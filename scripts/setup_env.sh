#!/usr/bin/env bash
# One-command set-up of resnest_plugin's environment, for one row of the
# support matrix (STACK). Each row's pins, its Python and torch included, live
# in one constraints file; the generation (MMPose 0.x or 1.x) follows from it:
#
#   STACK             venv                    Python  torch   pins
#   mmpose0 (default) .venv                   3.11    2.14.1  requirements/constraints.txt
#   mmpose0-legacy    .venv-mmpose0-legacy    3.8     1.13.1  requirements/mmpose0-legacy/constraints.txt
#   mmpose1           .venv-mmpose1           3.11    2.14.1  requirements/mmpose1/constraints.txt
#   mmpose1-torch2.1  .venv-mmpose1-torch2.1  3.10    2.1.2   requirements/mmpose1-torch2.1/constraints.txt
#   mmpose1-newest    .venv-mmpose1-newest    3.12    2.15.0  requirements/mmpose1-newest/constraints.txt
#
# Creates the venv with torch/torchvision, mmcv(-full) built from its sdist
# with compiled ops, the OpenMMLab packages (--no-deps: no chumpy), xtcocotools
# and the test tools, then installs this plugin in editable mode. Every pip
# call uses the row's constraints file, as -c and as PIP_CONSTRAINT, so it
# replaces a machine-wide pip constraint (one that caps torch, say) instead of
# adding to it.
#
# The mmcv wheel is cached outside the clone, keyed by mmcv distribution and
# version, torch version, Python tag and ops flavour, so a second set-up on the
# same machine only installs it. The cold build compiles through
# scripts/pch_cxx.sh, which precompiles mmcv's common header once (about 3x
# faster than compiling torch/extension.h in each of the ~75 translation units).
#
# Idempotent: a stamp in the venv records the hash of the requirement files;
# when it matches and the smoke check passes, nothing is reinstalled.
#
# Environment:
#   STACK=<row>            which row (default mmpose0; see the table above)
#   VENV=path              where to create the virtualenv (default per row, above)
#   PYTHON=path            interpreter for the venv; must be the row's Python
#                          version (default: pythonX.Y on the PATH, then pyenv's)
#   FORCE_CUDA=1           build mmcv's CUDA ops too (needs nvcc)
#   MAX_JOBS=N             parallel compile jobs for mmcv (default: nproc)
#   RESNEST_PLUGIN_CACHE   wheel cache (default ~/.cache/resnest_plugin)
#   RESNEST_PLUGIN_PCH=0   compile mmcv without the precompiled header (baseline timing)
#   RESNEST_PLUGIN_SETUP_TIMES=file  also write each step's wall time (tab-separated) there
#
# Test seams (tests/test_setup_script.py runs the cold branch in seconds with them):
#   RESNEST_PLUGIN_MMCV_SDIST=file.tar.gz  build mmcv from this local sdist instead of PyPI's
#   RESNEST_PLUGIN_SETUP_STOP_AFTER=mmcv   stop once the mmcv wheel is built, cached and installed
set -euo pipefail

# Every path is made absolute here, once: the build step runs from inside the
# mmcv sdist (cd), where a relative VENV or cache would name another folder.
absolute() { case "$1" in /*) printf '%s\n' "$1" ;; *) printf '%s/%s\n' "$PWD" "$1" ;; esac; }
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STACK="${STACK:-mmpose0}"
STACKS="mmpose0 mmpose0-legacy mmpose1 mmpose1-torch2.1 mmpose1-newest"
case " $STACKS " in *" $STACK "*) ;; *)
  printf '[setup] ERROR: STACK=%s not understood: expected one of %s\n' "$STACK" "$STACKS" >&2
  exit 2 ;;
esac
if [ "$STACK" = "mmpose0" ]; then
  DEFAULT_VENV="$REPO/.venv"; REQ="$REPO/requirements"
else
  DEFAULT_VENV="$REPO/.venv-$STACK"; REQ="$REPO/requirements/$STACK"
fi
CONSTRAINTS="$REQ/constraints.txt"
# pin NAME: the version the row's constraints file pins NAME to ("" if none).
pin() { sed -n "s/^$1==\([^[:space:]]*\).*/\1/p" "$CONSTRAINTS" | head -n 1; }
PYTHON_VERSION="$(sed -n 's/^# python: *\([0-9.]*\).*/\1/p' "$CONSTRAINTS" | head -n 1)"
TORCH_VERSION="$(pin torch)"
TORCHVISION_VERSION="$(pin torchvision)"
[ -n "$PYTHON_VERSION" ] && [ -n "$TORCH_VERSION" ] && [ -n "$TORCHVISION_VERSION" ] || {
  printf '[setup] ERROR: %s must name "# python: X.Y", torch==V and torchvision==V\n' "$CONSTRAINTS" >&2; exit 2; }
# Per generation (a row pinning mmengine is MMPose 1.x): the runtime
# dependencies, the mmcv distribution to build, the C++ standard its setup.py
# hard-codes, the number of CPU translation units (progress) and the OpenMMLab
# packages (--no-deps; versions from the constraints file).
if [ -n "$(pin mmengine)" ]; then
  GENERATION=mmpose1; RUNTIME="$REPO/requirements/mmpose1/runtime.txt"
  MMCV_DIST="mmcv"; MMCV_STD="c++17"; MMCV_UNITS=77
  OPENMMLAB=(mmengine mmpose mmdet)
else
  GENERATION=mmpose0; RUNTIME="$REPO/requirements/runtime.txt"
  MMCV_DIST="mmcv-full"; MMCV_STD="c++14"; MMCV_UNITS=72
  OPENMMLAB=(mmpose mmdet)
fi
MMCV_VERSION="$(pin "$MMCV_DIST")"
# The C++ standard torch's headers need: torch 1.x builds with C++14, 2.0-2.12
# with C++17, 2.13 needs C++17 and 2.14+ C++20 (ATen.h: "#error C++20 or later
# compatible compiler is required"). mmcv's setup.py hard-codes its own flag
# after torch's (mmcv#3341), so it is patched only where it is too old.
case "$TORCH_VERSION" in
  1.*) TORCH_STD="c++14" ;;
  2.[0-9].*|2.1[0-3].*) TORCH_STD="c++17" ;;
  *) TORCH_STD="c++20" ;;
esac
VENV="$(absolute "${VENV:-$DEFAULT_VENV}")"
CACHE="$(absolute "${RESNEST_PLUGIN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/resnest_plugin}")"
LOCAL_SDIST=""
[ -z "${RESNEST_PLUGIN_MMCV_SDIST:-}" ] || LOCAL_SDIST="$(absolute "$RESNEST_PLUGIN_MMCV_SDIST")"
TIMES_FILE=""
[ -z "${RESNEST_PLUGIN_SETUP_TIMES:-}" ] || TIMES_FILE="$(absolute "$RESNEST_PLUGIN_SETUP_TIMES")"
STOP_AFTER="${RESNEST_PLUGIN_SETUP_STOP_AFTER:-}"
case "$STOP_AFTER" in ""|mmcv) ;; *)
  printf '[setup] ERROR: RESNEST_PLUGIN_SETUP_STOP_AFTER=%s not understood: expected mmcv or nothing\n' "$STOP_AFTER" >&2
  exit 2 ;;
esac
# The wheel file name uses underscores (mmcv_full-1.7.0-..., mmcv-2.1.0-...).
MMCV_WHEEL_NAME="${MMCV_DIST//-/_}"
T_START=$(date +%s)

step_start=0
step_name=""
step() { step_start=$(date +%s); step_name="$*"; printf '\n==> [setup] %s\n' "$*"; }
step_done() {
  local took=$(( $(date +%s) - step_start ))
  printf '    done in %ss\n' "$took"
  [ -z "$TIMES_FILE" ] || printf '%s\t%s\n' "$took" "$step_name" >>"$TIMES_FILE"
}
die() { printf '\n[setup] ERROR: %s\n' "$*" >&2; exit 1; }

# --- Python --------------------------------------------------------------
# The row's Python: $PYTHON if given (it must be that version), else
# pythonX.Y on the PATH, else pyenv's newest X.Y.* (a pyenv shim on the PATH
# fails when X.Y is not selected, so each candidate is run, not only found).
python_version_of() { "$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null; }
find_python() {
  local candidate
  if [ -n "${PYTHON:-}" ]; then
    case "$PYTHON" in */*) candidate="$(absolute "$PYTHON")" ;; *) candidate="$(command -v "$PYTHON" || true)" ;; esac
    [ -n "$candidate" ] && [ "$(python_version_of "$candidate")" = "$PYTHON_VERSION" ] \
      || die "PYTHON=$PYTHON is not a Python $PYTHON_VERSION interpreter; STACK=$STACK needs Python $PYTHON_VERSION"
    printf '%s\n' "$candidate"; return
  fi
  for candidate in "$(command -v "python$PYTHON_VERSION" || true)" \
      $(ls -d "$(pyenv root 2>/dev/null || echo /nonexistent)"/versions/"$PYTHON_VERSION".*/bin/python"$PYTHON_VERSION" 2>/dev/null | sort -V -r); do
    [ -n "$candidate" ] && [ "$(python_version_of "$candidate")" = "$PYTHON_VERSION" ] && { printf '%s\n' "$candidate"; return; }
  done
  die "STACK=$STACK needs Python $PYTHON_VERSION: put python$PYTHON_VERSION on the PATH or set PYTHON=/path/to/python$PYTHON_VERSION"
}
PYTHON="$(find_python)"
PYVER="$PYTHON_VERSION"
[ -z "$TIMES_FILE" ] || { mkdir -p "$(dirname "$TIMES_FILE")"; : >"$TIMES_FILE"; }

# --- idempotence stamp -----------------------------------------------------
stamp_hash() {
  cat "$CONSTRAINTS" "$RUNTIME" "$REPO/requirements/tests.txt" "$REPO/setup.py" \
    "$REPO/scripts/setup_env.sh" "$REPO/scripts/pch_cxx.sh" "$REPO/scripts/smoke_check.py" \
    | sha256sum | cut -c1-16
}
STAMP="$VENV/.resnest_plugin_setup"
WANT="$(stamp_hash) stack=$STACK cuda=${FORCE_CUDA:-0}"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ] \
   && "$VENV/bin/python" "$REPO/scripts/smoke_check.py" --stack "$STACK" --constraints "$CONSTRAINTS" --quiet; then
  echo "[setup] environment in $VENV is up to date (stamp $WANT); nothing to do."
  exit 0
fi

# --no-compile: byte-compiling torch's ~10k modules at install costs ~30 s of
# a warm set-up; Python compiles what is imported, when it is imported.
PIP() { PIP_CONSTRAINT="$CONSTRAINTS" "$VENV/bin/python" -m pip --disable-pip-version-check "$@" -c "$CONSTRAINTS"; }
PIP_INSTALL() { PIP install --no-compile "$@"; }

echo "[setup] stack $STACK ($GENERATION, Python $PYVER, torch $TORCH_VERSION) -> $VENV (pins: ${CONSTRAINTS#$REPO/})"
step "virtualenv $VENV (Python $PYVER)"
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
# ninja: torch's cpp_extension compiles in parallel (MAX_JOBS) and through
# $CXX (the precompiled-header wrapper) only with ninja; without it, one
# translation unit at a time with the sysconfig compiler.
PIP_INSTALL -q "setuptools" wheel ninja
step_done

step "torch $TORCH_VERSION + torchvision $TORCHVISION_VERSION"
PIP_INSTALL -q "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION"
step_done

step "runtime dependencies of the OpenMMLab packages (${RUNTIME#$REPO/})"
# A row that pins Cython builds a dependency from its sdist: xtcocotools has no
# cp312 wheel, and its setup.py imports numpy without declaring it, so it is
# built without isolation, against the row's numpy, installed first.
if [ -n "$(pin Cython)" ]; then
  PIP_INSTALL -q numpy Cython
  PIP_INSTALL -q --no-build-isolation -r "$RUNTIME"
else
  PIP_INSTALL -q -r "$RUNTIME"
fi
step_done

# --- mmcv(-full) with compiled ops --------------------------------------------
FLAVOUR=cpu
if [ "${FORCE_CUDA:-0}" = "1" ]; then
  command -v nvcc >/dev/null || die "FORCE_CUDA=1 but nvcc is not on PATH; install the CUDA toolkit or unset FORCE_CUDA"
  FLAVOUR="cuda$(nvcc --version | sed -n 's/.*release \([0-9.]*\).*/\1/p')"
fi
PYTAG=$("$VENV/bin/python" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
WHEEL_DIR="$CACHE/wheels/${MMCV_DIST}-${MMCV_VERSION}_torch-${TORCH_VERSION}_${PYTAG}_${FLAVOUR}"

if ls "$WHEEL_DIR"/"$MMCV_WHEEL_NAME"-*.whl >/dev/null 2>&1; then
  step "$MMCV_DIST $MMCV_VERSION from the wheel cache ($WHEEL_DIR)"
else
  step "$MMCV_DIST $MMCV_VERSION: building from sdist with $FLAVOUR ops (cold: ~6 min on 2 cores)"
  BUILD_ROOT="$(mktemp -d "${TMPDIR:-/tmp}/mmcv-build.XXXXXX")"
  if [ -n "$LOCAL_SDIST" ]; then
    [ -f "$LOCAL_SDIST" ] || die "RESNEST_PLUGIN_MMCV_SDIST=$LOCAL_SDIST: no such file (expected a $MMCV_DIST-$MMCV_VERSION.tar.gz)"
    cp "$LOCAL_SDIST" "$BUILD_ROOT/$MMCV_DIST-$MMCV_VERSION.tar.gz"
  else
    # Fetching the sdist runs its setup.py for metadata, which imports
    # pkg_resources and torch: no build isolation (an isolated build cannot see
    # torch and silently skips the ops).
    PIP download -q --no-deps --no-build-isolation --no-binary "$MMCV_DIST" \
        "$MMCV_DIST==$MMCV_VERSION" -d "$BUILD_ROOT"
  fi
  tar -xzf "$BUILD_ROOT/$MMCV_DIST-$MMCV_VERSION.tar.gz" -C "$BUILD_ROOT"
  SRC="$BUILD_ROOT/$MMCV_DIST-$MMCV_VERSION"
  [ -f "$SRC/setup.py" ] || die "the sdist has no $MMCV_DIST-$MMCV_VERSION/setup.py"
  # mmcv's setup.py hard-codes a C++ standard (1.7.0: -std=c++14, 2.1.0:
  # -std=c++17, at the C++ and nvcc sites) after torch's own flags (mmcv#3341,
  # PR #3340). Raised to what this torch's headers need (TORCH_STD, above),
  # never lowered: torch 1.13 builds with mmcv-full's C++14, torch 2.1 with
  # mmcv 2.1.0's C++17, torch 2.14+ needs C++20.
  grep -q -- "-std=$MMCV_STD" "$SRC/setup.py" || die "no -std=$MMCV_STD in $SRC/setup.py (expected in $MMCV_DIST $MMCV_VERSION)"
  if [ "${TORCH_STD#c++}" -gt "${MMCV_STD#c++}" ]; then
    sed -i -e "s/-std=$MMCV_STD/-std=$TORCH_STD/g" "$SRC/setup.py"
    ! grep -q -- "-std=$MMCV_STD" "$SRC/setup.py" || die "could not patch the C++ standard in $SRC/setup.py"
    echo "    C++ standard: -std=$MMCV_STD raised to -std=$TORCH_STD for torch $TORCH_VERSION"
  else
    echo "    C++ standard: mmcv's -std=$MMCV_STD suits torch $TORCH_VERSION (needs $TORCH_STD)"
  fi
  LOG="$BUILD_ROOT/build.log"
  # The precompiled-header wrapper (scripts/pch_cxx.sh) is the compiler ninja
  # runs; it calls the user's $CXX (default c++) with the same flags.
  BUILD_ENV=()
  COMPILER="${CXX:-c++} (RESNEST_PLUGIN_PCH=0: no precompiled header)"
  if [ "${RESNEST_PLUGIN_PCH:-1}" != "0" ]; then
    BUILD_ENV=("CXX=$REPO/scripts/pch_cxx.sh" "RESNEST_PLUGIN_REAL_CXX=${CXX:-c++}"
               "RESNEST_PLUGIN_PCH_DIR=$BUILD_ROOT/pch")
    COMPILER="scripts/pch_cxx.sh around ${CXX:-c++} (precompiled header)"
  fi
  echo "    source: $SRC; log: $LOG"
  echo "    compiler: $COMPILER"
  (
    cd "$SRC"
    env "${BUILD_ENV[@]}" MMCV_WITH_OPS=1 MAX_JOBS="${MAX_JOBS:-$(nproc)}" FORCE_CUDA="${FORCE_CUDA:-0}" \
      "$VENV/bin/python" -m pip --disable-pip-version-check wheel -v --no-deps \
      --no-build-isolation . -w "$BUILD_ROOT/dist" -c "$CONSTRAINTS" >"$LOG" 2>&1
  ) &
  BUILD_PID=$!
  # Should this script stop (error, Ctrl-C), do not leave the compiler running.
  trap 'kill "$BUILD_PID" 2>/dev/null || true' EXIT
  # Poll each second (a small build ends at once), report every 30 s.
  last_report=$(date +%s)
  while kill -0 "$BUILD_PID" 2>/dev/null; do
    sleep 1
    [ $(( $(date +%s) - last_report )) -ge 30 ] || continue
    last_report=$(date +%s)
    # ninja prints "[done/total]" per translation unit ($MMCV_UNITS CPU ops). Before
    # the first one, grep finds nothing and fails: "|| true", or set -e (with
    # pipefail) would end the script while the build goes on in the background.
    PROGRESS=$(grep -o '^ *\[[0-9]*/[0-9]*\]' "$LOG" 2>/dev/null | tail -n 1 | tr -d ' []' || true)
    printf '    [%s] %s ops compiled: %s translation units, %ss elapsed\n' \
      "$(date +%H:%M:%S)" "$MMCV_DIST" "${PROGRESS:-0/$MMCV_UNITS}" "$(( $(date +%s) - step_start ))"
  done
  if ! wait "$BUILD_PID"; then
    tail -n 40 "$LOG" >&2
    die "$MMCV_DIST build failed; full log: $LOG"
  fi
  trap - EXIT
  if [ "${RESNEST_PLUGIN_PCH:-1}" != "0" ]; then
    PCH_USED=0
    [ ! -f "$BUILD_ROOT/pch/used.log" ] || PCH_USED=$(wc -l <"$BUILD_ROOT/pch/used.log")
    PCH_UNUSABLE=$(grep -c 'not used because' "$LOG" || true)
    echo "    precompiled header: given to $PCH_USED translation units, unusable in $PCH_UNUSABLE"
  fi
  WHEELS=("$BUILD_ROOT"/dist/"$MMCV_WHEEL_NAME"-*.whl)
  [ -f "${WHEELS[0]}" ] || die "the $MMCV_DIST build wrote no wheel into $BUILD_ROOT/dist; log: $LOG"
  # An isolated or misconfigured build silently skips the ops: refuse a wheel
  # without mmcv/_ext. Read in Python, not by piping a listing into grep's -q mode: under pipefail
  # grep's early exit can kill the lister with SIGPIPE and fail the check.
  "$VENV/bin/python" - "${WHEELS[0]}" <<'PYEOF' || die "the $MMCV_DIST wheel ${WHEELS[0]##*/} has no compiled ops (mmcv/_ext*); log: $LOG"
import sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
sys.exit(0 if any(name.startswith("mmcv/_ext") for name in names) else 1)
PYEOF
  mkdir -p "$WHEEL_DIR"
  cp "${WHEELS[0]}" "$WHEEL_DIR/"
  rm -rf "$BUILD_ROOT"
  echo "    cached $(ls "$WHEEL_DIR") in $WHEEL_DIR"
fi
PIP_INSTALL -q --no-deps --force-reinstall "$WHEEL_DIR"/"$MMCV_WHEEL_NAME"-*.whl
step_done
if [ "$STOP_AFTER" = "mmcv" ]; then
  echo "[setup] stopping after $MMCV_DIST (RESNEST_PLUGIN_SETUP_STOP_AFTER=mmcv); no stamp written"
  exit 0
fi

step "${OPENMMLAB[*]} (--no-deps: their real deps are in ${RUNTIME#$REPO/}; no chumpy)"
PIP_INSTALL -q --no-deps "${OPENMMLAB[@]}"
step_done

step "test / benchmark tools (requirements/tests.txt)"
PIP_INSTALL -q -r "$REPO/requirements/tests.txt"
step_done

step "resnest_plugin (editable)"
PIP_INSTALL -q --no-deps --no-build-isolation -e "$REPO"
step_done

step "smoke check"
"$VENV/bin/python" "$REPO/scripts/smoke_check.py" --stack "$STACK" --constraints "$CONSTRAINTS"
step_done

echo "$WANT" > "$STAMP"
printf '\n[setup] environment ready in %ss: %s\n' "$(( $(date +%s) - T_START ))" "$VENV"
