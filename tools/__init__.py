"""Scripts run as files (`.venv/bin/python tools/X.py`): the schema writer and the recipe
search's measurements, with what the measurements share."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_on_paths(doc: str, usage: str, main: Callable[..., None], most: int) -> None:
    """Call ``main`` with the command line's arguments, each an existing path: the module's
    ``doc`` for -h / --help (exit 0) or no argument (exit 2); one line and exit 1 for too many
    arguments or a path that does not exist."""
    args = sys.argv[1:]
    if not args or args[0] in ("-h", "--help"):
        print(doc)
        sys.exit(0 if args else 2)
    if len(args) > most:
        sys.exit(f"usage: {usage} (got {len(args)} arguments)")
    for path in args:
        if not Path(path).exists():
            sys.exit(f"{path}: no such file or directory")
    main(*args)


def labelled(items: list[dict]) -> list[tuple[str, int]]:
    """(prompt, 1 for refuse) from eval items, `expected` at the top or under meta."""
    return [
        (it["prompt"], int((it.get("expected") or it["meta"].get("expected")) == "refuse"))
        for it in items
    ]


def safety_sets(xstest: str | None = None) -> tuple[list[tuple[str, int]], dict[str, list]]:
    """The demo's written safety prompts (what a probe is fit on), and the labelled sets to
    score it on: the shipped safety suite and, when given, an XSTest CSV."""
    from evalkit.suites import load_items, resolve

    train = labelled(load_items(ROOT / "datakit/demo/safety_prompts.jsonl", "jsonl", "data"))
    sets = {"suite": labelled(resolve("safety").items)}
    if xstest:
        sets["xstest"] = labelled(resolve({"name": "xstest", "path": xstest}).items)
    return train, sets
