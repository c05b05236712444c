/* hnsw_inspect.c — inspection functions (skeleton: being written) */
#include "postgres.h"
#include "fmgr.h"
#include "hnsw/hnsw.h"

PG_FUNCTION_INFO_V1(hierindex_index_info);
Datum
hierindex_index_info(PG_FUNCTION_ARGS)
{
	elog(ERROR, "hierindex_index_info: not written yet");
	PG_RETURN_NULL();
}

PG_FUNCTION_INFO_V1(hierindex_check);
Datum
hierindex_check(PG_FUNCTION_ARGS)
{
	elog(ERROR, "hierindex_check: not written yet");
	PG_RETURN_NULL();
}
