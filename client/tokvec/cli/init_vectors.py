"""``tokvec init-vectors``: convert word vectors, once, into the folder ``tokvec serve --vectors``
loads (a spaCy pipeline folder with a vectors table, as ``spacy init vectors`` writes).

Text tables (word2vec / fastText ``.vec`` or ``.txt``, optionally ``.gz`` / ``.zip``) and floret's
``.floret`` export go straight to spaCy's own converter; binaries are first written out as text
(word2vec ``.bin``: its words and rows; fastText ``.bin``: the vector of each of its words; floret
``.bin``: its hashed n-gram table). ``--prune N`` keeps N rows and maps every other key to its
nearest kept row, exactly as ``spacy init vectors --prune`` (the same code does it). Needs spaCy;
binary models need ``floret`` (floret or floret-made fastText models) or ``fasttext``.
"""

from __future__ import annotations

import argparse
import struct
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any, BinaryIO

FASTTEXT_MAGIC = 793712314  # the first int32 of every fastText / floret .bin


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = commands.add_parser(
        "init-vectors", help="convert .vec/.txt/.bin/.floret word vectors into a folder for tokvec serve --vectors"
    )
    p.add_argument(
        "vectors",
        type=Path,
        help="word2vec/fastText text (.vec/.txt[.gz|.zip]), word2vec .bin, fastText/floret model .bin, or .floret",
    )
    p.add_argument("output", type=Path, help="folder to write (a spaCy pipeline folder with the vectors)")
    p.add_argument("--lang", default="en", help="language of the blank pipeline that holds the table (default en)")
    p.add_argument("--prune", type=int, default=-1, help="keep N rows; other keys map to their nearest kept row")
    p.add_argument("--truncate", type=int, default=0, help="read only the first N vectors of a text table")
    p.add_argument(
        "--mode", choices=("default", "floret"), help="table mode (default: floret for .floret files and floret models)"
    )
    p.add_argument("--name", help="the table's name (default: LANG_pipeline.vectors, as spaCy)")
    p.add_argument("--force", action="store_true", help="overwrite a non-empty output folder")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:
        from spacy.training.initialize import convert_vectors
        from spacy.util import get_lang_class
    except ImportError:
        print("tokvec init-vectors: needs spaCy: pip install 'tokvec[vectors]'", file=sys.stderr)
        return 2
    out: Path = args.output
    if out.exists() and any(out.iterdir()) and not args.force:
        print(f"tokvec init-vectors: {out} is not empty; pass --force to overwrite it", file=sys.stderr)
        return 2
    try:
        with tempfile.TemporaryDirectory(prefix="tokvec-vectors-") as tmp:
            source, mode = as_text(args.vectors, args.mode, Path(tmp))
            nlp = get_lang_class(args.lang)()
            convert_vectors(nlp, source, truncate=args.truncate, prune=args.prune, name=args.name, mode=mode)
            nlp.to_disk(out)
    except (OSError, ValueError, ImportError, KeyError) as exc:
        print(f"tokvec init-vectors: {args.vectors}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    table = nlp.vocab.vectors
    keys = f"{table.n_keys} keys, " if mode == "default" else ""
    print(
        f"tokvec init-vectors: {keys}{table.shape[0]} rows x {table.shape[1]} ({mode} mode) -> {out}", file=sys.stderr
    )
    return 0


def as_text(path: Path, mode: str | None, tmp: Path) -> tuple[Path, str]:
    """A text table spaCy's converter reads, and its mode."""
    if not path.is_file():
        raise OSError("no such file")
    if path.suffix == ".floret":
        return path, mode or "floret"
    if path.suffix != ".bin":
        return path, mode or "default"
    with path.open("rb") as f:
        magic = f.read(4)
    if len(magic) == 4 and struct.unpack("<i", magic)[0] == FASTTEXT_MAGIC:
        return _fasttext_model(path, mode, tmp)
    out = tmp / "vectors.vec"
    with path.open("rb") as f, out.open("w", encoding="utf8") as w:
        count, width = (int(n) for n in f.readline().split())
        _write_vec(w, count, width, _word2vec_binary(f, count, width))
    return out, mode or "default"


def _word2vec_binary(f: BinaryIO, count: int, width: int) -> Iterable[tuple[str, Any]]:
    """word2vec's binary format after its "count width" line: per word, its bytes, a space and
    ``width`` little-endian float32s (and perhaps a newline)."""
    import numpy as np

    for i in range(count):
        word = bytearray()
        while (ch := f.read(1)) != b" ":
            if not ch:
                raise ValueError(f"word2vec binary ends at word {i} of {count}")
            if ch != b"\n":
                word += ch
        data = f.read(4 * width)
        if len(data) != 4 * width:
            raise ValueError(f"word2vec binary ends inside the vector of word {i} of {count}")
        yield word.decode("utf8", errors="replace"), np.frombuffer(data, dtype="<f4")


def _fasttext_model(path: Path, mode: str | None, tmp: Path) -> tuple[Path, str]:
    model, is_floret = _load_fasttext(path)
    if is_floret and mode != "default":
        out = tmp / "vectors.floret"
        model.save_floret_vectors(str(out))  # the hashed n-gram table and its hashing settings
        return out, "floret"
    out = tmp / "vectors.vec"
    words = model.get_words()
    with out.open("w", encoding="utf8") as w:
        _write_vec(w, len(words), model.get_dimension(), ((word, model.get_word_vector(word)) for word in words))
    return out, "default"


def _load_fasttext(path: Path) -> tuple[Any, bool]:
    """floret reads floret's .bin (floret or fastText mode); fastText's own .bin needs fasttext.
    Neither library reliably refuses the other's layout, so the header decides."""
    if _floret_layout(path):
        try:
            import floret
        except ImportError:
            raise ImportError("a floret .bin needs floret: pip install floret") from None
        model = floret.load_model(str(path))
        return model, bool(model.f.getArgs().mode == floret.floret.mode_name.floret)
    try:
        import fasttext
    except ImportError:
        raise ImportError(
            "a fastText .bin needs fasttext: pip install fasttext (or convert its .vec text instead)"
        ) from None
    return fasttext.load_model(str(path)), False


def _floret_layout(path: Path) -> bool:
    """fastText's header is magic, version, 11 int32 settings, then the double ``t`` (0 < t < 1,
    1e-4 by default) at byte 56; floret adds two int32 (mode, hash count) before the last
    setting, which moves ``t`` to byte 64."""
    with path.open("rb") as f:
        head = f.read(72)
    if len(head) < 72:
        raise ValueError("too short for a fastText/floret model")

    def plausible_t(at: int) -> bool:
        t: float = struct.unpack("<d", head[at : at + 8])[0]
        return 1e-12 < t < 1

    return not plausible_t(56) and plausible_t(64)


def _write_vec(w: Any, count: int, width: int, rows: Iterable[tuple[str, Any]]) -> None:
    """word2vec text: a header line, then a word and its values per line. %.9g round-trips float32."""
    w.write(f"{count} {width}\n")
    for word, values in rows:
        w.write(word + " " + " ".join(f"{x:.9g}" for x in values.tolist()) + "\n")
