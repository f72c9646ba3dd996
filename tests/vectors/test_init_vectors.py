"""``tokvec init-vectors``: text, word2vec binary, fastText and floret inputs; --prune as spaCy."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import spacy

from tokvec.cli import main as tokvec_main


def table(path):
    vectors = spacy.load(path).vocab.vectors
    return vectors, dict(vectors.key2row)


def test_word2vec_binary_converts_to_the_same_table_as_its_text(tables, tmp_path):
    lines = tables.vec.read_text(encoding="utf8").splitlines()
    count, width = (int(n) for n in lines[0].split())
    with (tmp_path / "ewt.bin").open("wb") as f:
        f.write(f"{count} {width}\n".encode())
        for line in lines[1:]:
            word, *values = line.split(" ")
            f.write(word.encode() + b" " + np.asarray(values, dtype="<f4").tobytes() + b"\n")
    for source, out in ((tables.vec, "from-text"), (tmp_path / "ewt.bin", "from-bin")):
        assert tokvec_main(["init-vectors", str(source), str(tmp_path / out)]) == 0
    (a, keys_a), (b, keys_b) = table(tmp_path / "from-text"), table(tmp_path / "from-bin")
    assert keys_a == keys_b and len(keys_a) == count
    np.testing.assert_array_equal(a.data, b.data)


def test_prune_remaps_exactly_as_spacy_init_vectors(tables, tmp_path):
    PRUNE = tables.prune
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "spacy",
            "init",
            "vectors",
            "en",
            str(tables.vec),
            str(tmp_path / "spacy"),
            "--prune",
            str(PRUNE),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    (ours, our_keys), (theirs, their_keys) = table(tables.default), table(tmp_path / "spacy")
    assert our_keys == their_keys and len(set(our_keys.values())) == PRUNE < len(our_keys)
    np.testing.assert_array_equal(ours.data, theirs.data)


def test_floret_models_keep_their_hashed_table_and_fasttext_mode_models_their_words(tables, tmp_path):
    import floret

    model = floret.load_model(str(tables.floret.parent / "ewt-floret.bin"))
    vectors = spacy.load(tables.floret).vocab.vectors
    assert str(vectors.mode) == "floret" and vectors.shape == (4000, 16)
    words = ["the", "Enron", "unseen-word"]
    np.testing.assert_allclose(vectors.get_batch(words), np.stack([model.get_word_vector(w) for w in words]), atol=1e-5)

    ft = floret.train_unsupervised(
        str(tables.floret.parent / "ewt.txt"),
        model="cbow",
        mode="fasttext",
        dim=8,
        epoch=1,
        minn=3,
        maxn=5,
        bucket=2000,
        thread=1,
        minCount=3,
        verbose=0,
    )
    ft.save_model(str(tmp_path / "ft.bin"))
    assert tokvec_main(["init-vectors", str(tmp_path / "ft.bin"), str(tmp_path / "ft")]) == 0
    converted, keys = table(tmp_path / "ft")
    assert str(converted.mode) == "default" and len(keys) == len(ft.get_words())
    for word in ft.get_words()[:50]:
        np.testing.assert_allclose(converted[word], ft.get_word_vector(word), atol=1e-6)


def test_fastext_own_binary(tables, tmp_path):
    fasttext = pytest.importorskip("fasttext")
    model = fasttext.train_unsupervised(
        str(tables.floret.parent / "ewt.txt"), model="skipgram", dim=8, epoch=1, minCount=3, thread=1, verbose=0
    )
    model.save_model(str(tmp_path / "real.bin"))
    assert tokvec_main(["init-vectors", str(tmp_path / "real.bin"), str(tmp_path / "real")]) == 0
    converted, _ = table(tmp_path / "real")
    np.testing.assert_allclose(converted["the"], model.get_word_vector("the"), atol=1e-6)


def test_bad_inputs_fail_with_one_line(tables, tmp_path, capsys):
    assert tokvec_main(["init-vectors", str(tmp_path / "missing.vec"), str(tmp_path / "out")]) == 1
    assert tokvec_main(["init-vectors", str(tables.vec), str(tables.default)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "missing.vec" in err[0] and "--force" in err[1]
