"""Which of the paper's claims hold: each claim decided at two levels, from the cells of
``reproduce quadratic`` and ``reproduce mnist`` runs.

Every comparison of two methods on the same test problems is made twice: the crossed bootstrap
of ``meta.stats.paired_difference`` (meta-seeds and problems resampled) and the seed-level
comparison of ``meta.stats.seed_comparison`` (one value per meta-seed, its mean final loss: a
t-interval over seeds, "k of n" seed pairs, a rank test). The bootstrap is too narrow with few
seeds (about 76% coverage for a nominal 95% at 3 seeds), the t-interval is calibrated (a test),
so a comparison points one way only when both agree, and a learned optimizer with a single
meta-seed is one run, which never decides.

A claim *holds* when every comparison that decides it points its way, *does not hold* when one
points the other way, and is *undecided* otherwise. "Comparable" is a claim of equivalence: it
holds when both intervals of each difference lie within ``MARGIN`` (10%) of the baseline's
mean, and does not hold when both lie entirely outside it. Claims against "the baselines" are
decided against the baselines with tuned learning rates (``NAME-tuned`` cells, chosen on tuning
problems apart from the test problems) where the run has them, else against the paper's rates,
and the evidence says which.

    phys-l2o claims corrected=QUAD_DIR,MNIST_DIR reference=QUAD_DIR,MNIST_DIR --out claims.md

With ``--heldout BENCH_DIR`` (a ``phys-l2o bench heldout`` folder that scored the shipped
optimizers) the table adds the paper's generalization claim, decided on tasks that no shipped
optimizer was meta-trained on; where that folder also scored the generalization sweep's run
folder, the structure claims, decided over its variants' meta-seeds (``structure_claim``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from ..meta.stats import compare, evidence
from ..reporting.results import read_finals
from .folder import RunFolder
from .paper import PAPER_BASELINE_NAMES as BASELINES
from .spec import TUNED

#: the half-width, relative to the baseline's mean, within which two means are "comparable".
MARGIN = 0.10
HOLDS, FAILS, UNDECIDED, MISSING = "holds", "does not hold", "undecided", "no run"


def baselines(finals: Mapping[str, np.ndarray]) -> tuple[list[str], str]:
    """The baselines a claim is decided against: the tuned ones where the run has all of
    them, else the paper's rates; and which, in words."""
    tuned = [TUNED.format(b) for b in BASELINES]
    if all(t in finals for t in tuned):
        return tuned, "tuned baselines"
    return list(BASELINES), "baselines at the paper's rates (this run has no tuned ones)"


def better(finals: Mapping[str, np.ndarray], method: str, others: Sequence[str]) -> tuple[str, str]:
    """``method`` has a lower mean final loss than each of ``others`` (``compare``)."""
    found = {o: compare(finals[method], finals[o]) for o in others}
    directions = [c["direction"] for c in found.values()]
    if all(d == "lower" for d in directions):
        verdict = HOLDS
    elif "higher" in directions:
        verdict = FAILS
    else:
        verdict = UNDECIDED
    return verdict, "; ".join(evidence(method, o, c) for o, c in found.items())


def comparable(finals: Mapping[str, np.ndarray], method: str,
               others: Sequence[str]) -> tuple[str, str]:
    """``method``'s mean is within ``MARGIN`` of each of ``others``' means: holds when both
    intervals (bootstrap and over seeds) of every difference lie inside the margin, does not
    hold when both of one lie outside it; a single meta-seed decides nothing."""
    inside, outside, text = True, False, []
    for other in others:
        c = compare(finals[method], finals[other])
        bound = MARGIN * float(np.mean(finals[other]))
        decides = c["direction"] != "one run"  # one run: its seed level has no interval
        intervals = [c["boot"]["ci95"], c["seeds"]["ci95"]] if decides else []
        inside &= decides and all(-bound <= lo and hi <= bound for lo, hi in intervals)
        outside |= decides and all(lo > bound or hi < -bound for lo, hi in intervals)
        text.append(f"{evidence(method, other, c)} (margin {bound:.2g})")
    verdict = HOLDS if inside else FAILS if outside else UNDECIDED
    return verdict, "; ".join(text)


def against_baselines(rule, method: str):
    """A claim of ``method`` against the baselines (``baselines``) by ``rule`` (``better`` or
    ``comparable``), with which baselines in its evidence."""
    def decide_it(finals):
        names, which = baselines(finals)
        verdict, text = rule(finals, method, names)
        return verdict, f"against the {which}: {text}"
    return decide_it


def fewer_weights(params: Mapping[str, int]) -> tuple[str, str]:
    ratios = {task: params[f"lstm-{task}"] / params[f"hnn-{task}"] for task in ("quadratic",
                                                                               "mnist")}
    verdict = HOLDS if all(r >= 50 for r in ratios.values()) else FAILS
    return verdict, "; ".join(f"{task}: {params[f'lstm-{task}']} / {params[f'hnn-{task}']} = "
                              f"{r:.0f}x" for task, r in ratios.items())


