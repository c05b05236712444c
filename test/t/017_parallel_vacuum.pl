# 017_parallel_vacuum.pl — VACUUM (PARALLEL): the bulk delete of an hnsw or
# matryoshka index runs in a parallel vacuum worker (amparallelvacuumoptions
# VACUUM_OPTION_PARALLEL_BULKDEL, both access methods), and the result is
# the same as a serial VACUUM's.
#
# Why it can go wrong there: the worker is another process, with its own
# memory; what it returns from ambulkdelete is copied into shared memory
# for the leader's amvacuumcleanup (IndexBulkDeleteResult, a plain struct:
# nothing of ours may hang off it), and its maintenance_work_mem is the
# leader's share for it.
#
# For each access method, on one node (min_parallel_index_scan_size = 0, so
# every index may go to a worker; max_parallel_maintenance_workers = 2):
# a table of 3000 clustered 32-d rows with three indexes, in this order: a
# cosine index and an l2 index of the access method, and a btree on id.
# The leader takes the first index itself and the workers the next ones, so
# with two vector indexes one of them lands in a worker even when the
# leader is quick.  Then:
#   1. half the rows are deleted (every other run of 100 ids: each cluster
#      keeps half its points; deleting whole clusters would leave queries
#      with no near neighbour, where matryoshka's coarse prefix ranks poorly
#      after any build) and VACUUM (PARALLEL 2, VERBOSE) runs: its
#      output says it launched a parallel worker for index vacuuming, and
#      the server log (log_line_prefix %b, the backend type) shows a
#      parallel worker unlinking the deleted elements of a vector index;
#   2. each vector index: hierindex_check finds nothing (no link to a
#      deleted element, no unreachable element), hierindex_index_info
#      counts 1500 heap TIDs and 1500 free elements (one per deleted row),
#      and recall@10 at ef_search 100 against a sequential scan, over 50
#      queries, is at least 0.95 (measure_recall's index option: at 1500
#      rows the planner would rather sort a sequential scan);
#   3. 1500 rows inserted afterwards take the freed slots: the l2 index
#      holds 3000 heap TIDs again, gains fewer than 150 element tuples (10%
#      of the rows; a row needs a free slot of its level or above), and the
#      check finds no structural problem (hierindex_check_after_inserts).
#
# Cost: about 10 s.  Run as tools/test.sh does (prove test/t/*.pl).

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use HierindexTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $ROWS = 3000;
my $DELETED = $ROWS / 2;
my $DIM = 32;
my $K = 10;
my $EF_SEARCH = 100;
my $MIN_RECALL = 0.95;

my $node = start_hierindex_node(
	'parallel_vacuum',
	conf => "autovacuum = off\n"
	  . "max_parallel_maintenance_workers = 2\n"
	  . "min_parallel_index_scan_size = 0\n"
	  . "log_line_prefix = '%m [%p] %b '");

for my $am (access_methods())
{
	my %op = (items_cos => '<=>', items_l2 => '<->');

	$node->safe_psql(
		'postgres',
		"DROP TABLE IF EXISTS items, queries, centres;\n"
		  . clustered_centres_sql(0.17, $DIM)
		  . items_and_queries_sql(dim => $DIM, rows => $ROWS, queries => 50)
		  . "CREATE INDEX items_cos ON items USING $am (v vector_cosine_ops) "
		  . index_options_sql($am, $DIM, '') . ";\n"
		  . "CREATE INDEX items_l2 ON items USING $am (v vector_l2_ops) "
		  . index_options_sql($am, $DIM, '') . ";\n"
		  . "CREATE INDEX items_id ON items (id);\n"
		  . "ANALYZE items;");

	# 1. the parallel VACUUM
	my $log_offset = -s $node->logfile;
	my ($ret, $out, $err) = $node->psql('postgres',
		"DELETE FROM items WHERE (id / 100) % 2 = 0;\n"
		  . "SET log_min_messages = debug1;\n"
		  . "VACUUM (PARALLEL 2, VERBOSE) items;");
	is($ret, 0, "$am: VACUUM (PARALLEL 2, VERBOSE) succeeds");
	like($err, qr/launched [1-9]\d* parallel vacuum workers? for index vacuuming/,
		"$am: VACUUM launched a parallel worker for index vacuuming");
	my $log = slurp_file($node->logfile, $log_offset);
	my @in_worker = $log =~
	  /\bparallel worker DEBUG:  index "(items_cos|items_l2)": $DELETED elements unlinked/g;
	ok(@in_worker >= 1,
		"$am: a parallel worker vacuumed a vector index (" . join(', ', @in_worker) . ')');

	# 2. the result, for both vector indexes
	for my $index ('items_cos', 'items_l2')
	{
		hierindex_check_is_clean($node, $index,
			"$am: $index: hierindex_check after the parallel VACUUM finds nothing");
		is( $node->safe_psql('postgres',
				"SELECT heap_tids, free_elements FROM hierindex_index_info('$index')"),
			"$DELETED|$DELETED",
			"$am: $index: $DELETED heap TIDs left, one free element per deleted row");
		recall_at_least(
			measure_recall($node, knn => knn_sql($op{$index}, $K), k => $K,
				exact => "exact_$index", ef_search => $EF_SEARCH,
				compute_exact => 1, temp => 1, index => 1),
			$MIN_RECALL,
			"$am: $index: recall\@$K at ef_search $EF_SEARCH after the parallel VACUUM");
	}

	# 3. inserts take the freed slots
	my $elements_before = $node->safe_psql('postgres',
		"SELECT elements FROM hierindex_index_info('items_l2')");
	$node->safe_psql('postgres',
		"INSERT INTO items "
		  . clustered_points_sql(dim => $DIM,
			series => "generate_series($ROWS + 1, $ROWS + $DELETED)"));
	my ($heap_tids, $elements, $free) = split /\|/, $node->safe_psql('postgres',
		"SELECT heap_tids, elements, free_elements FROM hierindex_index_info('items_l2')");
	is($heap_tids, $ROWS, "$am: after $DELETED inserts the l2 index holds $ROWS heap TIDs");
	cmp_ok($elements - $elements_before, '<', 0.1 * $DELETED,
		"$am: the inserts reused the free slots ($elements_before -> $elements elements, $free free)");
	hierindex_check_after_inserts($node, 'items_l2', "$am: hierindex_check after the inserts");
}

$node->stop;
done_testing();
