"""Container networking on netavark + aardvark-dns (Podman's engine), driven from Python.

``netns``: bind-mounted network namespaces, one per container, that outlive the daemon.
``store``: the networks the daemon knows (the default ``bridge``), persisted in the data root.
``ports``: ``-p``/``-P``/``PortBindings`` parsed the way Docker parses them.
``netavark``: a container's endpoints set up and torn down (IP, MAC, gateway, port forwarding),
one per network it is on; ``early``: that setup run by the daemon while the shim starts.
``etcfiles``: the container's ``/etc/hosts`` and ``resolv.conf``, as Docker writes them.
``settings``: ``NetworkSettings`` of ``inspect``; ``api``: the ``/networks`` routes.
"""
