/*
 * hnsw_insert.c — aminsert: adding one element to a built hnsw index.
 *
 * An insert does on pages what the in-memory engine (src/graph/graph_build.c)
 * does in memory, with the engine's own search and neighbour selection run
 * through the page walk of hnsw_walk.c:
 *
 *   1. draw the element's level (mL = 1/ln m) and take the heavyweight lock
 *      on block 0: share mode, or exclusive when the element will become the
 *      new entry point (its level is above the top, or the index is empty);
 *   2. walk: greedy descent above the element's level, then a beam search of
 *      ef_construction candidates on each of its layers, keeping m neighbours
 *      per layer with Algorithm 4 (the engine keeps m on every layer; layer 0
 *      lists have room for 2m so that back links fit);
 *   3. if layer 0 holds a live element with the identical vector (and the
 *      identical payload, where there are payloads), add the heap TID to it (inline, else to its heap-TID overflow chain) and stop:
 *      an element owns every row of its vector (README: duplicates);
 *   4. step a: write the element and neighbour tuples (a slot VACUUM freed,
 *      rewritten in place, when the free space map names one of a level at
 *      least the element's; else the insert page, else a new page) and the
 *      meta page counters in one GenericXLog record; in an
 *      index with payloads (matryoshka), the element's payload as fine
 *      tuples too, in that record as far as its four pages allow (the rest
 *      of a very long payload in records before it: see FinePlan);
 *   5. step b: give each chosen neighbour a back link, one GenericXLog record
 *      per list; a full list is pruned with the same heuristic;
 *   6. step c: a new top element becomes the entry point (meta page).
 *
 * Concurrency (README "Locking").  Buffer locks are short and, with one
 * exception, one at a time: the vectors a pruning needs are read under
 * share locks before the list's page is locked exclusively, and the list is
 * then compared with the one the pruning was computed from; if another
 * backend changed it meanwhile, the work is redone.  The exception is a
 * record that covers several pages (step a, in a free slot or not, and a
 * duplicate's heap TID): it locks the existing pages in block order, then
 * the meta page; nothing ever waits for another buffer while holding the
 * meta page, so there is no cycle.
 *
 * Since identical vectors share one element, the neighbour heuristic never
 * sees two elements with the same vector, except when concurrent inserts of
 * a vector new to the index both miss each other's element and each add one
 * (two elements at distance 0: harmless, and rare).
 *
 * Each call runs in its own short-lived memory context: aminsert runs once per
 * row, and nothing may accumulate over a long COPY.
 */
#include "postgres.h"

#include <math.h>

#include "access/generic_xlog.h"
#include "common/pg_prng.h"
#include "miscadmin.h"
#include "storage/bufmgr.h"
#include "storage/bufpage.h"
#include "storage/freespace.h"
#include "storage/lmgr.h"
#include "utils/float.h"
#include "utils/memutils.h"
#include "utils/rel.h"

#include "hnsw/hnsw.h"

/* what one insert remembers about the layers it links */
typedef struct InsertLayer
{
	int			count;			/* neighbours chosen */
	ItemPointerData tids[GRAPH_MAX_M];
	int32		handles[GRAPH_MAX_M];	/* in the insert's walk */
	float		distances[GRAPH_MAX_M];
} InsertLayer;

typedef struct InsertState
{
	Relation	index;
	HnswShape	shape;
	const float *vector;		/* the new element's prepared vector */
	const char *payload;		/* and its payload (matryoshka), or NULL */
	Size		payload_size;	/* meta payload_size: 0 in hnsw */
	ItemPointerData heap_tid;
	int			level;
	BlockNumber nblocks;		/* cached relation size, refreshed on demand */
	HnswWalk   *walk;
	float	   *target_vector;	/* step b's copy of a target's vector, or NULL */
	InsertLayer layers[GRAPH_MAX_LEVEL + 1];
} InsertState;

/* facts about one element tuple, read under a share lock */
typedef struct ElementFacts
{
	int			level;
	bool		live;			/* HNSW_ELEMENT_LIVE */
	ItemPointerData neighbortid;
} ElementFacts;

/* a pruning pool: vectors indexed by pool position, for the pair distance */
typedef struct PrunePool
{
	GraphMetric metric;
	int			dimensions;
	const float **vectors;
} PrunePool;

/* ------------------------------------------------------------------------
 * Reading tuples.  Every TID read from a page is untrusted: it may point
 * past the end, at the meta page, or at something that is not the tuple we
 * expect (README "Locking"); such links are skipped, never followed.
 * ------------------------------------------------------------------------ */

static bool
block_exists(InsertState *state, BlockNumber blkno)
{
	return hnsw_block_exists(state->index, &state->nblocks, blkno);
}

static HnswElementTuple
page_element(const InsertState *state, Page page, OffsetNumber offset)
{
	return hnsw_page_tuple(page, offset, HNSW_ELEMENT_TUPLE,
					  hnsw_element_tuple_size(state->shape.dimensions));
}

/*
 * Level and neighbour tuple of the element at `tid`, and (when vector is not
 * NULL) a copy of its vector.  False when tid is not an element tuple.
 */
static bool
read_element(InsertState *state, ItemPointer tid, ElementFacts *facts, float *vector)
{
	BlockNumber blkno = ItemPointerGetBlockNumber(tid);
	Buffer		buffer;
	Page		page;
	HnswElementTuple element;

	if (!block_exists(state, blkno))
		return false;
	buffer = ReadBuffer(state->index, blkno);
	LockBuffer(buffer, BUFFER_LOCK_SHARE);
	page = BufferGetPage(buffer);
	hnsw_check_page(state->index, page, blkno);
	element = page_element(state, page, ItemPointerGetOffsetNumber(tid));
	if (element != NULL)
	{
		facts->level = element->level;
		facts->live = HnswElementIsLive(element);
		facts->neighbortid = element->neighbortid;
		if (vector != NULL)
			memcpy(vector, element->vector, sizeof(float) * state->shape.dimensions);
	}
	UnlockReleaseBuffer(buffer);
	return element != NULL;
}

static bool
list_contains(const ItemPointerData *list, int count, ItemPointer tid)
{
	for (int i = 0; i < count; i++)
		if (ItemPointerEquals((ItemPointer) &list[i], tid))
			return true;
	return false;
}

/* The layer's list of neighbour tuple `ntid` under a share lock; -1 if none. */
static int
read_list(InsertState *state, ItemPointer ntid, int layer, ItemPointerData *out)
{
	BlockNumber blkno = ItemPointerGetBlockNumber(ntid);
	Buffer		buffer;
	Page		page;
	HnswNeighborTuple tuple;
	int			count = -1;

	if (!block_exists(state, blkno))
		return -1;
	buffer = ReadBuffer(state->index, blkno);
	LockBuffer(buffer, BUFFER_LOCK_SHARE);
	page = BufferGetPage(buffer);
	hnsw_check_page(state->index, page, blkno);
	tuple = hnsw_page_neighbors(page, ItemPointerGetOffsetNumber(ntid), layer,
								state->shape.m);
	if (tuple != NULL)
		count = hnsw_neighbor_layer_list(tuple, layer, state->shape.m, out);
	UnlockReleaseBuffer(buffer);
	return count;
}

/* ------------------------------------------------------------------------
 * Meta page updates (always the last buffer a record locks)
 * ------------------------------------------------------------------------ */

static HnswMetaPage
register_meta(Relation index, GenericXLogState *xlog, Buffer *meta_buffer)
{
	Page		page;

	*meta_buffer = ReadBuffer(index, HNSW_METAPAGE_BLKNO);
	LockBuffer(*meta_buffer, BUFFER_LOCK_EXCLUSIVE);
	hnsw_check_page(index, BufferGetPage(*meta_buffer), HNSW_METAPAGE_BLKNO);
	page = GenericXLogRegisterBuffer(xlog, *meta_buffer, 0);
	return HnswPageGetMeta(page);
}

/* ------------------------------------------------------------------------
 * Duplicates
 * ------------------------------------------------------------------------ */

static Page new_element_page(Relation index, GenericXLogState *xlog, Buffer *buffer);
static OffsetNumber add_tuple(Relation index, Page page, void *tuple, Size size);

