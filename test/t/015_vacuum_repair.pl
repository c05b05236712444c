# 015_vacuum_repair.pl — VACUUM that repairs the graph and hands the space of
# deleted elements to later inserts, for each access method (hnsw, and
# matryoshka on granularities 16,24 of 32 dimensions), on a node of its own.
#
#   1. delete + VACUUM: an l2 index on 4000 clustered 32-d vectors loses the
#      even rows; after VACUUM every one of their 2000 elements is free (no
#      list links to it, hierindex_check finds no structural problem; as
#      after single inserts, at most 0.2% of the elements may be unreachable:
#      the repair re-links elements nothing links to, but not yet a group
#      that links only among itself, seen in 1 of 4 CI runs), the entry point is
#      live, and recall@10 at ef_search 100 over 100 queries against a
#      sequential scan of the remaining rows is at least 0.95;
#   2. 2000 new rows inserted after that: the check is still clean (no
#      insert linked to a free element) and recall is at least 0.95 (the
#      reuse of free slots by inserts, and the size bound it gives, are not
#      done yet: src/hnsw/README, VACUUM);
#   3. concurrency: pgbench, 4 clients for 30 s, each transaction an INSERT
#      of a new row, a DELETE of a random row or an index scan query (one
#      script each), while another session runs VACUUM in a loop; pgbench
#      reports no failed transaction, no VACUUM fails, and afterwards (one
#      last VACUUM) the check is clean and recall@10 is at least 0.95.
#
# Run as tools/test.sh does (prove test/t/*.pl, PostgreSQL's TAP modules).

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use HierindexTest;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $ROWS = 4000;
my $DIM = 32;
my $K = 10;
my $EF_SEARCH = 100;
my $MIN_RECALL = 0.95;
my $SOAK_SECONDS = $ENV{HIERINDEX_SOAK_SECONDS} // 30;
my $CLIENTS = 4;

# recall@K of the index against a sequential scan of the rows there are now
sub recall_now
{
	my ($node, $exact) = @_;
	return measure_recall($node, knn => knn_sql('<->', $K), k => $K, exact => $exact,
		ef_search => $EF_SEARCH, compute_exact => 1);
}

for my $am (access_methods())
{
	my $node = start_hierindex_node("${am}_vacuum", conf => "max_connections = 20\nautovacuum = off");

	$node->safe_psql(
		'postgres',
		clustered_centres_sql(0.31, $DIM)
		  . items_and_queries_sql(dim => $DIM, rows => $ROWS, queries => 100, inserted_ids_from => 1000001)
		  . "CREATE INDEX items_l2 ON items USING $am (v vector_l2_ops) "
		  . index_options_sql($am, $DIM, '') . ";\nANALYZE items;");

	# 1. half the rows go; VACUUM unlinks and frees their elements
	$node->safe_psql('postgres', 'DELETE FROM items WHERE id % 2 = 0; VACUUM items;');
	is( $node->safe_psql('postgres',
			"SELECT elements, heap_tids, deleted_elements, free_elements, free_bytes > 0 FROM hierindex_index_info('items_l2')"),
		"$ROWS|@{[ $ROWS / 2 ]}|@{[ $ROWS / 2 ]}|@{[ $ROWS / 2 ]}|t",
		"$am: after VACUUM the deleted rows' elements are free");
	hierindex_check_after_inserts($node, 'items_l2',
		"$am: hierindex_check after delete + VACUUM (no link to a deleted element)");
	recall_at_least(recall_now($node, 'exact_half'), $MIN_RECALL,
		"$am: recall\@$K at ef_search $EF_SEARCH after deleting half the rows and VACUUM");

	# 2. as many rows again
	$node->safe_psql('postgres',
		"INSERT INTO items "
		  . clustered_points_sql(dim => $DIM, series => "generate_series(1, @{[ $ROWS / 2 ]})",
			id => "nextval('inserted_ids')::int"));
	is($node->safe_psql('postgres', "SELECT heap_tids FROM hierindex_index_info('items_l2')"),
		$ROWS, "$am: the index holds $ROWS heap TIDs again");
	hierindex_check_after_inserts($node, 'items_l2', "$am: hierindex_check after re-insert");
	recall_at_least(recall_now($node, 'exact_reinserted'), $MIN_RECALL,
		"$am: recall\@$K at ef_search $EF_SEARCH after re-insert");

	# 3. inserts, deletes and queries by pgbench while VACUUM runs in a loop
	my ($vacuum_out, $vacuum_err) = ('', '');
	my $vacuum_loop = IPC::Run::start(
		[
			'bash', '-c',
			'end=$((SECONDS + ' . $SOAK_SECONDS . ')); n=0; '
			  . 'while [ $SECONDS -lt $end ]; do '
			  . 'psql -X -q -v ON_ERROR_STOP=1 -d "$0" -c "VACUUM items" || exit 1; '
			  . 'n=$((n + 1)); sleep 0.2; done; echo "vacuums $n"',
			$node->connstr('postgres')
		],
		'>', \$vacuum_out, '2>', \$vacuum_err);
	$node->pgbench(
		"--no-vacuum --client=$CLIENTS --jobs=$CLIENTS --time=$SOAK_SECONDS",
		0,
		[ qr{number of failed transactions: 0}, qr{processed: [1-9]} ],
		[qr{^$}],
		"$am: pgbench: $CLIENTS clients insert, delete and query for $SOAK_SECONDS s",
		{
			"015_${am}_insert" => pgbench_insert_script($DIM, "nextval('inserted_ids')"),
			"015_${am}_delete" => "\\set id random(1, $ROWS)\nDELETE FROM items WHERE id = :id;\n",
			"015_${am}_query" => "\\set qid random(1, 100)\nSET enable_seqscan = off;\n"
			  . "SELECT id FROM items ORDER BY v <-> (SELECT q FROM queries WHERE qid = :qid) LIMIT $K;\n"
		});
	$vacuum_loop->finish;
	is($vacuum_err, '', "$am: no VACUUM of the loop failed");
	like($vacuum_out, qr/vacuums [1-9]/, "$am: the VACUUM loop ran ($vacuum_out)");
	$node->safe_psql('postgres', 'VACUUM items');
	is( $node->safe_psql('postgres',
			"SELECT i.heap_tids = (SELECT count(*) FROM items) FROM hierindex_index_info('items_l2') i"),
		't', "$am: the index holds one heap TID per row after the soak");
	hierindex_check_after_inserts($node, 'items_l2', "$am: hierindex_check after the soak");
	recall_at_least(recall_now($node, 'exact_soak'), $MIN_RECALL,
		"$am: recall\@$K at ef_search $EF_SEARCH after the soak");

	$node->stop;
}

done_testing();
