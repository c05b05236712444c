/*
 * hnsw.h — the hnsw access method: on-disk format and the interfaces between
 * its phases (build, bulk write, insert, scan, vacuum, inspection).
 *
 * The format is explained in src/hnsw/README; this header is its C form.  The
 * page layer (this folder) is shared with the matryoshka access method, so
 * nothing here depends on which builder (CPU or GPU) made a graph.
 *
 * Files, one phase each:
 *   hnsw.c          handler, index options, settings (GUCs), validation
 *   hnsw_page.c     page and tuple layout: init, size, form, read, meta page
 *   hnsw_write.c    bulk page writer: an in-memory Graph to pages and their WAL
 *   hnsw_build.c    ambuild/ambuildempty: heap scan -> Graph -> bulk writer
 *   hnsw_build_gpu.c  the GPU phase of a build: builder choice, Graph -> GPU
 *   hnsw_build_parallel.c  the load phase of a build on parallel workers
 *   hnsw_walk.c     GraphAccess over pages: the graph walk used by scan/insert
 *   hnsw_insert.c   aminsert: one element at a time, GenericXLog
 *   hnsw_scan.c     index scan and cost estimate
 *   hnsw_vacuum.c   ambulkdelete / amvacuumcleanup
 *   hnsw_inspect.c  hierindex_index_info(), hierindex_check()
 */
#ifndef HIERINDEX_HNSW_H
#define HIERINDEX_HNSW_H

#include "postgres.h"

#include "access/amapi.h"
#include "access/generic_xlog.h"
#include "access/reloptions.h"
#include "nodes/execnodes.h"
#include "portability/instr_time.h"
#include "storage/bufmgr.h"
#include "storage/itemptr.h"
#include "utils/relcache.h"

#include "graph/graph.h"

/* ------------------------------------------------------------------------
 * Limits and defaults
 * ------------------------------------------------------------------------ */
#define HNSW_MAX_DIM			2000	/* as pgvector: one vector + header per page */
#define HNSW_DEFAULT_M			16
#define HNSW_MIN_M				2
#define HNSW_MAX_M				100
#define HNSW_DEFAULT_EF_CONSTRUCTION	64
#define HNSW_MIN_EF_CONSTRUCTION	4
#define HNSW_MAX_EF_CONSTRUCTION	1000
#define HNSW_DEFAULT_EF_SEARCH	40
#define HNSW_MIN_EF_SEARCH		1
#define HNSW_MAX_EF_SEARCH		1000

/*
 * Rows with the identical vector share one element, however many they are:
 * the element holds the first HNSW_HEAPTIDS heap TIDs itself, the rest in a
 * chain of heap-TID overflow tuples of HNSW_OVERFLOW_HEAPTIDS each.
 */
#define HNSW_HEAPTIDS			9
#define HNSW_OVERFLOW_HEAPTIDS	64

/* ------------------------------------------------------------------------
 * Pages
 * ------------------------------------------------------------------------ */
#define HNSW_METAPAGE_BLKNO		0
#define HNSW_MAGIC				0x48535731	/* "HSW1" */
#define HNSW_FORMAT_VERSION		2
#define HNSW_PAGE_ID			0xFF91	/* last two bytes of every page */

/* HnswPageOpaqueData.flags */
#define HNSW_PAGE_META			0x0001
#define HNSW_PAGE_ELEMENT		0x0002
#define HNSW_PAGE_FINE			0x0004	/* fine (payload) tuples only */

/* matryoshka: prefix lengths of a funnel, the first one the graph's */
#define HNSW_MAX_GRANULARITIES	8

typedef struct HnswPageOpaqueData
{
	BlockNumber next_blkno;		/* reserved (InvalidBlockNumber) */
	uint16		flags;
	uint16		page_id;		/* HNSW_PAGE_ID */
} HnswPageOpaqueData;

typedef HnswPageOpaqueData *HnswPageOpaque;

#define HnswPageGetOpaque(page) ((HnswPageOpaque) PageGetSpecialPointer(page))

/* how the graph in the index was made (meta page, hierindex_index_info) */
#define HNSW_BUILD_CPU			0	/* in-memory OpenMP build */
#define HNSW_BUILD_GPU			1	/* GPU k-NN graph build */
#define HNSW_BUILD_INSERTS		2	/* element by element (memory fallback) */

/*
 * Block 0.  Written by the build, then changed only under an exclusive
 * buffer lock through GenericXLog.
 */
