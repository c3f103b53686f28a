"""``datakit``: versioned datasets for fine-tuning: import, validate, inspect, export.

Each command parses its input, calls one library function and prints the result.
"""

from __future__ import annotations

from pathlib import Path

import click

from corekit.clikit import (
    Group,
    config_data_root_option,
    config_runs_root_option,
    data_root_option,
    echo_json,
    json_option,
    progress,
    quiet_option,
    setup_logging,
    verbose_option,
)
from corekit.errors import ToolkitError

from .formats import EXPORT_FORMATS, IMPORT_FORMATS
from .schemas import RECORD_KINDS


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@verbose_option
@click.version_option(package_name="finetune-toolkit", prog_name="datakit")
def cli(verbose: bool) -> None:
    """Grow, check and version the datasets you fine-tune on.

    Every dataset is a series of immutable versions under the data root
    (data/NAME/vN/records.jsonl + manifest.json). Address a version as NAME
    (latest), NAME@v3 or NAME@TAG.

    \b
    Examples:
      datakit import seeds.json --format alpaca --name seeds
      datakit validate seeds
      datakit show seeds@v1
      datakit export seeds --format trl -o train.jsonl
    """
    setup_logging(verbose)


def _store(data_root: str):
    from .store import DatasetStore

    return DatasetStore(data_root)


@cli.command("import")
@click.argument("src", type=click.Path(dir_okay=False))
@click.option(
    "--format",
    "-f",
    "fmt",
    type=click.Choice(IMPORT_FORMATS),
    default="jsonl",
    show_default=True,
    help="Format of SRC.",
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
        _store(data_root),
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


@cli.command("export")
@click.argument("ref")
@click.option(
    "--format",
    "-f",
    "fmt",
    type=click.Choice(EXPORT_FORMATS),
    default="trl",
    show_default=True,
    help="Output format.",
)
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False),
    help="File to write (.json: one JSON array; else JSONL).",
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
    from .formats import export_records

    v = _store(data_root).resolve(ref)
    m = v.manifest()
    n = export_records(
        progress(v.records(), quiet, total=m["count"], desc="export", unit=" rec"),
        m["kind"],
        fmt,
        output,
    )
    click.echo(f"wrote {n} records of {v.ref} as {fmt} to {output}")


@cli.command("ls")
@data_root_option
@json_option
def ls_cmd(data_root: str, as_json: bool) -> None:
    """List datasets with their latest version, kind and size.

    \b
    Examples:
      datakit ls
      datakit ls --data-root /mnt/datasets --json
    """
    rows = _store(data_root).listing()
    if as_json:
        echo_json(rows)
        return
    if not rows:
        click.echo(f"no datasets under {data_root}")
        return
    w = max(len(r["name"]) for r in rows)
    click.echo(f"{'NAME':<{w}}  {'LATEST':>6}  {'KIND':<11} {'RECORDS':>8}  TAGS")
    for r in rows:
        tags = ", ".join(f"{t}=v{n}" for t, n in sorted(r["tags"].items()))
        click.echo(
            f"{r['name']:<{w}}  {r['latest'].split('@')[1]:>6}  {r['kind']:<11} {r['count']:>8}  {tags}"
        )


@cli.command("log")
@click.argument("name")
@data_root_option
@json_option
def log_cmd(name: str, data_root: str, as_json: bool) -> None:
    """Show the versions of dataset NAME, newest first, with what made each.

    \b
    Examples:
      datakit log seeds
    """
    rows = _store(data_root).history(name)
    if as_json:
        echo_json(rows)
        return
    for r in rows:
        tags = f" [{', '.join(r['tags'])}]" if r["tags"] else ""
        parents = f" <- {', '.join(r['parents'])}" if r["parents"] else ""
        msg = f"  {r['message']}" if r["message"] else ""
        click.echo(
            f"{r['ref']}{tags}  {r['created']}  {r['step']}  {r['count']} {r['kind']}{parents}{msg}"
        )


