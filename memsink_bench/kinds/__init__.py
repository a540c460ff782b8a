"""The checkpoint kinds, one class per file; adding one is a new file and one line below.

Code outside this package never compares kind names: it asks the kind object (`get_kind(name)`)
what it does, and names the two reference kinds through STANDARD and NO_REP.
"""

from __future__ import annotations

from ..errors import UserError, did_you_mean
from .base import Kind, View, ViewFn
from .gradient_masked import GradientMasked, memorization_block
from .memsinks import MemSinks
from .never_seen import NeverSeen
from .standard import Standard, StandardNoRep

STANDARD = Standard.name        # what post-hoc methods edit by default; training-time kinds replace it
NO_REP = StandardNoRep.name     # the dedup reference every gap closed is measured against
NEVER_SEEN = NeverSeen.name     # the reference membership inference (PrivLeak) is measured against

KINDS: dict[str, Kind] = {}


def register_kind(kind: Kind) -> Kind:
    """Add a kind (an instance of a Kind subclass) to the registry; its name must be new."""
    if not kind.name or kind.name in KINDS:
        raise ValueError(f"kind name {kind.name!r} is empty or taken")
    KINDS[kind.name] = kind
    return kind


for _kind in (Standard(), StandardNoRep(), NeverSeen(), GradientMasked(), MemSinks()):
    register_kind(_kind)


def get_kind(name: str) -> Kind:
    if name not in KINDS:
        raise UserError(f"unknown checkpoint kind '{name}'", did_you_mean(name, KINDS))
    return KINDS[name]


def check_kind(name: str) -> str:
    return get_kind(name).name


def views(kind: str, config, d_mlp: int) -> dict[str, View]:
    return get_kind(kind).views(config, d_mlp)


__all__ = ["Kind", "View", "ViewFn", "KINDS", "STANDARD", "NO_REP", "NEVER_SEEN", "register_kind", "get_kind", "check_kind",
           "views", "memorization_block"]
