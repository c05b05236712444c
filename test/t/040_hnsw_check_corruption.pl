# 040_hnsw_check_corruption.pl — hierindex_check finds damage done on purpose.
#
# A check that never reports anything cannot be told from one that works, so
# this test breaks hnsw indexes in known ways and expects each problem to be
# reported where it was made:
#
#   * twelve copies of one index are built (same table, m = 4, so several
#     layers) and checked clean;
#   * the server is stopped and each copy's file is edited byte by byte at
#     offsets computed from the format in src/hnsw/hnsw.h (meta magic, page id,
#     tuple type, element level, neighbour slots, entry point, counters,
#     neighbour TID, all links into one element);
#   * after a restart, hierindex_check must return the matching problem code
#     at the damaged block and item, never crash, and REINDEX must make the
#     index clean again.  hierindex_index_info must refuse the broken meta
#     page with an ERROR.
#
# Run like the other TAP tests (see 001_binary_copy.pl), e.g.
#   prove --ext=.pl test/t/040_hnsw_check_corruption.pl

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $BLCKSZ = 8192;
my $PAGE_HEADER = 24;				# SizeOfPageHeaderData, MAXALIGNed
my $META = $PAGE_HEADER;			# HnswMetaPageData at PageGetContents
my %META_FIELD = (magic => 0, entry_point => 20, element_count => 32);
my $ELEMENT_NEIGHBORTID = 64;		# offsetof(HnswElementTupleData, neighbortid)
my $NEIGHBOR_SLOTS = 4;				# offsetof(HnswNeighborTupleData, slots)
my $M = 4;

my $node = PostgreSQL::Test::Cluster->new('check');
$node->init;
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION hierindex');
$node->safe_psql('postgres', q{
	CREATE TABLE items (id int, v vector(4));
	SELECT setseed(0.5);
	INSERT INTO items
	SELECT i, (SELECT array_agg(random()) FROM generate_series(1, 4) WHERE i > 0)::vector
	FROM generate_series(1, 300) i;
});

my @cases = qw(magic pageid type level link self dup above reach entry count missing);
for my $case (@cases)
{
	$node->safe_psql('postgres',
		"CREATE INDEX idx_$case ON items USING hnsw (v) WITH (m = $M, ef_construction = 16)");
}

sub check_rows
{
	my ($index) = @_;
	my $out = $node->safe_psql('postgres',
		"SELECT problem, coalesce(blkno, -1), coalesce(offnum, 0), detail FROM hierindex_check('$index')");
	return map { [ split /\|/, $_, 4 ] } grep { length } split /\n/, $out;
}

for my $case (@cases)
{
	my @rows = check_rows("idx_$case");
	is(scalar(@rows), 0, "idx_$case is clean before the damage")
	  or diag(join("\n", map { join('|', @$_) } @rows));
}

my %file;
for my $case (@cases)
{
	$file{$case} = $node->data_dir . '/'
	  . $node->safe_psql('postgres', "SELECT pg_relation_filepath('idx_$case')");
}

# ---------------------------------------------------------------------------
# Reading and writing the index file (server stopped)
# ---------------------------------------------------------------------------
sub slurp
{
	my ($path) = @_;
	open(my $fh, '<:raw', $path) or die "open $path: $!";
	local $/;
	my $data = <$fh>;
	close $fh;
	return $data;
}

sub spew
{
	my ($path, $data) = @_;
	open(my $fh, '>:raw', $path) or die "open $path: $!";
	print $fh $data;
	close $fh or die "close $path: $!";
}

sub pack_tid { my ($blk, $off) = @_; return pack('vvv', $blk >> 16, $blk & 0xffff, $off); }

sub unpack_tid
{
	my ($bytes) = @_;
	my ($hi, $lo, $off) = unpack('vvv', $bytes);
	return (($hi << 16) | $lo, $off);
}

# Every tuple of every element page: { blk, off, pos (byte in file), len,
# type, level, and for elements the neighbour TID }.
sub tuples
{
	my ($data) = @_;
	my @tuples;
	for my $blk (1 .. length($data) / $BLCKSZ - 1)
	{
		my $page = $blk * $BLCKSZ;
		my $lower = unpack('v', substr($data, $page + 12, 2));
		for my $off (1 .. ($lower - $PAGE_HEADER) / 4)
		{
			my $lp = unpack('V', substr($data, $page + $PAGE_HEADER + 4 * ($off - 1), 4));
			next unless (($lp >> 15) & 3) == 1;		# LP_NORMAL
			my $pos = $page + ($lp & 0x7fff);
			my %t = (blk => $blk, off => $off, pos => $pos, len => $lp >> 17,
				type => ord(substr($data, $pos, 1)),
				level => ord(substr($data, $pos + 1, 1)));
			$t{neighbortid} = [ unpack_tid(substr($data, $pos + $ELEMENT_NEIGHBORTID, 6)) ]
			  if $t{type} == 1;
			push @tuples, \%t;
		}
	}
	return @tuples;
}

