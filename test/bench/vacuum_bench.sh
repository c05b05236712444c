#!/bin/bash
# test/bench/vacuum_bench.sh — what one VACUUM leaves of an index after many
# of its rows changed, against a fresh build of the same rows: recall@10,
# rows found first by their own vector, VACUUM's time.
#
#   bash test/bench/vacuum_bench.sh [options]
#
#   --am hnsw|matryoshka   access method (default hnsw; matryoshka on
#                  granularities 32,48)
#   --rows N       clustered 64-d rows (default 20000; HierindexTest.pm's
#                  recipe: 100 centres in [-1,1]^64, uniform noise +-0.75)
#   --change update|delete|churn  update: every row gets a new point of
#                  another cluster, ROUNDS times (the data embedded again),
#                  before one VACUUM; delete: a random ROUNDS tenths of the
#                  rows are deleted; churn: ROUNDS times, a random SHARE of
#                  the rows get a new point of a random cluster, with a
#                  VACUUM after each round (a busy table that VACUUM keeps
#                  up with; the timed VACUUM is the last) (default update)
#   --rounds R     (default 1)
#   --share P      churn: the share of rows each round updates (default 0.5)
#   --no-fresh     skip the fresh build
#
# Prints VACUUM's time (VACUUM VERBOSE's own timing is not asked for: the
# wall clock of the statement), and recall@10 over 200 queries against a
# sequential scan and how many of a random 5000 rows come back first from a
# query with their own vector, at ef_search 40 and 100, for the index after
# VACUUM and for one built afresh on the same rows (on the CPU: inserts link
# as the CPU builder does, and a GPU build's graph is better on these
# points).  src/hnsw/README, VACUUM, has the numbers and why.  A throwaway
# cluster (tools/cluster.sh) with the extension installed from this tree.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

AM=hnsw
ROWS=20000
CHANGE=update
ROUNDS=1
FRESH=1
SHARE=0.5
DIM=64
while [ $# -gt 0 ]; do
	case $1 in
		--am) AM=${2:?--am needs hnsw or matryoshka}; shift ;;
		--rows) ROWS=${2:?--rows needs a number}; shift ;;
		--change) CHANGE=${2:?--change needs update, delete or churn}; shift ;;
		--rounds) ROUNDS=${2:?--rounds needs a number}; shift ;;
		--share) SHARE=${2:?--share needs a number}; shift ;;
		--no-fresh) FRESH=0 ;;
		-h|--help) sed -n '2,/^set /p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
		*) echo "vacuum_bench.sh: unknown argument '$1'" >&2; exit 2 ;;
	esac
	shift
done
case $AM in hnsw) OPTIONS='' ;; matryoshka) OPTIONS="WITH (granularities = '32,48')" ;;
	*) echo "vacuum_bench.sh: --am must be hnsw or matryoshka" >&2; exit 2 ;; esac
case $CHANGE in update|delete|churn) ;; *) echo "vacuum_bench.sh: --change must be update, delete or churn" >&2; exit 2 ;; esac
[[ $SHARE =~ ^0?\.[0-9]+$ ]] || { echo "vacuum_bench.sh: --share must be a fraction like 0.5" >&2; exit 2; }
[[ $ROWS =~ ^[1-9][0-9]*$ && $ROUNDS =~ ^[0-9]+$ ]] || { echo "vacuum_bench.sh: bad --rows or --rounds" >&2; exit 2; }
[ "$CHANGE" != delete ] || [ "$ROUNDS" -le 9 ] || { echo "vacuum_bench.sh: delete takes at most 9 tenths" >&2; exit 2; }

# shellcheck source=tools/cluster.sh
source tools/cluster.sh
flock /tmp/hierindex-install.lock make -s install CUDA=0 >/dev/null
cluster_start >/dev/null
psql -X -q -c "ALTER SYSTEM SET maintenance_work_mem = '1GB'" -c "ALTER SYSTEM SET shared_buffers = '1GB'" \
	-c "ALTER SYSTEM SET autovacuum = off"
_cluster_as_owner "$CLUSTER_PG_BIN/pg_ctl" -D "$CLUSTER_DIR/data" -l "$CLUSTER_DIR/server.log" \
	-w -t 60 restart >/dev/null 9>&-

