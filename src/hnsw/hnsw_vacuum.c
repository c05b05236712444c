/*
 * hnsw_vacuum.c — VACUUM for hnsw and matryoshka indexes (ambulkdelete,
 * amvacuumcleanup): dead heap TIDs out, emptied elements unlinked from the
 * graph, their space handed to later inserts.
 *
 * Phases (README "VACUUM" has the why of each):
 *
 *   1. remove   page by page, one exclusive lock at a time: dead heap TIDs
 *               leave every element and heap-TID overflow tuple; an element
 *               left with none and without a chain is marked deleted; one
 *               with a chain is decided in a second pass with inserts held
 *               off (exclusive heavyweight lock on block 0), reading the
 *               chain one tuple at a time;
 *   2. barrier  the exclusive lock on block 0 once more: every insert that
 *               might have seen a deleted element live has finished, and
 *               later ones never link to it (hnsw_insert.c skips deleted
 *               elements); under that lock the entry point moves to a live
 *               element of the highest level if it was deleted;
 *   3. repair   every live element's lists, page by page: a link to a
 *               deleted element is replaced by candidates found through
 *               the graph (the deleted element's own live neighbours on that
 *               layer, the list's live members, and, when they are too few,
 *               a search of the layer from the entry point), pruned with the
 *               engine's neighbour heuristic; a list is written only if it
 *               is still the one the candidates came from (else redone);
 *   4. free     each deleted element is marked free (no list points at it
 *               any more), and its page goes into the free space map with
 *               the highest level of a free slot on it, where an insert
 *               looks for a slot before it extends the index.
 *
 * Phase 1 needs dead heap TIDs (ambulkdelete); phases 2-4 run for every
 * element found deleted, also from amvacuumcleanup when no bulk delete ran
 * (a VACUUM interrupted after phase 1 leaves deleted elements behind).
 * Never two buffer locks at once; each changed page is one GenericXLog
 * record, so a scan sees the old or the new tuple and a standby replays the
 * same change.  vacuum_delay_point() between pages keeps cost-based delay.
 * A page that is all zeros (added but never written before a crash) holds
 * nothing and is skipped.
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/generic_xlog.h"
#include "commands/vacuum.h"
#include "miscadmin.h"
#include "storage/bufmgr.h"
#include "storage/bufpage.h"
#include "storage/freespace.h"
#include "storage/lmgr.h"
#include "utils/rel.h"

#include "hnsw/hnsw.h"

static void
report_corrupted(Relation index, BlockNumber blkno, OffsetNumber offnum,
				 const char *what)
{
	ereport(ERROR,
			(errcode(ERRCODE_INDEX_CORRUPTED),
			 errmsg("index \"%s\" has a corrupted %s at block %u, item %u",
					RelationGetRelationName(index), what, blkno, offnum),
			 errhint("Please REINDEX it.")));
}

/*
 * The element tuple at offnum, or NULL for any other tuple.  ERRORs on a
 * tuple too short to hold an element header: VACUUM must not write through
 * a pointer it cannot trust.
 */
static HnswElementTuple
vacuum_element(Relation index, Page page, BlockNumber blkno, OffsetNumber offnum)
{
	ItemId		itemid = PageGetItemId(page, offnum);
	HnswElementTuple etup;

	if (!ItemIdIsNormal(itemid))
		return NULL;
	etup = (HnswElementTuple) PageGetItem(page, itemid);
	if (HnswTupleType(etup->type) != HNSW_ELEMENT_TUPLE)
		return NULL;
	if (ItemIdGetOffset(itemid) + ItemIdGetLength(itemid) > BLCKSZ ||
		ItemIdGetLength(itemid) < offsetof(HnswElementTupleData, vector) ||
		etup->heaptid_count > HNSW_HEAPTIDS)
		report_corrupted(index, blkno, offnum, "element tuple");
	return etup;
}

/*
 * The heap-TID overflow tuple at offnum, or NULL for any other tuple;
 * ERRORs on one whose size or count cannot be trusted.
 */
static HnswHeapTidTuple
vacuum_overflow(Relation index, Page page, BlockNumber blkno, OffsetNumber offnum)
{
	ItemId		itemid = PageGetItemId(page, offnum);
	HnswHeapTidTuple tuple;

	if (!ItemIdIsNormal(itemid))
		return NULL;
	tuple = (HnswHeapTidTuple) PageGetItem(page, itemid);
	if (tuple->type != HNSW_HEAPTID_TUPLE)
		return NULL;
	if (ItemIdGetOffset(itemid) + ItemIdGetLength(itemid) > BLCKSZ ||
		ItemIdGetLength(itemid) < sizeof(HnswHeapTidTupleData) ||
		tuple->count > HNSW_OVERFLOW_HEAPTIDS)
		report_corrupted(index, blkno, offnum, "heap-TID overflow tuple");
	return tuple;
}

/* Write the live heap TIDs back, compacted, invalid after them. */
static void
store_live(ItemPointerData *tids, int capacity, const ItemPointerData *live,
		   int nlive)
{
	memmove(tids, live, sizeof(ItemPointerData) * nlive);
	for (int i = nlive; i < capacity; i++)
		ItemPointerSetInvalid(&tids[i]);
}

/*
 * Pass 2 for one element that kept no inline heap TID but has a chain:
 * mark it deleted if the chain holds no heap TID either.  Called with
 * inserts held off (exclusive lock on block 0), so nothing is added
 * meanwhile; reads one page at a time.  Returns whether it marked it.
 */
