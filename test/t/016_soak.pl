# 016_soak.pl — a concurrent soak: every kind of change an index sees in
# production, at once, for each access method (hnsw, and matryoshka on
# granularities 16,24 of 32 dimensions), on a node of its own.
#
# An l2 index on 4000 clustered 32-d vectors, ids 1..4000 (and a btree on
# id, so that a DELETE or UPDATE finds its row at once), then for
# $SOAK_SECONDS s (HIERINDEX_SOAK_SECONDS, default 60 per access method: the
# minute of issue 7 on each)
# pgbench with 4 clients (HierindexTest's concurrent_clients), each
# transaction one of (weights):
#   * INSERT of a new row, the next id (1),
#   * DELETE of a random row (1): the first id from a random one up to the
#     last given, so the table keeps about its size while every slot of the
#     index is freed and reused again and again,
#   * UPDATE of the vector of a random row, drawn so too (1): a new vector of
#     a random centre, so a new element, and the old one dead (the row's id
#     is logged in the table updated),
#   * an index scan query, ORDER BY v <-> q LIMIT 10 (2),
# while another session runs VACUUM items in a loop.  Then:
#   * no error of any kind: pgbench reports 0 failed transactions and
#     nothing on stderr, no VACUUM of the loop fails, and the server log of
#     the soak has no ERROR, FATAL or PANIC and no server process that was
#     terminated;
#   * after one last VACUUM: every element is live or free (VACUUM left
#     none half done), the index holds one heap TID per row, hierindex_check
#     finds no problem at all (the VACUUM's reachability pass leaves no
#     element unreachable), recall@10 at ef_search 200 over 100 queries against a
#     sequential scan is at least 0.95, and every inserted or updated row
#     still there is found first by its (new) vector (ef_search 200).
# The operation counts (transactions of each kind, rows actually deleted
# and updated, VACUUM runs, errors) are printed with diag.
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

my $ROWS = 4000;
my $DIM = 32;
my $K = 10;
my $QUERIES = 100;
# (at ef_search 100 matryoshka's recall on this data is about 0.97, for a
# fresh build as much as after the soak: a bound of 0.95 there would judge
# the data drawn, not the soak)
my $EF_SEARCH = 200;
my $MIN_RECALL = 0.95;
my $SOAK_SECONDS = $ENV{HIERINDEX_SOAK_SECONDS} // 60;
my $CLIENTS = concurrent_clients();

# pgbench on $node with $CLIENTS clients for $SOAK_SECONDS s, one script
# per kind of transaction (name => [weight, text]).  Returns its exit
# status, stdout, stderr, and the transactions each script ran (name =>
# count, from pgbench's per-script report).
sub run_pgbench
{
	my ($node, %scripts) = @_;
	my @names = sort keys %scripts;
	my @files;
	for my $name (@names)
	{
		my $file = $node->basedir . "/016_$name.sql";
		unlink $file;
		append_to_file($file, $scripts{$name}[1]);
		push @files, '--file', "$file\@$scripts{$name}[0]";
	}
	my ($out, $err) = ('', '');
	IPC::Run::run(
		[
			'pgbench', '--no-vacuum', "--client=$CLIENTS", "--jobs=$CLIENTS",
			"--time=$SOAK_SECONDS", @files,
			'--host', $node->host, '--port', $node->port, 'postgres'
		],
		'>', \$out, '2>', \$err);
	my $status = $? >> 8;
	# "SQL script N: <file>" ... " - C transactions (...)", in file order
	my %transactions;
	while ($out =~ /^SQL script \d+: \S+\/016_(\w+)\.sql\n(?:.*\n)*? - (\d+) transactions/mg)
	{
		$transactions{$1} = $2;
	}
	return ($status, $out, $err, \%transactions);
}