/* the element at `tid` on a locked page if it is live with our vector */
static HnswElementTuple
identical_element(InsertState *state, Page page, ItemPointer tid)
{
	HnswElementTuple element = page_element(state, page,
											ItemPointerGetOffsetNumber(tid));

	if (element == NULL || !HnswElementIsLive(element) ||
		memcmp(element->vector, state->vector,
			   sizeof(float) * state->shape.dimensions) != 0)
		return NULL;
	return element;
}

/* the heap-TID tuple at `tid` on a locked page, or NULL */
static HnswHeapTidTuple
page_heaptids(Page page, ItemPointer tid)
{
	HnswHeapTidTuple tuple = hnsw_page_tuple(page, ItemPointerGetOffsetNumber(tid),
										HNSW_HEAPTID_TUPLE,
										sizeof(HnswHeapTidTupleData));

	if (tuple != NULL && tuple->count > HNSW_OVERFLOW_HEAPTIDS)
		return NULL;			/* damaged: never write past the array */
	return tuple;
}

/* one more heap TID in the meta page's count, in the same record */
static void
count_heap_tid(InsertState *state, GenericXLogState *xlog,
			   BlockNumber new_insert_page)
{
	Buffer		meta_buffer;
	HnswMetaPage meta = register_meta(state->index, xlog, &meta_buffer);

	meta->heaptid_count++;
	if (new_insert_page != InvalidBlockNumber)
		meta->insert_page = new_insert_page;
	GenericXLogFinish(xlog);
	UnlockReleaseBuffer(meta_buffer);
}

/*
 * The heap TID into the first tuple of the chain starting at `head` that has
 * room, one exclusive lock at a time.  Tuples are never unlinked, so the
 * chain stays walkable while others change it; a tuple is rechecked under
 * its own lock.  False when every tuple is full.
 */
static bool
add_to_chain(InsertState *state, ItemPointerData head)
{
	ItemPointerData next = head;
	int64		steps = 0;
	int64		max_steps = (int64) RelationGetNumberOfBlocks(state->index) *
		HNSW_HEAPTID_TUPLES_PER_PAGE;

	while (ItemPointerIsValid(&next) && steps++ < max_steps)
	{
		BlockNumber blkno = ItemPointerGetBlockNumber(&next);
		GenericXLogState *xlog;
		Buffer		buffer;
		Page		page;
		HnswHeapTidTuple tuple;

		if (!block_exists(state, blkno))
			return false;
		buffer = ReadBuffer(state->index, blkno);
		LockBuffer(buffer, BUFFER_LOCK_EXCLUSIVE);
		hnsw_check_page(state->index, BufferGetPage(buffer), blkno);
		tuple = page_heaptids(BufferGetPage(buffer), &next);
		if (tuple == NULL)
		{
			UnlockReleaseBuffer(buffer);
			return false;		/* a damaged chain: start a new head */
		}
		if (tuple->count < HNSW_OVERFLOW_HEAPTIDS)
		{
			xlog = GenericXLogStart(state->index);
			page = GenericXLogRegisterBuffer(xlog, buffer, 0);
			tuple = page_heaptids(page, &next);
			tuple->heaptids[tuple->count++] = state->heap_tid;
			count_heap_tid(state, xlog, InvalidBlockNumber);
			UnlockReleaseBuffer(buffer);
			return true;
		}
		next = tuple->next;
		UnlockReleaseBuffer(buffer);
	}
	return false;
}

/* what add_overflow_tuple did */
typedef enum
{
	OVERFLOW_ADDED,				/* a new head tuple holds the heap TID */
	OVERFLOW_CHANGED,			/* the element changed since: try again */
	OVERFLOW_GONE				/* no longer a live copy of our vector */
} OverflowResult;

/*
 * A new heap-TID tuple holding the heap TID, linked at the head of the
 * element's chain (whose head was `head` when we looked), in one record with
 * the element and the meta page.  It goes on the element's own page when it
 * fits, else on the insert page, else on a new page (which becomes the
 * insert page).  The element page and the insert page are locked in block
 * order, so two inserts doing this cannot deadlock; everyone else holds one
 * existing page at a time (README "Locking").
 */
static OverflowResult
add_overflow_tuple(InsertState *state, ItemPointer tid, ItemPointerData head)
{
	Relation	index = state->index;
	BlockNumber element_blkno = ItemPointerGetBlockNumber(tid);
	BlockNumber insert_blkno;
	HnswMetaPageData meta;
	HnswHeapTidTupleData overflow;
	GenericXLogState *xlog;
	Buffer		element_buffer;
	Buffer		insert_buffer = InvalidBuffer;
	Buffer		new_buffer = InvalidBuffer;
	Page		element_page;
	Page		insert_page = NULL;
	Page		target;
	BlockNumber new_insert_page = InvalidBlockNumber;
	HnswElementTuple element;
	OffsetNumber offset;

	hnsw_read_meta(index, &meta);
	insert_blkno = meta.insert_page;
	if (insert_blkno == element_blkno || insert_blkno == HNSW_METAPAGE_BLKNO ||
		!block_exists(state, insert_blkno))
		insert_blkno = InvalidBlockNumber;
	if (!block_exists(state, element_blkno))
		return OVERFLOW_GONE;

	/* lock in block order */
	element_buffer = ReadBuffer(index, element_blkno);
	if (insert_blkno != InvalidBlockNumber)
		insert_buffer = ReadBuffer(index, insert_blkno);
	if (BufferIsValid(insert_buffer) && insert_blkno < element_blkno)
		LockBuffer(insert_buffer, BUFFER_LOCK_EXCLUSIVE);
	LockBuffer(element_buffer, BUFFER_LOCK_EXCLUSIVE);
	if (BufferIsValid(insert_buffer) && insert_blkno > element_blkno)
		LockBuffer(insert_buffer, BUFFER_LOCK_EXCLUSIVE);
	hnsw_check_page(index, BufferGetPage(element_buffer), element_blkno);
	if (BufferIsValid(insert_buffer))
		hnsw_check_page(index, BufferGetPage(insert_buffer), insert_blkno);

	xlog = GenericXLogStart(index);
	element_page = GenericXLogRegisterBuffer(xlog, element_buffer, 0);
	element = identical_element(state, element_page, tid);
	if (element == NULL || element->heaptid_count < HNSW_HEAPTIDS ||
		!ItemPointerEquals(&element->overflowtid, &head))
	{
		GenericXLogAbort(xlog);
		UnlockReleaseBuffer(element_buffer);
		if (BufferIsValid(insert_buffer))
			UnlockReleaseBuffer(insert_buffer);
		return element == NULL ? OVERFLOW_GONE : OVERFLOW_CHANGED;
	}

	/*
	 * PageAddItem stores the tuple MAXALIGNed; PageGetFreeSpace has already
	 * set aside its line pointer.
	 */
	if (PageGetFreeSpace(element_page) >= MAXALIGN(sizeof(overflow)))
		target = element_page;
	else if (BufferIsValid(insert_buffer) &&
			 PageGetFreeSpace(BufferGetPage(insert_buffer)) >= MAXALIGN(sizeof(overflow)))
		target = insert_page = GenericXLogRegisterBuffer(xlog, insert_buffer, 0);
	else
	{
		/* a fresh page: nobody else can lock it, so holding it too is safe */
		target = new_element_page(index, xlog, &new_buffer);
		new_insert_page = BufferGetBlockNumber(new_buffer);
	}

	memset(&overflow, 0, sizeof(overflow));
	overflow.type = HNSW_HEAPTID_TUPLE;
	overflow.count = 1;
	overflow.next = head;
	overflow.heaptids[0] = state->heap_tid;
	for (int i = 1; i < HNSW_OVERFLOW_HEAPTIDS; i++)
		ItemPointerSetInvalid(&overflow.heaptids[i]);
	offset = add_tuple(index, target, &overflow, sizeof(overflow));
	element->type = HNSW_ELEMENT_TUPLE; /* a live row: no dead-row hint */
	ItemPointerSet(&element->overflowtid,
				   target == element_page ? element_blkno :
				   target == insert_page ? insert_blkno : new_insert_page,
				   offset);

	count_heap_tid(state, xlog, new_insert_page);
	if (BufferIsValid(new_buffer))
		UnlockReleaseBuffer(new_buffer);
	if (BufferIsValid(insert_buffer))
		UnlockReleaseBuffer(insert_buffer);
	UnlockReleaseBuffer(element_buffer);
	return OVERFLOW_ADDED;
}

