"""A destination's projection: which attributes of an item it keeps, and under which names.

``include`` keeps only the attributes it lists, ``exclude`` drops those it lists, and
``rename`` writes an attribute under another name. The key attributes are always kept
under their own names: a projection that would drop or rename one is refused when the
topology is checked against the source table (``key_problem``).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

from replicator.records import Item


@dataclass(frozen=True, slots=True)
class Projection:
    include: frozenset[str] | None = None
    exclude: frozenset[str] = frozenset()
    rename: Mapping[str, str] = field(default_factory=dict)

    def apply(self, item: Item, keys: Collection[str]) -> Item:
        """``item`` with only the attributes kept, renamed; ``keys`` are always kept."""
        include, exclude, rename = self.include, self.exclude, self.rename
        projected: Item = {}
        for name, value in item.items():
            if name in keys:
                projected[name] = value
            elif (include is None or name in include) and name not in exclude:
                projected[rename.get(name, name)] = value
        return projected

    def key_problem(self, keys: Collection[str]) -> str | None:
        """Why the projection cannot be used on a table keyed by ``keys``, if it cannot."""
        for name in sorted(keys):
            if name in self.exclude:
                return f"exclude lists key attribute {name}: key attributes are always kept"
            if name in self.rename:
                return f"rename renames key attribute {name}: key attributes keep their names"
            if name in self.rename.values():
                return (f"rename writes an attribute under the name of key attribute {name}: "
                        "choose another name")
        return None

    @classmethod
    def problem(cls, include: Collection[str] | None, exclude: Collection[str],
                rename: Mapping[str, str]) -> str | None:
        """Why these lists make no projection, if they do not (checked without the table)."""
        if include is not None and exclude:
            return "include and exclude are both set: keep one of them"
        targets = list(rename.values())
        if len(set(targets)) < len(targets):
            return "rename writes two attributes under one name"
        if include is not None:
            dropped = sorted(name for name in rename if name not in include)
            if dropped:
                return f"rename names {dropped[0]}, which include does not keep"
        excluded = sorted(name for name in rename if name in exclude)
        if excluded:
            return f"rename names {excluded[0]}, which exclude drops"
        return None
