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
sys.path.insert(0, str(ROOT))
from export.metrics import wilson  # noqa: E402

RES = ROOT / "benchmarks" / "results"
README = ROOT / "README.md"
BEGIN, END = "<!-- numbers:begin (docs/gen_numbers.py) -->", "<!-- numbers:end -->"


def _load(name: str) -> Optional[Dict[str, Any]]:
    p = RES / name
    return json.loads(p.read_text()) if p.exists() else None


def _f(x: Any, nd: int = 3) -> str:
    return ("%." + str(nd) + "f") % x if isinstance(x, (int, float)) else str(x)


def crops_block(doc: Dict[str, Any], title: str = "Held-out real test crops") -> List[str]:
    row = doc["rows"][0]
    out = [
        "**%s** (`results/%s`, %s split, bundle `%s`, LiteRT int8 with its operating point; per source, real "
        "sources first):" % (title, doc.get("_file", "model-comparison.json"), doc["split"], row["model_id"]),
        "",
        "| source | faces | macro-F1 | incorrect P / R | with_mask flagged | without recall | alert F1 |",
        "|---|---|---|---|---|---|---|",
    ]
    for src, v in row["by_source"].items():
        pc = v["per_class"]
        out.append(
            "| %s | %d | %s | %s / %s | %s | %s | %s |"
            % (
                src,
                v["faces"],
                _f(v["macro_f1"]),
                _f(pc["mask_weared_incorrect"]["precision"]),
                _f(pc["mask_weared_incorrect"]["recall"]),
                _f(v["with_mask_flagged"]) if v["with_mask_flagged"] is not None else "-",
                _f(pc["without_mask"]["recall"]),
                _f(v["alert"]["f1"]),
            )
        )
    iv = row.get("real_macro_f1_interval")
    if iv:
        out.append("")
        out.append(
            "How far a split of this size can be trusted: real macro-F1 %s, 95 %% interval [%s, %s] over %d "
            "resamples of the split's near-duplicate groups (the faces of one photo move together)."
            % (_f(iv["macro_f1"]), _f(iv["lo"]), _f(iv["hi"]), iv["resamples"])
        )
    old = [r for r in doc["rows"][1:]]
    for r in old:
        v = r["by_source"].get("real (all)")
        if v:
            vs = (r.get("real_macro_f1_interval") or {}).get("vs_first")
            out.append("")
            out.append(
                "Same crops, bundle `%s`: real macro-F1 %s, incorrect recall %s, with_mask flagged %s, alert F1 %s%s."
                % (
                    r["model_id"],
                    _f(v["macro_f1"]),
                    _f(v["per_class"]["mask_weared_incorrect"]["recall"]),
                    _f(v["with_mask_flagged"]),
                    _f(v["alert"]["f1"]),
                    (
                        "; %s's gain over it %s [%s, %s], at least as good in %.0f %% of the paired resamples"
                        % (
                            row["model_id"],
                            "%+.3f" % -vs["delta"],
                            "%+.3f" % -vs["hi"],
                            "%+.3f" % -vs["lo"],
                            100 * (1 - vs["p_better"]),
                        )
                        if vs
                        else ""
                    ),
                )
            )
    out.append("")
    out.append(
        "int8/fp32 top-1 agreement %s; int8 file %s KB = %s of fp32 (%s KB)."
        % (
            _f(row["int8_fp32_agreement"], 4),
            _f(row["int8_kb"], 0),
            "%.0f %%" % (100 * row["int8_kb"] / row["fp32_kb"]),
            _f(row["fp32_kb"], 0),
        )
    )
    return out


def clean_block(doc: Dict[str, Any]) -> List[str]:
    """The license-clean variant (trained on the CC0 + MIT sources only) on the same held-out crops, beside the
    shipped bundle (compare_bundles.py with the clean bundle first)."""
    return crops_block(doc, "License-clean variant, the same held-out crops")


def clean_kiosk_block(doc: Dict[str, Any]) -> List[str]:
    return kiosk_block(doc, "License-clean variant, scenes at kiosk range")


def clean_walkers_block(doc: Dict[str, Any]) -> List[str]:
    over = " ".join("%s=%s" % kv for kv in sorted((doc.get("overrides") or {}).items()))
    return walkers_block(
        doc,
        "License-clean variant, per person",
        "the kiosk config with its own setting (%s)" % over if over else "the kiosk config",
    )


