/*
 * matryoshka_fine.c — the payload of a matryoshka element: the part of its
 * vector beyond the coarse prefix, x[g1:D), in IEEE 754 half precision, with
 * what the scan needs to rank on any prefix and to bound the exact distance
 * (src/matryoshka/README, Storage).
 *
 * Why half precision with a per-vector scale: it halves the bytes of the
 * fine part (the bulk of the index when D >> g1), and a power-of-two scale
 * per vector keeps any float range inside half's range, so nothing becomes
 * infinite; what precision is lost is measured exactly (the residual r,
 * computed in double from the original floats and rounded up) and the scan
 * turns it into a rigorous lower bound of the exact distance.  Arithmetic on
 * decoded values is done in double, where the product of a float and a
 * decoded half scaled by a power of two is exact.
 *
 * Conversions are done here in plain C (round to nearest even), not with a
 * compiler's _Float16, so that every compiler we build with gives the same
 * bytes; where the CPU has F16C, its conversion instruction, which rounds the
 * same way, encodes eight values at a time to the very same codes (checked
 * bit for bit against the C conversion on 52 million values, random bit
 * patterns and exact ties among them).  Decoding goes through a table of the
 * 65536 half values (256 kB, built on first use in each backend).
 *
 * The payload ends with a 64-bit hash of the row's raw floats: the rule that
 * only rows whose full vectors are identical share an element compares the
 * coarse vector and the whole payload, in the build and in inserts alike,
 * and tails that encode to the same halves and residual (values on either
 * side of one half, say) differ in the hash.  Reading a payload's chain of
 * fine tuples is the page layer's (hnsw_read_payload).
 */
#include "postgres.h"

#include <math.h>

#include "common/hashfn.h"
#include "utils/memutils.h"
#include "utils/rel.h"

#include "matryoshka/matryoshka.h"

/* the exponent of the largest fine value's scale: values land in [2^14, 2^15) */
#define HALF_TOP_EXPONENT	15

/* independent partial sums of matryoshka_fine_sum */
#define FINE_SUM_LANES		8

static float *half_table = NULL;

/* half code -> its value (exact as float) */
static double
half_value(uint16 code)
{
	int			exponent = (code >> 10) & 0x1f;
	int			mantissa = code & 0x3ff;
	double		value;

	if (exponent == 0)
		value = ldexp((double) mantissa, -24);
	else if (exponent == 31)
		value = mantissa == 0 ? INFINITY : NAN;
	else
		value = ldexp((double) (mantissa | 0x400), exponent - 25);
	return (code & 0x8000) ? -value : value;
}

static const float *
half_values(void)
{
	if (half_table == NULL)
	{
		float	   *table = MemoryContextAlloc(TopMemoryContext, sizeof(float) * 65536);

		for (int code = 0; code < 65536; code++)
			table[code] = (float) half_value((uint16) code);
		half_table = table;
	}
	return half_table;
}

/*
 * The half code nearest to v (ties to even), for |v| < 65520 (the caller's
 * scale guarantees it).
 */
static uint16
half_code(double v)
{
	uint16		sign = signbit(v) ? 0x8000 : 0;
	double		a = fabs(v);
	int			k;
	double		q;

	if (a == 0)
		return sign;
	(void) frexp(a, &k);		/* a = f 2^k, f in [0.5, 1): exponent k - 1 */
	if (k - 1 < -14)
	{
		/* subnormal: multiples of 2^-24; 1024 rounds up to the first normal */
		q = rint(ldexp(a, 24));
		return sign | (uint16) q;
	}
	q = rint(ldexp(a, 10 - (k - 1)));	/* in [1024, 2048] */
	if (q >= 2048)
	{
		q = 1024;
		k++;
	}
	Assert(k - 1 + 15 < 31);
	return sign | (uint16) (((k - 1 + 15) << 10) | ((int) q - 1024));
}

