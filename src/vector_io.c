/*
 * vector_io.c — the vector type's SQL glue: text and binary I/O, the type
 * modifier, casts to and from arrays, and the shared validity checks that
 * every other vector function uses (vector.h).
 *
 * Parsing itself lives in vector_parse.c (no PostgreSQL there, so that the
 * fuzzers drive the same code); this file only turns parse results into
 * values or into ERRORs.  Every ERROR quotes the input value (shortened if it
 * is long) and names the offending token or element in a DETAIL, so that a
 * user loading a million rows can find the bad one.
 *
 * Output prints each element as the shortest decimal string that reads back
 * as exactly the same float4 (the algorithm float4out uses with
 * extra_float_digits > 0), so text round trips are lossless whatever the
 * session's extra_float_digits setting.
 */
#include "postgres.h"

#include <math.h>
#include <stdlib.h>

#include "catalog/pg_type.h"
#include "common/shortest_dec.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "libpq/pqformat.h"
#include "mb/pg_wchar.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/numeric.h"

#include "vector.h"

/* Inputs longer than this are shortened (with "...") when quoted in errors. */
#define MAX_QUOTED_BYTES 100

PG_FUNCTION_INFO_V1(vector_in);
PG_FUNCTION_INFO_V1(vector_out);
PG_FUNCTION_INFO_V1(vector_typmod_in);
PG_FUNCTION_INFO_V1(vector_recv);
PG_FUNCTION_INFO_V1(vector_send);
PG_FUNCTION_INFO_V1(vector_cast_typmod);
PG_FUNCTION_INFO_V1(array_to_vector);
PG_FUNCTION_INFO_V1(vector_to_float4);
PG_FUNCTION_INFO_V1(vector_to_float8);
PG_FUNCTION_INFO_V1(vector_to_int4);
PG_FUNCTION_INFO_V1(vector_to_numeric);

/* ----------------------------------------------------------------
 * Shared checks (vector.h)
 * ----------------------------------------------------------------
 */

Vector *
vector_new(int dim)
{
	Vector	   *result;

	vector_check_dim(dim);
	result = (Vector *) palloc0(VECTOR_SIZE(dim));
	SET_VARSIZE(result, VECTOR_SIZE(dim));
	result->dim = dim;
	return result;
}

void
vector_check_dim(int dim)
{
	if (dim < 1)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("vector must have at least 1 dimension")));
	if (dim > VECTOR_MAX_DIM)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("vector cannot have more than %d dimensions",
						VECTOR_MAX_DIM),
				 errdetail("The value has %d dimensions.", dim)));
}

void
vector_check_same_dims(const Vector *a, const Vector *b)
{
	if (a->dim != b->dim)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("different vector dimensions %d and %d",
						a->dim, b->dim)));
}

void
vector_check_typmod(int dim, int32 typmod)
{
	if (typmod != -1 && dim != typmod)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("expected %d dimensions, not %d", typmod, dim)));
}

void
vector_check_finite(const float *x, int dim)
{
	for (int i = 0; i < dim; i++)
	{
		if (isnan(x[i]))
			ereport(ERROR,
					(errcode(ERRCODE_DATA_EXCEPTION),
					 errmsg("NaN not allowed in vector"),
					 errdetail("Element %d is NaN.", i + 1)));
		if (isinf(x[i]))
			ereport(ERROR,
					(errcode(ERRCODE_DATA_EXCEPTION),
					 errmsg("infinite value not allowed in vector"),
					 errdetail("Element %d is %s.", i + 1,
							   x[i] > 0 ? "Infinity" : "-Infinity")));
	}
}

/* ----------------------------------------------------------------
 * Text I/O
 * ----------------------------------------------------------------
 */

/*
 * A copy of len bytes of str for quoting in a message, cut at a character
 * boundary with "..." appended when longer than MAX_QUOTED_BYTES: a
 * 16001-dimension input must not put 200 kB into one log line.
 */
static char *
quote_text(const char *str, size_t len)
{
	int			clip;

	if (len <= MAX_QUOTED_BYTES)
		return pnstrdup(str, len);
	clip = pg_mbcliplen(str, (int) len, MAX_QUOTED_BYTES);
	return psprintf("%.*s...", clip, str);
}

/*
 * Room for the largest vector, where the parsers write before the dimension
 * is known.  Allocated once per backend: a fresh 64 kB buffer per value would
 * cost a malloc and a free for every row of a COPY.  Parsing never calls back
 * into anything that could parse another vector, so one buffer is enough.
 */
