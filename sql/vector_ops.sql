-- Functions and operators of the vector type.  Every expected value is worked
-- out by hand in the comment beside the query.

-- ---------------------------------------------------------------------------
-- L2 distance <->: sqrt(sum (a_i - b_i)^2)
-- ---------------------------------------------------------------------------
-- (3^2 + 4^2 + 5^2) = 50, sqrt(50) = 7.0710678118654755
SELECT '[1,2,3]'::vector <-> '[4,6,8]' AS l2;
SELECT l2_distance('[1,2,3]', '[4,6,8]') AS l2;
-- the commutator gives the same value
SELECT '[4,6,8]'::vector <-> '[1,2,3]' AS l2;
-- 3-4-5 triangle: 5; identical vectors: 0
SELECT '[3,4]'::vector <-> '[0,0]' AS five, '[1,2,3]'::vector <-> '[1,2,3]' AS zero;
-- squared: 50
SELECT vector_l2_squared_distance('[1,2,3]', '[4,6,8]') AS l2_squared;
-- 20 dimensions (past the 8- and 16-wide SIMD blocks):
-- [1..20] against zeros: sum i^2 = 20*21*41/6 = 2870, sqrt(2870) = 53.5723809439155
SELECT ('[' || string_agg(i::text, ',') || ']')::vector
       <-> ('[' || string_agg('0', ',') || ']')::vector AS l2_20
FROM generate_series(1, 20) AS i;

-- ---------------------------------------------------------------------------
-- Inner product and <#> = -(inner product)
-- ---------------------------------------------------------------------------
-- 1*4 + 2*5 + 3*6 = 32
SELECT inner_product('[1,2,3]', '[4,5,6]') AS ip;
SELECT '[1,2,3]'::vector <#> '[4,5,6]' AS neg_ip;
SELECT vector_negative_inner_product('[1,2,3]', '[4,5,6]') AS neg_ip;
-- 1*(-4) + (-2)*5 + 3*6 = 4, so <#> = -4
SELECT inner_product('[1,-2,3]', '[-4,5,6]') AS ip, '[1,-2,3]'::vector <#> '[-4,5,6]' AS neg_ip;
-- orthogonal: 0
SELECT inner_product('[1,0]', '[0,1]') AS ip;
-- [1..20] . [1,1,...,1] = 210
SELECT inner_product(('[' || string_agg(i::text, ',') || ']')::vector,
                     ('[' || string_agg('1', ',') || ']')::vector) AS ip_20
FROM generate_series(1, 20) AS i;

-- ---------------------------------------------------------------------------
-- Cosine distance <=>: 1 - a.b / (|a| |b|)
-- ---------------------------------------------------------------------------
-- parallel 0, orthogonal 1, opposite 2
SELECT '[1,2]'::vector <=> '[2,4]' AS parallel,
       '[1,0]'::vector <=> '[0,1]' AS orthogonal,
       '[1,2]'::vector <=> '[-1,-2]' AS opposite;
SELECT cosine_distance('[1,2]', '[2,4]') AS parallel,
       cosine_distance('[1,0]', '[0,1]') AS orthogonal,
       cosine_distance('[1,2]', '[-1,-2]') AS opposite;
-- [1,1] vs [1,0]: 1 - 1/sqrt(2) = 0.29289321881345254
SELECT '[1,1]'::vector <=> '[1,0]' AS cos45;
-- [1,2,3] vs [3,2,1]: 1 - 10/(sqrt(14) sqrt(14)) = 4/14 = 0.2857142857142857
SELECT '[1,2,3]'::vector <=> '[3,2,1]' AS cos;
-- scale does not matter: [1..20] vs 2*[1..20] is 0
SELECT ('[' || string_agg(i::text, ',') || ']')::vector
       <=> ('[' || string_agg((2 * i)::text, ',') || ']')::vector AS cos_20
FROM generate_series(1, 20) AS i;
-- undefined for a zero vector on either side: NaN (as in pgvector)
SELECT '[0,0]'::vector <=> '[1,2]' AS zero_left,
       '[1,2]'::vector <=> '[0,0]' AS zero_right,
       '[0,0]'::vector <=> '[0,0]' AS both_zero;

