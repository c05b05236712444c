/*
 * fvecs.h — the one file format the benchmark's data tools pass vectors in.
 *
 * The hnsw benchmark (hnsw_bench.sh) needs every data set three times: as
 * COPY input for the database, as input to the exact k-NN program that makes
 * the ground truth, and cached on disk between runs.  Its tools therefore
 * meet in one format, "fvecs" as used by the classic TEXMEX ANN data sets:
 * per vector an int32 dimension count followed by that many float32 values,
 * both in the machine's byte order (little-endian on every machine this
 * runs on).  It is self-describing (the dimension travels with the data), a
 * prefix of a file is a valid file (--rows takes the first N vectors), and
 * reading it is one fread per vector.
 *
 * Header-only; every function exits the program with a message on error, as
 * these are small command-line tools.
 */
#ifndef HIERINDEX_BENCH_FVECS_H
#define HIERINDEX_BENCH_FVECS_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A whole data set in memory: count vectors of dim floats, row after row. */
typedef struct FvecsSet
{
	float	   *values;
	size_t		count;
	int			dim;
} FvecsSet;

static inline void
fvecs_die(const char *what, const char *path)
{
	fprintf(stderr, "%s: %s\n", path, what);
	exit(1);
}

static inline void
fvecs_write_one(FILE *out, const float *vector, int dim)
{
	int32_t		d = dim;

	if (fwrite(&d, sizeof(d), 1, out) != 1 ||
		fwrite(vector, sizeof(float), (size_t) dim, out) != (size_t) dim)
	{
		perror("fvecs: write");
		exit(1);
	}
}

/*
 * Read at most max_count vectors (0: all) of one file; every vector must
 * have the dimension of the first.
 */
static inline FvecsSet
fvecs_read(const char *path, size_t max_count)
{
	FvecsSet	set = {NULL, 0, 0};
	size_t		capacity = 0;
	FILE	   *in = fopen(path, "rb");
	int32_t		d;

	if (in == NULL)
	{
		perror(path);
		exit(1);
	}
	while ((max_count == 0 || set.count < max_count) &&
		   fread(&d, sizeof(d), 1, in) == 1)
	{
		if (set.count == 0)
		{
			if (d < 1 || d > 65535)
				fvecs_die("not an fvecs file (bad dimension in the first vector)", path);
			set.dim = d;
		}
		else if (d != set.dim)
			fvecs_die("vectors of different dimensions", path);
		if (set.count == capacity)
		{
			capacity = capacity ? capacity * 2 : 1024;
			set.values = realloc(set.values, capacity * set.dim * sizeof(float));
			if (set.values == NULL)
				fvecs_die("out of memory", path);
		}
		if (fread(set.values + set.count * set.dim, sizeof(float),
				  (size_t) set.dim, in) != (size_t) set.dim)
			fvecs_die("truncated vector", path);
		set.count++;
	}
	if (ferror(in))
		fvecs_die("read error", path);
	fclose(in);
	if (set.count == 0)
		fvecs_die("no vectors", path);
	return set;
}

#endif							/* HIERINDEX_BENCH_FVECS_H */
