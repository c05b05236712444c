/*
 * hnsw_write.c — the bulk page writer: a finished in-memory Graph to pages.
 *
 * Every bulk builder (the OpenMP CPU builder, the GPU builder, the matryoshka
 * access method) ends here with the same thing: a Graph whose vectors are
 * prepared and whose neighbour lists are final, plus the heap TIDs of each
 * element.  This file knows nothing about how the graph was made.
 *
 * Layout.  Elements are placed in breadth-first order over layer-0 links,
 * starting at the entry point (then from every element that walk did not
 * reach, in id order), so elements that are neighbours land on the same or
 * nearby pages and a scan touches few buffers.  Each element's neighbour
 * tuple goes on the same page as its element tuple when the page has room
 * for both; when the pair would not fit even on an empty page (large
 * dimensions), the element gets its page and the neighbour tuple goes to a
 * separate page that collects such neighbour tuples.
 *
 * Heap TIDs.  An element holds its first HNSW_HEAPTIDS heap TIDs; the rest
 * (rows sharing its vector) go into heap-TID overflow tuples of
 * HNSW_OVERFLOW_HEAPTIDS each, chained from the element in TID order.  They
 * are placed right after the element's two tuples, on the same page while
 * they fit, else on the pages that follow.
 *
 * Two passes.  Neighbour tuples hold the TIDs of other elements, which are
 * only known once everything is placed, so pass 1 only assigns each element
 * the TIDs of its two tuples (simulating PageAddItem's space arithmetic) and
 * pass 2 forms the tuples and fills the pages.  Pages are built in local
 * memory and copied into shared buffers when complete; a page is complete
 * after the last element that pass 1 put on it.
 *
 * Extending.  Pass 1 knows how many blocks there will be, so the fork is
 * extended once, by writing its last block (the file in between is sparse,
 * as the hash access method does for new bucket pages), and each page then
 * gets a zeroed buffer for its block number without any read.  Extending
 * block by block with P_NEW would write a zero page per block first, which
 * was most of the write phase of a 400 MB index.
 *
 * Payloads (matryoshka's fine parts; hnsw has none).  After the graph's
 * pages come fine pages holding each element's payload as a chain of fine
 * tuples, in the same breadth-first element order, packed: a payload that
 * does not fit in what is left of the current fine page fills it (when at
 * least HNSW_FINE_MIN_PIECE bytes are left) and continues at the first
 * offset of the next page.  The placement is plain arithmetic on the one
 * per-index payload size, so pass 1 plans it right after the graph pages
 * (every element tuple is written knowing its finetid) and pass 2 repeats
 * the same walk to write the pieces, one page open at a time.
 *
 * WAL.  Nothing is logged per tuple: once every page is written, the whole
 * fork is logged with log_newpage_range (full-page images), when the
 * relation needs WAL or this is an unlogged index's init fork.
 */
#include "postgres.h"

#include "access/xloginsert.h"
#include "commands/progress.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "portability/instr_time.h"
#include "storage/bufmgr.h"
#include "storage/bufpage.h"
#include "storage/lmgr.h"
#include "storage/smgr.h"
#include "utils/backend_progress.h"
#include "utils/memutils.h"
#include "utils/rel.h"

#include "hnsw/hnsw.h"

/* Bytes a tuple of `size` takes on a page: aligned data plus its line pointer. */
#define TUPLE_SPACE(size)	(MAXALIGN(size) + sizeof(ItemIdData))

StaticAssertDecl(offsetof(HnswElementTupleData, vector) == 76,
				 "the element tuple header is 76 bytes (README)");
StaticAssertDecl(offsetof(HnswElementTupleData, neighbortid) == 64,
				 "neighbortid is at byte 64 (README)");
StaticAssertDecl(offsetof(HnswElementTupleData, finetid) == 70,
				 "finetid is at byte 70 (README)");
StaticAssertDecl(offsetof(HnswFineTupleData, data) == 12,
				 "the fine tuple header is 12 bytes (README)");