static float *
parse_scratch(void)
{
	static float *scratch = NULL;

	if (scratch == NULL)
		scratch = MemoryContextAlloc(TopMemoryContext,
									 sizeof(float) * VECTOR_MAX_DIM);
	return scratch;
}

/* Whether a number's text spells an infinity (as opposed to overflowing). */
static bool
names_infinity(const char *text)
{
	return pg_strncasecmp(text + strspn(text, "+-"), "inf", 3) == 0;
}

static void
report_text_error(const char *str, VectorParseResult result)
{
	char	   *input = quote_text(str, strlen(str));
	char	   *token = quote_text(str + result.error_offset,
								   result.error_length);

	switch (result.status)
	{
		case VECTOR_PARSE_MISSING_OPEN:
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
					 errmsg("invalid input syntax for type vector: \"%s\"", input),
					 errdetail("Vector contents must start with \"[\".")));
			break;
		case VECTOR_PARSE_MISSING_CLOSE:
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
					 errmsg("invalid input syntax for type vector: \"%s\"", input),
					 errdetail("Vector contents must end with \"]\".")));
			break;
		case VECTOR_PARSE_BAD_NUMBER:
			if (result.error_length == 0)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
						 errmsg("invalid input syntax for type vector: \"%s\"", input),
						 errdetail("Element %d is empty.", result.dim + 1)));
			else
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
						 errmsg("invalid input syntax for type vector: \"%s\"", input),
						 errdetail("\"%s\" is not a number.", token)));
			break;
		case VECTOR_PARSE_TRAILING:
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
					 errmsg("invalid input syntax for type vector: \"%s\"", input),
					 errdetail("Unexpected \"%s\" after \"]\".", token)));
			break;
		case VECTOR_PARSE_NOT_FINITE:
			{
				float		value = strtof(token, NULL);

				/*
				 * strtof says inf both for "Infinity" and for "1e39"; tell
				 * them apart by whether the text names an infinity.
				 */
				if (isnan(value))
					ereport(ERROR,
							(errcode(ERRCODE_DATA_EXCEPTION),
							 errmsg("invalid input value for type vector: \"%s\"", input),
							 errdetail("NaN (\"%s\") is not allowed in a vector.", token)));
				else if (names_infinity(token))
					ereport(ERROR,
							(errcode(ERRCODE_DATA_EXCEPTION),
							 errmsg("invalid input value for type vector: \"%s\"", input),
							 errdetail("Infinite value \"%s\" is not allowed in a vector.", token)));
				else
					ereport(ERROR,
							(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
							 errmsg("invalid input value for type vector: \"%s\"", input),
							 errdetail("\"%s\" is out of range for type real.", token)));
			}
			break;
		case VECTOR_PARSE_EMPTY:
			ereport(ERROR,
					(errcode(ERRCODE_DATA_EXCEPTION),
					 errmsg("invalid input value for type vector: \"%s\"", input),
					 errdetail("A vector must have at least 1 dimension.")));
			break;
		case VECTOR_PARSE_TOO_MANY_DIMS:
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("invalid input value for type vector: \"%s\"", input),
					 errdetail("A vector cannot have more than %d dimensions.",
							   VECTOR_MAX_DIM)));
			break;
		default:
			/* binary-only statuses cannot come from the text parser */
			elog(ERROR, "unexpected vector text parse status %d: %s",
				 (int) result.status,
				 vector_parse_status_message(result.status));
	}
}

Datum
vector_in(PG_FUNCTION_ARGS)
{
	char	   *str = PG_GETARG_CSTRING(0);
	int32		typmod = PG_GETARG_INT32(2);
	float	   *values = parse_scratch();
	VectorParseResult parsed;
	Vector	   *result;

	parsed = vector_parse_text(str, values);
	if (parsed.status != VECTOR_PARSE_OK)
		report_text_error(str, parsed);

	vector_check_typmod(parsed.dim, typmod);
	result = vector_new(parsed.dim);
	memcpy(result->x, values, sizeof(float) * parsed.dim);
	PG_RETURN_VECTOR_P(result);
}

