/*
 * hnsw_walk.c — the graph stored in an hnsw index's pages, seen as a
 * GraphAccess, so that index scans and single inserts search it with the
 * graph engine's own code (graph_walk_greedy, graph_walk_layer,
 * graph_select_neighbors in src/graph/graph_walk.c).
 *
 * Handles.  The engine names elements by dense int32 numbers.  A walk gives
 * one to each element tuple the first time it meets its TID (an open
 * addressing table keyed by the 48-bit TID) and keeps per-handle facts in one
 * array: the TID, the element's distance to the query once computed, its
 * level, its neighbour tuple's TID, its first heap TID and the head of its
 * heap-TID overflow chain.  Visited marks are a generation counter per
 * handle, so a layer search starts in O(1).  The heap TIDs of an element that
 * several rows share (inline, then the overflow chain) are read only when a
 * scan asks for them, one tuple under one share lock at a time.
 *
 * One visit per element.  distance() reads the element tuple once, under a
 * share lock, and computes the distance directly on the page (no copy unless
 * the walk keeps vectors for an insert's neighbour selection); the same visit
 * notes what neighbors() will need later, so the greedy descent, which asks
 * for the same distances again and again, never rereads a page for them.
 * neighbors() copies one layer's slots while the lock is held, releases it,
 * and only then turns TIDs into handles (which may allocate).
 *
 * Memory latency is the cost that matters: a 768-d vector is 48 cache lines
 * of a page nobody touched recently.  The walk asks for the distances of all
 * new neighbours of an expanded element at once (GraphAccess.distances), and
 * walk_distances first issues prefetches for every one of them (buffer
 * header, for writing, as pinning and locking update it atomically: 5% more
 * queries per second than a plain prefetch on both benchmark sets; page
 * header, special space, line pointer, the tuple's first lines: the
 * hardware prefetcher streams the rest), then reads them one by one as
 * before, so the misses overlap instead of being paid one after another;
 * while it reads one it prefetches the whole tuple of the next (3% more
 * queries per second on Fashion-MNIST, whose 784-d tuples span 50 lines;
 * two ahead did no better).
 * The prefetches use only hints (see walk_prefetch_page); every read still
 * pins, share-locks and checks the page.  Reading vectors without the
 * content lock would be possible (element tuples never move and their
 * vectors never change once written) but the lock is cheap next to the
 * misses it would save nothing on, and neighbour lists do change, so the
 * rules of README (Locking) stay as they are.  Keeping more pins than the
 * last one (a small pin cache) was measured and did not pay: the breadth-
 * first layout makes consecutive reads share pages, not reads far apart.
 *
 * Buffers are the next cost.  A walk never holds two content locks
 * (see README, Locking), but it keeps the pin of the last block it used, so
 * consecutive visits to one page (an element and its neighbour tuple; the
 * breadth-first layout puts neighbours together) cost a lock and an unlock
 * only (the page is checked once per pin).  When it moves to another block
 * it first tries the buffer that block was found in last time, remembered
 * per index in a backend-local array that outlives the walk:
 * ReadRecentBuffer() checks that buffer's tag and pins it without the
 * buffer-mapping lookup.  A stale hint just falls back to
 * ReadBuffer(), so the array needs no invalidation.
 *
 * Payloads.  A matryoshka scan reads the payloads of its candidates through
 * its walk (hnsw_walk_read_payloads): the same prefetches for all of them
 * first, then each chain through the walk's pin and hints, with the page
 * layer's checks (hnsw_read_payload_from).  On the 768-d bench set this took
 * the payload reads from about 17% of a query to 8%.
 *
 * Untrusted links.  A TID outside the relation, on the meta page, not
 * pointing at a normal item of the right type, or too short for its shape,
 * makes the element unreachable (distance +infinity, no neighbours): never a
 * crash, and hierindex_check reports it.  A page that is not ours at all is
 * an ERROR from hnsw_check_page.
 */
#include "postgres.h"

#include <math.h>

#include "storage/buf_internals.h"
#include "storage/bufmgr.h"
#include "storage/bufpage.h"
#include "utils/float.h"
#include "utils/memutils.h"
#include "utils/rel.h"

#include "hnsw/hnsw.h"

/* cache lines of an element tuple prefetched ahead of its distance */
#ifndef WALK_PREFETCH_LINES
#define WALK_PREFETCH_LINES 4
#endif

/* HnswWalkElement.state */
#define WALK_UNREAD			0	/* only its TID is known */
#define WALK_READ			1	/* distance and tuple facts are set */
#define WALK_UNREACHABLE	2	/* the TID does not lead to an element */

typedef struct HnswWalkElement
{
	ItemPointerData tid;		/* the element tuple */
	ItemPointerData neighbortid;	/* its neighbour tuple (once read) */
	ItemPointerData heaptid;	/* its first heap TID (once read) */
	ItemPointerData overflowtid;	/* its heap-TID chain (once read) */
	ItemPointerData finetid;	/* its payload (matryoshka; once read) */
	uint8		state;			/* WALK_* */
	uint8		level;
	uint8		element_state;	/* the tuple's state byte (HNSW_ELEMENT_*) */
	uint8		heaptid_count;
	float		distance;		/* to the query (once read) */
} HnswWalkElement;

