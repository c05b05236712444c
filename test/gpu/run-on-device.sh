#!/bin/bash
# test/gpu/run-on-device.sh — every GPU test in one call, on a machine with
# a CUDA GPU (the lent device machine, or any workstation):
#
#   1. build   hierindex_gpu.so with nvcc (make -C src/gpu)
#   2. kernel  make -C test/gpu check-gpu: the probe describes the GPU, then
#              test_gpu_build (k-NN and whole graph against CPU references,
#              errors, cancel, no leaks; see test_gpu_build.c)
#   3. e2e     PostgreSQL 15 from .device/ with the staged extension and the
#              fresh hierindex_gpu.so: a table of clustered vectors
#              (gen_clustered), the exact top-10 of each query by sequential
#              scan, then for each build device an hnsw index and a
#              matryoshka index (m 16, ef_construction 64; matryoshka with
#              its default granularities) that must give hierindex_check no
#              rows, the right build_method, and recall@10 >= 0.99 at
#              ef_search 100; a matryoshka index also >= 0.98 at the
#              default settings (the ef_search its build measured)
#
# Beforehand, on the machine with PostgreSQL (once per change of the C or
# SQL side):   bash test/gpu/prepare-device.sh
# Then on the GPU machine, from the repository root, with .device carried:
#              bash test/gpu/run-on-device.sh
#
#   --rows N          e2e table size (default 50000)
#   --dim D           e2e dimensions (default 128)
#   --queries N       e2e queries (default 1000)
#   --devices "a b"   build_device values for the e2e indexes (default
#                     "gpu cpu matryoshka:gpu matryoshka:cpu": AM:DEVICE
#                     builds that access method, else hnsw); "default"
#                     builds without the option, for a server that lacks it
#                     (E2E_DEVICES in the environment does the same)
#   --skip-build --skip-kernel --skip-e2e   leave a step out
#
# Logs go to $OUT when set (the device tool brings them back), else to
# .device/logs.  The last lines are a table of the steps; the exit status is
# non-zero when any step failed.  HIERINDEX_DEVICE_LOCAL=1 runs the e2e step
# on a machine without a GPU (see device_lib.sh) to try its SQL.
set -uo pipefail
# shellcheck source=test/gpu/device_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/device_lib.sh"

E2E_ROWS=50000
E2E_DIM=128
E2E_QUERIES=1000
E2E_DEVICES=${E2E_DEVICES:-gpu cpu matryoshka:gpu matryoshka:cpu}
E2E_M=16
E2E_EF_CONSTRUCTION=64
E2E_EF_SEARCH=100
E2E_RECALL_TARGET=${E2E_RECALL_TARGET:-0.99}
E2E_DEFAULT_RECALL_TARGET=0.98	# matryoshka at its defaults (issue 6)
RUN_BUILD=1
RUN_KERNEL=1
RUN_E2E=1

while [ $# -gt 0 ]; do
	case $1 in
		--rows) E2E_ROWS=${2:?--rows needs a number}; shift ;;
		--dim) E2E_DIM=${2:?--dim needs a number}; shift ;;
		--queries) E2E_QUERIES=${2:?--queries needs a number}; shift ;;
		--devices) E2E_DEVICES=${2:?--devices needs a list}; shift ;;
		--skip-build) RUN_BUILD=0 ;;
		--skip-kernel) RUN_KERNEL=0 ;;
		--skip-e2e) RUN_E2E=0 ;;
		-h|--help) sed -n '2,/^set /p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
		*) echo "run-on-device.sh: unknown argument '$1'" >&2; exit 2 ;;
	esac
	shift
done

STEPS=()
FAILED=0

# record STEP ok|FAILED|skipped DETAIL
record()
{
	STEPS+=("$(printf '%-8s %-8s %s' "$1" "$2" "$3")")
	[ "$2" = FAILED ] && FAILED=$((FAILED + 1))
	return 0
}

run_kernel_tests()
{
	local log=$DEVICE_LOG_DIR/kernel.log summary

	say "kernel tests (make -C test/gpu check-gpu) ..."
	make -s -C test/gpu clean >/dev/null
	make -C test/gpu check-gpu 2>&1 | tee "$log"
	local rc=${PIPESTATUS[0]}
	summary=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$log" | tr '\n' ';' | sed 's/;$//')
	if [ "$rc" -eq 0 ]; then
		record kernel ok "${summary:-?}"
	else
		record kernel FAILED "exit $rc; ${summary:-no summary line}"
	fi
}

# recall_reaches RECALL TARGET: RECALL is a number (not "error") >= TARGET
recall_reaches()
{
	awk -v r="$1" -v t="$2" 'BEGIN { exit !(r + 0 >= t && r != "error") }'
}

