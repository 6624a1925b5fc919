"""Plots of scoring results: performance profiles and per-workload validation curves (PNG).

    python -m algoperf_torch.scoring LOGS_DIR --output-dir scoring_results   # writes the PNGs

matplotlib is imported inside the functions and drives an Agg canvas directly (no pyplot, no
global backend or rcParams change), so importing this module costs nothing.

Drawing is kept cheap so that plotting a leaderboard (thousands of trials) costs no more than
scoring it:
- the legend sits outside the axes at a fixed place (matplotlib's `loc="best"` tests every
  candidate place against every plotted point) and the axes have a fixed position (constrained
  layout measures every artist);
- each submission's trials are one line broken by NaNs, not one line per trial, so a figure
  has a dozen artists, not thousands, and the legend one entry per submission;
- one figure is reused for every workload (building axes and ticks is most of the cost of a
  fresh figure), and PNGs are written as RGB by Pillow with light compression, atomically;
- a legend is drawn once per set of entries and its pixels copied into the next figures with
  the same entries (the target's value is in the title, so most figures share one legend);
- given `workers.Workers`, `write_plots` draws on that second process and on forks of it,
  in parallel.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from algoperf_torch.logs import atomic_write_bytes
from algoperf_torch.scoring.targets import WorkloadTarget
from algoperf_torch.scoring.workers import Workers

LINESTYLES = ("-", "--", ":", "-.")
# Axes rectangle (left, bottom, width, height, in figure fractions); the legend goes right of it.
CURVES_SIZE, CURVES_AXES, CURVES_DPI = (10.0, 5.0), (0.075, 0.1, 0.665, 0.82), 110
PROFILES_SIZE, PROFILES_AXES, PROFILES_DPI = (10.5, 5.5), (0.07, 0.1, 0.69, 0.83), 120
PROFILE_PNG = "performance_profile_by_score.png"
FIGURE_COST = 30_000  # drawing a figure costs about as much as drawing this many points


def _figure(size: tuple[float, float], rect: tuple[float, float, float, float], dpi: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=dpi)
    FigureCanvasAgg(fig)
    return fig, fig.add_axes(rect)


def _render(fig) -> np.ndarray:
    """Draw `fig` at its dpi; its pixels as a (height, width, 3) uint8 array."""
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()


def _write_png(rgb: np.ndarray, path: Path | str, dpi: float) -> Path:
    """Write (height, width, 3) uint8 pixels as an 8-bit RGB PNG, atomically.

    Pillow (matplotlib's own PNG dependency) at zlib level 1 without the alpha channel:
    about half of ``savefig``'s encoding time (RGBA, level 6) for a file of about the same size.
    """
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="png", compress_level=1, dpi=(dpi, dpi))
    atomic_write_bytes(str(path), buf.getvalue())
    return Path(path)


def _save_png(fig, path: Path | str) -> Path:
    """Render `fig` and write it as an RGB PNG."""
    return _write_png(_render(fig), path, fig.dpi)


def _pixel_box(artist, shape: tuple[int, ...]) -> tuple[slice, slice]:
    """The rows and columns of a rendered figure that `artist` covers, one pixel wider."""
    box = artist.get_window_extent()
    height, width = shape[:2]
    rows = slice(max(height - int(np.ceil(box.y1)) - 1, 0), min(height - int(box.y0) + 1, height))
    cols = slice(max(int(box.x0) - 1, 0), min(int(np.ceil(box.x1)) + 1, width))
    return rows, cols


def _style(i: int) -> dict:
    """Colour and line style of the i-th submission: ten colours, then the next line style."""
    return {"color": f"C{i % 10}", "linestyle": LINESTYLES[(i // 10) % len(LINESTYLES)]}


def _legend_outside(ax, **kwargs) -> None:
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, **kwargs)


def plot_performance_profiles(profiles: pd.DataFrame, path: Path | str, title: str = "") -> Path:
    """ρ_s(τ) of every submission on one axis.

    Args:
        profiles: submissions × τ (from `scores.performance_profiles`).
        path: the PNG to write.
        title: optional title (e.g. the rules version).

    Returns:
        The written path.
    """
    fig, ax = _figure(PROFILES_SIZE, PROFILES_AXES, PROFILES_DPI)
    taus = profiles.columns.to_numpy(dtype=float)
    for i, (submission, rho) in enumerate(profiles.iterrows()):
        ax.step(
            taus,
            rho.to_numpy(dtype=float),
            where="post",
            label=str(submission),
            linewidth=2,
            **_style(i),
        )
    ax.set_xlabel("Ratio of time to target to the fastest submission (τ)")
    ax.set_ylabel("Proportion of workloads")
    ax.set_xlim(taus.min(), taus.max())
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.4)
    ax.set_title(title or "Performance profiles")
    _legend_outside(ax, fontsize="small")
    return _save_png(fig, path)


@dataclass(frozen=True)
class CurvesFigure:
    """What one `curves_<workload>.png` shows; plain data, so a worker process can draw it."""

    workload: str
    target: WorkloadTarget
    budget: float | None
    curves: dict[str, tuple[np.ndarray, np.ndarray]]  # submission -> (times, values)

    @property
    def cost(self) -> int:
        return FIGURE_COST + sum(len(times) for times, _ in self.curves.values())


def _joined_curves(group: pd.DataFrame, metric: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """`{submission: (times, values)}`, each submission's trials joined by NaN breaks.

    A trial's time is its `score` column, else `accumulated_submission_time`; a trial lacking
    the metric or a time column is left out.
    """

    def column(name):
        return group[name] if name in group else [None] * len(group)

    parts: dict[str, tuple[list, list]] = {}
    gap = np.array([np.nan])
    for submission, values, score, accumulated in zip(
        group["submission"],
        column(metric),
        column("score"),
        column("accumulated_submission_time"),
    ):
        times = score if isinstance(score, np.ndarray) else accumulated
        if not isinstance(values, np.ndarray) or not isinstance(times, np.ndarray):
            continue
        xs, ys = parts.setdefault(submission, ([], []))
        xs += [times, gap]
        ys += [values, gap]
    return {s: (np.concatenate(xs[:-1]), np.concatenate(ys[:-1])) for s, (xs, ys) in parts.items()}


def curves_figures(
    trials: pd.DataFrame,
    targets: dict[str, WorkloadTarget],
    budgets: dict[str, float | None] | None = None,
) -> list[CurvesFigure]:
    """The data of every workload's curves figure, in workload order (workloads without a
    target or without the target's metric column have none)."""
    figures = []
    for workload, group in trials.groupby("workload", sort=True):
        target = targets.get(workload)
        if target is None or target.validation_metric not in group:
            continue
        curves = _joined_curves(group, target.validation_metric)
        figures.append(CurvesFigure(workload, target, (budgets or {}).get(workload), curves))
    return figures


def draw_curves_figures(
    figures: list[CurvesFigure], submissions: list[str], out_dir: Path | str
) -> list[Path]:
    """Write `curves_<workload>.png` for each figure; `submissions` fixes each one's style."""
    # One figure serves every workload: only the data, labels and legend change.
    fig, ax = _figure(CURVES_SIZE, CURVES_AXES, CURVES_DPI)
    lines = {
        s: ax.plot([], [], alpha=0.6, linewidth=1.2, label=s, **_style(i))[0]
        for i, s in enumerate(submissions)
    }
    target_line = ax.axhline(0.0, color="k", linestyle="--", linewidth=1, label="target")
    budget_line = ax.axvline(0.0, color="grey", linestyle=":", linewidth=1, label="budget")
    ax.set_xlabel("Submission time (s)")
    ax.grid(alpha=0.4)
    # The legend is a third of the drawing time and the same in most figures (the target's
    # value is in the title, not in it): drawn once per set of entries, then its pixels,
    # outside the axes on the plain background, are copied into the next figures.
    legends: dict[tuple[str, ...], tuple[tuple[slice, slice], np.ndarray]] = {}
    written = []
    for figure in figures:
        target = figure.target
        for submission, line in lines.items():
            line.set_visible(submission in figure.curves)
            line.set_data(*figure.curves.get(submission, ([], [])))
        target_line.set_ydata([target.validation_target] * 2)
        budget_line.set_visible(bool(figure.budget))
        budget_line.set_xdata([figure.budget or 0.0] * 2)
        ax.set_xlim(*_limits([t for t, _ in figure.curves.values()], figure.budget))
        ax.set_ylim(*_limits([v for _, v in figure.curves.values()], target.validation_target))
        ax.set_ylabel(target.validation_metric)
        ax.set_title(
            f"{figure.workload}: {target.validation_metric}, target "
            f"{target.validation_target:g} ({'lower' if target.target_minimize else 'higher'} "
            "is better)",
            y=1.0,  # a fixed place: the automatic one measures the tick labels
        )
        shown = [a for a in (*lines.values(), target_line, budget_line) if a.get_visible()]
        key = tuple(a.get_label() for a in shown)
        if key in legends:
            ax.get_legend().set_visible(False)
            rgb = _render(fig)
            box, pixels = legends[key]
            rgb[box] = pixels
        else:
            _legend_outside(ax, handles=shown, fontsize="small")
            rgb = _render(fig)
            box = _pixel_box(ax.get_legend(), rgb.shape)
            legends[key] = box, rgb[box].copy()
        path = _write_png(rgb, Path(out_dir) / _curves_png(figure), fig.dpi)
        written.append(path)
    return written


def _limits(arrays: list[np.ndarray], extra: float | None) -> tuple[float, float]:
    """The data range of `arrays` and `extra` plus 5% margins, as matplotlib's autoscale.

    Computed here rather than by `autoscale_view` on the reused axes, whose result depends
    in its last bits on the previous figure's limits (moving a grid line by a pixel)."""
    values = np.concatenate([*arrays, [np.nan if extra is None else extra]])
    finite = values[np.isfinite(values)]
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    if high - low <= 1e-12 * max(abs(low), abs(high), 1e-300):  # one value: widen by 5%
        low, high = (low - 0.05 * abs(low), high + 0.05 * abs(high)) if low else (-0.05, 0.05)
    margin = 0.05 * (high - low)
    return low - margin, high + margin


def _curves_png(figure: CurvesFigure) -> str:
    return f"curves_{figure.workload}.png"


def _balanced(figures: list[CurvesFigure], parts: int) -> list[list[CurvesFigure]]:
    """Split into `parts` lists of about equal drawing cost (largest first, onto the lightest)."""
    bins: list[list[CurvesFigure]] = [[] for _ in range(parts)]
    loads = [0] * parts
    for figure in sorted(figures, key=lambda f: -f.cost):
        k = loads.index(min(loads))
        bins[k].append(figure)
        loads[k] += figure.cost
    return [b for b in bins if b]


def plot_validation_curves(
    trials: pd.DataFrame,
    targets: dict[str, WorkloadTarget],
    out_dir: Path | str,
    budgets: dict[str, float | None] | None = None,
) -> list[Path]:
    """One PNG per workload: the validation metric against submission time, every trial.

    Args:
        trials: rows from `logs.read_submission` (several submissions concatenated).
        targets: `{workload: WorkloadTarget}` (metric and target line).
        out_dir: folder for `curves_<workload>.png`.
        budgets: optional `{workload: runtime budget}` drawn as a vertical line.

    Returns:
        The written paths, in workload order.
    """
    submissions = list(dict.fromkeys(trials["submission"]))
    return draw_curves_figures(curves_figures(trials, targets, budgets), submissions, out_dir)


def write_plots(
    out_dir: Path | str,
    profiles: pd.DataFrame,
    title: str,
    trials: pd.DataFrame | None,
    targets: dict[str, WorkloadTarget],
    budgets: dict[str, float | None] | None = None,
    workers: Workers | None = None,
) -> list[Path]:
    """`performance_profile_by_score.png` and every `curves_<workload>.png`.

    Args:
        out_dir: the output folder.
        profiles, title: as for `plot_performance_profiles`.
        trials, targets, budgets: as for `plot_validation_curves` (no curves if `trials` is
            None).
        workers: draw on these processes (`workers.start_workers`), else in this one.

    Returns:
        The written paths, the profile first, then the curves in workload order.
    """
    profile = (plot_performance_profiles, profiles, Path(out_dir) / PROFILE_PNG, title)
    figures = curves_figures(trials, targets, budgets) if trials is not None else []
    submissions = list(dict.fromkeys(trials["submission"])) if trials is not None else []
    if workers is None:
        return [profile[0](*profile[1:]), *draw_curves_figures(figures, submissions, out_dir)]
    parts = [
        [(draw_curves_figures, part, submissions, out_dir)]
        for part in _balanced(figures, workers.count)
    ]
    parts = [[profile], *parts] if not parts else [[*parts[0], profile], *parts[1:]]
    results = workers.run_parts(parts)
    curves = {p.name: p for r in results if isinstance(r, list) for p in r}
    return [Path(out_dir) / PROFILE_PNG, *(curves[_curves_png(f)] for f in figures)]
