"""The network and everything that makes or stores one."""

from model.cache import ActivationCache
from model.config import ModelConfig
from model.hooks import HookPoint
from model.minigpt import MiniGPT
from model.tokenizer import Tokenizer

__all__ = ["ActivationCache", "HookPoint", "MiniGPT", "ModelConfig", "Tokenizer"]
