"""``datakit``'s commands over dataset versions: ls, log, show, diff, stats, tag. Each
reads the store, calls one library function and prints the result; the ``datakit`` group
(cli.py) adds them."""

from __future__ import annotations

from pathlib import Path

import click

from corekit.clikit import (
    data_root_option,
    echo_json,
    json_option,
    number_option,
    path_option,
)

from .cli_store import open_store


@click.command("ls")
@data_root_option
@json_option
def ls_cmd(data_root: str, as_json: bool) -> None:
    """List datasets with their latest version, kind and size.

    \b
    Examples:
      datakit ls
      datakit ls --data-root /mnt/datasets --json
    """
    rows = open_store(data_root).listing()
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


@click.command("log")
@click.argument("name")
@data_root_option
@json_option
def log_cmd(name: str, data_root: str, as_json: bool) -> None:
    """Show the versions of dataset NAME, newest first, with what made each.

    \b
    Examples:
      datakit log seeds
    """
    rows = open_store(data_root).history(name)
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


@click.command("show")
@click.argument("ref")
@number_option("-n", "--records", "n", default=3, help="How many records to print.", minimum=0)
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
    v = open_store(data_root).resolve(ref)
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


@click.command("diff")
@click.argument("a")
@click.argument("b")
@number_option("--limit", default=5, help="Records to print per section.", minimum=0)
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

    d = open_store(data_root).diff(a, b)
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


@click.command("stats")
@click.argument("ref")
@path_option(
    "--plot",
    "plot_dir",
    dir=True,
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

    v = open_store(data_root).resolve(ref)
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


@click.command("tag")
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
    v = open_store(data_root).tag(ref, tag, force)
    click.echo(f"{v.name}@{tag} -> {v.ref}")


COMMANDS = [ls_cmd, log_cmd, show_cmd, diff_cmd, stats_cmd, tag_cmd]
