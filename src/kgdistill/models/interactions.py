"""Interactions: how a query vector ``q = combine(h, r)`` is scored against tail embeddings.

Every interaction here factors as ``score(h, r, t) = match(combine(h, r), t)`` where ``match`` is either a dot
product (DistMult, ComplEx: bilinear, so 1-N scoring is one matrix product ``q @ E^T`` and no
``batch x entities x dim`` tensor is ever built) or a negative p-norm distance (TransE, RotatE: 1-N scoring goes
through :func:`torch.cdist`, which for p=2 is also a matrix product and for p=1 never materialises the
difference tensor).

Complex embeddings are stored as real vectors ``[re | im]`` of width ``2 * rank``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from kgdistill.types import FloatTensor

__all__ = [
    "INTERACTIONS",
    "ComplEx",
    "DistMult",
    "Interaction",
    "RotatE",
    "TimePlexComplEx",
    "TransE",
    "complex_mul",
]


def complex_mul(a: FloatTensor, b: FloatTensor) -> FloatTensor:
    """Element-wise complex product of ``[re | im]`` vectors: ``(*B, 2k), (*B, 2k) -> (*B, 2k)``."""
    ar, ai = a.chunk(2, dim=-1)
    br, bi = b.chunk(2, dim=-1)
    return torch.cat([ar * br - ai * bi, ar * bi + ai * br], dim=-1)


class _CandidateDot(torch.autograd.Function):
    """``q (B, d), t (B, C, d) -> (B, C)`` dot products, with a hand-written backward.

    On CPU a batched matrix-vector product (``bmm``) is slow, worst of all for the gradient of ``q``, which reads
    ``t`` transposed. Here the forward is one ``vecdot``, the gradient of ``q`` is ``grad (B, 1, C) @ t`` (``t``
    read in place) and that of ``t`` one broadcast product: at B=1000, C=33, d=200 on one thread, forward +
    backward 18.6 ms through autograd's ``matmul``, 5.5 ms here (the sampled-step benchmark,
    ``sampled_step.py --threads 1``).
    """

    @staticmethod
    def forward(ctx: Any, q: FloatTensor, t: FloatTensor) -> FloatTensor:
        ctx.save_for_backward(q, t)
        return torch.linalg.vecdot(t, q.unsqueeze(1))

    @staticmethod
    def backward(ctx: Any, grad: FloatTensor) -> tuple[FloatTensor | None, FloatTensor | None]:
        q, t = ctx.saved_tensors
        grad_q = grad_t = None
        if ctx.needs_input_grad[0]:
            grad_q = torch.bmm(grad.unsqueeze(1), t).squeeze(1)
        if ctx.needs_input_grad[1]:
            grad_t = grad.unsqueeze(-1) * q.unsqueeze(1)
        return grad_q, grad_t


class Interaction(nn.Module):
    """Base class. Subclasses define :meth:`combine` and whether :meth:`match` is a dot product or a distance."""

    kind: ClassVar[str] = "dot"  # "dot" or "distance"
    complex: ClassVar[bool] = False

    def __init__(self, *, p: float = 2.0) -> None:
        super().__init__()
        self.p = p

    def combine(self, h: FloatTensor, r: FloatTensor) -> FloatTensor:
        """Query vector: ``(B, d), (B, d) -> (B, d)``."""
        raise NotImplementedError

    def score_all(self, q: FloatTensor, t: FloatTensor) -> FloatTensor:
        """Score queries against every entity: ``q (B, d), t (E, d) -> (B, E)``."""
        if self.kind == "dot":
            return q @ t.T
        return -torch.cdist(q, t, p=self.p)

    def score_candidates(self, q: FloatTensor, t: FloatTensor) -> FloatTensor:
        """Score queries against their own candidates: ``q (B, d), t (B, C, d) -> (B, C)``."""
        if self.kind == "dot":
            # measured on CPU only; GPUs keep cuBLAS' bmm
            if q.device.type == "cpu" and q.dtype == t.dtype:
                return _CandidateDot.apply(q, t)  # type: ignore[no-any-return]
            return torch.matmul(t, q.unsqueeze(-1)).squeeze(-1)
        return -(q.unsqueeze(1) - t).norm(p=self.p, dim=-1)

    def score_hrt(self, q: FloatTensor, t: FloatTensor) -> FloatTensor:
        """Score one tail per query: ``q (B, d), t (B, d) -> (B,)``."""
        if self.kind == "dot":
            return (q * t).sum(-1)
        return -(q - t).norm(p=self.p, dim=-1)

    def factors(self, h: FloatTensor, r: FloatTensor, t: FloatTensor) -> tuple[FloatTensor, ...]:
        """Tensors the N3 / L2 regularisers act on, each ``(B, k)``: moduli for complex embeddings."""
        if self.complex:
            return tuple(
                torch.sqrt(x.chunk(2, -1)[0] ** 2 + x.chunk(2, -1)[1] ** 2 + 1e-12)
                for x in (h, r, t)
            )
        return (h, r, t)


class DistMult(Interaction):
    """``<h, r, t>``. Paper: Yang et al. 2015, https://arxiv.org/abs/1412.6575"""

    def combine(self, h: FloatTensor, r: FloatTensor) -> FloatTensor:
        return h * r


