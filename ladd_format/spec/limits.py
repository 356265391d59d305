"""Every bound of the D_LA container (``spec/dla-v1.md`` section 2.4) and of the blocks its readers
read, one definition each.

The first group is normative: a file beyond one of them breaks rule 15 (``limits``). The second is
what this package's tools choose (how much they write, how much they read at a time, how large an
input they accept); changing one changes no file's validity.
"""

# -- spec 2.4 (normative) ---------------------------------------------------------------------------
MAX_OBJECTS = 1024              #: groups and datasets in a file, root included
MAX_ATTRIBUTES = 256            #: attributes of one object
MAX_ATTRIBUTE_BYTES = 1 << 20   #: stored bytes of one number attribute's value
MIN_RANK, MAX_RANK = 1, 8       #: axes of a dataset
MAX_ROW_BYTES = 64 << 20        #: bytes of one row (index along axis 0) of any dataset
MAX_CHUNK_BYTES = 64 << 20      #: bytes of one chunk, uncompressed
MAX_CLASSES = 1 << 24           #: C = ``num_classes``
MAX_GRID_N = 64                 #: N, the sub-image grid size (N*N sub-images per image; 2.4 and 5)
MAX_DENSE_ROW_VALUES = 1 << 24  #: N*N*C: one image's decoded dense labels are at most 64 MiB of float32
#: deflate's largest expansion (zlib technical note): a dataset carrying ``gzip``, or a deflated zip
#: member, may declare at most this many bytes per byte stored (2.4; the converters' archive bounds)
DEFLATE_MAX_RATIO = 1032
#: relabel streams (4.7, since 1.2)
MAX_STREAM_EPOCHS = 10_000          #: E
MAX_STREAM_BATCHES = 1 << 22        #: NB, batches over all epochs
MAX_STREAM_BATCH = 1 << 16          #: records of one batch
MAX_STREAM_BATCH_VALUES = 1 << 26   #: records of one batch x C: one batch's decoded labels <= 256 MiB of float32
MAX_STREAM_RECORDS = 1 << 31        #: Q
MAX_CROP_SIDE = 1 << 16             #: each side of crop_size
#: topk stores uint16 indices (4.5), so a file with the ``topk`` codec has C <= 65536
MAX_TOPK_CLASSES = 1 << 16
#: the rank r of a stream's low-rank tail (4.8 ``/stream/tail``, since 1.3): 1 <= r <= min(C, TAIL_RANK_MAX)
TAIL_RANK_MAX = 256

# -- this package's choices (informative) -----------------------------------------------------------
#: The largest N this package writes: ``/dense`` ``boxes`` is an (N*N, 4) int64 attribute, and
#: HDF5's default (compact) attribute storage holds one attribute message below 64 KiB: N = 45
#: (64,800 bytes) fits, N = 46 (67,712) does not (spec 2.4, note).
MAX_WRITTEN_GRID_N = 45
#: bytes a dataset may declare beyond DEFLATE_MAX_RATIO x its storage (HDF5's own small-data slack);
#: ``size`` and ``export`` use it before reading a dataset
EXPANSION_SLACK = 4096
#: bytes of one block of a file's dataset that verify, size and info read at a time
READ_BLOCK_BYTES = 8 << 20
#: chunks one read may touch: HDF5 keeps about 3.5 KB per chunk of a selection while it reads, so
#: 8 MiB of tiny one-image chunks (43,000 of 8x8 pixels) took 150 MB; 1024 chunks take about 3.5 MB
MAX_CHUNKS_PER_READ = 1024
#: the largest image side a labeler is trained at (``--image-size``) and a test set is accepted with
MAX_IMAGE_SIDE = 4096
#: the largest class count a labeler's training source may imply: a labeler's dense labels must fit
#: every codec, topk's uint16 indices included
MAX_LABELER_CLASSES = MAX_TOPK_CLASSES
