#!/usr/bin/env python3
"""Render the numbers of README.md's "Measured here" section from the results JSON in benchmarks/results/.

    python docs/gen_numbers.py            # print the block
    python docs/gen_numbers.py --write    # rewrite the block in README.md
    python docs/gen_numbers.py --check    # exit 1 if README.md's block is stale (tests/test_docs.py runs this)

Numbers are never typed by hand: each line names the results file it comes from.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

ROOT = Path(__file__).resolve().parent.parent
RES = ROOT / "benchmarks" / "results"
README = ROOT / "README.md"
BEGIN, END = "<!-- numbers:begin (docs/gen_numbers.py) -->", "<!-- numbers:end -->"


def _load(name: str) -> Optional[Dict[str, Any]]:
    p = RES / name
    return json.loads(p.read_text()) if p.exists() else None


def _f(x: Any, nd: int = 3) -> str:
    return ("%." + str(nd) + "f") % x if isinstance(x, (int, float)) else str(x)


def crops_block(doc: Dict[str, Any]) -> List[str]:
    row = doc["rows"][0]
    out = ["**Held-out real test crops** (`results/model-comparison.json`, %s split, bundle `%s`, LiteRT int8 with "
           "its operating point; per source, real sources first):" % (doc["split"], row["model_id"]), "",
           "| source | faces | macro-F1 | incorrect P / R | with_mask flagged | without recall | alert F1 |",
           "|---|---|---|---|---|---|---|"]
    for src, v in row["by_source"].items():
        pc = v["per_class"]
        out.append("| %s | %d | %s | %s / %s | %s | %s | %s |" % (
            src, v["faces"], _f(v["macro_f1"]), _f(pc["mask_weared_incorrect"]["precision"]),
            _f(pc["mask_weared_incorrect"]["recall"]),
            _f(v["with_mask_flagged"]) if v["with_mask_flagged"] is not None else "-",
            _f(pc["without_mask"]["recall"]), _f(v["alert"]["f1"])))
    old = [r for r in doc["rows"][1:]]
    for r in old:
        v = r["by_source"].get("real (all)")
        if v:
            out.append("")
            out.append("Same crops, bundle `%s`: real macro-F1 %s, incorrect recall %s, with_mask flagged %s, alert F1 %s."
                       % (r["model_id"], _f(v["macro_f1"]), _f(v["per_class"]["mask_weared_incorrect"]["recall"]),
                          _f(v["with_mask_flagged"]), _f(v["alert"]["f1"])))
    out.append("")
    out.append("int8/fp32 top-1 agreement %s; int8 file %s KB = %s of fp32 (%s KB)." % (
        _f(row["int8_fp32_agreement"], 4), _f(row["int8_kb"], 0), "%.0f %%" % (100 * row["int8_kb"] / row["fp32_kb"]),
        _f(row["fp32_kb"], 0)))
    return out


def walkers_block(doc: Dict[str, Any]) -> List[str]:
    t = doc["total"].get("gate") or next(iter(doc["total"].values()))
    ng = doc["total"].get("nogate")
    line = ("**Per person** (`results/%s`): %d real held-out faces walking across a noisy corridor in %d clips, the "
            "kiosk config: %d counted once (%.1f %%), %d duplicates, %d missed; verdict accuracy %s; alert P / R / F1 "
            "%s / %s / %s." % (doc.get("_file"), t["people"], len(doc["clips"]), t["counted_once"],
                               100 * t["counted_once_rate"], t["duplicates"], t["missed"], _f(t["verdict_accuracy"]),
                               _f(t["alert"]["precision"]), _f(t["alert"]["recall"]), _f(t["alert"]["f1"])))
    if ng:
        line += " Motion gate off: %d counted once, verdict accuracy %s (the gate %s)." % (
            ng["counted_once"], _f(ng["verdict_accuracy"]),
            "loses no one" if ng["counted_once"] == t["counted_once"] and ng["missed"] == t["missed"] else "differs")
    return [line]


def kiosk_block(doc: Dict[str, Any]) -> List[str]:
    c = doc["chosen"]
    out = ["**Scenes at kiosk range** (faces >= %d px, `results/kiosk-setting.json`): setting chosen on the val scenes: "
           "res10 confidence %s, no_face threshold %s." % (doc["min_face"], c["confidence"], c["no_face_threshold"])]
    tc = doc.get("test_chosen")
    if tc:
        a = tc["all"]
        out.append("On the test scenes: face recall %s, non-compliant P / R / F1 %s / %s / %s (%d faces), %s ms per "
                   "frame." % (_f(a["face_recall"]), _f(a["noncompliant"]["precision"]), _f(a["noncompliant"]["recall"]),
                               _f(a["noncompliant"]["f1"]), a["faces"], _f(tc["ms_per_frame_p50"], 1)))
        for k, v in tc.items():
            if k in ("all", "ms_per_frame_p50"):
                continue
            out.append("- %s: face recall %s, non-compliant F1 %s (%d faces)" % (
                k, _f(v["face_recall"]), _f(v["noncompliant"]["f1"]), v["faces"]))
    return out


def parity_block(doc: Dict[str, Any]) -> List[str]:
    out = ["**res10 on other runtimes** (`results/detector-parity.json`, %s scenes, against cv2.dnn):" % doc["split"], "",
           "| source | variant | mean IoU | faces lost / added | ms per frame |", "|---|---|---|---|---|"]
    for src, v in doc.items():
        if not isinstance(v, dict) or "variants" not in v:
            continue
        for name, r in v["variants"].items():
            out.append("| %s | %s | %s | %d / %d of %d | %s |" % (src, name, _f(r["mean_iou"], 4), r["faces_lost"],
                                                                   r["faces_added"], r["faces_ref"],
                                                                   _f(r["ms_per_frame_p50"], 1)))
    return out


def bench_block(doc: Dict[str, Any]) -> List[str]:
    out = ["**Pipeline speed** (`results/edge-bench-x86_64-2core.json`, one run; fps on a file, the daemon's own "
           "Pipeline):", "", "| clip | pipeline | fps | x seed-style | same people and verdicts as every-frame |",
           "|---|---|---|---|---|"]
    for r in doc["results"]:
        if r["kind"] != "pipeline" or r.get("skipped"):
            continue
        e = r["extra"]
        out.append("| %s | %s | %s | %s | %s |" % (e.get("clip", "?"), r["name"].split(": ", 1)[-1], _f(e.get("fps"), 1),
                                                 _f(e.get("speedup_vs_seed"), 1) if e.get("speedup_vs_seed") else "-",
                                                 {True: "yes", False: "no", None: "-"}[e.get(
                                                     "same_people_and_verdicts_as_reference")]))
    dets = [r for r in doc["results"] if r["kind"] == "detector" and not r.get("skipped")]
    if dets:
        out += ["", "res10 per runtime: " + "; ".join("%s %s ms" % (r["name"].replace("res10 ", ""), _f(r["p50_ms"], 1))
                                                       for r in dets) + "."]
    skipped = [r for r in doc["results"] if r.get("skipped") and r["kind"] == "detector"]
    if skipped:
        out.append("Not measured here: " + "; ".join("%s (%s)" % (r["name"].replace("res10 ", ""), r["skipped"][:80])
                                                      for r in skipped) + ".")
    return out


def recall_block(doc: Dict[str, Any]) -> List[str]:
    rt = doc["runtimes"]
    return ["**Detector runtimes at the kiosk setting** (`results/detector-recall.json`, %s scenes, faces >= 40 px, one "
            "300x300 pass): face recall " % doc["split"] + ", ".join(
                "%s %s (%s ms)" % (k, _f(v["face_recall"]), _f(v["ms_per_frame_p50"], 1)) for k, v in rt.items()) +
            "; non-compliant F1 " + ", ".join("%s %s" % (k, _f(v["noncompliant"]["f1"])) for k, v in rt.items()) + "."]


def mismatch_block(doc: Dict[str, Any]) -> List[str]:
    return ["**What the old crop mismatch cost** (`results/crop-mismatch.json`, %d real val crops): the old training "
            "crop (160 px, then bilinear) vs the one crop function changes %s of the verdicts; real macro-F1 %s vs %s."
            % (doc["crops"], "%.1f %%" % (100 * doc["verdicts_differ"]), _f(doc["old_training_crop"]["macro_f1"]),
               _f(doc["one_crop"]["macro_f1"]))]


def scenes_block(doc: Dict[str, Any]) -> List[str]:
    out = []
    for src, entry in (doc.get("scene_level") or {}).items():
        modes = entry.get("all_faces", {}).get("modes", {})
        if modes:
            out.append("**Crowd scenes, all faces** (`results/eval-default/metrics.json`, %s %s scenes): " % (
                src, doc.get("scene_split")) + "; ".join(
                "%s: face recall %s, non-compliant F1 %s (P %s, R %s), %s ms per frame" % (
                    m, _f(v["face_recall"]), _f(v["noncompliant"]["f1"]), _f(v["noncompliant"]["precision"]),
                    _f(v["noncompliant"]["recall"]), _f(v["ms_per_frame_p50"], 0)) for m, v in modes.items()) + ".")
    return out


def render() -> str:
    parts: List[List[str]] = []
    for name, fn in (("model-comparison.json", crops_block), ("walkers-test.json", walkers_block),
                     ("kiosk-setting.json", kiosk_block), ("detector-parity.json", parity_block),
                     ("detector-recall.json", recall_block), ("crop-mismatch.json", mismatch_block),
                     ("eval-default/metrics.json", scenes_block),
                     ("edge-bench-x86_64-2core.json", bench_block)):
        doc = _load(name)
        if doc is not None:
            doc["_file"] = name
            parts.append(fn(doc))
    return "\n\n".join("\n".join(p) for p in parts)


def splice(text: str, block: str) -> str:
    if BEGIN not in text or END not in text:
        raise SystemExit("README.md has no %s ... %s block" % (BEGIN, END))
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return head + BEGIN + "\n" + block + "\n" + END + tail


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--write", action="store_true")
    g.add_argument("--check", action="store_true")
    a = ap.parse_args()
    block = render()
    if a.write:
        README.write_text(splice(README.read_text(), block))
        return 0
    if a.check:
        if splice(README.read_text(), block) != README.read_text():
            print("README.md's measured numbers are stale: run python docs/gen_numbers.py --write", file=sys.stderr)
            return 1
        return 0
    print(block)
    return 0


if __name__ == "__main__":
    sys.exit(main())
