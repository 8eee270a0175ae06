"""Write the model-template gallery (MyST markdown) from the files in model_templates/.

    python docs/_scripts/make_gallery.py [OUTDIR]     # default: docs/gallery

One page per template plus an index with a table and a toctree. The pages are committed; the
test suite checks that they match what this script writes from the current template files.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from nlme_bayes import templates  # noqa: E402

CATEGORIES = ("pharmacokinetics", "pharmacodynamics", "growth curves", "disease dynamics")


def _order(t: templates.Template) -> tuple:
    """One-, two-, three-compartment; bolus, infusion, oral, oral with lag; then by name."""
    words = t.name.split("_")
    n = {"one": 1, "two": 2, "three": 3}.get(words[0], 9)
    route = {"iv": 0, "infusion": 1, "oral": 2}.get(words[2] if len(words) > 2 else "", 9)
    if n == 9:  # the ODE PK models: Michaelis-Menten, mixed, transit, TMDD
        n = 4
    return (n, route, len(words), t.name)


def index_page(items: list[templates.Template]) -> str:
    lines = [
        "---",
        "orphan: true",
        "---",
        "",
        "(template-gallery)=",
        "",
        "# Model template gallery",
        "",
        "Ready-made models, one file each in `model_templates/`: load one by name with",
        '`nlme_bayes.templates.load("two_cmt_oral")` and customise it without editing the file',
        "(`typical=`, `priors=`, `covariates=`, `iiv=`, `error=`, `omega=`). Each page gives",
        "the equations, the parameters with units, the default priors and why, the data columns",
        "the model expects and a reference. Every template is simulated, fitted and recovered",
        "by the test suite (small size) and by `benchmarks/validate_templates.py` (full size).",
        "",
    ]
    order = {c: i for i, c in enumerate(CATEGORIES)}
    groups: dict[str, list[templates.Template]] = {}
    for t in items:
        groups.setdefault(t.category, []).append(t)
    for cat in sorted(groups, key=lambda c: (order.get(c, len(order)), c)):
        lines += [
            f"## {cat[:1].upper() + cat[1:]}",
            "",
            "| template | model | parameters |",
            "|---|---|---|",
        ]
        for t in groups[cat]:
            params = ", ".join(f"`{p.name}`" for p in t.parameters)
            lines.append(f"| {{ref}}`{t.name} <template-{t.name}>` | {t.title} | {params} |")
        lines.append("")
    lines += ["```{toctree}", ":hidden:", ""] + [t.name for t in items] + ["```", ""]
    return "\n".join(lines)


def write_gallery(outdir: Path) -> list[Path]:
    outdir.mkdir(parents=True, exist_ok=True)
    items = sorted((templates.get(n) for n in templates.available()), key=_order)
    written = [outdir / "index.md"]
    written[0].write_text(index_page(items), encoding="utf-8")
    for t in items:
        path = outdir / f"{t.name}.md"
        path.write_text(templates.markdown(t), encoding="utf-8")
        written.append(path)
    for stale in set(outdir.glob("*.md")) - set(written):
        stale.unlink()
    return written


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "gallery"
    for p in write_gallery(out):
        print(p.relative_to(out.parent) if p.is_relative_to(out.parent) else p)
