#!/bin/bash
# test/bench/hnsw_bench.sh — the hnsw benchmark of issue 4: build time, index
# size, recall@10 and queries per second for a list of ef_search values.
#
#   bash test/bench/hnsw_bench.sh [fmnist|gen768|both] [options]
#
#   fmnist             Fashion-MNIST: 60000 train images as base, the first
#                      1000 test images as queries, raw pixels, 784-d
#                      (Debian package dataset-fashion-mnist; installed when
#                      missing and run as root)
#   gen768             generated: 100000 clustered 768-d unit vectors and 1000
#                      queries (gen_clustered.c)
#   both               both, one after the other (the default)
#   --rows N           only the first N base vectors (a quick run)
#   --queries N        only the first N queries (default 1000)
#   --ef "10 20 40 80" the hnsw.ef_search values to measure (default shown)
#   --opclass l2|cosine  operator class and metric (default l2)
#   --m M --ef-construction E   index options (default 16 and 64)
#   --threads N        hierindex.build_threads for CREATE INDEX (default 0: all cores)
#   --seconds S        pgbench run per ef_search, one query per statement (default 10)
#   --repeat R         runs of the all-queries statement per ef_search; the
#                      fastest counts (default 3)
#   --no-index         build no index: every query is an exact sequential scan;
#                      recall must come out 1 (checks the data and the truth)
#   --no-build         use the installed extension as it is (no make, no install)
#   --data-dir DIR     cache of vectors and ground truth between runs
#                      (default ${TMPDIR:-/tmp}/hierindex-bench)
#   --shared-buffers SIZE the server's shared_buffers (default 2GB; a data set
#                      larger than that is read through the OS cache)
#   --maintenance-work-mem SIZE  for CREATE INDEX (default 2GB; a graph that
#                      does not fit is finished by single inserts, slowly)
#
# What it does, per data set:
#   1. vectors as fvecs files and the exact top-10 of every query, computed
#      once outside the database by brute force in double precision
#      (knn_truth.c) and cached in the data directory;
#   2. a throwaway cluster (tools/cluster.sh) with the extension (built and
#      installed under the install lock), one database per data set with
#      tables items (id, embedding), queries (id, embedding) and truth
#      (query_id, ids, distances), loaded with binary COPY;
#   3. CREATE INDEX ... USING hnsw (embedding vector_<opclass>_ops)
#      WITH (m, ef_construction), timed on the server (clock_timestamp), and
#      the index size (pg_relation_size);
#   4. per ef_search: a look at both statements' plans (when the planner
#      does not choose the index by itself, the run says so, shows the plans
#      and measures the index with enable_seqscan = off; the tables mark
#      those numbers), recall@10 against the truth table, then
#      (a) one query per statement from one client: pgbench -M prepared -c 1,
#          each transaction the query of a random query id,
#          SELECT id FROM items ORDER BY embedding <-> (SELECT embedding
#          FROM queries WHERE id = :qid) LIMIT 10 — client-observed rate;
#      (b) all queries in one statement, the statement of the issue's
#          reference numbers, SELECT q.id, array(SELECT id FROM items ORDER
#          BY embedding <-> q.embedding LIMIT 10) FROM queries q, timed on
#          the server, best of --repeat runs;
#   5. a table of everything, and the same as Markdown rows for the README.
#
# Server settings (postgresql.auto.conf, for every data set): shared_buffers
# 2GB by default (table and index stay in memory), maintenance_work_mem 2GB by
# default (the graph of a 100k × 768 build fits), jit off and no parallel query (the numbers are
# those of one backend running the index, not of query compilation or
# workers), max_wal_size 8GB (no checkpoint in the middle of a build).
#
# The install lock is held only while installing and creating the extension:
# the library the server loads is then copied into the cluster's own
# directory and the extension's functions are pointed at that copy, so that
# other people's `make install` during a long run neither changes what is
# measured nor waits for it.
#
# The timings are only as quiet as the machine: run it on an otherwise idle
# machine for numbers to publish. The load average is printed at the start
# and the end.
#
# The data, server, load and measuring steps live in bench_lib.sh, shared
# with matryoshka_bench.sh.

set -u -o pipefail

BENCH_NAME=hnsw_bench
# shellcheck source=bench_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/bench_lib.sh"

# gen768: issue 4's generated set (bench_lib.sh has the seeds)
GEN_DIM=768
GEN_ROWS=100000

DATASETS=(fmnist gen768)
EF_LIST="10 20 40 80"
SECONDS_PER_EF=10
REPEAT=3
NO_INDEX=0

script_option()
{
	BENCH_SHIFT=1
	case $1 in
		fmnist|gen768) DATASETS=("$1") ;;
		both) DATASETS=(fmnist gen768) ;;
		--ef) EF_LIST=${2-}; EF_LIST=${EF_LIST//,/ }; BENCH_SHIFT=2 ;;
		--no-index) NO_INDEX=1 ;;
		*) return 1 ;;
	esac
}

bench_parse_args "$@"
need_count_list --ef "$EF_LIST" 1
bench_check_opclass

bench_make_work_dir
RESULTS=$WORK/results		# one line per (data set, ef): see record_result

