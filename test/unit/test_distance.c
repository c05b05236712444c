/*
 * test_distance.c — unit tests of the distance kernels (src/distance*.c).
 *
 * Every implementation the running CPU supports (scalar always; avx2 and
 * avx512 when present, otherwise reported as skipped) is compared against a
 * double-precision reference computed here, on pseudo-random inputs from a
 * fixed seed, so any failure reproduces exactly.  Two input distributions:
 * "uniform" draws each value from [-1, 1]; "mixed" multiplies such a value by
 * 10^k with k uniform in [-3, 3], so one vector mixes magnitudes from 1e-3 to
 * 1e3 (long sums dominated by a few terms, heavy cancellation in the dot
 * product).
 *
 * Error measures (all must stay below 1e-5):
 *   l2_squared, l1: |got - ref| / ref — every term is non-negative, so the
 *       relative error is well defined and meaningful;
 *   inner_product: |got - ref| / sum |a_i b_i| — the true sum may cancel to
 *       near zero, and no float summation can then promise a small relative
 *       error; a bound relative to the sum of magnitudes is what summation
 *       can promise;
 *   cosine_parts: dot as the inner product, both squared norms as L2, and the
 *       cosine distance computed from the parts with an absolute error bound
 *       (the distance lives in [0, 2]).
 *
 * One test case per (kernel, function, input set):
 *   short/<dist>  every length 1..300 at four (a, b) misalignments;
 *   long/<dist>   lengths 768, 1536, 3072, 16000 at the same misalignments;
 *   prefix        n smaller than the arrays, with NaN after the prefix: a
 *                 kernel that reads past n picks up the NaN and fails;
 *   guard         both vectors end exactly at an inaccessible page: a kernel
 *                 that reads past n faults, which the handler below turns
 *                 into a failed check.
 * plus hand-computed values, n = 0, exact zero distance on identical inputs,
 * the edge cases of distance_cosine_from_parts, and the dispatcher's choice.
 */
#define _DEFAULT_SOURCE			/* mmap, sigaction, sigsetjmp under -std=c11 */

#include "distance.h"
#include "random.h"
#include "unit.h"

#include <math.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#if defined(__unix__)
#include <sys/mman.h>
#define HAVE_GUARD_PAGES 1
#endif

#define MAX_TOLERANCE 1e-5
#define LONGEST 16000
#define SLACK 64				/* room for the misalignment offsets */

enum
{
	FN_L2, FN_IP, FN_L1, FN_COSINE, N_FUNCTIONS
};

static const char *const function_names[N_FUNCTIONS] = {
	"l2_squared", "inner_product", "l1", "cosine_parts"
};

/* (a, b) offsets in floats from a 64-byte boundary */
static const int misalignments[][2] = {{0, 0}, {1, 3}, {2, 5}, {7, 1}};
#define N_MISALIGNMENTS ((int) (sizeof(misalignments) / sizeof(misalignments[0])))

static const int long_lengths[] = {768, 1536, 3072, 16000};
#define N_LONG_LENGTHS ((int) (sizeof(long_lengths) / sizeof(long_lengths[0])))

/* ---------------------------------------------------------------------------
 * Deterministic random inputs (splitmix64)
 * ------------------------------------------------------------------------- */
/* rng_state, rng_next, rng_unit: random.h */

static void
fill_uniform(float *x, int n)
{
	for (int i = 0; i < n; i++)
		x[i] = (float) (2.0 * rng_unit() - 1.0);
}

static void
fill_mixed(float *x, int n)
{
	for (int i = 0; i < n; i++)
		x[i] = (float) ((2.0 * rng_unit() - 1.0) * pow(10.0, 6.0 * rng_unit() - 3.0));
}

typedef struct Distribution
{
	const char *name;
	void		(*fill) (float *x, int n);
} Distribution;

static const Distribution distributions[] = {
	{"uniform", fill_uniform},
	{"mixed", fill_mixed},
};

/* ---------------------------------------------------------------------------
 * Double-precision reference
 * ------------------------------------------------------------------------- */
typedef struct Reference
{
	double		l2;				/* sum (a-b)^2 */
	double		ip;				/* sum a b */
	double		ip_magnitude;	/* sum |a b| */
	double		l1;				/* sum |a-b| */
	double		norm_a;			/* sum a^2 */
	double		norm_b;			/* sum b^2 */
} Reference;