@cli.command("show")
@click.argument("ref")
@click.option(
    "-n",
    "--records",
    "n",
    default=3,
    show_default=True,
    type=click.IntRange(min=0),
    help="How many records to print.",
)
@data_root_option
@json_option
def show_cmd(ref: str, n: int, data_root: str, as_json: bool) -> None:
    """Print the manifest of version REF and its first records.

    \b
    Examples:
      datakit show seeds
      datakit show seeds@v2 -n 10
      datakit show seeds --json | jq .manifest.stats
    """
    v = _store(data_root).resolve(ref)
    m = v.manifest()
    head = v.head(n)
    if as_json:
        echo_json({"ref": v.ref, "path": str(v.path), "manifest": m, "records": head})
        return
    click.echo(f"{v.ref}  ({v.path})")
    click.echo(f"  kind     {m['kind']}")
    click.echo(f"  records  {m['count']}   bytes {m.get('bytes', '?')}   sha256 {m['sha256'][:16]}")
    click.echo(
        f"  created  {m['created']}   step {m['step']['name']}"
        + (f"   config {m['step']['config_hash']}" if m["step"].get("config_hash") else "")
    )
    if m["parents"]:
        click.echo(f"  parents  {', '.join(m['parents'])}")
    if m.get("message"):
        click.echo(f"  message  {m['message']}")
    stats = ", ".join(f"{k} {v}" for k, v in m["stats"].items() if k != "records")
    if stats:
        click.echo(f"  stats    {stats}")
    import orjson

    for rec in head:
        click.echo(orjson.dumps(rec).decode()[:500])


@cli.command("diff")
@click.argument("a")
@click.argument("b")
@click.option(
    "--limit",
    default=5,
    show_default=True,
    type=click.IntRange(min=0),
    help="Records to print per section.",
)
@data_root_option
@json_option
def diff_cmd(a: str, b: str, limit: int, data_root: str, as_json: bool) -> None:
    """Compare two versions by record id: added, removed and changed records.

    Ids are content hashes, so an edited record shows as one removed and one
    added unless it kept its id; "changed" means same id, other content; a
    "meta-only change" means same content, other meta (provenance, judge
    scores), and the meta keys that differ are counted.

    \b
    Examples:
      datakit diff seeds@v1 seeds@v2
      datakit diff seeds@v1 seeds --json
    """
    import orjson

    d = _store(data_root).diff(a, b)
    if as_json:
        echo_json(
            {
                "a": d["a"],
                "b": d["b"],
                "added": d["added"],
                "removed": d["removed"],
                "changed": [{"a": x, "b": y} for x, y in d["changed"]],
                "meta_changed": [{"a": x, "b": y} for x, y in d["meta_changed"]],
                "meta_keys": d["meta_keys"],
                "unchanged": d["unchanged"],
            }
        )
        return
    click.echo(
        f"{d['a']} -> {d['b']}: +{len(d['added'])} added, -{len(d['removed'])} removed, "
        f"~{len(d['changed'])} changed, {len(d['meta_changed'])} meta-only changes, "
        f"{d['unchanged']} unchanged"
    )
    if d["meta_keys"]:
        keys = ", ".join(f"{k} ({n})" for k, n in d["meta_keys"].items())
        click.echo(f"meta keys that differ: {keys}")
    for sign, recs in (("+", d["added"]), ("-", d["removed"])):
        for rec in recs[:limit]:
            click.echo(f"{sign} {orjson.dumps(rec).decode()[:300]}")
        if len(recs) > limit:
            click.echo(f"{sign} ... {len(recs) - limit} more")
    for x, y in d["changed"][:limit]:
        click.echo(
            f"~ {x['id']}: {orjson.dumps(x).decode()[:140]} => {orjson.dumps(y).decode()[:140]}"
        )
    if len(d["changed"]) > limit:
        click.echo(f"~ ... {len(d['changed']) - limit} more")
    for x, y in d["meta_changed"][:limit]:
        ma, mb = x.get("meta") or {}, y.get("meta") or {}
        parts = [
            f"{k}: {orjson.dumps(ma.get(k)).decode()[:60]} => {orjson.dumps(mb.get(k)).decode()[:60]}"
            for k in sorted(set(ma) | set(mb))
            if ma.get(k) != mb.get(k)
        ]
        click.echo(f"m {x['id']}: meta " + "; ".join(parts))
    if len(d["meta_changed"]) > limit:
        click.echo(f"m ... {len(d['meta_changed']) - limit} more")


