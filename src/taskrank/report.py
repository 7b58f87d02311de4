"""Reports: one self-contained HTML file (figures embedded as base64 PNG) and a Markdown file
(figures as PNG files beside it) from a transfer matrix and an evaluation.

Contents: the method-comparison table (every metric, mean over targets with the bootstrap
interval over targets and, where known, the interval over training seeds), a bar chart of the
headline metrics, the transfer-matrix heatmap, and per target a ranking plot — for each method
the sources top-down in its predicted order with their *true* gold values as bars (a perfect
method's bars shrink downwards, as in the first panel, the gold order), the per-seed gold values
as dots where per-seed runs are known; one row per source, so names stay readable — plus the
per-target metric table.
"""

from __future__ import annotations

import base64
import html
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd

from .evaluation import RANDOM, Gold, is_scaled
from .ordering import sorted_best_first
from .transfer.matrix import pair_table

__all__ = ["write_report", "plot_heatmap", "HEADLINE"]

HEADLINE = ("ndcg_taskweb", "regret_mean@5")


def _fig(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "x"


def _fmt(v, metric: str) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    v = 0.0 if abs(v) < 5e-12 else v  # no "-0.0" from float noise
    if metric == "rho" or is_scaled(metric):
        return f"{v:.1f}" if abs(v) >= 1 or v == 0 else f"{v:.3f}"
    return f"{v:.3f}"


def _cell(row: pd.Series, metric: str) -> tuple[str, str]:
    """(main value, interval text) for one summary row."""
    main = _fmt(row["value"], metric)
    parts = []
    if pd.notna(row.get("boot_lo")):
        parts.append(f"[{_fmt(row['boot_lo'], metric)}, {_fmt(row['boot_hi'], metric)}]")
    if pd.notna(row.get("seed_lo")):
        parts.append(f"seeds [{_fmt(row['seed_lo'], metric)}, {_fmt(row['seed_hi'], metric)}]")
    return main, " ".join(parts)


# ----------------------------------------------------------------------------- figures


def _comparison_figure(summary: pd.DataFrame, metrics: list[str], methods: list[str], unit: dict, path: Path) -> Path:
    """One horizontal bar chart per metric, methods top to bottom: readable for 3 or 40 methods."""
    fig = _fig(4.5 * len(metrics) + 1.5, 0.24 * len(methods) + 1.4)
    pos = np.arange(len(methods))[::-1]
    palette = [f"C{k}" for k in (0, 1, 2, 3, 4, 5, 6, 8, 9)]  # C7 is grey: kept for random
    colors = ["0.6" if m == RANDOM else palette[j % len(palette)] for j, m in enumerate(methods)]
    for i, metric in enumerate(metrics):
        ax = fig.add_subplot(1, len(metrics), i + 1)
        d = summary[summary["metric"] == metric].set_index("method").reindex(methods)
        y = d["value"].to_numpy(dtype=float)
        lo = (y - d["boot_lo"].to_numpy(dtype=float)) if "boot_lo" in d else np.zeros_like(y)
        hi = (d["boot_hi"].to_numpy(dtype=float) - y) if "boot_hi" in d else np.zeros_like(y)
        err = np.nan_to_num(np.vstack([lo, hi]), nan=0.0)
        ax.barh(pos, y, xerr=err, color=colors, capsize=2, height=0.7)
        ax.set_yticks(pos, methods if i == 0 else [""] * len(methods), fontsize=7)
        ax.set_ylim(-0.7, len(methods) - 0.3)
        ax.set_title(f"{metric} ({unit.get(metric, '')})", fontsize=9)
        ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


def plot_heatmap(pairs: pd.DataFrame, path, value: str = "PC", setting: str | None = None, title: str | None = None) -> Path:
    """Write a PNG heatmap: targets as rows, sources as columns, missing pairs grey.

    A diverging colour scale centred on 0 (the signs of PC/score matter); Agg canvas, so no
    display and no change to the global matplotlib backend.
    """
    from matplotlib import colormaps

    if value not in pairs.columns:
        raise ValueError(f"pair table has no column {value!r}")
    if pairs.empty:
        raise ValueError("pair table is empty: no (target, source) pair has results yet")
    settings = pairs["setting"].unique().tolist()
    if setting is None and len(settings) > 1:
        raise ValueError(f"pair table holds several settings {settings}; pass setting=")
    d = pairs if setting is None else pairs[pairs["setting"] == setting]
    m = d.pivot_table(index="target", columns="source", values=value, aggfunc="first", dropna=False)
    m = m.sort_index().sort_index(axis=1)
    a = m.to_numpy(dtype=float)
    lim = float(np.nanmax(np.abs(a))) if np.isfinite(a).any() else 0.0
    lim = lim if lim > 0 else 1.0
    fig = _fig(0.35 * a.shape[1] + 3, 0.35 * a.shape[0] + 2)
    ax = fig.add_subplot()
    cmap = colormaps["RdBu"].with_extremes(bad="0.8")  # missing pairs grey, not "0"
    im = ax.imshow(np.ma.masked_invalid(a), cmap=cmap, vmin=-lim, vmax=lim, aspect="auto")
    ax.set_xticks(range(a.shape[1]), m.columns, rotation=90, fontsize=7)
    ax.set_yticks(range(a.shape[0]), m.index, fontsize=7)
    ax.set_xlabel("source")
    ax.set_ylabel("target")
    ax.set_title(title or f"{value} ({setting or settings[0]})", fontsize=9)
    fig.colorbar(im, ax=ax, label=value)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    return path


def _per_seed_gold(gold: Gold) -> pd.DataFrame | None:
    """(seed, target, source, value of gold.by) for every seed alone, where runs are known."""
    if gold.runs is None:
        return None
    parts = []
    for s in gold.seeds:
        pt = pair_table(gold.runs[gold.runs["seed"] == s])
        parts.append(pt[["target", "source", gold.by]].assign(seed=s))
    out = pd.concat(parts, ignore_index=True).rename(columns={gold.by: "value"})
    return out.dropna(subset=["value"])


# a ranking panel: names down the left, so each source gets a readable row whatever the count
ROW_INCHES = 0.24       # per source
PAGE_INCHES = 13.5      # the widest figure that the HTML page shows unscaled (at DPI)
DPI = 100


def ranking_plot(target: str, gold_values: pd.Series, orders: dict[str, list[str]], seed_values: pd.DataFrame | None,
                 gold_by: str):
    """The figure of :func:`_ranking_figure`: one panel per method (the gold order first), the
    sources top-down in the method's order as horizontal bars of their true gold value (a perfect
    method's bars shrink downwards), per-seed values as dots. Panels sit side by side, as many to a
    row as fit the page, each ``ROW_INCHES`` per source tall so the names never overlap."""
    from matplotlib.ticker import MaxNLocator

    panels = {"gold order": sorted_best_first(gold_values.index, gold_values.to_numpy()), **orders}
    n = max(len(gold_values), 1)
    longest = max([len(f"{n}. {s}") for s in gold_values.index] or [10])  # "17. name"
    width = 0.07 * min(longest, 48) + 2.1  # names at 8 pt, then the bars
    cols = max(1, min(len(panels), int(PAGE_INCHES // width)))
    rows = math.ceil(len(panels) / cols)
    height = ROW_INCHES * n + 1.1
    fig = _fig(cols * width, rows * height + 0.4)
    fig.set_layout_engine("constrained")
    lim = float(np.nanmax(np.abs(gold_values.to_numpy()))) if len(gold_values) else 1.0
    if seed_values is not None and len(seed_values):
        lim = max(lim, float(np.nanmax(np.abs(seed_values["value"].to_numpy()))))
    lim = lim if np.isfinite(lim) and lim > 0 else 1.0
    for i, (name, order) in enumerate(panels.items()):
        ax = fig.add_subplot(rows, cols, i + 1)
        vals = gold_values.reindex(order).to_numpy(dtype=float)
        pos = np.arange(len(order))
        ax.barh(pos, vals, height=0.7, color=["C2" if v > 0 else "C3" for v in vals], alpha=0.8)
        if seed_values is not None and len(seed_values):
            at = {s: j for j, s in enumerate(order)}
            sv = seed_values[seed_values["source"].isin(at)]
            ax.scatter(sv["value"], sv["source"].map(at), s=9, color="k", zorder=3, label="per seed")
        ax.axvline(0, color="0.3", lw=0.6)
        ax.set_ylim(len(order) - 0.4, -0.6)  # best first, at the top
        ax.set_xlim(-1.1 * lim, 1.1 * lim)
        ax.set_yticks(pos, [f"{j + 1}. {s}" for j, s in enumerate(order)], fontsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(nbins=4, symmetric=True))  # room for "−0.075"
        ax.tick_params(axis="x", labelsize=7)
        ax.grid(axis="x", color="0.9", lw=0.5)
        ax.set_axisbelow(True)
        ax.set_xlabel(f"true {gold_by}", fontsize=8)
        room = int((width - 0.07 * min(longest, 48)) * 13)  # characters of 9 pt over the bars
        ax.set_title(name if len(name) <= room else name[:room - 1] + "…", fontsize=9, loc="left",
                     fontweight="bold" if name == "gold order" else "normal")
    fig.suptitle(f"target {target}: the true {gold_by} of the sources, in each method's order (its best first)",
                 fontsize=10)
    return fig


def _ranking_figure(target: str, gold_values: pd.Series, orders: dict[str, list[str]], seed_values: pd.DataFrame | None,
                    gold_by: str, path: Path) -> Path:
    ranking_plot(target, gold_values, orders, seed_values, gold_by).savefig(path, dpi=DPI)
    return path


# ----------------------------------------------------------------------------- tables


def _table_html(header: list[str], rows: list[list[str]], cls: str = "") -> str:
    head = "".join(f"<th>{h}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _table_md(header: list[str], rows: list[list[str]]) -> str:
    esc = lambda s: str(s).replace("|", "\\|")
    lines = ["| " + " | ".join(esc(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(esc(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _img_html(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(alt)}">'


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222;max-width:1400px}
h1{font-size:22px} h2{font-size:18px;margin-top:32px;border-bottom:1px solid #ddd} h3{font-size:15px}
table{border-collapse:collapse;font-size:12px;margin:8px 0 16px} th,td{border:1px solid #ccc;padding:3px 7px}
th{background:#f3f3f3} td{text-align:right} td:first-child{text-align:left;font-weight:600}
td small{color:#666;display:block;font-size:10px} .scroll{overflow-x:auto}
img{max-width:100%;border:1px solid #eee;margin:6px 0} .meta{color:#555;font-size:13px}
"""


# ----------------------------------------------------------------------------- report


def write_report(out: str | Path, gold: Gold, results: pd.DataFrame, predictions: pd.DataFrame | None = None,
                 meta: dict | None = None, title: str = "taskrank report",
                 headline: tuple[str, ...] = HEADLINE) -> tuple[Path, Path]:
    """Write ``report.html`` (self-contained), ``report.md`` and the PNG figures into ``out``.

    ``results``: the tidy evaluation (``Evaluation.tidy()`` or ``read_evaluation``): method,
    target ("(mean)" for averages), metric, value, boot/seed intervals, unit. ``predictions``
    (method, target, source, score) give the per-target ranking plots; without them those plots
    are left out and the report says so.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    meta = meta or {}
    summary = results[results["target"] == "(mean)"].copy()
    per_target = results[results["target"] != "(mean)"].copy()
    methods = list(dict.fromkeys(summary["method"]))
    metric_names = list(dict.fromkeys(summary["metric"]))
    unit = dict(zip(results["metric"], results["unit"])) if "unit" in results else {}
    h: list[str] = []   # HTML body
    md: list[str] = []  # Markdown

    # --- header
    facts = [("ground truth", meta.get("gold", gold.origin)), ("setting", meta.get("setting", gold.setting)),
             ("gold order by", meta.get("gold_by", gold.by)), ("performance", meta.get("perf", gold.perf)),
             ("targets", f"{len(per_target['target'].unique())}"), ("excluded", ", ".join(meta.get("excluded", [])) or "–"),
             ("units", "NDCG and Regret ×100" if meta.get("percent", True) else "NDCG and Regret as fractions")]
    if meta.get("boot"):
        facts.append(("intervals", f"{int(round(100 * meta.get('level', 0.95)))}% bootstrap over targets "
                      f"({meta['boot']} draws)" + (f"; over seeds {meta.get('seeds')} ({meta['seed_boot']} draws)"
                                                   if meta.get("seed_boot") else "")))
    notes = list(meta.get("notes", [])) + list(gold.notes)
    h.append(f"<h1>{html.escape(title)}</h1><p class='meta'>" + "<br>".join(
        f"<b>{html.escape(k)}</b>: {html.escape(str(v))}" for k, v in facts) + "</p>")
    md += [f"# {title}", ""] + [f"- **{k}**: {v}" for k, v in facts] + [""]
    for n in dict.fromkeys(notes):
        h.append(f"<p class='meta'>note: {html.escape(n)}</p>")
        md.append(f"> note: {n}\n")

    # --- method comparison
    header = ["metric (unit)"] + [html.escape(m) for m in methods]
    rows_h, rows_m = [], []
    by = summary.set_index(["metric", "method"])
    for metric in metric_names:
        rh, rm = [f"{html.escape(metric)} <small>{html.escape(unit.get(metric, ''))}</small>"], [f"{metric} ({unit.get(metric, '')})"]
        for m in methods:
            if (metric, m) not in by.index:
                rh.append("–"), rm.append("–")
                continue
            main, ci = _cell(by.loc[(metric, m)], metric)
            rh.append(f"{main}<small>{html.escape(ci)}</small>")
            rm.append(f"{main} {ci}".strip())
        rows_h.append(rh)
        rows_m.append(rm)
    h.append("<h2>Method comparison (mean over targets)</h2>")
    h.append("<p class='meta'>Lower is better for Regret and ρ (rank of the best source); higher for the rest. "
             "Brackets: interval over targets; 'seeds': interval over training seeds.</p>")
    h.append(f"<div class='scroll'>{_table_html(header, rows_h, 'summary')}</div>")
    md += ["## Method comparison (mean over targets)", "",
           "Lower is better for Regret and rho; higher for the rest. Brackets: interval over targets; "
           "'seeds': interval over training seeds.", "", _table_md(["metric (unit)", *methods], rows_m), ""]
    heads = [m for m in headline if m in metric_names] or metric_names[:2]
    comp = _comparison_figure(summary, heads, methods, unit, out / "comparison.png")
    h.append(_img_html(comp, "method comparison"))
    md += [f"![method comparison]({comp.name})", ""]

    # --- heatmap
    heat = plot_heatmap(gold.pairs, out / "heatmap.png", value=gold.by,
                        title=f"transfer matrix: {gold.by} ({gold.setting or gold.origin})")
    h.append("<h2>Transfer matrix</h2>" + _img_html(heat, "transfer matrix heatmap"))
    md += ["## Transfer matrix", "", f"![transfer matrix heatmap]({heat.name})", ""]

    # --- per target
    h.append("<h2>Per target</h2>")
    md += ["## Per target", ""]
    seeds = _per_seed_gold(gold)
    if predictions is None or predictions.empty:
        msg = "No predictions were given, so there are no ranking plots (evaluate with --out to keep them)."
        h.append(f"<p class='meta'>{msg}</p>")
        md += [msg, ""]
    elif seeds is None:
        msg = "Per-seed runs are not known for this matrix, so the plots show no seed spread."
        h.append(f"<p class='meta'>{msg}</p>")
        md += [msg, ""]
    key = [m for m in ("ndcg_taskweb", "ndcg_esm", "regret_mean@5", "regret_max@1", "rho", "precision@5", "spearman")
           if m in metric_names]
    for target in sorted(per_target["target"].unique()):
        d = per_target[per_target["target"] == target].set_index(["method", "metric"])["value"]
        rows_h, rows_m = [], []
        for m in methods:
            cells = [_fmt(d.get((m, k), math.nan), k) for k in key]
            rows_h.append([html.escape(m), *cells])
            rows_m.append([m, *cells])
        h.append(f"<h3 id='t-{_slug(target)}'>{html.escape(target)}</h3>")
        h.append(_table_html(["method", *[html.escape(k) for k in key]], rows_h, "target"))
        md += [f"### {target}", "", _table_md(["method", *key], rows_m), ""]
        if predictions is not None and not predictions.empty:
            gv, _, _ = gold.target(target)
            p = predictions[predictions["target"] == target]
            orders = {}
            for m, pm in p.groupby("method", sort=False):
                pm = pm[pm["source"].isin(gv.index)]
                orders[m] = sorted_best_first(pm["source"], pm["score"].to_numpy())
            if orders:
                sv = None if seeds is None else seeds[seeds["target"] == target]
                gv = gv.reindex(sorted(set().union(*orders.values()) & set(gv.index)))
                fig = _ranking_figure(target, gv, orders, sv, gold.by, out / f"ranking-{_slug(target)}.png")
                h.append(_img_html(fig, f"rankings for {target}"))
                md += [f"![rankings for {target}]({fig.name})", ""]

    page = (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{CSS}</style></head><body>{''.join(h)}</body></html>")
    html_path = out / "report.html"
    html_path.write_text(page, encoding="utf-8")
    md_path = out / "report.md"
    md_path.write_text("\n".join(md) + "\n", encoding="utf-8")
    return html_path, md_path