/* Room for tuples on an empty element page. */
#define PAGE_ROOM	(BLCKSZ - SizeOfPageHeaderData - MAXALIGN(sizeof(HnswPageOpaqueData)))

/* A page pass 1 is filling: its block and the space still free. */
typedef struct PlanPage
{
	BlockNumber blkno;			/* InvalidBlockNumber: none open */
	Size		free;
	OffsetNumber next_offset;
} PlanPage;

/* Pass 2 page: local image of one block and its pinned new buffer. */
typedef struct OpenPage
{
	BlockNumber blkno;			/* InvalidBlockNumber: slot free */
	Buffer		buffer;
	PGAlignedBlock image;
} OpenPage;

/* Everything the two passes share. */
typedef struct WriteState
{
	Relation	index;
	ForkNumber	fork;
	const Graph *graph;
	const HnswHeapTids *heaptids;
	const HnswPayloads *payloads;	/* NULL or size 0: no fine pages */
	int64		count;			/* elements to write */
	int32	   *order;			/* placement order: element ids */
	ItemPointerData *element_tids;	/* per element id */
	ItemPointerData *neighbor_tids; /* per element id */
	int64	   *overflow_start; /* element id -> first of its overflow_tids */
	ItemPointerData *overflow_tids; /* heap-TID overflow tuples, by element */
	int64	   *last_use;		/* per block: last order position placed there */
	ItemPointerData *fine_tids; /* per element id: first fine tuple */
	BlockNumber graph_nblocks;	/* blocks up to the last element page */
	BlockNumber nblocks;		/* blocks including the meta page */
	BlockNumber last_use_capacity;
} WriteState;

/*
 * Breadth-first order over layer-0 links from the entry point, then from each
 * element the walks have not reached yet, so the result is a permutation of
 * [0, count).  Neighbour ids outside the graph are an engine bug: ERROR.
 */
static void
order_breadth_first(WriteState *state)
{
	const Graph *graph = state->graph;
	int64		count = state->count;
	bool	   *seen = MemoryContextAllocHuge(CurrentMemoryContext, count);
	int64		head = 0;
	int64		tail = 0;
	int64		next_root = 0;

	memset(seen, 0, count);
	if (graph->entry_point >= 0 && graph->entry_point < count)
	{
		state->order[tail++] = graph->entry_point;
		seen[graph->entry_point] = true;
	}

	while (tail < count)
	{
		if (head == tail)
		{
			/* queue drained: restart from the first element not yet placed */
			while (seen[next_root])
				next_root++;
			state->order[tail++] = (int32) next_root;
			seen[next_root] = true;
		}
		while (head < tail)
		{
			int32		id = state->order[head++];
			const int32_t *ids;
			int			n = graph_neighbors(graph, id, 0, &ids);

			for (int i = 0; i < n; i++)
			{
				int32		neighbor = ids[i];

				if (neighbor < 0 || neighbor >= count)
					elog(ERROR, "graph element %d links to element %d outside the graph of " INT64_FORMAT " elements",
						 id, neighbor, count);
				if (!seen[neighbor])
				{
					seen[neighbor] = true;
					state->order[tail++] = neighbor;
				}
			}
		}
	}
	pfree(seen);
}

static void open_fine_page(WriteState *state, OpenPage *page, BlockNumber blkno);
static void close_page(OpenPage *page);
static void add_planned(Relation index, OpenPage *page, const void *tuple, Size size,
						ItemPointer planned);

/* Open a new (planned) block in pass 1. */
static void
plan_open_page(WriteState *state, PlanPage *page)
{
	if (state->nblocks == MaxBlockNumber)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("index \"%s\" would need more than %u blocks",
						RelationGetRelationName(state->index), MaxBlockNumber)));
	if (state->nblocks >= state->last_use_capacity)
	{
		state->last_use_capacity *= 2;
		state->last_use = repalloc_huge(state->last_use,
										sizeof(int64) * state->last_use_capacity);
	}
	page->blkno = state->nblocks++;
	page->free = PAGE_ROOM;
	page->next_offset = FirstOffsetNumber;
}

