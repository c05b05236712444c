/*
 * fvecs_to_copy.c — stream an fvecs file into PostgreSQL's binary COPY format.
 *
 * The benchmark loads 100 000 × 768 floats; as COPY text that is some 700 MB
 * of decimal digits that the server must parse back (float rounding included),
 * while binary COPY hands vector_recv the four bytes of each float as they
 * are.  So the tables are loaded with
 *
 *     fvecs_to_copy < base.fvecs | psql -c '\copy items FROM pstdin WITH (FORMAT binary)'
 *
 * into a table (id int4, embedding vector): the vector number, counted from
 * 1, is the id, which is also what knn_truth.c writes into the ground truth.
 *
 * Binary COPY (PostgreSQL manual, "COPY", "Binary Format"): the 11-byte
 * signature "PGCOPY\n\377\r\n\0", an int32 flags field (0) and an int32
 * header-extension length (0); per row an int16 field count, then per field
 * an int32 byte length and the value in the type's send format; an int16 -1
 * ends the data.  All integers are big-endian.  vector's send format is an
 * int16 dimension count, an int16 unused (0) and the float4 values, all in
 * network order.
 *
 * Usage: fvecs_to_copy < in.fvecs > out.copy
 */
#include "fvecs.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void
put_be16(unsigned char *p, uint16_t v)
{
	p[0] = (unsigned char) (v >> 8);
	p[1] = (unsigned char) v;
}

static void
put_be32(unsigned char *p, uint32_t v)
{
	p[0] = (unsigned char) (v >> 24);
	p[1] = (unsigned char) (v >> 16);
	p[2] = (unsigned char) (v >> 8);
	p[3] = (unsigned char) v;
}

static void
write_all(const void *data, size_t len)
{
	if (fwrite(data, 1, len, stdout) != len)
	{
		perror("fvecs_to_copy: write");
		exit(1);
	}
}

int
main(void)
{
	static const unsigned char signature[11] = "PGCOPY\n\377\r\n";	/* + its NUL */
	unsigned char header[8] = {0};	/* flags 0, extension length 0 */
	unsigned char trailer[2];
	unsigned char *row = NULL;
	float	   *vector = NULL;
	int32_t		d;
	int			dim = 0;
	uint32_t	id = 0;

	write_all(signature, sizeof(signature));
	write_all(header, sizeof(header));

	while (fread(&d, sizeof(d), 1, stdin) == 1)
	{
		size_t		row_len;
		unsigned char *p;

		if (dim == 0)
		{
			if (d < 1 || d > 16000)
			{
				fprintf(stderr, "fvecs_to_copy: bad dimension %d in the first vector\n", (int) d);
				return 1;
			}
			dim = d;
			/* field count, id (length + value), vector (length + dim + unused + floats) */
			row = malloc(2 + 4 + 4 + 4 + 4 + 4 * (size_t) dim);
			vector = malloc(sizeof(float) * dim);
			if (row == NULL || vector == NULL)
			{
				fprintf(stderr, "fvecs_to_copy: out of memory\n");
				return 1;
			}
		}
		else if (d != dim)
		{
			fprintf(stderr, "fvecs_to_copy: vector %u has %d dimensions, the first had %d\n",
					id + 1, (int) d, dim);
			return 1;
		}
		if (fread(vector, sizeof(float), (size_t) dim, stdin) != (size_t) dim)
		{
			fprintf(stderr, "fvecs_to_copy: input ends inside vector %u\n", id + 1);
			return 1;
		}
		id++;

		p = row;
		put_be16(p, 2);
		p += 2;
		put_be32(p, 4);
		p += 4;
		put_be32(p, id);
		p += 4;
		put_be32(p, 4 + 4 * (uint32_t) dim);
		p += 4;
		put_be16(p, (uint16_t) dim);
		p += 2;
		put_be16(p, 0);
		p += 2;
		for (int i = 0; i < dim; i++)
		{
			uint32_t	bits;

			memcpy(&bits, &vector[i], sizeof(bits));
			put_be32(p, bits);
			p += 4;
		}
		row_len = (size_t) (p - row);
		write_all(row, row_len);
	}
	if (ferror(stdin))
	{
		perror("fvecs_to_copy: read");
		return 1;
	}
	put_be16(trailer, 0xffff);
	write_all(trailer, sizeof(trailer));
	if (fflush(stdout) != 0)
	{
		perror("fvecs_to_copy: write");
		return 1;
	}
	free(row);
	free(vector);
	return 0;
}
