"""Shared by the example scripts: a tokvec server in a child process, EWT slices in spaCy's format."""

from __future__ import annotations

import gzip
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EWT = ROOT / "data" / "ewt"
REF_PYTHON = Path(
    os.environ.get("TOKVEC_REF_PYTHON") or ROOT / ".venv-ref" / "bin" / "python"
)  # as tests/trained_pipelines.py
OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}  # the model is a local folder; no hub


class Server:
    """``tokvec serve`` on a free port; ``address`` once it says it is ready."""

    def __init__(self, *args: str, timeout: float = 180.0) -> None:
        cmd = [sys.executable, "-m", "tokvec", "serve", "--address", "127.0.0.1:0", *args]
        env = dict(os.environ, PYTHONUNBUFFERED="1", **OFFLINE)
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        self.address, seen = "", list[str]()
        deadline = time.monotonic() + timeout
        assert self.proc.stdout is not None
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError("tokvec serve exited:\n" + "".join(seen))
            seen.append(line)
            if m := re.search(r"listening on (\S+)", line):
                self.address = m.group(1)
            if "tokvec: ready" in line:
                # Keep reading its output so that a full pipe never blocks the server.
                threading.Thread(target=self.proc.stdout.read, daemon=True).start()
                return
        raise RuntimeError("tokvec serve not ready in time:\n" + "".join(seen))

    def peak_rss_mib(self) -> float:
        """The server process's peak resident memory (VmHWM)."""
        return peak_rss_of(self.proc.pid)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)


def peak_rss_of(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def slice_conllu(src: Path, dst: Path, n_sents: int, skip: int = 0) -> int:
    """Sentences skip..skip+n_sents of a CoNLL-U file (all after skip if n_sents <= 0)."""
    raw = src.read_bytes()
    text = (gzip.decompress(raw) if src.suffix == ".gz" else raw).decode(
        "utf-8"
    )  # the train split is stored compressed
    blocks = [b for b in text.split("\n\n") if b.strip()]
    chosen = blocks[skip:] if n_sents <= 0 else blocks[skip : skip + n_sents]
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_text("\n\n".join(chosen) + "\n\n", encoding="utf-8")
    return len(chosen)


def convert(conllu: Path, out_dir: Path, n_sents: int = 10) -> Path:
    """``spacy convert`` (CoNLL-U: words, tags, heads, labels) to ``out_dir/<name>.spacy``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    run(
        [
            sys.executable,
            "-m",
            "spacy",
            "convert",
            str(conllu),
            str(out_dir),
            "--converter",
            "conllu",
            "--n-sents",
            str(n_sents),
        ]
    )
    return out_dir / (conllu.stem + ".spacy")


def run(cmd: list[str], cwd: Path | None = None) -> float:
    """Run a command (its output to ours); return its wall time in seconds. Commands run outside
    the repository: from its root, `python -m`/`-c` would put the editable install's
    tokvec.egg-info on sys.path, and the reference environment (no tokvec) would find tokvec's
    spaCy entry points without the package behind them."""
    print("$", " ".join(cmd), flush=True)
    start = time.monotonic()
    subprocess.run(cmd, check=True, env=dict(os.environ, **OFFLINE), cwd=cwd or Path("/tmp"))
    return time.monotonic() - start
