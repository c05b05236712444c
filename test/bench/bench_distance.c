/*
 * bench_distance.c — micro-benchmark of the distance kernels (src/distance*.c).
 *
 * Prints nanoseconds per call for each implementation the CPU supports
 * (scalar, avx2, avx512), each function, at 128, 768, 1536 and 3072
 * dimensions, in two settings:
 *
 *   hot   the second operand rotates among a few vectors, HOT_POOL_KB in all
 *         (at least two), which stay in L1 cache with the query: the pure
 *         compute cost of the kernel;
 *   cold  it rotates, in a shuffled order, through a pool of COLD_POOL_MB
 *         (default 512 MiB, more than this machine's L2 and also its L3), so
 *         every call streams its vector from DRAM, as the scattered visits of
 *         a graph search over a large index do.
 *
 * The first operand (the query) is always the same vector, as in a search.
 * Calls go through the DistanceKernels function pointers exactly as the
 * extension makes them, so the indirect-call cost is included.
 *
 * Method: each (kernel, function, dim, pool) is warmed up for WARMUP_NS and
 * a call count calibrated to take about RUN_NS; then RUNS rounds each time
 * one run of every kernel (interleaved, so that load from elsewhere hits all
 * kernels alike); a cell shows the median run.  Results feed a volatile sink so the calls cannot be optimised
 * away.  The machine is shared, so expect some noise; the medians are what
 * to compare.
 *
 * Usage: bench_distance [cold pool size in MiB]
 */
#define _POSIX_C_SOURCE 200809L	/* clock_gettime under -std=c11 */

#include "distance.h"
#include "random.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define HOT_POOL_KB 24
#define DEFAULT_COLD_POOL_MB 512
#define RUNS 15
#define WARMUP_NS 10000000.0	/* 10 ms */
#define RUN_NS 2000000.0		/* 2 ms: short runs, so that the median dodges preemption */

enum
{
	FN_L2, FN_IP, FN_L1, FN_COSINE, N_FUNCTIONS
};

static const char *const function_names[N_FUNCTIONS] = {
	"l2_squared", "inner_product", "l1", "cosine_parts"
};

static const int dims[] = {128, 768, 1536, 3072};
#define N_DIMS ((int) (sizeof(dims) / sizeof(dims[0])))

typedef struct Pool
{
	const char *name;
	float	   *vectors;		/* count * dim floats */
	uint32_t   *order;			/* visiting order, a permutation of 0..count-1 */
	size_t		count;
	size_t		cursor;			/* position in order[], kept across runs */
} Pool;

static volatile float sink;

static double
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e9 + ts.tv_nsec;
}

/* rng_state, rng_next, rng_unit: ../unit/random.h */

static void
fill_random(float *x, size_t n)
{
	for (size_t i = 0; i < n; i++)
		x[i] = (float) (rng_unit() * 2.0 - 1.0);
}

/* Make the pool's vectors and a shuffled visiting order (Fisher-Yates). */
static int
pool_setup(Pool *p, const char *name, size_t count, int dim)
{
	p->name = name;
	p->count = count;
	p->cursor = 0;
	p->vectors = malloc(count * (size_t) dim * sizeof(float));
	p->order = malloc(count * sizeof(uint32_t));
	if (p->vectors == NULL || p->order == NULL)
		return 0;
	fill_random(p->vectors, count * (size_t) dim);
	for (size_t i = 0; i < count; i++)
		p->order[i] = (uint32_t) i;
	for (size_t i = count - 1; i > 0; i--)
	{
		size_t		j = rng_next() % (i + 1);
		uint32_t	t = p->order[i];

		p->order[i] = p->order[j];
		p->order[j] = t;
	}
	return 1;
}

static void
pool_free(Pool *p)
{
	free(p->vectors);
	free(p->order);
	p->vectors = NULL;
	p->order = NULL;
}

/* 'calls' calls of one function, the second operand walking the pool */
static void
run_calls(const DistanceKernels *k, int fn, const float *query, Pool *p,
		  int dim, long calls)
{
	float		acc = 0.0f;
	size_t		cursor = p->cursor;

	for (long c = 0; c < calls; c++)
	{
		const float *v = p->vectors + (size_t) p->order[cursor] * dim;

		if (++cursor == p->count)
			cursor = 0;
		switch (fn)
		{
			case FN_L2:
				acc += k->l2_squared(query, v, dim);
				break;
			case FN_IP:
				acc += k->inner_product(query, v, dim);
				break;
			case FN_L1:
				acc += k->l1(query, v, dim);
				break;
			case FN_COSINE:
				{
					float		dot,
								na,
								nb;

					k->cosine_parts(query, v, dim, &dot, &na, &nb);
					acc += dot + na + nb;
					break;
				}
		}
	}
	p->cursor = cursor;
	sink += acc;
}