static bool
delete_if_chain_empty(Relation index, ItemPointer tid, BufferAccessStrategy strategy)
{
	BlockNumber blkno = ItemPointerGetBlockNumber(tid);
	OffsetNumber offnum = ItemPointerGetOffsetNumber(tid);
	BlockNumber nblocks = RelationGetNumberOfBlocks(index);
	int64		max_steps = (int64) nblocks * HNSW_HEAPTID_TUPLES_PER_PAGE;
	int64		steps = 0;
	ItemPointerData next;
	GenericXLogState *xlog;
	HnswElementTuple etup;
	Buffer		buffer;
	Page		page;

	buffer = ReadBufferExtended(index, MAIN_FORKNUM, blkno, RBM_NORMAL, strategy);
	LockBuffer(buffer, BUFFER_LOCK_SHARE);
	page = BufferGetPage(buffer);
	etup = vacuum_element(index, page, blkno, offnum);
	if (etup == NULL || !HnswElementIsLive(etup) || etup->heaptid_count > 0)
	{
		UnlockReleaseBuffer(buffer);
		return false;
	}
	next = etup->overflowtid;
	UnlockReleaseBuffer(buffer);

	while (ItemPointerIsValid(&next))
	{
		BlockNumber oblkno = ItemPointerGetBlockNumber(&next);
		OffsetNumber ooffnum = ItemPointerGetOffsetNumber(&next);
		HnswHeapTidTuple overflow = NULL;
		int			count;

		if (oblkno == HNSW_METAPAGE_BLKNO || oblkno >= nblocks || steps++ >= max_steps)
			report_corrupted(index, blkno, offnum, "heap-TID overflow chain");
		buffer = ReadBufferExtended(index, MAIN_FORKNUM, oblkno, RBM_NORMAL, strategy);
		LockBuffer(buffer, BUFFER_LOCK_SHARE);
		page = BufferGetPage(buffer);
		if (!PageIsNew(page))
		{
			hnsw_check_page(index, page, oblkno);
			if (ooffnum >= FirstOffsetNumber && ooffnum <= PageGetMaxOffsetNumber(page))
				overflow = vacuum_overflow(index, page, oblkno, ooffnum);
		}
		if (overflow == NULL)
		{
			UnlockReleaseBuffer(buffer);
			report_corrupted(index, blkno, offnum, "heap-TID overflow chain");
		}
		count = overflow->count;
		next = overflow->next;
		UnlockReleaseBuffer(buffer);
		if (count > 0)
			return false;		/* rows of this vector remain */
	}

	buffer = ReadBufferExtended(index, MAIN_FORKNUM, blkno, RBM_NORMAL, strategy);
	LockBuffer(buffer, BUFFER_LOCK_EXCLUSIVE);
	xlog = GenericXLogStart(index);
	page = GenericXLogRegisterBuffer(xlog, buffer, 0);
	etup = vacuum_element(index, page, blkno, offnum);
	if (etup != NULL && HnswElementIsLive(etup) && etup->heaptid_count == 0)
	{
		etup->state = (etup->state & ~HNSW_ELEMENT_STATE_MASK) | HNSW_ELEMENT_DELETED;
		GenericXLogFinish(xlog);
		UnlockReleaseBuffer(buffer);
		return true;
	}
	GenericXLogAbort(xlog);
	UnlockReleaseBuffer(buffer);
	return false;
}

/* ------------------------------------------------------------------------
 * Element TIDs in a growing array (sorted before lookups)
 * ------------------------------------------------------------------------ */

typedef struct TidList
{
	ItemPointerData *tids;
	int			count;
	int			capacity;
} TidList;

static void
tid_list_add(TidList *list, BlockNumber blkno, OffsetNumber offnum)
{
	if (list->count == list->capacity)
	{
		list->capacity = Max(64, list->capacity * 2);
		list->tids = list->tids == NULL ?
			palloc(sizeof(ItemPointerData) * list->capacity) :
			repalloc_huge(list->tids, sizeof(ItemPointerData) * list->capacity);
	}
	/* ItemPointerSet is a macro that evaluates its pointer twice */
	ItemPointerSet(&list->tids[list->count], blkno, offnum);
	list->count++;
}

static int
tid_compare(const void *a, const void *b)
{
	return ItemPointerCompare((ItemPointer) a, (ItemPointer) b);
}

static bool
tid_list_contains(const TidList *list, ItemPointer tid)
{
	return list->count > 0 &&
		bsearch(tid, list->tids, list->count, sizeof(ItemPointerData),
				tid_compare) != NULL;
}

/* a live element of the highest level seen, for a new entry point */
typedef struct EntryCandidate
{
	ItemPointerData tid;		/* invalid: none yet */
	int			level;
} EntryCandidate;

static void
entry_candidate_offer(EntryCandidate *candidate, BlockNumber blkno,
					  OffsetNumber offnum, int level)
{
	if (!ItemPointerIsValid(&candidate->tid) || level > candidate->level)
	{
		ItemPointerSet(&candidate->tid, blkno, offnum);
		candidate->level = level;
	}
}

/* ------------------------------------------------------------------------
 * Phase 1: remove dead heap TIDs, mark emptied elements deleted
 * ------------------------------------------------------------------------ */

