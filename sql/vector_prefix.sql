-- Prefix functions for Matryoshka embeddings: mrl_truncate(v, dims
-- [, normalize]) and the three-argument distances f(a, b, dims).  Expected
-- values are worked out by hand in the comments; the prefix distances must
-- also equal, exactly, the two-argument functions on mrl_truncate'd vectors
-- (they are the same kernels on the first dims elements).

-- ---------------------------------------------------------------------------
-- mrl_truncate
-- ---------------------------------------------------------------------------
-- [3,4,12]: prefix 2 is [3,4]; unit length [0.6,0.8]; the whole vector has
-- norm 13: [3/13, 4/13, 12/13] = [0.23076923,0.30769232,0.9230769]
SELECT mrl_truncate('[3,4,12]', 2) AS p2,
       mrl_truncate('[3,4,12]', 2, true) AS p2_unit,
       mrl_truncate('[3,4,12]', 2, false) AS p2_explicit,
       mrl_truncate('[3,4,12]', 3) AS whole,
       mrl_truncate('[3,4,12]', 3, true) AS whole_unit,
       mrl_truncate('[3,4,12]', 1, true) AS first_unit,
       mrl_truncate('[-2,0,1]', 1, true) AS negative_unit;
SELECT vector_dims(mrl_truncate('[1,2,3,4,5]', 4)) AS four;
-- a zero prefix is fine without normalising
SELECT mrl_truncate('[0,0,5]', 2) AS zero_prefix;
-- normalising equals l2_normalize of the prefix, and has unit length
SELECT mrl_truncate('[1,2,3,4,5]', 3, true) = l2_normalize(mrl_truncate('[1,2,3,4,5]', 3)) AS same,
       abs(vector_norm(mrl_truncate('[1,2,3,4,5]', 4, true)) - 1) < 1e-6 AS unit_length;
-- named arguments (NORMALIZE is an SQL keyword, hence the quotes)
SELECT mrl_truncate(v => '[3,4,12]', dims => 2, "normalize" => true) AS named;
-- errors: the prefix length is checked against 1 and the dimension
SELECT mrl_truncate('[1,2,3]', 0);
SELECT mrl_truncate('[1,2,3]', -1, true);
SELECT mrl_truncate('[1,2,3]', 4);
SELECT mrl_truncate('[1,2,3]', 2147483647);
SELECT mrl_truncate('[1,2,3]', -2147483648);
-- normalising a zero prefix has no direction: an error
SELECT mrl_truncate('[0,0,5]', 2, true);
-- STRICT: NULL in, NULL out
SELECT mrl_truncate(NULL, 2) IS NULL AS v_null,
       mrl_truncate('[1,2]', NULL) IS NULL AS dims_null,
       mrl_truncate('[1,2]', 1, NULL) IS NULL AS normalize_null;

-- Long vectors stored out of line (12 KB does not fit a page) and,
-- after SET STORAGE extended, compressed: only the prefix is fetched, and it
-- must be the right one.  Row 1: element i = i; row 2: 3000 times 0.5
-- (compresses well).
CREATE TABLE mrl_long (id int, v vector(3000));
INSERT INTO mrl_long
SELECT 1, array_agg(i ORDER BY i)::real[]::vector FROM generate_series(1, 3000) AS i;
ALTER TABLE mrl_long ALTER COLUMN v SET STORAGE extended;
INSERT INTO mrl_long
SELECT 2, array_fill(0.5::real, ARRAY[3000])::vector;
-- row 1 lives out of line (the TOAST table has pages), row 2 is compressed
-- (to far fewer than the 12008 bytes of the value)
SELECT pg_relation_size(reltoastrelid) > 0 AS toasted FROM pg_class WHERE relname = 'mrl_long';
SELECT id, pg_column_size(v) < 1000 AS compressed FROM mrl_long ORDER BY id;
SELECT id, mrl_truncate(v, 5) AS p5, vector_dims(mrl_truncate(v, 2999)) AS dims_2999
FROM mrl_long ORDER BY id;
-- the whole vector comes back unchanged
SELECT id, mrl_truncate(v, 3000) = v AS whole FROM mrl_long ORDER BY id;
-- [1..2000] truncated to 2000 has sum 2001000
SELECT (SELECT sum(x) FROM unnest(mrl_truncate(v, 2000)::real[]) AS x) AS sum_2000
FROM mrl_long WHERE id = 1;
-- [0.5 x 4] normalised is [0.5 x 4] (norm 1)
SELECT mrl_truncate(v, 4, true) AS unit4 FROM mrl_long WHERE id = 2;
SELECT mrl_truncate(v, 3001) FROM mrl_long WHERE id = 1;
-- the prefix distances on out-of-line operands (self-join: the same TOAST
-- value on both sides and across rows)
-- l2 over 3 dims between [1,2,3] and [0.5,0.5,0.5]: sqrt(0.25 + 2.25 + 6.25) = sqrt(8.75) = 2.958039891549808
SELECT a.id, b.id, l2_distance(a.v, b.v, 3) AS l2_3, inner_product(a.v, b.v, 4) AS ip_4
FROM mrl_long a, mrl_long b ORDER BY a.id, b.id;
DROP TABLE mrl_long;

