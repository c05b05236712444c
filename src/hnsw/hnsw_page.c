/*
 * hnsw_page.c — page and tuple layout of hnsw indexes (see README).
 *
 * The one place that knows sizes and offsets: how big an element or
 * neighbour tuple is, where a layer's neighbour slots start, how a page is
 * initialised and checked, how the meta page is written and read, and how a
 * chain of fine tuples (an element's payload) is read back.  Every
 * other phase goes through these functions, so the format can change in one
 * place (with HNSW_FORMAT_VERSION).
 */
#include "postgres.h"

#include "access/generic_xlog.h"
#include "storage/bufmgr.h"
#include "storage/bufpage.h"
#include "utils/rel.h"

#include "hnsw/hnsw.h"
#include "vector.h"

Size
hnsw_element_tuple_size(int dimensions)
{
	return MAXALIGN(offsetof(HnswElementTupleData, vector) +
					sizeof(float) * dimensions);
}

int
hnsw_layer_width(int layer, int m)
{
	return layer == 0 ? 2 * m : m;
}

int
hnsw_neighbor_offset(int layer, int m)
{
	return layer == 0 ? 0 : 2 * m + (layer - 1) * m;
}

Size
hnsw_neighbor_tuple_size(int level, int m)
{
	return MAXALIGN(offsetof(HnswNeighborTupleData, slots) +
					sizeof(ItemPointerData) * (2 * m + level * m));
}

void
hnsw_init_page(Page page, uint16 flags)
{
	HnswPageOpaque opaque;

	PageInit(page, BLCKSZ, sizeof(HnswPageOpaqueData));
	opaque = HnswPageGetOpaque(page);
	opaque->next_blkno = InvalidBlockNumber;
	opaque->flags = flags;
	opaque->page_id = HNSW_PAGE_ID;
}

/*
 * ERROR on a page that is not one of ours (a corrupt or foreign block): every
 * reader checks before trusting offsets inside it.
 */
void
hnsw_check_page(Relation index, Page page, BlockNumber blkno)
{
	if (PageIsNew(page) ||
		PageGetSpecialSize(page) != MAXALIGN(sizeof(HnswPageOpaqueData)) ||
		HnswPageGetOpaque(page)->page_id != HNSW_PAGE_ID)
		ereport(ERROR,
				(errcode(ERRCODE_INDEX_CORRUPTED),
				 errmsg("index \"%s\" contains corrupted page at block %u",
						RelationGetRelationName(index), blkno),
				 errhint("Please REINDEX it.")));
}

/*
 * Fill an initialised meta page (hnsw_init_page with HNSW_PAGE_META) with
 * meta.  The bulk writer calls it on block 0's new buffer and WAL-logs it.
 */
void
hnsw_form_meta_page(Page page, const HnswMetaPageData *meta)
{
	memcpy(HnswPageGetMeta(page), meta, sizeof(HnswMetaPageData));
	((PageHeader) page)->pd_lower =
		((char *) HnswPageGetMeta(page) + sizeof(HnswMetaPageData)) - (char *) page;
}

void
hnsw_read_meta(Relation index, HnswMetaPageData *meta)
{
	Buffer		buffer;
	Page		page;

	buffer = ReadBuffer(index, HNSW_METAPAGE_BLKNO);
	LockBuffer(buffer, BUFFER_LOCK_SHARE);
	page = BufferGetPage(buffer);
	hnsw_check_page(index, page, HNSW_METAPAGE_BLKNO);
	memcpy(meta, HnswPageGetMeta(page), sizeof(HnswMetaPageData));
	UnlockReleaseBuffer(buffer);

	if (meta->magic != HNSW_MAGIC)
		ereport(ERROR,
				(errcode(ERRCODE_INDEX_CORRUPTED),
				 errmsg("index \"%s\" is not an hnsw index (bad magic number %08x)",
						RelationGetRelationName(index), meta->magic)));
	if (meta->version != HNSW_FORMAT_VERSION)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("index \"%s\" has on-disk format version %u, this build reads version %d",
						RelationGetRelationName(index), meta->version,
						HNSW_FORMAT_VERSION),
				 errhint("REINDEX it.")));
}

void
hnsw_shape_from_meta(const HnswMetaPageData *meta, HnswShape *shape)
{
	shape->dimensions = meta->dimensions;
	shape->m = meta->m;
	shape->m0 = 2 * meta->m;
	shape->ef_construction = meta->ef_construction;
	shape->metric = (GraphMetric) meta->metric;
}

bool
hnsw_prepare_vector(const HnswShape *shape, Datum value, float *out)
{
	Vector	   *vector = DatumGetVector(value);

	if (vector->dim != shape->dimensions)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("expected %d dimensions, not %d",
						shape->dimensions, vector->dim)));

	if (shape->metric == GRAPH_METRIC_COSINE)
	{
		if (graph_normalize(vector->x, out, vector->dim) != 0)
			return false;		/* no direction: cosine distance undefined */
	}
	else
		memcpy(out, vector->x, sizeof(float) * vector->dim);
	return true;
}

