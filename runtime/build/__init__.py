"""``docker build`` (the classic builder): ``dockerfile`` parses, ``context`` unpacks the
context and applies ``.dockerignore``, ``cache`` finds a step's image again, ``builder``
runs the steps. Images are made by ``runtime.commit``, containers by the container store."""
