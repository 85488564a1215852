"""Hugging Face model folders made here, offline, for the loading tests: a randomly initialised ``transformers``
model of a family saved with ``save_pretrained``, beside a byte-level BPE tokenizer trained with ``tokenizers`` on
the built-in corpus (``pydoc_data.topics``). The loading code under test is the one a user runs on downloaded
weights.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import torch

BPE_VOCAB = 400  # the tokenizer's size; the model's vocabulary is padded a little beyond it, as Pythia's is
ENDOFTEXT = "<|endoftext|>"


@cache
def bpe_tokenizer(vocab_size: int = BPE_VOCAB):
    """A GPT-2-style byte-level BPE (``<|endoftext|>`` is bos, eos and unk) trained on the built-in corpus."""
    from pydoc_data.topics import topics

    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    fast = Tokenizer(models.BPE())
    fast.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    fast.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=[ENDOFTEXT], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    fast.train_from_iterator((topics[key] for key in sorted(topics)), trainer=trainer)
    return fast


def save_tokenizer(folder: Path, vocab_size: int = BPE_VOCAB) -> None:
    from transformers import PreTrainedTokenizerFast

    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=bpe_tokenizer(vocab_size), bos_token=ENDOFTEXT, eos_token=ENDOFTEXT, unk_token=ENDOFTEXT
    )
    wrapped.save_pretrained(folder)


def gpt2_folder(folder: Path, seed: int = 0, **config) -> Path:
    """A random GPT-2 (biases and LayerNorms drawn too) with the BPE tokenizer, saved in ``folder``."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    sizes = dict(vocab_size=BPE_VOCAB + 16, n_positions=64, n_embd=64, n_layer=2, n_head=4, n_inner=128, bos_token_id=0,
                 eos_token_id=0,
                 resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0) | config  # fmt: skip
    hf = GPT2LMHeadModel(GPT2Config(**sizes)).eval()
    with torch.no_grad():
        for name, p in hf.named_parameters():
            if "ln_" in name and name.endswith("weight"):
                p.normal_(1.0, 0.2)
            elif name.endswith("bias"):
                p.normal_(0.0, 0.1)
    hf.save_pretrained(folder)
    save_tokenizer(folder)
    return folder
