"""Reports: a self-contained HTML file (tables, embedded PNGs) and Markdown with PNGs beside it."""

import base64
import re
from html.parser import HTMLParser

import numpy as np
import pandas as pd
from typer.testing import CliRunner

from taskrank.cli import app
from taskrank.evaluation import RANDOM, evaluate_predictions, load_gold
from taskrank.report import write_report

TASKS = ["a", "b", "c", "d"]


def _runs():
    rng = np.random.default_rng(3)
    rows = []
    for seed in (0, 1):
        for i, t in enumerate(TASKS):
            rows.append(dict(target=t, source="", seed=seed, setting="m/full", metric="accuracy",
                             value=0.6 + 0.05 * i + rng.normal(0, 0.01)))
            for j, s in enumerate(TASKS):
                if s != t:
                    rows.append(dict(target=t, source=s, seed=seed, setting="m/full", metric="accuracy",
                                     value=0.6 + 0.05 * i + 0.02 * (j - 1.5) + rng.normal(0, 0.01)))
    return pd.DataFrame(rows)


class Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.images, self.external = [], [], []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append(tag)
        if tag == "img":
            self.images.append(a.get("src", ""))
        for key in ("src", "href"):
            if a.get(key) and not a[key].startswith(("data:", "#")):
                self.external.append(a[key])


def _evaluation(tmp_path):
    _runs().to_csv(tmp_path / "runs.csv", index=False)
    gold = load_gold(tmp_path / "runs.csv")
    p = gold.pairs[["target", "source"]]
    preds = pd.concat([p.assign(method="up", score=[TASKS.index(s) for s in p.source]),
                       p.assign(method="<down>", score=[-TASKS.index(s) for s in p.source])])
    return gold, evaluate_predictions(gold, preds, boot=50, seed_boot=10)


def test_html_and_markdown_structure(tmp_path):
    gold, ev = _evaluation(tmp_path)
    html_path, md_path = write_report(tmp_path / "out", gold, ev.tidy(), ev.predictions, ev.meta, title="synthetic")
    text = html_path.read_text()
    page = Page()
    page.feed(text)
    # tables: the method comparison + one per target
    assert page.tags.count("table") == 1 + len(TASKS)
    # figures: comparison, heatmap, one ranking plot per target, all embedded (nothing external)
    assert len(page.images) == 2 + len(TASKS) and not page.external
    for src in page.images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    # every method and metric appears; names are escaped, not markup
    assert "&lt;down&gt;" in text and "<down>" not in text
    for name in (RANDOM, "ndcg_taskweb", "regret_mean@5", "rho", "kendall"):
        assert name in text
    assert "seeds [" in text                       # seed intervals from the per-seed runs
    md = md_path.read_text()
    assert "| metric (unit) | random (expected) | up | <down> |" in md
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert len(links) == 2 + len(TASKS) and all((tmp_path / "out" / x).is_file() for x in links)
    assert {p.name for p in (tmp_path / "out").glob("*.png")} == set(links)


def test_report_command_from_saved_csv(tmp_path):
    gold, ev = _evaluation(tmp_path)
    ev.save(tmp_path / "ev.csv")
    r = CliRunner().invoke(app, ["report", "--evaluation", str(tmp_path / "ev.csv"), "--matrix",
                                 str(tmp_path / "runs.csv"), "--out", str(tmp_path / "rep"), "--title", "cli"],
                           catch_exceptions=False)
    assert r.exit_code == 0, r.stderr
    text = (tmp_path / "rep" / "report.html").read_text()
    assert text.count("data:image/png;base64,") == 2 + len(TASKS) and "<title>cli</title>" in text
    # without predictions the ranking plots are left out, and the report says why
    (tmp_path / "ev.predictions.csv").unlink()
    r = CliRunner().invoke(app, ["report", "--evaluation", str(tmp_path / "ev.csv"), "--matrix",
                                 str(tmp_path / "runs.csv"), "--out", str(tmp_path / "rep2")], catch_exceptions=False)
    assert r.exit_code == 0, r.stderr
    text = (tmp_path / "rep2" / "report.html").read_text()
    assert text.count("data:image/png;base64,") == 2 and "No predictions were given" in text


def _text_boxes(fig):
    """Window extents of every text of a drawn figure and of every panel (shrunk by half a pixel)."""
    renderer = fig.canvas.get_renderer()
    boxes = []
    for ax in fig.axes:
        texts = [*ax.get_yticklabels(), *ax.get_xticklabels(), ax.title, ax.xaxis.label]
        boxes += [("text", t.get_text(), t.get_window_extent(renderer)) for t in texts if t.get_text()]
        boxes.append(("panel", ax.get_title(), ax.get_window_extent(renderer)))
    boxes.append(("text", "suptitle", fig._suptitle.get_window_extent(renderer)))
    return [(kind, name, box.padded(-0.5)) for kind, name, box in boxes]


def test_ranking_plots_give_every_source_a_row_and_no_text_overlaps():
    """Issue #15: the per-target ranking plots were 15-pixel strips with overlapping labels."""
    from taskrank.report import DPI, ranking_plot

    names = [f"tweeteval-stance-source-{i:02d}" for i in range(24)]
    rng = np.random.default_rng(0)
    gold = pd.Series(np.linspace(-0.072, 0.06, len(names))[rng.permutation(len(names))], index=names)
    orders = {f"method-{k}" + ",inputs=taskweb" * (k == 3): list(rng.permutation(names)) for k in range(7)}
    seeds = pd.DataFrame([(s, t, v + rng.normal(0, 0.01)) for t, v in gold.items() for s in range(3)],
                         columns=["seed", "source", "value"])
    fig = ranking_plot("t", gold, orders, seeds, "score")
    fig.set_dpi(DPI)
    fig.canvas.draw()
    # the gold order, then each method's, best first at the top, one row per source
    assert [[t.get_text().split(". ", 1)[1] for t in ax.get_yticklabels()] for ax in fig.axes] == [
        list(gold.sort_values(ascending=False).index), *orders.values()]
    for ax in fig.axes:
        assert ax.get_window_extent().height / len(names) >= 20  # pixels per source row
    assert fig.get_size_inches()[0] * DPI <= 1400  # shown unscaled on the report page
    boxes = _text_boxes(fig)
    clashes = [(a[1], b[1]) for i, a in enumerate(boxes) for b in boxes[i + 1:]
               if not (a[0] == b[0] == "panel") and a[2].overlaps(b[2])]
    assert clashes == []
