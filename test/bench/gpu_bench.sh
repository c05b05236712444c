#!/bin/bash
# test/bench/gpu_bench.sh — the GPU build benchmark of issue 5, on the GPU
# machine: CREATE INDEX of the generated 768-d set (issue 4's gen_clustered
# recipe) at 1M rows, m 16, ef_construction 64, built on the GPU and then
# on the CPU (hierindex.build_threads 0: all cores); for each, the wall time,
# the build's NOTICE lines (which builder ran, the time of each phase), the
# index size, and recall@10 at hnsw.ef_search 40 and 100 against the exact
# top-10 (knn_truth, brute force in double precision) of 1000 queries.
# Prints a table and the same as Markdown rows for the README.
#
# Beforehand, on the machine with PostgreSQL:  bash test/gpu/prepare-device.sh
# On the GPU machine, from the repository root, with .device carried:
#     bash test/bench/gpu_bench.sh                 (1M rows: about 5-8 minutes)
#
#   --rows N          base vectors (default 1000000)
#   --queries N       queries (default 1000)
#   --devices "a b"   build_device values, in order (default "gpu cpu");
#                     "default" builds without the option
#   --ef "40 100"     hnsw.ef_search values for recall
#   --m M --ef-construction E
#   --load-workers N  parallel workers for the build's heap scan (default 15:
#                     the table's parallel_workers and
#                     max_parallel_maintenance_workers; 0: the leader alone)
#   --skip-build      use the hierindex_gpu.so already built (run-on-device.sh
#                     on the same machine)
#
# GPU_BENCH_SETTINGS="name=value ...": more server settings, after those
# below (e.g. log_min_messages=debug1: the server log then has each build's
# finer timings, such as the bulk writer's layout / pages / WAL split).
#
# Server settings for a 128 GB, 16-core machine: shared_buffers 16GB (table
# and index stay cached), maintenance_work_mem 32GB (the 1M graph is about
# 3.3 GB of vectors plus links, far inside), max_wal_size 32GB and
# checkpoint_timeout 1h (no checkpoint in the middle of a build), jit off,
# no parallel query (recall is about the index, not about workers).
# Durability is left at its defaults: writing and logging the pages is part
# of what CREATE INDEX costs.
#
# The setup (PostgreSQL from .device/, the extension, hierindex_gpu.so, the
# data tools) is test/gpu/device_lib.sh's, shared with run-on-device.sh.
# Logs and results go to $OUT when set, else .device/logs.  Vectors and the
# ground truth stay in /tmp/hierindex-device, so a rerun on the same machine
# skips generating them.  HIERINDEX_DEVICE_LOCAL=1 runs it on a machine
# without a GPU (small --rows; see device_lib.sh).
set -uo pipefail
# shellcheck source=test/gpu/device_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../gpu/device_lib.sh"

ROWS=1000000
LOAD_WORKERS=15
QUERIES=1000
DIM=768
DEVICES="gpu cpu"
EF_LIST="40 100"
M=16
EF_CONSTRUCTION=64
BUILD_MODULE=1

while [ $# -gt 0 ]; do
	case $1 in
		--rows) ROWS=${2:?--rows needs a number}; shift ;;
		--queries) QUERIES=${2:?--queries needs a number}; shift ;;
		--devices) DEVICES=${2:?--devices needs a list}; shift ;;
		--ef) EF_LIST=${2:?--ef needs a list}; shift ;;
		--m) M=${2:?--m needs a number}; shift ;;
		--ef-construction) EF_CONSTRUCTION=${2:?--ef-construction needs a number}; shift ;;
		--skip-build) BUILD_MODULE=0 ;;
		--load-workers) LOAD_WORKERS=${2:?--load-workers needs a number}; shift ;;
		-h|--help) sed -n '2,/^set /p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
		*) echo "gpu_bench.sh: unknown argument '$1'" >&2; exit 2 ;;
	esac
	shift
done
for n in "$ROWS" "$QUERIES" "$M" "$EF_CONSTRUCTION" $EF_LIST; do
	[[ $n =~ ^[1-9][0-9]*$ ]] || die "not a positive integer: '$n'"
done
[ "$ROWS" -gt 10 ] || die "--rows must exceed 10"

RESULTS=()

# One index: build, recall at each ef_search; one result row per index.
bench_index()
{
	local device=$1 ef recall recalls="" notices

	if ! device_build_index items "$device" "$M" "$EF_CONSTRUCTION"; then
		RESULTS+=("$device|FAILED|-|-|$(grep -m1 ERROR "$BUILD_NOTICES" | tr '|' '/')|")
		return 1
	fi
	for ef in $EF_LIST; do
		recall=$(device_recall items "$ef") || recall=error
		say "$device: recall@10 at ef_search $ef: $recall"
		recalls="$recalls${recalls:+ · }$recall"
	done
	# the NOTICE lines without their "NOTICE:  " / "DETAIL:  " prefixes, on one line
	notices=$(sed -E 's/^(psql:[^:]*:[0-9]+: )?(NOTICE|DETAIL|INFO): +//' "$BUILD_NOTICES" |
		tr '\n|' '; ' | sed 's/; $//')
	RESULTS+=("$device|$BUILD_METHOD|$BUILD_S|$SIZE_MB|$recalls|$notices")
	sql -c "DROP INDEX $INDEX_NAME" -c CHECKPOINT || return 1
}

