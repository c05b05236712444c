# 015_vacuum_repair.pl — VACUUM that repairs the graph and hands the space of
# deleted elements to later inserts, for each access method (hnsw, and
# matryoshka on granularities 16,24 of 32 dimensions), on a node of its own.
#
#   1. delete + VACUUM: an l2 index on 4000 clustered 32-d vectors loses
#      half its rows, every other run of 100 ids (each cluster keeps half
#      its points: deleting the even ids would empty every even cluster and
#      leave queries with no near neighbour, where matryoshka's coarse
#      prefix ranks poorly after any build, a fresh one too, recall@10 about
#      0.85); after VACUUM every one of their 2000 elements is free (no
#      list links to it), hierindex_check finds nothing at all: no
#      structural problem and no unreachable element (VACUUM's reachability
#      pass re-links every live element, or group of them, that no search
#      from the entry point reaches), the entry point is live, and recall@10
#      at ef_search 100 over 100 queries against a sequential scan of the
#      remaining rows is at least 0.95 (every recall here is measured with
#      the index forced, measure_recall's index option: at 2000 rows the
#      planner would sort a sequential scan, and recall would be 1);
#   2. 2000 new rows inserted after that: they take the free slots (README,
#      Inserts: reuse), so the index is at most 1.05 times its size before
#      the delete (pg_relation_size), the check finds no structural problem
#      (no insert linked to a free element, every reused slot whole) and
#      recall is at least 0.95.  Here alone, with no VACUUM after the
#      inserts, up to 0.2% of the elements may be unreachable: an insert's
#      pruning of a full list can drop an older element's last link
#      (hierindex_check_after_inserts); the next VACUUM re-links them;
#   3. churn: pgbench, 4 clients (concurrent_clients) for $CHURN_SECONDS s at $CHURN_RATE a second, each transaction
#      inserts a new row and deletes one of the oldest (the table keeps its
#      size), another runs index queries, while VACUUM runs in a loop; the
#      index, which without reuse would grow by one element per inserted
#      row, grows by less than half of that (in bytes, at its bytes per
#      element before the churn, and in elements); after one last VACUUM
#      the check finds nothing (no unreachable element either) and
#      recall@10 is at least 0.95;
#   4. a graph single inserts left in pieces: an index with m = 2 (layer-0
#      lists 4 wide), filled by 2000 single inserts, where the pruning of
#      full lists leaves many elements, alone and in groups, that no search
#      reaches (more than 0.2% of them: the scenario must exercise the
#      reachability pass); one VACUUM with nothing to delete re-links them
#      all: hierindex_check finds nothing.
#
# (Inserts, deletes, updates and queries by pgbench beside a VACUUM loop,
# the soak, are 016_soak.pl.)
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

my $ROWS = 4000;
my $DIM = 32;
my $K = 10;
my $EF_SEARCH = 100;
my $MIN_RECALL = 0.95;
my $CLIENTS = concurrent_clients();
my $CHURN_SECONDS = $ENV{HIERINDEX_CHURN_SECONDS} // 20;
# The churn's pace, in transactions a second over all clients (pgbench
# --rate): the same workload on every machine, where as fast as possible
# made it depend on the machine and on how fast queries are.  At 3000 (about
# 45000 rows inserted in 20 s) it is as hard as the unthrottled runs that
# passed before the query path got faster; unthrottled runs of 52000-64000
# rows outran the VACUUM loop (index growth over the bound below, once hnsw
# recall 0.909), a limit noted on the issue.
my $CHURN_RATE = $ENV{HIERINDEX_CHURN_RATE} // 3000;
my $MAX_REUSE_GROWTH = 1.05;

sub index_size
{
	my ($node) = @_;
	return $node->safe_psql('postgres', "SELECT pg_relation_size('items_l2')");
}

# recall@K of the index against a sequential scan of the rows there are now
sub recall_now
{
	my ($node, $exact) = @_;
	return measure_recall($node, knn => knn_sql('<->', $K), k => $K, exact => $exact,
		ef_search => $EF_SEARCH, compute_exact => 1, index => 1);
}

