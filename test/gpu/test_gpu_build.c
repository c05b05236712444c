/*
 * test_gpu_build.c — the GPU builder (hierindex_gpu.so) against a CPU
 * reference, on a machine with a CUDA GPU.
 *
 *   test_gpu_build MODULE.so      the kernel tests (needs a GPU)
 *   test_gpu_build --self-test    the checkers of this file against CPU
 *                                 answers, right and deliberately wrong (no
 *                                 GPU, no module: runs in CI)
 *   test_gpu_build --small MODULE.so   smaller sizes, for the CPU stand-in
 *                                 fake_gpu_module.c (make check-fake)
 *
 * The module is opened the way the backend opens it (dlopen, dlsym by the
 * names in gpu.h), so what passes here is what hierindex.so will call.
 *
 * 1. k-NN (hierindex_gpu_knn) against brute force in double precision, on
 *    random inputs whose sizes and dimensions are not multiples of any tile
 *    size (n = 1 .. 20000, d = 3 .. 1000), k = 10 and 64 (k > n - 1 too: the
 *    rows end with -1 / +inf), every metric the module supports and every
 *    precision, and once more with a memory limit so small that the vectors
 *    must be streamed through the GPU in blocks.  The outputs are poisoned
 *    before each call, so an entry the module forgot to write is caught.
 *    How an answer is judged (check_knn): the reported distances are what
 *    the metric gives for the reported ids, and the j-th equals the exact
 *    j-th distance, both within a relative 1e-5 (fp32 arithmetic against
 *    double); the ids equal the exact ones as a set, except that near the
 *    k-th distance (within that same tolerance, the "tie band") any of the
 *    tied elements may be the one kept; rows are ascending, ties by id.
 * 2. The whole graph (hierindex_gpu_build_graph) on clustered data like the
 *    benchmark's generated set, small: levels drawn by graph_create as the
 *    backend does, then the entry point and graph_connect_unreachable as the
 *    backend does; the structure is checked (widths, self links, duplicates,
 *    ranges, upper layers only to elements of that level, lists ascending,
 *    every element reachable) and recall@10 of graph_search at ef 100 must
 *    reach 0.99; the CPU builder's recall on the same data is printed beside.
 * 3. Errors: the metric the GPU lacks, bad arguments, a cancel from the
 *    should_stop callback; after each, the device's free memory is back
 *    where it was (nothing leaked on the error path).
 *
 * The self-test feeds the same checkers a CPU k-NN (fp32, sorted) and a
 * CPU-built graph, which must pass, and corrupted copies of them (a wrong
 * id, a wrong distance, an unwritten entry, bad padding, a self link, a
 * duplicate, an upper link to a lower element, an orphaned element), each
 * of which must fail: a checker that cannot fail tests nothing.
 *
 * The reference computations are OpenMP-parallel; all unit.h checks are
 * made from the main thread.
 */
#include "gpu.h"
#include "graph/graph.h"
#include "random.h"
#include "unit.h"

#include <dlfcn.h>
#include <math.h>
#include <omp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

_Static_assert(HIERINDEX_GPU_METRIC_L2 == GRAPH_METRIC_L2 &&
			   HIERINDEX_GPU_METRIC_INNER_PRODUCT == GRAPH_METRIC_INNER_PRODUCT &&
			   HIERINDEX_GPU_METRIC_COSINE == GRAPH_METRIC_COSINE &&
			   HIERINDEX_GPU_METRIC_L1 == GRAPH_METRIC_L1,
			   "gpu.h and graph.h number the metrics alike");

/* HIERINDEX_TEST_RELATIVE_TOLERANCE overrides it, to see how far off a failure is */
static double relative_tolerance = 1e-5;
#define POISON_ID (INT32_MIN + 77)	/* no module writes this by chance */
#define MAX_K 64
#define RECALL_K 10
#define RECALL_EF 100
#define RECALL_TARGET 0.99
#define LEAK_SLACK ((size_t) 16 << 20)	/* allocation granularity, driver noise */

static const char *const metric_names[] = {"l2", "inner_product", "cosine", "l1"};
static const char *const precision_names[] = {"tf32", "bf16", "fp32", "fp16"};

/* ------------------------------------------------------------------------
 * The module
 * ------------------------------------------------------------------------ */
typedef struct Module
{
	void	   *handle;
	hierindex_gpu_probe_fn probe;
	hierindex_gpu_knn_fn knn;
	hierindex_gpu_build_graph_fn build_graph;
} Module;

static Module module;
static pthread_t main_thread;

static int
open_module(const char *path)
{
	hierindex_gpu_abi_version_fn abi_version;

	module.handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!UNIT_CHECK(module.handle != NULL, "dlopen(%s): %s", path, dlerror()))
		return -1;
	abi_version = (hierindex_gpu_abi_version_fn) dlsym(module.handle, HIERINDEX_GPU_SYM_ABI_VERSION);
	module.probe = (hierindex_gpu_probe_fn) dlsym(module.handle, HIERINDEX_GPU_SYM_PROBE);
	module.knn = (hierindex_gpu_knn_fn) dlsym(module.handle, HIERINDEX_GPU_SYM_KNN);
	module.build_graph = (hierindex_gpu_build_graph_fn) dlsym(module.handle, HIERINDEX_GPU_SYM_BUILD_GRAPH);
	if (!UNIT_CHECK(abi_version && module.probe && module.knn && module.build_graph,
					"all four symbols of gpu.h exported (%p %p %p %p)",
					(void *) abi_version, (void *) module.probe,
					(void *) module.knn, (void *) module.build_graph))
		return -1;
	if (!UNIT_CHECK(abi_version() == HIERINDEX_GPU_ABI_VERSION,
					"ABI version %d, expected %d", abi_version(), HIERINDEX_GPU_ABI_VERSION))
		return -1;
	return 0;
}

/* Free device memory now, from the probe; 0 when the probe fails. */
static size_t
device_free_memory(void)
{
	HierindexGpuDeviceInfo info;
	char		errbuf[256];

	if (module.probe(0, &info, errbuf, sizeof(errbuf)) != HIERINDEX_GPU_OK)
		return 0;
	return info.free_memory;
}

/* should_stop: counts its calls, checks the thread, says stop from call stop_at on. */
typedef struct StopCounter
{
	int			calls;
	int			stop_at;		/* 0: never */
	int			foreign_thread_calls;
} StopCounter;

static int
count_and_maybe_stop(void *arg)
{
	StopCounter *counter = arg;

	counter->calls++;
	if (!pthread_equal(pthread_self(), main_thread))
		counter->foreign_thread_calls++;
	return counter->stop_at > 0 && counter->calls >= counter->stop_at;
}

static HierindexGpuOptions
make_options(int precision, size_t memory_limit, StopCounter *counter)
{
	HierindexGpuOptions options;

	memset(&options, 0, sizeof(options));
	options.device = 0;
	options.memory_limit = memory_limit;
	options.precision = precision;
	options.should_stop = count_and_maybe_stop;
	options.should_stop_arg = counter;
	return options;
}

static double
seconds_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ------------------------------------------------------------------------
 * Inputs
 * ------------------------------------------------------------------------ */
static void *
checked_malloc(size_t bytes)
{
	void	   *p = malloc(bytes > 0 ? bytes : 1);

	if (p == NULL)
	{
		fprintf(stderr, "test_gpu_build: out of memory (%zu bytes)\n", bytes);
		exit(2);
	}
	return p;
}

/* n x d floats uniform in [-1, 1) from a fixed seed. */
static float *
make_uniform(int64_t n, int d, uint64_t seed)
{
	float	   *x = checked_malloc(sizeof(float) * n * d);

	rng_state = seed;
	for (int64_t i = 0; i < n * d; i++)
		x[i] = (float) (2.0 * rng_unit() - 1.0);
	return x;
}

/*
 * n x d clustered unit vectors, the recipe of test/bench/gen_clustered.c:
 * dimension i scaled by (1 + i)^-0.6, centres ~ N(0, 9) in that scale, each
 * point a random centre plus N(0, 1) noise in that scale, then unit length.
 * Same centre seed, different point seeds: base and queries share centres.
 */
