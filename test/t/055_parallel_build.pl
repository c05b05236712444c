# 055_parallel_build.pl — the load phase of a bulk build with parallel
# workers gives the same index contents as the serial load, for hnsw and
# matryoshka.
#
# The table: 6000 clustered 64-d vectors (HierindexTest's data), then 300
# rows repeating the vectors of rows 1..300, 40 NULLs, and 20 zero vectors
# (not indexed under cosine).  min_parallel_table_scan_size = 0 lets the
# planner give the small table workers.  For each access method and the l2
# and cosine operator classes, the index is built with
# max_parallel_maintenance_workers 0 and 2; the build's DEBUG1 line must
# say how many workers loaded it (0, then 2), and both builds must hold one
# element per distinct indexed vector and one heap TID per indexed row (as
# counted by SQL), pass hierindex_check, and reach recall@10 >= 0.95 against
# the exact answers of a sequential scan (each value is printed).  A
# CREATE INDEX CONCURRENTLY with workers (the MVCC-snapshot path) must hold
# the same.
#
# Crash: an hnsw and a matryoshka index built with workers, then an
# immediate shutdown; after recovery (from the builds' WAL alone) both hold
# the same elements, heap TIDs and pages and pass hierindex_check.  The
# buffer pool is 4 MB, so that these builds are large next to it and the
# bulk writer maps the pool's pages first (its DEBUG1 line must count
# them, unless the kernel lacks MADV_POPULATE_WRITE): what is written
# through those mappings must be what is logged.
#
# maintenance_work_mem = 1MB with workers (table option parallel_workers):
# the spool fallback, every indexed row in the index.
#
# A build under the smallest buffer pool (16 buffers) is whole.
#
# Errors: rows of 63 dimensions at the end of a table indexed through the
# expression v::vector(64) make the build fail with that ERROR and leave no
# index; an index expression that fails in every process but the leader
# (its pid is written into the function) makes the build fail with the
# worker's ERROR, reported with its parallel worker context, and leave no
# index.
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

my $ROWS = 6000;
my $DUPLICATES = 300;
my $NULLS = 40;
my $ZEROS = 20;
my $QUERIES = 50;
my $DIM = 64;
my $K = 10;
my $MIN_RECALL = 0.95;

my $node = start_hierindex_node('parallel_build',
	conf => qq{maintenance_work_mem = '256MB'
shared_buffers = '4MB'
wal_level = replica
max_wal_senders = 0
min_parallel_table_scan_size = 0
max_worker_processes = 8
max_parallel_workers = 8
});

$node->safe_psql(
	'postgres',
	clustered_centres_sql(0.55, $DIM)
	  . items_and_queries_sql(dim => $DIM, rows => $ROWS, queries => $QUERIES)
	  . qq{ALTER TABLE items ALTER COLUMN id DROP NOT NULL;
INSERT INTO items SELECT id + 100000, v FROM items WHERE id <= $DUPLICATES;
INSERT INTO items SELECT 200000 + i, NULL FROM generate_series(1, $NULLS) i;
INSERT INTO items SELECT 300000 + i, array_fill(0::real, ARRAY[$DIM])::vector($DIM)
	FROM generate_series(1, $ZEROS) i;
ANALYZE items; ANALYZE queries;
ALTER DATABASE postgres SET matryoshka.ef_search = 100;});

# what each operator class must index: distinct vectors and rows
my %expected = (
	l2 => $node->safe_psql('postgres',
		'SELECT count(DISTINCT v), count(v) FROM items'),
	cosine => $node->safe_psql('postgres',
		"SELECT count(DISTINCT v), count(v) FROM items WHERE v <> array_fill(0::real, ARRAY[$DIM])::vector($DIM)"));
is($expected{l2}, ($ROWS + 1) . '|' . ($ROWS + $DUPLICATES + $ZEROS),
	'l2 indexes the distinct vectors (the zero vector among them) and every non-NULL row');
is($expected{cosine}, "$ROWS|" . ($ROWS + $DUPLICATES),
	'cosine indexes the same without the zero vectors');

# Run a CREATE INDEX with max_parallel_maintenance_workers = $workers and
# DEBUG1 messages on; returns the number of workers the build's DEBUG1 line
# says loaded the rows (undef when there is no such line).  The build's
# messages stay in $build_messages.
my $build_messages;

