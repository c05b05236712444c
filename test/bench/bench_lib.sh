# shellcheck shell=bash
# test/bench/bench_lib.sh — what the index benchmarks share (sourced by
# hnsw_bench.sh, matryoshka_bench.sh, filtered_bench.sh and mixed_bench.sh):
# the command line, the data sets as cached fvecs files with their exact
# ground truth, the throwaway server and its settings, the binary COPY
# load, a timed CREATE INDEX, the two ways of measuring queries (all queries
# in one statement, and pgbench with one query per statement) and the text
# table of results.  Keeping one copy means the benchmarks measure the same
# way, so their numbers can be compared.
#
# The sourcing script sets, before calling anything here:
#   BENCH_NAME       prefix of error messages ("hnsw_bench")
#   WORK             a scratch directory (bench_make_work_dir makes one)
#   REPEAT SECONDS_PER_EF  as its options describe them, and any other of
#   DATA_DIR ROWS QUERIES OPCLASS M EF_CONSTRUCTION NO_BUILD THREADS
#   SHARED_BUFFERS MAINTENANCE_WORK_MEM
#                    (defaults below) that its options set
#   OPERATOR         (bench_check_opclass sets it)
# and per data set DB and the DS_* variables (see prepare_truth).
# matryoshka_bench.sh, filtered_bench.sh and mixed_bench.sh run access
# methods on the prefix data sets (prepare_prefix_dataset, measure_each_am
# over AMS); the last two also take bench_prefix_option and use the
# statement settings QUERY_FILTER and TRUTH_TABLE and ITEMS_EXTRA_COLUMNS.

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$BENCH_DIR/../.." && pwd)
# shellcheck source=../../tools/cluster.sh
source "$REPO/tools/cluster.sh"

PG_CONFIG=$CLUSTER_PG_BIN/pg_config
PGBENCH=$CLUSTER_PG_BIN/pgbench
FMNIST_DIR=/usr/share/datasets/fashion-mnist
K=10

# Defaults of the common options (bench_common_option; GRANULARITIES is
# matryoshka's); each script sets its own SECONDS_PER_EF and REPEAT.
ROWS=
QUERIES=1000
OPCLASS=l2
M=16
EF_CONSTRUCTION=64
GRANULARITIES=
THREADS=0
NO_BUILD=0
SHARED_BUFFERS=2GB
MAINTENANCE_WORK_MEM=2GB
DATA_DIR=${TMPDIR:-/tmp}/hierindex-bench

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

# need_memory OPTION VALUE: a server memory setting as PostgreSQL writes
# one (a number and kB, MB, GB or TB).
need_memory()
{
	[[ $2 =~ ^[0-9]+(kB|MB|GB|TB)$ ]] ||
		die "$1 needs a size such as 2GB or 512MB, not '$2'"
}

# need_count_list OPTION LIST MIN: the values of a list option (words) are
# at least one, each an integer of at least MIN.
need_count_list()
{
	local value

	[ -n "$2" ] || die "$1 needs at least one value"
	for value in $2; do
		need_count "a $1 value" "$value" "$3"
	done
}

# A rate as a whole number
whole()
{
	awk -v r="$1" 'BEGIN { printf "%.0f", r }'
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

# The usage text: the running script's first comment block.
usage()
{
	sed -n '2,/^$/p' "$0" | sed 's/^# \{0,1\}//'
}

# a comma-separated list of positive integers, as the option checks of the
# access methods want it (they give the precise error; this catches typos
# early)
need_list()
{
	[[ $2 =~ ^[0-9]+(,[0-9]+)*$ ]] || die "$1 needs a comma-separated list of integers, not '$2'"
}

# bench_parse_args ARG...: the command line.  The sourcing script defines
# script_option ARG VALUE for its own options and data set names (as
# bench_common_option does it: BENCH_SHIFT, or return 1 when ARG is not
# one of them); the common options and -h/--help are handled here.
bench_parse_args()
{
	while [ $# -gt 0 ]; do
		case $1 in
			-h|--help) usage; exit 0 ;;
		esac
		script_option "$@" || bench_common_option "$@" ||
			{ echo "$BENCH_NAME: unknown argument '$1'" >&2; usage >&2; exit 2; }
		[ $# -ge "$BENCH_SHIFT" ] || die "$1 needs a value"
		shift "$BENCH_SHIFT"
	done
}

# bench_am_option VALUE: --am hnsw|matryoshka|both, as AMS
bench_am_option()
{
	case $1 in
		hnsw|matryoshka) AMS=$1 ;;
		both) AMS="hnsw matryoshka" ;;
		*) die "--am takes hnsw, matryoshka or both, not '$1'" ;;
	esac
}

