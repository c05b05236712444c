#!/bin/bash
# test/gpu/quality.sh — recall of GPU- and CPU-built graphs on one clustered
# set, for tuning the GPU graph (GPU machine; no PostgreSQL needed):
#   bash test/gpu/quality.sh N D CENTRES [VARIANT...]
# VARIANT: gpu or cpu, optionally :NAME=VALUE,... put in the environment
# before that build (settings stay for the later variants).
# HIERINDEX_QUALITY_TIMES_ONLY=1: build times only, no exact k-NN or recall.
# HIERINDEX_QUALITY_PRECISION=tf32|bf16|fp32|fp16: the GPU k-NN arithmetic (default tf32).
# HIERINDEX_GPU_KNN_SPLIT=1: the k-NN phase split into its steps (slower).
set -euo pipefail
cd "$(dirname "$0")/../.."
make -s -C src/gpu >/dev/null
make -s -C test/gpu test_gpu_build >/dev/null
n=${1:-200000}; d=${2:-768}; c=${3:-200}; shift 3 || true
exec test/gpu/test_gpu_build --quality "$n" "$d" "$c" "$PWD/hierindex_gpu.so" "$@"