Datum
vector_out(PG_FUNCTION_ARGS)
{
	Vector	   *vec = PG_GETARG_VECTOR_P(0);
	int			dim = vec->dim;
	char	   *buf;
	char	   *p;

	/* '[' + dim numbers + (dim - 1) commas + ']' + NUL */
	buf = palloc((size_t) dim * (FLOAT_SHORTEST_DECIMAL_LEN + 1) + 3);
	p = buf;
	*p++ = '[';
	for (int i = 0; i < dim; i++)
	{
		if (i > 0)
			*p++ = ',';
		p += float_to_shortest_decimal_bufn(vec->x[i], p);
	}
	*p++ = ']';
	*p = '\0';

	PG_FREE_IF_COPY(vec, 0);
	PG_RETURN_CSTRING(buf);
}

/*
 * vector(n): exactly one modifier, 1 <= n <= VECTOR_MAX_DIM.
 */
Datum
vector_typmod_in(PG_FUNCTION_ARGS)
{
	ArrayType  *mods = PG_GETARG_ARRAYTYPE_P(0);
	int32	   *values;
	int			count;

	values = ArrayGetIntegerTypmods(mods, &count);
	if (count != 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid type modifier for type vector"),
				 errdetail("Type vector takes one modifier, the number of dimensions; %d were given.",
						   count)));
	if (values[0] < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("dimensions for type vector must be at least 1, not %d",
						values[0])));
	if (values[0] > VECTOR_MAX_DIM)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("dimensions for type vector cannot exceed %d, not %d",
						VECTOR_MAX_DIM, values[0])));
	PG_RETURN_INT32(values[0]);
}

/* ----------------------------------------------------------------
 * Binary I/O
 * ----------------------------------------------------------------
 */

Datum
vector_recv(PG_FUNCTION_ARGS)
{
	StringInfo	buf = (StringInfo) PG_GETARG_POINTER(0);
	int32		typmod = PG_GETARG_INT32(2);
	const unsigned char *data = (const unsigned char *) buf->data + buf->cursor;
	size_t		len = (size_t) (buf->len - buf->cursor);
	float	   *values = parse_scratch();
	VectorParseResult parsed;
	Vector	   *result;

	parsed = vector_parse_binary(data, len, values);
	switch (parsed.status)
	{
		case VECTOR_PARSE_OK:
			break;
		case VECTOR_PARSE_SHORT_BUFFER:
			if (parsed.dim == 0)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_BINARY_REPRESENTATION),
						 errmsg("invalid binary data for type vector"),
						 errdetail("The 4-byte header is missing: only %zu bytes were given.",
								   len)));
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_BINARY_REPRESENTATION),
					 errmsg("invalid binary data for type vector"),
					 errdetail_plural("The header says %d dimension, which takes %zu bytes, but only %zu were given.",
									  "The header says %d dimensions, which take %zu bytes, but only %zu were given.",
									  parsed.dim, parsed.dim,
									  4 + 4 * (size_t) parsed.dim, len)));
			break;
		case VECTOR_PARSE_EXTRA_BYTES:
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_BINARY_REPRESENTATION),
					 errmsg("invalid binary data for type vector"),
					 errdetail_plural("The header says %d dimension, which takes %zu bytes, but %zu were given.",
									  "The header says %d dimensions, which take %zu bytes, but %zu were given.",
									  parsed.dim, parsed.dim,
									  4 + 4 * (size_t) parsed.dim, len)));
			break;
		case VECTOR_PARSE_BAD_DIM:
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_BINARY_REPRESENTATION),
					 errmsg("invalid binary data for type vector"),
					 errdetail("Dimension %ld is out of range (1 to %d).",
							   parsed.bad_value, VECTOR_MAX_DIM)));
			break;
		case VECTOR_PARSE_BAD_UNUSED:
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_BINARY_REPRESENTATION),
					 errmsg("invalid binary data for type vector"),
					 errdetail("The reserved field is %ld; it must be 0.",
							   parsed.bad_value)));
			break;
		case VECTOR_PARSE_NOT_FINITE:
			{
				/* re-read the element to say which non-finite value it is */
				StringInfoData element;
				float		value;

				element.data = (char *) data + 4 + 4 * parsed.error_offset;
				element.len = 4;
				element.maxlen = 4;
				element.cursor = 0;
				value = pq_getmsgfloat4(&element);
				ereport(ERROR,
						(errcode(ERRCODE_DATA_EXCEPTION),
						 errmsg("invalid binary data for type vector"),
						 errdetail("Element %zu is %s, which is not allowed in a vector.",
								   parsed.error_offset + 1,
								   isnan(value) ? "NaN" :
								   value > 0 ? "Infinity" : "-Infinity")));
			}
			break;
		default:
			elog(ERROR, "unexpected vector binary parse status %d: %s",
				 (int) parsed.status,
				 vector_parse_status_message(parsed.status));
	}

	/* the whole message is ours: let the caller see it consumed */
	buf->cursor = buf->len;

	vector_check_typmod(parsed.dim, typmod);
	result = vector_new(parsed.dim);
	memcpy(result->x, values, sizeof(float) * parsed.dim);
	PG_RETURN_VECTOR_P(result);
}

