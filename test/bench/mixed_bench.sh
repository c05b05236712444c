#!/bin/bash
# test/bench/mixed_bench.sh — the mixed insert/query benchmark of issue 7:
# single-row INSERTs per second into a table with the vector index, alone and
# while another client runs index queries, and that client's query rate.
#
#   bash test/bench/mixed_bench.sh [gen768|fmnist|both] [options]
#
#   gen768         the generated 768-d set of hnsw_bench.sh, 100000 rows;
#                  the rows inserted are new points of the same clusters
#                  (gen_clustered.c with another point seed) (the default)
#   fmnist         Fashion-MNIST rotated onto its principal components, as
#                  matryoshka_bench.sh uses it, 60000 rows; the rows
#                  inserted are the train images beyond --rows and the test
#                  images after the queries: only 9000 at 60000 rows and
#                  1000 queries, too few for 10-second phases (the run
#                  stops when they are used up): take --rows 30000, or
#                  --seconds 2
#   both           the two, one after the other
#   --am hnsw|matryoshka|both   the indexes to measure (default both)
#   --clients "1 2"  numbers of inserting clients (default shown)
#   --pool N       new vectors to insert from, gen768 (default 200000); a run
#                  that uses them all stops with an error saying so
#   --ef E         hnsw.ef_search and matryoshka.ef_search of the queries
#                  (default 40; 0 leaves each at its own default: hnsw 40,
#                  matryoshka the index's measured value)
#   --rows N       only the first N base vectors (a quick run)
#   --queries N    only the first N queries (default 1000)
#   --opclass l2|cosine  operator class and metric (default l2)
#   --m M --ef-construction E   index options (default 16 and 64)
#   --granularities LIST   matryoshka granularities instead of the data
#                  set's default (gen768 '64,256,768', fmnist '48,192,784')
#   --threads N    hierindex.build_threads for CREATE INDEX (default 0: all cores)
#   --seconds S    length of each phase (default 10)
#   --no-build     use the installed extension as it is (no make, no install)
#   --data-dir DIR cache of vectors between runs
#                  (default ${TMPDIR:-/tmp}/hierindex-bench, as the others)
#   --shared-buffers SIZE the server's shared_buffers (default 2GB; a data set
#                  larger than that is read through the OS cache)
#   --maintenance-work-mem SIZE  for CREATE INDEX (default 2GB; a graph that
#                  does not fit is finished by single inserts, slowly)
#
# Per data set the table is loaded as the other benchmarks load it
# (bench_lib.sh), with autovacuum off for it (no VACUUM or ANALYZE in the
# middle of a phase), and a second table, pool (id, embedding), holds the
# vectors to insert.  Each insert is one transaction of one pgbench
# statement (-M prepared),
#   INSERT INTO items (id, embedding) SELECT <rows> + p.id, p.embedding
#   FROM pool p WHERE p.id = (SELECT nextval('pool_next'))
# so every row inserted is a vector the index has not seen (an identical
# vector would share an element and cost next to nothing), and clients never
# collide on one.  The queries are bench_lib.sh's one-query statement,
#   SELECT id FROM items ORDER BY embedding <-> (SELECT embedding FROM
#   queries WHERE id = :qid) LIMIT 10
# for a random query id, from one client.  Per access method: the index is
# built (CREATE INDEX timed), the query plan checked (the index must be used),
# then phases of --seconds each:
#   queries alone                  one query client
#   for each --clients value N:
#     inserts alone                N inserting clients
#     inserts and queries          N inserting clients and one query client
#                                  at the same time
# and the rates are pgbench's (transactions per second without connection
# time: one row, or one query, per transaction).  After the phases the
# index's elements are counted (hierindex_index_info) against the rows in
# the table.  Then the index is dropped, the inserted rows deleted and the
# pool restarted, so that the next access method inserts the same vectors
# into the same table.
#
# The throwaway cluster runs with fsync and synchronous_commit off
# (tools/cluster.sh): the rates are those of the index and the WAL it
# writes, not of the disk's flushes.  With 2 cores, N inserting clients and
# a query client share them: the rates say what the index costs under
# contention, not its speed on a larger machine.  The load average is
# printed at the start, per data set and at the end.

set -u -o pipefail

BENCH_NAME=mixed_bench
# shellcheck source=bench_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/bench_lib.sh"

DATASETS=(gen768)
AMS="hnsw matryoshka"
CLIENTS="1 2"
POOL=200000
EF_SEARCH=40
SECONDS_PER_EF=10
REPEAT=1
GEN_POOL_SEED=4			# the pool's points: same centres, other points

script_option()
{
	bench_prefix_option "$@" && return 0
	BENCH_SHIFT=2
	case $1 in
		--clients) CLIENTS=${2-}; CLIENTS=${CLIENTS//,/ } ;;
		--pool) POOL=${2-}; need_count --pool "$POOL" 1 ;;
		*) return 1 ;;
	esac
}

