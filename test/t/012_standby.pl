# 012_standby.pl — a streaming standby replays indexes exactly, for each
# access method (hnsw, matryoshka), on a primary and standby of its own.
#
# A primary and a streaming standby (started from a base backup taken before
# any index exists, so everything the standby has of the index comes
# through WAL).  On the primary: bulk builds (l2 and cosine, on 3000
# clustered 64-d vectors: the log_newpage_range path), 1000 single-row
# inserts (GenericXLog), then DELETE + VACUUM (deleted elements, their
# slots freed), then 100 inserts, which take freed slots (README, Inserts:
# reuse: an in-place rewrite of the slot; on the primary, each index gains
# fewer than 100 elements and has fewer free ones).  Once the standby has
# replayed it all:
#   * the same 50 k-NN queries return identical id lists on both nodes;
#   * hierindex_check on the standby finds no problem;
#   * hierindex_index_info agrees on both nodes, free elements and their
#     bytes included.
# The standby's answers are also checked against an exact sequential scan
# there (recall), so that "identical" cannot mean "identically empty".
# matryoshka also: an index built empty, filled by inserts and measured by
# VACUUM has the same measure (default ef_search) and answers on both nodes.
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

my $DIM = 64;
my $K = 10;

for my $am (access_methods())
{
	my $primary = start_hierindex_node("${am}_primary", init => { allows_streaming => 1 });

	$primary->backup('before_index');
	my $standby = PostgreSQL::Test::Cluster->new("${am}_standby");
	$standby->init_from_backup($primary, 'before_index', has_streaming => 1);
	$standby->start;

	# Clustered data; the function points draws n points, ids first.., around
	# centre id % 100.
	$primary->safe_psql(
		'postgres', clustered_centres_sql(0.53, $DIM) . qq{
	CREATE FUNCTION points(first int, n int) RETURNS TABLE (id int, v vector($DIM))
	LANGUAGE sql AS \$\$
		@{[ clustered_points_sql(dim => $DIM, series => 'generate_series(first, first + n - 1)') ]}
	\$\$;
	CREATE TABLE items (id int, v vector($DIM));
	INSERT INTO items SELECT * FROM points(1, 3000);
	CREATE TABLE queries AS SELECT id AS qid, v AS q FROM points(100001, 50);
	CREATE INDEX items_l2 ON items USING $am (v vector_l2_ops) @{[ index_options_sql($am, $DIM, '') ]};
	CREATE INDEX items_cosine ON items USING $am (v vector_cosine_ops)
		@{[ index_options_sql($am, $DIM, 'm = 8, ef_construction = 40') ]};
	ANALYZE items;
	});

	# 1000 single-row inserts through both indexes.
	$primary->safe_psql(
		'postgres', q{
	SELECT setseed(0.57);
	DO $$
	BEGIN
		FOR i IN 3001..4000 LOOP
			INSERT INTO items SELECT * FROM points(i, 1);
		END LOOP;
	END
	$$;
	});
	# Deleted elements: a VACUUM after a DELETE marks some elements deleted.
	$primary->safe_psql('postgres', 'DELETE FROM items WHERE id % 37 = 5');
	$primary->safe_psql('postgres', 'VACUUM items');
	# and a few inserts after the VACUUM, into freed slots
	my $slots_sql = sub {
		"SELECT elements, free_elements FROM hierindex_index_info('$_[0]')";
	};
	my %slots_after_vacuum =
	  map { $_ => $primary->safe_psql('postgres', $slots_sql->($_)) } ('items_l2', 'items_cosine');
	$primary->safe_psql('postgres',
		'SELECT setseed(0.59); INSERT INTO items SELECT * FROM points(4001, 100)');

	$primary->wait_for_catchup($standby, 'replay');

	my $rows = $primary->safe_psql('postgres', 'SELECT count(*) FROM items');
	is($rows, 4100 - 108, "$am: primary holds 4100 rows less the 108 deleted");
	is($standby->safe_psql('postgres', 'SELECT count(*) FROM items'),
		$rows, "$am: standby has the same rows");

	for my $case ([ 'l2', '<->', 'items_l2' ], [ 'cosine', '<=>', 'items_cosine' ])
	{
		my ($metric, $op, $index) = @$case;
		my $name = "$am $metric";
		my $knn = knn_sql($op, $K, order => 1);

		# Each of the 100 inserts took a free slot or a new one.
		my ($elements_before, $free_before) = split /\|/, $slots_after_vacuum{$index};
		my ($elements_after, $free_after) = split /\|/,
		  $primary->safe_psql('postgres', $slots_sql->($index));
		note("$name: after VACUUM $elements_before elements ($free_before free), "
			  . "after 100 inserts $elements_after ($free_after free)");
		is($free_before, 108, "$name: VACUUM freed the slots of the 108 deleted rows");
		cmp_ok($free_after, '<', $free_before, "$name: inserts after the VACUUM reused freed slots");
		is(($elements_after - $elements_before) + ($free_before - $free_after),
			100, "$name: each of the 100 inserts took a new slot or a freed one");

		for my $node ($primary, $standby)
		{
			like($node->safe_psql('postgres', "EXPLAIN (COSTS OFF) $knn"),
				qr/Index Scan using $index on items/,
				"$name: the queries use the index on " . $node->name);
		}

		for my $ef (10, 40, 100)
		{
			my $on_primary =
			  $primary->safe_psql('postgres', ef_search_sql($ef) . " $knn");
			my $on_standby =
			  $standby->safe_psql('postgres', ef_search_sql($ef) . " $knn");
			my @lines = split /\n/, $on_standby;
			# (At ef_search 10 a deleted element among the 10 found leaves a
			# query short: the scan returns at most ef_search elements, and
			# deleted ones are walked through but not returned.)
			is(scalar(@lines), 50, "$name, ef_search $ef: 50 queries answered on the standby");
			if ($ef >= 40)
			{
				is(scalar(grep { /^\d+\|\{(\d+,){9}\d+\}$/ } @lines),
					50, "$name, ef_search $ef: 50 queries with 10 ids each on the standby")
				  or diag(join("\n", grep { !/^\d+\|\{(\d+,){9}\d+\}$/ } @lines));
			}
			is($on_standby, $on_primary,
				"$name, ef_search $ef: standby returns the primary's id lists");
		}

		# The standby's answers are good ones, not just the same ones (a
		# standby is read-only: the exact answers stay in Perl).
		my ($recall, $hits, $wanted) = recall_of_lists(
			$standby->safe_psql('postgres',
				"SET enable_indexscan = off; SET enable_bitmapscan = off; $knn"),
			$standby->safe_psql('postgres', ef_search_sql(100) . " $knn"));
		is($wanted, 50 * $K, "$name: exact answers on the standby: $K ids for each of 50 queries");
		recall_at_least($recall, 0.95, "$name: recall\@$K at ef_search 100 on the standby");

		hierindex_check_after_inserts($standby, $index,
			"$name: hierindex_check on the standby");
		is($standby->safe_psql('postgres', "SELECT * FROM hierindex_check('$index')"),
			$primary->safe_psql('postgres', "SELECT * FROM hierindex_check('$index')"),
			"$name: hierindex_check reports the same on both nodes");
		my $info =
		  "SELECT metric, dimensions, m, ef_construction, elements, heap_tids, "
		  . "deleted_elements, pages, max_level, level_elements, entry_point, "
		  . "free_elements, free_bytes FROM hierindex_index_info('$index')";
		is($standby->safe_psql('postgres', $info),
			$primary->safe_psql('postgres', $info),
			"$name: hierindex_index_info agrees on both nodes");
		cmp_ok(
			$standby->safe_psql(
				'postgres', "SELECT deleted_elements FROM hierindex_index_info('$index')"),
			'>', 0, "$name: the standby has the deleted elements of the VACUUM");
	}

	# matryoshka: VACUUM's measure of an index built empty (written to the
	# meta page through GenericXLog) reaches the standby, whose scans then
	# use it as the primary's do.
	if ($am eq 'matryoshka')
	{
		$primary->safe_psql(
			'postgres', qq{
	CREATE TABLE late (id int, v vector($DIM)) WITH (autovacuum_enabled = off);
	CREATE INDEX late_l2 ON late USING matryoshka (v vector_l2_ops)
		@{[ index_options_sql($am, $DIM, '') ]};
	SELECT setseed(0.61);
	INSERT INTO late SELECT * FROM points(200001, 2000);
	VACUUM late;
	});
		$primary->wait_for_catchup($standby, 'replay');
		my $measure =
		  "SELECT default_ef_search, measured_elements FROM hierindex_index_info('late_l2')";
		my $on_primary = $primary->safe_psql('postgres', $measure);
		like($on_primary, qr/^\d+\|2000$/,
			"matryoshka: VACUUM measured the index built empty and filled by 2000 inserts");
		is($standby->safe_psql('postgres', $measure),
			$on_primary, "matryoshka: the standby has the primary's measure");
		my $late_knn = "SELECT qid, array(SELECT id FROM late ORDER BY v <-> q LIMIT $K) "
		  . "FROM queries ORDER BY qid";
		is($standby->safe_psql('postgres', $late_knn),
			$primary->safe_psql('postgres', $late_knn),
			"matryoshka: at the measured default, the standby returns the primary's id lists");
	}

	$standby->stop;
	$primary->stop;
}

done_testing();
