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
# 3. A CREATE INDEX of a slow graph (m = 100, ef_construction = 1000, one
#    build thread: seconds) killed -9 once pg_stat_progress_create_index
#    shows it building the graph.  After restart the index is absent (the
#    CREATE INDEX never committed: no pg_class row), the table's other
#    indexes answer with recall@10 >= 0.95, and a new CREATE INDEX succeeds
#    and passes hierindex_check with one element per row.
# 4. Half the rows deleted, then a VACUUM slowed by cost-based delay killed
#    -9 while pg_stat_progress_vacuum shows it vacuuming indexes, once
#    items_l2 shows every dead row's element deleted and not all of them
#    freed (its phase 1 done, phase 4 not: the graph repair is under way).
#    After restart: items_l2 still has deleted elements that are not free
#    (the crash did interrupt its VACUUM); hierindex_check finds no problem
#    but links to deleted elements (what an interrupted VACUUM leaves, by
#    design: scans walk through deleted elements, the next VACUUM repairs
#    and frees them) and at most 0.2% unreachable elements; every remaining
#    row is found first by its own vector, recall@10 >= 0.95 (at ef_search
#    200: see there); a second
#    VACUUM completes, after which every deleted element is free, the index
#    holds one heap TID per row, hierindex_check is clean (as after
#    inserts) and recall@10 >= 0.95.
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
my $PROGRESS_WAIT = 30;

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

# Runs $sql on the node every 20 ms until its output matches $pattern (at
# most $PROGRESS_WAIT s); returns the last output.
sub wait_for_output
{
	my ($sql, $pattern) = @_;
	my $output = '';
	my $deadline = time() + $PROGRESS_WAIT;
	while (time() < $deadline)
	{
		$output = $node->safe_psql('postgres', $sql);
		last if $output =~ $pattern;
		usleep(20_000);
	}
	return $output;
}

# Starts psql -c $statement on the node in the background, with the
# settings $pgoptions (PGOPTIONS); returns the IPC::Run handle.
sub start_statement
{
	my ($statement, $pgoptions, $out, $err) = @_;
	local $ENV{PGOPTIONS} = $pgoptions;
	return IPC::Run::start([ 'psql', '-X', '-d', $node->connstr('postgres'), '-c', $statement ],
		'>', $out, '2>', $err);
}

# kill -9 (crash), then a restart that must run crash recovery (one test)
sub crash_and_recover
{
	my ($when) = @_;
	crash();
	my $log_offset = -s $node->logfile;
	$node->start;
	return ok($node->log_contains(qr/redo starts at/, $log_offset),
		"$when: the restart ran crash recovery");
}

