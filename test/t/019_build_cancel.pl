# 019_build_cancel.pl — a bulk build can be canceled or terminated while it
# links the graph, and nothing is left behind.
#
# The linking runs on OpenMP threads with every signal blocked, and the
# backend checks for interrupts between chunks of about 0.15 s (and between
# batches of pages while writing).  For hnsw and matryoshka, a CREATE INDEX
# on one thread with m = 100 and ef_construction = 1000 (about 7 s of
# linking on 12000 64-d vectors here) is started in the background and, once
# pg_stat_progress_create_index shows it building the graph and unfinished
# (the same build uninterrupted is timed first: the statement must end
# within a quarter of that after the signal, so a signal that waited for the
# linking to finish fails the test):
#
#   * pg_cancel_backend: the statement must fail with the cancel ERROR,
#     leave no index (no pg_class row), and its session must go on (a query
#     on the same connection answers);
#   * pg_terminate_backend: the connection must end with the termination
#     FATAL, and the server must not have restarted (same
#     pg_postmaster_start_time, no "terminated by signal" in its log): a
#     backend exiting with threads still linking would otherwise crash;
#
# and afterwards a plain CREATE INDEX must succeed with one element per row
# and a clean hierindex_check.
#
# Run like the other TAP tests (see 001_binary_copy.pl).

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use HierindexTest;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);

my $DIM = 64;
my $ROWS = 12000;
my $SLOW_OPTIONS = 'm = 100, ef_construction = 1000';

my $node = start_hierindex_node('build_cancel',
	conf => qq{maintenance_work_mem = '256MB'
wal_level = replica
max_wal_senders = 0
max_parallel_maintenance_workers = 0
});
$node->safe_psql('postgres',
	clustered_centres_sql(0.19, $DIM)
	  . items_and_queries_sql(dim => $DIM, rows => $ROWS, queries => 1));
my $started_at = $node->safe_psql('postgres', 'SELECT pg_postmaster_start_time()');

# The backend building an index, once it is linking and not done:
# (pid, tuples_done, tuples_total), or () after 60 s.
sub wait_for_linking
{
	for (my $i = 0; $i < 3000; $i++)
	{
		my $row = $node->safe_psql('postgres',
			"SELECT pid || '|' || tuples_done || '|' || tuples_total FROM pg_stat_progress_create_index "
			  . "WHERE phase = 'building index: building graph'");
		return split /\|/, $row if $row ne '';
		usleep(20_000);
	}
	return ();
}

# Start the slow build of $am in a psql that first prints its pid and, after
# the CREATE INDEX, runs one more query (which must answer if the session
# survives a cancel).
sub start_slow_build
{
	my ($am, $out, $err) = @_;
	my $sql = "SELECT 'survived' AS after_build;";
	my $create = "CREATE INDEX items_slow ON items USING $am (v vector_l2_ops) "
	  . index_options_sql($am, $DIM, $SLOW_OPTIONS) . ';';
	local $ENV{PGOPTIONS} = '-c hierindex.build_threads=1';
	return IPC::Run::start(
		[ 'psql', '-X', '-At', '-d', $node->connstr('postgres'), '-c', $create, '-c', $sql ],
		'>', $out, '2>', $err);
}

# The slow build of hnsw, uninterrupted: what a signal must cut short.
my $full_started = time();
$node->safe_psql('postgres',
	"SET hierindex.build_threads = 1; CREATE INDEX items_slow ON items USING hnsw (v vector_l2_ops) "
	  . index_options_sql('hnsw', $DIM, $SLOW_OPTIONS));
my $full_seconds = time() - $full_started;
$node->safe_psql('postgres', 'DROP INDEX items_slow');
my $bound = $full_seconds / 4;
note(sprintf('the slow build takes %.2f s uninterrupted; a signal must end it within %.2f s',
	$full_seconds, $bound));

for my $am (access_methods())
{
	for my $how ('cancel', 'terminate')
	{
		my ($out, $err) = ('', '');
		my $build = start_slow_build($am, \$out, \$err);
		my ($pid, $done, $total) = wait_for_linking();

		ok(defined $pid, "$am, $how: the build reached the linking phase");
		cmp_ok($done // 0, '<', $total // 0, "$am, $how: its graph was unfinished ($done of $total)");
		my $sent = time();
		is($node->safe_psql('postgres', "SELECT pg_${how}_backend($pid)"),
			't', "$am, $how: the signal was sent");
		$build->finish;
		my $seconds = time() - $sent;
		cmp_ok($seconds, '<', $bound,
			sprintf('%s, %s: the build ended %.2f s after the signal (a quarter of an uninterrupted build: %.2f s)',
				$am, $how, $seconds, $bound));
		if ($how eq 'cancel')
		{
			like($err, qr/ERROR:  canceling statement due to user request/,
				"$am, cancel: the build failed with the cancel ERROR");
			like($out, qr/^survived$/m, "$am, cancel: the session answered its next query");
		}
		else
		{
			like($err, qr/terminating connection due to administrator command/,
				"$am, terminate: the connection ended with the termination FATAL");
			unlike($out, qr/survived/, "$am, terminate: the session ran nothing after it");
		}
		is($node->safe_psql('postgres', "SELECT count(*) FROM pg_class WHERE relname = 'items_slow'"),
			'0', "$am, $how: no index is left");
		is($node->safe_psql('postgres', 'SELECT pg_postmaster_start_time()'),
			$started_at, "$am, $how: the server did not restart");
	}

	ok(!$node->log_contains(qr/terminated by signal/),
		"$am: no server process died of a signal");
	build_is_whole($node, $am, 'items_after', $DIM, "$am, after the signals");
	$node->safe_psql('postgres', 'DROP INDEX items_after');
}

$node->stop;
done_testing();
