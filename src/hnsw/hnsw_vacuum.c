/*
 * hnsw_vacuum.c — VACUUM for hnsw indexes (ambulkdelete, amvacuumcleanup).
 *
 * The graph is never reshaped here.  ambulkdelete walks the element pages
 * in block order and removes the heap TIDs that VACUUM says are dead from
 * every element and every heap-TID overflow tuple, compacting each array.
 * An element is marked deleted only when it has no heap TID left at all,
 * inline or in its overflow chain:
 *
 *   pass 1  (page by page, one exclusive lock at a time) an element left
 *           without inline heap TIDs and without a chain is marked deleted
 *           at once; one that has a chain is remembered;
 *   pass 2  for the remembered elements, with inserts held off by the
 *           exclusive heavyweight lock on block 0 (inserts hold it in share
 *           mode, so none can be adding to a chain meanwhile), the chain is
 *           read one tuple (share lock) at a time and, if it is empty, the
 *           element is marked deleted under its page's exclusive lock.
 *
 * Never two buffer locks at once.  Overflow tuples are never unlinked: an
 * insert refills an empty one.  A deleted element stays in the graph as a
 * waypoint:
 * scans walk through it (its links still hold the graph together) but never
 * return it.  Each changed page is one GenericXLog record, written under
 * the page's exclusive lock, so a scan sees either the old or the new
 * element and a standby replays the same change.
 *
 * Not done yet (the production issue): unlinking deleted elements from
 * their neighbours' lists with repaired links, and reusing their space for
 * new elements.  Until then an index that loses most of its rows keeps its
 * size and its walk length; REINDEX gives both back.
 *
 * Pages are visited one at a time, with vacuum_delay_point() between them
 * so cost-based vacuum delay applies.  A page that is all zeros (added but
 * never written before a crash) is skipped: it holds nothing.
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/generic_xlog.h"
#include "commands/vacuum.h"
#include "miscadmin.h"
#include "storage/bufmgr.h"
#include "storage/bufpage.h"
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
	if (etup->type != HNSW_ELEMENT_TUPLE)
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
 * meanwhile; reads one page at a time.
 */
static void
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
	if (etup == NULL || etup->deleted || etup->heaptid_count > 0)
	{
		UnlockReleaseBuffer(buffer);
		return;
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
			return;				/* rows of this vector remain */
	}

	buffer = ReadBufferExtended(index, MAIN_FORKNUM, blkno, RBM_NORMAL, strategy);
	LockBuffer(buffer, BUFFER_LOCK_EXCLUSIVE);
	xlog = GenericXLogStart(index);
	page = GenericXLogRegisterBuffer(xlog, buffer, 0);
	etup = vacuum_element(index, page, blkno, offnum);
	if (etup != NULL && !etup->deleted && etup->heaptid_count == 0)
	{
		etup->deleted = 1;
		GenericXLogFinish(xlog);
	}
	else
		GenericXLogAbort(xlog);
	UnlockReleaseBuffer(buffer);
}