/*
 * One pass over the element pages.  callback NULL (amvacuumcleanup) removes
 * nothing and only counts.  Fills `deleted` with every element that is
 * deleted at the end (marked now or earlier) and offers the live elements
 * that keep an inline heap TID (sure to stay live) as new entry points;
 * those that keep only a chain go to `chained` for pass 2.
 */
static void
remove_dead_tids(IndexVacuumInfo *info, IndexBulkDeleteResult *stats,
				 IndexBulkDeleteCallback callback, void *callback_state,
				 TidList *deleted, EntryCandidate *sure, EntryCandidate *chained_entry)
{
	Relation	index = info->index;
	BlockNumber nblocks = RelationGetNumberOfBlocks(index);
	TidList		chained = {0};	/* pass 2: no inline TID, a chain */
	HnswMetaPageData meta;

	hnsw_read_meta(index, &meta);
	for (BlockNumber blkno = HNSW_METAPAGE_BLKNO + 1; blkno < nblocks; blkno++)
	{
		Buffer		buffer;
		Page		page;
		GenericXLogState *xlog = NULL;
		Size		free_space;

		vacuum_delay_point();

		buffer = ReadBufferExtended(index, MAIN_FORKNUM, blkno, RBM_NORMAL,
									info->strategy);
		LockBuffer(buffer, callback ? BUFFER_LOCK_EXCLUSIVE : BUFFER_LOCK_SHARE);
		page = BufferGetPage(buffer);
		if (PageIsNew(page))
		{
			UnlockReleaseBuffer(buffer);
			continue;
		}
		hnsw_check_page(index, page, blkno);

		for (OffsetNumber offnum = FirstOffsetNumber;
			 offnum <= PageGetMaxOffsetNumber(page);
			 offnum = OffsetNumberNext(offnum))
		{
			HnswElementTuple etup = vacuum_element(index, page, blkno, offnum);
			HnswHeapTidTuple overflow = NULL;
			ItemPointerData *tids;
			int			capacity;
			int			count;
			int			nlive;
			ItemPointerData live[Max(HNSW_HEAPTIDS, HNSW_OVERFLOW_HEAPTIDS)];

			if (etup != NULL)
			{
				if (HnswElementState(etup) == HNSW_ELEMENT_FREE)
					continue;
				if (HnswElementState(etup) == HNSW_ELEMENT_DELETED)
				{
					tid_list_add(deleted, blkno, offnum);
					continue;
				}
				tids = etup->heaptids;
				capacity = HNSW_HEAPTIDS;
				count = etup->heaptid_count;
			}
			else if ((overflow = vacuum_overflow(index, page, blkno, offnum)) != NULL)
			{
				tids = overflow->heaptids;
				capacity = HNSW_OVERFLOW_HEAPTIDS;
				count = overflow->count;
			}
			else
				continue;

			nlive = 0;
			for (int i = 0; i < count; i++)
			{
				if (callback && callback(&tids[i], callback_state))
					stats->tuples_removed++;
				else
					live[nlive++] = tids[i];
			}
			stats->num_index_tuples += nlive;

			if (etup != NULL)
			{
				if (nlive > 0)
					entry_candidate_offer(sure, blkno, offnum, etup->level);
				else if (ItemPointerIsValid(&etup->overflowtid))
				{
					/*
					 * Its chain may have lost its last rows (now or in an
					 * earlier VACUUM): pass 2 decides.
					 */
					tid_list_add(&chained, blkno, offnum);
					entry_candidate_offer(chained_entry, blkno, offnum, etup->level);
				}
				else
					tid_list_add(deleted, blkno, offnum);
			}
			if (nlive == count)
				continue;

			/*
			 * First change on this page: from here on work on the copy that
			 * GenericXLog hands out (same offsets), which it compares with
			 * the buffer at the end to log exactly what changed.
			 */
			if (xlog == NULL)
			{
				xlog = GenericXLogStart(index);
				page = GenericXLogRegisterBuffer(xlog, buffer, 0);
			}
			if (etup != NULL)
			{
				etup = (HnswElementTuple) PageGetItem(page, PageGetItemId(page, offnum));
				store_live(etup->heaptids, capacity, live, nlive);
				etup->heaptid_count = nlive;
				if (nlive == 0 && !ItemPointerIsValid(&etup->overflowtid))
					etup->state = (etup->state & ~HNSW_ELEMENT_STATE_MASK) |
						HNSW_ELEMENT_DELETED;
			}
			else
			{
				overflow = (HnswHeapTidTuple) PageGetItem(page, PageGetItemId(page, offnum));
				store_live(overflow->heaptids, capacity, live, nlive);
				overflow->count = nlive;
			}
		}

		/*
		 * Free slots of earlier VACUUMs go (back) into the free space map:
		 * it is not WAL-logged, so after a crash or on a promoted standby it
		 * may have lost them.
		 */
		free_space = hnsw_page_free_slot_space(page, blkno, meta.m);
		if (xlog)
			GenericXLogFinish(xlog);
		UnlockReleaseBuffer(buffer);
		if (free_space > 0)
			RecordPageWithFreeSpace(index, blkno, free_space);
	}

	/* pass 2, inserts held off: elements whose rows all went */
	if (chained.count > 0)
	{
		LockPage(index, HNSW_METAPAGE_BLKNO, ExclusiveLock);
		for (int i = 0; i < chained.count; i++)
		{
			vacuum_delay_point();
			if (delete_if_chain_empty(index, &chained.tids[i], info->strategy))
				tid_list_add(deleted, ItemPointerGetBlockNumber(&chained.tids[i]),
							 ItemPointerGetOffsetNumber(&chained.tids[i]));
		}
		UnlockPage(index, HNSW_METAPAGE_BLKNO, ExclusiveLock);
		pfree(chained.tids);
	}
	stats->num_pages = nblocks;
}

