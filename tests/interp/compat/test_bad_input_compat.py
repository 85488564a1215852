"""Bad input to interp.compat (TransformerLens's utils, patching and evals helpers). Part of the bad-input matrix
(tests/interp/test_bad_input_interp.py walks interp/ and counts these rows too); see tests/bad_input_matrix.py."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from bad_input_matrix import Case, assert_clean_failure, build_env, params

from interp.compat import evals, patching, utils

P, U, E, M = "interp.compat.patching.", "interp.compat.utils.", "interp.compat.evals.", "interp.compat.mmlu."
METRIC = lambda logits: logits[:, -1, 5].mean()  # noqa: E731
ACT = torch.zeros(2, 6, 4, 16)


def _cases() -> list[Case]:
    setters = [("layer_pos_patch_setter", "layer, pos"), ("layer_pos_head_vector_patch_setter", "layer, pos, head"),
               ("layer_head_vector_patch_setter", "layer, head"), ("layer_head_pattern_patch_setter", "layer, head"),
               ("layer_head_pos_pattern_patch_setter", "layer, head, dest_pos"),
               ("layer_head_dest_src_pos_pattern_patch_setter", "layer, head, dest_pos, src_pos")]  # fmt: skip
    rows = [
        Case(P + name, "index too long", lambda e, n=name: getattr(patching, n)(ACT, [0, 1, 2, 3, 4], ACT),
             ValueError, f"{name} takes index [{names}], got [0, 1, 2, 3, 4]")
        for name, names in setters
    ]  # fmt: skip
    every = ["get_act_patch_block_every", "get_act_patch_attn_head_all_pos_every",
             "get_act_patch_attn_head_by_pos_every"]  # fmt: skip
    rows += [
        Case(P + name, "cache is a dict", lambda e, n=name: getattr(patching, n)(e.model, e.tokens, {}, METRIC),
             TypeError, "clean_cache must be the ActivationCache of model.run_with_cache(clean_tokens), got dict")
        for name in every
    ]  # fmt: skip
    return [
        *rows,
        Case(P + "generic_activation_patch", "metric not callable", lambda e: patching.generic_activation_patch(
            e.model, e.tokens, e.cache, 3, patching.layer_pos_patch_setter, "resid_pre", ("layer", "pos")),
            TypeError, "patching_metric must be callable, got int"),
        Case(P + "generic_activation_patch", "both index forms", lambda e: patching.generic_activation_patch(
            e.model, e.tokens, e.cache, METRIC, patching.layer_pos_patch_setter, "resid_pre", ("layer", "pos"),
            pd.DataFrame({"layer": [0], "pos": [0]})), ValueError, "give exactly one of index_axis_names and index_df"),
        Case(P + "generic_activation_patch", "unknown axis", lambda e: patching.generic_activation_patch(
            e.model, e.tokens, e.cache, METRIC, patching.layer_pos_patch_setter, "resid_pre", ("layer", "row")),
            ValueError, "index_axis_names must name axes among"),
        Case(P + "generic_activation_patch", "float tokens", lambda e: patching.generic_activation_patch(
            e.model, torch.rand(2, 6), e.cache, METRIC, patching.layer_pos_patch_setter, "resid_pre",
            ("layer", "pos")), ValueError, "tokens must be integer ids"),
        Case(P + "make_df_from_ranges", "ranges and names differ", lambda e: patching.make_df_from_ranges(
            [2], ["layer", "pos"]), ValueError, "one positive int range per column name"),
        Case(U + "get_act_name", "layer a str", lambda e: utils.get_act_name("z", "1"), TypeError,
             "layer must be a block index"),
        Case(U + "test_prompt", "answer None", lambda e: utils.test_prompt("ab", None, e.model), TypeError,
             "answer must be a non-empty str or a list of them"),
        Case(U + "arena_induction_scores", "seq_len 1", lambda e: utils.arena_induction_scores(e.cache, 1),
             ValueError, "seq_len must be the length (an int >= 2) of the repeated segment, got 1"),
        Case(U + "test_prompt", "top_k 0", lambda e: utils.test_prompt("ab", "c", e.model, top_k=0), ValueError,
             "top_k must be a positive int, got 0"),
        *_evals_cases(),
        *_utils_cases(),
    ]  # fmt: skip


def _utils_cases() -> list[Case]:
    u = U
    return [
        Case(u + "to_numpy", "a dict", lambda e: utils.to_numpy({"a": 1}), ValueError, "to_numpy takes a tensor"),
        Case(u + "get_corner", "a list", lambda e: utils.get_corner([[1, 2]]), TypeError,
             "get_corner takes a tensor or a FactoredMatrix, got list"),
        Case(u + "remove_batch_dim", "a number", lambda e: utils.remove_batch_dim(3.0), TypeError,
             "remove_batch_dim takes a tensor with a leading axis, got float"),
        Case(u + "lm_cross_entropy_loss", "token floats", lambda e: utils.lm_cross_entropy_loss(
             torch.zeros(1, 3, 64), torch.zeros(1, 3)), TypeError, "tokens must hold integer ids"),
        Case(u + "lm_accuracy", "logits without a batch", lambda e: utils.lm_accuracy(torch.zeros(3, 64),
             torch.zeros(1, 3, dtype=torch.long)), TypeError, "takes logits [batch, pos, d_vocab], got shape (3, 64)"),
        Case(u + "gelu_new", "a list", lambda e: utils.gelu_new([1.0]), TypeError, "gelu_new takes a tensor, got list"),
        Case(u + "solu", "a number", lambda e: utils.solu(1.0), TypeError, "solu takes a tensor, got float"),
        Case(u + "get_device", "an argument", lambda e: utils.get_device("cuda"), TypeError,
             "takes 0 positional arguments but 1 was given"),
    ]  # fmt: skip


def _evals_cases() -> list[Case]:
    hub = [(name, source) for name, source in evals.HUB.items()]
    return [
        *(Case(E + name, "needs the hub", lambda e, n=name: getattr(evals, n)(e.model.tokenizer), NotImplementedError,
               f"{name} reads {source} from the Hugging Face hub, and MiniGPT Lens never downloads")
          for name, source in hub),
        Case(E + "evaluate", "needs the hub", lambda e: evals.evaluate(e.model), NotImplementedError,
             "evaluate reads four data sets from the Hugging Face hub"),
        Case(E + "sanity_check", "model is a str", lambda e: evals.sanity_check("gpt2"), TypeError,
             "model must be a MiniGPT"),
        Case(E + "induction_loss", "batch_size 0", lambda e: evals.induction_loss(e.model, batch_size=0), ValueError,
             "batch_size must be"),
        Case(E + "induction_loss", "prepend_bos 1", lambda e: evals.induction_loss(e.model, prepend_bos=1), TypeError,
             "prepend_bos must be True, False or None, got 1"),
        Case(E + "IOIDataset", "a tokenizer without encode", lambda e: evals.IOIDataset(3), TypeError,
             "tokenizer must have an encode(text) method, got int"),
        Case(E + "IOIDataset", "one name", lambda e: evals.IOIDataset(e.model.tokenizer, names=["John"]), ValueError,
             "needs at least one template and two names"),
        Case(E + "ioi_eval", "names that tokenize alike", lambda e: evals.ioi_eval(e.model, dataset=evals.IOIDataset(
             e.model.tokenizer, names=["Ann", "ANN"], num_samples=2)), ValueError, "tokenize alike"),
        Case(E + "evaluate_on_dataset", "no batch", lambda e: evals.evaluate_on_dataset(e.model, []), ValueError,
             "data_loader gave no batch"),
        Case(M + "mmlu_eval", "no data= (needs the hub)", lambda e: evals.mmlu_eval(e.model), NotImplementedError,
             "mmlu_eval reads cais/mmlu from the Hugging Face hub"),
        Case(M + "mmlu_eval", "an unknown subject", lambda e: evals.mmlu_eval(e.model, data=[MMLU], subjects="art"),
             ValueError, "unknown MMLU subject(s) ['art']"),
        Case(M + "mmlu_eval", "no choices", lambda e: evals.mmlu_eval(e.model, data=[{"question": "q"}]),
             ValueError, "MMLU example 0 must be a mapping with the keys"),
        Case(M + "mmlu_eval", "answer 4", lambda e: evals.mmlu_eval(e.model, data=[{**MMLU, "answer": 4}]), ValueError,
             "answer 4 is not an index of its choices"),
        Case(M + "mmlu_eval", "a prompt past the context", lambda e: evals.mmlu_eval(e.model, data=[MMLU]), ValueError,
             "an MMLU prompt of 60 tokens is longer than this model's context"),
    ]  # fmt: skip


MMLU = {"question": "two plus two?", "choices": ["3", "4", "5", "6"], "answer": 1, "subject": "virology"}


CASES = _cases()


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    return build_env(tmp_path_factory.mktemp("bad_input_compat"))


@pytest.mark.parametrize("case", params(CASES))
def test_bad_input_raises_a_clear_typed_error(case, env):
    """The TransformerLens-style call refuses the bad input with a typed error naming it, and changes nothing."""
    assert_clean_failure(case, env)
