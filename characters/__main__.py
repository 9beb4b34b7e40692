"""`python -m characters list | show NAME | import FILE | export NAME --format {v2,v3,png} --out FILE | validate FILE`.

User characters live in --data-dir (or SIMULACRA_DATA_DIR, default user_data/). Errors
exit non-zero with one line.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from characters import cards
from plumbing.cli import run_command
from plumbing.files import atomic_write_bytes
from characters.meta_prompt import meta_prompt
from characters.store import CharacterStore

MAX_INPUT_BYTES = cards.MAX_CARD_BYTES


def read_input(path: str) -> bytes:
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    if file.stat().st_size > MAX_INPUT_BYTES:
        raise ValueError(f"{path} is larger than {MAX_INPUT_BYTES // 2**20} MB")
    return file.read_bytes()


def run(args: argparse.Namespace) -> int:
    store = CharacterStore(args.data_dir)
    if args.command == "list":
        for entry in store.entries():
            print(f"{entry.kind:7} {entry.name}")
    elif args.command == "show":
        character = store.find(args.name)
        print(json.dumps(cards.to_v2(character), ensure_ascii=False, indent=2))
        print("\n--- system prompt ---\n" + meta_prompt(character))
    elif args.command == "import":
        character, avatar = cards.read_card(read_input(args.file))
        if store.is_preset(character.name) or character.name in store.user_characters():
            character.name = store.free_name(character.name)
        path = store.save(character, avatar, overwrite=False)
        print(f"imported {character.name!r} → {path}")
    elif args.command == "export":
        character = store.find(args.name)
        data = cards.export(character, args.format, store.avatar(character.name))
        out = atomic_write_bytes(args.out, data)
        print(f"wrote {out}")
    elif args.command == "validate":
        character, _ = cards.read_card(read_input(args.file))
        print(f"valid card: {character.name!r}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m characters", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=None, help="user data folder (default: SIMULACRA_DATA_DIR or user_data)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="presets and user characters")
    sub.add_parser("show", help="a character's card and system prompt").add_argument("name")
    sub.add_parser("import", help="import a V1/V2/V3 card (JSON or PNG)").add_argument("file")
    export = sub.add_parser("export", help="export a character as a card")
    export.add_argument("name")
    export.add_argument("--format", choices=("v2", "v3", "png"), default="v2")
    export.add_argument("--out", required=True)
    sub.add_parser("validate", help="check a card file").add_argument("file")
    return run_command(run, parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
