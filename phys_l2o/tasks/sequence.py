"""A synthetic sequence task (no download): name the most frequent token of a sequence.

Each example is ``length`` tokens drawn uniformly from ``vocab`` with a fixed-seed generator
(``DATA_SEED``), fed one-hot ``(length, vocab)``; its class is the token that occurs most often
(ties: the smallest such token). The models are written with ``nn.Linear`` layers and tensor
ops, so that ``torch.func.vmap`` runs a batch of them at once:

- ``"rnn"``: an Elman RNN ``h_t = tanh(W_x x_t + W_h h_{t-1} + b)``, unrolled over the
  sequence from ``h_0 = 0``; the classes are a linear read-out of ``h_length``.
- ``"attention"``: one single-head self-attention layer over the embedded tokens (with a
  residual connection), mean pooled over the sequence, then a linear read-out.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..checks import positive_int
from ..registry import register
from .module import ModuleTask

#: the seed of the generator that draws the sequences.
DATA_SEED = 0
MODELS = ("rnn", "attention")


class ElmanRNN(nn.Module):
    """``h_t = tanh(W_x x_t + W_h h_{t-1} + b)`` from ``h_0 = 0``; returns
    ``W_o h_length + b_o``. Inputs ``(..., length, inputs)``."""

    def __init__(self, inputs: int, hidden: int, outputs: int) -> None:
        super().__init__()
        self.input = nn.Linear(inputs, hidden)
        self.recurrent = nn.Linear(hidden, hidden, bias=False)
        self.output = nn.Linear(hidden, outputs)

    def forward(self, x: Tensor) -> Tensor:
        drive = self.input(x)                                  # (..., length, hidden)
        h = torch.tanh(drive[..., 0, :])
        for t in range(1, x.shape[-2]):
            h = torch.tanh(drive[..., t, :] + self.recurrent(h))
        return self.output(h)


class SelfAttention(nn.Module):
    """One single-head self-attention layer: ``e = embed(x)``, ``h = e + softmax(q k^T /
    sqrt(hidden)) v``, mean pooled over the sequence, then a linear read-out. Inputs
    ``(..., length, inputs)``."""

    def __init__(self, inputs: int, hidden: int, outputs: int) -> None:
        super().__init__()
        self.embed = nn.Linear(inputs, hidden)
        self.query = nn.Linear(hidden, hidden)
        self.key = nn.Linear(hidden, hidden)
        self.value = nn.Linear(hidden, hidden)
        self.output = nn.Linear(hidden, outputs)

    def forward(self, x: Tensor) -> Tensor:
        e = self.embed(x)                                      # (..., length, hidden)
        scores = self.query(e) @ self.key(e).transpose(-2, -1) / math.sqrt(e.shape[-1])
        h = e + torch.softmax(scores, dim=-1) @ self.value(e)
        return self.output(h.mean(-2))


def most_frequent(tokens: Tensor, vocab: int) -> Tensor:
    """The most frequent token of each sequence ``(n, length)``; ties: the smallest."""
    counts = F.one_hot(tokens, vocab).sum(-2)                  # (n, vocab)
    return counts.argmax(-1)  # the first of equal maxima


@register("task", "sequence")
class SequenceTask(ModuleTask):
    """Classify a random token sequence by its most frequent token, cross-entropy over
    ``vocab`` classes.

    Args:
        model: ``"rnn"`` (an Elman RNN) or ``"attention"`` (one self-attention layer).
        length: tokens per sequence.
        vocab: distinct tokens (and classes), at least 2.
        hidden: the model's hidden units.
        batch_size: sequences per minibatch.
        steps: optimizer steps a problem supports.
        examples: training sequences.
        heldout_examples: held-out sequences (drawn after the training ones).
    """

    def __init__(self, model: str = "rnn", length: int = 10, vocab: int = 4, hidden: int = 16,
                 *, batch_size: int = 64, steps: int = 100, examples: int = 4096,
                 heldout_examples: int = 1024) -> None:
        if not isinstance(model, str) or model not in MODELS:
            raise ValueError(f"unknown model {model!r}; choose from {list(MODELS)}")
        self.model = model
        self.length = positive_int("length", length)
        self.vocab = positive_int("vocab", vocab)
        if vocab < 2:
            raise ValueError(f"vocab must be at least 2 (one class per token), got {vocab}")
        self.hidden = positive_int("hidden", hidden)
        self.examples = positive_int("examples", examples)
        self.heldout_examples = positive_int("heldout_examples", heldout_examples)
        generator = torch.Generator().manual_seed(DATA_SEED)
        tokens = torch.randint(vocab, (examples + heldout_examples, length), generator=generator)
        inputs = F.one_hot(tokens, vocab).float()              # (n, length, vocab)
        targets = most_frequent(tokens, vocab)
        super().__init__(self._model, inputs[:examples], targets[:examples],
                         batch_size=batch_size, steps=steps,
                         name=f"sequence-{model}-len{length}-vocab{vocab}-{hidden}",
                         heldout=(inputs[examples:], targets[examples:]))

    def _model(self) -> nn.Module:
        cls = ElmanRNN if self.model == "rnn" else SelfAttention
        return cls(self.vocab, self.hidden, self.vocab)

    def describe(self) -> dict:
        """The task's settings and data provenance (for ``results.json``)."""
        return {**super().describe(), "model": self.model, "length": self.length,
                "vocab": self.vocab, "hidden": self.hidden,
                "data": "synthetic: uniform random tokens, target the most frequent token "
                        "(ties: the smallest)", "data_seed": DATA_SEED}
