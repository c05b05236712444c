/*
 * fuzz_vector_text.c — libFuzzer target for vector_parse_text().
 *
 * vector_parse_text() is the exact code vector_in runs in the server, so any
 * crash, out-of-bounds access or undefined behaviour found here is a crash
 * in the server.  Beyond memory safety (AddressSanitizer, UBSan) the target
 * checks the parser's contract and abort()s on any violation, which
 * libFuzzer reports as a crash with the offending input saved:
 *
 *	- the status is a known one and has a non-NULL message;
 *	- error_offset + error_length lie within the string the parser saw;
 *	- an OK result has 1 <= dim <= VECTOR_MAX_DIM finite values, the input
 *	  starts with '[' (after whitespace) and holds exactly dim - 1 commas;
 *	- printing an OK result with "%.9g" (enough digits to identify any
 *	  float) into '[...]' and parsing that again gives OK, the same
 *	  dimension and bit-identical floats (so -0 stays -0, denormals survive).
 *
 * The fuzzer input is not NUL-terminated, so it is copied into a buffer one
 * byte longer; an input holding a NUL byte is a shorter string to the parser,
 * exactly as a cstring would be in the server.
 */
#include <ctype.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vector_parse.h"

/* Room for "%.9g" of any float ("-1.23456789e-45" is 15 chars) plus ','. */
#define MAX_PRINTED_FLOAT 24

static void
fail(const char *what, const char *input)
{
	fprintf(stderr, "fuzz_vector_text: invariant violated: %s\n", what);
	fprintf(stderr, "input (first 200 bytes): %.200s\n", input);
	abort();
}

static void
check_status_message(VectorParseStatus status, const char *input)
{
	if (status < VECTOR_PARSE_OK || status > VECTOR_PARSE_EXTRA_BYTES)
		fail("status outside the VectorParseStatus enum", input);
	if (vector_parse_status_message(status) == NULL)
		fail("vector_parse_status_message returned NULL", input);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	/* Every status, not only those the fuzzer happens to reach, has a message. */
	for (int s = VECTOR_PARSE_OK; s <= VECTOR_PARSE_EXTRA_BYTES; s++)
		if (vector_parse_status_message((VectorParseStatus) s) == NULL)
			fail("vector_parse_status_message returned NULL", "(init)");
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char	   *str;
	size_t		len;
	float	   *values;
	VectorParseResult res;

	str = malloc(size + 1);
	if (str == NULL)
		abort();
	memcpy(str, data, size);
	str[size] = '\0';
	len = strlen(str);

	/* Exactly VECTOR_MAX_DIM floats on the heap, so ASan catches overruns. */
	values = malloc(sizeof(float) * VECTOR_MAX_DIM);
	if (values == NULL)
		abort();

	res = vector_parse_text(str, values);
	check_status_message(res.status, str);

	if (res.error_offset > len || res.error_length > len - res.error_offset)
		fail("error_offset + error_length beyond the end of the input", str);

	if (res.status == VECTOR_PARSE_OK)
	{
		const char *p = str;
		size_t		commas = 0;
		char	   *printed;
		char	   *w;
		float	   *reparsed;
		VectorParseResult again;

		if (res.dim < 1 || res.dim > VECTOR_MAX_DIM)
			fail("OK result with dim outside 1..VECTOR_MAX_DIM", str);
		for (int i = 0; i < res.dim; i++)
			if (!isfinite(values[i]))
				fail("OK result holds a NaN or infinite value", str);

		while (isspace((unsigned char) *p))
			p++;
		if (*p != '[')
			fail("OK result for input not starting with '['", str);
		for (p = str; *p; p++)
			if (*p == ',')
				commas++;
		if (commas != (size_t) res.dim - 1)
			fail("OK result whose dim is not the number of commas + 1", str);

		/* Print with %.9g and parse again: must round-trip bit for bit. */
		printed = malloc((size_t) res.dim * MAX_PRINTED_FLOAT + 3);
		reparsed = malloc(sizeof(float) * VECTOR_MAX_DIM);
		if (printed == NULL || reparsed == NULL)
			abort();
		w = printed;
		*w++ = '[';
		for (int i = 0; i < res.dim; i++)
			w += sprintf(w, "%s%.9g", i > 0 ? "," : "", (double) values[i]);
		*w++ = ']';
		*w = '\0';

		again = vector_parse_text(printed, reparsed);
		if (again.status != VECTOR_PARSE_OK)
			fail("re-parsing the %.9g form of an OK result failed", str);
		if (again.dim != res.dim)
			fail("re-parsing the %.9g form changed the dimension", str);
		if (memcmp(values, reparsed, sizeof(float) * res.dim) != 0)
			fail("re-parsing the %.9g form changed a value's bits", str);

		free(printed);
		free(reparsed);
	}

	free(values);
	free(str);
	return 0;
}