def walkers_block(doc: Dict[str, Any], title: str = "Per person", config: str = "the kiosk config") -> List[str]:
    t = doc["total"].get("gate") or next(iter(doc["total"].values()))
    ng = doc["total"].get("nogate")
    decided = sum(v["counted"] for v in t["per_class"].values())
    acc_ci = wilson(sum(v["right"] for v in t["per_class"].values()), decided)
    line = (
        "**%s** (`results/%s`): %d real held-out faces walking across a noisy corridor in %d clips, %s: "
        "%d counted once (%.1f %%), %d duplicate%s, %d missed; verdict accuracy %s (95 %% interval "
        "%s-%s over %d people decided); alert P / R / F1 %s / %s / %s."
        % (
            title,
            doc.get("_file"),
            t["people"],
            len(doc["clips"]),
            config,
            t["counted_once"],
            100 * t["counted_once_rate"],
            t["duplicates"],
            "" if t["duplicates"] == 1 else "s",
            t["missed"],
            _f(t["verdict_accuracy"]),
            _f(acc_ci[0]),
            _f(acc_ci[1]),
            decided,
            _f(t["alert"]["precision"]),
            _f(t["alert"]["recall"]),
            _f(t["alert"]["f1"]),
        )
    )
    pp = doc.get("person_point")
    if pp and pp["alert_threshold"] is None:  # walkers.py records it since session 35; an argmax bundle
        line += " A person is decided by the argmax of their mean."
    elif pp:
        line += " A person is flagged at mean P(alert) >= %g (%s) and called incorrectly worn at weight %g (%s)." % (
            pp["alert_threshold"],
            "the bundle's" if pp["alert_threshold_from"] == "bundle" else "tracker.alert_threshold",
            pp["incorrect_weight"],
            "the bundle's" if pp["incorrect_weight_from"] == "bundle" else "tracker.incorrect_weight",
        )
    if ng:
        line += " Motion gate off: %d counted once, verdict accuracy %s (the gate %s)." % (
            ng["counted_once"],
            _f(ng["verdict_accuracy"]),
            "loses no one" if ng["counted_once"] == t["counted_once"] and ng["missed"] == t["missed"] else "differs",
        )
    return [line]


def walker_vs_crop_block(doc: Dict[str, Any]) -> List[str]:
    """Whose error a wrong per-person verdict is (benchmarks/walker_vs_crop.py)."""
    t = doc["total"]
    wrong = t["counted"] - t["walker_right"]
    return [
        "**Whose errors** (`results/%s`): of the %d visitors counted, the daemon called %d right; the classifier, "
        "on the same faces at their annotated boxes in their own photos, calls %d right. Of the %d wrong "
        "verdicts, %d are the classifier's (its crop is called wrong too) and %d the pipeline's (crop right, visit "
        "wrong); the pipeline put right %d the crop had wrong. A perfect tracker and detector would give %s here."
        % (
            doc.get("_file"),
            t["counted"],
            t["walker_right"],
            t["crop_right"],
            wrong,
            t["classifier_errors"],
            t["pipeline_errors"],
            t["pipeline_fixes"],
            _f(t["crop_right"] / float(max(1, t["counted"]))),
        )
    ]