/* a read element that has rows (its state byte says live) */
#define WALK_ELEMENT_LIVE(element) \
	(((element)->element_state & HNSW_ELEMENT_STATE_MASK) == HNSW_ELEMENT_LIVE)

/* one slot of the TID -> handle table; handle -1 when empty */
typedef struct HnswWalkSlot
{
	uint64		key;
	int32		handle;
} HnswWalkSlot;

/*
 * Buffers in which this backend last found the blocks of one index: hints for
 * ReadRecentBuffer().  A few indexes are remembered; the oldest is replaced.
 */
#define RECENT_INDEXES		4
#define RECENT_MAX_BLOCKS	(1 << 21)	/* 8 MB of hints at most (16 GB index) */

typedef struct RecentBuffers
{
	RelFileNode node;
	Buffer	   *buffers;		/* InvalidBuffer: no hint */
	BlockNumber size;			/* entries allocated */
} RecentBuffers;

static RecentBuffers recent_buffers[RECENT_INDEXES];
static int	recent_buffers_next;

struct HnswWalk
{
	Relation	index;
	HnswShape	shape;
	bool		keep_vectors;
	bool		use_dead_hints; /* read a dead-hinted element as deleted */
	MemoryContext context;		/* where the walk and its growth live */

	GraphAccess access;
	int			ef;				/* of the beam scratch */
	GraphWalkScratch scratch;	/* arrays NULL until hnsw_walk_scratch */
	float	   *query;			/* shape.dimensions floats */

	/* handles */
	HnswWalkElement *elements;
	uint32	   *visited;		/* generation of the last mark, per handle */
	float	   *vectors;		/* keep_vectors: capacity x dimensions */
	int32		count;
	int32		capacity;
	uint32		generation;

	/* TID -> handle: open addressing, linear probing, power-of-two size */
	HnswWalkSlot *slots;
	uint32		slot_mask;

	/* the one block this walk keeps pinned (never locked between calls) */
	Buffer		buffer;
	BlockNumber buffer_block;
	bool		buffer_is_element_page; /* checked when it was pinned */
	BlockNumber nblocks;		/* hnsw_block_exists's cache of its size */
	RecentBuffers *recent;		/* NULL: local buffers, no hints */
	int			tuple_lines;	/* cache lines an element tuple spans */

	uint64		distance_count; /* elements read (for DEBUG output) */
	uint64		live_heaptids;	/* inline heap TIDs of the live elements read */
	uint64		overflow_heaptids;	/* chain heap TIDs hnsw_walk_heaptids gave */
};

static inline uint64
tid_key(ItemPointer tid)
{
	return ((uint64) ItemPointerGetBlockNumberNoCheck(tid) << 16) |
		ItemPointerGetOffsetNumberNoCheck(tid);
}

/* Fibonacci hashing: the multiply spreads nearby blocks over the table. */
static inline uint32
slot_of(const HnswWalk *walk, uint64 key)
{
	return (uint32) ((key * UINT64CONST(0x9E3779B97F4A7C15)) >> 32) & walk->slot_mask;
}

static void
walk_alloc_slots(HnswWalk *walk, uint32 size)
{
	walk->slots = MemoryContextAlloc(walk->context, sizeof(HnswWalkSlot) * size);
	walk->slot_mask = size - 1;
	for (uint32 i = 0; i < size; i++)
		walk->slots[i].handle = -1;
}

static RecentBuffers *
recent_buffers_for(Relation index)
{
	RecentBuffers *entry;

	if (RelationUsesLocalBuffers(index))
		return NULL;
	for (int i = 0; i < RECENT_INDEXES; i++)
	{
		if (recent_buffers[i].buffers != NULL &&
			RelFileNodeEquals(recent_buffers[i].node, index->rd_node))
			return &recent_buffers[i];
	}
	entry = &recent_buffers[recent_buffers_next];
	recent_buffers_next = (recent_buffers_next + 1) % RECENT_INDEXES;

	/*
	 * Taking over another index's hints: start small again rather than clear
	 * an array grown for a big index (with more than RECENT_INDEXES indexes
	 * in turn, as in a partitioned table, that would happen per walk).
	 */
	if (entry->buffers != NULL && entry->size > 1024)
	{
		pfree(entry->buffers);
		entry->buffers = NULL;
	}
	if (entry->buffers == NULL)
	{
		entry->size = 1024;
		entry->buffers = MemoryContextAlloc(TopMemoryContext,
											sizeof(Buffer) * entry->size);
	}
	entry->node = index->rd_node;
	for (BlockNumber b = 0; b < entry->size; b++)
		entry->buffers[b] = InvalidBuffer;
	return entry;
}

