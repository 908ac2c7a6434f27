"""Memory figures of this test process (Linux ``/proc``), for tests that bound what work costs."""

from __future__ import annotations

from pathlib import Path


def status_mib(field: str) -> float:
    """A memory figure of this process from /proc/self/status (``VmRSS``, ``VmHWM``...), in MiB."""
    line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith(field + ":"))
    return int(line.split()[1]) / 1024


def reset_peak() -> None:
    """Reset this process's peak resident memory (``VmHWM``) to what it uses now."""
    Path("/proc/self/clear_refs").write_text("5")
