/* hnsw_write.c — bulk page writer (skeleton: being written) */
#include "postgres.h"
#include "hnsw/hnsw.h"

void
hnsw_write_graph(Relation index, ForkNumber fork, const Graph *graph,
				 const HnswHeapTids *heaptids, uint8 build_method,
				 float8 build_seconds)
{
	elog(ERROR, "hnsw_write_graph: not written yet");
}
