/*
 * fuzz_vector_binary.c — libFuzzer target for vector_parse_binary().
 *
 * vector_parse_binary() is the exact code vector_recv runs for binary COPY
 * and binary protocol parameters: bytes straight from a client.  The format
 * is small enough to decide independently whether an input is valid (int16
 * dim in 1..VECTOR_MAX_DIM, int16 unused == 0, exactly dim finite float4,
 * all big-endian), so besides memory safety the target checks the parser
 * against that oracle and abort()s on any disagreement:
 *
 *	- the status is a known one with a non-NULL message;
 *	- error_offset + error_length lie within the input;
 *	- the parser says OK exactly when the oracle says valid;
 *	- an OK result has 1 <= dim <= VECTOR_MAX_DIM finite values, and
 *	  re-encoding it gives exactly the input bytes;
 *	- a rejection names a real fault: BAD_DIM / BAD_UNUSED carry the value
 *	  actually in the header, NOT_FINITE points at a NaN or infinite element,
 *	  SHORT_BUFFER / EXTRA_BYTES match the length.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vector_parse.h"

#define HEADER_BYTES 4

static void
fail(const char *what, size_t size)
{
	fprintf(stderr, "fuzz_vector_binary: invariant violated: %s (input %zu bytes)\n",
			what, size);
	abort();
}

static int16_t
read_int16(const uint8_t *p)
{
	return (int16_t) (uint16_t) (((unsigned) p[0] << 8) | p[1]);
}

static float
read_float4(const uint8_t *p)
{
	uint32_t	bits = ((uint32_t) p[0] << 24) | ((uint32_t) p[1] << 16) |
		((uint32_t) p[2] << 8) | (uint32_t) p[3];
	float		f;

	memcpy(&f, &bits, sizeof(f));
	return f;
}

static void
write_float4(uint8_t *p, float f)
{
	uint32_t	bits;

	memcpy(&bits, &f, sizeof(bits));
	p[0] = (uint8_t) (bits >> 24);
	p[1] = (uint8_t) (bits >> 16);
	p[2] = (uint8_t) (bits >> 8);
	p[3] = (uint8_t) bits;
}

/* The oracle: is this a valid binary vector?  Written from the format alone. */
static int
binary_is_valid(const uint8_t *data, size_t size)
{
	int			dim;

	if (size < HEADER_BYTES)
		return 0;
	dim = read_int16(data);
	if (dim < 1 || dim > VECTOR_MAX_DIM)
		return 0;
	if (read_int16(data + 2) != 0)
		return 0;
	if (size != HEADER_BYTES + (size_t) dim * 4)
		return 0;
	for (int i = 0; i < dim; i++)
		if (!isfinite(read_float4(data + HEADER_BYTES + (size_t) i * 4)))
			return 0;
	return 1;
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	for (int s = VECTOR_PARSE_OK; s <= VECTOR_PARSE_EXTRA_BYTES; s++)
		if (vector_parse_status_message((VectorParseStatus) s) == NULL)
			fail("vector_parse_status_message returned NULL", 0);
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t    *input;
	float	   *values;
	VectorParseResult res;
	int			valid;

	/* Own exact-size copy so ASan catches any read past the end. */
	input = malloc(size ? size : 1);
	values = malloc(sizeof(float) * VECTOR_MAX_DIM);
	if (input == NULL || values == NULL)
		abort();
	memcpy(input, data, size);

	res = vector_parse_binary(input, size, values);

	if (res.status < VECTOR_PARSE_OK || res.status > VECTOR_PARSE_EXTRA_BYTES)
		fail("status outside the VectorParseStatus enum", size);
	if (vector_parse_status_message(res.status) == NULL)
		fail("vector_parse_status_message returned NULL", size);
	if (res.error_offset > size || res.error_length > size - res.error_offset)
		fail("error_offset + error_length beyond the end of the input", size);

	valid = binary_is_valid(input, size);
	if (valid && res.status != VECTOR_PARSE_OK)
		fail("valid input rejected", size);
	if (!valid && res.status == VECTOR_PARSE_OK)
		fail("invalid input accepted", size);

	switch (res.status)
	{
		case VECTOR_PARSE_OK:
			{
				uint8_t    *encoded;
				size_t		encoded_len;

				if (res.dim < 1 || res.dim > VECTOR_MAX_DIM)
					fail("OK result with dim outside 1..VECTOR_MAX_DIM", size);
				for (int i = 0; i < res.dim; i++)
					if (!isfinite(values[i]))
						fail("OK result holds a NaN or infinite value", size);

				encoded_len = HEADER_BYTES + (size_t) res.dim * 4;
				encoded = malloc(encoded_len);
				if (encoded == NULL)
					abort();
				encoded[0] = (uint8_t) ((unsigned) res.dim >> 8);
				encoded[1] = (uint8_t) res.dim;
				encoded[2] = 0;
				encoded[3] = 0;
				for (int i = 0; i < res.dim; i++)
					write_float4(encoded + HEADER_BYTES + (size_t) i * 4, values[i]);
				if (encoded_len != size || memcmp(encoded, input, size) != 0)
					fail("re-encoding an OK result does not give the input bytes", size);
				free(encoded);
				break;
			}
		case VECTOR_PARSE_BAD_DIM:
			if (size < 2)
				fail("BAD_DIM for an input too short to hold a dim", size);
			if (res.bad_value != read_int16(input))
				fail("BAD_DIM bad_value is not the dim in the input", size);
			if (res.bad_value >= 1 && res.bad_value <= VECTOR_MAX_DIM)
				fail("BAD_DIM for a dim within 1..VECTOR_MAX_DIM", size);
			break;
		case VECTOR_PARSE_BAD_UNUSED:
			if (size < HEADER_BYTES)
				fail("BAD_UNUSED for an input too short to hold the header", size);
			if (res.bad_value != read_int16(input + 2))
				fail("BAD_UNUSED bad_value is not the unused field in the input", size);
			if (res.bad_value == 0)
				fail("BAD_UNUSED for an unused field of 0", size);
			break;
		case VECTOR_PARSE_NOT_FINITE:
			{
				/* For binary input error_offset is the element's index. */
				size_t		at = HEADER_BYTES + res.error_offset * 4;

				if (size < HEADER_BYTES ||
					res.error_offset >= (size_t) read_int16(input) ||
					at + 4 > size)
					fail("NOT_FINITE element index outside the vector", size);
				if (isfinite(read_float4(input + at)))
					fail("NOT_FINITE points at a finite element", size);
				break;
			}
		case VECTOR_PARSE_SHORT_BUFFER:
			if (size >= HEADER_BYTES &&
				size >= HEADER_BYTES + (size_t) (read_int16(input) > 0 ? read_int16(input) : 0) * 4)
				fail("SHORT_BUFFER although the input holds header and all elements", size);
			break;
		case VECTOR_PARSE_EXTRA_BYTES:
			if (size < HEADER_BYTES ||
				size <= HEADER_BYTES + (size_t) (read_int16(input) > 0 ? read_int16(input) : 0) * 4)
				fail("EXTRA_BYTES although the input is not longer than the vector", size);
			break;
		case VECTOR_PARSE_MISSING_OPEN:
		case VECTOR_PARSE_BAD_NUMBER:
		case VECTOR_PARSE_MISSING_CLOSE:
		case VECTOR_PARSE_TRAILING:
		case VECTOR_PARSE_EMPTY:
		case VECTOR_PARSE_TOO_MANY_DIMS:
			fail("text-only status returned for binary input", size);
			break;
	}

	free(values);
	free(input);
	return 0;
}