def kiosk_block(doc: Dict[str, Any], title: str = "Scenes at kiosk range") -> List[str]:
    c = doc["chosen"]
    on = doc.get("chosen_on")
    if c.get("given"):  # kiosk_setting.py --at: the config's setting measured as it is (a refit's val trained it)
        a = doc["test"]["all"]  # the sweep's own settings (min face, matching rule) are kept beside its grid
        head = (
            "**%s** (faces >= %d px, `results/%s`): the kiosk config's setting, given (`--at`), not swept for this "
            "bundle: res10 confidence %s, no_face threshold %s, detector "
            "min_face_px %s%s. A detection matches an annotated face by %s."
            % (
                title,
                doc["min_face"],
                doc.get("_file", "kiosk-setting.json"),
                c["confidence"],
                c["no_face_threshold"],
                a.get("detector_min_face_px", doc["min_face"]),
                ", with the whole-frame pass (its boxes from %s px)" % a["whole_pass_min_px"]
                if a.get("whole_pass")
                else "",
                a.get("matching", "IoU >= 0.4"),
            )
        )
        pt = doc.get("paired_test")
        if pt:
            head += " Against %s at the same setting%s, paired by scene: %+.3f [%+.3f, %+.3f]." % (
                pt["base"],
                " without the whole-frame pass" if a.get("whole_pass") else "",
                pt["delta"],
                pt["lo"],
                pt["hi"],
            )
        return [head] + kiosk_test_lines(doc)
    out = [
        "**%s** (faces >= %d px, `results/%s`): setting chosen on the val scenes%s: "
        "res10 confidence %s, no_face threshold %s, detector min_face_px %s%s (the best non-compliant F1 at face "
        "recall >= %s on val). A detection matches an annotated face by %s."
        % (
            title,
            doc["min_face"],
            doc.get("_file", "kiosk-setting.json"),
            " of %s" % ", ".join(on) if on and len(on) < len(doc["val"]["per_source"]) else "",
            c["confidence"],
            c["no_face_threshold"],
            doc["val"]["all"].get("detector_min_face_px", doc["min_face"]),
            ", mirrored pass" if doc["val"]["all"].get("flip") else "",
            doc.get("min_recall", 0.95),
            doc["val"]["all"].get("matching", "IoU >= 0.4"),
        )
    ]
    return out + kiosk_test_lines(doc)


def allfaces_block(doc: Dict[str, Any]) -> List[str]:
    """Must-show 3's all-faces part (kiosk_setting.py --min-face 0, one detector mode a file): the setting chosen on
    val with the bundle named there (choices-val/), given to the shipped bundle on test (`--given-by`)."""
    a = doc["test"]["all"]
    mode = a["mode"] + (" %s" % " + ".join(str(t) for t in a["tile_sizes"]) if a.get("tile_sizes") else "")
    c = doc["chosen"]
    chose = doc.get("chosen_by") or {}
    head = (
        "**Held-out scenes, all faces, %s** (`results/%s`, every annotated face, detector boxes down to %s px): "
        "res10 confidence %s, no_face threshold %s, chosen on the val scenes with `%s` (val non-compliant F1 %s), "
        "given to the shipped bundle on test. A detection matches an annotated face by %s."
        % (
            mode,
            doc["_file"],
            a.get("detector_min_face_px"),
            c["confidence"],
            c["no_face_threshold"],
            chose.get("model_id", "?"),
            _f(chose["val"]["noncompliant"]["f1"]) if chose.get("val") else "?",
            a.get("matching", "IoU >= 0.4"),
        )
    )
    return [head] + kiosk_test_lines(doc)


def kiosk_test_lines(doc: Dict[str, Any]) -> List[str]:
    out: List[str] = []
    tc = doc.get("test_chosen")
    if tc:
        a = tc["all"]
        ci = tc.get("f1_interval_95")
        st = tc.get("setting_time")
        out.append(
            "On the test scenes: face recall %s, non-compliant P / R / F1 %s / %s / %s%s (%d tp / %d fp / %d fn, %d "
            "faces), %s."
            % (
                _f(a["face_recall"]),
                _f(a["noncompliant"]["precision"]),
                _f(a["noncompliant"]["recall"]),
                _f(a["noncompliant"]["f1"]),
                " [%s, %s] over scene resamples" % (_f(ci["lo"]), _f(ci["hi"])) if ci else "",
                a["noncompliant"]["tp"],
                a["noncompliant"]["fp"],
                a["noncompliant"]["fn"],
                a["faces"],
                "%s ms per frame at this setting (p50%s, res10 and the classifier on the boxes it keeps, %s)"
                % (
                    _f(st["ms_per_frame_p50"], 1),
                    "; p90 %s ms" % _f(st["ms_per_frame_p90"], 1) if st.get("ms_per_frame_p90") is not None else "",
                    st["backend"],
                )
                if st
                else "%s ms per frame" % _f(tc["ms_per_frame_p50"], 1),
            )
        )
        for k, v in tc.items():
            if k == "all" or not isinstance(v, dict) or "noncompliant" not in v:
                continue
            out.append(
                "- %s: face recall %s, non-compliant F1 %s (%d faces)"
                % (k, _f(v["face_recall"]), _f(v["noncompliant"]["f1"]), v["faces"])
            )
    return out


