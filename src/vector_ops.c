/*
 * vector_ops.c — SQL functions on the vector type: distances, norms,
 * element-wise arithmetic, the btree ordering and the avg/sum aggregates.
 *
 * Distances: every distance is computed by the kernels of distance.h (the
 * same code the indexes use), so that ORDER BY v <-> q over a sequential
 * scan and over an index scan rank rows with identical numbers.  This file
 * only converts the kernels' results to float8 (square root for L2,
 * negation for <#>).  Operands of different dimensions are an ERROR.
 * A k-NN join (for each row of a query table, ORDER BY v <-> q.v LIMIT k)
 * calls a distance many times in a row with the same out-of-line operand;
 * distance_operand() keeps its detoasted copy for the next call instead of
 * fetching it from TOAST each time.
 *
 * Prefixes (Matryoshka embeddings put the most information first):
 * mrl_truncate(v, dims [, normalize]) and the three-argument distances
 * f(a, b, dims), which equal f(mrl_truncate(a, dims), mrl_truncate(b, dims))
 * exactly: one C function serves f(a, b) and f(a, b, dims), calling the same
 * kernel on the first dims elements.  Under cosine each prefix counts as its
 * own vector.
 *
 * Arithmetic (+, -, *) follows the float4 operators of PostgreSQL: a finite
 * result that rounds to infinity is "value out of range: overflow", and for
 * the product a nonzero times a nonzero that rounds to zero is "value out of
 * range: underflow" (as float4mul does); a product that lands in the
 * subnormal range is kept.  Sums and differences cannot underflow in that
 * sense (x + y == 0 only when x == -y, which is exact).
 *
 * Ordering: element by element, the first differing element decides; when
 * one vector is a prefix of the other, the shorter one sorts first.  Stored
 * vectors never hold NaN (input and arithmetic reject it), so this is a total
 * order and btree, ORDER BY, DISTINCT and GROUP BY can rely on it.  Note that
 * -0 and 0 compare equal, as they do for float4.
 *
 * Aggregates: avg(vector) and sum(vector) share one transition state, a
 * float8[] holding {count, sum_1, ..., sum_d}.  The initial condition '{0}'
 * is a one-element array meaning "no row seen yet, dimension unknown"; the
 * first row fixes the dimension.  Sums are kept in double precision so that
 * long runs do not lose the small addends.  When called as an aggregate the
 * transition and combine functions update the state array in place (it lives
 * in the aggregate's memory context), which avoids a palloc per row.  The
 * state type is a plain array, so parallel aggregation needs no
 * serialization functions.
 */
#include "postgres.h"

#include <math.h>

#include "access/detoast.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "utils/array.h"
#include "utils/builtins.h"

#include "distance.h"
#include "distance_memo.h"
#include "vector.h"

/* ----------------------------------------------------------------------
 * Distances
 * ---------------------------------------------------------------------- */

/*
 * Operand `argno` of a distance function, detoasted.  A query's own vector is
 * the same operand on every call of a scan or a join, and detoasting it each
 * time can cost more than the distance, so a detoasted copy is kept in
 * fn_extra together with what identifies the stored value:
 *
 * - out of line (a TOAST pointer into a table): its TOAST relation and value
 *   id, which name one immutable value; a hit skips the TOAST fetch;
 * - compressed in line (storage main keeps vectors in the heap row, and
 *   compresses those that compress, such as mostly-zero ones): a copy of the
 *   compressed bytes; equal bytes decompress to the same vector, so a hit
 *   skips the decompression.
 *
 * Everything else (plain in-line values, parameters) is used as it is.
 */
typedef struct DetoastedOperand
{
	Oid			toastrelid;		/* out of line: the value's identity */
	Oid			valueid;
	struct varlena *compressed; /* compressed in line: its bytes, in fn_mcxt */
	Vector	   *value;			/* in fn_mcxt; NULL while empty */
} DetoastedOperand;

