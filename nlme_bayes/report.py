"""One self-contained HTML page per fit: tables, convergence, shrinkage, comparison, plots.

Figures are embedded as PNG data URIs, so the page is a single file that can be mailed or
archived with the results. A section that cannot be produced says so, with the reason,
instead of silently disappearing.
"""

from __future__ import annotations

import base64
import html
import io
import os
import time
from collections.abc import Callable
from typing import Any

import pandas as pd

__all__ = ["write_html_report", "report_sections"]

_CSS = """
body { font-family: -apple-system, Segoe UI, Helvetica, Arial, sans-serif; margin: 2em auto;
       max-width: 1100px; color: #222; line-height: 1.45; }
h1 { font-size: 1.6em; border-bottom: 2px solid #36c; padding-bottom: .2em; }
h2 { font-size: 1.25em; margin-top: 1.8em; color: #235; }
table { border-collapse: collapse; font-size: 0.88em; margin: .6em 0; }
th, td { border: 1px solid #ccd; padding: 3px 8px; text-align: right; }
th { background: #eef2f8; } td:first-child, th:first-child { text-align: left; }
pre { background: #f6f7f9; padding: .8em; border-radius: 4px; overflow-x: auto; }
.ok { color: #176b2c; font-weight: bold; } .bad { color: #b3261e; font-weight: bold; }
.missing { color: #b3261e; font-style: italic; }
img { max-width: 100%; border: 1px solid #dde; margin: .4em 0; }
.meta { color: #555; font-size: 0.9em; }
"""


def _fig_to_img(fig: Any, alt: str) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"/>'


def _table(df: pd.DataFrame, digits: int = 4) -> str:
    return df.to_html(float_format=lambda v: f"{v:.{digits}g}", border=0, na_rep="–")


def report_sections(fit: Any) -> list[tuple[str, Callable[[], str]]]:
    """The report's sections as (title, function returning HTML) pairs, in order.

    Examples
    --------
    >>> [title for title, _ in report_sections(fit)]  # doctest: +SKIP
    ['Population parameters', 'Convergence', 'Shrinkage', 'Predictive performance',
     'Goodness of fit', 'Individual fits', 'Visual predictive check', 'Borrowing strength',
     'Random effects vs covariates', 'Random effects: normal QQ plot', 'Traces']
    """
    from . import comparison, diagnostics, shrinkage, vpc
    from .summary import check_convergence

    def parameters() -> str:
        table = fit.summary()
        return _table(table.drop(columns="kind"))

    def convergence() -> str:
        rep = check_convergence(fit)
        cls, word = ("ok", "OK") if rep.ok else ("bad", "problems found")
        return f'<p class="{cls}">Convergence: {word}</p><pre>{html.escape(str(rep))}</pre>'

    def shrink() -> str:
        return _table(shrinkage.shrinkage_table(fit), digits=3) + (
            "<p>Eta-shrinkage: 1 − SD(posterior mean of η across subjects)/ω; Bayesian "
            "shrinkage: 1 − Var_post(η_i)/ω², averaged over subjects (0: informed by the "
            "subject's own data, 1: borrowed from the population); ε-shrinkage: 1 − SD(IWRES)."
            "</p>"
        )

    def criteria() -> str:
        rows = []
        for label, res in (
            ("PSIS-LOO, by observation", comparison.loo(fit, by="observation")),
            (
                "PSIS-LOO, by subject (integrated)",
                comparison.loo(fit, by="subject", method="integrated"),
            ),
            ("WAIC, by observation", comparison.waic(fit, by="observation")),
        ):
            rows.append({"criterion": label, **_elpd_row(res)})
        return _table(pd.DataFrame(rows).set_index("criterion"), digits=5)

    def figure(fn: Callable[[], Any], alt: str) -> Callable[[], str]:
        return lambda: _fig_to_img(fn(), alt)

    return [
        ("Population parameters", parameters),
        ("Convergence", convergence),
        ("Shrinkage", shrink),
        ("Predictive performance", criteria),
        ("Goodness of fit", figure(lambda: fit.plot_gof(), "goodness of fit")),
        ("Individual fits", figure(lambda: fit.plot_individual(), "individual fits")),
        ("Visual predictive check", figure(lambda: vpc.plot_vpc(vpc.vpc(fit)), "VPC")),
        (
            "Borrowing strength",
            figure(lambda: shrinkage.plot_borrowing_strength(fit), "borrowing strength"),
        ),
        (
            "Random effects vs covariates",
            figure(lambda: diagnostics.plot_eta_covariates(fit), "eta vs covariates"),
        ),
        ("Random effects: normal QQ plot", figure(lambda: diagnostics.plot_eta_qq(fit), "eta QQ")),
        ("Traces", figure(lambda: diagnostics.plot_trace(fit), "trace plots")),
    ]


def _elpd_row(res: Any) -> dict[str, Any]:
    get = (lambda k: getattr(res, k, None)) if not isinstance(res, dict) else res.get
    elpd = get("elpd") if get("elpd") is not None else get("elpd_loo")
    out = {"elpd": elpd, "SE": get("se"), "p": get("p") if get("p") is not None else get("p_loo")}
    k = get("pareto_k")
    if k is not None:
        import numpy as np

        out["Pareto k > 0.7"] = int(np.sum(np.asarray(k) > 0.7))
    return out


def write_html_report(fit: Any, path: str | os.PathLike) -> str:
    """Write the HTML report of ``fit`` to ``path``; returns the path.

    Examples
    --------
    >>> write_html_report(fit, "theophylline_report.html")  # or fit.report(path)  # doctest: +SKIP
    'theophylline_report.html'
    """
    path = os.fspath(path)
    info = fit.info
    t = info["timings"]
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(fit.model.name)} — nlme_bayes report</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(fit.model.name)}</h1>",
        f"<pre>{html.escape(fit.model.describe())}</pre>",
        f'<p class="meta">{fit.data.n_subjects} subjects, {fit.data.n_observations} '
        f"observations ({html.escape(str(fit.data.source))}). NUTS ({info['sampler']}), "
        f"{info['chains']} chains × {info['draws']} draws (+{info['tune']} warm-up), seed "
        f"{info['random_seed']}; compile {t.get('compile_s', 0):.1f} s, sampling "
        f"{t.get('sampling_s', 0):.1f} s. Report written {time.strftime('%Y-%m-%d %H:%M')}.</p>",
    ]
    for title, make in report_sections(fit):
        parts.append(f"<h2>{html.escape(title)}</h2>")
        try:
            parts.append(make())
        except Exception as exc:  # noqa: BLE001 - a report shows what failed, and goes on
            parts.append(
                f'<p class="missing">Could not be produced: '
                f"{html.escape(type(exc).__name__)}: {html.escape(str(exc))}</p>"
            )
    parts.append("</body></html>")
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write("\n".join(parts))
    os.replace(tmp, path)
    return path
