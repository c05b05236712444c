/* hnsw_scan.c — index scan (skeleton: being written) */
#include "postgres.h"
#include "hnsw/hnsw.h"

IndexScanDesc
hnsw_begin_scan(Relation index, int nkeys, int norderbys)
{
	elog(ERROR, "hnsw scan: not written yet");
	return NULL;
}

void
hnsw_rescan(IndexScanDesc scan, ScanKey keys, int nkeys,
			ScanKey orderbys, int norderbys)
{
}

bool
hnsw_get_tuple(IndexScanDesc scan, ScanDirection dir)
{
	return false;
}

void
hnsw_end_scan(IndexScanDesc scan)
{
}

void
hnsw_cost_estimate(struct PlannerInfo *root, struct IndexPath *path,
				   double loop_count, Cost *startup_cost,
				   Cost *total_cost, Selectivity *selectivity,
				   double *correlation, double *pages)
{
	*startup_cost = 1e10;
	*total_cost = 1e10;
	*selectivity = 1;
	*correlation = 0;
	*pages = 1;
}
