# 013_crash.pl — indexes survive kill -9 of the server, for each access
# method (hnsw, matryoshka), on a node of its own.
#
# wal_level = replica, so that a bulk build is WAL-logged (log_newpage_range)
# rather than synced at commit, and no checkpoint happens between the work
# and the crash: recovery must replay the index from WAL.
#
# 1. A committed CREATE INDEX, then at once kill -9 of the postmaster and all
#    its processes.  After restart the index passes hierindex_check, holds
#    every row, and answers with recall@10 >= 0.95 against a sequential scan.
# 2. pgbench with 2 clients inserting rows one per transaction; once at
#    least 1000 have committed, kill -9 of everything.  After restart:
#    hierindex_check finds no problem, every committed row (every row the
#    heap shows) is found first by its own vector, recall@10 >= 0.95, and
#    inserts and queries go on working.
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
use Time::HiRes qw(usleep);

my $DIM = 64;
my $K = 10;
my $INITIAL = 3000;
my $MIN_RECALL = 0.95;

my $CONF = q{
autovacuum = off
checkpoint_timeout = '1h'
max_wal_size = '1GB'
};
my $node;

# kill -9 of the postmaster and every process it started, all at once (the
# postmaster first, so it cannot react to its children dying), then wait
# until they are all gone.
sub crash
{
	my ($postmaster) =
	  split /\n/, slurp_file($node->data_dir . '/postmaster.pid');
	my @children = split ' ', `ps -o pid= --ppid $postmaster`;
	note("kill -9 of postmaster $postmaster and " . scalar(@children) . " children");
	$node->kill9;
	kill('KILL', @children);
	for my $pid ($postmaster, @children)
	{
		for (1 .. 1000)
		{
			last unless kill(0, $pid);
			usleep(10_000);
		}
	}
}

# recall@K at ef_search 100 of the index for $op, against a sequential scan
# done now, that is at least $MIN_RECALL (one test; $when names the moment).
sub recall_is_good
{
	my ($when, $name, $op) = @_;
	my $recall = measure_recall($node, knn => knn_sql($op, $K), k => $K,
		exact => 'exact', ef_search => 100, compute_exact => 1, temp => 1);
	return recall_at_least($recall, $MIN_RECALL, "$when: $name recall\@$K at ef_search 100");
}