/* ------------------------------------------------------------------------
 * Phase 2: barrier and entry point
 * ------------------------------------------------------------------------ */

/*
 * Wait for the inserts in flight (they hold block 0 in share mode) and, if
 * the entry point is deleted, move it to `candidate`.  Returns the meta
 * page as it is afterwards.
 */
static void
move_entry_point(Relation index, const TidList *deleted,
				 const EntryCandidate *candidate, HnswMetaPageData *meta_out)
{
	Buffer		buffer;
	GenericXLogState *xlog;
	HnswMetaPage meta;

	LockPage(index, HNSW_METAPAGE_BLKNO, ExclusiveLock);
	buffer = ReadBuffer(index, HNSW_METAPAGE_BLKNO);
	LockBuffer(buffer, BUFFER_LOCK_EXCLUSIVE);
	hnsw_check_page(index, BufferGetPage(buffer), HNSW_METAPAGE_BLKNO);
	xlog = GenericXLogStart(index);
	meta = HnswPageGetMeta(GenericXLogRegisterBuffer(xlog, buffer, 0));
	if (ItemPointerIsValid(&meta->entry_point) &&
		tid_list_contains(deleted, &meta->entry_point))
	{
		if (ItemPointerIsValid(&candidate->tid))
		{
			meta->entry_point = candidate->tid;
			meta->max_level = candidate->level;
		}
		else
		{
			/* nothing live is left: the next insert starts the graph anew */
			ItemPointerSetInvalid(&meta->entry_point);
			meta->max_level = 0;
		}
		GenericXLogFinish(xlog);
	}
	else
		GenericXLogAbort(xlog);
	*meta_out = *meta;
	UnlockReleaseBuffer(buffer);
	UnlockPage(index, HNSW_METAPAGE_BLKNO, ExclusiveLock);
}

/* ------------------------------------------------------------------------
 * Phase 3: repair the lists that link to deleted elements
 * ------------------------------------------------------------------------ */

typedef struct RepairState
{
	Relation	index;
	BufferAccessStrategy strategy;
	HnswShape	shape;
	HnswMetaPageData meta;		/* after the entry point moved */
	const TidList *deleted;
	HnswWalk   *walk;			/* query: the element being repaired */
	GraphAccess *access;
	GraphNeighbor *candidates;	/* room for candidate_capacity */
	int			candidate_capacity;
	GraphNeighbor *found;		/* a layer search's results (ef + 2) */
	int64		lists_repaired;
} RepairState;

/* a live element of the walk as a candidate (dropped later if repeated) */
static void
add_candidate(RepairState *rs, int *count, int32 handle, int32 self)
{
	ItemPointerData finetid;

	if (handle == self || !hnsw_walk_element(rs->walk, handle, &finetid))
		return;					/* itself, or not live (deleted, free, bad) */
	if (*count == rs->candidate_capacity)
	{
		rs->candidate_capacity *= 2;
		rs->candidates = repalloc(rs->candidates,
								  sizeof(GraphNeighbor) * rs->candidate_capacity);
	}
	rs->candidates[*count].id = handle;
	rs->candidates[*count].distance = rs->access->distance(rs->access->context, handle);
	(*count)++;
}

static int
neighbor_id_compare(const void *a, const void *b)
{
	int32		x = ((const GraphNeighbor *) a)->id;
	int32		y = ((const GraphNeighbor *) b)->id;

	return (x > y) - (x < y);
}

/* sort by id, drop repeats; returns the new count */
static int
unique_candidates(GraphNeighbor *candidates, int count)
{
	int			kept = 0;

	qsort(candidates, count, sizeof(GraphNeighbor), neighbor_id_compare);
	for (int i = 0; i < count; i++)
		if (kept == 0 || candidates[kept - 1].id != candidates[i].id)
			candidates[kept++] = candidates[i];
	return kept;
}

/*
 * The new list of one layer whose current members are list[0 .. count):
 * the live members, the live neighbours (on this layer) of the deleted
 * ones, and, when that gives fewer than the layer's width, what a search
 * of the layer from the entry point finds; pruned with the engine's
 * heuristic.  The walk's query is the element's own vector.  Writes TIDs
 * to out[], returns how many.
 */