print_results()
{
	local row device method build size recalls notices

	echo
	say "results: $ROWS x $DIM (gen_clustered), m $M, ef_construction $EF_CONSTRUCTION, recall@10 over $QUERIES queries at ef_search $EF_LIST; $(nproc) cores; $(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n 1)"
	printf '%-8s %-8s %9s %9s  %-20s %s\n' device method "build s" "size MB" "recall@10" "build NOTICEs"
	for row in "${RESULTS[@]}"; do
		IFS='|' read -r device method build size recalls notices <<<"$row"
		printf '%-8s %-8s %9s %9s  %-20s %s\n' "$device" "$method" "$build" "$size" "$recalls" "$notices"
	done
	echo
	echo "| builder | rows × dim | CREATE INDEX | index size | recall@10 at ef_search ${EF_LIST// / · } | phases (NOTICE) |"
	echo "|---|---|---|---|---|---|"
	for row in "${RESULTS[@]}"; do
		IFS='|' read -r device method build size recalls notices <<<"$row"
		echo "| $method ($device$([ "$method" = cpu ] && echo ", $(nproc) cores")) | $ROWS × $DIM | $build s | $size MB | $recalls | $notices |"
	done
}

main()
{
	local base queries truth truth_pid device failures=0

	device_setup
	say "gpu_bench: $ROWS x $DIM, $QUERIES queries, builders: $DEVICES"
	if [ "$DEVICE_LOCAL" != 1 ] && [ "$BUILD_MODULE" = 1 ]; then
		device_build_module || die "the GPU module did not build"
	fi
	device_build_data_tools

	base=$DEVICE_WORK/gen768-base-$ROWS.fvecs
	queries=$DEVICE_WORK/gen768-queries-$QUERIES.fvecs
	truth=$DEVICE_WORK/gen768-truth-$ROWS-$QUERIES.copy
	say "generating vectors (gen_clustered $DIM 1000 ...) ..."
	device_gen_clustered "$DIM" "$QUERIES" 3 "$queries"
	device_gen_clustered "$DIM" "$ROWS" 2 "$base"
	say "vectors ready ($(du -h "$base" | cut -f1)); exact top-10 (knn_truth) in the background while loading"
	truth_pid=
	if [ ! -s "$truth" ]; then
		test/bench/knn_truth l2 10 "$base" "$queries" >"$truth.tmp" 2>"$DEVICE_LOG_DIR/knn_truth.log" &
		truth_pid=$!
	fi

	device_start_postgres shared_buffers=16GB maintenance_work_mem=32GB max_wal_size=32GB \
		checkpoint_timeout=1h jit=off max_parallel_workers_per_gather=0 work_mem=64MB \
		max_worker_processes=24 max_parallel_workers=16 \
		max_parallel_maintenance_workers="$LOAD_WORKERS" ${GPU_BENCH_SETTINGS-}
	device_new_database gpubench
	device_load_vectors items "$DIM" "$base"
	device_load_vectors queries "$DIM" "$queries"
	# the heap scan of a build on LOAD_WORKERS parallel workers (by size alone
	# the server would plan about 6 for these 3 GB of toasted vectors)
	sql -c "ALTER TABLE items SET (parallel_workers = $LOAD_WORKERS)" || die "ALTER TABLE failed"
	sql -c CHECKPOINT || die "CHECKPOINT failed"
	say "loaded $(sql -c 'SELECT count(*) FROM items') rows ($(sql -c "SELECT pg_size_pretty(pg_total_relation_size('items'))"))"

	if [ -n "$truth_pid" ]; then
		wait "$truth_pid" || { cat "$DEVICE_LOG_DIR/knn_truth.log"; die "knn_truth failed"; }
		mv "$truth.tmp" "$truth"
	fi
	sql -c "CREATE TABLE truth (query_id int4 PRIMARY KEY, ids int4[] NOT NULL, distances float8[] NOT NULL)" \
		-c "\\copy truth FROM '$truth'" || die "loading the ground truth failed"
	say "ground truth: $(sql -c 'SELECT count(*) FROM truth') queries"

	for device in $DEVICES; do
		bench_index "$device" || failures=$((failures + 1))
	done
	print_results | tee "$DEVICE_LOG_DIR/gpu_bench-results.txt"
	say "done"
	[ "$failures" -eq 0 ]
}

mkdir -p "$DEVICE_LOG_DIR" || exit 1
main 2>&1 | tee "$DEVICE_LOG_DIR/gpu_bench.log"
exit "${PIPESTATUS[0]}"