typedef struct HnswMetaPageData
{
	uint32		magic;			/* HNSW_MAGIC */
	uint32		version;		/* HNSW_FORMAT_VERSION */
	uint32		dimensions;		/* floats in each stored vector */
	uint16		m;
	uint16		ef_construction;
	uint8		metric;			/* GraphMetric */
	uint8		build_method;	/* HNSW_BUILD_* */
	uint16		max_level;		/* level of the entry point */
	ItemPointerData entry_point;	/* element tuple; invalid when empty */
	uint16		default_ef;		/* matryoshka: the ef_search its build or a
								 * VACUUM measured (src/matryoshka/
								 * matryoshka_measure.c); 0: none, and
								 * always 0 in hnsw */
	BlockNumber insert_page;	/* where inserts look for free space first */
	int64		element_count;	/* element tuples (a reused slot is not new) */
	int64		heaptid_count;	/* heap TIDs ever stored */
	float8		build_seconds;	/* wall time of the CREATE INDEX */
	uint64		seed;			/* level draws of the build */

	/*
	 * matryoshka (granularity_count 0 for hnsw): the prefix lengths of its
	 * funnel, granularities[0] == dimensions, the last == full_dimensions;
	 * inserts look for room for fine tuples on fine_insert_page first
	 */
	uint16		granularity_count;
	uint16		granularities[HNSW_MAX_GRANULARITIES];
	uint32		full_dimensions;
	BlockNumber fine_insert_page;
	uint32		payload_size;	/* bytes of each element's fine payload */
	int64		measured_elements;	/* element_count when default_ef was
									 * measured (0: not measured) */
	int64		measured_heaptids;	/* heaptid_count then (0: not known) */
} HnswMetaPageData;

typedef HnswMetaPageData *HnswMetaPage;

#define HnswPageGetMeta(page) ((HnswMetaPage) PageGetContents(page))

/*
 * Element tuple: an indexed vector and the heap rows that hold it.
 * Its neighbour lists are a separate tuple (neighbortid), on the same page
 * whenever both fit.  Heap TIDs beyond the inline HNSW_HEAPTIDS live in a
 * chain of heap-TID tuples starting at overflowtid (invalid: no chain).
 * In a matryoshka index, finetid is the first fine tuple of the element's
 * payload (the rest of its vector); invalid in hnsw.
 *
 * Layout (bytes): 0 type, 1 level, 2 state, 3 heaptid_count, 4 heaptids
 * (9 x 6), 58 overflowtid, 64 neighbortid, 70 finetid, 76 vector.
 */
#define HNSW_ELEMENT_TUPLE		1
#define HNSW_NEIGHBOR_TUPLE		2
#define HNSW_HEAPTID_TUPLE		3
#define HNSW_FINE_TUPLE			4

typedef struct HnswElementTupleData
{
	uint8		type;			/* HNSW_ELEMENT_TUPLE */
	uint8		level;			/* top layer of this element */
	uint8		state;			/* HNSW_ELEMENT_* | generation (below) */
	uint8		heaptid_count;	/* used entries of heaptids[] */
	ItemPointerData heaptids[HNSW_HEAPTIDS];
	ItemPointerData overflowtid;	/* first HnswHeapTidTupleData, or invalid */
	ItemPointerData neighbortid;	/* its HnswNeighborTupleData */
	ItemPointerData finetid;	/* first HnswFineTupleData, or invalid */
	float		vector[FLEXIBLE_ARRAY_MEMBER];	/* dimensions floats */
} HnswElementTupleData;

typedef HnswElementTupleData *HnswElementTuple;

/*
 * Dead-row hint (README, Scans: dead rows): the high bit of an element
 * tuple's type byte, a bit no tuple type uses.  Set by a scan, as a hint
 * (MarkBufferDirtyHint under a share lock, never WAL-logged), when the
 * executor reported every inline heap TID of an element without a heap-TID
 * chain dead to every transaction (scan->kill_prior_tuple); cleared by every
 * writer that gives the element a new row (an inline heap TID, a chain, or
 * the reuse of its slot).  Scans outside recovery treat a hinted element
 * without a chain as deleted; everything else reads the type through
 * HnswTupleType and ignores the bit.
 */
#define HNSW_ELEMENT_DEAD_HINT	0x80
#define HnswTupleType(first_byte) ((uint8) ((first_byte) & ~HNSW_ELEMENT_DEAD_HINT))
#define HnswElementDeadHinted(tuple) \
	(((tuple)->type & HNSW_ELEMENT_DEAD_HINT) != 0 && \
	 !ItemPointerIsValid(&(tuple)->overflowtid))

/*
 * HnswElementTupleData.state: what the element is, in the low two bits, and
 * how many times its slot has been reused, modulo 64, above them (README,
 * VACUUM).  A live element has rows; a deleted one has none but may still be
 * linked (a waypoint) until VACUUM has repaired every list that points at
 * it; a free one is linked from nowhere and waits for an insert to take its
 * slot (element, neighbour, heap-TID and fine tuples) in place.  A reader
 * that read an element once and reads it again (its heap TIDs after its
 * distance) compares the whole byte: a different generation is a different
 * element.
 */
#define HNSW_ELEMENT_LIVE		0
#define HNSW_ELEMENT_DELETED	1
#define HNSW_ELEMENT_FREE		2
#define HNSW_ELEMENT_STATE_MASK	0x03
#define HNSW_ELEMENT_GENERATION_STEP	0x04
#define HnswElementState(tuple) ((tuple)->state & HNSW_ELEMENT_STATE_MASK)
#define HnswElementIsLive(tuple) (HnswElementState(tuple) == HNSW_ELEMENT_LIVE)
/* the state byte of the next element to live in this slot */
#define HnswElementReusedState(tuple) \
	((uint8) (((tuple)->state & ~HNSW_ELEMENT_STATE_MASK) + \
			  HNSW_ELEMENT_GENERATION_STEP) | HNSW_ELEMENT_LIVE)

