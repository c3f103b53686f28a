"""``datakit``'s commands that bring data in and out of the store: import, export,
validate. Each parses its input, calls one library function and prints the result; the
``datakit`` group (cli.py) adds them."""

from __future__ import annotations

from pathlib import Path

import click

from corekit.clikit import (
    choice_option,
    data_root_option,
    echo_json,
    json_option,
    number_option,
    path_option,
    progress,
    quiet_option,
)
from corekit.errors import ToolkitError
from corekit.schemas import RECORD_KINDS

from .export import EXPORT_FORMATS
from .formats import IMPORT_FORMATS


def open_store(data_root: str):
    from .store import DatasetStore

    return DatasetStore(data_root)


@click.command("import")
@click.argument("src", type=click.Path(dir_okay=False))
@choice_option(
    "--format", "-f", "fmt", choices=IMPORT_FORMATS, default="jsonl", help="Format of SRC."
)
@click.option("--name", "-n", required=True, help="Dataset to add a version to (created if new).")
@click.option(
    "--kind",
    type=click.Choice(RECORD_KINDS),
    help="Record kind for jsonl/csv (inferred from the keys when omitted).",
)
@click.option("-m", "--message", help="Note stored in the manifest.")
@click.option(
    "--encoding",
    default="utf-8",
    show_default=True,
    help="Text encoding of a csv or xstest SRC (e.g. latin-1, cp1252).",
)
@click.option(
    "--keep-unknown",
    is_flag=True,
    help="csv: keep columns that are not fields of the record kind in meta.extra "
    "(without it they are an error).",
)
@data_root_option
@json_option
@quiet_option
def import_cmd(
    src: str,
    fmt: str,
    name: str,
    kind: str | None,
    message: str | None,
    encoding: str,
    keep_unknown: bool,
    data_root: str,
    as_json: bool,
    quiet: bool,
) -> None:
    """Convert SRC to records and store it as the next version of NAME.

    Every record is checked against its kind's schema before anything is
    written; the first bad one stops the import with file:line: field. Records
    get a stable content-hash id. Exact duplicate records (same content) are
    kept once; the other copies go to the version's rejects.jsonl with the id
    they repeat, and the summary says how many. Importing the same content
    again reuses the latest version instead of adding a copy.

    \b
    Formats:
      jsonl          our records (chat, instruction, preference, ...)
      alpaca         {instruction, input, output}, JSON array or JSONL
      sharegpt       {conversations: [{from, value}]}
      openai         OpenAI chat fine-tuning JSONL, tool calls included
      self-instruct  Self-Instruct seed tasks (one record per instance)
      xstest         XSTest prompts CSV -> eval items (safe: comply, unsafe: refuse)
      csv            a header row naming record fields

    \b
    Examples:
      datakit import seed_tasks.jsonl --format self-instruct --name seeds
      datakit import chats.jsonl --format openai --name support -m "Q3 export"
      datakit import tasks.csv --format csv --name tasks --encoding latin-1
    """
    from .formats import import_file

    res = import_file(
        open_store(data_root),
        name,
        src,
        fmt,
        kind,
        message=message,
        wrap=lambda it: progress(it, quiet, desc=f"import {name}", unit=" rec"),
        encoding=encoding,
        keep_unknown=keep_unknown,
    )
    version = res.version
    m = version.manifest()
    dups = (
        f" ({res.duplicates} exact duplicate{'s' if res.duplicates != 1 else ''} dropped,"
        f" kept in {version.path / 'rejects.jsonl'})"
        if res.duplicates
        else ""
    )
    if as_json:
        echo_json(
            {
                "ref": version.ref,
                "kind": m["kind"],
                "count": m["count"],
                "reused": version.reused,
                "duplicates": res.duplicates,
            }
        )
    elif version.reused:
        click.echo(f"unchanged: {version.ref} already holds these {m['count']} {m['kind']} records")
    else:
        click.echo(f"{version.ref}: {m['count']} {m['kind']} records from {src}{dups}")


@click.command("export")
@click.argument("ref")
@choice_option(
    "--format", "-f", "fmt", choices=EXPORT_FORMATS, default="trl", help="Output format."
)
@path_option(
    "-o", "--output", required=True, help="File to write (.json: one JSON array; else JSONL)."
)
@data_root_option
@quiet_option
def export_cmd(ref: str, fmt: str, output: str, data_root: str, quiet: bool) -> None:
    """Write dataset version REF in another format.

    trl writes the rows trainkit trains a chat model on, which TRL's trainers
    load as they are: messages (chat, instruction) / prompt, chosen, rejected
    (preference) / prompt, completion, label (unpaired), every field a list of
    messages, without ids and meta. The output is written to a temporary file
    and renamed, so a failure leaves nothing.

    \b
    Examples:
      datakit export seeds --format trl -o sft.jsonl
      datakit export prefs@v2 --format trl -o dpo.jsonl
      datakit export seeds@golden --format alpaca -o seeds.json
    """
    from .export import export_records

    v = open_store(data_root).resolve(ref)
    m = v.manifest()
    n = export_records(
        progress(v.records(), quiet, total=m["count"], desc="export", unit=" rec"),
        m["kind"],
        fmt,
        output,
    )
    click.echo(f"wrote {n} records of {v.ref} as {fmt} to {output}")


@click.command("validate")
@click.argument("target")
@click.option(
    "--schema",
    "kind",
    type=click.Choice(RECORD_KINDS),
    help="Record kind to check against (inferred from the first record when omitted).",
)
@number_option(
    "--max-errors", default=50, help="Problems to print (the counts cover all).", minimum=1
)
@number_option(
    "--max-line-mb",
    default=64,
    help="Reject lines longer than this many MiB without loading them.",
    minimum=1,
)
@data_root_option
@json_option
@quiet_option
def validate_cmd(
    target: str,
    kind: str | None,
    max_errors: int,
    max_line_mb: int,
    data_root: str,
    as_json: bool,
    quiet: bool,
) -> None:
    """Check every record of a JSONL file or dataset version against its schema.

    TARGET is a file path or a dataset reference (NAME, NAME@v2, NAME@TAG).
    Prints one line per problem, FILE:LINE: $.json.path: message, then a
    summary. Malformed JSON, invalid UTF-8, oversized lines, wrong types,
    missing fields, unknown roles and duplicate ids are all reported. Exit
    code 1 when any record is invalid.

    \b
    Examples:
      datakit validate train.jsonl
      datakit validate prefs.jsonl --schema preference
      datakit validate seeds@v2 --json
    """
    from .validate import validate_file

    path = Path(target)
    if not path.exists() and "/" not in target and not target.endswith(".jsonl"):
        try:
            v = open_store(data_root).resolve(target)
        except ToolkitError as e:
            raise ToolkitError(f"{target}: no such file, and {e}") from None
        path = v.records_path
        kind = kind or v.kind
    with progress(
        None,
        quiet,
        total=path.stat().st_size if path.is_file() else None,
        unit="B",
        unit_scale=True,
        desc="validate",
    ) as bar:
        report = validate_file(
            path,
            kind,
            max_problems=max_errors,
            max_line_bytes=max_line_mb * 2**20,
            on_bytes=bar.update,
        )
    if as_json:
        echo_json(report.to_dict())
    else:
        for p in report.problems:
            click.echo(p.format(report.file))
        if report.truncated:
            click.echo(f"... more problems not shown (--max-errors {max_errors})")
        click.echo(report.summary())
    if not report.ok:
        raise SystemExit(1)


COMMANDS = [import_cmd, export_cmd, validate_cmd]
