"""YAML read the way people write numbers (`1e-3` is a float; PyYAML's YAML 1.1 says string),
and refused where PyYAML would guess or blow up: a key given twice (PyYAML keeps the last one
silently), nesting deeper than any config needs, aliases that expand into more values than any
config holds (a "billion laughs" bomb), and values its constructors cannot build
(`2024-13-45`). Each is a YAMLError that says where.
"""

from __future__ import annotations

import re
from typing import Any

import yaml
from yaml.composer import ComposerError
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, Node, ScalarNode

MAX_DEPTH = 32
MAX_VALUES = 100_000
_MERGE = "tag:yaml.org,2002:merge"

# libyaml parses about ten times faster than pure Python and refuses runaway nesting itself.
_Base: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_Base):
    def get_single_node(self) -> Node | None:
        node = super().get_single_node()
        if node is not None:
            _expanded_size(node, 1, {})
        return node

    def construct_object(self, node: Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except (ValueError, OverflowError) as err:  # `2024-13-45`, `!!float abc`
            kind = node.tag.rpartition(":")[2]
            raise ConstructorError(
                None, None, f"{node.value!r} is not a valid {kind}: {err}", node.start_mark
            ) from None

    def construct_mapping(self, node: Node, deep: bool = False) -> dict:
        if isinstance(node, MappingNode):
            lines: dict[Any, int] = {}
            for key_node, _ in node.value:
                if not isinstance(key_node, ScalarNode) or key_node.tag == _MERGE:
                    continue  # a list or mapping as key is refused by the base class
                key = self.construct_object(key_node)
                line = key_node.start_mark.line + 1
                if key in lines:
                    where = (
                        f"lines {lines[key]} and {line}" if lines[key] != line else f"line {line}"
                    )
                    raise ConstructorError(
                        None, None, f"key {key!r} is given twice, on {where}", key_node.start_mark
                    )
                lines[key] = line
        return super().construct_mapping(node, deep=deep)


def _expanded_size(node: Node, depth: int, sizes: dict[int, int | None]) -> int:
    """How many values `node` holds once every alias is replaced by what it names.

    Each node is counted once (an alias names a node already counted), so the count itself
    cannot blow up; a node met again while it is being counted holds itself.
    """
    if depth > MAX_DEPTH:
        raise ComposerError(None, None, f"nested deeper than {MAX_DEPTH} levels", node.start_mark)
    if id(node) in sizes:
        size = sizes[id(node)]
        if size is None:
            raise ComposerError(
                None, None, "an alias refers to the value that holds it", node.start_mark
            )
        return size
    sizes[id(node)] = None
    if isinstance(node, ScalarNode):
        children: list[Node] = []
    elif isinstance(node, MappingNode):
        children = [part for pair in node.value for part in pair]
    else:
        children = node.value
    size = 1 + sum(_expanded_size(child, depth + 1, sizes) for child in children)
    if size > MAX_VALUES:
        raise ComposerError(
            None,
            None,
            f"this value holds more than {MAX_VALUES:,} values (aliases counted as what they repeat)",
            node.start_mark,
        )
    sizes[id(node)] = size
    return size


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def load_yaml(text: str) -> Any:
    try:
        return yaml.load(text, Loader=_Loader)
    except RecursionError:  # pure-Python PyYAML (no libyaml) composing absurd nesting
        raise yaml.YAMLError(f"nested deeper than {MAX_DEPTH} levels") from None