# One e2e index: build, check, recall; appends a row to E2E_TABLE.
e2e_index()
{
	local device=$1 am=hnsw expect problems recall status=ok notes=""

	# "matryoshka:gpu": that access method, built on that device
	if [[ $device == *:* ]]; then
		am=${device%%:*}
		device=${device#*:}
	fi
	if ! device_build_index items "$device" "$E2E_M" "$E2E_EF_CONSTRUCTION" "$am"; then
		E2E_TABLE+=("$(printf '%-15s %-8s %8s %8s %8s %9s  %s' "$device" - - - - - \
			"FAILED: CREATE INDEX: $(grep -m1 ERROR "$BUILD_NOTICES")")")
		return 1
	fi
	case $device in
		gpu|cpu) expect=$device ;;
		*) expect=$BUILD_METHOD ;;	# auto / default: whichever ran
	esac
	[ "$BUILD_METHOD" = "$expect" ] || { status=FAILED; notes="$notes build_method $BUILD_METHOD, want $expect;"; }
	problems=$(sql -c "SELECT count(*) FROM hierindex_check('$INDEX_NAME')") || problems=error
	if [ "$problems" != 0 ]; then
		status=FAILED
		notes="$notes hierindex_check: $problems problems;"
		sql -c "SELECT * FROM hierindex_check('$INDEX_NAME') LIMIT 10" | sed 's/^/    /'
	fi
	recall=$(device_recall items "$E2E_EF_SEARCH") || recall=error
	if ! recall_reaches "$recall" "$E2E_RECALL_TARGET"; then
		status=FAILED
		notes="$notes recall $recall < $E2E_RECALL_TARGET;"
	fi
	if [ "$am" = matryoshka ]; then
		# the default settings: the ef_search the build measured
		local measured default_recall
		measured=$(sql -c "SELECT default_ef_search FROM hierindex_index_info('$INDEX_NAME')") || measured=error
		default_recall=$(device_recall items default) || default_recall=error
		notes="$notes default ef_search $measured: recall@10 $default_recall;"
		if ! recall_reaches "$default_recall" "$E2E_DEFAULT_RECALL_TARGET"; then
			status=FAILED
			notes="$notes below $E2E_DEFAULT_RECALL_TARGET;"
		fi
	fi
	[ "$am" = hnsw ] || device=$am:$device
	say "$device: hierindex_check $problems problems, recall@10 $recall at ef_search $E2E_EF_SEARCH: $status"
	E2E_TABLE+=("$(printf '%-15s %-8s %8s %8s %8s %9s  %s' "$device" "$BUILD_METHOD" "$BUILD_S" \
		"$SIZE_MB" "$problems" "$recall" "$status$notes")")
	sql -c "DROP INDEX $INDEX_NAME" || return 1
	[ "$status" = ok ]
}

run_e2e()
{
	local base=$DEVICE_WORK/e2e-base-$E2E_DIM-$E2E_ROWS.fvecs
	local queries=$DEVICE_WORK/e2e-queries-$E2E_DIM-$E2E_QUERIES.fvecs
	local device failures=0 line

	say "e2e: $E2E_ROWS x $E2E_DIM clustered vectors, $E2E_QUERIES queries, build devices: $E2E_DEVICES"
	device_build_data_tools
	device_gen_clustered "$E2E_DIM" "$E2E_ROWS" 2 "$base"
	device_gen_clustered "$E2E_DIM" "$E2E_QUERIES" 3 "$queries"
	device_start_postgres shared_buffers=4GB maintenance_work_mem=8GB max_wal_size=8GB jit=off \
		max_parallel_workers_per_gather=0
	device_new_database e2e
	device_load_vectors items "$E2E_DIM" "$base"
	device_load_vectors queries "$E2E_DIM" "$queries"
	say "loaded; exact top-10 of each query by sequential scan ..."
	device_exact_truth items
	say "truth: $(sql -c 'SELECT count(*) FROM truth') rows"

	E2E_TABLE=("$(printf '%-15s %-8s %8s %8s %8s %9s  %s' device method "build s" "size MB" problems recall@10 status)")
	for device in $E2E_DEVICES; do
		e2e_index "$device" || failures=$((failures + 1))
	done
	echo
	echo "e2e: $E2E_ROWS x $E2E_DIM, m $E2E_M, ef_construction $E2E_EF_CONSTRUCTION, recall@10 over $E2E_QUERIES queries at ef_search $E2E_EF_SEARCH (target $E2E_RECALL_TARGET)"
	for line in "${E2E_TABLE[@]}"; do
		echo "  $line"
	done
	[ "$failures" -eq 0 ]
}

main()
{
	device_setup
	if [ "$RUN_BUILD" = 1 ] && [ "$DEVICE_LOCAL" != 1 ]; then
		if device_build_module; then
			record build ok "hierindex_gpu.so"
		else
			record build FAILED "see build.log"
		fi
	else
		record build skipped ""
	fi
	if [ "$RUN_KERNEL" = 1 ] && [ "$DEVICE_LOCAL" != 1 ]; then
		run_kernel_tests
	else
		record kernel skipped ""
	fi
	if [ "$RUN_E2E" = 1 ]; then
		# a subshell (the pipe): the server it starts stops when it ends
		run_e2e 2>&1 | tee "$DEVICE_LOG_DIR/e2e.log"
		if [ "${PIPESTATUS[0]}" -eq 0 ]; then
			record e2e ok "devices: $E2E_DEVICES"
		else
			record e2e FAILED "see e2e.log"
		fi
	else
		record e2e skipped ""
	fi

	echo
	say "summary (logs in $DEVICE_LOG_DIR)"
	local line
	for line in "${STEPS[@]}"; do
		echo "  $line"
	done
	if [ "$FAILED" -eq 0 ]; then
		say "all steps passed"
	else
		say "$FAILED step(s) FAILED"
		return 1
	fi
}

main
