/*
 * idx_to_fvecs.c — Fashion-MNIST images as float vectors for the benchmark.
 *
 * The Debian package dataset-fashion-mnist ships the images in the IDX
 * format of the original MNIST (gzip-compressed; the benchmark script pipes
 * them through gzip -dc).  An IDX file is a big-endian header — two zero
 * bytes, a type code (0x08: unsigned byte), the number of dimensions, then
 * one uint32 size per dimension — followed by the values, last dimension
 * fastest.  For the image files that is count × 28 × 28 bytes.
 *
 * Each image becomes one vector of its raw pixel values (0 to 255, not
 * scaled, as in the benchmark's reference numbers) with rows × cols
 * dimensions: 784 for Fashion-MNIST.  Any unsigned-byte IDX file with at
 * least two dimensions works; the first dimension counts the vectors.
 *
 * Usage: idx_to_fvecs [MAX_COUNT] < images-idx3-ubyte > out.fvecs
 *        (MAX_COUNT: convert only the first MAX_COUNT images; 0 or absent: all)
 */
#include "fvecs.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define IDX_TYPE_UBYTE 0x08

static uint32_t
read_be32(FILE *in)
{
	unsigned char b[4];

	if (fread(b, 1, 4, in) != 4)
	{
		fprintf(stderr, "idx_to_fvecs: input ends inside the IDX header\n");
		exit(1);
	}
	return ((uint32_t) b[0] << 24) | ((uint32_t) b[1] << 16) |
		((uint32_t) b[2] << 8) | (uint32_t) b[3];
}

int
main(int argc, char **argv)
{
	unsigned long max_count = 0;
	uint32_t	magic,
				count;
	unsigned	n_dims;
	size_t		dim = 1;
	unsigned char *pixels;
	float	   *vector;

	if (argc > 2)
	{
		fprintf(stderr, "usage: idx_to_fvecs [MAX_COUNT] < images-idx3-ubyte > out.fvecs\n");
		return 2;
	}
	if (argc == 2)
	{
		char	   *end;

		errno = 0;
		max_count = strtoul(argv[1], &end, 10);
		if (errno != 0 || end == argv[1] || *end != '\0' || argv[1][0] == '-')
		{
			fprintf(stderr, "idx_to_fvecs: MAX_COUNT must be a non-negative integer, not \"%s\"\n",
					argv[1]);
			return 2;
		}
	}

	magic = read_be32(stdin);
	n_dims = magic & 0xff;
	if ((magic >> 16) != 0 || ((magic >> 8) & 0xff) != IDX_TYPE_UBYTE || n_dims < 2)
	{
		fprintf(stderr, "idx_to_fvecs: not an unsigned-byte IDX file of 2 or more dimensions "
				"(magic 0x%08x)\n", (unsigned) magic);
		return 1;
	}
	count = read_be32(stdin);
	for (unsigned d = 1; d < n_dims; d++)
		dim *= read_be32(stdin);
	if (dim < 1 || dim > 16000)
	{
		fprintf(stderr, "idx_to_fvecs: %zu values per item is out of range for a vector\n", dim);
		return 1;
	}
	if (max_count == 0 || max_count > count)
		max_count = count;

	pixels = malloc(dim);
	vector = malloc(sizeof(float) * dim);
	if (pixels == NULL || vector == NULL)
	{
		fprintf(stderr, "idx_to_fvecs: out of memory\n");
		return 1;
	}
	for (unsigned long n = 0; n < max_count; n++)
	{
		if (fread(pixels, 1, dim, stdin) != dim)
		{
			fprintf(stderr, "idx_to_fvecs: input ends at item %lu of %u\n", n, (unsigned) count);
			return 1;
		}
		for (size_t i = 0; i < dim; i++)
			vector[i] = (float) pixels[i];
		fvecs_write_one(stdout, vector, (int) dim);
	}
	if (fflush(stdout) != 0)
	{
		perror("idx_to_fvecs: write");
		return 1;
	}
	free(pixels);
	free(vector);
	return 0;
}
