/*
 * hnsw_inspect.c — hierindex_index_info() and hierindex_check(): looking
 * inside an hnsw (or matryoshka) index from SQL.
 *
 * Both functions read the index the way no scan does: every page in block
 * order, so they see elements a graph walk would never reach.  They are for
 * users ("how big are the layers, how was it built") and for every test of
 * the access method ("is the graph still sound after this?").
 *
 * Both work on a private copy of one page at a time (share lock only while
 * copying, never two buffers locked at once), so they never block a scan or
 * an insert for longer than a memcpy and never follow a pointer into a page
 * that could change under them.
 *
 * hierindex_index_info(index) counts; it trusts the structure only as far
 * as it must to count, and ERRORs (pointing at hierindex_check) on a page or
 * tuple it cannot read.  It takes AccessShareLock like a scan, so under
 * concurrent inserts its counts are a snapshot of no single moment.
 *
 * hierindex_check(index) never ERRORs on anything it finds on disk: each
 * problem is one result row (problem code, block, offset, detail), and a
 * healthy index gives no rows.  It makes three passes:
 *
 *   1. every page in block order: page headers, tuple types and sizes,
 *      element levels; every element, neighbour and heap-TID overflow
 *      tuple goes into a TID -> position hash (memory grows with the number
 *      of elements, roughly 50 bytes each, which is fine for an offline
 *      check); then each element's heap-TID chain is followed: it must lead
 *      through overflow tuples only, each in one chain, without a cycle
 *      ("bad heap-TID chain"), and every overflow tuple must be in some
 *      chain ("orphaned heap-TID tuple");
 *   2. every page again: each neighbour tuple's links must point at element
 *      tuples that have the linked layer, not at their owner, not twice;
 *   3. a breadth-first walk of layer 0 from the entry point over the
 *      neighbour tuples (deleted elements count as waypoints, as they do for
 *      scans): every element must be reached.
 *
 * To see one consistent state it takes ShareLock on the table and the
 * index, which blocks writers (inserts, VACUUM) for its duration, as
 * amcheck's bt_index_parent_check does.  That lock is taken only for a role
 * that LOCK TABLE would give it to (UPDATE, DELETE or TRUNCATE on the table)
 * and only outside recovery; otherwise the check runs under AccessShareLock,
 * says so in a NOTICE, and a change made (or replayed) between the passes
 * may show up as a problem that a second run does not repeat.
 *
 * Who may call them: anyone with SELECT on the index's table, the same
 * people who could read the vectors anyway.
 */
#include "postgres.h"

#include "access/tableam.h"
#include "executor/tuptable.h"
#include "utils/snapmgr.h"

#include "access/relation.h"
#include "access/table.h"
#include "access/xlog.h"
#include "catalog/index.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "commands/defrem.h"
#include "common/hashfn.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "nodes/bitmapset.h"
#include "storage/bufmgr.h"
#include "storage/bufpage.h"
#include "storage/lmgr.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/tuplestore.h"

#include "hnsw/hnsw.h"
#include "matryoshka/matryoshka.h"

/* ------------------------------------------------------------------------
 * Opening the index: kind, access method, privileges
 * ------------------------------------------------------------------------ */

typedef struct InspectedIndex
{
	Relation	heap;
	Relation	index;
	LOCKMODE	lockmode;
	const char *amname;			/* "hnsw" or "matryoshka" */
} InspectedIndex;

/*
 * Open and lock the table and the index.  block_writers asks for ShareLock
 * (hierindex_check wants one consistent state); it is granted only where
 * LOCK TABLE ... IN SHARE MODE would be (UPDATE, DELETE or TRUNCATE on the
 * table) and outside recovery, otherwise AccessShareLock is taken: a user
 * who may only read a table must not be able to stall its writers.
 */
static void
inspect_open(Oid indexoid, bool block_writers, InspectedIndex *target)
{
	LOCKMODE	lockmode = AccessShareLock;
	char		relkind = get_rel_relkind(indexoid);
	char	   *relname;
	Oid			heapoid;
	AclResult	aclresult;
	Oid			relam;
	Oid			hnsw_am = get_am_oid("hnsw", true);
	Oid			matryoshka_am = get_am_oid("matryoshka", true);

	if (relkind == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation with OID %u does not exist", indexoid)));
	relname = get_rel_name(indexoid);
	if (relkind == RELKIND_PARTITIONED_INDEX)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("\"%s\" is a partitioned index, which has no pages of its own",
						relname),
				 errhint("Inspect the index of one of its partitions.")));
	if (relkind != RELKIND_INDEX)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("\"%s\" is not an index", relname),
				 errhint("Pass an index that uses the hnsw or matryoshka access method.")));

	heapoid = IndexGetRelation(indexoid, false);
	aclresult = pg_class_aclcheck(heapoid, GetUserId(), ACL_SELECT);
	if (aclresult != ACLCHECK_OK)
		aclcheck_error(aclresult, OBJECT_TABLE, get_rel_name(heapoid));
	if (block_writers && !RecoveryInProgress() &&
		pg_class_aclmask(heapoid, GetUserId(), ACL_UPDATE | ACL_DELETE | ACL_TRUNCATE,
						 ACLMASK_ANY) != 0)
		lockmode = ShareLock;

	/* table before index, as every other index user locks them */
	target->lockmode = lockmode;
	target->heap = table_open(heapoid, lockmode);
	target->index = index_open(indexoid, lockmode);
	if (IndexGetRelation(indexoid, false) != heapoid)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("table of index \"%s\" changed while it was being opened",
						relname)));

	relam = target->index->rd_rel->relam;
	if (OidIsValid(hnsw_am) && relam == hnsw_am)
		target->amname = "hnsw";
	else if (OidIsValid(matryoshka_am) && relam == matryoshka_am)
		target->amname = "matryoshka";
	else
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("\"%s\" is not an hnsw or matryoshka index", relname),
				 errdetail("It uses the access method \"%s\".", get_am_name(relam))));

	if (RELATION_IS_OTHER_TEMP(target->index))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("cannot inspect temporary index \"%s\" of another session",
						relname)));
}

static void
inspect_close(InspectedIndex *target)
{
	index_close(target->index, target->lockmode);
	table_close(target->heap, target->lockmode);
}

/*
 * Copy one block into *copy under a share lock.  Working on a copy keeps
 * buffer locks as short as a memcpy, whatever we then do with the page
 * (palloc, writing result rows).
 */
static void
inspect_copy_page(Relation index, BlockNumber blkno, BufferAccessStrategy strategy,
				  PGAlignedBlock *copy)
{
	Buffer		buffer;

	buffer = ReadBufferExtended(index, MAIN_FORKNUM, blkno, RBM_NORMAL, strategy);
	LockBuffer(buffer, BUFFER_LOCK_SHARE);
	memcpy(copy->data, BufferGetPage(buffer), BLCKSZ);
	UnlockReleaseBuffer(buffer);
}

/* ------------------------------------------------------------------------
 * Reading pages and tuples without trusting them
 * ------------------------------------------------------------------------ */

/*
 * Why a page cannot be read as an hnsw page with the given flags, or NULL.
 * Beyond hnsw_check_page, the header's free-space pointers must be ordered,
 * so that line pointers can be checked against them.
 */
static char *
page_defect(Page page, uint16 flags)
{
	PageHeader	header = (PageHeader) page;

	if (header->pd_lower < SizeOfPageHeaderData ||
		header->pd_lower > header->pd_upper ||
		header->pd_upper > header->pd_special ||
		header->pd_special > BLCKSZ)
		return psprintf("page header is inconsistent (lower %u, upper %u, special %u)",
						header->pd_lower, header->pd_upper, header->pd_special);
	if (PageGetSpecialSize(page) != MAXALIGN(sizeof(HnswPageOpaqueData)))
		return psprintf("special space is %u bytes, expected %u",
						(unsigned) PageGetSpecialSize(page),
						(unsigned) MAXALIGN(sizeof(HnswPageOpaqueData)));
	if (HnswPageGetOpaque(page)->page_id != HNSW_PAGE_ID)
		return psprintf("page id is %04x, expected %04x",
						HnswPageGetOpaque(page)->page_id, HNSW_PAGE_ID);
	if (HnswPageGetOpaque(page)->flags != flags)
		return psprintf("page flags are 0x%04x, expected 0x%04x",
						HnswPageGetOpaque(page)->flags, flags);
	return NULL;
}

