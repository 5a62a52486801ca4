"""What an import did with its lines: :class:`ImportCounts`, a value that adds up across files, workers and
partitions."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

EXAMPLES_KEPT = 3  # the first places of each reason, for the summary; the errors file has every one


@dataclasses.dataclass
class ImportCounts:
    """Lines delivered, rejected by Customer.io, skipped (their ``integrations`` turn Customer.io off) and bad
    (not a usable Segment message), with the reasons for the rejected and bad ones.

    ``reasons`` maps each reason to how many lines had it; ``examples`` to the first places it was seen
    (``"7"``: line 7 of the only file; ``"part-2.gz:7"`` when several files were imported; ``"#7"``: the 7th item
    of a partition). Counts add up with ``+``, so partitions imported apart sum to the whole.
    """

    delivered: int = 0
    rejected: int = 0
    skipped: int = 0
    bad: int = 0
    reasons: dict[str, int] = dataclasses.field(default_factory=dict)
    examples: dict[str, list[str]] = dataclasses.field(default_factory=dict)

    @property
    def lines(self) -> int:
        """Every line accounted for (blank lines are not lines)."""
        return self.delivered + self.rejected + self.skipped + self.bad

    def note(self, reason: str, where: str) -> None:
        """One more line with ``reason``, found at ``where``."""
        self.reasons[reason] = self.reasons.get(reason, 0) + 1
        places = self.examples.setdefault(reason, [])
        if len(places) < EXAMPLES_KEPT:
            places.append(where)

    def __add__(self, other: ImportCounts) -> ImportCounts:
        if not isinstance(other, ImportCounts):
            return NotImplemented
        total = ImportCounts(self.delivered + other.delivered, self.rejected + other.rejected,
                             self.skipped + other.skipped, self.bad + other.bad,
                             dict(self.reasons), {reason: list(places) for reason, places in self.examples.items()})
        for reason, number in other.reasons.items():
            total.reasons[reason] = total.reasons.get(reason, 0) + number
            places = total.examples.setdefault(reason, [])
            places.extend(other.examples.get(reason, [])[: EXAMPLES_KEPT - len(places)])
        return total

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ImportCounts:
        return cls(int(data["delivered"]), int(data["rejected"]), int(data["skipped"]), int(data["bad"]),
                   {str(k): int(v) for k, v in data["reasons"].items()},
                   {str(k): [str(p) for p in v] for k, v in data["examples"].items()})