/*
 * Fine tuples: an element's payload, read piece by piece, each under its own
 * share lock, one at a time.  A chain that leads anywhere else, goes
 * backwards, or is too long or too short is index corruption.
 */
static void report_broken_chain(Relation index, ItemPointer tid, const char *why) pg_attribute_noreturn();

static void
report_broken_chain(Relation index, ItemPointer tid, const char *why)
{
	ereport(ERROR,
			(errcode(ERRCODE_INDEX_CORRUPTED),
			 errmsg("index \"%s\" has a broken fine tuple chain at (%u,%u): %s",
					RelationGetRelationName(index),
					ItemPointerGetBlockNumberNoCheck(tid),
					ItemPointerGetOffsetNumberNoCheck(tid), why),
			 errhint("Please REINDEX it.")));
}

/* HnswPageSource of hnsw_read_payload and hnsw_payload_pieces: a pin and a lock per piece */
typedef struct BufferPageSource
{
	Relation	index;
	Buffer		buffer;
} BufferPageSource;

static Page
buffer_source_lock(void *arg, BlockNumber blkno)
{
	BufferPageSource *source = arg;
	Page		page;

	source->buffer = ReadBuffer(source->index, blkno);
	LockBuffer(source->buffer, BUFFER_LOCK_SHARE);
	page = BufferGetPage(source->buffer);
	hnsw_check_page(source->index, page, blkno);
	return page;
}

static void
buffer_source_unlock(void *arg)
{
	BufferPageSource *source = arg;

	UnlockReleaseBuffer(source->buffer);
}

/*
 * Follow the chain of fine tuples from finetid over payload_size bytes,
 * reading pages through source: copy the payload to out (when not NULL) and
 * note each piece's TID and length in tids[] and lengths[] (when not NULL;
 * at most max_pieces, else -1 is returned).  Returns the number of pieces.
 */
static int
follow_payload_chain(Relation index, ItemPointer finetid, Size payload_size,
					 char *out, ItemPointerData *tids, Size *lengths,
					 int max_pieces, const HnswPageSource *source)
{
	ItemPointerData next = *finetid;
	BlockNumber previous = InvalidBlockNumber;
	Size		done = 0;
	int			pieces = 0;

	while (done < payload_size)
	{
		BlockNumber blkno = ItemPointerGetBlockNumberNoCheck(&next);
		OffsetNumber offset = ItemPointerGetOffsetNumberNoCheck(&next);
		Page		page;
		ItemId		item;
		HnswFineTuple piece;
		const char *why = NULL;

		/* pieces go forward block by block: this also bounds the chain */
		if (!ItemPointerIsValid(&next))
			report_broken_chain(index, &next, "the chain ends early");
		if (!hnsw_block_exists(index, source->known_blocks, blkno) ||
			(previous != InvalidBlockNumber && blkno <= previous))
			report_broken_chain(index, &next, "it leads to a wrong block");
		if (tids != NULL && pieces == max_pieces)
			return -1;
		page = source->lock(source->arg, blkno);
		if ((HnswPageGetOpaque(page)->flags & HNSW_PAGE_FINE) == 0)
			why = "it leads to a page that is not a fine page";
		else if (offset < FirstOffsetNumber || offset > PageGetMaxOffsetNumber(page) ||
				 !ItemIdIsNormal(item = PageGetItemId(page, offset)) ||
				 ItemIdGetLength(item) < offsetof(HnswFineTupleData, data))
			why = "it leads to a missing tuple";
		else
		{
			piece = (HnswFineTuple) PageGetItem(page, item);
			if (piece->type != HNSW_FINE_TUPLE)
				why = "it leads to a tuple that is not a fine tuple";
			else if (piece->length == 0 ||
					 ItemIdGetLength(item) < offsetof(HnswFineTupleData, data) + piece->length ||
					 done + piece->length > payload_size)
				why = "a piece has a wrong length";
			else
			{
				if (out != NULL)
					memcpy(out + done, piece->data, piece->length);
				if (tids != NULL)
				{
					tids[pieces] = next;
					lengths[pieces] = piece->length;
				}
				pieces++;
				done += piece->length;
				next = piece->next;
			}
		}
		source->unlock(source->arg);
		if (why != NULL)
			report_broken_chain(index, &next, why);
		previous = blkno;
	}
	if (ItemPointerIsValid(&next))
		report_broken_chain(index, &next, "the chain goes on after the payload");
	return pieces;
}

void
hnsw_read_payload(Relation index, ItemPointer finetid, Size payload_size,
				  char *out)
{
	BufferPageSource buffers = {index, InvalidBuffer};
	BlockNumber known_blocks = 0;
	HnswPageSource source = {buffer_source_lock, buffer_source_unlock, &buffers,
							 &known_blocks};

	(void) follow_payload_chain(index, finetid, payload_size, out, NULL, NULL, 0, &source);
}

void
hnsw_read_payload_from(Relation index, ItemPointer finetid, Size payload_size,
					   char *out, const HnswPageSource *source)
{
	(void) follow_payload_chain(index, finetid, payload_size, out, NULL, NULL, 0, source);
}