sub tid_of { my ($t) = @_; return "$t->{blk},$t->{off}"; }

# the element and its neighbour tuple, by element TID
sub graph
{
	my ($data) = @_;
	my @tuples = tuples($data);
	my %by_tid = map { (tid_of($_) => $_) } @tuples;
	my @elements = grep { $_->{type} == 1 } @tuples;
	$_->{neighbors} = $by_tid{ join(',', @{ $_->{neighbortid} }) } for @elements;
	my ($eblk, $eoff) = unpack_tid(substr($data, $META + $META_FIELD{entry_point}, 6));
	return (\@elements, "$eblk,$eoff");
}

sub layer_slots
{
	my ($layer) = @_;
	return $layer == 0 ? (0, 2 * $M) : (2 * $M + ($layer - 1) * $M, $M);
}

# the TIDs in one layer's list ("blk,off" strings)
sub links
{
	my ($data, $ntup, $layer) = @_;
	my ($first, $width) = layer_slots($layer);
	my @links;
	for my $i (0 .. $width - 1)
	{
		my ($blk, $off) = unpack_tid(substr($data, $ntup->{pos} + $NEIGHBOR_SLOTS + 6 * ($first + $i), 6));
		last if $off == 0;
		push @links, "$blk,$off";
	}
	return @links;
}

sub set_slot
{
	my ($data, $ntup, $layer, $slot, $blk, $off) = @_;
	my ($first) = layer_slots($layer);
	substr($$data, $ntup->{pos} + $NEIGHBOR_SLOTS + 6 * ($first + $slot), 6) = pack_tid($blk, $off);
}

sub set_links
{
	my ($data, $ntup, $layer, @links) = @_;
	my (undef, $width) = layer_slots($layer);
	for my $i (0 .. $width - 1)
	{
		set_slot($data, $ntup, $layer, $i, $i < @links ? split(/,/, $links[$i]) : (0xffffffff, 0));
	}
}

# An element whose layer-0 list has a link and room for one more: damage
# written there loses no existing link, so it has exactly one consequence.
sub with_free_slot
{
	my ($data) = @_;
	my ($elements) = graph($$data);
	my ($e) = grep { my $n = links($$data, $_->{neighbors}, 0); $n >= 1 && $n < 2 * $M } @$elements;
	die 'no element with a free layer-0 slot' unless $e;
	return $e;
}

# ---------------------------------------------------------------------------
# The damage, and where each problem must be reported
# ---------------------------------------------------------------------------
$node->stop;
my %expect;		# case => [problem, blkno, offnum]

sub damage
{
	my ($case, $edit) = @_;
	my $data = slurp($file{$case});
	$expect{$case} = $edit->(\$data);
	spew($file{$case}, $data);
}

damage('magic', sub {
	my ($data) = @_;
	substr($$data, $META + $META_FIELD{magic}, 4) = 'XXXX';
	return [ 'bad meta page', 0, 0 ];
});

damage('pageid', sub {
	my ($data) = @_;
	substr($$data, 2 * $BLCKSZ - 2, 2) = pack('v', 0x1234);
	return [ 'bad page', 1, 0 ];
});

damage('type', sub {
	my ($data) = @_;
	my ($elements) = graph($$data);
	my $e = $elements->[-1];
	substr($$data, $e->{pos}, 1) = chr(7);
	return [ 'bad tuple', $e->{blk}, $e->{off} ];
});

damage('level', sub {
	my ($data) = @_;
	my ($elements, $entry) = graph($$data);
	my ($e) = grep { tid_of($_) ne $entry } @$elements;
	substr($$data, $e->{pos} + 1, 1) = chr(15);
	return [ 'level out of range', $e->{blk}, $e->{off} ];
});

damage('link', sub {
	my ($data) = @_;
	my $e = with_free_slot($data);
	my $n = $e->{neighbors};
	set_slot($data, $n, 0, scalar(links($$data, $n, 0)), 9999, 1);
	return [ 'link to non-element', $n->{blk}, $n->{off} ];
});