/*
 * Add the heap TID to the element at `tid` if it is still a live element
 * with the identical vector: inline while there is room, else in the first
 * overflow tuple with room, else in a new overflow tuple at the head of its
 * chain.  Everything is rechecked under the exclusive lock of the page it
 * changes, since concurrent inserts of the same vector (and vacuum) change
 * the same element.  The element cannot be marked deleted while we add to
 * its chain: vacuum does that for an element with a chain only under the
 * exclusive heavyweight lock on block 0, and we hold it in share mode.
 */
static bool
add_heap_tid(InsertState *state, ItemPointer tid)
{
	BlockNumber blkno = ItemPointerGetBlockNumber(tid);

	for (;;)
	{
		GenericXLogState *xlog;
		Buffer		buffer;
		Page		page;
		HnswElementTuple element;
		ItemPointerData head;
		OverflowResult result;

		CHECK_FOR_INTERRUPTS();
		if (!block_exists(state, blkno))
			return false;
		buffer = ReadBuffer(state->index, blkno);
		LockBuffer(buffer, BUFFER_LOCK_EXCLUSIVE);
		hnsw_check_page(state->index, BufferGetPage(buffer), blkno);
		xlog = GenericXLogStart(state->index);
		page = GenericXLogRegisterBuffer(xlog, buffer, 0);
		element = identical_element(state, page, tid);
		if (element == NULL)
		{
			GenericXLogAbort(xlog);
			UnlockReleaseBuffer(buffer);
			return false;
		}
		if (element->heaptid_count < HNSW_HEAPTIDS)
		{
			element->heaptids[element->heaptid_count++] = state->heap_tid;
			element->type = HNSW_ELEMENT_TUPLE; /* a live row: no dead-row hint */
			count_heap_tid(state, xlog, InvalidBlockNumber);
			UnlockReleaseBuffer(buffer);
			return true;
		}
		head = element->overflowtid;
		GenericXLogAbort(xlog);
		UnlockReleaseBuffer(buffer);

		if (add_to_chain(state, head))
			return true;
		result = add_overflow_tuple(state, tid, head);
		if (result != OVERFLOW_CHANGED)
			return result == OVERFLOW_ADDED;
	}
}

/*
 * Try the layer-0 results that hold the identical vector, nearest first.
 * With a payload (matryoshka), the element's payload must be identical too:
 * equal coarse vectors with different payloads are different rows.  An
 * element's finetid never changes, and its payload only when its slot is
 * reused, which cannot happen to an element this insert saw live before the
 * insert ends (VACUUM frees a slot only after its barrier, which waits for
 * us), so the payload is compared once here, with no lock held;
 * add_heap_tid rechecks the rest under the element page's lock.
 */
static bool
add_to_duplicate(InsertState *state, const GraphNeighbor *found, int count)
{
	Size		bytes = sizeof(float) * state->shape.dimensions;
	char	   *payload = NULL;

	for (int i = 0; i < count; i++)
	{
		const float *vector = hnsw_walk_vector(state->walk, found[i].id);
		ItemPointerData finetid;

		if (vector == NULL || memcmp(vector, state->vector, bytes) != 0)
			continue;
		if (state->payload_size > 0)
		{
			if (!hnsw_walk_element(state->walk, found[i].id, &finetid))
				continue;
			if (payload == NULL)
				payload = palloc(state->payload_size);
			hnsw_read_payload(state->index, &finetid, state->payload_size, payload);
			if (memcmp(payload, state->payload, state->payload_size) != 0)
				continue;
		}
		if (add_heap_tid(state, hnsw_walk_tid(state->walk, found[i].id)))
			return true;
	}
	return false;
}

/* ------------------------------------------------------------------------
 * Step a: the element and neighbour tuples, and the payload's fine tuples
 * ------------------------------------------------------------------------ */

/* a new block, exclusively locked; nobody else knows it yet */
static Buffer
extend_index(Relation index)
{
	Buffer		buffer;

	LockRelationForExtension(index, ExclusiveLock);
	buffer = ReadBuffer(index, P_NEW);
	LockBuffer(buffer, BUFFER_LOCK_EXCLUSIVE);
	UnlockRelationForExtension(index, ExclusiveLock);
	return buffer;
}

/* a locked new block registered in xlog as a fresh page of kind `flags` */
static Page
register_new_page(GenericXLogState *xlog, Buffer buffer, uint16 flags)
{
	Page		page = GenericXLogRegisterBuffer(xlog, buffer, GENERIC_XLOG_FULL_IMAGE);

	hnsw_init_page(page, flags);
	return page;
}

/* A new block, initialised as an element page and registered in xlog. */
static Page
new_element_page(Relation index, GenericXLogState *xlog, Buffer *buffer)
{
	*buffer = extend_index(index);
	return register_new_page(xlog, *buffer, HNSW_PAGE_ELEMENT);
}

static OffsetNumber
add_tuple(Relation index, Page page, void *tuple, Size size)
{
	OffsetNumber offset = PageAddItem(page, (Item) tuple, size,
									  InvalidOffsetNumber, false, false);

	if (offset == InvalidOffsetNumber)
		elog(ERROR, "failed to add a tuple of %zu bytes to index \"%s\"",
			 size, RelationGetRelationName(index));
	return offset;
}

/* free bytes of a fresh page, as hnsw_fine_piece_length counts them */
#define EMPTY_PAGE_ROOM \
	(BLCKSZ - SizeOfPageHeaderData - MAXALIGN(sizeof(HnswPageOpaqueData)))

/*
 * The new element's payload as fine tuples (README, Inserts).  Pieces are
 * cut by the bulk writer's rule (hnsw_fine_piece_length): the first on the
 * meta page's fine_insert_page when a piece fits there, the rest on fresh
 * pages, each on a later block than the one before.  The pieces that fit in
 * step a's record (`head` of them, as many pages as the record has left)
 * are written in it, with the element, so a crash never leaves an element
 * whose finetid leads nowhere.  A payload too long for that (thousands of
 * dimensions beyond the coarse prefix) is placed on fresh pages only, all
 * extended at once so that their blocks ascend, and the pieces beyond the
 * head are written first, last piece first, one record each: a crash
 * before step a leaves those pieces unreferenced (hierindex_check reports
 * them as orphaned fine tuples; they only take space).
 */
typedef struct FinePlan
{
	int			count;			/* pieces */
	Size	   *lengths;		/* payload bytes of each piece */
	Buffer	   *buffers;		/* the page of each head piece */
	int			head;			/* pieces written in step a; -1: not planned */
	bool		on_insert_page; /* the first piece goes on fine_insert_page */
	ItemPointerData tail;		/* first piece after the head, or invalid */
	BlockNumber last_block;		/* of the last piece */
} FinePlan;

/*
 * Cut a payload of `size` bytes into pieces, the first on a page with
 * first_room bytes free (0: fresh pages only).  Returns the count.
 */
static int
cut_payload(Size size, Size first_room, Size *lengths, bool *on_first)
{
	Size		done = 0;
	int			count = 0;
	Size		length = first_room > 0 ? hnsw_fine_piece_length(first_room, size) : 0;

	*on_first = length > 0;
	if (length > 0)
	{
		lengths[count++] = length;
		done = length;
	}
	while (done < size)
	{
		length = hnsw_fine_piece_length(EMPTY_PAGE_ROOM, size - done);
		lengths[count++] = length;
		done += length;
	}
	return count;
}

/* one fine tuple on a page registered in a record; returns its TID */
static void
add_fine_piece(Relation index, Page page, BlockNumber blkno, const char *data,
			   Size length, ItemPointer next, ItemPointer tid)
{
	Size		size = hnsw_fine_tuple_size(length);
	HnswFineTuple piece = palloc0(size);

	piece->type = HNSW_FINE_TUPLE;
	piece->length = (uint16) length;
	piece->next = *next;
	memcpy(piece->data, data, length);
	ItemPointerSet(tid, blkno, add_tuple(index, page, piece, size));
	pfree(piece);
}

