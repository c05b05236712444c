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
# 2GB (table and index stay in memory), maintenance_work_mem 2GB (the graph
# of a 100k × 768 build fits), jit off and no parallel query (the numbers are
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

set -u -o pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$BENCH_DIR/../.." && pwd)
# shellcheck source=../../tools/cluster.sh
source "$REPO/tools/cluster.sh"

PG_CONFIG=$CLUSTER_PG_BIN/pg_config
PGBENCH=$CLUSTER_PG_BIN/pgbench
FMNIST_DIR=/usr/share/datasets/fashion-mnist
K=10

# gen768: issue 4's generated set; seeds fixed so every run has the same data
GEN_DIM=768
GEN_CENTRES=1000
GEN_ROWS=100000
GEN_CENTRE_SEED=1
GEN_BASE_SEED=2
GEN_QUERY_SEED=3

DATASETS=(fmnist gen768)
ROWS=
QUERIES=1000
EF_LIST="10 20 40 80"
OPCLASS=l2
M=16
EF_CONSTRUCTION=64
THREADS=0
SECONDS_PER_EF=10
REPEAT=3
NO_INDEX=0
NO_BUILD=0
DATA_DIR=${TMPDIR:-/tmp}/hierindex-bench

usage()
{
	sed -n '2,/^$/p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

die()
{
	echo "hnsw_bench: $*" >&2
	exit 1
}

header()
{
	printf '\n==== %s ====\n' "$*"
}

need_count()
{
	[[ $2 =~ ^[0-9]+$ ]] && [ "$2" -ge "$3" ] ||
		die "$1 needs an integer of at least $3, not '$2'"
}

while [ $# -gt 0 ]; do
	case $1 in
		fmnist|gen768) DATASETS=("$1") ;;
		both) DATASETS=(fmnist gen768) ;;
		--rows) ROWS=${2-}; need_count --rows "$ROWS" $((K + 1)); shift ;;
		--queries) QUERIES=${2-}; need_count --queries "$QUERIES" 1; shift ;;
		--ef) EF_LIST=${2-}; EF_LIST=${EF_LIST//,/ }; shift ;;
		--opclass) OPCLASS=${2-}; shift ;;
		--m) M=${2-}; need_count --m "$M" 2; shift ;;
		--ef-construction) EF_CONSTRUCTION=${2-}; need_count --ef-construction "$EF_CONSTRUCTION" 1; shift ;;
		--threads) THREADS=${2-}; need_count --threads "$THREADS" 0; shift ;;
		--seconds) SECONDS_PER_EF=${2-}; need_count --seconds "$SECONDS_PER_EF" 1; shift ;;
		--repeat) REPEAT=${2-}; need_count --repeat "$REPEAT" 1; shift ;;
		--no-index) NO_INDEX=1 ;;
		--no-build) NO_BUILD=1 ;;
		--data-dir) DATA_DIR=${2-}; [ -n "$DATA_DIR" ] || die "--data-dir needs a directory"; shift ;;
		-h|--help) usage; exit 0 ;;
		*) echo "hnsw_bench: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
	esac
	shift
done
[ -n "$EF_LIST" ] || die "--ef needs at least one value"
for ef in $EF_LIST; do
	need_count "--ef value" "$ef" 1
done
case $OPCLASS in
	l2) OPERATOR='<->' ;;
	cosine) OPERATOR='<=>' ;;
	*) die "--opclass must be l2 or cosine, not '$OPCLASS'" ;;
esac

WORK=$(mktemp -d "${TMPDIR:-/tmp}/hierindex-bench-run.XXXXXX") || exit 1
cluster_at_exit "rm -rf '$WORK'"
RESULTS=$WORK/results		# one line per (data set, ef): see record_result

load_average()
{
	cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo "?"
}

# ---------------------------------------------------------------------------
# Data: fvecs files and ground truth, cached in DATA_DIR
# ---------------------------------------------------------------------------