Datum
vector_send(PG_FUNCTION_ARGS)
{
	Vector	   *vec = PG_GETARG_VECTOR_P(0);
	StringInfoData buf;

	pq_begintypsend(&buf);
	pq_sendint16(&buf, vec->dim);
	pq_sendint16(&buf, vec->unused);
	for (int i = 0; i < vec->dim; i++)
		pq_sendfloat4(&buf, vec->x[i]);

	PG_FREE_IF_COPY(vec, 0);
	PG_RETURN_BYTEA_P(pq_endtypsend(&buf));
}

/* ----------------------------------------------------------------
 * Casts
 * ----------------------------------------------------------------
 */

/* vector -> vector(n): the length coercion. */
Datum
vector_cast_typmod(PG_FUNCTION_ARGS)
{
	Vector	   *vec = PG_GETARG_VECTOR_P(0);
	int32		typmod = PG_GETARG_INT32(1);

	vector_check_typmod(vec->dim, typmod);
	PG_RETURN_VECTOR_P(vec);
}

static void
report_array_element_range(int index, const char *text)
{
	ereport(ERROR,
			(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
			 errmsg("value out of range for type vector"),
			 errdetail("Array element %d (%s) is out of range for type real.",
					   index, quote_text(text, strlen(text)))));
}

/*
 * One array element, already known to fit float4's range unless infinite,
 * as a finite float4, or an ERROR naming the element (index counts from 1).
 */
static float
array_element_to_float(double value, int index)
{
	if (isnan(value))
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("NaN not allowed in vector"),
				 errdetail("Array element %d is NaN.", index)));
	if (isinf(value))
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("infinite value not allowed in vector"),
				 errdetail("Array element %d is %s.", index,
						   value > 0 ? "Infinity" : "-Infinity")));
	return (float) value;
}

/*
 * integer[], real[], double precision[] and numeric[] -> vector.  One C
 * function serves all four casts; it looks at the array's element type.
 */
Datum
array_to_vector(PG_FUNCTION_ARGS)
{
	ArrayType  *array = PG_GETARG_ARRAYTYPE_P(0);
	int32		typmod = PG_GETARG_INT32(1);
	Oid			elemtype = ARR_ELEMTYPE(array);
	int16		typlen;
	bool		typbyval;
	char		typalign;
	Datum	   *elems;
	bool	   *nulls;
	int			count;
	Vector	   *result;

	if (ARR_NDIM(array) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("array must be one-dimensional to become a vector"),
				 errdetail("The array has %d dimensions.", ARR_NDIM(array))));
	if (ARR_NDIM(array) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("vector must have at least 1 dimension"),
				 errdetail("The array is empty.")));
	if (array_contains_nulls(array))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("array must not contain nulls to become a vector")));

	count = ARR_DIMS(array)[0];
	if (count > VECTOR_MAX_DIM)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("vector cannot have more than %d dimensions",
						VECTOR_MAX_DIM),
				 errdetail("The array has %d elements.", count)));

	if (elemtype != INT4OID && elemtype != FLOAT4OID &&
		elemtype != FLOAT8OID && elemtype != NUMERICOID)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("unsupported array element type %s for a vector",
						format_type_be(elemtype))));

	get_typlenbyvalalign(elemtype, &typlen, &typbyval, &typalign);
	deconstruct_array(array, elemtype, typlen, typbyval, typalign,
					  &elems, &nulls, &count);

	result = vector_new(count);
	for (int i = 0; i < count; i++)
	{
		switch (elemtype)
		{
			case INT4OID:
				/* every int4 has a finite float4 (maybe rounded) */
				result->x[i] = (float) DatumGetInt32(elems[i]);
				break;
			case FLOAT4OID:
				result->x[i] = array_element_to_float(DatumGetFloat4(elems[i]),
													  i + 1);
				break;
			case FLOAT8OID:
				{
					double		value = DatumGetFloat8(elems[i]);

					/* a finite double beyond FLT_MAX becomes infinite */
					if (!isnan(value) && !isinf(value) && isinf((float) value))
						report_array_element_range(i + 1,
												   DatumGetCString(DirectFunctionCall1(float8out,
																					   Float8GetDatum(value))));
					result->x[i] = array_element_to_float(value, i + 1);
				}
				break;
			case NUMERICOID:
				{
					/*
					 * Through the decimal text, so that strtof rounds the
					 * exact decimal value once (numeric -> float8 -> float4
					 * would round twice).
					 */
					char	   *text = DatumGetCString(DirectFunctionCall1(numeric_out,
																		   elems[i]));
					float		f = strtof(text, NULL);

					if (isinf(f) && !names_infinity(text))
						report_array_element_range(i + 1, text);
					result->x[i] = array_element_to_float(f, i + 1);
					pfree(text);
				}
				break;
		}
	}

	vector_check_typmod(count, typmod);
	PG_RETURN_VECTOR_P(result);
}

