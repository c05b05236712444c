# 061_matryoshka_datasets.pl — recall of matryoshka indexes at the default
# settings on samples of the benchmark's data sets (issue 6: "recall@10
# against exact full-dimension results >= 0.98 at default settings on the
# data below"), and a 3072-d index that builds and answers.
#
# The data come from the benchmark's tools (test/bench, built here with
# make matryoshka-tools), at sizes a test can afford:
#   - Fashion-MNIST rotated onto its principal components (Debian package
#     dataset-fashion-mnist, which tools/setup.sh installs): the first 20000
#     train images as rows, the PCA fitted on them (pca_rotate), the first
#     200 test images as queries; l2 with the issue's example granularities
#     '32,128,784', cosine with the benchmark's '48,192,784';
#   - the generated 768-d set (gen_clustered, decaying spectrum, the
#     benchmark's seeds): 20000 rows, 200 queries, l2, '64,256,768';
#   - the same recipe at 3072 dimensions, beyond the 2000 of an hnsw
#     element page: 5000 rows, 100 queries, l2, '64,256,1024,3072'.
# The exact top 10 of each query comes from knn_truth (brute force in
# double over the same vectors, not through the extension).  Per index:
# the planner uses it, its build measured a default ef_search
# (hierindex_index_info.default_ef_search; for the Fashion-MNIST l2 index a
# second time built empty and filled by inserts: VACUUM measured it),
# recall@10 with every setting at
# its default (matryoshka.ef_search 0: the measured value) is at least
# 0.98, every query gets 10 distinct rows, and hierindex_check is clean.
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

my $K = 10;
my $MIN_RECALL = 0.98;
my $BENCH = "$FindBin::RealBin/../bench";
my $FMNIST = '/usr/share/datasets/fashion-mnist';
my $DIR = PostgreSQL::Test::Utils::tempdir();

# the data tools; tools/test.sh has built them already when the tree is
# not writable here
# (a failure dies: this file fails, and prove goes on with the others)
system("make -s -C '$BENCH' matryoshka-tools >'$DIR/make.log' 2>&1") == 0
  or die("make -C test/bench matryoshka-tools failed: "
	  . slurp_file("$DIR/make.log"));
-r "$FMNIST/train-images-idx3-ubyte.gz" && -r "$FMNIST/t10k-images-idx3-ubyte.gz"
  or die("Fashion-MNIST is not in $FMNIST: install the Debian package "
	  . "dataset-fashion-mnist (bash tools/setup.sh does)");

# run a shell pipeline, or stop the test with its error output; only the
# last command's status counts (idx_to_fvecs stops reading early, which
# gzip takes as a broken pipe): the row counts are checked after loading
sub shell
{
	my ($command) = @_;
	my $log = "$DIR/shell.log";
	system('bash', '-c', "( $command ) 2>'$log'") == 0
	  or die("'$command' failed: " . slurp_file($log));
}

my $node = start_hierindex_node('matryoshka_datasets',
	conf => "maintenance_work_mem = '512MB'");
my $connstr = $node->connstr('postgres');

# table exact: the exact top $K of each query under $metric (knn_truth)
sub load_exact
{
	my ($metric, $base, $queries) = @_;
	$node->safe_psql('postgres', qq{
DROP TABLE IF EXISTS exact;
CREATE TABLE exact (qid int4 NOT NULL, ids int4[], distances float8[]);});
	shell("$BENCH/knn_truth $metric $K '$base' '$queries' | psql -X -q -d \"$connstr\" "
		  . "-c '\\copy exact FROM pstdin'");
}

# tables items, queries and the exact answers from fvecs files
sub load_data_set
{
	my ($name, $dim, $base, $queries, $metric, $rows, $query_rows) = @_;
	$node->safe_psql(
		'postgres', qq{
DROP TABLE IF EXISTS items, queries;
CREATE TABLE items (id int4 NOT NULL, v vector($dim));
CREATE TABLE queries (qid int4 NOT NULL, q vector($dim));});
	shell("$BENCH/fvecs_to_copy <'$base' | psql -X -q -d \"$connstr\" "
		  . "-c '\\copy items FROM pstdin WITH (FORMAT binary)'");
	shell("$BENCH/fvecs_to_copy <'$queries' | psql -X -q -d \"$connstr\" "
		  . "-c '\\copy queries FROM pstdin WITH (FORMAT binary)'");
	load_exact($metric, $base, $queries);
	$node->safe_psql('postgres', 'ANALYZE items; ANALYZE queries;');
	is( $node->safe_psql(
			'postgres', qq{
SELECT (SELECT count(DISTINCT id) FROM items), (SELECT count(*) FROM queries),
	   (SELECT count(*) FROM exact WHERE cardinality(ids) = $K)}),
		"$rows|$query_rows|$query_rows",
		"$name: $rows rows, $query_rows queries and their exact top $K loaded");
}

