"""Where everything users create lives on disk: the one place that knows the data folder's layout.

``user_data/`` (or ``SIMULACRA_DATA_DIR``, or ``/data/simulacra`` on a Space with persistent
storage) holds::

    characters/<slug>.json            saved characters (V3 cards) and their avatars
    chats/<character>/<id>.json       saved chats
    datasets/<character>/<id>/        Experience Reconstruction output (see training.dataset)
    runs/<id>/                        QLoRA runs and their adapters (see training.runs)
    interviews/<character>/<time>/    interview reports
    models/                           converted models (or SIMULACRA_MODEL_CACHE)
    models/memory-vectors/<model>/    characters' memory vectors for that model (see engine.memory)
    models/quantized/<key>/           a local model quantised to 4-bit on the CPU, kept (see engine.loading)
    models/precision/<key>.json       what ``--precision auto`` measured on this CPU, kept (see engine.precision)

A change to where any of these is stored is a change to this file alone.
"""

from __future__ import annotations

import os
from pathlib import Path

from plumbing.files import inside, safe_child

DEFAULT = "user_data"
PERSISTENT = Path("/data")  # where a Space's persistent storage is mounted


def on_space() -> bool:
    return bool(os.environ.get("SPACE_ID"))


def persistent_storage() -> Path | None:
    """The Space's persistent storage, when this is a Space that has it (a writable ``/data``)."""
    if on_space() and PERSISTENT.is_dir() and os.access(PERSISTENT, os.W_OK):
        return PERSISTENT
    return None


def default_data_dir() -> str:
    """``SIMULACRA_DATA_DIR``; else ``/data/simulacra`` on a Space with persistent storage; else ``user_data``."""
    storage = persistent_storage()
    return os.environ.get("SIMULACRA_DATA_DIR") or (str(storage / "simulacra") if storage else DEFAULT)


def data_is_lost_on_restart() -> bool:
    """On a Space, data outside its persistent storage goes when the Space restarts."""
    if not on_space():
        return False
    storage = persistent_storage()
    return storage is None or storage not in [data_dir(), *data_dir().parents]


def data_dir(override: str | os.PathLike | None = None) -> Path:
    """The folder for everything users create."""
    root = override or os.environ.get("SIMULACRA_DATA_DIR") or DEFAULT
    return Path(root).expanduser().resolve()


def characters_dir(root: str | os.PathLike | None = None) -> Path:
    return data_dir(root) / "characters"


def chats_dir(root: str | os.PathLike | None = None) -> Path:
    return data_dir(root) / "chats"


def datasets_dir() -> Path:
    return data_dir() / "datasets"


def runs_dir() -> Path:
    return data_dir() / "runs"


def interviews_dir(root: str | os.PathLike | None = None) -> Path:
    return data_dir(root) / "interviews"


def models_dir() -> Path:
    """Converted models: ``SIMULACRA_MODEL_CACHE`` or ``<data dir>/models``."""
    root = os.environ.get("SIMULACRA_MODEL_CACHE")
    return Path(root).resolve() if root else data_dir() / "models"


def memory_vectors_dir(models: str | os.PathLike | None = None) -> Path:
    """Characters' memory vectors, kept beside the models they were computed with (``models`` or ``models_dir()``)."""
    return (Path(models) if models else models_dir()) / "memory-vectors"


def quantized_dir(models: str | os.PathLike | None = None) -> Path:
    """Local models quantised to 4-bit on the CPU, kept beside the models (``models`` or ``models_dir()``)."""
    return (Path(models) if models else models_dir()) / "quantized"


def precision_choices_dir(models: str | os.PathLike | None = None) -> Path:
    """The precisions ``auto`` chose by measuring on a CPU, kept beside the models (``models`` or ``models_dir()``)."""
    return (Path(models) if models else models_dir()) / "precision"


def character_datasets(character: str) -> Path:
    """The datasets folder of one character (a user's name, made safe)."""
    return safe_child(datasets_dir(), character)


def dataset_folder(character: str, dataset_id: str) -> Path:
    """One dataset of a character, checked to stay inside its folder (it may not exist yet)."""
    return inside(character_datasets(character), dataset_id)


def interview_folder(character: str, stamp: str, root: str | os.PathLike | None = None) -> Path:
    return inside(safe_child(interviews_dir(root), character), stamp)