/*
 * Heap-TID overflow tuple: more heap TIDs of one element (the rows sharing
 * its vector).  Fixed size (394 bytes, 400 on the page); used entries are
 * packed at the front.  A tuple belongs to exactly one element's chain and
 * is never unlinked or moved: vacuum may leave it empty, an insert refills
 * it.  New tuples are linked at the head of the chain.
 */
typedef struct HnswHeapTidTupleData
{
	uint8		type;			/* HNSW_HEAPTID_TUPLE */
	uint8		unused;
	uint16		count;			/* used entries of heaptids[] */
	ItemPointerData next;		/* next tuple of the chain, or invalid */
	ItemPointerData heaptids[HNSW_OVERFLOW_HEAPTIDS];
} HnswHeapTidTupleData;

typedef HnswHeapTidTupleData *HnswHeapTidTuple;

/*
 * More overflow tuples than this many per block cannot exist: a chain that
 * runs longer than that times the relation's blocks has a cycle.
 */
#define HNSW_HEAPTID_TUPLES_PER_PAGE \
	(BLCKSZ / (MAXALIGN(sizeof(HnswHeapTidTupleData)) + sizeof(ItemIdData)) + 1)

/*
 * Neighbour tuple: for layer 0, 2m slots, then m slots per upper layer up to
 * the element's level.  Each layer's list is packed at the front of its
 * slots; the first invalid ItemPointer (or the end of the slots) ends it.
 * Entries point at element tuples.
 */
typedef struct HnswNeighborTupleData
{
	uint8		type;			/* HNSW_NEIGHBOR_TUPLE */
	uint8		level;			/* equals the element's level */
	uint16		unused;
	ItemPointerData slots[FLEXIBLE_ARRAY_MEMBER];
} HnswNeighborTupleData;

typedef HnswNeighborTupleData *HnswNeighborTuple;

/*
 * Fine tuple: one piece of an element's payload (matryoshka: the rest of
 * its vector, see src/matryoshka/README), on a page flagged HNSW_PAGE_FINE.
 * The page layer treats the payload as opaque bytes of a per-index size
 * (meta payload_size): a payload longer than the free space of a page is
 * split into pieces chained by next, each on a later page.  Pieces are
 * written once and never move.
 */
typedef struct HnswFineTupleData
{
	uint8		type;			/* HNSW_FINE_TUPLE */
	uint8		unused;
	uint16		length;			/* payload bytes in this piece */
	ItemPointerData next;		/* next piece, or invalid: the last */
	uint16		unused2;
	char		data[FLEXIBLE_ARRAY_MEMBER];	/* length bytes */
} HnswFineTupleData;

typedef HnswFineTupleData *HnswFineTuple;

/* a piece is not started with less room than this (else: next page) */
#define HNSW_FINE_MIN_PIECE		64

/* ------------------------------------------------------------------------
 * Per-index facts every phase needs (from the meta page or the reloptions)
 * ------------------------------------------------------------------------ */
typedef struct HnswShape
{
	int			dimensions;
	int			m;
	int			m0;				/* 2 m */
	int			ef_construction;
	GraphMetric metric;
} HnswShape;

/* index options (reloptions) */
typedef struct HnswOptions
{
	int32		vl_len_;		/* varlena header (do not touch directly) */
	int			m;
	int			ef_construction;
	int			build_device_offset;	/* string option; 0 when not set */
} HnswOptions;

/*
 * Which builder links the graph of a bulk build: index option build_device,
 * else the setting hierindex.build_device.  auto: the GPU when the module
 * loads, a device answers, the metric is supported and the graph has at
 * least hierindex.gpu_min_rows elements; the CPU otherwise.
 */
typedef enum HnswBuildDevice
{
	HNSW_BUILD_DEVICE_AUTO,
	HNSW_BUILD_DEVICE_CPU,
	HNSW_BUILD_DEVICE_GPU
} HnswBuildDevice;

/* build phases shown in pg_stat_progress_create_index (hnsw.c names them) */
#define HNSW_PHASE_LOAD			2	/* loading tuples from the heap */
#define HNSW_PHASE_GRAPH		3	/* linking the in-memory graph */
#define HNSW_PHASE_WRITE		4	/* writing pages */

/* hnsw.iterative_scan: whether and how a scan goes on after ef_search rows */
typedef enum HnswIterativeScan
{
	HNSW_ITERATIVE_SCAN_OFF,
	HNSW_ITERATIVE_SCAN_RELAXED,	/* relaxed_order: each batch in order */
	HNSW_ITERATIVE_SCAN_STRICT	/* strict_order: drop out-of-order rows */
} HnswIterativeScan;

#define HNSW_DEFAULT_MAX_SCAN_TUPLES	20000
#define HNSW_MAX_SCAN_MEM_MULTIPLIER	1000.0