# recall@K at ef_search $ef (default 100) of the index for $op, against a
# sequential scan done now, that is at least $MIN_RECALL (one test; $when
# names the moment).
sub recall_is_good
{
	my ($when, $name, $op, $ef) = @_;
	$ef //= 100;
	my $recall = measure_recall($node, knn => knn_sql($op, $K), k => $K,
		exact => 'exact', ef_search => $ef, compute_exact => 1, temp => 1);
	return recall_at_least($recall, $MIN_RECALL, "$when: $name recall\@$K at ef_search $ef");
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
	crash_and_recover("$am: build then crash");

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
	crash_and_recover("$am: inserts then crash");
	$pgbench->finish;    # its connections are gone: it fails, as it should
	note("pgbench after the crash: " . ((split /\n/, $pgbench_err)[-1] // ''));

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

	# -----------------------------------------------------------------------
	# 3. Crash in the middle of a CREATE INDEX.
	# -----------------------------------------------------------------------
	my $indexes_sql = "SELECT string_agg(indexrelid::regclass::text, ',' ORDER BY indexrelid::regclass::text) "
	  . "FROM pg_index WHERE indrelid = 'items'::regclass";
	my ($build_out, $build_err) = ('', '');
	my $build = start_statement(
		"CREATE INDEX items_killed ON items USING $am (v vector_l2_ops) "
		  . index_options_sql($am, $DIM, 'm = 100, ef_construction = 1000'),
		'-c hierindex.build_threads=1', \$build_out, \$build_err);
	my $progress = wait_for_output(
		"SELECT phase || '|' || tuples_done || '|' || tuples_total FROM pg_stat_progress_create_index",
		qr/^building index: building graph\|/);
	crash_and_recover("$am: CREATE INDEX killed");
	$build->finish;
	like($progress, qr/^building index: building graph\|/,
		"$am: CREATE INDEX killed: it was building the graph ($progress: elements done|total)");
	my ($graph_done, $graph_total) = $progress =~ /\|(\d+)\|(\d+)$/;
	cmp_ok($graph_done // 0, '<', $graph_total // 0,
		"$am: CREATE INDEX killed: its graph was unfinished");
	is($node->safe_psql('postgres', "SELECT count(*) FROM pg_class WHERE relname = 'items_killed'"),
		'0', "$am: CREATE INDEX killed: the index is absent after recovery (no pg_class row)");
	is($node->safe_psql('postgres', $indexes_sql),
		'items_cosine,items_l2', "$am: CREATE INDEX killed: the table has its other indexes");
	recall_is_good("$am: CREATE INDEX killed", 'l2', '<->');
	build_is_whole($node, $am, 'items_rebuilt', $DIM, "$am: CREATE INDEX killed");
	$node->safe_psql('postgres', 'DROP INDEX items_rebuilt');

	# -----------------------------------------------------------------------
	# 4. Crash in the middle of a VACUUM of the indexes.
	# -----------------------------------------------------------------------
	$node->safe_psql('postgres', 'DELETE FROM items WHERE id % 2 = 0');
	$rows = $node->safe_psql('postgres', 'SELECT count(*) FROM items');
	# No VACUUM ran yet: every element has one heap TID, those of the rows
	# deleted now and of the inserts that never committed are dead (an
	# insert the crash cut short may have reached one index and not the
	# other: each has its own count).
	my %dead = map {
		$_ => $node->safe_psql('postgres',
			"SELECT heap_tids - $rows FROM hierindex_index_info('$_')")
	} ('items_l2', 'items_cosine');
	my $dead = $dead{items_l2};
	my ($vacuum_out, $vacuum_err) = ('', '');
	my $vacuum = start_statement('VACUUM items', '-c vacuum_cost_delay=5 -c vacuum_cost_limit=10',
		\$vacuum_out, \$vacuum_err);
	my $vacuum_state = wait_for_output(
		"SELECT p.phase || '|' || i.deleted_elements || '|' || i.free_elements "
		  . "FROM pg_stat_progress_vacuum p, hierindex_index_info('items_l2') i",
		qr/^vacuuming indexes\|$dead\|(?!$dead$)/);
	# What the VACUUM has written so far becomes durable (a commit flushes
	# the WAL up to its own record, after those of the VACUUM), so that the
	# crash leaves the index as it was seen just now, or later.
	$node->safe_psql('postgres', 'SELECT txid_current()');
	crash_and_recover("$am: VACUUM killed");
	$vacuum->finish;
	like($vacuum_state, qr/^vacuuming indexes\|$dead\|\d+$/,
		"$am: VACUUM killed: it was vacuuming indexes, items_l2 with its $dead dead elements deleted "
		  . "(phase|deleted|free: $vacuum_state)");
	my ($deleted_elements, $free_elements) = split /\|/, $node->safe_psql('postgres',
		"SELECT deleted_elements, free_elements FROM hierindex_index_info('items_l2')");
	cmp_ok($free_elements, '<', $deleted_elements,
		"$am: VACUUM killed: items_l2 has deleted elements not yet freed after recovery "
		  . "($free_elements of $deleted_elements free): the crash interrupted its VACUUM");
	for my $index ('items_l2', 'items_cosine')
	{
		hierindex_check_after_inserts($node, $index, "$am: VACUUM killed: hierindex_check($index)",
			also_allowed => 'link to deleted element');
	}
	is(self_found($node, '<->', 'true', 100), "$rows/$rows",
		"$am: VACUUM killed: every remaining row is found first by its own vector");
	# At ef_search 200: with half its elements deleted but still linked,
	# matryoshka's coarse search (on half the dimensions) finds a poorer
	# shortlist, recall@10 0.82-0.92 at ef_search 100 (hnsw 1.0; both 1.0
	# once the second VACUUM below has repaired the graph).
	recall_is_good("$am: VACUUM killed", 'l2', '<->', 200);
	recall_is_good("$am: VACUUM killed", 'cosine', '<=>', 200);

	$node->safe_psql('postgres', 'VACUUM items');
	for my $index ('items_l2', 'items_cosine')
	{
		is( $node->safe_psql('postgres',
				"SELECT free_elements = deleted_elements, heap_tids = $rows, "
				  . "elements = heap_tids + deleted_elements, deleted_elements = $dead{$index} "
				  . "FROM hierindex_index_info('$index')"),
			't|t|t|t',
			"$am: a second VACUUM: $index has its $dead{$index} dead elements deleted and free, one heap TID per row");
		hierindex_check_after_inserts($node, $index,
			"$am: a second VACUUM: hierindex_check($index)");
	}
	recall_is_good("$am: a second VACUUM", 'l2', '<->');

	$node->stop;
}

done_testing();
