"""Row-wise sharding of the entity table (kgdistill.shard, ``train.shard_entities``).

One process (fast): the arithmetic of the sharded cross-entropy and of the rank counts, checked by splitting real
score matrices by hand; the blocks; loading whole checkpoints into a block; every refused combination.
Two gloo processes (slow, ``python -m torch.distributed.run`` like tests/test_distributed.py): loss and
gradients equal one process's, evaluation equal to the last bit in every tie mode, a short training run within
the tolerance of one unsharded process with ``E / N`` entity rows per rank, and its checkpoint resumed and
evaluated by one process.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import time
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
import yaml
from click.testing import CliRunner
from safetensors.torch import load_file

from kgdistill import api, shard
from kgdistill.cli import cli
from kgdistill.config import parse_config
from kgdistill.data.batching import both_directions
from kgdistill.data.filters import FilterIndex
from kgdistill.errors import ConfigError
from kgdistill.evaluate import _tie_rank, rank_filtered
from kgdistill.models.base import Vocab
from kgdistill.models.zoo import build_model
from kgdistill.run import check, load_data
from kgdistill.shard.ops import block_grad, block_stats, loss_from_stats
from kgdistill.shard.rank import block_counts, local_positions
from kgdistill.types import TAIL
from test_distributed import _close, _epochs_logged, _log, _ok, _tiny_cfg, _torchrun

FIXTURES = Path(__file__).parent / "fixtures"


def _model(kg: Any, name: str = "tntcomplex", dim: int = 8, **kw: Any) -> Any:
    return build_model(
        {"name": name, "dim": dim, **kw}, Vocab(kg.num_entities, kg.num_relations, kg.time.labels)
    )


def _split(n: int, size: int) -> list[tuple[int, int]]:
    return [shard.Blocks(n, size).bounds(r) for r in range(size)]


# ------------------------------------------------------------------------------------------- one process
@pytest.mark.parametrize(("num", "size"), [(10, 3), (7, 7), (12_554, 8), (5, 2)])
def test_blocks_are_contiguous_and_owned(num: int, size: int) -> None:
    blocks = shard.Blocks(num, size)
    bounds = _split(num, size)
    assert bounds[0][0] == 0 and bounds[-1][1] == num
    assert all(a[1] == b[0] for a, b in itertools.pairwise(bounds))
    heights = [hi - lo for lo, hi in bounds]
    assert max(heights) - min(heights) <= 1
    ids = torch.arange(num)
    owners = blocks.owner(ids)
    for r, (lo, hi) in enumerate(bounds):
        assert bool((owners[lo:hi] == r).all())


@pytest.mark.parametrize("eps", [0.0, 0.1])
@pytest.mark.parametrize("size", [2, 3])
def test_block_statistics_give_the_cross_entropy_and_its_gradient(
    tiny_tkg: Any, eps: float, size: int
) -> None:
    """TNTComplEx scores of 40 real Wikidata12k queries over all entities, split into uneven column blocks: the
    global log-sum-exp from the blocks' maxima and sums is F.cross_entropy (label smoothing included), and the
    blocks' local gradients are its gradient."""
    model = _model(tiny_tkg, init_scale=0.5)
    q = both_directions(tiny_tkg.splits["train"], tiny_tkg.num_relations)[:40]
    scores = model.score_all(q).detach().requires_grad_(True)
    targets = q[:, TAIL]
    want = F.cross_entropy(scores, targets, label_smoothing=eps)
    want.backward()
    e = tiny_tkg.num_entities
    blocks = [(lo, scores.detach()[:, lo:hi]) for lo, hi in _split(e, size)]
    top = torch.stack([s.amax(1) for _, s in blocks]).amax(0)  # the MAX all-reduce
    parts = [block_stats(s, top, targets, lo, bool(eps)) for lo, s in blocks]
    stats = sum(p[1] for p in parts)  # the SUM all-reduce
    weights = torch.full((len(q),), 1 / len(q))
    loss = loss_from_stats(stats, top, weights, e, eps)
    torch.testing.assert_close(loss, want.detach(), rtol=1e-6, atol=0)
    grads = [
        block_grad(exp, stats[0], targets, weights, lo, e, eps, torch.tensor(1.0))
        for (lo, _), (exp, _) in zip(blocks, parts, strict=True)
    ]
    assert scores.grad is not None
    torch.testing.assert_close(torch.cat(grads, 1), scores.grad, rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("ties", ["realistic", "optimistic", "pessimistic"])
def test_block_counts_give_the_filtered_ranks_exactly(yago: Any, ties: str) -> None:
    """YAGO11k test queries (filtered, with a third of the entities tied at score 0): summing each column
    block's counts of greater and equal scores gives rank_filtered's ranks, to the last bit."""
    model = _model(yago, "distmult", 16, init_scale=0.1)
    with torch.no_grad():
        model.entities.weight[::3] = 0.0
    index = FilterIndex.build(yago)
    q = both_directions(yago.splits["test"], yago.num_relations)[:300]
    e = yago.num_entities
    flat = next(index.known_flat_chunks(q, len(q), e))
    with torch.no_grad():
        scores = model.score_all(q)
    want = rank_filtered(scores.clone(), q[:, TAIL], flat, ties)  # type: ignore[arg-type]
    true = scores.gather(1, q[:, TAIL : TAIL + 1]).squeeze(1)
    greater = torch.zeros(len(q), dtype=torch.long)
    equal = torch.zeros(len(q), dtype=torch.long)
    for lo, hi in _split(e, 3):
        g, eq = block_counts(
            scores[:, lo:hi].clone(), true, q[:, TAIL], lo, local_positions(flat, e, lo, hi)
        )
        greater, equal = greater + g, equal + eq
    got = _tie_rank(greater, equal, ties)  # type: ignore[arg-type]
    assert torch.equal(got, want)
    assert bool((equal > 0).any())  # ties did occur


def test_a_block_loads_the_whole_table_and_counts_it_whole(tiny_tkg: Any) -> None:
    """An ordinary checkpoint's table loads into rank 1's block (rows sliced); the model still reports all its
    parameters; the whole table is refused (it exists on no rank)."""
    model = _model(tiny_tkg)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    params = model.num_parameters()
    shard.shard_model(model, rank=1, size=3)
    lo, hi = shard.Blocks(tiny_tkg.num_entities, 3).bounds(1)
    assert model.entities.weight.shape == (hi - lo, state["entities.weight"].shape[1])
    with torch.no_grad():
        model.entities.weight.zero_()
    model.load_state_dict(state)
    assert torch.equal(model.entities.weight, state["entities.weight"][lo:hi])
    assert model.num_parameters() == params
    with pytest.raises(RuntimeError, match="sharded"):
        model.entities.table()


def test_the_optimiser_state_of_a_block_is_sliced_from_a_whole_checkpoint(tiny_tkg: Any) -> None:
    model = _model(tiny_tkg)
    opt = torch.optim.Adagrad(model.parameters(), lr=0.1)
    model.score_all(
        both_directions(tiny_tkg.splits["train"], tiny_tkg.num_relations)[:5]
    ).sum().backward()
    opt.step()
    whole = opt.state_dict()
    shard.shard_model(model, rank=1, size=2)
    opt2 = torch.optim.Adagrad(model.parameters(), lr=0.1)
    local = shard.local_optimizer_state(whole, opt2, model)
    opt2.load_state_dict(local)
    lo, hi = model.entities.lo, model.entities.hi
    assert torch.equal(opt2.state[model.entities.weight]["sum"], whole["state"][0]["sum"][lo:hi])
    assert torch.equal(local["state"][1]["sum"], whole["state"][1]["sum"])  # replicated: untouched


def _sharded_cfg(**over: Any) -> dict[str, Any]:
    cfg = _tiny_cfg()
    cfg["train"] = {**cfg["train"], "shard_entities": True}
    for key, value in over.items():
        section, _, name = key.partition(".")
        if name:
            cfg[section] = {**cfg.get(section, {}), name: value}
        else:
            cfg[section] = value
    return cfg


@pytest.mark.parametrize(
    ("over", "message"),
    [
        (
            {"model": {"name": "transe", "dim": 8}},
            "model 'transe' cannot be sharded: its interaction",
        ),
        ({"model": {"name": "hyte", "dim": 8}}, "model 'hyte' cannot be sharded: HyTE"),
        ({"model": {"name": "llm_scorer"}}, "model 'llm_scorer' computes its entity vectors"),
        ({"train.negatives": 10}, "needs 1-N training"),
        ({"train.negative_sampling": "in_batch"}, "needs 1-N training"),
        (
            {"teachers": {"t": {"name": "checkpoint", "path": "x"}}},
            "teachers (t) are not supported",
        ),
        ({"eval.retriever": "runs/x"}, "re-ranking (eval.retriever)"),
        (
            {"stages": [{"epochs": 1, "objective": [{"loss": "info_nce"}]}]},
            "loss 'info_nce' (stages.0.objective.0) is not supported",
        ),
    ],
)
def test_unsupported_combinations_are_one_config_error(over: dict[str, Any], message: str) -> None:
    cfg = parse_config(_sharded_cfg(**over))
    with pytest.raises(ConfigError) as err:
        check(cfg)
    assert str(err.value).startswith("config key 'train.shard_entities': ")
    assert message in str(err.value)


def test_the_cli_refuses_a_bad_combination_with_status_2(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(yaml.safe_dump(_sharded_cfg(**{"train.negatives": 5})))
    result = CliRunner().invoke(
        cli, ["-q", "train", str(config), "--out", str(tmp_path / "run")], catch_exceptions=False
    )
    assert result.exit_code == 2, result.output
    assert "train.shard_entities" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "run").exists()


def test_one_process_ignores_the_option(tmp_path: Path) -> None:
    """Without torchrun the option changes nothing: the run is the unsharded one, bit for bit."""
    cfg = _tiny_cfg(stages=[{"epochs": 1}])
    a = api.train(parse_config(cfg), out=tmp_path / "a").metrics
    cfg["train"] = {**cfg["train"], "shard_entities": True}
    b = api.train(parse_config(cfg), out=tmp_path / "b").metrics
    assert a.sides == b.sides


# --------------------------------------------------------------------------------------- processes
_GRAD_SCRIPT = """
import copy, json, sys
from pathlib import Path
import torch
from kgdistill import dist, shard
from kgdistill.data import build_kg, read_hyte
from kgdistill.data.batching import both_directions
from kgdistill.models.base import Vocab
from kgdistill.models.zoo import build_model
from kgdistill.objective import Objective
from kgdistill.shard.state import gather_block

w = dist.init_from_env()
kg = build_kg(read_hyte(Path(sys.argv[1])))
torch.manual_seed(0)
vocab = Vocab(kg.num_entities, kg.num_relations, kg.time.labels)
model = build_model({"name": sys.argv[2], "dim": 8, "init_scale": 0.3}, vocab)
objective = Objective.build([
    {"loss": "supervised_ce", "label_smoothing": 0.1},
    {"loss": "n3", "weight": 0.01},
    {"loss": "lambda3", "weight": 0.1},
])
ref = copy.deepcopy(model)
one = dist.LossStep(ref, objective, {}, {})
shard.shard_model(model, w.rank, w.size)
step = shard.ShardedStep(model, objective)
queries = both_directions(kg.splits["train"], kg.num_relations)
out = []
for lo, hi in [(0, 13), (13, 14), (100, 400)]:  # uneven halves, one query (rank 1 idle), 300 queries
    q = queries[lo:hi]
    ref.zero_grad()
    model.zero_grad()
    want, want_parts = one(q, None, None)
    want.backward()
    mine, share = dist.batch_rows(q, None, None)[0], dist.batch_rows(q, None, None)[3]
    loss, parts = step(mine, share)
    loss.backward()
    step.reduce_gradients()
    table = gather_block(model.entities.weight.grad, model.entities)
    if w.rank == 0:
        def rel(a, b):  # relative to the largest entry (absolute for a term that is 0: no time table)
            d, m = (a - b).abs().max(), b.abs().max()
            return float(d / m if m > 0 else d)
        errs = {"loss": rel(loss.detach(), want.detach()), "entities.weight": rel(table, ref.entities.weight.grad)}
        mine_p, ref_p = dict(model.named_parameters()), dict(ref.named_parameters())
        errs.update({n: rel(p.grad, ref_p[n].grad) for n, p in mine_p.items() if n != "entities.weight"})
        errs.update({k: rel(parts[k], want_parts[k]) for k in parts})
        out.append(errs)
    assert model.entities.weight.shape[0] == model.entities.hi - model.entities.lo
if w.rank == 0:
    print(json.dumps(out))
"""


@pytest.mark.slow
@pytest.mark.parametrize("name", ["tntcomplex", "ta_distmult"])
def test_two_ranks_give_one_process_loss_and_gradients(tmp_path: Path, name: str) -> None:
    """Wikidata12k fixture (520 entities), cross-entropy with label smoothing + N3 + Lambda3: the sharded loss,
    every term and the gradients of the entity rows (gathered), the relation and time tables and the LSTM equal
    one process's to 2e-6 relative (of the largest entry; observed below 1e-6), for an uneven batch, a batch
    of one query (one rank idle) and 300 queries."""
    script = tmp_path / "grads.py"
    script.write_text(_GRAD_SCRIPT)
    printed = _ok(_torchrun(2, str(script), str(FIXTURES / "wikidata12k-mini"), name))
    for batch in json.loads(printed.strip().splitlines()[-1]):
        assert set(batch) >= {"loss", "entities.weight", "supervised_ce", "n3", "lambda3"}
        assert all(v < 2e-6 for v in batch.values()), batch


_EVAL_SCRIPT = """
import copy, json, sys
import torch
from kgdistill import dist, shard
from kgdistill.data import load_kg
from kgdistill.evaluate import evaluate
from kgdistill.models.base import Vocab
from kgdistill.models.zoo import build_model

w = dist.init_from_env()
kg = load_kg("yago11k")
torch.manual_seed(0)
vocab = Vocab(kg.num_entities, kg.num_relations, kg.time.labels)
model = build_model({"name": sys.argv[1], "dim": 16, "init_scale": 0.1}, vocab)
with torch.no_grad():
    model.entities.weight[::3] = 0.0  # a third of the entities score 0 for every query: many ties
ref = copy.deepcopy(model)
shard.shard_model(model, w.rank, w.size)
out = {}
for ties in ("realistic", "optimistic", "pessimistic"):
    for filtered in (True, False):
        with dist.alone():
            one = evaluate(ref, kg, "test", ties=ties, filtered=filtered).sides
        out[f"{ties} {filtered}"] = [one, shard.evaluate_sharded(model, kg, "test", ties=ties, filtered=filtered).sides]
with dist.alone():
    one = evaluate(ref, kg, "test", by_relation=True).breakdown
out["by relation"] = [one, shard.evaluate_sharded(model, kg, "test", by_relation=True).breakdown]
record = {"rank": w.rank, "rows": model.entities.weight.shape[0], "metrics": out}
with open(f"{sys.argv[2]}/rank{w.rank}.json", "w") as fh:  # one file a rank: their prints would interleave
    json.dump(record, fh)
"""


@pytest.mark.slow
@pytest.mark.parametrize("name", ["tntcomplex", "distmult"])
def test_two_ranks_rank_yago11k_exactly_as_one_process(tmp_path: Path, name: str) -> None:
    """The YAGO11k test split (4,000 queries, 10,623 entities), filtered and raw, in every tie mode: every
    metric of the sharded evaluation equals one process's to the last bit, on both ranks, and so does the
    breakdown by relation."""
    script = tmp_path / "eval.py"
    script.write_text(_EVAL_SCRIPT)
    _ok(_torchrun(2, str(script), name, str(tmp_path)))
    lines = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert sorted(x["rank"] for x in lines) == [0, 1]
    assert sorted(x["rows"] for x in lines) == [5311, 5312]
    for x in lines:
        for key, (one, two) in x["metrics"].items():
            assert one == two, key
    m = lines[0]["metrics"]
    assert m["realistic True"][0]["both"]["mr"] != m["optimistic True"][0]["both"]["mr"]
    assert len(m["by relation"][0]["relations"]) > 5


_TRAIN_SCRIPT = """
import json, sys
from pathlib import Path
import yaml
from kgdistill import api, dist
from kgdistill.config import parse_config

cfg = parse_config(yaml.safe_load(Path(sys.argv[1]).read_text()))
result = api.train(cfg, out=sys.argv[2])
w = dist.world()
with open(f"{sys.argv[2]}/rank{w.rank}.json", "w") as fh:  # one file a rank: their prints would interleave
    json.dump({"rank": w.rank, "rows": list(result.model.entities.weight.shape)}, fh)
"""


@pytest.mark.slow
def test_sharded_training_matches_one_process_and_resumes_in_one(tmp_path: Path) -> None:
    """TNTComplEx on the Wikidata12k fixture, 2 stages (cross-entropy + N3, then cross-entropy), Adagrad.

    * 2 gloo ranks with a sharded table hold 260 of the 520 entity rows each, and train within the tolerance of
      one unsharded process (the same global batches; the gradient differs in float summation order only, as
      with data parallelism: losses to 1e-4 relative, metrics to 0.01; observed about 1e-6 and equal);
    * the checkpoints are ordinary files (the whole table and its Adagrad state), and one process evaluates the
      run's best checkpoint exactly as the sharded run did;
    * a sharded run whose rank 1 is killed with SIGKILL resumes with one process (another world size) within
      the same tolerance.
    """
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(_sharded_cfg()))
    one, two = tmp_path / "one", tmp_path / "two"
    _ok(_torchrun(1, "-m", "kgdistill", "-q", "train", str(config), "--out", str(one)))
    script = tmp_path / "train.py"
    script.write_text(_TRAIN_SCRIPT)
    _ok(_torchrun(2, str(script), str(config), str(two)))
    e = load_data(parse_config(_sharded_cfg())).num_entities  # 520 entities
    rows = sorted(json.loads((two / f"rank{r}.json").read_text())["rows"][0] for r in range(2))
    assert rows == [e // 2, e - e // 2]
    assert _close(one, two)
    last = load_file(str(two / "last.safetensors"))
    assert last["model.entities.weight"].shape == (e, 16)
    assert any(k.startswith("optim.") and v.shape == (e, 16) for k, v in last.items())
    sharded = json.loads((two / "metrics.json").read_text())
    assert (
        sharded["num_parameters"]
        == json.loads((one / "metrics.json").read_text())["num_parameters"]
    )
    again = api.evaluate_run(two, progress=False)
    assert again.sides == sharded["sides"]

    run = tmp_path / "killed"
    proc = _torchrun(2, "-m", "kgdistill", "-q", "train", str(config), "--out", str(run))
    import psutil

    deadline = time.time() + 300
    while _epochs_logged(run) < 2 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    workers = psutil.Process(proc.pid).children()
    assert proc.poll() is None and len(workers) == 2, "the run finished before it could be killed"
    os.kill(workers[-1].pid, signal.SIGKILL)
    proc.communicate(timeout=120)
    assert proc.returncode != 0 and (run / "last.safetensors").is_file()
    alone = tmp_path / "killed-1"
    shutil.copytree(run, alone)
    _ok(_torchrun(1, "-m", "kgdistill", "-q", "train", "--resume", str(alone)))
    assert _close(two, alone)
    _ok(
        _torchrun(2, "-m", "kgdistill", "-q", "train", "--resume", str(run))
    )  # 2 -> 2: as uninterrupted
    assert _log(run) == _log(two)
    assert json.loads((run / "metrics.json").read_text())["sides"] == sharded["sides"]
