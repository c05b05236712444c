/*
 * distance_avx2.c — AVX2+FMA versions of the distance kernels.
 *
 * The library is built without -mavx2: every function here carries
 * __attribute__((target("avx2,fma"))), so the compiler emits AVX2 code for
 * these functions only, and distance_kernels_avx2() hands them out only after
 * __builtin_cpu_supports() has confirmed that the CPU has AVX2 and FMA and
 * that the OS saves the YMM state (libgcc and compiler-rt both check XGETBV
 * before reporting AVX features).  On other architectures, or compilers
 * without the builtins, the file reduces to a stub that returns NULL.
 *
 * Loop structure, shared by all kernels:
 *   - main loop, 32 floats per step into four independent accumulators: the
 *     four FMA dependency chains overlap (instruction-level parallelism), and
 *     splitting the sum 32 ways keeps rounding error small on long vectors;
 *   - one-vector loop for the remaining multiples of 8;
 *   - a masked tail (vmaskmovps) for the last 1..7 floats.  Masked-out lanes
 *     are neither read nor able to fault, so nothing past a[n-1] or b[n-1] is
 *     touched; this matters for the matryoshka prefixes and for vectors that
 *     end at a page boundary.
 * Loads are unaligned (vmovups): vectors sit in PostgreSQL tuples and pages
 * with only 4-byte alignment guaranteed.
 */
#include "distance.h"

#include <stddef.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))

#include <immintrin.h>

#define AVX2_TARGET __attribute__((target("avx2,fma")))

/* Mask selecting the first 'remaining' (0..8) lanes, for vmaskmovps. */
static inline AVX2_TARGET __m256i
avx2_tail_mask(int remaining)
{
	const __m256i lane_index = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);

	return _mm256_cmpgt_epi32(_mm256_set1_epi32(remaining), lane_index);
}

/* Sum of the eight lanes. */
static inline AVX2_TARGET float
avx2_horizontal_sum(__m256 v)
{
	__m128		lo = _mm256_castps256_ps128(v);
	__m128		hi = _mm256_extractf128_ps(v, 1);
	__m128		s = _mm_add_ps(lo, hi);

	s = _mm_add_ps(s, _mm_movehl_ps(s, s));
	s = _mm_add_ss(s, _mm_movehdup_ps(s));
	return _mm_cvtss_f32(s);
}

static AVX2_TARGET float
avx2_l2_squared(const float *a, const float *b, int n)
{
	__m256		acc0 = _mm256_setzero_ps();
	__m256		acc1 = _mm256_setzero_ps();
	__m256		acc2 = _mm256_setzero_ps();
	__m256		acc3 = _mm256_setzero_ps();
	int			i = 0;

	for (; i + 32 <= n; i += 32)
	{
		__m256		d0 = _mm256_sub_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i));
		__m256		d1 = _mm256_sub_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8));
		__m256		d2 = _mm256_sub_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16));
		__m256		d3 = _mm256_sub_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24));

		acc0 = _mm256_fmadd_ps(d0, d0, acc0);
		acc1 = _mm256_fmadd_ps(d1, d1, acc1);
		acc2 = _mm256_fmadd_ps(d2, d2, acc2);
		acc3 = _mm256_fmadd_ps(d3, d3, acc3);
	}
	for (; i + 8 <= n; i += 8)
	{
		__m256		d = _mm256_sub_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i));

		acc0 = _mm256_fmadd_ps(d, d, acc0);
	}
	if (i < n)
	{
		__m256i		mask = avx2_tail_mask(n - i);
		__m256		d = _mm256_sub_ps(_mm256_maskload_ps(a + i, mask),
									  _mm256_maskload_ps(b + i, mask));

		acc1 = _mm256_fmadd_ps(d, d, acc1);
	}
	acc0 = _mm256_add_ps(acc0, acc1);
	acc2 = _mm256_add_ps(acc2, acc3);
	return avx2_horizontal_sum(_mm256_add_ps(acc0, acc2));
}

static AVX2_TARGET float
avx2_inner_product(const float *a, const float *b, int n)
{
	__m256		acc0 = _mm256_setzero_ps();
	__m256		acc1 = _mm256_setzero_ps();
	__m256		acc2 = _mm256_setzero_ps();
	__m256		acc3 = _mm256_setzero_ps();
	int			i = 0;

	for (; i + 32 <= n; i += 32)
	{
		acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
		acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), acc1);
		acc2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16), acc2);
		acc3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24), acc3);
	}
	for (; i + 8 <= n; i += 8)
		acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
	if (i < n)
	{
		__m256i		mask = avx2_tail_mask(n - i);

		acc1 = _mm256_fmadd_ps(_mm256_maskload_ps(a + i, mask),
							   _mm256_maskload_ps(b + i, mask), acc1);
	}
	acc0 = _mm256_add_ps(acc0, acc1);
	acc2 = _mm256_add_ps(acc2, acc3);
	return avx2_horizontal_sum(_mm256_add_ps(acc0, acc2));
}