for my $am (access_methods())
{
	my $node = start_hierindex_node("${am}_soak", conf => max_connections_conf() . "\nautovacuum = off");

	$node->safe_psql(
		'postgres',
		clustered_centres_sql(0.71, $DIM)
		  . items_and_queries_sql(dim => $DIM, rows => $ROWS, queries => $QUERIES,
			inserted_ids_from => $ROWS + 1)
		  . "CREATE INDEX items_l2 ON items USING $am (v vector_l2_ops) "
		  . index_options_sql($am, $DIM, '') . ";\n"
		  . "CREATE INDEX items_id ON items (id);\n"
		  . "CREATE TABLE updated (id int);\n"
		  . "ANALYZE items;");
	my $query_script = pgbench_query_script($K, $QUERIES);
	like(
		$node->safe_psql('postgres',
			"SET enable_seqscan = off; EXPLAIN (COSTS OFF) "
			  . "SELECT id FROM items ORDER BY v <-> (SELECT q FROM queries WHERE qid = 1) LIMIT $K"),
		qr/Index Scan using items_l2 on items/,
		"$am: the soak's queries use the index");

	# The soak
	my $log_offset = -s $node->logfile;
	my ($vacuum_out, $vacuum_err) = ('', '');
	my $vacuum_loop = start_vacuum_loop($node, $SOAK_SECONDS, \$vacuum_out, \$vacuum_err);
	my $draw_id = "SELECT last_value FROM inserted_ids \\gset\n"
	  . "\\set from random(1, :last_value)\n"
	  . "SELECT coalesce((SELECT id FROM items WHERE id >= :from ORDER BY id LIMIT 1), 0) AS id \\gset\n";
	my ($status, $out, $err, $transactions) = run_pgbench(
		$node,
		insert => [ 1, pgbench_insert_script($DIM, "nextval('inserted_ids')") ],
		delete => [ 1, "${draw_id}DELETE FROM items WHERE id = :id;\n" ],
		update => [ 1, pgbench_update_script($DIM, $draw_id, log_table => 'updated') ],
		select => [ 2, $query_script ]);
	note("pgbench:\n$out");
	$vacuum_loop->finish;

	# No error of any kind
	is($status, 0, "$am: pgbench exits 0");
	is($err, '', "$am: pgbench prints nothing on stderr");
	like($out, qr/^number of failed transactions: 0 /m, "$am: pgbench: no failed transaction");
	for my $kind ('insert', 'delete', 'update', 'select')
	{
		cmp_ok($transactions->{$kind} // 0, '>', 0, "$am: pgbench ran $kind transactions");
	}
	is($vacuum_err, '', "$am: no VACUUM of the loop failed");
	my ($vacuums) = $vacuum_out =~ /vacuums (\d+)/;
	cmp_ok($vacuums // 0, '>', 0, "$am: the VACUUM loop ran");
	my @log_problems = grep { /\b(?:ERROR|FATAL|PANIC)\b|server process .* was terminated/ }
	  split /\n/, slurp_file($node->logfile, $log_offset);
	is(scalar(@log_problems), 0, "$am: the server log of the soak has no error")
	  or diag(join("\n", @log_problems[ 0 .. ($#log_problems < 9 ? $#log_problems : 9) ]));

	# What the soak did
	$node->safe_psql('postgres', 'VACUUM items');
	# (every insert commits: the sequence counts them)
	my ($rows, $inserted, $deleted, $updated) = split /\|/, $node->safe_psql(
		'postgres', qq{SELECT count(*), s.inserted, $ROWS + s.inserted - count(*),
			(SELECT count(*) FROM updated)
		FROM items, (SELECT last_value - $ROWS AS inserted FROM inserted_ids) s
		GROUP BY s.inserted});
	my $info = $node->safe_psql('postgres',
		"SELECT elements, heap_tids, deleted_elements, free_elements FROM hierindex_index_info('items_l2')");
	my ($elements, $heap_tids, $deleted_elements, $free_elements) = split /\|/, $info;
	diag(sprintf(
		"%s: soak of %d s, %d clients: %d inserts, %d deletes (%d rows deleted), "
		  . "%d updates (%d rows updated), %d index selects, %d VACUUM runs; "
		  . "errors: %d failed transactions, %d VACUUM errors, %d server log errors; "
		  . "after a last VACUUM %d rows, index %d elements (%d free), %d heap TIDs",
		$am, $SOAK_SECONDS, $CLIENTS,
		map({ $transactions->{$_} // 0 } 'insert', 'delete'), $deleted,
		$transactions->{update} // 0, $updated, $transactions->{select} // 0, $vacuums // 0,
		$out =~ /^number of failed transactions: (\d+)/m ? $1 : -1,
		$vacuum_err eq '' ? 0 : 1, scalar(@log_problems),
		$rows, $elements, $free_elements, $heap_tids));
	cmp_ok($inserted, '>', 0, "$am: the soak inserted rows ($inserted)");
	cmp_ok($deleted, '>', 0, "$am: the soak deleted rows ($deleted)");
	cmp_ok($updated, '>', 0, "$am: the soak updated rows ($updated)");

	# The index afterwards
	is($heap_tids, $rows, "$am: after the soak and a VACUUM the index holds one heap TID per row");
	is($free_elements, $deleted_elements,
		"$am: after the last VACUUM every deleted element is free (none left half done)");
	is($elements, $heap_tids + $free_elements,
		"$am: every element is live with one row, or free");
	# the last VACUUM ran after every insert: its reachability pass leaves
	# no element unreachable (src/hnsw/README, VACUUM)
	hierindex_check_is_clean($node, 'items_l2', "$am: hierindex_check after the soak and a last VACUUM");
	recall_at_least(
		measure_recall($node, knn => knn_sql('<->', $K), k => $K, exact => 'exact_soak',
			ef_search => $EF_SEARCH, compute_exact => 1, index => 1),
		$MIN_RECALL, "$am: recall\@$K at ef_search $EF_SEARCH after the soak");
	my $changed = $node->safe_psql('postgres',
		"SELECT count(*) FROM items WHERE id > $ROWS OR id IN (SELECT id FROM updated)");
	is(self_found($node, '<->', "t.id > $ROWS OR t.id IN (SELECT id FROM updated)", $EF_SEARCH),
		"$changed/$changed",
		"$am: every row inserted or updated by the soak is found first by its vector");

	$node->stop;
}

done_testing();