/* settings (GUCs), defined in hnsw.c */
extern int	hnsw_ef_search;
extern int	hnsw_iterative_scan;	/* HnswIterativeScan */
extern int	hnsw_max_scan_tuples;
extern double hnsw_scan_mem_multiplier;
extern int	hierindex_build_threads;	/* 0: all cores */
extern int	hierindex_build_device;	/* HnswBuildDevice */
extern int	hierindex_gpu_device;	/* CUDA device number */
extern int	hierindex_gpu_min_rows; /* auto: the GPU from this many elements */
extern int	hierindex_gpu_memory_limit; /* MB of device memory; 0: the module's choice */
extern int	hierindex_gpu_precision;	/* HIERINDEX_GPU_PRECISION_* */

/* hnsw.c */
extern void hnsw_init(void);	/* called from _PG_init */
extern int	hnsw_option_m(Relation index);
extern int	hnsw_option_ef_construction(Relation index);
extern int	hnsw_build_thread_count(void);	/* hierindex.build_threads or all cores */
/* the index's build_device, else hierindex.build_device; *from_option says which */
extern HnswBuildDevice hnsw_build_device(Relation index, bool *from_option);
extern const char *hnsw_build_device_name(HnswBuildDevice device);
extern GraphMetric hnsw_index_metric(Relation index);	/* from opclass support 1 */

/*
 * Shared with matryoshka: the graph's options (m, ef_construction,
 * build_device) for a reloption kind, and their parsing into a struct that
 * begins with HnswOptions, with up to HNSW_MAX_EXTRA_OPTIONS more.
 */
#define HNSW_MAX_EXTRA_OPTIONS	4
extern void hnsw_define_graph_options(relopt_kind kind);
extern bytea *hnsw_parse_graph_options(Datum reloptions, bool validate,
									   relopt_kind kind, Size size,
									   const relopt_parse_elt *extra, int nextra);
extern bool hnsw_validate(Oid opclassoid);	/* amvalidate */
extern void hnsw_fill_am_routine(IndexAmRoutine *am);	/* hnsw's phases */
extern char *hnsw_build_phase_name(int64 phase);	/* ambuildphasename */

/* hnsw_page.c: layout */
extern Size hnsw_element_tuple_size(int dimensions);
extern Size hnsw_neighbor_tuple_size(int level, int m);
extern int	hnsw_neighbor_offset(int layer, int m);	/* first slot of a layer */
extern int	hnsw_layer_width(int layer, int m);		/* 2m on 0, m above */
/* the packed list of one layer: copied to out[] (width entries), its length returned */
extern int	hnsw_neighbor_layer_list(const HnswNeighborTupleData *tuple, int layer, int m,
									 ItemPointerData *out);
extern void hnsw_init_page(Page page, uint16 flags);
/*
 * The normal item at `offset` of a locked page if it is at least min_size
 * bytes and its first byte (every tuple's type) is `type`, else NULL.
 */
extern void *hnsw_page_tuple(Page page, OffsetNumber offset, uint8 type, Size min_size);
/*
 * The neighbour tuple at `offset` of a locked page if it has lists up to
 * `layer` and the size its level needs, else NULL (hnsw_page_tuple's checks
 * too).
 */
extern HnswNeighborTuple hnsw_page_neighbors(Page page, OffsetNumber offset,
											 int layer, int m);
extern void hnsw_check_page(Relation index, Page page, BlockNumber blkno);
/*
 * Whether a TID read from a page may be followed to block blkno: not the
 * meta page, and inside the relation.  *nblocks caches the relation's size
 * (start it at 0); it is asked again only when blkno lies beyond it, since
 * an index never shrinks and inserts extend it.
 */
extern bool hnsw_block_exists(Relation index, BlockNumber *nblocks, BlockNumber blkno);

/* hnsw_page.c: meta page */
extern void hnsw_form_meta_page(Page page, const HnswMetaPageData *meta);
extern void hnsw_read_meta(Relation index, HnswMetaPageData *meta);	/* checked copy */
extern void hnsw_shape_from_meta(const HnswMetaPageData *meta, HnswShape *shape);

/*
 * hnsw_page.c: read an element's payload (its chain of fine tuples from
 * finetid) into out (payload_size bytes).  ERRORs on a damaged chain.
 */
extern void hnsw_read_payload(Relation index, ItemPointer finetid,
							  Size payload_size, char *out);

/*
 * How hnsw_read_payload_from gets at pages: lock() pins (as it likes) and
 * share-locks block blkno, checked with hnsw_check_page, and returns it;
 * unlock() releases the lock (and the pin, as it likes).  hnsw_read_payload
 * reads through ReadBuffer; a scan's walk through its own buffers
 * (hnsw_walk_read_payloads).
 */
typedef struct HnswPageSource
{
	Page		(*lock) (void *arg, BlockNumber blkno);
	void		(*unlock) (void *arg);
	void	   *arg;
	/*
	 * hnsw_block_exists's cache of the index's size (start it at 0): a
	 * source that keeps it across payloads spares each its own lseek.
	 */
	BlockNumber *known_blocks;
} HnswPageSource;

extern void hnsw_read_payload_from(Relation index, ItemPointer finetid,
								   Size payload_size, char *out,
								   const HnswPageSource *source);

