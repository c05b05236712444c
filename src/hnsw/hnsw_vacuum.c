/*
 * hnsw_vacuum.c — VACUUM for hnsw and matryoshka indexes (ambulkdelete,
 * amvacuumcleanup): dead heap TIDs out, emptied elements unlinked from the
 * graph, their space handed to later inserts.  (A matryoshka index's
 * cleanup then measures its default ef_search where that is missing or
 * stale: src/matryoshka/matryoshka_vacuum.c.)
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
 *   3b. reach   a breadth-first walk of layer 0 from the entry point (bitmaps
 *               over element positions, within maintenance_work_mem) finds
 *               the live elements no search reaches, and each such group
 *               gets links from its nearest reachable elements, as an
 *               insert's back links (hnsw_add_link), until a round finds
 *               none;
 *   4. free     each deleted element is marked free (no list points at it
 *               any more), and its page goes into the free space map with
 *               the highest level of a free slot on it, where an insert
 *               looks for a slot before it extends the index.
 *
 * Phase 1 needs dead heap TIDs (ambulkdelete); phases 2-4 run for every
 * element found deleted, also from amvacuumcleanup when no bulk delete ran
 * (a VACUUM interrupted after phase 1 leaves deleted elements behind);
 * phase 3b runs in every VACUUM, deletes or not.
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
#include "postmaster/autovacuum.h"
#include "storage/bufmgr.h"
#include "storage/bufpage.h"
#include "storage/freespace.h"
#include "storage/lmgr.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
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
 * deleted at the end (marked now or earlier), sorted for lookups and for
 * phase 4's page-by-page pass, and offers the live elements
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
		int			found_in_pass_1 = deleted->count;

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

		/* pass 1 found its elements in TID order, pass 2 appended its own */
		if (deleted->count > found_in_pass_1)
			qsort(deleted->tids, deleted->count, sizeof(ItemPointerData), tid_compare);
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

/*
 * Bitmaps over element positions (block x offset), for the deleted elements
 * of phase 3 and the reachability walk of phase 3b.
 */
#define BIT_TEST(map, i)	(((map)[(i) / 8] >> ((i) % 8)) & 1)
#define BIT_SET(map, i)		((map)[(i) / 8] |= (uint8) (1 << ((i) % 8)))
#define BIT_CLEAR(map, i)	((map)[(i) / 8] &= (uint8) ~(1 << ((i) % 8)))

/*
 * Offsets an element page can have: as many tuples as fit if each were the
 * smallest of the three kinds it holds (element, layer-0 neighbour,
 * heap-TID tuples; tuples are never removed, so line pointers are never
 * left unused).
 */
static int
reach_offsets_per_block(const HnswShape *shape)
{
	Size		smallest = Min(hnsw_element_tuple_size(shape->dimensions),
							   hnsw_neighbor_tuple_size(0, shape->m));

	smallest = Min(smallest, MAXALIGN(sizeof(HnswHeapTidTupleData)));
	return (BLCKSZ - SizeOfPageHeaderData - MAXALIGN(sizeof(HnswPageOpaqueData))) /
		(MAXALIGN(smallest) + sizeof(ItemIdData));
}

/* the bit of an element position in a bitmap of nblocks x per_block; -1: none */
static inline int64
position_bit(BlockNumber nblocks, int per_block, const ItemPointerData *tid)
{
	BlockNumber blkno = ItemPointerGetBlockNumberNoCheck(tid);
	OffsetNumber offnum = ItemPointerGetOffsetNumberNoCheck(tid);

	if (blkno == HNSW_METAPAGE_BLKNO || blkno >= nblocks ||
		offnum < FirstOffsetNumber || offnum > per_block)
		return -1;
	return (int64) blkno * per_block + offnum - FirstOffsetNumber;
}

/*
 * The memory VACUUM's passes may take: maintenance_work_mem, or in
 * autovacuum autovacuum_work_mem when set; *name says which.
 */
static int
vacuum_memory_kb(const char **name)
{
	bool		autovacuum = IsAutoVacuumWorkerProcess() && autovacuum_work_mem != -1;

	*name = autovacuum ? "autovacuum_work_mem" : "maintenance_work_mem";
	return autovacuum ? autovacuum_work_mem : maintenance_work_mem;
}

/* a page walk and the candidates gathered through it */
typedef struct RepairWalk
{
	HnswWalk   *walk;
	GraphAccess *access;
	GraphNeighbor *candidates;	/* room for candidate_capacity */
	int			candidate_capacity;
} RepairWalk;

/* a deleted element's live substitutes on one layer (repair_substitutes) */
typedef struct SubstituteKey
{
	ItemPointerData tid;
	uint16		layer;
} SubstituteKey;

typedef struct SubstituteEntry
{
	SubstituteKey key;
	int			count;
	ItemPointerData *tids;
} SubstituteEntry;

typedef struct RepairState
{
	Relation	index;
	BlockNumber nblocks;		/* hnsw_block_exists's cache of its size */
	BufferAccessStrategy strategy;
	HnswShape	shape;
	HnswMetaPageData meta;		/* after the entry point moved */
	const TidList *deleted;
	uint8	   *deleted_map;	/* a bit per element position: in deleted */
	BlockNumber deleted_map_blocks;
	int			deleted_map_per_block;
	RepairWalk	main;			/* query: the element being repaired */
	RepairWalk	sub;			/* query: a deleted element (substitutes) */
	HnswLinker *linker;			/* phase 3b: back links through main.walk */
	GraphNeighbor *found;		/* a layer search's results (ef + 2) */
	HTAB	   *substitutes;	/* SubstituteEntry by (deleted element, layer) */
	MemoryContext substitute_context;
	Size		substitute_budget;	/* bytes the kept substitutes may take */
	int64		lists_repaired;
	int64		relinked;		/* phase 3b: unreachable elements linked */
	int64		forced;			/* of which in place of a shared member */
	int64		left;			/* unreachable and not linked (last round) */
	bool		checked;		/* the last round found none to link */
} RepairState;

