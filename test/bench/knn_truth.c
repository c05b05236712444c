/*
 * knn_truth.c — exact k nearest neighbours, the ground truth of the benchmark.
 *
 * Recall is only meaningful against the true neighbours, so they are found
 * here by brute force: every query against every base vector.  In SQL that is
 * a sequential scan per query (1000 × 100 000 × 768 — many minutes); here it
 * is a plain loop over memory, computed in double precision from the stored
 * floats, so the ranking is exact: for Fashion-MNIST's integer pixel values
 * every squared distance is an integer that double holds exactly, whatever
 * the summation order; for the generated set the rounding error (~1e-16
 * relative) is far below the float resolution of the data.
 *
 * Ties: the base vectors are scanned in id order and a candidate must be
 * strictly nearer than the current k-th to enter, so equal distances rank by
 * smaller id.  Because a recall count compares id sets, a tie between the
 * k-th and the (k+1)-th neighbour would make a correct answer look wrong; so
 * the program finds k+1 neighbours and reports on stderr how many queries
 * have such a tie, and how many a near-tie closer than float precision (where
 * the server, which computes in float, may legitimately order differently).
 *
 * Output, on stdout, COPY text for a table (query_id int4, ids int4[],
 * distances float8[]): ids count from 1 in file order, as fvecs_to_copy.c
 * numbers them; distances are what the SQL operator returns (L2: <->,
 * cosine: <=>).
 *
 * The queries are shared among OpenMP threads (OMP_NUM_THREADS), and the
 * inner loops are OpenMP simd reductions, which lets the compiler vectorise
 * them without -ffast-math.
 *
 * Usage: knn_truth l2|cosine K BASE.fvecs QUERIES.fvecs [MAX_BASE [MAX_QUERIES]]
 */
#include "bench_args.h"
#include "fvecs.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_K 1000
#define NEAR_TIE_RELATIVE 1e-6	/* about float's resolution (2^-23 ≈ 1.2e-7) with margin */

typedef enum
{
	METRIC_L2, METRIC_COSINE
} Metric;

/* ranking key: squared L2, or 1 - cosine similarity */
static inline double
ranking_key(Metric metric, const float *restrict q, double q_norm,
			const float *restrict x, double x_norm, int dim)
{
	double		sum = 0.0;

	if (metric == METRIC_L2)
	{
#pragma omp simd reduction(+:sum)
		for (int i = 0; i < dim; i++)
		{
			double		diff = (double) q[i] - (double) x[i];

			sum += diff * diff;
		}
		return sum;
	}
#pragma omp simd reduction(+:sum)
	for (int i = 0; i < dim; i++)
		sum += (double) q[i] * (double) x[i];
	/* zero vectors: the server cannot rank them under cosine either */
	if (q_norm == 0.0 || x_norm == 0.0)
		return NAN;
	return 1.0 - sum / (q_norm * x_norm);
}

static double
norm(const float *x, int dim)
{
	double		sum = 0.0;

	for (int i = 0; i < dim; i++)
		sum += (double) x[i] * x[i];
	return sqrt(sum);
}