/* byte offset of piece i in the payload */
static Size
piece_offset(const FinePlan *plan, int i)
{
	Size		offset = 0;

	for (int k = 0; k < i; k++)
		offset += plan->lengths[k];
	return offset;
}

/*
 * Before step a: plan the payload and, when it needs more fresh pages than
 * step a's record has left (`slots`), extend them all and write the pieces
 * beyond the first `slots`.  Otherwise the plan is made in step a, under
 * the lock of fine_insert_page.
 */
static void
plan_payload(InsertState *state, int slots, FinePlan *plan)
{
	Relation	index = state->index;
	int			most = (int) (state->payload_size / HNSW_FINE_MIN_PIECE) + 2;
	Buffer	   *extended;

	plan->lengths = palloc(sizeof(Size) * most);
	plan->buffers = palloc(sizeof(Buffer) * most);
	plan->head = -1;
	ItemPointerSetInvalid(&plan->tail);
	plan->count = cut_payload(state->payload_size, 0, plan->lengths,
							  &plan->on_insert_page);
	if (plan->count <= slots)
		return;

	extended = palloc(sizeof(Buffer) * plan->count);
	for (int i = 0; i < plan->count; i++)
		extended[i] = extend_index(index);
	plan->last_block = BufferGetBlockNumber(extended[plan->count - 1]);
	for (int i = plan->count - 1; i >= slots; i--)
	{
		GenericXLogState *xlog = GenericXLogStart(index);
		Page		page = register_new_page(xlog, extended[i], HNSW_PAGE_FINE);
		ItemPointerData next = plan->tail;

		add_fine_piece(index, page, BufferGetBlockNumber(extended[i]),
					   state->payload + piece_offset(plan, i), plan->lengths[i],
					   &next, &plan->tail);
		GenericXLogFinish(xlog);
		UnlockReleaseBuffer(extended[i]);
	}
	plan->head = slots;
	for (int i = 0; i < slots; i++)
		plan->buffers[i] = extended[i];
}

/*
 * In step a's record: the head pieces, last first (each one's next is
 * known when it is written), on the pages planned before or, when nothing
 * was planned, on fine_insert_page (locked by the caller, or InvalidBuffer)
 * and fresh pages.  Sets the element's finetid; returns the block that
 * becomes fine_insert_page (the last piece's, when it is a fresh page) or
 * InvalidBlockNumber.
 */
static BlockNumber
write_payload_head(InsertState *state, GenericXLogState *xlog, FinePlan *plan,
				   Buffer fine_buffer, int slots, ItemPointer finetid)
{
	Relation	index = state->index;
	Page	   *pages = palloc(sizeof(Page) * plan->count);
	ItemPointerData next = plan->tail;

	if (plan->head < 0)
	{
		Size		room = 0;

		if (BufferIsValid(fine_buffer) &&
			(HnswPageGetOpaque(BufferGetPage(fine_buffer))->flags & HNSW_PAGE_FINE))
			room = PageGetExactFreeSpace(BufferGetPage(fine_buffer));
		plan->count = cut_payload(state->payload_size, room, plan->lengths,
								  &plan->on_insert_page);
		if (plan->count > slots)
			plan->count = cut_payload(state->payload_size, 0, plan->lengths,
									  &plan->on_insert_page);
		Assert(plan->count <= slots);
		plan->head = plan->count;
		for (int i = 0; i < plan->count; i++)
		{
			if (i == 0 && plan->on_insert_page)
			{
				plan->buffers[i] = fine_buffer;
				pages[i] = GenericXLogRegisterBuffer(xlog, fine_buffer, 0);
			}
			else
			{
				plan->buffers[i] = extend_index(index);
				pages[i] = register_new_page(xlog, plan->buffers[i], HNSW_PAGE_FINE);
			}
		}
		plan->last_block = BufferGetBlockNumber(plan->buffers[plan->count - 1]);
	}
	else
	{
		for (int i = 0; i < plan->head; i++)
			pages[i] = register_new_page(xlog, plan->buffers[i], HNSW_PAGE_FINE);
	}

	for (int i = plan->head - 1; i >= 0; i--)
	{
		ItemPointerData tid;

		add_fine_piece(index, pages[i], BufferGetBlockNumber(plan->buffers[i]),
					   state->payload + piece_offset(plan, i), plan->lengths[i],
					   &next, &tid);
		next = tid;
	}
	*finetid = next;
	pfree(pages);
	if (plan->count == 1 && plan->on_insert_page)
		return InvalidBlockNumber;
	return plan->last_block;
}

/*
 * Write the element and its neighbour tuple, on the insert page when both
 * fit there, else on a new page (or, for vectors so long that the two never
 * share a page, on two new pages), with the head of its payload (if any),
 * and update the meta page: all in one record (a GenericXLog record holds
 * at most 4 pages: at most 2 for the element, the rest for the payload, the
 * meta page last).  `becomes_entry` (an empty index) also sets the entry
 * point.  Returns the element's TID.
 */
