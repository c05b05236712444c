# 013_hnsw_crash.pl — hnsw indexes survive kill -9 of the server.
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

use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

my $DIM = 64;
my $K = 10;
my $INITIAL = 3000;
my $MIN_RECALL = 0.95;

my $node = PostgreSQL::Test::Cluster->new('hnsw_crash');
$node->init(allows_streaming => 1);    # wal_level = replica
$node->append_conf(
	'postgresql.conf', q{
autovacuum = off
checkpoint_timeout = '1h'
max_wal_size = '1GB'
});
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION hierindex');

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

sub recall
{
	my ($op) = @_;
	my $knn = "SELECT qid, array(SELECT id FROM items ORDER BY v $op q LIMIT $K) AS ids FROM queries";
	return $node->safe_psql(
		'postgres', qq{
SET enable_indexscan = off;
SET enable_bitmapscan = off;
CREATE TEMP TABLE exact AS $knn;
RESET enable_indexscan;
RESET enable_bitmapscan;
SET hnsw.ef_search = 100;
SELECT avg((SELECT count(*) FROM unnest(a.ids) id WHERE id = ANY (e.ids)))::float8 / $K
FROM ($knn) a JOIN exact e USING (qid);
});
}

# Rows found first when queried with their own vector, out of all rows.
sub self_found
{
	my ($op, $where) = @_;
	return $node->safe_psql(
		'postgres', qq{
SET hnsw.ef_search = 100;
SELECT count(*) FILTER (WHERE (SELECT t2.id FROM items t2 ORDER BY t2.v $op t.v LIMIT 1) = t.id)
	|| '/' || count(*)
FROM items t WHERE $where;
});
}

# ---------------------------------------------------------------------------
# Data: 100 centres in [-1,1]^64, points a centre plus uniform noise in
# [-0.75,0.75] per coordinate.
# ---------------------------------------------------------------------------
$node->safe_psql(
	'postgres', qq{
SELECT setseed(0.61);
CREATE TABLE centres AS
	SELECT c, array_agg(random() * 2 - 1 ORDER BY d) AS x
	FROM generate_series(0, 99) c, generate_series(1, $DIM) d
	GROUP BY c;
CREATE SEQUENCE inserted_ids START 1000001;
CREATE TABLE items (id int NOT NULL, v vector($DIM));
INSERT INTO items
	SELECT i, array_agg((x[d] + 1.5 * (random() - 0.5))::real ORDER BY d)::vector($DIM)
	FROM generate_series(1, $INITIAL) i
		JOIN centres ON c = i % 100,
		generate_series(1, $DIM) d
	GROUP BY i;
CREATE TABLE queries AS
	SELECT q AS qid,
		array_agg((x[d] + 1.5 * (random() - 0.5))::real ORDER BY d)::vector($DIM) AS q
	FROM generate_series(1, 50) q
		JOIN centres ON c = (q * 37) % 100,
		generate_series(1, $DIM) d
	GROUP BY q;
ANALYZE items;
CHECKPOINT;
});

# ---------------------------------------------------------------------------
# 1. Crash right after a committed bulk build.
# ---------------------------------------------------------------------------
$node->safe_psql('postgres',
	'CREATE INDEX items_l2 ON items USING hnsw (v vector_l2_ops); '
	  . 'CREATE INDEX items_cosine ON items USING hnsw (v vector_cosine_ops)');
my $info_sql = "SELECT elements, heap_tids, pages, max_level, entry_point FROM hierindex_index_info('items_l2')";
my $info_before = $node->safe_psql('postgres', $info_sql);
crash();
my $log_offset = -s $node->logfile;
$node->start;
ok($node->log_contains(qr/redo starts at/, $log_offset),
	'build then crash: the restart ran crash recovery');

is($node->safe_psql('postgres', "SELECT indisvalid FROM pg_index WHERE indexrelid = 'items_l2'::regclass"),
	't', 'build then crash: the index is valid after recovery');
is($node->safe_psql('postgres', $info_sql),
	$info_before, 'build then crash: hierindex_index_info as before the crash');
