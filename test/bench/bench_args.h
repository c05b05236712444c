/*
 * bench_args.h — the one check of a numeric command-line argument that the
 * benchmark's C tools (gen_clustered, knn_truth, pca_rotate, graph_bench)
 * share, so that each says the same thing about a bad number.
 *
 * Header-only, like fvecs.h: a bad value ends the program with status 2 (a
 * usage error) and a message naming the program, the argument and the
 * range.
 */
#ifndef HIERINDEX_BENCH_ARGS_H
#define HIERINDEX_BENCH_ARGS_H

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>

/*
 * `text` as a whole decimal integer in [min, max] (max LONG_MAX: no upper
 * bound), or exit(2) saying which of `program`'s arguments, `name`, was bad.
 */
static inline long
bench_parse_long(const char *program, const char *name, const char *text,
				 long min, long max)
{
	char	   *end;
	long		value;

	errno = 0;
	value = strtol(text, &end, 10);
	if (errno != 0 || end == text || *end != '\0' || value < min || value > max)
	{
		if (max == LONG_MAX)
			fprintf(stderr, "%s: %s must be an integer of at least %ld, not \"%s\"\n",
					program, name, min, text);
		else
			fprintf(stderr, "%s: %s must be an integer in [%ld, %ld], not \"%s\"\n",
					program, name, min, max, text);
		exit(2);
	}
	return value;
}

#endif							/* HIERINDEX_BENCH_ARGS_H */