def parity_block(doc: Dict[str, Any]) -> List[str]:
    out = [
        "**res10 on other runtimes** (`results/detector-parity.json`, %s scenes, against cv2.dnn):" % doc["split"],
        "",
        "| source | variant | mean IoU | faces lost / added | ms per frame |",
        "|---|---|---|---|---|",
    ]
    for src, v in doc.items():
        if not isinstance(v, dict) or "variants" not in v:
            continue
        for name, r in v["variants"].items():
            out.append(
                "| %s | %s | %s | %d / %d of %d | %s |"
                % (
                    src,
                    name,
                    _f(r["mean_iou"], 4),
                    r["faces_lost"],
                    r["faces_added"],
                    r["faces_ref"],
                    _f(r["ms_per_frame_p50"], 1),
                )
            )
    return out


def bench_block(doc: Dict[str, Any]) -> List[str]:
    out = [
        "**Pipeline speed** (`results/edge-bench-x86_64-2core.json`, one run; fps on a file, the daemon's own "
        "Pipeline with the config's default detector, one 300x300 res10 pass a frame; the kiosk config's native "
        "640x480 pass and whole-frame pass cost more: res10 per runtime below, and `results/kiosk-setting.json`):",
        "",
        "| clip | pipeline | fps | x seed-style | same people and verdicts as every-frame |",
        "|---|---|---|---|---|",
    ]
    for r in doc["results"]:
        if r["kind"] != "pipeline" or r.get("skipped"):
            continue
        e = r["extra"]
        out.append(
            "| %s | %s | %s | %s | %s |"
            % (
                e.get("clip", "?"),
                r["name"].split(": ", 1)[-1],
                _f(e.get("fps"), 1),
                _f(e.get("speedup_vs_seed"), 1) if e.get("speedup_vs_seed") else "-",
                {True: "yes", False: "no", None: "-"}[e.get("same_people_and_verdicts_as_reference")],
            )
        )
    dets = [r for r in doc["results"] if r["kind"] == "detector" and not r.get("skipped")]
    if dets:
        out += [
            "",
            "res10 per runtime: "
            + "; ".join("%s %s ms" % (r["name"].replace("res10 ", ""), _f(r["p50_ms"], 1)) for r in dets)
            + ".",
        ]
    skipped = [r for r in doc["results"] if r.get("skipped") and r["kind"] == "detector"]
    if skipped:
        out.append(
            "Not measured here: "
            + "; ".join("%s (%s)" % (r["name"].replace("res10 ", ""), r["skipped"][:80]) for r in skipped)
            + "."
        )
    return out


def recall_block(doc: Dict[str, Any]) -> List[str]:
    rt = doc["runtimes"]
    return [
        "**Detector runtimes at the kiosk setting** (`results/detector-recall.json`, %s scenes, faces >= 40 px, one "
        "300x300 pass): face recall "
        % doc["split"]
        + ", ".join("%s %s (%s ms)" % (k, _f(v["face_recall"]), _f(v["ms_per_frame_p50"], 1)) for k, v in rt.items())
        + "; non-compliant F1 "
        + ", ".join("%s %s" % (k, _f(v["noncompliant"]["f1"])) for k, v in rt.items())
        + "."
    ]


def mismatch_block(doc: Dict[str, Any]) -> List[str]:
    return [
        "**What the old crop mismatch cost** (`results/crop-mismatch.json`, %d real val crops): the old training "
        "crop (160 px, then bilinear) vs the one crop function changes %s of the verdicts; real macro-F1 %s vs %s."
        % (
            doc["crops"],
            "%.1f %%" % (100 * doc["verdicts_differ"]),
            _f(doc["old_training_crop"]["macro_f1"]),
            _f(doc["one_crop"]["macro_f1"]),
        )
    ]


