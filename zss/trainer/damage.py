"""Damaged shards met while training: what counts as damage, and the ledger of what it cost.

A tar that cannot be read past some point (truncated, a corrupt header) costs the rest of that
shard; a sample whose members cannot be decoded costs that sample (it is dropped from its batch).
Each is reported once, naming the shard and sample key, and recorded in the stream's
`DamageLedger`, which checkpoints carry so that a resumed run reports the same totals
(docs/reliability.md).
"""

from __future__ import annotations

import zlib
from typing import Any

# What damaged bytes raise while a recipe decodes a sample's members (bad UTF-8/JSON, a bad .npy
# header, a member missing because its header was destroyed). Anything else raised by a decoder
# is a bug and propagates.
DECODE_ERRORS = (ValueError, KeyError, EOFError, OSError, zlib.error)


class DamageLedger:
    """Damaged shards and lost samples seen so far (each shard and sample counted once)."""

    def __init__(self) -> None:
        self.shards: dict[str, dict[str, Any]] = {}

    def add(self, event: dict[str, Any]) -> bool:
        """Record one damage event; True when it is news (then it deserves a warning)."""
        rec = self.shards.setdefault(event["tar"], {"missing": 0, "keys": [], "reason": event["reason"]})
        if event["kind"] == "read":
            if event["lost"] <= rec["missing"]:
                return False
            rec["missing"] = int(event["lost"])
            rec["reason"] = event["reason"]
            return True
        if event["key"] in rec["keys"]:
            return False
        rec["keys"].append(event["key"])
        return True

    @property
    def n_samples(self) -> int:
        return sum(r["missing"] + len(r["keys"]) for r in self.shards.values())

    @property
    def n_shards(self) -> int:
        return len(self.shards)

    def state(self) -> dict[str, Any]:
        return {k: {"missing": v["missing"], "keys": list(v["keys"]), "reason": v["reason"]}
                for k, v in self.shards.items()}

    def load(self, state: dict[str, Any]) -> None:
        self.shards = {k: {"missing": int(v["missing"]), "keys": list(v["keys"]), "reason": str(v["reason"])}
                       for k, v in (state or {}).items()}

    def summary(self) -> dict[str, Any]:
        return {"skipped_samples": self.n_samples, "skipped_shards": self.n_shards,
                "damaged": {k: {"samples_skipped": v["missing"] + len(v["keys"]), "reason": v["reason"]}
                            for k, v in sorted(self.shards.items())}}


def damage_event(kind: str, tar: str, key: str, reason: str, lost: int) -> dict[str, Any]:
    return {"kind": kind, "tar": tar, "key": key, "reason": reason[:300], "lost": lost}