IndexBulkDeleteResult *
hnsw_bulk_delete(IndexVacuumInfo *info, IndexBulkDeleteResult *stats,
				 IndexBulkDeleteCallback callback, void *callback_state)
{
	Relation	index = info->index;
	BlockNumber nblocks = RelationGetNumberOfBlocks(index);
	ItemPointerData *emptied = NULL;	/* pass 2: no inline TID, a chain */
	int			emptied_count = 0;
	int			emptied_capacity = 0;

	if (stats == NULL)
		stats = (IndexBulkDeleteResult *) palloc0(sizeof(IndexBulkDeleteResult));

	/* each pass counts what is left; an earlier pass's count is stale */
	stats->num_index_tuples = 0;

	for (BlockNumber blkno = HNSW_METAPAGE_BLKNO + 1; blkno < nblocks; blkno++)
	{
		Buffer		buffer;
		Page		page;
		GenericXLogState *xlog = NULL;

		vacuum_delay_point();

		buffer = ReadBufferExtended(index, MAIN_FORKNUM, blkno, RBM_NORMAL,
									info->strategy);
		LockBuffer(buffer, BUFFER_LOCK_EXCLUSIVE);
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
				if (callback(&tids[i], callback_state))
					stats->tuples_removed++;
				else
					live[nlive++] = tids[i];
			}
			stats->num_index_tuples += nlive;

			/*
			 * An element without inline heap TIDs whose chain may have lost
			 * its last rows (now or in an earlier VACUUM): pass 2 decides.
			 */
			if (etup != NULL && nlive == 0 && !etup->deleted &&
				ItemPointerIsValid(&etup->overflowtid))
			{
				if (emptied_count == emptied_capacity)
				{
					emptied_capacity = Max(64, emptied_capacity * 2);
					emptied = emptied == NULL ?
						palloc(sizeof(ItemPointerData) * emptied_capacity) :
						repalloc(emptied, sizeof(ItemPointerData) * emptied_capacity);
				}
				/* ItemPointerSet is a macro that evaluates its pointer twice */
				ItemPointerSet(&emptied[emptied_count], blkno, offnum);
				emptied_count++;
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
					etup->deleted = 1;
			}
			else
			{
				overflow = (HnswHeapTidTuple) PageGetItem(page, PageGetItemId(page, offnum));
				store_live(overflow->heaptids, capacity, live, nlive);
				overflow->count = nlive;
			}
		}

		if (xlog)
			GenericXLogFinish(xlog);
		UnlockReleaseBuffer(buffer);
	}

	/* pass 2, inserts held off: elements whose rows all went */
	if (emptied_count > 0)
	{
		LockPage(index, HNSW_METAPAGE_BLKNO, ExclusiveLock);
		for (int i = 0; i < emptied_count; i++)
		{
			vacuum_delay_point();
			delete_if_chain_empty(index, &emptied[i], info->strategy);
		}
		UnlockPage(index, HNSW_METAPAGE_BLKNO, ExclusiveLock);
		pfree(emptied);
	}

	stats->num_pages = nblocks;
	stats->estimated_count = false;
	return stats;
}

/*
 * After the bulk deletes (stats != NULL) only the page count is refreshed.
 * When VACUUM found nothing to delete, no bulk delete ran and stats is NULL:
 * count the live heap TIDs ourselves so pg_class.reltuples stays right.
 */
IndexBulkDeleteResult *
hnsw_vacuum_cleanup(IndexVacuumInfo *info, IndexBulkDeleteResult *stats)
{
	Relation	index = info->index;
	BlockNumber nblocks;

	if (info->analyze_only)
		return stats;

	nblocks = RelationGetNumberOfBlocks(index);
	if (stats == NULL)
	{
		stats = (IndexBulkDeleteResult *) palloc0(sizeof(IndexBulkDeleteResult));
		for (BlockNumber blkno = HNSW_METAPAGE_BLKNO + 1; blkno < nblocks; blkno++)
		{
			Buffer		buffer;
			Page		page;

			vacuum_delay_point();
			buffer = ReadBufferExtended(index, MAIN_FORKNUM, blkno, RBM_NORMAL,
										info->strategy);
			LockBuffer(buffer, BUFFER_LOCK_SHARE);
			page = BufferGetPage(buffer);
			if (!PageIsNew(page))
			{
				hnsw_check_page(index, page, blkno);
				for (OffsetNumber offnum = FirstOffsetNumber;
					 offnum <= PageGetMaxOffsetNumber(page);
					 offnum = OffsetNumberNext(offnum))
				{
					HnswElementTuple etup = vacuum_element(index, page, blkno, offnum);
					HnswHeapTidTuple overflow;

					if (etup)
						stats->num_index_tuples += etup->heaptid_count;
					else if ((overflow = vacuum_overflow(index, page, blkno, offnum)) != NULL)
						stats->num_index_tuples += overflow->count;
				}
			}
			UnlockReleaseBuffer(buffer);
		}
	}
	stats->num_pages = nblocks;
	stats->estimated_count = false;
	return stats;
}
