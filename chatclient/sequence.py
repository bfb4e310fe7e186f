"""Which `seq` of each conversation this client has already seen.

Per conversation a `floor` (every seq up to it is seen, or was deliberately
skipped by `seed`) and the set of seen seqs above it. A plain "highest seq seen"
is not enough: with several persistence instances, seq 8 may be *delivered*
before seq 7 although it was committed after it, and 7 must still count as new.

The set only holds seqs above a hole; holes are filled by history fetches, so it
stays tiny. It is capped anyway, so a hole that never fills cannot grow it
without bound.
"""

from __future__ import annotations

from dataclasses import dataclass, field

MAX_ABOVE = 10_000


@dataclass(slots=True)
class _ConvSeq:
    floor: int
    above: set[int] = field(default_factory=set)
    # A conversation first met through a live message with seq s: what lies
    # below s is unknown, not seen, so seqs up to `soft_limit` (s - 1) count as
    # seen only once they arrive (kept in `below`). With several persistence
    # instances, seq 1 may arrive just after seq 2.
    soft_limit: int = 0
    below: set[int] = field(default_factory=set)

    def compact(self) -> None:
        while self.floor + 1 in self.above:
            self.floor += 1
            self.above.discard(self.floor)
        if len(self.above) > MAX_ABOVE:
            # Give up on the oldest holes rather than grow forever.
            self.floor = min(self.above)
            self.above.discard(self.floor)
            self.compact()


class SeqTracker:
    def __init__(self) -> None:
        self._convs: dict[str, _ConvSeq] = {}

    def seen(self, conv_id: str, seq: int) -> bool:
        state = self._convs.get(conv_id)
        if state is None:
            return False
        if seq <= state.soft_limit:
            return seq in state.below
        if seq <= state.floor:
            return True
        return seq in state.above

    def add(self, conv_id: str, seq: int) -> None:
        """Mark `seq` seen. The first seq of an unknown conversation is its baseline:
        the client does not know that conversation's history, and fetching all of
        it on the first live message would be a surprise (use `seed` to set it)."""
        state = self._convs.get(conv_id)
        if state is None:
            self._convs[conv_id] = _ConvSeq(floor=seq, soft_limit=seq - 1)
            return
        if seq > state.floor:
            state.above.add(seq)
            state.compact()
        elif seq <= state.soft_limit and len(state.below) < MAX_ABOVE:
            state.below.add(seq)

    def seed(self, conv_id: str, seq: int) -> None:
        """Treat every seq up to `seq` as seen (after loading history, say)."""
        state = self._convs.setdefault(conv_id, _ConvSeq(floor=seq))
        state.floor = seq
        state.soft_limit = 0
        state.below.clear()
        state.above = {s for s in state.above if s > seq}
        state.compact()

    def floor(self, conv_id: str) -> int | None:
        """The highest seq with nothing missing at or below it (None: unknown).

        A seq above `floor + 1` means a hole: `floor + 1` is never in the set.
        """
        state = self._convs.get(conv_id)
        return None if state is None else state.floor

    def last(self, conv_id: str) -> int | None:
        """The highest seq seen (None: unknown)."""
        state = self._convs.get(conv_id)
        if state is None:
            return None
        return max(state.above, default=state.floor)

    def floors(self) -> dict[str, int]:
        """{conv_id: floor}: what to tell the server we have (sync's `known`)."""
        return {conv_id: state.floor for conv_id, state in self._convs.items()}

    def lasts(self) -> dict[str, int]:
        return {
            conv_id: max(state.above, default=state.floor) for conv_id, state in self._convs.items()
        }