def grey_block(doc: Dict[str, Any]) -> List[str]:
    """The shipped bundle on real val crops turned grey, beside the same crops in colour (same split, same run)."""
    grey = doc["rows"][0]["by_source"]["real (all)"]
    colour_doc = _load("choices-val/crops-ens3-vs-v3.json") or {}
    colour = next(
        (
            r["by_source"]["real (all)"]
            for r in colour_doc.get("rows", [])
            if r["model_id"] == doc["rows"][0]["model_id"]
        ),
        None,
    )
    pc = grey["per_class"]
    line = (
        "**A grey camera** (`results/%s`, %s split, bundle `%s`, %d real faces turned grey as a monochrome or "
        "IR-night camera gives them): real macro-F1 %s%s; %s of the faces rejected as no_face; recall with_mask %s, "
        "without_mask %s, incorrectly worn %s; alert recall %s."
        % (
            doc["_file"],
            doc["split"],
            doc["rows"][0]["model_id"],
            grey["faces"],
            _f(grey["macro_f1"]),
            " (in colour %s)" % _f(colour["macro_f1"]) if colour else "",
            "%.1f %%" % (100 * grey["faces_rejected"]),
            _f(pc["with_mask"]["recall"]),
            _f(pc["without_mask"]["recall"]),
            _f(pc["mask_weared_incorrect"]["recall"]),
            _f(grey["alert"]["recall"]),
        )
    )
    return [line]


def colour_check_block(doc: Dict[str, Any]) -> List[str]:
    """Where the daemon's grey-camera warning fires: real photos and their grey copies (benchmarks/colour_check.py)."""
    n = doc["photos"]

    def called(k: str) -> str:
        return "%d of %d" % (doc[k]["called_grey"], n)

    return [
        "**Telling a grey camera** (`results/%s`, %d real scene photos, the daemon's threshold %s): as published, "
        "%s are taken for grey (the data's black-and-white photos: looked at; the lowest photo above the threshold "
        "scores %s); grey copies are taken for grey %s through JPEG, %s through mp4v, and %s with a tint growing "
        "with brightness (5 %% more blue: not told)."
        % (
            doc["_file"],
            n,
            _f(doc["threshold"], 1),
            called("as_published"),
            _f(doc["lowest_above_threshold"], 1),
            called("grey_jpeg"),
            called("grey_mp4v"),
            called("grey_tinted"),
        )
    ] + (
        [
            "",
            "**Telling a dark camera** (same photos): the daemon says the camera sees almost nothing when the 95th "
            "percentile of a frame's luma is at most %s of 255; %d of %d real photos are that dark, the darkest "
            "(night crowds with annotated faces) at %s."
            % (
                _f(doc["dark"]["threshold"], 0),
                doc["dark"]["called_dark"],
                n,
                _f(doc["dark"]["darkest_photos"][0]["light"], 0),
            ),
        ]
        if "dark" in doc
        else []
    )


def box_mismatch_block(doc: Dict[str, Any]) -> List[str]:
    fit = doc.get("fitted_detector_box")
    line = (
        "**What cropping res10's box costs** (`results/%s`, bundle `%s`, %d annotated real %s faces res10 finds at "
        "confidence %s): macro-F1 %s on the annotated box, %s on res10's raw box"
        % (
            doc["_file"],
            doc["model_id"],
            doc["found"],
            doc["split"],
            doc["confidence"],
            _f(doc["annotation_box"]["macro_f1"]),
            _f(doc["detector_box"]["macro_f1"]),
        )
    )
    if fit:
        line += ", %s on res10's box moved by the box fit (left, top, right, bottom %s)" % (
            _f(fit["macro_f1"]),
            ", ".join("%+.3f" % v for v in doc["box_fit"]),
        )
    return [line + "."]


def _noncompliant_faces(nc: Dict[str, Any]) -> int:
    return int(nc["tp"]) + int(nc["fn"])


def scenes_block(doc: Dict[str, Any]) -> List[str]:
    out = []
    for src, entry in (doc.get("scene_level") or {}).items():
        modes = entry.get("all_faces", {}).get("modes", {})
        if modes:
            out.append(
                "**Crowd scenes alone, all faces** (`results/eval-default/metrics.json`, %s %s scenes, %d "
                "non-compliant faces: one face moves F1 by ~0.03; res10 at confidence %s, the bundle's own no_face "
                "threshold; the all-faces measure of must-show 3 is the one above, on both scene sources): "
                % (
                    src,
                    doc.get("scene_split"),
                    _noncompliant_faces(next(iter(modes.values()))["noncompliant"]),
                    next(iter(modes.values()))["detector"]["confidence"],
                )
                + "; ".join(
                    "%s: face recall %s, non-compliant F1 %s (P %s, R %s), %s ms per frame"
                    % (
                        m,
                        _f(v["face_recall"]),
                        _f(v["noncompliant"]["f1"]),
                        _f(v["noncompliant"]["precision"]),
                        _f(v["noncompliant"]["recall"]),
                        _f(v["ms_per_frame_p50"], 0),
                    )
                    for m, v in modes.items()
                )
                + "."
            )
    return out


