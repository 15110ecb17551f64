"""Contexts in and out of a store as plain text files, and how much of a dataset a store covers.

**The exchange format** (``tsv``; written by :func:`export_contexts`, read by :func:`import_contexts`), UTF-8, one
context per line::

    <entity label><TAB><text>                              an entity context
    <head><TAB><relation><TAB><tail><TAB><text>            a triple context

Labels are the dataset's raw labels (``<Al_Gore>``, ``/m/0c94fn``, ``00590383``). In texts, backslash, tab, newline
and carriage return are written ``\\\\``, ``\\t``, ``\\n``, ``\\r``. Blank lines are skipped. Reading is strict: a line
with another number of fields, an unknown label or an empty text is a :class:`~kgdistill.errors.DataError` naming
file and line, and nothing is stored (the whole file is checked first).

**Real LLM files** (third-party, read leniently: ids not in the dataset and empty texts are skipped and counted):

* ``cpkgc`` - CP-KGC's entity summaries (GPT-4, GPT-3.5-turbo, LLaMA-2-13B-chat for FB15k-237 / FB15k-237N):
  ``mid<TAB>"text"@en`` with N-Triples escapes (``\\"``, ``\\n``) and CRLF line ends;
* ``cpkgc-synonyms`` - CP-KGC's Qwen-7B-Chat synonyms of WN18RR synsets:
  ``offset<TAB>name<TAB>syn1[SEP]syn2[SEP]...``; a context reads ``name (synonyms: syn1, syn2)``, with the synonyms
  stripped, de-duplicated, without the name itself; a line without synonyms is skipped (the filtered file
  ``entity2synonyms_Qwen_argmax.txt`` has many, its first line among them).

``auto`` picks the format from the first non-blank line. Imported records carry ``source`` (the file name) and
``model`` (given, or known from CP-KGC's file names).
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from kgdistill.contexts.store import StoreWriter, read_store, record_id
from kgdistill.errors import DataError

if TYPE_CHECKING:
    from kgdistill.data.kg import KG

__all__ = [
    "ImportReport",
    "coverage",
    "escape",
    "export_contexts",
    "import_contexts",
    "read_context_file",
    "unescape",
]

Format = Literal["auto", "tsv", "cpkgc", "cpkgc-synonyms"]
_ESC = {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"}
_UNESC = {"\\": "\\", "t": "\t", "n": "\n", "r": "\r", '"': '"'}
_CPKGC = re.compile(r'^(\S+)\t"(.*)"@en$')
#: CP-KGC file name -> the model that wrote it (from the repository's README and scripts)
KNOWN_MODELS = {
    "GPT4": "gpt-4",
    "GPT_3.5turbo": "gpt-3.5-turbo",
    "llama2_13B_chat": "llama-2-13b-chat",
    "Qwen": "qwen-7b-chat",
}


def escape(text: str) -> str:
    """``text`` with backslash, tab, newline and carriage return escaped (one line, no tab)."""
    return "".join(_ESC.get(c, c) for c in text)


def unescape(text: str) -> str:
    """The inverse of :func:`escape` (also turns ``\\"`` into ``"``); an unknown escape stays as written."""
    return re.sub(r"\\(.)", lambda m: _UNESC.get(m.group(1), m.group(0)), text)


def export_contexts(
    store: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    kind: Literal["entity", "triple"] | None = None,
) -> dict[str, int]:
    """Write the accepted contexts of ``store`` (of one ``kind``, or all) to ``out`` in the exchange format.

    Returns:
        Lines written per kind.
    """
    from kgdistill.io import atomic_write_text

    contents = read_store(store)
    if contents.dataset is None:
        raise DataError("not a context store (or empty)", path=store)
    lines, counts = [], Counter[str]()
    for rec in contents.ok().values():
        if kind is not None and rec["kind"] != kind:
            continue
        key = [rec["key"]] if rec["kind"] == "entity" else list(rec["key"])
        lines.append("\t".join([*key, escape(rec["text"])]) + "\n")
        counts[rec["kind"]] += 1
    atomic_write_text(Path(out), "".join(lines))
    return {"entity": counts["entity"], "triple": counts["triple"]}


@dataclass
class ImportReport:
    """What :func:`import_contexts` did. ``skipped`` counts lines left out, by reason; ``coverage`` is
    :func:`coverage` of the store afterwards."""

    file: str
    store: str
    format: str
    model: str
    read: int = 0
    added: int = 0
    replaced: int = 0
    kept: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    coverage: dict[str, Any] = field(default_factory=dict)


def _detect(first: str) -> str:
    fields = first.split("\t")
    # three fields are never the exchange format (2 or 4); CP-KGC's filtered synonyms file
    # (``entity2synonyms_Qwen_argmax.txt``) starts with a synset whose synonyms were all filtered out
    if len(fields) == 3 and (
        "[SEP]" in fields[2] or (fields[0].isdigit() and not fields[2].strip())
    ):
        return "cpkgc-synonyms"
    if _CPKGC.match(first):
        return "cpkgc"
    return "tsv"


def _synonyms(name: str, raw: str) -> str | None:
    seen, out = {name.strip().lower()}, []
    for s in raw.split("[SEP]"):
        s = " ".join(s.split())
        if s and s.lower() not in seen:
            seen.add(s.lower())
            out.append(s)
    return f"{name} (synonyms: {', '.join(out)})" if out else None


def read_context_file(
    path: str | os.PathLike[str], kg: KG, *, fmt: Format = "auto"
) -> tuple[list[tuple[str, Any, str, int]], str, Counter[str]]:
    """Parse a context file against ``kg``: ``(kind, key, text, line)`` tuples, the format read, and the lines
    skipped by reason (third-party formats only; the ``tsv`` format raises instead)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read the context file ({e})", path=path) from None
    lines = text.split("\n")
    first = next((ln.rstrip("\r") for ln in lines if ln.strip()), "")
    fmt = _detect(first) if fmt == "auto" else fmt
    entities, relations = set(kg.entity_labels), set(kg.relation_labels)
    out: list[tuple[str, Any, str, int]] = []
    skipped: Counter[str] = Counter()
    for ln, raw in enumerate(lines, start=1):
        line = raw.rstrip("\r")
        if not line.strip():
            continue
        if fmt == "tsv":
            out.append(_tsv_line(line, path, ln, entities, relations))
            continue
        if fmt == "cpkgc":
            m = _CPKGC.match(line)
            if m is None:
                raise DataError('expected mid<TAB>"text"@en', path=path, line=ln)
            key, body = m.group(1), unescape(m.group(2)).strip()
        else:
            parts = line.split("\t")
            if len(parts) != 3:
                raise DataError(
                    "expected offset<TAB>name<TAB>synonyms separated by [SEP]", path=path, line=ln
                )
            key, body = parts[0], _synonyms(parts[1], parts[2]) or ""
        if key not in entities:
            skipped["not in the dataset"] += 1
        elif not body:
            skipped["empty"] += 1
        else:
            out.append(("entity", key, body, ln))
    return out, fmt, skipped