/* Reserve a tuple of `size` on a planned page that has room for it. */
static void
plan_place(WriteState *state, PlanPage *page, Size size, int64 position,
		   ItemPointer tid)
{
	Assert(page->free >= TUPLE_SPACE(size));
	page->free -= TUPLE_SPACE(size);
	ItemPointerSet(tid, page->blkno, page->next_offset);
	page->next_offset++;
	state->last_use[page->blkno] = position;
}

/* Heap TIDs of element id, checked. */
static int64
element_tid_count(WriteState *state, int32 id)
{
	int64		count = state->heaptids->start[id + 1] - state->heaptids->start[id];

	if (count < 1)
		elog(ERROR, "hnsw bulk write: element %d has " INT64_FORMAT " heap TIDs",
			 id, count);
	return count;
}

/* Heap-TID overflow tuples an element of `tid_count` heap TIDs needs. */
static int64
overflow_tuples_for(int64 tid_count)
{
	if (tid_count <= HNSW_HEAPTIDS)
		return 0;
	return (tid_count - HNSW_HEAPTIDS + HNSW_OVERFLOW_HEAPTIDS - 1) /
		HNSW_OVERFLOW_HEAPTIDS;
}

/*
 * Pass 1: give every element the TIDs of its element and neighbour tuples.
 * The current page takes the element and its neighbour tuple while both fit,
 * else a new page is started.  A pair too big for any page is split: the
 * element starts a page of its own and its neighbour tuple goes to the
 * current "neighbours only" page.
 */
static void
plan_layout(WriteState *state)
{
	const Graph *graph = state->graph;
	int			m = graph->params.m;
	Size		element_size = hnsw_element_tuple_size(graph->params.dim);
	PlanPage	current = {InvalidBlockNumber, 0, 0};
	PlanPage	neighbors_only = {InvalidBlockNumber, 0, 0};

	if (TUPLE_SPACE(element_size) > PAGE_ROOM)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("an hnsw element of %d dimensions (%zu bytes) does not fit on a page (%zu bytes)",
						graph->params.dim, (size_t) element_size, (size_t) PAGE_ROOM)));

	for (int64 position = 0; position < state->count; position++)
	{
		int32		id = state->order[position];
		int			level = graph->levels[id];
		Size		neighbor_size = hnsw_neighbor_tuple_size(level, m);
		Size		pair = TUPLE_SPACE(element_size) + TUPLE_SPACE(neighbor_size);

		if (TUPLE_SPACE(neighbor_size) > PAGE_ROOM)
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("the neighbour lists of an hnsw element of level %d with m = %d (%zu bytes) do not fit on a page (%zu bytes)",
							level, m, (size_t) neighbor_size, (size_t) PAGE_ROOM),
					 errhint("Use a smaller m.")));

		if (pair <= PAGE_ROOM)
		{
			if (current.blkno == InvalidBlockNumber || current.free < pair)
				plan_open_page(state, &current);
			plan_place(state, &current, element_size, position,
					   &state->element_tids[id]);
			plan_place(state, &current, neighbor_size, position,
					   &state->neighbor_tids[id]);
		}
		else
		{
			if (current.blkno == InvalidBlockNumber ||
				current.free < TUPLE_SPACE(element_size))
				plan_open_page(state, &current);
			plan_place(state, &current, element_size, position,
					   &state->element_tids[id]);
			if (neighbors_only.blkno == InvalidBlockNumber ||
				neighbors_only.free < TUPLE_SPACE(neighbor_size))
				plan_open_page(state, &neighbors_only);
			plan_place(state, &neighbors_only, neighbor_size, position,
					   &state->neighbor_tids[id]);
		}

		/* its heap-TID overflow tuples: here while they fit, else further on */
		for (int64 i = state->overflow_start[id]; i < state->overflow_start[id + 1]; i++)
		{
			Size		overflow_size = sizeof(HnswHeapTidTupleData);

			if (current.free < TUPLE_SPACE(overflow_size))
				plan_open_page(state, &current);
			plan_place(state, &current, overflow_size, position,
					   &state->overflow_tids[i]);
		}
	}
}