bench_parse_args "$@"
need_count_list --clients "$CLIENTS" 1
bench_check_opclass

bench_make_work_dir
RESULTS=$WORK/results		# one line per (data set, am, phase): see record_result

# ---------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------

# Sets the DS_* variables of bench_lib.sh's prefix data sets, and
# DS_POOL_FILE and DS_POOL (its number of vectors).
prepare_dataset()
{
	local ds=$1 vector_bytes

	prepare_prefix_dataset "$ds" || return 1
	vector_bytes=$((4 + 4 * DS_DIM))
	case $ds in
		gen768)
			DS_POOL=$POOL
			DS_POOL_FILE=$DATA_DIR/gen768-pool-s$GEN_POOL_SEED-$DS_POOL.fvecs
			if [ ! -s "$DS_POOL_FILE" ]; then
				"$BENCH_DIR/gen_clustered" "$DS_DIM" "$GEN_CENTRES" "$DS_POOL" \
					"$GEN_CENTRE_SEED" "$GEN_POOL_SEED" >"$DS_POOL_FILE.tmp" &&
					mv "$DS_POOL_FILE.tmp" "$DS_POOL_FILE" || { rm -f "$DS_POOL_FILE.tmp"; return 1; }
			fi
			;;
		fmnist)
			# the train images beyond --rows, then the test images the
			# queries do not use
			DS_POOL_FILE=$DATA_DIR/fmnist-pca-pool-after-${DS_ROWS}x$QUERIES.fvecs
			if [ ! -s "$DS_POOL_FILE" ]; then
				{
					tail -c +$((DS_ROWS * vector_bytes + 1)) "$DS_BASE" &&
						tail -c +$((QUERIES * vector_bytes + 1)) "$DS_QUERIES"
				} >"$DS_POOL_FILE.tmp" && mv "$DS_POOL_FILE.tmp" "$DS_POOL_FILE" ||
					{ rm -f "$DS_POOL_FILE.tmp"; return 1; }
			fi
			DS_POOL=$(($(stat -c %s "$DS_POOL_FILE") / vector_bytes))
			[ "$DS_POOL" -gt 0 ] || die "Fashion-MNIST has no images left for the pool"
			;;
	esac
	echo "pool: $DS_POOL vectors to insert, $DS_POOL_FILE"
}

load_pool()
{
	sql <<SQL || return 1
ALTER TABLE items SET (autovacuum_enabled = off);
CREATE TABLE pool (id int4 PRIMARY KEY, embedding vector($DS_DIM) NOT NULL);
CREATE SEQUENCE pool_next;
SQL
	fvecs_head "$DS_POOL_FILE" "$DS_POOL" | "$BENCH_DIR/fvecs_to_copy" |
		sql -c '\copy pool FROM pstdin WITH (FORMAT binary)' || return 1
	sql -c 'VACUUM ANALYZE pool' || return 1
}

# ---------------------------------------------------------------------------
# One data set
# ---------------------------------------------------------------------------

# record_result DATASET AM CLIENTS KIND: CLIENTS inserting clients, KIND
# queries (alone), inserts (alone) or mixed; INS_RATE and QRY_RATE.
record_result()
{
	local phase

	case $4 in
		queries) phase="queries alone" ;;
		inserts) phase="$3 inserting" ;;
		mixed) phase="$3 inserting + 1 querying" ;;
	esac
	printf '%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s\n' "$1" "$DS_NAME" "$DS_ROWS" "$DS_DIM" \
		"$2" "$BUILD_S" "$SIZE_MB" "$phase" "$INS_RATE" "$QRY_RATE" "$PLANNER_CHOICE" "$3" "$4" >>"$RESULTS"
	printf '%-10s %-24s %12s %12s\n' "$2" "$phase" "$INS_RATE" "$QRY_RATE"
}

# The rows inserted so far must all have come from the pool (a used-up pool
# turns an INSERT into one of no row).
check_pool()
{
	local used

	used=$(sql -c "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM pool_next") || return 1
	[ "$used" -le "$DS_POOL" ] ||
		die "the pool of $DS_POOL vectors is used up: give a larger --pool, or shorter --seconds"
}

