"""Relabel streams (spec 1.2, section 4.7): the per-epoch crop soft labels of SRe2L-style
distillation, stored in the container. numpy and h5py only.

- :class:`StreamCodec`, :func:`parse_stream_codec`, :data:`DEFAULT_STREAM_CODEC`: how labels are stored;
- :class:`StreamSpec`: what ``/stream`` declares (``DLAWriter(stream=...)``);
- :class:`StreamBatch`: one batch of records, as ``DLAWriter.append_stream`` takes it and
  :meth:`StreamReader.read_batch` returns it;
- :class:`StreamReader`: ``open_dla(path).stream``, every batch checked (rules 16, 17).
"""

from .batch import StreamBatch
from .codec import DEFAULT_STREAM_CODEC, SMALL_C_CODEC, StreamCodec, parse_stream_codec
from .declaration import StreamSpec
from .reader import StreamReader

__all__ = ["DEFAULT_STREAM_CODEC", "SMALL_C_CODEC", "StreamBatch", "StreamCodec", "StreamReader", "StreamSpec", "parse_stream_codec"]
