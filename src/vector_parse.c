/*
 * vector_parse.c — the text and binary forms of a vector, parsed and
 * validated without PostgreSQL.
 *
 * This file is compiled both into the server module and into libFuzzer
 * targets, so it must behave for any input at all: it reads text only up to
 * the terminating NUL and binary only up to len, writes at most
 * VECTOR_MAX_DIM floats, and has no undefined behaviour (no signed overflow,
 * no unaligned loads, no uninitialised reads).
 *
 * It never fails silently and never allocates: every problem becomes a status
 * plus the position and length of the offending token, and the server-side
 * caller (src/vector_io.c) turns that into an ERROR quoting the token.  Keeping
 * the error text out of this file lets the caller choose the SQLSTATE and
 * wording while the fuzzers exercise exactly the parsing the server runs.
 *
 * Numbers are read with strtof, so the accepted spellings (signs, exponents,
 * hexadecimal floats) are the C library's, in the C locale the server uses.
 * strtof also accepts "nan" and "inf"; those, and finite spellings that
 * overflow float4 (1e39), are rejected as VECTOR_PARSE_NOT_FINITE.  Values
 * that underflow to a denormal or to zero are accepted, as float4in does.
 */
#include "vector_parse.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/*
 * The whitespace allowed around tokens: the ASCII set that isspace() accepts
 * in the C locale, spelled out so that the server's locale cannot change it.
 */
static int
is_vector_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' ||
		c == '\v' || c == '\f';
}

static const char *
skip_space(const char *p)
{
	while (is_vector_space(*p))
		p++;
	return p;
}

/*
 * The extent of a bad element for error reports: from start up to (not
 * including) the next ',', ']' or end of string, without trailing whitespace.
 */
static size_t
element_length(const char *start)
{
	const char *end = start;

	while (*end != '\0' && *end != ',' && *end != ']')
		end++;
	while (end > start && is_vector_space(end[-1]))
		end--;
	return (size_t) (end - start);
}

static VectorParseResult
make_result(VectorParseStatus status, int dim, const char *str,
			const char *at, size_t length)
{
	VectorParseResult result;

	memset(&result, 0, sizeof(result));
	result.status = status;
	result.dim = dim;
	result.error_offset = (size_t) (at - str);
	result.error_length = length;
	result.bad_value = 0;
	return result;
}

VectorParseResult
vector_parse_text(const char *str, float *out)
{
	const char *p = skip_space(str);
	int			dim = 0;

	if (*p != '[')
		return make_result(VECTOR_PARSE_MISSING_OPEN, 0, str, p,
						   *p == '\0' ? 0 : element_length(p));
	p = skip_space(p + 1);

	if (*p == ']')
		return make_result(VECTOR_PARSE_EMPTY, 0, str, p, 1);

	for (;;)
	{
		const char *start;
		char	   *end;
		float		value;

		/* p is at the first non-space character of an element. */
		start = p;
		if (*start == '\0')
			return make_result(VECTOR_PARSE_MISSING_CLOSE, dim, str, start, 0);
		if (*start == ',' || *start == ']')
			/* an empty element: "[1,,2]", "[1,]" or "[,1]" */
			return make_result(VECTOR_PARSE_BAD_NUMBER, dim, str, start, 0);

		errno = 0;
		value = strtof(start, &end);
		if (end == start)
			return make_result(VECTOR_PARSE_BAD_NUMBER, dim, str, start,
							   element_length(start));

		/* After the number only whitespace, then ',' or ']', may follow. */
		p = skip_space(end);
		if (*p != ',' && *p != ']')
		{
			if (*p == '\0')
			{
				/*
				 * "[1,2": the element itself was fine, the bracket is
				 * missing.  Report the end of the string.
				 */
				if (isnan(value) || isinf(value))
					return make_result(VECTOR_PARSE_NOT_FINITE, dim, str,
									   start, (size_t) (end - start));
				return make_result(VECTOR_PARSE_MISSING_CLOSE, dim + 1, str,
								   p, 0);
			}
			/* "1a", "1 2", "1.2.3": the whole element is not a number */
			return make_result(VECTOR_PARSE_BAD_NUMBER, dim, str, start,
							   element_length(start));
		}

		if (isnan(value) || isinf(value))
			return make_result(VECTOR_PARSE_NOT_FINITE, dim, str, start,
							   (size_t) (end - start));

		if (dim >= VECTOR_MAX_DIM)
			return make_result(VECTOR_PARSE_TOO_MANY_DIMS, dim + 1, str,
							   start, (size_t) (end - start));
		out[dim++] = value;

		if (*p == ']')
			break;
		p = skip_space(p + 1);	/* past ',' */
	}

	/* p is at the closing ']' */
	p = skip_space(p + 1);
	if (*p != '\0')
	{
		size_t		length = strlen(p);

		while (length > 0 && is_vector_space(p[length - 1]))
			length--;
		return make_result(VECTOR_PARSE_TRAILING, dim, str, p, length);
	}

	return make_result(VECTOR_PARSE_OK, dim, str, str, 0);
}