#: the paper's claims: (text, target, how it is decided).
CLAIMS = (
    ("quadratic: the HNN beats the LSTM", "quadratic", lambda f: better(f, "hnn", ["lstm"])),
    ("quadratic: the HNN beats every baseline", "quadratic", against_baselines(better, "hnn")),
    ("quadratic: the LSTM beats every baseline", "quadratic",
     against_baselines(better, "lstm")),
    ("sigmoid MNIST: the HNN is comparable to the baselines", "sigmoid",
     against_baselines(comparable, "hnn")),
    ("sigmoid MNIST: the LSTM is best", "sigmoid",
     lambda f: better(f, "lstm", ["hnn", *baselines(f)[0]])),
    ("ReLU MNIST: the HNN transfers better than the LSTM", "relu",
     lambda f: better(f, "hnn", ["lstm"])),
    ("ReLU MNIST: the HNN is comparable to the baselines", "relu",
     against_baselines(comparable, "hnn")),
)


#: the held-out claims: the HNN against the LSTM meta-trained on the same task, each shipped.
HELDOUT_CLAIMS = (
    ("held-out suite: the HNN meta-trained on MNIST generalizes better than the LSTM",
     "hnn-mnist", "lstm-mnist"),
    ("held-out suite: the HNN meta-trained on quadratics generalizes better than the LSTM",
     "hnn-quadratic", "lstm-quadratic"),
)
#: the structure claims, decided over meta-seeds of the generalization sweep's variants
#: (``phys_l2o/sweeps/generalization.toml``) scored on the suite: the HNN against a control.
STRUCTURE_CLAIMS = (
    ("held-out suite, meta-trained on a task mixture: the port-Hamiltonian structure beats an "
     "unstructured MLP with the same inputs and budget", "hnn features", "mlp"),
    ("held-out suite, meta-trained on a task mixture: the HNN beats the LSTM at the same "
     "budget", "hnn features", "lstm"),
)
#: the protocol the shipped optimizers were meta-trained under.
SHIPPED_PROTOCOL = "corrected"


def heldout_claim(folder: str | Path, hnn: str, lstm: str) -> tuple[str, str]:
    """``hnn`` beats ``lstm`` on the tasks of a held-out suite: the paired difference of the
    interquartile means of their normalized scores (``bench.scores``) with its stratified
    bootstrap interval, read from a ``phys-l2o bench`` folder. The shipped optimizers are one
    meta-trained optimizer each: the interval covers the tasks' problems, not meta-training,
    so the claim rests on one run per method and stays undecided whichever way the interval
    points (the evidence says which); the structure claims (``structure_claim``) decide over
    meta-seeds."""
    import json

    from ..bench.scores import iqm_difference

    results = json.loads((Path(folder) / "results.json").read_text())
    methods = results["methods"]
    for name in (hnn, lstm):
        if name not in methods:
            raise KeyError(name)
    a, b = (np.array([m["tasks"][t]["scores"] for t in m["tasks"]]).T
            for m in (methods[hnn], methods[lstm]))
    diff = iqm_difference(a, b)
    lo, hi = diff["ci95"]
    way = (f"{hnn} lower" if hi < 0 else f"{hnn} higher" if lo > 0 else "neither side") + \
        " over the tasks' problems"
    tasks, seeds = a.shape[1], results["suite"]["seeds"]
    return UNDECIDED, (f"IQM of ln(loss / tuned Adam's) over {tasks} tasks x {seeds} seeds: "
                       f"{hnn} - {lstm} {diff['difference']:+.3g} [{lo:+.3g}, {hi:+.3g}], "
                       f"{way} (one run: one meta-trained optimizer each, and a single "
                       "meta-seed never decides)")


def structure_claim(folder: str | Path, hnn: str, control: str) -> tuple[str, str]:
    """The variant ``hnn`` beats the variant ``control`` on a held-out suite, decided over
    their meta-seeds (``bench.report.seed_level``: each meta-seed's IQM score one value, a
    Welch t-interval of the difference and the rank test agreeing), read from a ``phys-l2o
    bench`` folder that scored a sweep's run folder."""
    import json

    results = json.loads((Path(folder) / "results.json").read_text())
    level = results.get("seed_level") or {}
    found = [c for c in level.get("comparisons", []) if (c["a"], c["b"]) == (hnn, control)]
    if not found:
        raise KeyError(f"{hnn} vs {control}")
    c = found[0]
    verdict = {"better": HOLDS, "worse": FAILS}.get(c["verdict"], UNDECIDED)
    n_a, n_b = c["seeds"]
    ci = "" if c["ci95"] is None else " [{:+.3g}, {:+.3g}]".format(*c["ci95"])
    p = "" if c["p"] is None else f", Mann-Whitney p = {c['p']:.2g}"
    return verdict, (f"mean over meta-seeds of the IQM of ln(loss / tuned Adam's): {hnn} - "
                     f"{control} {c['difference']:+.3g}{ci} (t-interval over {n_a} and {n_b} "
                     f"meta-seeds); {hnn} lower in {c['pairs']} of {c['of']} seed pairs{p}")