static float *
make_clustered(int64_t n, int d, int centres, uint64_t centre_seed, uint64_t point_seed)
{
	double	   *scale = checked_malloc(sizeof(double) * d);
	double	   *centre = checked_malloc(sizeof(double) * centres * d);
	float	   *x = checked_malloc(sizeof(float) * n * d);

	for (int i = 0; i < d; i++)
		scale[i] = pow(1.0 + i, -0.6);
	rng_state = centre_seed;
	for (int64_t i = 0; i < (int64_t) centres * d; i++)
		centre[i] = 3.0 * rng_normal() * scale[i % d];
	rng_state = point_seed;
	for (int64_t p = 0; p < n; p++)
	{
		const double *c = centre + (int64_t) (rng_unit() * centres) * d;
		double		norm = 0.0;
		float	   *row = x + p * d;

		for (int i = 0; i < d; i++)
		{
			double		v = c[i] + rng_normal() * scale[i];

			row[i] = (float) v;
			norm += v * v;
		}
		norm = sqrt(norm);
		for (int i = 0; i < d; i++)
			row[i] = (float) (row[i] / norm);
	}
	free(scale);
	free(centre);
	return x;
}

/* A copy of x with every row normalised the way the index does it. */
static float *
normalized_copy(const float *x, int64_t n, int d)
{
	float	   *y = checked_malloc(sizeof(float) * n * d);

	for (int64_t i = 0; i < n; i++)
		if (graph_normalize(x + i * d, y + i * d, d) != 0)
		{
			fprintf(stderr, "test_gpu_build: row %lld has no direction\n", (long long) i);
			exit(2);
		}
	return y;
}

/* ------------------------------------------------------------------------
 * The reference: exact distances in double, brute force
 * ------------------------------------------------------------------------ */
static double
exact_distance(int metric, const float *a, const float *b, int d)
{
	double		sum = 0.0;

	if (metric == HIERINDEX_GPU_METRIC_L2)
	{
#pragma omp simd reduction(+:sum)
		for (int i = 0; i < d; i++)
			sum += ((double) a[i] - b[i]) * ((double) a[i] - b[i]);
		return sum;
	}
	if (metric == HIERINDEX_GPU_METRIC_L1)
	{
#pragma omp simd reduction(+:sum)
		for (int i = 0; i < d; i++)
			sum += fabs((double) a[i] - b[i]);
		return sum;
	}
#pragma omp simd reduction(+:sum)
	for (int i = 0; i < d; i++)
		sum += (double) a[i] * b[i];
	return metric == HIERINDEX_GPU_METRIC_INNER_PRODUCT ? -sum : 1.0 - sum;
}

/*
 * The k nearest of base[0..n) to each of the nq queries, ascending, ties by
 * smaller id; exclude_self: query q is base element q and is left out.
 * Rows with fewer than k candidates end with -1 / +inf.
 */
static void
brute_force_knn(const float *base, int64_t n, const float *queries, int64_t nq,
				int d, int metric, int k, int exclude_self,
				double *distances, int32_t *ids)
{
	/*
	 * Queries in blocks, so that each base row is read from memory once per
	 * block rather than once per query.
	 */
#define QUERY_BLOCK 16
#pragma omp parallel for schedule(dynamic, 1)
	for (int64_t first = 0; first < nq; first += QUERY_BLOCK)
	{
		int64_t		last = first + QUERY_BLOCK < nq ? first + QUERY_BLOCK : nq;
		int			filled[QUERY_BLOCK] = {0};

		for (int64_t j = first * k; j < last * k; j++)
		{
			distances[j] = INFINITY;
			ids[j] = -1;
		}
		for (int64_t b = 0; b < n; b++)
		{
			for (int64_t q = first; q < last; q++)
			{
				double	   *row_distance = distances + q * k;
				int32_t    *row_id = ids + q * k;
				int		   *row_filled = &filled[q - first];
				double		dist;
				int			j;

				if (exclude_self && b == q)
					continue;
				dist = exact_distance(metric, queries + q * d, base + b * d, d);
				if (*row_filled == k && !(dist < row_distance[k - 1]))
					continue;
				j = *row_filled < k ? (*row_filled)++ : k - 1;
				while (j > 0 && row_distance[j - 1] > dist)
				{
					row_distance[j] = row_distance[j - 1];
					row_id[j] = row_id[j - 1];
					j--;
				}
				row_distance[j] = dist;
				row_id[j] = (int32_t) b;
			}
		}
	}
}

/* ------------------------------------------------------------------------
 * Verdicts: problem counts with the first few messages, so that checkers
 * can run in parallel and be tested themselves (self-test: must they fail?)
 * ------------------------------------------------------------------------ */
typedef struct Verdict
{
	int64_t		problems;
	int64_t		tie_swaps;		/* ids different from brute force inside the tie band */
	char		first[600];
} Verdict;

static void
verdict_add(Verdict *verdict, const char *fmt,...)
	__attribute__((format(printf, 2, 3)));

static void
verdict_add(Verdict *verdict, const char *fmt,...)
{
#pragma omp critical(verdict)
	{
		if (verdict->problems++ == 0)
		{
			va_list		ap;

			va_start(ap, fmt);
			vsnprintf(verdict->first, sizeof(verdict->first), fmt, ap);
			va_end(ap);
		}
	}
}

/*
 * How far two fp32-computed distances of this magnitude may differ from the
 * exact one: relative 1e-5 of the distance, where the distance can be
 * near 0 by cancellation (inner product, cosine) relative to the size of
 * the terms instead (|a| |b|, 1 for unit rows).
 */
static double
tolerance(int metric, double exact, double norm_product)
{
	double		magnitude = fabs(exact);

	if (metric == HIERINDEX_GPU_METRIC_INNER_PRODUCT && norm_product > magnitude)
		magnitude = norm_product;
	if (metric == HIERINDEX_GPU_METRIC_COSINE && magnitude < 1.0)
		magnitude = 1.0;
	return relative_tolerance * magnitude + 1e-30;
}

static double
norm_of(const float *a, int d)
{
	double		sum = 0.0;

	for (int i = 0; i < d; i++)
		sum += (double) a[i] * a[i];
	return sqrt(sum);
}

/*
 * Judge one k-NN answer (ids, distances: n x k) against the reference
 * (ref_distance, ref_id: n x ref_k, ref_k >= min(k, n - 1)).
 */
static Verdict
check_knn(const float *x, int64_t n, int d, int metric, int k,
		  const int32_t *ids, const float *distances,
		  const double *ref_distance, const int32_t *ref_id, int ref_k)
{
	Verdict		verdict;
	int			real = (int) (n - 1 < k ? n - 1 : k);
	int64_t		tie_swaps = 0;

	memset(&verdict, 0, sizeof(verdict));
#pragma omp parallel for schedule(dynamic, 64) reduction(+:tie_swaps)
	for (int64_t row = 0; row < n; row++)
	{
		const int32_t *got_id = ids + row * k;
		const float *got = distances + row * k;
		const double *want = ref_distance + row * ref_k;
		const int32_t *want_id = ref_id + row * ref_k;
		const float *a = x + row * d;
		double		norm_a = norm_of(a, d);
		double		kth = real > 0 ? want[real - 1] : 0.0;
		double		kth_tolerance = 0.0;
		int			row_ok = 1;

		for (int j = 0; j < k && row_ok; j++)
		{
			if (got_id[j] == POISON_ID || isnan(got[j]))
			{
				verdict_add(&verdict, "row %lld entry %d was not written (id %d, distance %g)",
							(long long) row, j, got_id[j], got[j]);
				row_ok = 0;
			}
			else if (j >= real && (got_id[j] != -1 || !(isinf(got[j]) && got[j] > 0)))
			{
				verdict_add(&verdict, "row %lld entry %d: only %d others exist, want -1/+inf, got %d/%g",
							(long long) row, j, real, got_id[j], got[j]);
				row_ok = 0;
			}
			else if (j < real && (got_id[j] < 0 || got_id[j] >= n || got_id[j] == row))
			{
				verdict_add(&verdict, "row %lld entry %d: id %d is out of range or the row itself",
							(long long) row, j, got_id[j]);
				row_ok = 0;
			}
		}
		if (!row_ok || real == 0)
			continue;

		for (int j = 0; j < real && row_ok; j++)
		{
			const float *b = x + (int64_t) got_id[j] * d;
			double		norm_product = norm_a * norm_of(b, d);
			double		exact = exact_distance(metric, a, b, d);
			double		tol = tolerance(metric, exact, norm_product);

			if (j == real - 1)
				kth_tolerance = tolerance(metric, kth, norm_product);
			for (int i = 0; i < j; i++)
				if (got_id[i] == got_id[j])
				{
					verdict_add(&verdict, "row %lld: id %d twice (entries %d and %d)",
								(long long) row, got_id[j], i, j);
					row_ok = 0;
				}
			if (fabs(got[j] - exact) > tol)
			{
				verdict_add(&verdict, "row %lld entry %d: distance %.9g reported for id %d, exactly %.9g",
							(long long) row, j, got[j], got_id[j], exact);
				row_ok = 0;
			}
			else if (fabs(got[j] - want[j]) > tolerance(metric, want[j], norm_product))
			{
				verdict_add(&verdict, "row %lld entry %d: distance %.9g (id %d), the exact %d-th nearest is %.9g (id %d)",
							(long long) row, j, got[j], got_id[j], j + 1, want[j], want_id[j]);
				row_ok = 0;
			}
			else if (exact > kth + kth_tolerance && j == real - 1)
			{
				verdict_add(&verdict, "row %lld: id %d at %.9g is beyond the k-th nearest %.9g",
							(long long) row, got_id[j], exact, kth);
				row_ok = 0;
			}
			if (j > 0 && (got[j] < got[j - 1] ||
						  (got[j] == got[j - 1] && got_id[j] < got_id[j - 1])))
			{
				verdict_add(&verdict, "row %lld: entries %d, %d not ascending (%d at %.9g, %d at %.9g)",
							(long long) row, j - 1, j, got_id[j - 1], got[j - 1], got_id[j], got[j]);
				row_ok = 0;
			}
		}
		if (!row_ok)
			continue;

		/*
		 * As sets: each id nearer than the tie band below the k-th distance
		 * must be there; each reported id must be within the band (checked
		 * above through the distances, here for the k-th entry's bound on
		 * all of them).
		 */
		for (int j = 0; j < real; j++)
		{
			int			found = 0;

			for (int i = 0; i < real && !found; i++)
				found = got_id[i] == want_id[j];
			if (found)
				continue;
			if (want[j] < kth - kth_tolerance)
			{
				verdict_add(&verdict, "row %lld: the %d-th nearest, id %d at %.9g, is missing (k-th nearest %.9g)",
							(long long) row, j + 1, want_id[j], want[j], kth);
				break;
			}
			tie_swaps++;
		}
	}
	verdict.tie_swaps = tie_swaps;
	return verdict;
}