-- ---------------------------------------------------------------------------
-- Prefix distances, by hand: a = [3,4,0,2], b = [4,3,5,0]
-- ---------------------------------------------------------------------------
-- L2: dims 1: 1; dims 2: sqrt(2) = 1.4142135623730951;
--     dims 3: sqrt(27) = 5.196152422706632; dims 4: sqrt(31) = 5.5677643628300215
SELECT l2_distance('[3,4,0,2]', '[4,3,5,0]', 1) AS l2_1,
       l2_distance('[3,4,0,2]', '[4,3,5,0]', 2) AS l2_2,
       l2_distance('[3,4,0,2]', '[4,3,5,0]', 3) AS l2_3,
       l2_distance('[3,4,0,2]', '[4,3,5,0]', 4) AS l2_4,
       l2_distance('[3,4,0,2]', '[4,3,5,0]') AS l2_whole;
-- inner product: dims 1: 12; dims 2, 3, 4: 24
SELECT inner_product('[3,4,0,2]', '[4,3,5,0]', 1) AS ip_1,
       inner_product('[3,4,0,2]', '[4,3,5,0]', 2) AS ip_2,
       inner_product('[3,4,0,2]', '[4,3,5,0]', 3) AS ip_3,
       inner_product('[3,4,0,2]', '[4,3,5,0]', 4) AS ip_4;
-- cosine, each prefix as its own vector: dims 1: [3] vs [4] is 0;
-- dims 2: 1 - 24/(5*5) = 0.04; dims 3: 1 - 24/sqrt(25*50) = 0.32117749006091445;
-- dims 4: 1 - 24/sqrt(29*50) = 0.36972912227333177
SELECT cosine_distance('[3,4,0,2]', '[4,3,5,0]', 1) AS cos_1,
       round(cosine_distance('[3,4,0,2]', '[4,3,5,0]', 2)::numeric, 12) AS cos_2,
       round(cosine_distance('[3,4,0,2]', '[4,3,5,0]', 3)::numeric, 12) AS cos_3,
       round(cosine_distance('[3,4,0,2]', '[4,3,5,0]', 4)::numeric, 12) AS cos_4;
-- L1: dims 1: 1; dims 2: 2; dims 3: 7; dims 4: 9
SELECT l1_distance('[3,4,0,2]', '[4,3,5,0]', 1) AS l1_1,
       l1_distance('[3,4,0,2]', '[4,3,5,0]', 2) AS l1_2,
       l1_distance('[3,4,0,2]', '[4,3,5,0]', 3) AS l1_3,
       l1_distance('[3,4,0,2]', '[4,3,5,0]', 4) AS l1_4;
-- cosine of a zero prefix is undefined: NaN, as for whole zero vectors
SELECT cosine_distance('[0,0,1]', '[1,0,1]', 2) AS zero_prefix,
       cosine_distance('[0,0]', '[1,0]') AS zero_whole;