sub build_index
{
	my ($sql, $workers) = @_;
	my ($stdout, $stderr);
	$node->psql(
		'postgres', qq{SET max_parallel_maintenance_workers = $workers;
SET client_min_messages = debug1;
$sql;},
		stdout => \$stdout,
		stderr => \$stderr,
		on_error_die => 1);
	$build_messages = $stderr;
	return $stderr =~ /build of "[^"]+": loaded \d+ rows into \d+ elements in [0-9.]+ s with (\d+) parallel workers/
	  ? $1
	  : undef;
}

for my $case (
	[ 'hnsw', 'l2', 'vector_l2_ops', '<->', '' ],
	[ 'hnsw', 'cosine', 'vector_cosine_ops', '<=>', '' ],
	[ 'matryoshka', 'l2', 'vector_l2_ops', '<->', "WITH (granularities = '32,$DIM')" ],
	[ 'matryoshka', 'cosine', 'vector_cosine_ops', '<=>', "WITH (granularities = '32,$DIM')" ])
{
	my ($am, $name, $opclass, $op, $with) = @$case;
	my $knn = knn_sql($op, $K);
	my $exact = "exact_$name";

	$node->safe_psql('postgres', exact_answers_sql($exact, $knn));
	for my $workers (0, 2)
	{
		my $what = "$am $name, max_parallel_maintenance_workers $workers";
		my $index = "items_${am}_${name}_$workers";

		is(build_index("CREATE INDEX $index ON items USING $am (v $opclass) $with", $workers),
			$workers, "$what: the load ran with $workers parallel workers");
		is( $node->safe_psql('postgres',
				"SELECT elements, heap_tids FROM hierindex_index_info('$index')"),
			$expected{$name},
			"$what: one element per distinct indexed vector, one heap TID per indexed row");
		hierindex_check_is_clean($node, $index, "$what: hierindex_check finds no problem");
		recall_at_least(
			measure_recall($node, knn => $knn, k => $K, exact => $exact, ef_search => 100),
			$MIN_RECALL, "$what: recall\@$K");
		$node->safe_psql('postgres', "DROP INDEX $index");
	}
}

