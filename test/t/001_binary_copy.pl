# 001_binary_copy.pl — the vector type's binary form is pgvector's, byte for byte.
#
# pgvector users move data with binary COPY and binary protocol parameters, so
# hierindex must read and write exactly pgvector's binary vector: int16 dim,
# int16 unused (0), dim x float4, all big-endian.  This test builds binary COPY
# streams by hand with Perl's pack (no help from the server), loads them, and
# checks:
#
#   * the loaded rows print as the text the test computes itself (the shortest
#     decimal that reads back as the same float4, as pgvector prints), for
#     awkward floats: -0, denormals, 1e-38, 3.4e38, FLT_MAX, values with no
#     exact decimal form, and a 16000-d row of pseudo-random bit patterns;
#   * COPY TO (FORMAT binary) gives back the very bytes that were loaded;
#   * vector_send returns the expected bytes;
#   * invalid binary vectors (dim 0, negative dim, dim 16001, unused != 0,
#     fewer floats than dim, NaN, +/-Infinity, a 2-d value for vector(3)) make
#     COPY fail with a clear error and leave the table exactly as it was.
#
# Run (from the repository root, as a non-root user):
#   PERL5LIB=/usr/lib/postgresql/15/lib/pgxs/src/test/perl \
#   PATH=/usr/lib/postgresql/15/bin:$PATH \
#   PG_REGRESS=/usr/lib/postgresql/15/lib/pgxs/src/test/regress/pg_regress \
#   TESTDIR=<writable tmp dir> prove --ext=.pl test/t/
# (prove picks only *.t files from a directory unless told --ext=.pl, or
# given the files: prove test/t/*.pl.)

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

# ---------------------------------------------------------------------------
# float4 helpers.  A float is handled as its 32-bit pattern, so that -0,
# denormals and exact values survive; Perl's NV (a double) holds any float4
# exactly.
# ---------------------------------------------------------------------------

sub bits_to_float { return unpack('f>', pack('N', $_[0])); }
# Perl's pack 'f' turns anything above FLT_MAX into infinity, whereas IEEE
# rounding (and strtof) keeps values within half an ulp of FLT_MAX finite.
my $FLT_MAX = unpack('f>', pack('N', 0x7f7fffff));
my $FLT_MAX_HALF_ULP = 2**103;

sub float_to_bits
{
	my ($x) = @_;
	if (abs($x) > $FLT_MAX && abs($x) < $FLT_MAX + $FLT_MAX_HALF_ULP)
	{
		return $x < 0 ? 0xff7fffff : 0x7f7fffff;
	}
	return unpack('N', pack('f>', $x));
}

# The shortest decimal that reads back as the same float4, laid out as
# PostgreSQL's float4out and pgvector's vector_out do (both use the Ryu
# algorithm): plain notation for decimal exponents -4..5, otherwise
# d.ddde[+-]XX.  Ryu there takes a decimal only if it lies strictly between
# the midpoints to the neighbouring floats: a decimal exactly on a midpoint
# would read back correctly by round-half-even, yet is not chosen.  The
# midpoints are exact in double arithmetic (25 significant bits).
sub float4_text
{
	my ($bits) = @_;
	my $sign = ($bits & 0x80000000) ? '-' : '';
	my $abs_bits = $bits & 0x7fffffff;

	return $sign . '0' if $abs_bits == 0;

	my $value = bits_to_float($abs_bits);
	my $low_mid = ($value + bits_to_float($abs_bits - 1)) / 2;
	my $high_mid =
	  $abs_bits == 0x7f7fffff
	  ? $value + $FLT_MAX_HALF_ULP
	  : ($value + bits_to_float($abs_bits + 1)) / 2;
	my ($digits, $exp);
	for my $precision (1 .. 9)
	{
		my $candidate = sprintf('%.*e', $precision - 1, $value);
		next unless $candidate > $low_mid && $candidate < $high_mid;
		($digits, $exp) = $candidate =~ /^(\d(?:\.\d+)?)e([-+]\d+)$/
		  or die "unexpected %e output $candidate";
		$digits =~ s/\.//;
		$exp += 0;
		last;
	}
	die sprintf('no decimal of <= 9 digits for float bits %08x', $bits)
	  unless defined $digits;

	my $ndigits = length $digits;
	my $text;
	if ($exp >= -4 && $exp < 6)
	{
		if ($exp < 0)
		{
			$text = '0.' . ('0' x (-$exp - 1)) . $digits;
		}
		elsif ($ndigits <= $exp + 1)
		{
			$text = $digits . ('0' x ($exp + 1 - $ndigits));
		}
		else
		{
			$text =
			  substr($digits, 0, $exp + 1) . '.' . substr($digits, $exp + 1);
		}
	}
	else
	{
		$text = substr($digits, 0, 1);
		$text .= '.' . substr($digits, 1) if $ndigits > 1;
		$text .= sprintf('e%s%02d', $exp < 0 ? '-' : '+', abs $exp);
	}
	return $sign . $text;
}