-- Equal, exactly, to the two-argument functions on the truncated vectors:
-- 60 pseudo-random 40-d vectors, every pair, prefixes of 1, 7, 8, 9, 16, 17,
-- 31, 33 and 40 elements (inside and across the 8- and 16-wide SIMD blocks).
SELECT setseed(0.5);
CREATE TABLE mrl_rand (id int, v vector(40));
INSERT INTO mrl_rand
SELECT i, (SELECT array_agg(random() * 2 - 1) FROM generate_series(1, 40) AS j WHERE i > 0)::real[]::vector
FROM generate_series(1, 60) AS i;
SELECT count(*) AS comparisons,
       count(*) FILTER (WHERE l2_distance(a.v, b.v, d) <> l2_distance(mrl_truncate(a.v, d), mrl_truncate(b.v, d))) AS l2_differ,
       count(*) FILTER (WHERE inner_product(a.v, b.v, d) <> inner_product(mrl_truncate(a.v, d), mrl_truncate(b.v, d))) AS ip_differ,
       count(*) FILTER (WHERE cosine_distance(a.v, b.v, d) <> cosine_distance(mrl_truncate(a.v, d), mrl_truncate(b.v, d))) AS cos_differ,
       count(*) FILTER (WHERE l1_distance(a.v, b.v, d) <> l1_distance(mrl_truncate(a.v, d), mrl_truncate(b.v, d))) AS l1_differ,
       count(*) FILTER (WHERE a.v <-> b.v <> l2_distance(a.v, b.v, 40)) AS whole_differ,
       -- the normalised prefixes give the same cosine up to float4 rounding
       count(*) FILTER (WHERE abs(cosine_distance(a.v, b.v, d)
                                  - cosine_distance(mrl_truncate(a.v, d, true), mrl_truncate(b.v, d, true))) > 1e-6) AS unit_cos_differ,
       -- and the inner product of unit prefixes is 1 - cosine distance
       count(*) FILTER (WHERE abs(1 - cosine_distance(a.v, b.v, d)
                                  - inner_product(mrl_truncate(a.v, d, true), mrl_truncate(b.v, d, true))) > 1e-6) AS unit_ip_differ
FROM mrl_rand a, mrl_rand b, unnest(ARRAY[1, 7, 8, 9, 16, 17, 31, 33, 40]) AS d;
-- a prefix distance is not the whole distance (the test above is not vacuous)
SELECT count(*) FILTER (WHERE l2_distance(a.v, b.v, 8) < a.v <-> b.v) AS l2_8_smaller
FROM mrl_rand a, mrl_rand b WHERE a.id < b.id;
DROP TABLE mrl_rand;

-- ---------------------------------------------------------------------------
-- Errors of the prefix distances
-- ---------------------------------------------------------------------------
SELECT l2_distance('[1,2,3]', '[4,5,6]', 0);
SELECT inner_product('[1,2,3]', '[4,5,6]', -5);
SELECT cosine_distance('[1,2,3]', '[4,5,6]', 4);
SELECT l1_distance('[1,2,3]', '[4,5,6]', 2147483647);
-- different dimensions are an error even when both are long enough, as for
-- the two-argument functions
SELECT l2_distance('[1,2,3]', '[4,5]', 2);
SELECT cosine_distance('[1,2]', '[4,5,6]', 1);
-- a bad prefix length is reported first
SELECT inner_product('[1,2,3]', '[4,5]', 0);
-- STRICT: NULL in, NULL out
SELECT l2_distance(NULL, '[1,2]', 1) IS NULL AS a_null,
       inner_product('[1,2]', NULL, 1) IS NULL AS b_null,
       cosine_distance('[1,2]', '[1,2]', NULL) IS NULL AS dims_null,
       l1_distance(NULL, NULL, NULL) IS NULL AS all_null;

-- All of them IMMUTABLE, STRICT and PARALLEL SAFE (expression indexes,
-- parallel plans).
SELECT p.oid::regprocedure AS function, p.provolatile, p.proisstrict, p.proparallel
FROM pg_proc p
WHERE p.proname IN ('mrl_truncate', 'l2_distance', 'inner_product', 'cosine_distance', 'l1_distance')
  AND p.pronargs = 3
ORDER BY 1::text;

