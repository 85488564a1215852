"""MMLU (Hendrycks et al. 2021) scored as TransformerLens's ``evals.mmlu_eval`` scores it, zero-shot, on questions
you load yourself (MMLU is on the Hugging Face hub, and MiniGPT Lens never downloads). ``evals`` re-exports it.

Example:
    >>> from model import MiniGPT, ModelConfig
    >>> model = MiniGPT(ModelConfig(n_ctx=64), seed=0)
    >>> data = [{"question": "two plus two?", "choices": ["3", "4", "5", "6"], "answer": 1, "subject": "x"}]
    >>> sorted(mmlu_eval(model, data=data))
    ['accuracy', 'num_correct', 'num_total', 'subject_scores']
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
from tqdm import tqdm

from interp.common.checks import check_int, check_model
from model.network.minigpt import MiniGPT

MMLU_HUB = "cais/mmlu"
MMLU_SUBJECTS = [  # the 57 subjects of MMLU (Hendrycks et al. 2021)
    "abstract_algebra",
    "anatomy",
    "astronomy",
    "business_ethics",
    "clinical_knowledge",
    "college_biology",
    "college_chemistry",
    "college_computer_science",
    "college_mathematics",
    "college_medicine",
    "college_physics",
    "computer_security",
    "conceptual_physics",
    "econometrics",
    "electrical_engineering",
    "elementary_mathematics",
    "formal_logic",
    "global_facts",
    "high_school_biology",
    "high_school_chemistry",
    "high_school_computer_science",
    "high_school_european_history",
    "high_school_geography",
    "high_school_government_and_politics",
    "high_school_macroeconomics",
    "high_school_mathematics",
    "high_school_microeconomics",
    "high_school_physics",
    "high_school_psychology",
    "high_school_statistics",
    "high_school_us_history",
    "high_school_world_history",
    "human_aging",
    "human_sexuality",
    "international_law",
    "jurisprudence",
    "logical_fallacies",
    "machine_learning",
    "management",
    "marketing",
    "medical_genetics",
    "miscellaneous",
    "moral_disputes",
    "moral_scenarios",
    "nutrition",
    "philosophy",
    "prehistory",
    "professional_accounting",
    "professional_law",
    "professional_medicine",
    "professional_psychology",
    "public_relations",
    "security_studies",
    "sociology",
    "us_foreign_policy",
    "virology",
    "world_religions",
]
MMLU_ANSWER_LETTERS = ["A", "B", "C", "D"]


@torch.inference_mode()
def mmlu_eval(
    model: MiniGPT,
    tokenizer: object = None,
    subjects: str | list[str] | None = None,
    split: str = "test",
    num_samples: int | None = None,
    data: Iterable[Mapping] | None = None,
) -> dict[str, object]:
    """Zero-shot MMLU as TransformerLens's ``mmlu_eval`` scores it: each question is shown with its four choices
    (``Question: ...`` / ``Choices:`` / ``A. ...`` / ``Answer:``) and the model's answer is the letter whose token has
    the highest log probability at the last position. Returns ``{"accuracy", "num_correct", "num_total",
    "subject_scores"}``.

    ``data`` is the list TransformerLens's ``make_mmlu_data_loader`` returns (``{"question", "choices", "answer",
    "subject"}`` each), loaded where you allow downloads; ``subjects`` and ``num_samples`` (per subject) select from
    it (``split`` is TransformerLens's choice of split to download, kept for its signature). Without ``data`` it
    raises: MMLU is on the hub, and MiniGPT Lens never downloads.

    Example:
        >>> from model import MiniGPT, ModelConfig
        >>> model = MiniGPT(ModelConfig(n_ctx=64), seed=0)
        >>> data = [{"question": "two plus two?", "choices": ["3", "4", "5", "6"], "answer": 1, "subject": "x"}]
        >>> mmlu_eval(model, data=data)["num_total"]
        1
    """
    model = check_model(model)
    tokenizer = model.tokenizer if tokenizer is None else tokenizer
    if data is None:
        raise NotImplementedError(
            f"mmlu_eval reads {MMLU_HUB} from the Hugging Face hub, and MiniGPT Lens never "
            "downloads. Load it yourself (TransformerLens's evals.make_mmlu_data_loader, or datasets.load_dataset "
            "where you allow downloads) and pass the questions as data=[{'question', 'choices', 'answer', "
            "'subject'}, ...]"
        )
    if not callable(getattr(tokenizer, "encode", None)):
        raise TypeError(f"mmlu_eval needs a tokenizer with an encode(text) method, got {type(tokenizer).__name__}")
    examples = _mmlu_select(list(data), subjects, num_samples)
    letters = [_letter_token(tokenizer, letter) for letter in MMLU_ANSWER_LETTERS]
    correct: dict[str, list[bool]] = {}
    for example in tqdm(examples, desc="MMLU", disable=None):
        choices = "".join(f"{letter}. {text}\n" for letter, text in zip("ABCD", example["choices"], strict=False))
        ids = list(tokenizer.encode(f"Question: {example['question']}\nChoices:\n{choices}Answer:"))
        if len(ids) > model.cfg.n_ctx:
            raise ValueError(
                f"an MMLU prompt of {len(ids)} tokens is longer than this model's context of {model.cfg.n_ctx}: "
                "pass shorter questions, or use a model with a longer context"
            )
        last = torch.log_softmax(model(torch.tensor([ids], device=model.device))[0, -1], dim=-1)
        scores = [float(last[letters[i]]) for i in range(len(example["choices"]))]
        correct.setdefault(example["subject"], []).append(scores.index(max(scores)) == example["answer"])
    num_correct, num_total = sum(sum(c) for c in correct.values()), sum(len(c) for c in correct.values())
    return {"accuracy": num_correct / num_total if num_total else 0.0, "num_correct": num_correct,
            "num_total": num_total, "subject_scores": {k: sum(c) / len(c) for k, c in correct.items()}}  # fmt: skip


def _mmlu_select(examples: list[Mapping], subjects: str | list[str] | None, num_samples: int | None) -> list[Mapping]:
    """The examples of ``subjects`` (all: None), at most ``num_samples`` of each, in order; checked."""
    wanted = None if subjects is None else [subjects] if isinstance(subjects, str) else list(subjects)
    unknown = sorted(set(wanted or ()) - set(MMLU_SUBJECTS))
    if unknown:
        raise ValueError(f"unknown MMLU subject(s) {unknown}; the subjects are evals.MMLU_SUBJECTS")
    if num_samples is not None:
        num_samples = check_int(num_samples, "num_samples", minimum=1)
    keys, taken, out = {"question", "choices", "answer", "subject"}, {}, []
    for i, example in enumerate(examples):
        if not isinstance(example, Mapping) or not keys <= set(example):
            raise ValueError(f"MMLU example {i} must be a mapping with the keys {sorted(keys)}, got {example!r:.80}")
        answer = example["answer"]
        if not isinstance(answer, int) or not 0 <= answer < len(example["choices"]) <= 4:
            raise ValueError(f"MMLU example {i}: answer {example['answer']!r} is not an index of its choices")
        subject = example["subject"]
        if (wanted is None or subject in wanted) and (num_samples is None or taken.get(subject, 0) < num_samples):
            taken[subject] = taken.get(subject, 0) + 1
            out.append(example)
    if not out:
        raise ValueError("no MMLU example is left: check data= and subjects=")
    return out


def _letter_token(tokenizer: object, letter: str) -> int:
    """The token of an answer letter as TransformerLens picks it: `` A`` where that is one token, else ``A``."""
    ids = _encode(tokenizer, " " + letter)
    return ids[0] if len(ids) == 1 else _encode(tokenizer, letter)[0]


def _encode(tokenizer: object, text: str) -> list[int]:
    """``text``'s ids without special tokens (a Hugging Face tokenizer is asked so; MiniGPT's adds none)."""
    try:
        return list(tokenizer.encode(text, add_special_tokens=False))
    except TypeError:
        return list(tokenizer.encode(text))
