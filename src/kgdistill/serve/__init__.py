"""``kgdistill serve``: an HTTP service (FastAPI + uvicorn) answering link-prediction queries with trained runs.

One process serves one or more run folders, each under a name (default: the folder's name), each loaded once
into a :class:`~kgdistill.predict.Predictor` (read-only, inference mode). Concurrent top-k requests for a run
are gathered by a micro-batcher (:mod:`kgdistill.serve.batcher`) into one ``score_all`` call. See
``docs/serve.md`` for the endpoints.

Modules: :mod:`~kgdistill.serve.schemas` (request and response bodies), :mod:`~kgdistill.serve.resolve`
(labels, ids and times of a body -> id rows, errors naming the field), :mod:`~kgdistill.serve.batcher`,
:mod:`~kgdistill.serve.metrics` (Prometheus text format), :mod:`~kgdistill.serve.runs` (loading and checking
run folders), :mod:`~kgdistill.serve.app` (the FastAPI app), :mod:`~kgdistill.serve.cli` (the command).
Importing this package loads nothing heavy (no PyTorch, no FastAPI).
"""
