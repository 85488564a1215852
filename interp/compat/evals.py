"""TransformerLens's ``evals``: quick evaluations with its calls, semantics and defaults (``from interp.compat import
evals`` where a TransformerLens user writes ``from transformer_lens import evals``).

- :func:`sanity_check`: the next-token loss on the first paragraph of "Zoom In" (under 5: probably fine).
- :func:`induction_loss`: the loss on the second half of random token sequences repeated twice (low: induction
  heads). TransformerLens draws tokens in ``[100, 20000)`` and repeats 384 of them; a vocabulary too small for
  that range draws from the model's ordinary tokens, and a context too short for 384 takes half the context.
- :class:`IOIDataset` and :func:`ioi_eval`: indirect object identification (Wang et al. 2022) with TransformerLens's
  templates, names and nouns, built in code; the logit difference between the indirect object and the subject at
  the first token where the two names differ, and the share of prompts where it is positive.
- :func:`evaluate_on_dataset`: the mean loss over the batches of a data loader you give.
- :func:`mmlu_eval`: zero-shot MMLU as TransformerLens scores it (the answer letter with the highest log
  probability after ``Answer:``), on the questions you pass as ``data=`` in TransformerLens's format.
- :func:`make_wiki_data_loader`, :func:`make_owt_data_loader`, :func:`make_pile_data_loader`,
  :func:`make_code_data_loader`, :func:`make_mmlu_data_loader`, :func:`evaluate` (and :func:`mmlu_eval` without
  ``data=``) need data sets from the Hugging Face hub: MiniGPT Lens never downloads, so they raise
  ``NotImplementedError`` saying how to load the data yourself.

As in TransformerLens, :class:`IOIDataset` reseeds Python's ``random`` with 42 for every sample, so with its default
templates every sample is the same prompt (``ioi_eval`` on GPT-2 small gives TransformerLens's numbers because of
it); pass your own ``templates`` and ``names`` for variety.

Example:
    >>> import torch
    >>> from model import MiniGPT
    >>> model = MiniGPT.from_pretrained("induction-2l")
    >>> _ = torch.manual_seed(0)
    >>> bool(induction_loss(model) < 1)  # induction-2l copies the second half; untrained: about log(64) = 4.16
    True
    >>> model = MiniGPT.from_pretrained("minigpt-text")  # 32 characters of context: short templates
    >>> data = IOIDataset(model.tokenizer, templates=["[A] met [B]. [B] gave it to [A]"], names=["Al", "Bo"])
    >>> sorted(ioi_eval(model, dataset=data))
    ['Accuracy', 'Logit Difference']
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping

import torch
from jaxtyping import Int
from torch import Tensor
from tqdm import tqdm

from interp.common.checks import check_int, check_model
from interp.compat.mmlu import MMLU_ANSWER_LETTERS, MMLU_SUBJECTS, mmlu_eval  # noqa: F401 (TL's evals has them)
from model.network.logits import next_token_loss
from model.network.minigpt import MiniGPT

ZOOM_IN = (
    "Many important transition points in the history of science have been moments when science 'zoomed in.' At "
    "these points, we develop a visualization or tool that allows us to see the world in a new level of detail, and "
    "a new field of science develops to study the world through this lens."
)
HUB = {  # the loaders TransformerLens has, and the hub data set each reads
    "make_wiki_data_loader": "wikitext (wikitext-2-v1, train)",
    "make_owt_data_loader": "stas/openwebtext-10k",
    "make_pile_data_loader": "NeelNanda/pile-10k",
    "make_code_data_loader": "codeparrot/codeparrot-valid-v2-near-dedup",
    "make_mmlu_data_loader": "cais/mmlu",  # mmlu_eval (interp/compat/mmlu.py) reads it too
}


@torch.inference_mode()
def sanity_check(model: MiniGPT) -> Tensor:
    """The next-token loss on the first paragraph of "Circuits: Zoom In": a rough check that a model works (under 5
    probably fine, over 7 something is wrong, for a model of English text); its first ``n_ctx`` tokens where the
    context is shorter than the paragraph.

    Example:
        >>> from model import MiniGPT
        >>> bool(sanity_check(MiniGPT.from_pretrained("minigpt-text")) < 5)
        True
    """
    model = check_model(model)
    if model.tokenizer is None:
        raise ValueError("sanity_check reads a text, and this model has no tokenizer")
    ids = [model.tokenizer.bos_token_id, *model.tokenizer.encode(ZOOM_IN)][: model.cfg.n_ctx]
    return model(torch.tensor([ids], device=model.device), return_type="loss")


@torch.inference_mode()
def induction_loss(
    model: MiniGPT,
    tokenizer: object = None,
    batch_size: int = 4,
    subseq_len: int | None = 384,
    prepend_bos: bool | None = None,
    device: str | torch.device | None = None,
) -> Tensor:
    """The mean next-token loss on the second half of ``batch_size`` random sequences of ``subseq_len`` tokens
    repeated twice, the first replaced by BOS when ``prepend_bos`` (default: the model's ``default_prepend_bos``).

    Tokens are drawn as TransformerLens draws them (``torch.randint(100, 20000, ...)``, from torch's global generator,
    so ``torch.manual_seed`` fixes them) where the vocabulary holds that range, else uniformly from the model's
    ordinary (non-special) tokens; ``subseq_len`` is capped at half the context (None: half the context).

    Example:
        >>> import torch
        >>> from model import MiniGPT, ModelConfig
        >>> _ = torch.manual_seed(0)
        >>> 3.5 < float(induction_loss(MiniGPT(ModelConfig(), seed=0))) < 4.5  # untrained: about log(64)
        True
    """
    model = check_model(model)
    batch_size = check_int(batch_size, "batch_size", minimum=1)
    half = model.cfg.n_ctx // 2
    subseq_len = half if subseq_len is None else min(check_int(subseq_len, "subseq_len", minimum=1), half)
    if subseq_len < 1:
        raise ValueError(f"induction_loss repeats a sequence twice, but the context holds {model.cfg.n_ctx} token")
    if prepend_bos is None:
        prepend_bos = model.cfg.default_prepend_bos
    if not isinstance(prepend_bos, bool):
        raise TypeError(f"prepend_bos must be True, False or None, got {prepend_bos!r}")
    if model.cfg.d_vocab >= 20000:
        first_half = torch.randint(100, 20000, (batch_size, subseq_len))
    else:
        first_half = model.random_tokens(batch_size, subseq_len)  # from the global generator, as above
    tokens = first_half.repeat(1, 2).to(model.device if device is None else device)
    if prepend_bos:
        tokenizer = model.tokenizer if tokenizer is None else tokenizer
        if getattr(tokenizer, "bos_token_id", None) is None:
            raise ValueError("prepend_bos needs a tokenizer with a bos_token_id; pass tokenizer= or prepend_bos=False")
        tokens[:, 0] = tokenizer.bos_token_id
    per_token = next_token_loss(model(tokens), tokens, per_token=True)  # [batch, 2 * subseq_len - 1]
    return per_token[:, subseq_len + 1 :].mean()


class IOIDataset(torch.utils.data.Dataset):
    """Indirect object identification prompts with TransformerLens's defaults: each sample is a template with its
    ``[LOCATION]`` and ``[OBJECT]`` filled in and two names, ``[A]`` the indirect object (IO), ``[B]`` the subject
    (S); item ``i`` is ``{"prompt", "IO", "S"}``, token ids (``IO`` and ``S`` with a leading space).

    Example:
        >>> from model import MiniGPT
        >>> data = IOIDataset(MiniGPT.from_pretrained("minigpt-text").tokenizer, num_samples=2)
        >>> data.samples[0]["text"]
        'Mary and John went to the store to buy bread. John handed the bread to Mary'
    """

    def __init__(
        self,
        tokenizer: object,
        templates: list[str] | None = None,
        names: list[str] | None = None,
        nouns: Mapping[str, list[str]] | None = None,
        num_samples: int = 1000,
        symmetric: bool = False,
        prepend_bos: bool = True,
    ) -> None:
        if not callable(getattr(tokenizer, "encode", None)):
            raise TypeError(f"tokenizer must have an encode(text) method, got {type(tokenizer).__name__}")
        self.tokenizer, self.prepend_bos = tokenizer, prepend_bos
        self.templates = list(templates) if templates is not None else self.get_default_templates()
        self.names = list(names) if names is not None else self.get_default_names()
        self.nouns = dict(nouns) if nouns is not None else self.get_default_nouns()
        if len(self.names) < 2 or not self.templates:
            raise ValueError("IOIDataset needs at least one template and two names")
        num_samples = check_int(num_samples, "num_samples", minimum=1)
        self.samples: list[dict[str, str]] = []
        for _ in range(num_samples // 2 if symmetric else num_samples):
            self.samples.extend(self.get_sample(symmetric=symmetric))

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, idx: int) -> dict[str, Tensor]:
        sample = self.samples[idx]
        prompt = list(self.tokenizer.encode(sample["text"]))
        if self.prepend_bos:
            prompt = [self.tokenizer.bos_token_id, *prompt]
        encode = self.tokenizer.encode
        return {"prompt": torch.tensor(prompt, dtype=torch.long), "IO": torch.tensor(encode(sample["IO"])),
                "S": torch.tensor(encode(sample["S"]))}  # fmt: skip

    def get_sample(self, symmetric: bool = False) -> list[dict[str, str]]:
        """One sample (two with ``symmetric``: the names swapped); Python's ``random`` is reseeded with 42 first,
        as TransformerLens does (so every default sample is the same)."""
        random.seed(42)
        template = random.choice(self.templates)
        for noun_type, noun_list in self.nouns.items():
            template = template.replace(f"[{noun_type}]", random.choice(noun_list))
        first, second = random.sample(self.names, 2)
        samples = [{"text": template.replace("[A]", first).replace("[B]", second), "IO": " " + first,
                    "S": " " + second}]  # fmt: skip
        if symmetric:
            samples.append({"text": template.replace("[A]", second).replace("[B]", first), "IO": " " + second,
                            "S": " " + first})  # fmt: skip
        return samples

    @staticmethod
    def get_default_names() -> list[str]:
        return ["John", "Mary"]

    @staticmethod
    def get_default_templates() -> list[str]:
        return [
            "[A] and [B] went to the [LOCATION] to buy [OBJECT]. [B] handed the [OBJECT] to [A]",
            "Then, [B] and [A] went to the [LOCATION]. [B] gave the [OBJECT] to [A]",
        ]

    @staticmethod
    def get_default_nouns() -> dict[str, list[str]]:
        return {"LOCATION": ["store", "market"], "OBJECT": ["milk", "eggs", "bread"]}


@torch.inference_mode()
def ioi_eval(
    model: MiniGPT,
    dataset: IOIDataset | None = None,
    batch_size: int = 8,
    num_samples: int = 1000,
    tokenizer: object = None,
    symmetric: bool = False,
) -> dict[str, float]:
    """``{"Logit Difference", "Accuracy"}`` on indirect object identification: the logit of the indirect object's
    first token that differs from the subject's, minus the subject's, at the position before it, averaged over the
    prompts; and the share of prompts where it is positive (TransformerLens's ``evals.ioi_eval``).

    Example:
        >>> from model import MiniGPT
        >>> model = MiniGPT.from_pretrained("minigpt-text")
        >>> data = IOIDataset(model.tokenizer, templates=["[A] met [B]. [B] gave it to [A]"], names=["Al", "Bo"])
        >>> 0 <= ioi_eval(model, dataset=data)["Accuracy"] <= 1
        True
    """
    model = check_model(model)
    batch_size = check_int(batch_size, "batch_size", minimum=1)
    tokenizer = model.tokenizer if tokenizer is None else tokenizer
    if dataset is None:
        if tokenizer is None:
            raise ValueError("ioi_eval needs a tokenizer (the model has none): pass tokenizer= or dataset=")
        dataset = IOIDataset(tokenizer, num_samples=num_samples, symmetric=symmetric)
    if len(dataset) == 0:
        raise ValueError("ioi_eval needs a non-empty dataset")
    items = [dataset[i] for i in range(len(dataset))]
    reads = [_read_at(item) for item in items]  # (position, IO token, S token) of each prompt
    longest = max(len(item["prompt"]) for item in items)
    if longest > model.cfg.n_ctx:
        raise ValueError(
            f"the IOI prompts are up to {longest} tokens, longer than this model's context of {model.cfg.n_ctx}; pass "
            "dataset=IOIDataset(tokenizer, templates=[...]) with shorter templates (and names)"
        )
    diffs = []
    for start in tqdm(range(0, len(items), batch_size), desc="IOI", disable=None):
        batch = items[start : start + batch_size]
        prompts = torch.nn.utils.rnn.pad_sequence([s["prompt"] for s in batch], batch_first=True)
        logits = model(prompts.to(model.device))
        for row, (at, io, s) in zip(logits, reads[start : start + batch_size], strict=True):
            diffs.append(float(row[at, io] - row[at, s]))
    return {"Logit Difference": sum(diffs) / len(diffs), "Accuracy": sum(d > 0 for d in diffs) / len(diffs)}


def _read_at(sample: Mapping[str, Tensor]) -> tuple[int, int, int]:
    """Where one prompt is read, and which two tokens: the first token where IO and S differ, and the position
    just before it (the prompt ends with the indirect object)."""
    io, s = sample["IO"], sample["S"]
    n = min(len(io), len(s))
    differ = torch.nonzero(io[:n] != s[:n])
    if len(differ) == 0:
        raise ValueError("the indirect object and the subject tokenize alike: give two names that differ")
    at = int(differ[0])
    return len(sample["prompt"]) - len(io) + at - 1, int(io[at]), int(s[at])


@torch.inference_mode()
def evaluate_on_dataset(
    model: MiniGPT, data_loader: Iterable, truncate: int = 100, device: str | torch.device | None = None
) -> float:
    """The mean next-token loss over the batches of ``data_loader`` (each a ``{"tokens": [batch, pos]}`` mapping or
    a token tensor), stopping after ``truncate + 1`` batches as TransformerLens does.

    Example:
        >>> import torch
        >>> from model import MiniGPT
        >>> model = MiniGPT.from_pretrained("minigpt-text")
        >>> batches = [{"tokens": model.to_tokens(["the cat sat on the mat", "a dog ran in the park"])}]
        >>> 0 < evaluate_on_dataset(model, batches) < 5
        True
    """
    model = check_model(model)
    truncate = check_int(truncate, "truncate", minimum=0)
    running, total = 0.0, 0
    for batch in tqdm(data_loader, desc="evaluating", disable=None):
        tokens: Int[Tensor, "batch pos"] = batch["tokens"] if isinstance(batch, Mapping) else batch
        running += float(model(tokens.to(model.device if device is None else device), return_type="loss").mean())
        total += 1
        if total > truncate:
            break
    if total == 0:
        raise ValueError("data_loader gave no batch")
    return running / total


def _needs_download(name: str):
    def loader(*args: object, **kwargs: object) -> None:
        raise NotImplementedError(
            f"{name} reads {HUB[name]} from the Hugging Face hub, and MiniGPT Lens never downloads. Load it yourself "
            "(datasets.load_dataset, where you allow downloads), tokenize it into batches of {'tokens': ...} and "
            "pass them to evals.evaluate_on_dataset(model, batches)"
        )

    loader.__name__ = loader.__qualname__ = name
    loader.__doc__ = f"TransformerLens's ``{name}``: needs {HUB[name]} from the hub, so it raises, saying what to do."
    return loader


make_wiki_data_loader = _needs_download("make_wiki_data_loader")
make_owt_data_loader = _needs_download("make_owt_data_loader")
make_pile_data_loader = _needs_download("make_pile_data_loader")
make_code_data_loader = _needs_download("make_code_data_loader")
make_mmlu_data_loader = _needs_download("make_mmlu_data_loader")


def evaluate(model: MiniGPT, truncate: int = 100, batch_size: int = 8, tokenizer: object = None) -> dict[str, float]:
    """TransformerLens's ``evaluate``: the loss on four hub data sets, which MiniGPT Lens does not download; raises,
    saying how to load them yourself and use :func:`evaluate_on_dataset`."""
    check_model(model)
    raise NotImplementedError(
        f"evaluate reads four data sets from the Hugging Face hub ({', '.join(HUB.values())}), and MiniGPT Lens never "
        "downloads. Load them yourself and pass their batches to evals.evaluate_on_dataset(model, batches)"
    )