# ef_search_setting AM: the PGOPTIONS word that sets AM's ef_search to
# EF_SEARCH, or nothing when EF_SEARCH is 0 (the setting's own default:
# hnsw.ef_search 40, matryoshka.ef_search each index's measured value)
ef_search_setting()
{
	[ "$EF_SEARCH" -eq 0 ] || echo "-c $1.ef_search=$EF_SEARCH"
}

# EF_SEARCH for the results' header
ef_search_text()
{
	if [ "$EF_SEARCH" -eq 0 ]; then
		echo "each setting's default (hnsw 40, matryoshka the measured value)"
	else
		echo "$EF_SEARCH"
	fi
}

# bench_prefix_option ARG VALUE: the options of the benchmarks that run both
# access methods on the prefix data sets (filtered_bench.sh, mixed_bench.sh):
# the data set (DATASETS), --am (AMS), --ef (EF_SEARCH, of both access
# methods; 0: each setting at its default) and --granularities; as
# bench_common_option.
bench_prefix_option()
{
	BENCH_SHIFT=2
	case $1 in
		gen768|fmnist) DATASETS=("$1"); BENCH_SHIFT=1 ;;
		both) DATASETS=(gen768 fmnist); BENCH_SHIFT=1 ;;
		--am) bench_am_option "${2-}" ;;
		--ef) EF_SEARCH=${2-}; need_count --ef "$EF_SEARCH" 0 ;;
		--granularities) GRANULARITIES=${2-}; need_list --granularities "$GRANULARITIES" ;;
		*) return 1 ;;
	esac
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
		--shared-buffers) SHARED_BUFFERS=${2-}; need_memory --shared-buffers "$SHARED_BUFFERS" ;;
		--maintenance-work-mem) MAINTENANCE_WORK_MEM=${2-}
			need_memory --maintenance-work-mem "$MAINTENANCE_WORK_MEM" ;;
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

# measure_each_am DATASET: the sourcing script's measure_index DATASET AM
# for each of AMS, then the data set's database is dropped.
measure_each_am()
{
	local am

	for am in $AMS; do
		measure_index "$1" "$am" || return 1
	done
	psql -X -q -c "DROP DATABASE $DB" || true
}

# print_results_table WIDTHS HEADING...: RESULTS as a text table.  Its
# lines are fields separated by |: data set, its name, rows, dimensions,
# index, build seconds, size MB, then one field a WIDTHS entry (a printf
# width: 8, or -14 for left-aligned) under its HEADING; further fields are
# not shown.  The data set's and the index's columns are printed once a
# group; a shown field "forced" (a planner choice) adds a note.
print_results_table()
{
	local widths=$1
	shift
	awk -F'|' -v widths="$widths" -v headings="$(IFS='|'; echo "$*")" '
		BEGIN {
			nw = split(widths, w, " ")
			split(headings, h, "|")
			printf "%-8s %8s %5s %-10s %8s %8s", "data", "rows", "dim", "index", "build s", "size MB"
			for (i = 1; i <= nw; i++) printf " %" w[i] "s", h[i]
			printf "\n"
		}
		{
			key = $1 "|" $5
			if ($1 != lastds) printf "%-8s %8s %5s", $1, $3, $4
			else printf "%-8s %8s %5s", "", "", ""
			if (key != lastkey) printf " %-10s %8s %8s", $5, $6, $7
			else printf " %-10s %8s %8s", "", "", ""
			for (i = 1; i <= nw; i++) {
				printf " %" w[i] "s", $(7 + i)
				if ($(7 + i) == "forced") forced = 1
			}
			printf "\n"
			lastds = $1; lastkey = key
		}
		END {
			if (forced)
				print "planner \"forced\": the planner did not choose the index by itself (its cost estimate);" \
					  " measured with enable_seqscan = off (marked † below)"
		}' "$RESULTS"
}