/* ------------------------------------------------------------------------
 * Part 1: k-NN against brute force
 * ------------------------------------------------------------------------ */
typedef struct KnnShape
{
	int64_t		n;
	int			d;
	size_t		stream_limit;	/* nonzero: each call once more with this memory_limit */
	int			k;				/* nonzero: this k alone, else 10 and MAX_K */
} KnnShape;

static const KnnShape knn_shapes[] = {
	{1, 3, 0, 0},
	{2, 17, 0, 0},
	{65, 3, 0, 0},
	{65, 1000, 0, 0},
	{1000, 17, 0, 0},
	{1000, 768, 0, 0},
	{4097, 128, 0, 0},
	{4097, 1000, 0, 0},
	{20000, 128, 0, 0},
	{20000, 768, (size_t) 24 << 20, 0},	/* and 61 MB of vectors through 24 MiB */
	/*
	 * the largest k the module takes: a shortlist of 3072, with more shared
	 * memory than a block gets without asking
	 */
	{4000, 24, 0, 1536},
};

/* --small: sizes a CPU stand-in (fake_gpu_module.c) gets through in seconds */
static const KnnShape small_knn_shapes[] = {
	{1, 3, 0, 0},
	{2, 17, 0, 0},
	{65, 3, 0, 0},
	{65, 1000, 0, 0},
	{1000, 17, 0, 0},
	{1000, 128, (size_t) 128 << 10, 0},
};

static void
poison_knn_outputs(int32_t *ids, float *distances, size_t count)
{
	for (size_t i = 0; i < count; i++)
	{
		ids[i] = POISON_ID;
		distances[i] = NAN;
	}
}

static void
test_knn_shape(const KnnShape *shape, int shape_number)
{
	int64_t		n = shape->n;
	int			d = shape->d;
	float	   *raw = make_uniform(n, d, 1000 + shape_number);
	float	   *normalized = normalized_copy(raw, n, d);
	int			ref_k = shape->k > 0 ? shape->k : MAX_K;
	int32_t    *ids = checked_malloc(sizeof(int32_t) * n * ref_k);
	float	   *distances = checked_malloc(sizeof(float) * n * ref_k);
	double	   *ref_distance = checked_malloc(sizeof(double) * n * ref_k);
	int32_t    *ref_id = checked_malloc(sizeof(int32_t) * n * ref_k);
	const int	ks[] = {shape->k > 0 ? shape->k : 10, MAX_K};
	int			k_count = shape->k > 0 ? 1 : 2;

	for (int metric = 0; metric <= HIERINDEX_GPU_METRIC_COSINE; metric++)
	{
		const float *x = metric == HIERINDEX_GPU_METRIC_COSINE ? normalized : raw;
		double		start = seconds_now();
		double		ref_seconds;

		brute_force_knn(x, n, x, n, d, metric, ref_k, 1, ref_distance, ref_id);
		ref_seconds = seconds_now() - start;

		for (int ki = 0; ki < k_count; ki++)
		{
			int			k = ks[ki];

			/* reference rows of ref_k hold the top k as their prefix */
			for (int precision = 0; precision <= HIERINDEX_GPU_PRECISION_FP16; precision++)
				for (int streamed = 0; streamed <= (shape->stream_limit > 0); streamed++)
				{
					StopCounter counter = {0, 0, 0};
					size_t		limit = streamed ? shape->stream_limit : 0;
					HierindexGpuOptions options = make_options(precision, limit, &counter);
					HierindexGpuStats stats;
					char		errbuf[512] = "";
					Verdict		verdict;
					int			rc;

					unit_case_begin("knn n=%lld d=%d %s k=%d %s %s", (long long) n, d,
									metric_names[metric], k, precision_names[precision],
									streamed ? "streamed (a small memory_limit forces blocks)" : "resident");
					poison_knn_outputs(ids, distances, (size_t) n * k);
					memset(&stats, 0, sizeof(stats));
					start = seconds_now();
					rc = module.knn(x, n, d, metric, k, &options, ids, distances, &stats,
									errbuf, sizeof(errbuf));
					if (UNIT_CHECK(rc == HIERINDEX_GPU_OK, "rc %d: %s", rc, errbuf))
					{
						double		gpu_seconds = seconds_now() - start;

						verdict = check_knn(x, n, d, metric, k, ids, distances,
											ref_distance, ref_id, ref_k);
						UNIT_CHECK(verdict.problems == 0, "%lld problems; first: %s",
								   (long long) verdict.problems, verdict.first);
						UNIT_CHECK(counter.foreign_thread_calls == 0,
								   "should_stop called from another thread %d times",
								   counter.foreign_thread_calls);
						if (streamed)
							UNIT_CHECK(stats.column_blocks > 1,
									   "memory_limit %zu MiB for %lld MiB of vectors: %lld block(s)",
									   limit >> 20, (long long) (n * d * 4) >> 20,
									   (long long) stats.column_blocks);
						if (k == ref_k && precision == HIERINDEX_GPU_PRECISION_TF32)
							printf("  knn n=%lld d=%d %s %s: gpu %.3f s (knn %.3f, transfer %.3f, %lld block(s)), brute force %.2f s, %lld tie swaps\n",
								   (long long) n, d, metric_names[metric],
								   streamed ? "streamed" : "resident", gpu_seconds,
								   stats.seconds[HIERINDEX_GPU_PHASE_KNN],
								   stats.seconds[HIERINDEX_GPU_PHASE_TRANSFER],
								   (long long) stats.column_blocks, ref_seconds,
								   (long long) verdict.tie_swaps);
					}
					unit_case_end();
				}
		}
	}
	free(raw);
	free(normalized);
	free(ids);
	free(distances);
	free(ref_distance);
	free(ref_id);
}

/* ------------------------------------------------------------------------
 * Part 2: the whole graph
 * ------------------------------------------------------------------------ */
static int32_t *
graph_slot_of(const Graph *graph, int64_t id, int layer)
{
	if (layer == 0)
		return graph->links0 + id * (1 + graph->m0);
	return graph->upper_links + graph->upper_offset[id] + (int64_t) (layer - 1) * (1 + graph->params.m);
}

static int64_t
upper_slot_entries(const Graph *graph)
{
	int64_t		total = 0;

	for (int64_t i = 0; i < graph->count; i++)
		total += (int64_t) graph->levels[i] * (1 + graph->params.m);
	return total;
}

