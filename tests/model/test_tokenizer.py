"""The 64-symbol character tokenizer and the model's to_tokens / to_string."""

from __future__ import annotations

import re
import string

import pytest
import torch
from conftest import make_model
from hypothesis import given
from hypothesis import strategies as st

from model import MiniGPT, ModelConfig, Tokenizer
from model.network.tokenizer import PUNCTUATION, SPECIALS

TOK = Tokenizer()
PLAIN = "".join(s for s in TOK.symbols if s not in SPECIALS)  # the 61 encodable characters
UNKNOWN = "#$%&@^~`\\éü☃\x00"  # characters with no symbol and no normalisation


def test_sixty_four_unique_symbols():
    """The table has 64 unique symbols: 3 specials, newline, space, digits, a-z and the punctuation."""
    assert len(TOK) == TOK.vocab_size == 64, f"expected 64 symbols, got {len(TOK)}"
    assert len(set(TOK.symbols)) == 64, "symbols are not unique"
    expected = set(SPECIALS) | {"\n", " "} | set(string.digits) | set(string.ascii_lowercase) | set(PUNCTUATION)
    assert set(TOK.symbols) == expected, f"symbol table differs: {set(TOK.symbols) ^ expected}"


def test_special_ids():
    """bos_id, pad_id and unk_id point at <bos>, <pad>, <unk>, and special_ids lists exactly them."""
    assert TOK.symbols[TOK.bos_id] == "<bos>" and TOK.symbols[TOK.pad_id] == "<pad>", "specials misplaced"
    assert TOK.symbols[TOK.unk_id] == "<unk>", "unk_id does not point at <unk>"
    assert sorted(TOK.special_ids) == sorted({TOK.bos_id, TOK.pad_id, TOK.unk_id}), "special_ids is wrong"


def test_every_plain_symbol_round_trips():
    """Each of the 61 non-special symbols encodes to one id and decodes back."""
    ids = TOK.encode(PLAIN)
    assert len(ids) == len(PLAIN) == 61, "a symbol did not encode to exactly one id"
    assert not set(ids) & set(TOK.special_ids), "a plain character encoded to a special id"
    assert TOK.decode(ids) == PLAIN, "decode(encode(symbols)) is not the identity"


@given(st.text(alphabet=PLAIN, max_size=200))
def test_round_trip_property(text):
    """decode(encode(text)) == text for any text over the symbol alphabet."""
    assert TOK.decode(TOK.encode(text)) == text


@given(st.text(alphabet=PLAIN + string.ascii_uppercase + "\t\r“”‘’–—…", max_size=100))
def test_normalised_round_trip_property(text):
    """Text with upper case and look-alikes decodes to its normalised form, which is a fixed point."""
    normal = TOK.normalize(text)
    assert TOK.decode(TOK.encode(text)) == normal
    assert TOK.normalize(normal) == normal, "normalisation is not idempotent"


def test_normalisation_table():
    """Upper case, CRLF, tabs, typographic quotes, dashes and the ellipsis map onto the symbols."""
    assert TOK.normalize("Hi\r\nA\rB\tC “q” ‘s’ a–b—c…") == "hi\na\nb c \"q\" 's' a-b-c...", "normalisation changed"


def test_special_names_in_text_are_plain_characters():
    """Typing '<bos>' encodes five characters, never the special token."""
    assert TOK.bos_id not in TOK.encode("<bos>"), "text '<bos>' must not become the BOS token"
    assert TOK.encode("x", bos=True)[0] == TOK.bos_id, "bos=True must put <bos> first"


def test_unknown_characters_named_with_positions():
    """Each unknown character is named with its position in the text as given."""
    with pytest.raises(ValueError, match=r"2 unknown characters: 'é' at position 2, '#' at position 6") as err:
        TOK.encode("caé ok#")
    assert 'unknown="replace"' in str(err.value), "the message should say how to opt in to replacement"


def test_unknown_positions_count_in_the_original_text():
    """Positions refer to the caller's text even when normalisation changes its length (CRLF, ellipsis)."""
    text = "a\r\nb…c#"
    with pytest.raises(ValueError, match="'#' at position 6"):
        TOK.encode(text)
    assert TOK.unknown_chars(text) == [(6, "#")], "unknown_chars positions drift after CRLF or '…'"


@given(st.lists(st.tuples(st.text(alphabet=PLAIN, max_size=5), st.sampled_from(UNKNOWN)), min_size=1, max_size=10))
def test_unknown_characters_property(pieces):
    """For any text, the error names every unknown character at its exact position."""
    text = "".join(known + bad for known, bad in pieces)
    expected = [(i, c) for i, c in enumerate(text) if c in UNKNOWN]
    with pytest.raises(ValueError) as err:
        TOK.encode(text)
    for i, c in expected:
        assert f"{c!r} at position {i}" in str(err.value), f"{c!r} at {i} not named in: {err.value}"
    assert TOK.unknown_chars(text) == expected


