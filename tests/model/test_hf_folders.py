"""Hugging Face model folders, offline: a random GPT-2 saved with ``save_pretrained`` beside a BPE tokenizer trained
here (tests/hf_folders.py) loads with ``MiniGPT.from_pretrained(folder)``; its log-probabilities equal
``transformers``' own, its text goes in and out as the Hugging Face tokenizer reads it (with TransformerLens's
``prepend_bos``), the analyses' invariants hold on it, and every bad folder is a clear error.
"""

from __future__ import annotations

import json
import shutil
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
from hf_folders import BPE_VOCAB, ENDOFTEXT, gpt2_folder

from interp import direct_logit_attribution, head_sweep
from model import MiniGPT
from model.network.hf_tokenizer import HFTokenizer

TEXTS = ["The list of names is sorted.", "A function returns the value of its last expression"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return gpt2_folder(tmp_path_factory.mktemp("gpt2"))


@pytest.fixture(scope="module")
def loaded(folder):
    from transformers import AutoTokenizer, GPT2LMHeadModel

    return (
        MiniGPT.from_pretrained(str(folder)),
        GPT2LMHeadModel.from_pretrained(folder).eval(),
        AutoTokenizer.from_pretrained(folder),
    )


def test_log_probs_equal_transformers(loaded):
    model, hf, _ = loaded
    tokens = model.to_tokens(TEXTS[1])
    with torch.no_grad():
        ours, theirs = model(tokens).log_softmax(-1), hf(tokens).logits.log_softmax(-1)
    err = (ours - theirs).abs().max().item()
    print(f"\nGPT-2 folder: max |log p ours - transformers| = {err:.2e} (float32)")
    assert err < 1e-4


def test_bfloat16_log_probs_follow_transformers(folder, loaded):
    _, hf, _ = loaded
    model = MiniGPT.from_pretrained(str(folder), dtype="bfloat16")
    assert model.W_E.dtype == torch.bfloat16
    tokens = model.to_tokens(TEXTS[0])
    with torch.no_grad():
        ours = model(tokens).float().log_softmax(-1)
        theirs = hf.to(torch.bfloat16)(tokens).logits.float().log_softmax(-1)
    hf.to(torch.float32)
    err = (ours - theirs).abs().max().item()
    print(f"\nGPT-2 folder: max |log p ours - transformers| = {err:.2e} (bfloat16)")
    assert err < 1e-2


def test_text_in_and_out_is_the_hugging_face_tokenizers(loaded):
    """``to_tokens`` is the Hugging Face tokenizer's ids after ``<|endoftext|>`` (TransformerLens's GPT-2
    ``prepend_bos``); labels keep their leading spaces; a batch pads with eos; decoding gives the text back."""
    model, _, tok = loaded
    assert isinstance(model.tokenizer, HFTokenizer) and len(tok) == BPE_VOCAB < model.cfg.d_vocab
    assert model.tokenizer.symbols[BPE_VOCAB] == f"<unused {BPE_VOCAB}>" and len(model.tokenizer) == model.cfg.d_vocab
    bos = tok.convert_tokens_to_ids(ENDOFTEXT)
    for text in TEXTS:
        assert model.to_tokens(text)[0].tolist() == [bos, *tok(text)["input_ids"]]
        assert model.to_string(model.to_tokens(text, prepend_bos=False)[0]) == text
    strs = model.to_str_tokens(TEXTS[0])
    assert strs[0] == ENDOFTEXT and "".join(strs[1:]) == TEXTS[0] and any(s.startswith(" ") for s in strs)
    batch = model.to_tokens(TEXTS)
    assert batch.shape[0] == 2 and model.tokenizer.pad_token_id == bos
    assert model.get_token_position(" of", TEXTS[0]) == strs.index(" of")


def test_every_hook_and_the_invariants_hold(loaded):
    """The cache holds every (default) hook, the residual writes sum to the final state, DLA sums to the logit and
    a head sweep runs."""
    model, _, _ = loaded
    tokens = model.to_tokens(TEXTS[0])
    logits, cache = model.run_with_cache(tokens)
    assert [n for n in model.hook_names if model.in_default_cache(n)] == list(cache)
    stack = cache.decompose_resid(layer=-1, return_labels=False)
    torch.testing.assert_close(stack.sum(0), cache["resid_post", -1], atol=1e-4, rtol=1e-4)
    df = direct_logit_attribution(model, tokens, cache)
    summed = df.groupby(["batch", "pos"]).contribution.sum().to_numpy()
    target = torch.tensor(df.groupby(["batch", "pos"]).target.first().to_numpy())
    want = logits[0].gather(-1, target[:, None])[:, 0].detach().double().numpy()
    assert abs(summed - want).max() < 1e-3
    assert {" of", ENDOFTEXT} & set(df.target_str) or len(df)
    sweep = head_sweep(model, tokens)
    assert len(sweep) == model.cfg.n_layers * model.cfg.n_heads


def test_sharded_weights_load_the_same(folder, loaded, tmp_path):
    from transformers import GPT2LMHeadModel

    GPT2LMHeadModel.from_pretrained(folder).save_pretrained(tmp_path, max_shard_size="50KB")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(folder / name, tmp_path / name)
    assert (tmp_path / "model.safetensors.index.json").is_file()
    model, _, _ = loaded
    tokens = model.to_tokens(TEXTS[0])
    assert torch.equal(MiniGPT.from_pretrained(str(tmp_path))(tokens), model(tokens))


def test_threads_tokenize_and_run_as_serially(loaded):
    """16 threads tokenizing and running through one shared model get exactly the serial results."""
    model, _, _ = loaded
    texts = [f"{TEXTS[i % 2]} {i}" for i in range(32)]

    def run(text):
        with torch.no_grad():
            return model.to_str_tokens(text), model(text)

    serial = [run(t) for t in texts]
    with ThreadPoolExecutor(max_workers=16) as pool:
        threaded = list(pool.map(run, texts))
    for (s_str, s_logits), (t_str, t_logits) in zip(serial, threaded, strict=True):
        assert s_str == t_str and torch.equal(s_logits, t_logits)


def _copy(folder, tmp_path):
    target = tmp_path / "copy"
    shutil.copytree(folder, target)
    return target


def _edit_config(target, **changes):
    config = json.loads((target / "config.json").read_text())
    (target / "config.json").write_text(json.dumps(config | changes))


@pytest.mark.parametrize(
    "breakage, error, phrase",
    [
        ("no config.json", FileNotFoundError, "is a folder without config.json, so not a Hugging Face model folder"),
        ("no weights", FileNotFoundError, "has no model.safetensors or model.safetensors.index.json"),
        ("pickled weights", FileNotFoundError, "pickled weights, which MiniGPT Lens does not unpickle"),
        ("another family", ValueError, "model_type='bert' is not a family MiniGPT Lens reads; it reads ['gpt2']"),
        ("config disagrees", ValueError, "config says n_embd=32 but the weights have n_embd=64"),
        ("small vocabulary", ValueError, "the tokenizer has 400 symbols but cfg.d_vocab=300"),
        ("bad dtype", ValueError, "dtype must be one of ['bfloat16', 'float16', 'float32'], got 'int8'"),
    ],
)
def test_bad_folders_are_clear_errors(folder, tmp_path, breakage, error, phrase):
    target = _copy(folder, tmp_path)
    kwargs = {}
    if breakage == "no config.json":
        (target / "config.json").unlink()
    elif breakage in ("no weights", "pickled weights"):
        (target / "model.safetensors").unlink()
        if breakage == "pickled weights":
            (target / "pytorch_model.bin").write_bytes(b"")
    elif breakage == "another family":
        _edit_config(target, model_type="bert")
    elif breakage == "config disagrees":
        _edit_config(target, n_embd=32)
    elif breakage == "small vocabulary":
        from transformers import GPT2Config, GPT2LMHeadModel

        GPT2LMHeadModel(GPT2Config(vocab_size=300, n_positions=64, n_embd=64, n_layer=1, n_head=4)).save_pretrained(
            target
        )
    else:
        kwargs["dtype"] = "int8"
    with pytest.raises(error) as info:
        MiniGPT.from_pretrained(str(target), **kwargs)
    assert phrase in str(info.value), str(info.value)


def test_a_prompt_longer_than_the_context_is_refused(loaded):
    model, _, _ = loaded
    with pytest.raises(ValueError, match=r"the text has 600 tokens but this model reads at most 63 \(n_ctx=64"):
        model.to_tokens(" ".join(["names"] * 200))


def test_a_loaded_folder_saves_as_a_checkpoint_with_its_tokenizer(loaded, tmp_path):
    """``save_pretrained`` keeps the Hugging Face tokenizer in the checkpoint (kind ``"hf"``); loading it gives the
    same tokens, labels and logits."""
    model, _, _ = loaded
    model.save_pretrained(str(tmp_path / "gpt2.safetensors"))
    again = MiniGPT.from_pretrained(str(tmp_path / "gpt2.safetensors"))
    assert isinstance(again.tokenizer, HFTokenizer) and again.tokenizer.symbols == model.tokenizer.symbols
    tokens = again.to_tokens(TEXTS[1])
    assert torch.equal(tokens, model.to_tokens(TEXTS[1])) and torch.equal(again(tokens), model(tokens))


def test_weights_are_processed_as_transformer_lens_loads_them(folder, loaded):
    """``from_pretrained(folder)`` processes the weights as TransformerLens's ``from_pretrained`` does (LayerNorms
    folded, writers and unembedding centred, ``b_V`` folded); ``from_pretrained_no_processing`` keeps GPT-2's own.
    Both give the same next-token distribution (1e-4), and the processed one's logit attribution follows
    TransformerLens's convention: the heads' and MLPs' writes through ``apply_ln_to_stack`` plus ``b_U``."""
    from transformers import GPT2LMHeadModel

    model, _, _ = loaded
    raw = MiniGPT.from_pretrained_no_processing(str(folder))
    hf = GPT2LMHeadModel.from_pretrained(folder)
    torch.testing.assert_close(raw.W_E, hf.transformer.wte.weight)
    assert not raw.cfg.tied_embed or torch.equal(raw.W_U, raw.W_E.T)
    assert torch.equal(model.blocks[0].ln1.w, torch.ones_like(model.blocks[0].ln1.w)) and not model.cfg.tied_embed
    tokens = model.to_tokens(TEXTS[0])
    with torch.no_grad():
        torch.testing.assert_close(model(tokens).log_softmax(-1), raw(tokens).log_softmax(-1), atol=1e-4, rtol=0)
    logits, cache = model.run_with_cache(tokens)
    answer, wrong = tokens[0, -1].item(), tokens[0, -2].item()
    direction = model.tokens_to_residual_directions(torch.tensor(answer)) - model.tokens_to_residual_directions(wrong)
    stack = cache.apply_ln_to_stack(cache.decompose_resid(layer=-1, pos_slice=-1), layer=-1, pos_slice=-1)
    attributed = (stack @ direction).sum() + model.b_U[answer] - model.b_U[wrong]
    torch.testing.assert_close(attributed, logits[0, -1, answer] - logits[0, -1, wrong], atol=1e-4, rtol=1e-4)
    with pytest.raises(TypeError, match="fold_ln must be True or False"):
        MiniGPT.from_pretrained(str(folder), fold_ln="yes")


def test_a_model_too_large_for_memory_is_refused_from_its_headers(folder, monkeypatch):
    """With less memory free than loading needs, the folder is refused from the safetensors headers alone: no
    tensor is read (``load_file`` is never called)."""
    from model.storage import hf_folder

    def no_read(*args, **kwargs):
        raise AssertionError("a tensor was read before the memory check refused the model")

    monkeypatch.setattr(hf_folder, "available_memory", lambda: 10**6)
    monkeypatch.setattr("safetensors.torch.load_file", no_read)
    with pytest.raises(ValueError, match=r"loading it needs about 0\.0 GiB \([\d,]+ weights in torch.float32"):
        MiniGPT.from_pretrained(str(folder))
    assert hf_folder.available_memory() == 10**6
    monkeypatch.undo()
    assert hf_folder.available_memory() > 10**8, "this machine's free memory is read"