static Reference
reference(const float *a, const float *b, int n)
{
	Reference	r = {0, 0, 0, 0, 0, 0};

	for (int i = 0; i < n; i++)
	{
		double		x = a[i],
					y = b[i];

		r.l2 += (x - y) * (x - y);
		r.ip += x * y;
		r.ip_magnitude += fabs(x * y);
		r.l1 += fabs(x - y);
		r.norm_a += x * x;
		r.norm_b += y * y;
	}
	return r;
}

/* relative error against a non-negative reference; exact when ref is 0 */
static double
relative_error(double got, double ref, double scale)
{
	if (scale == 0.0)
		return got == 0.0 ? 0.0 : INFINITY;
	return fabs(got - ref) / scale;
}

/* cosine distance from double parts, computed independently of distance.c */
static double
reference_cosine_distance(const Reference *r)
{
	double		s = r->ip / sqrt(r->norm_a * r->norm_b);

	return 1.0 - (s > 1.0 ? 1.0 : s < -1.0 ? -1.0 : s);
}

/*
 * Check one kernel function on one input; returns the error measure (the
 * largest one for cosine) so that the case can report its worst error.
 */
static double
check_one(const DistanceKernels *k, int fn, const float *a, const float *b,
		  int n, const char *where)
{
	Reference	r = reference(a, b, n);
	double		err = 0.0;

	switch (fn)
	{
		case FN_L2:
			{
				float		got = k->l2_squared(a, b, n);

				err = relative_error(got, r.l2, r.l2);
				UNIT_CHECK(err < MAX_TOLERANCE, "%s n=%d: got %.9g, ref %.12g, rel err %.3g",
						   where, n, got, r.l2, err);
				break;
			}
		case FN_IP:
			{
				float		got = k->inner_product(a, b, n);

				err = relative_error(got, r.ip, r.ip_magnitude);
				UNIT_CHECK(err < MAX_TOLERANCE, "%s n=%d: got %.9g, ref %.12g (sum|ab| %.6g), err %.3g",
						   where, n, got, r.ip, r.ip_magnitude, err);
				break;
			}
		case FN_L1:
			{
				float		got = k->l1(a, b, n);

				err = relative_error(got, r.l1, r.l1);
				UNIT_CHECK(err < MAX_TOLERANCE, "%s n=%d: got %.9g, ref %.12g, rel err %.3g",
						   where, n, got, r.l1, err);
				break;
			}
		case FN_COSINE:
			{
				float		dot = NAN,
							na = NAN,
							nb = NAN;
				double		err_dot,
							err_na,
							err_nb,
							err_dist,
							got_dist,
							ref_dist;

				k->cosine_parts(a, b, n, &dot, &na, &nb);
				err_dot = relative_error(dot, r.ip, r.ip_magnitude);
				err_na = relative_error(na, r.norm_a, r.norm_a);
				err_nb = relative_error(nb, r.norm_b, r.norm_b);
				got_dist = distance_cosine_from_parts(dot, na, nb);
				ref_dist = reference_cosine_distance(&r);
				err_dist = fabs(got_dist - ref_dist);
				if (isnan(got_dist))
					err_dist = INFINITY;
				UNIT_CHECK(err_dot < MAX_TOLERANCE && err_na < MAX_TOLERANCE &&
						   err_nb < MAX_TOLERANCE && err_dist < MAX_TOLERANCE,
						   "%s n=%d: dot %.9g (ref %.12g, err %.3g), norm_a %.9g (ref %.12g, err %.3g), "
						   "norm_b %.9g (ref %.12g, err %.3g), distance %.9g (ref %.12g, abs err %.3g)",
						   where, n, dot, r.ip, err_dot, na, r.norm_a, err_na,
						   nb, r.norm_b, err_nb, got_dist, ref_dist, err_dist);
				err = fmax(fmax(err_dot, err_dist), fmax(err_na, err_nb));
				break;
			}
	}
	return err;
}

/* ---------------------------------------------------------------------------
 * Input sets
 * ------------------------------------------------------------------------- */
static float *buffer_a;
static float *buffer_b;