def test_many_unknown_characters_are_summarised():
    """More than ten unknown characters: ten are named and the rest counted."""
    with pytest.raises(ValueError, match=r"^15 unknown characters: .*\(and 5 more\)"):
        TOK.encode("#" * 15)


def test_opt_in_replace_and_drop():
    """unknown='replace' maps unknown characters to <unk>; unknown='drop' removes them."""
    assert TOK.encode("a#b", unknown="replace") == [TOK.encode("a")[0], TOK.unk_id, TOK.encode("b")[0]]
    assert TOK.encode("a#b☃", unknown="drop") == TOK.encode("ab"), "drop kept an unknown character"
    with pytest.raises(ValueError, match=r"unknown='skip' is not one of \['error', 'replace', 'drop'\]"):
        TOK.encode("a", unknown="skip")


def test_encode_and_decode_input_errors():
    """encode needs a str; decode refuses ids outside the vocabulary; skip_special drops specials."""
    with pytest.raises(TypeError, match="encode expects a str, got bytes"):
        TOK.encode(b"abc")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"token id 64 is outside the vocabulary \[0, 64\)"):
        TOK.decode([1, 64])
    assert TOK.decode([TOK.bos_id, *TOK.encode("hi")], skip_special=True) == "hi", "skip_special kept <bos>"
    assert TOK.decode([TOK.bos_id]) == "<bos>", "specials should decode to their names"


def test_table_round_trip():
    """to_dict/from_dict rebuilds the same table; a malformed table is refused."""
    assert Tokenizer.from_dict(TOK.to_dict()).symbols == TOK.symbols, "tokenizer table does not round-trip"
    with pytest.raises(ValueError, match="tokenizer table must look like"):
        Tokenizer.from_dict({"symbols": ["a"]})
    with pytest.raises(ValueError, match="must be unique"):
        Tokenizer(["<bos>", "<pad>", "<unk>", "a", "a"])


def test_model_to_tokens_has_bos_first():
    """model.to_tokens(text) is a [1, pos] long tensor with <bos> first."""
    model = make_model()
    tokens = model.to_tokens("hello")
    assert tokens.shape == (1, 6) and tokens.dtype == torch.long, f"got {tokens.shape} {tokens.dtype}"
    assert tokens[0, 0].item() == model.tokenizer.bos_id, "to_tokens must prepend <bos>"
    assert tokens[0, 1:].tolist() == model.tokenizer.encode("hello"), "to_tokens ids differ from encode"
    batch = model.to_tokens(["ab", "cd"])
    assert batch.shape == (2, 3), f"two equal texts should give [2, 3], got {tuple(batch.shape)}"


def test_model_to_string():
    """to_string inverts to_tokens ([pos] or [1, pos] -> str, [batch, pos] -> list)."""
    model = make_model()
    tokens = model.to_tokens("Hi there")
    assert model.to_string(tokens) == "<bos>hi there", "to_string should decode every token"
    assert model.to_string(tokens[0]) == "<bos>hi there", "to_string of a [pos] tensor"
    assert model.to_string(model.to_tokens(["ab", "cd"])) == ["<bos>ab", "<bos>cd"], "batch should give a list"


def test_model_to_tokens_pads_unequal_texts_as_transformer_lens_does():
    """Unequal texts are padded with <pad> on the right (the default) or the left, and the attention mask marks it."""
    model = make_model()
    pad, bos = model.tokenizer.pad_id, model.tokenizer.bos_id
    right = model.to_tokens(["a", "abc"])
    left = model.to_tokens(["a", "abc"], padding_side="left")
    assert right[0].tolist() == [bos, 15, pad, pad] and left[0].tolist() == [pad, pad, bos, 15], "padding misplaced"
    assert model.attention_mask(left, "left")[0].tolist() == [0, 0, 1, 1], "left mask must zero the leading pads"
    assert model.attention_mask(right, "right")[0].tolist() == [1, 1, 0, 0], "right mask must zero the trailing pads"
    assert model.to_tokens("ab", prepend_bos=False).tolist() == [[15, 16]], "prepend_bos=False must drop <bos>"


def test_model_to_tokens_errors():
    """Text past n_ctx and unknown characters raise ValueError."""
    model = make_model()  # n_ctx 16
    with pytest.raises(
        ValueError, match=re.escape("the text has 16 characters but this model reads at most 15 (n_ctx=16")
    ):
        model.to_tokens("x" * 16)
    with pytest.raises(ValueError, match="'#' at position 1"):
        model.to_tokens("a#")
    assert model.to_tokens("a#", unknown="replace")[0, 2].item() == model.tokenizer.unk_id, "replace not passed on"


def test_model_without_tokenizer():
    """A vocabulary other than 64 has no tokenizer, and text input says so."""
    model = MiniGPT(ModelConfig(d_vocab=100), seed=0)
    assert model.tokenizer is None, "a 100-token model must not get the 64-symbol tokenizer"
    with pytest.raises(ValueError, match="has no tokenizer"):
        model.to_tokens("hi")
