"""Container networking on netavark + aardvark-dns (Podman's engine), driven from Python.

``netns``: bind-mounted network namespaces, one per container, that outlive the daemon.
``store``: the networks the daemon knows (the default ``bridge``), persisted in the data root.
``ports``: ``-p``/``-P``/``PortBindings`` parsed the way Docker parses them.
``netavark``: a container's endpoint set up and torn down (IP, MAC, gateway, port forwarding).
"""
