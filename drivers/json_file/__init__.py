"""The json-file storage driver: Docker's ``<id>-json.log``, byte for byte.

Split by job, as moby splits ``jsonfilelog.go`` and ``read.go`` over shared file machinery
(``drivers/rotation.py`` writes and rotates, ``logpipe/reading.py`` walks a rotated set and
follows it):

* ``writer.py``: ``JSONFileDriver``: options, the log file, the write path.
* ``encode.py``: Docker's line encoding (the Go-JSON details), the capture path's hot code.
* ``reader.py``: ``JSONFileFormat``, the ``RecordFormat`` plug-in: decoding, damage skipping.
* ``seek.py``: ``--tail`` counting, the ``--since`` bisection and the last time, over lines.
* ``timestamps.py``: RFC 3339 times read as Go reads them.

The shim imports this package for the driver and loads only the writer and the encoder.
"""

from .writer import JSONFileDriver

__all__ = ["JSONFileDriver"]