# one index at the default settings: plan, measured ef, recall, rows, check.
# $filled: the index is built empty and the rows come through inserts; it
# has no measured ef_search until VACUUM measures it through its pages.
sub check_index
{
	my ($name, $opclass, $op, $granularities, $dim, $filled) = @_;
	my $knn = knn_sql($op, $K);
	my $create = "CREATE INDEX items_mry ON items USING matryoshka (v $opclass) "
	  . "WITH (granularities = '$granularities')";

	if (!$filled)
	{
		$node->safe_psql('postgres', $create);
	}
	else
	{
		$node->safe_psql('postgres', qq{
CREATE TABLE items_all AS SELECT * FROM items;
TRUNCATE items;
ALTER TABLE items SET (autovacuum_enabled = off);
$create;
INSERT INTO items SELECT * FROM items_all;
DROP TABLE items_all;});
		is($node->safe_psql('postgres',
			"SELECT coalesce(default_ef_search, 0) FROM hierindex_index_info('items_mry')"),
			'0', "$name: an index filled by inserts has no measured default yet");
		note("$name: recall\@$K at ef_search 40, before VACUUM: "
			  . measure_recall($node, knn => $knn, k => $K, exact => 'exact', index => 1));
		$node->safe_psql('postgres', 'VACUUM items');
		is($node->safe_psql('postgres',
			"SELECT measured_elements = elements FROM hierindex_index_info('items_mry')"),
			't', "$name: VACUUM measured it at its whole size");
	}

	# At 3072-d the planner sees a small heap (the vectors are TOASTed, and
	# their reads are not in its cost of a sequential scan) and sorts it;
	# the index is still what must answer.
	my $forced = $dim > 2000 ? 'SET enable_seqscan = off; ' : '';
	my $plan = $node->safe_psql('postgres', "${forced}EXPLAIN (COSTS OFF) $knn");
	like($plan, qr/Index Scan using items_mry on items/,
		"$name: the planner uses the index for ORDER BY ... LIMIT $K"
		  . ($forced ? ' (with enable_seqscan off)' : ''))
	  or diag($plan);

	my ($ef, $coarse) = split /\|/, $node->safe_psql('postgres',
		"SELECT default_ef_search, dimensions FROM hierindex_index_info('items_mry')");
	my $measurer = $filled ? 'VACUUM' : 'the build';
	note("$name: $measurer measured default ef_search $ef");
	ok($ef ne '' && $ef >= 12 && $ef <= 1000,
		"$name: $measurer measured a default ef_search (got '$ef')");
	is($coarse, (split /,/, $granularities)[0],
		"$name: the graph is on the first granularity");

	is($node->safe_psql('postgres', "LOAD 'hierindex'; SHOW matryoshka.ef_search"), '0',
		"$name: matryoshka.ef_search is at its default, 0 (the measured value)");
	recall_at_least(
		measure_recall($node, knn => $knn, k => $K, exact => 'exact', index => 1),
		$MIN_RECALL, "$name: recall\@$K at the default settings");

	every_query_returns($node, $knn, $K, "$name: every query returns $K distinct rows");

	hierindex_check_is_clean($node, 'items_mry', "$name: hierindex_check finds no problem");
	$node->safe_psql('postgres', 'DROP INDEX items_mry');
}

# Fashion-MNIST rotated onto its principal components
shell("gzip -dc '$FMNIST/train-images-idx3-ubyte.gz' | $BENCH/idx_to_fvecs 20000 >'$DIR/fmnist-raw.fvecs'");
shell("gzip -dc '$FMNIST/t10k-images-idx3-ubyte.gz' | $BENCH/idx_to_fvecs 200 >'$DIR/fmnist-raw-q.fvecs'");
shell("$BENCH/pca_rotate '$DIR/fmnist-raw.fvecs' '$DIR/fmnist-raw-q.fvecs' "
	  . "'$DIR/fmnist.fvecs' '$DIR/fmnist-q.fvecs'");
load_data_set('Fashion-MNIST PCA', 784, "$DIR/fmnist.fvecs", "$DIR/fmnist-q.fvecs", 'l2',
	20000, 200);
check_index('Fashion-MNIST PCA, l2', 'vector_l2_ops', '<->', '32,128,784', 784);
check_index('Fashion-MNIST PCA, l2, filled by inserts', 'vector_l2_ops', '<->', '32,128,784',
	784, 1);
load_exact('cosine', "$DIR/fmnist.fvecs", "$DIR/fmnist-q.fvecs");
check_index('Fashion-MNIST PCA, cosine', 'vector_cosine_ops', '<=>', '48,192,784', 784);

# the generated sets (seeds as in test/bench/bench_lib.sh)
for my $set ([ 768, 20000, 200, '64,256,768' ], [ 3072, 5000, 100, '64,256,1024,3072' ])
{
	my ($dim, $rows, $queries, $granularities) = @$set;
	shell("$BENCH/gen_clustered $dim 1000 $rows 1 2 >'$DIR/gen$dim.fvecs'");
	shell("$BENCH/gen_clustered $dim 1000 $queries 1 3 >'$DIR/gen$dim-q.fvecs'");
	load_data_set("generated $dim-d", $dim, "$DIR/gen$dim.fvecs", "$DIR/gen$dim-q.fvecs", 'l2',
		$rows, $queries);
	check_index("generated $dim-d, l2", 'vector_l2_ops', '<->', $granularities, $dim);
}

$node->stop;
done_testing();
