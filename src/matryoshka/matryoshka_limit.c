/*
 * matryoshka_limit.c — the LIMIT right above a matryoshka index scan, for
 * the scan's first round (README, Scan: LIMIT).
 *
 * Why: a scan's first round ranks its ef candidates on the full vector; only
 * a round known to be the last may hand them all out, and a LIMIT beyond
 * them takes further rounds, whose rows can come out of order under
 * relaxed_order; and the measured default ef_search (matryoshka_measure.c)
 * is a number of candidates for 10 rows.  Knowing the LIMIT, the first
 * round can be wide enough at once, and go out whole.
 * PostgreSQL 15 does not tell an index scan its LIMIT: amrescan has no
 * bound, and ExecSetTupleBound passes a LIMIT down only to sorts and the
 * like.  But the executor computes the LIMIT before it asks its child for
 * the first row (nodeLimit.c, recompute_limits in LIMIT_INITIAL, and
 * again in ExecReScanLimit before the child is rescanned), so when a scan
 * starts its first round the LimitState above it holds the current count
 * and offset.
 *
 * So an ExecutorStart hook walks each new plan state tree for a Limit whose
 * child is an index scan of a matryoshka index (or a Merge Append of such
 * scans, as over the partitions of a table), and keeps the pair in a
 * backend-local list, each entry in the query's memory and unlinked by a
 * reset callback of that memory (so an error or the end of the query
 * removes them with the executor state).  A scan looks itself up by its scan
 * descriptor (IndexScanState.iss_ScanDesc, set before the scan's first
 * rescan) when its first round starts: a list of a few entries per running
 * query.  A scan with no Limit right above it (a join, a sort or an
 * aggregate between them, LIMIT ALL, a cursor over a query without LIMIT)
 * gets no bound and works as before.  A WHERE clause the index does not
 * answer is the scan node's own filter, so the Limit is still right above:
 * the first round is then LIMIT + 2 wide, and rounds go on for the rows
 * the filter drops; the scan is told of the filter (ss.ps.qual), since the
 * LIMIT then does not bound the rows it hands out, and its first round
 * hands out by the release rule instead of whole (README, Scan 4).
 */
#include "postgres.h"

#include "access/relscan.h"
#include "executor/executor.h"
#include "lib/ilist.h"
#include "nodes/execnodes.h"
#include "nodes/nodeFuncs.h"
#include "utils/memutils.h"
#include "utils/rel.h"

#include "matryoshka/matryoshka.h"

typedef struct LimitedScan
{
	dlist_node	node;
	EState	   *estate;			/* whose query memory holds this entry */
	IndexScanState *scan;
	LimitState *limit;
} LimitedScan;

static dlist_head limited_scans = DLIST_STATIC_INIT(limited_scans);
static ExecutorStart_hook_type previous_executor_start = NULL;

/* the query's memory goes away: forget its entries */
static void
forget_limited_scans(void *arg)
{
	EState	   *estate = (EState *) arg;
	dlist_mutable_iter iter;

	dlist_foreach_modify(iter, &limited_scans)
	{
		LimitedScan *entry = dlist_container(LimitedScan, node, iter.cur);

		if (entry->estate == estate)
			dlist_delete(iter.cur);
	}
}

typedef struct FindContext
{
	EState	   *estate;
	bool		found;
} FindContext;

/* note `child` with `limit` if it is an index scan of a matryoshka index */
static void
note_limited_scan(FindContext *context, PlanState *child, LimitState *limit)
{
	IndexScanState *scan;
	LimitedScan *entry;

	if (child == NULL || !IsA(child, IndexScanState))
		return;
	scan = (IndexScanState *) child;
	/* no index is opened for EXPLAIN without ANALYZE */
	if (scan->iss_RelationDesc == NULL ||
		scan->iss_RelationDesc->rd_indam->amgettuple != matryoshka_get_tuple)
		return;

	entry = MemoryContextAlloc(context->estate->es_query_cxt, sizeof(LimitedScan));
	if (!context->found)
	{
		MemoryContextCallback *callback =
			MemoryContextAlloc(context->estate->es_query_cxt,
							   sizeof(MemoryContextCallback));

		callback->func = forget_limited_scans;
		callback->arg = context->estate;
		MemoryContextRegisterResetCallback(context->estate->es_query_cxt, callback);
		context->found = true;
	}
	entry->estate = context->estate;
	entry->scan = scan;
	entry->limit = limit;
	dlist_push_head(&limited_scans, &entry->node);
}

/*
 * A Limit's scans: its child, or each child of a Merge Append below it (a
 * partitioned table: the Merge Append takes at most LIMIT + OFFSET rows of
 * each, as ExecSetTupleBound tells a sort under it).
 */
static bool
find_limited_scans(PlanState *state, void *arg)
{
	FindContext *context = (FindContext *) arg;

	if (state == NULL)
		return false;
	if (IsA(state, LimitState))
	{
		PlanState  *child = outerPlanState(state);

		if (child != NULL && IsA(child, MergeAppendState))
		{
			MergeAppendState *merge = (MergeAppendState *) child;

			for (int i = 0; i < merge->ms_nplans; i++)
				note_limited_scan(context, merge->mergeplans[i], (LimitState *) state);
		}
		else
			note_limited_scan(context, child, (LimitState *) state);
	}
	return planstate_tree_walker(state, find_limited_scans, arg);
}

static void
matryoshka_executor_start(QueryDesc *query, int eflags)
{
	FindContext context;

	if (previous_executor_start != NULL)
		previous_executor_start(query, eflags);
	else
		standard_ExecutorStart(query, eflags);

	context.estate = query->estate;
	context.found = false;
	if (query->planstate != NULL)
		(void) find_limited_scans(query->planstate, &context);
}

void
matryoshka_limit_init(void)
{
	previous_executor_start = ExecutorStart_hook;
	ExecutorStart_hook = matryoshka_executor_start;
}

int64
matryoshka_scan_limit(IndexScanDesc scan, bool *filtered)
{
	dlist_iter	iter;

	*filtered = false;
	dlist_foreach(iter, &limited_scans)
	{
		LimitedScan *entry = dlist_container(LimitedScan, node, iter.cur);
		LimitState *limit = entry->limit;

		if (entry->scan->iss_ScanDesc != scan)
			continue;
		/* the scan node's own filter: rows it drops do not count */
		*filtered = entry->scan->ss.ps.qual != NULL;
		/* the executor computes count and offset before the first row */
		if (limit->lstate == LIMIT_INITIAL || limit->noCount ||
			limit->count < 0 || limit->offset < 0)
			return -1;
		/* WITH TIES wants the row after the last, to compare it */
		return Min(limit->count, PG_INT64_MAX / 4) + Min(limit->offset, PG_INT64_MAX / 4) +
			(limit->limitOption == LIMIT_OPTION_WITH_TIES ? 1 : 0);
	}
	return -1;
}