def render() -> str:
    parts: List[List[str]] = []
    for name, fn in (
        ("model-comparison.json", crops_block),
        ("walkers-test.json", walkers_block),
        ("walker-vs-crop-test.json", walker_vs_crop_block),
        ("kiosk-setting.json", kiosk_block),
        ("allfaces-auto-d12.json", allfaces_block),
        ("allfaces-auto.json", allfaces_block),
        ("allfaces-native.json", allfaces_block),
        ("allfaces-tiles.json", allfaces_block),
        ("clean-variant.json", clean_block),
        ("clean-variant-walkers-test.json", clean_walkers_block),
        ("clean-variant-kiosk.json", clean_kiosk_block),
        ("detector-parity.json", parity_block),
        ("detector-recall.json", recall_block),
        ("crop-mismatch.json", mismatch_block),
        ("box-mismatch-val.json", box_mismatch_block),
        ("choices-val/crops-ens3-grey-val.json", grey_block),
        ("colour-check.json", colour_check_block),
        ("eval-default/metrics.json", scenes_block),
        ("edge-bench-x86_64-2core.json", bench_block),
    ):
        doc = _load(name)
        if doc is not None:
            doc["_file"] = name
            parts.append(fn(doc))
    return "\n\n".join("\n".join(p) for p in parts)


# -- benchmarks/README.md: named blocks <!-- gen:NAME --> ... <!-- /gen:NAME --> ---------------------------------
BENCH_README = ROOT / "benchmarks" / "README.md"


def _machine(doc: Dict[str, Any]) -> str:
    m = doc.get("machine") or {}
    libs = m.get("libraries") or {}
    extra = ", ".join("%s %s" % kv for kv in sorted(libs.items())) or ", ".join(
        "%s %s" % (k, m[k]) for k in ("os", "mosquitto", "paho_mqtt") if m.get(k)
    )
    if m.get("loadavg_before"):
        extra += "; load average %s before, %s after" % (m["loadavg_before"][0], (m.get("loadavg_after") or ["?"])[0])
    return "%s, %s cores, %s, Python %s; %s" % (
        m.get("cpu") or m.get("cpu_model", "?"),
        m.get("cores", "?"),
        m.get("arch", "?"),
        m.get("python", "?"),
        extra,
    )


def g_edgebench(doc: Dict[str, Any]) -> List[str]:
    res = doc["results"]
    out = [
        "One run (`%s`), bundle%s %s; %s."
        % (
            doc.get("command", "?")[:90] + ("..." if len(doc.get("command", "")) > 90 else ""),
            "s" if len(doc["bundles"]) > 1 else "",
            ", ".join("`%s`" % b["model_id"] for b in doc["bundles"]),
            _machine(doc),
        ),
        "",
        "| classifier | batch 1 p50 ms | p99 | batch 8 p50 (per image) |",
        "|---|---|---|---|",
    ]
    cls = [r for r in res if r["kind"] == "classifier" and not r.get("skipped")]
    for name in dict.fromkeys(r["name"] for r in cls):
        b1 = next((r for r in cls if r["name"] == name and r["batch"] == 1), None)
        b8 = next((r for r in cls if r["name"] == name and r["batch"] == 8), None)
        out.append(
            "| %s | %s | %s | %s |"
            % (
                name,
                _f(b1["p50_ms"]) if b1 else "-",
                _f(b1["p99_ms"], 2) if b1 else "-",
                "%s (%s)" % (_f(b8["p50_ms"], 2), _f(b8["per_image_ms"])) if b8 else "-",
            )
        )
    out += ["", "| detector | p50 ms | p99 |", "|---|---|---|"]
    for r in res:
        if r["kind"] == "detector" and not r.get("skipped"):
            out.append("| %s | %s | %s |" % (r["name"], _f(r["p50_ms"], 1), _f(r["p99_ms"], 1)))
    pairs = doc.get("int8_vs_fp32") or []
    if pairs:
        out += [
            "",
            "Paired int8 / fp32 rounds of the shipped model: "
            + "; ".join(
                "batch %d x%s (IQR %s-%s, int8 faster in %d of %d rounds)"
                % (
                    q["batch"],
                    _f(q["ratio"], 2),
                    _f(q["ratio_p25"], 2),
                    _f(q["ratio_p75"], 2),
                    q["rounds_faster"],
                    q["rounds"],
                )
                for q in pairs
            )
            + ".",
        ]
    rec = doc.get("recommendation") or {}
    if rec.get("classifier.variant"):
        out.append(
            "Recommendation for this box: `classifier.variant: %s`, `classifier.threads: %s` (%s)."
            % (rec["classifier.variant"], rec.get("classifier.threads"), rec.get("why", ""))
        )
        if rec.get("tied_with"):
            out[-1] += (
                " Tied with it (p50 within %d %%; a tie goes to the bundle's default variant, else the lower p90): %s."
                % (
                    round(100 * rec.get("tie_margin", 0.05)),
                    ", ".join(
                        "`%s` %s ms (p90 %s)" % (t["classifier.variant"], _f(t["p50_ms"]), _f(t["p90_ms"]))
                        for t in rec["tied_with"]
                    ),
                )
            )
    skipped = [r for r in res if r.get("skipped")]
    if skipped:
        out += [
            "",
            "Skipped here, each with its reason in the JSON: "
            + "; ".join("%s (%s)" % (r["name"], r["skipped"][:70]) for r in skipped)
            + ".",
        ]
    return out