/* Elements reachable on layer 0 from the entry point (breadth first). */
static int64_t
count_reachable_layer0(const Graph *graph)
{
	int64_t		n = graph->count;
	char	   *seen = calloc(n, 1);
	int32_t    *queue = checked_malloc(sizeof(int32_t) * n);
	int64_t		head = 0,
				tail = 0;

	if (graph->entry_point < 0 || graph->entry_point >= n || seen == NULL)
	{
		free(seen);
		free(queue);
		return 0;
	}
	seen[graph->entry_point] = 1;
	queue[tail++] = graph->entry_point;
	while (head < tail)
	{
		const int32_t *slot = graph_slot_of(graph, queue[head++], 0);

		for (int i = 0; i < slot[0]; i++)
			if (slot[1 + i] >= 0 && slot[1 + i] < n && !seen[slot[1 + i]])
			{
				seen[slot[1 + i]] = 1;
				queue[tail++] = slot[1 + i];
			}
	}
	free(seen);
	free(queue);
	return tail;
}

/*
 * The structure of a finished graph: every list within its width, ids in
 * range, no self links, no duplicates, upper-layer links only to elements
 * on that layer, a non-empty layer-0 list (n > 1); with ascending, also the
 * layer-0 lists in ascending distance (as gpu.h promises, before
 * graph_connect_unreachable appends); with reachable, every element
 * reachable on layer 0 from the entry point.
 */
static Verdict
check_graph(const Graph *graph, int ascending, int reachable)
{
	Verdict		verdict;
	int64_t		n = graph->count;

	memset(&verdict, 0, sizeof(verdict));
#pragma omp parallel for schedule(dynamic, 256)
	for (int64_t id = 0; id < n; id++)
	{
		for (int layer = 0; layer <= graph->levels[id]; layer++)
		{
			const int32_t *slot = graph_slot_of(graph, id, layer);
			int			width = layer == 0 ? graph->m0 : graph->params.m;
			int			count = slot[0];
			float		previous = -INFINITY;

			if (count < 0 || count > width)
			{
				verdict_add(&verdict, "element %lld layer %d: count %d, width %d",
							(long long) id, layer, count, width);
				continue;
			}
			if (layer == 0 && count == 0 && n > 1)
				verdict_add(&verdict, "element %lld has no neighbour on layer 0", (long long) id);
			for (int i = 0; i < count; i++)
			{
				int32_t		other = slot[1 + i];
				float		distance;

				if (other < 0 || other >= n || other == id)
				{
					verdict_add(&verdict, "element %lld layer %d link %d: id %d out of range or itself",
								(long long) id, layer, i, other);
					break;
				}
				if (graph->levels[other] < layer)
					verdict_add(&verdict, "element %lld layer %d links %d, whose level is %d",
								(long long) id, layer, other, graph->levels[other]);
				for (int j = 0; j < i; j++)
					if (slot[1 + j] == other)
						verdict_add(&verdict, "element %lld layer %d: %d twice", (long long) id, layer, other);
				distance = graph_distance(graph, graph->vectors + id * graph->params.dim, other);
				if (ascending && layer == 0 && distance < previous - relative_tolerance * fabsf(previous) - 1e-30f)
					verdict_add(&verdict, "element %lld layer %d: link %d (%d at %.9g) nearer than the one before (%.9g)",
								(long long) id, layer, i, other, distance, previous);
				previous = distance;
			}
		}
	}
	if (reachable)
	{
		int64_t		reached = count_reachable_layer0(graph);

		if (reached != n)
			verdict_add(&verdict, "%lld of %lld elements reachable on layer 0 from entry point %d",
						(long long) reached, (long long) n, graph->entry_point);
	}
	return verdict;
}

/* Fraction of the true top RECALL_K that graph_search finds at ef. */
static double
graph_recall(const Graph *graph, const float *queries, int64_t nq, const int32_t *truth, int ef)
{
	int64_t		hits = 0;

#pragma omp parallel reduction(+:hits)
	{
		GraphVisited *visited = graph_visited_create(graph->count);
		GraphNeighbor found[RECALL_K];

#pragma omp for schedule(dynamic, 8)
		for (int64_t q = 0; q < nq; q++)
		{
			int			got = visited ? graph_search(graph, queries + q * graph->params.dim,
													 RECALL_K, ef, visited, found) : 0;

			for (int i = 0; i < got; i++)
				for (int j = 0; j < RECALL_K; j++)
					hits += found[i].id == truth[q * RECALL_K + j];
		}
		graph_visited_free(visited);
	}
	return (double) hits / (nq * RECALL_K);
}

static Graph *
new_graph(const float *x, int64_t n, int d, int metric, int m, int ef_construction)
{
	GraphParams params = {d, m, ef_construction, (GraphMetric) metric, 0x6770757465737473ull};
	const char *error = NULL;
	Graph	   *graph = graph_create(&params, n, &error);

	if (graph == NULL)
	{
		fprintf(stderr, "test_gpu_build: graph_create: %s\n", error);
		exit(2);
	}
	for (int64_t i = 0; i < n; i++)
		if (graph_set_vector(graph, i, x + i * d) != 0)
		{
			fprintf(stderr, "test_gpu_build: row %lld cannot be indexed\n", (long long) i);
			exit(2);
		}
	return graph;
}

/* Runs the GPU builder on graph (vectors and levels set); returns the rc. */
static int
gpu_build_graph(Graph *graph, const HierindexGpuOptions *options,
				HierindexGpuStats *stats, char *errbuf, size_t errlen)
{
	HierindexGpuGraph gpu_graph;

	gpu_graph.n = graph->count;
	gpu_graph.dimensions = graph->params.dim;
	gpu_graph.metric = graph->params.metric;
	gpu_graph.m = graph->params.m;
	gpu_graph.ef_construction = graph->params.ef_construction;
	gpu_graph.vectors = graph->vectors;
	gpu_graph.levels = graph->levels;
	gpu_graph.upper_offset = graph->upper_offset;
	gpu_graph.links0 = graph->links0;
	gpu_graph.upper_links = graph->upper_links;
	return module.build_graph(&gpu_graph, options, stats, errbuf, errlen);
}

static void
poison_links(Graph *graph)
{
	int64_t		entries0 = graph->count * (1 + graph->m0);
	int64_t		upper = upper_slot_entries(graph);

	for (int64_t i = 0; i < entries0; i++)
		graph->links0[i] = POISON_ID;
	for (int64_t i = 0; i < upper; i++)
		graph->upper_links[i] = POISON_ID;
}

typedef struct GraphCase
{
	int64_t		n;
	int			d;
	int			metric;
} GraphCase;

