"""logpipe as a Docker logging plugin (the legacy LogDriver plugin protocol on a unix socket).

Docker hands each container's output to the plugin through a FIFO of length-prefixed protobuf
``LogEntry`` messages (``entry``, ``fifo``); the plugin stores it with one of logpipe's storage
drivers (``store``) and answers ``docker logs`` from that store (``protocol``). protobuf and
aiohttp are imported only here: the shim and the CLI never load this package.
"""
