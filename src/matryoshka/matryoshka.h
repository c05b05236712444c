/*
 * matryoshka.h — the matryoshka access method: an hnsw graph walked on the
 * coarse prefix of each vector, and a funnel that re-ranks the candidates on
 * longer prefixes, ending at the full vector (src/matryoshka/README).
 *
 * Everything on pages is hnsw's format (src/hnsw/hnsw.h, version 2), which
 * carries the granularities in the meta page and each element's payload
 * (the rest of its vector) in fine tuples.  This folder adds, one phase per
 * file:
 *   matryoshka.c        handler, index options (granularities), settings
 *   matryoshka_build.c  ambuild/ambuildempty: the hnsw build with a payload
 *   matryoshka_fine.c   the payload: encode, read, partial sums
 *   matryoshka_measure.c  the measure of the default ef_search (build, VACUUM)
 *   matryoshka_vacuum.c  VACUUM: hnsw's, then a new measure as the index grows
 *   matryoshka_limit.c  the LIMIT above a scan, for its first round
 *   matryoshka_scan.c   the scan: walk, funnel, lower bounds, more rows
 */
#ifndef HIERINDEX_MATRYOSHKA_H
#define HIERINDEX_MATRYOSHKA_H

#include "hnsw/hnsw.h"

#define MATRYOSHKA_DEFAULT_COARSE	64	/* g1 when granularities is unset */
#define MATRYOSHKA_MAX_FUNNEL_SIZE	10000	/* one entry of matryoshka.funnel */
#define MATRYOSHKA_EF_SEARCH_MEASURED	0	/* matryoshka.ef_search: the index's
											 * measured default (its default) */
#define MATRYOSHKA_MEASURE_ROWS	10	/* the measured default is for LIMIT 10 */

/*
 * Index options.  The hnsw options come first, in hnsw's layout, so that
 * hnsw_option_m, hnsw_option_ef_construction and hnsw_build_device read a
 * matryoshka index's options too.
 */
typedef struct MatryoshkaOptions
{
	HnswOptions hnsw;
	int			granularities_offset;	/* string option; 0 when not set */
} MatryoshkaOptions;

/*
 * The prefixes of one index: dims[0] the coarse one (the graph's), strictly
 * increasing, dims[count - 1] == the column's dimension.
 */
typedef struct MatryoshkaLayout
{
	int			count;
	int			dims[HNSW_MAX_GRANULARITIES];
	GraphMetric metric;
} MatryoshkaLayout;

#define MatryoshkaCoarse(layout)	((layout)->dims[0])
#define MatryoshkaFull(layout)		((layout)->dims[(layout)->count - 1])

/* settings, defined in matryoshka.c */
extern int	matryoshka_ef_search;
extern int	matryoshka_iterative_scan;	/* HnswIterativeScan */
extern int	matryoshka_max_scan_tuples;
extern double matryoshka_scan_mem_multiplier;
extern int	matryoshka_funnel_count;	/* entries of matryoshka.funnel; 0: unset */
extern int	matryoshka_funnel[HNSW_MAX_GRANULARITIES];

/* matryoshka.c */
extern void matryoshka_init(void);	/* called from _PG_init */

/*
 * The index's granularities for a column of `dimensions`: the option (or
 * the default), checked against the dimension, the full dimension appended
 * when the last is below it.  ERRORs on a list that does not fit.
 */
extern void matryoshka_index_layout(Relation index, int dimensions,
									MatryoshkaLayout *layout);
/* ... and from a built index's meta page (checked, payload size included) */
extern void matryoshka_layout_from_meta(Relation index, const HnswMetaPageData *meta,
										MatryoshkaLayout *layout);

/* matryoshka_fine.c: the payload of an element */

/*
 * Layout of a payload (see README): int16 scale exponent, uint16 count of
 * norms, float residual, float norms[count], uint16 halves[D - g1], uint64
 * hash of the raw floats (unaligned: read it with memcpy).
 */
typedef struct MatryoshkaPayloadHeader
{
	int16		scale_exponent; /* fine values are half * 2^scale_exponent */
	uint16		norm_count;		/* == granularity count */
	float		residual;		/* >= |x[g1:D) - decoded| */
	float		norms[FLEXIBLE_ARRAY_MEMBER];	/* |x[0:g_i)| */
} MatryoshkaPayloadHeader;

extern Size matryoshka_payload_size(const MatryoshkaLayout *layout);
/* ERROR (index corrupted) unless a payload read at finetid fits the layout */
extern void matryoshka_check_payload(Relation index, const MatryoshkaLayout *layout,
									 const MatryoshkaPayloadHeader *header,
									 ItemPointer finetid);
