"""The Open Images class hierarchy (``bbox_labels_600_hierarchy.json``): which classes are kinds of which.

The file is one tree of ``{"LabelName": MID, "Subcategory": [nodes], "Part": [nodes]}``; its root (``/m/0bl9f``,
"Entity") is not a class. A class may sit under several parents (a Toy is also under several); its ancestors are
then the union over its places. Only ``Subcategory`` edges make the hierarchy (``Part`` lists parts, such as a
Wheel of a Car, which are not kinds of it).

How the challenge metric uses it (``evaluation/openimages_eval``): a box of a class is also a box of each of its
ancestors; a verified-present label also verifies its ancestors present; a verified-absent label also verifies its
descendants absent.

>>> h = parse_hierarchy({"LabelName": "/m/0bl9f", "Subcategory": [
...     {"LabelName": "/m/vehicle", "Subcategory": [{"LabelName": "/m/car"}]}]}, source="h.json")
>>> sorted(h.ancestors["/m/car"]), sorted(h.descendants["/m/vehicle"])
(['/m/vehicle'], ['/m/car'])
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from maskrcnn.errors import UserError
from maskrcnn.io import read_json


@dataclass(frozen=True)
class ClassHierarchy:
    """``ancestors[mid]``: every class above ``mid`` (the root left out); ``descendants[mid]``: every class below.
    Both have a (possibly empty) entry for every class of the file."""

    root: str
    ancestors: dict[str, frozenset[str]]
    descendants: dict[str, frozenset[str]]

    @property
    def classes(self) -> frozenset[str]:
        return frozenset(self.ancestors)


def parse_hierarchy(data: Any, *, source: str) -> ClassHierarchy:
    """The parsed JSON tree -> ``ClassHierarchy``; ``UserError`` naming ``source`` when it is not such a tree."""
    if not isinstance(data, dict) or not isinstance(data.get("LabelName"), str):
        raise UserError(f"{source}: not an Open Images class hierarchy (expected an object with a LabelName)")
    root = data["LabelName"]
    ancestors: dict[str, set[str]] = {}
    stack: list[tuple[dict, tuple[str, ...]]] = [(data, ())]  # (node, its ancestors below the root)
    while stack:
        node, above = stack.pop()
        children = node.get("Subcategory", [])
        if not isinstance(children, list):
            raise UserError(f"{source}: the Subcategory of {node['LabelName']} is not a list")
        path = above if node is data else (*above, node["LabelName"])
        for child in children:
            if not isinstance(child, dict) or not isinstance(child.get("LabelName"), str) or not child["LabelName"]:
                raise UserError(f"{source}: a Subcategory entry under {node['LabelName']} has no LabelName")
            if child["LabelName"] in path or child["LabelName"] == root:
                raise UserError(f"{source}: {child['LabelName']} is its own ancestor (the hierarchy has a cycle)")
            ancestors.setdefault(child["LabelName"], set()).update(path)
            stack.append((child, path))
    descendants: dict[str, set[str]] = {mid: set() for mid in ancestors}
    for mid, above in ancestors.items():
        for parent in above:
            descendants[parent].add(mid)
    return ClassHierarchy(
        root=root,
        ancestors={mid: frozenset(a) for mid, a in ancestors.items()},
        descendants={mid: frozenset(d) for mid, d in descendants.items()},
    )


def read_hierarchy(path: Path, *, known: Iterable[str] | None = None) -> ClassHierarchy:
    """Read the hierarchy JSON at ``path``. ``known``: the valid class MIDs (the class descriptions); a class of the
    file outside them raises ``UserError`` naming the file and the MIDs (a wrong or damaged file)."""
    data = read_json(path, what="class hierarchy")
    hierarchy = parse_hierarchy(data, source=str(path))
    if known is not None:
        unknown = sorted(hierarchy.classes - set(known))
        if unknown:
            shown = ", ".join(unknown[:5]) + (" ..." if len(unknown) > 5 else "")
            raise UserError(f"class hierarchy {path} names {len(unknown)} unknown class ids: {shown}")
    return hierarchy