Size
hnsw_fine_tuple_size(Size length)
{
	return MAXALIGN(offsetof(HnswFineTupleData, data) + length);
}

Size
hnsw_fine_piece_length(Size free, Size remaining)
{
	Size		most;

	if (TUPLE_SPACE(offsetof(HnswFineTupleData, data) + remaining) <= free)
		return remaining;
	if (free < sizeof(ItemIdData) + MAXALIGN(offsetof(HnswFineTupleData, data) + HNSW_FINE_MIN_PIECE))
		return 0;
	most = ((free - sizeof(ItemIdData)) & ~((Size) MAXIMUM_ALIGNOF - 1)) -
		offsetof(HnswFineTupleData, data);
	return Min(most, remaining);
}

/*
 * The fine pages, in the element order of the graph pages.  Plan mode
 * (pages == NULL) opens blocks after the graph's and records each element's
 * first fine TID; write mode repeats the same placement from the first fine
 * block and writes the pieces.
 */
static void
layout_fine(WriteState *state, OpenPage *page)
{
	const HnswPayloads *payloads = state->payloads;
	PlanPage	current = {InvalidBlockNumber, 0, 0};
	BlockNumber next_block = state->graph_nblocks;
	HnswFineTuple piece = NULL;
	Size		empty_room = PAGE_ROOM;

	if (page != NULL)
		piece = palloc(hnsw_fine_tuple_size(empty_room));

	for (int64 position = 0; position < state->count; position++)
	{
		int32		id = state->order[position];
		const char *data = payloads->data + (Size) id * payloads->stride;
		Size		done = 0;

		for (;;)
		{
			Size		length = 0;
			ItemPointerData tid;

			if (current.blkno != InvalidBlockNumber)
				length = hnsw_fine_piece_length(current.free, payloads->size - done);
			if (current.blkno == InvalidBlockNumber || length == 0)
			{
				if (page == NULL)
					plan_open_page(state, &current);
				else
				{
					if (page->blkno != InvalidBlockNumber)
						close_page(page);
					current.blkno = next_block;
					current.free = PAGE_ROOM;
					current.next_offset = FirstOffsetNumber;
					open_fine_page(state, page, next_block);
				}
				next_block++;
				length = hnsw_fine_piece_length(current.free, payloads->size - done);
			}
			plan_place(state, &current, hnsw_fine_tuple_size(length), position, &tid);
			if (done == 0)
				state->fine_tids[id] = tid;
			if (page != NULL)
			{
				memset(piece, 0, hnsw_fine_tuple_size(length));
				piece->type = HNSW_FINE_TUPLE;
				piece->length = (uint16) length;
				if (done + length < payloads->size)
					ItemPointerSet(&piece->next, current.blkno + 1, FirstOffsetNumber);
				else
					ItemPointerSetInvalid(&piece->next);
				memcpy(piece->data, data + done, length);
				add_planned(state->index, page, piece,
							hnsw_fine_tuple_size(length), &tid);
			}
			done += length;
			if (done >= payloads->size)
				break;
		}
		if (page != NULL && (position & 255) == 0)
			CHECK_FOR_INTERRUPTS();
	}
	if (page != NULL)
	{
		if (page->blkno != InvalidBlockNumber)
			close_page(page);
		pfree(piece);
		if (next_block != state->nblocks)
			elog(ERROR, "hnsw bulk write: fine pages end at block %u, planned %u",
				 next_block, state->nblocks);
	}
}