/* Make room for handle number `needed` - 1. */
static void
walk_grow(HnswWalk *walk, int32 needed)
{
	int32		old = walk->capacity;
	int32		capacity = old;

	while (capacity < needed)
	{
		if (capacity > INT32_MAX / 2)
			elog(ERROR, "hnsw walk met too many elements");
		capacity *= 2;
	}
	walk->elements = repalloc(walk->elements, sizeof(HnswWalkElement) * capacity);
	walk->visited = repalloc(walk->visited, sizeof(uint32) * capacity);
	memset(walk->visited + old, 0, sizeof(uint32) * (capacity - old));
	if (walk->keep_vectors)
		walk->vectors = repalloc_huge(walk->vectors, sizeof(float) *
									  walk->shape.dimensions * (Size) capacity);
	walk->capacity = capacity;

	/* keep the table at most half full */
	if ((uint32) capacity * 2 > walk->slot_mask + 1)
	{
		HnswWalkSlot *old_slots = walk->slots;
		uint32		old_size = walk->slot_mask + 1;

		walk_alloc_slots(walk, (uint32) capacity * 2);
		for (uint32 i = 0; i < old_size; i++)
		{
			uint32		s;

			if (old_slots[i].handle < 0)
				continue;
			s = slot_of(walk, old_slots[i].key);
			while (walk->slots[s].handle >= 0)
				s = (s + 1) & walk->slot_mask;
			walk->slots[s] = old_slots[i];
		}
		pfree(old_slots);
	}
}

int32
hnsw_walk_handle(HnswWalk *walk, ItemPointer element_tid)
{
	uint64		key = tid_key(element_tid);
	uint32		s = slot_of(walk, key);
	HnswWalkElement *element;
	int32		handle;

	for (;;)
	{
		if (walk->slots[s].handle < 0)
			break;
		if (walk->slots[s].key == key)
			return walk->slots[s].handle;
		s = (s + 1) & walk->slot_mask;
	}

	if (walk->count == walk->capacity)
	{
		walk_grow(walk, walk->count + 1);
		/* the table was rebuilt: find the empty slot again */
		s = slot_of(walk, key);
		while (walk->slots[s].handle >= 0)
			s = (s + 1) & walk->slot_mask;
	}

	handle = walk->count++;
	walk->slots[s].key = key;
	walk->slots[s].handle = handle;
	element = &walk->elements[handle];
	element->tid = *element_tid;
	element->state = WALK_UNREAD;
	walk->visited[handle] = 0;
	return handle;
}

ItemPointer
hnsw_walk_tid(HnswWalk *walk, int32 handle)
{
	Assert(handle >= 0 && handle < walk->count);
	return &walk->elements[handle].tid;
}

/* ------------------------------------------------------------------------
 * Pages
 * ------------------------------------------------------------------------ */

/* Drop the pin the walk keeps (it never holds a lock between calls). */
void
hnsw_walk_release(HnswWalk *walk)
{
	if (BufferIsValid(walk->buffer))
		ReleaseBuffer(walk->buffer);
	walk->buffer = InvalidBuffer;
	walk->buffer_block = InvalidBlockNumber;
}

/*
 * Share-lock page blkno, pinning it first unless it is the block the walk
 * holds.  Returns NULL (nothing locked) for the meta page or a block beyond
 * the end of the relation.
 */
static Page
walk_lock_any_block(HnswWalk *walk, BlockNumber blkno)
{
	Page		page;

	if (walk->buffer_block != blkno || !BufferIsValid(walk->buffer))
	{
		RecentBuffers *recent = walk->recent;
		Buffer		buffer = InvalidBuffer;

		if (!hnsw_block_exists(walk->index, &walk->nblocks, blkno))
			return NULL;

		hnsw_walk_release(walk);

		if (recent != NULL && blkno < recent->size &&
			BufferIsValid(recent->buffers[blkno]) &&
			ReadRecentBuffer(walk->index->rd_node, MAIN_FORKNUM, blkno,
							 recent->buffers[blkno]))
			buffer = recent->buffers[blkno];
		else
		{
			buffer = ReadBuffer(walk->index, blkno);
			if (recent != NULL && blkno < RECENT_MAX_BLOCKS)
			{
				if (blkno >= recent->size)
				{
					BlockNumber size = recent->size;

					while (size <= blkno)
						size *= 2;
					size = Min(size, RECENT_MAX_BLOCKS);
					recent->buffers = repalloc(recent->buffers, sizeof(Buffer) * size);
					for (BlockNumber b = recent->size; b < size; b++)
						recent->buffers[b] = InvalidBuffer;
					recent->size = size;
				}
				recent->buffers[blkno] = buffer;
			}
		}
		walk->buffer = buffer;
		walk->buffer_block = blkno;

		/*
		 * Check the page once per pin: while we hold the pin the buffer keeps
		 * this block, and a block once initialised as an element page stays
		 * one (pages are never recycled), so relocking needs no new check.
		 */
		LockBuffer(buffer, BUFFER_LOCK_SHARE);
		page = BufferGetPage(buffer);
		hnsw_check_page(walk->index, page, blkno);
		walk->buffer_is_element_page =
			(HnswPageGetOpaque(page)->flags & HNSW_PAGE_ELEMENT) != 0;
	}
	else
	{
		LockBuffer(walk->buffer, BUFFER_LOCK_SHARE);
		page = BufferGetPage(walk->buffer);
	}
	return page;
}

/*
 * Share-lock element page blkno (walk_lock_any_block).  Returns NULL (nothing
 * locked) for a block that cannot hold elements: the meta page, beyond the
 * end of the relation, or a page of another kind.
 */
static Page
walk_lock_block(HnswWalk *walk, BlockNumber blkno)
{
	Page		page = walk_lock_any_block(walk, blkno);

	if (page != NULL && !walk->buffer_is_element_page)
	{
		LockBuffer(walk->buffer, BUFFER_LOCK_UNLOCK);
		return NULL;
	}
	return page;
}

