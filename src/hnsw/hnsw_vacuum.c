/* hnsw_vacuum.c — VACUUM (skeleton: being written) */
#include "postgres.h"
#include "hnsw/hnsw.h"

IndexBulkDeleteResult *
hnsw_bulk_delete(IndexVacuumInfo *info, IndexBulkDeleteResult *stats,
				 IndexBulkDeleteCallback callback, void *callback_state)
{
	elog(ERROR, "hnsw vacuum: not written yet");
	return stats;
}

IndexBulkDeleteResult *
hnsw_vacuum_cleanup(IndexVacuumInfo *info, IndexBulkDeleteResult *stats)
{
	return stats;
}
