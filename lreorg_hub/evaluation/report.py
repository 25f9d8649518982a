"""The evaluation's outputs: markdown tables in the paper's layout, JSON, and the plot.

``results.md`` follows the paper's Tables 2–8: one row per method with PSR (%) under the judge
recognizer, detection (%), APR (%) and FID; the ε sweep; APR per keyword; the recovery rate per
keyword (Table 8 layout: keywords as columns); the identity-similarity distributions.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..bundle.card import _num, _pct, main_table

__all__ = ["markdown_tables", "main_table", "write_report", "plot_privacy_utility",
           "privacy_utility_figure", "MARKERS"]


def markdown_tables(results: dict) -> str:
    cfg = results["config"]
    photos = results["photos"]
    eps = cfg["epsilon"] if cfg["epsilon"] is not None else "the bundle's default"
    parts = [
        "# Evaluation",
        "",
        f"{photos['evaluated']} photo(s), {results['faces']} face(s); "
        f"{len(photos['no_face'])} photo(s) without a detected face and "
        f"{len(photos['failed'])} unreadable photo(s) left out. Judge: {cfg['judge']}, "
        f"match when cosine similarity ≥ {cfg['threshold']}. FID features: "
        f"{cfg['fid_features']} (on aligned face crops). Latent methods: anonymize "
        f"{', '.join(cfg['anonymize']) or 'nothing'}, recover "
        f"{', '.join(cfg['recover']) or 'nothing'}, ε = {eps}, mechanism {cfg['mechanism']}. "
        f"APR over {', '.join(results['preserved_attributes']) or 'no keyword'}.",
        "",
        "## Protection and preservation (paper Tables 2–6 layout)",
        "",
        main_table(results),
    ]
    for note in results.get("warnings") or []:
        parts += ["", f"> **Note:** {note}"]
    if any(results["sweep"].values()):
        parts += ["", "## Privacy–utility sweep over ε", "",
                  "| Method | ε | PSR (%) ↑ | Detection (%) ↑ | APR (%) ↑ | FID ↓ |",
                  "|---|---|---|---|---|---|"]
        for method, keys in results["sweep"].items():
            for key in keys:
                row = results["methods"][key]
                parts.append(f"| {row['label']} | {row['epsilon']} | {_pct(row['psr'])} | "
                             f"{_pct(row['detection'])} | {_pct(row['apr'])} | "
                             f"{_num(row['fid'])} |")
    attrs = results["preserved_attributes"]
    if attrs:
        parts += ["", "## APR per keyword (%) (paper Table 7 layout)", "",
                  "| Method | " + " | ".join(attrs) + " |",
                  "|---|" + "---|" * len(attrs)]
        for key in results["main"]:
            row = results["methods"][key]
            parts.append(f"| {row['label']} | " + " | ".join(
                _pct(row["apr_per_keyword"].get(a)) for a in attrs) + " |")
    if results["recovery"]:
        names = list(results["recovery"])
        parts += ["", "## Recovery rate of each keyword (%) (paper Table 8 layout)", "",
                  "| Attribute | " + " | ".join(names) + " |", "|---|" + "---|" * len(names),
                  "| Rec rate | " + " | ".join(_pct(results["recovery"][n]) for n in names)
                  + " |"]
    parts += ["", "## Identity similarity to the input (judge, cosine)", "",
              "| Method | mean | p05 | p50 | p95 |", "|---|---|---|---|---|"]
    for key in results["main"]:
        s = results["methods"][key]["similarity"]
        if s.get("count"):
            q = s["quantiles"]
            parts.append(f"| {results['methods'][key]['label']} | {s['mean']:.3f} | "
                         f"{q['p05']:.3f} | {q['p50']:.3f} | {q['p95']:.3f} |")
    return "\n".join(parts) + "\n"


#: One marker per method, in order; colours come from matplotlib's tab10 cycle, also in
#: order, so no two methods of one plot share a colour or a marker (up to 10 methods).
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")
#: Where each method's ε labels sit around its points (points of different methods often
#: coincide, e.g. every method at PSR 100 %): one direction per method.
_LABEL_OFFSETS = ((7, 6), (7, -13), (-38, 6), (-38, -13), (7, 16), (-38, 16), (7, -23),
                  (-38, -23), (20, 0), (-50, 0))


def privacy_utility_figure(results: dict):
    """The privacy–utility figure: PSR against APR, one line per ε-method through its
    sweep (each point labelled with its ε), one point per other method; each method its own
    colour and marker. Returns the matplotlib Figure (one figure, one axes)."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on servers
    import matplotlib.pyplot as plt

    colours = plt.get_cmap("tab10").colors
    fig, ax = plt.subplots(figsize=(7.2, 5.4), dpi=120)
    index = 0
    for method, keys in results["sweep"].items():
        rows = [results["methods"][k] for k in keys]
        pts = [(100 * r["apr"], 100 * r["psr"], r["epsilon"]) for r in rows
               if r["apr"] is not None and r["psr"] is not None]
        if not pts:
            continue
        colour, marker = colours[index % 10], MARKERS[index % len(MARKERS)]
        dx, dy = _LABEL_OFFSETS[index % len(_LABEL_OFFSETS)]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=marker, color=colour,
                markersize=max(5.0, 10.0 - 2 * index), linewidth=1.5,  # coinciding points stay visible
                label=f"{rows[0]['label']} (ε sweep)")
        same: dict[tuple[float, float], list] = {}  # one label per point: "ε=0.5, 1, 4"
        for x, y, e in pts:
            same.setdefault((round(x, 6), round(y, 6)), []).append(e)
        for (x, y), eps in same.items():
            ax.annotate("ε=" + ", ".join(f"{e:g}" if isinstance(e, float) else str(e)
                                         for e in eps),
                        (x, y), textcoords="offset points", xytext=(dx, dy),
                        fontsize=8, color=colour,
                        bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none",
                                  alpha=0.8))
        index += 1
    swept = set(results["sweep"])
    for key in results["main"]:
        row = results["methods"][key]
        if row["method"] in swept or row["apr"] is None or row["psr"] is None:
            continue
        ax.scatter([100 * row["apr"]], [100 * row["psr"]], color=colours[index % 10],
                   marker=MARKERS[index % len(MARKERS)], s=60, label=row["label"],
                   zorder=3)
        index += 1
    ax.set_xlabel("APR (%) — utility ↑")
    ax.set_ylabel(f"PSR (%) — privacy ↑ ({results['config']['judge']})")
    ax.set_title("Privacy–utility trade-off")
    ax.set_xlim(-5, 110)
    ax.set_ylim(-5, 110)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:  # outside the data, so it hides no point
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
    fig.tight_layout()
    return fig


def plot_privacy_utility(results: dict, path: str | Path) -> Path:
    """Save ``privacy_utility_figure`` as a PNG."""
    import matplotlib.pyplot as plt

    fig = privacy_utility_figure(results)
    path = Path(path)
    fig.savefig(path, format="png", bbox_inches="tight")
    plt.close(fig)
    return path


def write_report(results: dict, out: str | Path) -> dict[str, Path]:
    """results.json, results.md and privacy_utility.png in ``out``."""
    out = Path(out)
    paths = {"json": out / "results.json", "markdown": out / "results.md",
             "plot": out / "privacy_utility.png"}
    paths["json"].write_text(json.dumps(results, indent=2))
    paths["markdown"].write_text(markdown_tables(results))
    plot_privacy_utility(results, paths["plot"])
    return paths