# Awk functions for the Markdown rows of an ef_search sweep, over RESULTS
# lines of print_results_table's layout whose fields 8 on are ef, recall,
# qps 1/stmt, qps all/stmt and planner (hnsw_bench.sh, matryoshka_bench.sh):
# add_sweep_point(KEY) appends the line's "recall/qps" to all[KEY] (all
# queries in one statement) and one[KEY] (one query per statement), " · "
# between points, "†" where the planner was forced.
SWEEP_POINT_AWK='
	function short(r) { r = sprintf("%.3f", r); sub(/^0\./, ".", r); return r }
	function add_sweep_point(key,   sep, mark) {
		sep = (key in all) ? " · " : ""
		mark = $12 == "forced" ? "†" : ""
		all[key] = all[key] sep short($9) "/" $11 mark
		one[key] = one[key] sep short($9) "/" $10 mark
	}'

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

# Fashion-MNIST rotated onto its principal components (fitted once on all
# train images, so a --rows run sees a prefix of the same data): sets
# DS_BASE and DS_QUERIES.
prepare_fmnist_pca_files()
{
	local raw_base raw_queries log=$WORK/pca.log start=$SECONDS

	prepare_fmnist_files >/dev/null || return 1
	raw_base=$DS_BASE
	raw_queries=$DS_QUERIES
	DS_BASE=$DATA_DIR/fmnist-pca-base.fvecs
	DS_QUERIES=$DATA_DIR/fmnist-pca-queries.fvecs
	if [ ! -s "$DS_BASE" ] || [ ! -s "$DS_QUERIES" ]; then
		echo "principal components of Fashion-MNIST (pca_rotate, under a minute) ..."
		if ! "$BENCH_DIR/pca_rotate" "$raw_base" "$raw_queries" \
				"$DS_BASE.tmp" "$DS_QUERIES.tmp" 2>"$log"; then
			cat "$log" >&2
			rm -f "$DS_BASE.tmp" "$DS_QUERIES.tmp"
			return 1
		fi
		mv "$DS_BASE.tmp" "$DS_BASE" && mv "$DS_QUERIES.tmp" "$DS_QUERIES" || return 1
		cat "$log"
		echo "rotation: $((SECONDS - start)) s"
	fi
	echo "vectors: $DS_BASE, $DS_QUERIES"
}

# prepare_prefix_dataset fmnist|gen768|gen3072: the data sets whose leading
# dimensions carry the most information, so that both access methods can
# index them (matryoshka_bench.sh, filtered_bench.sh, mixed_bench.sh):
# Fashion-MNIST rotated onto its principal components (distances are those
# of the raw pixels: the rotation is orthogonal) and the generated sets.
# Sets DS_NAME DS_DIM DS_ROWS DS_KEY (names the data in cache files)
# DS_GRANULARITIES (GRANULARITIES when set, else the set's default)
# DS_BASE DS_QUERIES DS_TRUTH, making whatever files are missing.
prepare_prefix_dataset()
{
	local ds=$1 full_rows

	case $ds in
		fmnist)
			DS_NAME="Fashion-MNIST PCA"
			DS_KEY=fmnist-pca
			DS_DIM=784
			DS_GRANULARITIES=48,192,784
			full_rows=60000
			DS_ROWS=${ROWS:-$full_rows}
			[ "$DS_ROWS" -le "$full_rows" ] ||
				die "Fashion-MNIST has $full_rows train images; --rows $DS_ROWS is too many"
			prepare_fmnist_pca_files || return 1
			;;
		gen768|gen3072)
			DS_DIM=${ds#gen}
			DS_NAME="generated $DS_DIM-d"
			DS_KEY=$ds
			if [ "$ds" = gen768 ]; then
				DS_GRANULARITIES=64,256,768
				full_rows=100000
			else
				DS_GRANULARITIES=64,256,1024,3072
				full_rows=50000
			fi
			DS_ROWS=${ROWS:-$full_rows}
			prepare_generated_files "$DS_DIM" "$full_rows" || return 1
			;;
		*) die "unknown data set '$ds'" ;;
	esac
	DS_GRANULARITIES=${GRANULARITIES:-$DS_GRANULARITIES}
	# the key names the rotated set: its truth file is not the raw pixels'
	prepare_truth "$DS_KEY"
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

	psql -X -q -v ON_ERROR_STOP=1 -v shared_buffers="$SHARED_BUFFERS" \
		-v maintenance_work_mem="$MAINTENANCE_WORK_MEM" <<'SQL' || die "ALTER SYSTEM failed"