static int
repaired_list(RepairState *rs, int32 self, int layer,
			  const ItemPointerData *list, int count, ItemPointerData *out)
{
	int			width = hnsw_layer_width(layer, rs->shape.m);
	int			ncandidates = 0;
	int32		neighbors[2 * GRAPH_MAX_M];
	GraphNeighbor kept[2 * GRAPH_MAX_M];
	int			nkept;

	for (int i = 0; i < count; i++)
	{
		int32		member = hnsw_walk_handle(rs->walk, (ItemPointer) &list[i]);

		if (tid_list_contains(rs->deleted, (ItemPointer) &list[i]))
		{
			int			n = rs->access->neighbors(rs->access->context, member,
												  layer, neighbors);

			for (int k = 0; k < n; k++)
				add_candidate(rs, &ncandidates, neighbors[k], self);
		}
		else
			add_candidate(rs, &ncandidates, member, self);
	}
	ncandidates = unique_candidates(rs->candidates, ncandidates);

	if (ncandidates < width && ItemPointerIsValid(&rs->meta.entry_point) &&
		layer <= rs->meta.max_level)
	{
		int32		entry = hnsw_walk_handle(rs->walk, &rs->meta.entry_point);
		float		entry_distance = rs->access->distance(rs->access->context, entry);
		int			nfound;

		for (int l = rs->meta.max_level; l > layer; l--)
			entry = graph_walk_greedy(rs->access, entry, &entry_distance, l);
		nfound = graph_walk_layer(rs->access, hnsw_walk_scratch(rs->walk), entry,
								  entry_distance, rs->shape.ef_construction,
								  layer, rs->found);
		for (int i = 0; i < nfound; i++)
			add_candidate(rs, &ncandidates, rs->found[i].id, self);
		ncandidates = unique_candidates(rs->candidates, ncandidates);
	}

	qsort(rs->candidates, ncandidates, sizeof(GraphNeighbor), graph_neighbor_compare);
	nkept = graph_select_neighbors(rs->candidates, ncandidates, width,
								   hnsw_walk_pair_distance, rs->walk, kept);
	for (int i = 0; i < nkept; i++)
		out[i] = *hnsw_walk_tid(rs->walk, kept[i].id);
	return nkept;
}

/*
 * The neighbour tuple at ntid on a locked page if it has `layer` and the
 * size its level needs; NULL otherwise (a damaged link: left alone).
 */
static HnswNeighborTuple
repair_neighbors(RepairState *rs, Page page, ItemPointer ntid, int layer)
{
	OffsetNumber offnum = ItemPointerGetOffsetNumber(ntid);
	ItemId		itemid;
	HnswNeighborTuple tuple;

	if (offnum < FirstOffsetNumber || offnum > PageGetMaxOffsetNumber(page))
		return NULL;
	itemid = PageGetItemId(page, offnum);
	if (!ItemIdIsNormal(itemid) ||
		ItemIdGetLength(itemid) < offsetof(HnswNeighborTupleData, slots))
		return NULL;
	tuple = (HnswNeighborTuple) PageGetItem(page, itemid);
	if (tuple->type != HNSW_NEIGHBOR_TUPLE || tuple->level < layer ||
		ItemIdGetLength(itemid) < hnsw_neighbor_tuple_size(tuple->level, rs->shape.m))
		return NULL;
	return tuple;
}

/*
 * Block blkno share-locked for one of the repair's passes over the index
 * (after the cost-based delay): its checked page, or NULL for a new page
 * (the buffer is locked either way).
 */
static Page
repair_read_page(RepairState *rs, BlockNumber blkno, Buffer *buffer)
{
	Page		page;

	vacuum_delay_point();
	*buffer = ReadBufferExtended(rs->index, MAIN_FORKNUM, blkno, RBM_NORMAL, rs->strategy);
	LockBuffer(*buffer, BUFFER_LOCK_SHARE);
	page = BufferGetPage(*buffer);
	if (PageIsNew(page))
		return NULL;
	hnsw_check_page(rs->index, page, blkno);
	return page;
}

/*
 * Repair every layer of one live element (tid, its level, its neighbour
 * tuple, its vector) that links to a deleted element.  Each layer: read the
 * list under a share lock, compute the new one, write it under the
 * exclusive lock if the list is still the one read (an insert may have
 * added a back link meanwhile), else start the layer over.
 */
static void
repair_element(RepairState *rs, ItemPointer tid, int level, ItemPointer ntid,
			   const float *vector)
{
	BlockNumber nblkno = ItemPointerGetBlockNumber(ntid);
	int			m = rs->shape.m;
	int32		self = -1;

	if (nblkno == HNSW_METAPAGE_BLKNO || nblkno >= RelationGetNumberOfBlocks(rs->index))
		return;

	for (int layer = 0; layer <= level; layer++)
	{
		for (;;)
		{
			ItemPointerData seen[2 * GRAPH_MAX_M];
			ItemPointerData repaired[2 * GRAPH_MAX_M];
			ItemPointerData current[2 * GRAPH_MAX_M];
			int			seen_count = -1;
			int			repaired_count;
			int			current_count;
			bool		dangling = false;
			Buffer		buffer;
			Page		page;
			HnswNeighborTuple tuple;
			GenericXLogState *xlog;
			ItemPointerData *slots;

			CHECK_FOR_INTERRUPTS();
			buffer = ReadBufferExtended(rs->index, MAIN_FORKNUM, nblkno, RBM_NORMAL,
										rs->strategy);
			LockBuffer(buffer, BUFFER_LOCK_SHARE);
			page = BufferGetPage(buffer);
			hnsw_check_page(rs->index, page, nblkno);
			tuple = repair_neighbors(rs, page, ntid, layer);
			if (tuple != NULL)
				seen_count = hnsw_neighbor_layer_list(tuple, layer, m, seen);
			UnlockReleaseBuffer(buffer);

			for (int i = 0; i < seen_count && !dangling; i++)
				dangling = tid_list_contains(rs->deleted, &seen[i]);
			if (!dangling)
				break;

			if (self < 0)
			{
				hnsw_walk_reset(rs->walk, vector);
				self = hnsw_walk_handle(rs->walk, tid);
			}
			repaired_count = repaired_list(rs, self, layer, seen, seen_count, repaired);

			buffer = ReadBufferExtended(rs->index, MAIN_FORKNUM, nblkno, RBM_NORMAL,
										rs->strategy);
			LockBuffer(buffer, BUFFER_LOCK_EXCLUSIVE);
			xlog = GenericXLogStart(rs->index);
			page = GenericXLogRegisterBuffer(xlog, buffer, 0);
			tuple = repair_neighbors(rs, page, ntid, layer);
			current_count = tuple ? hnsw_neighbor_layer_list(tuple, layer, m, current) : -1;
			if (current_count == seen_count &&
				memcmp(current, seen, sizeof(ItemPointerData) * seen_count) == 0)
			{
				slots = tuple->slots + hnsw_neighbor_offset(layer, m);
				for (int i = 0; i < hnsw_layer_width(layer, m); i++)
				{
					if (i < repaired_count)
						slots[i] = repaired[i];
					else
						ItemPointerSetInvalid(&slots[i]);
				}
				GenericXLogFinish(xlog);
				UnlockReleaseBuffer(buffer);
				rs->lists_repaired++;
				break;
			}
			/* changed since we read it: read it again */
			GenericXLogAbort(xlog);
			UnlockReleaseBuffer(buffer);
		}
	}
}

