--
-- vector_io: the text and binary forms of the vector type, and its typmod.
-- (Errors live in vector_errors.)
--

-- Text round trips: output is the shortest text that reads back as the same
-- float4, whatever extra_float_digits says.
SELECT '[1,2,3]'::vector;
SELECT '[1,2.5,-0.03]'::vector;
SELECT E' \t[ 1 ,\n2 ,3\r ]\n '::vector AS whitespace;
SELECT '[1e3,1E-3,-2.5e+2,.5,5.,+7,0x1p-2]'::vector AS spellings;
SELECT '[-0,0,-0.0,0e10]'::vector AS zeros;
SELECT '[0.1,0.30000001,16777217,1.0000001,123456789]'::vector AS rounding;
-- smallest denormal, smallest normal, largest finite; 1e-46 underflows to 0
SELECT '[1e-45,1.4e-45,1.17549435e-38,3.4028235e38,-3.4028235e38,1e-46]'::vector AS extremes;
SET extra_float_digits = 0;
SELECT '[0.1,1.0000001,3.4028235e38]'::vector AS independent_of_extra_float_digits;
RESET extra_float_digits;
-- text -> vector -> text is the identity on output text
SELECT v::text::vector::text = v::text AS stable
FROM (VALUES ('[0.1,-0,1e-45,3.4028235e+38]'::vector),
             ('[1.0000001,-2.7182817,6.0221e+23]'::vector)) AS t(v);
-- each element is exactly the float4 that real's input gives
SELECT '[0.1,1e-45,16777217,-2.7182817]'::vector::real[]
       = ARRAY['0.1'::real, '1e-45'::real, '16777217'::real, '-2.7182817'::real] AS same_as_real;

-- 16000 dimensions, the maximum
SELECT length(v::text) AS text_length,
       array_length(v::real[], 1) AS dims,
       v::text::vector::text = v::text AS round_trip
FROM (SELECT array_fill(1.5::real, ARRAY[16000])::vector AS v) AS t;
SELECT (v::real[])[1] AS first, (v::real[])[8000] AS middle,
       (v::real[])[16000] AS last, array_length(v::real[], 1) AS dims
FROM (SELECT ('[' || string_agg(i::text, ',') || ']')::vector AS v
      FROM generate_series(1, 16000) AS i) AS t;

-- typmod on table columns
CREATE TABLE vio (id int, a vector(3), b vector);
SELECT attname, format_type(atttypid, atttypmod)
FROM pg_attribute WHERE attrelid = 'vio'::regclass AND attnum > 0 ORDER BY attnum;
INSERT INTO vio VALUES (1, '[1,2,3]', '[1]');
INSERT INTO vio VALUES (2, '[4,5,6]'::vector, '[1,2,3,4,5]'::vector(5));
INSERT INTO vio VALUES (3, ' [ -1.5 , 0 , 1e-3 ] ', NULL);
INSERT INTO vio VALUES (4, NULL, NULL);
SELECT * FROM vio ORDER BY id;
SELECT '[1,2,3]'::vector(3) AS cast_with_typmod;
CREATE TABLE vio_max (v vector(16000));
INSERT INTO vio_max SELECT array_fill(0.25::real, ARRAY[16000]);
SELECT array_length(v::real[], 1), (v::real[])[16000] FROM vio_max;
DROP TABLE vio_max;

-- NULL handling
SELECT NULL::vector IS NULL AS null_vector, NULL::vector(3) IS NULL AS null_typmod;
SELECT vector_send(NULL) IS NULL AS send_null;
SELECT id, a IS NULL AS a_null, b IS NULL AS b_null FROM vio ORDER BY id;

-- Binary form: int16 dim, int16 unused, float4 x dim, network byte order.
SELECT vector_send('[1,2]');
SELECT vector_send('[-0]');
SELECT vector_send('[0.1,-2.5]');
SELECT vector_send('[1e-45,3.4028235e38,-1]');
SELECT length(vector_send(array_fill(1::real, ARRAY[16000])::vector)) AS bytes_16000;
-- binary equals the binary of the value read back from its text
SELECT vector_send(v) = vector_send(v::text::vector) AS same_bytes
FROM (VALUES ('[0.1,-0,1e-45]'::vector), ('[3.4028235e38,7]'::vector)) AS t(v);

-- Binary round trip through vector_recv: binary COPY out and back in, via a
-- file in the data directory (server-side COPY needs an absolute path).
CREATE FUNCTION vio_copy(query text, target text) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
	path text := current_setting('data_directory') || '/hierindex_vector_io.bin';
BEGIN
	EXECUTE format('COPY (%s) TO %L (FORMAT binary)', query, path);
	EXECUTE format('COPY %s FROM %L (FORMAT binary)', target, path);
END $$;
CREATE TABLE vio_copy (id int, a vector(3), b vector);
SELECT vio_copy('SELECT id, a, b FROM vio ORDER BY id', 'vio_copy');
SELECT * FROM vio_copy ORDER BY id;
SELECT count(*) AS identical FROM vio JOIN vio_copy USING (id)
WHERE vector_send(vio.a) IS NOT DISTINCT FROM vector_send(vio_copy.a)
  AND vector_send(vio.b) IS NOT DISTINCT FROM vector_send(vio_copy.b);
SELECT vio_copy('SELECT array_fill(-0.5::real, ARRAY[16000])::vector', 'vio_copy (b)');
SELECT array_length(b::real[], 1), (b::real[])[16000] FROM vio_copy WHERE id IS NULL;

-- Binary input built by hand: a bytea column's binary COPY field is its raw
-- bytes, so copying it into a vector column feeds those bytes to vector_recv.
CREATE TABLE vio_recv (v vector);
SELECT vio_copy($$SELECT '\x000300003f800000c0200000bdcccccd'::bytea
                  UNION ALL SELECT '\x0001000080000000'::bytea$$, 'vio_recv');
SELECT v FROM vio_recv;
-- into a vector(3) column (vector_recv sees the column's typmod)
SELECT vio_copy($$SELECT '\x000300000000000000000001ff7fffff'::bytea$$, 'vio (a)');
SELECT a FROM vio WHERE id IS NULL;

DROP FUNCTION vio_copy(text, text);
DROP TABLE vio, vio_copy, vio_recv;
