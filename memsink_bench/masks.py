"""Sequence-tied dropout masks: sequence ID -> which sink neurons are on.

Each MLP's hidden neurons split into `n_shared` shared neurons (always on) followed by a sink
pool. A deterministic function of the sequence ID switches on a fraction p of the sink pool; the
same mask is used in every layer and at every repetition of the sequence.

Two ID -> mask functions:
- `reference`: the public code's multiplicative hash
  u_j(id) = ((id * 2^16) * (a^j mod M)) mod M / M, sink j on iff u_j < p, with a = 1588635695,
  M = 4294967291. Kept for fidelity; flaws: ID 0 switches every sink on, and the masks of
  multiples of an ID are correlated (u_j(k id) = k u_j(id) mod 1).
- `counter` (default): a counter-based integer hash h(id, j) (two rounds of a 32-bit avalanche
  mixer); the round(p * n_sinks) sinks with the smallest hash are on, so every ID gets exactly
  the same number of sinks and unrelated IDs get independent-looking masks.
All arithmetic is exact int64 on the ids' device, so masks are identical on CPU and GPU.
"""

from __future__ import annotations

import torch

REFERENCE_A = 1588635695
REFERENCE_M = 4294967291
_MASK32 = 0xFFFFFFFF


def split_neurons(d_mlp: int, shared_fraction: float) -> tuple[int, int]:
    """(n_shared, n_sinks): the first round(g * d_mlp) neurons are shared."""
    n_shared = int(round(shared_fraction * d_mlp))
    return n_shared, d_mlp - n_shared


def _mix32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit avalanche mixer (lowbias32) on int64 tensors holding values < 2^32.

    Products may wrap int64; the low 32 bits stay exact, which is all the mixer keeps.
    """
    x = x & _MASK32
    x = x ^ (x >> 16)
    x = (x * 0x7FEB352D) & _MASK32
    x = x ^ (x >> 15)
    x = (x * 0x846CA68B) & _MASK32
    return x ^ (x >> 16)


def counter_hash(ids: torch.Tensor, n_sinks: int, salt: int = 0) -> torch.Tensor:
    """[batch] int64 ids -> [batch, n_sinks] int64 hash values in [0, 2^32)."""
    j = torch.arange(n_sinks, device=ids.device, dtype=torch.int64)
    key = _mix32(ids.to(torch.int64) ^ (salt * 0x9E3779B9))
    return _mix32(key[:, None] + _mix32(j * 0x9E3779B9 + 0x632BE5AB)[None, :])


def _mulmod(x: torch.Tensor, y: torch.Tensor, modulus: int) -> torch.Tensor:
    """(x * y) mod modulus for 0 <= x, y < 2^32 without overflowing int64."""
    y_hi, y_lo = y >> 16, y & 0xFFFF
    return (((x * y_hi) % modulus) * 65536 + x * y_lo) % modulus


def reference_uniforms(ids: torch.Tensor, n_sinks: int) -> torch.Tensor:
    """The public code's u_j(id) in [0, 1), [batch, n_sinks] float64."""
    powers = [1]
    for _ in range(n_sinks - 1):
        powers.append(powers[-1] * REFERENCE_A % REFERENCE_M)
    a_j = torch.tensor(powers, dtype=torch.int64, device=ids.device)
    scaled_id = (ids.to(torch.int64) * 65536) % REFERENCE_M
    return _mulmod(scaled_id[:, None], a_j[None, :], REFERENCE_M).double() / REFERENCE_M


def sink_mask(ids: torch.Tensor, n_sinks: int, sink_fraction: float, mask_fn: str = "counter",
              salt: int = 0) -> torch.Tensor:
    """[batch] sequence IDs -> [batch, n_sinks] bool: which sinks each sequence switches on."""
    if n_sinks == 0:
        return torch.zeros(len(ids), 0, dtype=torch.bool, device=ids.device)
    if mask_fn == "reference":
        return reference_uniforms(ids, n_sinks) < sink_fraction
    if mask_fn == "counter":
        n_on = int(round(sink_fraction * n_sinks))
        order = counter_hash(ids, n_sinks, salt).argsort(dim=1, stable=True)
        mask = torch.zeros(len(ids), n_sinks, dtype=torch.bool, device=ids.device)
        return mask.scatter_(1, order[:, :n_on], True)
    raise ValueError(f"unknown mask function {mask_fn!r}")


def neuron_mask(ids: torch.Tensor, d_mlp: int, shared_fraction: float, sink_fraction: float,
                mask_fn: str = "counter", salt: int = 0) -> torch.Tensor:
    """[batch] IDs -> [batch, d_mlp] float 0/1 training mask: shared neurons on, own sinks on."""
    n_shared, n_sinks = split_neurons(d_mlp, shared_fraction)
    sinks = sink_mask(ids, n_sinks, sink_fraction, mask_fn, salt)
    shared = torch.ones(len(ids), n_shared, dtype=torch.bool, device=ids.device)
    return torch.cat([shared, sinks], dim=1).float()


EVAL_MODES = ("drop", "drop-unscaled", "mean", "own", "all")


def drop_rescale(n_shared: int, n_sinks: int, sink_fraction: float) -> float:
    """(n_shared + p n_sinks) / n_shared: the factor that gives the shared neurons alone the
    expected active mass of training, when the sinks are dropped."""
    return (n_shared + sink_fraction * n_sinks) / n_shared


def eval_scale(mode: str, d_mlp: int, shared_fraction: float, sink_fraction: float,
               ids: torch.Tensor | None = None, mask_fn: str = "counter", salt: int = 0) -> torch.Tensor:
    """Evaluation-time neuron scale, [1 or batch, d_mlp].

    - drop: sinks zeroed; shared neurons scaled by (n_shared + p n_sinks) / n_shared, so the
      expected number of active hidden units matches training (the choice this project makes
      for "dropped and rescaled"; the probe and public code use the same style of factor).
    - drop-unscaled: sinks zeroed, shared neurons as trained.
    - mean: every sink scaled by p, its expected training-time value (standard dropout eval).
    - own: the sequence's own training mask (needs `ids`): memorization kept.
    - all: every neuron on.
    """
    n_shared, n_sinks = split_neurons(d_mlp, shared_fraction)
    if mode == "own":
        if ids is None:
            raise ValueError("eval mode 'own' needs the sequence IDs")
        return neuron_mask(ids, d_mlp, shared_fraction, sink_fraction, mask_fn, salt)
    scale = torch.ones(1, d_mlp)
    if mode == "drop":
        scale[:, :n_shared] = drop_rescale(n_shared, n_sinks, sink_fraction)
        scale[:, n_shared:] = 0.0
    elif mode == "drop-unscaled":
        scale[:, n_shared:] = 0.0
    elif mode == "mean":
        scale[:, n_shared:] = sink_fraction
    elif mode != "all":
        raise ValueError(f"unknown MemSinks eval mode {mode!r}; choose from {EVAL_MODES}")
    return scale