static Vector *
distance_operand(FunctionCallInfo fcinfo, int argno)
{
	Datum		datum = PG_GETARG_DATUM(argno);
	struct varlena *raw = (struct varlena *) DatumGetPointer(datum);
	bool		external = VARATT_IS_EXTERNAL_ONDISK(raw);
	struct varatt_external pointer = {0};
	DetoastedOperand *cache;
	MemoryContext old;

	if ((!external && !VARATT_IS_COMPRESSED(raw)) || fcinfo->flinfo == NULL)
		return DatumGetVector(datum);

	cache = (DetoastedOperand *) fcinfo->flinfo->fn_extra;
	if (cache == NULL)
	{
		cache = MemoryContextAllocZero(fcinfo->flinfo->fn_mcxt,
									   2 * sizeof(DetoastedOperand));
		fcinfo->flinfo->fn_extra = cache;
	}
	cache += argno;
	if (external)
	{
		VARATT_EXTERNAL_GET_POINTER(pointer, raw);
		if (cache->value != NULL && cache->compressed == NULL &&
			cache->toastrelid == pointer.va_toastrelid &&
			cache->valueid == pointer.va_valueid)
			return cache->value;
	}
	else if (cache->value != NULL && cache->compressed != NULL &&
			 VARSIZE(cache->compressed) == VARSIZE(raw) &&
			 memcmp(cache->compressed, raw, VARSIZE(raw)) == 0)
		return cache->value;

	if (cache->value != NULL)
		pfree(cache->value);
	if (cache->compressed != NULL)
		pfree(cache->compressed);
	cache->value = NULL;
	cache->compressed = NULL;
	old = MemoryContextSwitchTo(fcinfo->flinfo->fn_mcxt);
	cache->value = (Vector *) PG_DETOAST_DATUM_COPY(datum);
	if (!external)
	{
		cache->compressed = palloc(VARSIZE(raw));
		memcpy(cache->compressed, raw, VARSIZE(raw));
	}
	MemoryContextSwitchTo(old);
	cache->toastrelid = pointer.va_toastrelid;
	cache->valueid = pointer.va_valueid;
	return cache->value;
}

/*
 * The kernel value of `kind` between operand 0, a row, and operand 1, the
 * query, when an index scan has just computed it for that very row
 * (distance_memo.c).  Only rows stored compressed or out of line are looked
 * up: for them a hit saves a decompression or a TOAST fetch (Fashion-MNIST's
 * mostly-zero rows compress: 17-30% more queries per second), where for a
 * plain row the kernel costs about what the lookup does (no difference
 * measured on the 768-d set).
 */
static bool
memoized_distance(FunctionCallInfo fcinfo, DistanceMemoKind kind, float *distance)
{
	struct varlena *row = (struct varlena *) DatumGetPointer(PG_GETARG_DATUM(0));
	Vector	   *query;

	if (!distance_memo_any_open() ||
		!(VARATT_IS_COMPRESSED(row) || VARATT_IS_EXTERNAL_ONDISK(row)))
		return false;
	query = distance_operand(fcinfo, 1);
	return distance_memo_find(row, query->x, query->dim, kind, distance);
}

/*
 * The distances that exist both for whole vectors, f(a, b), and for
 * prefixes, f(a, b, dims).  distance_value is the one formula of each, so
 * that the two forms give the same number for the same elements.
 */
typedef enum DistanceMetric
{
	METRIC_L2,
	METRIC_INNER_PRODUCT,
	METRIC_COSINE,
	METRIC_L1
} DistanceMetric;

/*
 * Every metric but cosine is a function of one kernel value, the number an
 * index computes too (and may hand over: memoized_distance).
 */
static DistanceMemoKind
metric_kernel(DistanceMetric metric)
{
	switch (metric)
	{
		case METRIC_L2:
			return DISTANCE_MEMO_L2_SQUARED;
		case METRIC_INNER_PRODUCT:
			return DISTANCE_MEMO_NEGATIVE_INNER_PRODUCT;
		case METRIC_L1:
			return DISTANCE_MEMO_L1;
		case METRIC_COSINE:
			break;
	}
	pg_unreachable();
}

static float
kernel_value(DistanceMemoKind kind, const Vector *a, const Vector *b, int dims)
{
	switch (kind)
	{
		case DISTANCE_MEMO_L2_SQUARED:
			return distance_l2_squared(a->x, b->x, dims);
		case DISTANCE_MEMO_NEGATIVE_INNER_PRODUCT:
			return -distance_inner_product(a->x, b->x, dims);
		case DISTANCE_MEMO_L1:
			return distance_l1(a->x, b->x, dims);
	}
	pg_unreachable();
}