static inline void
walk_unlock(HnswWalk *walk)
{
	LockBuffer(walk->buffer, BUFFER_LOCK_UNLOCK);
}

/* The normal item at offset of a locked page if it has min_size bytes, else NULL. */
static inline char *
page_item(Page page, OffsetNumber offset, Size min_size)
{
	ItemId		item;

	if (offset < FirstOffsetNumber || offset > PageGetMaxOffsetNumber(page))
		return NULL;
	item = PageGetItemId(page, offset);
	if (!ItemIdIsNormal(item) || ItemIdGetLength(item) < min_size)
		return NULL;
	return (char *) PageGetItem(page, item);
}

/*
 * Visit an element: compute its distance on the page and note its level,
 * neighbour tuple and heap TIDs.
 */
static void
walk_read_element(HnswWalk *walk, int32 handle)
{
	HnswWalkElement *element = &walk->elements[handle];
	int			dimensions = walk->shape.dimensions;
	Page		page;
	HnswElementTuple tuple;

	walk->distance_count++;
	element->state = WALK_UNREACHABLE;
	element->distance = get_float4_infinity();
	element->level = 0;
	element->element_state = HNSW_ELEMENT_DELETED;
	element->heaptid_count = 0;

	page = walk_lock_block(walk, ItemPointerGetBlockNumberNoCheck(&element->tid));
	if (page == NULL)
		return;
	tuple = (HnswElementTuple)
		page_item(page, ItemPointerGetOffsetNumberNoCheck(&element->tid),
				  offsetof(HnswElementTupleData, vector) + sizeof(float) * dimensions);
	/*
	 * A free slot is linked from nowhere but a list copied before VACUUM
	 * repaired it: it leads nowhere (README, VACUUM).
	 */
	if (tuple != NULL && HnswTupleType(tuple->type) == HNSW_ELEMENT_TUPLE &&
		HnswElementState(tuple) != HNSW_ELEMENT_FREE)
	{
		element->distance = graph_metric_distance(walk->shape.metric, walk->query,
												  tuple->vector, dimensions);
		element->level = tuple->level;
		element->element_state = tuple->state;
		element->heaptid_count = Min(tuple->heaptid_count, HNSW_HEAPTIDS);
		element->heaptid = tuple->heaptids[0];
		element->overflowtid = tuple->overflowtid;
		element->neighbortid = tuple->neighbortid;
		element->finetid = tuple->finetid;

		/*
		 * Every row of a hinted element is dead to every transaction: a scan
		 * walks through it as through a deleted one.  Its generation stays,
		 * so its rows are never read (hnsw_walk_heaptids wants it live).
		 */
		if (walk->use_dead_hints && HnswElementIsLive(tuple) &&
			HnswElementDeadHinted(tuple))
			element->element_state =
				(tuple->state & ~HNSW_ELEMENT_STATE_MASK) | HNSW_ELEMENT_DELETED;
		else if (HnswElementIsLive(tuple))
			walk->live_heaptids += element->heaptid_count;
		if (walk->keep_vectors)
			memcpy(walk->vectors + (Size) handle * dimensions, tuple->vector,
				   sizeof(float) * dimensions);
		element->state = WALK_READ;
	}
	walk_unlock(walk);
}

/* The handle's element, read if it was not yet; NULL when it is not an element. */
static HnswWalkElement *
walk_element_read(HnswWalk *walk, int32 handle)
{
	HnswWalkElement *element;

	Assert(handle >= 0 && handle < walk->count);
	element = &walk->elements[handle];
	if (element->state == WALK_UNREAD)
		walk_read_element(walk, handle);
	return element->state == WALK_READ ? element : NULL;
}

/* ------------------------------------------------------------------------
 * GraphAccess callbacks
 * ------------------------------------------------------------------------ */

static float
walk_distance(void *context, int32_t id)
{
	HnswWalk   *walk = context;

	if (walk->elements[id].state == WALK_UNREAD)
		walk_read_element(walk, id);
	return walk->elements[id].distance;
}

/*
 * Prefetch for writing: pinning changes the buffer header with an atomic
 * operation, which needs its cache line owned, not just present.  x86-64's
 * PREFETCHW (a no-op on processors without it); elsewhere a plain prefetch.
 */
static inline void
prefetch_for_write(const void *address)
{
#if defined(__x86_64__)
	__asm__ volatile("prefetchw %0"::"m"(*(const char *) address));
#else
	__builtin_prefetch(address, 1, 3);
#endif
}

/*
 * Start fetching the page data that reading element `handle` will touch: the
 * buffer header that pinning checks, the page header, the special space that
 * hnsw_check_page reads, the line pointer, and the first cache lines of the
 * tuple.  Only hints: the block's buffer is the one this backend last found
 * it in (not pinned, maybe reused since), and the line pointer is read
 * without a lock just to learn where the tuple probably is; whatever is read
 * here decides no answer, and an address computed from a stale value stays
 * inside that buffer's page, so nothing can fault.  The real read
 * (walk_read_element) pins, locks and checks as always.
 */
