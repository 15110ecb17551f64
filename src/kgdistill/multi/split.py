"""A deterministic link-prediction split of one graph's triples.

Collections such as DBP15K ship triples without train / valid / test splits. :func:`split_triples` makes one:

1. duplicate triples are dropped (kept once, counted);
2. the triples are shuffled with ``numpy.random.default_rng(seed)``;
3. walking that order, a triple goes to ``test`` (then, once ``test`` is full, to ``valid``) only if its head, its
   tail and its relation each still occur in another triple left in ``train``; otherwise it stays in ``train``.

So every entity and relation of valid / test occurs in train (no unseen entity is ever ranked), the split
depends only on the triples and the seed, and the fractions are met exactly unless the graph is too sparse (then
the split is as large as the rule allows, and the shortfall is reported).
"""

from __future__ import annotations

import numpy as np

from kgdistill.errors import ConfigError

__all__ = ["split_triples"]


def split_triples(
    triples: np.ndarray, *, valid: float = 0.05, test: float = 0.05, seed: int = 0
) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """Split ``triples (n, 3)`` into row indices per split.

    Returns:
        ``{"train", "valid", "test"}`` -> sorted row indices into ``triples`` (duplicates of a kept triple are
        in no split), and a report: ``duplicates``, the sizes, and the requested sizes.
    """
    for key, frac in (("valid", valid), ("test", test)):
        if not 0 <= frac < 0.5:
            raise ConfigError(f"config key 'data.multi.{key}': must be in [0, 0.5), got {frac}")
    n_all = len(triples)
    _, first = np.unique(triples, axis=0, return_index=True)
    keep = np.sort(first)
    rng = np.random.default_rng(seed)
    order = keep[rng.permutation(len(keep))]
    n = len(keep)
    want = {"test": round(test * n), "valid": round(valid * n)}
    h, r, t = triples[keep, 0], triples[keep, 1], triples[keep, 2]
    num_e = int(triples[:, [0, 2]].max()) + 1 if n else 0
    deg = np.bincount(np.concatenate([h, t]), minlength=num_e)
    rel = np.bincount(r, minlength=int(r.max()) + 1 if n else 0)
    held: dict[str, list[int]] = {"test": [], "valid": []}
    for i in order.tolist():
        split = "test" if len(held["test"]) < want["test"] else "valid"
        if len(held[split]) >= want[split]:
            break
        a, b, c = int(triples[i, 0]), int(triples[i, 1]), int(triples[i, 2])
        need = 3 if a == c else 2  # a self-loop uses two of its entity's occurrences
        if (deg[a] < need or (a != c and deg[c] < 2)) or rel[b] < 2:
            continue
        deg[a] -= 1
        deg[c] -= 1
        rel[b] -= 1
        held[split].append(i)
    out = {s: np.sort(np.asarray(v, dtype=np.int64)) for s, v in held.items()}
    out["train"] = np.setdiff1d(keep, np.concatenate([out["test"], out["valid"]]))
    report = {
        "duplicates": n_all - n,
        **{s: len(v) for s, v in out.items()},
        "requested": want,
        "seed": seed,
    }
    return {s: out[s] for s in ("train", "valid", "test")}, report