sub vector_text
{
	my (@bits) = @_;
	return '[' . join(',', map { float4_text($_) } @bits) . ']';
}

# pgvector's binary vector: int16 dim, int16 unused, dim x float4, big-endian.
sub vector_binary
{
	my (@bits) = @_;
	return pack('s> s> N*', scalar @bits, 0, @bits);
}

# A binary COPY stream: signature, flags, header extension length, tuples of
# (int16 field count, then int32 length + bytes per field), trailer -1.
# Each row is [int4 id, raw bytes of the vector field].
sub copy_stream
{
	my (@rows) = @_;
	my $stream = "PGCOPY\n\377\r\n\0" . pack('l> l>', 0, 0);
	for my $row (@rows)
	{
		my ($id, $payload) = @$row;
		$stream .= pack('s> l> l> l>/a*', 2, 4, $id, $payload);
	}
	return $stream . pack('s>', -1);
}

sub write_file
{
	my ($path, $bytes) = @_;
	open(my $fh, '>:raw', $path) or die "cannot write $path: $!";
	print $fh $bytes;
	close($fh) or die "cannot close $path: $!";
}

sub read_file
{
	my ($path) = @_;
	open(my $fh, '<:raw', $path) or die "cannot read $path: $!";
	local $/;
	my $bytes = <$fh>;
	close($fh);
	return $bytes;
}

