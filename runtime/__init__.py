"""The runtime: daemon (Docker Engine API subset), per-container shims, executors, images.

Import direction is one way: ``runtime`` → ``drivers`` → ``logpipe``. The daemon never reads a
container's pipes; each container's shim does, and owns its storage driver.
"""