class ComplEx(Interaction):
    """``Re(<h, r, conj(t)>)``. Paper: Trouillon et al. 2016, https://arxiv.org/abs/1606.06357"""

    complex = True

    def combine(self, h: FloatTensor, r: FloatTensor) -> FloatTensor:
        return complex_mul(h, r)


class TimePlexComplEx(ComplEx):
    """TimePlex (base) scored 1-N: ``Re(<h, r_so, conj t>) + gamma Re(<h, tau, conj t>) +
    beta Re(<t, r_ot, tau>)`` with ``r = [r_so + gamma tau | beta tau * r_ot]`` from
    :class:`~kgdistill.models.representations.TimePlexRelations` (width twice the entities'), so
    ``q = h * r[:half] + r[half:]`` and the score is still one dot product per candidate. TimePlex's
    ``alpha <h, r_st, tau>`` term does not depend on the candidate and cancels in a ranking and in the 1-N
    softmax, so it is left out. Paper: Jain et al. 2020, https://arxiv.org/abs/2010.03526"""

    def combine(self, h: FloatTensor, r: FloatTensor) -> FloatTensor:
        mult, free = r.chunk(2, dim=-1)
        return complex_mul(h, mult) + free

    def factors(self, h: FloatTensor, r: FloatTensor, t: FloatTensor) -> tuple[FloatTensor, ...]:
        mult, free = r.chunk(2, dim=-1)
        re, im = free.chunk(2, dim=-1)
        return (*super().factors(h, mult, t), torch.sqrt(re**2 + im**2 + 1e-12))


class TransE(Interaction):
    """``-||h + r - t||_p``. Paper: Bordes et al. 2013, NeurIPS, https://papers.nips.cc/paper/5071"""

    kind = "distance"

    def combine(self, h: FloatTensor, r: FloatTensor) -> FloatTensor:
        return h + r


class RotatE(Interaction):
    """``-||h * r - t||`` with ``r`` a unit-modulus complex rotation given by its phase.

    ``r`` arrives as phases ``(B, k)``. The distance is the p-norm of the complex difference viewed as ``2k``
    reals (p=2 by default, so 1-N scoring is a matrix product); the paper sums the moduli instead.
    Paper: Sun et al. 2019, https://arxiv.org/abs/1902.10197
    """

    kind = "distance"
    complex = True

    def combine(self, h: FloatTensor, r: FloatTensor) -> FloatTensor:
        return complex_mul(h, torch.cat([torch.cos(r), torch.sin(r)], dim=-1))

    def factors(self, h: FloatTensor, r: FloatTensor, t: FloatTensor) -> tuple[FloatTensor, ...]:
        hf, _, tf = super().factors(h, torch.cat([r, r], -1), t)
        return (hf, tf)


INTERACTIONS: dict[str, type[Interaction]] = {
    "distmult": DistMult,
    "complex": ComplEx,
    "transe": TransE,
    "rotate": RotatE,
}
