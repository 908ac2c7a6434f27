"""Training-side failures a person can act on (the CLI prints them as one line)."""

from __future__ import annotations

from vision.errors import Reason, WildscanError


class TrainingError(WildscanError):
    """Data, options or an export that cannot go on: the message says what to change."""

    reason = Reason.BAD_OPTION
