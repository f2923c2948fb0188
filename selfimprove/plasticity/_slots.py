"""Stable ids of attention heads across cycles, so the dashboard can follow each head.

A head keeps its *slot* id while it lives; surgery renumbers positions, not slots. A pruned
slot is remembered per layer and a head grown in that layer takes the lowest pruned slot back
(drawn as regrown), else a new slot.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SlotBook"]


@dataclass
class SlotBook:
    """Slot ids of one model's heads.

    Attributes:
        slots: Alive slot ids per layer, in head-position order.
        gone: Pruned slot ids per layer.
        next_slot: The next new slot id per layer.
    """

    slots: list[list[int]]
    gone: list[list[int]]
    next_slot: list[int]

    @classmethod
    def fresh(cls, heads: list[int]) -> SlotBook:
        """Slots ``0..h-1`` in every layer of ``h`` heads, nothing pruned."""
        return cls([list(range(h)) for h in heads], [[] for _ in heads], list(heads))

    def copy(self) -> SlotBook:
        """An independent copy (a cycle works on one; only a kept cycle's replaces the run's)."""
        return SlotBook(
            [list(s) for s in self.slots], [list(g) for g in self.gone], list(self.next_slot)
        )

    def prune_(self, removed: dict[int, list[int]]) -> list[list[int]]:
        """Remove the heads at ``removed`` positions per layer, in place.

        Returns:
            ``[layer, slot]`` of each removed head.
        """
        pruned = [[layer, self.slots[layer][p]] for layer, ps in removed.items() for p in ps]
        self.slots = [
            [s for j, s in enumerate(layer_slots) if j not in set(removed.get(layer, []))]
            for layer, layer_slots in enumerate(self.slots)
        ]
        for layer, slot in pruned:
            self.gone[layer].append(slot)
        return pruned

    def grow_(self, new_positions: dict[int, list[int]]) -> list[list[int]]:
        """Give each grown head a slot, in place (heads are appended at the end of a layer).

        Returns:
            ``[layer, slot, regrown]`` of each grown head (``regrown`` 1 for a pruned slot).
        """
        grown = []
        for layer, positions in new_positions.items():
            for _ in positions:
                if self.gone[layer]:
                    slot = min(self.gone[layer])
                    self.gone[layer].remove(slot)
                    grown.append([layer, slot, 1])  # regrown into a pruned slot
                else:
                    slot = self.next_slot[layer]
                    self.next_slot[layer] += 1
                    grown.append([layer, slot, 0])
                self.slots[layer].append(slot)
        return grown

    def drop_(self, dropped: dict[int, list[int]], grown: list[list[int]]) -> list[list[int]]:
        """Remove grown heads again (at ``dropped`` positions per layer), in place.

        Returns:
            ``grown`` without the dropped heads.
        """
        for layer, positions in dropped.items():
            gone_slots = [self.slots[layer][pos] for pos in positions]
            self.slots[layer] = [x for x in self.slots[layer] if x not in gone_slots]
            self.gone[layer].extend(gone_slots)
            grown = [g for g in grown if not (g[0] == layer and g[1] in gone_slots)]
        return grown
