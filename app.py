"""Simulacra Studio: `python app.py [--model M] [--precision 4bit] [--host H] [--port P] [--data-dir D]
[--engine-url URL]`.

One server: the Gradio app at / and the OpenAI-compatible API at /v1.

The Space's app_file. Binds to loopback unless told otherwise (or unless GRADIO_SERVER_NAME
says so, as Spaces do). A missing piece (no model, a bad option, a model that fails to load)
is one line on stderr and exit status 1, never a traceback.
"""

from __future__ import annotations

from ui import zerogpu  # first: on ZeroGPU its `import spaces` must come before torch  # isort: skip

import logging
import os
import sys
from dataclasses import dataclass, field

from transformers import HfArgumentParser

from plumbing.layout import default_data_dir


@dataclass
class AppOptions:
    host: str = field(default_factory=lambda: os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                      metadata={"help": "Address to bind; 0.0.0.0 exposes the app to the network."})
    port: int = field(default_factory=lambda: int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
                      metadata={"help": "Port to serve on."})
    data_dir: str = field(default_factory=default_data_dir, metadata={
        "help": "Where user characters, chats, datasets, runs and the model cache live (default: "
                "SIMULACRA_DATA_DIR, else /data/simulacra on a Space with persistent storage, else user_data)."})


def main(argv: list[str] | None = None) -> int:
    from engine import EngineOptions

    parser = HfArgumentParser((AppOptions, EngineOptions), description=__doc__)
    try:
        app_options, engine_options = parser.parse_args_into_dataclasses(args=argv)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    # Every package below reads the data folder from here, so the CLI flag and the env var agree.
    os.environ["SIMULACRA_DATA_DIR"] = os.path.abspath(app_options.data_dir)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    from engine import make_engine
    from engine.model_source import ModelUnavailable
    from engine.remote import EngineUnreachable
    from plumbing.layout import runs_dir
    from ui.app import server

    try:
        engine = make_engine(engine_options, adapters_dir=runs_dir())
    except (ModelUnavailable, EngineUnreachable, ValueError) as err:  # no model, or an option this machine cannot honour
        print(f"error: {err}", file=sys.stderr)
        return 1
    except (OSError, ImportError) as err:  # a model folder or id that cannot be loaded
        print(f"error: the model {engine_options.model or 'chosen'!r} could not be loaded: "
              f"{str(err).splitlines()[0] if str(err) else type(err).__name__}", file=sys.stderr)
        return 1
    if zerogpu.active():  # the GPU is lent a call at a time: every piece of GPU work becomes one
        engine = zerogpu.ZeroGPUEngine(engine)
    serving = server(engine, app_options.host, app_options.port)
    zerogpu.start()
    print(f"Simulacra Studio on http://{app_options.host}:{app_options.port}/ "
          f"(OpenAI-compatible API at /v1)", flush=True)
    serving.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
