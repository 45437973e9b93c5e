"""The tables a paper prints, from a benchmark's cross-model table (``msa benchmark``).

* ``results_wide.csv``: MMSA's wide results table, one row per model, one ``mean ± std`` column per
  metric (test, checkpoint chosen on valid), MMSA's names with ``--mmsa-names``;
* ``results.tex``: the same as a booktabs LaTeX table (``\\usepackage{booktabs}``), text escaped;
* ``significance.csv`` (with a baseline): :mod:`.significance`'s figures; a metric cell of a model whose
  difference to the baseline is significant carries :data:`.significance.MARK`.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any, Mapping, Sequence

from .._io import atomic_write_text
from .significance import ALPHA, LEVEL, MARK, significance_rows

WIDE_CSV = "results_wide.csv"
LATEX = "results.tex"
SIGNIFICANCE_CSV = "significance.csv"

_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                  "<": r"$<$", ">": r"$>$", "±": r"$\pm$", MARK: r"$^\dagger$"}


def latex_escape(text: str) -> str:
    """``text`` with LaTeX's special characters escaped (``±``, ``<``, ``>`` and the mark as math)."""
    return "".join(_LATEX_SPECIAL.get(c, c) for c in str(text))


#: the metrics whose AUILC a benchmark with --robustness shows, per metric set (the first one present)
AUILC_METRICS = (("acc2_non0", "acc2"), ("mae",))


def robustness_columns(table: Mapping[str, Mapping[str, Any]]) -> list[tuple[str, str]]:
    """``(protocol, metric)`` of every AUILC column: per robustness protocol in the table, non-0 Acc-2 (Acc-2
    for SIMS) and MAE."""
    found: dict[str, set[str]] = {}
    for e in table.values():
        for p, v in e.get("robustness", {}).items():
            found.setdefault(p, set()).update(v.get("auilc", {}))
    return [(p, next(m for m in group if m in names)) for p, names in found.items()
            for group in AUILC_METRICS if any(m in names for m in group)]


def auilc_label(protocol: str, metric: str, label) -> str:
    """The header of an AUILC column, e.g. ``AUILC-A acc2_non0``."""
    return f"AUILC-{protocol} {label(metric)}"


def wide_rows(table: Mapping[str, Mapping[str, Any]], metrics: Sequence[str], label, fmt,
              marks: Mapping[str, Mapping[str, Any]] | None = None) -> list[list[str]]:
    """Header + one row per model: ``Model`` then one ``mean ± std`` cell per metric (``label(m)``, ``fmt(m, s)``
    name and format them), then the AUILC columns of a robustness benchmark (:func:`robustness_columns`);
    ``marks`` (model -> metric -> {"marked"}) appends the mark to a cell."""
    marks = marks or {}
    rob = robustness_columns(table)
    rows = [["Model", *[label(m) for m in metrics], *[auilc_label(p, m, label) for p, m in rob]]]
    for model, e in table.items():
        cells = []
        for m in metrics:
            cell = fmt(m, e.get("test", {}).get(m, {})) or "n/a"
            cells.append(cell + (f" {MARK}" if marks.get(model, {}).get(m, {}).get("marked") else ""))
        cells += [fmt(m, e.get("robustness", {}).get(p, {}).get("auilc", {}).get(m, {})) or "n/a" for p, m in rob]
        rows.append([model, *cells])
    return rows


def latex(rows: Sequence[Sequence[str]], caption: str) -> str:
    """A booktabs table of ``rows`` (header first), every cell escaped."""
    cols = "l" + "c" * (len(rows[0]) - 1)
    body = [" & ".join(latex_escape(c) for c in r) + r" \\" for r in rows]
    return "\n".join([r"\begin{table}[t]", r"\centering", rf"\caption{{{latex_escape(caption)}}}",
                      rf"\begin{{tabular}}{{{cols}}}", r"\toprule", body[0], r"\midrule", *body[1:], r"\bottomrule",
                      r"\end{tabular}", r"\end{table}"]) + "\n"


def _csv_text(rows: Sequence[Sequence[Any]]) -> str:
    buf = io.StringIO()
    csv.writer(buf).writerows(rows)
    return buf.getvalue()


def write_tables(out: Path, table: Mapping[str, Mapping[str, Any]], metrics: Sequence[str], label, fmt,
                 significance: Mapping[str, Any] | None = None, baseline: str | None = None,
                 names: Mapping[str, str] | None = None) -> None:
    """results_wide.csv, results.tex and (with a baseline) significance.csv in ``out``."""
    rows = wide_rows(table, metrics, label, fmt, significance)
    atomic_write_text(out / WIDE_CSV, _csv_text(rows))
    caption = "Test metrics of the checkpoint chosen on validation, mean ± std over seeds."
    if baseline is not None:
        caption += (f" {MARK}: differs from {baseline} (paired t-test over seeds p < {ALPHA} and the "
                    f"{LEVEL:.0%} bootstrap interval of the difference excludes 0).")
    atomic_write_text(out / LATEX, latex(rows, caption))
    path = out / SIGNIFICANCE_CSV
    if baseline is not None and significance is not None:
        atomic_write_text(path, _csv_text(significance_rows(significance, baseline, names)))
    elif path.is_file():  # a re-run without --baseline: no stale comparison left behind
        path.unlink()