extern Size matryoshka_payload_hash_offset(const MatryoshkaLayout *layout);
/* encode the full raw vector x (D floats) into payload, its hash included */
extern void matryoshka_encode(const MatryoshkaLayout *layout, const float *x,
							  char *payload);
/* the fine values, fp16 codes, of a payload */
extern const uint16 *matryoshka_payload_halves(const MatryoshkaLayout *layout,
											   const char *payload);

/*
 * Add the terms of dims [from, to) (absolute, from >= g1) between the query
 * (full, D floats) and the decoded payload, in double: sum of squared
 * differences (L2), products (inner product, cosine) or absolute
 * differences (L1).
 */
extern double matryoshka_fine_sum(const MatryoshkaLayout *layout, const char *payload,
								  const float *query, int from, int to);

/*
 * The metric's sum over the coarse prefix from the walk's coarse distance
 * (L2 squared, L1: the distance; inner product: the dot product; cosine: the
 * dot product of the raw prefixes, from the prefix norms), and the distance
 * at a granularity from the sum over its prefix and the prefix norms of the
 * query and the element (README, Scan 2).
 */
extern double matryoshka_coarse_sum(GraphMetric metric, float coarse,
									double query_norm, double element_norm);
extern double matryoshka_sum_distance(GraphMetric metric, double sum,
									  double query_norm, double element_norm);

/*
 * The decoded fine part x~[g1:D) of a payload (D - g1 floats).  The first
 * call in a backend builds the decoding table (PostgreSQL memory): call it
 * once before any thread does.
 */
extern void matryoshka_decode_fine(const MatryoshkaLayout *layout,
								   const char *payload, float *fine);


/*
 * matryoshka_measure.c: the default ef_search of a new index, measured on
 * its graph and payloads (payload_size apart, element order); 0 when there
 * is too little to measure or memory ran out.  Blocks every signal while
 * its threads run.
 */
extern int	matryoshka_measure_ef(const MatryoshkaLayout *layout, const Graph *graph,
								  const char *payloads, Size stride, int threads);
/*
 * ... and of a built index, through its pages (VACUUM): the same measure,
 * on live elements spread over the element pages, one search at a time
 * with VACUUM's cost-based delay.  meta: the index's meta page (not
 * empty).  0 when there are too few live elements.
 */
extern int	matryoshka_measure_index(Relation index, BufferAccessStrategy strategy,
									 const HnswMetaPageData *meta);
/*
 * matryoshka_vacuum.c: hnsw's VACUUM, then a new measure when the index has
 * none or has grown to MATRYOSHKA_REMEASURE_GROWTH times the elements of
 * its last measure (or the build's)
 */
#define MATRYOSHKA_REMEASURE_GROWTH	2
extern IndexBulkDeleteResult *matryoshka_vacuum_cleanup(IndexVacuumInfo *info,
														IndexBulkDeleteResult *stats);

/*
 * matryoshka_limit.c: an ExecutorStart hook notes the LIMIT right above each
 * matryoshka index scan; a scan gets its LIMIT plus OFFSET when its first
 * round starts (-1: none known), and whether the scan node has a filter of
 * its own (then the LIMIT does not bound the rows the scan hands out).
 */
extern void matryoshka_limit_init(void);	/* from matryoshka_init */
extern int64 matryoshka_scan_limit(IndexScanDesc scan, bool *filtered);

/* matryoshka_build.c */
extern IndexBuildResult *matryoshka_build(Relation heap, Relation index, IndexInfo *info);
extern void matryoshka_build_empty(Relation index);
extern bool matryoshka_insert(Relation index, Datum *values, bool *isnull,
							  ItemPointer heap_tid, Relation heap,
							  IndexUniqueCheck check_unique, bool index_unchanged,
							  IndexInfo *info);

/* matryoshka_scan.c */
extern IndexScanDesc matryoshka_begin_scan(Relation index, int nkeys, int norderbys);
extern void matryoshka_rescan(IndexScanDesc scan, ScanKey keys, int nkeys,
							  ScanKey orderbys, int norderbys);
extern bool matryoshka_get_tuple(IndexScanDesc scan, ScanDirection dir);
extern void matryoshka_end_scan(IndexScanDesc scan);
/* hnsw's estimate with this index's walk: matryoshka.ef_search, coarse steps */
extern void matryoshka_cost_estimate(struct PlannerInfo *root, struct IndexPath *path,
									 double loop_count, Cost *startup_cost,
									 Cost *total_cost, Selectivity *selectivity,
									 double *correlation, double *pages);

#endif							/* HIERINDEX_MATRYOSHKA_H */