/* one live element of a page, copied out to be repaired without a lock */
typedef struct PageElement
{
	ItemPointerData tid;
	ItemPointerData neighbortid;
	int			level;
} PageElement;

static void
repair_lists(RepairState *rs)
{
	BlockNumber nblocks = RelationGetNumberOfBlocks(rs->index);
	int			dims = rs->shape.dimensions;
	int			capacity = MaxIndexTuplesPerPage;
	PageElement *elements = palloc(sizeof(PageElement) * capacity);
	float	   *vectors = palloc(sizeof(float) * dims * capacity);

	for (BlockNumber blkno = HNSW_METAPAGE_BLKNO + 1; blkno < nblocks; blkno++)
	{
		Buffer		buffer;
		Page		page;
		int			count = 0;

		page = repair_read_page(rs, blkno, &buffer);
		if (page != NULL)
		{
			for (OffsetNumber offnum = FirstOffsetNumber;
				 offnum <= PageGetMaxOffsetNumber(page) && count < capacity;
				 offnum = OffsetNumberNext(offnum))
			{
				HnswElementTuple etup = vacuum_element(rs->index, page, blkno, offnum);

				if (etup == NULL || !HnswElementIsLive(etup) ||
					ItemIdGetLength(PageGetItemId(page, offnum)) <
					hnsw_element_tuple_size(dims))
					continue;
				ItemPointerSet(&elements[count].tid, blkno, offnum);
				elements[count].neighbortid = etup->neighbortid;
				elements[count].level = etup->level;
				memcpy(vectors + (Size) count * dims, etup->vector, sizeof(float) * dims);
				count++;
			}
		}
		UnlockReleaseBuffer(buffer);

		for (int i = 0; i < count; i++)
			repair_element(rs, &elements[i].tid, elements[i].level,
						   &elements[i].neighbortid, vectors + (Size) i * dims);
	}
	pfree(elements);
	pfree(vectors);
}

/*
 * After the repair, a live element that only deleted elements linked to on
 * layer 0 has no way in: the heuristic may have left it out of every
 * repaired list.  Mark every layer-0 link target of a live element in a
 * bitmap (block x offset), then give each live element that is nobody's
 * target a link from the nearest live member of its own list: appended
 * when the list has room, else in place of its last (farthest kept) entry.
 */