-- ---------------------------------------------------------------------------
-- L1 distance <+>: sum |a_i - b_i|
-- ---------------------------------------------------------------------------
-- |1-4| + |2-0| + |3-8| = 3 + 2 + 5 = 10
SELECT '[1,2,3]'::vector <+> '[4,0,8]' AS l1;
SELECT l1_distance('[1,2,3]', '[4,0,8]') AS l1;
-- signs: |-1-1| + |2-(-2)| = 2 + 4 = 6
SELECT '[-1,2]'::vector <+> '[1,-2]' AS l1;
-- [1..20] against zeros: 210
SELECT ('[' || string_agg(i::text, ',') || ']')::vector
       <+> ('[' || string_agg('0', ',') || ']')::vector AS l1_20
FROM generate_series(1, 20) AS i;

-- ---------------------------------------------------------------------------
-- Dimension mismatch is an error for every two-vector function
-- ---------------------------------------------------------------------------
SELECT '[1,2,3]'::vector <-> '[1,2]';
SELECT '[1,2,3]'::vector <#> '[1,2]';
SELECT '[1,2,3]'::vector <=> '[1,2]';
SELECT '[1,2,3]'::vector <+> '[1,2]';
SELECT l2_distance('[1]', '[1,2]');
SELECT vector_l2_squared_distance('[1]', '[1,2]');
SELECT inner_product('[1]', '[1,2]');
SELECT vector_negative_inner_product('[1]', '[1,2]');
SELECT cosine_distance('[1]', '[1,2]');
SELECT l1_distance('[1]', '[1,2]');
SELECT '[1,2,3]'::vector + '[1,2]';
SELECT '[1,2,3]'::vector - '[1,2]';
SELECT '[1,2,3]'::vector * '[1,2]';

-- ---------------------------------------------------------------------------
-- vector_dims, vector_norm, l2_normalize
-- ---------------------------------------------------------------------------
SELECT vector_dims('[1,2,3]') AS three, vector_dims('[7]') AS one;
-- 3-4-5: 5; [1,1]: sqrt(2) = 1.4142135623730951; zero vector: 0
SELECT vector_norm('[3,4]') AS five, vector_norm('[1,1]') AS sqrt2, vector_norm('[0,0,0]') AS zero;
-- [3*2^70, 4*2^70]: the squares (9*2^140) overflow float4 but not double,
-- so the norm is exactly 5*2^70 = 5.902958103587057e+21
SELECT vector_norm('[3.541774862152234e21,4.722366482869645e21]') AS big;
-- [3,4]/5 = [0.6,0.8]; [0,-2]/2 = [0,-1]
SELECT l2_normalize('[3,4]') AS unit, l2_normalize('[0,-2]') AS axis;
-- the huge [3*2^70, 4*2^70] normalizes to the same [0.6,0.8]
SELECT l2_normalize('[3.541774862152234e21,4.722366482869645e21]') AS unit;
-- a zero vector stays zero
SELECT l2_normalize('[0,0,0]') AS zero;
-- the result has unit length (up to float4 rounding)
SELECT abs(vector_norm(l2_normalize('[1,2,3]')) - 1) < 1e-6 AS unit_length;

-- ---------------------------------------------------------------------------
-- subvector(v, start, count), start is 1-based
-- ---------------------------------------------------------------------------
SELECT subvector('[1,2,3,4,5]', 2, 3) AS middle,
       subvector('[1,2,3,4,5]', 1, 5) AS whole,
       subvector('[1,2,3,4,5]', 5, 1) AS last,
       subvector('[1,2,3,4,5]', 1, 1) AS first;
SELECT vector_dims(subvector('[1,2,3,4,5]', 2, 4)) AS four;
-- errors name the offending values
SELECT subvector('[1,2,3,4,5]', 0, 2);
SELECT subvector('[1,2,3,4,5]', -1, 2);
SELECT subvector('[1,2,3,4,5]', 1, 0);
SELECT subvector('[1,2,3,4,5]', 1, -3);
SELECT subvector('[1,2,3,4,5]', 4, 3);
SELECT subvector('[1,2,3,4,5]', 1, 6);
-- start + count does not wrap around in 32 bits
SELECT subvector('[1,2,3,4,5]', 2, 2147483647);
SELECT subvector('[1,2,3,4,5]', 2147483647, 2147483647);

-- ---------------------------------------------------------------------------
-- Element-wise +, -, *
-- ---------------------------------------------------------------------------
SELECT '[1,2,3]'::vector + '[4,5,6]' AS sum,
       '[1,2,3]'::vector - '[4,5,6]' AS difference,
       '[1,2,3]'::vector * '[4,5,6]' AS product;
