/*
 * distance.c — portable scalar kernels and the load-time dispatcher.
 *
 * The scalar kernels keep eight independent partial sums: that both lets the
 * compiler vectorize them with the baseline instruction set (SSE2 on x86-64)
 * and keeps the rounding error of long sums small (see distance.h).
 */
#include "distance.h"

#include <math.h>
#include <stddef.h>

#define SCALAR_LANES 8

static float
scalar_l2_squared(const float *a, const float *b, int n)
{
	float		acc[SCALAR_LANES] = {0};
	float		sum = 0.0f;
	int			i = 0;

	for (; i + SCALAR_LANES <= n; i += SCALAR_LANES)
		for (int j = 0; j < SCALAR_LANES; j++)
		{
			float		d = a[i + j] - b[i + j];

			acc[j] += d * d;
		}
	for (; i < n; i++)
	{
		float		d = a[i] - b[i];

		sum += d * d;
	}
	for (int j = 0; j < SCALAR_LANES; j++)
		sum += acc[j];
	return sum;
}

static float
scalar_inner_product(const float *a, const float *b, int n)
{
	float		acc[SCALAR_LANES] = {0};
	float		sum = 0.0f;
	int			i = 0;

	for (; i + SCALAR_LANES <= n; i += SCALAR_LANES)
		for (int j = 0; j < SCALAR_LANES; j++)
			acc[j] += a[i + j] * b[i + j];
	for (; i < n; i++)
		sum += a[i] * b[i];
	for (int j = 0; j < SCALAR_LANES; j++)
		sum += acc[j];
	return sum;
}

static float
scalar_l1(const float *a, const float *b, int n)
{
	float		acc[SCALAR_LANES] = {0};
	float		sum = 0.0f;
	int			i = 0;

	for (; i + SCALAR_LANES <= n; i += SCALAR_LANES)
		for (int j = 0; j < SCALAR_LANES; j++)
			acc[j] += fabsf(a[i + j] - b[i + j]);
	for (; i < n; i++)
		sum += fabsf(a[i] - b[i]);
	for (int j = 0; j < SCALAR_LANES; j++)
		sum += acc[j];
	return sum;
}

/*
 * The three sums of cosine_parts written as one loop with three sets of eight
 * partial sums defeat the compilers' vectorizers (gcc transposes the inputs
 * with shuffles and runs 10x slower than scalar_inner_product).  So the
 * vector is cut into chunks small enough to stay in L1 cache, and each chunk
 * makes three passes of the inner-product kernel: memory traffic is still
 * one pass, and every pass vectorizes well.  The per-chunk sums also shorten
 * the floating-point summation chains.
 */
#define COSINE_CHUNK 1024

static void
scalar_cosine_parts(const float *a, const float *b, int n,
					float *dot, float *norm_a, float *norm_b)
{
	float		sd = 0.0f,
				sa = 0.0f,
				sb = 0.0f;

	for (int i = 0; i < n; i += COSINE_CHUNK)
	{
		int			len = (n - i < COSINE_CHUNK) ? n - i : COSINE_CHUNK;

		sd += scalar_inner_product(a + i, b + i, len);
		sa += scalar_inner_product(a + i, a + i, len);
		sb += scalar_inner_product(b + i, b + i, len);
	}
	*dot = sd;
	*norm_a = sa;
	*norm_b = sb;
}

static const DistanceKernels scalar_kernels = {
	"scalar",
	scalar_l2_squared,
	scalar_inner_product,
	scalar_l1,
	scalar_cosine_parts,
};

DistanceKernels distance_active = {
	"scalar",
	scalar_l2_squared,
	scalar_inner_product,
	scalar_l1,
	scalar_cosine_parts,
};

const DistanceKernels *
distance_kernels_scalar(void)
{
	return &scalar_kernels;
}

void
distance_init(void)
{
	const DistanceKernels *k;

	if ((k = distance_kernels_avx512()) == NULL &&
		(k = distance_kernels_avx2()) == NULL)
		k = &scalar_kernels;
	distance_active = *k;
}

double
distance_cosine_from_parts(double dot, double norm_a, double norm_b)
{
	double		denom = sqrt(norm_a * norm_b);
	double		similarity;

	if (!(denom > 0.0))
		return NAN;
	similarity = dot / denom;
	/* rounding can push |similarity| slightly past 1 */
	if (similarity > 1.0)
		similarity = 1.0;
	else if (similarity < -1.0)
		similarity = -1.0;
	return 1.0 - similarity;
}