/*
 * hnsw_page.c: the pieces of an element's payload (as hnsw_read_payload
 * follows them): their TIDs and payload bytes, at most max_pieces (else
 * -1); returns how many.  An insert that reuses a free slot rewrites them.
 */
extern int	hnsw_payload_pieces(Relation index, ItemPointer finetid,
								Size payload_size, ItemPointerData *tids,
								Size *lengths, int max_pieces);

/*
 * hnsw_page.c: free slots (README, VACUUM and Inserts).  The free space map
 * of an index holds, per element page, the highest level a free slot there
 * can take, as hnsw_free_slot_space(level): one FSM category per level, so
 * that asking for hnsw_free_slot_space(L) finds a page with a free slot of
 * level L or above.
 */
extern Size hnsw_free_slot_space(int level);
/* the highest level whose lists fit in a neighbour tuple of `length` bytes (-1: none) */
extern int	hnsw_neighbor_tuple_capacity(Size length, int m);
/*
 * The level the free element at `offset` of a locked element page can take
 * (its neighbour tuple's capacity when that is on the page, else its own
 * level); -1 when the item is not a free element.
 */
extern int	hnsw_free_slot_capacity(Page page, BlockNumber blkno,
									OffsetNumber offset, int m);
/* what the free space map should say of a locked page: 0 when no free slot */
extern Size hnsw_page_free_slot_space(Page page, BlockNumber blkno, int m);

/*
 * Prepare a datum for the index: detoast, check dimensions, normalise under
 * cosine.  Writes `dimensions` floats to out; returns false for a vector that
 * is not indexed (zero under cosine).  ERRORs on a dimension mismatch.
 */
extern bool hnsw_prepare_vector(const HnswShape *shape, Datum value, float *out);

/* hnsw_write.c: the bulk page writer shared by every builder */
typedef struct HnswHeapTids
{
	/*
	 * element i owns tids[start[i] .. start[i + 1]), at least one, any
	 * number: the first HNSW_HEAPTIDS go in the element tuple, the rest in
	 * heap-TID overflow tuples
	 */
	const ItemPointerData *tids;
	const int64 *start;
} HnswHeapTids;

/*
 * An optional payload per element for the bulk writer (matryoshka: the fine
 * part of each vector); NULL for hnsw.  Element i's payload is the first
 * `size` bytes at data + i * stride (stride >= size: the owner may keep more
 * per element in memory).  The writer chains each payload into fine tuples
 * on fine pages after the graph's pages, in the same element order, and
 * sets each element's finetid.  fill_meta (optional) adds its owner's
 * fields to the meta page before it is written.
 */
typedef struct HnswPayloads
{
	Size		size;
	Size		stride;
	const char *data;
	void		(*fill_meta) (HnswMetaPageData *meta, void *arg);
	void	   *arg;
} HnswPayloads;

/*
 * Lay out graph elements [0, graph->count) in breadth-first order from the
 * entry point, write them after the meta page (which it also writes), then
 * their payloads (if any) on fine pages, WAL-logging every page as it is
 * completed and the meta page last.  Index must be empty.
 */
extern void hnsw_write_graph(Relation index, ForkNumber fork, const Graph *graph,
							 const HnswHeapTids *heaptids,
							 const HnswPayloads *payloads, uint8 build_method,
							 float8 build_seconds);

/* bytes a fine tuple carrying `length` payload bytes takes (MAXALIGNed) */
extern Size hnsw_fine_tuple_size(Size length);

/*
 * Payload bytes of the next piece when `free` bytes (pd_upper - pd_lower) of
 * a fine page are left and `remaining` bytes of the payload are to be
 * placed: all of them when they fit, else as many as fit when that is at
 * least HNSW_FINE_MIN_PIECE (split), else 0 (start a new page).  The bulk
 * writer and inserts place pieces by this one rule.
 */
extern Size hnsw_fine_piece_length(Size free, Size remaining);

/*
 * hnsw_walk.c: the graph of one index as a GraphAccess, so scans and inserts
 * use the engine's own search (graph_walk_greedy, graph_walk_layer) and
 * neighbour selection (graph_select_neighbors) on pages.  Handles are dense
 * int32 numbers given to elements as the walk meets them.  All memory is
 * palloc'd in the caller's current memory context.
 */
typedef struct HnswWalk HnswWalk;

/*
 * keep_vectors: copy each element's vector when its distance is computed
 * (inserts need them for pair distances; scans do not).  ef: the largest
 * beam of graph_walk_layer on hnsw_walk_scratch; for a walk without kept
 * vectors also how many elements it makes room for at first (it grows).
 */
extern HnswWalk *hnsw_walk_begin(Relation index, const HnswShape *shape,
								 int ef, bool keep_vectors);
