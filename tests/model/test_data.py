"""model.training.data: the built-in corpus, text files, the repeated-segments task and batches."""

from __future__ import annotations

import pytest
import torch

from model import Tokenizer
from model.training.data import (
    builtin_corpus,
    load_text_file,
    normalise_text,
    repeated_pair_batch,
    repeated_segments_batch,
    split_ids,
    text_batch,
    text_eval_batches,
)


@pytest.fixture(scope="module")
def corpus():
    return builtin_corpus()


def test_builtin_corpus_is_the_pydoc_topics_text(corpus):
    """The corpus is pydoc_data.topics, normalised, with only a few hundred characters dropped."""
    from pydoc_data.topics import topics

    raw_len = sum(len(v) for v in topics.values()) + len(topics) - 1
    assert 400_000 < corpus.n_chars <= raw_len, f"{corpus.n_chars} chars: the topics were not all joined?"
    assert 0 < sum(corpus.dropped.values()) < 0.01 * raw_len, f"dropped {corpus.dropped}: normalisation too strict?"
    assert all(len(c) == 1 and c not in Tokenizer().symbols for c in corpus.dropped), "dropped a known symbol"
    specials = torch.tensor(Tokenizer().special_ids)
    assert not torch.isin(torch.cat([corpus.train, corpus.val]), specials).any(), "specials inside the corpus text"


def test_builtin_corpus_split_is_fixed_ninety_ten_by_position(corpus):
    """Train is the first 90% of the text and validation the last 10%, identically on every call."""
    again = builtin_corpus()
    assert torch.equal(corpus.train, again.train) and torch.equal(corpus.val, again.val), "corpus not deterministic"
    assert abs(len(corpus.val) / corpus.n_chars - 0.1) < 1e-4, "validation split is not 10%"
    from pydoc_data.topics import topics

    text, _ = normalise_text("\n".join(topics[key] for key in sorted(topics)))
    assert Tokenizer().decode(corpus.val.tolist()) == text[len(corpus.train) :], (
        "validation is not the tail of the text"
    )


def test_normalise_text_counts_dropped_characters():
    """Unknown characters are removed and counted; known look-alikes are mapped, not dropped."""
    text, dropped = normalise_text("Ärger — “quoted” ~~")
    assert text == 'rger - "quoted" ', f"normalised to {text!r}"
    assert dropped == {"ä": 1, "~": 2}, f"dropped counts {dropped}"


def test_load_text_file_drop_and_error(tmp_path):
    """unknown='drop' removes and reports unknown characters; unknown='error' refuses naming them."""
    path = tmp_path / "t.txt"
    path.write_text("Hello ☃ world ☃! " * 5, encoding="utf-8")
    data = load_text_file(path, unknown="drop")
    assert data.dropped == {"☃": 10}, f"dropped {data.dropped}"
    assert "☃" not in Tokenizer().decode(data.train.tolist() + data.val.tolist())
    with pytest.raises(ValueError, match=r"'☃' x10.*unknown=\"drop\""):
        load_text_file(path, unknown="error")


def test_load_text_file_bad_inputs(tmp_path):
    """A missing file, an empty file, a non-UTF-8 file and a bad policy each get a clear typed error."""
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_text_file(tmp_path / "nope.txt")
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(ValueError, match="no usable text"):
        load_text_file(empty)
    binary = tmp_path / "b.txt"
    binary.write_bytes(b"\xff\xfe\x00abc")
    with pytest.raises(ValueError, match="not UTF-8"):
        load_text_file(binary)
    with pytest.raises(ValueError, match="unknown="):
        load_text_file(empty, unknown="replace")


def test_split_ids_rejects_bad_fraction():
    """val_fraction outside (0, 1) is refused."""
    with pytest.raises(ValueError, match="val_fraction"):
        split_ids(torch.arange(10), 1.0)


