"""Helpers for the `tokvec split` tests: run the command, compare annotations, and run a split
pipeline in a process where torch, transformers and spacy-transformers cannot be imported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from serving import ENV, ROOT
from spacy.tokens import Doc

# Put first on PYTHONPATH: Python imports sitecustomize at startup, before any test code.
BLOCKER = """
import sys

BLOCKED = {"torch", "transformers", "spacy_transformers", "spacy_curated_transformers"}


class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is blocked in this process", name=name)
        return None


sys.meta_path.insert(0, Blocker())
"""


def annotations(doc: Doc) -> list[tuple[Any, ...]]:
    """Everything a tagger, morphologizer, lemmatizer, parser and NER leave on the tokens."""
    return [
        (t.tag_, t.pos_, str(t.morph), t.lemma_, t.head.i, t.dep_, t.ent_iob_, t.ent_type_, t.is_sent_start)
        for t in doc
    ]


def run_split(
    pipeline: str | Path, out: Path, address: str, *extra: str, python: str = sys.executable
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [python, "-m", "tokvec", "split", str(pipeline), str(out), "--address", address, *extra],
        capture_output=True,
        text=True,
        timeout=300,
        env=ENV,
        cwd=ROOT,
    )


def annotate_without_torch(pipeline: Path, docs: list[dict[str, Any]], tmp: Path) -> dict[str, Any]:
    """Load ``pipeline`` and annotate ``docs`` in a fresh process where importing torch,
    transformers or spacy-transformers fails; its annotations (JSON) and the modules it loaded."""
    blocker = tmp / "no_torch"
    blocker.mkdir(exist_ok=True)
    (blocker / "sitecustomize.py").write_text(BLOCKER)
    (tmp / "docs.json").write_text(json.dumps(docs))
    script = tmp / "annotate.py"
    script.write_text(f"""
import json, sys
import spacy
from spacy.tokens import Doc
try:
    import torch
except ImportError:
    blocked = True
else:
    blocked = False
docs = json.load(open({str(tmp / "docs.json")!r}))
nlp = spacy.load({str(pipeline)!r})
out = []
for doc in nlp.pipe(Doc(nlp.vocab, words=d["words"], spaces=d["spaces"]) for d in docs):
    out.append([[t.tag_, t.pos_, str(t.morph), t.lemma_, t.head.i, t.dep_, t.ent_iob_, t.ent_type_, t.is_sent_start] for t in doc])
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "transformers", "spacy_transformers"))
print(json.dumps({{"blocked": blocked, "heavy": heavy, "annotations": out}}))
""")
    env = dict(ENV, PYTHONPATH=os.pathsep.join([str(blocker), str(ROOT / "client"), ENV.get("PYTHONPATH", "")]))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300, env=env, cwd=tmp)
    assert done.returncode == 0, done.stderr[-4000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result