/* every length in lengths[] at every misalignment; returns the worst error */
static double
check_lengths(const DistanceKernels *k, int fn, const int *lengths,
			  int n_lengths)
{
	double		worst = 0.0;

	for (int m = 0; m < N_MISALIGNMENTS; m++)
	{
		const float *a = buffer_a + misalignments[m][0];
		const float *b = buffer_b + misalignments[m][1];
		char		where[64];

		snprintf(where, sizeof(where), "offsets (%d,%d)",
				 misalignments[m][0], misalignments[m][1]);
		for (int i = 0; i < n_lengths; i++)
			worst = fmax(worst, check_one(k, fn, a, b, lengths[i], where));
	}
	return worst;
}

/*
 * Prefixes: arrays of 'dim' floats with NaN from position n on, so that a
 * kernel reading past n would return NaN.
 */
static double
check_prefixes(const DistanceKernels *k, int fn)
{
	static const int prefixes[] = {1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 32, 33,
	47, 63, 64, 65, 95, 127, 128, 129, 200, 255, 256, 257, 384, 500, 767};
	const int	dim = 768;
	float	   *a = buffer_a + 1;
	float	   *b = buffer_b + 2;
	double		worst = 0.0;

	for (size_t p = 0; p < sizeof(prefixes) / sizeof(prefixes[0]); p++)
	{
		int			n = prefixes[p];

		fill_uniform(a, dim);
		fill_uniform(b, dim);
		for (int i = n; i < dim; i++)
			a[i] = b[i] = NAN;
		worst = fmax(worst, check_one(k, fn, a, b, n, "prefix of 768 (NaN after n)"));
	}
	return worst;
}

#ifdef HAVE_GUARD_PAGES
/*
 * A kernel that reads past the end of its input faults on the guard page;
 * the handler jumps back into check_guard_pages(), which records a failed
 * check and goes on, so the summary line still comes out.
 */
static sigjmp_buf guard_jump;
static volatile sig_atomic_t in_guard_test;

static void
fault_handler(int sig)
{
	static const char msg[] = "unexpected SIGSEGV/SIGBUS outside a guard-page test\n";

	if (in_guard_test)
		siglongjmp(guard_jump, sig);
	if (write(STDOUT_FILENO, msg, sizeof(msg) - 1) < 0)
		_exit(3);
	_exit(3);
}

/*
 * A region of 'floats' floats followed by an inaccessible page; returns the
 * end of the accessible part (page-aligned), so end - n is a vector of n
 * floats whose last element touches the guard page.
 */
