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
 * pass 2 forms the tuples and fills the pages.  A page is complete after
 * the last element that pass 1 put on it.
 *
 * Mapping the buffer pool.  Every new buffer is a stretch of shared memory
 * that this backend may never have touched: its first touch (zeroing it in
 * ReadBuffer) costs a page fault per 4 kB page, about 2 us, which was half
 * of taking the buffers of a 4 GB index in a warm server.  Before a large
 * write, threads of their own, one per core, map the pool's resident pages
 * into the backend's page tables in bulk (mincore, then MADV_POPULATE_WRITE,
 * Linux 5.14), about a tenth of the cost per page, while the backend plans
 * the layout; the writer waits for them before it takes the first new
 * buffer.  Pages not yet resident (a server that never used that much of
 * its pool) are left alone, so this never allocates shared memory; where
 * the kernel lacks the call nothing changes.  (Not during a GPU link: the
 * walk holds the process's memory-map lock, which the CUDA driver's pinned
 * transfers then waited for.)
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
 * WAL.  Nothing is logged per tuple: every page is logged whole as it is
 * completed, up to XLR_MAX_BLOCK_ID pages per XLOG_FPI record (what
 * log_newpage_range does, but while the page is still in the CPU's cache
 * and without reading the buffers again), when the relation needs WAL or
 * this is an unlogged index's init fork.  The meta page comes last.
 * Tuples are formed directly in the new buffers, which nobody else can see
 * before the index is committed.
 */
#include "postgres.h"

#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include "access/xlog.h"
#include "access/xloginsert.h"
#include "catalog/pg_control.h"
#include "commands/progress.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "port/atomics.h"
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

/* Pass 2 page: a new block's buffer, exclusively locked while it is filled. */
typedef struct OpenPage
{
	BlockNumber blkno;			/* InvalidBlockNumber: slot free */
	Buffer		buffer;
	Page		page;
} OpenPage;