static void
test_graph_case(const GraphCase *gc, int case_number)
{
	const int	m = 16,
				ef_construction = 64,
				nq = 1000,
				centres = 100;
	float	   *base = make_clustered(gc->n, gc->d, centres, 11 + case_number, 21 + case_number);
	float	   *queries = make_clustered(nq, gc->d, centres, 11 + case_number, 31 + case_number);
	double	   *truth_distance = checked_malloc(sizeof(double) * nq * RECALL_K);
	int32_t    *truth = checked_malloc(sizeof(int32_t) * nq * RECALL_K);
	Graph	   *gpu = new_graph(base, gc->n, gc->d, gc->metric, m, ef_construction);
	Graph	   *cpu = new_graph(base, gc->n, gc->d, gc->metric, m, ef_construction);
	StopCounter counter = {0, 0, 0};
	HierindexGpuOptions options = make_options(HIERINDEX_GPU_PRECISION_TF32, 0, &counter);
	HierindexGpuStats stats;
	char		errbuf[512] = "";
	double		start,
				gpu_seconds,
				cpu_seconds,
				gpu_recall = 0.0,
				cpu_recall;
	int64_t		relinked;
	int			rc;
	Verdict		verdict;

	/* the graph stores normalised rows under cosine; so must the truth */
	if (gc->metric == HIERINDEX_GPU_METRIC_COSINE)
		for (int q = 0; q < nq; q++)
			graph_normalize(queries + (int64_t) q * gc->d, queries + (int64_t) q * gc->d, gc->d);
	brute_force_knn(gpu->vectors, gc->n, queries, nq, gc->d, gc->metric, RECALL_K, 0,
					truth_distance, truth);

	unit_case_begin("build_graph n=%lld d=%d %s m=%d ef_construction=%d tf32",
					(long long) gc->n, gc->d, metric_names[gc->metric], m, ef_construction);
	poison_links(gpu);
	memset(&stats, 0, sizeof(stats));
	start = seconds_now();
	rc = gpu_build_graph(gpu, &options, &stats, errbuf, sizeof(errbuf));
	gpu_seconds = seconds_now() - start;
	if (UNIT_CHECK(rc == HIERINDEX_GPU_OK, "rc %d: %s", rc, errbuf))
	{
		verdict = check_graph(gpu, 1, 0);
		UNIT_CHECK(verdict.problems == 0, "as the GPU left it: %lld problems; first: %s",
				   (long long) verdict.problems, verdict.first);
		graph_adopt_links(gpu);
		relinked = graph_connect_unreachable(gpu);
		UNIT_CHECK(relinked >= 0, "graph_connect_unreachable: out of memory");
		verdict = check_graph(gpu, 0, 1);
		UNIT_CHECK(verdict.problems == 0, "after graph_connect_unreachable: %lld problems; first: %s",
				   (long long) verdict.problems, verdict.first);
		UNIT_CHECK(counter.foreign_thread_calls == 0, "should_stop called from another thread");
		gpu_recall = graph_recall(gpu, queries, nq, truth, RECALL_EF);
		UNIT_CHECK(gpu_recall >= RECALL_TARGET, "recall@%d at ef %d: %.4f, want >= %.2f",
				   RECALL_K, RECALL_EF, gpu_recall, RECALL_TARGET);
		printf("  build_graph n=%lld d=%d %s: gpu %.3f s (transfer %.3f, knn %.3f, prune %.3f, upper %.3f; %.1f GFLOP), "
			   "%lld relinked, max level %d\n",
			   (long long) gc->n, gc->d, metric_names[gc->metric], gpu_seconds,
			   stats.seconds[HIERINDEX_GPU_PHASE_TRANSFER], stats.seconds[HIERINDEX_GPU_PHASE_KNN],
			   stats.seconds[HIERINDEX_GPU_PHASE_PRUNE], stats.seconds[HIERINDEX_GPU_PHASE_UPPER],
			   stats.knn_flops / 1e9, (long long) relinked, gpu->max_level);
	}
	unit_case_end();

	start = seconds_now();
	rc = graph_build_range(cpu, 0, gc->n, 0);
	relinked = rc == 0 ? graph_connect_unreachable(cpu) : -1;
	cpu_seconds = seconds_now() - start;
	cpu_recall = graph_recall(cpu, queries, nq, truth, RECALL_EF);
	printf("  recall@%d at ef %d over %d queries: gpu %.4f, cpu %.4f (cpu build %.2f s on %d threads)\n",
		   RECALL_K, RECALL_EF, nq, gpu_recall, cpu_recall, cpu_seconds, omp_get_max_threads());

	graph_free(gpu);
	graph_free(cpu);
	free(base);
	free(queries);
	free(truth_distance);
	free(truth);
}

/*
 * --quality N D CENTRES: no checks, a table for tuning the GPU graph.  GPU and
 * CPU builds of the same N x D clustered set (L2), recall@10 at several
 * ef_search against brute force over 500 queries, and the build times.
 */
static int
graph_quality(int64_t n, int d, int centres, int variant_count, char **variants)
{
	static const int efs[] = {10, 20, 40, 100};
	const int	nq = 500;
	float	   *base = make_clustered(n, d, centres, 71, 72);
	float	   *queries = make_clustered(nq, d, centres, 71, 73);
	double	   *truth_distance = checked_malloc(sizeof(double) * nq * RECALL_K);
	int32_t    *truth = checked_malloc(sizeof(int32_t) * nq * RECALL_K);
	StopCounter counter = {0, 0, 0};
	HierindexGpuOptions options = make_options(HIERINDEX_GPU_PRECISION_TF32, 0, &counter);
	HierindexGpuStats stats;
	char		errbuf[512] = "";

	/* HIERINDEX_QUALITY_TIMES_ONLY: build times only, no recall (quicker) */
	const int	times_only = getenv("HIERINDEX_QUALITY_TIMES_ONLY") != NULL;

	if (!times_only)
		brute_force_knn(base, n, queries, nq, d, HIERINDEX_GPU_METRIC_L2, RECALL_K, 0,
						truth_distance, truth);
	for (int v = 0; v < variant_count; v++)
	{
		Graph	   *graph = new_graph(base, n, d, HIERINDEX_GPU_METRIC_L2, 16, 64);
		double		start;
		int64_t		relinked;
		int			builder = strncmp(variants[v], "cpu", 3) == 0;
		char	   *settings = strdup(variants[v]);

		/* "gpu" or "cpu", then ":NAME=VALUE,..." settings put in the environment */
		for (char *item = strchr(settings, ':') ? strchr(settings, ':') + 1 : NULL, *next;
			 item != NULL && *item; item = next)
		{
			char	   *equals;

			next = strchr(item, ',');
			if (next)
				*next++ = '\0';
			equals = strchr(item, '=');
			if (equals)
			{
				*equals = '\0';
				setenv(item, equals + 1, 1);
			}
		}
		/* HIERINDEX_QUALITY_PRECISION: the candidate search's arithmetic (default tf32) */
		options.precision = HIERINDEX_GPU_PRECISION_TF32;
		for (int p = 0; p <= HIERINDEX_GPU_PRECISION_FP16; p++)
			if (getenv("HIERINDEX_QUALITY_PRECISION") != NULL &&
				strcmp(getenv("HIERINDEX_QUALITY_PRECISION"), precision_names[p]) == 0)
				options.precision = p;
		start = seconds_now();

		if (builder == 0)
		{
			memset(&stats, 0, sizeof(stats));
			if (gpu_build_graph(graph, &options, &stats, errbuf, sizeof(errbuf)) != HIERINDEX_GPU_OK)
			{
				fprintf(stderr, "test_gpu_build: %s\n", errbuf);
				return 1;
			}
			graph_adopt_links(graph);
		}
		else if (graph_build_range(graph, 0, n, 0) != 0)
			return 1;
		relinked = graph_connect_unreachable(graph);
		printf("quality %s n=%lld d=%d centres=%d: %.2f s (knn %.2f, prune %.2f, upper %.2f), %lld relinked; recall@10",
			   variants[v], (long long) n, d, centres, seconds_now() - start,
			   builder == 0 ? stats.seconds[HIERINDEX_GPU_PHASE_KNN] : 0.0,
			   builder == 0 ? stats.seconds[HIERINDEX_GPU_PHASE_PRUNE] : 0.0,
			   builder == 0 ? stats.seconds[HIERINDEX_GPU_PHASE_UPPER] : 0.0,
			   (long long) relinked);
		for (size_t i = 0; i < sizeof(efs) / sizeof(efs[0]) && !times_only; i++)
			printf(" ef %d %.4f", efs[i], graph_recall(graph, queries, nq, truth, efs[i]));
		printf("\n");
		if (builder == 0)
			printf("  knn: %lld rows searched again in fp32; split (HIERINDEX_GPU_KNN_SPLIT): products %.2f s, selection %.2f s, re-scoring %.2f s, fp32 search again %.2f s\n",
				   (long long) stats.knn_rescued_rows, stats.knn_product_seconds,
				   stats.knn_select_seconds, stats.knn_rescore_seconds,
				   stats.knn_rescue_seconds);
		fflush(stdout);
		graph_free(graph);
		free(settings);
	}
	free(base);
	free(queries);
	free(truth_distance);
	free(truth);
	return 0;
}

/* ------------------------------------------------------------------------
 * Part 3: errors, cancel, and no leak on the error paths
 * ------------------------------------------------------------------------ */
static void
check_no_leak(size_t baseline, const char *after)
{
	size_t		now = device_free_memory();

	UNIT_CHECK(now + LEAK_SLACK >= baseline,
			   "device free memory after %s: %.1f MiB, before %.1f MiB (%.1f MiB lost)",
			   after, now / 1048576.0, baseline / 1048576.0,
			   ((double) baseline - (double) now) / 1048576.0);
}

/* One k-NN call expected to fail with want_rc and a message. */
static void
expect_knn_error(const char *what, int want_rc, size_t baseline,
				 const float *x, int64_t n, int d, int metric, int k,
				 const HierindexGpuOptions *options, int32_t *ids, float *distances)
{
	char		errbuf[512] = "";
	int			rc;

	unit_case_begin("knn error: %s", what);
	rc = module.knn(x, n, d, metric, k, options, ids, distances, NULL, errbuf, sizeof(errbuf));
	UNIT_CHECK(rc == want_rc, "rc %d, want %d (\"%s\")", rc, want_rc, errbuf);
	UNIT_CHECK(errbuf[0] != '\0', "a message says why");
	check_no_leak(baseline, what);
	unit_case_end();
}

