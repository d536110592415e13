"""Writing files so that a crash leaves either the old file or the complete new one.

Every file nextworld writes for a user (configs, weights, metrics, pictures) goes through
``write_atomic``: write a temporary file beside the target, fsync it, rename it over the
target. A failure removes the temporary file.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    import torch


def write_atomic(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` to fill a temporary file, then move it to ``path``.

    The parent directory is created if needed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def remove_stale_temporaries(directory: str | Path) -> list[Path]:
    """Delete the temporary files that ``write_atomic`` calls killed mid-write left in ``directory``
    (not recursive); returns them. Call only while nothing writes there."""
    stale = [p for p in Path(directory).glob(".*.tmp") if p.is_file() and len(p.suffixes) >= 2]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def write_json_atomic(path: str | Path, payload: Any) -> Path:
    """``payload`` as indented JSON at ``path``, atomically."""
    return write_atomic(path, lambda tmp: tmp.write_text(json.dumps(payload, indent=1) + "\n"))


def write_safetensors_atomic(path: str | Path, tensors: dict[str, "torch.Tensor"],
                             metadata: dict[str, str] | None = None) -> Path:
    """Tensors as a safetensors file at ``path``, atomically.

    Each tensor is copied to the CPU first: safetensors refuses tensors that share storage
    (tied weights, views), and a copy makes them separate.
    """
    from safetensors.torch import save_file

    cpu = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in tensors.items()}
    return write_atomic(path, lambda tmp: save_file(cpu, str(tmp), metadata=metadata))


def replace_directory(staging: str | Path, target: str | Path) -> Path:
    """Put the finished directory ``staging`` at ``target``, replacing whatever was there.

    The old ``target`` is moved aside (``.NAME.old`` beside it) until the new one is in place,
    then deleted, so at no moment is there a half-written ``target``.
    """
    staging, target = Path(staging), Path(target)
    old = target.with_name(f".{target.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    staging.rename(target)
    shutil.rmtree(old, ignore_errors=True)
    return target


def read_json(path: str | Path) -> Any:
    """A JSON file's content; a file that is not valid JSON is a UserInputError naming it."""
    from nextworld.errors import UserInputError

    try:
        return json.loads(Path(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserInputError(f"{path}: not valid JSON ({e})") from None