/* Everything the passes share. */
typedef struct WriteState
{
	Relation	index;
	ForkNumber	fork;
	bool		need_wal;
	Buffer		logged[XLR_MAX_BLOCK_ID];	/* completed, locked, not logged */
	int			nlogged;
	int			log_pages;		/* pages per XLOG_FPI record (pinned_pages) */
	int			batch_pages;	/* graph pages per batch (pinned_pages) */
	int64		mapped_pages;	/* of the buffer pool (finish_pool_mapping) */
	instr_time	mapping_time;	/* ... and the time it took */
	instr_time	buffers_time;	/* graph pages: taking new buffers */
	instr_time	forming_time;	/* graph pages: the threads filling them */
	instr_time	logging_time;	/* every page: WAL and release */
	const Graph *graph;
	const HnswHeapTids *heaptids;
	const HnswPayloads *payloads;	/* NULL or size 0: no fine pages */
	int64		count;			/* elements to write */
	int32	   *order;			/* placement order: element ids */
	ItemPointerData *element_tids;	/* per element id */
	ItemPointerData *neighbor_tids; /* per element id */
	int64	   *overflow_start; /* element id -> first of its overflow_tids */
	ItemPointerData *overflow_tids; /* heap-TID overflow tuples, by element */
	ItemPointerData *fine_tids; /* per element id: first fine tuple */
	int64	   *page_start;		/* graph block -> its first of page_tuples */
	struct TupleRef *page_tuples;	/* tuples of each graph page, in order */
	BlockNumber graph_nblocks;	/* blocks up to the last element page */
	BlockNumber nblocks;		/* blocks including the meta page */
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

static void open_block(WriteState *state, OpenPage *slot, BlockNumber blkno,
					   uint16 page_type);
static void close_page(WriteState *state, OpenPage *page);
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
 * element goes on the current page (a new one when it does not fit) and its
 * neighbour tuple on the current "neighbours only" page.
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
						close_page(state, page);
					current.blkno = next_block;
					current.free = PAGE_ROOM;
					current.next_offset = FirstOffsetNumber;
					open_block(state, page, next_block, HNSW_PAGE_FINE);
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
			close_page(state, page);
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
 * Make the empty fork state->nblocks long by writing its last block (zeroes;
 * the passes fill it like every other block), so that every block is then
 * taken as a zeroed buffer without any read.  Nobody else can see the index
 * while it is built, but extending is done under the extension lock as
 * everywhere.
 */
static void
extend_fork(WriteState *state)
{
	PGAlignedBlock zero;

	memset(zero.data, 0, BLCKSZ);
	LockRelationForExtension(state->index, ExclusiveLock);
	if (RelationGetNumberOfBlocksInFork(state->index, state->fork) != 0)
		elog(ERROR, "hnsw bulk write: index \"%s\" is not empty",
			 RelationGetRelationName(state->index));
	smgrextend(RelationGetSmgr(state->index), state->fork, state->nblocks - 1,
			   zero.data, false);
	UnlockRelationForExtension(state->index, ExclusiveLock);
}

/* A zeroed, exclusively locked buffer for blkno, initialised as page_type. */
static void
open_block(WriteState *state, OpenPage *slot, BlockNumber blkno, uint16 page_type)
{
	slot->buffer = ReadBufferExtended(state->index, state->fork, blkno,
									  RBM_ZERO_AND_LOCK, NULL);
	slot->blkno = blkno;
	slot->page = BufferGetPage(slot->buffer);
	hnsw_init_page(slot->page, page_type);
}

/*
 * WAL-log the completed pages waiting in state->logged as one XLOG_FPI
 * record (as log_newpage_range does) and release them.
 */
static void
log_completed_pages(WriteState *state)
{
	instr_time	started;
	instr_time	done;

	if (state->nlogged == 0)
		return;
	INSTR_TIME_SET_CURRENT(started);
	if (state->need_wal)
	{
		XLogRecPtr	recptr;

		START_CRIT_SECTION();
		XLogBeginInsert();
		for (int i = 0; i < state->nlogged; i++)
			XLogRegisterBuffer((uint8) i, state->logged[i],
							   REGBUF_FORCE_IMAGE | REGBUF_STANDARD);
		recptr = XLogInsert(RM_XLOG_ID, XLOG_FPI);
		for (int i = 0; i < state->nlogged; i++)
			PageSetLSN(BufferGetPage(state->logged[i]), recptr);
		END_CRIT_SECTION();

		/*
		 * Wake the WAL writer to write (and flush) what is logged so far in
		 * the background, as an asynchronous commit does: otherwise this
		 * backend writes every full WAL buffer itself and waits for each
		 * segment's fsync, and gigabytes of page images take as long to
		 * write as to form.
		 */
		XLogSetAsyncXactLSN(recptr);
	}
	for (int i = 0; i < state->nlogged; i++)
		UnlockReleaseBuffer(state->logged[i]);
	state->nlogged = 0;
	INSTR_TIME_SET_CURRENT(done);
	INSTR_TIME_ACCUM_DIFF(state->logging_time, done, started);
}

/*
 * A filled page is complete: dirty it (before its WAL record, as the rules
 * ask) and queue it for logging.
 */
static void
close_page(WriteState *state, OpenPage *page)
{
	MarkBufferDirty(page->buffer);
	state->logged[state->nlogged++] = page->buffer;
	if (state->nlogged == state->log_pages)
		log_completed_pages(state);
	page->blkno = InvalidBlockNumber;
	page->buffer = InvalidBuffer;
	page->page = NULL;
}

/*
 * Room for a tuple of `size` at line pointer `offset` of an initialised page,
 * which must be the next one; as PageAddItem does it, but without any
 * PostgreSQL call, so that the threads forming graph pages use it as well as
 * the backend.  NULL when the page disagrees with the plan.
 */
static char *
page_place_tuple(Page page, Size size, OffsetNumber offset)
{
	PageHeader	header = (PageHeader) page;
	Size		aligned = MAXALIGN(size);

	if (offset != PageGetMaxOffsetNumber(page) + 1 ||
		header->pd_upper < header->pd_lower ||
		(Size) (header->pd_upper - header->pd_lower) < aligned + sizeof(ItemIdData))
		return NULL;
	header->pd_upper -= aligned;
	ItemIdSetNormal(PageGetItemId(page, offset), header->pd_upper, size);
	header->pd_lower += sizeof(ItemIdData);
	return (char *) page + header->pd_upper;
}

/* ERROR for a tuple that does not go where pass 1 planned it: a bug here. */
static void report_misplaced_tuple(Relation index, ItemPointer planned) pg_attribute_noreturn();

static void
report_misplaced_tuple(Relation index, ItemPointer planned)
{
	elog(ERROR, "hnsw bulk write: tuple for (%u,%u) of index \"%s\" does not fit where planned",
		 ItemPointerGetBlockNumber(planned),
		 ItemPointerGetOffsetNumber(planned),
		 RelationGetRelationName(index));
}

/* Add a tuple where pass 1 planned it. */
static void
add_planned(Relation index, OpenPage *page, const void *tuple, Size size,
			ItemPointer planned)
{
	char	   *place = page_place_tuple(page->page, size,
										 ItemPointerGetOffsetNumber(planned));

	if (place == NULL)
		report_misplaced_tuple(index, planned);
	memcpy(place, tuple, size);
}

/*
 * Pass 2 runs on the build's threads: the backend takes a batch of new
 * buffers (zeroed and locked), the threads fill them, and the backend
 * WAL-logs and releases them.  What one page holds comes from pass 1: its
 * tuples in the order they were placed, which is their offset order.
 */
#define TUPLE_ELEMENT	(-1)
#define TUPLE_NEIGHBORS	(-2)

/* One tuple of a page: its element, and which tuple of that element. */
typedef struct TupleRef
{
	int32		id;
	int32		part;			/* TUPLE_ELEMENT, TUPLE_NEIGHBORS, or the
								 * number of the heap-TID overflow tuple in
								 * the element's chain */
} TupleRef;

/*
 * Pages per batch, all locked at once: with the XLR_MAX_BLOCK_ID completed
 * pages that may wait for their WAL record, 160 content locks, under
 * MAX_SIMUL_LWLOCKS (200).  Each batch starts and joins the build's threads
 * once, and that, not the forming, was most of the forming time at 64
 * (H100, 1M x 768: page writing 3.95-4.15 s -> 3.48-4.03 s at 128).
 */
#define PAGE_BATCH	(4 * XLR_MAX_BLOCK_ID)

/*
 * How many new pages the writer holds pinned: a batch plus the completed
 * pages waiting for their record.  A small buffer pool (16 buffers at the
 * least) must keep room for everybody else, so the two shrink to an eighth
 * of the pool each when PAGE_BATCH and XLR_MAX_BLOCK_ID would not.
 */
static void
pinned_pages(WriteState *state)
{
	int			share = Max(NBuffers / 8, 1);

	state->batch_pages = Min(PAGE_BATCH, share);
	state->log_pages = Min(XLR_MAX_BLOCK_ID, share);
}

/* The TID pass 1 gave a tuple. */
static ItemPointer
tuple_tid(WriteState *state, TupleRef ref)
{
	if (ref.part == TUPLE_ELEMENT)
		return &state->element_tids[ref.id];
	if (ref.part == TUPLE_NEIGHBORS)
		return &state->neighbor_tids[ref.id];
	return &state->overflow_tids[state->overflow_start[ref.id] + ref.part];
}

/*
 * The tuples of each graph page (blocks 1 .. graph_nblocks - 1) in placement
 * order: a counting sort by block of every element's tuples in the order
 * pass 1 placed them (element, neighbour tuple, heap-TID tuples, element by
 * element in placement order).
 */
static void
list_page_tuples(WriteState *state)
{
	BlockNumber nblocks = state->graph_nblocks;
	int64		total = 2 * state->count + state->overflow_start[state->count];
	int64	   *next = NULL;

	state->page_start = MemoryContextAllocHuge(CurrentMemoryContext,
											   sizeof(int64) * (nblocks + 1));
	state->page_tuples = MemoryContextAllocHuge(CurrentMemoryContext,
												sizeof(TupleRef) * total);
	memset(state->page_start, 0, sizeof(int64) * (nblocks + 1));

	/* pass 0 counts each page's tuples, pass 1 places them */
	for (int pass = 0; pass < 2; pass++)
	{
		for (int64 position = 0; position < state->count; position++)
		{
			int32		id = state->order[position];
			int32		chain = (int32) (state->overflow_start[id + 1] -
										 state->overflow_start[id]);

			/* as pass 1 placed them: element, neighbours, the heap-TID chain */
			for (int32 step = 0; step < 2 + chain; step++)
			{
				TupleRef	ref = {id, step == 0 ? TUPLE_ELEMENT :
				step == 1 ? TUPLE_NEIGHBORS : step - 2};
				BlockNumber blkno = ItemPointerGetBlockNumber(tuple_tid(state, ref));

				if (blkno <= HNSW_METAPAGE_BLKNO || blkno >= nblocks)
					elog(ERROR, "hnsw bulk write: a tuple of element %d was planned on block %u, outside the graph's %u blocks",
						 id, blkno, nblocks);
				if (pass == 0)
					state->page_start[blkno + 1]++;
				else
					state->page_tuples[next[blkno]++] = ref;
			}
		}
		if (pass == 0)
		{
			for (BlockNumber blkno = 0; blkno < nblocks; blkno++)
				state->page_start[blkno + 1] += state->page_start[blkno];
			next = MemoryContextAllocHuge(CurrentMemoryContext, sizeof(int64) * nblocks);
			memcpy(next, state->page_start, sizeof(int64) * nblocks);
		}
	}
	pfree(next);
}

/* Element id's element tuple (with its vector), formed in place. */
static void
form_element_tuple(WriteState *state, int32 id, HnswElementTuple element)
{
	const Graph *graph = state->graph;
	int			dim = graph->params.dim;
	int64		tid_start = state->heaptids->start[id];
	int64		tid_count = state->heaptids->start[id + 1] - tid_start;
	int64		first_overflow = state->overflow_start[id];

	memset(element, 0, offsetof(HnswElementTupleData, vector));
	element->type = HNSW_ELEMENT_TUPLE;
	element->level = (uint8) graph->levels[id];
	element->state = HNSW_ELEMENT_LIVE;
	element->heaptid_count = (uint8) Min(tid_count, HNSW_HEAPTIDS);
	for (int i = 0; i < HNSW_HEAPTIDS; i++)
	{
		if (i < tid_count)
			element->heaptids[i] = state->heaptids->tids[tid_start + i];
		else
			ItemPointerSetInvalid(&element->heaptids[i]);
	}
	if (first_overflow < state->overflow_start[id + 1])
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
}

/*
 * Element id's neighbour tuple, formed in place: element TIDs, packed,
 * invalid after the end.  False when a list is longer than its layer allows
 * or names an id outside the graph (an engine bug; the backend reports it).
 */
static bool
form_neighbor_tuple(WriteState *state, int32 id, HnswNeighborTuple neighbors)
{
	const Graph *graph = state->graph;
	int			m = graph->params.m;
	int			level = graph->levels[id];

	neighbors->type = HNSW_NEIGHBOR_TUPLE;
	neighbors->level = (uint8) level;
	for (int layer = 0; layer <= level; layer++)
	{
		const int32_t *ids;
		int			n = graph_neighbors(graph, id, layer, &ids);
		int			width = hnsw_layer_width(layer, m);
		ItemPointerData *slots = neighbors->slots + hnsw_neighbor_offset(layer, m);

		if (n < 0 || n > width)
			return false;
		for (int i = 0; i < width; i++)
		{
			if (i < n)
			{
				if (ids[i] < 0 || ids[i] >= state->count)
					return false;
				slots[i] = state->element_tids[ids[i]];
			}
			else
				ItemPointerSetInvalid(&slots[i]);
		}
	}
	return true;
}

/* ERROR for element id's neighbour lists, which form_neighbor_tuple refused. */
static void
report_bad_links(WriteState *state, int32 id)
{
	const Graph *graph = state->graph;

	for (int layer = 0; layer <= graph->levels[id]; layer++)
	{
		const int32_t *ids;
		int			n = graph_neighbors(graph, id, layer, &ids);
		int			width = hnsw_layer_width(layer, graph->params.m);

		if (n < 0 || n > width)
			elog(ERROR, "hnsw bulk write: element %d has %d neighbours on layer %d (at most %d)",
				 id, n, layer, width);
		for (int i = 0; i < n; i++)
			if (ids[i] < 0 || ids[i] >= state->count)
				elog(ERROR, "graph element %d links to element %d outside the graph of " INT64_FORMAT " elements",
					 id, ids[i], state->count);
	}
}

/* Heap-TID overflow tuple `number` of element id's chain, formed in place. */
static void
form_overflow_tuple(WriteState *state, int32 id, int32 number,
					HnswHeapTidTuple overflow)
{
	int64		tid_start = state->heaptids->start[id];
	int64		tid_count = state->heaptids->start[id + 1] - tid_start;
	int64		chain = state->overflow_start[id];
	int64		tid_offset = HNSW_HEAPTIDS + (int64) number * HNSW_OVERFLOW_HEAPTIDS;
	int			count = (int) Min(tid_count - tid_offset, HNSW_OVERFLOW_HEAPTIDS);

	memset(overflow, 0, sizeof(HnswHeapTidTupleData));
	overflow->type = HNSW_HEAPTID_TUPLE;
	overflow->count = (uint16) count;
	if (chain + number + 1 < state->overflow_start[id + 1])
		overflow->next = state->overflow_tids[chain + number + 1];
	else
		ItemPointerSetInvalid(&overflow->next);
	for (int j = 0; j < HNSW_OVERFLOW_HEAPTIDS; j++)
	{
		if (j < count)
			overflow->heaptids[j] = state->heaptids->tids[tid_start + tid_offset + j];
		else
			ItemPointerSetInvalid(&overflow->heaptids[j]);
	}
}

/*
 * Fill graph page blkno (initialised, empty) with its tuples.  Runs on the
 * build's threads: no PostgreSQL call.  Returns -1 when done, else the
 * index in page_tuples of the tuple that could not be written.
 */
static int64
fill_graph_page(WriteState *state, BlockNumber blkno, Page page)
{
	Size		element_size = hnsw_element_tuple_size(state->graph->params.dim);
	int			m = state->graph->params.m;

	for (int64 i = state->page_start[blkno]; i < state->page_start[blkno + 1]; i++)
	{
		TupleRef	ref = state->page_tuples[i];
		OffsetNumber offset = ItemPointerGetOffsetNumber(tuple_tid(state, ref));
		Size		size;
		char	   *tuple;

		if (ref.part == TUPLE_ELEMENT)
			size = element_size;
		else if (ref.part == TUPLE_NEIGHBORS)
			size = hnsw_neighbor_tuple_size(state->graph->levels[ref.id], m);
		else
			size = sizeof(HnswHeapTidTupleData);
		tuple = page_place_tuple(page, size, offset);
		if (tuple == NULL)
			return i;
		if (ref.part == TUPLE_ELEMENT)
			form_element_tuple(state, ref.id, (HnswElementTuple) tuple);
		else if (ref.part == TUPLE_NEIGHBORS)
		{
			if (!form_neighbor_tuple(state, ref.id, (HnswNeighborTuple) tuple))
				return i;
		}
		else
			form_overflow_tuple(state, ref.id, ref.part, (HnswHeapTidTuple) tuple);
	}
	return -1;
}

#ifdef MADV_POPULATE_WRITE

/* Pages of the buffer pool that one mincore call asks about. */
#define MAP_CHUNK_PAGES		1024

/* At most this many threads map the pool. */
#define MAP_MAX_THREADS		64

/*
 * The mapping of the pool (file header: "Mapping the buffer pool"): threads
 * of its own, each walking a share of the pool, started by start_pool_mapping
 * and waited for by finish_pool_mapping.  When a build fails in between, the
 * threads run on (touching nothing but page tables) and the next start joins
 * them.
 */
static struct
{
	int			threads;		/* started and not joined; 0: none */
	pthread_t	thread[MAP_MAX_THREADS];
	int			shares;			/* of the pool; thread[i] need not walk share i */
	pg_atomic_uint32 finished;	/* shares done */
	pg_atomic_uint32 unsupported;	/* a share met a kernel without the call */
	int64		mapped[MAP_MAX_THREADS];	/* by share */
	char	   *pool;
	long		page_size;
	int64		pages;
	int64		per_share;
}			pool_mapping;

/*
 * Whether mapping the pool pays for a write of about `blocks` new pages on
 * `threads` threads: only when it takes at least half the pool divided by
 * the thread count, since the walk costs about 0.3 us per 4 kB page of the
 * whole pool, divided by the threads, and saves about 2 us per page taken.
 */
static bool
mapping_pays(double blocks, int threads)
{
	return blocks * threads >= NBuffers / 2.0;
}

/*
 * Map the resident ones of pool pages [first, last) into this process's
 * page tables.  Plain system calls, no PostgreSQL call.  Returns the number
 * of pages mapped; an error ends the walk (EINVAL from madvise: a kernel
 * before 5.14, noted in pool_mapping.unsupported).
 */
static int64
map_resident_pages(int64 first, int64 last)
{
	long		page_size = pool_mapping.page_size;
	int64		mapped = 0;
	unsigned char resident[MAP_CHUNK_PAGES];

	for (; first < last; first += MAP_CHUNK_PAGES)
	{
		int			count = (int) Min(MAP_CHUNK_PAGES, last - first);
		char	   *base = pool_mapping.pool + first * page_size;
		int			run = 0;

		if (mincore(base, (size_t) count * page_size, resident) != 0)
			return mapped;
		for (int i = 0; i <= count; i++)
		{
			if (i < count && (resident[i] & 1))
				continue;
			if (i > run &&
				madvise(base + (size_t) run * page_size,
						(size_t) (i - run) * page_size, MADV_POPULATE_WRITE) != 0)
			{
				if (errno == EINVAL)
					pg_atomic_write_u32(&pool_mapping.unsupported, 1);
				return mapped;
			}
			mapped += i - run;
			run = i + 1;
		}
	}
	return mapped;
}

static void *
pool_mapping_main(void *arg)
{
	int			share = (int) (intptr_t) arg;
	int64		first = share * pool_mapping.per_share;

	pool_mapping.mapped[share] =
		map_resident_pages(first, Min(pool_mapping.pages, first + pool_mapping.per_share));
	pg_atomic_fetch_add_u32(&pool_mapping.finished, 1);
	return NULL;
}

/*
 * Wait for the mapping threads, checking for interrupts (on a huge pool they
 * may take seconds), and join them.
 */
static void
join_pool_mapping(void)
{
	if (pool_mapping.threads == 0)
		return;					/* none started (finished not initialised) */
	while (pg_atomic_read_u32(&pool_mapping.finished) < (uint32) pool_mapping.threads)
	{
		CHECK_FOR_INTERRUPTS();
		pg_usleep(1000L);
	}
	for (int i = 0; i < pool_mapping.threads; i++)
		pthread_join(pool_mapping.thread[i], NULL);
	pool_mapping.threads = 0;
}

/*
 * Before planning the layout of a graph of `count` elements: start mapping
 * the pool on `threads` threads when that pays (a lower bound of the
 * index's size, its vectors alone, decides).  The threads only make system
 * calls, with every signal blocked; a share whose thread cannot be started
 * is left to the page faults.
 */
static void
start_pool_mapping(int64 count, int dimensions, int threads)
{
	long		page_size = sysconf(_SC_PAGESIZE);
	double		blocks = (double) count * hnsw_element_tuple_size(dimensions) / BLCKSZ;
	sigset_t	all_signals;
	sigset_t	saved_signals;
	int			started = 0;

	/* a failed build's threads: done within a second, unless the pool is huge */
	join_pool_mapping();
	if (page_size <= 0 || !mapping_pays(blocks, threads))
		return;
	threads = Max(1, Min(threads, MAP_MAX_THREADS));
	pool_mapping.page_size = page_size;
	pool_mapping.pool = (char *) TYPEALIGN_DOWN(page_size, (uintptr_t) BufferBlocks);
	pool_mapping.pages = (int64) ((TYPEALIGN(page_size, (uintptr_t) BufferBlocks +
											 (Size) NBuffers * BLCKSZ) -
								   (uintptr_t) pool_mapping.pool) / page_size);
	pool_mapping.per_share = (pool_mapping.pages + threads - 1) / threads;
	pool_mapping.shares = threads;
	for (int i = 0; i < threads; i++)
		pool_mapping.mapped[i] = 0;
	pg_atomic_init_u32(&pool_mapping.finished, 0);
	pg_atomic_init_u32(&pool_mapping.unsupported, 0);
	sigfillset(&all_signals);
	pthread_sigmask(SIG_BLOCK, &all_signals, &saved_signals);
	for (int i = 0; i < threads; i++)
		if (pthread_create(&pool_mapping.thread[started], NULL, pool_mapping_main,
						   (void *) (intptr_t) i) == 0)
			started++;
	pthread_sigmask(SIG_SETMASK, &saved_signals, NULL);
	pool_mapping.threads = started;
}

/*
 * Join the mapping threads.  Returns the pages they mapped, 0 when none ran,
 * -1 when the kernel lacks MADV_POPULATE_WRITE.
 */
static int64
finish_pool_mapping(void)
{
	int64		mapped = 0;

	if (pool_mapping.threads == 0)
		return 0;
	join_pool_mapping();
	for (int i = 0; i < pool_mapping.shares; i++)
		mapped += pool_mapping.mapped[i];
	return pg_atomic_read_u32(&pool_mapping.unsupported) && mapped == 0 ? -1 : mapped;
}

#else							/* !MADV_POPULATE_WRITE */

static void
start_pool_mapping(int64 count, int dimensions, int threads)
{
}

static int64
finish_pool_mapping(void)
{
	return -1;
}

#endif

/*
 * Pass 2 for the graph pages, a batch (batch_pages) at a time: the
 * backend takes the batch's new buffers, the build's threads fill them
 * (every signal blocked, as while linking), the backend checks the result,
 * logs and releases them.
 */
static void
write_graph_pages(WriteState *state)
{
	int			threads = hnsw_build_thread_count();
	OpenPage	batch[PAGE_BATCH];
	int64		failed[PAGE_BATCH];
	sigset_t	all_signals;
	sigset_t	saved_signals;
	instr_time	mapping_started;

	sigfillset(&all_signals);
	list_page_tuples(state);
	INSTR_TIME_SET_CURRENT(mapping_started);
	state->mapped_pages = finish_pool_mapping();
	INSTR_TIME_SET_CURRENT(state->mapping_time);
	INSTR_TIME_SUBTRACT(state->mapping_time, mapping_started);

	for (BlockNumber first = HNSW_METAPAGE_BLKNO + 1; first < state->graph_nblocks;
		 first += state->batch_pages)
	{
		int			count = (int) Min((BlockNumber) state->batch_pages,
									  state->graph_nblocks - first);

		instr_time	started;
		instr_time	opened;
		instr_time	filled;

		INSTR_TIME_SET_CURRENT(started);
		for (int i = 0; i < count; i++)
			open_block(state, &batch[i], first + i, HNSW_PAGE_ELEMENT);
		INSTR_TIME_SET_CURRENT(opened);

		pthread_sigmask(SIG_BLOCK, &all_signals, &saved_signals);
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1)
		for (int i = 0; i < count; i++)
			failed[i] = fill_graph_page(state, batch[i].blkno, batch[i].page);
		pthread_sigmask(SIG_SETMASK, &saved_signals, NULL);
		INSTR_TIME_SET_CURRENT(filled);
		INSTR_TIME_ACCUM_DIFF(state->buffers_time, opened, started);
		INSTR_TIME_ACCUM_DIFF(state->forming_time, filled, opened);

		for (int i = 0; i < count; i++)
		{
			if (failed[i] >= 0)
			{
				TupleRef	ref = state->page_tuples[failed[i]];
				ItemPointer planned = tuple_tid(state, ref);

				if (ref.part == TUPLE_NEIGHBORS)
					report_bad_links(state, ref.id);
				report_misplaced_tuple(state->index, planned);
			}
			close_page(state, &batch[i]);
		}
		pgstat_progress_update_param(PROGRESS_CREATEIDX_TUPLES_DONE,
									 (int64) ((double) state->count *
											  (first + count) / state->graph_nblocks));
		CHECK_FOR_INTERRUPTS();
	}
	pgstat_progress_update_param(PROGRESS_CREATEIDX_TUPLES_DONE, state->count);
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
	OpenPage	page;
	MemoryContext write_context;
	MemoryContext old_context;
	instr_time	started;
	instr_time	planned;
	instr_time	written;

	write_context = AllocSetContextCreate(CurrentMemoryContext,
										  "hnsw bulk write",
										  ALLOCSET_DEFAULT_SIZES);
	old_context = MemoryContextSwitchTo(write_context);

	memset(&state, 0, sizeof(state));
	state.index = index;
	state.fork = fork;
	state.need_wal = RelationNeedsWAL(index) || fork == INIT_FORKNUM;
	state.graph = graph;
	state.heaptids = heaptids;
	state.payloads = payloads;
	state.count = graph->count;
	state.nblocks = 1;			/* the meta page */

	INSTR_TIME_SET_CURRENT(started);
	pgstat_progress_update_param(PROGRESS_CREATEIDX_SUBPHASE, HNSW_PHASE_WRITE);
	pgstat_progress_update_param(PROGRESS_CREATEIDX_TUPLES_TOTAL, state.count);
	pgstat_progress_update_param(PROGRESS_CREATEIDX_TUPLES_DONE, 0);

	if (state.count > 0)
	{
		/* the pool is mapped while the layout is planned */
		start_pool_mapping(state.count, graph->params.dim, hnsw_build_thread_count());
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
	/* XLOG_FPI records of up to XLR_MAX_BLOCK_ID pages */
	pinned_pages(&state);
	if (state.need_wal)
		XLogEnsureRecordSpace(XLR_MAX_BLOCK_ID - 1, 0);
	extend_fork(&state);
	if (state.count > 0)
	{
		write_graph_pages(&state);
		if (state.fine_tids != NULL)
		{
			page.blkno = InvalidBlockNumber;
			page.buffer = InvalidBuffer;
			page.page = NULL;
			layout_fine(&state, &page);
		}
	}

	/* the meta page last, with the others' counts and the entry point */
	fill_meta(&state, build_method, build_seconds, &meta);
	open_block(&state, &page, HNSW_METAPAGE_BLKNO, HNSW_PAGE_META);
	hnsw_form_meta_page(page.page, &meta);
	close_page(&state, &page);
	log_completed_pages(&state);

	if (RelationGetNumberOfBlocksInFork(index, fork) != state.nblocks)
		elog(ERROR, "hnsw bulk write: index \"%s\" has %u blocks, planned %u",
			 RelationGetRelationName(index),
			 RelationGetNumberOfBlocksInFork(index, fork), state.nblocks);
	INSTR_TIME_SET_CURRENT(written);

	/* the two parts of the write phase, for tuning builds of every size */
	INSTR_TIME_SUBTRACT(written, planned);
	INSTR_TIME_SUBTRACT(planned, started);
	elog(DEBUG1, "bulk write of \"%s\": %u blocks; layout %.2f s, pages and WAL %.2f s (buffer pool: %s in %.2f s; graph pages: new buffers %.2f s, forming %.2f s; WAL and release %.2f s)",
		 RelationGetRelationName(index), state.nblocks,
		 INSTR_TIME_GET_DOUBLE(planned), INSTR_TIME_GET_DOUBLE(written),
		 state.mapped_pages < 0 ? "not mapped (no MADV_POPULATE_WRITE here)" :
		 psprintf(INT64_FORMAT " pages mapped", state.mapped_pages),
		 INSTR_TIME_GET_DOUBLE(state.mapping_time),
		 INSTR_TIME_GET_DOUBLE(state.buffers_time),
		 INSTR_TIME_GET_DOUBLE(state.forming_time),
		 INSTR_TIME_GET_DOUBLE(state.logging_time));

	MemoryContextSwitchTo(old_context);
	MemoryContextDelete(write_context);
}