/*
 * The bitmap of the deleted elements' positions (block x offset), for
 * repair_is_deleted: the repair asks it of every member of every list it
 * reads and of every element its walks meet, and a binary search of the
 * sorted list per question (a cache miss per step) took more than half a
 * VACUUM's time where most elements were deleted.
 */
static void
repair_map_deleted(RepairState *rs)
{
	const TidList *deleted = rs->deleted;

	rs->deleted_map_per_block = reach_offsets_per_block(&rs->shape);
	rs->deleted_map_blocks = 0;
	for (int i = 0; i < deleted->count; i++)
		rs->deleted_map_blocks = Max(rs->deleted_map_blocks,
									 ItemPointerGetBlockNumber(&deleted->tids[i]) + 1);
	rs->deleted_map = palloc_extended((Size) rs->deleted_map_blocks *
									  rs->deleted_map_per_block / 8 + 1,
									  MCXT_ALLOC_HUGE | MCXT_ALLOC_ZERO);
	for (int i = 0; i < deleted->count; i++)
	{
		int64		bit = position_bit(rs->deleted_map_blocks, rs->deleted_map_per_block,
									   &deleted->tids[i]);

		if (bit >= 0)
			BIT_SET(rs->deleted_map, bit);
	}
}

static inline bool
repair_is_deleted(const RepairState *rs, const ItemPointerData *tid)
{
	int64		bit = position_bit(rs->deleted_map_blocks, rs->deleted_map_per_block, tid);

	return bit >= 0 && BIT_TEST(rs->deleted_map, bit);
}

/*
 * An element of the walk as a neighbour of self, with its distance to it,
 * into *out; false for self or an element that is not live (deleted, free,
 * bad).
 */
static bool
live_neighbor(RepairWalk *rw, int32 handle, int32 self, GraphNeighbor *out)
{
	if (handle == self || !hnsw_walk_is_live(rw->walk, handle))
		return false;
	out->id = handle;
	out->distance = rw->access->distance(rw->access->context, handle);
	return true;
}

/*
 * A live element of the walk as a candidate (callers let each element in
 * once, through the walk's visited marks)
 */
static void
add_candidate(RepairWalk *rw, int *count, int32 handle, int32 self)
{
	if (*count == rw->candidate_capacity)
	{
		rw->candidate_capacity *= 2;
		rw->candidates = repalloc(rw->candidates,
								  sizeof(GraphNeighbor) * rw->candidate_capacity);
	}
	if (live_neighbor(rw, handle, self, &rw->candidates[*count]))
		(*count)++;
}

/*
 * The new list of one layer whose current members are list[0 .. count):
 * for a live element's list (live) its live members, kept as they are,
 * then what the heuristic takes, measured against them too, from the live
 * elements that the deleted members lead to (their live neighbours on
 * this layer, and the live neighbours of their deleted neighbours: two
 * steps through deleted elements, at most REPAIR_DELETED_EXPANSIONS of
 * them expanded), the substitutes of those second-step deleted elements
 * that have almost no live neighbour (fewer than REPAIR_SUBSTITUTES_BELOW:
 * two steps more) and, when all that gives fewer than the layer's width,
 * what a search of the layer from the entry point finds.  For a deleted
 * element's list (repair_substitutes) the live members are candidates like
 * the others, and neither substitutes nor the search are asked for.  The
 * walk rw's query is the element's own vector (self its handle there).
 * Writes TIDs to out[], returns how many.
 *
 * Why the live members stay: inserts append back links to lists with room
 * without pruning, and choosing the whole list again dropped most of them
 * wherever one member was deleted; with a few percent of the elements
 * deleted each VACUUM rewrote about 40% of the lists, and elements lost
 * their ways in, VACUUM after VACUUM (src/hnsw/README, VACUUM).
 *
 * Why on through deleted elements: a graph linked element by element owes
 * its long links (those between clusters) to its early elements, which
 * linked while the graph was sparse; later ones link among their near
 * neighbours.  When most of the early elements are deleted at once (every
 * row of a table updated, as when the data is embedded again with another
 * model), the long links are links between deleted elements.  With only
 * the deleted members' own neighbours as candidates, the repaired lists
 * held almost none (0.2% of layer-0 links between clusters, 10% in a fresh
 * build), clusters were islands on layer 0, and after one update of every
 * row of 20000 clustered 64-d rows a fifth of the rows were not found by a
 * query with their own vector (recall@10 0.80 at ef_search 100, 1.0 fresh).
 * The second step reaches the live elements at the other end of those
 * links: 11% of links between clusters, recall 1.0.  A deeper walk per
 * list costs too much: with lists of 16 to 32 links, even a tenth of the
 * elements deleted makes more than one deleted neighbour per deleted
 * element, so a walk with no depth limit runs to its bound in every list
 * (a random tenth deleted: 81 expansions a list and VACUUM 8 times slower,
 * for the same recall).  The bound (4 x the layer's width) holds the cost
 * where most elements were deleted.
 *
 * Rows updated several times between two VACUUMs put the long links
 * further away: after five updates of every row, recall@10 0.85 at
 * ef_search 100 with two steps.  The substitutes reach two steps further,
 * with the cost of each deeper walk paid once per deleted element instead
 * of once per list that meets it, and only through deleted elements that
 * lead almost nowhere live: those are the chains of deleted elements (an
 * element of an older generation, whose neighbours are all gone), where a
 * deleted element with live neighbours has already handed them over.
 * Measured (20000 rows, src/hnsw/README, VACUUM): five updates 0.85 ->
 * 0.98, three 0.988 -> 0.994; one update, or a random share deleted, about
 * the same time as without them (with the threshold at a quarter of the
 * width instead, one update took twice as long for the same recall).
 */