/* The meta page of this graph, from the plan. */
static void
fill_meta(WriteState *state, uint8 build_method, float8 build_seconds,
		  HnswMetaPageData *meta)
{
	const Graph *graph = state->graph;

	memset(meta, 0, sizeof(*meta));
	meta->magic = HNSW_MAGIC;
	meta->version = HNSW_FORMAT_VERSION;
	meta->dimensions = graph->params.dim;
	meta->m = graph->params.m;
	meta->ef_construction = graph->params.ef_construction;
	meta->metric = (uint8) graph->params.metric;
	meta->build_method = build_method;
	meta->build_seconds = build_seconds;
	meta->seed = graph->params.seed;
	meta->element_count = state->count;
	meta->heaptid_count = 0;
	if (state->count > 0)
		meta->heaptid_count = state->heaptids->start[state->count] -
			state->heaptids->start[0];

	if (state->count > 0 && graph->entry_point >= 0 && graph->entry_point < state->count)
	{
		meta->entry_point = state->element_tids[graph->entry_point];
		meta->max_level = graph->levels[graph->entry_point];
	}
	else
	{
		ItemPointerSetInvalid(&meta->entry_point);
		meta->max_level = 0;
	}

	/* inserts start on the last page; an empty index has no element page */
	meta->insert_page = state->graph_nblocks > 1 ?
		state->graph_nblocks - 1 : InvalidBlockNumber;
	meta->fine_insert_page = state->nblocks > state->graph_nblocks ?
		state->nblocks - 1 : InvalidBlockNumber;
	if (state->payloads != NULL)
	{
		meta->payload_size = (uint32) state->payloads->size;
		if (state->payloads->fill_meta != NULL)
			state->payloads->fill_meta(meta, state->payloads->arg);
	}
}

/*
 * Make the fork state->nblocks long by writing its last block (zeroes; pass 2
 * fills it like every other block).  Nobody else can see the index while it
 * is built, but extending is done under the extension lock as everywhere.
 */
static void
extend_fork(WriteState *state)
{
	PGAlignedBlock zero;
	BlockNumber last = state->nblocks - 1;

	if (last <= HNSW_METAPAGE_BLKNO)
		return;
	memset(zero.data, 0, BLCKSZ);
	LockRelationForExtension(state->index, ExclusiveLock);
	if (RelationGetNumberOfBlocksInFork(state->index, state->fork) != HNSW_METAPAGE_BLKNO + 1)
		elog(ERROR, "hnsw bulk write: index \"%s\" is not empty",
			 RelationGetRelationName(state->index));
	smgrextend(RelationGetSmgr(state->index), state->fork, last, zero.data, false);
	UnlockRelationForExtension(state->index, ExclusiveLock);
}

/* Find the open page for blkno, opening (extending the fork) if new. */
static OpenPage *
open_page(WriteState *state, OpenPage *pages, int npages, BlockNumber blkno)
{
	OpenPage   *free_slot = NULL;

	for (int i = 0; i < npages; i++)
	{
		if (pages[i].blkno == blkno)
			return &pages[i];
		if (pages[i].blkno == InvalidBlockNumber && free_slot == NULL)
			free_slot = &pages[i];
	}
	if (free_slot == NULL)
		elog(ERROR, "hnsw bulk write: no free page slot for block %u", blkno);

	/* zeroed and exclusively locked: the fork already reaches this block */
	free_slot->buffer = ReadBufferExtended(state->index, state->fork, blkno,
										   RBM_ZERO_AND_LOCK, NULL);
	free_slot->blkno = blkno;
	hnsw_init_page((Page) free_slot->image.data, HNSW_PAGE_ELEMENT);
	return free_slot;
}

/* A fine page for blkno in the one slot the fine pass uses. */
static void
open_fine_page(WriteState *state, OpenPage *page, BlockNumber blkno)
{
	page->buffer = ReadBufferExtended(state->index, state->fork, blkno,
									  RBM_ZERO_AND_LOCK, NULL);
	page->blkno = blkno;
	hnsw_init_page((Page) page->image.data, HNSW_PAGE_FINE);
}

/* Copy a finished page image into its (locked) buffer and release it. */
static void
close_page(OpenPage *page)
{
	memcpy(BufferGetPage(page->buffer), page->image.data, BLCKSZ);
	MarkBufferDirty(page->buffer);
	UnlockReleaseBuffer(page->buffer);
	page->blkno = InvalidBlockNumber;
	page->buffer = InvalidBuffer;
}