int
hnsw_payload_pieces(Relation index, ItemPointer finetid, Size payload_size,
					ItemPointerData *tids, Size *lengths, int max_pieces)
{
	BufferPageSource buffers = {index, InvalidBuffer};
	BlockNumber known_blocks = 0;
	HnswPageSource source = {buffer_source_lock, buffer_source_unlock, &buffers,
							 &known_blocks};

	return follow_payload_chain(index, finetid, payload_size, NULL, tids,
								lengths, max_pieces, &source);
}

/*
 * The neighbour tuple at `offset` of a locked page if it has `layer` and the
 * size its own level needs (every reader and writer of lists trusts its
 * slots only then); NULL otherwise, a damaged link that is left alone.
 */
HnswNeighborTuple
hnsw_page_neighbors(Page page, OffsetNumber offset, int layer, int m)
{
	HnswNeighborTuple tuple;

	tuple = hnsw_page_tuple(page, offset, HNSW_NEIGHBOR_TUPLE,
							offsetof(HnswNeighborTupleData, slots));
	if (tuple == NULL || tuple->level < layer ||
		ItemIdGetLength(PageGetItemId(page, offset)) <
		hnsw_neighbor_tuple_size(tuple->level, m))
		return NULL;
	return tuple;
}

/* ------------------------------------------------------------------------
 * Free slots and the free space map (README, VACUUM and Inserts)
 * ------------------------------------------------------------------------ */

Size
hnsw_free_slot_space(int level)
{
	return (Size) (level + 1) * (BLCKSZ / 256);
}

/*
 * Every neighbour tuple is written hnsw_neighbor_tuple_size bytes long
 * (MAXALIGNed), so a length holds the lists of a level when that size fits.
 */
int
hnsw_neighbor_tuple_capacity(Size length, int m)
{
	int			level = -1;

	while (level < GRAPH_MAX_LEVEL &&
		   hnsw_neighbor_tuple_size(level + 1, m) <= length)
		level++;
	return level;
}

bool
hnsw_block_exists(Relation index, BlockNumber *nblocks, BlockNumber blkno)
{
	if (blkno == HNSW_METAPAGE_BLKNO || blkno == InvalidBlockNumber)
		return false;
	if (blkno >= *nblocks)
		*nblocks = RelationGetNumberOfBlocks(index);
	return blkno < *nblocks;
}

void *
hnsw_page_tuple(Page page, OffsetNumber offset, uint8 type, Size min_size)
{
	ItemId		item;
	uint8	   *tuple;

	if (offset < FirstOffsetNumber || offset > PageGetMaxOffsetNumber(page))
		return NULL;
	item = PageGetItemId(page, offset);
	if (!ItemIdIsNormal(item) || ItemIdGetLength(item) < min_size)
		return NULL;
	tuple = (uint8 *) PageGetItem(page, item);
	return HnswTupleType(*tuple) == type ? tuple : NULL;
}

int
hnsw_free_slot_capacity(Page page, BlockNumber blkno, OffsetNumber offset, int m)
{
	HnswElementTuple element;
	OffsetNumber neighbor_offset;

	element = hnsw_page_tuple(page, offset, HNSW_ELEMENT_TUPLE,
							  offsetof(HnswElementTupleData, vector));
	if (element == NULL || HnswElementState(element) != HNSW_ELEMENT_FREE ||
		element->level > GRAPH_MAX_LEVEL)
		return -1;
	if (!ItemPointerIsValid(&element->neighbortid) ||
		ItemPointerGetBlockNumber(&element->neighbortid) != blkno)
		return element->level;	/* its tuple was made for at least that */
	neighbor_offset = ItemPointerGetOffsetNumber(&element->neighbortid);
	if (hnsw_page_tuple(page, neighbor_offset, HNSW_NEIGHBOR_TUPLE,
						offsetof(HnswNeighborTupleData, slots)) == NULL)
		return -1;
	return hnsw_neighbor_tuple_capacity(ItemIdGetLength(PageGetItemId(page, neighbor_offset)),
										m);
}

Size
hnsw_page_free_slot_space(Page page, BlockNumber blkno, int m)
{
	int			top = -1;

	if ((HnswPageGetOpaque(page)->flags & HNSW_PAGE_ELEMENT) == 0)
		return 0;
	for (OffsetNumber offset = FirstOffsetNumber;
		 offset <= PageGetMaxOffsetNumber(page); offset++)
		top = Max(top, hnsw_free_slot_capacity(page, blkno, offset, m));
	return top < 0 ? 0 : hnsw_free_slot_space(top);
}

/* The packed list of one layer of a neighbour tuple: copied to out[], its length returned. */
int
hnsw_neighbor_layer_list(const HnswNeighborTupleData *tuple, int layer, int m,
						 ItemPointerData *out)
{
	const ItemPointerData *slots = tuple->slots + hnsw_neighbor_offset(layer, m);
	int			width = hnsw_layer_width(layer, m);
	int			count = 0;

	while (count < width && ItemPointerIsValid(&slots[count]))
	{
		out[count] = slots[count];
		count++;
	}
	return count;
}
