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
# planner must use it.  Then LIMIT 500, beyond the measured ef_search: the
# scan sees the LIMIT and ranks enough candidates in its first round, so
# every query gets 500 distinct rows, nearly all of the exact 500, all in
# exact distance order.  With half the rows filtered out by the scan node's
# filter (and ef_search 10: a first round of 502) later rounds must find the rest:
# still 500 rows, at most 1% out of order (a row that a narrower round
# missed is returned when a wider one finds it, late: never dropped).  And
# (l2) the LIMIT the scan sees: its rounds and their beams, from the DEBUG1
# lines, for LIMIT, a funnel, OFFSET, LIMIT $1, a cursor, LATERAL rescans,
# the measured default, and after a query that failed.  Last, a 200-row
# build's measure, and 40 as a floor under it once inserts grew the index
# five-fold; a LIMIT over a Merge Append of partitions' scans; VACUUM's new
# measure once every row has been replaced in place; and an index built
# empty, filled by inserts, that autovacuum measures (its scans then use the
# measure).
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

# LIMIT $MANY for every query, with $filter (a WHERE clause or '') and
# matryoshka.ef_search $ef (undef: the default): every query gets $MANY
# distinct rows, at most a share $late_share of them after a farther row,
# and recall@$MANY is at least 0.9
sub many_rows
{
	my ($name, $op, $filter, $late_share, $ef) = @_;
	my $what = ($filter ? "$name, $filter" : $name) . (defined $ef ? ", ef_search $ef" : '');
	my $setting = defined $ef ? ef_search_sql($ef) : '';
	my $many = "SELECT qid, array(SELECT id FROM items $filter ORDER BY v $op q LIMIT $MANY) AS ids FROM queries";
	my $exact_many = 'exact_many';

	$node->safe_psql('postgres',
		"DROP TABLE IF EXISTS $exact_many;\n" . exact_answers_sql($exact_many, $many));
	my ($full, $late) = split /\|/, $node->safe_psql(
		'postgres', qq{$setting
SELECT count(*) FILTER (WHERE rows = $MANY AND distinct_rows = $MANY), sum(late)
FROM queries, LATERAL (
	SELECT count(*) AS rows, count(DISTINCT id) AS distinct_rows,
		   count(*) FILTER (WHERE d < prev) AS late
	FROM (SELECT id, d, lag(d, 1, '-Infinity') OVER (ORDER BY n) AS prev
		  FROM (SELECT id, v $op q AS d, row_number() OVER () AS n
				FROM (SELECT id, v FROM items $filter ORDER BY v $op q LIMIT $MANY) s) t) u) r;
});
	is($full, $QUERIES,
		"$what: LIMIT $MANY returns $MANY distinct rows for every query");
	note("$what: $late of " . ($QUERIES * $MANY) . " rows came after a farther row");
	cmp_ok($late, '<=', $late_share * $QUERIES * $MANY,
		"$what: at most " . (100 * $late_share) . "% of the rows come out of exact order (got $late)");
	recall_at_least(
		measure_recall($node, knn => $many, k => $MANY, exact => $exact_many, ef_search => $ef),
		0.9,
		"$what: recall\@$MANY");
}

# Run $sql with the DEBUG1 messages sent to the client; returns psql's exit
# status and the messages (errors of $sql are allowed: on_error_stop off)
sub debug_messages
{
	my ($sql) = @_;
	my ($stdout, $stderr);
	my $status = $node->psql('postgres', "SET client_min_messages = debug1;\n$sql",
		stdout => \$stdout, stderr => \$stderr, on_error_stop => 0);
	return ($status, $stderr);
}

# The rounds of the matryoshka scans that $sql runs, from their DEBUG1
# lines, as "round/beam" strings in order
sub rounds
{
	my (undef, $stderr) = debug_messages($_[0]);
	my @rounds;
	push @rounds, "$1/$2"
	  while $stderr =~ /matryoshka scan of "[^"]*": round (\d+), beam (\d+),/g;
	return \@rounds;
}