-- ---------------------------------------------------------------------------
-- Expression index on a prefix, and SQL re-ranking
-- ---------------------------------------------------------------------------
-- 40 hand-made 6-d rows: the first three elements large, the last three
-- small (Matryoshka-like).  For the query q = [2,-1,3,0.5,-0.5,0.2], worked
-- out in double precision:
--   cosine on the 3-d prefix:  9 4 11 20 6 32 19 29 39 36 (0.0144 0.0854 0.1178 0.1452 0.2421 ...)
--   cosine on the whole rows:  9 11 20 4 6 32 19 29 (0.0554 0.1372 0.1709 0.1731 0.4073 ...)
-- so re-ranking a shortlist of the 10 nearest prefixes by the whole
-- distance gives 9 11 20 4 6, the exact answer.
CREATE TABLE mrl_items (id int, embedding vector(6));
INSERT INTO mrl_items VALUES
	(1, '[-1.8,-3.5,1.5,-0.9,0.1,-0.3]'),
	(2, '[-4.4,0.1,-4.6,-0.1,-0.9,-0.8]'),
	(3, '[-0.8,3.3,-3.8,-0.6,0.3,0.9]'),
	(4, '[0.8,-1.0,4.8,-0.9,0.7,-0.4]'),
	(5, '[-3.6,-3.8,-1.9,0.6,-0.6,0.2]'),
	(6, '[1.4,-1.3,0.5,-0.9,-0.9,-0.6]'),
	(7, '[1.8,-0.7,-1.9,0.2,-0.1,-0.4]'),
	(8, '[2.9,2.0,-2.6,0.1,0.1,0.8]'),
	(9, '[2.3,-2.1,4.8,-0.8,-0.2,0.5]'),
	(10, '[-3.5,-0.1,-4.6,0.3,0.5,0.1]'),
	(11, '[3.8,-1.9,2.0,0.2,0.2,-0.1]'),
	(12, '[3.4,4.4,-0.3,0.3,-0.9,0.4]'),
	(13, '[1.5,4.9,3.2,-0.4,-0.2,0.3]'),
	(14, '[-4.8,-0.4,-3.3,-0.8,-0.9,0.5]'),
	(15, '[-3.7,-2.5,-1.1,0.7,-0.8,-0.1]'),
	(16, '[0.5,3.8,3.2,0.7,-0.4,-0.2]'),
	(17, '[-1.4,3.8,4.6,-0.7,-0.6,-0.5]'),
	(18, '[-2.7,-0.2,0.9,-0.5,-1.0,-0.2]'),
	(19, '[-1.3,0.7,4.5,0.4,0.0,0.2]'),
	(20, '[1.8,-4.5,4.0,0.6,0.7,0.6]'),
	(21, '[-1.1,-1.0,-4.0,0.3,-0.9,-0.9]'),
	(22, '[-2.9,-3.4,-1.6,-0.9,-1.0,-0.7]'),
	(23, '[-4.0,-1.4,-4.7,0.7,0.2,-0.7]'),
	(24, '[-2.5,-1.5,-1.4,-0.8,0.7,1.0]'),
	(25, '[-0.3,-0.2,-4.1,-0.8,-0.3,-0.5]'),
	(26, '[3.3,-3.4,-4.8,0.9,0.1,-0.7]'),
	(27, '[0.4,-4.7,0.3,1.0,0.7,0.4]'),
	(28, '[-2.4,-1.3,-3.3,0.5,0.1,0.6]'),
	(29, '[-1.7,-2.8,3.1,1.0,0.7,0.6]'),
	(30, '[3.2,2.4,-2.7,0.0,-0.3,-0.9]'),
	(31, '[-4.7,-2.2,-2.4,0.4,0.9,-0.1]'),
	(32, '[4.4,4.9,4.6,-0.3,-0.6,-0.5]'),
	(33, '[-3.0,-3.0,1.2,0.8,0.7,-0.0]'),
	(34, '[1.5,3.0,-4.2,0.3,0.8,0.6]'),
	(35, '[2.5,-0.2,-3.2,0.6,-0.3,0.6]'),
	(36, '[4.7,-1.0,-1.0,0.9,0.4,-0.7]'),
	(37, '[-3.7,-3.5,4.0,0.6,-0.7,0.7]'),
	(38, '[4.8,1.6,-1.5,0.1,-0.7,-1.0]'),
	(39, '[4.7,1.5,0.3,0.9,-0.1,0.7]'),
	(40, '[3.3,-2.9,-2.5,-0.4,-0.5,0.2]');

