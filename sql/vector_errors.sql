--
-- vector_errors: every way to give the vector type bad input, and the ERROR
-- each one raises (SQLSTATE shown with VERBOSITY sqlstate where it matters).
--

-- Malformed text (22P02 invalid_text_representation)
SELECT ''::vector;
SELECT '   '::vector;
SELECT '1,2,3'::vector;
SELECT '1,2,3]'::vector;
SELECT '(1,2,3)'::vector;
SELECT '[1,2,3'::vector;
SELECT '[1,2,'::vector;
SELECT '['::vector;
SELECT '[1,,3]'::vector;
SELECT '[,1]'::vector;
SELECT '[1,]'::vector;
SELECT '[ , ]'::vector;
SELECT '[1 2]'::vector;
SELECT '[1,a,3]'::vector;
SELECT '[1a]'::vector;
SELECT '[1.2.3]'::vector;
SELECT '[1e]'::vector;
SELECT '[--1]'::vector;
SELECT '[1;2]'::vector;
SELECT '[[1,2]]'::vector;
SELECT '[1,é]'::vector;
SELECT '[1,2]]'::vector;
SELECT '[1,2] x'::vector;
SELECT '[1,2][3]'::vector;

-- NaN, infinities, overflow
SELECT '[NaN]'::vector;
SELECT '[1,nan,3]'::vector;
SELECT '[1,Infinity]'::vector;
SELECT '[-Infinity,1]'::vector;
SELECT '[inf]'::vector;
SELECT '[1e39]'::vector;
SELECT '[-1e39]'::vector;
SELECT '[3.5e38]'::vector;

-- Dimension limits
SELECT '[]'::vector;
SELECT '[ ]'::vector;
SELECT ('[' || string_agg('1', ',') || ']')::vector
FROM generate_series(1, 16001);

-- SQLSTATEs of each class
\set VERBOSITY sqlstate
SELECT '[1,a]'::vector;
SELECT '[NaN]'::vector;
SELECT '[1e39]'::vector;
SELECT '[]'::vector;
SELECT ('[' || string_agg('1', ',') || ']')::vector FROM generate_series(1, 16001);
\set VERBOSITY default

-- Bad typmods
SELECT '[1]'::vector(0);
SELECT '[1]'::vector(-1);
SELECT '[1]'::vector(16001);
SELECT '[1]'::vector(3, 4);
CREATE TABLE verr_bad (v vector(0));
CREATE TABLE verr_bad (v vector(2, 2));
CREATE TABLE verr_bad (v vector(16001));

-- Typmod mismatch: on cast, on insert, on update, through array casts
SELECT '[1,2]'::vector(3);
SELECT '[1,2,3,4]'::vector(3);
SELECT '[1,2]'::vector::vector(3);
SELECT '{1,2}'::int[]::vector(3);
SELECT '{1,2}'::real[]::vector(3);
SELECT '{1,2}'::float8[]::vector(3);
SELECT '{1,2}'::numeric[]::vector(3);
CREATE TABLE verr (v vector(3));
INSERT INTO verr VALUES ('[1,2]');
INSERT INTO verr VALUES ('[1,2,3,4]'::vector);
INSERT INTO verr VALUES (ARRAY[1,2]);
INSERT INTO verr VALUES ('[1,2,3]');
UPDATE verr SET v = '[1]';
SELECT * FROM verr;
-- explicit-only casts do not apply on assignment
CREATE TABLE verr_int (i int[], f float8[], n numeric[]);
INSERT INTO verr_int (i) VALUES ('[1,2]'::vector);
INSERT INTO verr_int (f) VALUES ('[1,2]'::vector);
INSERT INTO verr_int (n) VALUES ('[1,2]'::vector);
DROP TABLE verr_int;

-- Array -> vector errors
SELECT '{{1,2},{3,4}}'::int[]::vector;
SELECT '{{1.5}}'::real[]::vector;
SELECT '{}'::int[]::vector;
SELECT '{}'::numeric[]::vector;
SELECT '{1,NULL,3}'::int[]::vector;
SELECT ARRAY[1.5, NULL]::float8[]::vector;
SELECT '{1,NaN}'::real[]::vector;
SELECT '{Infinity}'::real[]::vector;
SELECT '{NaN}'::float8[]::vector;
SELECT '{1,-Infinity}'::float8[]::vector;
SELECT '{1,1e39}'::float8[]::vector;
SELECT '{-1e300}'::float8[]::vector;
SELECT '{NaN}'::numeric[]::vector;
SELECT '{Infinity}'::numeric[]::vector;
SELECT '{1,-Infinity}'::numeric[]::vector;
SELECT '{1e39}'::numeric[]::vector;
SELECT '{1,-1e400}'::numeric[]::vector;
SELECT array_fill(1, ARRAY[16001])::vector;
SELECT array_fill(1.5::float8, ARRAY[20000])::vector;

-- vector -> integer[] out of range (after rounding)
SELECT '[1,2147483648]'::vector::int[];
SELECT '[-2147483904]'::vector::int[];
SELECT '[3e9]'::vector::int[];
SELECT '[1e38]'::vector::int[];

-- Binary input errors, fed to vector_recv through binary COPY: a bytea
-- column's binary COPY field is its raw bytes.
\set SHOW_CONTEXT never
CREATE TABLE verr_bytes (b bytea);
CREATE TABLE verr_recv (v vector);
CREATE TABLE verr_recv3 (v vector(3));
CREATE FUNCTION verr_recv(bytes bytea, target text DEFAULT 'verr_recv') RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
	path text := current_setting('data_directory') || '/hierindex_vector_errors.bin';
BEGIN
	TRUNCATE verr_bytes, verr_recv, verr_recv3;
	INSERT INTO verr_bytes VALUES (bytes);
	EXECUTE format('COPY verr_bytes TO %L (FORMAT binary)', path);
	EXECUTE format('COPY %I FROM %L (FORMAT binary)', target, path);
	RETURN (SELECT string_agg(v::text, ';') FROM verr_recv);
END $$;
-- the helper works: a good value reads back
SELECT verr_recv('\x000200003f80000040000000');
-- shorter than the header
SELECT verr_recv('\x');
SELECT verr_recv('\x0001');
SELECT verr_recv('\x000100');
-- dimension out of range
SELECT verr_recv('\x000000003f800000');
SELECT verr_recv('\xffff00003f800000');
SELECT verr_recv('\x3e810000');
SELECT verr_recv('\x7fff0000');
-- reserved field not zero
SELECT verr_recv('\x000100013f800000');
SELECT verr_recv('\x0001ffff3f800000');
-- fewer or more values than dim says
SELECT verr_recv('\x000200003f800000');
SELECT verr_recv('\x000200003f8000004000');
SELECT verr_recv('\x000100003f80000040000000');
SELECT verr_recv('\x000100003f80000000');
-- NaN and infinities
SELECT verr_recv('\x000200003f8000007fc00000');
SELECT verr_recv('\x000100007f800000');
SELECT verr_recv('\x00010000ff800000');
SELECT verr_recv('\x00030000000000000000000fffc00001');
-- typmod mismatch (the column is vector(3))
SELECT verr_recv('\x000200003f80000040000000', 'verr_recv3');
\set VERBOSITY sqlstate
SELECT verr_recv('\x0001');
SELECT verr_recv('\x000000003f800000');
SELECT verr_recv('\x000100007f800000');
\set VERBOSITY default
\set SHOW_CONTEXT errors

DROP FUNCTION verr_recv(bytea, text);
DROP TABLE verr, verr_bytes, verr_recv, verr_recv3;
