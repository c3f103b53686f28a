"""Training curves as a PNG (matplotlib, headless)."""

from __future__ import annotations

import json
from pathlib import Path

from corekit.runs import atomic_file

CURVES = (("loss", "eval_loss"), ("learning_rate",), ("grad_norm",))


def read_metrics(path: Path) -> list[dict]:
    """The rows of a metrics.jsonl; a line cut short by a kill is skipped."""
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue
    return rows


def plot_curves(metrics_path: Path, out: Path, title: str = "") -> Path | None:
    """Loss (train and eval), learning rate and grad norm against the step."""
    rows = read_metrics(metrics_path)
    panels = [c for c in CURVES if any(k in r for r in rows for k in c)]
    if not panels:
        return None
    # The object-oriented API without pyplot (no GUI backend machinery to import), and fixed
    # margins instead of tight_layout, which draws the figure twice: the first plot of a
    # process took 1.1 s with both, the stage's largest cost after training itself.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    width = 4.5 * len(panels)
    fig = Figure(figsize=(width, 3.4), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(panels), squeeze=False)
    for ax, keys in zip(axes[0], panels, strict=False):
        for k in keys:
            pts = [(r["step"], r[k]) for r in rows if isinstance(r.get(k), (int, float))]
            if pts:
                xs, ys = zip(*pts, strict=False)
                ax.plot(xs, ys, marker="." if len(pts) < 50 else None, label=k)
        ax.set_xlabel("step")
        ax.set_title(keys[0])
        ax.grid(alpha=0.3)
        if len(keys) > 1:
            ax.legend()
    if title:
        fig.suptitle(title)
    fig.subplots_adjust(left=0.9 / width, right=1 - 0.3 / width, bottom=0.15, top=0.8, wspace=0.35)
    with atomic_file(out) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    return out