# A bulk build's WAL alone restores its index: builds with workers, an
# immediate shutdown right after (no checkpoint in between, so the pages
# never reached the disk otherwise), recovery.  wal_level is replica: under
# minimal a new index is synced at commit instead of logged.
my %built;
for my $am ('hnsw', 'matryoshka')
{
	my $with = $am eq 'matryoshka' ? "WITH (granularities = '32,$DIM')" : '';

	is(build_index("CREATE INDEX items_logged_$am ON items USING $am (v) $with", 2),
		2, "$am, before a crash: the load ran with 2 parallel workers");
	SKIP:
	{
		skip "$am: this kernel has no MADV_POPULATE_WRITE (Linux 5.14)", 1
		  if $build_messages =~ /buffer pool: not mapped \(no MADV_POPULATE_WRITE/;
		my ($mapped) = $build_messages =~ /buffer pool: (\d+) pages mapped/;
		ok(defined $mapped && $mapped > 0,
			"$am, before a crash: the bulk writer mapped the buffer pool first ("
			  . ($mapped // 'no DEBUG1 line') . " pages)");
	}
	$built{$am} = $node->safe_psql('postgres',
		"SELECT elements, heap_tids, pages FROM hierindex_index_info('items_logged_$am')");
}
$node->stop('immediate');
$node->start;
for my $am ('hnsw', 'matryoshka')
{
	is( $node->safe_psql('postgres',
			"SELECT elements, heap_tids, pages FROM hierindex_index_info('items_logged_$am')"),
		$built{$am}, "$am: after crash recovery the same elements, rows and pages");
	hierindex_check_is_clean($node, "items_logged_$am",
		"$am: hierindex_check finds no problem after crash recovery");
	$node->safe_psql('postgres', "DROP INDEX items_logged_$am");
}

# CREATE INDEX CONCURRENTLY: workers scan under the leader's MVCC snapshot
is( build_index('CREATE INDEX CONCURRENTLY items_concurrent ON items USING hnsw (v)', 2),
	2, 'CREATE INDEX CONCURRENTLY: the load ran with 2 parallel workers');
is( $node->safe_psql('postgres',
		"SELECT elements, heap_tids FROM hierindex_index_info('items_concurrent')"),
	$expected{l2},
	'CREATE INDEX CONCURRENTLY with workers: the same elements and heap TIDs');
hierindex_check_is_clean($node, 'items_concurrent',
	'CREATE INDEX CONCURRENTLY with workers: hierindex_check finds no problem');
$node->safe_psql('postgres', 'DROP INDEX items_concurrent');

# maintenance_work_mem too small for the graph, with workers (the table's
# parallel_workers, which the planner takes whatever the memory): the rows
# that do not fit are spooled by the leader and inserted one by one
$node->safe_psql('postgres', 'ALTER TABLE items SET (parallel_workers = 2)');
is( build_index(
		"SET maintenance_work_mem = '1MB'; CREATE INDEX items_spooled ON items USING hnsw (v)", 2),
	2, 'maintenance_work_mem 1MB: the load ran with 2 parallel workers');
is( $node->safe_psql('postgres',
		"SELECT heap_tids FROM hierindex_index_info('items_spooled')"),
	(split /\|/, $expected{l2})[1],
	'maintenance_work_mem 1MB with workers: every indexed row is in the index');
hierindex_check_after_inserts($node, 'items_spooled', 'maintenance_work_mem 1MB with workers');
$node->safe_psql('postgres',
	'DROP INDEX items_spooled; ALTER TABLE items RESET (parallel_workers)');

# ---------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------
$node->safe_psql(
	'postgres', qq{CREATE TABLE loose (id int, v vector);
INSERT INTO loose SELECT id, v FROM items WHERE id <= $ROWS ORDER BY id;
INSERT INTO loose SELECT 400000 + i, array_fill(1::real, ARRAY[@{[ $DIM - 1 ]}])::vector
	FROM generate_series(1, 5) i;
ANALYZE loose;});

for my $am ('hnsw', 'matryoshka')
{
	my ($ret, $stdout, $stderr) = $node->psql(
		'postgres', qq{SET max_parallel_maintenance_workers = 2;
CREATE INDEX loose_$am ON loose USING $am ((v::vector($DIM)));});
	isnt($ret, 0, "$am: a build over rows of the wrong dimension fails");
	like($stderr, qr/ERROR:  expected $DIM dimensions, not @{[ $DIM - 1 ]}/,
		"$am: the build reports the dimension mismatch as its ERROR");
	is($node->safe_psql('postgres', "SELECT count(*) FROM pg_class WHERE relname = 'loose_$am'"),
		'0', "$am: the failed build leaves no index");
}

# An ERROR raised in a worker, and only there: the function fails in every
# backend but the one that creates it, which then runs the CREATE INDEX
# (and is slowed down so that the workers surely get rows).
for my $am ('hnsw', 'matryoshka')
{
	my ($ret, $stdout, $stderr) = $node->psql(
		'postgres', qq{SET max_parallel_maintenance_workers = 2;
DO \$do\$ BEGIN EXECUTE format(\$f\$
CREATE OR REPLACE FUNCTION leader_only(x vector) RETURNS vector
IMMUTABLE PARALLEL SAFE LANGUAGE plpgsql AS \$body\$
BEGIN
	IF pg_backend_pid() <> %s THEN
		RAISE EXCEPTION 'row prepared outside the leader';
	END IF;
	PERFORM pg_sleep(0.001);
	RETURN x;
END \$body\$\$f\$, pg_backend_pid()); END \$do\$;
CREATE INDEX leader_only_$am ON loose USING $am ((leader_only(v)::vector($DIM)))
	WHERE id <= $ROWS;});
	isnt($ret, 0, "$am: a build whose worker fails fails");
	like($stderr, qr/ERROR:  row prepared outside the leader/,
		"$am: the worker's ERROR is the build's ERROR");
	like($stderr, qr/CONTEXT:.*parallel worker/s,
		"$am: the ERROR comes from a parallel worker");
	is( $node->safe_psql('postgres',
			"SELECT count(*) FROM pg_class WHERE relname = 'leader_only_$am'"),
		'0', "$am: the failed parallel build leaves no index");
}

# The smallest buffer pool the server accepts (16 buffers): the bulk writer
# holds no more new pages than it can spare, and the builds (hundreds of
# pages each) come out whole.
$node->append_conf('postgresql.conf', "shared_buffers = '128kB'");
$node->restart;
for my $am ('hnsw', 'matryoshka')
{
	my $with = $am eq 'matryoshka' ? "WITH (granularities = '32,$DIM')" : '';

	build_index("CREATE INDEX items_small_pool_$am ON items USING $am (v) $with", 0);
	cmp_ok($node->safe_psql('postgres',
			"SELECT pages FROM hierindex_index_info('items_small_pool_$am')"),
		'>', 100, "$am, 16 shared buffers: the index has more than 100 pages");
	hierindex_check_is_clean($node, "items_small_pool_$am",
		"$am, 16 shared buffers: hierindex_check finds no problem");
}

$node->stop;
done_testing();
