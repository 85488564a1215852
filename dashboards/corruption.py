"""The corrupted prompts the patching pages start from when none is typed (Ablation & patching, Circuit discovery,
Information flow): the clean prompt with one character changed, so the two runs differ in one place."""

from __future__ import annotations


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