-- 1.5*2 = 3, -2*0.25 = -0.5; 0.5 + 0.25 = 0.75; -1 - -1 = 0
SELECT '[1.5,-2]'::vector * '[2,0.25]' AS product,
       '[0.5,-1]'::vector + '[0.25,1]' AS sum,
       '[-1]'::vector - '[-1]' AS difference;
-- overflow to infinity is an error, for every operator
SELECT '[1,3e38]'::vector + '[1,3e38]';
SELECT '[-3e38]'::vector - '[3e38]';
SELECT '[2,1e20]'::vector * '[2,1e20]';
-- the largest finite float4 is fine
SELECT '[3e38]'::vector - '[3e38]' AS zero, '[1.5e38]'::vector + '[1.5e38]' = '[3e38]' AS no_overflow;
-- underflow: a nonzero times a nonzero that rounds to 0 is an error, as for
-- float4 (real * real) in PostgreSQL
SELECT '[1e-30]'::vector * '[1e-30]';
SELECT '1e-30'::real * '1e-30'::real;
-- a zero factor is not underflow
SELECT '[0,1e-30]'::vector * '[1e-30,0]' AS zeros;
-- a product in the subnormal range (about 1e-40) is kept, not flushed to 0
SELECT vector_norm('[1e-20]'::vector * '[1e-20]') > 0 AS subnormal_kept,
       vector_norm('[1e-20]'::vector * '[1e-20]') < 1e-39 AS is_subnormal;

-- ---------------------------------------------------------------------------
-- Comparisons: element-wise, then the shorter (prefix) first
-- ---------------------------------------------------------------------------
SELECT '[1,2,3]'::vector < '[1,2,4]' AS lt, '[1,2,3]'::vector <= '[1,2,4]' AS le,
       '[1,2,3]'::vector = '[1,2,4]' AS eq, '[1,2,3]'::vector <> '[1,2,4]' AS ne,
       '[1,2,3]'::vector >= '[1,2,4]' AS ge, '[1,2,3]'::vector > '[1,2,4]' AS gt;
SELECT '[1,2,3]'::vector < '[1,2,3]' AS lt, '[1,2,3]'::vector <= '[1,2,3]' AS le,
       '[1,2,3]'::vector = '[1,2,3]' AS eq, '[1,2,3]'::vector <> '[1,2,3]' AS ne,
       '[1,2,3]'::vector >= '[1,2,3]' AS ge, '[1,2,3]'::vector > '[1,2,3]' AS gt;
-- first element decides: [2] > [1,9,9]
SELECT '[2]'::vector > '[1,9,9]' AS gt, '[2]'::vector < '[1,9,9]' AS lt;
-- a prefix sorts first: [1,2] < [1,2,3], and they are not equal
SELECT '[1,2]'::vector < '[1,2,3]' AS lt, '[1,2]'::vector = '[1,2,3]' AS eq,
       '[1,2]'::vector <> '[1,2,3]' AS ne, '[1,2,3]'::vector > '[1,2]' AS gt;
-- an element difference outweighs the length: [1,3] > [1,2,3]
SELECT '[1,3]'::vector > '[1,2,3]' AS gt;
-- negatives
SELECT '[-1]'::vector < '[0]' AS lt, '[-2,5]'::vector < '[-1,0]' AS lt2;
-- -0 equals 0, as for real
SELECT '[0]'::vector = '[-0]' AS eq, '0'::real = '-0'::real AS real_eq;
SELECT vector_cmp('[1,2]', '[1,3]') AS minus_one, vector_cmp('[1,2]', '[1,2]') AS zero,
       vector_cmp('[1,3]', '[1,2]') AS one, vector_cmp('[1,2]', '[1,2,0]') AS prefix,
       vector_cmp('[1,2,0]', '[1,2]') AS longer;
SELECT vector_lt('[1]', '[2]'), vector_le('[2]', '[2]'), vector_eq('[2]', '[2]'),
       vector_ne('[2]', '[2]'), vector_ge('[1]', '[2]'), vector_gt('[3]', '[2]');