# phase NAME INSERT_CLIENTS QUERY_CLIENTS: pgbench runs of --seconds at
# once; sets INS_RATE and QRY_RATE ("-" for none) and checks the count of
# inserted rows.
phase()
{
	local name=$1 inserters=$2 queriers=$3 before after ins_pid='' qry_pid='' inserted

	before=$(sql -c 'SELECT count(*) FROM items') || return 1
	if [ "$inserters" -gt 0 ]; then
		run_pgbench "$name-insert" "$inserters" "$SECONDS_PER_EF" "$WORK/insert.sql" >"$WORK/$name-insert.rate" &
		ins_pid=$!
	fi
	if [ "$queriers" -gt 0 ]; then
		run_pgbench "$name-query" "$queriers" "$SECONDS_PER_EF" "$WORK/one_query.sql" >"$WORK/$name-query.rate" &
		qry_pid=$!
	fi
	INS_RATE=- QRY_RATE=-
	if [ -n "$ins_pid" ]; then
		wait "$ins_pid" || return 1
		read -r INS_RATE inserted <"$WORK/$name-insert.rate"
		INS_RATE=$(whole "$INS_RATE")
	fi
	if [ -n "$qry_pid" ]; then
		wait "$qry_pid" || return 1
		read -r QRY_RATE _ <"$WORK/$name-query.rate"
		QRY_RATE=$(whole "$QRY_RATE")
	fi
	check_pool || return 1
	after=$(sql -c 'SELECT count(*) FROM items') || return 1
	if [ -n "$ins_pid" ] && [ $((after - before)) -ne "$inserted" ]; then
		echo "$name: pgbench ran $inserted inserts, the table grew by $((after - before)) rows" >&2
		return 1
	fi
}

# measure_index DATASET AM: build, the phases, the element count, then back
# to the loaded table.
measure_index()
{
	local ds=$1 am=$2 n line elements rows

	create_index "$am" "$(am_index_options "$am")" || return 1
	PGOPTIONS=$(ef_search_setting "$am")
	export PGOPTIONS
	check_plans || return 1

	printf '%-10s %-24s %12s %12s\n' index phase "inserts/s" "queries/s"
	phase "$am-q" 0 1 || return 1
	record_result "$ds" "$am" 0 queries
	for n in $CLIENTS; do
		phase "$am-i$n" "$n" 0 || return 1
		record_result "$ds" "$am" "$n" inserts
		phase "$am-iq$n" "$n" 1 || return 1
		record_result "$ds" "$am" "$n" mixed
	done
	unset PGOPTIONS

	line=$(sql -F ' ' -c "SELECT (SELECT elements FROM hierindex_index_info('items_embedding_idx')),
									 (SELECT count(*) FROM items)") || return 1
	read -r elements rows <<<"$line"
	echo "$am: $elements index elements for $rows rows after the inserts"
	[ "$elements" -eq "$rows" ] ||
		echo "WARNING: $am: the index has $elements elements for $rows rows (distinct vectors: they should be equal)" >&2

	sql <<SQL || return 1
DROP INDEX items_embedding_idx;
DELETE FROM items WHERE id > $DS_ROWS;
VACUUM items;
ALTER SEQUENCE pool_next RESTART;
CHECKPOINT;
SQL
}

run_dataset()
{
	local ds=$1

	DB=bench_$ds
	header "$DS_NAME: $DS_ROWS × $DS_DIM, $QUERIES queries, $OPCLASS, pool of $DS_POOL (load average $(load_average))"
	load_dataset || return 1
	load_pool || return 1
	cat >"$WORK/insert.sql" <<SQL
INSERT INTO items (id, embedding)
	SELECT $DS_ROWS + p.id, p.embedding FROM pool p WHERE p.id = (SELECT nextval('pool_next'));
SQL
	write_one_query_script "$WORK/one_query.sql"
	measure_each_am "$ds"
}

# ---------------------------------------------------------------------------
# Summary
# ---------------------------------------------------------------------------

print_summary()
{
	[ -s "$RESULTS" ] || return 0
	header "results"
	echo "m=$M ef_construction=$EF_CONSTRUCTION vector_${OPCLASS}_ops, queries at ef_search $(ef_search_text);" \
		"phases of $SECONDS_PER_EF s; pgbench -M prepared, one row or one query per transaction;" \
		"fsync and synchronous_commit off"
	echo "machine: $(nproc) cores; load average at start $LOAD_START, at the end $(load_average)"
	echo
	print_results_table "-26 10 10 -7" phase inserts/s queries/s planner
	echo
	echo "| data | index | inserting clients | inserts/s alone | inserts/s with 1 querying client | queries/s alongside | queries/s alone |"
	echo "|---|---|---|---|---|---|---|"
	awk -F'|' '
		{
			key = $1 "|" $5
			if (!(key in name)) { order[++n] = key; name[key] = $2 " " $3 "×" $4; am[key] = $5 }
			mark = $11 == "forced" ? "†" : ""
			if ($13 == "queries") alone[key] = $10 mark
			else if ($13 == "mixed") { mixi[key, $12] = $9; mixq[key, $12] = $10 mark }
			else { clients[key] = clients[key] " " $12; ins[key, $12] = $9 }
		}
		END {
			for (i = 1; i <= n; i++) {
				k = order[i]
				m = split(clients[k], cs, " ")
				for (j = 1; j <= m; j++)
					printf "| %s | %s | %s | %s | %s | %s | %s |\n", name[k], am[k], cs[j],
						ins[k, cs[j]], mixi[k, cs[j]], mixq[k, cs[j]], alone[k]
			}
		}' "$RESULTS"
}

# ---------------------------------------------------------------------------

bench_main matryoshka-tools "${DATASETS[@]}"
