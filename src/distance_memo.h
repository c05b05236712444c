/*
 * distance_memo.h — the distance an index scan computed for the row it just
 * returned, offered to the SQL distance function that the executor calls on
 * that same row.  See distance_memo.c for why and for what makes a hit safe.
 */
#ifndef HIERINDEX_DISTANCE_MEMO_H
#define HIERINDEX_DISTANCE_MEMO_H

#include "postgres.h"

#include "access/tupdesc.h"
#include "storage/itemptr.h"
#include "storage/relfilenode.h"
#include "utils/palloc.h"

/*
 * What the scan's number is.  Each names the kernel value the index computes
 * (distance.h), from which every SQL function of that kernel derives its
 * result exactly; cosine is absent because an index compares normalised
 * vectors, which gives a different rounding than the SQL function's formula.
 */
typedef enum DistanceMemoKind
{
	DISTANCE_MEMO_L2_SQUARED,	/* distance_l2_squared */
	DISTANCE_MEMO_NEGATIVE_INNER_PRODUCT,	/* -distance_inner_product */
	DISTANCE_MEMO_L1			/* distance_l1 */
} DistanceMemoKind;

typedef struct DistanceMemo
{
	/* the scan: set by distance_memo_open, fixed for its life */
	RelFileNode heap_node;		/* the table's storage */
	TupleDesc	heap_desc;		/* the table's descriptor (open relation's) */
	AttrNumber	attnum;			/* the indexed column */
	DistanceMemoKind kind;

	/* the query of the current rescan: distance_memo_set_query */
	const float *query;			/* owned by the scan */
	int			dim;

	/* the row returned last: distance_memo_note_row */
	bool		valid;
	ItemPointerData tid;
	float		distance;		/* the kernel value, as DistanceMemoKind says */

	struct DistanceMemo *next;	/* the backend's open memos */
	MemoryContextCallback unlink;
} DistanceMemo;

/*
 * A new memo for a scan of heap column attnum, linked into the backend's
 * list until `owner` (the scan's memory context, which lives as long as the
 * relation stays open) is reset or deleted, on error too.
 */
extern DistanceMemo *distance_memo_open(MemoryContext owner, RelFileNode heap_node,
										TupleDesc heap_desc, AttrNumber attnum,
										DistanceMemoKind kind);
extern void distance_memo_set_query(DistanceMemo *memo, const float *query, int dim);

static inline void
distance_memo_note_row(DistanceMemo *memo, ItemPointer tid, float distance)
{
	memo->tid = *tid;
	memo->distance = distance;
	memo->valid = true;
}

static inline void
distance_memo_forget(DistanceMemo *memo)
{
	memo->valid = false;
}

/* true while some scan has a memo open: the only test on a function's path otherwise */
extern bool distance_memo_any_open(void);

/*
 * The kernel value of `kind` between the stored row value `row` (a datum the
 * executor read from a heap tuple) and query[0..dim), if an open scan has
 * just returned that very tuple for this query: true and *distance set, or
 * false.
 */
extern bool distance_memo_find(const struct varlena *row, const float *query, int dim,
							   DistanceMemoKind kind, float *distance);

#endif							/* HIERINDEX_DISTANCE_MEMO_H */
