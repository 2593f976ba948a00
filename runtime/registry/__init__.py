"""Pulling from and pushing to OCI distribution registries (Docker Hub, ``registry:2``, ...).

Small modules, one concern each: ``reference`` (Docker's image names), ``auth`` (credentials
of ``~/.docker/config.json``, ``X-Registry-Auth``, bearer tokens), ``client`` (HTTP to one
registry with aiohttp, its scheme and authentication), ``manifests`` (schema 2, OCI, lists
and platforms), ``progress`` (Docker's JSON progress messages), ``pull``, ``push`` and
``archive`` (``docker save``). The image store (``runtime.images``) and the layer store
(``runtime.layers``) hold what arrives; nothing here touches containers.
"""
