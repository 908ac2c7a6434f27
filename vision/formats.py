"""Which files are images: the file-name suffixes taken when a folder is walked, and the
extension for each accepted format. Plain data, cheap to import (the CLI reads it)."""

from __future__ import annotations

# File names taken as images when a folder is walked (CLI, bulk scans).
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"}
# The file extension for each accepted format (evidence copies are named SHA256.EXT).
EXTENSIONS = {"JPEG": ".jpg", "PNG": ".png", "GIF": ".gif", "BMP": ".bmp", "TIFF": ".tif", "WebP": ".webp"}