static inline void
walk_prefetch_page(HnswWalk *walk, ItemPointer tid)
{
	RecentBuffers *recent = walk->recent;
	BlockNumber blkno = ItemPointerGetBlockNumberNoCheck(tid);
	Buffer		buffer;
	char	   *page;

	if (recent == NULL || blkno >= recent->size)
		return;
	buffer = recent->buffers[blkno];
	if (!BufferIsValid(buffer))
		return;
	page = (char *) BufferGetPage(buffer);
	prefetch_for_write(GetBufferDescriptor(buffer - 1));
	__builtin_prefetch(page, 0, 3);
	__builtin_prefetch(page + BLCKSZ - 64, 0, 3);
}

static inline void
walk_prefetch_tuple_lines(HnswWalk *walk, ItemPointer tid, int first, int last)
{
	RecentBuffers *recent = walk->recent;
	BlockNumber blkno = ItemPointerGetBlockNumberNoCheck(tid);
	OffsetNumber offset = ItemPointerGetOffsetNumberNoCheck(tid);
	Buffer		buffer;
	char	   *page;
	uint32		item_offset;

	if (recent == NULL || blkno >= recent->size)
		return;
	buffer = recent->buffers[blkno];
	if (!BufferIsValid(buffer) || offset < FirstOffsetNumber ||
		offset > MaxHeapTuplesPerPage)
		return;
	page = (char *) BufferGetPage(buffer);
	item_offset = ((volatile ItemIdData *) PageGetItemId((Page) page, offset))->lp_off;
	if (item_offset >= BLCKSZ - 2 * 64)
		return;
	for (int line = first; line < last; line++)
	{
		if (item_offset + line * 64 >= BLCKSZ)
			break;
		__builtin_prefetch(page + item_offset + line * 64, 0, 3);
	}
}

static inline void
walk_prefetch_tuple(HnswWalk *walk, ItemPointer tid)
{
	walk_prefetch_tuple_lines(walk, tid, 0, WALK_PREFETCH_LINES);
}

/*
 * Distances to a batch of elements (GraphAccess.distances): first the
 * prefetches for all of them, in two passes (the tuple's place is known only
 * once its line pointer has arrived), then the reads, which by then find
 * most of what they need in the cache, each overlapping the next one's
 * remaining lines.
 */
static void
walk_distances(void *context, const int32_t *ids, int n, float *out)
{
	HnswWalk   *walk = context;

	for (int i = 0; i < n; i++)
	{
		if (walk->elements[ids[i]].state == WALK_UNREAD)
			walk_prefetch_page(walk, &walk->elements[ids[i]].tid);
	}
	for (int i = 0; i < n; i++)
	{
		if (walk->elements[ids[i]].state == WALK_UNREAD)
			walk_prefetch_tuple(walk, &walk->elements[ids[i]].tid);
	}
	for (int i = 0; i < n; i++)
	{
		/* the rest of the next one's tuple streams in while this one is read */
		if (i + 1 < n && walk->elements[ids[i + 1]].state == WALK_UNREAD)
			walk_prefetch_tuple_lines(walk, &walk->elements[ids[i + 1]].tid,
									  WALK_PREFETCH_LINES, walk->tuple_lines);
		if (walk->elements[ids[i]].state == WALK_UNREAD)
			walk_read_element(walk, ids[i]);
		out[i] = walk->elements[ids[i]].distance;
	}
}

static int
walk_neighbors(void *context, int32_t id, int layer, int32_t *out)
{
	HnswWalk   *walk = context;
	HnswWalkElement *element = &walk->elements[id];
	ItemPointerData tids[2 * GRAPH_MAX_M];
	int			first = hnsw_neighbor_offset(layer, walk->shape.m);
	int			width = hnsw_layer_width(layer, walk->shape.m);
	int			count = 0;
	Page		page;
	HnswNeighborTuple tuple;

	Assert(width <= 2 * GRAPH_MAX_M);
	if (walk_element_read(walk, id) == NULL || layer > element->level)
		return 0;

	page = walk_lock_block(walk, ItemPointerGetBlockNumberNoCheck(&element->neighbortid));
	if (page == NULL)
		return 0;
	tuple = (HnswNeighborTuple)
		page_item(page, ItemPointerGetOffsetNumberNoCheck(&element->neighbortid),
				  offsetof(HnswNeighborTupleData, slots) +
				  sizeof(ItemPointerData) * (first + width));
	if (tuple != NULL && tuple->type == HNSW_NEIGHBOR_TUPLE && layer <= tuple->level)
	{
		const ItemPointerData *slots = tuple->slots + first;

		while (count < width &&
			   ItemPointerGetOffsetNumberNoCheck(&slots[count]) != InvalidOffsetNumber)
		{
			tids[count] = slots[count];
			count++;
		}
	}
	walk_unlock(walk);

	/* handles may allocate: only now that no lock is held */
	for (int i = 0; i < count; i++)
		out[i] = hnsw_walk_handle(walk, &tids[i]);
	return count;
}

/* an element a scan may return: read, and not deleted */
static int
walk_live(void *context, int32_t id)
{
	HnswWalkElement *element = walk_element_read((HnswWalk *) context, id);

	return element != NULL && WALK_ELEMENT_LIVE(element);
}

static void
walk_visited_reset(void *context)
{
	HnswWalk   *walk = context;

	if (++walk->generation == 0)
	{
		memset(walk->visited, 0, sizeof(uint32) * walk->capacity);
		walk->generation = 1;
	}
}

