"""Officers' labelled photos (``wildscan feedback export`` folders) as extra training rows.

A photo joins training only when its bytes still match the SHA-256 the export recorded, it
decodes, and it is neither a photo of a split the model is judged on (validation, test,
dev-ads) nor a near copy of one (PDQ): a re-saved copy would otherwise leak into training,
or into the ivory neighbour gallery, where it would find itself. A photo that cannot be
used is skipped with a record (path, reason, message); the training run goes on and the
bundle lists what was skipped.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from vision.errors import ImageError

from . import data

log = logging.getLogger(__name__)


def skip_record(ex: data.Example, reason: str, message: str) -> dict:
    """What the bundle says of a skipped photo: its path as the export's feedback.csv has it
    (``photos/<file>``, never the trainer's own folders), hash and why."""
    path = Path(ex.path)
    return {"path": f"{path.parent.name}/{path.name}", "sha256": ex.sha256, "reason": reason, "message": message}


def readable(examples: list[data.Example]) -> tuple[list[data.Example], list[str], list[dict]]:
    """``(usable examples, their PDQ hashes, skip records)``: each photo read once, its
    SHA-256 checked against the export's, decoded with the service's limits."""
    kept, hashes, skipped = [], [], []
    for ex in examples:
        try:
            raw = ex.file().read_bytes()
        except OSError as err:
            skipped.append(skip_record(ex, "unreadable", f"the file cannot be read: {err.strerror or err}"))
            continue
        if hashlib.sha256(raw).hexdigest() != ex.sha256:
            skipped.append(skip_record(ex, "changed", "the file's SHA-256 differs from the one the export recorded"))
            continue
        try:
            hashes.append(data.pdq_of_bytes(raw))
        except ImageError as err:
            skipped.append(skip_record(ex, str(err.reason), err.message))
            continue
        kept.append(ex)
    return kept, hashes, skipped


def officers_photos(
    folders: list[str], labels: list[str], held: list[data.Example], held_hashes: list[str]
) -> tuple[list[data.Example], list[dict]]:
    """The usable photos of the export ``folders`` in a class the model has (``labels``),
    none of them one of ``held`` (by SHA-256) or a near copy of a photo with a PDQ hash in
    ``held_hashes``; and a record for each photo skipped because it could not be used."""
    held_out = {ex.sha256 for ex in held}
    found = [ex for folder in folders for ex in data.load_feedback(folder, "train")]
    found = [ex for ex in found if ex.cls in labels and ex.sha256 not in held_out]
    usable, hashes, skipped = readable(found)
    for record in skipped:
        log.warning("officers' photo %s skipped (%s): %s", record["path"], record["reason"], record["message"])
    copies = data.near_copies(hashes, held_hashes)
    return [ex for i, ex in enumerate(usable) if i not in copies], skipped