ALTER SYSTEM SET shared_buffers = :'shared_buffers';
ALTER SYSTEM SET maintenance_work_mem = :'maintenance_work_mem';
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
	echo "server: shared_buffers $(psql -X -A -t -c 'SHOW shared_buffers'), maintenance_work_mem $(psql -X -A -t -c 'SHOW maintenance_work_mem'), jit off, no parallel query"
}

# ---------------------------------------------------------------------------
# One data set: load, index, measure
# ---------------------------------------------------------------------------

# psql in the data set's database: quiet, unaligned, stop at the first error
sql()
{
	psql -X -q -A -t -v ON_ERROR_STOP=1 -P pager=off -d "$DB" "$@"
}

# Columns of items beyond (id, embedding), as ", name type ..." (the sourcing
# script sets it; they must be GENERATED columns, which COPY leaves out).
ITEMS_EXTRA_COLUMNS=

load_dataset()
{
	local start=$SECONDS

	psql -X -q -v ON_ERROR_STOP=1 -c "CREATE DATABASE $DB" || return 1
	sql <<SQL || return 1
CREATE TABLE items (id int4 NOT NULL, embedding vector($DS_DIM) NOT NULL$ITEMS_EXTRA_COLUMNS);
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
		"SELECT *
		 FROM hierindex_index_info('items_embedding_idx')" 2>/dev/null | sed 's/^/  /' || true
	sql -c 'CHECKPOINT' || return 1
}

# The index options of access method $1 (hnsw or matryoshka) from M,
# EF_CONSTRUCTION and, for matryoshka, DS_GRANULARITIES.
am_index_options()
{
	if [ "$1" = matryoshka ]; then
		echo "granularities = '$DS_GRANULARITIES', m = $M, ef_construction = $EF_CONSTRUCTION"
	else
		echo "m = $M, ef_construction = $EF_CONSTRUCTION"
	fi
}

# iterative_scan_setting AM: the name of AM's iterative scan setting
# (AM.iterative_scan) when the server has one, else nothing.  The library
# defines its settings when a session first loads it: the vector input
# function does that.
iterative_scan_setting()
{
	local name=$1.iterative_scan count

	count=$(sql <<SQL
SELECT '[1]'::vector \g /dev/null
SELECT count(*) FROM pg_settings WHERE name = '$name';
SQL
	) || return 1
	[ "$count" -eq 0 ] || echo "$name"
}

# What the statements below ask, set by the sourcing script when it wants
# more than the plain top K (filtered_bench.sh):
#   QUERY_FILTER  a WHERE condition on items, where the text :qid stands for
#                 the query's id (empty: no filter)
#   TRUTH_TABLE   the table of the exact answers (query_id, ids, distances)
QUERY_FILTER=
TRUTH_TABLE=truth

# knn_statement VECTOR QID: the top-K statement for the query vector VECTOR
# (an SQL expression) whose id is the expression QID.
knn_statement()
{
	local where=

	[ -z "$QUERY_FILTER" ] || where="WHERE ${QUERY_FILTER//:qid/$2} "
	echo "SELECT id FROM items ${where}ORDER BY embedding $OPERATOR $1 LIMIT $K"
}

# The statement of mode (b): all queries at once.
all_queries_statement()
{
	echo "SELECT q.id, array($(knn_statement q.embedding q.id)) AS ids FROM queries q"
}