# Compare two long vector texts; on mismatch report the first differing
# element instead of dumping hundreds of kilobytes.
sub vector_text_is
{
	my ($got, $expected, $name) = @_;
	if (defined $got && $got eq $expected)
	{
		pass($name);
		return;
	}
	fail($name);
	$got = '(undef)' unless defined $got;
	my @g = split /,/, $got;
	my @e = split /,/, $expected;
	for my $i (0 .. ($#g > $#e ? $#g : $#e))
	{
		my $gi = $g[$i] // '(missing)';
		my $ei = $e[$i] // '(missing)';
		next if $gi eq $ei;
		diag("element $i: got '$gi', expected '$ei' "
			  . "(got " . scalar(@g) . " elements, expected " . scalar(@e) . ")");
		last;
	}
}

# ---------------------------------------------------------------------------
# The formatter above is part of the oracle, so pin it to hand-checked
# strings first.
# ---------------------------------------------------------------------------

my %hand_checked = (
	0x80000000 => '-0',
	0x00000000 => '0',
	0x3fc00000 => '1.5',
	0x3dcccccd => '0.1',                # 0.100000001490116...
	0x3eaaaaab => '0.33333334',
	0x00000001 => '1e-45',              # smallest denormal
	0x7f7fffff => '3.4028235e+38',      # FLT_MAX
	float_to_bits(1e-38) => '1e-38',    # a denormal
	float_to_bits(3.4e38) => '3.4e+38',
	float_to_bits(123456.79) => '123456.79',
	float_to_bits(1234567) => '1.234567e+06',
	float_to_bits(100000) => '100000',
	float_to_bits(1e6) => '1e+06',
	float_to_bits(0.0001) => '0.0001',
	float_to_bits(0.00001) => '1e-05',
	float_to_bits(-2.5) => '-2.5',);
for my $bits (sort { $a <=> $b } keys %hand_checked)
{
	is(float4_text($bits), $hand_checked{$bits},
		sprintf('test formatter: float bits %08x print as %s',
			$bits, $hand_checked{$bits}));
}

# ---------------------------------------------------------------------------
# Rows to load, as float bit patterns.
# ---------------------------------------------------------------------------

my @awkward = (
	0x80000000,                # -0
	0x00000001,                # smallest denormal, 1.4e-45
	0x007fffff,                # largest denormal
	0x00800000,                # smallest normal, 1.1754944e-38
	float_to_bits(1e-38),      # denormal near the normal range
	float_to_bits(3.4e38),
	0x7f7fffff,                # FLT_MAX
	0xff7fffff,                # -FLT_MAX
	0x3dcccccd,                # 0.1, not exact in binary
	0x3eaaaaab,                # 1/3
	float_to_bits(-123456.79),
	float_to_bits(16777217),   # rounds to 16777216
	float_to_bits(1234567),
	float_to_bits(0.0001),
	float_to_bits(0.00001),
	float_to_bits(100000),
	float_to_bits(1e6),
	float_to_bits(-7.0e-39),   # negative denormal
	0x3f800001,                # 1 + 2^-23
	0x00000000,);

# 16000 pseudo-random bit patterns (a fixed 32-bit LCG, so the test is
# repeatable), skipping NaN and infinities: every exponent and sign shows up.
my @big;
my $state = 12345;
while (@big < 16000)
{
	$state = (1664525 * $state + 1013904223) % 4294967296;
	next if ($state & 0x7f800000) == 0x7f800000;
	push @big, $state;
}

my @rows = (
	[ 1, [0x3fc00000] ],                              # [1.5], dim 1
	[ 2, [ @awkward[ 0 .. 2 ] ] ],                    # dim 3
	[ 3, [@awkward] ],                                # dim 20
	[ 4, [ map { float_to_bits($_) } (1, -2, 0.5, 3.25, -0.125) ] ],
	[ 5, [@big] ],                                    # dim 16000
);

# ---------------------------------------------------------------------------
# Server.
# ---------------------------------------------------------------------------

my $node = PostgreSQL::Test::Cluster->new('binary_copy');
$node->init;
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION hierindex');
$node->safe_psql('postgres',
	'CREATE TABLE t (id int4, v vector); CREATE TABLE t3 (id int4, v vector(3))'
);

my $tmp = PostgreSQL::Test::Utils::tempdir;

# The formatter agrees with PostgreSQL's own float4 output (which pgvector's
# vector_out matches) on every awkward value.
{
	my $sql = join(' UNION ALL ',
		map { sprintf("SELECT %d, '%.9g'::float4::text", $_, bits_to_float($awkward[$_])) }
		  0 .. $#awkward);
	my $got = $node->safe_psql('postgres', "SELECT * FROM ($sql) s ORDER BY 1");
	my $expected = join("\n",
		map { "$_|" . float4_text($awkward[$_]) } 0 .. $#awkward);
	is($got, $expected, 'test formatter agrees with float4out on awkward values');

	# ... and on the 16000 pseudo-random ones, so that a mismatch in the
	# 16000-d row below is vector_out's, not the formatter's.
	my $file = "$tmp/float4.txt";
	write_file($file,
		join('', map { sprintf("%.9g\t%s\n", bits_to_float($_), float4_text($_)) } @big));
	$node->safe_psql('postgres', 'CREATE TABLE float4_check (x float4, expected text)');
	my ($ret, $stdout, $stderr) =
	  $node->psql('postgres', "\\copy float4_check FROM '$file'");
	is($ret, 0, 'loaded float4 cross-check values') or diag($stderr);
	is( $node->safe_psql('postgres',
			'SELECT count(*), count(*) FILTER (WHERE x::text <> expected) FROM float4_check'),
		'16000|0',
		'test formatter agrees with float4out on the 16000 pseudo-random values');
}

# Run psql with one \copy meta-command (client side, so no superuser file
# access is involved); returns (exit code, stderr).
sub run_copy
{
	my ($command) = @_;
	my ($ret, $stdout, $stderr) = $node->psql('postgres', $command);
	return ($ret, $stderr);
}

sub row_count
{
	my ($table) = @_;
	return $node->safe_psql('postgres', "SELECT count(*) FROM $table");
}

# ---------------------------------------------------------------------------
# Load the hand-built stream, read it back as text and as binary.
# ---------------------------------------------------------------------------

my $stream = copy_stream(map { [ $_->[0], vector_binary(@{ $_->[1] }) ] } @rows);
my $in_file = "$tmp/good.copy";
write_file($in_file, $stream);

my ($ret, $err) = run_copy("\\copy t FROM '$in_file' WITH (FORMAT binary)");
is($ret, 0, 'binary COPY FROM of hand-built stream succeeds') or diag($err);
is(row_count('t'), scalar @rows, 'all rows loaded');

my @dims = split /\n/,
  $node->safe_psql('postgres', 'SELECT vector_dims(v) FROM t ORDER BY id');
is_deeply(\@dims, [ map { scalar @{ $_->[1] } } @rows ],
	'loaded rows have dimensions 1, 3, 20, 5, 16000');

my @texts = split /\n/,
  $node->safe_psql('postgres', 'SELECT v FROM t ORDER BY id');
is(scalar @texts, scalar @rows, 'one text line per row');
for my $i (0 .. $#rows)
{
	vector_text_is($texts[$i], vector_text(@{ $rows[$i][1] }),
		"row $rows[$i][0] (dim " . scalar(@{ $rows[$i][1] }) . ") prints as expected");
}

my $out_file = "$tmp/out.copy";
($ret, $err) = run_copy(
	"\\copy (SELECT id, v FROM t ORDER BY id) TO '$out_file' WITH (FORMAT binary)");
is($ret, 0, 'binary COPY TO succeeds') or diag($err);
my $round_trip = read_file($out_file);
is(length($round_trip), length($stream), 'COPY TO stream has the loaded length');
ok($round_trip eq $stream, 'COPY TO gives back exactly the loaded bytes')
  or diag(first_difference($round_trip, $stream));

sub first_difference
{
	my ($got, $expected) = @_;
	my $n = length($got) < length($expected) ? length($got) : length($expected);
	for my $i (0 .. $n - 1)
	{
		next if substr($got, $i, 1) eq substr($expected, $i, 1);
		return sprintf('first difference at byte %d: got %s, expected %s',
			$i,
			unpack('H*', substr($got,      $i, 8)),
			unpack('H*', substr($expected, $i, 8)));
	}
	return "one is a prefix of the other";
}

# vector_send, for a literal and for the awkward stored row.
is( $node->safe_psql('postgres', "SELECT vector_send('[1,-2,0.5]'::vector)"),
	'\\x' . unpack('H*', vector_binary(0x3f800000, 0xc0000000, 0x3f000000)),
	'vector_send of [1,-2,0.5] is 0003 0000 3f800000 c0000000 3f000000');
is( $node->safe_psql('postgres', 'SELECT vector_send(v) FROM t WHERE id = 3'),
	'\\x' . unpack('H*', vector_binary(@awkward)),
	'vector_send of the stored awkward row gives the loaded bytes');

# ---------------------------------------------------------------------------
# Invalid binary vectors.  Each stream holds a good row, the bad one, and
# another good row; COPY must fail on line 2 and load nothing.
# ---------------------------------------------------------------------------

my $good_a = vector_binary(0x3f800000, 0x40000000, 0x40400000);    # [1,2,3]
my $good_b = vector_binary(0x40800000, 0x40a00000, 0x40c00000);    # [4,5,6]

my @invalid = (
	[
		'dim 0', 't', pack('s> s>', 0, 0),
		qr/dimension/i, qr/\b0\b/
	],
	[
		'negative dim', 't', pack('s> s> N', -3, 0, 0x3f800000),
		qr/dimension/i, qr/-3/
	],
	[
		'dim 16001', 't', pack('s> s> N*', 16001, 0, (0x3f800000) x 16001),
		qr/dimension/i, qr/16001/
	],
	[
		'unused != 0', 't', pack('s> s> N N', 2, 7, 0x3f800000, 0x3f800000),
		qr/unused|reserved/i, qr/\b7\b/
	],
	[
		'fewer floats than dim', 't',
		pack('s> s> N*', 4, 0, 0x3f800000, 0x3f800000, 0x3f800000),
		qr/short|insufficient|fewer|too few|bytes/i,
		qr/\b20\b.*\b16\b|\b16\b.*\b20\b/    # needs 20 bytes, has 16
	],
	[
		'NaN element', 't', pack('s> s> N*', 3, 0, 0x3f800000, 0x7fc00000, 0),
		qr/NaN/, qr/element 2\b/i
	],
	[
		'Infinity element', 't', pack('s> s> N*', 2, 0, 0x7f800000, 0),
		qr/infinit/i, qr/element 1\b/i
	],
	[
		'-Infinity element', 't', pack('s> s> N*', 2, 0, 0, 0xff800000),
		qr/infinit/i, qr/element 2\b/i
	],
	[
		'2-d value for vector(3)', 't3', vector_binary(0x3f800000, 0x40000000),
		qr/expected 3 dimensions?, not 2|3.*\b2\b.*dimension|dimension.*\b3\b.*\b2\b/i,
		undef
	],);

# vector(3) starts with one row, so "unchanged" is not just "empty".
($ret, $err) = run_copy(
	sprintf("\\copy t3 FROM '%s' WITH (FORMAT binary)", do {
		my $f = "$tmp/t3-seed.copy";
		write_file($f, copy_stream([ 1, $good_a ]));
		$f;
	}));
is($ret, 0, 'vector(3) table takes a 3-d row') or diag($err);

my $case_number = 0;
for my $case (@invalid)
{
	my ($name, $table, $payload, $message_re, $value_re) = @$case;
	$case_number++;

	my $before = row_count($table);
	my $file = "$tmp/bad-$case_number.copy";
	write_file($file,
		copy_stream([ 100, $good_a ], [ 101, $payload ], [ 102, $good_b ]));

	my ($bad_ret, $bad_err) =
	  run_copy("\\copy $table FROM '$file' WITH (FORMAT binary)");
	isnt($bad_ret, 0, "$name: COPY fails");
	like($bad_err, qr/ERROR:/, "$name: reports an ERROR");
	like($bad_err, $message_re, "$name: error names the problem")
	  or diag($bad_err);
	if (defined $value_re)
	{
		like($bad_err, $value_re, "$name: error shows the offending value")
		  or diag($bad_err);
	}
	like($bad_err, qr/COPY $table, line 2/, "$name: error points at row 2")
	  or diag($bad_err);
	unlike($bad_err, qr/server closed the connection|terminated abnormally/i,
		"$name: no backend crash");
	is(row_count($table), $before, "$name: row count unchanged ($before)");
}

# Nothing half-loaded, nothing lost: the good data is intact.
is(row_count('t'), scalar @rows, 'table t still holds exactly the good rows');
is($node->safe_psql('postgres', 'SELECT v FROM t3'), '[1,2,3]',
	'vector(3) table still holds its one row');
is($node->safe_psql('postgres', 'SELECT count(*) FROM t WHERE id >= 100'), '0',
	'no row of a failed COPY is visible');

$node->stop;
done_testing();
