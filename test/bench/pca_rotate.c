/*
 * pca_rotate.c — turn a data set into a Matryoshka-like one by rotating it
 * onto its principal components.
 *
 * A matryoshka index walks its graph on the first dimensions of each vector
 * and re-ranks on longer prefixes, which pays only when the first
 * dimensions carry the most information.  Raw Fashion-MNIST pixels do not:
 * pixel 0 is a corner that is almost always black.  Rotating every vector
 * onto the principal axes of the base set, largest variance first, gives
 * the order Matryoshka training aims at (a prefix is the best linear
 * summary of its length), while keeping every distance: the rotation is
 * orthogonal and the centring a translation, so L2 distances, and with them
 * the exact nearest neighbours, are those of the raw data (up to float
 * rounding of the output).
 *
 * Method, all in double:
 *   1. mean mu and covariance C = 1/n sum (x - mu)(x - mu)^T of the first
 *      FIT_ROWS base vectors (all when 0 or absent), accumulated over
 *      blocks of rows so that C is streamed once per block, not per row;
 *   2. eigen-decomposition of C by the cyclic Jacobi method: sweep over all
 *      pairs (p, q), each time zeroing C[p][q] with a plane rotation and
 *      applying the same rotation to the accumulated eigenvector rows W,
 *      until the off-diagonal part is negligible against the diagonal;
 *      Jacobi is slow (a few n^3 per sweep) but simple, unconditionally
 *      stable and accurate for small eigenvalues, and n = 784 takes
 *      seconds;
 *   3. every base and query vector x becomes W (x - mu), rows of W in
 *      decreasing eigenvalue order, written as float.
 * It fails (exit 1) when W is not orthonormal to 1e-9, which would mean a
 * bug here: then the output would not keep distances.
 *
 * On stderr: the sweeps taken and the share of the variance held by some
 * prefix lengths.
 *
 * Usage: pca_rotate BASE.fvecs QUERIES.fvecs OUT_BASE.fvecs OUT_QUERIES.fvecs [FIT_ROWS]
 * OpenMP threads: OMP_NUM_THREADS.
 */
#include "bench_args.h"
#include "fvecs.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ROW_BLOCK 64			/* rows per block of the covariance and the projection */
#define MAX_SWEEPS 60
#define ORTHONORMAL_TOLERANCE 1e-9

static void *
checked_calloc(size_t count, size_t size)
{
	void	   *p = calloc(count, size);

	if (p == NULL)
	{
		fprintf(stderr, "pca_rotate: out of memory\n");
		exit(1);
	}
	return p;
}

/* sets mean[dim] and cov[dim * dim] (full symmetric) from the first rows of set */
static void
mean_and_covariance(const FvecsSet *set, size_t rows, double *mean, double *cov)
{
	int			dim = set->dim;
	double	   *block = checked_calloc((size_t) dim * ROW_BLOCK, sizeof(double));

	for (size_t r = 0; r < rows; r++)
		for (int i = 0; i < dim; i++)
			mean[i] += set->values[r * dim + i];
	for (int i = 0; i < dim; i++)
		mean[i] /= (double) rows;

	/*
	 * Upper triangle, block by block: block[i * ROW_BLOCK + b] is centred
	 * coordinate i of row b of the block, so each cov[i][j] gets one
	 * contiguous dot product per block.
	 */
	for (size_t start = 0; start < rows; start += ROW_BLOCK)
	{
		int			count = rows - start < ROW_BLOCK ? (int) (rows - start) : ROW_BLOCK;

		memset(block, 0, sizeof(double) * dim * ROW_BLOCK);
		for (int b = 0; b < count; b++)
			for (int i = 0; i < dim; i++)
				block[(size_t) i * ROW_BLOCK + b] =
					set->values[(start + b) * dim + i] - mean[i];

#pragma omp parallel for schedule(dynamic, 8)
		for (int i = 0; i < dim; i++)
		{
			const double *xi = block + (size_t) i * ROW_BLOCK;

			for (int j = i; j < dim; j++)
			{
				const double *xj = block + (size_t) j * ROW_BLOCK;
				double		sum = 0.0;

#pragma omp simd reduction(+:sum)
				for (int b = 0; b < ROW_BLOCK; b++)
					sum += xi[b] * xj[b];
				cov[(size_t) i * dim + j] += sum;
			}
		}
	}
	for (int i = 0; i < dim; i++)
		for (int j = i; j < dim; j++)
		{
			cov[(size_t) i * dim + j] /= (double) rows;
			cov[(size_t) j * dim + i] = cov[(size_t) i * dim + j];
		}
	free(block);
}