like($info_before, qr/^$INITIAL\|$INITIAL\|/, "build then crash: $INITIAL elements");
for my $index ('items_l2', 'items_cosine')
{
	is($node->safe_psql('postgres', "SELECT * FROM hierindex_check('$index')"),
		'', "build then crash: hierindex_check($index) finds no problem");
}
like(
	$node->safe_psql('postgres',
		"EXPLAIN (COSTS OFF) SELECT id FROM items ORDER BY v <-> (SELECT q FROM queries LIMIT 1) LIMIT $K"),
	qr/Index Scan using items_l2/,
	'build then crash: queries use the index');
for my $case ([ 'l2', '<->' ], [ 'cosine', '<=>' ])
{
	my ($name, $op) = @$case;
	my $recall = recall($op);
	note("build then crash: $name recall\@$K at ef_search 100 = $recall");
	cmp_ok($recall, '>=', $MIN_RECALL,
		"build then crash: $name recall\@$K is at least $MIN_RECALL (got $recall)");
}
is(self_found('<->', 'true'), "$INITIAL/$INITIAL",
	'build then crash: every row is found first by its own vector');

# ---------------------------------------------------------------------------
# 2. Crash during concurrent inserts.
# ---------------------------------------------------------------------------
my $script = $node->basedir . '/insert.sql';
PostgreSQL::Test::Utils::append_to_file(
	$script, q{
\set c random(0, 99)
INSERT INTO items
	SELECT nextval('inserted_ids'),
		array_agg((x[d] + 1.5 * (random() - 0.5))::real ORDER BY d)::vector(64)
	FROM centres, generate_series(1, 64) d
	WHERE c = :c;
});
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
cmp_ok($committed, '>=', 1000, "pgbench committed $committed inserts before the crash");
crash();
$pgbench->finish;    # its connections are gone: it fails, as it should
note("pgbench after the crash: " . ((split /\n/, $pgbench_err)[-1] // ''));
$log_offset = -s $node->logfile;
$node->start;
ok($node->log_contains(qr/redo starts at/, $log_offset),
	'inserts then crash: the restart ran crash recovery');

my $rows = $node->safe_psql('postgres', 'SELECT count(*) FROM items');
cmp_ok($rows, '>=', $INITIAL + $committed,
	"after the crash: every insert seen committed before it is there ($rows rows)");
for my $index ('items_l2', 'items_cosine')
{
	is($node->safe_psql('postgres', "SELECT * FROM hierindex_check('$index')"),
		'', "inserts then crash: hierindex_check($index) finds no problem");
	# Inserts in flight at the crash may have left elements for rows that
	# never committed: the index holds at least every committed row.
	cmp_ok(
		$node->safe_psql('postgres',
			"SELECT heap_tids FROM hierindex_index_info('$index')"),
		'>=', $rows, "inserts then crash: $index holds a heap TID for each of the $rows rows");
}
is(self_found('<->', 'id > 1000000'), ($rows - $INITIAL) . '/' . ($rows - $INITIAL),
	'inserts then crash: every committed insert is found first by its own vector (l2)');
is(self_found('<=>', 'id > 1000000'), ($rows - $INITIAL) . '/' . ($rows - $INITIAL),
	'inserts then crash: every committed insert is found first by its own vector (cosine)');
for my $case ([ 'l2', '<->' ], [ 'cosine', '<=>' ])
{
	my ($name, $op) = @$case;
	my $recall = recall($op);
	note("inserts then crash: $name recall\@$K at ef_search 100 = $recall");
	cmp_ok($recall, '>=', $MIN_RECALL,
		"inserts then crash: $name recall\@$K is at least $MIN_RECALL (got $recall)");
}

# The index goes on working: more inserts, found by their own vectors.
$node->safe_psql(
	'postgres', q{
INSERT INTO items
	SELECT 2000000 + i, array_agg((x[d] + 1.5 * (random() - 0.5))::real ORDER BY d)::vector(64)
	FROM generate_series(1, 200) i JOIN centres ON c = i % 100, generate_series(1, 64) d
	GROUP BY i;
});
is(self_found('<->', 'id > 2000000'), '200/200',
	'after recovery: new inserts are found first by their own vector');
is($node->safe_psql('postgres', "SELECT * FROM hierindex_check('items_l2')"),
	'', 'after recovery and more inserts: hierindex_check finds no problem');

$node->stop;
done_testing();
