# 050_gpu_build.pl — what a user sees of the builder choice of an hnsw build.
#
# The SQL surface of the GPU build (issue 5): the index option build_device
# and the setting hierindex.build_device pick the builder; a NOTICE names it
# and times each phase whenever a device was asked for or the GPU ran; a CPU
# build under 'auto' stays silent; 'gpu' where it cannot run is an ERROR that
# leaves nothing behind.  Checked here, where pg_regress cannot (the NOTICE
# holds timings, the ERROR's detail depends on the machine):
#
#   * explicit 'cpu' (setting and index option): the NOTICE names the CPU,
#     the thread count of hierindex.build_threads and the seconds of heap
#     scan, linking and page writing;
#   * 'auto' on a small table: no message at all, built on the CPU; with
#     client_min_messages = debug1 the reason is given (too few elements;
#     with gpu_min_rows = 0 the GPU module's reason);
#   * 'gpu': on a machine without a usable GPU (CI) an ERROR with a DETAIL
#     (the reason) and a HINT naming 'cpu'; no index is left, the table and
#     the backend are fine.  Where the GPU is usable (the server itself says
#     so: 'auto' with gpu_min_rows = 0 built on it), the build must instead
#     succeed with the GPU NOTICE and a clean index.
#
# Run like the other TAP tests (see 001_binary_copy.pl).

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use HierindexTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $ROWS = 3000;
my $SECONDS = qr/\d+\.\d\d s/;

my $node = start_hierindex_node('gpu_build');
$node->safe_psql('postgres', qq{
	SELECT setseed(0.25);
	CREATE TABLE items (id int, v vector(8));
	INSERT INTO items
	SELECT i, (SELECT array_agg(random()) FROM generate_series(1, 8) WHERE i > 0)::vector
	FROM generate_series(1, $ROWS) i;
});
my $table_before = $node->safe_psql('postgres', 'SELECT count(*), sum(id), md5(string_agg(v::text, \',\' ORDER BY id)) FROM items');

# Run SQL; returns (exit status, stderr).
sub run_sql
{
	my ($sql) = @_;
	my ($ret, $stdout, $stderr) = $node->psql('postgres', $sql);
	return ($ret, $stderr);
}

sub build_method
{
	my ($index) = @_;
	return $node->safe_psql('postgres', "SELECT build_method FROM hierindex_index_info('$index')");
}

# ---------------------------------------------------------------------------
# explicit 'cpu': the NOTICE
# ---------------------------------------------------------------------------
my ($ret, $stderr) = run_sql(q{
	SET hierindex.build_threads = 2;
	SET hierindex.build_device = 'cpu';
	CREATE INDEX items_cpu_guc ON items USING hnsw (v);
});
is($ret, 0, "build_device 'cpu' (setting) builds");
like($stderr,
	qr/NOTICE:  hnsw index "items_cpu_guc" built on the CPU \(2 threads\): heap scan $SECONDS, linking $SECONDS, page writing $SECONDS$/m,
	"the NOTICE names the CPU builder, its threads and each phase's seconds");
is(scalar(() = $stderr =~ /NOTICE/g), 1, 'exactly one NOTICE');
is(build_method('items_cpu_guc'), 'cpu', 'hierindex_index_info says cpu');

($ret, $stderr) = run_sql(q{
	SET hierindex.build_threads = 1;
	CREATE INDEX items_cpu_opt ON items USING hnsw (v) WITH (build_device = 'cpu');
});
is($ret, 0, "build_device 'cpu' (index option) builds");
like($stderr,
	qr/NOTICE:  hnsw index "items_cpu_opt" built on the CPU \(1 thread\): heap scan $SECONDS, linking $SECONDS, page writing $SECONDS$/m,
	'the index option gives the same NOTICE (1 thread)');

# ---------------------------------------------------------------------------
# 'auto': silent on the CPU; the reason at DEBUG1
# ---------------------------------------------------------------------------
($ret, $stderr) = run_sql('CREATE INDEX items_auto ON items USING hnsw (v)');
is($ret, 0, "'auto' builds");
is($stderr, '', "'auto' on a small table prints nothing");
is(build_method('items_auto'), 'cpu', "'auto' on a small table builds on the CPU");

