"""YAML config files read safely: every key's line kept for error messages, a key given
twice or an empty file refused, and an alias bomb (more than ``MAX_YAML_NODES`` nodes once
expanded) refused in one line before anything walks it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .errors import ToolkitError


def _yaml():
    import yaml

    return yaml


# A config is a few hundred nodes; a YAML alias bomb (anchors of anchors, each repeated)
# expands to billions. Past this many nodes, counted with every alias expanded, a file is
# refused before anything walks, validates or copies it.
MAX_YAML_NODES = 100_000


def _expanded_size(node: Any, limit: int) -> int:
    """Nodes in ``node`` with every alias expanded, computed once per distinct node (so a
    bomb is measured, not expanded); stops counting past ``limit``."""
    import yaml

    sizes: dict[int, int] = {}
    open_: set[int] = set()  # entered, not yet sized: meeting one again is a cycle
    stack: list[tuple[Any, bool]] = [(node, False)]
    while stack:
        n, done = stack.pop()
        if id(n) in sizes:
            continue
        children: list[Any] = []
        if isinstance(n, yaml.MappingNode):
            children = [c for kv in n.value for c in kv]
        elif isinstance(n, yaml.SequenceNode):
            children = list(n.value)
        if not done:
            if id(n) in open_:
                raise ValueError("an alias refers to a node that contains it")
            open_.add(id(n))
            stack.append((n, True))
            stack.extend((c, False) for c in children if id(c) not in sizes)
            continue
        sizes[id(n)] = min(limit + 1, 1 + sum(sizes[id(c)] for c in children))
    return sizes[id(node)]


def _duplicate_keys(node: Any, seen: set[int] | None = None) -> list[tuple[int, int, str]]:
    """(first line, repeated line, key) for every mapping key given twice."""
    import yaml

    out: list[tuple[int, int, str]] = []
    stack, seen = [node], set()
    while stack:
        n = stack.pop()
        if id(n) in seen:
            continue
        seen.add(id(n))
        if isinstance(n, yaml.MappingNode):
            first: dict[str, int] = {}
            for k, v in n.value:
                if isinstance(k, yaml.ScalarNode) and k.tag != "tag:yaml.org,2002:merge":
                    line = k.start_mark.line + 1
                    if k.value in first:
                        out.append((first[k.value], line, k.value))
                    else:
                        first[k.value] = line
                stack.extend((k, v))
        elif isinstance(n, yaml.SequenceNode):
            stack.extend(n.value)
    return sorted(out)


def load_yaml(path: str | Path) -> tuple[Any, dict[tuple, int]]:
    """Parse a YAML file; return the data and a map from key path to 1-based line.

    Refused with one line each: a file that is not UTF-8, an empty file, a key given twice
    in one mapping (both lines named), and a file whose aliases expand past
    MAX_YAML_NODES nodes (an alias bomb is refused in milliseconds, never expanded)."""
    yaml = _yaml()
    p = Path(path)
    if not p.is_file():
        raise ToolkitError(f"{path}: no such file")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ToolkitError(f"{path}: invalid UTF-8 at byte {e.start}") from None
    except OSError as e:
        raise ToolkitError(f"{path}: cannot read: {e.strerror or e}") from None
    if "\x00" in text:
        raise ToolkitError(f"{path}:{text[: text.index(chr(0))].count(chr(10)) + 1}: NUL byte")
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = f":{mark.line + 1}" if mark else ""
        raise ToolkitError(f"{path}{line}: invalid YAML: {e.problem or e.context}") from None
    except yaml.YAMLError as e:
        raise ToolkitError(f"{path}: invalid YAML: {e}") from None
    if node is None:
        raise ToolkitError(f"{path}: empty config (expected sections such as data, train, eval)")
    try:
        size = _expanded_size(node, MAX_YAML_NODES)
    except ValueError as e:
        raise ToolkitError(f"{path}: invalid YAML: {e}") from None
    if size > MAX_YAML_NODES:
        raise ToolkitError(
            f"{path}: its aliases expand to more than {MAX_YAML_NODES:,} nodes "
            "(an alias bomb?); refused"
        )
    dups = _duplicate_keys(node)
    if dups:
        first, again, key = dups[0]
        more = f" (and {len(dups) - 1} more)" if len(dups) > 1 else ""
        raise ToolkitError(f"{path}:{again}: key {key!r} given twice (first at line {first}){more}")
    try:
        data = yaml.SafeLoader(text).get_single_data()
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = f":{mark.line + 1}" if mark else ""
        raise ToolkitError(f"{path}{line}: invalid YAML: {e.problem or e.context}") from None
    except (yaml.YAMLError, RecursionError) as e:
        raise ToolkitError(f"{path}: invalid YAML: {e}") from None
    lines: dict[tuple, int] = {}

    def walk(n: Any, at: tuple) -> None:
        lines.setdefault(at, n.start_mark.line + 1)
        if isinstance(n, yaml.MappingNode):
            for k, v in n.value:
                key = k.value
                lines[at + (key,)] = k.start_mark.line + 1
                walk(v, at + (key,))
        elif isinstance(n, yaml.SequenceNode):
            for i, v in enumerate(n.value):
                walk(v, at + (i,))

    walk(node, ())
    return data, lines
