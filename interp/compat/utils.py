"""TransformerLens's ``utils`` helpers a notebook reaches for: :func:`get_act_name`, :func:`test_prompt`, and the
small tensor helpers (:func:`to_numpy`, :func:`get_corner`, :func:`lm_cross_entropy_loss`, :func:`lm_accuracy`,
:func:`remove_batch_dim`, :func:`gelu_new`, :func:`solu`, :func:`composition_scores`, :func:`get_device`).

Example:
    >>> get_act_name("attn", 1), get_act_name("scale", 0, "ln2"), get_act_name("z", 0, "a"), get_act_name("k1")
    ('blocks.1.attn.hook_pattern', 'blocks.0.ln2.hook_scale', 'blocks.0.attn.hook_z', 'blocks.1.attn.hook_k')
"""

from __future__ import annotations

import re

import numpy as np
import torch
from jaxtyping import Float, Int
from torch import Tensor

from model.network.cache import ActivationCache
from model.network.factored_matrix import FactoredMatrix, composition_scores  # noqa: F401 (TL's utils has it)
from model.network.layers import ACTIVATIONS
from model.network.logits import next_token_loss
from model.network.minigpt import MiniGPT

_ALIASES = {"attn": "pattern", "attn_logits": "attn_scores", "key": "k", "query": "q", "value": "v",
            "mlp_pre": "pre", "mlp_post": "post"}  # fmt: skip
_LAYER_TYPES = {"a": "attn", "m": "mlp", "b": "", "block": "", "blocks": "", "attention": "attn"}
_ATTN = {"k", "v", "q", "z", "rot_k", "rot_q", "result", "pattern", "attn_scores"}
_MLP = {"pre", "post"}


