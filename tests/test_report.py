"""The HTML report: one self-contained page with every section produced."""

from __future__ import annotations

import re


def test_html_report_has_every_section(small_theoph_fit, tmp_path):
    from nlme_bayes.report import report_sections

    path = tmp_path / "report.html"
    text = small_theoph_fit.report(path)
    assert "Convergence" in text  # the printable report is still returned
    page = path.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    titles = [t for t, _ in report_sections(small_theoph_fit)]
    for title in titles:
        assert f"<h2>{title}</h2>" in page, title
    assert "Could not be produced" not in page, re.findall(r"Could not be produced: [^<]*", page)
    n_images = page.count('src="data:image/png;base64,')
    assert n_images == 7  # GOF, individual, VPC, borrowing strength, eta-cov, QQ, traces
    assert "CL_pop" in page and "Pareto k" in page and "Eta-shrinkage" in page