@cli.command("stats")
@click.argument("ref")
@click.option(
    "--plot",
    "plot_dir",
    type=click.Path(file_okay=False),
    help="Also write PNG charts (lengths, sources, judge scores) into this directory.",
)
@data_root_option
@json_option
def stats_cmd(ref: str, plot_dir: str | None, data_root: str, as_json: bool) -> None:
    """Describe version REF: counts, lengths, diversity, sources, judge scores.

    Lengths are distributions (min, p10, median, p90, max) of prompts and
    responses; diversity is distinct-1/2/3 of the responses and their mean
    pairwise ROUGE-L (self-similarity: high means the responses repeat each
    other, a sign of mode collapse).

    \b
    Examples:
      datakit stats answers
      datakit stats answers@v2 --json | jq .distinct_2
      datakit stats good --plot plots/
    """
    from .stats import dataset_stats, format_stats, plot_stats

    v = _store(data_root).resolve(ref)
    records = list(v.records())
    st = dataset_stats(records, v.kind)
    if plot_dir:
        st["plots"] = [str(p) for p in plot_stats(v.ref, records, st, Path(plot_dir))]
    if as_json:
        echo_json({"ref": v.ref, **st})
        return
    click.echo(format_stats(v.ref, st))
    for p in st.get("plots", []):
        click.echo(f"  wrote {p}")


@cli.command("tag")
@click.argument("ref")
@click.argument("tag")
@click.option("--force", is_flag=True, help="Move the tag if it already points elsewhere.")
@data_root_option
def tag_cmd(ref: str, tag: str, force: bool, data_root: str) -> None:
    """Name version REF as TAG, so NAME@TAG addresses it.

    \b
    Examples:
      datakit tag seeds@v3 golden
      datakit tag seeds golden --force    # move it to the latest
    """
    v = _store(data_root).tag(ref, tag, force)
    click.echo(f"{v.name}@{tag} -> {v.ref}")