/*
 * The item at offnum of a page that passed page_defect, or NULL with *why
 * set.  An unused line pointer gives NULL with *why NULL: our pages never
 * have one, but it is not a tuple either.
 */
static char *
page_item(Page page, OffsetNumber offnum, Size *length, char **why)
{
	PageHeader	header = (PageHeader) page;
	ItemId		itemid = PageGetItemId(page, offnum);
	unsigned	start = ItemIdGetOffset(itemid);
	unsigned	len = ItemIdGetLength(itemid);

	*why = NULL;
	if (!ItemIdIsUsed(itemid))
		return NULL;
	if (!ItemIdIsNormal(itemid))
	{
		*why = psprintf("line pointer is %s", ItemIdIsDead(itemid) ? "dead" : "a redirect");
		return NULL;
	}
	if (start < header->pd_upper || start + len > header->pd_special ||
		start != MAXALIGN(start) || len < 1)
	{
		*why = psprintf("line pointer (offset %u, length %u) is outside the tuple space",
						start, len);
		return NULL;
	}
	*length = len;
	return (char *) page + start;
}

static Size
element_min_length(int dimensions)
{
	return offsetof(HnswElementTupleData, vector) + sizeof(float) * dimensions;
}

static Size
neighbor_min_length(int level, int m)
{
	return offsetof(HnswNeighborTupleData, slots) +
		sizeof(ItemPointerData) * (hnsw_neighbor_offset(level, m) + hnsw_layer_width(level, m));
}

/* the neighbours of one layer: valid slots from the front (README) */
static int
layer_degree(const HnswNeighborTupleData *ntup, int layer, int m)
{
	const ItemPointerData *slots = ntup->slots + hnsw_neighbor_offset(layer, m);
	int			width = hnsw_layer_width(layer, m);
	int			degree = 0;

	while (degree < width && ItemPointerIsValid(&slots[degree]))
		degree++;
	return degree;
}

static const char *
metric_name(int metric)
{
	switch (metric)
	{
		case GRAPH_METRIC_L2:
			return "l2";
		case GRAPH_METRIC_INNER_PRODUCT:
			return "inner_product";
		case GRAPH_METRIC_COSINE:
			return "cosine";
		case GRAPH_METRIC_L1:
			return "l1";
	}
	return NULL;
}

static const char *
build_method_name(int method)
{
	switch (method)
	{
		case HNSW_BUILD_CPU:
			return "cpu";
		case HNSW_BUILD_GPU:
			return "gpu";
		case HNSW_BUILD_INSERTS:
			return "inserts";
	}
	return NULL;
}

/* ------------------------------------------------------------------------
 * hierindex_index_info
 * ------------------------------------------------------------------------ */

static void
info_corrupted(Relation index, BlockNumber blkno, OffsetNumber offnum, const char *why)
{
	ereport(ERROR,
			(errcode(ERRCODE_INDEX_CORRUPTED),
			 errmsg("index \"%s\" is corrupted at block %u, item %u: %s",
					RelationGetRelationName(index), blkno, offnum, why),
			 errhint("SELECT * FROM hierindex_check('%s') lists every problem; REINDEX repairs it.",
					 RelationGetRelationName(index))));
}