static int
walk_visited_test_and_set(void *context, int32_t id)
{
	HnswWalk   *walk = context;

	if (walk->visited[id] == walk->generation)
		return 1;
	walk->visited[id] = walk->generation;
	return 0;
}

/* ------------------------------------------------------------------------
 * The interface (hnsw.h)
 * ------------------------------------------------------------------------ */

HnswWalk *
hnsw_walk_begin(Relation index, const HnswShape *shape, int ef, bool keep_vectors)
{
	HnswWalk   *walk = palloc0(sizeof(HnswWalk));
	int32		capacity;

	if (ef < 1)
		ef = 1;
	walk->index = index;
	walk->shape = *shape;
	walk->keep_vectors = keep_vectors;
	walk->context = CurrentMemoryContext;

	walk->access.context = walk;
	walk->access.distance = walk_distance;
	walk->access.distances = walk_distances;
	walk->access.neighbors = walk_neighbors;
	walk->access.visited_reset = walk_visited_reset;
	walk->access.visited_test_and_set = walk_visited_test_and_set;
	walk->access.live = walk_live;

	walk->ef = ef;
	walk->query = palloc0(sizeof(float) * shape->dimensions);

	/*
	 * A scan meets about ef times the layer-0 width before it settles; a walk
	 * that keeps vectors starts small, as they can be large, and grows.
	 */
	capacity = 256;
	while (!keep_vectors && capacity < ef * shape->m0 && capacity < (1 << 20))
		capacity *= 2;
	walk->capacity = capacity;
	walk->elements = palloc(sizeof(HnswWalkElement) * capacity);
	walk->visited = palloc0(sizeof(uint32) * capacity);
	if (keep_vectors)
		walk->vectors = palloc_extended(sizeof(float) * shape->dimensions * (Size) capacity,
										MCXT_ALLOC_HUGE);
	walk_alloc_slots(walk, (uint32) capacity * 2);
	walk->generation = 1;

	walk->buffer = InvalidBuffer;
	walk->buffer_block = InvalidBlockNumber;
	walk->nblocks = RelationGetNumberOfBlocks(index);
	walk->recent = recent_buffers_for(index);
	walk->tuple_lines = (int) ((offsetof(HnswElementTupleData, vector) +
								sizeof(float) * shape->dimensions + 63) / 64) + 1;
	return walk;
}

void
hnsw_walk_reset(HnswWalk *walk, const float *query)
{
	uint32		size = walk->slot_mask + 1;

	/* clear only the slots in use when few are: rescans reset often */
	if ((uint32) walk->count * 8 < size)
	{
		for (int32 h = 0; h < walk->count; h++)
		{
			uint32		s = slot_of(walk, tid_key(&walk->elements[h].tid));

			while (walk->slots[s].handle != h)
				s = (s + 1) & walk->slot_mask;
			walk->slots[s].handle = -1;
		}
	}
	else
	{
		for (uint32 i = 0; i < size; i++)
			walk->slots[i].handle = -1;
	}
	walk->count = 0;
	walk->distance_count = 0;
	walk->live_heaptids = 0;
	walk->overflow_heaptids = 0;
	memcpy(walk->query, query, sizeof(float) * walk->shape.dimensions);
}

GraphAccess *
hnsw_walk_access(HnswWalk *walk)
{
	return &walk->access;
}

/*
 * The beam scratch of graph_walk_layer, made on first use: only inserts and
 * VACUUM search a layer that way (scans use GraphSearch, with heaps of its
 * own), so a scan's walk never pays for it.
 */
GraphWalkScratch *
hnsw_walk_scratch(HnswWalk *walk)
{
	GraphWalkScratch *scratch = &walk->scratch;

	if (scratch->candidates == NULL)
	{
		scratch->ef = walk->ef;
		scratch->candidate_capacity = graph_walk_candidate_capacity(walk->ef,
																	walk->shape.m0);
		scratch->candidates = MemoryContextAlloc(walk->context, sizeof(GraphNeighbor) *
												 scratch->candidate_capacity);
		scratch->results = MemoryContextAlloc(walk->context,
											  sizeof(GraphNeighbor) * (walk->ef + 2));
	}
	return scratch;
}

const float *
hnsw_walk_vector(HnswWalk *walk, int32 handle)
{
	Assert(walk->keep_vectors);
	if (walk_element_read(walk, handle) == NULL)
		return NULL;
	return walk->vectors + (Size) handle * walk->shape.dimensions;
}

float
hnsw_walk_pair_distance(void *context, int32 a, int32 b)
{
	HnswWalk   *walk = context;
	const float *va = hnsw_walk_vector(walk, a);
	const float *vb = hnsw_walk_vector(walk, b);

	/* an unreachable element is far from everything: it prunes nothing */
	if (va == NULL || vb == NULL)
		return get_float4_infinity();
	return graph_metric_distance(walk->shape.metric, va, vb, walk->shape.dimensions);
}

/* Make room for `more` entries after the first `used` of *tids. */
static void
reserve_heaptids(ItemPointerData **tids, int *capacity, int used, int more)
{
	int			needed;

	if (used > INT_MAX - more)
		elog(ERROR, "hnsw scan: too many heap TIDs");
	needed = used + more;
	if (needed <= *capacity)
		return;
	*capacity = Max(needed, *capacity > INT_MAX / 2 ? INT_MAX : *capacity * 2);
	*tids = repalloc_huge(*tids, sizeof(ItemPointerData) * (Size) *capacity);
}