static AVX2_TARGET float
avx2_l1(const float *a, const float *b, int n)
{
	/* clearing the sign bit is |x| */
	const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
	__m256		acc0 = _mm256_setzero_ps();
	__m256		acc1 = _mm256_setzero_ps();
	__m256		acc2 = _mm256_setzero_ps();
	__m256		acc3 = _mm256_setzero_ps();
	int			i = 0;

	for (; i + 32 <= n; i += 32)
	{
		__m256		d0 = _mm256_sub_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i));
		__m256		d1 = _mm256_sub_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8));
		__m256		d2 = _mm256_sub_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16));
		__m256		d3 = _mm256_sub_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24));

		acc0 = _mm256_add_ps(acc0, _mm256_and_ps(d0, abs_mask));
		acc1 = _mm256_add_ps(acc1, _mm256_and_ps(d1, abs_mask));
		acc2 = _mm256_add_ps(acc2, _mm256_and_ps(d2, abs_mask));
		acc3 = _mm256_add_ps(acc3, _mm256_and_ps(d3, abs_mask));
	}
	for (; i + 8 <= n; i += 8)
	{
		__m256		d = _mm256_sub_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i));

		acc0 = _mm256_add_ps(acc0, _mm256_and_ps(d, abs_mask));
	}
	if (i < n)
	{
		__m256i		mask = avx2_tail_mask(n - i);
		__m256		d = _mm256_sub_ps(_mm256_maskload_ps(a + i, mask),
									  _mm256_maskload_ps(b + i, mask));

		acc1 = _mm256_add_ps(acc1, _mm256_and_ps(d, abs_mask));
	}
	acc0 = _mm256_add_ps(acc0, acc1);
	acc2 = _mm256_add_ps(acc2, acc3);
	return avx2_horizontal_sum(_mm256_add_ps(acc0, acc2));
}

/*
 * Three sums at once: two accumulators per sum (six chains) already hide the
 * FMA latency, and more would run out of the 16 YMM registers.
 */
static AVX2_TARGET void
avx2_cosine_parts(const float *a, const float *b, int n,
				  float *dot, float *norm_a, float *norm_b)
{
	__m256		dot0 = _mm256_setzero_ps(),
				dot1 = _mm256_setzero_ps();
	__m256		na0 = _mm256_setzero_ps(),
				na1 = _mm256_setzero_ps();
	__m256		nb0 = _mm256_setzero_ps(),
				nb1 = _mm256_setzero_ps();
	int			i = 0;

	for (; i + 16 <= n; i += 16)
	{
		__m256		a0 = _mm256_loadu_ps(a + i);
		__m256		b0 = _mm256_loadu_ps(b + i);
		__m256		a1 = _mm256_loadu_ps(a + i + 8);
		__m256		b1 = _mm256_loadu_ps(b + i + 8);

		dot0 = _mm256_fmadd_ps(a0, b0, dot0);
		na0 = _mm256_fmadd_ps(a0, a0, na0);
		nb0 = _mm256_fmadd_ps(b0, b0, nb0);
		dot1 = _mm256_fmadd_ps(a1, b1, dot1);
		na1 = _mm256_fmadd_ps(a1, a1, na1);
		nb1 = _mm256_fmadd_ps(b1, b1, nb1);
	}
	for (; i + 8 <= n; i += 8)
	{
		__m256		a0 = _mm256_loadu_ps(a + i);
		__m256		b0 = _mm256_loadu_ps(b + i);

		dot0 = _mm256_fmadd_ps(a0, b0, dot0);
		na0 = _mm256_fmadd_ps(a0, a0, na0);
		nb0 = _mm256_fmadd_ps(b0, b0, nb0);
	}
	if (i < n)
	{
		__m256i		mask = avx2_tail_mask(n - i);
		__m256		a1 = _mm256_maskload_ps(a + i, mask);
		__m256		b1 = _mm256_maskload_ps(b + i, mask);

		dot1 = _mm256_fmadd_ps(a1, b1, dot1);
		na1 = _mm256_fmadd_ps(a1, a1, na1);
		nb1 = _mm256_fmadd_ps(b1, b1, nb1);
	}
	*dot = avx2_horizontal_sum(_mm256_add_ps(dot0, dot1));
	*norm_a = avx2_horizontal_sum(_mm256_add_ps(na0, na1));
	*norm_b = avx2_horizontal_sum(_mm256_add_ps(nb0, nb1));
}

static const DistanceKernels avx2_kernels = {
	"avx2",
	avx2_l2_squared,
	avx2_inner_product,
	avx2_l1,
	avx2_cosine_parts,
};

const DistanceKernels *
distance_kernels_avx2(void)
{
	__builtin_cpu_init();
	if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
		return &avx2_kernels;
	return NULL;
}

#else							/* not x86-64 with GCC-compatible builtins */

const DistanceKernels *
distance_kernels_avx2(void)
{
	return NULL;
}

#endif
