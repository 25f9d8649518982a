"""The evaluation's outputs: markdown tables in the paper's layout, JSON, and the plot.

``results.md`` follows the paper's Tables 2–8: one row per method with PSR (%) under the judge
recognizer, detection (%), APR (%) and FID; the ε sweep; APR per keyword; the recovery rate per
keyword (Table 8 layout: keywords as columns); the identity-similarity distributions.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..bundle.card import _num, _pct, main_table

__all__ = ["markdown_tables", "main_table", "write_report", "plot_privacy_utility"]


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


def plot_privacy_utility(results: dict, path: str | Path) -> Path:
    """PSR (privacy) against APR (utility): one line per ε-method through its sweep, one
    point per other method."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on servers
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.8), dpi=120)
    for method, keys in results["sweep"].items():
        rows = [results["methods"][k] for k in keys]
        pts = [(r["apr"], r["psr"], r["epsilon"]) for r in rows
               if r["apr"] is not None and r["psr"] is not None]
        if not pts:
            continue
        ax.plot([100 * p[0] for p in pts], [100 * p[1] for p in pts], marker="o",
                label=f"{rows[0]['label']} (ε sweep)")
        for x, y, e in pts:
            ax.annotate(f"ε={e}", (100 * x, 100 * y), textcoords="offset points",
                        xytext=(4, 4), fontsize=7)
    swept = set(results["sweep"])
    for key in results["main"]:
        row = results["methods"][key]
        if row["method"] in swept or row["apr"] is None or row["psr"] is None:
            continue
        ax.scatter([100 * row["apr"]], [100 * row["psr"]], marker="s", label=row["label"])
    ax.set_xlabel("APR (%) — utility ↑")
    ax.set_ylabel(f"PSR (%) — privacy ↑ ({results['config']['judge']})")
    ax.set_title("Privacy–utility trade-off")
    ax.set_xlim(-5, 105)
    ax.set_ylim(-5, 105)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, format="png")
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