/*
 * Cyclic Jacobi on the symmetric matrix a (overwritten; its diagonal ends
 * as the eigenvalues); w gets the eigenvectors as rows.  Returns the number
 * of sweeps.
 *
 * A rotation in the (p, q) plane with cosine c and sine s, chosen so that
 * the new a[p][q] is zero: with theta = (a_qq - a_pp) / (2 a_pq) and t the
 * smaller root of t^2 + 2 theta t - 1 = 0 (t = tan of the angle),
 *   a_pp -= t a_pq,  a_qq += t a_pq,  a_pq = 0,
 *   for r != p, q:  a_rp' = c a_rp - s a_rq,  a_rq' = s a_rp + c a_rq,
 * and the same combination of rows p and q of w.  Rows p and q of a are
 * updated contiguously and mirrored into the columns.
 */
static int
jacobi_eigen(double *a, double *w, int n)
{
	int			sweep;

	for (int i = 0; i < n; i++)
		for (int j = 0; j < n; j++)
			w[(size_t) i * n + j] = i == j ? 1.0 : 0.0;

	for (sweep = 1; sweep <= MAX_SWEEPS; sweep++)
	{
		double		off = 0.0,
					diag = 0.0;
		int			rotations = 0;

		for (int i = 0; i < n; i++)
		{
			diag += a[(size_t) i * n + i] * a[(size_t) i * n + i];
			for (int j = i + 1; j < n; j++)
				off += a[(size_t) i * n + j] * a[(size_t) i * n + j];
		}
		if (off <= 1e-30 * diag)
			return sweep - 1;

		for (int p = 0; p < n - 1; p++)
		{
			for (int q = p + 1; q < n; q++)
			{
				double	   *row_p = a + (size_t) p * n;
				double	   *row_q = a + (size_t) q * n;
				double	   *w_p = w + (size_t) p * n;
				double	   *w_q = w + (size_t) q * n;
				double		apq = row_p[q],
							app = row_p[p],
							aqq = row_q[q],
							theta,
							t,
							c,
							s;

				/* negligible against both diagonal entries: leave it */
				if (fabs(apq) <= 1e-18 * sqrt(fabs(app * aqq)) || apq == 0.0)
					continue;
				theta = (aqq - app) / (2.0 * apq);
				t = (theta >= 0.0 ? 1.0 : -1.0) / (fabs(theta) + sqrt(theta * theta + 1.0));
				c = 1.0 / sqrt(t * t + 1.0);
				s = t * c;

				for (int r = 0; r < n; r++)
				{
					double		arp = row_p[r],
								arq = row_q[r];

					row_p[r] = c * arp - s * arq;
					row_q[r] = s * arp + c * arq;
				}
				for (int r = 0; r < n; r++)
				{
					a[(size_t) r * n + p] = row_p[r];
					a[(size_t) r * n + q] = row_q[r];
				}
				row_p[p] = app - t * apq;
				row_q[q] = aqq + t * apq;
				row_p[q] = row_q[p] = 0.0;

#pragma omp simd
				for (int r = 0; r < n; r++)
				{
					double		wp = w_p[r],
								wq = w_q[r];

					w_p[r] = c * wp - s * wq;
					w_q[r] = s * wp + c * wq;
				}
				rotations++;
			}
		}
		if (rotations == 0)
			return sweep;
	}
	fprintf(stderr, "pca_rotate: Jacobi did not converge in %d sweeps\n", MAX_SWEEPS);
	exit(1);
}

/* largest |W W^T - I| entry */
static double
orthonormality_error(const double *w, int n)
{
	double		worst = 0.0;

#pragma omp parallel for schedule(dynamic, 8) reduction(max:worst)
	for (int i = 0; i < n; i++)
		for (int j = i; j < n; j++)
		{
			double		dot = 0.0;

			for (int r = 0; r < n; r++)
				dot += w[(size_t) i * n + r] * w[(size_t) j * n + r];
			dot -= i == j ? 1.0 : 0.0;
			if (fabs(dot) > worst)
				worst = fabs(dot);
		}
	return worst;
}