# ---------------------------------------------------------------------------
# Data: fvecs files and ground truth, cached in DATA_DIR
# ---------------------------------------------------------------------------

# Sets DS_NAME DS_DIM DS_ROWS DS_BASE DS_QUERIES DS_TRUTH for data set $1,
# making whatever files are missing.
prepare_dataset()
{
	local ds=$1 full_rows

	case $ds in
		fmnist)
			DS_NAME=Fashion-MNIST
			DS_DIM=784
			full_rows=60000
			prepare_fmnist_files || return 1
			;;
		gen768)
			DS_NAME="generated 768-d"
			DS_DIM=$GEN_DIM
			full_rows=$GEN_ROWS
			DS_ROWS=${ROWS:-$GEN_ROWS}
			prepare_generated_files "$GEN_DIM" "$GEN_ROWS" || return 1
			;;
	esac
	DS_ROWS=${ROWS:-$full_rows}
	if [ "$DS_ROWS" -gt "$full_rows" ] && [ "$ds" = fmnist ]; then
		die "Fashion-MNIST has $full_rows train images; --rows $DS_ROWS is too many"
	fi
	prepare_truth "$ds"
}

# ---------------------------------------------------------------------------
# One data set
# ---------------------------------------------------------------------------

# Sets BUILD_S and SIZE_MB.
build_index()
{
	if [ "$NO_INDEX" -eq 1 ]; then
		BUILD_S=-
		SIZE_MB=-
		echo "no index (--no-index): exact sequential scans"
		return 0
	fi
	create_index hnsw "$(am_index_options hnsw)"
}

# record_result DATASET EF RECALL QPS_ONE QPS_ALL: a line of the layout of
# print_results_table (the index hnsw, or none under --no-index)
record_result()
{
	local index=hnsw

	[ "$NO_INDEX" -eq 0 ] || index=none
	printf '%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s\n' "$1" "$DS_NAME" "$DS_ROWS" "$DS_DIM" \
		"$index" "$BUILD_S" "$SIZE_MB" "$2" "$3" "$4" "$5" "$PLANNER_CHOICE" >>"$RESULTS"
}

run_dataset()
{
	local ds=$1 ef

	DB=bench_$ds
	header "$DS_NAME: $DS_ROWS × $DS_DIM, $QUERIES queries, $OPCLASS (load average $(load_average))"
	load_dataset || return 1
	build_index || return 1
	printf '%6s  %9s  %12s  %12s  %s\n' ef_search recall@$K "qps 1/stmt" "qps all/stmt" "planner chose the index"
	for ef in $EF_LIST; do
		export PGOPTIONS="-c hnsw.ef_search=$ef"
		if [ "$NO_INDEX" -eq 1 ]; then
			measure_setting no-index || return 1
		else
			measure_setting || return 1
		fi
		printf '%6s  %9s  %12s  %12s  %s\n' "$ef" "$RECALL" "$QPS_ONE" "$QPS_ALL" "$PLANNER_CHOICE"
		record_result "$ds" "$ef" "$RECALL" "$QPS_ONE" "$QPS_ALL"
	done
	unset PGOPTIONS
	psql -X -q -c "DROP DATABASE $DB" || true
}

# ---------------------------------------------------------------------------
# Summary: one table, then Markdown rows in the issue's layout
# ---------------------------------------------------------------------------

print_summary()
{
	local threads_text

	[ -s "$RESULTS" ] || return 0
	threads_text=$(bench_threads_text)
	header "results"
	echo "hnsw m=$M ef_construction=$EF_CONSTRUCTION vector_${OPCLASS}_ops, build: $threads_text," \
		"recall@$K over $QUERIES queries; qps 1/stmt: pgbench -c 1 -M prepared, ${SECONDS_PER_EF} s;" \
		"qps all/stmt: best of $REPEAT"
	echo "machine: $(nproc) cores; load average at start $LOAD_START, at the end $(load_average)"
	echo
	print_results_table "6 9 11 13 -7" ef recall "qps 1/stmt" "qps all/stmt" planner
	echo
	echo "| data | mode | build | size | recall@$K / queries per second at ef_search $(sed 's/ \+/ · /g' <<<"$EF_LIST") |"
	echo "|---|---|---|---|---|"
	awk -F'|' -v threads="$threads_text" "$SWEEP_POINT_AWK"'
		{
			key = $1
			if (!(key in name)) { order[++n] = key; name[key] = $2 " " $3 "×" $4; build[key] = $6; size[key] = $7 }
			add_sweep_point(key)
		}
		END {
			for (i = 1; i <= n; i++) {
				k = order[i]
				b = build[k] == "-" ? "no index" : build[k] " s (" threads ")"
				s = size[k] == "-" ? "-" : size[k] " MB"
				printf "| %s | all queries in one statement | %s | %s | %s |\n", name[k], b, s, all[k]
				printf "| %s | one query per statement | %s | %s | %s |\n", name[k], b, s, one[k]
			}
		}' "$RESULTS"
}

# ---------------------------------------------------------------------------

bench_main hnsw-tools "${DATASETS[@]}"