/* Big-endian (network order) 16- and 32-bit loads, alignment-free. */
static int
read_int16_be(const unsigned char *p)
{
	uint16_t	u = (uint16_t) (((unsigned) p[0] << 8) | p[1]);

	return u >= 0x8000 ? (int) u - 0x10000 : (int) u;
}

static float
read_float4_be(const unsigned char *p)
{
	uint32_t	u = ((uint32_t) p[0] << 24) | ((uint32_t) p[1] << 16) |
		((uint32_t) p[2] << 8) | (uint32_t) p[3];
	float		f;

	memcpy(&f, &u, sizeof(f));
	return f;
}

VectorParseResult
vector_parse_binary(const unsigned char *buf, size_t len, float *out)
{
	VectorParseResult result;
	int			dim;
	int			unused;
	size_t		expected;

	memset(&result, 0, sizeof(result));

	if (buf == NULL || len < 4)
	{
		result.status = VECTOR_PARSE_SHORT_BUFFER;
		result.error_offset = len;
		return result;
	}

	dim = read_int16_be(buf);
	unused = read_int16_be(buf + 2);
	if (dim < 1 || dim > VECTOR_MAX_DIM)
	{
		result.status = VECTOR_PARSE_BAD_DIM;
		result.error_offset = 0;
		result.error_length = 2;
		result.bad_value = dim;
		return result;
	}
	result.dim = dim;
	if (unused != 0)
	{
		result.status = VECTOR_PARSE_BAD_UNUSED;
		result.error_offset = 2;
		result.error_length = 2;
		result.bad_value = unused;
		return result;
	}

	expected = 4 + 4 * (size_t) dim;
	if (len < expected)
	{
		result.status = VECTOR_PARSE_SHORT_BUFFER;
		result.error_offset = len;
		return result;
	}
	if (len > expected)
	{
		result.status = VECTOR_PARSE_EXTRA_BYTES;
		result.error_offset = expected;
		result.error_length = len - expected;
		return result;
	}

	for (int i = 0; i < dim; i++)
	{
		float		value = read_float4_be(buf + 4 + 4 * (size_t) i);

		if (isnan(value) || isinf(value))
		{
			result.status = VECTOR_PARSE_NOT_FINITE;
			result.error_offset = (size_t) i;
			result.error_length = 1;
			return result;
		}
		out[i] = value;
	}

	result.status = VECTOR_PARSE_OK;
	return result;
}

const char *
vector_parse_status_message(VectorParseStatus status)
{
	switch (status)
	{
		case VECTOR_PARSE_OK:
			return "valid vector";
		case VECTOR_PARSE_MISSING_OPEN:
			return "vector must start with \"[\"";
		case VECTOR_PARSE_BAD_NUMBER:
			return "element is not a number";
		case VECTOR_PARSE_NOT_FINITE:
			return "element is NaN, infinite, or out of range for type real";
		case VECTOR_PARSE_MISSING_CLOSE:
			return "vector must end with \"]\"";
		case VECTOR_PARSE_TRAILING:
			return "unexpected characters after \"]\"";
		case VECTOR_PARSE_EMPTY:
			return "vector must have at least 1 dimension";
		case VECTOR_PARSE_TOO_MANY_DIMS:
			return "vector cannot have more than 16000 dimensions";
		case VECTOR_PARSE_SHORT_BUFFER:
			return "binary vector is shorter than its header says";
		case VECTOR_PARSE_BAD_DIM:
			return "binary vector dimension is out of range";
		case VECTOR_PARSE_BAD_UNUSED:
			return "binary vector unused field is not zero";
		case VECTOR_PARSE_EXTRA_BYTES:
			return "binary vector is longer than its header says";
	}
	return "unknown vector parse status";
}
