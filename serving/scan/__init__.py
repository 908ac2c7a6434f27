"""Bulk scanning: every photo of a crawl scored, resumably, locally or on Ray.

Modules, in the order data flows through them:

- :mod:`.inputs` turns folders, path lists and CSV/JSONL/Parquet manifests into
  :class:`~.inputs.ScanItem` objects with a stable id and the ad's metadata;
- :mod:`.work` reads, hashes, decodes and classifies items (shared by both engines);
- :mod:`.local` (worker processes) or :mod:`.ray_engine` (Ray Data) runs that work;
- :mod:`.store` keeps every finished item in SQLite, so a killed run continues;
- :mod:`.clusters` groups near-identical photos by PDQ hash;
- :mod:`.outputs` writes the records as JSONL, CSV or Parquet, atomically;
- :mod:`.commands` is ``wildscan scan`` and ``wildscan report``.

Nothing here imports torch.
"""
