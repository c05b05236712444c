/*
 * gen_clustered.c — the generated 768-d data set of the hnsw benchmark.
 *
 * Real embeddings are neither uniform nor isotropic: they gather in clusters,
 * and their variance is spread unevenly over the dimensions (a few directions
 * carry most of it).  Uniform random vectors have neither property and make
 * a graph index look both worse (no structure to exploit) and better (no
 * hard near-duplicates) than it is.  This generator, specified in issue 4,
 * has both:
 *
 *   scale    s_i = (1 + i)^-0.6 for dimension i = 0 .. dim-1
 *   centres  c · s with c ~ N(0, 9 I), 'centres' of them
 *   points   c · s + noise · s, noise ~ N(0, I), around a centre drawn
 *            uniformly for each point; then each point is scaled to unit
 *            length (so L2 and cosine order neighbours alike)
 *
 * The centres come from one seed and the points from another, so the base
 * set and the query set share their centres but not their points (call it
 * twice with the same centre seed and different point seeds).  Everything is
 * computed in double and rounded to float once at the end; with the
 * splitmix64 generator of ../unit/random.h the output is the same bit for
 * bit on every machine, and the first N points of a run do not depend on how
 * many follow (a --rows subsample is a prefix of the full set).
 *
 * Usage: gen_clustered DIM CENTRES COUNT CENTRE_SEED POINT_SEED > out.fvecs
 * Output: fvecs (see fvecs.h) on stdout.
 */
#include "bench_args.h"
#include "fvecs.h"
#include "random.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define SCALE_EXPONENT (-0.6)
#define CENTRE_SIGMA 3.0		/* c ~ N(0, 9 I) */

static uint64_t
parse_seed(const char *text, const char *name)
{
	char	   *end;
	unsigned long long value;

	errno = 0;
	value = strtoull(text, &end, 10);
	if (errno != 0 || end == text || *end != '\0')
	{
		fprintf(stderr, "gen_clustered: %s must be an unsigned integer, not \"%s\"\n",
				name, text);
		exit(2);
	}
	return (uint64_t) value;
}

int
main(int argc, char **argv)
{
	int			dim;
	long		n_centres,
				count;
	uint64_t	centre_seed,
				point_seed;
	double	   *scale,
			   *centres,
			   *point;
	float	   *out;

	if (argc != 6)
	{
		fprintf(stderr, "usage: gen_clustered DIM CENTRES COUNT CENTRE_SEED POINT_SEED > out.fvecs\n");
		return 2;
	}
	dim = (int) bench_parse_long("gen_clustered", "DIM", argv[1], 1, 16000);
	n_centres = bench_parse_long("gen_clustered", "CENTRES", argv[2], 1, 1000000);
	count = bench_parse_long("gen_clustered", "COUNT", argv[3], 1, 100000000);
	centre_seed = parse_seed(argv[4], "CENTRE_SEED");
	point_seed = parse_seed(argv[5], "POINT_SEED");

	scale = malloc(sizeof(double) * dim);
	centres = malloc(sizeof(double) * dim * n_centres);
	point = malloc(sizeof(double) * dim);
	out = malloc(sizeof(float) * dim);
	if (scale == NULL || centres == NULL || point == NULL || out == NULL)
	{
		fprintf(stderr, "gen_clustered: out of memory\n");
		return 1;
	}
	for (int i = 0; i < dim; i++)
		scale[i] = pow(1.0 + i, SCALE_EXPONENT);

	/* the centres, scaled, from their own seed */
	rng_state = centre_seed;
	for (long c = 0; c < n_centres; c++)
		for (int i = 0; i < dim; i++)
			centres[c * dim + i] = CENTRE_SIGMA * rng_normal() * scale[i];

	rng_state = point_seed;
	for (long p = 0; p < count; p++)
	{
		const double *centre = centres + (long) (rng_next() % (uint64_t) n_centres) * dim;
		double		norm2 = 0.0,
					inverse;

		for (int i = 0; i < dim; i++)
		{
			point[i] = centre[i] + rng_normal() * scale[i];
			norm2 += point[i] * point[i];
		}
		/* norm2 > 0 with probability 1; guard anyway, a zero stays zero */
		inverse = norm2 > 0.0 ? 1.0 / sqrt(norm2) : 0.0;
		for (int i = 0; i < dim; i++)
			out[i] = (float) (point[i] * inverse);
		fvecs_write_one(stdout, out, dim);
	}
	if (fflush(stdout) != 0)
	{
		perror("gen_clustered: write");
		return 1;
	}
	free(scale);
	free(centres);
	free(point);
	free(out);
	return 0;
}