/* Add a tuple where pass 1 planned it; anything else is a bug here. */
static void
add_planned(Relation index, OpenPage *page, const void *tuple, Size size,
			ItemPointer planned)
{
	OffsetNumber offset;

	offset = PageAddItem((Page) page->image.data, (Item) tuple, size,
						 InvalidOffsetNumber, false, false);
	if (offset != ItemPointerGetOffsetNumber(planned))
		elog(ERROR, "hnsw bulk write: tuple for (%u,%u) of index \"%s\" landed at offset %u",
			 ItemPointerGetBlockNumber(planned),
			 ItemPointerGetOffsetNumber(planned),
			 RelationGetRelationName(index), offset);
}

/*
 * Pass 2: form every element's two tuples in placement order and fill the
 * pages; a page is copied out after the last element planned on it.
 */
static void
write_pages(WriteState *state)
{
	const Graph *graph = state->graph;
	int			dim = graph->params.dim;
	int			m = graph->params.m;
	Size		element_size = hnsw_element_tuple_size(dim);
	HnswElementTuple element = palloc0(element_size);
	HnswNeighborTuple neighbors = palloc0(hnsw_neighbor_tuple_size(GRAPH_MAX_LEVEL, m));
	HnswHeapTidTupleData overflow;

	/*
	 * Pass 1 keeps at most two pages open: the current one, neighbours-only;
	 * pass 2 also the page of the overflow tuples being written.
	 */
	OpenPage   *pages = palloc(sizeof(OpenPage) * 3);
	BlockNumber pages_written = 0;

	for (int i = 0; i < 3; i++)
	{
		pages[i].blkno = InvalidBlockNumber;
		pages[i].buffer = InvalidBuffer;
	}

	for (int64 position = 0; position < state->count; position++)
	{
		int32		id = state->order[position];
		int			level = graph->levels[id];
		Size		neighbor_size = hnsw_neighbor_tuple_size(level, m);
		int64		tid_start = state->heaptids->start[id];
		int64		tid_count = element_tid_count(state, id);
		int64		first_overflow = state->overflow_start[id];
		int64		end_overflow = state->overflow_start[id + 1];
		OpenPage   *page;

		/* the element tuple */
		memset(element, 0, element_size);
		element->type = HNSW_ELEMENT_TUPLE;
		element->level = (uint8) level;
		element->state = HNSW_ELEMENT_LIVE;
		element->heaptid_count = (uint8) Min(tid_count, HNSW_HEAPTIDS);
		for (int i = 0; i < HNSW_HEAPTIDS; i++)
		{
			if (i < tid_count)
				element->heaptids[i] = state->heaptids->tids[tid_start + i];
			else
				ItemPointerSetInvalid(&element->heaptids[i]);
		}
		if (first_overflow < end_overflow)
			element->overflowtid = state->overflow_tids[first_overflow];
		else
			ItemPointerSetInvalid(&element->overflowtid);
		element->neighbortid = state->neighbor_tids[id];
		if (state->fine_tids != NULL)
			element->finetid = state->fine_tids[id];
		else
			ItemPointerSetInvalid(&element->finetid);
		memcpy(element->vector, graph->vectors + (int64) id * dim,
			   sizeof(float) * dim);

		/* the neighbour tuple: element TIDs, packed, invalid after the end */
		memset(neighbors, 0, neighbor_size);
		neighbors->type = HNSW_NEIGHBOR_TUPLE;
		neighbors->level = (uint8) level;
		for (int layer = 0; layer <= level; layer++)
		{
			const int32_t *ids;
			int			n = graph_neighbors(graph, id, layer, &ids);
			int			width = hnsw_layer_width(layer, m);
			ItemPointerData *slots = neighbors->slots + hnsw_neighbor_offset(layer, m);

			if (n < 0 || n > width)
				elog(ERROR, "hnsw bulk write: element %d has %d neighbours on layer %d (at most %d)",
					 id, n, layer, width);
			for (int i = 0; i < width; i++)
			{
				if (i < n)
				{
					if (ids[i] < 0 || ids[i] >= state->count)
						elog(ERROR, "graph element %d links to element %d outside the graph of " INT64_FORMAT " elements",
							 id, ids[i], state->count);
					slots[i] = state->element_tids[ids[i]];
				}
				else
					ItemPointerSetInvalid(&slots[i]);
			}
		}

		page = open_page(state, pages, 3,
						 ItemPointerGetBlockNumber(&state->element_tids[id]));
		add_planned(state->index, page, element, element_size,
					&state->element_tids[id]);
		page = open_page(state, pages, 3,
						 ItemPointerGetBlockNumber(&state->neighbor_tids[id]));
		add_planned(state->index, page, neighbors, neighbor_size,
					&state->neighbor_tids[id]);

		/* the heap-TID overflow tuples, chained in order */
		for (int64 i = first_overflow; i < end_overflow; i++)
		{
			int64		tid_offset = HNSW_HEAPTIDS + (i - first_overflow) * HNSW_OVERFLOW_HEAPTIDS;
			int			count = (int) Min(tid_count - tid_offset, HNSW_OVERFLOW_HEAPTIDS);

			memset(&overflow, 0, sizeof(overflow));
			overflow.type = HNSW_HEAPTID_TUPLE;
			overflow.count = (uint16) count;
			if (i + 1 < end_overflow)
				overflow.next = state->overflow_tids[i + 1];
			else
				ItemPointerSetInvalid(&overflow.next);
			for (int j = 0; j < HNSW_OVERFLOW_HEAPTIDS; j++)
			{
				if (j < count)
					overflow.heaptids[j] = state->heaptids->tids[tid_start + tid_offset + j];
				else
					ItemPointerSetInvalid(&overflow.heaptids[j]);
			}
			page = open_page(state, pages, 3,
							 ItemPointerGetBlockNumber(&state->overflow_tids[i]));
			add_planned(state->index, page, &overflow, sizeof(overflow),
						&state->overflow_tids[i]);

			/*
			 * A page that only overflow tuples of this element filled is
			 * complete once its chain moves on to the next page: close it now,
			 * so that a long chain keeps at most one such page open.
			 */
			if (i + 1 < end_overflow &&
				ItemPointerGetBlockNumber(&state->overflow_tids[i + 1]) != page->blkno &&
				page->blkno != ItemPointerGetBlockNumber(&state->element_tids[id]) &&
				page->blkno != ItemPointerGetBlockNumber(&state->neighbor_tids[id]))
			{
				close_page(page);
				pages_written++;
			}
		}

		/* copy out the pages this element was the last one on */
		for (int i = 0; i < 3; i++)
		{
			if (pages[i].blkno != InvalidBlockNumber &&
				state->last_use[pages[i].blkno] == position)
			{
				close_page(&pages[i]);
				if (++pages_written % 16 == 0)
					pgstat_progress_update_param(PROGRESS_CREATEIDX_TUPLES_DONE,
												 position + 1);
				CHECK_FOR_INTERRUPTS();
			}
		}
	}

	for (int i = 0; i < 3; i++)
		if (pages[i].blkno != InvalidBlockNumber)
			elog(ERROR, "hnsw bulk write: block %u was never completed", pages[i].blkno);

	pgstat_progress_update_param(PROGRESS_CREATEIDX_TUPLES_DONE, state->count);
	pfree(pages);
	pfree(element);
	pfree(neighbors);
}