for my $am (access_methods())
{
	$node = start_hierindex_node(
		"${am}_crash",
		init => { allows_streaming => 1 },    # wal_level = replica
		conf => $CONF);

	# -----------------------------------------------------------------------
	# Data: clustered points (see HierindexTest.pm); pgbench's rows get ids from
	# 1000001.
	# -----------------------------------------------------------------------
	$node->safe_psql(
		'postgres',
		clustered_centres_sql(0.61, $DIM)
		  . items_and_queries_sql(dim => $DIM, rows => $INITIAL, queries => 50, inserted_ids_from => 1000001)
		  . 'ANALYZE items; CHECKPOINT;');

	# -----------------------------------------------------------------------
	# 1. Crash right after a committed bulk build.
	# -----------------------------------------------------------------------
	$node->safe_psql('postgres',
		"CREATE INDEX items_l2 ON items USING $am (v vector_l2_ops) "
		  . index_options_sql($am, $DIM, '') . '; '
		  . "CREATE INDEX items_cosine ON items USING $am (v vector_cosine_ops) "
		  . index_options_sql($am, $DIM, ''));
	my $info_sql = "SELECT elements, heap_tids, pages, max_level, entry_point FROM hierindex_index_info('items_l2')";
	my $info_before = $node->safe_psql('postgres', $info_sql);
	crash();
	my $log_offset = -s $node->logfile;
	$node->start;
	ok($node->log_contains(qr/redo starts at/, $log_offset),
		"$am: build then crash: the restart ran crash recovery");

	is($node->safe_psql('postgres', "SELECT indisvalid FROM pg_index WHERE indexrelid = 'items_l2'::regclass"),
		't', "$am: build then crash: the index is valid after recovery");
	is($node->safe_psql('postgres', $info_sql),
		$info_before, "$am: build then crash: hierindex_index_info as before the crash");
	like($info_before, qr/^$INITIAL\|$INITIAL\|/, "$am: build then crash: $INITIAL elements");
	for my $index ('items_l2', 'items_cosine')
	{
		hierindex_check_is_clean($node, $index,
			"$am: build then crash: hierindex_check($index) finds no problem");
	}
	like(
		$node->safe_psql('postgres',
			"EXPLAIN (COSTS OFF) SELECT id FROM items ORDER BY v <-> (SELECT q FROM queries LIMIT 1) LIMIT $K"),
		qr/Index Scan using items_l2/,
		"$am: build then crash: queries use the index");
	recall_is_good("$am: build then crash", 'l2', '<->');
	recall_is_good("$am: build then crash", 'cosine', '<=>');
	is(self_found($node, '<->', 'true', 100), "$INITIAL/$INITIAL",
		"$am: build then crash: every row is found first by its own vector");

	# -----------------------------------------------------------------------
	# 2. Crash during concurrent inserts.
	# -----------------------------------------------------------------------
	my $script = $node->basedir . "/${am}_insert.sql";
	PostgreSQL::Test::Utils::append_to_file(
		$script, pgbench_insert_script($DIM, "nextval('inserted_ids')"));
	my ($pgbench_out, $pgbench_err) = ('', '');
	my $pgbench = IPC::Run::start(
		[
			'pgbench', '--no-vacuum', '--client=2', '--jobs=2', '--time=120',
			'--file', $script,
			'--host', $node->host, '--port', $node->port, 'postgres'
		],
		'>', \$pgbench_out, '2>', \$pgbench_err);

	# Wait for at least 1000 committed inserts (a fresh connection sees them).
	my $committed = 0;
	for (1 .. 600)
	{
		$committed = $node->safe_psql('postgres',
			"SELECT count(*) FROM items WHERE id > 1000000");
		last if $committed >= 1000;
		usleep(100_000);
	}
	cmp_ok($committed, '>=', 1000, "$am: pgbench committed $committed inserts before the crash");
	crash();
	$pgbench->finish;    # its connections are gone: it fails, as it should
	note("pgbench after the crash: " . ((split /\n/, $pgbench_err)[-1] // ''));
	$log_offset = -s $node->logfile;
	$node->start;
	ok($node->log_contains(qr/redo starts at/, $log_offset),
		"$am: inserts then crash: the restart ran crash recovery");

	my $rows = $node->safe_psql('postgres', 'SELECT count(*) FROM items');
	cmp_ok($rows, '>=', $INITIAL + $committed,
		"$am: after the crash: every insert seen committed before it is there ($rows rows)");
	for my $index ('items_l2', 'items_cosine')
	{
		hierindex_check_after_inserts($node, $index,
			"$am: inserts then crash: hierindex_check($index)");
		# Inserts in flight at the crash may have left elements for rows that
		# never committed: the index holds at least every committed row.
		cmp_ok(
			$node->safe_psql('postgres',
				"SELECT heap_tids FROM hierindex_index_info('$index')"),
			'>=', $rows, "$am: inserts then crash: $index holds a heap TID for each of the $rows rows");
	}
	is(self_found($node, '<->', 'id > 1000000', 100), ($rows - $INITIAL) . '/' . ($rows - $INITIAL),
		"$am: inserts then crash: every committed insert is found first by its own vector (l2)");
	is(self_found($node, '<=>', 'id > 1000000', 100), ($rows - $INITIAL) . '/' . ($rows - $INITIAL),
		"$am: inserts then crash: every committed insert is found first by its own vector (cosine)");
	recall_is_good("$am: inserts then crash", 'l2', '<->');
	recall_is_good("$am: inserts then crash", 'cosine', '<=>');

	# The index goes on working: more inserts, found by their own vectors.
	$node->safe_psql(
		'postgres', 'INSERT INTO items '
		  . clustered_points_sql(dim => $DIM, series => 'generate_series(1, 200)', id => '2000000 + i'));
	is(self_found($node, '<->', 'id > 2000000', 100), '200/200',
		"$am: after recovery: new inserts are found first by their own vector");
	hierindex_check_after_inserts($node, 'items_l2',
		"$am: after recovery and more inserts: hierindex_check");

	$node->stop;
}

done_testing();
