/* hnsw_build.c — index build (skeleton: being written) */
#include "postgres.h"
#include "hnsw/hnsw.h"

IndexBuildResult *
hnsw_build(Relation heap, Relation index, IndexInfo *info)
{
	elog(ERROR, "hnsw_build: not written yet");
	return NULL;
}

void
hnsw_build_empty(Relation index)
{
	elog(ERROR, "hnsw_build_empty: not written yet");
}