# Sets DS_NAME DS_DIM DS_ROWS DS_BASE DS_QUERIES DS_TRUTH for data set $1,
# making whatever files are missing.
prepare_dataset()
{
	local ds=$1 full_rows log=$WORK/prepare.log

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
			prepare_gen768_files || return 1
			;;
	esac
	DS_ROWS=${ROWS:-$full_rows}
	if [ "$DS_ROWS" -gt "$full_rows" ] && [ "$ds" = fmnist ]; then
		die "Fashion-MNIST has $full_rows train images; --rows $DS_ROWS is too many"
	fi

	DS_TRUTH=$DATA_DIR/$ds-truth-$OPCLASS-k$K-${DS_ROWS}x$QUERIES.copy
	if [ ! -s "$DS_TRUTH" ]; then
		echo "exact top-$K of $QUERIES queries in $DS_ROWS vectors ($OPCLASS, knn_truth) ..."
		local start=$SECONDS
		if ! "$BENCH_DIR/knn_truth" "$OPCLASS" "$K" "$DS_BASE" "$DS_QUERIES" \
				"$DS_ROWS" "$QUERIES" >"$DS_TRUTH.tmp" 2>"$log"; then
			cat "$log" >&2
			rm -f "$DS_TRUTH.tmp"
			return 1
		fi
		mv "$DS_TRUTH.tmp" "$DS_TRUTH"
		cat "$log"
		echo "ground truth: $DS_TRUTH ($((SECONDS - start)) s)"
	else
		echo "ground truth: $DS_TRUTH (cached)"
	fi
	[ "$(wc -l <"$DS_TRUTH")" -eq "$QUERIES" ] ||
		die "$DS_TRUTH does not have $QUERIES lines (fewer queries in the data set?)"
}

prepare_fmnist_files()
{
	local images=$FMNIST_DIR/train-images-idx3-ubyte.gz
	local test_images=$FMNIST_DIR/t10k-images-idx3-ubyte.gz

	if [ ! -r "$images" ] || [ ! -r "$test_images" ]; then
		if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
			echo "installing the Debian package dataset-fashion-mnist ..."
			DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
				dataset-fashion-mnist >"$WORK/apt.log" 2>&1 ||
				{ tail -n 20 "$WORK/apt.log" >&2; die "apt-get install dataset-fashion-mnist failed"; }
		fi
		[ -r "$images" ] && [ -r "$test_images" ] ||
			die "Fashion-MNIST not found in $FMNIST_DIR: install the Debian package dataset-fashion-mnist"
	fi
	DS_BASE=$DATA_DIR/fmnist-base.fvecs
	DS_QUERIES=$DATA_DIR/fmnist-queries.fvecs
	if [ ! -s "$DS_BASE" ]; then
		gzip -dc "$images" | "$BENCH_DIR/idx_to_fvecs" >"$DS_BASE.tmp" &&
			mv "$DS_BASE.tmp" "$DS_BASE" || { rm -f "$DS_BASE.tmp"; return 1; }
	fi
	if [ ! -s "$DS_QUERIES" ]; then
		gzip -dc "$test_images" | "$BENCH_DIR/idx_to_fvecs" >"$DS_QUERIES.tmp" &&
			mv "$DS_QUERIES.tmp" "$DS_QUERIES" || { rm -f "$DS_QUERIES.tmp"; return 1; }
	fi
	echo "vectors: $DS_BASE, $DS_QUERIES"
}

prepare_gen768_files()
{
	# A run of gen_clustered is a prefix of any longer run with the same
	# seeds, so one file of the largest size asked for serves every --rows.
	local rows=$DS_ROWS queries=$QUERIES
	[ "$rows" -ge "$GEN_ROWS" ] || rows=$GEN_ROWS
	[ "$queries" -ge 1000 ] || queries=1000
	DS_BASE=$DATA_DIR/gen768-base-$rows.fvecs
	DS_QUERIES=$DATA_DIR/gen768-queries-$queries.fvecs
	if [ ! -s "$DS_BASE" ]; then
		"$BENCH_DIR/gen_clustered" "$GEN_DIM" "$GEN_CENTRES" "$rows" \
			"$GEN_CENTRE_SEED" "$GEN_BASE_SEED" >"$DS_BASE.tmp" &&
			mv "$DS_BASE.tmp" "$DS_BASE" || { rm -f "$DS_BASE.tmp"; return 1; }
	fi
	if [ ! -s "$DS_QUERIES" ]; then
		"$BENCH_DIR/gen_clustered" "$GEN_DIM" "$GEN_CENTRES" "$queries" \
			"$GEN_CENTRE_SEED" "$GEN_QUERY_SEED" >"$DS_QUERIES.tmp" &&
			mv "$DS_QUERIES.tmp" "$DS_QUERIES" || { rm -f "$DS_QUERIES.tmp"; return 1; }
	fi
	echo "vectors: $DS_BASE, $DS_QUERIES"
}

