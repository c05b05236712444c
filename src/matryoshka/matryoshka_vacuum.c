/*
 * matryoshka_vacuum.c — VACUUM of a matryoshka index: hnsw's (the pages are
 * hnsw's, hnsw_vacuum.c), then a new measure of the index's default
 * ef_search when it needs one.
 *
 * Why: a build measures how many coarse candidates its data needs
 * (matryoshka_measure.c), but an index built empty gets its rows through
 * inserts and has no measure, and one built small says little about what it
 * has grown into; such an index would scan with 40, which on some data
 * finds far fewer of the true neighbours (0.93 of the top 10 on
 * Fashion-MNIST).  VACUUM reads every page anyway, runs in the background
 * (autovacuum also visits a table that only receives inserts:
 * autovacuum_vacuum_insert_threshold), and can afford a second: so the
 * cleanup measures again, through the index's pages, when
 *
 *   - the index has no measure (built empty, or too small to measure), or
 *   - its elements have reached MATRYOSHKA_REMEASURE_GROWTH times those of
 *     its last measure, or
 *   - the heap TIDs it has ever stored have (as many rows again have come
 *     in since the measure as it had stored until then: the data may have
 *     changed in place, as when every row is embedded again with another
 *     model, VACUUM freeing the old elements' slots for the new ones),
 *
 * and writes the result to the meta page (one GenericXLog record under the
 * meta page's exclusive buffer lock, as every meta change; a standby
 * replays it).  Between two measures the scan's growth floor applies
 * (matryoshka_scan.c, first_round_ef).  ANALYZE, which calls the cleanup
 * with analyze_only, measures nothing.
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/generic_xlog.h"
#include "storage/bufmgr.h"
#include "utils/rel.h"

#include "matryoshka/matryoshka.h"

/* whether the index's measure is missing or stale (see the top) */
static bool
needs_measure(const HnswMetaPageData *meta)
{
	if (!ItemPointerIsValid(&meta->entry_point) ||
		meta->element_count <= MATRYOSHKA_MEASURE_ROWS + 1)
		return false;
	/*
	 * (An index measured before measured_elements or measured_heaptids
	 * existed has them 0: measured again once, it has both.)
	 */
	if (meta->default_ef == 0 || meta->measured_elements <= 0 || meta->measured_heaptids <= 0)
		return true;
	return meta->element_count / MATRYOSHKA_REMEASURE_GROWTH >= meta->measured_elements ||
		meta->heaptid_count / MATRYOSHKA_REMEASURE_GROWTH >= meta->measured_heaptids;
}

/* store a measure taken when the index's meta page was `measured` */
static void
store_measure(Relation index, int ef, const HnswMetaPageData *measured)
{
	Buffer		buffer = ReadBuffer(index, HNSW_METAPAGE_BLKNO);
	GenericXLogState *xlog;
	Page		page;
	HnswMetaPageData meta;

	LockBuffer(buffer, BUFFER_LOCK_EXCLUSIVE);
	hnsw_check_page(index, BufferGetPage(buffer), HNSW_METAPAGE_BLKNO);
	xlog = GenericXLogStart(index);
	page = GenericXLogRegisterBuffer(xlog, buffer, 0);
	meta = *HnswPageGetMeta(page);
	meta.default_ef = (uint16) ef;
	meta.measured_elements = measured->element_count;
	meta.measured_heaptids = measured->heaptid_count;

	/*
	 * Formed again, not changed in place: a meta page written before
	 * measured_elements existed ends (pd_lower) before it, and GenericXLog
	 * would zero it as part of the page's hole.
	 */
	hnsw_form_meta_page(page, &meta);
	GenericXLogFinish(xlog);
	UnlockReleaseBuffer(buffer);
}

IndexBulkDeleteResult *
matryoshka_vacuum_cleanup(IndexVacuumInfo *info, IndexBulkDeleteResult *stats)
{
	HnswMetaPageData meta;
	int			ef;

	stats = hnsw_vacuum_cleanup(info, stats);
	if (info->analyze_only)
		return stats;

	hnsw_read_meta(info->index, &meta);
	if (!needs_measure(&meta))
		return stats;
	ef = matryoshka_measure_index(info->index, info->strategy, &meta);
	if (ef > 0)
		store_measure(info->index, ef, &meta);
	return stats;
}
