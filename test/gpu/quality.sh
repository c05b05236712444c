#!/bin/bash
# test/gpu/quality.sh — recall of GPU- and CPU-built graphs on one clustered
# set, for tuning the GPU graph (GPU machine; no PostgreSQL needed):
#   bash test/gpu/quality.sh N D CENTRES [VARIANT...]
# VARIANT: gpu or cpu, optionally :NAME=VALUE,... put in the environment
# before that build (settings stay for the later variants).
# HIERINDEX_QUALITY_TIMES_ONLY=1: build times only, no exact k-NN or recall.
set -euo pipefail
cd "$(dirname "$0")/../.."
make -s -C src/gpu >/dev/null
make -s -C test/gpu test_gpu_build >/dev/null
n=${1:-200000}; d=${2:-768}; c=${3:-200}; shift 3 || true
exec test/gpu/test_gpu_build --quality "$n" "$d" "$c" "$PWD/hierindex_gpu.so" "$@"