-- An hnsw index needs a known dimension: the function alone returns a
-- vector without one, so the index expression casts to vector(3).
CREATE INDEX mrl_items_prefix ON mrl_items
	USING hnsw ((mrl_truncate(embedding, 3, true)) vector_cosine_ops);
CREATE INDEX mrl_items_prefix ON mrl_items
	USING hnsw ((mrl_truncate(embedding, 3, true)::vector(3)) vector_cosine_ops);
-- a typmod that does not match the prefix length fails at the first row
CREATE INDEX mrl_items_bad ON mrl_items
	USING hnsw ((mrl_truncate(embedding, 3, true)::vector(4)) vector_cosine_ops);

SET enable_seqscan = off;
EXPLAIN (COSTS OFF)
SELECT id FROM mrl_items
ORDER BY mrl_truncate(embedding, 3, true)::vector(3) <=> '[2,-1,3]' LIMIT 5;
-- 9 4 11 20 6: the prefix order
SELECT id, round((mrl_truncate(embedding, 3, true)::vector(3) <=> '[2,-1,3]')::numeric, 4) AS prefix_distance
FROM mrl_items
ORDER BY mrl_truncate(embedding, 3, true)::vector(3) <=> '[2,-1,3]' LIMIT 5;
-- a query vector can be truncated in the same way: mrl_truncate of a
-- constant is folded to a constant, so the index is still used
EXPLAIN (COSTS OFF)
SELECT id FROM mrl_items
ORDER BY mrl_truncate(embedding, 3, true)::vector(3) <=> mrl_truncate('[2,-1,3,0.5,-0.5,0.2]', 3) LIMIT 5;

-- Two-step re-ranking: a shortlist of 10 by the prefix (through the
-- index), then the whole distance in the outer query.  9 11 20 4 6.
EXPLAIN (COSTS OFF)
SELECT id FROM (
	SELECT id, embedding FROM mrl_items
	ORDER BY mrl_truncate(embedding, 3, true)::vector(3) <=> mrl_truncate('[2,-1,3,0.5,-0.5,0.2]', 3)
	LIMIT 10
) AS shortlist
ORDER BY embedding <=> '[2,-1,3,0.5,-0.5,0.2]' LIMIT 5;
SELECT id, round((embedding <=> '[2,-1,3,0.5,-0.5,0.2]')::numeric, 4) AS distance FROM (
	SELECT id, embedding FROM mrl_items
	ORDER BY mrl_truncate(embedding, 3, true)::vector(3) <=> mrl_truncate('[2,-1,3,0.5,-0.5,0.2]', 3)
	LIMIT 10
) AS shortlist
ORDER BY embedding <=> '[2,-1,3,0.5,-0.5,0.2]' LIMIT 5;
-- the same rows as the exact answer from a sequential scan
RESET enable_seqscan;
SET enable_indexscan = off;
SET enable_bitmapscan = off;
SELECT id FROM mrl_items ORDER BY embedding <=> '[2,-1,3,0.5,-0.5,0.2]' LIMIT 5;
-- and the prefix order without the index, through cosine_distance(a, b, 3)
SELECT id FROM mrl_items ORDER BY cosine_distance(embedding, '[2,-1,3,0.5,-0.5,0.2]', 3) LIMIT 5;
RESET enable_indexscan;
RESET enable_bitmapscan;

-- Rows inserted after the build go through the same expression; a row
-- whose prefix is zero cannot be normalised and is refused.
INSERT INTO mrl_items VALUES (41, '[2,-1,3,9,9,9]');
SET enable_seqscan = off;
SELECT id FROM mrl_items
ORDER BY mrl_truncate(embedding, 3, true)::vector(3) <=> '[2,-1,3]' LIMIT 2;
RESET enable_seqscan;
INSERT INTO mrl_items VALUES (42, '[0,0,0,1,1,1]');
DROP TABLE mrl_items;