def test_text_batch_shape_bos_and_seed(corpus):
    """Text batches are [batch, n_ctx] LongTensors starting with BOS, identical for equal seeds."""
    a = text_batch(corpus.train, 8, 32, torch.Generator().manual_seed(3))
    b = text_batch(corpus.train, 8, 32, torch.Generator().manual_seed(3))
    assert a.shape == (8, 32) and a.dtype == torch.long
    assert torch.equal(a, b), "same seed gave different batches"
    assert (a[:, 0] == 0).all() and (a[:, 1:] > 2).all(), "rows must be BOS + text"


def test_text_eval_batches_cover_every_character_once(corpus):
    """The validation windows hold the split's characters in order, each exactly once."""
    batches = text_eval_batches(corpus.val, 32, batch_size=100)
    rows = torch.cat(batches)
    assert (rows[:, 0] == 0).all(), "each window starts with BOS"
    flat = rows[:, 1:].reshape(-1)
    assert torch.equal(flat, corpus.val[: len(flat)]), "windows are not consecutive"
    assert len(corpus.val) - len(flat) < 31, "more than one partial window left out"


def test_repeated_segments_copy_the_segment_at_varying_offsets():
    """Each row is BOS + non-specials whose span [s2, s2 + L) copies from s1 with period s2 - s1; offsets vary."""
    batch, spans = repeated_segments_batch(2048, 32, torch.Generator().manual_seed(0), return_spans=True)
    assert batch.shape == (2048, 32) and batch.dtype == torch.long and spans.shape == (2048, 3)
    assert (batch[:, 0] == 0).all() and (batch[:, 1:] >= 3).all(), "BOS first, no specials after it"
    for row, (seg, s1, s2) in zip(batch.tolist(), spans.tolist(), strict=True):
        assert 4 <= seg <= 15 and s1 >= 1 and s1 + 2 <= s2 <= 31, f"span {seg, s1, s2} out of range"
        copy = [row[s1 + (p - s1) % (s2 - s1)] for p in range(s2, min(s2 + seg, 32))]
        assert row[s2 : s2 + seg] == copy, f"row does not repeat its segment: {row} {seg, s1, s2}"
    seg, s1, s2 = spans.T
    assert len(s1.unique()) > 20 and len((s2 - s1).unique()) > 20, "offsets barely vary: position predicts the copy"
    assert s1.max() >= 25, "earlier occurrences never sit late in the context"
    whole = ((s2 - s1) >= seg) & (s2 + seg <= 32)
    assert 0.75 <= whole.float().mean() < 0.9, "the share of whole, non-overlapping copies is off (default 0.75)"
    assert ((s2 - s1) < seg).any(), "no overlapping (periodic) copies"


def test_repeated_segments_bad_lengths():
    """Impossible segment lengths or gaps are refused with a ValueError."""
    with pytest.raises(ValueError, match="min_len <= max_len"):
        repeated_segments_batch(2, 32, torch.Generator(), min_len=9, max_len=5)
    with pytest.raises(ValueError, match="min_gap"):
        repeated_segments_batch(2, 32, torch.Generator(), min_gap=31)
    with pytest.raises(ValueError, match="2 \\* max_len"):
        repeated_segments_batch(2, 20, torch.Generator(), max_len=10)
    with pytest.raises(ValueError, match="whole_fraction"):
        repeated_segments_batch(2, 32, torch.Generator(), whole_fraction=1.5)


def test_repeated_pair_batch_is_bos_r_r():
    """repeated_pair_batch gives [BOS, r, r] with r non-special, deterministic per seed."""
    batch = repeated_pair_batch(16, 15, torch.Generator().manual_seed(1))
    assert batch.shape == (16, 31)
    assert torch.equal(batch[:, 1:16], batch[:, 16:]), "second copy differs from the first"
    assert (batch[:, 0] == 0).all() and (batch[:, 1:] >= 3).all()
    assert torch.equal(batch, repeated_pair_batch(16, 15, torch.Generator().manual_seed(1))), "not seeded"