def g_int8rounds(doc: Dict[str, Any]) -> List[str]:
    out = [
        "`%s`; %s rounds of %s s blocks; %s."
        % (doc.get("command", "?"), doc.get("rounds"), doc.get("block_seconds"), _machine(doc)),
        "",
        "| MobileNetV2 | threads | batch | fp32 ms | int8 ms | int8/fp32 (IQR) | int8 faster in rounds | "
        "per-channel/fp32 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in doc["rows"]:
        v = r["variants"]
        pt, pc = v["int8 per-tensor"], v["int8 per-channel"]
        out.append(
            "| %.2f@%d | %d | %d | %s | %s | %s (%s-%s) | %d/%d | %s |"
            % (
                r["alpha"],
                r["input"],
                r["threads"],
                r["batch"],
                _f(v["fp32"]["p50_ms"]),
                _f(pt["p50_ms"]),
                _f(pt["ratio_to_fp32"], 2),
                _f(pt["ratio_p25"], 2),
                _f(pt["ratio_p75"], 2),
                pt["rounds_faster_than_fp32"],
                doc.get("rounds", 0),
                _f(pc["ratio_to_fp32"], 2),
            )
        )
    return out


def g_pipeline(doc: Dict[str, Any]) -> List[str]:
    return bench_block(doc)


def g_broker(doc: Dict[str, Any]) -> List[str]:
    r = doc["results"]
    lat, cpu = r["latency_ms"], r["cpu_pct_of_one_core_while_publishing"]
    return [
        "`%s` (%s; %s)" % (doc.get("command", "?"), doc.get("date", "?"), _machine(doc)),
        "",
        "| | |",
        "|---|---|",
        "| events sent / acknowledged / received (unique) | %d / %d / %d, %d missing, %d duplicates |"
        % (
            r["events_sent"],
            r["events_acked_by_broker"],
            r["events_received_unique"],
            r["events_missing"],
            r["duplicates_seen"],
        ),
        "| throughput | %s msgs/s sent, %s received |"
        % (_f(r["send_rate_msgs_s"], 0), _f(r["receive_rate_msgs_s"], 0)),
        "| end-to-end latency p50 / p90 / p99 / max | %s / %s / %s / %s ms |"
        % (_f(lat["p50"], 1), _f(lat["p90"], 1), _f(lat["p99"], 1), _f(lat["max"], 0)),
        "| CPU while publishing (%% of one core) | %s |"
        % ", ".join("%s %s %%" % (k, _f(v, 0)) for k, v in cpu.items()),
        "| TLS connect of all kiosks | %s s |" % _f(r["setup"]["tls_connect_all_s"], 1),
    ]


def g_soak(doc: Dict[str, Any]) -> List[str]:
    return [
        "`%s`: %d frames, %d events, %s s; RSS %s MB at the start, %s MB at the end, %s MB at most; slope after "
        "warm-up **%s MB per 1000 frames**."
        % (
            doc["command"],
            doc["frames"],
            doc["events"],
            _f(doc["seconds"], 0),
            _f(doc["rss_mb_start"], 1),
            _f(doc["rss_mb_end"], 1),
            _f(doc["rss_mb_max"], 1),
            _f(doc["rss_slope_mb_per_1000_frames_after_warmup"], 3),
        )
    ]


def g_soak_events(doc: Dict[str, Any]) -> List[str]:
    return [
        "`%s`: %d events with snapshots (%d received by a subscriber), %d frames, %s s; Pipeline keeps %d "
        "decisions; RSS %s MB at the start, %s MB at the end, %s MB at most; slope after warm-up **%s MB per "
        "1000 events**."
        % (
            doc["command"],
            doc["events"],
            doc["events_received_by_subscriber"],
            doc["frames"],
            _f(doc["seconds"], 0),
            doc["decisions_kept"],
            _f(doc["rss_mb_start"], 1),
            _f(doc["rss_mb_end"], 1),
            _f(doc["rss_mb_max"], 1),
            _f(doc["rss_slope_mb_per_1000_events_after_warmup"], 3),
        )
    ]


def g_scenes(doc: Dict[str, Any]) -> List[str]:
    out = [
        "Bundle `%s`, %s crops: macro-F1 %s (%d crops)."
        % (doc.get("model"), doc.get("split"), _f(doc["macro_f1"]), doc.get("n", 0))
    ]
    for src, entry in (doc.get("scene_level") or {}).items():
        for part, res in entry.items():
            out += [
                "",
                "%s scenes (%s split), %s:" % (src, doc.get("scene_split"), part.replace("_", " ")),
                "",
                "| detector setting | face recall | non-compliant P / R / F1 | of ceiling | ms/frame p50 |",
                "|---|---|---|---|---|",
            ]
            for m, v in res["modes"].items():
                nc = v["noncompliant"]
                out.append(
                    "| %s | %s | %s / %s / %s | %s | %s |"
                    % (
                        m,
                        _f(v["face_recall"]),
                        _f(nc["precision"]),
                        _f(nc["recall"]),
                        _f(nc["f1"]),
                        _f(v.get("fraction_of_ceiling"), 2),
                        _f(v["ms_per_frame_p50"], 0),
                    )
                )
    return out


BENCH_BLOCKS = {
    "edge-bench": ("edge-bench-x86_64-2core.json", g_edgebench),
    "pipeline": ("edge-bench-x86_64-2core.json", g_pipeline),
    "int8-rounds": ("int8-vs-fp32-x86_64-2core.json", g_int8rounds),
    "broker-load": ("broker_load-x86_64-2core.json", g_broker),
    "soak": ("soak-x86_64-2core.json", g_soak),
    "soak-events": ("soak-events-x86_64-2core.json", g_soak_events),
    "scenes": ("eval-default/metrics.json", g_scenes),
}


def render_bench(text: str) -> str:
    for name, (fname, fn) in BENCH_BLOCKS.items():
        begin, end = "<!-- gen:%s (docs/gen_numbers.py, results/%s) -->" % (name, fname), "<!-- /gen:%s -->" % name
        if begin not in text:
            continue
        doc = _load(fname)
        block = "\n".join(fn(doc)) if doc is not None else "(results/%s is not there yet)" % fname
        head, rest = text.split(begin, 1)
        _, tail = rest.split(end, 1)
        text = head + begin + "\n" + block + "\n" + end + tail
    return text


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
    bench_now = BENCH_README.read_text()
    if a.write:
        README.write_text(splice(README.read_text(), block))
        BENCH_README.write_text(render_bench(bench_now))
        return 0
    if a.check:
        stale = [
            p.name
            for p, ok in (
                (README, splice(README.read_text(), block) == README.read_text()),
                (BENCH_README, render_bench(bench_now) == bench_now),
            )
            if not ok
        ]
        if stale:
            print(
                "measured numbers are stale in %s: run python docs/gen_numbers.py --write" % ", ".join(stale),
                file=sys.stderr,
            )
            return 1
        return 0
    print(block)
    return 0


if __name__ == "__main__":
    sys.exit(main())