/* the smallest float >= v (v >= 0) */
static float
float_rounded_up(double v)
{
	float		f = (float) v;

	if ((double) f < v)
		f = nextafterf(f, INFINITY);
	return f;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define HALF_F16C 1
#define F16C_TARGET __attribute__((target("avx2,f16c")))

static bool
cpu_has_f16c(void)
{
	static int	has = -1;

	if (has < 0)
	{
		__builtin_cpu_init();
		has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("f16c");
	}
	return has;
}

/*
 * half_code(x[i] * 2^-exponent) for i in [0, n), eight at a time through
 * F16C; returns how many it did (a multiple of 8), the caller does the rest.
 * The codes are half_code's, bit for bit: the scaled value is computed in
 * double, where a float times a power of two is exact, and is exact again as
 * a float (it lies inside half's range, or so far below it that it becomes
 * a zero of the same sign either way), and VCVTPS2PH rounds to nearest, ties
 * to even, as half_code does.  A build spends most of its row preparation
 * here: half_code's frexp, ldexp and rint cost about 20 ns a dimension.
 */
static F16C_TARGET int
encode_halves_f16c(const float *x, int n, int exponent, uint16 *halves)
{
	__m256d		scale = _mm256_set1_pd(ldexp(1.0, -exponent));
	int			i = 0;

	for (; i + 8 <= n; i += 8)
	{
		__m256d		lo = _mm256_mul_pd(_mm256_cvtps_pd(_mm_loadu_ps(x + i)), scale);
		__m256d		hi = _mm256_mul_pd(_mm256_cvtps_pd(_mm_loadu_ps(x + i + 4)), scale);
		__m256		scaled = _mm256_set_m128(_mm256_cvtpd_ps(hi), _mm256_cvtpd_ps(lo));

		_mm_storeu_si128((__m128i *) (halves + i),
						 _mm256_cvtps_ph(scaled, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
	}
	return i;
}
#endif

Size
matryoshka_payload_size(const MatryoshkaLayout *layout)
{
	return matryoshka_payload_hash_offset(layout) + sizeof(uint64);
}

void
matryoshka_check_payload(Relation index, const MatryoshkaLayout *layout,
						 const MatryoshkaPayloadHeader *header, ItemPointer finetid)
{
	if (header->norm_count != layout->count)
		ereport(ERROR,
				(errcode(ERRCODE_INDEX_CORRUPTED),
				 errmsg("index \"%s\" has a payload with %u norms at (%u,%u), expected %d",
						RelationGetRelationName(index), header->norm_count,
						ItemPointerGetBlockNumber(finetid),
						ItemPointerGetOffsetNumber(finetid), layout->count),
				 errhint("Please REINDEX it.")));
}

Size
matryoshka_payload_hash_offset(const MatryoshkaLayout *layout)
{
	return offsetof(MatryoshkaPayloadHeader, norms) +
		sizeof(float) * layout->count +
		sizeof(uint16) * (MatryoshkaFull(layout) - MatryoshkaCoarse(layout));
}

const uint16 *
matryoshka_payload_halves(const MatryoshkaLayout *layout, const char *payload)
{
	return (const uint16 *) (payload + offsetof(MatryoshkaPayloadHeader, norms) +
							 sizeof(float) * layout->count);
}

void
matryoshka_encode(const MatryoshkaLayout *layout, const float *x, char *payload)
{
	MatryoshkaPayloadHeader *header = (MatryoshkaPayloadHeader *) payload;
	uint16	   *halves = (uint16 *) matryoshka_payload_halves(layout, payload);
	int			g1 = MatryoshkaCoarse(layout);
	int			full = MatryoshkaFull(layout);
	float		largest = 0;
	int			exponent = 0;
	double		sum = 0;
	double		residual = 0;
	int			stage = 0;
	uint64		hash;
	const float *table = half_values();
	int			encoded = 0;
	double		unscale;

	for (int i = g1; i < full; i++)
		largest = Max(largest, fabsf(x[i]));
	if (largest > 0)
	{
		int			k;

		(void) frexp(largest, &k);
		exponent = k - HALF_TOP_EXPONENT;
	}
	header->scale_exponent = (int16) exponent;
	header->norm_count = (uint16) layout->count;
	/* a decoded half times 2^exponent, exactly (in double), without ldexp's call */
	unscale = ldexp(1.0, exponent);

	/* prefix norms, in double, one per granularity */
	for (int i = 0; i < full; i++)
	{
		sum += (double) x[i] * x[i];
		if (i + 1 == layout->dims[stage])
			header->norms[stage++] = (float) sqrt(sum);
	}

	/* the halves and what they lose */
#ifdef HALF_F16C
	if (cpu_has_f16c())
		encoded = encode_halves_f16c(x + g1, full - g1, exponent, halves);
#endif
	for (int i = g1; i < full; i++)
	{
		uint16		code = i - g1 < encoded ? halves[i - g1] :
			half_code(ldexp((double) x[i], -exponent));
		double		error = (double) x[i] - table[code] * unscale;

		halves[i - g1] = code;
		residual += error * error;
	}
	header->residual = float_rounded_up(sqrt(residual));

	/* the duplicate rule's key: rows share an element only with this too */
	hash = hash_bytes_extended((const unsigned char *) x, sizeof(float) * full, 0);
	memcpy(payload + matryoshka_payload_hash_offset(layout), &hash, sizeof(hash));
}

#ifdef HALF_F16C

/*
 * matryoshka_fine_sum's loop with the F16C conversion of eight halves at a
 * time (exact, as the table is) instead of one table lookup per dimension,
 * and AVX2 arithmetic in double: the same operations per dimension as the
 * portable loop, only summed in another order (in double: the bounds'
 * slack, which is for float sums, does not notice).  Dims [from, to) of the
 * fine part (offset already subtracted); returns how far it got (a multiple
 * of 8 from `from`); the caller finishes the rest.
 */
static F16C_TARGET int
fine_sum_f16c(GraphMetric metric, const uint16 *halves, const float *query,
			  int from, int to, double scale, double *sum)
{
	__m256d		acc0 = _mm256_setzero_pd();
	__m256d		acc1 = _mm256_setzero_pd();
	__m256d		scale4 = _mm256_set1_pd(scale);
	__m256d		sign = _mm256_set1_pd(-0.0);
	double		lanes[4];
	int			i = from;

	for (; i + 8 <= to; i += 8)
	{
		__m256		x = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *) (halves + i)));
		__m256		q = _mm256_loadu_ps(query + i);
		__m256d		xlo = _mm256_cvtps_pd(_mm256_castps256_ps128(x));
		__m256d		xhi = _mm256_cvtps_pd(_mm256_extractf128_ps(x, 1));
		__m256d		qlo = _mm256_cvtps_pd(_mm256_castps256_ps128(q));
		__m256d		qhi = _mm256_cvtps_pd(_mm256_extractf128_ps(q, 1));

		if (metric == GRAPH_METRIC_L2 || metric == GRAPH_METRIC_L1)
		{
			/* differences, squared (L2) or without their sign (L1) */
			xlo = _mm256_sub_pd(qlo, _mm256_mul_pd(xlo, scale4));
			xhi = _mm256_sub_pd(qhi, _mm256_mul_pd(xhi, scale4));
			qlo = metric == GRAPH_METRIC_L2 ? xlo : _mm256_set1_pd(1.0);
			qhi = metric == GRAPH_METRIC_L2 ? xhi : _mm256_set1_pd(1.0);
			if (metric == GRAPH_METRIC_L1)
			{
				xlo = _mm256_andnot_pd(sign, xlo);
				xhi = _mm256_andnot_pd(sign, xhi);
			}
		}
		/* products (inner product, cosine: the caller scales the sum) */
		acc0 = _mm256_add_pd(acc0, _mm256_mul_pd(qlo, xlo));
		acc1 = _mm256_add_pd(acc1, _mm256_mul_pd(qhi, xhi));
	}
	_mm256_storeu_pd(lanes, _mm256_add_pd(acc0, acc1));
	*sum = (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
	return i;
}

#endif

double
matryoshka_fine_sum(const MatryoshkaLayout *layout, const char *payload,
					const float *query, int from, int to)
{
	const MatryoshkaPayloadHeader *header = (const MatryoshkaPayloadHeader *) payload;
	const uint16 *halves = matryoshka_payload_halves(layout, payload);
	int			g1 = MatryoshkaCoarse(layout);
	const float *table = half_values();
	double		scale = ldexp(1.0, header->scale_exponent);
	double		acc[FINE_SUM_LANES] = {0};
	double		sum = 0;
	int			i = from;

#ifdef HALF_F16C
	if (cpu_has_f16c())
		i = g1 + fine_sum_f16c(layout->metric, halves, query + g1, from - g1,
							   to - g1, scale, &sum);
#endif

	/*
	 * FINE_SUM_LANES independent partial sums: one sum would wait for each
	 * addition's latency (a 700-dimension payload took about a microsecond).
	 */
	switch (layout->metric)
	{
		case GRAPH_METRIC_L2:
			for (; i + FINE_SUM_LANES <= to; i += FINE_SUM_LANES)
				for (int j = 0; j < FINE_SUM_LANES; j++)
				{
					double		d = (double) query[i + j] - table[halves[i + j - g1]] * scale;

					acc[j] += d * d;
				}
			for (; i < to; i++)
			{
				double		d = (double) query[i] - table[halves[i - g1]] * scale;

				sum += d * d;
			}
			break;
		case GRAPH_METRIC_INNER_PRODUCT:
		case GRAPH_METRIC_COSINE:
			for (; i + FINE_SUM_LANES <= to; i += FINE_SUM_LANES)
				for (int j = 0; j < FINE_SUM_LANES; j++)
					acc[j] += (double) query[i + j] * table[halves[i + j - g1]];
			for (; i < to; i++)
				sum += (double) query[i] * table[halves[i - g1]];
			for (int j = 0; j < FINE_SUM_LANES; j++)
				sum += acc[j];
			return sum * scale;
		case GRAPH_METRIC_L1:
			for (; i + FINE_SUM_LANES <= to; i += FINE_SUM_LANES)
				for (int j = 0; j < FINE_SUM_LANES; j++)
					acc[j] += fabs((double) query[i + j] - table[halves[i + j - g1]] * scale);
			for (; i < to; i++)
				sum += fabs((double) query[i] - table[halves[i - g1]] * scale);
			break;
	}
	for (int j = 0; j < FINE_SUM_LANES; j++)
		sum += acc[j];
	return sum;
}

double
matryoshka_coarse_sum(GraphMetric metric, float coarse, double query_norm,
					  double element_norm)
{
	switch (metric)
	{
		case GRAPH_METRIC_INNER_PRODUCT:	/* negative inner product */
			return -(double) coarse;
		case GRAPH_METRIC_COSINE:	/* 1 - dot of the normalised prefixes */
			return (1.0 - (double) coarse) * query_norm * element_norm;
		default:				/* L2: the squared distance; L1 */
			return coarse;
	}
}

double
matryoshka_sum_distance(GraphMetric metric, double sum, double query_norm,
						double element_norm)
{
	double		denominator;

	switch (metric)
	{
		case GRAPH_METRIC_INNER_PRODUCT:
			return -sum;
		case GRAPH_METRIC_COSINE:
			/* a zero prefix counts as orthogonal (README) */
			denominator = query_norm * element_norm;
			return denominator > 0 ? 1.0 - sum / denominator : 1.0;
		default:
			return sum;
	}
}

void
matryoshka_decode_fine(const MatryoshkaLayout *layout, const char *payload,
					   float *fine)
{
	const MatryoshkaPayloadHeader *header = (const MatryoshkaPayloadHeader *) payload;
	const uint16 *halves = matryoshka_payload_halves(layout, payload);
	const float *table = half_values();
	double		scale = ldexp(1.0, header->scale_exponent);
	int			count = MatryoshkaFull(layout) - MatryoshkaCoarse(layout);

	for (int i = 0; i < count; i++)
		fine[i] = (float) (table[halves[i]] * scale);
}