int
main(int argc, char **argv)
{
	Metric		metric;
	int			k;
	FvecsSet	base,
				queries;
	double	   *base_norms;
	double	   *best_key;		/* per query: k+1 keys, ascending */
	int		   *best_id;		/* per query: their ids (1-based) */
	long		ties = 0,
				near_ties = 0,
				unranked = 0;

	if (argc < 5 || argc > 7)
	{
		fprintf(stderr, "usage: knn_truth l2|cosine K BASE.fvecs QUERIES.fvecs [MAX_BASE [MAX_QUERIES]]\n");
		return 2;
	}
	if (strcmp(argv[1], "l2") == 0)
		metric = METRIC_L2;
	else if (strcmp(argv[1], "cosine") == 0)
		metric = METRIC_COSINE;
	else
	{
		fprintf(stderr, "knn_truth: metric must be l2 or cosine, not \"%s\"\n", argv[1]);
		return 2;
	}
	k = (int) bench_parse_long("knn_truth", "K", argv[2], 1, MAX_K);
	base = fvecs_read(argv[3], argc > 5 ? (size_t) bench_parse_long("knn_truth", "MAX_BASE", argv[5], 0, 1L << 40) : 0);
	queries = fvecs_read(argv[4], argc > 6 ? (size_t) bench_parse_long("knn_truth", "MAX_QUERIES", argv[6], 0, 1L << 40) : 0);
	if (base.dim != queries.dim)
	{
		fprintf(stderr, "knn_truth: base vectors have %d dimensions, queries %d\n",
				base.dim, queries.dim);
		return 1;
	}
	if (base.count < (size_t) k + 1)
	{
		fprintf(stderr, "knn_truth: need at least K+1 = %d base vectors, got %zu\n",
				k + 1, base.count);
		return 1;
	}

	base_norms = malloc(sizeof(double) * base.count);
	best_key = malloc(sizeof(double) * (k + 1) * queries.count);
	best_id = malloc(sizeof(int) * (k + 1) * queries.count);
	if (base_norms == NULL || best_key == NULL || best_id == NULL)
	{
		fprintf(stderr, "knn_truth: out of memory\n");
		return 1;
	}
	for (size_t b = 0; b < base.count; b++)
		base_norms[b] = metric == METRIC_COSINE ? norm(base.values + b * base.dim, base.dim) : 0.0;

#pragma omp parallel for schedule(dynamic, 4) reduction(+:unranked)
	for (size_t qi = 0; qi < queries.count; qi++)
	{
		const float *q = queries.values + qi * queries.dim;
		double		q_norm = metric == METRIC_COSINE ? norm(q, queries.dim) : 0.0;
		double	   *keys = best_key + qi * (k + 1);
		int		   *ids = best_id + qi * (k + 1);
		int			filled = 0;

		for (size_t b = 0; b < base.count; b++)
		{
			double		key = ranking_key(metric, q, q_norm,
										  base.values + b * base.dim,
										  base_norms[b], base.dim);
			int			pos;

			if (isnan(key))
			{
				unranked++;
				continue;
			}
			if (filled == k + 1 && !(key < keys[k]))
				continue;
			/* insertion into the sorted list; strictly nearer moves ahead */
			pos = filled < k + 1 ? filled++ : k;
			while (pos > 0 && key < keys[pos - 1])
			{
				keys[pos] = keys[pos - 1];
				ids[pos] = ids[pos - 1];
				pos--;
			}
			keys[pos] = key;
			ids[pos] = (int) b + 1;
		}
		if (filled < k + 1)
		{
			/* only under cosine with zero vectors; mark the gap */
			for (; filled < k + 1; filled++)
			{
				keys[filled] = NAN;
				ids[filled] = 0;
			}
		}
	}

	for (size_t qi = 0; qi < queries.count; qi++)
	{
		const double *keys = best_key + qi * (k + 1);
		const int  *ids = best_id + qi * (k + 1);

		if (keys[k - 1] == keys[k])
			ties++;
		else if (keys[k] - keys[k - 1] <= NEAR_TIE_RELATIVE * fabs(keys[k]))
			near_ties++;

		printf("%zu\t{", qi + 1);
		for (int r = 0; r < k; r++)
			printf(r ? ",%d" : "%d", ids[r]);
		printf("}\t{");
		for (int r = 0; r < k; r++)
		{
			double		distance = metric == METRIC_L2 ? sqrt(keys[r]) : keys[r];

			printf(r ? ",%.17g" : "%.17g", distance);
		}
		printf("}\n");
	}
	if (fflush(stdout) != 0)
	{
		perror("knn_truth: write");
		return 1;
	}
	fprintf(stderr, "knn_truth: %zu queries × %zu base vectors, %d dims, %s, k=%d: "
			"%ld queries tie at rank %d/%d, %ld more nearly tie (within %.0e)%s\n",
			queries.count, base.count, base.dim, argv[1], k,
			ties, k, k + 1, near_ties, NEAR_TIE_RELATIVE,
			unranked ? " (zero vectors skipped under cosine)" : "");
	return 0;
}
