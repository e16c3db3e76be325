"""Print docs/results.md's module-kind table of a neuron set: per language, how many of its
neurons sit in each module kind of the site, and the share of each kind over all languages
beside that kind's share of the site's neurons.

    .venv/bin/python scripts/module_table.py runs/linear/neurons_ap     # a NeuronSet file stem

At site ``linear`` the kinds are the block's Linear outputs (``attn.q`` ... ``mlp.down``); at
the MLP-only sites there is one kind (two at ``gate_up``).
"""

from __future__ import annotations

import sys

import lang_neurons as ln
from lang_neurons.sites import site_units


def module_table(neurons: ln.NeuronSet) -> str:
    """The markdown table: a row per language, a column per module kind, then the kinds' shares."""
    hist = neurons.unit_histogram()  # kind -> [lang, layer]
    kinds = list(hist)
    per_lang = {kind: counts.sum(1) for kind, counts in hist.items()}
    width = dict(site_units(neurons.site, neurons.model or {}))
    lines = [
        "| language | " + " | ".join(kinds) + " | all |",
        "|---" * (len(kinds) + 2) + "|",
    ]
    for i, lang in enumerate(neurons.langs):
        cells = [str(int(per_lang[k][i])) for k in kinds]
        lines.append(f"| {lang} | " + " | ".join(cells) + f" | {sum(int(per_lang[k][i]) for k in kinds)} |")
    total = sum(int(per_lang[k].sum()) for k in kinds)
    shares = [f"{int(per_lang[k].sum()) / total:.1%}" for k in kinds]
    lines.append("| share of the set | " + " | ".join(shares) + " | 100 % |")
    site_total = sum(width.values())
    lines.append("| share of the site | " + " | ".join(f"{width[k] / site_total:.1%}" for k in kinds) + " | 100 % |")
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: scripts/module_table.py RUN_DIR/neurons_<method>  (a NeuronSet file stem)")
    print(module_table(ln.NeuronSet.load(sys.argv[1])))