PG_FUNCTION_INFO_V1(hierindex_index_info);
Datum
hierindex_index_info(PG_FUNCTION_ARGS)
{
	Oid			indexoid = PG_GETARG_OID(0);
	InspectedIndex target;
	HnswMetaPageData meta;
	BlockNumber nblocks;
	BufferAccessStrategy strategy;
	PGAlignedBlock copy;
	int64		level_elements[GRAPH_MAX_LEVEL + 1] = {0};
	int64		layer_links[GRAPH_MAX_LEVEL + 1] = {0};
	int64		elements = 0;
	int64		heap_tids = 0;
	int64		deleted = 0;
	int64		free_elements = 0;
	int64		free_bytes = 0;
	int			top_level = -1;	/* highest level of any element found */
	TupleDesc	tupdesc;
	Datum		values[21];
	bool		nulls[21] = {0};
	const char *name;

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");

	inspect_open(indexoid, false, &target);
	hnsw_read_meta(target.index, &meta);
	if (meta.m < HNSW_MIN_M || meta.m > HNSW_MAX_M || meta.dimensions > HNSW_MAX_DIM)
		info_corrupted(target.index, HNSW_METAPAGE_BLKNO, 0,
					   psprintf("meta page has m = %u and dimensions = %u",
								meta.m, meta.dimensions));

	nblocks = RelationGetNumberOfBlocks(target.index);
	strategy = GetAccessStrategy(BAS_BULKREAD);
	for (BlockNumber blkno = HNSW_METAPAGE_BLKNO + 1; blkno < nblocks; blkno++)
	{
		Page		page = (Page) copy.data;
		char	   *why;

		CHECK_FOR_INTERRUPTS();
		inspect_copy_page(target.index, blkno, strategy, &copy);
		/* a page extended but never written (a crash) holds nothing */
		if (PageIsNew(page))
			continue;
		why = page_defect(page, HNSW_PAGE_ELEMENT);
		if (why && meta.granularity_count > 0 && page_defect(page, HNSW_PAGE_FINE) == NULL)
		{
			/* a fine page: fine tuples only (hierindex_check follows them) */
			for (OffsetNumber offnum = FirstOffsetNumber;
				 offnum <= PageGetMaxOffsetNumber(page);
				 offnum = OffsetNumberNext(offnum))
			{
				Size		length;
				char	   *item = page_item(page, offnum, &length, &why);

				if (item == NULL ? why != NULL : item[0] != HNSW_FINE_TUPLE)
					info_corrupted(target.index, blkno, offnum,
								   "unreadable fine tuple");
			}
			continue;
		}
		if (why)
			info_corrupted(target.index, blkno, 0, why);

		for (OffsetNumber offnum = FirstOffsetNumber;
			 offnum <= PageGetMaxOffsetNumber(page);
			 offnum = OffsetNumberNext(offnum))
		{
			Size		length;
			char	   *item = page_item(page, offnum, &length, &why);

			if (item == NULL)
			{
				if (why)
					info_corrupted(target.index, blkno, offnum, why);
				continue;
			}
			if (HnswTupleType(item[0]) == HNSW_ELEMENT_TUPLE)
			{
				HnswElementTuple etup = (HnswElementTuple) item;

				if (length < element_min_length(meta.dimensions) ||
					etup->level > GRAPH_MAX_LEVEL ||
					etup->heaptid_count > HNSW_HEAPTIDS)
					info_corrupted(target.index, blkno, offnum,
								   "unreadable element tuple");
				elements++;
				level_elements[etup->level]++;
				top_level = Max(top_level, (int) etup->level);
				heap_tids += etup->heaptid_count;
				if (!HnswElementIsLive(etup))
					deleted++;

				/*
				 * A free slot: its element, neighbour and payload tuples
				 * wait for an insert (its heap-TID tuples, if any, go along
				 * with the slot and are not counted).
				 */
				if (HnswElementState(etup) == HNSW_ELEMENT_FREE)
				{
					free_elements++;
					free_bytes += MAXALIGN(length) +
						MAXALIGN(hnsw_neighbor_tuple_size(etup->level, meta.m)) +
						(meta.payload_size > 0 ?
						 hnsw_fine_tuple_size(meta.payload_size) : 0);
				}
			}
			else if (item[0] == HNSW_NEIGHBOR_TUPLE)
			{
				HnswNeighborTuple ntup = (HnswNeighborTuple) item;

				if (ntup->level > GRAPH_MAX_LEVEL ||
					length < neighbor_min_length(ntup->level, meta.m))
					info_corrupted(target.index, blkno, offnum,
								   "unreadable neighbour tuple");
				for (int layer = 0; layer <= ntup->level; layer++)
					layer_links[layer] += layer_degree(ntup, layer, meta.m);
			}
			else if (item[0] == HNSW_HEAPTID_TUPLE)
			{
				HnswHeapTidTuple otup = (HnswHeapTidTuple) item;

				if (length < sizeof(HnswHeapTidTupleData) ||
					otup->count > HNSW_OVERFLOW_HEAPTIDS)
					info_corrupted(target.index, blkno, offnum,
								   "unreadable heap-TID overflow tuple");
				heap_tids += otup->count;
			}
			else
				info_corrupted(target.index, blkno, offnum,
							   psprintf("tuple of unknown type %u", (uint8) item[0]));
		}
	}
	FreeAccessStrategy(strategy);

	/* one array entry per layer that has elements: layer i at index i + 1 */
	{
		int			layers = top_level + 1;
		Datum	   *counts = palloc(sizeof(Datum) * Max(layers, 1));
		Datum	   *degrees = palloc(sizeof(Datum) * Max(layers, 1));
		int64		on_layer = 0;

		/* elements having layer l: those whose level is l or above */
		for (int layer = layers - 1; layer >= 0; layer--)
		{
			on_layer += level_elements[layer];
			counts[layer] = Int64GetDatum(level_elements[layer]);
			degrees[layer] = Float8GetDatum((double) layer_links[layer] / on_layer);
		}
		values[10] = PointerGetDatum(construct_array(counts, layers, INT8OID, 8,
													 FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
		values[11] = PointerGetDatum(construct_array(degrees, layers, FLOAT8OID, 8,
													 FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	}

	values[0] = CStringGetTextDatum(target.amname);
	name = metric_name(meta.metric);
	values[1] = CStringGetTextDatum(name ? name : psprintf("unknown (%u)", meta.metric));
	values[2] = Int32GetDatum((int32) meta.dimensions);
	values[3] = Int32GetDatum(meta.m);
	values[4] = Int32GetDatum(meta.ef_construction);
	values[5] = Int64GetDatum(elements);
	values[6] = Int64GetDatum(heap_tids);
	values[7] = Int64GetDatum(deleted);
	values[8] = Int64GetDatum((int64) nblocks);
	values[9] = Int32GetDatum(meta.max_level);
	if (ItemPointerIsValid(&meta.entry_point))
	{
		ItemPointer entry = palloc(sizeof(ItemPointerData));

		ItemPointerCopy(&meta.entry_point, entry);
		values[12] = PointerGetDatum(entry);
	}
	else
		nulls[12] = true;
	name = build_method_name(meta.build_method);
	values[13] = CStringGetTextDatum(name ? name : psprintf("unknown (%u)", meta.build_method));
	values[14] = Float8GetDatum(meta.build_seconds);
	values[15] = Int32GetDatum((int32) meta.version);
	if (meta.granularity_count > 0 && meta.granularity_count <= HNSW_MAX_GRANULARITIES)
	{
		Datum		dims[HNSW_MAX_GRANULARITIES];

		for (int i = 0; i < meta.granularity_count; i++)
			dims[i] = Int32GetDatum((int32) meta.granularities[i]);
		values[16] = PointerGetDatum(construct_array(dims, meta.granularity_count,
													 INT4OID, 4, true, TYPALIGN_INT));
	}
	else
		nulls[16] = true;
	values[17] = Int64GetDatum(free_elements);
	values[18] = Int64GetDatum(free_bytes);
	values[19] = Int32GetDatum((int32) meta.default_ef);
	nulls[19] = meta.default_ef == 0;
	values[20] = Int64GetDatum(meta.measured_elements);
	nulls[20] = meta.default_ef == 0;

	inspect_close(&target);

	tupdesc = BlessTupleDesc(tupdesc);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}

/* ------------------------------------------------------------------------
 * hierindex_check
 * ------------------------------------------------------------------------ */

/* what a TID in the index points at */
#define CHECK_ELEMENT			1	/* a sound element tuple */
#define CHECK_NEIGHBOR			2	/* a sound neighbour tuple */
#define CHECK_DAMAGED			3	/* a tuple already reported as bad */
#define CHECK_OVERFLOW			4	/* a sound heap-TID overflow tuple */
#define CHECK_FINE				5	/* a sound fine tuple (a payload piece) */

typedef struct CheckTidEntry
{
	uint64		key;			/* (block << 16) | offset */
	int32		position;		/* in CheckState.elements, .neighbors, .overflows */
	uint8		kind;			/* CHECK_ELEMENT, CHECK_NEIGHBOR, CHECK_DAMAGED */
	char		status;			/* simplehash's */
} CheckTidEntry;

static inline uint64
tid_key(BlockNumber blkno, OffsetNumber offnum)
{
	return ((uint64) blkno << 16) | offnum;
}

static inline uint64
tid_key_of(const ItemPointerData *tid)
{
	return tid_key(ItemPointerGetBlockNumberNoCheck(tid),
				   ItemPointerGetOffsetNumberNoCheck(tid));
}

/* offsets stay below 2048 on 8 kB pages: injective up to 2M blocks */
#define SH_PREFIX		checktid
#define SH_ELEMENT_TYPE CheckTidEntry
#define SH_KEY_TYPE		uint64
#define SH_KEY			key
#define SH_HASH_KEY(tb, key) murmurhash32((uint32) (((key) >> 16) * 2048 + ((key) & 0xFFFF)))
#define SH_EQUAL(tb, a, b) ((a) == (b))
#define SH_SCOPE		static inline
#define SH_DECLARE
#define SH_DEFINE
#include "lib/simplehash.h"

typedef struct CheckElement
{
	ItemPointerData tid;
	ItemPointerData neighbortid;
	ItemPointerData overflowtid;
	ItemPointerData finetid;
	uint8		level;
	uint8		inline_heaptids;
	uint8		state;			/* HNSW_ELEMENT_* (without the generation) */
	bool		linked;			/* its neighbour tuple exists and matches */
	bool		reached;		/* by the layer-0 walk from the entry point */
} CheckElement;

typedef struct CheckNeighbor
{
	uint8		level;
	int32		owner;			/* element position, -1 while unclaimed */
	bool		owner_matches;	/* the owner's level equals ours */
} CheckNeighbor;

typedef struct CheckOverflow
{
	ItemPointerData tid;
	ItemPointerData next;
	uint16		count;
	int32		owner;			/* element position, -1 while unclaimed */
} CheckOverflow;

typedef struct CheckFine
{
	ItemPointerData tid;
	ItemPointerData next;
	uint16		length;
	int32		owner;			/* element position, -1 while unclaimed */
} CheckFine;

typedef struct CheckState
{
	Relation	heap;
	Relation	index;
	Tuplestorestate *rows;
	TupleDesc	rowdesc;
	HnswMetaPageData meta;
	BlockNumber nblocks;
	checktid_hash *tids;
	Bitmapset  *bad_pages;		/* blocks that failed the page check */
	CheckElement *elements;
	int64		element_count;
	int64		element_capacity;
	CheckNeighbor *neighbors;
	int64		neighbor_count;
	int64		neighbor_capacity;
	CheckOverflow *overflows;
	int64		overflow_count;
	int64		overflow_capacity;
	CheckFine  *fines;
	int64		fine_count;
	int64		fine_capacity;
	Size		payload_size;	/* matryoshka: bytes of each element's payload */
	int64		heaptid_count;
	int64		problems;
} CheckState;

/* one result row; blkno < 0 or offnum 0 leave that column NULL */
static void
check_report(CheckState *cs, const char *problem, int64 blkno, OffsetNumber offnum,
			 const char *detail)
{
	Datum		values[4];
	bool		nulls[4] = {0};

	values[0] = CStringGetTextDatum(problem);
	values[1] = Int64GetDatum(blkno);
	nulls[1] = blkno < 0;
	values[2] = Int32GetDatum((int32) offnum);
	nulls[2] = offnum == InvalidOffsetNumber;
	values[3] = CStringGetTextDatum(detail);
	tuplestore_putvalues(cs->rows, cs->rowdesc, values, nulls);
	cs->problems++;
}

static char *
tid_text(const ItemPointerData *tid)
{
	return psprintf("(%u,%u)", ItemPointerGetBlockNumberNoCheck(tid),
					ItemPointerGetOffsetNumberNoCheck(tid));
}

/*
 * Check block 0.  Returns false when the rest of the index cannot be read
 * with what the meta page says (wrong magic or version, unusable m or
 * dimensions): the walk would only produce noise.
 */
static bool
check_meta(CheckState *cs)
{
	PGAlignedBlock copy;
	Page		page = (Page) copy.data;
	HnswMetaPageData *meta = &cs->meta;
	char	   *why;
	bool		usable = true;

	if (cs->nblocks == 0)
	{
		check_report(cs, "bad meta page", HNSW_METAPAGE_BLKNO, InvalidOffsetNumber,
					 "the index has no blocks");
		return false;
	}
	inspect_copy_page(cs->index, HNSW_METAPAGE_BLKNO, NULL, &copy);
	why = PageIsNew(page) ? "the meta page is all zeros" : page_defect(page, HNSW_PAGE_META);
	if (why)
	{
		check_report(cs, "bad meta page", HNSW_METAPAGE_BLKNO, InvalidOffsetNumber, why);
		return false;
	}
	memcpy(meta, HnswPageGetMeta(page), sizeof(HnswMetaPageData));

	if (meta->magic != HNSW_MAGIC)
	{
		check_report(cs, "bad meta page", HNSW_METAPAGE_BLKNO, InvalidOffsetNumber,
					 psprintf("magic number is %08x, expected %08x",
							  meta->magic, HNSW_MAGIC));
		return false;
	}
	if (meta->version != HNSW_FORMAT_VERSION)
	{
		check_report(cs, "bad meta page", HNSW_METAPAGE_BLKNO, InvalidOffsetNumber,
					 psprintf("format version is %u, this build reads version %d",
							  meta->version, HNSW_FORMAT_VERSION));
		return false;
	}
	if (meta->dimensions > HNSW_MAX_DIM)
	{
		check_report(cs, "bad meta page", HNSW_METAPAGE_BLKNO, InvalidOffsetNumber,
					 psprintf("dimensions is %u, the limit is %d",
							  meta->dimensions, HNSW_MAX_DIM));
		usable = false;
	}
	if (meta->m < HNSW_MIN_M || meta->m > HNSW_MAX_M)
	{
		check_report(cs, "bad meta page", HNSW_METAPAGE_BLKNO, InvalidOffsetNumber,
					 psprintf("m is %u, expected %d to %d",
							  meta->m, HNSW_MIN_M, HNSW_MAX_M));
		usable = false;
	}
	if (meta->ef_construction < HNSW_MIN_EF_CONSTRUCTION ||
		meta->ef_construction > HNSW_MAX_EF_CONSTRUCTION)
		check_report(cs, "bad meta page", HNSW_METAPAGE_BLKNO, InvalidOffsetNumber,
					 psprintf("ef_construction is %u, expected %d to %d",
							  meta->ef_construction, HNSW_MIN_EF_CONSTRUCTION,
							  HNSW_MAX_EF_CONSTRUCTION));
	if (metric_name(meta->metric) == NULL)
		check_report(cs, "bad meta page", HNSW_METAPAGE_BLKNO, InvalidOffsetNumber,
					 psprintf("metric is %u, expected 0 to %d",
							  meta->metric, GRAPH_METRIC_L1));
	if (build_method_name(meta->build_method) == NULL)
		check_report(cs, "bad meta page", HNSW_METAPAGE_BLKNO, InvalidOffsetNumber,
					 psprintf("build method is %u, expected 0 to %d",
							  meta->build_method, HNSW_BUILD_INSERTS));
	if (meta->max_level > GRAPH_MAX_LEVEL)
		check_report(cs, "bad meta page", HNSW_METAPAGE_BLKNO, InvalidOffsetNumber,
					 psprintf("max_level is %u, the limit is %d",
							  meta->max_level, GRAPH_MAX_LEVEL));
	if (meta->default_ef > (meta->granularity_count > 0 ? HNSW_MAX_EF_SEARCH : 0))
		check_report(cs, "bad meta page", HNSW_METAPAGE_BLKNO, InvalidOffsetNumber,
					 psprintf("default ef_search is %u, expected at most %d",
							  meta->default_ef,
							  meta->granularity_count > 0 ? HNSW_MAX_EF_SEARCH : 0));
	/*
	 * A measure counts the elements of its time, and they never decrease; a
	 * count without a measure is wrong (a measure without a count is one
	 * taken before the count existed: VACUUM measures again).
	 */
	if (meta->measured_elements < 0 || meta->measured_elements > meta->element_count ||
		(meta->measured_elements > 0 && meta->default_ef == 0) ||
		meta->measured_heaptids < 0 || meta->measured_heaptids > meta->heaptid_count ||
		(meta->measured_heaptids > 0 && meta->measured_elements == 0))
		check_report(cs, "bad meta page", HNSW_METAPAGE_BLKNO, InvalidOffsetNumber,
					 psprintf("measured at " INT64_FORMAT " elements and " INT64_FORMAT " heap TIDs, with default ef_search %u, " INT64_FORMAT " elements and " INT64_FORMAT " heap TIDs",
							  meta->measured_elements, meta->measured_heaptids,
							  meta->default_ef, meta->element_count,
							  meta->heaptid_count));
	if (meta->granularity_count > 0)
	{
		MatryoshkaLayout layout;
		bool		sound = meta->granularity_count <= HNSW_MAX_GRANULARITIES &&
			meta->granularities[0] == meta->dimensions &&
			meta->granularities[meta->granularity_count - 1] == meta->full_dimensions;

		for (int i = 1; sound && i < meta->granularity_count; i++)
			sound = meta->granularities[i] > meta->granularities[i - 1];
		if (!sound)
		{
			check_report(cs, "bad meta page", HNSW_METAPAGE_BLKNO, InvalidOffsetNumber,
						 psprintf("%u granularities that do not run from dimensions (%u) to full_dimensions (%u) in increasing order",
								  meta->granularity_count, meta->dimensions,
								  meta->full_dimensions));
			usable = false;
		}
		else
		{
			layout.count = meta->granularity_count;
			for (int i = 0; i < layout.count; i++)
				layout.dims[i] = meta->granularities[i];
			layout.metric = (GraphMetric) meta->metric;
			cs->payload_size = matryoshka_payload_size(&layout);
			if (meta->payload_size != cs->payload_size)
			{
				check_report(cs, "bad meta page", HNSW_METAPAGE_BLKNO, InvalidOffsetNumber,
							 psprintf("payload size is %u, the granularities need %zu",
									  meta->payload_size, (size_t) cs->payload_size));
				usable = false;
			}
		}
	}
	if (!usable)
		check_report(cs, "bad meta page", HNSW_METAPAGE_BLKNO, InvalidOffsetNumber,
					 "the element pages were not checked: their layout depends on these values");
	return usable;
}

static void
check_remember(CheckState *cs, BlockNumber blkno, OffsetNumber offnum,
			   uint8 kind, int32 position)
{
	bool		found;
	CheckTidEntry *entry = checktid_insert(cs->tids, tid_key(blkno, offnum), &found);

	Assert(!found);
	entry->kind = kind;
	entry->position = position;
}

static void
check_element_tuple(CheckState *cs, BlockNumber blkno, OffsetNumber offnum,
					HnswElementTuple etup, Size length)
{
	CheckElement *element;
	int			bad_tids = 0;

	if (length < element_min_length(cs->meta.dimensions))
	{
		check_report(cs, "bad tuple", blkno, offnum,
					 psprintf("element tuple is %zu bytes, %u dimensions need %zu",
							  length, cs->meta.dimensions,
							  element_min_length(cs->meta.dimensions)));
		check_remember(cs, blkno, offnum, CHECK_DAMAGED, -1);
		return;
	}
	/* a free slot keeps the level of its last element until reused */
	if ((etup->level > cs->meta.max_level && HnswElementIsLive(etup)) ||
		etup->level > GRAPH_MAX_LEVEL)
		check_report(cs, "level out of range", blkno, offnum,
					 psprintf("element level %u, meta page max_level %u, limit %d",
							  etup->level, cs->meta.max_level, GRAPH_MAX_LEVEL));
	if (etup->heaptid_count > HNSW_HEAPTIDS)
		check_report(cs, "bad tuple", blkno, offnum,
					 psprintf("element has %u heap TIDs, at most %d fit",
							  etup->heaptid_count, HNSW_HEAPTIDS));
	else
	{
		for (int i = 0; i < etup->heaptid_count; i++)
			if (!ItemPointerIsValid(&etup->heaptids[i]))
				bad_tids++;
		if (bad_tids > 0)
			check_report(cs, "bad tuple", blkno, offnum,
						 psprintf("%d of its %u heap TIDs are invalid",
								  bad_tids, etup->heaptid_count));
		if (etup->heaptid_count == 0 && HnswElementIsLive(etup) &&
			!ItemPointerIsValid(&etup->overflowtid))
			check_report(cs, "bad tuple", blkno, offnum,
						 "element has no heap TIDs but is not marked deleted");
		cs->heaptid_count += etup->heaptid_count;
	}

	if (cs->element_count == cs->element_capacity)
	{
		cs->element_capacity *= 2;
		cs->elements = repalloc_huge(cs->elements,
									 sizeof(CheckElement) * cs->element_capacity);
	}
	element = &cs->elements[cs->element_count];
	ItemPointerSet(&element->tid, blkno, offnum);
	element->neighbortid = etup->neighbortid;
	element->overflowtid = etup->overflowtid;
	element->finetid = etup->finetid;
	element->inline_heaptids = etup->heaptid_count;
	element->state = HnswElementState(etup);
	if (element->state > HNSW_ELEMENT_FREE)
		check_report(cs, "bad tuple", blkno, offnum,
					 psprintf("element state %u is unknown", element->state));
	element->level = etup->level;
	element->linked = false;
	element->reached = false;
	check_remember(cs, blkno, offnum, CHECK_ELEMENT, (int32) cs->element_count);
	cs->element_count++;
}

static void
check_heaptid_tuple(CheckState *cs, BlockNumber blkno, OffsetNumber offnum,
					HnswHeapTidTuple otup, Size length)
{
	CheckOverflow *overflow;
	int			bad_tids = 0;

	if (length < sizeof(HnswHeapTidTupleData) ||
		otup->count > HNSW_OVERFLOW_HEAPTIDS)
	{
		check_report(cs, "bad tuple", blkno, offnum,
					 length < sizeof(HnswHeapTidTupleData) ?
					 psprintf("heap-TID overflow tuple is %zu bytes, expected %zu",
							  length, sizeof(HnswHeapTidTupleData)) :
					 psprintf("heap-TID overflow tuple has %u heap TIDs, at most %d fit",
							  otup->count, HNSW_OVERFLOW_HEAPTIDS));
		check_remember(cs, blkno, offnum, CHECK_DAMAGED, -1);
		return;
	}
	for (int i = 0; i < otup->count; i++)
		if (!ItemPointerIsValid(&otup->heaptids[i]))
			bad_tids++;
	if (bad_tids > 0)
		check_report(cs, "bad tuple", blkno, offnum,
					 psprintf("%d of the %u heap TIDs of this overflow tuple are invalid",
							  bad_tids, otup->count));
	cs->heaptid_count += otup->count;

	if (cs->overflow_count == cs->overflow_capacity)
	{
		cs->overflow_capacity *= 2;
		cs->overflows = repalloc_huge(cs->overflows,
									  sizeof(CheckOverflow) * cs->overflow_capacity);
	}
	overflow = &cs->overflows[cs->overflow_count];
	ItemPointerSet(&overflow->tid, blkno, offnum);
	overflow->next = otup->next;
	overflow->count = otup->count;
	overflow->owner = -1;
	check_remember(cs, blkno, offnum, CHECK_OVERFLOW, (int32) cs->overflow_count);
	cs->overflow_count++;
}

static void
check_neighbor_tuple(CheckState *cs, BlockNumber blkno, OffsetNumber offnum,
					 HnswNeighborTuple ntup, Size length)
{
	CheckNeighbor *neighbor;

	if (ntup->level > GRAPH_MAX_LEVEL)
	{
		check_report(cs, "level out of range", blkno, offnum,
					 psprintf("neighbour tuple level %u, limit %d",
							  ntup->level, GRAPH_MAX_LEVEL));
		check_remember(cs, blkno, offnum, CHECK_DAMAGED, -1);
		return;
	}
	if (length < neighbor_min_length(ntup->level, cs->meta.m))
	{
		check_report(cs, "bad tuple", blkno, offnum,
					 psprintf("neighbour tuple is %zu bytes, level %u with m = %u needs %zu",
							  length, ntup->level, cs->meta.m,
							  neighbor_min_length(ntup->level, cs->meta.m)));
		check_remember(cs, blkno, offnum, CHECK_DAMAGED, -1);
		return;
	}
	if (cs->neighbor_count == cs->neighbor_capacity)
	{
		cs->neighbor_capacity *= 2;
		cs->neighbors = repalloc_huge(cs->neighbors,
									  sizeof(CheckNeighbor) * cs->neighbor_capacity);
	}
	neighbor = &cs->neighbors[cs->neighbor_count];
	neighbor->level = ntup->level;
	neighbor->owner = -1;
	neighbor->owner_matches = false;
	check_remember(cs, blkno, offnum, CHECK_NEIGHBOR, (int32) cs->neighbor_count);
	cs->neighbor_count++;
}

static void
check_fine_tuple(CheckState *cs, BlockNumber blkno, OffsetNumber offnum,
				 HnswFineTuple ftup, Size length)
{
	CheckFine  *fine;

	if (length < offsetof(HnswFineTupleData, data) ||
		ftup->length == 0 || length < offsetof(HnswFineTupleData, data) + ftup->length)
	{
		check_report(cs, "bad tuple", blkno, offnum,
					 psprintf("fine tuple is %zu bytes and says it carries %u payload bytes",
							  length, length < offsetof(HnswFineTupleData, data) ? 0 : ftup->length));
		check_remember(cs, blkno, offnum, CHECK_DAMAGED, -1);
		return;
	}
	if (cs->fine_count == cs->fine_capacity)
	{
		cs->fine_capacity *= 2;
		cs->fines = repalloc_huge(cs->fines, sizeof(CheckFine) * cs->fine_capacity);
	}
	fine = &cs->fines[cs->fine_count];
	ItemPointerSet(&fine->tid, blkno, offnum);
	fine->next = ftup->next;
	fine->length = ftup->length;
	fine->owner = -1;
	check_remember(cs, blkno, offnum, CHECK_FINE, (int32) cs->fine_count);
	cs->fine_count++;
}

/* the tuples of a fine page (pass 1): fine tuples only */
static void
check_fine_page(CheckState *cs, BlockNumber blkno, Page page)
{
	for (OffsetNumber offnum = FirstOffsetNumber;
		 offnum <= PageGetMaxOffsetNumber(page);
		 offnum = OffsetNumberNext(offnum))
	{
		Size		length;
		char	   *why;
		char	   *item = page_item(page, offnum, &length, &why);

		if (item == NULL)
		{
			if (why)
			{
				check_report(cs, "bad tuple", blkno, offnum, why);
				check_remember(cs, blkno, offnum, CHECK_DAMAGED, -1);
			}
		}
		else if (item[0] == HNSW_FINE_TUPLE)
			check_fine_tuple(cs, blkno, offnum, (HnswFineTuple) item, length);
		else
		{
			check_report(cs, "bad tuple", blkno, offnum,
						 psprintf("tuple of type %u on a fine page", (uint8) item[0]));
			check_remember(cs, blkno, offnum, CHECK_DAMAGED, -1);
		}
	}
}

/*
 * Every matryoshka element's payload chain must lead through fine tuples
 * only, each in this one chain, forward block by block, and carry exactly
 * the payload size; every fine tuple must belong to a chain.  In hnsw,
 * finetid must be invalid.
 */
static void
check_fine_chains(CheckState *cs)
{
	for (int64 i = 0; i < cs->element_count; i++)
	{
		CheckElement *element = &cs->elements[i];
		BlockNumber blkno = ItemPointerGetBlockNumber(&element->tid);
		OffsetNumber offnum = ItemPointerGetOffsetNumber(&element->tid);
		ItemPointerData next = element->finetid;
		Size		carried = 0;

		if (cs->meta.granularity_count == 0)
		{
			if (ItemPointerIsValid(&next))
				check_report(cs, "bad tuple", blkno, offnum,
							 psprintf("hnsw element has a fine TID %s", tid_text(&next)));
			continue;
		}
		if (!ItemPointerIsValid(&next))
		{
			check_report(cs, "bad fine chain", blkno, offnum,
						 "the element's fine TID is invalid");
			continue;
		}
		while (ItemPointerIsValid(&next))
		{
			CheckTidEntry *entry = checktid_lookup(cs->tids, tid_key_of(&next));
			CheckFine  *fine;

			if (entry == NULL || entry->kind != CHECK_FINE)
			{
				check_report(cs, "bad fine chain", blkno, offnum,
							 psprintf("its chain leads to %s, which is %s",
									  tid_text(&next),
									  entry == NULL ? "no tuple" :
									  entry->kind == CHECK_DAMAGED ? "a damaged tuple" :
									  "not a fine tuple"));
				break;
			}
			fine = &cs->fines[entry->position];
			if (fine->owner >= 0)
			{
				check_report(cs, "bad fine chain", blkno, offnum,
							 psprintf("fine tuple %s also belongs to element %s",
									  tid_text(&next), tid_text(&cs->elements[fine->owner].tid)));
				break;
			}
			fine->owner = (int32) i;
			carried += fine->length;
			if (ItemPointerIsValid(&fine->next) &&
				ItemPointerGetBlockNumberNoCheck(&fine->next) <= ItemPointerGetBlockNumber(&fine->tid))
			{
				check_report(cs, "bad fine chain", blkno, offnum,
							 psprintf("fine tuple %s links back to %s",
									  tid_text(&fine->tid), tid_text(&fine->next)));
				break;
			}
			next = fine->next;
			if (!ItemPointerIsValid(&next) && carried != cs->payload_size)
				check_report(cs, "bad fine chain", blkno, offnum,
							 psprintf("its chain carries %zu payload bytes, expected %zu",
									  (size_t) carried, (size_t) cs->payload_size));
		}
	}
	for (int64 i = 0; i < cs->fine_count; i++)
	{
		if (cs->fines[i].owner < 0)
			check_report(cs, "orphaned fine tuple",
						 ItemPointerGetBlockNumber(&cs->fines[i].tid),
						 ItemPointerGetOffsetNumber(&cs->fines[i].tid),
						 psprintf("no element's chain reaches this fine tuple of %u bytes",
								  cs->fines[i].length));
	}
}

/*
 * Pass 1: pages and tuples, one page at a time; sound tuples are recorded.
 * Pass 2 (links = true): the links of every neighbour tuple whose owner
 * matches it.
 */
static void check_links(CheckState *cs, BlockNumber blkno, OffsetNumber offnum,
						HnswNeighborTuple ntup);

static void
check_pages(CheckState *cs, bool links)
{
	BufferAccessStrategy strategy = GetAccessStrategy(BAS_BULKREAD);
	PGAlignedBlock copy;
	Page		page = (Page) copy.data;

	for (BlockNumber blkno = HNSW_METAPAGE_BLKNO + 1; blkno < cs->nblocks; blkno++)
	{
		char	   *why;

		CHECK_FOR_INTERRUPTS();
		inspect_copy_page(cs->index, blkno, strategy, &copy);

		/*
		 * A page that was added but never written (a crash between extending
		 * the file and the WAL record) holds nothing; a link into it is
		 * reported where the link is.
		 */
		if (PageIsNew(page))
			continue;
		why = page_defect(page, HNSW_PAGE_ELEMENT);
		if (why && cs->meta.granularity_count > 0 &&
			page_defect(page, HNSW_PAGE_FINE) == NULL)
		{
			if (!links)
				check_fine_page(cs, blkno, page);
			continue;
		}
		if (why)
		{
			if (!links)
			{
				check_report(cs, "bad page", blkno, InvalidOffsetNumber, why);
				cs->bad_pages = bms_add_member(cs->bad_pages, (int) blkno);
			}
			continue;
		}

		for (OffsetNumber offnum = FirstOffsetNumber;
			 offnum <= PageGetMaxOffsetNumber(page);
			 offnum = OffsetNumberNext(offnum))
		{
			Size		length;
			char	   *item = page_item(page, offnum, &length, &why);

			if (links)
			{
				CheckTidEntry *entry;

				if (item == NULL || item[0] != HNSW_NEIGHBOR_TUPLE)
					continue;
				entry = checktid_lookup(cs->tids, tid_key(blkno, offnum));

				/*
				 * A free element's lists are what it had when it was
				 * unlinked: nobody reads them, they may point anywhere.
				 */
				if (entry && entry->kind == CHECK_NEIGHBOR &&
					cs->neighbors[entry->position].owner_matches &&
					cs->elements[cs->neighbors[entry->position].owner].state !=
					HNSW_ELEMENT_FREE)
					check_links(cs, blkno, offnum, (HnswNeighborTuple) item);
				continue;
			}

			if (item == NULL)
			{
				if (why)
				{
					check_report(cs, "bad tuple", blkno, offnum, why);
					check_remember(cs, blkno, offnum, CHECK_DAMAGED, -1);
				}
			}
			else if (HnswTupleType(item[0]) == HNSW_ELEMENT_TUPLE)
				check_element_tuple(cs, blkno, offnum, (HnswElementTuple) item, length);
			else if (item[0] == HNSW_NEIGHBOR_TUPLE)
				check_neighbor_tuple(cs, blkno, offnum, (HnswNeighborTuple) item, length);
			else if (item[0] == HNSW_HEAPTID_TUPLE)
				check_heaptid_tuple(cs, blkno, offnum, (HnswHeapTidTuple) item, length);
			else
			{
				check_report(cs, "bad tuple", blkno, offnum,
							 psprintf("tuple of unknown type %u", (uint8) item[0]));
				check_remember(cs, blkno, offnum, CHECK_DAMAGED, -1);
			}
		}
	}
	FreeAccessStrategy(strategy);
}

/* every element must own exactly one neighbour tuple of its own level */
static void
check_neighbor_ownership(CheckState *cs)
{
	for (int64 i = 0; i < cs->element_count; i++)
	{
		CheckElement *element = &cs->elements[i];
		BlockNumber blkno = ItemPointerGetBlockNumber(&element->tid);
		OffsetNumber offnum = ItemPointerGetOffsetNumber(&element->tid);
		CheckTidEntry *entry;
		CheckNeighbor *neighbor;

		if (!ItemPointerIsValid(&element->neighbortid))
		{
			check_report(cs, "missing neighbour tuple", blkno, offnum,
						 "the element's neighbour TID is invalid");
			continue;
		}
		entry = checktid_lookup(cs->tids, tid_key_of(&element->neighbortid));
		if (entry == NULL || entry->kind != CHECK_NEIGHBOR)
		{
			check_report(cs, "missing neighbour tuple", blkno, offnum,
						 psprintf("neighbour TID %s points at %s",
								  tid_text(&element->neighbortid),
								  entry == NULL ? "no tuple" :
								  entry->kind == CHECK_ELEMENT ? "an element tuple" :
								  "a damaged tuple"));
			continue;
		}
		neighbor = &cs->neighbors[entry->position];
		if (neighbor->owner >= 0)
		{
			check_report(cs, "neighbour tuple mismatch", blkno, offnum,
						 psprintf("neighbour tuple %s also belongs to element %s",
								  tid_text(&element->neighbortid),
								  tid_text(&cs->elements[neighbor->owner].tid)));
			continue;
		}
		neighbor->owner = (int32) i;
		if (neighbor->level != element->level)
		{
			check_report(cs, "neighbour tuple mismatch", blkno, offnum,
						 psprintf("element level %u, its neighbour tuple %s has level %u",
								  element->level, tid_text(&element->neighbortid),
								  neighbor->level));
			continue;
		}
		neighbor->owner_matches = true;
		element->linked = true;
	}
}

/*
 * Every element's heap-TID chain must lead through overflow tuples only,
 * each owned by this one chain (no cycle, no sharing), and every overflow
 * tuple must belong to some element.  An element without inline heap TIDs
 * whose chain holds none either must be marked deleted.
 */
static void
check_overflow_chains(CheckState *cs)
{
	for (int64 i = 0; i < cs->element_count; i++)
	{
		CheckElement *element = &cs->elements[i];
		BlockNumber blkno = ItemPointerGetBlockNumber(&element->tid);
		OffsetNumber offnum = ItemPointerGetOffsetNumber(&element->tid);
		ItemPointerData next = element->overflowtid;
		int64		chain_heaptids = 0;
		bool		broken = false;

		while (ItemPointerIsValid(&next))
		{
			CheckTidEntry *entry = checktid_lookup(cs->tids, tid_key_of(&next));
			CheckOverflow *overflow;

			if (entry == NULL || entry->kind != CHECK_OVERFLOW)
			{
				check_report(cs, "bad heap-TID chain", blkno, offnum,
							 psprintf("its chain leads to %s, which is %s",
									  tid_text(&next),
									  entry == NULL ? "no tuple" :
									  entry->kind == CHECK_ELEMENT ? "an element tuple" :
									  entry->kind == CHECK_NEIGHBOR ? "a neighbour tuple" :
									  "a damaged tuple"));
				broken = true;
				break;
			}
			overflow = &cs->overflows[entry->position];
			if (overflow->owner == (int32) i)
			{
				check_report(cs, "bad heap-TID chain", blkno, offnum,
							 psprintf("its chain loops back to %s", tid_text(&next)));
				broken = true;
				break;
			}
			if (overflow->owner >= 0)
			{
				check_report(cs, "bad heap-TID chain", blkno, offnum,
							 psprintf("overflow tuple %s also belongs to element %s",
									  tid_text(&next),
									  tid_text(&cs->elements[overflow->owner].tid)));
				broken = true;
				break;
			}
			overflow->owner = (int32) i;
			chain_heaptids += overflow->count;
			next = overflow->next;
		}
		if (!broken && ItemPointerIsValid(&element->overflowtid) &&
			element->inline_heaptids == 0 && chain_heaptids == 0 &&
			element->state == HNSW_ELEMENT_LIVE)
			check_report(cs, "bad tuple", blkno, offnum,
						 "element has no heap TIDs but is not marked deleted");
	}

	for (int64 i = 0; i < cs->overflow_count; i++)
	{
		if (cs->overflows[i].owner < 0)
			check_report(cs, "orphaned heap-TID tuple",
						 ItemPointerGetBlockNumber(&cs->overflows[i].tid),
						 ItemPointerGetOffsetNumber(&cs->overflows[i].tid),
						 psprintf("no element's chain reaches this overflow tuple of %u heap TIDs",
								  cs->overflows[i].count));
	}
}

/* what a link that is not an element points at, for the detail text */
static const char *
check_link_target_text(CheckState *cs, const ItemPointerData *target)
{
	BlockNumber blkno = ItemPointerGetBlockNumberNoCheck(target);
	CheckTidEntry *entry;

	if (blkno == HNSW_METAPAGE_BLKNO || blkno >= cs->nblocks)
		return psprintf("block %u is outside the element pages (1 to %u)",
						blkno, cs->nblocks - 1);
	entry = checktid_lookup(cs->tids, tid_key_of(target));
	if (bms_is_member((int) blkno, cs->bad_pages))
		return psprintf("block %u failed the page check", blkno);
	if (entry && entry->kind == CHECK_NEIGHBOR)
		return "it is a neighbour tuple";
	if (entry && entry->kind == CHECK_DAMAGED)
		return "the tuple there is damaged";
	if (entry && entry->kind == CHECK_OVERFLOW)
		return "it is a heap-TID overflow tuple";
	return "there is no tuple there";
}

static void
check_links(CheckState *cs, BlockNumber blkno, OffsetNumber offnum, HnswNeighborTuple ntup)
{
	int			m = cs->meta.m;
	CheckTidEntry *own = checktid_lookup(cs->tids, tid_key(blkno, offnum));
	int32		owner = cs->neighbors[own->position].owner;
	char	   *owner_text = tid_text(&cs->elements[owner].tid);

	for (int layer = 0; layer <= ntup->level; layer++)
	{
		const ItemPointerData *slots = ntup->slots + hnsw_neighbor_offset(layer, m);
		int			degree = layer_degree(ntup, layer, m);

		for (int slot = 0; slot < degree; slot++)
		{
			CheckTidEntry *entry = checktid_lookup(cs->tids, tid_key_of(&slots[slot]));
			bool		duplicate = false;

			if (entry == NULL || entry->kind != CHECK_ELEMENT)
			{
				check_report(cs, "link to non-element", blkno, offnum,
							 psprintf("layer %d slot %d of element %s links to %s: %s",
									  layer, slot, owner_text, tid_text(&slots[slot]),
									  check_link_target_text(cs, &slots[slot])));
				continue;
			}
			if (entry->position == owner)
			{
				check_report(cs, "self link", blkno, offnum,
							 psprintf("layer %d slot %d of element %s links to itself",
									  layer, slot, owner_text));
				continue;
			}
			if (cs->elements[entry->position].state != HNSW_ELEMENT_LIVE)
				check_report(cs, "link to deleted element", blkno, offnum,
							 psprintf("layer %d slot %d of element %s links to %s, which is %s",
									  layer, slot, owner_text, tid_text(&slots[slot]),
									  cs->elements[entry->position].state == HNSW_ELEMENT_FREE ?
									  "free" : "deleted"));
			if (cs->elements[entry->position].level < layer)
				check_report(cs, "link above target level", blkno, offnum,
							 psprintf("layer %d slot %d of element %s links to %s, whose level is %u",
									  layer, slot, owner_text, tid_text(&slots[slot]),
									  cs->elements[entry->position].level));
			for (int earlier = 0; earlier < slot && !duplicate; earlier++)
				duplicate = ItemPointerEquals((ItemPointer) &slots[earlier],
											  (ItemPointer) &slots[slot]);
			if (duplicate)
				check_report(cs, "duplicate link", blkno, offnum,
							 psprintf("layer %d slot %d of element %s repeats the link to %s",
									  layer, slot, owner_text, tid_text(&slots[slot])));
		}
	}
}

/* the entry point must be an element on the top layer; returns its position */
static int64
check_entry_point(CheckState *cs)
{
	HnswMetaPageData *meta = &cs->meta;
	CheckTidEntry *entry;

	if (!ItemPointerIsValid(&meta->entry_point))
	{
		/* VACUUM leaves none when every element is free */
		int64		linked = 0;

		for (int64 i = 0; i < cs->element_count; i++)
			if (cs->elements[i].state != HNSW_ELEMENT_FREE)
				linked++;
		if (linked > 0)
			check_report(cs, "bad entry point", HNSW_METAPAGE_BLKNO, InvalidOffsetNumber,
						 psprintf("no entry point, but the index has " INT64_FORMAT " elements that are not free",
								  linked));
		return -1;
	}
	entry = checktid_lookup(cs->tids, tid_key_of(&meta->entry_point));
	if (entry == NULL || entry->kind != CHECK_ELEMENT)
	{
		check_report(cs, "bad entry point", HNSW_METAPAGE_BLKNO, InvalidOffsetNumber,
					 psprintf("entry point %s is not an element tuple; reachability was not checked",
							  tid_text(&meta->entry_point)));
		return -1;
	}
	if (cs->elements[entry->position].level != meta->max_level)
		check_report(cs, "bad entry point", HNSW_METAPAGE_BLKNO, InvalidOffsetNumber,
					 psprintf("entry point %s has level %u, the meta page says max_level %u",
							  tid_text(&meta->entry_point),
							  cs->elements[entry->position].level, meta->max_level));
	return entry->position;
}

/*
 * Pass 3: breadth-first over layer 0 from the entry point, reading each
 * element's neighbour tuple from its page (memory stays at the hash and
 * the queue).  Links were judged in pass 2; here bad ones are just skipped.
 */
/*
 * Does any heap row of the element at `tid` show to our snapshot?  An
 * element nobody can reach matters only when a query should return one of
 * its rows: an insert interrupted by a crash between writing its element
 * and linking it (README, WAL) leaves an unreachable element, but its
 * transaction never committed, so its rows are dead and VACUUM will clear
 * them.  Reads the element's heap TIDs (inline and chain) through the page
 * walk, which already knows both; a deleted element has none.
 */
static bool
element_has_visible_row(CheckState *cs, ItemPointer tid)
{
	HnswShape	shape;
	HnswWalk   *walk;
	float	   *query;
	int			capacity = HNSW_HEAPTIDS;
	ItemPointerData *heaptids = palloc(sizeof(ItemPointerData) * capacity);
	int			count;
	int32		handle;
	bool		visible = false;
	IndexFetchTableData *fetch;
	TupleTableSlot *slot;
	Snapshot	snapshot = GetActiveSnapshot();

	hnsw_shape_from_meta(&cs->meta, &shape);
	query = palloc0(sizeof(float) * shape.dimensions);
	walk = hnsw_walk_begin(cs->index, &shape, 1, false);
	hnsw_walk_reset(walk, query);	/* no distances are computed */
	handle = hnsw_walk_handle(walk, tid);
	count = hnsw_walk_heaptids(walk, handle, &heaptids, &capacity, 0);
	hnsw_walk_end(walk);

	fetch = table_index_fetch_begin(cs->heap);
	slot = table_slot_create(cs->heap, NULL);
	for (int i = 0; i < count && !visible; i++)
	{
		bool		call_again = false;
		bool		all_dead = false;

		visible = table_index_fetch_tuple(fetch, &heaptids[i], snapshot, slot,
										  &call_again, &all_dead);
	}
	ExecDropSingleTupleTableSlot(slot);
	table_index_fetch_end(fetch);
	return visible;
}

static void
check_reachability(CheckState *cs, int64 entry)
{
	int64	   *queue = palloc_extended(sizeof(int64) * cs->element_count, MCXT_ALLOC_HUGE);
	int64		head = 0;
	int64		tail = 0;
	int			width = hnsw_layer_width(0, cs->meta.m);
	ItemPointerData *slots = palloc(sizeof(ItemPointerData) * width);

	cs->elements[entry].reached = true;
	queue[tail++] = entry;
	while (head < tail)
	{
		CheckElement *element = &cs->elements[queue[head++]];
		BlockNumber blkno;
		Buffer		buffer;
		Page		page;
		ItemId		itemid;
		int			degree = 0;

		if (!element->linked || element->state == HNSW_ELEMENT_FREE)
			continue;
		if ((head & 1023) == 0)
			CHECK_FOR_INTERRUPTS();

		/* pass 1 found a sound neighbour tuple here; copy its layer 0 */
		blkno = ItemPointerGetBlockNumber(&element->neighbortid);
		buffer = ReadBuffer(cs->index, blkno);
		LockBuffer(buffer, BUFFER_LOCK_SHARE);
		page = BufferGetPage(buffer);
		if (ItemPointerGetOffsetNumber(&element->neighbortid) <= PageGetMaxOffsetNumber(page))
		{
			itemid = PageGetItemId(page, ItemPointerGetOffsetNumber(&element->neighbortid));
			if (ItemIdIsNormal(itemid) &&
				ItemIdGetLength(itemid) >= neighbor_min_length(0, cs->meta.m))
			{
				HnswNeighborTuple ntup = (HnswNeighborTuple) PageGetItem(page, itemid);

				if (ntup->type == HNSW_NEIGHBOR_TUPLE)
				{
					degree = layer_degree(ntup, 0, cs->meta.m);
					memcpy(slots, ntup->slots, sizeof(ItemPointerData) * degree);
				}
			}
		}
		UnlockReleaseBuffer(buffer);

		for (int slot = 0; slot < degree; slot++)
		{
			CheckTidEntry *target = checktid_lookup(cs->tids, tid_key_of(&slots[slot]));

			if (target && target->kind == CHECK_ELEMENT &&
				!cs->elements[target->position].reached)
			{
				cs->elements[target->position].reached = true;
				queue[tail++] = target->position;
			}
		}
	}

	for (int64 i = 0; i < cs->element_count; i++)
		if (!cs->elements[i].reached &&
			element_has_visible_row(cs, &cs->elements[i].tid))
			check_report(cs, "unreachable element",
						 ItemPointerGetBlockNumber(&cs->elements[i].tid),
						 ItemPointerGetOffsetNumber(&cs->elements[i].tid),
						 psprintf("element of level %u is not reachable on layer 0 from the entry point %s",
								  cs->elements[i].level, tid_text(&cs->meta.entry_point)));
	pfree(queue);
	pfree(slots);
}

PG_FUNCTION_INFO_V1(hierindex_check);
Datum
hierindex_check(PG_FUNCTION_ARGS)
{
	Oid			indexoid = PG_GETARG_OID(0);
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	InspectedIndex target;
	CheckState	cs;
	MemoryContext workcxt;
	MemoryContext oldcxt;
	int64		entry;

	InitMaterializedSRF(fcinfo, 0);

	inspect_open(indexoid, true, &target);
	if (target.lockmode != ShareLock)
		ereport(NOTICE,
				(errmsg("checking index \"%s\" without blocking writers",
						RelationGetRelationName(target.index)),
				 errdetail(RecoveryInProgress() ?
						   "Changes replayed during the check may be reported as problems." :
						   "Changes made during the check may be reported as problems."),
				 errhint("Run it again to confirm a problem%s.",
						 RecoveryInProgress() ? "" :
						 ", or as a role with UPDATE, DELETE or TRUNCATE on the table")));

	workcxt = AllocSetContextCreate(CurrentMemoryContext, "hierindex_check",
									ALLOCSET_DEFAULT_SIZES);
	oldcxt = MemoryContextSwitchTo(workcxt);

	memset(&cs, 0, sizeof(cs));
	cs.heap = target.heap;
	cs.index = target.index;
	cs.rows = rsinfo->setResult;
	cs.rowdesc = rsinfo->setDesc;
	cs.nblocks = RelationGetNumberOfBlocks(target.index);

	if (check_meta(&cs))
	{
		cs.element_capacity = 1024;
		cs.elements = palloc(sizeof(CheckElement) * cs.element_capacity);
		cs.neighbor_capacity = 1024;
		cs.neighbors = palloc(sizeof(CheckNeighbor) * cs.neighbor_capacity);
		cs.overflow_capacity = 64;
		cs.overflows = palloc(sizeof(CheckOverflow) * cs.overflow_capacity);
		cs.fine_capacity = 64;
		cs.fines = palloc(sizeof(CheckFine) * cs.fine_capacity);
		cs.tids = checktid_create(workcxt, 2048, NULL);

		check_pages(&cs, false);
		check_neighbor_ownership(&cs);
		check_overflow_chains(&cs);
		check_fine_chains(&cs);
		check_pages(&cs, true);

		if (cs.element_count > 0 && cs.meta.dimensions == 0)
			check_report(&cs, "bad meta page", HNSW_METAPAGE_BLKNO, InvalidOffsetNumber,
						 "dimensions is 0, but the index has elements");
		if (cs.meta.element_count < cs.element_count)
			check_report(&cs, "count mismatch", HNSW_METAPAGE_BLKNO, InvalidOffsetNumber,
						 psprintf("the meta page counts " INT64_FORMAT " elements, the pages hold " INT64_FORMAT,
								  cs.meta.element_count, cs.element_count));
		if (cs.meta.heaptid_count < cs.heaptid_count)
			check_report(&cs, "count mismatch", HNSW_METAPAGE_BLKNO, InvalidOffsetNumber,
						 psprintf("the meta page counts " INT64_FORMAT " heap TIDs, the pages hold " INT64_FORMAT,
								  cs.meta.heaptid_count, cs.heaptid_count));

		entry = check_entry_point(&cs);
		if (entry >= 0)
			check_reachability(&cs, entry);
	}

	MemoryContextSwitchTo(oldcxt);
	MemoryContextDelete(workcxt);
	inspect_close(&target);
	return (Datum) 0;
}