static void
write_element(InsertState *state, const HnswMetaPageData *old_meta,
			  bool becomes_entry, ItemPointer element_tid)
{
	Relation	index = state->index;
	int			m = state->shape.m;
	BlockNumber insert_page = old_meta->insert_page;
	BlockNumber fine_page = old_meta->fine_insert_page;
	Size		element_size = hnsw_element_tuple_size(state->shape.dimensions);
	Size		neighbor_size = hnsw_neighbor_tuple_size(state->level, m);
	Size		both = element_size + neighbor_size + sizeof(ItemIdData);
	Size		empty_space = EMPTY_PAGE_ROOM - sizeof(ItemIdData);
	int			fine_slots = MAX_GENERIC_XLOG_PAGES - 1 - (both > empty_space ? 2 : 1);
	HnswElementTuple element = palloc0(element_size);
	HnswNeighborTuple neighbors = palloc0(neighbor_size);
	GenericXLogState *xlog;
	Buffer		buffers[2] = {InvalidBuffer, InvalidBuffer};
	Buffer		fine_buffer = InvalidBuffer;
	Buffer		meta_buffer;
	Page		element_page = NULL;
	Page		neighbor_page = NULL;
	BlockNumber new_insert_page = InvalidBlockNumber;
	BlockNumber new_fine_page = InvalidBlockNumber;
	ItemPointerData neighbor_tid;
	ItemPointerData finetid;
	OffsetNumber offset;
	HnswMetaPage meta;
	FinePlan	plan;

	/* the tuples, lists packed at the front of each layer's slots */
	neighbors->type = HNSW_NEIGHBOR_TUPLE;
	neighbors->level = state->level;
	for (int i = 0; i < 2 * m + state->level * m; i++)
		ItemPointerSetInvalid(&neighbors->slots[i]);
	for (int layer = 0; layer <= state->level; layer++)
	{
		ItemPointerData *slots = neighbors->slots + hnsw_neighbor_offset(layer, m);

		for (int i = 0; i < state->layers[layer].count; i++)
			slots[i] = state->layers[layer].tids[i];
	}
	element->type = HNSW_ELEMENT_TUPLE;
	element->level = state->level;
	element->state = HNSW_ELEMENT_LIVE;
	element->heaptid_count = 1;
	element->heaptids[0] = state->heap_tid;
	for (int i = 1; i < HNSW_HEAPTIDS; i++)
		ItemPointerSetInvalid(&element->heaptids[i]);
	ItemPointerSetInvalid(&element->overflowtid);
	ItemPointerSetInvalid(&element->finetid);
	memcpy(element->vector, state->vector, sizeof(float) * state->shape.dimensions);

	/* a long payload's tail goes first, on fresh pages */
	memset(&plan, 0, sizeof(plan));
	if (state->payload_size > 0)
		plan_payload(state, fine_slots, &plan);

	/*
	 * The existing pages this record may change: the insert page and, when
	 * the payload is to be planned now, fine_insert_page.  Two existing pages
	 * are locked in block order (README, Locking); fresh pages, which nobody
	 * else knows, and the meta page come after them.
	 */
	if (insert_page == HNSW_METAPAGE_BLKNO || !block_exists(state, insert_page))
		insert_page = InvalidBlockNumber;
	if (state->payload_size == 0 || plan.head >= 0 ||
		fine_page == HNSW_METAPAGE_BLKNO || fine_page == insert_page ||
		!block_exists(state, fine_page))
		fine_page = InvalidBlockNumber;
	if (insert_page != InvalidBlockNumber)
		buffers[1] = ReadBuffer(index, insert_page);
	if (fine_page != InvalidBlockNumber)
		fine_buffer = ReadBuffer(index, fine_page);
	if (BufferIsValid(fine_buffer) && fine_page < insert_page)
		LockBuffer(fine_buffer, BUFFER_LOCK_EXCLUSIVE);
	if (BufferIsValid(buffers[1]))
		LockBuffer(buffers[1], BUFFER_LOCK_EXCLUSIVE);
	if (BufferIsValid(fine_buffer) && !(fine_page < insert_page))
		LockBuffer(fine_buffer, BUFFER_LOCK_EXCLUSIVE);
	if (BufferIsValid(fine_buffer))
		hnsw_check_page(index, BufferGetPage(fine_buffer), fine_page);

	xlog = GenericXLogStart(index);

	/*
	 * First choice: both on the insert page.  When the two do not fit there
	 * but would share an empty page, the insert page is full for good and a
	 * new page takes both.  Only an element that nearly fills a page alone
	 * (very long vectors) is split from its neighbour tuple, which then goes
	 * to the insert page when it fits, else to a second new page.
	 */
	if (BufferIsValid(buffers[1]))
	{
		Page		page = BufferGetPage(buffers[1]);

		hnsw_check_page(index, page, insert_page);
		if (PageGetFreeSpace(page) >= both)
		{
			buffers[0] = buffers[1];
			buffers[1] = InvalidBuffer;
			element_page = GenericXLogRegisterBuffer(xlog, buffers[0], 0);
		}
		else if (both > empty_space &&
				 PageGetFreeSpace(page) >= neighbor_size)
			neighbor_page = GenericXLogRegisterBuffer(xlog, buffers[1], 0);
		else
		{
			UnlockReleaseBuffer(buffers[1]);
			buffers[1] = InvalidBuffer;
		}
	}
	if (element_page == NULL)
	{
		/* a fresh page: nobody else can lock it, so holding two is safe */
		element_page = new_element_page(index, xlog, &buffers[0]);
		if (neighbor_page == NULL)
			new_insert_page = BufferGetBlockNumber(buffers[0]);
	}
	if (neighbor_page == NULL)
	{
		if (PageGetFreeSpace(element_page) >= both)
			neighbor_page = element_page;
		else
		{
			neighbor_page = new_element_page(index, xlog, &buffers[1]);
			new_insert_page = BufferGetBlockNumber(buffers[1]);
		}
	}

	if (state->payload_size > 0)
	{
		new_fine_page = write_payload_head(state, xlog, &plan, fine_buffer,
										   fine_slots, &finetid);
		element->finetid = finetid;
	}

	offset = add_tuple(index, neighbor_page, neighbors, neighbor_size);
	ItemPointerSet(&neighbor_tid,
				   BufferGetBlockNumber(neighbor_page == element_page ? buffers[0] : buffers[1]),
				   offset);
	element->neighbortid = neighbor_tid;
	offset = add_tuple(index, element_page, element, element_size);
	ItemPointerSet(element_tid, BufferGetBlockNumber(buffers[0]), offset);

	meta = register_meta(index, xlog, &meta_buffer);
	meta->element_count++;
	meta->heaptid_count++;
	if (new_insert_page != InvalidBlockNumber)
		meta->insert_page = new_insert_page;
	if (new_fine_page != InvalidBlockNumber)
		meta->fine_insert_page = new_fine_page;
	if (becomes_entry)
	{
		meta->entry_point = *element_tid;
		meta->max_level = state->level;
	}

	GenericXLogFinish(xlog);
	UnlockReleaseBuffer(meta_buffer);
	if (state->payload_size > 0)
	{
		for (int i = 0; i < plan.head; i++)
			if (plan.buffers[i] != fine_buffer)
				UnlockReleaseBuffer(plan.buffers[i]);
	}
	if (BufferIsValid(fine_buffer))
		UnlockReleaseBuffer(fine_buffer);
	if (BufferIsValid(buffers[1]))
		UnlockReleaseBuffer(buffers[1]);
	UnlockReleaseBuffer(buffers[0]);
	pfree(element);
	pfree(neighbors);
}

/* ------------------------------------------------------------------------
 * Step a in a free slot (README, Inserts: reuse)
 * ------------------------------------------------------------------------ */

/* pages named by the free space map that one insert tries before extending */
#define REUSE_PAGE_TRIES		4

/* pages a reuse record may change besides the meta page */
#define REUSE_MAX_PAGES			(MAX_GENERIC_XLOG_PAGES - 1)

/* a free slot chosen for the new element, and what its record changes */
typedef struct ReuseSlot
{
	ItemPointerData tid;		/* its element tuple */
	uint8		state;			/* the state byte it was chosen with (free) */
	ItemPointerData neighbortid;
	ItemPointerData finetid;
	int			pieces;			/* fine tuples of its payload */
	ItemPointerData piece_tids[REUSE_MAX_PAGES];
	Size		piece_lengths[REUSE_MAX_PAGES];
	int			nblocks;		/* the blocks it changes, ascending */
	BlockNumber blocks[REUSE_MAX_PAGES];
} ReuseSlot;

/* add blkno to the slot's block set (kept ascending); false when full */
static bool
reuse_add_block(ReuseSlot *slot, BlockNumber blkno)
{
	int			i;

	for (i = 0; i < slot->nblocks; i++)
		if (slot->blocks[i] == blkno)
			return true;
	if (slot->nblocks == REUSE_MAX_PAGES)
		return false;
	for (i = slot->nblocks; i > 0 && slot->blocks[i - 1] > blkno; i--)
		slot->blocks[i] = slot->blocks[i - 1];
	slot->blocks[i] = blkno;
	slot->nblocks++;
	return true;
}

/*
 * Under a share lock of the page the free space map named: the free slot
 * whose lists fit the new element's level most tightly (the smallest level
 * at least its own, so that slots of high levels stay for elements that
 * need them).  *page_space gets what the map should say of the page.
 * False when the page has no such slot.
 */
static bool
choose_free_slot(InsertState *state, BlockNumber blkno, ReuseSlot *slot,
				 Size *page_space)
{
	Buffer		buffer;
	Page		page;
	int			best = -1;
	int			best_capacity = INT_MAX;

	*page_space = 0;
	if (!block_exists(state, blkno))
		return false;
	buffer = ReadBuffer(state->index, blkno);
	LockBuffer(buffer, BUFFER_LOCK_SHARE);
	page = BufferGetPage(buffer);
	if (PageIsNew(page))
	{
		UnlockReleaseBuffer(buffer);
		return false;
	}
	hnsw_check_page(state->index, page, blkno);
	*page_space = hnsw_page_free_slot_space(page, blkno, state->shape.m);
	if (*page_space > 0)
	{
		for (OffsetNumber offset = FirstOffsetNumber;
			 offset <= PageGetMaxOffsetNumber(page); offset++)
		{
			int			capacity = hnsw_free_slot_capacity(page, blkno, offset,
														   state->shape.m);

			if (capacity >= state->level && capacity < best_capacity &&
				page_element(state, page, offset) != NULL)
			{
				best = offset;
				best_capacity = capacity;
			}
		}
	}
	if (best >= 0)
	{
		HnswElementTuple element = page_element(state, page, best);

		ItemPointerSet(&slot->tid, blkno, best);
		slot->state = element->state;
		slot->neighbortid = element->neighbortid;
		slot->finetid = element->finetid;
	}
	UnlockReleaseBuffer(buffer);
	return best >= 0;
}

/*
 * The blocks the slot's record changes: its element's, its neighbour
 * tuple's, its payload pieces' (read now, one share lock at a time: a
 * chain's structure never changes, only the bytes it carries).  False when
 * they are more than one record can take with the meta page (a payload of
 * many pieces): the slot is left for REINDEX.
 */
