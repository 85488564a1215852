"""The prompts the dashboard starts from: a model's showcase prompt (the sidebar's default), and the corrupted prompt
a patching page starts from when none is typed (Ablation & patching, Circuit discovery, Information flow): the clean
prompt with one character changed, so the two runs differ in one place. Plain Python: no Streamlit, no model run.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from model.network.minigpt import MiniGPT

DEFAULT_PROMPT = "the value of the attribute is"


def repeated_segment(length: int = 15, seed: int = 0) -> str:
    """``length`` distinct random letters (seeded, so the same every time), written twice.

    Distinct letters give every character of the second copy exactly one earlier copy, so the token that
    followed it (what an induction head attends to) is unambiguous.

    Example:
        >>> repeated_segment(5, seed=1)
        'eszyceszyc'
    """
    return "".join(random.Random(seed).sample("abcdefghijklmnopqrstuvwxyz", length)) * 2


@dataclass(frozen=True)
class Showcase:
    """A model's default prompt: one that shows what it learned, and the position to look at first."""

    prompt: str
    position: int | None  # token position (0 = <bos>) the pages' position pickers start on; None: the last
    why: str  # one line the sidebar shows under the prompt


INDUCTION_SHOWCASE = Showcase(
    repeated_segment(15, seed=0),
    1 + 15 + 7,  # the 8th character of the second copy: its successor is predictable only from the first copy
    "a random 15-letter segment written twice: on the second copy an induction head predicts each next letter "
    "from the first copy; position 23 is on the second copy",
)
SHOWCASES = {  # per shipped model; other checkpoints by their training task (provenance train_config.task)
    "minigpt-text": Showcase(DEFAULT_PROMPT, None, "English from the training corpus: the model predicts the words"),
    "induction-2l": INDUCTION_SHOWCASE,
}


def showcase(label: str, model: MiniGPT) -> Showcase:
    """The default prompt for the model the sidebar shows as ``label``: its own, else its training task's.

    Example:
        >>> from model import MiniGPT, ModelConfig
        >>> showcase("induction-2l", MiniGPT(ModelConfig(), seed=0)).position
        23
        >>> showcase("my.safetensors", MiniGPT(ModelConfig(), seed=0)).prompt == DEFAULT_PROMPT
        True
    """
    if label in SHOWCASES:
        return SHOWCASES[label]
    task = (model.provenance.get("train_config") or {}).get("task")
    fits = model.cfg.n_ctx > len(INDUCTION_SHOWCASE.prompt) and model.tokenizer is not None
    return INDUCTION_SHOWCASE if task == "induction" and fits else SHOWCASES["minigpt-text"]


def default_corruption(prompt: str) -> str:
    """The patching page's corrupted prompt when none is typed: the first letter of the longest word changed.

    Example:
        >>> default_corruption("the value of the attribute is")
        'the value of the bttribute is'
    """
    words = [(len(w), -i, i) for i, w in enumerate(prompt.split(" ")) if w[:1].isalpha()]
    if not words:
        return prompt
    index = max(words)[2]
    parts = prompt.split(" ")
    first = parts[index][0].lower()
    parts[index] = ("a" if first == "z" else chr(ord(first) + 1)) + parts[index][1:]
    return " ".join(parts)


def corrupt_at(prompt: str, index: int) -> str:
    """``prompt`` with its character at ``index`` changed: a letter to the next one (``z`` to ``a``), anything else
    to ``a``. The flow page's corrupted prompt: the character an edge reads, changed.

    Example:
        >>> corrupt_at("abcabc", 4), corrupt_at("a b", 1)
        ('abcacc', 'aab')
    """
    old = prompt[index]
    new = ("a" if old.lower() == "z" else chr(ord(old.lower()) + 1)) if old.isalpha() and old.isascii() else "a"
    return prompt[:index] + new + prompt[index + 1 :]
