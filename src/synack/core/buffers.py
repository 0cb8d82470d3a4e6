"""Receive-side reassembly of out-of-order segments, with a memory bound.

Pure data structure keyed by sequence numbers (mod 2**32); RFC 9293 §3.10.7.4 SHLD-31: "Segments
with higher beginning sequence numbers SHOULD be held for later processing."
"""

from __future__ import annotations

__all__ = ["ReassemblyQueue"]

_MASK = 0xFFFFFFFF


class ReassemblyQueue:
    """Holds out-of-order data as disjoint, sorted blocks ``[start, bytes]`` (start = sequence
    number). ``limit`` bounds the octets held; data past it is refused (the sender retransmits).

    ``max_blocks`` bounds the number of disjoint blocks: a peer sending one octet into every other
    position of a large window would otherwise make each ``add`` walk up to limit/2 blocks
    (quadratic time: minutes of CPU for one window) and cost ~100 octets of bookkeeping per octet
    held. Holding is a SHOULD (SHLD-31), and a segment refused here is simply retransmitted —
    the same bound Linux gets from charging each held segment its full buffer size."""

    __slots__ = ("_blocks", "_recent", "_refused", "held", "limit", "max_blocks")

    def __init__(self, limit: int, max_blocks: int = 256) -> None:
        self._blocks: list[tuple[int, bytes]] = []
        self._recent: list[int] = []  # a sequence number of each recently arrived segment, newest first
        self._refused: tuple[int, int] | None = None  # the newest segment, if it was refused
        self.held = 0
        self.limit = limit
        self.max_blocks = max_blocks

    def __len__(self) -> int:
        return len(self._blocks)

    @property
    def reportable(self) -> int:
        """How many blocks a SACK option could report: the held ones, and a refused newest
        segment (RFC 2018 §8)."""
        return len(self._blocks) + (self._refused is not None)

    def add(self, seq: int, data: bytes, rcv_nxt: int) -> bool:
        """Store ``data`` starting at ``seq`` (which is after ``rcv_nxt``). Overlaps with data
        already held are trimmed so every octet is stored once. Returns False if refused."""
        if not data:
            return True
        if not self._add(seq, data, rcv_nxt):
            # RFC 2018 §8: "Even if the newest segment is going to be discarded ... the first
            # SACK block MUST report, at a minimum, the left and right edges of the newest
            # segment."
            self._refused = (seq, (seq + len(data)) & _MASK)
            return False
        self._refused = None
        return True

    def _add(self, seq: int, data: bytes, rcv_nxt: int) -> bool:
        self._note_recent(seq)
        # Work in offsets from rcv_nxt so that comparisons do not wrap.
        start = (seq - rcv_nxt) & _MASK
        merged: list[tuple[int, bytes]] = []
        pieces: list[tuple[int, bytes]] = [(start, data)]
        for bseq, bdata in self._blocks:
            b0 = (bseq - rcv_nxt) & _MASK
            b1 = b0 + len(bdata)
            nxt: list[tuple[int, bytes]] = []
            for p0, pdata in pieces:
                p1 = p0 + len(pdata)
                if p1 <= b0 or p0 >= b1:
                    nxt.append((p0, pdata))
                    continue
                if p0 < b0:
                    nxt.append((p0, pdata[: b0 - p0]))
                if p1 > b1:
                    nxt.append((b1, pdata[b1 - p0:]))
            pieces = nxt
            merged.append((b0, bdata))
        added = sum(len(p) for _, p in pieces)
        if self.held + added > self.limit:
            return False
        if len(self._blocks) >= self.max_blocks and added:
            # At the block limit only data that touches a held block may join (it cannot add a
            # block: coalescing below merges it); anything that would open a new block is refused.
            end = start + len(data)
            if not any(b0 <= end and start <= b1 for b0, b1 in
                       (((bseq - rcv_nxt) & _MASK, ((bseq - rcv_nxt) & _MASK) + len(bdata))
                        for bseq, bdata in self._blocks)):
                return False
        merged.extend(pieces)
        merged.sort(key=lambda b: b[0])
        # Coalesce adjacent blocks.
        out: list[tuple[int, bytes]] = []
        for b0, bdata in merged:
            if out and out[-1][0] + len(out[-1][1]) == b0:
                out[-1] = (out[-1][0], out[-1][1] + bdata)
            else:
                out.append((b0, bdata))
        self._blocks = [((b0 + rcv_nxt) & _MASK, bdata) for b0, bdata in out]
        self.held += added
        return True

    def pop_ready(self, rcv_nxt: int) -> bytes:
        """Remove and return the data that now starts at (or before) ``rcv_nxt``."""
        self._refused = None
        out = b""
        while self._blocks:
            bseq, bdata = self._blocks[0]
            off = (rcv_nxt - bseq) & _MASK
            if off >= (1 << 31):  # block starts after rcv_nxt: a hole remains
                break
            self._blocks.pop(0)
            self.held -= len(bdata)
            if off < len(bdata):
                out += bdata[off:]
                rcv_nxt = (rcv_nxt + len(bdata) - off) & _MASK
        return out

    def _note_recent(self, seq: int) -> None:
        recent = self._recent
        if seq in recent:
            recent.remove(seq)
        recent.insert(0, seq)
        del recent[4:]

    def _block_of(self, seq: int) -> tuple[int, int] | None:
        """The held block [start, end) containing sequence number ``seq``, if any."""
        for bseq, bdata in self._blocks:
            if ((seq - bseq) & _MASK) < len(bdata):
                return bseq, (bseq + len(bdata)) & _MASK
        return None

    def sack_blocks(self, limit: int = 3) -> tuple[tuple[int, int], ...]:
        """The SACK blocks to report (RFC 2018 §4): "The first SACK block ... MUST specify the
        contiguous block of data containing the segment which triggered this ACK" — the block of
        the newest out-of-order arrival — and the others repeat "the most recently reported SACK
        blocks ... that are not subsets of a SACK block already included"; what room is left
        goes to the lowest blocks, which a sender needs to fill its first holes. A newest segment
        that was refused (the queue was full) is still reported first (§8)."""
        out: list[tuple[int, int]] = [] if self._refused is None else [self._refused]
        for seq in self._recent:
            block = self._block_of(seq)
            if block is not None and block not in out:
                out.append(block)
        for bseq, bdata in self._blocks:
            if len(out) >= limit:
                break
            block = (bseq, (bseq + len(bdata)) & _MASK)
            if block not in out:
                out.append(block)
        return tuple(out[:limit])

    def clear(self) -> None:
        self._blocks.clear()
        self._recent.clear()
        self._refused = None
        self.held = 0
