#!/bin/bash
# Runs the GPU tests on a machine with a CUDA GPU (the lent device machine, or
# any workstation): builds hierindex_gpu.so with nvcc there and checks that the
# module finds and describes the GPU.  Later GPU work (the builder's kernel
# tests against a CPU reference, the end-to-end PostgreSQL run) extends this
# script, so that one call reruns everything.
#   usage: bash test/gpu/run-on-device.sh        (from the repository root)
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH=/usr/local/cuda/bin:$PATH
command -v nvcc >/dev/null || { echo "nvcc not found: this script needs a CUDA toolkit" >&2; exit 1; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
nvcc --version | tail -1
# Only the GPU module: PGXS (pg_config) need not exist on the GPU machine.
make -s -C src/gpu clean
make -C src/gpu
make -s -C test/gpu clean check-gpu