/* Build a one-dimensional array of dim Datums of the given element type. */
static ArrayType *
datums_to_array(Datum *datums, int dim, Oid elemtype)
{
	int16		typlen;
	bool		typbyval;
	char		typalign;

	get_typlenbyvalalign(elemtype, &typlen, &typbyval, &typalign);
	return construct_array(datums, dim, elemtype, typlen, typbyval, typalign);
}

Datum
vector_to_float4(PG_FUNCTION_ARGS)
{
	Vector	   *vec = PG_GETARG_VECTOR_P(0);
	Datum	   *datums = palloc(sizeof(Datum) * vec->dim);

	for (int i = 0; i < vec->dim; i++)
		datums[i] = Float4GetDatum(vec->x[i]);
	PG_RETURN_ARRAYTYPE_P(datums_to_array(datums, vec->dim, FLOAT4OID));
}

Datum
vector_to_float8(PG_FUNCTION_ARGS)
{
	Vector	   *vec = PG_GETARG_VECTOR_P(0);
	Datum	   *datums = palloc(sizeof(Datum) * vec->dim);

	for (int i = 0; i < vec->dim; i++)
		datums[i] = Float8GetDatum((double) vec->x[i]);
	PG_RETURN_ARRAYTYPE_P(datums_to_array(datums, vec->dim, FLOAT8OID));
}

/*
 * Rounds to the nearest integer, ties to even, as real -> integer does
 * (2.5::real::integer is 2).
 */
Datum
vector_to_int4(PG_FUNCTION_ARGS)
{
	Vector	   *vec = PG_GETARG_VECTOR_P(0);
	Datum	   *datums = palloc(sizeof(Datum) * vec->dim);

	for (int i = 0; i < vec->dim; i++)
	{
		float		rounded = rintf(vec->x[i]);

		if (!FLOAT4_FITS_IN_INT32(rounded))
		{
			char		text[FLOAT_SHORTEST_DECIMAL_LEN];

			float_to_shortest_decimal_buf(vec->x[i], text);
			ereport(ERROR,
					(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
					 errmsg("integer out of range"),
					 errdetail("Vector element %d (%s) does not fit in type integer.",
							   i + 1, text)));
		}
		datums[i] = Int32GetDatum((int32) rounded);
	}
	PG_RETURN_ARRAYTYPE_P(datums_to_array(datums, vec->dim, INT4OID));
}

/*
 * Each element becomes the numeric of its shortest round-trip decimal text,
 * so '[0.1]' gives 0.1, not 0.100000001490116.
 */
Datum
vector_to_numeric(PG_FUNCTION_ARGS)
{
	Vector	   *vec = PG_GETARG_VECTOR_P(0);
	Datum	   *datums = palloc(sizeof(Datum) * vec->dim);

	for (int i = 0; i < vec->dim; i++)
	{
		char		text[FLOAT_SHORTEST_DECIMAL_LEN];

		float_to_shortest_decimal_buf(vec->x[i], text);
		datums[i] = DirectFunctionCall3(numeric_in,
										CStringGetDatum(text),
										ObjectIdGetDatum(InvalidOid),
										Int32GetDatum(-1));
	}
	PG_RETURN_ARRAYTYPE_P(datums_to_array(datums, vec->dim, NUMERICOID));
}