# 'auto' without a size floor opens the GPU module: where a GPU build can
# run it builds there (and says so in a NOTICE); elsewhere (CI) it builds on
# the CPU and gives the module's reason at DEBUG1, and nothing above.
($ret, $stderr) = run_sql(q{
	SET client_min_messages = debug1;
	SET hierindex.gpu_min_rows = 0;
	CREATE INDEX items_auto_debug ON items USING hnsw (v);
});
is($ret, 0, "'auto' with gpu_min_rows = 0 builds");
my $auto_method = build_method('items_auto_debug');
if ($auto_method eq 'gpu')
{
	like($stderr, qr/NOTICE:  hnsw index "items_auto_debug" built on the GPU/,
		"'auto' on the GPU says so");
}
else
{
	is($auto_method, 'cpu', "'auto' builds on the CPU where no GPU is usable");
	like($stderr,
		qr/DEBUG:  hnsw build of "items_auto_debug" on the CPU: (The GPU module .* is not installed|Could not load the GPU module|The GPU module .* (has ABI version|does not export)|No usable GPU)/,
		'DEBUG1 gives the GPU module\'s reason');
	unlike($stderr, qr/NOTICE|WARNING/, 'and nothing above DEBUG');
}

# ---------------------------------------------------------------------------
# 'gpu'
# ---------------------------------------------------------------------------
($ret, $stderr) = run_sql(q{
	SET hierindex.build_device = 'gpu';
	CREATE INDEX items_gpu ON items USING hnsw (v);
});
# Is a GPU build possible here?  The server's own answer.
my $gpu_usable = $ret == 0;
note($gpu_usable ? 'a GPU build runs here' : 'no GPU build here');
is($gpu_usable ? 'gpu' : 'cpu', $auto_method, "'auto' chose the GPU exactly where 'gpu' can build");
if ($gpu_usable)
{
	is($ret, 0, "'gpu' builds where a GPU is usable");
	like($stderr,
		qr/NOTICE:  hnsw index "items_gpu" built on the GPU \(.+\): heap scan $SECONDS, transfer $SECONDS, kNN graph $SECONDS, pruning $SECONDS, upper layers $SECONDS, connecting $SECONDS, page writing $SECONDS$/m,
		'the NOTICE names the GPU and each phase');
	is(build_method('items_gpu'), 'gpu', 'hierindex_index_info says gpu');
	hierindex_check_is_clean($node, 'items_gpu', 'the GPU-built index is clean');
}
else
{
	isnt($ret, 0, "'gpu' fails where no GPU is usable");
	note($stderr);
	like($stderr,
		qr/ERROR:  cannot build index "items_gpu" on the GPU\nDETAIL:  (The GPU module .* is not installed|Could not load the GPU module|The GPU module .* (has ABI version|does not export)|No usable GPU).*\nHINT:  Set hierindex.build_device to 'cpu' or 'auto' to build it on the CPU\./,
		'the ERROR gives the reason and the way out');
	is($node->safe_psql('postgres', "SELECT count(*) FROM pg_class WHERE relname = 'items_gpu'"),
		'0', 'no index was left behind');

	($ret, $stderr) = run_sql(
		"CREATE INDEX items_gpu_opt ON items USING hnsw (v) WITH (build_device = 'gpu')");
	like($stderr,
		qr/ERROR:  cannot build index "items_gpu_opt" on the GPU\nDETAIL:  \S.*\nHINT:  Set the index option build_device to 'cpu' or 'auto'/,
		'from the index option, the hint names the index option');

	# inside a transaction, the failure rolls back everything it did
	($ret, $stderr) = run_sql(q{
		BEGIN;
		CREATE TABLE items_copy AS SELECT * FROM items;
		CREATE INDEX items_copy_gpu ON items_copy USING hnsw (v) WITH (build_device = 'gpu');
		COMMIT;
	});
	is($node->safe_psql('postgres',
			"SELECT count(*) FROM pg_class WHERE relname IN ('items_copy', 'items_copy_gpu')"),
		'0', 'a failed GPU build in a transaction leaves nothing');
}

is($node->safe_psql('postgres', 'SELECT count(*), sum(id), md5(string_agg(v::text, \',\' ORDER BY id)) FROM items'),
	$table_before, 'the table is unchanged');
is($node->safe_psql('postgres',
		"SELECT string_agg(relname, ',' ORDER BY relname) FROM pg_class WHERE relname LIKE 'items\\_%' AND relkind = 'i'"),
	join(',', sort(qw(items_auto items_auto_debug items_cpu_guc items_cpu_opt),
		$gpu_usable ? ('items_gpu') : ())),
	'exactly the indexes that were built exist');
for my $index (qw(items_cpu_guc items_auto))
{
	hierindex_check_is_clean($node, $index, "$index is clean");
}
is($node->safe_psql('postgres',
		"SET enable_seqscan = off; SELECT id FROM items ORDER BY v <-> (SELECT v FROM items WHERE id = 7) LIMIT 1"),
	'7', 'the indexes answer queries');
unlike(slurp_file($node->logfile), qr/terminated by signal|server process .* was terminated/,
	'no backend crashed');

$node->stop;
done_testing();