# How much of its ranking the first round of the statements hands out, from
# the DEBUG1 line: 'whole', 'part' (held back some) or 'none' (no round)
sub first_round_share
{
	my (undef, $stderr) = debug_messages($_[0]);
	return 'none'
	  unless $stderr =~ /round 1, beam \d+, .*?, (\d+) ranked on the full vector, (\d+) handed out,/;
	return $2 == $1 ? 'whole' : 'part';
}

# The LIMIT right above the scan sizes its first round (matryoshka_limit.c)
sub limit_seen
{
	my ($index, $op) = @_;
	my $q = '(SELECT q FROM queries WHERE qid = 1)';
	my $ef = $node->safe_psql('postgres',
		"SELECT default_ef_search FROM hierindex_index_info('$index')");

	is_deeply(rounds("SET matryoshka.ef_search = 10;
SELECT count(*) FROM (SELECT id FROM items ORDER BY v $op $q LIMIT 50) s;"),
		['1/52'], 'ef_search 10, LIMIT 50: one round of 52');
	is_deeply(rounds("SET matryoshka.ef_search = 10; SET matryoshka.funnel = '20';
SELECT count(*) FROM (SELECT id FROM items ORDER BY v $op $q LIMIT 50) s;"),
		['1/52'], 'ef_search 10, funnel 20, LIMIT 50: still one round (the funnel keeps the LIMIT)');
	is_deeply(rounds("SET matryoshka.ef_search = 10;
SELECT count(*) FROM (SELECT id FROM items ORDER BY v $op $q OFFSET 20 LIMIT 10) s;"),
		['1/32'], 'ef_search 10, OFFSET 20 LIMIT 10: one round of 32');
	is_deeply(rounds("SET matryoshka.ef_search = 10; SET plan_cache_mode = force_generic_plan;
PREPARE p(int) AS SELECT count(*) FROM (SELECT id FROM items ORDER BY v $op $q LIMIT \$1) s;
EXECUTE p(100); EXECUTE p(5);"),
		[ '1/102', '1/10' ], 'a generic plan with LIMIT $1: rounds of 102 for 100 rows, 10 (ef_search) for 5');
	is_deeply([ @{ rounds("SET matryoshka.ef_search = 10;
BEGIN; DECLARE c CURSOR FOR SELECT id FROM items ORDER BY v $op $q; FETCH 25 FROM c; COMMIT;") }[0, 1] ],
		[ '1/10', '2/20' ], 'no LIMIT (a cursor): rounds of ef_search, then twice that');
	is_deeply(rounds("SET matryoshka.ef_search = 10;
SELECT count(*) FROM queries, LATERAL (SELECT id FROM items ORDER BY v $op q LIMIT 30) s;"),
		[ ('1/32') x $QUERIES ], "a LATERAL LIMIT 30: one round of 32 in each of $QUERIES rescans");
	my $scaled = $ef * 5 < 1000 ? $ef * 5 : 1000;
	$scaled = 52 if $scaled < 52;
	is_deeply(rounds("SELECT count(*) FROM (SELECT id FROM items ORDER BY v $op $q LIMIT 50) s;"),
		["1/$scaled"], "default ef_search ($ef measured for 10 rows), LIMIT 50: one round of $scaled");
	# the first round goes out whole for an unfiltered LIMIT (the only
	# round), by the release rule under the scan's own filter or a cursor
	is(first_round_share("SET matryoshka.ef_search = 10;
SELECT count(*) FROM (SELECT id FROM items ORDER BY v $op $q LIMIT 50) s;"),
		'whole', 'LIMIT 50: the first round goes out whole');
	is(first_round_share("SET matryoshka.ef_search = 10; SET enable_seqscan = off;
SELECT count(*) FROM (SELECT id FROM items WHERE id % 2 = 0 ORDER BY v $op $q LIMIT 50) s;"),
		'part', 'a filtered LIMIT 50: the first round goes out by the release rule');
	is(first_round_share("SET matryoshka.ef_search = 10;
BEGIN; DECLARE c CURSOR FOR SELECT id FROM items ORDER BY v $op $q; FETCH 25 FROM c; COMMIT;"),
		'part', 'a cursor: the first round goes out by the release rule');
	is_deeply(rounds("SET matryoshka.ef_search = 10;
SELECT id / 0 FROM (SELECT id FROM items ORDER BY v $op $q LIMIT 50) s;
BEGIN; DECLARE c CURSOR FOR SELECT id FROM items ORDER BY v $op $q; FETCH 3 FROM c; COMMIT;
SELECT count(*) FROM (SELECT id FROM items ORDER BY v $op $q LIMIT 40) s;"),
		[ '1/52', '1/10', '1/42' ],
		'after a query that failed, a query without LIMIT gets none and the next its own');
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

	recall_at_least(measure_recall($node, knn => $knn, k => $K, exact => $exact), $MIN_RECALL,
		"$name: recall\@$K at the default settings");

	every_query_returns($node, $knn, $K, "$name: every query returns $K distinct rows");

	hierindex_check_is_clean($node, $index, "$name: hierindex_check finds no problem");
	is( $node->safe_psql(
			'postgres',
			"SELECT dimensions, elements, heap_tids, granularities "
			  . "FROM hierindex_index_info('$index')"),
		"64|$ROWS|$ROWS|{64,$DIM}",
		"$name: hierindex_index_info shows $ROWS elements on a 64-d coarse prefix");

	if ($name eq 'l2' || $name eq 'cosine')
	{
		# a LIMIT beyond ef_search: the scan sees it and answers in one
		# round, every row in exact order
		many_rows($name, $op, '', 0);
		# half the rows filtered out by the scan node's own filter, whose
		# first round is then LIMIT + 2 wide (ef_search 10): later rounds,
		# where rows found late come out of order, never dropped
		many_rows($name, $op, 'WHERE id % 2 = 0', 0.01, 10);
	}
	limit_seen($index, $op) if $name eq 'l2';

	$node->safe_psql('postgres', "DROP INDEX $index");
}

# The measure of a small build counts only as a floor once inserts have
# grown the index past four times what was measured
{
	my $q = '(SELECT q FROM queries WHERE qid = 1)';
	$node->safe_psql('postgres', qq{
CREATE TABLE grow AS SELECT * FROM items WHERE id <= 200;
CREATE INDEX grow_idx ON grow USING matryoshka (v vector_l2_ops);});
	my $measured = $node->safe_psql('postgres',
		"SELECT default_ef_search FROM hierindex_index_info('grow_idx')");
	my $query = "SET enable_seqscan = off;
SELECT count(*) FROM (SELECT id FROM grow ORDER BY v <-> $q LIMIT 5) s;";
	is_deeply(rounds($query), ["1/$measured"],
		"a 200-row build: its measured default ef_search $measured");
	$node->safe_psql('postgres', 'INSERT INTO grow SELECT * FROM items WHERE id > 200 AND id <= 1000');
	my $floor = $measured > 40 ? $measured : 40;
	is_deeply(rounds($query), ["1/$floor"],
		"grown to 1000 rows: at least 40 (got a first round of $floor)");
	$node->safe_psql('postgres', 'DROP TABLE grow');
}

# A LIMIT over a Merge Append of matryoshka scans (a partitioned table)
# reaches the scan of each partition: one round of LIMIT + 2 each
{
	$node->safe_psql('postgres', qq{
CREATE TABLE parted (id int, v vector($DIM)) PARTITION BY RANGE (id);
CREATE TABLE parted_a PARTITION OF parted FOR VALUES FROM (MINVALUE) TO (5001);
CREATE TABLE parted_b PARTITION OF parted FOR VALUES FROM (5001) TO (MAXVALUE);
INSERT INTO parted SELECT * FROM items;
CREATE INDEX parted_idx ON parted USING matryoshka (v vector_l2_ops);
ANALYZE parted;});
	my $query = "SET matryoshka.ef_search = 10; SET enable_seqscan = off;
SELECT count(*) FROM (SELECT id FROM parted ORDER BY v <-> (SELECT q FROM queries WHERE qid = 1) LIMIT 50) s;";
	like($node->safe_psql('postgres', "SET enable_seqscan = off; EXPLAIN (COSTS OFF)
SELECT id FROM parted ORDER BY v <-> (SELECT q FROM queries WHERE qid = 1) LIMIT 50"),
		qr/Merge Append/, 'a partitioned table: a Merge Append of the partitions\' scans');
	is_deeply(rounds($query), [ '1/52', '1/52' ],
		'a LIMIT 50 over a Merge Append of two partitions: one round of 52 in each');
	$node->safe_psql('postgres', 'DROP TABLE parted');
}

# VACUUM measures an index again once as many rows have come in since its
# measure as it had then, even when they took the slots of the rows they
# replaced (every row updated, in two halves with a VACUUM between, so the
# index keeps its size): the data may have changed in place
{
	$node->safe_psql('postgres', qq{
CREATE TABLE churn (id int, v vector($DIM)) WITH (autovacuum_enabled = off);
INSERT INTO churn SELECT * FROM items WHERE id <= 2000;
CREATE INDEX churn_idx ON churn USING matryoshka (v vector_l2_ops);});
	my $measured = sub {
		my ($status, $stderr) = debug_messages('VACUUM churn;');
		return "VACUUM failed: $stderr" if $status != 0 || $stderr =~ /ERROR/;
		return $stderr =~ /matryoshka vacuum of index "churn_idx": default ef_search [1-9]/ ? 1 : 0;
	};
	my $replace = sub {
		$node->safe_psql('postgres', "UPDATE churn c SET v = i.v FROM items i
WHERE i.id = c.id + 2000 AND c.id $_[0]");
	};
	is($measured->(), 0, 'VACUUM of an index as it was built: no measure');
	$replace->('<= 1000');
	is($measured->(), 0, 'half of its rows replaced: no measure');
	$replace->('> 1000');
	my $elements = $node->safe_psql('postgres',
		"SELECT elements FROM hierindex_index_info('churn_idx')");
	cmp_ok($elements, '<', 4000, "the index kept its size ($elements elements)");
	is($measured->(), 1, 'every row replaced: VACUUM measures again');
	is($measured->(), 0, 'and not again without new rows');
	$node->safe_psql('postgres', 'DROP TABLE churn');
}

# Autovacuum measures an index built empty once inserts have filled it
# (autovacuum visits a table that only receives inserts), without anyone
# asking; the scans then use the measure
{
	$node->safe_psql('postgres', 'ALTER SYSTEM SET autovacuum_naptime = 1');
	$node->reload;
	$node->safe_psql('postgres', qq{
CREATE TABLE filled (id int, v vector($DIM))
	WITH (autovacuum_vacuum_insert_threshold = 500, autovacuum_vacuum_insert_scale_factor = 0);
CREATE INDEX filled_idx ON filled USING matryoshka (v vector_l2_ops);
INSERT INTO filled SELECT * FROM items WHERE id <= 2000;});
	ok( $node->poll_query_until(
			'postgres',
			"SELECT measured_elements FROM hierindex_index_info('filled_idx')", '2000'),
		'autovacuum measured an index built empty and filled by 2000 inserts');
	my $measured = $node->safe_psql('postgres',
		"SELECT default_ef_search FROM hierindex_index_info('filled_idx')");
	is_deeply(
		rounds("SET enable_seqscan = off;
SELECT count(*) FROM (SELECT id FROM filled ORDER BY v <-> (SELECT q FROM queries WHERE qid = 1) LIMIT 5) s;"),
		["1/$measured"], "its scans use the measure ($measured)");
	$node->safe_psql('postgres', 'DROP TABLE filled; ALTER SYSTEM RESET autovacuum_naptime');
	$node->reload;
}

$node->stop;
done_testing();