points()	# points() SERIES CENTRE: id i and a point of centre CENTRE for each i
{
	echo "SELECT i, array_agg((x[d] + 1.5 * (random() - 0.5))::real ORDER BY d)::vector($DIM) AS v
		FROM $1 i JOIN centres ON c = $2, generate_series(1, $DIM) d GROUP BY i"
}
psql -X -q -v ON_ERROR_STOP=1 >/dev/null <<SQL
CREATE EXTENSION hierindex;
SELECT setseed(0.71);
CREATE TABLE centres AS SELECT c, array_agg(random() * 2 - 1 ORDER BY d) AS x
	FROM generate_series(0, 99) c, generate_series(1, $DIM) d GROUP BY c;
CREATE TABLE items (id int NOT NULL, v vector($DIM));
INSERT INTO items $(points "generate_series(1, $ROWS)" "i % 100");
CREATE TABLE queries AS SELECT i AS qid, v AS q FROM ($(points "generate_series(1, 200)" "(i * 37) % 100")) p;
CREATE INDEX items_l2 ON items USING $AM (v vector_l2_ops) $OPTIONS;
SQL
if [ "$CHANGE" = update ]; then
	for ((r = 1; r <= ROUNDS; r++)); do
		psql -X -q -c "UPDATE items SET v = p.v FROM ($(points "generate_series(1, $ROWS)" "(i * 7 + $r) % 100")) p
			WHERE items.id = p.i"
	done
elif [ "$CHANGE" = churn ]; then
	for ((r = 1; r <= ROUNDS; r++)); do
		# the rows of round r and their new clusters: hashes of (id, r)
		psql -X -q -c "UPDATE items SET v = p.v FROM ($(points "generate_series(1, $ROWS)" "abs(hashint4(i * 31 + $r)) % 100")) p
			WHERE items.id = p.i AND abs(hashint4(p.i + 1000003 * $r)) % 1000 < 1000 * $SHARE"
		[ "$r" -eq "$ROUNDS" ] || psql -X -q -c "VACUUM items"
	done
else
	psql -X -q -c "SELECT setseed(0.2)" -c "DELETE FROM items WHERE random() < 0.$ROUNDS" >/dev/null
fi
echo "$AM, $ROWS rows, $CHANGE x $ROUNDS: $(psql -X -A -t -c "SELECT count(*) FROM items") rows left"
seconds=$(psql -X -q -A -t <<SQL
SELECT clock_timestamp() AS t0 \gset
VACUUM items;
SELECT round(extract(epoch FROM clock_timestamp() - :'t0')::numeric, 2);
SQL
)
echo "VACUUM: $seconds s; hierindex_check: $(psql -X -A -t -c "SELECT count(*) FROM hierindex_check('items_l2')") problems"
psql -X -q -c "SET enable_indexscan = off" -c "SET enable_bitmapscan = off" \
	-c "CREATE TABLE exact AS SELECT qid, array(SELECT id FROM items ORDER BY v <-> q LIMIT 10) AS ids FROM queries" \
	-c "SELECT setseed(0.3)" -c "CREATE TABLE sample AS SELECT * FROM items ORDER BY random() LIMIT 5000" >/dev/null

measure()	# measure LABEL
{
	for ef in 40 100; do
		psql -X -q -A -t -F ' ' <<SQL
SET enable_seqscan = off;
SET hnsw.ef_search = $ef;
SET matryoshka.ef_search = $ef;
SELECT '$1, ef_search $ef: recall@10',
	round(avg((SELECT count(*) FROM unnest(a.ids) id WHERE id = ANY (e.ids)))::numeric / 10, 4)
FROM (SELECT qid, array(SELECT id FROM items ORDER BY v <-> q LIMIT 10) AS ids FROM queries) a
	JOIN exact e USING (qid);
SELECT '       found first by their own vector',
	count(*) FILTER (WHERE (SELECT t2.id FROM items t2 ORDER BY t2.v <-> t.v LIMIT 1) = t.id) || '/' || count(*)
FROM sample t;
SQL
	done
}
measure "after VACUUM"
if [ "$FRESH" = 1 ]; then
	psql -X -q -c "SET hierindex.build_device = cpu" -c "SET client_min_messages = warning" \
		-c "CREATE INDEX items_fresh ON items USING $AM (v vector_l2_ops) $OPTIONS" -c "DROP INDEX items_l2"
	measure "fresh build"
fi
