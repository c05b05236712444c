# 011_concurrent_inserts.pl — an index under concurrent inserts, for each
# access method (hnsw, and matryoshka on granularities 32,48,64), on a node
# of its own.
#
# An l2 index is built on 2000 clustered 64-d vectors; then pgbench with 4
# clients (HierindexTest's concurrent_clients) inserts 1250 rows each (5000
# with 4; one row per transaction, each a random point of a random cluster)
# while the index is live.  Afterwards:
#   * the heap holds exactly 2000 rows and the inserted ones, and the index
#     one element and one heap TID per row;
#   * hierindex_check finds no problem (no dangling link, every element
#     reachable from the entry point);
#   * recall@10 at ef_search 100 against a sequential scan is at least 0.95
#     (over 100 queries);
#   * every inserted row is findable: queried with its own vector, each
#     comes back first.
#
# Run as tools/test.sh does (prove test/t/*.pl, PostgreSQL's TAP modules).

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use HierindexTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $INITIAL = 2000;
my $CLIENTS = concurrent_clients();
my $PER_CLIENT = 1250;
my $INSERTED = $CLIENTS * $PER_CLIENT;
my $DIM = 64;
my $K = 10;
my $EF_SEARCH = 100;
my $MIN_RECALL = 0.95;

for my $am (access_methods())
{
	my $node = start_hierindex_node("${am}_concurrent", conf => max_connections_conf());

	# Ids of the initial rows are 1..2000, those of pgbench's rows come from a
	# sequence from 1000001.
	$node->safe_psql(
		'postgres',
		clustered_centres_sql(0.47, $DIM)
		  . items_and_queries_sql(dim => $DIM, rows => $INITIAL, queries => 100, inserted_ids_from => 1000001)
		  . "CREATE INDEX items_l2 ON items USING $am (v vector_l2_ops) "
		  . index_options_sql($am, $DIM, '') . ';');
	is($node->safe_psql('postgres', "SELECT elements FROM hierindex_index_info('items_l2')"),
		$INITIAL, "$am: index built on $INITIAL rows");

	# Concurrent inserts through the live index.
	$node->pgbench(
		"--no-vacuum --client=$CLIENTS --jobs=$CLIENTS --transactions=$PER_CLIENT",
		0,
		[
			qr{processed: $INSERTED/$INSERTED},
			qr{number of failed transactions: 0}
		],
		[qr{^$}],
		"$am: pgbench: $CLIENTS clients insert $INSERTED rows",
		{
			"011_${am}_insert" => pgbench_insert_script($DIM, "nextval('inserted_ids')")
		});

	my $total = $INITIAL + $INSERTED;
	is($node->safe_psql('postgres', 'SELECT count(*), count(DISTINCT id) FROM items'),
		"$total|$total", "$am: heap holds $INITIAL + $INSERTED rows");
	is( $node->safe_psql('postgres',
			"SELECT elements, heap_tids, deleted_elements FROM hierindex_index_info('items_l2')"),
		"$total|$total|0",
		"$am: index holds one element and one heap TID per row");
	hierindex_check_after_inserts($node, 'items_l2',
		"$am: hierindex_check after concurrent inserts");

	$node->safe_psql('postgres', 'ANALYZE items');
	my $knn = knn_sql('<->', $K);
	like($node->safe_psql('postgres', "EXPLAIN (COSTS OFF) $knn"),
		qr/Index Scan using items_l2 on items/, "$am: the queries use the index");

	my $recall = measure_recall($node, knn => $knn, k => $K, exact => 'exact',
		ef_search => $EF_SEARCH, compute_exact => 1);
	recall_at_least($recall, $MIN_RECALL,
		"$am: recall\@$K at ef_search $EF_SEARCH after concurrent inserts");

	# The nearest rows to the queries include inserted ones, so the recall above
	# measures them too.
	cmp_ok(
		$node->safe_psql(
			'postgres',
			"SELECT count(*) FROM exact, unnest(ids) id WHERE id > 1000000"),
		'>', 0,
		"$am: the exact answers include rows inserted by pgbench");

	# Every inserted row, queried with its own vector, comes back first.
	like(self_found($node, '<->', 'id > 1000000', $EF_SEARCH, explain => 1),
		qr/Index Scan using items_l2 on items t2/, "$am: the self-queries use the index");
	is(self_found($node, '<->', 'id > 1000000', $EF_SEARCH),
		"$INSERTED/$INSERTED",
		"$am: all $INSERTED inserted rows are found first by their own vector");

	$node->stop;
}

done_testing();