def get_act_name(name: str, layer: int | None = None, layer_type: str | None = None) -> str:
    """The full hook name, as TransformerLens's ``utils.get_act_name`` spells it.

    ``name`` is a shorthand (``"resid_pre"``, ``"z"``, ``"pattern"``, ``"scale"``, ``"normalized"``, ``"post"``
    ...) or one of TransformerLens's aliases (``"attn"`` is the pattern, ``"attn_logits"`` the scores, ``"key"``,
    ``"query"``, ``"value"``, ``"mlp_pre"``, ``"mlp_post"``); ``layer_type`` is ``"attn"``/``"a"``,
    ``"mlp"``/``"m"``, ``"ln1"``, ``"ln2"`` or ``"b"`` (none). Compact forms work (``"k6"``, ``"scale4ln1"``), and a
    full name comes back unchanged. ``"scale"`` / ``"normalized"`` without a layer are the final LayerNorm's.

    Example:
        >>> get_act_name("normalized", 1, "ln2"), get_act_name("scale"), get_act_name("hook_embed")
        ('blocks.1.ln2.hook_normalized', 'ln_final.hook_scale', 'hook_embed')
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"name must be a non-empty str such as 'resid_pre' or 'pattern', got {name!r}")
    if layer is not None and (isinstance(layer, bool) or not isinstance(layer, int) or layer < 0):
        raise TypeError(f"layer must be a block index (an int >= 0) or None, got {layer!r}")
    if layer_type is not None and not isinstance(layer_type, str):
        raise TypeError(f"layer_type must be a str such as 'attn', 'mlp', 'ln1' or 'ln2', got {layer_type!r}")
    if ("." in name or name.startswith("hook_")) and layer is None and layer_type is None:
        return name
    compact = re.fullmatch(r"([a-z_]+?)(\d+)([a-z]\w*)?", name)
    if compact is not None and layer is None:
        name, layer, layer_type = compact.group(1), int(compact.group(2)), compact.group(3)
    name = _ALIASES.get(name, name)
    if name in _ATTN:
        layer_type = "attn"
    elif name in _MLP:
        layer_type = "mlp"
    elif layer_type in _LAYER_TYPES:
        layer_type = _LAYER_TYPES[layer_type]
    full = ("" if layer is None else f"blocks.{layer}.") + (f"{layer_type}." if layer_type else "") + f"hook_{name}"
    return f"ln_final.{full}" if name in ("scale", "normalized") and layer is None else full


def test_prompt(
    prompt: str,
    answer: str | list[str],
    model: MiniGPT,
    prepend_space_to_answer: bool = True,
    print_details: bool = True,
    prepend_bos: bool = True,
    top_k: int = 10,
) -> list[tuple[str, int]]:
    """Print how ``model`` ranks ``answer`` after ``prompt`` (TransformerLens's ``utils.test_prompt``), and return
    ``[(answer token, rank), ...]`` (rank 0 is the model's first choice; TransformerLens prints these and returns
    None). A str answer is scored token by token (each character here); a list of answers compares their first
    tokens. ``prepend_space_to_answer`` (TransformerLens's default, True) puts a space before an answer that has none.

    Example:
        >>> model = MiniGPT.from_pretrained("induction-2l")
        >>> ranks = test_prompt("abcab", "c", model, prepend_space_to_answer=False, print_details=False)
        >>> [token for token, _ in ranks]
        ['c']
    """
    for flag_name, flag in (("prepend_space_to_answer", prepend_space_to_answer), ("print_details", print_details)):
        if not isinstance(flag, bool):
            raise TypeError(f"{flag_name} must be True or False, got {flag!r}")
    if not isinstance(model, MiniGPT):
        raise TypeError(f"model must be a MiniGPT, got {type(model).__name__}")
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise ValueError(f"top_k must be a positive int, got {top_k!r}")
    answers = [answer] if isinstance(answer, str) else answer
    if not isinstance(answers, list) or not answers or not all(isinstance(a, str) and a for a in answers):
        raise TypeError(f"answer must be a non-empty str or a list of them, got {answer!r}")
    if prepend_space_to_answer:
        answers = [a if a.startswith(" ") else " " + a for a in answers]
    prompt_ids = model.to_tokens(prompt, prepend_bos=prepend_bos)
    answer_lists = [model.to_tokens(a, prepend_bos=False)[0] for a in answers]
    length = 1 if len(answers) > 1 else len(answer_lists[0])
    answer_ids = torch.stack([ids[:length] for ids in answer_lists])
    tokens = torch.cat([prompt_ids.repeat(len(answers), 1), answer_ids.to(prompt_ids.device)], dim=1)
    if print_details:
        print("Tokenized prompt:", model.to_str_tokens(prompt_ids[0]))
        print("Tokenized answer:", [model.to_str_tokens(ids[:length]) for ids in answer_lists])
    with torch.no_grad():
        logits = model(tokens)
    ranks = []
    start = prompt_ids.shape[1]
    for index in range(start, start + length):
        probs = logits[:, index - 1].softmax(-1)
        order = probs.argsort(-1, descending=True)
        for row in range(len(answers)):
            token = int(tokens[row, index])
            rank = int((order[row] == token).nonzero()[0, 0])
            label = model.to_str_tokens([token])[0]
            ranks.append((label, rank))
            if print_details:
                logit, prob = float(logits[row, index - 1, token]), float(probs[row, token])
                print(
                    f"Performance on answer token: Rank: {rank:<4} Logit: {logit:5.2f} Prob: {prob:6.2%} "
                    f"Token: |{label}|"
                )
                for k, top in enumerate(order[row, :top_k].tolist()):
                    top_logit, top_prob = float(logits[row, index - 1, top]), float(probs[row, top])
                    print(
                        f"Top {k}th token. Logit: {top_logit:5.2f} Prob: {top_prob:6.2%} "
                        f"Token: |{model.to_str_tokens([top])[0]}|"
                    )
    if print_details:
        print(f"Ranks of the answer tokens: {ranks}")
    return ranks


test_prompt.__test__ = False  # TransformerLens's name, not a pytest test


def arena_induction_scores(cache: ActivationCache, seq_len: int) -> Float[Tensor, "layer head"]:
    """ARENA's induction ("stripe") score of every head: the mean attention from each token of the second copy to
    the token after its first occurrence (``pattern.diagonal(offset=1 - seq_len)``), over batch and positions, for
    a cache of ``[<bos>, x, x]`` with ``len(x) = seq_len``. It is defined differently from ours
    (:func:`interp.head_scores`' ``induction``), so the two differ on the same heads; this one is ARENA's.

    Example:
        >>> model = MiniGPT.from_pretrained("induction-2l")
        >>> x = model.random_tokens(2, 15, seed=0)
        >>> bos = torch.full((2, 1), model.tokenizer.bos_token_id)
        >>> _, cache = model.run_with_cache(torch.cat([bos, x, x], dim=1))
        >>> arena_induction_scores(cache, 15).shape
        torch.Size([2, 1])
    """
    if not isinstance(cache, ActivationCache):
        raise TypeError(f"cache must be an ActivationCache from model.run_with_cache, got {type(cache).__name__}")
    if isinstance(seq_len, bool) or not isinstance(seq_len, int) or seq_len < 2:
        raise ValueError(f"seq_len must be the length (an int >= 2) of the repeated segment, got {seq_len!r}")
    layers = sorted(int(name.split(".")[1]) for name in cache if name.endswith("attn.hook_pattern"))
    if not layers:
        raise KeyError("the cache holds no attention pattern; record blocks.{l}.attn.hook_pattern")
    scores = []
    for layer in layers:
        pattern = cache["pattern", layer]
        pattern = pattern if cache.has_batch_dim else pattern[None]
        if pattern.shape[-1] < 2 * seq_len:
            raise ValueError(f"the cache covers {pattern.shape[-1]} positions, fewer than two copies of {seq_len}")
        scores.append(pattern.diagonal(offset=1 - seq_len, dim1=-2, dim2=-1).mean(dim=(0, -1)))
    return torch.stack(scores)


# TransformerLens's small tensor helpers, with its names and semantics


def _tensor(value: object, fn: str, what: str = "a tensor", ndim: int = 0) -> Tensor:
    if not isinstance(value, Tensor) or value.ndim < ndim:
        got = f"shape {tuple(value.shape)}" if isinstance(value, Tensor) else type(value).__name__
        raise TypeError(f"{fn} takes {what}, got {got}")
    return value


def to_numpy(tensor: object) -> np.ndarray:
    """A tensor (detached, on the CPU), list, tuple, number or string as a numpy array (TransformerLens's).

    Example:
        >>> to_numpy(torch.ones(2, requires_grad=True)), to_numpy([1, 2])
        (array([1., 1.], dtype=float32), array([1, 2]))
    """
    if isinstance(tensor, np.ndarray):
        return tensor
    if isinstance(tensor, Tensor):
        return tensor.detach().cpu().numpy()
    if isinstance(tensor, list | tuple | int | float | bool | str):
        return np.array(tensor)
    raise ValueError(f"to_numpy takes a tensor, array, list, tuple or number, got {type(tensor).__name__}")


def get_corner(tensor: Tensor | FactoredMatrix, n: int = 3) -> Tensor:
    """The first ``n`` entries along every axis (a FactoredMatrix: of its product), to glance at.

    Example:
        >>> get_corner(torch.arange(16).view(4, 4), 2)
        tensor([[0, 1],
                [4, 5]])
    """
    if isinstance(tensor, FactoredMatrix):
        return tensor[tuple(slice(n) for _ in range(tensor.ndim - 2))].AB[..., :n, :n]
    if not isinstance(tensor, Tensor):
        raise TypeError(f"get_corner takes a tensor or a FactoredMatrix, got {type(tensor).__name__}")
    return tensor[tuple(slice(n) for _ in range(tensor.ndim))]


def remove_batch_dim(tensor: Tensor) -> Tensor:
    """``tensor`` without its leading axis if that axis has length 1, else unchanged (TransformerLens's)."""
    _tensor(tensor, "remove_batch_dim", "a tensor with a leading axis", ndim=1)
    return tensor.squeeze(0) if tensor.shape[0] == 1 else tensor


def lm_cross_entropy_loss(
    logits: Float[Tensor, "batch pos d_vocab"],
    tokens: Int[Tensor, "batch pos"],
    attention_mask: Int[Tensor, "batch pos"] | None = None,
    per_token: bool = False,
) -> Tensor:
    """The next-token loss (mean, or ``[batch, pos - 1]``): the model's ``loss_fn`` under TransformerLens's name."""
    return next_token_loss(logits, tokens, per_token=per_token, attention_mask=attention_mask)


def lm_accuracy(logits: Float[Tensor, "batch pos d_vocab"], tokens: Int[Tensor, "batch pos"], per_token: bool = False):
    """Top-1 next-token accuracy: the share of positions whose argmax is the next token (``per_token``: the
    ``[batch, pos - 1]`` booleans), as TransformerLens computes it.

    Example:
        >>> tokens = torch.tensor([[1, 2, 3]])
        >>> float(lm_accuracy(torch.nn.functional.one_hot(torch.tensor([[2, 3, 0]]), 5).float(), tokens))
        1.0
    """
    _tensor(logits, "lm_accuracy", "logits [batch, pos, d_vocab]", ndim=3)
    _tensor(tokens, "lm_accuracy", "tokens [batch, pos]", ndim=2)
    correct = logits.argmax(dim=-1)[:, :-1] == tokens[:, 1:]
    return correct if per_token else correct.sum() / correct.numel()


def gelu_new(input: Tensor) -> Tensor:
    """GPT-2's GELU (the tanh approximation), the one MiniGPT's ``act="gelu_new"`` runs."""
    return ACTIVATIONS["gelu_new"](_tensor(input, "gelu_new"))


def solu(input: Tensor) -> Tensor:
    """SoLU (Elhage et al. 2022): ``x * softmax(x)`` over the last axis."""
    return _tensor(input, "solu", ndim=1) * torch.softmax(input, dim=-1)


def get_device() -> torch.device:
    """The best device here: CUDA, else Apple's MPS, else the CPU (TransformerLens's)."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")