# The first $2 vectors of fvecs file $1 (each is 4 + 4 * DS_DIM bytes).
fvecs_head()
{
	head -c $(($2 * (4 + 4 * DS_DIM))) "$1"
}

# ---------------------------------------------------------------------------
# Server: build, install, start
# ---------------------------------------------------------------------------

start_server()
{
	local log=$WORK/build.log pkglibdir private_lib

	header "extension and server"
	bash "$REPO/tools/setup.sh" >"$log" 2>&1 || { cat "$log" >&2; die "tools/setup.sh failed"; }
	# make's CUDA ?= 1 takes this from the environment, for make_install too
	export CUDA=0
	if [ "$NO_BUILD" -eq 0 ]; then
		make -C "$REPO" -j"$(nproc)" PG_CONFIG="$PG_CONFIG" >"$log" 2>&1 ||
			{ tail -n 40 "$log" >&2; die "make failed (last 40 lines above)"; }
		echo "make: ok"
	fi

	install_lock || die "could not take the install lock"
	if [ "$NO_BUILD" -eq 0 ]; then
		make_install >"$log" 2>&1 || { tail -n 40 "$log" >&2; die "make install failed"; }
		echo "make install: ok"
	fi
	cluster_start || die "could not start a cluster"

	# The extension goes into template1, so that every data set's database
	# (CREATE DATABASE copies template1) has it, pointed at the private copy.
	pkglibdir=$("$PG_CONFIG" --pkglibdir) || die "pg_config failed"
	private_lib=$CLUSTER_DIR/hierindex.so
	cp "$pkglibdir/hierindex.so" "$private_lib" && chmod 755 "$private_lib" ||
		die "could not copy $pkglibdir/hierindex.so"
	psql -X -q -v ON_ERROR_STOP=1 -d template1 -v lib="$private_lib" <<'SQL' ||
CREATE EXTENSION hierindex;
UPDATE pg_proc SET probin = :'lib' WHERE probin = '$libdir/hierindex';
SQL
		die "CREATE EXTENSION hierindex failed"
	install_unlock
	echo "extension: hierindex $(psql -X -A -t -d template1 -c \
		"SELECT extversion FROM pg_extension WHERE extname = 'hierindex'"), library copied to $private_lib"

	psql -X -q -v ON_ERROR_STOP=1 <<'SQL' || die "ALTER SYSTEM failed"
ALTER SYSTEM SET shared_buffers = '2GB';
ALTER SYSTEM SET maintenance_work_mem = '2GB';
ALTER SYSTEM SET work_mem = '64MB';
ALTER SYSTEM SET max_wal_size = '8GB';
ALTER SYSTEM SET checkpoint_timeout = '30min';
ALTER SYSTEM SET jit = off;
ALTER SYSTEM SET max_parallel_workers_per_gather = 0;
ALTER SYSTEM SET max_parallel_maintenance_workers = 0;
SQL
	# shared_buffers needs a restart (as cluster_start does it: as the
	# cluster's owner, without the lock descriptor)
	_cluster_as_owner "$CLUSTER_PG_BIN/pg_ctl" -D "$CLUSTER_DIR/data" \
		-l "$CLUSTER_DIR/server.log" -w -t 60 restart >/dev/null 9>&- ||
		{ cat "$CLUSTER_DIR/server.log" >&2; die "restart failed"; }
	echo "server: shared_buffers $(psql -X -A -t -c 'SHOW shared_buffers'), maintenance_work_mem 2GB, jit off, no parallel query"
}