static bool
plan_reuse(InsertState *state, ReuseSlot *slot)
{
	slot->nblocks = 0;
	slot->pieces = 0;
	if (!ItemPointerIsValid(&slot->neighbortid) ||
		!block_exists(state, ItemPointerGetBlockNumber(&slot->neighbortid)))
		return false;
	(void) reuse_add_block(slot, ItemPointerGetBlockNumber(&slot->tid));
	(void) reuse_add_block(slot, ItemPointerGetBlockNumber(&slot->neighbortid));
	if (state->payload_size == 0)
		return true;
	if (!ItemPointerIsValid(&slot->finetid))
		return false;
	slot->pieces = hnsw_payload_pieces(state->index, &slot->finetid,
									   state->payload_size, slot->piece_tids,
									   slot->piece_lengths, REUSE_MAX_PAGES);
	if (slot->pieces < 0)
		return false;
	for (int i = 0; i < slot->pieces; i++)
		if (!reuse_add_block(slot, ItemPointerGetBlockNumber(&slot->piece_tids[i])))
			return false;
	return true;
}

/*
 * Write the new element into the slot in one GenericXLog record: its
 * element tuple (the state byte one generation on, the slot's empty
 * heap-TID chain kept), its lists in the slot's neighbour tuple, its payload
 * in the slot's fine tuples, and the meta page's count (and the entry point
 * when `becomes_entry`).  The pages are locked in block order, the meta page
 * last (README, Locking), and everything is checked again under the locks:
 * false, with nothing written, when another insert took the slot first or
 * its tuples are not what the plan saw.  *page_space gets what the free
 * space map should now say of the element's page.
 */
static bool
write_reused_element(InsertState *state, const ReuseSlot *slot,
					 bool becomes_entry, Size *page_space)
{
	Relation	index = state->index;
	int			m = state->shape.m;
	Buffer		buffers[REUSE_MAX_PAGES];
	Page		pages[REUSE_MAX_PAGES];
	GenericXLogState *xlog;
	HnswElementTuple element = NULL;
	HnswNeighborTuple neighbors = NULL;
	HnswFineTuple pieces[REUSE_MAX_PAGES];
	Buffer		meta_buffer;
	HnswMetaPage meta;
	int			element_page = -1;
	int			neighbor_capacity = -1;
	bool		valid = true;
	Size		done = 0;

	for (int i = 0; i < slot->nblocks; i++)
	{
		buffers[i] = ReadBuffer(index, slot->blocks[i]);
		LockBuffer(buffers[i], BUFFER_LOCK_EXCLUSIVE);
		hnsw_check_page(index, BufferGetPage(buffers[i]), slot->blocks[i]);
	}
	xlog = GenericXLogStart(index);
	for (int i = 0; i < slot->nblocks; i++)
		pages[i] = GenericXLogRegisterBuffer(xlog, buffers[i], 0);

	for (int i = 0; i < slot->nblocks && valid; i++)
	{
		if (slot->blocks[i] == ItemPointerGetBlockNumber(&slot->tid))
		{
			element_page = i;
			element = page_element(state, pages[i], ItemPointerGetOffsetNumber(&slot->tid));
			valid = element != NULL && element->state == slot->state &&
				HnswElementState(element) == HNSW_ELEMENT_FREE &&
				ItemPointerEquals(&element->neighbortid, (ItemPointer) &slot->neighbortid) &&
				(state->payload_size == 0 ||
				 ItemPointerEquals(&element->finetid, (ItemPointer) &slot->finetid));
		}
		if (valid && slot->blocks[i] == ItemPointerGetBlockNumber(&slot->neighbortid))
		{
			OffsetNumber offset = ItemPointerGetOffsetNumber(&slot->neighbortid);

			neighbors = hnsw_page_neighbors(pages[i], offset, 0, m);
			if (neighbors != NULL)
				neighbor_capacity =
					hnsw_neighbor_tuple_capacity(ItemIdGetLength(PageGetItemId(pages[i], offset)),
												 m);
			valid = neighbors != NULL && neighbor_capacity >= state->level;
		}
		for (int p = 0; p < slot->pieces && valid; p++)
		{
			if (slot->blocks[i] != ItemPointerGetBlockNumber(&slot->piece_tids[p]))
				continue;
			pieces[p] = hnsw_page_tuple(pages[i], ItemPointerGetOffsetNumber(&slot->piece_tids[p]),
								   HNSW_FINE_TUPLE,
								   offsetof(HnswFineTupleData, data) + slot->piece_lengths[p]);
			valid = pieces[p] != NULL && pieces[p]->length == slot->piece_lengths[p];
		}
	}
	if (!valid || element == NULL || neighbors == NULL)
	{
		GenericXLogAbort(xlog);
		for (int i = slot->nblocks - 1; i >= 0; i--)
			UnlockReleaseBuffer(buffers[i]);
		*page_space = 0;
		return false;
	}

	/* the element: a new generation of the slot; its chain stays (empty) */
	element->type = HNSW_ELEMENT_TUPLE; /* the last element's hint goes */
	element->level = state->level;
	element->state = HnswElementReusedState(element);
	element->heaptid_count = 1;
	element->heaptids[0] = state->heap_tid;
	for (int i = 1; i < HNSW_HEAPTIDS; i++)
		ItemPointerSetInvalid(&element->heaptids[i]);
	memcpy(element->vector, state->vector, sizeof(float) * state->shape.dimensions);

	/*
	 * Its lists; every slot the tuple has is cleared first (a slot of a
	 * higher level keeps its size: the layers above ours stay empty).
	 */
	neighbors->level = state->level;
	for (int i = 0; i < 2 * m + neighbor_capacity * m; i++)
		ItemPointerSetInvalid(&neighbors->slots[i]);
	for (int layer = 0; layer <= state->level; layer++)
	{
		ItemPointerData *slots = neighbors->slots + hnsw_neighbor_offset(layer, m);

		for (int i = 0; i < state->layers[layer].count; i++)
			slots[i] = state->layers[layer].tids[i];
	}

	/* its payload, piece by piece in the same chain */
	for (int p = 0; p < slot->pieces; p++)
	{
		memcpy(pieces[p]->data, state->payload + done, slot->piece_lengths[p]);
		done += slot->piece_lengths[p];
	}

	meta = register_meta(index, xlog, &meta_buffer);
	meta->heaptid_count++;
	if (becomes_entry)
	{
		meta->entry_point = slot->tid;
		meta->max_level = state->level;
	}
	*page_space = hnsw_page_free_slot_space(pages[element_page],
											slot->blocks[element_page], m);
	GenericXLogFinish(xlog);
	UnlockReleaseBuffer(meta_buffer);
	for (int i = slot->nblocks - 1; i >= 0; i--)
		UnlockReleaseBuffer(buffers[i]);
	return true;
}

/*
 * Step a in a free slot, when the free space map names a page with one of
 * the new element's level or above and the slot's tuples fit one record.
 * Returns true with the element's TID set; false: step a extends as usual.
 */
static bool
reuse_free_slot(InsertState *state, bool becomes_entry, ItemPointer element_tid)
{
	Relation	index = state->index;
	Size		needed = hnsw_free_slot_space(state->level);
	BlockNumber blkno = GetPageWithFreeSpace(index, needed);

	for (int tries = 0; blkno != InvalidBlockNumber && tries < REUSE_PAGE_TRIES; tries++)
	{
		ReuseSlot	slot;
		Size		page_space;

		CHECK_FOR_INTERRUPTS();
		if (choose_free_slot(state, blkno, &slot, &page_space))
		{
			if (!plan_reuse(state, &slot))
				page_space = 0; /* not reusable by one record: leave the page */
			else if (write_reused_element(state, &slot, becomes_entry, &page_space))
			{
				RecordPageWithFreeSpace(index, blkno, page_space);
				*element_tid = slot.tid;
				return true;
			}
			else
				continue;		/* taken meanwhile: look at the page again */
		}
		blkno = RecordAndGetPageWithFreeSpace(index, blkno, page_space, needed);
	}
	return false;
}

/* ------------------------------------------------------------------------
 * Step b: back links
 * ------------------------------------------------------------------------ */

/* pair distance of two pool members, for Algorithm 4 */
static float
prune_pair_distance(void *context, int32 a, int32 b)
{
	PrunePool  *pool = context;

	return graph_metric_distance(pool->metric, pool->vectors[a],
								 pool->vectors[b], pool->dimensions);
}