def decide(runs: Mapping[str, Sequence[str | Path]],
           heldout: str | Path | None = None) -> list[dict]:
    """Each claim under each protocol: ``runs`` maps a protocol to its (quadratic, MNIST) run
    folders. Returns rows ``{"claim", protocol: {"verdict", "evidence", "seeds"}}``; a claim
    whose run is not there (a folder that does not exist) or lacks its methods is
    ``MISSING``. ``heldout``: a ``phys-l2o bench`` folder that scored the shipped optimizers,
    which adds the held-out claim (decided under the protocol they were trained under)."""
    finals, params = {}, {}
    for protocol, folders in runs.items():
        merged: dict[str, dict[str, np.ndarray]] = {}
        for folder in folders:
            if not Path(folder).exists():
                continue
            records = RunFolder(folder).records()
            merged.update(read_finals(records))
            for record in records:
                if record.get("seed") == 0:
                    task = "quadratic" if "quadratic" in record["targets"] else "mnist"
                    params[f"{record['method']}-{task}"] = record["params"]
        finals[protocol] = merged
    rows = []
    for text, label, rule in CLAIMS:
        row: dict = {"claim": text}
        for protocol, merged in finals.items():
            try:
                verdict, evidence = rule(merged[label])
                seeds = {m: int(merged[label][m].shape[0]) for m in ("hnn", "lstm")
                         if m in merged[label]}
            except KeyError as missing:
                verdict, evidence, seeds = MISSING, f"no cells of {missing}", {}
            row[protocol] = {"verdict": verdict, "evidence": evidence, "seeds": seeds}
        rows.append(row)
    try:
        verdict, evidence = fewer_weights(params)
    except KeyError as missing:
        verdict, evidence = MISSING, f"no cells of {missing}"
    rows.append({"claim": "the HNN needs about 100x fewer weights than the LSTM",
                 **{p: {"verdict": verdict, "evidence": evidence, "seeds": {}} for p in runs}})
    if heldout is not None:
        held = [(text, heldout_claim, a, b, "the suite scores the shipped optimizers "
                 f"({SHIPPED_PROTOCOL} protocol)") for text, a, b in HELDOUT_CLAIMS]
        held += [(text, structure_claim, a, b, "the generalization sweep runs under the "
                  f"{SHIPPED_PROTOCOL} protocol") for text, a, b in STRUCTURE_CLAIMS]
        for text, rule, a, b, why in held:
            try:
                verdict, evidence = rule(heldout, a, b)
            except (OSError, KeyError, ValueError) as missing:
                verdict, evidence = MISSING, f"no scores of {missing} in {heldout}"
            other = {"verdict": MISSING, "evidence": why, "seeds": {}}
            rows.append({"claim": text, **{
                p: {"verdict": verdict, "evidence": evidence, "seeds": {}}
                if p == SHIPPED_PROTOCOL else other for p in runs}})
    return rows


def claims_markdown(rows: Sequence[Mapping], protocols: Sequence[str]) -> str:
    """The claims as a markdown table: one row per claim that some run decides, one column
    per protocol."""
    lines = ["| the paper's claim | " + " | ".join(protocols) + " |",
             "|---|" + "---|" * len(protocols)]
    for row in rows:
        if all(row[p]["verdict"] == MISSING for p in protocols):
            continue
        cells = []
        for p in protocols:
            entry = row[p]
            seeds = ", ".join(f"{m.upper()} {n} seed{'s' if n > 1 else ''}"
                              for m, n in entry["seeds"].items())
            cells.append(f"**{entry['verdict']}**: {entry['evidence']}"
                         + (f" ({seeds})" if seeds else ""))
        lines.append(f"| {row['claim']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def parse_runs(items: Sequence[str]) -> dict[str, list[str]]:
    """``["PROTOCOL=QUAD_DIR,MNIST_DIR", ...]`` as ``{protocol: [quad_dir, mnist_dir]}``.

    Raises:
        ValueError: an item of another form.
    """
    runs = {}
    for item in items:
        protocol, sep, folders = item.partition("=")
        if not sep or not protocol or len(folders.split(",")) != 2:
            raise ValueError(f"expected PROTOCOL=QUAD_DIR,MNIST_DIR, got {item!r}")
        runs[protocol] = folders.split(",")
    return runs


def claims_table(runs: Mapping[str, Sequence[str | Path]],
                 heldout: str | Path | None = None) -> str:
    """The claims table (``claims_markdown``) of ``runs`` and a held-out bench folder (see
    ``decide``)."""
    return claims_markdown(decide(runs, heldout), list(runs))