int
hnsw_walk_heaptids(HnswWalk *walk, int32 handle, ItemPointerData **tids,
				   int *capacity, int used)
{
	HnswWalkElement *element;
	Page		page;
	HnswElementTuple tuple;
	ItemPointerData next;
	int			count = 0;
	int64		steps = 0;
	int64		max_steps;

	element = walk_element_read(walk, handle);
	if (element == NULL || !WALK_ELEMENT_LIVE(element))
		return 0;
	/*
	 * One row and no payload: the heap TID read with the distance is the row
	 * that distance belongs to, whatever the slot holds now.  With a payload
	 * (matryoshka) the caller has read it since the distance, from the slot
	 * as it is now: the state byte below tells whether that was still the
	 * same element (its payload is rewritten only after the slot was freed,
	 * which changes the byte).
	 */
	if (element->heaptid_count == 1 && !ItemPointerIsValid(&element->overflowtid) &&
		!ItemPointerIsValid(&element->finetid))
	{
		reserve_heaptids(tids, capacity, used, 1);
		(*tids)[used] = element->heaptid;
		return 1;
	}

	/* several rows share the vector: read them all now, inline first */
	page = walk_lock_block(walk, ItemPointerGetBlockNumberNoCheck(&element->tid));
	if (page == NULL)
		return 0;
	tuple = (HnswElementTuple)
		page_item(page, ItemPointerGetOffsetNumberNoCheck(&element->tid),
				  offsetof(HnswElementTupleData, vector));
	/*
	 * The same element as when its distance was computed: the state byte
	 * holds the slot's generation, which changes when an insert reuses it.
	 */
	if (tuple == NULL || HnswTupleType(tuple->type) != HNSW_ELEMENT_TUPLE ||
		tuple->state != element->element_state)
	{
		walk_unlock(walk);
		return 0;
	}
	count = Min(tuple->heaptid_count, HNSW_HEAPTIDS);
	reserve_heaptids(tids, capacity, used, count);
	memcpy(*tids + used, tuple->heaptids, sizeof(ItemPointerData) * count);
	next = tuple->overflowtid;
	walk_unlock(walk);

	/*
	 * Then the overflow chain, one tuple (one share lock) at a time.  Tuples
	 * are never unlinked, so the chain read is the one an insert or vacuum
	 * may be changing at the same moment: each tuple is consistent under its
	 * lock.  A chain longer than the relation could hold is a cycle (damage,
	 * which hierindex_check reports): stop there.
	 */
	if (!ItemPointerIsValid(&next))
		return count;			/* no chain: nearly every element */
	max_steps = (int64) RelationGetNumberOfBlocks(walk->index) *
		HNSW_HEAPTID_TUPLES_PER_PAGE;
	while (ItemPointerIsValid(&next) && steps++ < max_steps)
	{
		HnswHeapTidTuple overflow;
		int			n;

		page = walk_lock_block(walk, ItemPointerGetBlockNumberNoCheck(&next));
		if (page == NULL)
			break;
		overflow = (HnswHeapTidTuple)
			page_item(page, ItemPointerGetOffsetNumberNoCheck(&next),
					  sizeof(HnswHeapTidTupleData));
		if (overflow == NULL || overflow->type != HNSW_HEAPTID_TUPLE)
		{
			walk_unlock(walk);
			break;
		}
		n = Min(overflow->count, HNSW_OVERFLOW_HEAPTIDS);
		reserve_heaptids(tids, capacity, used + count, n);
		memcpy(*tids + used + count, overflow->heaptids, sizeof(ItemPointerData) * n);
		count += n;
		next = overflow->next;
		walk_unlock(walk);
	}
	if (count > HNSW_HEAPTIDS)
		walk->overflow_heaptids += count - HNSW_HEAPTIDS;
	return count;
}

void
hnsw_walk_use_dead_hints(HnswWalk *walk, bool use)
{
	walk->use_dead_hints = use;
}

/*
 * Set the dead-row hint (README, Scans: dead rows).  Under the share lock,
 * as nbtree sets LP_DEAD: nobody adds a row to the element without the
 * exclusive lock, so the element checked here is the one hinted; setting
 * one bit of a byte that only writers under the exclusive lock otherwise
 * change races with nothing but another hinter.  The hint is not WAL-logged
 * (MarkBufferDirtyHint: a full-page image when checksums need one): lost in
 * a crash, it is learnt again.
 */