static void
expect_graph_error(const char *what, int want_rc, size_t baseline,
				   HierindexGpuGraph *graph, const HierindexGpuOptions *options)
{
	char		errbuf[512] = "";
	int			rc;

	unit_case_begin("build_graph error: %s", what);
	rc = module.build_graph(graph, options, NULL, errbuf, sizeof(errbuf));
	UNIT_CHECK(rc == want_rc, "rc %d, want %d (\"%s\")", rc, want_rc, errbuf);
	UNIT_CHECK(errbuf[0] != '\0', "a message says why");
	check_no_leak(baseline, what);
	unit_case_end();
}

static void
test_errors(int small)
{
	const int64_t n = 1000,
				big_n = small ? 3000 : 20000;
	const int	d = 17,
				big_d = small ? 64 : 768,
				k = 10;
	const size_t stream_limit = small ? (size_t) 64 << 10 : (size_t) 24 << 20;
	char		what[128];
	float	   *x = make_uniform(n, d, 77);
	float	   *big = make_uniform(big_n, big_d, 78);
	int32_t    *ids = checked_malloc(sizeof(int32_t) * big_n * k);
	float	   *distances = checked_malloc(sizeof(float) * big_n * k);
	StopCounter counter = {0, 0, 0};
	HierindexGpuOptions options = make_options(HIERINDEX_GPU_PRECISION_TF32, 0, &counter);
	HierindexGpuOptions bad_options;
	Graph	   *graph = new_graph(x, n, d, HIERINDEX_GPU_METRIC_L2, 16, 64);
	HierindexGpuGraph gg,
				bad;
	char		errbuf[512] = "";
	size_t		baseline;
	int			rc;

	/* warm up (CUDA context, cuBLAS) so that what stays allocated is not counted */
	rc = module.knn(x, n, d, HIERINDEX_GPU_METRIC_L2, k, &options, ids, distances, NULL,
					errbuf, sizeof(errbuf));
	UNIT_CHECK(rc == HIERINDEX_GPU_OK, "warm-up k-NN: rc %d (%s)", rc, errbuf);
	baseline = device_free_memory();
	UNIT_CHECK(baseline > 0, "the probe reports free device memory");
	printf("  device free memory before the error tests: %.1f MiB\n", baseline / 1048576.0);

	expect_knn_error("metric l1 is unsupported", HIERINDEX_GPU_EUNSUPPORTED, baseline,
					 x, n, d, HIERINDEX_GPU_METRIC_L1, k, &options, ids, distances);
	expect_knn_error("unknown metric 42", HIERINDEX_GPU_EINVAL, baseline,
					 x, n, d, 42, k, &options, ids, distances);
	expect_knn_error("vectors NULL", HIERINDEX_GPU_EINVAL, baseline,
					 NULL, n, d, HIERINDEX_GPU_METRIC_L2, k, &options, ids, distances);
	expect_knn_error("ids NULL", HIERINDEX_GPU_EINVAL, baseline,
					 x, n, d, HIERINDEX_GPU_METRIC_L2, k, &options, NULL, distances);
	expect_knn_error("distances NULL", HIERINDEX_GPU_EINVAL, baseline,
					 x, n, d, HIERINDEX_GPU_METRIC_L2, k, &options, ids, NULL);
	expect_knn_error("n = -1", HIERINDEX_GPU_EINVAL, baseline,
					 x, -1, d, HIERINDEX_GPU_METRIC_L2, k, &options, ids, distances);
	expect_knn_error("dimensions = 0", HIERINDEX_GPU_EINVAL, baseline,
					 x, n, 0, HIERINDEX_GPU_METRIC_L2, k, &options, ids, distances);
	expect_knn_error("k = 0", HIERINDEX_GPU_EINVAL, baseline,
					 x, n, d, HIERINDEX_GPU_METRIC_L2, 0, &options, ids, distances);
	expect_knn_error("options NULL", HIERINDEX_GPU_EINVAL, baseline,
					 x, n, d, HIERINDEX_GPU_METRIC_L2, k, NULL, ids, distances);
	bad_options = options;
	bad_options.precision = 42;
	expect_knn_error("precision 42", HIERINDEX_GPU_EINVAL, baseline,
					 x, n, d, HIERINDEX_GPU_METRIC_L2, k, &bad_options, ids, distances);
	bad_options = options;
	bad_options.device = 4096;
	unit_case_begin("knn error: device 4096");
	rc = module.knn(x, n, d, HIERINDEX_GPU_METRIC_L2, k, &bad_options, ids, distances, NULL,
					errbuf, sizeof(errbuf));
	UNIT_CHECK(rc == HIERINDEX_GPU_ENODEVICE || rc == HIERINDEX_GPU_EINVAL,
			   "rc %d, want ENODEVICE or EINVAL (\"%s\")", rc, errbuf);
	check_no_leak(baseline, "device 4096");
	unit_case_end();

	gg.n = n;
	gg.dimensions = d;
	gg.metric = HIERINDEX_GPU_METRIC_L2;
	gg.m = 16;
	gg.ef_construction = 64;
	gg.vectors = graph->vectors;
	gg.levels = graph->levels;
	gg.upper_offset = graph->upper_offset;
	gg.links0 = graph->links0;
	gg.upper_links = graph->upper_links;

	bad = gg;
	bad.metric = HIERINDEX_GPU_METRIC_L1;
	expect_graph_error("metric l1 is unsupported", HIERINDEX_GPU_EUNSUPPORTED, baseline, &bad, &options);
	expect_graph_error("graph NULL", HIERINDEX_GPU_EINVAL, baseline, NULL, &options);
	expect_graph_error("options NULL", HIERINDEX_GPU_EINVAL, baseline, &gg, NULL);
	bad = gg;
	bad.m = 0;
	expect_graph_error("m = 0", HIERINDEX_GPU_EINVAL, baseline, &bad, &options);
	bad = gg;
	bad.m = GRAPH_MAX_M + 1;
	expect_graph_error("m above GRAPH_MAX_M", HIERINDEX_GPU_EINVAL, baseline, &bad, &options);
	bad = gg;
	bad.ef_construction = 0;
	expect_graph_error("ef_construction = 0", HIERINDEX_GPU_EINVAL, baseline, &bad, &options);
	bad = gg;
	bad.dimensions = 0;
	expect_graph_error("dimensions = 0", HIERINDEX_GPU_EINVAL, baseline, &bad, &options);
	bad = gg;
	bad.n = -1;
	expect_graph_error("n = -1", HIERINDEX_GPU_EINVAL, baseline, &bad, &options);
	bad = gg;
	bad.vectors = NULL;
	expect_graph_error("vectors NULL", HIERINDEX_GPU_EINVAL, baseline, &bad, &options);
	bad = gg;
	bad.levels = NULL;
	expect_graph_error("levels NULL", HIERINDEX_GPU_EINVAL, baseline, &bad, &options);
	bad = gg;
	bad.links0 = NULL;
	expect_graph_error("links0 NULL", HIERINDEX_GPU_EINVAL, baseline, &bad, &options);

	/* cancel: should_stop says stop on its 2nd call */
	counter.calls = 0;
	counter.stop_at = 2;
	options.memory_limit = stream_limit;	/* streamed: many steps to poll between */
	snprintf(what, sizeof(what), "should_stop says stop on its 2nd call (streamed %lld x %d)",
			 (long long) big_n, big_d);
	expect_knn_error(what, HIERINDEX_GPU_ECANCELED, baseline,
					 big, big_n, big_d, HIERINDEX_GPU_METRIC_L2, k, &options, ids, distances);
	UNIT_CHECK(counter.calls == 2, "k-NN: should_stop called %d times, want exactly 2 (stop on the 2nd)",
			   counter.calls);
	options.memory_limit = 0;
	graph_free(graph);
	graph = new_graph(big, big_n, big_d, HIERINDEX_GPU_METRIC_L2, 16, 64);
	gg.n = big_n;
	gg.dimensions = big_d;
	gg.vectors = graph->vectors;
	gg.levels = graph->levels;
	gg.upper_offset = graph->upper_offset;
	gg.links0 = graph->links0;
	gg.upper_links = graph->upper_links;
	counter.calls = 0;
	snprintf(what, sizeof(what), "should_stop says stop on its 2nd call (%lld x %d)",
			 (long long) big_n, big_d);
	expect_graph_error(what, HIERINDEX_GPU_ECANCELED, baseline, &gg, &options);
	UNIT_CHECK(counter.calls == 2, "build_graph: should_stop called %d times, want exactly 2",
			   counter.calls);
	UNIT_CHECK(counter.foreign_thread_calls == 0, "should_stop called from another thread");

	/* and the module still works after all that */
	counter.stop_at = 0;
	unit_case_begin("knn after the errors and cancels");
	rc = module.knn(x, n, d, HIERINDEX_GPU_METRIC_L2, k, &options, ids, distances, NULL,
					errbuf, sizeof(errbuf));
	UNIT_CHECK(rc == HIERINDEX_GPU_OK, "rc %d (%s)", rc, errbuf);
	check_no_leak(baseline, "everything");
	unit_case_end();

	graph_free(graph);
	free(x);
	free(big);
	free(ids);
	free(distances);
}