damage('self', sub {
	my ($data) = @_;
	my $e = with_free_slot($data);
	set_slot($data, $e->{neighbors}, 0, scalar(links($$data, $e->{neighbors}, 0)), $e->{blk}, $e->{off});
	return [ 'self link', $e->{neighbors}{blk}, $e->{neighbors}{off} ];
});

damage('dup', sub {
	my ($data) = @_;
	my $e = with_free_slot($data);
	my @links = links($$data, $e->{neighbors}, 0);
	set_slot($data, $e->{neighbors}, 0, scalar(@links), split(/,/, $links[0]));
	return [ 'duplicate link', $e->{neighbors}{blk}, $e->{neighbors}{off} ];
});

damage('above', sub {
	my ($data) = @_;
	my ($elements) = graph($$data);
	my ($upper) = grep { $_->{level} >= 1 && links($$data, $_->{neighbors}, 1) >= 1 } @$elements;
	my ($ground) = grep { $_->{level} == 0 } @$elements;
	set_slot($data, $upper->{neighbors}, 1, 0, $ground->{blk}, $ground->{off});
	return [ 'link above target level', $upper->{neighbors}{blk}, $upper->{neighbors}{off} ];
});

# every link to one level-0 element removed, on every list
damage('reach', sub {
	my ($data) = @_;
	my ($elements, $entry) = graph($$data);
	my ($victim) = grep { $_->{level} == 0 && tid_of($_) ne $entry } @$elements;
	for my $e (@$elements)
	{
		for my $layer (0 .. $e->{level})
		{
			my @links = links($$data, $e->{neighbors}, $layer);
			my @kept = grep { $_ ne tid_of($victim) } @links;
			set_links($data, $e->{neighbors}, $layer, @kept) if @kept != @links;
		}
	}
	return [ 'unreachable element', $victim->{blk}, $victim->{off} ];
});

damage('entry', sub {
	my ($data) = @_;
	my ($elements) = graph($$data);
	my $n = $elements->[0]{neighbors};
	substr($$data, $META + $META_FIELD{entry_point}, 6) = pack_tid($n->{blk}, $n->{off});
	return [ 'bad entry point', 0, 0 ];
});

damage('count', sub {
	my ($data) = @_;
	substr($$data, $META + $META_FIELD{element_count}, 8) = pack('q<', 1);
	return [ 'count mismatch', 0, 0 ];
});

damage('missing', sub {
	my ($data) = @_;
	my ($elements) = graph($$data);
	my $e = $elements->[2];
	substr($$data, $e->{pos} + $ELEMENT_NEIGHBORTID, 6) = pack_tid(1, 500);
	return [ 'missing neighbour tuple', $e->{blk}, $e->{off} ];
});

$node->start;

# ---------------------------------------------------------------------------
# Each problem is found where it was made
# ---------------------------------------------------------------------------
for my $case (@cases)
{
	my ($problem, $blk, $off) = @{ $expect{$case} };
	my @rows = check_rows("idx_$case");
	my @hits = grep { $_->[0] eq $problem && $_->[1] == $blk && $_->[2] == $off } @rows;
	note("idx_$case:\n" . join("\n", map { join('|', @$_) } @rows));
	ok(scalar(@hits) >= 1, "idx_$case: '$problem' at ($blk,$off)")
	  or diag(join("\n", map { join('|', @$_) } @rows));
}

# the damage that has exactly one consequence reports exactly one row
for my $case (qw(magic count self dup link))
{
	my @rows = check_rows("idx_$case");
	is(scalar(@rows), 1, "idx_$case: one row")
	  or diag(join("\n", map { join('|', @$_) } @rows));
}

like((check_rows('idx_magic'))[0][3], qr/magic number is 58585858/, 'bad magic is named');
like((check_rows('idx_link'))[0][3], qr/block 9999 is outside/, 'out-of-range block is named');

my ($rc, $stdout, $stderr) = $node->psql('postgres', "SELECT * FROM hierindex_index_info('idx_magic')");
isnt($rc, 0, 'index_info refuses a bad meta page');
like($stderr, qr/bad magic number 58585858/, 'index_info names the bad magic');

# the server survived every check, and REINDEX repairs
is($node->safe_psql('postgres', 'SELECT count(*) FROM items'), '300', 'server still answers');
for my $case (@cases)
{
	$node->safe_psql('postgres', "REINDEX INDEX idx_$case");
	my @rows = check_rows("idx_$case");
	is(scalar(@rows), 0, "idx_$case is clean after REINDEX")
	  or diag(join("\n", map { join('|', @$_) } @rows));
}

$node->stop;
done_testing();