/* forget every handle and set a new prepared query vector */
extern void hnsw_walk_reset(HnswWalk *walk, const float *query);
extern GraphAccess *hnsw_walk_access(HnswWalk *walk);
/* the beam scratch for graph_walk_layer, allocated on the first call */
extern GraphWalkScratch *hnsw_walk_scratch(HnswWalk *walk);
/* handle of an element tuple (assigning one if new) */
extern int32 hnsw_walk_handle(HnswWalk *walk, ItemPointer element_tid);
extern ItemPointer hnsw_walk_tid(HnswWalk *walk, int32 handle);
/* the element's vector (keep_vectors walks, after its distance was computed) */
extern const float *hnsw_walk_vector(HnswWalk *walk, int32 handle);
/* distance between two elements' kept vectors: for graph_select_neighbors */
extern float hnsw_walk_pair_distance(void *walk, int32 a, int32 b);
/*
 * Append the element's heap TIDs (inline, then its overflow chain) to the
 * palloc'd array *tids of *capacity entries at position `used`, growing it
 * (repalloc) as needed.  Returns how many it appended: 0 when the element is
 * deleted or unreachable, or when its slot has been freed or reused since
 * the walk read it (its state byte differs).  For an element with a payload
 * that last check is always made on the page, so a caller that read the
 * payload after the distance and gets rows here read the element's own
 * payload (README, VACUUM).
 */
extern int	hnsw_walk_heaptids(HnswWalk *walk, int32 handle, ItemPointerData **tids,
							   int *capacity, int used);
/*
 * Whether the element is live (read, not deleted), and its finetid (the
 * payload of a matryoshka element; invalid in hnsw).
 */
extern bool hnsw_walk_element(HnswWalk *walk, int32 handle, ItemPointer finetid);
/* whether the element is live (hnsw_walk_element, for callers without payloads) */
extern bool hnsw_walk_is_live(HnswWalk *walk, int32 handle);
/* the element's neighbour tuple (false: not an element) */
extern bool hnsw_walk_element_neighbortid(HnswWalk *walk, int32 handle,
										  ItemPointer neighbortid);
/*
 * Read n payloads (chains from finetids[i] into outs[i], payload_size bytes
 * each; hnsw_read_payload's checks) through the walk's buffers: the pages of
 * all first pieces are prefetched before the first is read, and the pin and
 * the recent-buffer hints of the walk save buffer lookups.
 */
extern void hnsw_walk_read_payloads(HnswWalk *walk, int n, const ItemPointerData *finetids,
									Size payload_size, char **outs);
/* elements whose tuple the walk has read since its reset (its work) */
extern uint64 hnsw_walk_distance_count(HnswWalk *walk);
/*
 * Inline heap TIDs of the live elements read since the reset (the tuples an
 * iterative scan has visited, for hnsw.max_scan_tuples).
 */
extern uint64 hnsw_walk_live_heaptids(HnswWalk *walk);
/*
 * Heap TIDs beyond the first HNSW_HEAPTIDS of each element that
 * hnsw_walk_heaptids has returned since the reset (the overflow rows a scan
 * has visited, for hnsw.max_scan_tuples).
 */
extern uint64 hnsw_walk_overflow_heaptids(HnswWalk *walk);
/* bytes of per-element state for the elements met since the reset */
extern Size hnsw_walk_memory(HnswWalk *walk);
/*
 * A walk keeps the last block it read pinned (never locked) between calls:
 * hnsw_walk_release drops that pin (before returning to the executor, or
 * before waiting on anything); hnsw_walk_end drops it and frees the walk.
 */
extern void hnsw_walk_release(HnswWalk *walk);
extern void hnsw_walk_end(HnswWalk *walk);
/*
 * Dead-row hints (HNSW_ELEMENT_DEAD_HINT).  A walk ignores them unless told
 * to use them (scans outside recovery: scan->ignore_killed_tuples); then it
 * reads a hinted element as deleted.  hnsw_walk_hint_dead sets the hint on
 * the element when it is still the element the walk read, live, without a
 * chain, and its inline heap TIDs are exactly tids[0 .. n).
 */
extern void hnsw_walk_use_dead_hints(HnswWalk *walk, bool use);
extern void hnsw_walk_hint_dead(HnswWalk *walk, int32 handle,
								const ItemPointerData *tids, int n);
/*
 * The start of a layer-0 search for a query prepared as the elements'
 * vectors are (a scan's, or VACUUM's measure of a matryoshka index): reset
 * the walk for it (using dead-row hints or not), descend greedily from the
 * meta page's entry point through layers max_level..1 and start the
 * resumable search on layer 0.  The index must not be empty.
 */
extern void hnsw_walk_descend(HnswWalk *walk, const HnswMetaPageData *meta,
							  const float *query, bool use_dead_hints,
							  GraphSearch *search);

/*
 * The index column's dimension (vector(n) is required), at most max_dim;
 * am_name for the messages.
 */
extern int	hnsw_column_dimensions(Relation index, int max_dim, const char *am_name);

/*
 * hnsw_build.c.  The build is shared by both access methods: hnsw builds
 * with a spec of its own (no payload), matryoshka with one that prepares
 * the coarse prefix and a payload per row.
 */