for my $am (access_methods())
{
	my $node = start_hierindex_node("${am}_vacuum", conf => max_connections_conf() . "\nautovacuum = off");

	$node->safe_psql(
		'postgres',
		clustered_centres_sql(0.31, $DIM)
		  . items_and_queries_sql(dim => $DIM, rows => $ROWS, queries => 100, inserted_ids_from => 1000001)
		  . "CREATE INDEX items_l2 ON items USING $am (v vector_l2_ops) "
		  . index_options_sql($am, $DIM, '') . ";\nANALYZE items;");
	my $built_size = index_size($node);

	# 1. half the rows go; VACUUM unlinks and frees their elements
	$node->safe_psql('postgres', 'DELETE FROM items WHERE (id / 100) % 2 = 0; VACUUM items;');
	is( $node->safe_psql('postgres',
			"SELECT elements, heap_tids, deleted_elements, free_elements, free_bytes > 0 FROM hierindex_index_info('items_l2')"),
		"$ROWS|@{[ $ROWS / 2 ]}|@{[ $ROWS / 2 ]}|@{[ $ROWS / 2 ]}|t",
		"$am: after VACUUM the deleted rows' elements are free");
	hierindex_check_is_clean($node, 'items_l2',
		"$am: hierindex_check after delete + VACUUM finds nothing (no link to a deleted element, no unreachable element)");
	recall_at_least(recall_now($node, 'exact_half'), $MIN_RECALL,
		"$am: recall\@$K at ef_search $EF_SEARCH after deleting half the rows and VACUUM");

	# 2. as many rows again
	$node->safe_psql('postgres',
		"INSERT INTO items "
		  . clustered_points_sql(dim => $DIM, series => "generate_series(1, @{[ $ROWS / 2 ]})",
			id => "nextval('inserted_ids')::int"));
	is($node->safe_psql('postgres', "SELECT heap_tids FROM hierindex_index_info('items_l2')"),
		$ROWS, "$am: the index holds $ROWS heap TIDs again");
	my $reinserted_size = index_size($node);
	my ($elements, $free) = split /\|/, $node->safe_psql('postgres',
		"SELECT elements, free_elements FROM hierindex_index_info('items_l2')");
	diag(sprintf("%s: index %d bytes after the build, %d after delete half + VACUUM + re-insert "
		  . "(%.3fx), %d elements, %d still free",
		$am, $built_size, $reinserted_size, $reinserted_size / $built_size, $elements, $free));
	cmp_ok($reinserted_size, '<=', $MAX_REUSE_GROWTH * $built_size,
		"$am: re-inserted rows reuse the freed slots: size at most ${MAX_REUSE_GROWTH}x the original");
	hierindex_check_after_inserts($node, 'items_l2', "$am: hierindex_check after re-insert");
	recall_at_least(recall_now($node, 'exact_reinserted'), $MIN_RECALL,
		"$am: recall\@$K at ef_search $EF_SEARCH after re-insert");

	# 3. churn: every insert comes with a delete; VACUUM frees, inserts reuse
	$node->safe_psql('postgres', 'CREATE INDEX items_id ON items (id); VACUUM items;');
	my $churn_start_size = index_size($node);
	my $churn_start_elements = $node->safe_psql('postgres',
		"SELECT elements FROM hierindex_index_info('items_l2')");
	my $churn_start_id = $node->safe_psql('postgres', "SELECT last_value FROM inserted_ids");
	my ($vacuum_out, $vacuum_err) = ('', '');
	my $vacuum_loop = start_vacuum_loop($node, $CHURN_SECONDS, \$vacuum_out, \$vacuum_err);
	$node->pgbench(
		"--no-vacuum --client=$CLIENTS --jobs=$CLIENTS --time=$CHURN_SECONDS --rate=$CHURN_RATE",
		0,
		[ qr{number of failed transactions: 0}, qr{processed: [1-9]} ],
		[qr{^$}],
		"$am: pgbench churn: $CLIENTS clients insert and delete a row per transaction, and query, for $CHURN_SECONDS s",
		{
			"015_${am}_churn\@3" => pgbench_insert_script($DIM, "nextval('inserted_ids')")
			  . "\\set skip random(0, 20)\n"
			  . "DELETE FROM items WHERE id = (SELECT id FROM items ORDER BY id OFFSET :skip LIMIT 1);\n",
			"015_${am}_churn_query\@1" => pgbench_query_script($K, 100)
		});
	$vacuum_loop->finish;
	is($vacuum_err, '', "$am: no VACUUM of the churn's loop failed");
	# for the record: the next VACUUM must leave none
	my ($unreachable) = unreachable_elements($node, 'items_l2');
	diag("$am: $unreachable elements unreachable after the churn, before the last VACUUM");
	$node->safe_psql('postgres', 'VACUUM items');
	my $churned = $node->safe_psql('postgres', "SELECT last_value FROM inserted_ids") - $churn_start_id;
	my $churn_end_size = index_size($node);
	my ($churn_elements, $churn_free, $churn_rows) = split /\|/, $node->safe_psql('postgres',
		"SELECT elements, free_elements, (SELECT count(*) FROM items) FROM hierindex_index_info('items_l2')");
	diag(sprintf("%s: churn of %d s: %d rows inserted and about as many deleted (%d rows now), "
		  . "%s; index %d -> %d bytes (%.3fx), %d -> %d elements (%d free)",
		$am, $CHURN_SECONDS, $churned, $churn_rows, $vacuum_out =~ s/\s+$//r,
		$churn_start_size, $churn_end_size, $churn_end_size / $churn_start_size,
		$churn_start_elements, $churn_elements, $churn_free));
	cmp_ok($churned, '>', 0, "$am: the churn inserted rows");
	# Reuse is asserted on elements and bytes, loosely: how many inserted
	# rows find a freed slot depends on how often the concurrent VACUUM
	# loop frees them, that is on the machine's speed, and a timed test
	# must not measure speed.  matryoshka's share of rows in reused slots
	# was 0.67 with 32 000 churned rows, 0.52 with 20 000 and 0.44 with
	# 18 000 on a slow day (5 VACUUMs in 20 s; its VACUUM also measures
	# ef_search again once the element count doubles); hnsw's 0.83-0.94.
	# With the cores shared by another test run, 0.34 of 13 700 rows (bytes
	# 0.80).  So: at least a quarter of the rows in reused slots, and bytes
	# below 0.9 of what the rows would take without reuse (a new element
	# costs about a quarter more than the index's average, since the pages
	# the inserts extend are partly filled when the churn ends: 0.70 in the
	# slow run above).  Without reuse both come out at 1 or above.
	my $unbounded_growth = $churned * $churn_start_size / $churn_start_elements;
	cmp_ok($churn_elements, '<', $churn_start_elements + $churned * 3 / 4,
		"$am: at least a quarter of the $churned churned rows went into reused slots");
	cmp_ok($churn_end_size - $churn_start_size, '<', $unbounded_growth * 0.9,
		"$am: under churn the index grows by less than 0.9 of the "
		  . int($unbounded_growth) . " bytes its $churned new rows would take without reuse");
	hierindex_check_is_clean($node, 'items_l2',
		"$am: hierindex_check after the churn and VACUUM finds nothing");
	recall_at_least(recall_now($node, 'exact_churn'), $MIN_RECALL,
		"$am: recall\@$K at ef_search $EF_SEARCH after the churn");

	# 4. single inserts into a graph of narrow lists, then VACUUM
	$node->safe_psql('postgres',
		"CREATE TABLE narrow (id int, v vector($DIM));\n"
		  . "CREATE INDEX narrow_l2 ON narrow USING $am (v vector_l2_ops) "
		  . index_options_sql($am, $DIM, 'm = 2, ef_construction = 16') . ";\n"
		  . "INSERT INTO narrow "
		  . clustered_points_sql(dim => $DIM, series => 'generate_series(1, 2000)'));
	my ($pieces, $narrow_elements) = unreachable_elements($node, 'narrow_l2');
	cmp_ok($pieces, '>', 0.002 * $narrow_elements,
		"$am: m = 2 and single inserts leave elements unreachable ($pieces of $narrow_elements)");
	$node->safe_psql('postgres', 'VACUUM narrow');
	hierindex_check_is_clean($node, 'narrow_l2',
		"$am: after VACUUM every element of the m = 2 index is reachable again");

	$node->stop;
}

done_testing();