/* a metric's SQL value from its kernel value (negating a float is exact) */
static double
metric_from_kernel(DistanceMetric metric, float value)
{
	switch (metric)
	{
		case METRIC_L2:
			return sqrt((double) value);
		case METRIC_INNER_PRODUCT:
			return -(double) value;
		case METRIC_L1:
			return (double) value;
		case METRIC_COSINE:
			break;
	}
	pg_unreachable();
}

/*
 * The distance between the first dims elements of a and b.  Cosine distance
 * is undefined when either side is zero; like pgvector we return NaN there
 * rather than an error, so that one zero row does not make a whole query
 * fail.
 */
static double
distance_value(DistanceMetric metric, const Vector *a, const Vector *b, int dims)
{
	if (metric == METRIC_COSINE)
		return distance_cosine(a->x, b->x, dims);
	return metric_from_kernel(metric, kernel_value(metric_kernel(metric), a, b, dims));
}

/* f(a, b) as a kernel value: handed over by an index scan, or computed */
static float
whole_kernel_value(FunctionCallInfo fcinfo, DistanceMemoKind kind)
{
	float		value;
	Vector	   *a;
	Vector	   *b;

	if (memoized_distance(fcinfo, kind, &value))
		return value;
	a = distance_operand(fcinfo, 0);
	b = distance_operand(fcinfo, 1);
	vector_check_same_dims(a, b);
	return kernel_value(kind, a, b, a->dim);
}

/*
 * ERROR unless 1 <= dims <= dim: a prefix of dims elements of a vector of
 * dim dimensions.
 */
static void
check_prefix_length(int32 dims, int dim)
{
	if (dims < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("prefix length must be at least 1, got %d", dims)));
	if (dims > dim)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("prefix length %d exceeds the vector's %d dimensions",
						dims, dim)));
}

/*
 * f(a, b), and f(a, b, dims) on the first dims elements: one C function
 * serves both SQL forms, telling them apart by the argument count, so that
 * they share the operand handling and the formula.  a and b must have the
 * same dimension, in the prefix form too, even when both are longer than
 * the prefix: vectors of different lengths come from different models (or a
 * mistake), and their prefixes are no more comparable than the whole
 * vectors.  A bad dims is reported before anything about the operands.
 */
static double
sql_distance(FunctionCallInfo fcinfo, DistanceMetric metric)
{
	bool		prefix = PG_NARGS() == 3;
	int32		dims = prefix ? PG_GETARG_INT32(2) : 0;
	Vector	   *a;
	Vector	   *b;

	if (!prefix && metric != METRIC_COSINE)
		return metric_from_kernel(metric, whole_kernel_value(fcinfo, metric_kernel(metric)));
	if (prefix && dims < 1)
		check_prefix_length(dims, 0);
	a = distance_operand(fcinfo, 0);
	b = distance_operand(fcinfo, 1);
	vector_check_same_dims(a, b);
	if (prefix)
		check_prefix_length(dims, a->dim);
	else
		dims = a->dim;
	return distance_value(metric, a, b, dims);
}

PG_FUNCTION_INFO_V1(l2_distance);
Datum
l2_distance(PG_FUNCTION_ARGS)
{
	PG_RETURN_FLOAT8(sql_distance(fcinfo, METRIC_L2));
}

PG_FUNCTION_INFO_V1(vector_l2_squared_distance);
Datum
vector_l2_squared_distance(PG_FUNCTION_ARGS)
{
	PG_RETURN_FLOAT8((double) whole_kernel_value(fcinfo, DISTANCE_MEMO_L2_SQUARED));
}

PG_FUNCTION_INFO_V1(inner_product);
Datum
inner_product(PG_FUNCTION_ARGS)
{
	PG_RETURN_FLOAT8(sql_distance(fcinfo, METRIC_INNER_PRODUCT));
}

/* The <#> operator: negated so that "smaller is closer" holds for ORDER BY. */
PG_FUNCTION_INFO_V1(vector_negative_inner_product);
Datum
vector_negative_inner_product(PG_FUNCTION_ARGS)
{
	PG_RETURN_FLOAT8((double) whole_kernel_value(fcinfo, DISTANCE_MEMO_NEGATIVE_INNER_PRODUCT));
}

