#!/usr/bin/env python3
"""Give back the training runs behind a shipped ensemble bundle, on a machine that has lost `work/`.

    python benchmarks/restore_members.py models/default --crops work/crops112.npz --split-run work/runs/v4 \
        --members work/runs/v4 work/runs/v6 work/runs/v7 [--member-split-from work/runs/v6]

A shipped ensemble (`edge-export ensemble`) holds its members as nested models (member_0, member_1, ...) inside
`model_fp32.keras`; their weights are the trained runs' own. This writes each member back as a run
(`model.keras` plus the `train.json` its manifest records), so that `train --init`, `ensemble` and `convert` work
on them again. A run's split is not in the bundle:
`--split-run` recomputes the first split the way `train` makes it (`make_split` on the crops file, the seed and
Hamming distance the manifest records) and compares it with the manifest's record (`export.split.report_differences`:
clusters, near-duplicate pairs, copies dropped, and every side's count per label, no_face included), so a crops
file that `prepare` no longer cuts the same way is refused instead of silently holding out other faces. Members
that trained on an `extend`ed split take it with `--member-split-from` (make that run with
`edge-export extend --run SPLIT_RUN ...` first).
"""

import argparse
import json
import sys
from pathlib import Path


def started_from(card: dict, config: dict) -> list:
    """The card's pretrained starts of the member with this config: those whose chain begins at its `--init`
    model (or, with none, whose weights are its own `--weights`)."""
    init, weights = config.get("init"), config.get("weights")
    out = []
    recs = card.get("pretrained_backbones")
    for rec in recs if isinstance(recs, list) else []:
        if not isinstance(rec, dict):
            continue
        via = rec.get("via") or []
        if (init and via and via[0] == init) or (weights and not via and rec.get("weights") == weights):
            out.append(dict(rec))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bundle", help="a bundle made by edge-export ensemble + convert")
    ap.add_argument("--crops", required=True, help="the crops file the first member's split indexes")
    ap.add_argument("--split-run", default=None, help="write the recomputed first split here (as train does)")
    ap.add_argument(
        "--members", nargs="+", required=True, help="one run directory per member, in member order ('-': skip it)"
    )
    ap.add_argument(
        "--member-split-from",
        default=None,
        help="copy this run's split into every member run (default: --split-run's for the first member only)",
    )
    a = ap.parse_args()

    from edge.errors import EX_DATAERR, EX_NOINPUT, MaskwatchError

    bundle = Path(a.bundle)
    try:
        manifest = json.loads((bundle / "manifest.json").read_text())
    except (OSError, ValueError) as e:
        raise MaskwatchError("%s: no readable manifest.json (%s)" % (bundle, e), EX_NOINPUT)
    card = manifest.get("model_card") or {}
    members_cfg = (card.get("train_config") or {}).get("ensemble_of")
    if not members_cfg:
        raise MaskwatchError(
            "%s: its model card names no ensemble members (not an ensemble bundle)" % bundle, EX_DATAERR
        )
    if len(members_cfg) != len(a.members):
        raise MaskwatchError(
            "%s holds %d members; --members names %d" % (bundle, len(members_cfg), len(a.members)), EX_DATAERR
        )

    if a.split_run:
        from export.cli import make_split
        from export.crops import load as load_crops
        from export.crops import save_split
        from export.split import report_differences

        want = card["split"]
        crops = load_crops(Path(a.crops))
        sp = make_split(crops, int(want.get("seed", 0)), int(want.get("max_hamming", 6)))
        diff = report_differences(sp["report"], want)
        if diff:
            raise MaskwatchError(
                "%s does not split as the bundle's run did (%s): prepare it again as the README says"
                % (a.crops, "; ".join(diff)),
                EX_DATAERR,
            )
        run = Path(a.split_run)
        save_split(run, sp["keep"], sp["assign"], sp["report"])
        print("%s: split recomputed, as the manifest records it %s" % (run, json.dumps(sp["report"]["counts"])))

    import keras

    from export.ensemble import EnsembleError, members_of

    try:
        restored = members_of(keras.models.load_model(str(bundle / "model_fp32.keras"), compile=False))
    except EnsembleError as e:
        raise MaskwatchError("%s: %s" % (bundle, e), EX_DATAERR)
    except (OSError, ValueError) as e:  # no model_fp32.keras, or not a Keras file
        raise MaskwatchError("%s: no readable model_fp32.keras (%s)" % (bundle, e), EX_NOINPUT)
    if len(restored) != len(members_cfg):
        raise MaskwatchError(
            "%s: model_fp32.keras holds %d members, its card %d" % (bundle, len(restored), len(members_cfg)), EX_DATAERR
        )
    for i, (out, cfg) in enumerate(zip(a.members, members_cfg)):
        if out == "-":
            continue
        sub = restored[i]
        run = Path(out)
        run.mkdir(parents=True, exist_ok=True)
        sub.save(str(run / "model.keras"))
        info = {
            "config": cfg["config"],
            "restored_from": {
                "bundle": str(bundle),
                "model_id": manifest.get("model_id"),
                "member": i,
                "run": cfg["run"],
            },
        }
        if "pretrained_backbones" in card:  # a card older than that record says nothing either way
            # where this member's weights started, as the bundle's card says (the runs along its --init chain
            # are not restored): a bundle converted from this run keeps naming a pretrained start
            info["started_from"] = started_from(card, cfg["config"])
        (run / "train.json").write_text(json.dumps(info, indent=1))
        src = (
            Path(a.member_split_from)
            if a.member_split_from
            else (Path(a.split_run) if a.split_run and i == 0 else None)
        )
        if src is not None and src.resolve() != run.resolve():
            for f in ("split.npz", "split.json"):
                (run / f).write_bytes((src / f).read_bytes())
        print("%s <- %s member_%d (was %s)" % (run, bundle, i, cfg["run"]))
    return 0


if __name__ == "__main__":
    from edge.errors import run_main

    sys.exit(run_main(main, Path(__file__).name))