#define REPAIR_DELETED_EXPANSIONS(width)	(4 * (width))
#define REPAIR_SUBSTITUTES(width)			Max((width) / 4, 2)
#define REPAIR_SUBSTITUTES_BELOW(width)		Max((width) / 8, 1)

static int	repair_substitutes(RepairState *rs, int32 deleted, int layer,
							   const int32 *neighbors, int count, ItemPointerData *out);

static int
repaired_list(RepairState *rs, RepairWalk *rw, int32 self, int layer,
			  const ItemPointerData *list, int count, bool live,
			  ItemPointerData *out)
{
	GraphAccess *access = rw->access;
	int			width = hnsw_layer_width(layer, rs->shape.m);
	int			ncandidates = 0;
	int32		neighbors[2 * GRAPH_MAX_M];
	GraphNeighbor kept[2 * GRAPH_MAX_M];
	int32		deleted[REPAIR_DELETED_EXPANSIONS(2 * GRAPH_MAX_M)];
	int			budget = REPAIR_DELETED_EXPANSIONS(width);
	int			queued = 0;
	int			members_deleted;
	int			nkept = 0;

	access->visited_reset(access->context);
	(void) access->visited_test_and_set(access->context, self);
	for (int i = 0; i < count; i++)
	{
		int32		member = hnsw_walk_handle(rw->walk, (ItemPointer) &list[i]);

		if (access->visited_test_and_set(access->context, member))
			continue;
		if (repair_is_deleted(rs, &list[i]))
		{
			if (queued < budget)
				deleted[queued++] = member;
		}
		else if (live)
		{
			/* kept as it is: an insert or an earlier pruning chose it */
			if (live_neighbor(rw, member, self, &kept[nkept]))
				nkept++;
		}
		else
			add_candidate(rw, &ncandidates, member, self);
	}
	members_deleted = queued;
	for (int next = 0; next < queued; next++)
	{
		int			n = access->neighbors(access->context, deleted[next], layer, neighbors);
		int			live_neighbors = 0;

		for (int k = 0; k < n; k++)
		{
			bool		is_deleted = repair_is_deleted(rs, hnsw_walk_tid(rw->walk,
																		 neighbors[k]));

			live_neighbors += !is_deleted;
			if (access->visited_test_and_set(access->context, neighbors[k]))
				continue;
			if (!is_deleted)
				add_candidate(rw, &ncandidates, neighbors[k], self);
			else if (next < members_deleted && queued < budget)
				deleted[queued++] = neighbors[k];
		}
		if (live && next >= members_deleted &&
			live_neighbors < REPAIR_SUBSTITUTES_BELOW(width))
		{
			ItemPointerData substitutes[2 * GRAPH_MAX_M];
			int			nsubstitutes = repair_substitutes(rs, deleted[next], layer,
														  neighbors, n, substitutes);

			for (int k = 0; k < nsubstitutes; k++)
			{
				int32		handle = hnsw_walk_handle(rw->walk, (ItemPointer) &substitutes[k]);

				if (!access->visited_test_and_set(access->context, handle))
					add_candidate(rw, &ncandidates, handle, self);
			}
		}
	}
	/* the visited marks let each element in once: no repeats to drop */

	if (live && nkept + ncandidates < width && ItemPointerIsValid(&rs->meta.entry_point) &&
		layer <= rs->meta.max_level)
	{
		int32		entry = hnsw_walk_handle(rw->walk, &rs->meta.entry_point);
		float		entry_distance = access->distance(access->context, entry);
		int			nfound;

		for (int l = rs->meta.max_level; l > layer; l--)
			entry = graph_walk_greedy(access, entry, &entry_distance, l);
		nfound = graph_walk_layer(access, hnsw_walk_scratch(rw->walk), entry,
								  entry_distance, rs->shape.ef_construction,
								  layer, rs->found);
		for (int i = 0; i < nfound; i++)
			if (!access->visited_test_and_set(access->context, rs->found[i].id))
				add_candidate(rw, &ncandidates, rs->found[i].id, self);
	}

	qsort(rw->candidates, ncandidates, sizeof(GraphNeighbor), graph_neighbor_compare);
	qsort(kept, nkept, sizeof(GraphNeighbor), graph_neighbor_compare);
	nkept = graph_select_more_neighbors(rw->candidates, ncandidates,
										live ? width : REPAIR_SUBSTITUTES(width),
										hnsw_walk_pair_distance, rw->walk, kept, nkept);
	for (int i = 0; i < nkept; i++)
		out[i] = *hnsw_walk_tid(rw->walk, kept[i].id);
	return nkept;
}

