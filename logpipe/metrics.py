"""The Prometheus text exposition of a log pipeline's counters, one series per container:
the daemon's ``GET /metrics`` and the Docker plugin's render the same names, help texts and
labels from here, so a scrape config and a dashboard work against either."""

from __future__ import annotations

from typing import Any, Iterable, Mapping

#: (series name, key in a container's values, (type, help)).
METRICS = [
    ("logpipe_captured_lines_total", "CapturedLines", ("counter", "Lines read from the container (this run).")),
    ("logpipe_captured_bytes_total", "CapturedBytes", ("counter", "Bytes read from the container (this run).")),
    ("logpipe_stored_lines_total", "StoredLines", ("counter", "Lines stored by the log driver or the spool (this run).")),
    ("logpipe_stored_bytes_total", "StoredBytes", ("counter", "Bytes stored by the log driver or the spool (this run).")),
    ("logpipe_dropped_lines_total", "DroppedLines", ("counter", "Lines not stored or never shipped: disk full or failing, non-blocking buffer full, spool full with mode=non-blocking (this run).")),
    ("logpipe_dropped_bytes_total", "DroppedBytes", ("counter", "Bytes of the dropped lines (this run).")),
    ("logpipe_storage_failing", "Failing", ("gauge", "1 while writing the log fails (disk full, I/O error): output is counted and dropped.")),
    ("logpipe_shipped_lines_total", "ShippedLines", ("counter", "Lines the receiver confirmed.")),
    ("logpipe_shipped_bytes_total", "ShippedBytes", ("counter", "Bytes the receiver confirmed.")),
    ("logpipe_rejected_lines_total", "RejectedLines", ("counter", "Lines the receiver refused for good.")),
    ("logpipe_retries_total", "Retries", ("counter", "Sends retried after a retryable error.")),
    ("logpipe_possible_duplicates_total", "PossibleDuplicates", ("counter", "Lines sent again after a daemon restart (at-least-once).")),
    ("logpipe_backlog_lines", "BacklogLines", ("gauge", "Lines captured and not yet shipped.")),
    ("logpipe_backlog_bytes", "BacklogBytes", ("gauge", "Spool bytes not yet shipped.")),
    ("logpipe_lag_seconds", "LagSeconds", ("gauge", "Age of the oldest line not yet shipped.")),
    ("logpipe_shipper_start_failures_total", "StartFailures", ("counter", "Shipper starts that failed (the error is LogShipping.LastError of inspect).")),
]  # fmt: skip

#: The content type of the exposition (text format 0.0.4).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def escape(value: str) -> str:
    """A label value as the text format quotes it."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def container_labels(container_id: str, name: str, driver: str) -> str:
    """The labels every series of one container carries."""
    return f'container_id="{container_id}",container_name="{escape(name.lstrip("/"))}",' \
           f'driver="{driver}"'


def render(rows: Iterable[tuple[str, Mapping[str, Any]]]) -> str:
    """The exposition of ``(labels, values)`` rows: every series with its HELP and TYPE,
    a row contributing to those of its keys it has."""
    series: dict[str, list[str]] = {name: [] for name, _, _ in METRICS}
    for labels, values in rows:
        for name, key, _ in METRICS:
            if key in values:
                series[name].append(f"{name}{{{labels}}} {values[key]}")
    out = []
    for name, _, (kind, text) in METRICS:
        out.append(f"# HELP {name} {text}")
        out.append(f"# TYPE {name} {kind}")
        out.extend(series[name])
    return "\n".join(out) + "\n"