-- ---------------------------------------------------------------------------
-- btree: ORDER BY, DISTINCT, GROUP BY, an index used for equality
-- ---------------------------------------------------------------------------
CREATE TABLE vector_ops_t (id int, v vector);
INSERT INTO vector_ops_t VALUES
    (1, '[1,2,3]'), (2, '[1,2]'), (3, '[0,5]'), (4, '[1,2,3]'), (5, '[2]'),
    (6, '[1,2,4]'), (7, '[-1,100]'), (8, '[1,2]'), (9, NULL), (10, '[1,2,3,0]');
-- expected order: [-1,100] [0,5] [1,2] [1,2] [1,2,3] [1,2,3] [1,2,3,0] [1,2,4] [2] NULL
SELECT v FROM vector_ops_t ORDER BY v, id;
SELECT v FROM vector_ops_t ORDER BY v DESC NULLS LAST, id;
SELECT DISTINCT v FROM vector_ops_t ORDER BY v;
SELECT v, count(*) FROM vector_ops_t GROUP BY v ORDER BY v;
SELECT min(id), max(id) FROM vector_ops_t WHERE v = '[1,2,3]';
CREATE INDEX vector_ops_t_v ON vector_ops_t USING btree (v);
SET enable_seqscan = off;
SET enable_bitmapscan = off;
EXPLAIN (COSTS OFF) SELECT id FROM vector_ops_t WHERE v = '[1,2]';
SELECT id FROM vector_ops_t WHERE v = '[1,2]' ORDER BY id;
SELECT id FROM vector_ops_t WHERE v = '[1,2,3]' ORDER BY id;
SELECT id FROM vector_ops_t WHERE v = '[9,9]' ORDER BY id;
-- a range scan over the index, lengths mixed: [1,2] <= v < [2]
EXPLAIN (COSTS OFF) SELECT v FROM vector_ops_t WHERE v >= '[1,2]' AND v < '[2]' ORDER BY v;
SELECT v FROM vector_ops_t WHERE v >= '[1,2]' AND v < '[2]' ORDER BY v;
RESET enable_seqscan;
RESET enable_bitmapscan;
DROP TABLE vector_ops_t;

-- Distances between stored vectors: a k-NN join calls the same function with
-- one operand repeated, whose detoasted copy is kept between calls, keyed by
-- how the value is stored.  The type's storage is main, so a dense 1500-d
-- vector (row 1) stays in its row as it is and a mostly-zero one (row 2)
-- stays in its row compressed; after SET STORAGE external, rows 3 and 4 go
-- out of line (TOAST).  Every pair must equal the distance of in-memory
-- copies.
CREATE TABLE ops_toasted (id int, v vector(1500));
SELECT attstorage FROM pg_attribute
WHERE attrelid = 'ops_toasted'::regclass AND attname = 'v';
INSERT INTO ops_toasted
SELECT i, array_agg(CASE WHEN i = 2 AND d % 50 <> 0 THEN 0 ELSE sin(i * 1000 + d) END::real
					ORDER BY d)::vector(1500)
FROM generate_series(1, 2) i, generate_series(1, 1500) d GROUP BY i;
SELECT pg_relation_size(reltoastrelid) = 0 AS all_in_line
FROM pg_class WHERE relname = 'ops_toasted';
SELECT id, pg_column_size(v) < 1000 AS compressed FROM ops_toasted ORDER BY id;
ALTER TABLE ops_toasted ALTER COLUMN v SET STORAGE external;
INSERT INTO ops_toasted
SELECT i, array_agg(sin(i * 1000 + d)::real ORDER BY d)::vector(1500)
FROM generate_series(3, 4) i, generate_series(1, 1500) d GROUP BY i;
SELECT pg_relation_size(reltoastrelid) > 0 AS stored_out_of_line
FROM pg_class WHERE relname = 'ops_toasted';
SELECT a.id, b.id,
	   a.v <-> b.v = a.v::real[]::vector <-> b.v::real[]::vector AS l2,
	   a.v <#> b.v = a.v::real[]::vector <#> b.v::real[]::vector AS ip,
	   a.v <=> b.v = a.v::real[]::vector <=> b.v::real[]::vector AS cosine,
	   a.v <+> b.v = a.v::real[]::vector <+> b.v::real[]::vector AS l1,
	   round((a.v <-> b.v)::numeric, 3) AS l2_value
FROM ops_toasted a, ops_toasted b ORDER BY a.id, b.id;
DROP TABLE ops_toasted;