/*
 * The substitutes of a deleted element (deleted: its handle in the main
 * walk; neighbors[0 .. count): its list on the layer, as main-walk
 * handles) on a layer, written to out[]: the list it would get if it stayed,
 * chosen as repaired_list chooses one (its live members and the live
 * elements within two steps through deleted ones, pruned with the
 * heuristic), without the search from the entry point and without
 * substitutes of its own.  Kept for the rest of this VACUUM, since a
 * deleted element is met by the lists of many (in a graph of 16 to 32
 * links a list, about as many as it has links); beyond substitute_budget
 * bytes they are worked out again each time.  Returns the count.
 */
static int
repair_substitutes(RepairState *rs, int32 deleted, int layer,
				   const int32 *neighbors, int count, ItemPointerData *out)
{
	SubstituteKey key;
	SubstituteEntry *entry;
	bool		found;
	ItemPointerData list[2 * GRAPH_MAX_M];
	const float *vector;
	int			nout;
	Size		bytes;

	memset(&key, 0, sizeof(key));
	key.tid = *hnsw_walk_tid(rs->main.walk, deleted);
	key.layer = (uint16) layer;
	entry = hash_search(rs->substitutes, &key, HASH_ENTER, &found);
	if (found)
	{
		memcpy(out, entry->tids, sizeof(ItemPointerData) * entry->count);
		return entry->count;
	}

	nout = 0;
	vector = hnsw_walk_vector(rs->main.walk, deleted);
	if (vector != NULL)
	{
		for (int i = 0; i < count; i++)
			list[i] = *hnsw_walk_tid(rs->main.walk, neighbors[i]);
		hnsw_walk_reset(rs->sub.walk, vector);
		nout = repaired_list(rs, &rs->sub, hnsw_walk_handle(rs->sub.walk, &key.tid),
							 layer, list, count, false, out);
	}

	bytes = sizeof(ItemPointerData) * nout + 2 * sizeof(SubstituteEntry);
	if (bytes > rs->substitute_budget)
		hash_search(rs->substitutes, &key, HASH_REMOVE, NULL);	/* not kept */
	else
	{
		rs->substitute_budget -= bytes;
		entry->tids = MemoryContextAlloc(rs->substitute_context,
										 sizeof(ItemPointerData) * Max(nout, 1));
		memcpy(entry->tids, out, sizeof(ItemPointerData) * nout);
		entry->count = nout;
	}
	return nout;
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

	if (!hnsw_block_exists(rs->index, &rs->nblocks, nblkno))
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
			tuple = hnsw_page_neighbors(page, ItemPointerGetOffsetNumber(ntid), layer, m);
			if (tuple != NULL)
				seen_count = hnsw_neighbor_layer_list(tuple, layer, m, seen);
			UnlockReleaseBuffer(buffer);

			for (int i = 0; i < seen_count && !dangling; i++)
				dangling = repair_is_deleted(rs, &seen[i]);
			if (!dangling)
				break;

			if (self < 0)
			{
				hnsw_walk_reset(rs->main.walk, vector);
				self = hnsw_walk_handle(rs->main.walk, tid);
			}
			repaired_count = repaired_list(rs, &rs->main, self, layer, seen, seen_count,
										   true, repaired);

			buffer = ReadBufferExtended(rs->index, MAIN_FORKNUM, nblkno, RBM_NORMAL,
										rs->strategy);
			LockBuffer(buffer, BUFFER_LOCK_EXCLUSIVE);
			xlog = GenericXLogStart(rs->index);
			page = GenericXLogRegisterBuffer(xlog, buffer, 0);
			tuple = hnsw_page_neighbors(page, ItemPointerGetOffsetNumber(ntid), layer, m);
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

/* ------------------------------------------------------------------------
 * Phase 3b: every live element reachable from the entry point
 * ------------------------------------------------------------------------ */

/*
 * The repair can leave live elements that no search reaches: the heuristic
 * may have left an element, or a whole group of elements that link only
 * among themselves, out of every list that leads to it (an insert's pruning
 * can do the same).  This pass finds them with a breadth-first walk of
 * layer 0 from the entry point and re-links each group into the graph.
 *
 * Memory is bitmaps over element positions (block x offset) of the blocks
 * the index had when the pass began, a few bytes per 8 kB block; elements
 * that inserts add on later blocks are linked by those inserts.  The walk
 * reads blocks in order, not element by element: a reached element is
 * marked pending, and a sweep over the blocks expands (reads the layer-0
 * list of) every pending element of a block under one share lock; sweeps
 * repeat from the lowest pending block until none is left.  The blocks it
 * reads also tell which elements are live; blocks it never reaches are read
 * once afterwards.
 */
typedef struct ReachState
{
	BlockNumber nblocks;		/* blocks tracked */
	int			per_block;		/* offsets tracked per block */
	uint8	   *live;			/* live elements of the blocks read */
	uint8	   *reached;		/* reached on layer 0 from the entry point */
	uint8	   *pending;		/* reached, its list not read yet */
	uint8	   *shared;			/* two ways in (reach_mark) */
	uint8	   *pending_blocks; /* per block: a pending bit is set on it */
	uint8	   *read_blocks;	/* per block: its live elements are known */
	int64		pending_count;
	BlockNumber first_pending;	/* no pending bit on a block below it */
	ItemPointerData entry_point;	/* where the walk starts */
	ItemPointerData *remote;	/* per_block neighbour tuples on other pages */
	int64		forced;			/* links force_link made */
	int64		left;			/* elements this round could not link */
} ReachState;

/* the bit of an element position; -1 when the pass does not track it */
static int64
reach_bit(const ReachState *reach, ItemPointer tid)
{
	return position_bit(reach->nblocks, reach->per_block, tid);
}

/*
 * Allocate the bitmaps if they fit in maintenance_work_mem (autovacuum:
 * autovacuum_work_mem when set); else say so and return false.
 */
static bool
reach_begin(RepairState *rs, ReachState *reach)
{
	const char *budget_name;
	int			budget_kb = vacuum_memory_kb(&budget_name);
	Size		map_bytes;
	Size		block_bytes;
	Size		needed;

	memset(reach, 0, sizeof(ReachState));
	reach->nblocks = RelationGetNumberOfBlocks(rs->index);
	reach->per_block = reach_offsets_per_block(&rs->shape);
	map_bytes = (Size) reach->nblocks * reach->per_block / 8 + 1;
	block_bytes = reach->nblocks / 8 + 1;
	needed = 4 * map_bytes + 2 * block_bytes +
		sizeof(ItemPointerData) * reach->per_block;
	if (needed > (Size) budget_kb * 1024)
	{
		ereport(NOTICE,
				(errmsg("index \"%s\" was not checked for unreachable elements",
						RelationGetRelationName(rs->index)),
				 errdetail("The check needs %zu kB, %s is %d kB.",
						   needed / 1024 + 1, budget_name, budget_kb),
				 errhint("Raise %s for VACUUM to re-link elements that no search reaches.",
						 budget_name)));
		return false;
	}
	reach->live = palloc_extended(map_bytes, MCXT_ALLOC_HUGE | MCXT_ALLOC_ZERO);
	reach->reached = palloc_extended(map_bytes, MCXT_ALLOC_HUGE | MCXT_ALLOC_ZERO);
	reach->pending = palloc_extended(map_bytes, MCXT_ALLOC_HUGE | MCXT_ALLOC_ZERO);
	reach->shared = palloc_extended(map_bytes, MCXT_ALLOC_HUGE | MCXT_ALLOC_ZERO);
	reach->pending_blocks = palloc_extended(block_bytes, MCXT_ALLOC_HUGE | MCXT_ALLOC_ZERO);
	reach->read_blocks = palloc_extended(block_bytes, MCXT_ALLOC_HUGE | MCXT_ALLOC_ZERO);
	reach->remote = palloc(sizeof(ItemPointerData) * reach->per_block);
	return true;
}

/*
 * Mark an element reached and pending; one that is already pending gets a
 * second way in, and is marked shared.  Only a link met while the element
 * is still pending counts: it comes from an element whose own way in does
 * not pass through this one (nothing has been reached through it yet), so
 * one of its two links can go and it stays reachable (force_link takes
 * one, and clears the mark).
 */
static void
reach_mark(ReachState *reach, ItemPointer tid)
{
	int64		bit = reach_bit(reach, tid);
	BlockNumber blkno = ItemPointerGetBlockNumber(tid);

	if (bit < 0)
		return;
	if (BIT_TEST(reach->reached, bit))
	{
		if (BIT_TEST(reach->pending, bit))
			BIT_SET(reach->shared, bit);
		return;
	}
	BIT_SET(reach->reached, bit);
	BIT_SET(reach->pending, bit);
	BIT_SET(reach->pending_blocks, blkno);
	reach->pending_count++;
	if (blkno < reach->first_pending)
		reach->first_pending = blkno;
}

/* mark the layer-0 list of the neighbour tuple at ntid on a locked page */
static void
reach_mark_list(RepairState *rs, ReachState *reach, Page page, ItemPointer ntid)
{
	HnswNeighborTuple tuple = hnsw_page_neighbors(page, ItemPointerGetOffsetNumber(ntid), 0,
												   rs->shape.m);
	ItemPointerData list[2 * GRAPH_MAX_M];
	int			count;

	if (tuple == NULL)
		return;
	count = hnsw_neighbor_layer_list(tuple, 0, rs->shape.m, list);
	for (int i = 0; i < count; i++)
		reach_mark(reach, &list[i]);
}

/* note the live elements of a locked page, once per block */
static void
reach_note_live(RepairState *rs, ReachState *reach, Page page, BlockNumber blkno)
{
	OffsetNumber maxoff = Min(PageGetMaxOffsetNumber(page), reach->per_block);

	if (BIT_TEST(reach->read_blocks, blkno))
		return;
	BIT_SET(reach->read_blocks, blkno);
	for (OffsetNumber offnum = FirstOffsetNumber; offnum <= maxoff;
		 offnum = OffsetNumberNext(offnum))
	{
		HnswElementTuple etup = vacuum_element(rs->index, page, blkno, offnum);
		ItemPointerData tid;

		if (etup == NULL || !HnswElementIsLive(etup) ||
			ItemIdGetLength(PageGetItemId(page, offnum)) <
			hnsw_element_tuple_size(rs->shape.dimensions))
			continue;
		ItemPointerSet(&tid, blkno, offnum);
		BIT_SET(reach->live, reach_bit(reach, &tid));
	}
}

/*
 * Read the lists of every pending element of one block: those whose
 * neighbour tuple is on the block under its share lock, the others after
 * it, one page at a time.
 */
static void
reach_expand_block(RepairState *rs, ReachState *reach, BlockNumber blkno)
{
	Buffer		buffer;
	Page		page = repair_read_page(rs, blkno, &buffer);
	int			nremote = 0;

	if (page != NULL)
		reach_note_live(rs, reach, page, blkno);
	/* a list may lead back to this block: until none of its bits is pending */
	while (BIT_TEST(reach->pending_blocks, blkno))
	{
		BIT_CLEAR(reach->pending_blocks, blkno);
		for (OffsetNumber offnum = FirstOffsetNumber; offnum <= reach->per_block;
			 offnum = OffsetNumberNext(offnum))
		{
			int64		bit = (int64) blkno * reach->per_block + offnum - FirstOffsetNumber;
			HnswElementTuple etup;

			if (!BIT_TEST(reach->pending, bit))
				continue;
			BIT_CLEAR(reach->pending, bit);
			reach->pending_count--;
			if (page == NULL || offnum > PageGetMaxOffsetNumber(page))
				continue;
			etup = vacuum_element(rs->index, page, blkno, offnum);
			if (etup == NULL || !HnswElementIsLive(etup))
				continue;		/* the walk goes through live elements only */
			if (ItemPointerGetBlockNumber(&etup->neighbortid) == blkno)
				reach_mark_list(rs, reach, page, &etup->neighbortid);
			else
				reach->remote[nremote++] = etup->neighbortid;
		}
	}
	UnlockReleaseBuffer(buffer);

	for (int i = 0; i < nremote; i++)
	{
		BlockNumber nblkno = ItemPointerGetBlockNumber(&reach->remote[i]);

		if (!hnsw_block_exists(rs->index, &rs->nblocks, nblkno))
			continue;
		page = repair_read_page(rs, nblkno, &buffer);
		if (page != NULL)
			reach_mark_list(rs, reach, page, &reach->remote[i]);
		UnlockReleaseBuffer(buffer);
	}
}

/* expand pending elements until there are none: sweeps in block order */
static void
reach_propagate(RepairState *rs, ReachState *reach)
{
	while (reach->pending_count > 0)
	{
		BlockNumber blkno = reach->first_pending;

		reach->first_pending = reach->nblocks;
		for (; blkno < reach->nblocks && reach->pending_count > 0; blkno++)
		{
			if (reach->pending_blocks[blkno / 8] == 0)
				blkno |= 7;		/* eight blocks with nothing pending */
			else if (BIT_TEST(reach->pending_blocks, blkno))
				reach_expand_block(rs, reach, blkno);
		}
	}
}

/*
 * Put `tid` in the layer-0 list of the first of candidates[] (nearest
 * first) whose list has room or a shared member (reach_mark: taking its
 * place orphans nobody), in place of the last such member.  For an element
 * that no list it was offered to took.  Returns whether a list links to
 * it.
 */
static bool
force_link(RepairState *rs, ReachState *reach, const GraphNeighbor *candidates,
		   int count, ItemPointer tid)
{
	int			width = hnsw_layer_width(0, rs->shape.m);

	for (int c = 0; c < count; c++)
	{
		ItemPointerData ntid;
		ItemPointerData list[2 * GRAPH_MAX_M];
		int			length;
		int			replace = -1;
		Buffer		buffer;
		Page		page;
		GenericXLogState *xlog;
		HnswNeighborTuple tuple;

		if (!hnsw_walk_element_neighbortid(rs->main.walk, candidates[c].id, &ntid) ||
			!hnsw_block_exists(rs->index, &rs->nblocks, ItemPointerGetBlockNumber(&ntid)))
			continue;
		buffer = ReadBufferExtended(rs->index, MAIN_FORKNUM,
									ItemPointerGetBlockNumber(&ntid), RBM_NORMAL,
									rs->strategy);
		LockBuffer(buffer, BUFFER_LOCK_EXCLUSIVE);
		hnsw_check_page(rs->index, BufferGetPage(buffer), ItemPointerGetBlockNumber(&ntid));
		xlog = GenericXLogStart(rs->index);
		page = GenericXLogRegisterBuffer(xlog, buffer, 0);
		tuple = hnsw_page_neighbors(page, ItemPointerGetOffsetNumber(&ntid), 0,
									rs->shape.m);
		length = tuple ? hnsw_neighbor_layer_list(tuple, 0, rs->shape.m, list) : 0;
		for (int i = 0; i < length && replace < width; i++)
		{
			int64		bit = reach_bit(reach, &list[i]);

			if (ItemPointerEquals(&list[i], tid))
				replace = width;	/* linked meanwhile */
			else if (bit >= 0 && BIT_TEST(reach->shared, bit))
				replace = i;
		}
		if (tuple != NULL && replace < width && (length < width || replace >= 0))
		{
			int			slot = length < width ? length : replace;
			int64		bit = reach_bit(reach, &tuple->slots[slot]);

			if (slot < length && bit >= 0)
				BIT_CLEAR(reach->shared, bit);	/* one link fewer */
			tuple->slots[slot] = *tid;
			GenericXLogFinish(xlog);
			UnlockReleaseBuffer(buffer);
			reach->forced++;
			return true;
		}
		GenericXLogAbort(xlog);
		UnlockReleaseBuffer(buffer);
		if (replace == width)
			return true;
	}
	return false;
}

/*
 * Link the live element at `tid`, which the walk did not reach, from the
 * graph as an insert of its vector would: search for its nearest reachable
 * live elements (descending through the upper layers; if that finds none,
 * on layer 0 from the entry point, where the search sees only what is
 * reachable), choose among them with the neighbour heuristic, and give each
 * chosen one a back link to it (hnsw_add_link: appended, or, may_prune, the
 * full list pruned).  If no list took it, force_link.  Returns whether a
 * reachable list links to it now.
 */
static bool
relink_element(RepairState *rs, ReachState *reach, ItemPointer tid, float *vector,
			   bool may_prune)
{
	BlockNumber blkno = ItemPointerGetBlockNumber(tid);
	int			m = rs->shape.m;
	bool		found = false;
	Buffer		buffer;
	Page		page;
	HnswElementTuple etup;
	int32		self;

	CHECK_FOR_INTERRUPTS();
	buffer = ReadBufferExtended(rs->index, MAIN_FORKNUM, blkno, RBM_NORMAL, rs->strategy);
	LockBuffer(buffer, BUFFER_LOCK_SHARE);
	page = BufferGetPage(buffer);
	etup = vacuum_element(rs->index, page, blkno, ItemPointerGetOffsetNumber(tid));
	if (etup != NULL && HnswElementIsLive(etup))
	{
		memcpy(vector, etup->vector, sizeof(float) * rs->shape.dimensions);
		found = true;
	}
	UnlockReleaseBuffer(buffer);
	if (!found)
		return false;

	hnsw_walk_reset(rs->main.walk, vector);
	self = hnsw_walk_handle(rs->main.walk, tid);
	for (int attempt = 0; attempt < 2; attempt++)
	{
		int32		entry = hnsw_walk_handle(rs->main.walk, &reach->entry_point);
		float		entry_distance = rs->main.access->distance(rs->main.access->context, entry);
		GraphNeighbor selected[GRAPH_MAX_M];
		int			nfound;
		int			ncandidates = 0;
		int			nselected;
		bool		linked = false;

		for (int layer = rs->meta.max_level; layer > 0 && attempt == 0; layer--)
			entry = graph_walk_greedy(rs->main.access, entry, &entry_distance, layer);
		nfound = graph_walk_layer(rs->main.access, hnsw_walk_scratch(rs->main.walk), entry,
								  entry_distance, rs->shape.ef_construction, 0,
								  rs->found);
		for (int i = 0; i < nfound; i++)
		{
			int64		bit = reach_bit(reach, hnsw_walk_tid(rs->main.walk, rs->found[i].id));

			if (rs->found[i].id != self && bit >= 0 && BIT_TEST(reach->reached, bit) &&
				hnsw_walk_is_live(rs->main.walk, rs->found[i].id))
				rs->main.candidates[ncandidates++] = rs->found[i];
		}
		if (ncandidates == 0)
			continue;

		nselected = graph_select_neighbors(rs->main.candidates, ncandidates, m,
										   hnsw_walk_pair_distance, rs->main.walk, selected);
		for (int i = 0; i < nselected; i++)
		{
			ItemPointerData target = *hnsw_walk_tid(rs->main.walk, selected[i].id);

			linked |= hnsw_add_link(rs->linker, &target, selected[i].id, 0, tid,
									vector, may_prune);
		}
		if (!linked)
			linked = force_link(rs, reach, rs->main.candidates, ncandidates, tid);
		if (linked)
			return true;
	}
	return false;
}

/*
 * One round: walk from the entry point, then re-link, block by block, each
 * live element the walk did not reach, and walk on from it at once (the
 * rest of its group is reached through it and needs no link of its own).
 * may_prune: as relink_element.  Returns how many elements it re-linked,
 * -1 when the entry point is not a live element (nothing to start from).
 */
static int64
reach_round(RepairState *rs, ReachState *reach, float *vector, bool may_prune)
{
	Size		map_bytes = (Size) reach->nblocks * reach->per_block / 8 + 1;
	int64		relinked = 0;

	memset(reach->reached, 0, map_bytes);
	memset(reach->pending, 0, map_bytes);
	memset(reach->shared, 0, map_bytes);
	memset(reach->pending_blocks, 0, reach->nblocks / 8 + 1);
	reach->pending_count = 0;
	reach->first_pending = reach->nblocks;
	reach->left = 0;
	reach_mark(reach, &reach->entry_point);
	reach_propagate(rs, reach);
	if (!BIT_TEST(reach->live, reach_bit(reach, &reach->entry_point)))
		return -1;				/* no walk starts there: leave it to inserts */

	for (BlockNumber blkno = HNSW_METAPAGE_BLKNO + 1; blkno < reach->nblocks; blkno++)
	{
		if (!BIT_TEST(reach->read_blocks, blkno))
		{
			Buffer		buffer;
			Page		page = repair_read_page(rs, blkno, &buffer);

			if (page != NULL)
				reach_note_live(rs, reach, page, blkno);
			UnlockReleaseBuffer(buffer);
		}
		for (OffsetNumber offnum = FirstOffsetNumber; offnum <= reach->per_block;
			 offnum = OffsetNumberNext(offnum))
		{
			int64		bit = (int64) blkno * reach->per_block + offnum - FirstOffsetNumber;
			ItemPointerData tid;

			if (!BIT_TEST(reach->live, bit) || BIT_TEST(reach->reached, bit))
				continue;
			ItemPointerSet(&tid, blkno, offnum);
			if (!relink_element(rs, reach, &tid, vector, may_prune))
			{
				reach->left++;
				continue;
			}
			relinked++;
			reach_mark(reach, &tid);
			reach_propagate(rs, reach);
		}
	}
	return relinked;
}

/*
 * Phase 3b (README, VACUUM).  Rounds: a round that re-linked something is
 * followed by one that checks, at most REACH_ROUNDS in all.  The first
 * links as an insert does, pruning full lists; a pruning may take another
 * element's last way in, so the later ones only add links (to lists with
 * room, else force_link in place of a member reached twice), which takes
 * nobody's: in a narrow graph (m = 2) pruning in every round measured
 * elements still unreachable after four rounds, this never.
 */
#define REACH_ROUNDS 4

static void
relink_unreachable(RepairState *rs)
{
	ReachState	reach;
	float	   *vector;

	hnsw_read_meta(rs->index, &rs->meta);
	if (!ItemPointerIsValid(&rs->meta.entry_point) || !reach_begin(rs, &reach))
		return;
	reach.entry_point = rs->meta.entry_point;
	vector = palloc(sizeof(float) * rs->shape.dimensions);
	rs->linker = hnsw_linker_begin(rs->index, &rs->shape, rs->main.walk);
	for (int round = 0; round < REACH_ROUNDS && !rs->checked; round++)
	{
		int64		relinked = reach_round(rs, &reach, vector, round == 0);

		if (relinked < 0)
			break;
		elog(DEBUG2, "index \"%s\": reachability round %d: " INT64_FORMAT
			 " elements re-linked, " INT64_FORMAT " could not be",
			 RelationGetRelationName(rs->index), round + 1, relinked, reach.left);
		rs->relinked += relinked;
		rs->checked = relinked == 0;
	}
	rs->forced = reach.forced;
	rs->left = reach.left;
	hnsw_linker_end(rs->linker);
	rs->linker = NULL;
	pfree(vector);
	pfree(reach.live);
	pfree(reach.reached);
	pfree(reach.pending);
	pfree(reach.shared);
	pfree(reach.pending_blocks);
	pfree(reach.read_blocks);
	pfree(reach.remote);
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
 * Phases 2-4: unlink and free the elements found deleted, and (3b) make
 * every live element reachable, also when none was deleted (an insert's
 * pruning can orphan elements too).  Inserts go on meanwhile; they never
 * link to a deleted element after the barrier.  `deleted` is sorted
 * (remove_dead_tids).
 */
static void
repair_graph(IndexVacuumInfo *info, const TidList *deleted,
			 const EntryCandidate *candidate)
{
	RepairState rs;

	memset(&rs, 0, sizeof(rs));
	rs.index = info->index;
	rs.strategy = info->strategy;
	rs.deleted = deleted;
	if (deleted->count > 0)
		move_entry_point(info->index, deleted, candidate, &rs.meta);
	else
	{
		hnsw_read_meta(info->index, &rs.meta);
		if (!ItemPointerIsValid(&rs.meta.entry_point))
			return;				/* an empty index */
	}
	hnsw_shape_from_meta(&rs.meta, &rs.shape);
	rs.main.walk = hnsw_walk_begin(info->index, &rs.shape, rs.shape.ef_construction, true);
	rs.main.access = hnsw_walk_access(rs.main.walk);
	rs.main.candidate_capacity = 4 * GRAPH_MAX_M + rs.shape.ef_construction;
	rs.main.candidates = palloc(sizeof(GraphNeighbor) * rs.main.candidate_capacity);
	rs.found = palloc(sizeof(GraphNeighbor) * (rs.shape.ef_construction + 2));

	if (deleted->count > 0)
	{
		HASHCTL		hash;
		const char *budget_name;
		int			budget_kb = vacuum_memory_kb(&budget_name);

		rs.sub.walk = hnsw_walk_begin(info->index, &rs.shape, rs.shape.ef_construction, true);
		rs.sub.access = hnsw_walk_access(rs.sub.walk);
		rs.sub.candidate_capacity = 4 * GRAPH_MAX_M;
		rs.sub.candidates = palloc(sizeof(GraphNeighbor) * rs.sub.candidate_capacity);
		rs.substitute_context = AllocSetContextCreate(CurrentMemoryContext,
													  "hnsw vacuum substitutes",
													  ALLOCSET_DEFAULT_SIZES);
		rs.substitute_budget = (Size) budget_kb * 1024 / 2;
		memset(&hash, 0, sizeof(hash));
		hash.keysize = sizeof(SubstituteKey);
		hash.entrysize = sizeof(SubstituteEntry);
		hash.hcxt = rs.substitute_context;
		rs.substitutes = hash_create("hnsw vacuum substitutes", 1024, &hash,
									 HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
		repair_map_deleted(&rs);
		repair_lists(&rs);
		pfree(rs.deleted_map);
		hnsw_walk_end(rs.sub.walk);
		MemoryContextDelete(rs.substitute_context);	/* the table with it */
		pfree(rs.sub.candidates);
	}
	relink_unreachable(&rs);
	hnsw_walk_end(rs.main.walk);

	if (deleted->count > 0)
		free_deleted(info->index, deleted, rs.shape.m, info->strategy);
	elog(DEBUG1, "index \"%s\": %d elements unlinked, " INT64_FORMAT " lists repaired, "
		 INT64_FORMAT " unreachable elements re-linked (" INT64_FORMAT " by a forced link), "
		 INT64_FORMAT " left unreachable%s",
		 RelationGetRelationName(info->index), deleted->count, rs.lists_repaired,
		 rs.relinked, rs.forced, rs.left,
		 rs.checked ? "" : " (reachability not checked to the end)");
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
	if (!ItemPointerIsValid(&sure.tid) && ItemPointerIsValid(&chained.tid) &&
		!tid_list_contains(&deleted, &chained.tid))
		sure = chained;
	repair_graph(info, &deleted, &sure);
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