/* In the prefix form each prefix is its own vector, with its own norm. */
PG_FUNCTION_INFO_V1(cosine_distance);
Datum
cosine_distance(PG_FUNCTION_ARGS)
{
	PG_RETURN_FLOAT8(sql_distance(fcinfo, METRIC_COSINE));
}

PG_FUNCTION_INFO_V1(l1_distance);
Datum
l1_distance(PG_FUNCTION_ARGS)
{
	PG_RETURN_FLOAT8(sql_distance(fcinfo, METRIC_L1));
}

/* ----------------------------------------------------------------------
 * Single-vector functions
 * ---------------------------------------------------------------------- */

PG_FUNCTION_INFO_V1(vector_dims);
Datum
vector_dims(PG_FUNCTION_ARGS)
{
	Vector	   *v = PG_GETARG_VECTOR_P(0);

	PG_RETURN_INT32(v->dim);
}

/*
 * Euclidean norm accumulated in double: a norm is not a distance between two
 * vectors, and double keeps squares of large float4 values (up to ~1e77)
 * from overflowing.
 */
static double
norm_double(const float *x, int dim)
{
	double		sum = 0.0;

	for (int i = 0; i < dim; i++)
		sum += (double) x[i] * (double) x[i];
	return sqrt(sum);
}

PG_FUNCTION_INFO_V1(vector_norm);
Datum
vector_norm(PG_FUNCTION_ARGS)
{
	Vector	   *v = PG_GETARG_VECTOR_P(0);

	PG_RETURN_FLOAT8(norm_double(v->x, v->dim));
}

/*
 * The first dim elements of x scaled to unit length, as a new vector; NULL
 * when they are all zero (no direction: the caller decides what that means).
 * Every |x_i| / norm is at most 1, so the result cannot overflow.
 */
static Vector *
unit_vector(const float *x, int dim)
{
	double		norm = norm_double(x, dim);
	Vector	   *result;

	if (norm == 0.0)
		return NULL;
	result = vector_new(dim);
	for (int i = 0; i < dim; i++)
		result->x[i] = (float) ((double) x[i] / norm);
	return result;
}

/* Scale to unit length; a zero vector is returned as zero. */
PG_FUNCTION_INFO_V1(l2_normalize);
Datum
l2_normalize(PG_FUNCTION_ARGS)
{
	Vector	   *v = PG_GETARG_VECTOR_P(0);
	Vector	   *result = unit_vector(v->x, v->dim);

	if (result == NULL)
		result = vector_new(v->dim);
	PG_RETURN_VECTOR_P(result);
}

/*
 * subvector(v, start, count): elements start .. start+count-1, 1-based.  The
 * range must lie inside the vector; the end is computed in 64 bits so that a
 * huge count cannot wrap around.
 */
PG_FUNCTION_INFO_V1(subvector);
Datum
subvector(PG_FUNCTION_ARGS)
{
	Vector	   *v = PG_GETARG_VECTOR_P(0);
	int32		start = PG_GETARG_INT32(1);
	int32		count = PG_GETARG_INT32(2);
	int64		end = (int64) start + (int64) count - 1;
	Vector	   *result;

	if (start < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("subvector start must be at least 1, got %d", start)));
	if (count < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("subvector count must be at least 1, got %d", count)));
	if (end > v->dim)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("subvector range out of bounds: start %d + count %d - 1 = " INT64_FORMAT " exceeds %d dimensions",
						start, count, end, v->dim)));

	result = vector_new(count);
	memcpy(result->x, v->x + (start - 1), sizeof(float) * count);
	PG_RETURN_VECTOR_P(result);
}

/* ----------------------------------------------------------------------
 * Prefixes of Matryoshka embeddings
 * ---------------------------------------------------------------------- */

/*
 * mrl_truncate(v, dims, normalize): the first dims elements, scaled to unit
 * length when normalize is true.  A zero prefix cannot be scaled and is an
 * ERROR there, not a zero vector as l2_normalize returns: the usual use is an
 * expression index under cosine distance, where a zero vector would only
 * produce NaN distances.
 *
 * Only the prefix is fetched (a detoast slice): for a long vector stored out
 * of line, truncating it to a short prefix then reads one TOAST chunk
 * instead of all of them.  The slice asks for at most VECTOR_MAX_DIM
 * elements so that its byte length cannot overflow; a dims beyond the
 * vector's dimension is caught by check_prefix_length from the header.
 */