static void
reconnect_orphans(RepairState *rs)
{
	BlockNumber nblocks = RelationGetNumberOfBlocks(rs->index);
	int			m = rs->shape.m;
	int			dims = rs->shape.dimensions;
	Size		bits = (Size) nblocks * MaxIndexTuplesPerPage;
	uint8	   *linked = palloc_extended(bits / 8 + 1,
										  MCXT_ALLOC_HUGE | MCXT_ALLOC_ZERO);
	TidList		live = {0};
	float	   *vector = palloc(sizeof(float) * dims);

#define LINK_BIT(tid) \
	((Size) ItemPointerGetBlockNumber(tid) * MaxIndexTuplesPerPage + \
	 ItemPointerGetOffsetNumber(tid) - 1)

	for (BlockNumber blkno = HNSW_METAPAGE_BLKNO + 1; blkno < nblocks; blkno++)
	{
		Buffer		buffer;
		Page		page;

		page = repair_read_page(rs, blkno, &buffer);
		if (page != NULL)
		{
			for (OffsetNumber offnum = FirstOffsetNumber;
				 offnum <= PageGetMaxOffsetNumber(page);
				 offnum = OffsetNumberNext(offnum))
			{
				ItemId		itemid = PageGetItemId(page, offnum);
				HnswElementTuple etup = vacuum_element(rs->index, page, blkno, offnum);
				HnswNeighborTuple ntup;
				ItemPointerData here;

				if (etup != NULL && HnswElementIsLive(etup))
					tid_list_add(&live, blkno, offnum);
				if (etup != NULL || !ItemIdIsNormal(itemid))
					continue;
				ItemPointerSet(&here, blkno, offnum);
				ntup = repair_neighbors(rs, page, &here, 0);
				if (ntup != NULL)
				{
					ItemPointerData list[2 * GRAPH_MAX_M];
					int			count = hnsw_neighbor_layer_list(ntup, 0, m, list);

					for (int i = 0; i < count; i++)
						if (ItemPointerGetBlockNumber(&list[i]) < nblocks &&
							ItemPointerGetOffsetNumber(&list[i]) >= FirstOffsetNumber &&
							ItemPointerGetOffsetNumber(&list[i]) <= MaxIndexTuplesPerPage)
							linked[LINK_BIT(&list[i]) / 8] |= 1 << (LINK_BIT(&list[i]) % 8);
				}
			}
		}
		UnlockReleaseBuffer(buffer);
	}

	for (int i = 0; i < live.count; i++)
	{
		ItemPointer tid = &live.tids[i];
		ItemPointerData ntid;
		ItemPointerData list[2 * GRAPH_MAX_M];
		int32		neighbors[2 * GRAPH_MAX_M];
		int32		self;
		int32		nearest = -1;
		float		nearest_distance = 0;
		int			n;
		bool		found = false;
		Buffer		buffer;
		Page		page;
		HnswElementTuple etup;

		if ((linked[LINK_BIT(tid) / 8] & (1 << (LINK_BIT(tid) % 8))) ||
			ItemPointerEquals(tid, &rs->meta.entry_point))
			continue;

		CHECK_FOR_INTERRUPTS();
		buffer = ReadBufferExtended(rs->index, MAIN_FORKNUM,
									ItemPointerGetBlockNumber(tid), RBM_NORMAL,
									rs->strategy);
		LockBuffer(buffer, BUFFER_LOCK_SHARE);
		page = BufferGetPage(buffer);
		etup = vacuum_element(rs->index, page, ItemPointerGetBlockNumber(tid),
							  ItemPointerGetOffsetNumber(tid));
		if (etup != NULL && HnswElementIsLive(etup) &&
			ItemIdGetLength(PageGetItemId(page, ItemPointerGetOffsetNumber(tid))) >=
			hnsw_element_tuple_size(dims))
		{
			memcpy(vector, etup->vector, sizeof(float) * dims);
			found = true;
		}
		UnlockReleaseBuffer(buffer);
		if (!found)
			continue;

		/* the nearest live member of its own layer-0 list */
		hnsw_walk_reset(rs->walk, vector);
		self = hnsw_walk_handle(rs->walk, tid);
		n = rs->access->neighbors(rs->access->context, self, 0, neighbors);
		for (int k = 0; k < n; k++)
		{
			ItemPointerData finetid;
			float		distance;

			if (neighbors[k] == self ||
				!hnsw_walk_element(rs->walk, neighbors[k], &finetid))
				continue;
			distance = rs->access->distance(rs->access->context, neighbors[k]);
			if (nearest < 0 || distance < nearest_distance)
			{
				nearest = neighbors[k];
				nearest_distance = distance;
			}
		}
		if (nearest < 0)
			continue;

		/* its neighbour tuple, then the link under that page's lock */
		if (!hnsw_walk_element_neighbortid(rs->walk, nearest, &ntid) ||
			ItemPointerGetBlockNumber(&ntid) == HNSW_METAPAGE_BLKNO ||
			ItemPointerGetBlockNumber(&ntid) >= nblocks)
			continue;
		buffer = ReadBufferExtended(rs->index, MAIN_FORKNUM,
									ItemPointerGetBlockNumber(&ntid), RBM_NORMAL,
									rs->strategy);
		LockBuffer(buffer, BUFFER_LOCK_EXCLUSIVE);
		hnsw_check_page(rs->index, BufferGetPage(buffer), ItemPointerGetBlockNumber(&ntid));
		{
			GenericXLogState *xlog = GenericXLogStart(rs->index);
			HnswNeighborTuple ntup;
			int			count;
			int			width = hnsw_layer_width(0, m);
			bool		present = false;

			page = GenericXLogRegisterBuffer(xlog, buffer, 0);
			ntup = repair_neighbors(rs, page, &ntid, 0);
			count = ntup ? hnsw_neighbor_layer_list(ntup, 0, m, list) : 0;
			for (int k = 0; k < count; k++)
				present |= ItemPointerEquals(&list[k], tid);
			if (ntup != NULL && !present)
			{
				ntup->slots[count < width ? count : width - 1] = *tid;
				GenericXLogFinish(xlog);
				rs->lists_repaired++;
			}
			else
				GenericXLogAbort(xlog);
		}
		UnlockReleaseBuffer(buffer);
	}
#undef LINK_BIT
	pfree(linked);
	if (live.tids)
		pfree(live.tids);
	pfree(vector);
}

/* ------------------------------------------------------------------------
 * Phase 4: free the deleted elements
 * ------------------------------------------------------------------------ */

/*
 * Mark every deleted element free, one record per page, and tell the free
 * space map which pages have a free slot and of what level (it holds
 * nothing else: hnsw_free_slot_space), for inserts to reuse.
 */
