"""Relabel streams (spec 1.2, section 4.7; the low-rank tail since 1.3): the per-epoch crop soft labels of SRe2L-style
distillation, stored in the container. numpy and h5py only.

- :class:`StreamCodec`, :func:`parse_stream_codec`, :data:`DEFAULT_STREAM_CODEC`,
  :func:`default_stream_codec`: how labels are stored;
- :class:`TailBasis`, :func:`fit_tail_basis`: the low-rank tail of a top-k stream (``/stream/tail``);
- :class:`StreamSpec`: what ``/stream`` declares (``DLAWriter(stream=...)``);
- :class:`StreamBatch`: one batch of records, as ``DLAWriter.append_stream`` takes it and
  :meth:`StreamReader.read_batch` returns it;
- :class:`StreamReader`: ``open_dla(path).stream``, every batch checked (rules 16, 17).
"""

from .batch import StreamBatch
from .codec import DEFAULT_STREAM_CODEC, SMALL_C_CODEC, StreamCodec, default_stream_codec, parse_stream_codec
from .declaration import StreamSpec
from .reader import StreamReader
from .tail import (TAIL_FIT_RECORDS, VALUE_ROUNDING, TailBasis, clamp_tail_mass, decode_with_tail, encode_tail,
                   fit_tail_basis, tail_logits, tail_mass_slack)

__all__ = ["DEFAULT_STREAM_CODEC", "SMALL_C_CODEC", "TAIL_FIT_RECORDS", "VALUE_ROUNDING", "StreamBatch", "StreamCodec",
           "StreamReader", "StreamSpec", "TailBasis", "clamp_tail_mass", "decode_with_tail", "default_stream_codec",
           "encode_tail", "fit_tail_basis", "parse_stream_codec", "tail_logits", "tail_mass_slack"]