/* ------------------------------------------------------------------------
 * Self-test: the checkers against CPU answers, right and wrong
 * ------------------------------------------------------------------------ */

/* A CPU k-NN in fp32 with the module's output contract. */
static void
cpu_knn_fp32(const float *x, int64_t n, int d, int metric, int k, int32_t *ids, float *distances)
{
#pragma omp parallel
	{
		GraphNeighbor *all = checked_malloc(sizeof(GraphNeighbor) * n);

#pragma omp for
		for (int64_t row = 0; row < n; row++)
		{
			int64_t		count = 0;

			for (int64_t b = 0; b < n; b++)
				if (b != row)
				{
					all[count].distance = graph_metric_distance((GraphMetric) metric, x + row * d, x + b * d, d);
					all[count++].id = (int32_t) b;
				}
			qsort(all, count, sizeof(GraphNeighbor), graph_neighbor_compare);
			for (int j = 0; j < k; j++)
			{
				ids[row * k + j] = j < count ? all[j].id : -1;
				distances[row * k + j] = j < count ? all[j].distance : INFINITY;
			}
		}
		free(all);
	}
}

static void
expect_knn_verdict(const char *what, int want_problems, const float *x, int64_t n, int d,
				   int metric, int k, const int32_t *ids, const float *distances,
				   const double *ref_distance, const int32_t *ref_id)
{
	Verdict		verdict = check_knn(x, n, d, metric, k, ids, distances, ref_distance, ref_id, MAX_K);

	if (want_problems)
		UNIT_CHECK(verdict.problems > 0, "check_knn must reject: %s", what);
	else
		UNIT_CHECK(verdict.problems == 0, "check_knn must accept: %s (%lld problems; first: %s)",
				   what, (long long) verdict.problems, verdict.first);
	if (want_problems && verdict.problems > 0)
		printf("  self-test %s: rejected (%s)\n", what, verdict.first);
}

static void
self_test_knn(int64_t n, int d, int metric, int k)
{
	float	   *raw = make_uniform(n, d, 5);
	float	   *x = metric == HIERINDEX_GPU_METRIC_COSINE ? normalized_copy(raw, n, d) : raw;
	int32_t    *ids = checked_malloc(sizeof(int32_t) * n * k);
	float	   *distances = checked_malloc(sizeof(float) * n * k);
	int32_t    *bad_ids = checked_malloc(sizeof(int32_t) * n * k);
	float	   *bad_distances = checked_malloc(sizeof(float) * n * k);
	double	   *ref_distance = checked_malloc(sizeof(double) * n * MAX_K);
	int32_t    *ref_id = checked_malloc(sizeof(int32_t) * n * MAX_K);
	int64_t		row = n / 2;
	int			real = (int) (n - 1 < k ? n - 1 : k);

	unit_case_begin("self-test check_knn n=%lld d=%d %s k=%d", (long long) n, d, metric_names[metric], k);
	brute_force_knn(x, n, x, n, d, metric, MAX_K, 1, ref_distance, ref_id);
	cpu_knn_fp32(x, n, d, metric, k, ids, distances);
	expect_knn_verdict("the CPU fp32 answer", 0, x, n, d, metric, k, ids, distances, ref_distance, ref_id);

#define RESET() do { memcpy(bad_ids, ids, sizeof(int32_t) * n * k); \
		memcpy(bad_distances, distances, sizeof(float) * n * k); } while (0)
#define EXPECT_BAD(what) expect_knn_verdict(what, 1, x, n, d, metric, k, bad_ids, bad_distances, ref_distance, ref_id)

	if (real >= 2)
	{
		RESET();
		bad_ids[row * k + 1] = bad_ids[row * k];
		bad_distances[row * k + 1] = bad_distances[row * k];
		EXPECT_BAD("a duplicate id");
		RESET();
		bad_ids[row * k + real - 1] = (int32_t) row;
		EXPECT_BAD("the row itself as neighbour");
	}
	if (real >= 1 && n > real + 1)
	{
		/* the farthest element in place of the last kept one, with its true distance */
		int32_t		far = 0;
		double		farthest = -INFINITY;

		for (int64_t b = 0; b < n; b++)
		{
			double		e = exact_distance(metric, x + row * d, x + b * d, d);

			if (b != row && e > farthest)
			{
				farthest = e;
				far = (int32_t) b;
			}
		}
		RESET();
		bad_ids[row * k + real - 1] = far;
		bad_distances[row * k + real - 1] = (float) farthest;
		EXPECT_BAD("a far element in place of a near one");
	}
	if (real >= 1)
	{
		RESET();
		bad_distances[row * k] *= 1.001f;
		bad_distances[row * k] += 1e-3f;
		EXPECT_BAD("a distance off by 1e-3");
		RESET();
		bad_ids[row * k + real - 1] = POISON_ID;
		EXPECT_BAD("an id never written");
		RESET();
		bad_distances[(n - 1) * k + k - 1] = NAN;
		EXPECT_BAD("a distance never written");
	}
	if (real < k)
	{
		RESET();
		bad_ids[row * k + k - 1] = 0;
		EXPECT_BAD("padding id 0 instead of -1");
		RESET();
		bad_distances[row * k + k - 1] = 0.0f;
		EXPECT_BAD("padding distance 0 instead of +inf");
	}
	if (real >= 3)
	{
		float		t;
		int32_t		i;

		RESET();
		t = bad_distances[row * k + 1];
		bad_distances[row * k + 1] = bad_distances[row * k + 2];
		bad_distances[row * k + 2] = t;
		i = bad_ids[row * k + 1];
		bad_ids[row * k + 1] = bad_ids[row * k + 2];
		bad_ids[row * k + 2] = i;
		EXPECT_BAD("two entries out of order");
	}
#undef RESET
#undef EXPECT_BAD
	unit_case_end();

	if (x != raw)
		free(x);
	free(raw);
	free(ids);
	free(distances);
	free(bad_ids);
	free(bad_distances);
	free(ref_distance);
	free(ref_id);
}

/*
 * Ties: with every vector there twice, neighbours come in pairs at equal
 * distances; an answer that keeps the other twin of the k-th nearest is as
 * right as brute force's, and must be accepted (and counted as a tie swap).
 */
static void
self_test_ties(void)
{
	const int64_t half = 150,
				n = 2 * half;
	const int	d = 9,
				k = 10;
	float	   *x = make_uniform(n, d, 6);
	int32_t    *ids = checked_malloc(sizeof(int32_t) * n * k);
	float	   *distances = checked_malloc(sizeof(float) * n * k);
	double	   *ref_distance = checked_malloc(sizeof(double) * n * MAX_K);
	int32_t    *ref_id = checked_malloc(sizeof(int32_t) * n * MAX_K);
	Verdict		verdict;

	memcpy(x + half * d, x, sizeof(float) * half * d);
	unit_case_begin("self-test check_knn accepts the other twin of a tie at the k-th place");
	brute_force_knn(x, n, x, n, d, HIERINDEX_GPU_METRIC_L2, MAX_K, 1, ref_distance, ref_id);
	cpu_knn_fp32(x, n, d, HIERINDEX_GPU_METRIC_L2, k, ids, distances);
	/* row 0: its twin at 0, then pairs (1, 2) ... (9, 10): the k-th is tied with the next */
	UNIT_CHECK(ref_distance[k - 1] == ref_distance[k] && ref_id[k - 1] != ref_id[k],
			   "a tie at the k-th place of row 0 (%.9g %.9g)", ref_distance[k - 1], ref_distance[k]);
	ids[k - 1] = ref_id[k];
	verdict = check_knn(x, n, d, HIERINDEX_GPU_METRIC_L2, k, ids, distances, ref_distance, ref_id, MAX_K);
	UNIT_CHECK(verdict.problems == 0 && verdict.tie_swaps >= 1,
			   "accepted with a tie swap: %lld problems (%s), %lld tie swaps",
			   (long long) verdict.problems, verdict.first, (long long) verdict.tie_swaps);
	unit_case_end();
	free(x);
	free(ids);
	free(distances);
	free(ref_distance);
	free(ref_id);
}