def _tsv_line(
    line: str, path: Path, ln: int, entities: set[str], relations: set[str]
) -> tuple[str, Any, str, int]:
    fields = line.split("\t")
    if len(fields) not in (2, 4):
        raise DataError(
            f"expected label<TAB>text or head<TAB>relation<TAB>tail<TAB>text, found {len(fields)} "
            "tab-separated fields (write tabs inside a text as \\t)",
            path=path,
            line=ln,
        )
    *key, body = fields
    body = unescape(body).strip()
    for what, label, known in zip(
        ("entity", "relation", "entity"), key, (entities, relations, entities), strict=False
    ):
        if label not in known:
            raise DataError(f"unknown {what} '{label}' (not in the dataset)", path=path, line=ln)
    if not body:
        raise DataError("empty text", path=path, line=ln)
    return ("entity", key[0], body, ln) if len(key) == 1 else ("triple", key, body, ln)


def _model(path: Path, fmt: str) -> str:
    if fmt.startswith("cpkgc"):
        for marker, model in KNOWN_MODELS.items():
            if marker in path.stem:
                return model
    return "unknown"


def import_contexts(
    file: str | os.PathLike[str],
    kg: KG,
    store: str | os.PathLike[str],
    *,
    fmt: Format = "auto",
    model: str | None = None,
    replace: bool = False,
) -> ImportReport:
    """Bring the contexts of ``file`` into ``store`` (created for ``kg`` when missing).

    Keys already in the store keep their context unless ``replace``; a key recorded as rejected gets the imported
    one (the store is then rewritten atomically).
    The whole file is parsed and checked before anything is written: a bad file leaves the store as it was.
    A key given twice in the file keeps its last line.
    """
    file = Path(file)
    parsed, fmt_read, skipped = read_context_file(file, kg, fmt=fmt)
    model = model or _model(file, fmt_read)
    report = ImportReport(str(file), str(store), fmt_read, model, read=len(parsed))
    report.skipped = dict(skipped)
    created = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")
    records: dict[str, dict[str, Any]] = {}
    for kind, key, text, ln in parsed:
        rec = {
            "kind": kind,
            "key": key,
            "status": "ok",
            "reason": None,
            "text": text,
            "prompt": None,
            "model": model,
            "source": f"{file.name}:{ln}",
            "created": created,
        }
        records[record_id(kind, key)] = rec
    with StoreWriter(store, dataset=kg.name) as writer:
        old = writer.contents.records
        new = {rid: rec for rid, rec in records.items() if rid not in old}
        clash = {rid: rec for rid, rec in records.items() if rid in old}
        # a key recorded as rejected has no context: an imported one takes its place
        swap = {rid: rec for rid, rec in clash.items() if replace or old[rid].get("status") != "ok"}
        if swap:
            writer.rewrite({**old, **swap}.values())
        report.replaced, report.kept = len(swap), len(clash) - len(swap)
        report.added = writer.append(new.values())
    report.coverage = coverage(kg, store)
    return report


