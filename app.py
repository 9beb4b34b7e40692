"""Simulacra Studio: `python app.py [--model M] [--precision 4bit] [--host H] [--port P] [--data-dir D]`.

The Space's app_file. Binds to loopback unless told otherwise (or unless GRADIO_SERVER_NAME
says so, as Spaces do).
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass, field

from transformers import HfArgumentParser


@dataclass
class AppOptions:
    host: str = field(default_factory=lambda: os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                      metadata={"help": "Address to bind; 0.0.0.0 exposes the app to the network."})
    port: int = field(default_factory=lambda: int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
                      metadata={"help": "Port to serve on."})
    data_dir: str = field(default_factory=lambda: os.environ.get("SIMULACRA_DATA_DIR", "user_data"),
                          metadata={"help": "Where user characters, chats, datasets, runs and the model cache live."})


def main(argv: list[str] | None = None) -> None:
    from engine import EngineOptions

    parser = HfArgumentParser((AppOptions, EngineOptions), description=__doc__)
    app_options, engine_options = parser.parse_args_into_dataclasses(args=argv)
    # Every package below reads the data folder from here, so the CLI flag and the env var agree.
    os.environ["SIMULACRA_DATA_DIR"] = os.path.abspath(app_options.data_dir)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    from plumbing.layout import runs_dir
    from engine import Engine
    from ui.app import build_app

    engine = Engine(engine_options, adapters_dir=runs_dir())
    demo = build_app(engine)
    demo.launch(server_name=app_options.host, server_port=app_options.port, show_error=True,
                allowed_paths=[], max_file_size="20mb")


if __name__ == "__main__":
    sys.exit(main())
