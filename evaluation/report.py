"""Reports: write them, read them back, and compare two or more side by side (table + chart)."""

from __future__ import annotations

import json
import textwrap
import time
from pathlib import Path

from characters.era import era_end
from characters.store import CharacterStore
from evaluation import metrics
from evaluation.metrics import HIGHER_IS_BETTER
from evaluation.questions import Question
from plumbing.files import atomic_write_bytes, atomic_write_json, atomic_write_text

SHOWN = ["memorization", "protection", "consistency", "identity_kept", "character_breaks", "anachronisms",
         "puzzled_by_own_life", "degeneration"]
REQUIRED = ("settings", "results", "aggregates")


class ReportError(ValueError):
    """A file that is not an interview report."""


def write_report(report: dict, path: str | Path) -> Path:
    return atomic_write_json(path, report)


def read_report(path: str | Path) -> dict:
    path = Path(path)
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ReportError(f"{path} is not a readable report: {err}") from None
    if not isinstance(report, dict) or any(key not in report for key in REQUIRED):
        raise ReportError(f"{path} is not an interview report (needs {', '.join(REQUIRED)})")
    return report


def rescore(report: dict) -> dict:
    """``report`` scored again from its own answers with today's metrics (stricter rules apply to old
    interviews without asking the model again); the character's era comes from its card."""
    end = era_end(CharacterStore().find(report["character"]).sims.era)
    results = []
    for r in report["results"]:
        question = Question(r["question"], r.get("topic_id", "topic-1"), r.get("topic", ""),
                            r.get("expected_any", []), r.get("forbidden_any", []))
        results.append({**r, "scores": metrics.score(r["answer"], question, end)})
    return {**report, "results": results, "aggregates": metrics.aggregate(results, report.get("pairs", [])),
            "rescored": time.strftime("%Y-%m-%d")}


def percent(value) -> str:
    return "–" if value is None else f"{100 * value:.0f}%"


def table(reports: list[dict]) -> list[list[str]]:
    """Rows ``[metric, better, value per report…]`` (shares as percentages)."""
    rows = []
    for metric in SHOWN:
        values = [percent(r["aggregates"].get(metric)) for r in reports]
        rows.append([metric.replace("_", " "), "↑" if HIGHER_IS_BETTER[metric] else "↓", *values])
    return rows


def label_of(report: dict) -> str:
    return report.get("label") or report["settings"].get("adapter") or "base model"


def markdown(reports: list[dict]) -> str:
    labels = [label_of(r) for r in reports]
    lines = [f"# Interview of {reports[0].get('character', '')}: {' vs '.join(labels)}", "",
             "| metric | better | " + " | ".join(labels) + " |",
             "|---|---|" + "---|" * len(labels)]
    lines += ["| " + " | ".join(row) + " |" for row in table(reports)]
    counts = reports[0]["aggregates"]
    lines += ["", f"Questions: {counts.get('questions')} · with accepted answers: {counts.get('memorization_n')} · "
                  f"anachronism probes: {counts.get('protection_n')} · pairs asking a fact twice: "
                  f"{counts.get('consistency_n')}.", "", "## Answers", "",
              "| question | " + " | ".join(labels) + " |", "|---|" + "---|" * len(labels)]
    by_question = [{r["question"]: r for r in report["results"]} for report in reports]
    for result in reports[0]["results"]:
        cells = []
        for answers in by_question:
            other = answers.get(result["question"])
            cells.append(cell(other) if other else "–")
        lines.append(f"| {escape(result['question'])} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def cell(result: dict, limit: int = 160) -> str:
    scores = result["scores"]
    marks = "".join(mark for key, mark in (("memorized", "✓"), ("protected", "🛡")) if scores.get(key)) \
        + ("⚠AI" if scores.get("breaks_character") else "") + ("↻" if scores.get("degenerate") else "")
    answer = result["answer"] if len(result["answer"]) <= limit else result["answer"][:limit] + "…"
    return escape(f"{marks} {answer}".strip())


def chart(reports: list[dict]):
    """A grouped bar chart of the shares (a matplotlib Figure, for files and for the UI). Built without
    pyplot, so no global figure registry keeps it alive in a long-running app."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(9, 3.8), dpi=110)
    axis = figure.subplots()
    width = 0.8 / len(reports)
    for i, report in enumerate(reports):
        shares = [report["aggregates"].get(m) for m in SHOWN]  # None: not scored (no such question, older report)
        bars = axis.bar([x + i * width for x in range(len(SHOWN))], [100 * (v or 0) for v in shares], width,
                        label=label_of(report))
        axis.bar_label(bars, ["–" if v is None else f"{100 * v:.0f}" for v in shares], fontsize=7)
    labels = [textwrap.fill(f"{m.replace('_', ' ')} {'↑' if HIGHER_IS_BETTER[m] else '↓'}", 12) for m in SHOWN]
    axis.set_xticks([x + width * (len(reports) - 1) / 2 for x in range(len(SHOWN))], labels, fontsize=8)
    axis.set_ylim(0, 110)
    axis.set_ylabel("% of questions")
    axis.set_title(f"Interview of {reports[0].get('character', '')}", fontsize=10)
    axis.legend(fontsize=8)
    figure.tight_layout()
    return figure


def chart_png(reports: list[dict]) -> bytes:
    import io

    buffer = io.BytesIO()
    chart(reports).savefig(buffer, format="png")
    return buffer.getvalue()


def save_comparison(reports: list[dict], out_dir: str | Path) -> tuple[Path, Path]:
    """``comparison.md`` and ``comparison.png`` in ``out_dir``."""
    out = Path(out_dir)
    return (atomic_write_text(out / "comparison.md", markdown(reports)),
            atomic_write_bytes(out / "comparison.png", chart_png(reports)))


def compare(paths: list[str | Path], out_dir: str | Path) -> tuple[Path, Path]:
    """The comparison of two or more report files."""
    if len(paths) < 2:
        raise ReportError("compare needs at least two reports")
    return save_comparison([read_report(p) for p in paths], out_dir)
