"""Benchmark producer: writes SIZE-byte lines of typical log text (newline included) as
fast as it can, TOTAL bytes in all, to stdout or alternately to stdout and stderr.

    producer.py SIZE TOTAL stdout|both
"""

import os
import random
import sys

LEVELS = ["INFO ", "INFO ", "INFO ", "DEBUG", "WARN ", "ERROR"]
PATHS = ["/api/v1/items", "/api/v1/users", "/healthz", "/api/v2/orders", "/static/app.js"]


def typical_line(rng: random.Random, i: int, size: int) -> bytes:
    """A line that looks like real service output, cut or padded to ``size`` bytes."""
    text = (f"2026-11-23T12:{i // 60 % 60:02d}:{i % 60:02d}.{rng.randrange(1000):03d}Z "
            f"{rng.choice(LEVELS)} [worker-{rng.randrange(8)}] {rng.choice(['GET', 'POST'])} "
            f"{rng.choice(PATHS)}/{rng.randrange(100000)} {rng.choice([200, 200, 200, 404, 500])} "
            f"{rng.randrange(1, 900)}ms user=u{rng.randrange(5000)} req={rng.getrandbits(48):012x}")
    while len(text) < size - 1:
        text += f" k{rng.randrange(100)}=v{rng.randrange(100000)}"
    return text[:size - 1].encode() + b"\n"


def block_for(size: int) -> bytes:
    """4 MiB of distinct lines, generated once per size and cached, so that the producer's
    own start-up never shows in the measurement."""
    cache = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"logpipe-bench-lines-{size}.bin")
    try:
        with open(cache, "rb") as f:
            return f.read()
    except FileNotFoundError:
        pass
    rng = random.Random(42)
    per_block = max(1, (4 << 20) // size)
    block = b"".join(typical_line(rng, i, size) for i in range(per_block))
    with open(cache + ".tmp", "wb") as f:
        f.write(block)
    os.replace(cache + ".tmp", cache)
    return block


def main() -> None:
    size, total, streams = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    if streams == "prepare":
        block_for(size)
        return
    block = block_for(size)
    fds = [1, 2] if streams == "both" else [1]
    written, k = 0, 0
    while written < total:
        data = block[: total - written] if total - written < len(block) else block
        view = memoryview(data)
        fd = fds[k % len(fds)]
        while view:
            view = view[os.write(fd, view):]
        written += len(data)
        k += 1


if __name__ == "__main__":
    main()
