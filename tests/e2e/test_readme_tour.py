"""The README's CLI tour, command by command, as a new user would type it.

Every line of the tour's code block must name a command that exists and options it accepts
with values it accepts (parsed by the real Click commands, in a directory holding the files
the tour names). Every line that needs no model engine or trainer then runs for real, in
order, on a temporary data root, and must exit 0 without a traceback. The generate and
judge lines run unchanged against a real vLLM server on loopback serving the tiny trained
model under the tour's model names (``DATAKIT_BACKEND=openai`` and ``DATAKIT_BASE_URL`` point
them at it; the fleet line's two addresses are replaced by the loopback one). The lines that
run the demo's pipeline or train (datakit run, trainkit run/show/merge, torchrun,
accelerate) are parsed here and run in tests/e2e/test_e2e.py (``make demo`` runs
``datakit run`` and ``trainkit run`` on a copy of the same pipeline.yaml),
tests/trainkit/integration/test_train_merge.py and test_train_ddp.py; the datasets the engine lines
make are written by the curation test under the same names, so it runs on real inputs.
"""

from __future__ import annotations

import json
import re
import shlex

import click
import pytest
from click.testing import CliRunner

from datakit.cli import cli as datakit
from evalkit.cli import cli as evalkit
from tests.conftest import ROOT
from trainkit.cli import cli as trainkit

GROUPS = {"datakit": datakit, "trainkit": trainkit, "evalkit": evalkit}
# lines that start an engine or a trainer: parsed only (see the module docstring)
ENGINE = {("datakit", "generate"), ("datakit", "judge"), ("datakit", "run"),
          ("trainkit", "run"), ("trainkit", "merge")}  # fmt: skip