# ---------------------------------------------------------------------------
# One data set
# ---------------------------------------------------------------------------

# psql in the data set's database: quiet, unaligned, stop at the first error
sql()
{
	psql -X -q -A -t -v ON_ERROR_STOP=1 -P pager=off -d "$DB" "$@"
}

load_dataset()
{
	local start=$SECONDS

	psql -X -q -v ON_ERROR_STOP=1 -c "CREATE DATABASE $DB" || return 1
	sql <<SQL || return 1
CREATE TABLE items (id int4 NOT NULL, embedding vector($DS_DIM) NOT NULL);
CREATE TABLE queries (id int4 PRIMARY KEY, embedding vector($DS_DIM) NOT NULL);
CREATE TABLE truth (query_id int4 PRIMARY KEY, ids int4[] NOT NULL, distances float8[] NOT NULL);
SQL
	fvecs_head "$DS_BASE" "$DS_ROWS" | "$BENCH_DIR/fvecs_to_copy" |
		sql -c '\copy items FROM pstdin WITH (FORMAT binary)' || return 1
	fvecs_head "$DS_QUERIES" "$QUERIES" | "$BENCH_DIR/fvecs_to_copy" |
		sql -c '\copy queries FROM pstdin WITH (FORMAT binary)' || return 1
	sql -c '\copy truth FROM pstdin' <"$DS_TRUTH" || return 1
	sql <<SQL || return 1
VACUUM ANALYZE items;
VACUUM ANALYZE queries;
VACUUM ANALYZE truth;
CHECKPOINT;
SQL
	read -r n_items n_queries n_truth table_mb < <(sql -F ' ' -c "
		SELECT (SELECT count(*) FROM items), (SELECT count(*) FROM queries),
			   (SELECT count(*) FROM truth),
			   round(pg_total_relation_size('items') / 1048576.0, 1)") || return 1
	[ "$n_items" -eq "$DS_ROWS" ] && [ "$n_queries" -eq "$QUERIES" ] && [ "$n_truth" -eq "$QUERIES" ] ||
		{ echo "loaded $n_items items, $n_queries queries, $n_truth truth rows: wrong counts" >&2; return 1; }
	echo "loaded $n_items × $DS_DIM items ($table_mb MB with TOAST), $n_queries queries, truth ($((SECONDS - start)) s)"
}

# Sets BUILD_S and SIZE_MB.
build_index()
{
	local out

	if [ "$NO_INDEX" -eq 1 ]; then
		BUILD_S=-
		SIZE_MB=-
		echo "no index (--no-index): exact sequential scans"
		return 0
	fi
	echo "CREATE INDEX ... USING hnsw (embedding vector_${OPCLASS}_ops) WITH (m = $M, ef_construction = $EF_CONSTRUCTION), hierindex.build_threads = $THREADS ..."
	cat >"$WORK/build.sql" <<SQL
SET hierindex.build_threads = $THREADS;
SELECT clock_timestamp() AS t0 \gset
CREATE INDEX items_embedding_idx ON items
	USING hnsw (embedding vector_${OPCLASS}_ops)
	WITH (m = $M, ef_construction = $EF_CONSTRUCTION);
SELECT round(extract(epoch FROM clock_timestamp() - :'t0')::numeric, 2),
	   round(pg_relation_size('items_embedding_idx') / 1048576.0, 1);
SQL
	out=$(sql -F ' ' -f "$WORK/build.sql") || return 1
	read -r BUILD_S SIZE_MB <<<"$out"
	echo "build: $BUILD_S s, index size: $SIZE_MB MB"
	# facts from the inspection function, where the branch has it
	psql -X -q -x -P pager=off -d "$DB" -c \
		"SELECT elements, pages, max_level, level_elements, level_avg_degree, build_method, build_seconds
		 FROM hierindex_index_info('items_embedding_idx')" 2>/dev/null | sed 's/^/  /' || true
	sql -c 'CHECKPOINT' || return 1
}

# The statement of mode (b): all queries at once.
all_queries_statement()
{
	echo "SELECT q.id, array(SELECT id FROM items ORDER BY embedding $OPERATOR q.embedding LIMIT $K) AS ids FROM queries q"
}

# Check that both benchmark statements' plans use the index at the current
# settings (PGOPTIONS carries hnsw.ef_search, which the cost estimate may
# depend on).  When the planner's own choice is not the index, say so (that
# is a finding about the cost estimate), show the plan, and measure the index
# anyway with enable_seqscan = off.  Sets PLANNER_CHOICE: yes, or forced.
check_plans()
{
	local plan_all plan_one attempt

	PLANNER_CHOICE=yes
	[ "$NO_INDEX" -eq 0 ] || { PLANNER_CHOICE=-; return 0; }
	for attempt in default forced; do
		plan_all=$(sql -c "EXPLAIN $(all_queries_statement)") || return 1
		plan_one=$(sql -c "EXPLAIN SELECT id FROM items ORDER BY embedding $OPERATOR (SELECT embedding FROM queries WHERE id = 1) LIMIT $K") || return 1
		if grep -q 'Index Scan using items_embedding_idx' <<<"$plan_all" &&
			grep -q 'Index Scan using items_embedding_idx' <<<"$plan_one"; then
			return 0
		fi
		if [ "$attempt" = default ]; then
			PLANNER_CHOICE=forced
			echo "WARNING: at $PGOPTIONS the planner does not choose the hnsw index; the plans:" >&2
			sed 's/^/  /' <<<"$plan_all"$'\n'"$plan_one" >&2
			echo "WARNING: measuring the index with enable_seqscan = off" >&2
			PGOPTIONS="$PGOPTIONS -c enable_seqscan=off"
		fi
	done
	echo "the index is not used even with enable_seqscan = off; the plans:" >&2
	sed 's/^/  /' <<<"$plan_all"$'\n'"$plan_one" >&2
	return 1
}

# recall@K and the best time of REPEAT runs of the all-queries statement
# (settings from PGOPTIONS); prints "recall seconds".
measure_all_queries()
{
	local script=$WORK/all_queries.sql

	{
		# recall first: the same searches as the timed statement (an index
		# scan is deterministic), and it warms the caches
		cat <<SQL
SELECT round(avg(cardinality(array(SELECT unnest(r.ids) INTERSECT SELECT unnest(t.ids))))::numeric / $K, 4) AS recall
FROM ($(all_queries_statement)) AS r
	JOIN truth AS t ON t.query_id = r.id \gset
SQL
		echo "\\set best 1e9"
		for ((run = 1; run <= REPEAT; run++)); do
			echo "SELECT clock_timestamp() AS t0 \\gset"
			echo "$(all_queries_statement) \\g /dev/null"
			echo "SELECT least(:best, extract(epoch FROM clock_timestamp() - :'t0')) AS best \\gset"
		done
		echo "\\echo :recall :best"
	} >"$script"
	sql -f "$script"
}

# Client-observed queries per second of single-query statements (pgbench,
# one client, prepared statements; settings from PGOPTIONS).
measure_one_query()
{
	local script=$WORK/one_query.sql log=$WORK/pgbench.log

	cat >"$script" <<SQL
\\set qid random(1, $QUERIES)
SELECT id FROM items ORDER BY embedding $OPERATOR (SELECT embedding FROM queries WHERE id = :qid) LIMIT $K;
SQL
	if ! "$PGBENCH" -n -M prepared -c 1 -j 1 \
			-T "$SECONDS_PER_EF" -f "$script" "$DB" >"$log" 2>&1; then
		cat "$log" >&2
		return 1
	fi
	sed -n 's/^tps = \([0-9.]*\) .*/\1/p' "$log" | head -n 1
}

# record_result DATASET EF RECALL QPS_ONE QPS_ALL
record_result()
{
	printf '%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s\n' "$1" "$DS_NAME" "$DS_ROWS" "$DS_DIM" \
		"$BUILD_S" "$SIZE_MB" "$2" "$3" "$4" "$5" "$PLANNER_CHOICE" >>"$RESULTS"
}

run_dataset()
{
	local ds=$1 ef line recall seconds qps_all qps_one

	DB=bench_$ds
	header "$DS_NAME: $DS_ROWS × $DS_DIM, $QUERIES queries, $OPCLASS (load average $(load_average))"
	load_dataset || return 1
	build_index || return 1
	printf '%6s  %9s  %12s  %12s  %s\n' ef_search recall@$K "qps 1/stmt" "qps all/stmt" "planner chose the index"
	for ef in $EF_LIST; do
		export PGOPTIONS="-c hnsw.ef_search=$ef"
		check_plans || return 1
		line=$(measure_all_queries) || return 1
		read -r recall seconds <<<"$line"
		qps_all=$(awk -v n="$QUERIES" -v s="$seconds" 'BEGIN { printf "%.0f", n / s }')
		qps_one=$(measure_one_query) || return 1
		qps_one=$(awk -v q="$qps_one" 'BEGIN { printf "%.0f", q }')
		printf '%6s  %9s  %12s  %12s  %s\n' "$ef" "$recall" "$qps_one" "$qps_all" "$PLANNER_CHOICE"
		record_result "$ds" "$ef" "$recall" "$qps_one" "$qps_all"
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
	if [ "$THREADS" -eq 0 ]; then
		threads_text="all $(nproc) cores"
	else
		threads_text="$THREADS threads"
	fi
	header "results"
	echo "hnsw m=$M ef_construction=$EF_CONSTRUCTION vector_${OPCLASS}_ops, build: $threads_text," \
		"recall@$K over $QUERIES queries; qps 1/stmt: pgbench -c 1 -M prepared, ${SECONDS_PER_EF} s;" \
		"qps all/stmt: best of $REPEAT"
	echo "machine: $(nproc) cores; load average at start $LOAD_START, at the end $(load_average)"
	echo
	awk -F'|' '
		BEGIN { printf "%-8s %8s %5s %8s %8s %6s %9s %11s %13s  %s\n",
					   "data", "rows", "dim", "build s", "size MB", "ef", "recall",
					   "qps 1/stmt", "qps all/stmt", "planner" }
		{
			if ($1 != last) printf "%-8s %8s %5s %8s %8s", $1, $3, $4, $5, $6
			else printf "%-8s %8s %5s %8s %8s", "", "", "", "", ""
			printf " %6s %9s %11s %13s  %s\n", $7, $8, $9, $10, $11
			if ($11 == "forced") forced = 1
			last = $1
		}
		END {
			if (forced)
				print "planner \"forced\": the planner did not choose the index by itself (its cost estimate);" \
					  " measured with enable_seqscan = off (marked † below)"
		}' "$RESULTS"
	echo
	echo "| data | mode | build | size | recall@$K / queries per second at ef_search $(sed 's/ \+/ · /g' <<<"$EF_LIST") |"
	echo "|---|---|---|---|---|"
	awk -F'|' -v threads="$threads_text" '
		function short(r) { r = sprintf("%.3f", r); sub(/^0\./, ".", r); return r }
		{
			key = $1
			if (!(key in name)) { order[++n] = key; name[key] = $2 " " $3 "×" $4; build[key] = $5; size[key] = $6 }
			sep = (key in all) ? " · " : ""
			mark = $11 == "forced" ? "†" : ""
			all[key] = all[key] sep short($8) "/" $10 mark
			one[key] = one[key] sep short($8) "/" $9 mark
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

main()
{
	local ds

	LOAD_START=$(load_average)
	mkdir -p "$DATA_DIR" || die "cannot create $DATA_DIR"

	header "data (cached in $DATA_DIR)"
	make -C "$BENCH_DIR" hnsw-tools >"$WORK/tools.log" 2>&1 ||
		{ cat "$WORK/tools.log" >&2; die "building the data tools failed"; }
	# ground truth for every data set first: it needs no server
	for ds in "${DATASETS[@]}"; do
		prepare_dataset "$ds" || die "preparing $ds failed"
	done

	start_server

	for ds in "${DATASETS[@]}"; do
		prepare_dataset "$ds" >/dev/null || die "preparing $ds failed"
		run_dataset "$ds" || { print_summary; die "$ds: failed"; }
	done
	print_summary
}

main
