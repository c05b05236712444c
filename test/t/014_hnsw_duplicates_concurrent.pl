# 014_hnsw_duplicates_concurrent.pl — concurrent inserts of a few vectors,
# each repeated many times, into a live hnsw index.
#
# pgbench with 4 clients (HierindexTest's concurrent_clients) inserts 1000
# rows each, each row one of 5 distinct vectors
# (chosen at random), into a table whose index was built on 3 rows.  The
# inserts race to add heap TIDs to the same elements, their inline slots and
# their heap-TID overflow chains (README "duplicates").  Afterwards:
#   * hierindex_check finds no problem;
#   * the index holds exactly one heap TID per row, in at most a handful of
#     elements (one per vector, plus the rare element two inserts of a vector
#     new to the index both create);
#   * every row of every vector comes back from a scan from that vector.

use strict;
use warnings;

use FindBin;
use lib $FindBin::RealBin;
use HierindexTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $CLIENTS = concurrent_clients();
my $PER_CLIENT = 1000;
my $INSERTED = $CLIENTS * $PER_CLIENT;
my $TOTAL = $INSERTED + 3;

my $node = PostgreSQL::Test::Cluster->new('hnsw_duplicates');
$node->init;
$node->append_conf('postgresql.conf', max_connections_conf());
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION hierindex');
$node->safe_psql(
	'postgres', q{
CREATE SEQUENCE ids;
CREATE TABLE items (id int NOT NULL DEFAULT nextval('ids'), v vector(3));
INSERT INTO items (v) VALUES ('[9,9,9]'), ('[-9,0,9]'), ('[0,-9,-9]');
CREATE INDEX items_l2 ON items USING hnsw (v vector_l2_ops) WITH (m = 4);
});

$node->pgbench(
	"--no-vacuum --client=$CLIENTS --jobs=$CLIENTS --transactions=$PER_CLIENT",
	0,
	[
		qr{processed: $INSERTED/$INSERTED},
		qr{number of failed transactions: 0}
	],
	[qr{^$}],
	"pgbench: $CLIENTS clients insert $INSERTED copies of 5 vectors",
	{
		'014_hnsw_duplicates' => q{
\set k random(0, 4)
INSERT INTO items (v) VALUES (format('[%s,%s,%s]', :k, :k * 2, 1)::vector(3));
}
	});

is($node->safe_psql('postgres', 'SELECT count(*) FROM items'),
	$TOTAL, "heap holds $TOTAL rows");
is($node->safe_psql('postgres', "SELECT * FROM hierindex_check('items_l2')"),
	'', 'hierindex_check finds no problem after concurrent duplicate inserts');
is( $node->safe_psql('postgres',
		"SELECT heap_tids, deleted_elements FROM hierindex_index_info('items_l2')"),
	"$TOTAL|0", 'one heap TID per row');
my $elements = $node->safe_psql('postgres',
	"SELECT elements FROM hierindex_index_info('items_l2')");
ok($elements >= 8 && $elements <= 12,
	"5 repeated vectors + 3 others share few elements ($elements)");

# every copy of each vector comes back from its element(s)
my $missing = $node->safe_psql(
	'postgres', qq{
SET enable_seqscan = off;
SET enable_bitmapscan = off;
SELECT count(*) FROM generate_series(0, 4) k,
	LATERAL (SELECT count(*) AS n FROM items
			 WHERE v = format('[%s,%s,1]', k, k * 2)::vector(3)) t,
	LATERAL (SELECT count(*) AS n FROM
				(SELECT v FROM items
				 ORDER BY v <-> format('[%s,%s,1]', k, k * 2)::vector(3)
				 LIMIT $TOTAL) s
			 WHERE v = format('[%s,%s,1]', k, k * 2)::vector(3)) f
WHERE t.n <> f.n;
});
is($missing, '0', 'a scan from each vector returns all of its rows');

$node->stop;
done_testing();
