/*
 * hnsw_vacuum.c — VACUUM for hnsw indexes (ambulkdelete, amvacuumcleanup).
 *
 * The graph is never reshaped here.  ambulkdelete walks the element pages
 * in block order and removes from each element the heap TIDs that VACUUM
 * says are dead, compacting heaptids[]; an element left with no heap TID is
 * marked deleted.  A deleted element stays in the graph as a waypoint:
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
#include "utils/rel.h"

#include "hnsw/hnsw.h"

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
		ereport(ERROR,
				(errcode(ERRCODE_INDEX_CORRUPTED),
				 errmsg("index \"%s\" has a corrupted element tuple at block %u, item %u",
						RelationGetRelationName(index), blkno, offnum),
				 errhint("Please REINDEX it.")));
	return etup;
}

IndexBulkDeleteResult *
hnsw_bulk_delete(IndexVacuumInfo *info, IndexBulkDeleteResult *stats,
				 IndexBulkDeleteCallback callback, void *callback_state)
{
	Relation	index = info->index;
	BlockNumber nblocks = RelationGetNumberOfBlocks(index);

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
			ItemPointerData live[HNSW_HEAPTIDS];
			int			nlive = 0;

			if (etup == NULL)
				continue;
			for (int i = 0; i < etup->heaptid_count; i++)
			{
				if (callback(&etup->heaptids[i], callback_state))
					stats->tuples_removed++;
				else
					live[nlive++] = etup->heaptids[i];
			}
			stats->num_index_tuples += nlive;
			if (nlive == etup->heaptid_count)
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
				etup = (HnswElementTuple) PageGetItem(page, PageGetItemId(page, offnum));
			}
			memcpy(etup->heaptids, live, sizeof(ItemPointerData) * nlive);
			for (int i = nlive; i < HNSW_HEAPTIDS; i++)
				ItemPointerSetInvalid(&etup->heaptids[i]);
			etup->heaptid_count = nlive;
			if (nlive == 0)
				etup->deleted = 1;
		}

		if (xlog)
			GenericXLogFinish(xlog);
		UnlockReleaseBuffer(buffer);
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

					if (etup)
						stats->num_index_tuples += etup->heaptid_count;
				}
			}
			UnlockReleaseBuffer(buffer);
		}
	}
	stats->num_pages = nblocks;
	stats->estimated_count = false;
	return stats;
}
