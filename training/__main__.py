"""`python -m training experiences --character NAME --scenes N [--protective M] [--generator local|openai] [--out DIR] [--resume]`
`python -m training run --character NAME --dataset DIR [--preset quick|standard|paper] [--max-steps N] [--output-dir DIR] [--resume]`
`python -m training export RUN [--format gguf-f16|gguf-q8_0|gguf-q4_0] [--out DIR]`
`python -m training ship RUN --name NAME`: the run's adapter into trained/NAME (bf16), shipped with the app

Every option of ExperienceOptions, RunOptions and ExportOptions is a flag (see --help). Errors exit
non-zero with one line.
"""

from __future__ import annotations

import sys

from transformers import HfArgumentParser

from plumbing.cli import run_command


def experiences(argv: list[str]) -> int:
    from tqdm.auto import tqdm

    from characters.store import CharacterStore
    from engine import EngineOptions
    from training.dataset import ExperienceOptions, build_dataset, dataset_dir, token_counter

    parser = HfArgumentParser((ExperienceOptions, EngineOptions), prog="python -m training experiences")
    options, engine_options = parser.parse_args_into_dataclasses(args=argv)
    character = CharacterStore().find(options.character)
    if options.resume and not options.out:
        raise ValueError("--resume needs --out, the folder of the run to continue")
    out = options.out or dataset_dir(character)
    from engine import make_engine

    engine = make_engine(engine_options)  # the local generator; its tokenizer also counts the dataset's tokens
    generator = options.make_generator(engine)
    bar = tqdm(total=options.scenes + options.protective + 1, unit="task")

    def progress(done, total, message):
        bar.total = total
        bar.n = done
        bar.set_description(message)
        bar.refresh()

    folder = build_dataset(character, generator, options, out, progress,
                           count_tokens=token_counter(engine))
    bar.close()
    print(folder)
    return 0


def run(argv: list[str]) -> int:
    from pathlib import Path

    from plumbing.layout import runs_dir
    from training.qlora import RunOptions, train
    from training.runs import new_run_id

    parser = HfArgumentParser(RunOptions, prog="python -m training run")
    (options,) = parser.parse_args_into_dataclasses(args=argv)
    if options.resume:
        if not options.output_dir:
            raise ValueError("--resume needs --output-dir, the folder of the run to continue")
        folder = Path(options.output_dir)
        if not (folder / "options.json").is_file():
            raise FileNotFoundError(f"{folder} holds no run to resume")
        options = RunOptions.from_file(folder / "options.json")  # the run goes on with its own options
        options.resume = True
    else:
        if not options.character or not options.dataset:
            raise ValueError("--character and --dataset are needed")
        from characters.store import CharacterStore

        options.character = CharacterStore().resolve(options.character)
        folder = Path(options.output_dir) if options.output_dir else runs_dir() / new_run_id(options.character)
        if folder.exists() and any(folder.iterdir()):
            raise FileExistsError(f"{folder} is not empty; use --resume to continue it")
        options.output_dir = str(folder)
    train(options, folder)
    print(folder)
    return 0


def export(argv: list[str]) -> int:
    from training.export import ExportOptions, export_run

    if argv and not argv[0].startswith("-"):  # the run may be given bare: `export RUN --format …`
        argv = ["--run", *argv]
    (options,) = HfArgumentParser(ExportOptions, prog="python -m training export").parse_args_into_dataclasses(
        args=argv)
    if not options.run:
        raise ValueError("name the run to export: python -m training export RUN")
    for kind, path in export_run(options).items():
        print(f"{kind}: {path}")
    return 0


def ship(argv: list[str]) -> int:
    import argparse

    from training.shipping import ship as ship_run

    parser = argparse.ArgumentParser(prog="python -m training ship")
    parser.add_argument("run", help="A run id or run folder.")
    parser.add_argument("--name", required=True, help="The shipped adapter's name, as Chat and Interview list it.")
    options = parser.parse_args(argv)
    print(ship_run(options.run, options.name))
    return 0


COMMANDS = {"experiences": experiences, "run": run, "export": export, "ship": ship}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        print(__doc__.strip(), file=sys.stderr)
        print(f"commands: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    return run_command(COMMANDS[argv[0]], argv[1:])


if __name__ == "__main__":
    sys.exit(main())
