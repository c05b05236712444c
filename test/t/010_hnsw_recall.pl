# 010_hnsw_recall.pl — recall of a bulk-built hnsw index, per operator class.
#
# 10000 clustered 64-d vectors (100 centres uniform in [-1,1]^64, each point
# its centre plus uniform noise in [-0.75,0.75] per coordinate, so clusters
# overlap) and 100 queries drawn the same way; setseed makes the data the
# same on every run.  The data is not trivial: at ef_search 10 recall@10 is
# about 0.92-0.98 depending on the metric (printed as a note).
# For each operator class (l2, ip, cosine, l1) the index is built, and
# recall@10 at hnsw.ef_search = 100 is measured against the exact top 10 of a
# sequential scan: it must be at least 0.99.  The index must also pass
# hierindex_check and hold one element per row.  The l2 case runs twice:
# the second time with maintenance_work_mem = 1MB, where the graph does not
# fit and the build adds most rows one by one (the same recall bar; the
# check allows the insert tests' 0.2% of unreachable elements).
#
# Run as tools/test.sh does: prove test/t/*.pl as a non-root user, with
# PostgreSQL's TAP modules on PERL5LIB and its bin directory on PATH.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use HierindexTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $ROWS = 10000;
my $QUERIES = 100;
my $DIM = 64;
my $K = 10;
my $EF_SEARCH = 100;
my $MIN_RECALL = 0.99;

my $node = start_hierindex_node('hnsw_recall',
	conf => "maintenance_work_mem = '256MB'");

$node->safe_psql(
	'postgres',
	clustered_centres_sql(0.31, $DIM)
	  . items_and_queries_sql(dim => $DIM, rows => $ROWS, queries => $QUERIES)
	  . 'ANALYZE items; ANALYZE queries;');
is( $node->safe_psql('postgres',
		'SELECT count(*), count(DISTINCT v) FROM items'),
	"$ROWS|$ROWS",
	"$ROWS distinct vectors loaded");

for my $case (
	[ 'l2', 'vector_l2_ops', '<->' ],
	[ 'ip', 'vector_ip_ops', '<#>' ],
	[ 'cosine', 'vector_cosine_ops', '<=>' ],
	[ 'l1', 'vector_l1_ops', '<+>' ],
	# maintenance_work_mem too small for the graph: the build writes what
	# it holds and adds the rest one row at a time (the insert path)
	[ 'l2', 'vector_l2_ops', '<->', '1MB' ])
{
	my ($name, $opclass, $op, $work_mem) = @$case;
	my $index = "items_$name";
	my $exact = "exact_$name";

	# Exact answers first, while there is no index to use.
	my $knn = knn_sql($op, $K);
	$node->safe_psql('postgres', exact_answers_sql($exact, $knn));

	if (defined $work_mem)
	{
		my ($ret, $out, $err) = $node->psql('postgres',
			"SET maintenance_work_mem = '$work_mem'; "
			  . "CREATE INDEX $index ON items USING hnsw (v $opclass)");
		is($ret, 0, "$name: build with maintenance_work_mem $work_mem succeeds")
		  or diag($err);
		like($err, qr/NOTICE:  .*maintenance_work_mem/,
			"$name: the build says the graph did not fit in maintenance_work_mem");
		$name .= " (maintenance_work_mem $work_mem)";
	}
	else
	{
		$node->safe_psql('postgres',
			"CREATE INDEX $index ON items USING hnsw (v $opclass)");
	}

	my $plan = $node->safe_psql('postgres',
		"EXPLAIN (COSTS OFF) $knn");
	like($plan, qr/Index Scan using $index on items/,
		"$name: the planner uses the index for ORDER BY ... LIMIT $K")
	  or diag($plan);

	my $recall = measure_recall($node, knn => $knn, k => $K, exact => $exact,
		ef_search => $EF_SEARCH);
	my $recall_low = measure_recall($node, knn => $knn, k => $K, exact => $exact,
		ef_search => 10);
	note("$name: recall\@$K at ef_search 10 = $recall_low");
	recall_at_least($recall, $MIN_RECALL, "$name: recall\@$K at ef_search $EF_SEARCH");

	# Every query got $K distinct rows (a short or repeating list would
	# lower recall, but say so plainly).
	is( $node->safe_psql(
			'postgres', qq{
SET hnsw.ef_search = $EF_SEARCH;
SELECT count(*) FROM ($knn) a
WHERE cardinality(ids) <> $K
	OR (SELECT count(DISTINCT id) FROM unnest(ids) id) <> $K;
}),
		'0',
		"$name: every query returns $K distinct rows");

	# Rows added one at a time go through the insert path, whose pruning
	# can cut an element's last way in (1 of 10000 in one CI run): that case
	# gets the insert tests' bar, at most 0.2% unreachable (the next VACUUM
	# re-links them: 015); a build that held the whole graph leaves none.
	if (defined $work_mem)
	{
		hierindex_check_after_inserts($node, $index, $name);
	}
	else
	{
		hierindex_check_is_clean($node, $index, "$name: hierindex_check finds no problem");
	}
	is( $node->safe_psql(
			'postgres',
			"SELECT metric, dimensions, elements, heap_tids, deleted_elements "
			  . "FROM hierindex_index_info('$index')"),
		join('|',
			$exact eq 'exact_ip' ? 'inner_product' : substr($exact, 6),
			$DIM, $ROWS, $ROWS, 0),
		"$name: hierindex_index_info shows $ROWS elements of $DIM dimensions");

	$node->safe_psql('postgres', "DROP INDEX $index");
}

$node->stop;
done_testing();
