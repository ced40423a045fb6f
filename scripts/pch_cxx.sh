#!/usr/bin/env bash
# C++ compiler wrapper for the mmcv(-full) ops build: precompiles mmcv's common
# header once, then compiles every translation unit against it.
#
# Why: every mmcv ops source starts with #include "pytorch_cpp_helper.hpp",
# which pulls in torch/extension.h. Parsing that header is most of each
# translation unit's compile time (cpu/nms.cpp: 26.7 s cold, 10.1 s with the
# header precompiled), so compiling it once cuts the cold build by ~3x.
#
# How it stays valid by construction (GCC manual, "Using Precompiled Headers"):
#   * the .gch is built with exactly the flags of the call that needs it (the
#     call's flags minus its source, object and dependency-file arguments), and
#     keyed by a hash of those flags and of the compiler, so a call with other
#     flags gets its own .gch;
#   * its folder goes first on the include path, holding the .gch only: when GCC
#     cannot use it (the header is not the first include, flags differ) it
#     ignores it and goes on to mmcv's real header, so the worst case is the
#     plain compile.
#   * a lock (flock) makes the parallel ninja jobs build it once;
#   * every translation unit given the header's folder is listed in
#     $RESNEST_PLUGIN_PCH_DIR/used.log, which setup_env.sh reports.
#
# Debug info: Python's sysconfig CFLAGS carry -g, which mmcv's build inherits
# (an ~82 MB _ext .so). -g never changes generated code (GCC manual, -g and
# -fcompare-debug), so the wrapper appends -g0 unless
# RESNEST_PLUGIN_MMCV_DEBUG=1.
#
# Environment:
#   RESNEST_PLUGIN_REAL_CXX   the compiler to run (default: c++)
#   RESNEST_PLUGIN_PCH_DIR    where the .gch files go (required)
#   RESNEST_PLUGIN_MMCV_DEBUG 1 keeps -g
#   RESNEST_PLUGIN_PCH_HEADER header to precompile (default: pytorch_cpp_helper.hpp)
set -euo pipefail

REAL_CXX="${RESNEST_PLUGIN_REAL_CXX:-c++}"
PCH_DIR="${RESNEST_PLUGIN_PCH_DIR:?RESNEST_PLUGIN_PCH_DIR must name a folder for the precompiled headers}"
HEADER_NAME="${RESNEST_PLUGIN_PCH_HEADER:-pytorch_cpp_helper.hpp}"

args=("$@")
[ "${RESNEST_PLUGIN_MMCV_DEBUG:-0}" = "1" ] || args+=("-g0")

# Only a compile of a C++ source (-c file.cpp) gets the header; everything else
# (version probes, links) runs unchanged.
source_file=""
compile=0
for arg in "${args[@]}"; do
  case "$arg" in
    -c) compile=1 ;;
    *.cpp|*.cc|*.cxx) source_file="$arg" ;;
  esac
done
if [ "$compile" != 1 ] || [ -z "$source_file" ]; then
  exec "$REAL_CXX" "${args[@]}"
fi

# The flags the header is compiled with: this call's, minus the per-file ones.
header_flags=()
header_path=""
skip_next=0
for arg in "${args[@]}"; do
  if [ "$skip_next" = 1 ]; then skip_next=0; continue; fi
  case "$arg" in
    -c|-MMD|-MD) ;;
    -o|-MF|-MT|-MQ) skip_next=1 ;;
    "$source_file") ;;
    *)
      header_flags+=("$arg")
      if [ -z "$header_path" ] && [[ "$arg" == -I* ]] && [ -f "${arg#-I}/$HEADER_NAME" ]; then
        header_path="${arg#-I}/$HEADER_NAME"
      fi ;;
  esac
done
if [ -z "$header_path" ]; then
  exec "$REAL_CXX" "${args[@]}"
fi

key=$(printf '%s\n' "$REAL_CXX" "$header_path" "${header_flags[@]}" | sha256sum | cut -c1-16)
gch_dir="$PCH_DIR/$key"
gch="$gch_dir/$HEADER_NAME.gch"
if [ ! -f "$gch" ]; then
  mkdir -p "$gch_dir"
  (
    flock 9
    if [ ! -f "$gch" ]; then
      "$REAL_CXX" -x c++-header "${header_flags[@]}" "$header_path" -o "$gch.tmp.$$"
      mv "$gch.tmp.$$" "$gch"
    fi
  ) 9>"$gch_dir/.lock"
fi
# -Winvalid-pch: should GCC find the .gch but be unable to use it, the build
# log says so ("not used because"), and setup_env.sh counts those lines.
printf '%s\n' "$source_file" >>"$PCH_DIR/used.log"
exec "$REAL_CXX" "-I$gch_dir" -Winvalid-pch "${args[@]}"