/* writes W (x - mean) of every vector of set to path, ROW_BLOCK rows at a time */
static void
project_file(const FvecsSet *set, const double *mean, const double *w, const char *path)
{
	int			dim = set->dim;
	double	   *centred = checked_calloc((size_t) dim * ROW_BLOCK, sizeof(double));
	double	   *projected = checked_calloc((size_t) dim * ROW_BLOCK, sizeof(double));
	float	   *out = checked_calloc(dim, sizeof(float));
	FILE	   *file = fopen(path, "wb");

	if (file == NULL)
	{
		perror(path);
		exit(1);
	}
	for (size_t start = 0; start < set->count; start += ROW_BLOCK)
	{
		int			count = set->count - start < ROW_BLOCK ? (int) (set->count - start) : ROW_BLOCK;

		for (int b = 0; b < count; b++)
			for (int i = 0; i < dim; i++)
				centred[(size_t) b * dim + i] = set->values[(start + b) * dim + i] - mean[i];

		/* component k (row k of w, in cache) against every row of the block */
#pragma omp parallel for schedule(static)
		for (int k = 0; k < dim; k++)
		{
			const double *wk = w + (size_t) k * dim;

			for (int b = 0; b < count; b++)
			{
				const double *x = centred + (size_t) b * dim;
				double		sum = 0.0;

#pragma omp simd reduction(+:sum)
				for (int i = 0; i < dim; i++)
					sum += wk[i] * x[i];
				projected[(size_t) b * dim + k] = sum;
			}
		}
		for (int b = 0; b < count; b++)
		{
			for (int k = 0; k < dim; k++)
				out[k] = (float) projected[(size_t) b * dim + k];
			fvecs_write_one(file, out, dim);
		}
	}
	if (fclose(file) != 0)
	{
		perror(path);
		exit(1);
	}
	free(centred);
	free(projected);
	free(out);
}

int
main(int argc, char **argv)
{
	FvecsSet	base,
				queries;
	size_t		fit_rows;
	int			dim,
				sweeps;
	double	   *mean,
			   *cov,
			   *w,
			   *sorted_w,
			   *eigenvalues,
				total = 0.0,
				error;
	int		   *order;
	static const int report_prefixes[] = {8, 16, 32, 64, 128, 256};

	if (argc != 5 && argc != 6)
	{
		fprintf(stderr, "usage: pca_rotate BASE.fvecs QUERIES.fvecs OUT_BASE.fvecs OUT_QUERIES.fvecs [FIT_ROWS]\n");
		return 2;
	}
	base = fvecs_read(argv[1], 0);
	queries = fvecs_read(argv[2], 0);
	if (base.dim != queries.dim)
	{
		fprintf(stderr, "pca_rotate: base vectors have %d dimensions, queries %d\n",
				base.dim, queries.dim);
		return 1;
	}
	fit_rows = base.count;
	if (argc == 6)
	{
		long		value = bench_parse_long("pca_rotate", "FIT_ROWS", argv[5], 0, LONG_MAX);

		if (value > 0 && (size_t) value < fit_rows)
			fit_rows = (size_t) value;
	}
	if (fit_rows < 2)
	{
		fprintf(stderr, "pca_rotate: need at least 2 base vectors to fit, got %zu\n", fit_rows);
		return 1;
	}
	dim = base.dim;

	mean = checked_calloc(dim, sizeof(double));
	cov = checked_calloc((size_t) dim * dim, sizeof(double));
	w = checked_calloc((size_t) dim * dim, sizeof(double));
	sorted_w = checked_calloc((size_t) dim * dim, sizeof(double));
	eigenvalues = checked_calloc(dim, sizeof(double));
	order = checked_calloc(dim, sizeof(int));

	mean_and_covariance(&base, fit_rows, mean, cov);
	sweeps = jacobi_eigen(cov, w, dim);

	/* decreasing eigenvalue order (insertion sort of indexes: dim is small) */
	for (int i = 0; i < dim; i++)
	{
		int			pos = i;

		eigenvalues[i] = cov[(size_t) i * dim + i];
		total += eigenvalues[i];
		while (pos > 0 && eigenvalues[order[pos - 1]] < eigenvalues[i])
		{
			order[pos] = order[pos - 1];
			pos--;
		}
		order[pos] = i;
	}
	for (int k = 0; k < dim; k++)
		memcpy(sorted_w + (size_t) k * dim, w + (size_t) order[k] * dim, sizeof(double) * dim);

	error = orthonormality_error(sorted_w, dim);
	if (!(error <= ORTHONORMAL_TOLERANCE))
	{
		fprintf(stderr, "pca_rotate: the eigenvectors are not orthonormal (largest error %g)\n", error);
		return 1;
	}
	fprintf(stderr, "pca_rotate: %d-d covariance of %zu vectors, Jacobi %d sweeps, orthonormal to %.1e; variance held by the first",
			dim, fit_rows, sweeps, error);
	for (size_t r = 0; r < sizeof(report_prefixes) / sizeof(report_prefixes[0]); r++)
	{
		double		held = 0.0;

		if (report_prefixes[r] >= dim)
			break;
		for (int k = 0; k < report_prefixes[r]; k++)
			held += eigenvalues[order[k]];
		fprintf(stderr, " %d: %.3f", report_prefixes[r], total > 0.0 ? held / total : 0.0);
	}
	fprintf(stderr, "\n");

	project_file(&base, mean, sorted_w, argv[3]);
	project_file(&queries, mean, sorted_w, argv[4]);

	free(base.values);
	free(queries.values);
	free(mean);
	free(cov);
	free(w);
	free(sorted_w);
	free(eigenvalues);
	free(order);
	return 0;
}
