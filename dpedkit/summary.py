"""The end-of-run summary every batch command prints: counts by status and grouped reasons."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class RunSummary:
    """Counts by status and reasons, and whether the run should exit non-zero."""
    total: int = 0
    counts: Counter = field(default_factory=Counter)
    skipped: int = 0                   # done in an earlier run, not redone
    reasons: Counter = field(default_factory=Counter)
    noun: str = "pairs"
    statuses: tuple[str, ...] = ("ok", "failed", "unpaired")

    def add(self, rec: dict) -> None:
        self.total += 1
        self.counts[rec["status"]] += 1
        if rec["status"] != "ok":
            self.reasons[_reason_kind(rec.get("reason") or "")] += 1

    @property
    def problems(self) -> int:
        # "ignored": a sidecar file beside the photos (.xmp, .aae, …), reported but no problem
        return sum(n for s, n in self.counts.items() if s not in ("ok", "ignored"))

    def lines(self) -> list[str]:
        shown = self.statuses + tuple(s for s in self.counts if s not in self.statuses)
        out = [f"{self.total} {self.noun}: " + ", ".join(f"{self.counts[s]} {s}" for s in shown)
               + f" ({self.skipped} already done, skipped)"]
        out += [f"  {n} × {r}" for r, n in self.reasons.most_common()]
        return out


def _reason_kind(reason: str) -> str:
    # group reasons that differ only in their numbers
    return reason.split(" (")[0].split(":")[0] if reason else "unknown"