/*
 * See hnsw.h.  graph->count may be 0 (an empty index: the meta page alone,
 * with an invalid entry point); heaptids is then not read.
 */
void
hnsw_write_graph(Relation index, ForkNumber fork, const Graph *graph,
				 const HnswHeapTids *heaptids, const HnswPayloads *payloads,
				 uint8 build_method, float8 build_seconds)
{
	WriteState	state;
	HnswMetaPageData meta;
	MemoryContext write_context;
	MemoryContext old_context;
	instr_time	started;
	instr_time	planned;
	instr_time	written;
	instr_time	logged;

	write_context = AllocSetContextCreate(CurrentMemoryContext,
										  "hnsw bulk write",
										  ALLOCSET_DEFAULT_SIZES);
	old_context = MemoryContextSwitchTo(write_context);

	memset(&state, 0, sizeof(state));
	state.index = index;
	state.fork = fork;
	state.graph = graph;
	state.heaptids = heaptids;
	state.payloads = payloads;
	state.count = graph->count;
	state.nblocks = 1;			/* the meta page */
	state.last_use_capacity = 64;
	state.last_use = palloc(sizeof(int64) * state.last_use_capacity);
	state.last_use[HNSW_METAPAGE_BLKNO] = -1;

	INSTR_TIME_SET_CURRENT(started);
	pgstat_progress_update_param(PROGRESS_CREATEIDX_SUBPHASE, HNSW_PHASE_WRITE);
	pgstat_progress_update_param(PROGRESS_CREATEIDX_TUPLES_TOTAL, state.count);
	pgstat_progress_update_param(PROGRESS_CREATEIDX_TUPLES_DONE, 0);

	if (state.count > 0)
	{
		state.order = MemoryContextAllocHuge(write_context, sizeof(int32) * state.count);
		state.element_tids = MemoryContextAllocHuge(write_context,
													sizeof(ItemPointerData) * state.count);
		state.neighbor_tids = MemoryContextAllocHuge(write_context,
													 sizeof(ItemPointerData) * state.count);
		state.overflow_start = MemoryContextAllocHuge(write_context,
													  sizeof(int64) * (state.count + 1));
		state.overflow_start[0] = 0;
		for (int64 id = 0; id < state.count; id++)
			state.overflow_start[id + 1] = state.overflow_start[id] +
				overflow_tuples_for(element_tid_count(&state, (int32) id));
		state.overflow_tids = MemoryContextAllocHuge(write_context,
													 sizeof(ItemPointerData) *
													 Max(state.overflow_start[state.count], 1));
		order_breadth_first(&state);
		plan_layout(&state);
	}
	state.graph_nblocks = state.nblocks;
	if (state.count > 0 && payloads != NULL && payloads->size > 0)
	{
		state.fine_tids = MemoryContextAllocHuge(write_context,
												 sizeof(ItemPointerData) * state.count);
		layout_fine(&state, NULL);
	}

	INSTR_TIME_SET_CURRENT(planned);
	fill_meta(&state, build_method, build_seconds, &meta);
	hnsw_write_meta_page(index, fork, &meta);
	if (state.count > 0)
	{
		extend_fork(&state);
		write_pages(&state);
		if (state.fine_tids != NULL)
		{
			OpenPage   *fine_page = palloc(sizeof(OpenPage));

			fine_page->blkno = InvalidBlockNumber;
			fine_page->buffer = InvalidBuffer;
			layout_fine(&state, fine_page);
			pfree(fine_page);
		}
	}

	if (RelationGetNumberOfBlocksInFork(index, fork) != state.nblocks)
		elog(ERROR, "hnsw bulk write: index \"%s\" has %u blocks, planned %u",
			 RelationGetRelationName(index),
			 RelationGetNumberOfBlocksInFork(index, fork), state.nblocks);

	INSTR_TIME_SET_CURRENT(written);
	if (RelationNeedsWAL(index) || fork == INIT_FORKNUM)
		log_newpage_range(index, fork, 0, state.nblocks, true);
	INSTR_TIME_SET_CURRENT(logged);

	/* the three parts of the write phase, for tuning builds of every size */
	INSTR_TIME_SUBTRACT(logged, written);
	INSTR_TIME_SUBTRACT(written, planned);
	INSTR_TIME_SUBTRACT(planned, started);
	elog(DEBUG1, "bulk write of \"%s\": %u blocks; layout %.2f s, pages %.2f s, WAL %.2f s",
		 RelationGetRelationName(index), state.nblocks,
		 INSTR_TIME_GET_DOUBLE(planned), INSTR_TIME_GET_DOUBLE(written),
		 INSTR_TIME_GET_DOUBLE(logged));

	MemoryContextSwitchTo(old_context);
	MemoryContextDelete(write_context);
}