# The statement of mode (a), one query (pgbench's variable :qid).
one_query_statement()
{
	knn_statement "(SELECT embedding FROM queries WHERE id = :qid)" :qid
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
		plan_one=$(sql -c "EXPLAIN $(knn_statement "(SELECT embedding FROM queries WHERE id = 1)" 1)") || return 1
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

# recall@K against TRUTH_TABLE, the average number of rows a query returned
# and the best time of REPEAT runs of the all-queries statement (settings
# from PGOPTIONS); prints "recall seconds rows".  Recall is the true
# neighbours found over the true neighbours there are (K a query, unless a
# filter keeps fewer rows than K).
measure_all_queries()
{
	local script=$WORK/all_queries.sql

	{
		# recall first: the same searches as the timed statement (an index
		# scan is deterministic), and it warms the caches
		cat <<SQL
SELECT round(sum(cardinality(array(SELECT unnest(r.ids) INTERSECT SELECT unnest(t.ids))))::numeric
			 / greatest(sum(cardinality(t.ids)), 1), 4) AS recall,
	   round(avg(cardinality(r.ids)), 2) AS rows
FROM ($(all_queries_statement)) AS r
	JOIN $TRUTH_TABLE AS t ON t.query_id = r.id \gset
SQL
		echo "\\set best 1e9"
		for ((run = 1; run <= REPEAT; run++)); do
			echo "SELECT clock_timestamp() AS t0 \\gset"
			echo "$(all_queries_statement) \\g /dev/null"
			echo "SELECT least(:best, extract(epoch FROM clock_timestamp() - :'t0')) AS best \\gset"
		done
		echo "\\echo :recall :best :rows"
	} >"$script"
	sql -f "$script"
}

# run_pgbench NAME CLIENTS SECONDS SCRIPT: pgbench -M prepared with CLIENTS
# clients (one thread each) for SECONDS on SCRIPT, its output in
# $WORK/NAME.log; prints "transactions-per-second transactions" (the
# client-observed rate without the connection time, and the count).
# Several may run at once (in the background) under different names.
run_pgbench()
{
	local log=$WORK/$1.log

	if ! "$PGBENCH" -n -M prepared -c "$2" -j "$2" -T "$3" -f "$4" "$DB" >"$log" 2>&1; then
		cat "$log" >&2
		return 1
	fi
	awk '/^tps = / && tps == "" { tps = $3 }
		 /^number of transactions actually processed:/ { n = $NF; sub(/\/.*/, "", n) }
		 END { if (tps == "" || n == "") exit 1; print tps, n }' "$log" ||
		{ cat "$log" >&2; echo "no rate in pgbench's output above" >&2; return 1; }
}

# The pgbench script of mode (a): a random query per transaction.
write_one_query_script()
{
	cat >"$1" <<SQL
\\set qid random(1, $QUERIES)
$(one_query_statement);
SQL
}

# Client-observed queries per second of single-query statements (pgbench,
# one client, prepared statements; settings from PGOPTIONS).
measure_one_query()
{
	local script=$WORK/one_query.sql line

	write_one_query_script "$script"
	line=$(run_pgbench one_query 1 "$SECONDS_PER_EF" "$script") || return 1
	echo "${line%% *}"
}

# measure_setting: both modes at the settings in PGOPTIONS (plans checked
# first unless $1 is "no-index"); sets RECALL, ROWS_AVG (rows a query
# returned), QPS_ONE and QPS_ALL (whole numbers) and PLANNER_CHOICE.
measure_setting()
{
	local line seconds

	if [ "${1-}" = no-index ]; then
		PLANNER_CHOICE=-
	else
		check_plans || return 1
	fi
	line=$(measure_all_queries) || return 1
	read -r RECALL seconds ROWS_AVG <<<"$line"
	QPS_ALL=$(awk -v n="$QUERIES" -v s="$seconds" 'BEGIN { printf "%.0f", n / s }')
	QPS_ONE=$(measure_one_query) || return 1
	QPS_ONE=$(whole "$QPS_ONE")
}
