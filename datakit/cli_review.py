"""``datakit review``: the annotators' web UI, its progress and agreement, and its commit."""

from __future__ import annotations

import secrets
from pathlib import Path

import click

from corekit.clikit import (
    Group,
    data_root_option,
    echo_json,
    json_option,
    number_option,
    path_option,
)
from corekit.errors import ToolkitError


class ReviewGroup(Group):
    """``datakit review NAME`` serves; ``datakit review commit|status NAME`` are subcommands."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = ["serve", *args]
        return super().parse_args(ctx, args)


@click.group("review", cls=ReviewGroup)
def review_group() -> None:
    """Review a dataset version in the browser: accept, reject, edit, rate, rank.

    `datakit review NAME[@ver]` starts a local web app (127.0.0.1:8765) that
    annotators open in a browser; each names themselves, and every action
    is appended to data/NAME/reviews/vN/annotations.jsonl. `datakit review
    commit NAME` turns accepted and edited records into a new version.

    \b
    Examples:
      datakit review answers                      # then open http://127.0.0.1:8765
      datakit review answers@v2 --criteria helpfulness,safety --overlap 2
      datakit review answers --guidelines guidelines.md
      datakit review status answers               # progress and agreement
      datakit review commit answers -m "reviewed by the team"
    """


def _review(data_root: str, ref: str, **settings):  # type: ignore[no-untyped-def]
    from .review.core import Review
    from .store import DatasetStore

    return Review(DatasetStore(data_root), ref, **settings)


@review_group.command("serve")
@click.argument("ref")
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to bind. Anything but loopback requires a token.",
)
@number_option("--port", default=8765, minimum=1, maximum=65535)
@click.option(
    "--token",
    envvar="DATAKIT_REVIEW_TOKEN",
    help="Access token (env DATAKIT_REVIEW_TOKEN); made up for non-loopback hosts.",
)
@click.option(
    "--criteria",
    help="Rating criteria, comma-separated (default: the judge's: clarity,helpfulness,accuracy).",
)
@number_option(
    "--overlap",
    help="Annotators per record before it leaves the queue (default 1).",
    minimum=1,
    maximum=10,
)
@path_option("--guidelines", help="A text/Markdown file shown in the guidelines panel.")
@click.option(
    "--annotators",
    help="Comma-separated names: each gets a personal link (a token), and nobody can act "
    "under another's name. Without it names are self-chosen and the UI says so.",
)
@data_root_option
def serve_cmd(
    ref: str,
    host: str,
    port: int,
    token: str | None,
    annotators: str | None,
    criteria: str | None,
    overlap: int | None,
    guidelines: str | None,
    data_root: str,
) -> None:
    """Start the review web app for version REF (default subcommand).

    \b
    Examples:
      datakit review answers
      datakit review answers --host 0.0.0.0 --port 9000   # prints a URL with a token
      datakit review answers --annotators alice,bob       # prints a link per annotator
    """
    from .review.app import LOOPBACK, serve

    text = None
    if guidelines:
        try:
            text = Path(guidelines).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise ToolkitError(f"--guidelines {guidelines}: cannot read it ({e})") from None
    crit = tuple(c.strip() for c in criteria.split(",") if c.strip()) if criteria else None
    review = _review(data_root, ref, criteria=crit, overlap=overlap, guidelines=text)
    if host not in LOOPBACK and not token:
        token = secrets.token_urlsafe(16)
    review.save_settings()
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{port}/" + (f"?token={token}" if token else "")
    click.echo(
        f"reviewing {review.version.ref}: {len(review.records)} records, "
        f"criteria {', '.join(review.criteria)}, overlap {review.overlap}"
    )
    people = None
    if annotators:
        from .review.core import ANNOTATOR_RE

        names = [n.strip() for n in annotators.split(",") if n.strip()]
        bad = [n for n in names if not ANNOTATOR_RE.match(n)]
        if bad or not names or len(set(names)) != len(names):
            raise click.BadParameter(
                f"give distinct names of letters, digits, '.', '_' or '-' (got {annotators!r})",
                param_hint="--annotators",
            )
        people = {secrets.token_urlsafe(16): n for n in names}
        sep = "&" if token else "?"
        for key, name in people.items():
            click.echo(f"  {name}: {url}{sep}as={key}")
    click.echo(f"open {url}   (Ctrl+C stops; the log: {review.log_path})")
    serve(review, host=host, port=port, token=token, annotators=people)


@review_group.command("status")
@click.argument("ref")
@data_root_option
@json_option
def status_cmd(ref: str, data_root: str, as_json: bool) -> None:
    """Progress and inter-annotator agreement of the review of REF.

    Agreement per question on the records two or more annotators answered:
    Cohen's kappa for two annotators, Krippendorff's alpha for more.

    \b
    Examples:
      datakit review status answers
      datakit review status answers --json | jq .agreement
    """
    from .review.agreement import agreement

    review = _review(data_root, ref)
    out = {"ref": review.version.ref, **review.progress(), "agreement": agreement(review)}
    if as_json:
        echo_json(out)
        return
    st = out["status"]
    click.echo(
        f"{out['ref']}: {out['done']}/{out['total']} reviewed, {out['annotations']} "
        f"annotations by {len(out['annotators'])} annotator(s)"
    )
    click.echo("  " + ", ".join(f"{k} {v}" for k, v in st.items()))
    if out["log_lines_skipped"]:
        click.echo(
            f"  skipped {out['log_lines_skipped']} unreadable line(s) of the annotations log "
            "(each named in a warning)"
        )
    for q, a in out["agreement"].items():
        if a["value"] is None:
            click.echo(f"  agreement {q}: undefined ({a['undefined']}) on {a['items']} records")
        else:
            click.echo(f"  agreement {q}: {a['metric']} {a['value']} on {a['items']} records")
        for pair, k in (a.get("pairwise") or {}).items():
            value = k["value"] if k["value"] is not None else f"undefined ({k['undefined']})"
            click.echo(f"    {pair}: {k['metric']} {value} on {k['items']} records")


@review_group.command("commit")
@click.argument("ref")
@click.option("-o", "--out", help="Dataset to write (default: the reviewed dataset's name).")
@click.option("-m", "--message", help="Note stored in the manifest.")
@data_root_option
@json_option
def commit_cmd(
    ref: str, out: str | None, message: str | None, data_root: str, as_json: bool
) -> None:
    """Write the accepted and edited records of REF's review as a new version.

    Its parent is the reviewed version; the manifest counts the annotations
    (per action, per outcome, agreement); the log is copied beside it and
    rejected records go to rejects.jsonl. Rankings of candidates become a
    preference version OUT-preferences; a preference pair the annotators
    preferred the other way round is swapped.

    \b
    Examples:
      datakit review commit answers
      datakit review commit answers@v2 -o answers-reviewed -m "round 1"
    """
    from .review.commit import commit

    result = commit(_review(data_root, ref), out=out, message=message)
    if as_json:
        echo_json(result)
        return
    o = result["review"]["outcomes"]
    click.echo(
        f"wrote {result['version']}: {result['kept']} records kept "
        f"({o['accepted']} accepted, {o['edited']} edited; {o['rejected']} rejected, "
        f"{o['conflict']} conflicts, {o['skipped']} skipped, {o['todo']} not reviewed) "
        f"from {result['review']['annotations']} annotations"
    )
    if result["log_lines_skipped"]:
        click.echo(
            f"skipped {result['log_lines_skipped']} unreadable line(s) of the annotations log"
        )
    if "preferences" in result:
        p = result["preferences"]
        click.echo(f"wrote {p['version']}: {p['pairs']} preference pairs from rankings")
