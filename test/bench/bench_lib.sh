# shellcheck shell=bash
# test/bench/bench_lib.sh — what the index benchmarks share (sourced by
# hnsw_bench.sh and matryoshka_bench.sh): the data sets as cached fvecs
# files with their exact ground truth, the throwaway server with fixed
# settings, the binary COPY load, a timed CREATE INDEX, and the two ways of
# measuring queries (all queries in one statement, and pgbench with one query
# per statement).  Keeping one copy means both benchmarks measure the same
# way, so their numbers can be compared.
#
# The sourcing script sets, before calling anything here:
#   BENCH_NAME       prefix of error messages ("hnsw_bench")
#   WORK             a scratch directory (bench_make_work_dir makes one)
#   DATA_DIR ROWS QUERIES OPCLASS OPERATOR NO_BUILD THREADS REPEAT
#   SECONDS_PER_EF   as its options describe them
# and per data set DB and the DS_* variables (see prepare_truth).

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$BENCH_DIR/../.." && pwd)
# shellcheck source=../../tools/cluster.sh
source "$REPO/tools/cluster.sh"

PG_CONFIG=$CLUSTER_PG_BIN/pg_config
PGBENCH=$CLUSTER_PG_BIN/pgbench
FMNIST_DIR=/usr/share/datasets/fashion-mnist
K=10

# The generated sets (gen_clustered.c, issue 4's recipe); seeds fixed so
# every run has the same data, whatever the dimension.
GEN_CENTRES=1000
GEN_CENTRE_SEED=1
GEN_BASE_SEED=2
GEN_QUERY_SEED=3

die()
{
	echo "$BENCH_NAME: $*" >&2
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

load_average()
{
	cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo "?"
}

# Sets WORK to a new scratch directory, removed at exit.
bench_make_work_dir()
{
	WORK=$(mktemp -d "${TMPDIR:-/tmp}/hierindex-bench-run.XXXXXX") || exit 1
	cluster_at_exit "rm -rf '$WORK'"
}

# make -C test/bench TARGET..., quietly; the log on failure.
bench_make_tools()
{
	make -C "$BENCH_DIR" "$@" >"$WORK/tools.log" 2>&1 ||
		{ cat "$WORK/tools.log" >&2; die "building the data tools failed"; }
}

# bench_common_option ARG VALUE: the options both benchmarks take; sets
# BENCH_SHIFT to the number of words used (1 or 2), or returns 1 for an
# option that is not one of them.
bench_common_option()
{
	BENCH_SHIFT=2
	case $1 in
		--rows) ROWS=${2-}; need_count --rows "$ROWS" $((K + 1)) ;;
		--queries) QUERIES=${2-}; need_count --queries "$QUERIES" 1 ;;
		--opclass) OPCLASS=${2-} ;;
		--m) M=${2-}; need_count --m "$M" 2 ;;
		--ef-construction) EF_CONSTRUCTION=${2-}; need_count --ef-construction "$EF_CONSTRUCTION" 1 ;;
		--threads) THREADS=${2-}; need_count --threads "$THREADS" 0 ;;
		--seconds) SECONDS_PER_EF=${2-}; need_count --seconds "$SECONDS_PER_EF" 1 ;;
		--repeat) REPEAT=${2-}; need_count --repeat "$REPEAT" 1 ;;
		--no-build) NO_BUILD=1; BENCH_SHIFT=1 ;;
		--data-dir) DATA_DIR=${2-}; [ -n "$DATA_DIR" ] || die "--data-dir needs a directory" ;;
		*) return 1 ;;
	esac
}

# Sets OPERATOR from OPCLASS.
bench_check_opclass()
{
	case $OPCLASS in
		l2) OPERATOR='<->' ;;
		cosine) OPERATOR='<=>' ;;
		*) die "--opclass must be l2 or cosine, not '$OPCLASS'" ;;
	esac
}

# How CREATE INDEX was run, for the summaries.
bench_threads_text()
{
	if [ "$THREADS" -eq 0 ]; then
		echo "all $(nproc) cores"
	else
		echo "$THREADS threads"
	fi
}

# bench_main TOOLS DATASET...: make the data tools (make target TOOLS), the
# data and ground truth of every data set (no server needed), start the
# server, then run each data set and print the summary.  The sourcing script
# defines prepare_dataset, run_dataset and print_summary.
bench_main()
{
	local tools=$1 ds
	shift

	LOAD_START=$(load_average)
	mkdir -p "$DATA_DIR" || die "cannot create $DATA_DIR"

	header "data (cached in $DATA_DIR)"
	bench_make_tools "$tools"
	# ground truth for every data set first: it needs no server
	for ds in "$@"; do
		prepare_dataset "$ds" || die "preparing $ds failed"
	done

	start_server

	for ds in "$@"; do
		prepare_dataset "$ds" >/dev/null || die "preparing $ds failed"
		run_dataset "$ds" || { print_summary; die "$ds: failed"; }
	done
	print_summary
}