def coverage(kg: KG, store: str | os.PathLike[str]) -> dict[str, Any]:
    """How much of ``kg`` the accepted contexts of ``store`` cover.

    Returns:
        ``entities``: entities with a context / all entities of the vocabulary; ``entities_in_triples``: the same
        over the entities occurring in some split; per split, ``entities`` (of the entities occurring in the
        split, those with a context), ``triples_td`` (distinct triples with their own context) and
        ``triples_ed`` (distinct triples whose head and tail both have an entity context: T->ED composable).
    """
    ok = read_store(store).ok()
    labels, rels = kg.entity_labels, kg.relation_labels
    has_entity = [record_id("entity", lab) in ok for lab in labels]
    out: dict[str, Any] = {"entities": _share(sum(has_entity), len(labels))}
    splits: dict[str, Any] = {}
    used: set[int] = set()
    for split, facts in kg.facts.items():
        triples = {tuple(x) for x in facts[:, :3].tolist()}
        ents = {e for h, _, t in triples for e in (h, t)}
        used |= ents
        td = sum(record_id("triple", (labels[h], rels[r], labels[t])) in ok for h, r, t in triples)
        ed = sum(has_entity[h] and has_entity[t] for h, _, t in triples)
        splits[split] = {
            "entities": _share(sum(has_entity[e] for e in ents), len(ents)),
            "triples_td": _share(td, len(triples)),
            "triples_ed": _share(ed, len(triples)),
        }
    out["entities_in_triples"] = _share(sum(has_entity[e] for e in used), len(used))
    out["splits"] = splits
    return out


def _share(n: int, total: int) -> dict[str, Any]:
    return {"with": n, "total": total, "share": round(n / total, 4) if total else 1.0}