PG_FUNCTION_INFO_V1(mrl_truncate);
Datum
mrl_truncate(PG_FUNCTION_ARGS)
{
	int32		dims = PG_GETARG_INT32(1);
	bool		normalize = PG_GETARG_BOOL(2);
	int32		sliced = Max(1, Min(dims, VECTOR_MAX_DIM));
	Vector	   *v;
	Vector	   *result;

	v = (Vector *) PG_DETOAST_DATUM_SLICE(PG_GETARG_DATUM(0), 0,
										  VECTOR_SIZE(sliced) - VARHDRSZ);
	check_prefix_length(dims, v->dim);

	if (!normalize)
	{
		result = vector_new(dims);
		memcpy(result->x, v->x, sizeof(float) * dims);
		PG_RETURN_VECTOR_P(result);
	}

	result = unit_vector(v->x, dims);
	if (result == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("cannot normalize a zero prefix"),
				 errdetail("The first %d of the vector's %d dimensions are all zero.",
						   dims, v->dim)));
	PG_RETURN_VECTOR_P(result);
}

/* ----------------------------------------------------------------------
 * Element-wise arithmetic
 * ---------------------------------------------------------------------- */

typedef enum VectorArithOp
{
	VECTOR_ADD,
	VECTOR_SUB,
	VECTOR_MUL
} VectorArithOp;

static void
report_overflow(int index, float x, float y, char op)
{
	ereport(ERROR,
			(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
			 errmsg("value out of range: overflow"),
			 errdetail("Element %d: %g %c %g is out of range for type real.",
					   index + 1, x, op, y)));
}

static Vector *
vector_arith(const Vector *a, const Vector *b, VectorArithOp op)
{
	Vector	   *result;

	vector_check_same_dims(a, b);
	result = vector_new(a->dim);

	switch (op)
	{
		case VECTOR_ADD:
			for (int i = 0; i < a->dim; i++)
				result->x[i] = a->x[i] + b->x[i];
			break;
		case VECTOR_SUB:
			for (int i = 0; i < a->dim; i++)
				result->x[i] = a->x[i] - b->x[i];
			break;
		case VECTOR_MUL:
			for (int i = 0; i < a->dim; i++)
				result->x[i] = a->x[i] * b->x[i];
			break;
	}

	/*
	 * Checked in a second pass so that the loops above stay branch-free and
	 * vectorizable.  The inputs are finite, so an infinite result can only
	 * come from overflow.
	 */
	for (int i = 0; i < a->dim; i++)
	{
		float		r = result->x[i];

		if (unlikely(isinf(r)))
			report_overflow(i, a->x[i], b->x[i],
							op == VECTOR_ADD ? '+' : op == VECTOR_SUB ? '-' : '*');
		if (op == VECTOR_MUL && unlikely(r == 0.0f) &&
			a->x[i] != 0.0f && b->x[i] != 0.0f)
			ereport(ERROR,
					(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
					 errmsg("value out of range: underflow"),
					 errdetail("Element %d: %g * %g rounds to zero in type real.",
							   i + 1, a->x[i], b->x[i])));
	}
	return result;
}

PG_FUNCTION_INFO_V1(vector_add);
Datum
vector_add(PG_FUNCTION_ARGS)
{
	PG_RETURN_VECTOR_P(vector_arith(PG_GETARG_VECTOR_P(0),
									PG_GETARG_VECTOR_P(1), VECTOR_ADD));
}

PG_FUNCTION_INFO_V1(vector_sub);
Datum
vector_sub(PG_FUNCTION_ARGS)
{
	PG_RETURN_VECTOR_P(vector_arith(PG_GETARG_VECTOR_P(0),
									PG_GETARG_VECTOR_P(1), VECTOR_SUB));
}

PG_FUNCTION_INFO_V1(vector_mul);
Datum
vector_mul(PG_FUNCTION_ARGS)
{
	PG_RETURN_VECTOR_P(vector_arith(PG_GETARG_VECTOR_P(0),
									PG_GETARG_VECTOR_P(1), VECTOR_MUL));
}