typedef struct HnswBuildSpec
{
	const char *am_name;		/* in messages: "hnsw", "matryoshka" */
	HnswShape	shape;			/* of the graph: floats per element tuple */
	int			row_dimensions; /* of the column (row size estimates) */

	/*
	 * Bytes kept beside each element's vector in memory (0: none), of which
	 * the first payload_size go to disk; all payload_stride bytes are part
	 * of the duplicate key (rows share an element only when the vector and
	 * these bytes are identical).
	 */
	Size		payload_stride;
	Size		payload_size;

	/*
	 * Prepare a row's (detoasted-as-needed) value: shape.dimensions floats to
	 * vector, payload_stride bytes to payload.  false: not indexed.
	 */
	bool		(*prepare) (void *arg, Datum value, float *vector, char *payload);
	void		(*fill_meta) (HnswMetaPageData *meta, void *arg);	/* or NULL */

	/*
	 * Add one row (prepared as above) to the built index: rows that did not
	 * fit in maintenance_work_mem.
	 */
	void		(*insert) (void *arg, Relation index, const float *vector,
						   const char *payload, ItemPointer heap_tid);

	/*
	 * Or NULL: called once the graph in memory is linked and connected,
	 * before it is written (fill_meta comes after it), with the payloads in
	 * element order (payload_stride apart) and the build's thread count.
	 */
	void		(*measure) (void *arg, const Graph *graph, const char *payloads,
							Size payload_stride, int threads);
	void	   *arg;
} HnswBuildSpec;

extern IndexBuildResult *hnsw_build(Relation heap, Relation index, IndexInfo *info);
extern void hnsw_build_empty(Relation index);
extern IndexBuildResult *hnsw_build_with_spec(Relation heap, Relation index,
											  IndexInfo *info,
											  const HnswBuildSpec *spec);
extern void hnsw_build_empty_with_spec(Relation index, const HnswBuildSpec *spec);

/* Seconds from `started` (INSTR_TIME_SET_CURRENT) until now: the builds' phase clocks. */
extern double hnsw_seconds_since(instr_time started);

/* hnsw_build_gpu.c */
typedef struct HnswGpuPhases
{
	double		transfer;		/* seconds of each GPU phase (gpu.h's stats) */
	double		knn;
	double		prune;
	double		upper;
	char		device_name[256];
} HnswGpuPhases;

/*
 * Before the heap scan of a build: when the GPU will probably link it (the
 * device, the metric, the table's estimated size against
 * hierindex.gpu_min_rows), open the GPU module and probe the device on a
 * thread meanwhile (gpu_module_open_soon).
 */
extern void hnsw_gpu_warm_up(HnswBuildDevice device, GraphMetric metric,
							 int64 estimated_elements);

/*
 * The linking phase of a bulk build on the GPU, when build_device wants it
 * there (see HnswBuildDevice): returns true when the GPU linked `graph`, its
 * entry point, max_level and inserted count set, everything but the repair
 * of unreachable elements (graph_connect_unreachable) done; false when the
 * CPU builder is to link it (the graph as it was).  ERRORs when the GPU was
 * demanded and cannot build it.
 */
extern bool hnsw_link_graph_on_gpu(Relation index, Graph *graph,
								   HnswBuildDevice device, bool device_from_option,
								   HnswGpuPhases *phases);

/* hnsw_insert.c */
extern bool hnsw_insert(Relation index, Datum *values, bool *isnull,
						ItemPointer heap_tid, Relation heap,
						IndexUniqueCheck check_unique, bool index_unchanged,
						IndexInfo *info);

/*
 * Insert one prepared vector for heap_tid into a built index (the insert
 * path of both access methods, also used by a build that ran out of
 * maintenance_work_mem).  payload: the element's payload, the meta page's
 * payload_size bytes (matryoshka), or NULL when that size is 0 (hnsw); a row
 * shares an existing element only when its vector and its payload are both
 * byte-identical to the element's.
 */
extern void hnsw_insert_vector(Relation index, const float *vector,
							   const char *payload, ItemPointer heap_tid);

/*
 * An insert's back link (step b) on its own, for VACUUM's re-linking of
 * unreachable elements.  hnsw_linker_begin sets up the state of a series of
 * links through one walk (a keep_vectors walk; once per pass, not per link),
 * hnsw_linker_end frees it.  hnsw_add_link gives the live element `target`
 * (handle target_handle of the walk, which has read it) a link on `layer` to
 * the element at new_tid, whose vector is new_vector: appended when the list
 * has room, else (may_prune) the list pruned with the neighbour heuristic,
 * under the insert's locking rules.  Returns whether the list links to
 * new_tid afterwards.
 */
typedef struct HnswLinker HnswLinker;

extern HnswLinker *hnsw_linker_begin(Relation index, const HnswShape *shape,
									 HnswWalk *walk);
extern bool hnsw_add_link(HnswLinker *linker, ItemPointer target,
						  int32 target_handle, int layer, ItemPointer new_tid,
						  const float *new_vector, bool may_prune);
extern void hnsw_linker_end(HnswLinker *linker);

/* hnsw_scan.c */
extern IndexScanDesc hnsw_begin_scan(Relation index, int nkeys, int norderbys);
extern void hnsw_rescan(IndexScanDesc scan, ScanKey keys, int nkeys,
						ScanKey orderbys, int norderbys);
