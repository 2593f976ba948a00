"""The ``local`` storage driver: Docker's options and error texts, logpipe's own block format
(``docs/local-format.md``).

Split by job, as json-file is:

* ``writer.py``: ``LocalDriver`` and ``LocalConfig``: options, the log file, the write path.
* ``blocks.py``: one block's byte layout, encoded and parsed.
* ``reader.py``: ``LocalFormat``, the ``RecordFormat`` plug-in, and walking whole blocks.

The shim imports this package for the driver and loads only the writer and the layout.
"""

from .writer import LocalDriver

__all__ = ["LocalDriver"]

