"""The per-item record journal behind ``manifest.jsonl`` (DESIGN.md §2).

Records are appended one JSON line at a time as items finish, so a killed run keeps every
record it wrote; a torn last line is ignored on reading. At the end of a run the journal is
compacted atomically to one record per item, in name order.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from dpedkit.imageio import write_text_atomic


def read_records(path: str | os.PathLike) -> dict[str, dict]:
    """Records by ``name``, the last one for each name winning; unparseable lines skipped."""
    records: dict[str, dict] = {}
    path = Path(path)
    if not path.exists():
        return records
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(rec, dict) and isinstance(rec.get("name"), str):
                records[rec["name"]] = rec
    return records


class Journal:
    """Append-only writer of records; ``close`` compacts the file."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.records = read_records(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(self.path, "a", encoding="utf-8")

    def append(self, record: dict) -> None:
        self.records[record["name"]] = record
        self._f.write(json.dumps(record, sort_keys=True) + "\n")
        self._f.flush()

    def close(self, keep: set[str] | None = None) -> None:
        """Compact to one line per record (only names in ``keep`` when given)."""
        self._f.close()
        names = sorted(n for n in self.records if keep is None or n in keep)
        text = "".join(json.dumps(self.records[n], sort_keys=True) + "\n" for n in names)
        write_text_atomic(self.path, text)
