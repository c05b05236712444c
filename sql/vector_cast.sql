--
-- vector_cast: casts between vector and arrays, and the typmod cast.
-- (Errors live in vector_errors.)
--

-- integer[] -> vector: exact up to 2^24, then rounded to the nearest float4
SELECT '{1,2,3}'::int[]::vector;
SELECT '{0,-7,16777216,16777217,2147483647,-2147483648}'::int[]::vector;
-- real[] -> vector keeps every bit, including -0 and denormals
SELECT '{1.5,-0,1e-45,3.4028235e38,0.1}'::real[]::vector;
-- double precision[] -> vector rounds to nearest float4; tiny values flush
SELECT '{0.1,1.0000000596046448,1e-50,-3.4028235e38,123456789.123}'::float8[]::vector;
-- numeric[] -> vector rounds the exact decimal once
SELECT '{0.1,3.14159265358979,-7,1e-40,16777217.5}'::numeric[]::vector;
-- the array's lower bound does not matter
SELECT '[0:2]={1,2,3}'::int[]::vector AS lower_bound_0;
SELECT '[5:6]={2.5,3.5}'::float8[]::vector AS lower_bound_5;
-- ARRAY[] constructors
SELECT ARRAY[1,2]::vector AS int_ctor, ARRAY[1.25,2]::vector AS numeric_ctor,
       ARRAY[1.25::float8,2]::vector AS float8_ctor, ARRAY[1.25::real,2]::vector AS real_ctor;

-- vector -> real[] (implicit), double precision[], integer[], numeric[]
SELECT '[1,2.5,-0.03]'::vector::real[];
SELECT '[0.1,-0,1e-45]'::vector::real[] AS exact_float4;
SELECT '[1,-2.5,0.1]'::vector::float8[];
-- integer: nearest, ties to even (as real -> integer)
SELECT '[1.5,2.5,-1.5,-2.5,0.4999,-0.6,7]'::vector::int[];
SELECT '[2147483520,-2147483648,-0]'::vector::int[] AS int_limits;
-- numeric: the shortest decimal that reads back as the same float4
SELECT '[0.1,-0,3.1415927,-250,1e-10]'::vector::numeric[];
SELECT '[3.4028235e38]'::vector::numeric[] AS float4_max;
SELECT '[1e-45]'::vector::numeric[] AS float4_min_denormal;

-- round trips (numeric has no -0, so -0 comes back as 0: see above)
SELECT v::real[]::vector::text = v::text AS real_round_trip,
       v::float8[]::vector::text = v::text AS float8_round_trip,
       v::numeric[]::vector::text = v::text AS numeric_round_trip
FROM (VALUES ('[0.1,-0.2,3.4028235e+38,1e-45]'::vector),
             ('[1.0000001,16777216,-2.7182817]'::vector)) AS t(v);

-- typmod through casts
SELECT '{1,2,3}'::int[]::vector(3) AS int_typmod;
SELECT '{1,2}'::real[]::vector(2) AS real_typmod;
SELECT '{1,2,3,4}'::float8[]::vector(4) AS float8_typmod;
SELECT '{1.5}'::numeric[]::vector(1) AS numeric_typmod;
SELECT '[1,2,3]'::vector::vector(3) AS vector_typmod;
SELECT ('[1,2,3]'::vector(3))::vector AS drop_typmod;
SELECT CAST('[4,5]' AS vector(2)) AS cast_syntax;

-- the implicit cast vector -> real[] at work: a function taking real[]
CREATE FUNCTION vcast_len(real[]) RETURNS int LANGUAGE sql AS 'SELECT array_length($1, 1)';
SELECT vcast_len('[1,2,3]'::vector) AS implicit_real_array;
DROP FUNCTION vcast_len(real[]);

-- assignment casts into typed columns
CREATE TABLE vcast (id int, v vector(3), r real[], f float8[]);
INSERT INTO vcast (id, v) VALUES (1, ARRAY[1,2,3]);
INSERT INTO vcast (id, v) VALUES (2, ARRAY[1.5,2.25,-3]);
INSERT INTO vcast (id, v) VALUES (3, ARRAY[0.5::real,1,2]);
INSERT INTO vcast (id, v) VALUES (4, ARRAY[0.125::float8,1e-3,1e3]);
INSERT INTO vcast (id, v) VALUES (5, '{7,8,9}'::int[]);
INSERT INTO vcast (id, v) SELECT 6, array_agg(i) FROM generate_series(10, 12) AS i;
UPDATE vcast SET v = ARRAY[-1,-2,-3] WHERE id = 5;
-- vector into real[] (implicit) and float8[] (explicit, needs the cast)
UPDATE vcast SET r = v, f = v::float8[] WHERE id IN (2, 4);
SELECT * FROM vcast ORDER BY id;
DROP TABLE vcast;

-- NULL in, NULL out
SELECT NULL::int[]::vector IS NULL AS a, NULL::real[]::vector IS NULL AS b,
       NULL::float8[]::vector IS NULL AS c, NULL::numeric[]::vector IS NULL AS d,
       NULL::vector::real[] IS NULL AS e, NULL::vector::float8[] IS NULL AS f,
       NULL::vector::int[] IS NULL AS g, NULL::vector::numeric[] IS NULL AS h,
       NULL::vector::vector(3) IS NULL AS i;

-- the cast catalogue: contexts as in pgvector
SELECT castsource::regtype, casttarget::regtype,
       CASE castcontext WHEN 'i' THEN 'implicit' WHEN 'a' THEN 'assignment' ELSE 'explicit' END AS context
FROM pg_cast
WHERE castsource = 'vector'::regtype OR casttarget = 'vector'::regtype
ORDER BY castsource::regtype::text, casttarget::regtype::text;
