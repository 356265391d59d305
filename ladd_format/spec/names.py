"""Every dataset, group and attribute name of the D_LA container (``spec/dla-v1.md`` sections 2-4).

Two spellings of each object, one definition each:

- ``IMAGES = "images"``: the name relative to the root, for ``h5file[IMAGES]`` and ``IMAGES in h5file``;
- ``IMAGES_PATH = "/images"``: the absolute path, as errors name it (``FILE: /images: ...``) and as
  the canonical form (2.1) and ``/row_sha256``'s ``datasets`` attribute (2.2) list it.

Attribute names end in ``_ATTR`` (``SPACE_ATTR = "space"``), except the two digests, whose names
are the facts of sections 2.1-2.2 (``ROOT_DIGEST = "root_sha256"``, ``ROW_DIGESTS = "row_sha256"``).
Literal values of attributes (the format name, spaces, kinds) live in :mod:`ladd_format.spec`.
"""

def path_of(name: str) -> str:
    """The absolute path of an object named relative to the root: ``"dense/probs"`` -> ``"/dense/probs"``."""
    return name if name.startswith("/") else "/" + name


# --- groups and datasets (relative to the root) -------------------------------------------------
IMAGES = "images"                  #: 4.1, (M, K, H, W)
LABELS = "labels"                  #: 4.2, (M,)
SOFT_LABELS = "soft_labels"        #: 4.3, (M, C), optional
NORMALIZATION = "normalization"    #: 4.4, group
DENSE = "dense"                    #: 4.5, group, present in a D_LA
LABELER = "dense/labeler"          #: 4.5, group inside /dense
PROVENANCE = "provenance"          #: 4.6, group
ROW_DIGESTS = "row_sha256"         #: 2.2, (M, D, 32) uint8
STREAM = "stream"                  #: 4.7, group, optional (since 1.2): a relabel stream
TEACHER = "stream/teacher"         #: 4.7, group inside /stream

# The datasets inside /dense are named by each codec (section 6; ladd_format/codecs/): dense_path(name).

# --- absolute paths ------------------------------------------------------------------------------
ROOT_PATH = "/"
IMAGES_PATH = "/images"
LABELS_PATH = "/labels"
SOFT_LABELS_PATH = "/soft_labels"
NORMALIZATION_PATH = "/normalization"
DENSE_PATH = "/dense"
LABELER_PATH = "/dense/labeler"
PROVENANCE_PATH = "/provenance"
ROW_DIGESTS_PATH = "/row_sha256"
STREAM_PATH = "/stream"
TEACHER_PATH = "/stream/teacher"
STREAM_TAIL_PATH = "/stream/tail"


assert all(path == path_of(name) for path, name in (
    (IMAGES_PATH, IMAGES), (LABELS_PATH, LABELS), (SOFT_LABELS_PATH, SOFT_LABELS), (NORMALIZATION_PATH, NORMALIZATION),
    (DENSE_PATH, DENSE), (LABELER_PATH, LABELER), (PROVENANCE_PATH, PROVENANCE), (ROW_DIGESTS_PATH, ROW_DIGESTS),
    (STREAM_PATH, STREAM), (TEACHER_PATH, TEACHER), (STREAM_TAIL_PATH, "stream/tail")))


def dense_path(name: str) -> str:
    """``"probs"`` -> ``"/dense/probs"``: the absolute path of a dataset of the dense codec."""
    return f"{DENSE_PATH}/{name}"


# The datasets inside /stream (4.7), named relative to the group; stream_path(name) gives the absolute path.
STREAM_EPOCH_START = "epoch_start"      #: (E,) int64, first batch of each epoch
STREAM_BATCH_START = "batch_start"      #: (NB,) int64, first record of each batch
STREAM_IMAGE = "image"                  #: (Q,) integer, image index in [0, M)
STREAM_BOX = "box"                      #: (Q, 4) integer, [top, left, height, width] in image pixels
STREAM_FLIP = "flip"                    #: (Q,) uint8, 0 or 1
STREAM_MIX_PARTNER = "mix_partner"      #: (Q,) integer, partner's position in its batch (cutmix, mixup)
STREAM_MIX_BOX = "mix_box"              #: (NB, 4) integer, [top, left, height, width] in crop pixels (cutmix)
STREAM_MIX_LAMBDA = "mix_lambda"        #: (NB,) float32 (mixup)
STREAM_LOGITS = "logits"                #: (Q, C) float16/float32 (kind logits)
STREAM_BATCH_DIGESTS = "batch_sha256"   #: (NB, D, 32) uint8, the batch digests (4.7)
# The probability datasets of a stream are the codec's (section 6): probs, or topk_index + topk_prob.
# /stream/tail (4.8, since 1.3), named relative to /stream as the other stream datasets are.
STREAM_TAIL = "tail"                          #: group, optional: the low-rank tail of a topk stream
STREAM_TAIL_MEAN = "tail/mean"                #: (C,) float32, finite
STREAM_TAIL_BASIS = "tail/basis"              #: (r, C) float32, finite
STREAM_TAIL_COEF = "tail/coef"                #: (Q, r) int8
STREAM_TAIL_SCALE = "tail/scale"              #: (Q,) float16, finite, >= 0
STREAM_TAIL_DIGESTS = "tail/batch_sha256"     #: (NB, 2, 32) uint8, the batch digests of coef and scale
#: the members /stream/tail holds, no other
STREAM_TAIL_MEMBERS = (STREAM_TAIL_MEAN, STREAM_TAIL_BASIS, STREAM_TAIL_COEF, STREAM_TAIL_SCALE, STREAM_TAIL_DIGESTS)
#: the datasets /stream/tail/batch_sha256 covers, in the order of its ``datasets`` attribute
STREAM_TAIL_DIGESTED = (STREAM_TAIL_COEF, STREAM_TAIL_SCALE)