/* ----------------------------------------------------------------------
 * Ordering (btree operator class)
 * ---------------------------------------------------------------------- */

/*
 * <0, 0, >0 as a sorts before, with, after b.  Vectors of different
 * dimensions are comparable: a proper prefix sorts before the longer vector.
 */
static int
vector_cmp_internal(const Vector *a, const Vector *b)
{
	int			common = Min(a->dim, b->dim);

	for (int i = 0; i < common; i++)
	{
		if (a->x[i] < b->x[i])
			return -1;
		if (a->x[i] > b->x[i])
			return 1;
	}
	if (a->dim < b->dim)
		return -1;
	if (a->dim > b->dim)
		return 1;
	return 0;
}

/*
 * Compares the two arguments and frees any detoasted copies, as btree
 * support functions should not leak memory into long-lived contexts.
 */
static int
vector_cmp_args(FunctionCallInfo fcinfo)
{
	Vector	   *a = PG_GETARG_VECTOR_P(0);
	Vector	   *b = PG_GETARG_VECTOR_P(1);
	int			cmp = vector_cmp_internal(a, b);

	PG_FREE_IF_COPY(a, 0);
	PG_FREE_IF_COPY(b, 1);
	return cmp;
}

PG_FUNCTION_INFO_V1(vector_lt);
Datum
vector_lt(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(vector_cmp_args(fcinfo) < 0);
}

PG_FUNCTION_INFO_V1(vector_le);
Datum
vector_le(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(vector_cmp_args(fcinfo) <= 0);
}

PG_FUNCTION_INFO_V1(vector_eq);
Datum
vector_eq(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(vector_cmp_args(fcinfo) == 0);
}

PG_FUNCTION_INFO_V1(vector_ne);
Datum
vector_ne(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(vector_cmp_args(fcinfo) != 0);
}

PG_FUNCTION_INFO_V1(vector_ge);
Datum
vector_ge(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(vector_cmp_args(fcinfo) >= 0);
}

PG_FUNCTION_INFO_V1(vector_gt);
Datum
vector_gt(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(vector_cmp_args(fcinfo) > 0);
}

PG_FUNCTION_INFO_V1(vector_cmp);
Datum
vector_cmp(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT32(vector_cmp_args(fcinfo));
}

/* ----------------------------------------------------------------------
 * Aggregates: state float8[] = {count, sum_1, ..., sum_d}
 * ---------------------------------------------------------------------- */

/*
 * Check that a state array has the shape the aggregate builds (the functions
 * are callable from SQL with any float8[]) and return its element count,
 * i.e. 1 + dimension, or 1 for the initial state.
 */
static int
agg_state_length(ArrayType *state, const char *caller)
{
	int			length;

	if (ARR_NDIM(state) != 1 || ARR_HASNULL(state) ||
		ARR_ELEMTYPE(state) != FLOAT8OID)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s: state must be a one-dimensional float8 array without nulls", caller)));
	length = ARR_DIMS(state)[0];
	if (length < 1 || length - 1 > VECTOR_MAX_DIM)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s: state array has %d elements, expected between 1 and %d",
						caller, length, VECTOR_MAX_DIM + 1)));
	return length;
}

static ArrayType *
agg_state_build(const float8 *values, int length)
{
	Datum	   *datums = palloc(sizeof(Datum) * length);

	for (int i = 0; i < length; i++)
		datums[i] = Float8GetDatum(values[i]);
	return construct_array(datums, length, FLOAT8OID,
						   sizeof(float8), FLOAT8PASSBYVAL, TYPALIGN_DOUBLE);
}

static void
agg_check_dims(int state_dims, int row_dims)
{
	if (state_dims != row_dims)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("different vector dimensions %d and %d", state_dims, row_dims),
				 errdetail("All vectors in one aggregate must have the same dimension.")));
}

