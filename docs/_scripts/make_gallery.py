"""Write the model-template gallery (MyST markdown) from the files in model_templates/.

    python docs/_scripts/make_gallery.py [OUTDIR]     # default: docs/gallery

One page per template plus an index with a table and a toctree. The pages are committed; the
test suite checks that they match what this script writes from the current template files.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from nlme_bayes import templates  # noqa: E402


def _md_cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _prior_text(prior: Any) -> str:
    args = ", ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v!r}" for k, v in prior.params
    )
    return f"{prior.dist}({args})"


def markdown(template: templates.Template | str) -> str:
    """The template's documentation page (MyST markdown)."""
    t = template if isinstance(template, templates.Template) else templates.get(template)
    model = t.model()
    out = [f"(template-{t.name})=", "", f"# {t.title}", ""]
    out += [
        f'`templates.load("{t.name}")` · {t.category} · file `model_templates/{t.path.name}`',
        "",
        t.description,
        "",
    ]
    out += ["## Equations", ""]
    for eq in t.equations:
        out += ["```{math}", eq, "```", ""]
    out += [f"Structure: {model.structure.describe()}.", ""]
    if t.units:
        out += ["Units: " + ", ".join(f"{k} {v}" for k, v in t.units.items()) + ".", ""]
    out += [
        "## Parameters and default priors",
        "",
        "| parameter | units | meaning | typical | prior (typical value) | random effect "
        "| why this prior |",
        "|---|---|---|---|---|---|---|",
    ]
    for info in t.parameters:
        p = model.parameter(info.name)
        re_text = p.iiv or "none"
        if p.iiv and p.centered:
            re_text += " (centred)" if p.centered is True else " (centring: auto)"
        out.append(
            f"| `{p.name}` | {_md_cell(info.units)} | {_md_cell(info.description)} | "
            f"{p.typical:g} | `{_prior_text(p.effective_prior)}` | {re_text} | "
            f"{_md_cell(info.justification)} |"
        )
    out += [
        "",
        f"**Random effects.** `{model.omega!r}`. {t.notes['omega']}"
        + (
            " Centring `auto`: each Omega block is centred or not from the design when the "
            "model is built (see the parameters guide)."
            if any(model.parameter(n).centered == "auto" for n in model.iiv_names)
            else ""
        ),
        "",
        f"**Residual error.** `{model.error!r}`. {t.notes['error']}",
        "",
    ]
    out += [
        "## Data",
        "",
        "Columns: " + ", ".join(f"`{c}`" for c in t.data_columns) + ".",
        "",
        t.data_notes,
        "",
    ]
    ex = t.spec.get("example")
    if ex:
        doses = list(ex.get("doses", ()))
        regimens = doses if doses and isinstance(doses[0], list) else [doses]
        text = [
            "; ".join(
                f"AMT {d['amt']:g} at TIME {d['time']:g} into CMT {d.get('cmt', 0)}"
                + (f" at RATE {d['rate']:g}" if d.get("rate") else "")
                for d in regimen
            )
            for regimen in regimens
        ]
        if not doses:
            dose = "no doses"
        elif len(text) == 1:
            dose = text[0]
        else:
            dose = "in turn " + " / ".join(f"({r})" for r in text)
        if list(ex.get("dvids", (1,))) != [1]:
            dose += f"; each time observed for DVID {', '.join(map(str, ex['dvids']))}"
        cols = "".join(
            f"; {k} = {', '.join(f'{v:g}' for v in vals)}"
            for k, vals in ex.get("columns", {}).items()
        )
        out += [
            'Example design (`templates.get("' + t.name + '").example_data()`, what the '
            f"recovery checks simulate): {ex['n_subjects']} subjects, {dose}; observations at "
            f"TIME {', '.join(f'{x:g}' for x in ex['times'])}{cols}. Random-effect SDs "
            f"{dict(ex.get('omega', {}))}, residual {dict(ex['sigma'])}.",
            "",
        ]
    first = model.parameters[0]
    value = 2 * float(first.typical)
    drop = model.iiv_names[-1] if model.iiv_names else first.name
    out += [
        "## Use",
        "",
        "```python",
        "import nlme_bayes as nb",
        "from nlme_bayes import templates",
        "",
        f'model = templates.load("{t.name}")',
        "# customised without editing the file: a new typical value (and prior centre),",
        "# a tighter prior, one random effect fewer",
        f'model = templates.load("{t.name}", typical={{"{first.name}": {value:g}}},',
        f'                       iiv={{"{drop}": None}})',
        f'model = templates.update_parameter(model, "{first.name}",',
        '                                   prior=nb.Prior("LogNormal", '
        f"mu={math.log(value):.3f}, sigma=0.5))",
        "fit = model.fit(data, draws=1000, tune=1000, chains=4)",
        "```",
        "",
    ]
    out += ["## References", ""] + [f"- {r}" for r in t.reference] + [""]
    return "\n".join(out)


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
        path.write_text(markdown(t), encoding="utf-8")
        written.append(path)
    for stale in set(outdir.glob("*.md")) - set(written):
        stale.unlink()
    return written


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "gallery"
    for p in write_gallery(out):
        print(p.relative_to(out.parent) if p.is_relative_to(out.parent) else p)
