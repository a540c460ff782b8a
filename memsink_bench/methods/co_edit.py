"""Contrastive editing: overwrite memorized continuations with perturbed ones (Stoehr et al. Eq. 4).

Stoehr et al. edit memorized paragraphs (MPs) into perturbed memorized paragraphs (PMPs):

    CO_<-> = +NLL(PMP) + D_KL((x_NM; theta), (x_NM; theta_0))

A PMP comes from the prefix-perturbation experiment (§4): each prefix token of an MP is replaced,
one at a time, by a random token (seeded), the target span is greedy-decoded from each perturbed
prefix, and the perturbation that changes the model's own continuation most (tokens kept before
the first change, `prefix_perturbation.perturbation_rows`' `own_drop`; ties: the earliest
position) gives the alternative continuation. The paper does not say which prefix the PMP's NLL
is taken under; here it is the original one: the target is the original prefix followed by the
alternative continuation, so the edit makes the model continue the memorized prefix differently
(trained on the perturbed prefix, the memorized prefix would be left as it was). A sequence no
single-token perturbation changes has no alternative and is left out (the record says how many).

The perturbation needs a prefix, so the edit always rewrites the extraction span (the continuation
after `data.prefix_len` tokens, or the canary) whatever the forget span; on ts-repetition, whose
forget span is the whole sequence, it is scored there like every other method.

Everything else is co-unlearn's: Adam on the attention and MLP matrices, the paper's
KL(current || original) on the retain set, the number of steps as the knob. The NLL weight is 1
as in Eq. 4 (the pull towards a target is bounded, unlike the push away from one).
"""

from __future__ import annotations

import copy
import random

from ..errors import UserError
from ..evaluate import batches, greedy_targets
from ..setting import SequenceSet
from .base import MethodContext, frozen_copy
from .co_unlearn import ContrastiveUnlearning
from .editing import unlearning_steps


class ContrastiveEditing(ContrastiveUnlearning):
    name = "co-edit"
    summary = ("Adam on attention+MLP matrices: +NLL(perturbed-prefix continuation after the original prefix) "
               "+ KL(current || original) on retain text")

    def __init__(self, lr: float = 1e-5, nll_weight: float = 1.0, kl: str = "current||original",
                 parameters: str = "matrices", salt: int = 0):
        super().__init__(lr=lr, nll_weight=nll_weight, kl=kl, parameters=parameters)
        self.salt = salt
        self._kept: tuple[int, int] | None = None

    def edit_sweep(self, model, context: MethodContext, knobs):
        targets = self.perturbed_targets(model, context)
        target_batches = [batch.to(context.device) for batch in batches(targets, context.batch_size, context.pad_id)]
        original = frozen_copy(model)
        working = copy.deepcopy(model)
        optimizer, done = None, 0
        for steps in sorted(int(k) for k in knobs):
            optimizer = unlearning_steps(working, original, context, steps - done, self.lr, -self.nll_weight, None,
                                         optimizer, kl=self.kl, parameters=self.parameters, targets=target_batches)
            done = steps
            yield steps, working

    def perturbed_targets(self, model, context: MethodContext) -> SequenceSet:
        """Each forget sequence's original prefix followed by its most-changed perturbed continuation."""
        from ..analyses.prefix_perturbation import perturbation_rows, perturbed_copies

        sequences = context.with_prefix()     # a whole-sequence forget span has no prefix to perturb
        vocab = model.config.vocab_size
        copies = []
        for index, (tokens, span) in enumerate(zip(sequences.tokens, sequences.spans)):
            rng = random.Random(f"co-edit:{context.seed}:{self.salt}:{index}")
            copies.append(perturbed_copies(tokens, span[0], vocab, rng, {context.pad_id}))
        flat = [c for made in copies for c in made]
        spans = [span for span, made in zip(sequences.spans, copies) for _ in made]
        decoded = greedy_targets(model, SequenceSet(flat, [0] * len(flat), spans),
                                 batch_size=max(256, *(len(m) for m in copies)))
        tokens_out, ids_out, spans_out, offset = [], [], [], 0
        for tokens, sequence_id, span, made in zip(sequences.tokens, sequences.ids, sequences.spans, copies):
            rows = perturbation_rows(decoded[offset:offset + len(made)], tokens, span)
            choices = decoded[offset + 1:offset + len(made)]
            offset += len(made)
            if not rows:
                continue
            best = max(range(len(rows)), key=lambda i: (rows[i]["own_drop"], -i))
            if rows[best]["own_drop"] == 0:
                continue                                   # no single-token perturbation changes it
            start, end = span
            tokens_out.append(list(tokens[:start]) + list(choices[best]))
            ids_out.append(sequence_id)
            spans_out.append((start, end))
        self._kept = (len(tokens_out), len(sequences))
        if not tokens_out:
            raise UserError("co-edit found no prefix perturbation that changes any forget sequence's continuation",
                            "use co-unlearn on this checkpoint (there is nothing to edit towards)")
        return SequenceSet(tokens_out, ids_out, spans_out)

    def record_extras(self, model, context):
        if self._kept is None:
            return {}
        return {"edited_sequences": self._kept[0], "forget_sequences": self._kept[1]}
