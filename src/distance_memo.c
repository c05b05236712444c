/*
 * distance_memo.c — distances an index scan computed, reused by the SQL
 * distance function that the executor calls on the row the scan returned.
 *
 * Why.  For SELECT id FROM t ORDER BY embedding <-> q LIMIT 10 the index scan
 * computes the distance of every row it returns, and then the executor
 * computes it again: the ORDER BY expression is a (hidden) column of the
 * scan's output, evaluated on each heap row.  That second computation is
 * cheap when the row holds its vector plainly, but a vector of more than
 * about 2 kB is compressed in the row when it compresses (storage main, the
 * type's default), or kept out of line (storage external), and then every
 * returned row is decompressed or fetched from its TOAST table first: on the
 * benchmark sets 12-19% of a whole query.  The index already has the number.
 *
 * How.  A scan opens a memo naming the table, the indexed column, the kind of
 * distance and its query, and notes in it the heap TID and distance of each
 * row it hands to the executor.  A distance function whose first operand is
 * compressed or out of line asks distance_memo_find first; the memo answers
 * only when it can prove that the operand is the indexed column of exactly
 * the tuple just returned, compared with exactly the same query:
 *
 *   - the operand lies in a shared buffer (the executor reads heap tuples in
 *     place, under the pin its slot holds; a copied tuple is never matched),
 *     and that buffer's tag names the memo's table, main fork, and the block
 *     of the noted TID.  The tag of a pinned buffer cannot change;
 *   - the noted TID's line pointer on that page is a normal item whose tuple
 *     contains the operand (a pin forbids pruning, so the item cannot move),
 *     and the indexed column of that tuple (heap_getattr with the table's
 *     descriptor) is the operand itself, pointer for pointer: another column
 *     of the row, or a later version of it in a HOT chain (the index notes
 *     the chain's root), does not match;
 *   - the function's other operand equals the scan's query, float for float.
 *
 * A heap tuple never changes its indexed column in place, and the index
 * element of that TID holds the vector the row had when it was indexed, so
 * the scan's number is the distance between that same vector and the same
 * query.  It is also the same bits: the kernels are symmetric element by
 * element ((a-b)^2, ab and |a-b| do not depend on the order of a and b, and
 * the lanes sum in the same order), and the SQL functions derive their result
 * from the kernel value as the callers here do.  Cosine is never memoised
 * (the index compares normalised vectors).  Anything unproven falls back to
 * the ordinary computation, which is what keeps the memo invisible: results
 * are bit-for-bit those without it (regress test distance_memo).
 *
 * Lifetime.  The memos live in their scans' memory contexts and unlink
 * themselves through a reset callback, so a scan ended by an error leaves
 * nothing behind.  Only the row returned last is kept: the executor
 * evaluates the expression before it asks for the next row.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "storage/buf_internals.h"
#include "storage/bufmgr.h"
#include "storage/bufpage.h"

#include "distance_memo.h"

/* the open memos of this backend: usually none or one */
static DistanceMemo *open_memos = NULL;

static void
distance_memo_unlink(void *arg)
{
	DistanceMemo *memo = (DistanceMemo *) arg;

	for (DistanceMemo **link = &open_memos; *link != NULL; link = &(*link)->next)
	{
		if (*link == memo)
		{
			*link = memo->next;
			break;
		}
	}
}

DistanceMemo *
distance_memo_open(MemoryContext owner, RelFileNode heap_node, TupleDesc heap_desc,
				   AttrNumber attnum, DistanceMemoKind kind)
{
	DistanceMemo *memo = MemoryContextAllocZero(owner, sizeof(DistanceMemo));

	Assert(attnum > 0);
	memo->heap_node = heap_node;
	memo->heap_desc = heap_desc;
	memo->attnum = attnum;
	memo->kind = kind;
	memo->valid = false;
	memo->unlink.func = distance_memo_unlink;
	memo->unlink.arg = memo;
	MemoryContextRegisterResetCallback(owner, &memo->unlink);
	memo->next = open_memos;
	open_memos = memo;
	return memo;
}

void
distance_memo_set_query(DistanceMemo *memo, const float *query, int dim)
{
	memo->query = query;
	memo->dim = dim;
	memo->valid = false;
}

bool
distance_memo_any_open(void)
{
	return open_memos != NULL;
}

/* Does memo's noted row hold `row` as its indexed column, on this page? */
static bool
memo_row_is(const DistanceMemo *memo, Page page, const char *row)
{
	OffsetNumber offnum = ItemPointerGetOffsetNumber(&memo->tid);
	ItemId		item;
	HeapTupleData tuple;
	Datum		value;
	bool		isnull;

	if (offnum < FirstOffsetNumber || offnum > PageGetMaxOffsetNumber(page))
		return false;
	item = PageGetItemId(page, offnum);
	if (!ItemIdIsNormal(item))
		return false;
	tuple.t_data = (HeapTupleHeader) PageGetItem(page, item);
	tuple.t_len = ItemIdGetLength(item);
	if (row < (char *) tuple.t_data || row >= (char *) tuple.t_data + tuple.t_len)
		return false;
	/* a column added after the row was written is not in the tuple */
	if (memo->attnum > HeapTupleHeaderGetNatts(tuple.t_data))
		return false;
	ItemPointerSetInvalid(&tuple.t_self);
	tuple.t_tableOid = InvalidOid;
	value = heap_getattr(&tuple, memo->attnum, memo->heap_desc, &isnull);
	return !isnull && DatumGetPointer(value) == row;
}

bool
distance_memo_find(const struct varlena *row, const float *query, int dim,
				   DistanceMemoKind kind, float *distance)
{
	const char *address = (const char *) row;
	Size		offset;
	BufferDesc *desc;
	Page		page;

	if (open_memos == NULL ||
		address < BufferBlocks || address >= BufferBlocks + (Size) NBuffers * BLCKSZ)
		return false;
	offset = address - BufferBlocks;
	desc = GetBufferDescriptor(offset / BLCKSZ);
	page = (Page) (BufferBlocks + offset - offset % BLCKSZ);

	for (const DistanceMemo *memo = open_memos; memo != NULL; memo = memo->next)
	{
		if (!memo->valid || memo->kind != kind || memo->dim != dim ||
			!RelFileNodeEquals(desc->tag.rnode, memo->heap_node) ||
			desc->tag.forkNum != MAIN_FORKNUM ||
			desc->tag.blockNum != ItemPointerGetBlockNumber(&memo->tid) ||
			!memo_row_is(memo, page, address) ||
			memcmp(memo->query, query, sizeof(float) * dim) != 0)
			continue;
		*distance = memo->distance;
		return true;
	}
	return false;
}
