"""logpipe's pipeline core: message model, framing, options, templates, registry, read side.

The core imports only the standard library, msgpack, lz4 and orjson, and never a driver by
name: drivers are found through the ``logpipe.drivers`` entry-point group.
"""

__version__ = "0.1.0"