# ---------------------------------------------------------------------------
# Data: fvecs files and ground truth, cached in DATA_DIR
# ---------------------------------------------------------------------------

# prepare_truth KEY: the exact top-K of the first QUERIES queries of
# DS_QUERIES among the first DS_ROWS vectors of DS_BASE, cached as DS_TRUTH
# (COPY text for the truth table; KEY names the data set in the file name).
prepare_truth()
{
	local key=$1 log=$WORK/prepare.log

	DS_TRUTH=$DATA_DIR/$key-truth-$OPCLASS-k$K-${DS_ROWS}x$QUERIES.copy
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

# Fashion-MNIST as raw-pixel fvecs: sets DS_BASE and DS_QUERIES.
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

# prepare_generated_files DIM FULL_ROWS: gen_clustered vectors of DIM
# dimensions, at least FULL_ROWS base vectors and 1000 queries; sets DS_BASE
# and DS_QUERIES.
prepare_generated_files()
{
	# A run of gen_clustered is a prefix of any longer run with the same
	# seeds, so one file of the largest size asked for serves every --rows.
	local dim=$1 rows=$DS_ROWS queries=$QUERIES
	[ "$rows" -ge "$2" ] || rows=$2
	[ "$queries" -ge 1000 ] || queries=1000
	DS_BASE=$DATA_DIR/gen$dim-base-$rows.fvecs
	DS_QUERIES=$DATA_DIR/gen$dim-queries-$queries.fvecs
	if [ ! -s "$DS_BASE" ]; then
		"$BENCH_DIR/gen_clustered" "$dim" "$GEN_CENTRES" "$rows" \
			"$GEN_CENTRE_SEED" "$GEN_BASE_SEED" >"$DS_BASE.tmp" &&
			mv "$DS_BASE.tmp" "$DS_BASE" || { rm -f "$DS_BASE.tmp"; return 1; }
	fi
	if [ ! -s "$DS_QUERIES" ]; then
		"$BENCH_DIR/gen_clustered" "$dim" "$GEN_CENTRES" "$queries" \
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
# One data set: load, index, measure
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

# create_index AM OPTIONS: CREATE INDEX items_embedding_idx ... USING AM
# (embedding vector_<opclass>_ops) WITH (OPTIONS), timed on the server
# (clock_timestamp); sets INDEX_AM, BUILD_S and SIZE_MB (pg_relation_size).
# Fails with psql's error on stderr when the index cannot be built.
create_index()
{
	local am=$1 options=$2 out

	INDEX_AM=$am
	echo "CREATE INDEX ... USING $am (embedding vector_${OPCLASS}_ops) WITH ($options), hierindex.build_threads = $THREADS ..."
	cat >"$WORK/build.sql" <<SQL
SET hierindex.build_threads = $THREADS;
SELECT clock_timestamp() AS t0 \gset
CREATE INDEX items_embedding_idx ON items
	USING $am (embedding vector_${OPCLASS}_ops)
	WITH ($options);
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
# settings (PGOPTIONS carries the search settings, which the cost estimate may
# depend on).  When the planner's own choice is not the index, say so (that
# is a finding about the cost estimate), show the plan, and measure the index
# anyway with enable_seqscan = off.  Sets PLANNER_CHOICE: yes, or forced.
check_plans()
{
	local plan_all plan_one attempt

	PLANNER_CHOICE=yes
	for attempt in default forced; do
		plan_all=$(sql -c "EXPLAIN $(all_queries_statement)") || return 1
		plan_one=$(sql -c "EXPLAIN SELECT id FROM items ORDER BY embedding $OPERATOR (SELECT embedding FROM queries WHERE id = 1) LIMIT $K") || return 1
		if grep -q 'Index Scan using items_embedding_idx' <<<"$plan_all" &&
			grep -q 'Index Scan using items_embedding_idx' <<<"$plan_one"; then
			return 0
		fi
		if [ "$attempt" = default ]; then
			PLANNER_CHOICE=forced
			echo "WARNING: at $PGOPTIONS the planner does not choose the $INDEX_AM index; the plans:" >&2
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

# measure_setting: both modes at the settings in PGOPTIONS (plans checked
# first unless $1 is "no-index"); sets RECALL, QPS_ONE and QPS_ALL (whole
# numbers) and PLANNER_CHOICE.
measure_setting()
{
	local line seconds

	if [ "${1-}" = no-index ]; then
		PLANNER_CHOICE=-
	else
		check_plans || return 1
	fi
	line=$(measure_all_queries) || return 1
	read -r RECALL seconds <<<"$line"
	QPS_ALL=$(awk -v n="$QUERIES" -v s="$seconds" 'BEGIN { printf "%.0f", n / s }')
	QPS_ONE=$(measure_one_query) || return 1
	QPS_ONE=$(awk -v q="$QPS_ONE" 'BEGIN { printf "%.0f", q }')
}
