"""Which files are images: the file-name suffixes taken when a folder is walked, and the
extension for each accepted format. Plain data, cheap to import (the CLI reads it)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

# File names taken as images when a folder is walked (CLI, bulk scans).
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"}
# The file extension for each accepted format (evidence copies are named SHA256.EXT).
EXTENSIONS = {"JPEG": ".jpg", "PNG": ".png", "GIF": ".gif", "BMP": ".bmp", "TIFF": ".tif", "WebP": ".webp"}


def skipped_in_folders(inputs: Iterable[str | os.PathLike]) -> list[Path]:
    """Files below the folders among ``inputs`` that a walk skips: their names do not end in an
    image suffix (sorted). What ``classify`` and ``scan`` report as skipped."""
    skipped: list[Path] = []
    for item in inputs:
        if Path(item).is_dir():
            for root, _, files in os.walk(Path(item)):
                skipped += [Path(root) / f for f in files if Path(f).suffix.lower() not in IMAGE_SUFFIXES]
    return sorted(skipped)


def say_skipped(command: str, skipped: list[Path], name_them: bool) -> str:
    """The line (or lines, with ``name_them``) that a command prints about skipped files."""
    if not skipped:
        return ""
    head = (
        f"wildscan {command}: skipped {len(skipped)} file(s) in the folders whose names are not images "
        f"({', '.join(sorted(IMAGE_SUFFIXES))})" + ("" if name_them else "; --list-skipped names them")
    )
    return "\n".join([head, *(f"  skipped: {p}" for p in skipped if name_them)])
