"""Local folders only: the shipped tokenizer, teacher and judge, or a user's transformers folder."""
from __future__ import annotations

from pathlib import Path

from unidistill.engine.config import ConfigError

WEIGHTS = Path(__file__).parent / "weights"
SHIPPED = {"tokenizer": WEIGHTS / "tokenizer", "teacher": WEIGHTS / "pydoc_mdlm", "judge": WEIGHTS / "pydoc_judge"}


def resolve_folder(value: str, what: str, must_exist: bool = True) -> Path | None:
    """"shipped" -> the packaged folder for `what`; anything else is a local folder path. A missing
    shipped folder returns None when must_exist is False (e.g. before the judge has been trained)."""
    if value == "shipped":
        folder = SHIPPED[what]
        if folder.is_dir():
            return folder
        if not must_exist:
            return None
        raise ConfigError(f"config key {what}: the shipped {what} is missing from {folder}; reinstall unidistill")
    folder = Path(value)
    if not folder.is_dir():
        raise ConfigError(f"config key {what}: {value!r} is neither 'shipped' nor an existing folder")
    return folder