static void
expect_graph_verdict(const char *what, const Graph *graph)
{
	Verdict		verdict = check_graph(graph, 0, 1);

	UNIT_CHECK(verdict.problems > 0, "check_graph must reject: %s", what);
	if (verdict.problems > 0)
		printf("  self-test %s: rejected (%s)\n", what, verdict.first);
}

static void
self_test_graph(void)
{
	const int64_t n = 3000;
	const int	d = 24,
				nq = 200;
	float	   *base = make_clustered(n, d, 30, 1, 2);
	float	   *queries = make_clustered(nq, d, 30, 1, 3);
	double	   *truth_distance = checked_malloc(sizeof(double) * nq * RECALL_K);
	int32_t    *truth = checked_malloc(sizeof(int32_t) * nq * RECALL_K);
	Graph	   *graph = new_graph(base, n, d, HIERINDEX_GPU_METRIC_L2, 8, 40);
	size_t		links0_bytes = sizeof(int32_t) * n * (1 + graph->m0);
	int32_t    *saved = checked_malloc(links0_bytes);
	int32_t    *slot;
	int32_t		victim = -1,
				upper = -1,
				low = -1;
	Verdict		verdict;
	double		recall;

	unit_case_begin("self-test check_graph on a CPU-built graph, n=%lld d=%d", (long long) n, d);
	brute_force_knn(graph->vectors, n, queries, nq, d, HIERINDEX_GPU_METRIC_L2, RECALL_K, 0,
					truth_distance, truth);
	UNIT_CHECK(graph_build_range(graph, 0, n, 0) == 0, "graph_build_range");
	UNIT_CHECK(graph_connect_unreachable(graph) >= 0, "graph_connect_unreachable");
	verdict = check_graph(graph, 0, 1);
	UNIT_CHECK(verdict.problems == 0, "check_graph must accept the CPU graph: %lld problems; first: %s",
			   (long long) verdict.problems, verdict.first);
	recall = graph_recall(graph, queries, nq, truth, RECALL_EF);
	UNIT_CHECK(recall >= RECALL_TARGET, "CPU graph recall@%d at ef %d: %.4f", RECALL_K, RECALL_EF, recall);
	printf("  self-test CPU graph: recall@%d at ef %d %.4f\n", RECALL_K, RECALL_EF, recall);

	memcpy(saved, graph->links0, links0_bytes);
	for (int64_t i = 0; i < n && (upper < 0 || low < 0 || victim < 0); i++)
	{
		if (graph->levels[i] >= 1 && upper < 0 && graph_slot_of(graph, i, 1)[0] > 0)
			upper = (int32_t) i;
		if (graph->levels[i] == 0 && low < 0)
			low = (int32_t) i;
		if (graph->levels[i] == 0 && i != graph->entry_point && victim < 0 &&
			graph_slot_of(graph, i, 0)[0] >= 2)
			victim = (int32_t) i;
	}
	UNIT_CHECK(upper >= 0 && low >= 0 && victim >= 0, "the graph has the elements to corrupt");
	if (upper >= 0 && low >= 0 && victim >= 0)
	{
		slot = graph_slot_of(graph, victim, 0);
		slot[1] = victim;
		expect_graph_verdict("a self link", graph);
		memcpy(graph->links0, saved, links0_bytes);
		slot[2] = slot[1];
		expect_graph_verdict("a duplicate link", graph);
		memcpy(graph->links0, saved, links0_bytes);
		slot[1] = (int32_t) n;
		expect_graph_verdict("a link past the last element", graph);
		memcpy(graph->links0, saved, links0_bytes);
		slot[0] = graph->m0 + 1;
		expect_graph_verdict("a count over the width", graph);
		memcpy(graph->links0, saved, links0_bytes);
		slot[0] = POISON_ID;
		expect_graph_verdict("a list never written", graph);
		memcpy(graph->links0, saved, links0_bytes);

		/* orphan victim: take it out of every layer-0 list */
		for (int64_t i = 0; i < n; i++)
		{
			int32_t    *s = graph_slot_of(graph, i, 0);
			int			kept = 0;

			for (int j = 0; j < s[0]; j++)
				if (s[1 + j] != victim)
					s[1 + kept++] = s[1 + j];
			s[0] = kept;
		}
		expect_graph_verdict("an element no link leads to", graph);
		memcpy(graph->links0, saved, links0_bytes);

		slot = graph_slot_of(graph, upper, 1);
		{
			int32_t		was = slot[1];

			slot[1] = low;
			expect_graph_verdict("a layer-1 link to a level-0 element", graph);
			slot[1] = was;
		}
		verdict = check_graph(graph, 0, 1);
		UNIT_CHECK(verdict.problems == 0, "restored graph accepted again (%s)", verdict.first);
	}
	unit_case_end();

	graph_free(graph);
	free(saved);
	free(base);
	free(queries);
	free(truth_distance);
	free(truth);
}

static int
self_test(void)
{
	self_test_knn(1, 3, HIERINDEX_GPU_METRIC_L2, 10);
	self_test_knn(2, 5, HIERINDEX_GPU_METRIC_L2, 10);
	self_test_knn(65, 17, HIERINDEX_GPU_METRIC_L2, MAX_K);
	self_test_knn(300, 33, HIERINDEX_GPU_METRIC_INNER_PRODUCT, 10);
	self_test_knn(300, 33, HIERINDEX_GPU_METRIC_COSINE, MAX_K);
	self_test_knn(500, 128, HIERINDEX_GPU_METRIC_L2, MAX_K);
	self_test_ties();
	self_test_graph();
	return unit_summary();
}

int
main(int argc, char **argv)
{
	static const GraphCase graph_cases[] = {
		{20000, 128, HIERINDEX_GPU_METRIC_L2},
		{5000, 768, HIERINDEX_GPU_METRIC_COSINE},
	};
	static const GraphCase small_graph_cases[] = {
		{3000, 32, HIERINDEX_GPU_METRIC_L2},
		{1000, 200, HIERINDEX_GPU_METRIC_COSINE},
	};
	double		start = seconds_now();
	int			small = 0;
	const KnnShape *shapes = knn_shapes;
	size_t		shape_count = sizeof(knn_shapes) / sizeof(knn_shapes[0]);
	const GraphCase *cases = graph_cases;
	size_t		case_count = sizeof(graph_cases) / sizeof(graph_cases[0]);

	main_thread = pthread_self();
	if (getenv("HIERINDEX_TEST_RELATIVE_TOLERANCE"))
		relative_tolerance = atof(getenv("HIERINDEX_TEST_RELATIVE_TOLERANCE"));
	if (argc == 2 && strcmp(argv[1], "--self-test") == 0)
		return self_test();
	if (argc >= 6 && strcmp(argv[1], "--quality") == 0)
	{
		static char *both[] = {"gpu", "cpu"};

		if (open_module(argv[5]) != 0)
			return unit_summary();
		return graph_quality(atoll(argv[2]), atoi(argv[3]), atoi(argv[4]),
							 argc > 6 ? argc - 6 : 2, argc > 6 ? argv + 6 : both);
	}
	if (argc == 3 && strcmp(argv[1], "--small") == 0)
	{
		small = 1;
		shapes = small_knn_shapes;
		shape_count = sizeof(small_knn_shapes) / sizeof(small_knn_shapes[0]);
		cases = small_graph_cases;
		case_count = sizeof(small_graph_cases) / sizeof(small_graph_cases[0]);
	}
	else if (argc != 2)
	{
		fprintf(stderr, "usage: %s [--small] MODULE.so | --self-test | --quality N D CENTRES MODULE.so [gpu|cpu[:ENV=V,...]]...\n",
				argv[0]);
		return 2;
	}
	if (open_module(argv[argc - 1]) != 0)
		return unit_summary();
	printf("test_gpu_build: %d OpenMP threads for the reference; device free memory %.1f MiB\n",
		   omp_get_max_threads(), device_free_memory() / 1048576.0);

	for (size_t i = 0; i < shape_count; i++)
		test_knn_shape(&shapes[i], (int) i);
	for (size_t i = 0; i < case_count; i++)
		test_graph_case(&cases[i], (int) i);
	test_errors(small);

	printf("test_gpu_build: %.1f s\n", seconds_now() - start);
	dlclose(module.handle);
	return unit_summary();
}