void
hnsw_walk_hint_dead(HnswWalk *walk, int32 handle, const ItemPointerData *tids, int n)
{
	HnswWalkElement *element;
	Page		page;
	HnswElementTuple tuple;
	bool		same = true;

	element = walk_element_read(walk, handle);
	if (element == NULL || !WALK_ELEMENT_LIVE(element) || n < 1 ||
		n > HNSW_HEAPTIDS || ItemPointerIsValid(&element->overflowtid))
		return;
	page = walk_lock_block(walk, ItemPointerGetBlockNumberNoCheck(&element->tid));
	if (page == NULL)
		return;
	tuple = (HnswElementTuple)
		page_item(page, ItemPointerGetOffsetNumberNoCheck(&element->tid),
				  offsetof(HnswElementTupleData, vector));
	if (tuple == NULL || HnswTupleType(tuple->type) != HNSW_ELEMENT_TUPLE ||
		tuple->state != element->element_state ||
		ItemPointerIsValid(&tuple->overflowtid) || tuple->heaptid_count != n)
		same = false;
	for (int i = 0; same && i < n; i++)
	{
		bool		found = false;

		for (int j = 0; j < n && !found; j++)
			found = ItemPointerEquals(&tuple->heaptids[i], (ItemPointer) &tids[j]);
		same = found;
	}
	if (same && (tuple->type & HNSW_ELEMENT_DEAD_HINT) == 0)
	{
		tuple->type |= HNSW_ELEMENT_DEAD_HINT;
		MarkBufferDirtyHint(walk->buffer, true);
	}
	walk_unlock(walk);
}

bool
hnsw_walk_element(HnswWalk *walk, int32 handle, ItemPointer finetid)
{
	HnswWalkElement *element = walk_element_read(walk, handle);

	if (element == NULL || !WALK_ELEMENT_LIVE(element))
		return false;
	*finetid = element->finetid;
	return true;
}

bool
hnsw_walk_is_live(HnswWalk *walk, int32 handle)
{
	ItemPointerData finetid;

	return hnsw_walk_element(walk, handle, &finetid);
}

bool
hnsw_walk_element_neighbortid(HnswWalk *walk, int32 handle, ItemPointer neighbortid)
{
	HnswWalkElement *element = walk_element_read(walk, handle);

	if (element == NULL)
		return false;
	*neighbortid = element->neighbortid;
	return true;
}

/* HnswPageSource.lock of hnsw_walk_read_payloads: the walk's buffers */
static Page
walk_source_lock(void *arg, BlockNumber blkno)
{
	HnswWalk   *walk = arg;
	Page		page = walk_lock_any_block(walk, blkno);

	/* the payload reader has checked the block against the relation size */
	if (page == NULL)
		elog(ERROR, "could not read block %u of index \"%s\"",
			 blkno, RelationGetRelationName(walk->index));
	return page;
}

static void
walk_source_unlock(void *arg)
{
	walk_unlock((HnswWalk *) arg);
}

void
hnsw_walk_read_payloads(HnswWalk *walk, int n, const ItemPointerData *finetids,
						Size payload_size, char **outs)
{
	HnswPageSource source = {walk_source_lock, walk_source_unlock, walk, &walk->nblocks};

	/* as walk_distances: all the prefetches first, so the misses overlap */
	for (int i = 0; i < n; i++)
		walk_prefetch_page(walk, (ItemPointer) &finetids[i]);
	for (int i = 0; i < n; i++)
		walk_prefetch_tuple(walk, (ItemPointer) &finetids[i]);
	for (int i = 0; i < n; i++)
		hnsw_read_payload_from(walk->index, (ItemPointer) &finetids[i],
							   payload_size, outs[i], &source);
}

uint64
hnsw_walk_distance_count(HnswWalk *walk)
{
	return walk->distance_count;
}

uint64
hnsw_walk_live_heaptids(HnswWalk *walk)
{
	return walk->live_heaptids;
}

uint64
hnsw_walk_overflow_heaptids(HnswWalk *walk)
{
	return walk->overflow_heaptids;
}

Size
hnsw_walk_memory(HnswWalk *walk)
{
	/* per handle: its facts, its visited mark, two slots of the TID table */
	Size		per_handle = sizeof(HnswWalkElement) + sizeof(uint32) +
		2 * sizeof(HnswWalkSlot);

	if (walk->keep_vectors)
		per_handle += sizeof(float) * walk->shape.dimensions;
	return (Size) walk->count * per_handle;
}

void
hnsw_walk_end(HnswWalk *walk)
{
	hnsw_walk_release(walk);
	if (walk->scratch.candidates != NULL)
	{
		pfree(walk->scratch.candidates);
		pfree(walk->scratch.results);
	}
	pfree(walk->query);
	pfree(walk->elements);
	pfree(walk->visited);
	if (walk->vectors)
		pfree(walk->vectors);
	pfree(walk->slots);
	pfree(walk);
}

void
hnsw_walk_descend(HnswWalk *walk, const HnswMetaPageData *meta, const float *query,
				  bool use_dead_hints, GraphSearch *search)
{
	GraphAccess *access;
	int32		top;
	float		top_distance;
	int32		entry;
	float		entry_distance;

	hnsw_walk_reset(walk, query);
	hnsw_walk_use_dead_hints(walk, use_dead_hints);
	access = hnsw_walk_access(walk);
	top = hnsw_walk_handle(walk, (ItemPointer) &meta->entry_point);
	top_distance = access->distance(access->context, top);
	entry = top;
	entry_distance = top_distance;
	for (int layer = Min(meta->max_level, GRAPH_MAX_LEVEL); layer >= 1; layer--)
		entry = graph_walk_greedy(access, entry, &entry_distance, layer);
	graph_search_start(search, access, entry, entry_distance, 0);
	/* what the build made reachable is reachable from the entry point */
	if (entry != top)
		graph_search_set_fallback(search, top, top_distance);
}