extern bool hnsw_get_tuple(IndexScanDesc scan, ScanDirection dir);
/* amrescan's part shared by both access methods: take the new keys */
extern void hnsw_rescan_keys(IndexScanDesc scan, ScanKey keys, ScanKey orderbys);
/*
 * The start of a search shared by both access methods (after each has
 * checked for an ORDER BY).  hnsw_scan_read_meta: false when no row can be
 * returned (ORDER BY col <op> NULL, an empty index), else the meta page in
 * *meta; then hnsw_walk_descend with the query prepared as the elements'
 * vectors are, and scan->ignore_killed_tuples for the dead-row hints.
 */
extern bool hnsw_scan_read_meta(IndexScanDesc scan, HnswMetaPageData *meta);
/* GraphSearch.grow for a scan: context is the MemoryContext the search's heaps live in */
extern void *hnsw_scan_search_grow(void *context, void *array, size_t bytes);

/*
 * What an iterative scan may do, read from an access method's settings
 * (hnsw.iterative_scan, hnsw.max_scan_tuples, hnsw.scan_mem_multiplier, or
 * matryoshka's of the same names) when its search starts, so that SET LOCAL
 * works per query.
 */
typedef struct HnswScanLimits
{
	HnswIterativeScan mode;
	int64		max_tuples;		/* heap TIDs visited */
	double		max_memory;		/* bytes of search state: work_mem x multiplier */
} HnswScanLimits;

extern void hnsw_scan_limits_init(HnswScanLimits *limits, int mode,
								  int max_tuples, double mem_multiplier);

/*
 * Define an access method's three settings of iterative scans,
 * am.iterative_scan (pgvector's values), am.max_scan_tuples and
 * am.scan_mem_multiplier, with hnsw's ranges, into the given variables
 * (called from _PG_init, by hnsw with "hnsw" and by matryoshka).
 */
extern void hnsw_define_scan_settings(const char *am, int *iterative_scan,
									  int default_mode, int *max_scan_tuples,
									  double *scan_mem_multiplier);

/*
 * Whether a scan's search has reached its limits (checked between batches):
 * the heap TIDs it visited (the walk's live ones and the overflow rows it
 * returned) reach max_tuples, or its state (the walk's per-element state,
 * the search's heaps, plus extra_bytes of the scan's own) exceeds
 * max_memory.  Says so at DEBUG1 when it has.
 */
extern bool hnsw_scan_limits_reached(const HnswScanLimits *limits, Relation index,
									 HnswWalk *walk, const GraphSearch *search,
									 double extra_bytes, int batches);
extern void hnsw_end_scan(IndexScanDesc scan);

/*
 * Rows the executor reported dead (scan->kill_prior_tuple), per element: a
 * scan hands out an element's rows one after another, so it notes each
 * killed row with its element's handle and number of rows in the scan, and
 * once all of them were killed the element gets its dead-row hint.
 */
typedef struct HnswRowSource
{
	int32		handle;			/* the element, in the scan's walk */
	int			rows;			/* its rows in the scan */
	float		distance;		/* the element's, to the query */
} HnswRowSource;

typedef struct HnswKilledRows
{
	int32		handle;			/* -1: none yet */
	int			count;
	ItemPointerData tids[HNSW_HEAPTIDS];
} HnswKilledRows;

extern void hnsw_killed_rows_reset(HnswKilledRows *killed);
extern void hnsw_note_killed_row(HnswWalk *walk, HnswKilledRows *killed,
								 int32 handle, int element_rows, ItemPointer heaptid);
extern void hnsw_cost_estimate(struct PlannerInfo *root, struct IndexPath *path,
							   double loop_count, Cost *startup_cost,
							   Cost *total_cost, Selectivity *selectivity,
							   double *correlation, double *pages);

/*
 * The figures of an access method's walk for the shared cost estimate: ef
 * candidates on layer 0; step_cost, the cost of reading one element
 * relative to one of hnsw's (a shorter vector costs less); extra_reads,
 * element-sized reads after the walk (matryoshka's payloads).
 */
typedef struct HnswWalkCost
{
	double		limit;			/* in: the query's LIMIT (PlannerInfo.limit_tuples:
								 * -1 unknown) */
	int			ef;
	double		step_cost;
	double		extra_reads;
} HnswWalkCost;

extern void hnsw_cost_estimate_walk(struct PlannerInfo *root, struct IndexPath *path,
									double loop_count,
									void (*walk_cost) (Relation index, HnswWalkCost *cost),
									Cost *startup_cost, Cost *total_cost,
									Selectivity *selectivity, double *correlation,
									double *pages);

/* hnsw_vacuum.c */
extern IndexBulkDeleteResult *hnsw_bulk_delete(IndexVacuumInfo *info,
											   IndexBulkDeleteResult *stats,
											   IndexBulkDeleteCallback callback,
											   void *callback_state);
extern IndexBulkDeleteResult *hnsw_vacuum_cleanup(IndexVacuumInfo *info,
												  IndexBulkDeleteResult *stats);

#endif							/* HIERINDEX_HNSW_H */