@cli.command("validate")
@click.argument("target")
@click.option(
    "--schema",
    "kind",
    type=click.Choice(RECORD_KINDS),
    help="Record kind to check against (inferred from the first record when omitted).",
)
@click.option(
    "--max-errors",
    default=50,
    show_default=True,
    type=click.IntRange(min=1),
    help="Problems to print (the counts cover all).",
)
@click.option(
    "--max-line-mb",
    default=64,
    show_default=True,
    type=click.IntRange(min=1),
    help="Reject lines longer than this many MiB without loading them.",
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
            v = _store(data_root).resolve(target)
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


@cli.command("run")
@click.argument("config", default="pipeline.yaml", required=False, type=click.Path(dir_okay=False))
@config_data_root_option
@config_runs_root_option
@click.option("--only", multiple=True, help="Run only this step (repeatable).")
@click.option("--force", is_flag=True, help="Re-run steps even when their config is unchanged.")
@click.option(
    "--allow-empty",
    is_flag=True,
    help="Let every step write an empty output, or one that lost more than its "
    "max_error_share to engine errors (otherwise the step fails, exit 1).",
)
@click.option(
    "--examples",
    default=0,
    show_default=True,
    type=click.IntRange(min=0),
    help="Print this many example records of each step's output at the end.",
)
@json_option
@quiet_option
def run_cmd(
    config: str,
    data_root: str | None,
    runs_root: str | None,
    only: tuple[str, ...],
    force: bool,
    allow_empty: bool,
    examples: int,
    as_json: bool,
    quiet: bool,
) -> None:
    """Run the data section of CONFIG (default pipeline.yaml).

    The whole config is checked first. Then models it declares are built
    if missing, each import becomes a dataset version, and the steps run in
    order, each writing a new version of its output dataset (rejects with their
    reasons in rejects.jsonl beside it). Unchanged imports and steps are
    skipped; engine calls are cached under runs_root/cache, so an interrupted
    run resumes where it stopped. `make data` runs this.

    \b
    Examples:
      datakit run
      datakit run pipeline.yaml --only answers --force
      datakit run --examples 2
      datakit run pipeline.yaml --data-root /tmp/data -q
    """
    from .ops.step import step_line
    from .stage import run_data

    s = run_data(
        config,
        data_root,
        quiet=quiet,
        only=list(only) or None,
        force=force,
        runs_root=runs_root,
        allow_empty=allow_empty,
    )
    if as_json:
        echo_json({"models": s.models, "datasets": s.datasets, "steps": s.steps})
        return
    for m in s.models:
        click.echo(f"model {m['name']}: {'built' if m['built'] else 'present'} at {m['path']}")
    for d in s.datasets:
        dups = f" ({d['duplicates']} exact duplicates dropped)" if d.get("duplicates") else ""
        click.echo(
            f"dataset {d['ref']}: {d['count']} {d['kind']} records"
            f"{' (unchanged)' if d['reused'] else dups}"
        )
    for st in s.steps:
        click.echo(step_line(st))
    if examples and s.steps:
        from .records import preview
        from .store import DatasetStore

        store = DatasetStore(s.data_root)
        click.echo("examples:")
        for st in s.steps:
            for out in st["outputs"]:
                for rec in store.resolve(out["ref"]).head(examples):
                    click.echo(f"  {out['ref']}  {preview(rec)}")
        kept = sum(o["count"] for st in s.steps for o in st["outputs"])
        dropped = sum(sum(st["drops"].values()) for st in s.steps)
        click.echo(
            f"kept {kept} records in {len(s.steps)} steps, dropped {dropped} (reasons above; "
            f"each version's rejects.jsonl holds them)"
        )
    timed = sorted((st for st in s.steps if st.get("seconds", 0) >= 1), key=lambda x: -x["seconds"])
    if timed:  # where the time went (the first model step includes its engine's start)
        click.echo(
            "time by step: " + ", ".join(f"{st['name']} {st['seconds']:.0f} s" for st in timed)
        )


@cli.group("generate", cls=Group)
def generate_group() -> None:
    """Grow datasets with an LLM engine: Self-Instruct, Evol-Instruct, responses, ...

    Each subcommand reads a dataset version and writes the next version of -o
    NAME. The same ops run as steps of pipeline.yaml (`datakit run`).

    \b
    Examples:
      datakit generate self-instruct seeds -o grown --model runs/models/tiny
      datakit generate respond grown -o answers --model runs/models/tiny
      datakit generate preferences seeds -o prefs --model runs/models/tiny
    """


def _register_ops() -> None:
    from .cli_generate import make_command
    from .ops import OPS

    for op in OPS.values():
        (generate_group if op.command == "generate" else cli).add_command(make_command(op))


_register_ops()


def _register_review() -> None:
    from .cli_review import review_group

    cli.add_command(review_group)


_register_review()


@cli.command("ops")
@json_option
def ops_cmd(as_json: bool) -> None:
    """List the ops a pipeline step (and its command) can run.

    Each row: the op (its name in pipeline.yaml), the command that runs it
    alone, the record kinds it reads -> what it writes, the engine roles it
    calls, and what it does. Parameters: that command's --help, or datakit
    config schema (definitions/params_OP).

    \b
    Examples:
      datakit ops
      datakit ops --json | jq '.[].name'
    """
    from .ops import OPS

    rows = [
        {
            "name": op.name,
            "command": ("datakit generate " if op.command == "generate" else "datakit ")
            + op.cli_name,
            "inputs": list(op.inputs),
            "output": op.output_label,
            "roles": list(op.roles),
            "summary": op.summary,
        }
        for op in OPS.values()
    ]
    if as_json:
        echo_json(rows)
        return
    w = max(len(r["name"]) for r in rows)
    wc = max(len(r["command"]) for r in rows)
    for r in rows:
        roles = ",".join(r["roles"]) or "-"
        click.echo(
            f"{r['name']:<{w}}  {r['command']:<{wc}}  {'|'.join(r['inputs'])} -> {r['output']}"
            f"  [{roles}]  {r['summary']}"
        )


@cli.group("config", cls=Group)
def config_group() -> None:
    """Check pipeline.yaml or print its schema.

    \b
    Examples:
      datakit config check pipeline.yaml
      datakit config schema > pipeline.schema.json
    """


@config_group.command("check")
@click.argument("path", default="pipeline.yaml", required=False)
@json_option
def config_check(path: str, as_json: bool) -> None:
    """Check PATH (default pipeline.yaml) against the pipeline schema.

    All problems are reported together, each with its line and key path;
    unknown keys come with a "did you mean" hint. Nothing runs.

    \b
    Examples:
      datakit config check
      datakit config check examples/qlora-7b.yaml
    """
    from .config import check_config, load_yaml

    data, lines = load_yaml(path)
    if data is not None and not isinstance(data, dict):
        raise ToolkitError(
            f"{path}:1: the config must be a mapping of sections (data, train, eval)"
        )
    problems = check_config(data, lines, path, sections=True)
    if as_json:
        echo_json({"file": path, "ok": not problems, "problems": problems})
    else:
        for p in problems:
            click.echo(p)
        click.echo(
            f"{path}: {len(problems)} problem{'s' if len(problems) != 1 else ''}"
            if problems
            else f"ok: {path}"
        )
    if problems:
        raise SystemExit(1)


@config_group.command("schema")
def config_schema() -> None:
    """Print the JSON Schema of pipeline.yaml (every field with its type, default and help).

    \b
    Examples:
      datakit config schema | jq '.definitions.import'
    """
    from .schemas import load_schema

    echo_json(load_schema("pipeline"))


def main() -> None:
    cli(prog_name="datakit")


if __name__ == "__main__":
    main()
