/*
 * distance_avx512.c — AVX-512F versions of the distance kernels.
 *
 * Built without -mavx512f: every function here carries
 * __attribute__((target("avx512f"))), and distance_kernels_avx512() hands the
 * table out only after __builtin_cpu_supports("avx512f") has confirmed that
 * the CPU has AVX-512F and that the OS saves the ZMM/opmask state (libgcc and
 * compiler-rt both check XGETBV).  Only AVX-512F instructions are used, so any
 * AVX-512 CPU qualifies.  On other architectures the file reduces to a stub
 * that returns NULL.
 *
 * Loop structure, shared by all kernels:
 *   - main loop, 64 floats per step into four independent accumulators (four
 *     overlapping FMA chains; the 64-way split of the sum also keeps rounding
 *     error small on long vectors);
 *   - one-vector loop for the remaining multiples of 16;
 *   - one masked step for the last 1..15 floats: masked-out lanes are neither
 *     read nor able to fault, so nothing past a[n-1] or b[n-1] is touched.
 * Loads are unaligned: vectors in PostgreSQL tuples are only 4-byte aligned.
 */
#include "distance.h"

#include <stddef.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))

#include <immintrin.h>

#define AVX512_TARGET __attribute__((target("avx512f")))

/* Opmask selecting the first 'remaining' (1..15) lanes. */
static inline AVX512_TARGET __mmask16
avx512_tail_mask(int remaining)
{
	return (__mmask16) ((1u << remaining) - 1u);
}

static AVX512_TARGET float
avx512_l2_squared(const float *a, const float *b, int n)
{
	__m512		acc0 = _mm512_setzero_ps();
	__m512		acc1 = _mm512_setzero_ps();
	__m512		acc2 = _mm512_setzero_ps();
	__m512		acc3 = _mm512_setzero_ps();
	int			i = 0;

	for (; i + 64 <= n; i += 64)
	{
		__m512		d0 = _mm512_sub_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i));
		__m512		d1 = _mm512_sub_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16));
		__m512		d2 = _mm512_sub_ps(_mm512_loadu_ps(a + i + 32), _mm512_loadu_ps(b + i + 32));
		__m512		d3 = _mm512_sub_ps(_mm512_loadu_ps(a + i + 48), _mm512_loadu_ps(b + i + 48));

		acc0 = _mm512_fmadd_ps(d0, d0, acc0);
		acc1 = _mm512_fmadd_ps(d1, d1, acc1);
		acc2 = _mm512_fmadd_ps(d2, d2, acc2);
		acc3 = _mm512_fmadd_ps(d3, d3, acc3);
	}
	for (; i + 16 <= n; i += 16)
	{
		__m512		d = _mm512_sub_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i));

		acc0 = _mm512_fmadd_ps(d, d, acc0);
	}
	if (i < n)
	{
		__mmask16	mask = avx512_tail_mask(n - i);
		__m512		d = _mm512_sub_ps(_mm512_maskz_loadu_ps(mask, a + i),
									  _mm512_maskz_loadu_ps(mask, b + i));

		acc1 = _mm512_fmadd_ps(d, d, acc1);
	}
	acc0 = _mm512_add_ps(acc0, acc1);
	acc2 = _mm512_add_ps(acc2, acc3);
	return _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc2));
}

static AVX512_TARGET float
avx512_inner_product(const float *a, const float *b, int n)
{
	__m512		acc0 = _mm512_setzero_ps();
	__m512		acc1 = _mm512_setzero_ps();
	__m512		acc2 = _mm512_setzero_ps();
	__m512		acc3 = _mm512_setzero_ps();
	int			i = 0;

	for (; i + 64 <= n; i += 64)
	{
		acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), acc0);
		acc1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), acc1);
		acc2 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 32), _mm512_loadu_ps(b + i + 32), acc2);
		acc3 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 48), _mm512_loadu_ps(b + i + 48), acc3);
	}
	for (; i + 16 <= n; i += 16)
		acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), acc0);
	if (i < n)
	{
		__mmask16	mask = avx512_tail_mask(n - i);

		acc1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mask, a + i),
							   _mm512_maskz_loadu_ps(mask, b + i), acc1);
	}
	acc0 = _mm512_add_ps(acc0, acc1);
	acc2 = _mm512_add_ps(acc2, acc3);
	return _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc2));
}

