# 018_dead_rows.pl: dead-row hints (src/hnsw/README, Scans: dead rows), on
# both access methods.
#
# Half the rows are deleted and no VACUUM runs.  The executor tells the
# index which rows it fetched were dead to everyone (kill_prior_tuple) and
# the scans hint their elements dead, so that the next queries fill their
# ef_search candidates (matryoshka: its coarse shortlist) with live rows.
# Checked, with the index forced (at 4200 rows the planner would sort a
# sequential scan and every recall would be 1): the queries return exactly
# the live rows a LIMIT asks for, never a dead one; a standby (which ignores
# the hints: its snapshots may still see the rows) answers with live rows
# only and gives the recall of an index without hints; the second pass on
# the primary (after the hints) must beat it: hnsw reaches recall@10 >=
# 0.95 at ef_search 100; matryoshka, whose 32-d coarse prefix ranks the far
# neighbours of the queries whose cluster the delete emptied poorly (about
# 0.82 even after VACUUM), must gain at least 0.05 over the standby (about
# 0.66 -> 0.79) and come within 0.05 of its recall after VACUUM.  Then
# VACUUM: hierindex_check is clean, inserts reuse the freed slots.
use strict;
use warnings;
use FindBin;
use lib $FindBin::RealBin;
use PostgreSQL::Test::Utils;
use Test::More;
use HierindexTest;

my $DIM = 64;
my $K = 10;

for my $am (access_methods())
{
	my $node = start_hierindex_node("${am}_dead", init => { allows_streaming => 1 },
		conf => "autovacuum = off\n");
	$node->safe_psql('postgres',
		clustered_centres_sql(0.61, $DIM)
		  . items_and_queries_sql(dim => $DIM, rows => 4200, queries => 50)
		  . "CREATE INDEX items_l2 ON items USING $am (v vector_l2_ops) "
		  . index_options_sql($am, $DIM, '') . ';');
	$node->backup('b');
	my $standby = PostgreSQL::Test::Cluster->new("${am}_dead_standby");
	$standby->init_from_backup($node, 'b', has_streaming => 1);
	$standby->start;

	$node->safe_psql('postgres', 'DELETE FROM items WHERE id % 2 = 0; ANALYZE items;');
	$node->safe_psql('postgres',
		exact_answers_sql('exact', knn_sql('<->', $K)));
	my $first = measure_recall($node, knn => knn_sql('<->', $K), k => $K,
		exact => 'exact', ef_search => 100, index => 1);
	note("$am: first pass after the delete: recall\@$K $first");
	my $second = measure_recall($node, knn => knn_sql('<->', $K), k => $K,
		exact => 'exact', ef_search => 100, index => 1);
	note("$am: second pass after the delete: recall\@$K $second");

	# exactly live rows, and as many as LIMIT asks for, through the index
	# (a sequential scan would pass this whatever the index did)
	my $forced = ef_search_sql(100) . "SET enable_seqscan = off;\nSET jit = off;\n";
	my $live_rows_sql = $forced . qq{
SELECT count(*) FILTER (WHERE id % 2 = 0) || '/' || count(*)
FROM queries, LATERAL (SELECT id FROM items ORDER BY v <-> q LIMIT $K) f;};
	is($node->safe_psql('postgres', $live_rows_sql),
		'0/' . 50 * $K, "$am: only live rows, $K per query");

	# the standby ignores hints that may arrive with full-page images
	$node->safe_psql('postgres', 'CHECKPOINT; UPDATE items SET id = id WHERE id = 1;');
	$node->wait_for_catchup($standby);
	my $exact_out = $node->safe_psql('postgres', 'SELECT qid, ids FROM exact');
	my ($standby_recall) = recall_of_lists($exact_out,
		$standby->safe_psql('postgres', $forced . knn_sql('<->', $K)));
	note("$am: standby (no hints) after the delete: recall\@$K $standby_recall");
	if ($am eq 'hnsw')
	{
		recall_at_least($second, 0.95, "$am: second pass after the delete (hints learnt)");
	}
	else
	{
		cmp_ok($second, '>=', $standby_recall + 0.05,
			"$am: the hints raise recall\@$K by at least 0.05 over the standby's ($standby_recall -> $second)");
	}
	# Without hints half the candidates of a search are dead rows, and a
	# query whose own cluster the delete emptied can find fewer than $K live
	# ones among its ef_search (hnsw, iterative_scan off: 499 of 500 rows in
	# some runs); an iterative scan goes on until it has them.
	is($standby->safe_psql('postgres',
			"SET hnsw.iterative_scan = relaxed_order;\n"
			  . "SET matryoshka.iterative_scan = relaxed_order;\n" . $live_rows_sql),
		'0/' . 50 * $K, "$am: standby returns only live rows, $K per query (iterative scan)");

	$node->safe_psql('postgres', 'VACUUM items');
	hierindex_check_is_clean($node, 'items_l2', "$am: hierindex_check after VACUUM");
	my $vacuumed = measure_recall($node, knn => knn_sql('<->', $K), k => $K,
		exact => 'exact', ef_search => 100, index => 1);
	cmp_ok($second, '>=', $vacuumed - 0.05,
		"$am: with the hints, recall\@$K before VACUUM ($second) is within 0.05 of after ($vacuumed)");
	my $elements = $node->safe_psql('postgres',
		"SELECT elements FROM hierindex_index_info('items_l2')");
	$node->safe_psql('postgres', 'INSERT INTO items '
		  . clustered_points_sql(dim => $DIM, series => 'generate_series(1, 200)', id => '100000 + i'));
	# a freed slot serves an insert whose level it has room for (README,
	# Inserts: reuse); a row drawing a higher level than every freed slot
	# takes a new one (seen for 1 of 200 rows in 2 of 4 runs)
	my $grown = $node->safe_psql('postgres',
		"SELECT elements - $elements FROM hierindex_index_info('items_l2')");
	cmp_ok($grown, '<=', 5,
		"$am: inserts after VACUUM reuse freed slots ($grown of 200 took a new one)");
	$node->safe_psql('postgres', 'DROP TABLE exact');
	my $after_inserts = measure_recall($node, knn => knn_sql('<->', $K), k => $K,
		exact => 'exact', ef_search => 100, compute_exact => 1, temp => 1, index => 1);
	cmp_ok($after_inserts, '>=', $am eq 'hnsw' ? 0.95 : $vacuumed - 0.05,
		"$am: recall\@$K after VACUUM and inserts ($after_inserts)");
	$standby->stop;
	$node->stop;
}

done_testing();