static float *
guarded_region(size_t floats)
{
	size_t		page = (size_t) sysconf(_SC_PAGESIZE);
	size_t		bytes = (floats * sizeof(float) + page - 1) / page * page;
	char	   *base = mmap(NULL, bytes + page, PROT_READ | PROT_WRITE,
							MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (base == MAP_FAILED)
		return NULL;
	if (mprotect(base + bytes, page, PROT_NONE) != 0)
		return NULL;
	return (float *) (base + bytes);
}

static float *guard_end_a;
static float *guard_end_b;

static double
check_guard_pages(const DistanceKernels *k, int fn)
{
	volatile double worst = 0.0;

	for (volatile int n = 1; n <= 300; n++)
	{
		float	   *a = guard_end_a - n;
		float	   *b = guard_end_b - n;

		fill_uniform(a, n);
		fill_uniform(b, n);
		if (sigsetjmp(guard_jump, 1) == 0)
		{
			in_guard_test = 1;
			worst = fmax(worst, check_one(k, fn, a, b, n, "ending at a guard page"));
			in_guard_test = 0;
		}
		else
		{
			int			faulted = 1;

			in_guard_test = 0;
			UNIT_CHECK(!faulted, "n=%d: the kernel read past the end of its input", n);
		}
	}
	return worst;
}
#endif

/* ---------------------------------------------------------------------------
 * Small hand-checked cases
 * ------------------------------------------------------------------------- */
static void
check_hand_computed(const DistanceKernels *k)
{
	/* a = [1 2 3], b = [4 6 8]: differences 3 4 5 */
	const float a[] = {1, 2, 3};
	const float b[] = {4, 6, 8};
	/* 17 elements: one full AVX-512 vector plus a tail of one */
	float		ones[17],
				twos[17];
	float		dot,
				na,
				nb;

	unit_case_begin("%s: hand-computed values", k->name);
	UNIT_CHECK_NEAR(k->l2_squared(a, b, 3), 50.0, 0.0);	/* 9+16+25 */
	UNIT_CHECK_NEAR(k->inner_product(a, b, 3), 40.0, 0.0);	/* 4+12+24 */
	UNIT_CHECK_NEAR(k->l1(a, b, 3), 12.0, 0.0);	/* 3+4+5 */
	k->cosine_parts(a, b, 3, &dot, &na, &nb);
	UNIT_CHECK_NEAR(dot, 40.0, 0.0);
	UNIT_CHECK_NEAR(na, 14.0, 0.0);	/* 1+4+9 */
	UNIT_CHECK_NEAR(nb, 116.0, 0.0);	/* 16+36+64 */
	/* 1 - 40 / sqrt(14 * 116) = 1 - 40 / 40.2988834... = 0.0074166660 */
	UNIT_CHECK_NEAR(distance_cosine_from_parts(dot, na, nb), 0.0074166660, 1e-10);
	for (int i = 0; i < 17; i++)
	{
		ones[i] = 1.0f;
		twos[i] = (i % 2) ? -2.0f : 2.0f;
	}
	/* differences alternate -1, 3: 9 * 1 + 8 * 9 = 81 */
	UNIT_CHECK_NEAR(k->l2_squared(ones, twos, 17), 81.0, 0.0);
	/* 9 * 2 - 8 * 2 = 2 */
	UNIT_CHECK_NEAR(k->inner_product(ones, twos, 17), 2.0, 0.0);
	/* 9 * 1 + 8 * 3 = 33 */
	UNIT_CHECK_NEAR(k->l1(ones, twos, 17), 33.0, 0.0);
	k->cosine_parts(ones, twos, 17, &dot, &na, &nb);
	UNIT_CHECK_NEAR(dot, 2.0, 0.0);
	UNIT_CHECK_NEAR(na, 17.0, 0.0);
	UNIT_CHECK_NEAR(nb, 68.0, 0.0);
	unit_case_end();
}

static void
check_degenerate(const DistanceKernels *k)
{
	float		dot = -1,
				na = -1,
				nb = -1;

	unit_case_begin("%s: n = 0 gives 0", k->name);
	UNIT_CHECK_NEAR(k->l2_squared(buffer_a, buffer_b, 0), 0.0, 0.0);
	UNIT_CHECK_NEAR(k->inner_product(buffer_a, buffer_b, 0), 0.0, 0.0);
	UNIT_CHECK_NEAR(k->l1(buffer_a, buffer_b, 0), 0.0, 0.0);
	k->cosine_parts(buffer_a, buffer_b, 0, &dot, &na, &nb);
	UNIT_CHECK(dot == 0.0f && na == 0.0f && nb == 0.0f,
			   "parts %g %g %g", dot, na, nb);
	unit_case_end();

	unit_case_begin("%s: identical inputs give exactly 0 (l2, l1)", k->name);
	fill_mixed(buffer_a, LONGEST);
	memcpy(buffer_b + 3, buffer_a, sizeof(float) * LONGEST);
	for (int n = 1; n <= 300; n++)
	{
		float		same_l2 = k->l2_squared(buffer_a, buffer_a, n);
		float		copy_l2 = k->l2_squared(buffer_a, buffer_b + 3, n);
		float		copy_l1 = k->l1(buffer_a, buffer_b + 3, n);

		UNIT_CHECK(same_l2 == 0.0f && copy_l2 == 0.0f && copy_l1 == 0.0f,
				   "n=%d: l2(a,a) %g, l2(a,copy) %g, l1(a,copy) %g",
				   n, same_l2, copy_l2, copy_l1);
	}
	for (int i = 0; i < N_LONG_LENGTHS; i++)
	{
		int			n = long_lengths[i];

		UNIT_CHECK(k->l2_squared(buffer_a, buffer_b + 3, n) == 0.0f, "n=%d", n);
	}
	unit_case_end();

	/* a vector against itself: cosine distance 0 (up to rounding) */
	unit_case_begin("%s: cosine of a vector with itself and its negation", k->name);
	for (int n = 1; n <= 300; n += 13)
	{
		float		neg[300];

		for (int i = 0; i < n; i++)
			neg[i] = -buffer_a[i];
		k->cosine_parts(buffer_a, buffer_a, n, &dot, &na, &nb);
		UNIT_CHECK(dot == na && na == nb, "n=%d: parts %.9g %.9g %.9g", n, dot, na, nb);
		UNIT_CHECK_NEAR(distance_cosine_from_parts(dot, na, nb), 0.0, 1e-6);
		k->cosine_parts(buffer_a, neg, n, &dot, &na, &nb);
		UNIT_CHECK_NEAR(distance_cosine_from_parts(dot, na, nb), 2.0, 1e-6);
	}
	unit_case_end();
}

static void
check_cosine_from_parts(void)
{
	unit_case_begin("distance_cosine_from_parts: zero norms give NaN");
	UNIT_CHECK(isnan(distance_cosine_from_parts(0.0, 0.0, 1.0)), "norm_a = 0");
	UNIT_CHECK(isnan(distance_cosine_from_parts(0.0, 1.0, 0.0)), "norm_b = 0");
	UNIT_CHECK(isnan(distance_cosine_from_parts(0.0, 0.0, 0.0)), "both 0");
	UNIT_CHECK(isnan(distance_cosine_from_parts(1.0, -1.0, 1.0)), "negative norm");
	UNIT_CHECK(isnan(distance_cosine_from_parts(NAN, 1.0, 1.0)), "NaN dot");
	unit_case_end();

	unit_case_begin("distance_cosine_from_parts: values and clamping to [0, 2]");
	UNIT_CHECK_NEAR(distance_cosine_from_parts(3.0, 4.0, 9.0), 0.5, 1e-15);	/* 1 - 3/(2*3) */
	UNIT_CHECK_NEAR(distance_cosine_from_parts(0.0, 4.0, 9.0), 1.0, 0.0);
	UNIT_CHECK_NEAR(distance_cosine_from_parts(-6.0, 4.0, 9.0), 2.0, 0.0);
	/* similarity 1.0001 and -1.0001 from rounding: clamped, exactly 0 and 2 */
	UNIT_CHECK(distance_cosine_from_parts(6.0006, 4.0, 9.0) == 0.0, "clamp at 0");
	UNIT_CHECK(distance_cosine_from_parts(-6.0006, 4.0, 9.0) == 2.0, "clamp at 2");
	UNIT_CHECK(distance_cosine_from_parts(1e30, 1.0, 1.0) == 0.0, "clamp at 0 (huge)");
	unit_case_end();
}

static void
check_dispatcher(void)
{
	const DistanceKernels *best = distance_kernels_avx512();
	float		a[5] = {1, 2, 3, 4, 5},
				b[5] = {0, 2, 4, 4, 1};

	if (best == NULL)
		best = distance_kernels_avx2();
	if (best == NULL)
		best = distance_kernels_scalar();

	unit_case_begin("distance_init picks the best kernel (%s)", best->name);
	UNIT_CHECK_STR_EQ(distance_active.name, "scalar");	/* before init */
	distance_init();
	UNIT_CHECK_STR_EQ(distance_active.name, best->name);
	UNIT_CHECK_TRUE(distance_active.l2_squared == best->l2_squared);
	UNIT_CHECK_TRUE(distance_active.inner_product == best->inner_product);
	UNIT_CHECK_TRUE(distance_active.l1 == best->l1);
	UNIT_CHECK_TRUE(distance_active.cosine_parts == best->cosine_parts);
	distance_init();			/* idempotent */
	UNIT_CHECK_STR_EQ(distance_active.name, best->name);
	/* the inline wrappers go through the active table: 1+0+1+0+16 = 18 */
	UNIT_CHECK_NEAR(distance_l2_squared(a, b, 5), 18.0, 0.0);
	UNIT_CHECK_NEAR(distance_inner_product(a, b, 5), 37.0, 0.0);	/* 0+4+12+16+5 */
	UNIT_CHECK_NEAR(distance_l1(a, b, 5), 6.0, 0.0);	/* 1+0+1+0+4 */
	/* 1 - 37 / sqrt(55 * 37) */
	UNIT_CHECK_NEAR(distance_cosine(a, b, 5), 1.0 - 37.0 / sqrt(55.0 * 37.0), 1e-7);
	unit_case_end();
}

/* ---------------------------------------------------------------------------
 * Driver
 * ------------------------------------------------------------------------- */
static void
check_kernel(const DistanceKernels *k)
{
	int			short_lengths[300];

	for (int i = 0; i < 300; i++)
		short_lengths[i] = i + 1;

	check_hand_computed(k);
	check_degenerate(k);

	for (int fn = 0; fn < N_FUNCTIONS; fn++)
	{
		double		worst;

		for (size_t d = 0; d < sizeof(distributions) / sizeof(distributions[0]); d++)
		{
			/* same seed per distribution: every kernel sees the same inputs */
			rng_state = 1000 + d;
			distributions[d].fill(buffer_a, LONGEST + SLACK);
			distributions[d].fill(buffer_b, LONGEST + SLACK);

			unit_case_begin("%s %s short/%s", k->name, function_names[fn], distributions[d].name);
			worst = check_lengths(k, fn, short_lengths, 300);
			if (unit_case_end())
				printf("ok   %-6s %-13s short/%-7s n=1..300 x %d offsets, worst err %.2e\n",
					   k->name, function_names[fn], distributions[d].name,
					   N_MISALIGNMENTS, worst);

			unit_case_begin("%s %s long/%s", k->name, function_names[fn], distributions[d].name);
			worst = check_lengths(k, fn, long_lengths, N_LONG_LENGTHS);
			if (unit_case_end())
				printf("ok   %-6s %-13s long/%-8s n=768..16000 x %d offsets, worst err %.2e\n",
					   k->name, function_names[fn], distributions[d].name,
					   N_MISALIGNMENTS, worst);
		}

		rng_state = 2000;
		unit_case_begin("%s %s prefix", k->name, function_names[fn]);
		worst = check_prefixes(k, fn);
		if (unit_case_end())
			printf("ok   %-6s %-13s prefixes of 768, NaN after n, worst err %.2e\n",
				   k->name, function_names[fn], worst);

#ifdef HAVE_GUARD_PAGES
		if (guard_end_a != NULL && guard_end_b != NULL)
		{
			rng_state = 3000;
			unit_case_begin("%s %s guard page", k->name, function_names[fn]);
			worst = check_guard_pages(k, fn);
			if (unit_case_end())
				printf("ok   %-6s %-13s n=1..300 ending at a guard page, worst err %.2e\n",
					   k->name, function_names[fn], worst);
		}
		else
			unit_skip("%s %s guard page: mmap failed", k->name, function_names[fn]);
#endif
	}
}

int
main(void)
{
	const DistanceKernels *kernels[3];

	setvbuf(stdout, NULL, _IOLBF, 0);
	buffer_a = aligned_alloc(64, sizeof(float) * (LONGEST + SLACK));
	buffer_b = aligned_alloc(64, sizeof(float) * (LONGEST + SLACK));
	if (buffer_a == NULL || buffer_b == NULL)
	{
		fprintf(stderr, "out of memory\n");
		return 1;
	}
#ifdef HAVE_GUARD_PAGES
	{
		struct sigaction sa;

		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = fault_handler;
		sigaction(SIGSEGV, &sa, NULL);
		sigaction(SIGBUS, &sa, NULL);
		guard_end_a = guarded_region(1024);
		guard_end_b = guarded_region(1024);
	}
#endif

	/* run before anything calls distance_init() */
	check_dispatcher();
	check_cosine_from_parts();

	kernels[0] = distance_kernels_scalar();
	kernels[1] = distance_kernels_avx2();
	kernels[2] = distance_kernels_avx512();
	printf("kernels: scalar tested; avx2 %s; avx512 %s\n",
		   kernels[1] ? "tested" : "SKIPPED (not supported by this CPU/compiler)",
		   kernels[2] ? "tested" : "SKIPPED (not supported by this CPU/compiler)");
	if (kernels[1] == NULL)
		unit_skip("avx2 kernels: not supported here");
	if (kernels[2] == NULL)
		unit_skip("avx512 kernels: not supported here");

	for (int i = 0; i < 3; i++)
		if (kernels[i] != NULL)
			check_kernel(kernels[i]);

	free(buffer_a);
	free(buffer_b);
	return unit_summary();
}