/*
 * What Algorithm 4 keeps, at most `width`, of the full list `list` plus the
 * new element, as seen from the target element (whose vector is `base`).
 * The members' vectors come through the insert's walk, which has read most
 * of them already (they lie near the new element) and reads the others now,
 * under share locks, one page at a time.  Writes the kept TIDs to out[] and
 * returns how many.
 */
static int
prune_list(InsertState *state, const float *base, const ItemPointerData *list,
		   int count, ItemPointer new_tid, const float *new_vector, int width,
		   ItemPointerData *out)
{
	int			dims = state->shape.dimensions;
	GraphNeighbor sorted[2 * GRAPH_MAX_M + 1];
	GraphNeighbor kept[2 * GRAPH_MAX_M + 1];
	int32		handles[2 * GRAPH_MAX_M];
	ItemPointerData tids[2 * GRAPH_MAX_M + 1];
	const float *vectors[2 * GRAPH_MAX_M + 1];
	PrunePool	pool = {state->shape.metric, dims, vectors};
	int			pooled = 0;
	int			nkept;

	/* read first: a new handle may move the walk's vectors */
	for (int i = 0; i < count; i++)
	{
		handles[i] = hnsw_walk_handle(state->walk, (ItemPointer) &list[i]);
		(void) hnsw_walk_vector(state->walk, handles[i]);
	}
	/* the new element first, then the list's members */
	for (int i = -1; i < count; i++)
	{
		const float *vector;

		if (i < 0)
		{
			vector = new_vector;
			tids[pooled] = *new_tid;
		}
		else
		{
			vector = hnsw_walk_vector(state->walk, handles[i]);
			if (vector == NULL)
				continue;		/* a bad link: pruning drops it */
			if (!hnsw_walk_is_live(state->walk, handles[i]))
				continue;		/* deleted: VACUUM is unlinking it */
			tids[pooled] = list[i];
		}
		vectors[pooled] = vector;
		sorted[pooled].id = pooled;
		sorted[pooled].distance = graph_metric_distance(state->shape.metric, base,
														vector, dims);
		pooled++;
	}
	qsort(sorted, pooled, sizeof(GraphNeighbor), graph_neighbor_compare);
	nkept = graph_select_neighbors(sorted, pooled, width, prune_pair_distance,
								   &pool, kept);
	for (int i = 0; i < nkept; i++)
		out[i] = tids[kept[i].id];
	return nkept;
}

/*
 * Give the element at `target` a link to `new_tid` (whose vector is
 * new_vector) on `layer`.  The list is re-read under the exclusive lock:
 * appended to when there is room, else pruned from vectors read beforehand,
 * and redone if the list changed in between.  The target's vector comes
 * from the walk through `target_handle`.  may_prune false: a full list is
 * left as it is.  Returns whether the list links to new_tid afterwards
 * (false: the target is not a live element of that layer, the list is
 * full and may not be pruned, or the pruning left the new element out).
 */
static bool
add_back_link(InsertState *state, ItemPointer target, int32 target_handle,
			  int layer, ItemPointer new_tid, const float *new_vector,
			  bool may_prune)
{
	int			m = state->shape.m;
	int			width = hnsw_layer_width(layer, m);
	const float *base = NULL;
	ElementFacts facts;

	/* no link to an element VACUUM is unlinking (README, VACUUM) */
	if (!read_element(state, target, &facts, NULL) || facts.level < layer ||
		!facts.live)
		return false;

	for (;;)
	{
		ItemPointerData seen[2 * GRAPH_MAX_M];
		ItemPointerData pruned[2 * GRAPH_MAX_M];
		ItemPointerData current[2 * GRAPH_MAX_M];
		BlockNumber blkno = ItemPointerGetBlockNumber(&facts.neighbortid);
		int			seen_count;
		int			pruned_count = -1;
		int			current_count;
		GenericXLogState *xlog;
		Buffer		buffer;
		Page		page;
		HnswNeighborTuple tuple;
		ItemPointerData *slots;

		CHECK_FOR_INTERRUPTS();

		seen_count = read_list(state, &facts.neighbortid, layer, seen);
		if (seen_count < 0 || list_contains(seen, seen_count, new_tid))
			return seen_count >= 0;
		if (seen_count >= width && !may_prune)
			return false;
		if (seen_count >= width)
		{
			/*
			 * A copy: the walk's vectors may move as it meets new elements.
			 * One buffer serves every back link of the state.
			 */
			if (base == NULL)
			{
				const float *vector = hnsw_walk_vector(state->walk, target_handle);

				if (vector == NULL)
					return false;
				if (state->target_vector == NULL)
					state->target_vector = palloc(sizeof(float) * state->shape.dimensions);
				memcpy(state->target_vector, vector, sizeof(float) * state->shape.dimensions);
				base = state->target_vector;
			}
			pruned_count = prune_list(state, base, seen, seen_count, new_tid,
									  new_vector, width, pruned);
		}

		buffer = ReadBuffer(state->index, blkno);
		LockBuffer(buffer, BUFFER_LOCK_EXCLUSIVE);
		hnsw_check_page(state->index, BufferGetPage(buffer), blkno);
		xlog = GenericXLogStart(state->index);
		page = GenericXLogRegisterBuffer(xlog, buffer, 0);
		tuple = hnsw_page_neighbors(page, ItemPointerGetOffsetNumber(&facts.neighbortid),
									layer, m);
		if (tuple == NULL)
		{
			GenericXLogAbort(xlog);
			UnlockReleaseBuffer(buffer);
			return false;
		}
		slots = tuple->slots + hnsw_neighbor_offset(layer, m);
		current_count = hnsw_neighbor_layer_list(tuple, layer, m, current);

		if (list_contains(current, current_count, new_tid))
		{
			/* a concurrent insert linked us already */
			GenericXLogAbort(xlog);
			UnlockReleaseBuffer(buffer);
			return true;
		}
		if (current_count < width)
		{
			slots[current_count] = *new_tid;
			GenericXLogFinish(xlog);
			UnlockReleaseBuffer(buffer);
			return true;
		}
		if (pruned_count >= 0 && current_count == seen_count &&
			memcmp(current, seen, sizeof(ItemPointerData) * seen_count) == 0)
		{
			for (int i = 0; i < width; i++)
			{
				if (i < pruned_count)
					slots[i] = pruned[i];
				else
					ItemPointerSetInvalid(&slots[i]);
			}
			GenericXLogFinish(xlog);
			UnlockReleaseBuffer(buffer);
			return list_contains(pruned, pruned_count, new_tid);
		}

		/* the list filled up or changed since we read it: prune afresh */
		GenericXLogAbort(xlog);
		UnlockReleaseBuffer(buffer);
	}
}

/*
 * hnsw_add_link's state: an insert's, of which step b reads the index, its
 * shape, the walk, the cached relation size (an index never shrinks, so it
 * stays valid from one link to the next) and the buffer of the target's
 * vector.
 */
struct HnswLinker
{
	InsertState state;
};

HnswLinker *
hnsw_linker_begin(Relation index, const HnswShape *shape, HnswWalk *walk)
{
	HnswLinker *linker = palloc0(sizeof(HnswLinker));

	linker->state.index = index;
	linker->state.shape = *shape;
	linker->state.walk = walk;
	linker->state.nblocks = RelationGetNumberOfBlocks(index);
	return linker;
}

bool
hnsw_add_link(HnswLinker *linker, ItemPointer target, int32 target_handle,
			  int layer, ItemPointer new_tid, const float *new_vector,
			  bool may_prune)
{
	return add_back_link(&linker->state, target, target_handle, layer, new_tid,
						 new_vector, may_prune);
}

void
hnsw_linker_end(HnswLinker *linker)
{
	if (linker->state.target_vector != NULL)
		pfree(linker->state.target_vector);
	pfree(linker);
}

/* ------------------------------------------------------------------------
 * The insert
 * ------------------------------------------------------------------------ */

/*
 * `level`, at most the largest whose neighbour tuple fits on a page: the
 * capacity of the room an empty page has for one tuple (only a concern for
 * large m: at m = 100 a level above 11 would not fit, a draw of about
 * 1e-24).
 */