static AVX512_TARGET float
avx512_l1(const float *a, const float *b, int n)
{
	__m512		acc0 = _mm512_setzero_ps();
	__m512		acc1 = _mm512_setzero_ps();
	__m512		acc2 = _mm512_setzero_ps();
	__m512		acc3 = _mm512_setzero_ps();
	int			i = 0;

	for (; i + 64 <= n; i += 64)
	{
		__m512		d0 = _mm512_sub_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i));
		__m512		d1 = _mm512_sub_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16));
		__m512		d2 = _mm512_sub_ps(_mm512_loadu_ps(a + i + 32), _mm512_loadu_ps(b + i + 32));
		__m512		d3 = _mm512_sub_ps(_mm512_loadu_ps(a + i + 48), _mm512_loadu_ps(b + i + 48));

		acc0 = _mm512_add_ps(acc0, _mm512_abs_ps(d0));
		acc1 = _mm512_add_ps(acc1, _mm512_abs_ps(d1));
		acc2 = _mm512_add_ps(acc2, _mm512_abs_ps(d2));
		acc3 = _mm512_add_ps(acc3, _mm512_abs_ps(d3));
	}
	for (; i + 16 <= n; i += 16)
	{
		__m512		d = _mm512_sub_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i));

		acc0 = _mm512_add_ps(acc0, _mm512_abs_ps(d));
	}
	if (i < n)
	{
		__mmask16	mask = avx512_tail_mask(n - i);
		__m512		d = _mm512_sub_ps(_mm512_maskz_loadu_ps(mask, a + i),
									  _mm512_maskz_loadu_ps(mask, b + i));

		acc1 = _mm512_add_ps(acc1, _mm512_abs_ps(d));
	}
	acc0 = _mm512_add_ps(acc0, acc1);
	acc2 = _mm512_add_ps(acc2, acc3);
	return _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc2));
}

/* Three sums at once, two accumulators each: six overlapping FMA chains. */
static AVX512_TARGET void
avx512_cosine_parts(const float *a, const float *b, int n,
					float *dot, float *norm_a, float *norm_b)
{
	__m512		dot0 = _mm512_setzero_ps(),
				dot1 = _mm512_setzero_ps();
	__m512		na0 = _mm512_setzero_ps(),
				na1 = _mm512_setzero_ps();
	__m512		nb0 = _mm512_setzero_ps(),
				nb1 = _mm512_setzero_ps();
	int			i = 0;

	for (; i + 32 <= n; i += 32)
	{
		__m512		a0 = _mm512_loadu_ps(a + i);
		__m512		b0 = _mm512_loadu_ps(b + i);
		__m512		a1 = _mm512_loadu_ps(a + i + 16);
		__m512		b1 = _mm512_loadu_ps(b + i + 16);

		dot0 = _mm512_fmadd_ps(a0, b0, dot0);
		na0 = _mm512_fmadd_ps(a0, a0, na0);
		nb0 = _mm512_fmadd_ps(b0, b0, nb0);
		dot1 = _mm512_fmadd_ps(a1, b1, dot1);
		na1 = _mm512_fmadd_ps(a1, a1, na1);
		nb1 = _mm512_fmadd_ps(b1, b1, nb1);
	}
	for (; i + 16 <= n; i += 16)
	{
		__m512		a0 = _mm512_loadu_ps(a + i);
		__m512		b0 = _mm512_loadu_ps(b + i);

		dot0 = _mm512_fmadd_ps(a0, b0, dot0);
		na0 = _mm512_fmadd_ps(a0, a0, na0);
		nb0 = _mm512_fmadd_ps(b0, b0, nb0);
	}
	if (i < n)
	{
		__mmask16	mask = avx512_tail_mask(n - i);
		__m512		a1 = _mm512_maskz_loadu_ps(mask, a + i);
		__m512		b1 = _mm512_maskz_loadu_ps(mask, b + i);

		dot1 = _mm512_fmadd_ps(a1, b1, dot1);
		na1 = _mm512_fmadd_ps(a1, a1, na1);
		nb1 = _mm512_fmadd_ps(b1, b1, nb1);
	}
	*dot = _mm512_reduce_add_ps(_mm512_add_ps(dot0, dot1));
	*norm_a = _mm512_reduce_add_ps(_mm512_add_ps(na0, na1));
	*norm_b = _mm512_reduce_add_ps(_mm512_add_ps(nb0, nb1));
}

static const DistanceKernels avx512_kernels = {
	"avx512",
	avx512_l2_squared,
	avx512_inner_product,
	avx512_l1,
	avx512_cosine_parts,
};

const DistanceKernels *
distance_kernels_avx512(void)
{
	__builtin_cpu_init();
	if (__builtin_cpu_supports("avx512f"))
		return &avx512_kernels;
	return NULL;
}

#else							/* not x86-64 with GCC-compatible builtins */

const DistanceKernels *
distance_kernels_avx512(void)
{
	return NULL;
}

#endif