def tour() -> list[list[str]]:
    text = (ROOT / "README.md").read_text()
    block = text.split("## CLI tour", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    block = re.sub(r"\$\([^)]*\)", "SUBST", block.replace("\\\n", " "))  # $(...) -> a word
    return [args for line in block.splitlines() if (args := shlex.split(line, comments=True))]


def kit_args(args: list[str]) -> tuple[str, list[str]]:
    """(kit, its arguments) of a tour line; a launcher (torchrun, accelerate) runs
    ``-m trainkit ...``; a shell redirection or pipe ends the command."""
    for k, a in enumerate(args):
        if a in (">", ">>", "|", "&&"):
            args = args[:k]
            break
    if args[0] in GROUPS:
        return args[0], args[1:]
    assert args[0] in ("torchrun", "accelerate"), args
    k = args.index("-m")
    return args[k + 1], args[k + 2 :]


def parse(kit: str, args: list[str]) -> click.Command:
    """Resolve the command and parse its arguments for real (unknown commands, options and
    bad values raise click's usage errors), the way the group itself routes them."""
    cmd: click.Command = GROUPS[kit]
    ctx = cmd.make_context(kit, list(args), resilient_parsing=True)
    while isinstance(cmd, click.Group):
        rest = [*ctx._protected_args, *ctx.args]  # what the group left for a subcommand
        name, sub, rest = cmd.resolve_command(ctx, rest)
        assert sub is not None, f"{ctx.command_path} has no command {name!r}"
        parent, cmd = ctx, sub
        ctx = cmd.make_context(name, list(rest), parent=parent, resilient_parsing=True)
    with cmd.make_context(ctx.info_name, list(rest), parent=ctx.parent):
        pass  # the full parse: types, choices, ranges, required options
    return cmd


def records(n: int, stem: str, judged: bool = False) -> str:
    rows = []
    for i in range(n):
        row = {"instruction": f"{stem} task number {i}: explain item {i * 7}.",
               "output": f"A plain answer about item {i * 7}, long enough to keep."}  # fmt: skip
        if judged:
            row["meta"] = {"judge": {"quality": 0.9}}
        rows.append(json.dumps(row))
    return "\n".join(rows) + "\n"


@pytest.fixture
def tour_dir(tmp_path, monkeypatch, tiny_trained):
    """The files and datasets the tour names, in a fresh directory."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DATAKIT_DATA_ROOT", raising=False)
    tasks = [{"name": f"t{i}", "instruction": f"Write a short line about topic {i}.",
              "instances": [{"input": "", "output": f"Topic {i} is fine."}],
              "is_classification": False} for i in range(6)]  # fmt: skip
    (tmp_path / "seed_tasks.jsonl").write_text("".join(json.dumps(t) + "\n" for t in tasks))
    (tmp_path / "more_tasks.jsonl").write_text(
        "".join(
            json.dumps(
                {**t, "name": t["name"] + "b", "instruction": t["instruction"] + " Be brief."}
            )
            + "\n"
            for t in tasks
        )  # fmt: skip
    )
    chat = {
        "messages": [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Hello."}]
    }
    (tmp_path / "chats.jsonl").write_text(json.dumps(chat) + "\n")
    (tmp_path / "train.jsonl").write_text(json.dumps(chat) + "\n")
    pref = {"prompt": [{"role": "user", "content": "Hi?"}],
            "chosen": [{"role": "assistant", "content": "Hello."}],
            "rejected": [{"role": "assistant", "content": "No."}]}  # fmt: skip
    (tmp_path / "prefs.jsonl").write_text(json.dumps(pref) + "\n")
    text = (ROOT / "pipeline.yaml").read_text()
    (tmp_path / "pipeline.yaml").write_text(
        text.replace("source: datakit/", f"source: {ROOT}/datakit/").replace(
            "source: evalkit/", f"source: {ROOT}/evalkit/"
        )
    )
    for name, n, judged in (("grown", 12, False), ("evalset", 4, False), ("answers", 10, False),
                            ("judged", 8, True), ("synthetic", 800, False), ("general", 200, False)):  # fmt: skip
        (tmp_path / f"{name}.src.jsonl").write_text(records(n, name, judged))
    return tmp_path


def test_every_tour_line_names_a_real_command_with_options_it_takes(tour_dir):
    lines = tour()
    assert len(lines) >= 40
    for args in lines:
        kit, rest = kit_args(args)
        try:
            parse(kit, rest)
        except click.UsageError as e:
            pytest.fail(f"README tour: `{' '.join(args)}`: {e.format_message()}")


def run_line(kit: str, args: list[str]) -> tuple[int, str]:
    res = CliRunner().invoke(GROUPS[kit], args, catch_exceptions=False)
    return res.exit_code, res.output


def test_the_tour_runs(tour_dir, tiny_trained):
    """Each line that needs no engine runs in order and exits 0; the datasets the engine
    lines make are written under their names just before the first line that reads them."""
    made = {"grown", "evalset", "answers", "judged", "synthetic", "general"}
    ran = []
    for args in tour():
        kit, rest = kit_args(args)
        if args[0] != kit or (kit, rest[0]) in ENGINE:
            continue
        if rest[:2] == ["estimate", "--model"]:
            rest[2] = str(tiny_trained)  # the tour's path/to/llama-7b
        if rest[0] in ("show",) and kit == "trainkit":
            continue  # needs a training run (tests/trainkit/integration/test_train.py)
        for name in list(made):
            if name in rest[1:2] or any(a.split(":")[0] == name for a in rest[1:3]):
                code, out = run_line("datakit", ["import", f"{name}.src.jsonl", "--name", name])
                assert code == 0, out
                made.discard(name)
        if rest[0] == "dedup" and "--explain" in rest:
            rest[rest.index("--explain") + 1] = "grown-0"  # the tour's placeholder ID
        code, out = run_line(kit, rest)
        assert "Traceback" not in out
        assert code == 0, f"README tour: `{' '.join(args)}` exited {code}:\n{out[-2000:]}"
        ran.append(" ".join(args[:3]))
    assert len(ran) >= 25, ran


def help_examples() -> list[tuple[str, list[str]]]:
    """(kit, arguments) of every example line in every command's --help."""
    out = []

    def walk(kit: str, cmd: click.Command) -> None:
        if isinstance(cmd, click.Group):
            for sub in cmd.commands.values():
                walk(kit, sub)
        text = re.sub(r"\\\n\s*", " ", cmd.help or "")  # continuation lines joined
        if "Examples:" in text:
            for line in text.split("Examples:", 1)[1].splitlines():
                line = line.strip()
                if not line.startswith((*GROUPS, "torchrun", "accelerate")):
                    continue  # prose, or another tool (cp, jq)
                out.append(
                    kit_args(shlex.split(re.sub(r"\$\([^)]*\)", "SUBST", line), comments=True))
                )

    for kit, group in GROUPS.items():
        walk(kit, group)
    return out


def test_every_help_example_names_a_real_command_with_options_it_takes(tour_dir):
    examples = help_examples()
    assert len(examples) > 60
    for kit, args in examples:
        try:
            parse(kit, args)
        except click.UsageError as e:
            pytest.fail(f"--help example `{kit} {' '.join(args)}`: {e.format_message()}")


ORDER = ["grown", "evolved", "answers", "distilled", "rephrased", "safety-prefs", "prefs", "judged"]


def test_the_tour_engine_lines_run_against_a_loopback_server(tour_dir, vllm_server, monkeypatch):
    """Every generate and judge line of the tour, in order, exactly as written (the models
    are the server's names for the tiny trained model): each exits 0 and writes its
    dataset, or (where the tiny model's text is unusable) fails as an empty result must:
    one line, exit 1, nothing written."""
    monkeypatch.setenv("DATAKIT_BACKEND", "openai")
    monkeypatch.setenv("DATAKIT_BASE_URL", vllm_server)
    (tour_dir / "prompts.jsonl").write_text(
        "".join(json.dumps({"prompt": f"Name a colour, number {i}."}) + "\n" for i in range(4))
    )
    code, out = run_line("datakit", ["import", "prompts.jsonl", "--name", "prompts"])
    assert code == 0, out
    ran, empty = [], []
    for args in tour():
        kit, rest = kit_args(args)
        if (kit, rest[0]) == ("datakit", "import") and "seed_tasks.jsonl" in rest:
            code, out = run_line(kit, rest)  # seeds@v1, which the tour grows from
            assert code == 0, out
        if (kit, rest[0]) not in {("datakit", "generate"), ("datakit", "judge")}:
            continue
        rest = [vllm_server if a.startswith("http://10.0.0.") else a for a in rest]
        code, out = run_line(kit, rest)
        assert "Traceback" not in out
        name = rest[rest.index("-o") + 1]
        if code == 1 and f"{name}: " in out and " made no records from " in out:
            # what the tiny model could not do (rephrase, critique): the empty-result
            # contract, one line and nothing written
            assert len(out.strip().splitlines()) == 1, out
            assert not (tour_dir / "data" / name).exists(), name
            empty.append(name)
            continue
        assert code == 0, f"README tour: `{' '.join(args)}` exited {code}:\n{out[-2000:]}"
        assert (tour_dir / "data" / name / "v1" / "manifest.json").is_file(), name
        ran.append(name)
    assert sorted(ran + empty, key=ORDER.index) == ORDER, (ran, empty)  # every line ran
    # the paths the rest of the tour stands on make data even on the tiny model
    assert {"grown", "answers", "distilled", "judged"} <= set(ran), (ran, empty)
