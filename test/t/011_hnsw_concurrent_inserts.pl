# 011_hnsw_concurrent_inserts.pl — an hnsw index under concurrent inserts.
#
# An l2 index is built on 2000 clustered 64-d vectors; then pgbench with 4
# clients inserts 5000 more (1250 transactions each, one row per
# transaction, each a random point of a random cluster) while the index is
# live.  Afterwards:
#   * the heap holds exactly 2000 + 5000 rows and the index one element and
#     one heap TID per row;
#   * hierindex_check finds no problem (no dangling link, every element
#     reachable from the entry point);
#   * recall@10 at ef_search 100 against a sequential scan is at least 0.95
#     (over 100 queries);
#   * every inserted row is findable: queried with its own vector, each of
#     the 5000 comes back first.
#
# Run as tools/test.sh does (prove test/t/*.pl, PostgreSQL's TAP modules).

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $INITIAL = 2000;
my $CLIENTS = 4;
my $PER_CLIENT = 1250;
my $INSERTED = $CLIENTS * $PER_CLIENT;
my $DIM = 64;
my $K = 10;
my $EF_SEARCH = 100;
my $MIN_RECALL = 0.95;

my $node = PostgreSQL::Test::Cluster->new('hnsw_concurrent');
$node->init;
$node->append_conf('postgresql.conf', "max_connections = 20");
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION hierindex');

# 100 centres in [-1,1]^64; points are a centre plus uniform noise in
# [-0.75,0.75] per coordinate (clusters overlap).  Ids of the initial rows
# are 1..2000, those of pgbench's rows come from a sequence from 1000001.
$node->safe_psql(
	'postgres', qq{
SELECT setseed(0.47);
CREATE TABLE centres AS
	SELECT c, array_agg(random() * 2 - 1 ORDER BY d) AS x
	FROM generate_series(0, 99) c, generate_series(1, $DIM) d
	GROUP BY c;
CREATE SEQUENCE inserted_ids START 1000001;
CREATE TABLE items (id int NOT NULL, v vector($DIM));
INSERT INTO items
	SELECT i, array_agg((x[d] + 1.5 * (random() - 0.5))::real ORDER BY d)::vector($DIM)
	FROM generate_series(1, $INITIAL) i
		JOIN centres ON c = i % 100,
		generate_series(1, $DIM) d
	GROUP BY i;
CREATE TABLE queries AS
	SELECT q AS qid,
		array_agg((x[d] + 1.5 * (random() - 0.5))::real ORDER BY d)::vector($DIM) AS q
	FROM generate_series(1, 100) q
		JOIN centres ON c = (q * 37) % 100,
		generate_series(1, $DIM) d
	GROUP BY q;
CREATE INDEX items_l2 ON items USING hnsw (v vector_l2_ops);
});
is($node->safe_psql('postgres', "SELECT elements FROM hierindex_index_info('items_l2')"),
	$INITIAL, "index built on $INITIAL rows");

# Concurrent inserts through the live index.
$node->pgbench(
	"--no-vacuum --client=$CLIENTS --jobs=$CLIENTS --transactions=$PER_CLIENT",
	0,
	[
		qr{processed: $INSERTED/$INSERTED},
		qr{number of failed transactions: 0}
	],
	[qr{^$}],
	"pgbench: $CLIENTS clients insert $INSERTED rows",
	{
		'011_hnsw_insert' => q{
\set c random(0, 99)
INSERT INTO items
	SELECT nextval('inserted_ids'),
		array_agg((x[d] + 1.5 * (random() - 0.5))::real ORDER BY d)::vector(64)
	FROM centres, generate_series(1, 64) d
	WHERE c = :c;
}
	});

my $total = $INITIAL + $INSERTED;
is($node->safe_psql('postgres', 'SELECT count(*), count(DISTINCT id) FROM items'),
	"$total|$total", "heap holds $INITIAL + $INSERTED rows");
is( $node->safe_psql('postgres',
		"SELECT elements, heap_tids, deleted_elements FROM hierindex_index_info('items_l2')"),
	"$total|$total|0",
	"index holds one element and one heap TID per row");
is($node->safe_psql('postgres', "SELECT * FROM hierindex_check('items_l2')"),
	'', 'hierindex_check finds no problem after concurrent inserts');

$node->safe_psql('postgres', 'ANALYZE items');
my $knn = "SELECT qid, array(SELECT id FROM items ORDER BY v <-> q LIMIT $K) AS ids FROM queries";
like($node->safe_psql('postgres', "EXPLAIN (COSTS OFF) $knn"),
	qr/Index Scan using items_l2 on items/, 'the queries use the index');

$node->safe_psql(
	'postgres', qq{
SET enable_indexscan = off;
SET enable_bitmapscan = off;
CREATE TABLE exact AS $knn;
});
my $recall = $node->safe_psql(
	'postgres', qq{
SET hnsw.ef_search = $EF_SEARCH;
SELECT avg((SELECT count(*) FROM unnest(a.ids) id WHERE id = ANY (e.ids)))::float8 / $K
FROM ($knn) a JOIN exact e USING (qid);
});
note("recall\@$K at ef_search $EF_SEARCH after concurrent inserts = $recall");
cmp_ok($recall, '>=', $MIN_RECALL,
	"recall\@$K at ef_search $EF_SEARCH is at least $MIN_RECALL (got $recall)");

# The nearest rows to the queries include inserted ones, so the recall above
# measures them too.
cmp_ok(
	$node->safe_psql(
		'postgres',
		"SELECT count(*) FROM exact, unnest(ids) id WHERE id > 1000000"),
	'>', 0,
	'the exact answers include rows inserted by pgbench');

# Every inserted row, queried with its own vector, comes back first.
my $self_query =
  "SELECT count(*) FILTER (WHERE (SELECT t2.id FROM items t2 ORDER BY t2.v <-> t.v LIMIT 1) = t.id) "
  . "FROM items t WHERE t.id > 1000000";
like($node->safe_psql('postgres', "EXPLAIN (COSTS OFF) $self_query"),
	qr/Index Scan using items_l2 on items t2/, 'the self-queries use the index');
is( $node->safe_psql(
		'postgres', qq{
SET hnsw.ef_search = $EF_SEARCH;
$self_query;
}),
	$INSERTED,
	"all $INSERTED inserted rows are found first by their own vector");

$node->stop;
done_testing();