static int
cap_level(int level, int m)
{
	Size		limit = BLCKSZ - MAXALIGN(SizeOfPageHeaderData) -
		MAXALIGN(sizeof(HnswPageOpaqueData)) - sizeof(ItemIdData);

	return Min(level, Max(0, hnsw_neighbor_tuple_capacity(limit, m)));
}

/*
 * Walk from the entry point and choose the neighbours of every layer.
 * Returns true when the vector went to an existing identical element.
 */
static bool
choose_neighbors(InsertState *state, const HnswMetaPageData *meta)
{
	GraphAccess *access;
	GraphWalkScratch *scratch;
	GraphNeighbor *found;
	GraphNeighbor *live;
	GraphNeighbor *selected;
	int			ef = state->shape.ef_construction;
	int			m = state->shape.m;
	int			top = meta->max_level;
	int32		entry;
	float		entry_distance;

	state->walk = hnsw_walk_begin(state->index, &state->shape, ef, true);
	hnsw_walk_reset(state->walk, state->vector);
	access = hnsw_walk_access(state->walk);
	scratch = hnsw_walk_scratch(state->walk);
	found = palloc(sizeof(GraphNeighbor) * (ef + 2));
	live = palloc(sizeof(GraphNeighbor) * (ef + 2));
	selected = palloc(sizeof(GraphNeighbor) * (m + 1));

	entry = hnsw_walk_handle(state->walk, (ItemPointer) &meta->entry_point);
	entry_distance = access->distance(access->context, entry);

	for (int layer = top; layer > state->level; layer--)
		entry = graph_walk_greedy(access, entry, &entry_distance, layer);

	for (int layer = Min(state->level, top); layer >= 0; layer--)
	{
		InsertLayer *chosen = &state->layers[layer];
		int			count;
		int			live_count;
		int			kept;

		count = graph_walk_layer(access, scratch, entry, entry_distance, ef,
								 layer, found);
		if (count == 0)
			continue;			/* nothing reachable (only on a damaged graph) */

		if (layer == 0 && add_to_duplicate(state, found, count))
			return true;

		/*
		 * Deleted elements led the walk on, but nobody links to them any
		 * more: VACUUM is unlinking them (README, VACUUM).  found[0] stays
		 * the next layer's entry whatever it is.
		 */
		live_count = 0;
		for (int i = 0; i < count; i++)
			if (hnsw_walk_is_live(state->walk, found[i].id))
				live[live_count++] = found[i];
		kept = graph_select_neighbors(live, live_count, m, hnsw_walk_pair_distance,
									  state->walk, selected);
		chosen->count = kept;
		for (int i = 0; i < kept; i++)
		{
			chosen->handles[i] = selected[i].id;
			chosen->distances[i] = selected[i].distance;
			chosen->tids[i] = *hnsw_walk_tid(state->walk, selected[i].id);
		}
		entry = found[0].id;
		entry_distance = found[0].distance;
	}
	return false;
}

static void
insert_vector_in_context(Relation index, const float *vector, const char *payload,
						 ItemPointer heap_tid)
{
	InsertState *state = palloc0(sizeof(InsertState));
	HnswMetaPageData meta;
	LOCKMODE	entry_lock = ShareLock;
	bool		becomes_entry;
	ItemPointerData element_tid;

	state->index = index;
	state->vector = vector;
	state->heap_tid = *heap_tid;
	state->nblocks = RelationGetNumberOfBlocks(index);

	/*
	 * Block 0's heavyweight lock guards the entry point (README "Locking").
	 * A would-be new top must wait for the inserts in flight and hold off the
	 * others for its whole insert, so that the entry point only ever moves to
	 * a fully linked element.  Share and exclusive are taken one after the
	 * other, never upgraded in place (two upgraders would deadlock).
	 */
	LockPage(index, HNSW_METAPAGE_BLKNO, entry_lock);
	hnsw_read_meta(index, &meta);
	hnsw_shape_from_meta(&meta, &state->shape);
	state->payload = payload;
	state->payload_size = meta.payload_size;
	if ((payload != NULL) != (meta.payload_size > 0))
		elog(ERROR, "an insert into index \"%s\" %s a payload, the index has payloads of %u bytes",
			 RelationGetRelationName(index), payload != NULL ? "has" : "lacks",
			 meta.payload_size);
	state->level = cap_level(graph_draw_level(pg_prng_uint64(&pg_global_prng_state),
											  0, state->shape.m),
							 state->shape.m);
	if (!ItemPointerIsValid(&meta.entry_point) || state->level > meta.max_level)
	{
		UnlockPage(index, HNSW_METAPAGE_BLKNO, entry_lock);
		entry_lock = ExclusiveLock;
		LockPage(index, HNSW_METAPAGE_BLKNO, entry_lock);
		hnsw_read_meta(index, &meta);
	}
	becomes_entry = !ItemPointerIsValid(&meta.entry_point) ||
		state->level > meta.max_level;

	if (ItemPointerIsValid(&meta.entry_point) &&
		choose_neighbors(state, &meta))
	{
		/* it shares an identical element's tuple */
		hnsw_walk_end(state->walk);
		UnlockPage(index, HNSW_METAPAGE_BLKNO, entry_lock);
		return;
	}

	/*
	 * step a, in a slot VACUUM freed if there is one, else on the insert
	 * page or a new one; an empty index gets its entry point in the same
	 * record
	 */
	if (!reuse_free_slot(state, !ItemPointerIsValid(&meta.entry_point),
						 &element_tid))
		write_element(state, &meta, !ItemPointerIsValid(&meta.entry_point),
					  &element_tid);

	/* step b */
	for (int layer = 0; layer <= state->level; layer++)
	{
		InsertLayer *chosen = &state->layers[layer];

		for (int i = 0; i < chosen->count; i++)
			add_back_link(state, &chosen->tids[i], chosen->handles[i],
						  layer, &element_tid, state->vector, true);
	}

	/* the walk keeps a buffer pinned */
	if (state->walk != NULL)
		hnsw_walk_end(state->walk);

	/* step c: now fully linked, it may become the entry point */
	if (becomes_entry && ItemPointerIsValid(&meta.entry_point))
	{
		GenericXLogState *xlog = GenericXLogStart(index);
		Buffer		meta_buffer;
		HnswMetaPage page_meta = register_meta(index, xlog, &meta_buffer);

		page_meta->entry_point = element_tid;
		page_meta->max_level = state->level;
		GenericXLogFinish(xlog);
		UnlockReleaseBuffer(meta_buffer);
	}

	UnlockPage(index, HNSW_METAPAGE_BLKNO, entry_lock);
}

void
hnsw_insert_vector(Relation index, const float *vector, const char *payload,
				   ItemPointer heap_tid)
{
	MemoryContext insert_context = AllocSetContextCreate(CurrentMemoryContext,
														 "hnsw insert",
														 ALLOCSET_DEFAULT_SIZES);
	MemoryContext old_context = MemoryContextSwitchTo(insert_context);

	insert_vector_in_context(index, vector, payload, heap_tid);

	MemoryContextSwitchTo(old_context);
	MemoryContextDelete(insert_context);
}

bool
hnsw_insert(Relation index, Datum *values, bool *isnull,
			ItemPointer heap_tid, Relation heap,
			IndexUniqueCheck check_unique, bool index_unchanged,
			IndexInfo *info)
{
	MemoryContext insert_context;
	MemoryContext old_context;
	HnswMetaPageData meta;
	HnswShape	shape;
	float	   *vector;

	if (isnull[0])
		return false;			/* NULLs are not indexed */

	insert_context = AllocSetContextCreate(CurrentMemoryContext,
										   "hnsw insert",
										   ALLOCSET_DEFAULT_SIZES);
	old_context = MemoryContextSwitchTo(insert_context);

	/* dimensions and metric are fixed at build time: any meta copy will do */
	hnsw_read_meta(index, &meta);
	hnsw_shape_from_meta(&meta, &shape);
	vector = palloc(sizeof(float) * shape.dimensions);
	if (hnsw_prepare_vector(&shape, values[0], vector))
		insert_vector_in_context(index, vector, NULL, heap_tid);

	MemoryContextSwitchTo(old_context);
	MemoryContextDelete(insert_context);
	return false;
}
