"""`python -m evaluation interview --character NAME [--adapter RUN_ID_OR_PATH] [--questions FILE]
[--mode single|multi] [--judge none|openai] [--seed S] --out report.json`
`python -m evaluation before-after --character NAME --adapter RUN_ID_OR_PATH [same options] --out DIR`
(four interviews: the base model and the trained character, each without and with memory)
`python -m evaluation compare A.json B.json [...] --out DIR`
`python -m evaluation rescore A.json [...] --out DIR` (old reports scored again with today's metrics)

Every option of InterviewOptions and EngineOptions is a flag (see --help). Errors exit
non-zero with one line.
"""

from __future__ import annotations

import argparse
import sys

from transformers import HfArgumentParser

from plumbing.cli import run_command


def _prepare(argv: list[str], prog: str, needs_adapter: bool = False):
    """Options, character, questions and the loaded engine; a bad file or adapter fails before any answer, and a
    missing one (``needs_adapter``) before the model loads."""
    from characters.store import CharacterStore
    from engine import AdapterError, EngineOptions, make_engine
    from evaluation.interview import InterviewOptions, adapter_may_exist, resolve_adapter, resolve_questions
    from plumbing.layout import runs_dir

    parser = HfArgumentParser((InterviewOptions, EngineOptions), prog=prog)
    options, engine_options = parser.parse_args_into_dataclasses(args=argv)
    if not options.character or not options.out:
        raise ValueError("--character and --out are needed")
    if needs_adapter and not options.adapter:
        raise ValueError(f"{prog.split()[-1]} needs --adapter: the run id or adapter folder of the trained character")
    character = CharacterStore().find(options.character)
    questions, source = resolve_questions(options, character)  # a bad file fails before the model loads
    # A typo fails before the model loads; a remote engine's adapters are the server's to know.
    if options.adapter and not engine_options.engine_url and not adapter_may_exist(options.adapter, runs_dir()):
        raise AdapterError(f"no adapter {options.adapter!r}: not a folder holding one, a run id in {runs_dir()} "
                           f"or a shipped adapter")
    engine = make_engine(engine_options, adapters_dir=runs_dir())
    resolve_adapter(engine, options.adapter)
    return options, character, questions, source, engine


def _interview(engine, character, options, questions, source) -> dict:
    from tqdm.auto import tqdm

    from evaluation.interview import interview as run_interview, label
    from evaluation.report import table

    bar = tqdm(total=len(questions), unit="question", desc=label(options))

    def progress(done, total, message):
        bar.total, bar.n = total, done
        bar.refresh()

    report = run_interview(engine, character, options, questions, source, progress)
    bar.close()
    for metric, better, value in table([report]):
        print(f"{metric:>17} {better} {value}")
    return report


def interview(argv: list[str]) -> int:
    from evaluation.report import write_report

    options, character, questions, source, engine = _prepare(argv, "python -m evaluation interview")
    write_report(_interview(engine, character, options, questions, source), options.out)
    print(options.out)
    return 0


def before_after(argv: list[str]) -> int:
    """The base model and the trained character, each without and with memory, interviewed alike: the four
    reports and their comparison in --out."""
    from dataclasses import replace
    from pathlib import Path

    from plumbing.files import slugify
    from evaluation.interview import label
    from evaluation.report import save_comparison, write_report

    options, character, questions, source, engine = _prepare(argv, "python -m evaluation before-after",
                                                             needs_adapter=True)
    out, reports = Path(options.out), []
    for adapter, memory in (("", False), ("", True), (options.adapter, False), (options.adapter, True)):
        each = replace(options, adapter=adapter, memory=memory)
        reports.append(_interview(engine, character, each, questions, source))
        write_report(reports[-1], out / f"{slugify(label(each))}.json")
    md, png = save_comparison(reports, out)
    print(md.read_text(encoding="utf-8").split("\n## ")[0])
    print(out)
    return 0


def compare(argv: list[str]) -> int:
    from evaluation.report import compare as write_comparison

    parser = argparse.ArgumentParser(prog="python -m evaluation compare")
    parser.add_argument("reports", nargs="+", help="two or more report JSON files")
    parser.add_argument("--out", required=True, help="folder for comparison.md and comparison.png")
    args = parser.parse_args(argv)
    md, png = write_comparison(args.reports, args.out)
    print(md.read_text(encoding="utf-8").split("\n## ")[0])
    print(png)
    return 0


def rescore(argv: list[str]) -> int:
    from pathlib import Path

    from evaluation.report import read_report, rescore as score_again, write_report

    parser = argparse.ArgumentParser(prog="python -m evaluation rescore")
    parser.add_argument("reports", nargs="+", help="report JSON files")
    parser.add_argument("--out", required=True, help="folder for the rescored reports (same file names)")
    args = parser.parse_args(argv)
    for path in map(Path, args.reports):
        print(write_report(score_again(read_report(path)), Path(args.out) / path.name))
    return 0


COMMANDS = {"interview": interview, "before-after": before_after, "compare": compare, "rescore": rescore}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in COMMANDS:
        print(__doc__, file=sys.stderr)
        return 2
    return run_command(COMMANDS[argv[0]], argv[1:])


if __name__ == "__main__":
    sys.exit(main())