PG_FUNCTION_INFO_V1(vector_accum);
Datum
vector_accum(PG_FUNCTION_ARGS)
{
	ArrayType  *state = PG_GETARG_ARRAYTYPE_P(0);
	Vector	   *v = PG_GETARG_VECTOR_P(1);
	int			length = agg_state_length(state, "vector_accum");
	float8	   *sums = (float8 *) ARR_DATA_PTR(state);
	float8	   *values;

	if (length == 1)
	{
		/* first row: its dimension becomes the aggregate's */
		values = palloc(sizeof(float8) * (v->dim + 1));
		values[0] = sums[0] + 1.0;
		for (int i = 0; i < v->dim; i++)
			values[i + 1] = (double) v->x[i];
		PG_RETURN_ARRAYTYPE_P(agg_state_build(values, v->dim + 1));
	}

	agg_check_dims(length - 1, v->dim);

	if (AggCheckCallContext(fcinfo, NULL))
	{
		/* the state belongs to the aggregate: add into it */
		sums[0] += 1.0;
		for (int i = 0; i < v->dim; i++)
			sums[i + 1] += (double) v->x[i];
		PG_RETURN_ARRAYTYPE_P(state);
	}

	values = palloc(sizeof(float8) * length);
	values[0] = sums[0] + 1.0;
	for (int i = 0; i < v->dim; i++)
		values[i + 1] = sums[i + 1] + (double) v->x[i];
	PG_RETURN_ARRAYTYPE_P(agg_state_build(values, length));
}

PG_FUNCTION_INFO_V1(vector_combine);
Datum
vector_combine(PG_FUNCTION_ARGS)
{
	ArrayType  *state1 = PG_GETARG_ARRAYTYPE_P(0);
	ArrayType  *state2 = PG_GETARG_ARRAYTYPE_P(1);
	int			length1 = agg_state_length(state1, "vector_combine");
	int			length2 = agg_state_length(state2, "vector_combine");
	float8	   *sums1 = (float8 *) ARR_DATA_PTR(state1);
	float8	   *sums2 = (float8 *) ARR_DATA_PTR(state2);
	float8	   *values;

	/* an empty side (no rows seen by that worker) contributes nothing */
	if (length2 == 1)
		PG_RETURN_ARRAYTYPE_P(state1);
	if (length1 == 1)
		PG_RETURN_ARRAYTYPE_P(agg_state_build(sums2, length2));

	agg_check_dims(length1 - 1, length2 - 1);

	if (AggCheckCallContext(fcinfo, NULL))
	{
		for (int i = 0; i < length1; i++)
			sums1[i] += sums2[i];
		PG_RETURN_ARRAYTYPE_P(state1);
	}

	values = palloc(sizeof(float8) * length1);
	for (int i = 0; i < length1; i++)
		values[i] = sums1[i] + sums2[i];
	PG_RETURN_ARRAYTYPE_P(agg_state_build(values, length1));
}

/*
 * Turn the state into a vector of sums divided by divide_by_count ? count : 1.
 * Returns NULL when no row was aggregated.  A result that does not fit in
 * float4 is an ERROR, never an infinite element.
 */
static Vector *
agg_state_finish(ArrayType *state, bool divide_by_count, const char *caller)
{
	int			length = agg_state_length(state, caller);
	float8	   *sums = (float8 *) ARR_DATA_PTR(state);
	float8		count = sums[0];
	Vector	   *result;

	if (length == 1 || count == 0.0)
		return NULL;

	result = vector_new(length - 1);
	for (int i = 0; i < length - 1; i++)
	{
		double		value = divide_by_count ? sums[i + 1] / count : sums[i + 1];

		result->x[i] = (float) value;
		if (unlikely(isinf(result->x[i]) || isnan(result->x[i])))
			ereport(ERROR,
					(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
					 errmsg("value out of range: overflow"),
					 errdetail("Element %d of the %s result, %g, is out of range for type real.",
							   i + 1, divide_by_count ? "avg" : "sum", value)));
	}
	return result;
}

PG_FUNCTION_INFO_V1(vector_avg);
Datum
vector_avg(PG_FUNCTION_ARGS)
{
	Vector	   *result = agg_state_finish(PG_GETARG_ARRAYTYPE_P(0), true, "vector_avg");

	if (result == NULL)
		PG_RETURN_NULL();
	PG_RETURN_VECTOR_P(result);
}

PG_FUNCTION_INFO_V1(vector_sum);
Datum
vector_sum(PG_FUNCTION_ARGS)
{
	Vector	   *result = agg_state_finish(PG_GETARG_ARRAYTYPE_P(0), false, "vector_sum");

	if (result == NULL)
		PG_RETURN_NULL();
	PG_RETURN_VECTOR_P(result);
}
