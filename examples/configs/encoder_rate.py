"""`spacy train --code` file for tagger_parser_finetune.cfg: Adam with a gentler rate for the
transformer than for the heads that listen to it.

A single rate is a bad fit for fine-tuning: the heads start untrained and want spaCy's CNN default
(1e-3), while a pretrained encoder wants spacy-transformers' default (5e-5); one rate in between
either wrecks the encoder or leaves the heads learning for thousands of steps. thinc's optimizer
already takes a per-call ``lr_scale``; this subclass sets it for the encoder's parameters.
"""

from __future__ import annotations

from typing import Any

from spacy.util import registry
from thinc.api import Optimizer
from thinc.types import FloatsXd


class EncoderScaledAdam(Optimizer):
    """Adam whose updates of torch parameters (the transformer's) are scaled by ``encoder_scale``."""

    def __init__(self, learn_rate: Any, *, encoder_scale: float, **adam: Any) -> None:
        super().__init__(learn_rate, **adam)
        self.encoder_scale = encoder_scale

    def __call__(
        self, key: tuple[int, str], param: FloatsXd, grad: FloatsXd, *, lr_scale: float = 1.0
    ) -> tuple[FloatsXd, FloatsXd]:
        # thinc's PyTorch shim names a parameter by its torch module path ("encoder.layer.0.
        # attention.self.query.weight"); thinc's own layers use plain names ("W", "b", "hidden_W").
        if "." in key[1]:
            lr_scale *= self.encoder_scale
        return super().__call__(key, param, grad, lr_scale=lr_scale)


@registry.optimizers("tokvec_examples.EncoderScaledAdam.v1")
def encoder_scaled_adam(
    learn_rate: Any,
    encoder_scale: float,
    *,
    L2: float = 0.01,
    beta1: float = 0.9,
    beta2: float = 0.999,
    eps: float = 1e-8,
    grad_clip: float = 1.0,
    L2_is_weight_decay: bool = True,
    use_averages: bool = False,
) -> Optimizer:
    return EncoderScaledAdam(
        learn_rate,
        encoder_scale=encoder_scale,
        L2=L2,
        beta1=beta1,
        beta2=beta2,
        eps=eps,
        grad_clip=grad_clip,
        L2_is_weight_decay=L2_is_weight_decay,
        use_averages=use_averages,
        use_radam=False,
    )
