/*
 * vector.h — the in-memory and on-disk form of the vector type.
 *
 * Laid out exactly as pgvector lays it out (varlena header, int16 dim,
 * int16 unused, float4 values), so that data dumped by one loads into the
 * other and binary COPY streams are interchangeable.
 */
#ifndef HIERINDEX_VECTOR_H
#define HIERINDEX_VECTOR_H

#include "postgres.h"
#include "fmgr.h"

#include "vector_parse.h"

typedef struct Vector
{
	int32		vl_len_;		/* varlena header (do not touch directly) */
	int16		dim;			/* number of dimensions */
	int16		unused;			/* reserved, always 0 */
	float		x[FLEXIBLE_ARRAY_MEMBER];
} Vector;

#define VECTOR_SIZE(_dim)		(offsetof(Vector, x) + sizeof(float) * (_dim))
#define DatumGetVector(x)		((Vector *) PG_DETOAST_DATUM(x))
#define PG_GETARG_VECTOR_P(n)	DatumGetVector(PG_GETARG_DATUM(n))
#define PG_RETURN_VECTOR_P(x)	PG_RETURN_POINTER(x)

/* A zero-filled vector of dim dimensions, palloc'd. */
extern Vector *vector_new(int dim);

/* ERROR unless 1 <= dim <= VECTOR_MAX_DIM. */
extern void vector_check_dim(int dim);

/* ERROR if the two vectors have different dimensions. */
extern void vector_check_same_dims(const Vector *a, const Vector *b);

/* ERROR if dim does not match typmod (typmod -1 means unconstrained). */
extern void vector_check_typmod(int dim, int32 typmod);

/* ERROR if any element is NaN or infinite (results of arithmetic). */
extern void vector_check_finite(const float *x, int dim);

#endif							/* HIERINDEX_VECTOR_H */
