"""The paper's port-Hamiltonian field as one registered type whose pieces can be swapped.

``PaperField`` is ``PortHamiltonianField`` with the paper's pieces as defaults (``L L^T``
inverse inertia, a ``dV/dq`` MLP, linear dissipation, a control MLP), so a variant of the
paper's field is one keyword away: ``{"type": "paper-field", "control": False}`` is the paper's
field without control. Its modules, and their initialization for a given torch seed, are those
of ``phys_l2o.optimizers.paper_field(width)``.

``PAPER_PIECES`` holds the paper's piece specs; ``paper_field_spec`` writes a ``paper-field``
spec out as the equivalent explicit ``port-hamiltonian`` spec.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..registry import Spec, register
from .field import PIECES, Piece, PortHamiltonianField

#: the paper's pieces, as specs (built for the field's feature width).
PAPER_PIECES: dict[str, str] = {"potential": "potential-gradient-mlp",
                                "inverse_inertia": "cholesky-inertia",
                                "dissipation": "linear-dissipation",
                                "control": "control-mlp"}


@register("field", "paper-field")
class PaperField(PortHamiltonianField):
    """The paper's field, ``forward(q, q_dot, grad=None) -> (dq/dt, dq_dot/dt)``, each of shape
    ``(..., d)``, with any piece replaced or left out.

    Args:
        potential: as in ``PortHamiltonianField``; default the paper's piece
            (``PAPER_PIECES``); a field needs one.
        inverse_inertia: the same; ``None`` (``false`` in a spec) leaves it out (``M = I``).
        dissipation: the same; ``None`` leaves it out (``D = 0``).
        control: the same; ``None`` leaves it out (``G = 0``).
        width: the feature width ``d`` the pieces given as specs are built for.

    Its spec names only the pieces that differ from the paper's.

    Example:
        >>> PaperField(control=None, width=2).control is None
        True
    """

    #: pieces named in a spec only when they differ from the paper's
    spec_quiet = tuple(PAPER_PIECES)

    def __init__(self, potential: Piece = PAPER_PIECES["potential"],
                 inverse_inertia: Piece = PAPER_PIECES["inverse_inertia"],
                 dissipation: Piece = PAPER_PIECES["dissipation"],
                 control: Piece = PAPER_PIECES["control"], *,
                 width: int | None = None) -> None:
        super().__init__(potential, inverse_inertia, dissipation, control, width=width)


def paper_field_spec(spec: Mapping[str, Any], where: str = "paper-field") -> Spec:
    """A ``paper-field`` spec as the explicit ``port-hamiltonian`` spec that builds the same
    field: the paper's pieces in order, each replaced by the spec's value where it gives one.

    Raises:
        ValueError: an option ``PaperField`` does not take (the message names ``where``).
    """
    options = {key: value for key, value in spec.items() if key != "type"}
    unknown = sorted(set(options) - set(PIECES) - {"width"})
    if unknown:
        raise ValueError(f"{where}: 'paper-field' takes no option {unknown}; its options are "
                         f"{[*PAPER_PIECES, 'width']}")
    return {"type": "port-hamiltonian", **PAPER_PIECES, **options}