static void
free_deleted(Relation index, const TidList *deleted, int m,
			 BufferAccessStrategy strategy)
{
	int			i = 0;

	while (i < deleted->count)
	{
		BlockNumber blkno = ItemPointerGetBlockNumber(&deleted->tids[i]);
		Buffer		buffer;
		Page		page;
		GenericXLogState *xlog;
		int			freed = 0;
		Size		free_space = 0;

		vacuum_delay_point();
		buffer = ReadBufferExtended(index, MAIN_FORKNUM, blkno, RBM_NORMAL, strategy);
		LockBuffer(buffer, BUFFER_LOCK_EXCLUSIVE);
		hnsw_check_page(index, BufferGetPage(buffer), blkno);
		xlog = GenericXLogStart(index);
		page = GenericXLogRegisterBuffer(xlog, buffer, 0);
		for (; i < deleted->count &&
			 ItemPointerGetBlockNumber(&deleted->tids[i]) == blkno; i++)
		{
			OffsetNumber offnum = ItemPointerGetOffsetNumber(&deleted->tids[i]);
			HnswElementTuple etup = vacuum_element(index, page, blkno, offnum);

			if (etup == NULL || HnswElementState(etup) != HNSW_ELEMENT_DELETED)
				continue;
			etup->state = (etup->state & ~HNSW_ELEMENT_STATE_MASK) | HNSW_ELEMENT_FREE;
			freed++;
		}
		if (freed > 0)
		{
			free_space = hnsw_page_free_slot_space(page, blkno, m);
			GenericXLogFinish(xlog);
		}
		else
			GenericXLogAbort(xlog);
		UnlockReleaseBuffer(buffer);
		if (freed > 0)
			RecordPageWithFreeSpace(index, blkno, free_space);
	}
}

/*
 * Phases 2-4 for the elements found deleted.  Inserts go on meanwhile;
 * they never link to a deleted element after the barrier.
 */
static void
unlink_deleted(IndexVacuumInfo *info, TidList *deleted,
			   const EntryCandidate *candidate)
{
	RepairState rs;

	if (deleted->count == 0)
		return;
	qsort(deleted->tids, deleted->count, sizeof(ItemPointerData), tid_compare);

	memset(&rs, 0, sizeof(rs));
	rs.index = info->index;
	rs.strategy = info->strategy;
	rs.deleted = deleted;
	move_entry_point(info->index, deleted, candidate, &rs.meta);
	hnsw_shape_from_meta(&rs.meta, &rs.shape);
	rs.walk = hnsw_walk_begin(info->index, &rs.shape, rs.shape.ef_construction, true);
	rs.access = hnsw_walk_access(rs.walk);
	rs.candidate_capacity = 4 * GRAPH_MAX_M + rs.shape.ef_construction;
	rs.candidates = palloc(sizeof(GraphNeighbor) * rs.candidate_capacity);
	rs.found = palloc(sizeof(GraphNeighbor) * (rs.shape.ef_construction + 2));

	repair_lists(&rs);
	reconnect_orphans(&rs);
	hnsw_walk_end(rs.walk);

	free_deleted(info->index, deleted, rs.shape.m, info->strategy);
	elog(DEBUG1, "index \"%s\": %d elements unlinked, " INT64_FORMAT " lists repaired",
		 RelationGetRelationName(info->index), deleted->count, rs.lists_repaired);
}

/* all four phases; callback NULL: no heap TID is dead (amvacuumcleanup) */
static void
vacuum_index(IndexVacuumInfo *info, IndexBulkDeleteResult *stats,
			 IndexBulkDeleteCallback callback, void *callback_state)
{
	TidList		deleted = {0};
	EntryCandidate sure = {{{0, 0}, 0}, 0};
	EntryCandidate chained = {{{0, 0}, 0}, 0};

	ItemPointerSetInvalid(&sure.tid);
	ItemPointerSetInvalid(&chained.tid);

	/* each pass counts what is left; an earlier pass's count is stale */
	stats->num_index_tuples = 0;
	remove_dead_tids(info, stats, callback, callback_state, &deleted, &sure, &chained);

	/* an element with only a chain, if pass 2 left it live */
	if (!ItemPointerIsValid(&sure.tid) && ItemPointerIsValid(&chained.tid))
	{
		qsort(deleted.tids, deleted.count, sizeof(ItemPointerData), tid_compare);
		if (!tid_list_contains(&deleted, &chained.tid))
			sure = chained;
	}
	unlink_deleted(info, &deleted, &sure);
	FreeSpaceMapVacuum(info->index);	/* the map's upper levels, for inserts */
	stats->estimated_count = false;
	if (deleted.tids)
		pfree(deleted.tids);
}

IndexBulkDeleteResult *
hnsw_bulk_delete(IndexVacuumInfo *info, IndexBulkDeleteResult *stats,
				 IndexBulkDeleteCallback callback, void *callback_state)
{
	if (stats == NULL)
		stats = (IndexBulkDeleteResult *) palloc0(sizeof(IndexBulkDeleteResult));
	vacuum_index(info, stats, callback, callback_state);
	return stats;
}

/*
 * After the bulk deletes (stats != NULL) only the page count is refreshed.
 * When VACUUM found nothing to delete, no bulk delete ran and stats is NULL:
 * count the live heap TIDs ourselves so pg_class.reltuples stays right, and
 * finish what an interrupted VACUUM left (deleted elements still linked).
 */
IndexBulkDeleteResult *
hnsw_vacuum_cleanup(IndexVacuumInfo *info, IndexBulkDeleteResult *stats)
{
	if (info->analyze_only)
		return stats;

	if (stats == NULL)
	{
		stats = (IndexBulkDeleteResult *) palloc0(sizeof(IndexBulkDeleteResult));
		vacuum_index(info, stats, NULL, NULL);
	}
	stats->num_pages = RelationGetNumberOfBlocks(info->index);
	stats->estimated_count = false;
	return stats;
}
