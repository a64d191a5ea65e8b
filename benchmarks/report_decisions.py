"""Markdown tables of bench_decisions.py results (one or more JSON files), for the README.

    python benchmarks/report_decisions.py benchmarks/results/decisions_*.json

Per dataset: for the calibrated score at each risk level, the violation frequency over the trials
(the fraction whose error rate among accepted rows exceeds r; must be consistent with <= delta) in
both resampling schemes, and the mean accepted fraction of every score at each risk level; then
the mean coverage and set size of the conformal sets.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def _name(doc: dict) -> str:
    return f"{doc['data']} (n = {doc['n_rows']}, accuracy {doc['accuracy']:.1%})"


def guarantee_table(docs: list[dict]) -> str:
    rows = ["| data | score | risk r | violations, halves | violations, bootstrap | accepted (mean) |",
            "|---|---|--:|--:|--:|--:|"]
    for doc in docs:
        score = doc["score"]
        for halves, boot in zip(doc["halves"]["risk"][score], doc["bootstrap"]["risk"][score]):
            def cell(level):
                mark = "" if level["consistent"] else " (above delta)"
                return f"{level['violations']}/{doc['halves']['trials']} = {level['violation_frequency']:.3f}{mark}"
            rows.append(f"| {_name(doc)} | {score} | {halves['risk']:g} | {cell(halves)} | {cell(boot)} | "
                        f"{halves['mean_accepted_fraction']:.1%} |")
    return "\n".join(rows)


def automation_table(docs: list[dict]) -> str:
    rows = []
    for doc in docs:
        risks = [lv["risk"] for lv in next(iter(doc["halves"]["risk"].values()))]
        rows += [f"\n{_name(doc)}: mean accepted fraction (halves) at each risk level\n",
                 "| score | " + " | ".join(f"r = {r:g}" for r in risks) + " |",
                 "|---|" + "--:|" * len(risks)]
        for score, levels in doc["halves"]["risk"].items():
            star = " (calibrated)" if score == doc["score"] else ""
            rows.append(f"| {score}{star} | " + " | ".join(f"{lv['mean_accepted_fraction']:.1%}" for lv in levels)
                        + " |")
    return "\n".join(rows)


def sets_table(docs: list[dict]) -> str:
    rows = ["| data | coverage 1 - alpha | method | mean coverage | mean set size |", "|---|--:|---|--:|--:|"]
    for doc in docs:
        for s in doc["halves"]["sets"]:
            rows.append(f"| {_name(doc)} | {s['coverage']:g} | {s['method']} | {s['mean_coverage']:.3f} | "
                        f"{s['mean_set_size']:.2f} |")
    return "\n".join(rows)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("results", nargs="+", type=Path)
    docs = [json.loads(path.read_text()) for path in p.parse_args().results]
    print(guarantee_table(docs), automation_table(docs), "", sets_table(docs), sep="\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