static int
compare_doubles(const void *x, const void *y)
{
	double		a = *(const double *) x,
				b = *(const double *) y;

	return (a > b) - (a < b);
}

/*
 * Warm one kernel up on one (function, dim, pool) and return the number of
 * calls that takes about RUN_NS.
 */
static long
calibrate(const DistanceKernels *k, int fn, const float *query, Pool *p, int dim)
{
	double		start,
				elapsed;
	long		calls = 16;

	start = now_ns();
	do
	{
		double		t0 = now_ns();

		run_calls(k, fn, query, p, dim, calls);
		elapsed = now_ns() - t0;
		if (elapsed < RUN_NS)
			calls *= 2;
	} while (now_ns() - start < WARMUP_NS);
	calls = (long) (calls * (RUN_NS / (elapsed > 0 ? elapsed : 1)));
	return calls < 16 ? 16 : calls;
}

/*
 * Median ns per call of every kernel on one (function, dim, pool).  The runs
 * of the kernels are interleaved (round r runs each kernel once), so that a
 * burst of load from elsewhere on the machine hits all kernels alike.
 */
static void
measure(const DistanceKernels *const *kernels, int n_kernels, int fn,
		const float *query, Pool *p, int dim, double *median_ns)
{
	double		per_call[3][RUNS];
	long		calls[3];

	for (int k = 0; k < n_kernels; k++)
		calls[k] = calibrate(kernels[k], fn, query, p, dim);
	for (int r = 0; r < RUNS; r++)
		for (int k = 0; k < n_kernels; k++)
		{
			double		t0 = now_ns();

			run_calls(kernels[k], fn, query, p, dim, calls[k]);
			per_call[k][r] = (now_ns() - t0) / calls[k];
		}
	for (int k = 0; k < n_kernels; k++)
	{
		qsort(per_call[k], RUNS, sizeof(double), compare_doubles);
		median_ns[k] = per_call[k][RUNS / 2];
	}
}

int
main(int argc, char **argv)
{
	const DistanceKernels *kernels[3];
	int			n_kernels = 0;
	long		cold_mb = DEFAULT_COLD_POOL_MB;
	double		result[N_DIMS][N_FUNCTIONS][2][3];
	const char *pool_names[2] = {"hot", "cold"};

	if (argc > 1)
		cold_mb = strtol(argv[1], NULL, 10);
	if (cold_mb < 8)
	{
		fprintf(stderr, "cold pool must be at least 8 MiB\n");
		return 1;
	}

	distance_init();
	kernels[n_kernels++] = distance_kernels_scalar();
	if (distance_kernels_avx2() != NULL)
		kernels[n_kernels++] = distance_kernels_avx2();
	if (distance_kernels_avx512() != NULL)
		kernels[n_kernels++] = distance_kernels_avx512();

	printf("distance kernel benchmark: ns per call, median of %d runs of ~%.0f ms after %.0f ms warm-up\n",
		   RUNS, RUN_NS / 1e6, WARMUP_NS / 1e6);
	printf("hot pool: %d KiB (at least 2 vectors); cold pool: %ld MiB visited in shuffled order; "
		   "dispatcher picks %s\n\n", HOT_POOL_KB, cold_mb, distance_active.name);

	for (int d = 0; d < N_DIMS; d++)
	{
		int			dim = dims[d];
		float	   *query = malloc(sizeof(float) * dim);
		size_t		hot_count = HOT_POOL_KB * 1024 / (sizeof(float) * dim);
		Pool		pools[2];

		if (hot_count < 2)
			hot_count = 2;
		if (query == NULL ||
			!pool_setup(&pools[0], "hot", hot_count, dim) ||
			!pool_setup(&pools[1], "cold", (size_t) cold_mb * 1024 * 1024 / (sizeof(float) * dim), dim))
		{
			fprintf(stderr, "out of memory\n");
			return 1;
		}
		fill_random(query, dim);
		for (int fn = 0; fn < N_FUNCTIONS; fn++)
			for (int p = 0; p < 2; p++)
				measure(kernels, n_kernels, fn, query, &pools[p], dim, result[d][fn][p]);
		pool_free(&pools[0]);
		pool_free(&pools[1]);
		free(query);
	}

	/* the table */
	printf("%5s  %-13s", "dim", "function");
	for (int p = 0; p < 2; p++)
		for (int k = 0; k < n_kernels; k++)
		{
			char		head[32];

			snprintf(head, sizeof(head), "%s %s", kernels[k]->name, pool_names[p]);
			printf(" %12s", head);
		}
	printf("\n");
	for (int d = 0; d < N_DIMS; d++)
		for (int fn = 0; fn < N_FUNCTIONS; fn++)
		{
			printf("%5d  %-13s", dims[d], function_names[fn]);
			for (int p = 0; p < 2; p++)
				for (int k = 0; k < n_kernels; k++)
					printf(" %12.1f", result[d][fn][p][k]);
			printf("\n");
		}
	return 0;
}
