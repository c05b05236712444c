/*
 * vector_parse.h — parsing and validating the text and binary forms of a
 * vector, without PostgreSQL.
 *
 * Kept free of postgres.h so that the libFuzzer targets in test/fuzz can drive
 * exactly the code the server runs.  The server-side wrappers (vector_in,
 * vector_recv in src/vector_io.c) turn a non-OK result into an ERROR that
 * names the problem and quotes the offending input.
 *
 * Text form: '[' number (',' number)* ']' with optional whitespace around
 * every token; numbers are what strtof accepts, except that NaN and
 * infinities (including overflow to infinity) are rejected.
 *
 * Binary form (pgvector's, network byte order): int16 dim, int16 unused (must
 * be 0), then dim float4 values.
 */
#ifndef HIERINDEX_VECTOR_PARSE_H
#define HIERINDEX_VECTOR_PARSE_H

#include <stddef.h>

#define VECTOR_MAX_DIM 16000

typedef enum VectorParseStatus
{
	VECTOR_PARSE_OK = 0,
	VECTOR_PARSE_MISSING_OPEN,	/* does not start with '[' */
	VECTOR_PARSE_BAD_NUMBER,	/* a token is not a number */
	VECTOR_PARSE_NOT_FINITE,	/* NaN, Infinity, or overflow */
	VECTOR_PARSE_MISSING_CLOSE, /* ended before ']' */
	VECTOR_PARSE_TRAILING,		/* something after ']' */
	VECTOR_PARSE_EMPTY,			/* '[]' */
	VECTOR_PARSE_TOO_MANY_DIMS, /* more than VECTOR_MAX_DIM */
	/* binary form only */
	VECTOR_PARSE_SHORT_BUFFER,	/* fewer bytes than the header says */
	VECTOR_PARSE_BAD_DIM,		/* dim < 1 or > VECTOR_MAX_DIM */
	VECTOR_PARSE_BAD_UNUSED,	/* unused field is not 0 */
	VECTOR_PARSE_EXTRA_BYTES	/* more bytes than the header says */
} VectorParseStatus;

typedef struct VectorParseResult
{
	VectorParseStatus status;
	int			dim;			/* dimensions parsed (OK) or seen so far */
	size_t		error_offset;	/* byte offset of the offending token */
	size_t		error_length;	/* its length in bytes (0 if none) */
	long		bad_value;		/* binary: the offending dim / unused value */
} VectorParseResult;

/*
 * Parse NUL-terminated text into out[] (room for VECTOR_MAX_DIM floats).
 * Never reads past the terminating NUL, never writes past out[VECTOR_MAX_DIM-1].
 */
extern VectorParseResult vector_parse_text(const char *str, float *out);

/*
 * Validate and decode the binary form in buf[0..len).  On OK, result.dim is
 * the dimension and out[] (room for VECTOR_MAX_DIM floats) holds the values,
 * converted from network byte order.  Non-finite values are reported as
 * VECTOR_PARSE_NOT_FINITE with error_offset the index of the element.
 */
extern VectorParseResult vector_parse_binary(const unsigned char *buf, size_t len,
											 float *out);

/* A short English description of a status, for error messages. */
extern const char *vector_parse_status_message(VectorParseStatus status);

#endif							/* HIERINDEX_VECTOR_PARSE_H */