def stream_path(name: str) -> str:
    """``"image"`` -> ``"/stream/image"``: the absolute path of a dataset inside /stream."""
    return f"{STREAM_PATH}/{name}"


# --- attributes -----------------------------------------------------------------------------------
# Root (section 3).
FORMAT_ATTR = "format"
VERSION_ATTR = "format_version"
NUM_CLASSES_ATTR = "num_classes"
CLASS_NAMES_ATTR = "class_names"
SOURCE_DATASET_ATTR = "source_dataset"
DISTILLATION_ATTR = "distillation"
IPC_ATTR = "ipc"
IMAGENET_CLASS_IDS_ATTR = "imagenet_class_ids"
LEARNED_LR_ATTR = "learned_lr"
ROOT_DIGEST = "root_sha256"        #: 2.1, string, required since 1.1

# Every dataset (section 2).
SHA256_ATTR = "sha256"
# /row_sha256 (2.2): the paths of the row datasets, in the order of axis 1.
ROW_DIGESTS_DATASETS = "datasets"

# /images (4.1) and /soft_labels (4.3).
SPACE_ATTR = "space"
KIND_ATTR = "kind"

# /normalization (4.4) and /dense/labeler (4.5).
MEAN_ATTR = "mean"
STD_ATTR = "std"

# /dense (4.5).
N_ATTR = "n"
RATIO_ATTR = "ratio"
BOXES_ATTR = "boxes"
RESIZE_ATTR = "resize"
CODEC_ATTR = "codec"
TEMPERATURE_ATTR = "temperature"
K_ATTR = "k"

# /dense/labeler (4.5).
ARCH_ATTR = "arch"
EPOCHS_ATTR = "epochs"
TRAINING_DATA_ATTR = "training_data"
WEIGHTS_SHA256_ATTR = "weights_sha256"

# /provenance (4.6).
CREATED_ATTR = "created"
TOOL_ATTR = "tool"
CONVERTER_ATTR = "converter"
INPUTS_ATTR = "inputs"
REPORT_ATTR = "report"

# /stream (4.7); codec, k, temperature, kind and resize are spelled as for /dense and /soft_labels.
STREAM_EPOCHS_ATTR = "epochs"
BATCH_SIZE_ATTR = "batch_size"
MODE_ATTR = "mode"
CROP_SIZE_ATTR = "crop_size"
MIX_ATTR = "mix"
SAMPLER_ATTR = "sampler"
# /stream/tail (4.8, since 1.3)
TAIL_RANK_ATTR = "rank"
AUGMENTATION_ATTR = "augmentation"
# /stream/batch_sha256 (4.7): the paths of the digested datasets, as /row_sha256's (ROW_DIGESTS_DATASETS).

#: Attributes /dense must carry (4.5); ``k`` is required with, and only with, codec ``topk``.
DENSE_REQUIRED_ATTRS = (N_ATTR, RATIO_ATTR, BOXES_ATTR, RESIZE_ATTR, CODEC_ATTR, TEMPERATURE_ATTR)
#: Attributes /provenance must carry (4.6).
PROVENANCE_REQUIRED_ATTRS = (CREATED_ATTR, TOOL_ATTR, CONVERTER_ATTR, INPUTS_ATTR)
#: Attributes /stream must carry (4.7); ``k`` is required with, and only with, codec ``topk``.
STREAM_REQUIRED_ATTRS = (STREAM_EPOCHS_ATTR, BATCH_SIZE_ATTR, MODE_ATTR, CROP_SIZE_ATTR, RESIZE_ATTR, MIX_ATTR,
                         KIND_ATTR, CODEC_ATTR, TEMPERATURE_ATTR)
