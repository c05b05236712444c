/* hnsw_insert.c — inserts (skeleton: being written) */
#include "postgres.h"
#include "hnsw/hnsw.h"

bool
hnsw_insert(Relation index, Datum *values, bool *isnull,
			ItemPointer heap_tid, Relation heap,
			IndexUniqueCheck check_unique, bool index_unchanged,
			IndexInfo *info)
{
	elog(ERROR, "hnsw_insert: not written yet");
	return false;
}

void
hnsw_insert_vector(Relation index, const float *vector, ItemPointer heap_tid)
{
	elog(ERROR, "hnsw_insert_vector: not written yet");
}
