# 060_matryoshka_recall.pl — recall of a bulk-built matryoshka index, per
# operator class, against exact full-dimension answers.
#
# 10000 clustered 256-d vectors with a decaying spectrum, as Matryoshka
# embeddings have: 100 centres uniform in [-1,1] per coordinate, each point
# its centre plus uniform noise in [-0.75,0.75], and coordinate d then
# scaled by 1/sqrt(d), so the first 64 dimensions (the default coarse prefix)
# carry about three quarters of the variance and the rest still decide many
# neighbours.  100 queries drawn the same way; setseed makes the data the
# same on every run.
# For each operator class (l2, ip, cosine, l1) the index is built with the
# default granularities (64, then 256) and recall@10 at the default settings
# (matryoshka.ef_search 0: the value the build measured, no funnel) is
# measured against the exact top 10 of a sequential scan: it must be at
# least 0.98 (each value is printed).  061 does the same on samples of the
# benchmark's data sets.
# The index must pass hierindex_check, hold one element per row, and the
# planner must use it.  Then rows beyond the shortlist: LIMIT 500 at the
# default settings (a first round of tens of rows) must return 500 distinct rows, nearly all of the exact 500,
# in exact distance order but for at most 1% of them (a row that a narrower
# round missed is returned when a wider one finds it, late: never dropped).
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
my $DIM = 256;
my $K = 10;
my $MIN_RECALL = 0.98;
my $MANY = 500;

my $node = start_hierindex_node('matryoshka_recall',
	conf => "maintenance_work_mem = '256MB'");

# clustered points with coordinate d scaled by 1/sqrt(d)
my $points = sub {
	my (%opt) = @_;
	my $sql = clustered_points_sql(dim => $DIM, %opt);
	$sql =~ s{\(x\[d\] \+ 1\.5 \* \(random\(\) - 0\.5\)\)::real}
			 {((x[d] + 1.5 * (random() - 0.5)) / sqrt(d))::real}
	  or die "clustered_points_sql changed its form";
	return $sql;
};
$node->safe_psql(
	'postgres',
	clustered_centres_sql(0.42, $DIM) . qq{
CREATE TABLE items (id int NOT NULL, v vector($DIM));
INSERT INTO items @{[ $points->(series => "generate_series(1, $ROWS)") ]};
CREATE TABLE queries AS @{[ $points->(series => "generate_series(1, $QUERIES)",
		centre => '(i * 37) % 100', id_name => 'qid', v_name => 'q') ]};
ANALYZE items; ANALYZE queries;});
is( $node->safe_psql('postgres',
		'SELECT count(*), count(DISTINCT v) FROM items'),
	"$ROWS|$ROWS",
	"$ROWS distinct vectors loaded");

# recall@k of $knn (knn_sql) against the table $exact, at the defaults
sub recall
{
	my ($knn, $k, $exact) = @_;
	return $node->safe_psql(
		'postgres', qq{
SELECT avg((SELECT count(*) FROM unnest(a.ids) id WHERE id = ANY (e.ids)))::float8 / $k
FROM ($knn) a JOIN $exact e USING (qid);
});
}

for my $case (
	[ 'l2', 'vector_l2_ops', '<->' ],
	[ 'ip', 'vector_ip_ops', '<#>' ],
	[ 'cosine', 'vector_cosine_ops', '<=>' ],
	[ 'l1', 'vector_l1_ops', '<+>' ])
{
	my ($name, $opclass, $op) = @$case;
	my $index = "items_$name";
	my $exact = "exact_$name";
	my $knn = knn_sql($op, $K);

	$node->safe_psql('postgres', exact_answers_sql($exact, $knn));
	$node->safe_psql('postgres',
		"CREATE INDEX $index ON items USING matryoshka (v $opclass)");

	my $plan = $node->safe_psql('postgres', "EXPLAIN (COSTS OFF) $knn");
	like($plan, qr/Index Scan using $index on items/,
		"$name: the planner uses the index for ORDER BY ... LIMIT $K")
	  or diag($plan);

	recall_at_least(recall($knn, $K, $exact), $MIN_RECALL,
		"$name: recall\@$K at the default settings");

	every_query_returns($node, $knn, $K, "$name: every query returns $K distinct rows");

	hierindex_check_is_clean($node, $index, "$name: hierindex_check finds no problem");
	is( $node->safe_psql(
			'postgres',
			"SELECT dimensions, elements, heap_tids, granularities "
			  . "FROM hierindex_index_info('$index')"),
		"64|$ROWS|$ROWS|{64,$DIM}",
		"$name: hierindex_index_info shows $ROWS elements on a 64-d coarse prefix");

	# more rows than the first round's shortlist: all of them, nearly all
	# in exact order
	if ($name eq 'l2' || $name eq 'cosine')
	{
		my $many = knn_sql($op, $MANY);
		my $exact_many = "exact_many_$name";

		$node->safe_psql('postgres', exact_answers_sql($exact_many, $many));
		my ($full, $late) = split /\|/, $node->safe_psql(
			'postgres', qq{
SELECT count(*) FILTER (WHERE rows = $MANY AND distinct_rows = $MANY), sum(late)
FROM queries, LATERAL (
	SELECT count(*) AS rows, count(DISTINCT id) AS distinct_rows,
		   count(*) FILTER (WHERE d < prev) AS late
	FROM (SELECT id, d, lag(d, 1, '-Infinity') OVER (ORDER BY n) AS prev
		  FROM (SELECT id, v $op q AS d, row_number() OVER () AS n
				FROM (SELECT id, v FROM items ORDER BY v $op q LIMIT $MANY) s) t) u) r;
});
		is($full, $QUERIES,
			"$name: LIMIT $MANY at the default settings returns $MANY distinct rows for every query");
		note("$name: $late of " . ($QUERIES * $MANY) . " rows came after a farther row");
		cmp_ok($late, '<=', 0.01 * $QUERIES * $MANY,
			"$name: at most 1% of the rows come out of exact order (got $late)");
		recall_at_least(recall($many, $MANY, $exact_many), 0.9,
			"$name: recall\@$MANY at the default settings");
	}

	$node->safe_psql('postgres', "DROP INDEX $index");
}

$node->stop;
done_testing();
