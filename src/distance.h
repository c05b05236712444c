/*
 * distance.h — distance kernels over float vectors, the one place where vector
 * arithmetic is done.
 *
 * Plain C, no PostgreSQL headers: the SQL functions, the graph engine
 * (src/graph/), the unit tests and the benchmarks all call these.
 *
 * Every kernel takes two arrays and a length n.  Calling a kernel with n
 * smaller than the vectors' dimension computes the distance on the first n
 * dimensions (a prefix), which is what the matryoshka index needs; there is no
 * separate "prefix" entry point because none is needed.
 *
 * Three implementations exist: portable scalar C, AVX2+FMA and AVX-512F.
 * distance_init() detects the CPU once (at library load) and points the
 * active table at the fastest one the CPU and OS support.  The AVX variants
 * are compiled with function-level target attributes, so the library is built
 * without -mavx* and still runs on any x86-64 (or non-x86) CPU.
 *
 * Accuracy: each kernel accumulates in float with several independent partial
 * sums, giving a relative error well under 1e-5 against a double-precision
 * reference up to 16000 dimensions (see test/unit/test_distance.c).
 */
#ifndef HIERINDEX_DISTANCE_H
#define HIERINDEX_DISTANCE_H

typedef float (*distance_fn) (const float *a, const float *b, int n);

/*
 * cosine_parts computes, in one pass, dot = sum a_i b_i, norm_a = sum a_i^2
 * and norm_b = sum b_i^2 (squared norms).
 */
typedef void (*cosine_parts_fn) (const float *a, const float *b, int n,
								 float *dot, float *norm_a, float *norm_b);

typedef struct DistanceKernels
{
	const char *name;			/* "scalar", "avx2", "avx512" */
	distance_fn l2_squared;		/* sum (a_i - b_i)^2 */
	distance_fn inner_product;	/* sum a_i b_i */
	distance_fn l1;				/* sum |a_i - b_i| */
	cosine_parts_fn cosine_parts;
} DistanceKernels;

/* The implementation chosen by distance_init(); scalar until then. */
extern DistanceKernels distance_active;

/* Detect the CPU and fill distance_active.  Idempotent, cheap. */
extern void distance_init(void);

/*
 * Each implementation, for tests and benchmarks.  The AVX ones return NULL
 * when the running CPU (or the compiler) does not support them.
 */
extern const DistanceKernels *distance_kernels_scalar(void);
extern const DistanceKernels *distance_kernels_avx2(void);
extern const DistanceKernels *distance_kernels_avx512(void);

/*
 * Cosine distance 1 - a.b / (|a| |b|) from the parts, clamped to [0, 2]
 * against rounding.  Returns NaN when either norm is zero (the distance is
 * undefined there; the SQL layer and the indexes decide what to do).
 */
extern double distance_cosine_from_parts(double dot, double norm_a, double norm_b);

/* Convenience wrappers over the active table. */
static inline float
distance_l2_squared(const float *a, const float *b, int n)
{
	return distance_active.l2_squared(a, b, n);
}

static inline float
distance_inner_product(const float *a, const float *b, int n)
{
	return distance_active.inner_product(a, b, n);
}

static inline float
distance_l1(const float *a, const float *b, int n)
{
	return distance_active.l1(a, b, n);
}

static inline double
distance_cosine(const float *a, const float *b, int n)
{
	float		dot,
				na,
				nb;

	distance_active.cosine_parts(a, b, n, &dot, &na, &nb);
	return distance_cosine_from_parts(dot, na, nb);
}

#endif							/* HIERINDEX_DISTANCE_H */
