"""Face-crop datasets from Pascal VOC scenes and folder-per-class image sets.

Everything becomes the same record: a face crop (RGB, square-resized, cut with
the same margin the device uses around a detector box), its label, and a
*group* naming where it came from (the scene for VOC, the file otherwise) so
the splitter can keep all crops of one scene, and near-copies, on one side.
"""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from edge.crop import photo_face
from edge.datasets_io import IMAGE_EXTS, read_image
from edge.detector import PHOTO_FACE_CONFIDENCE

log = logging.getLogger(__name__)

LABELS = ("with_mask", "without_mask", "mask_weared_incorrect", "no_face")
FACE_LABELS = LABELS[:3]
# the classifiers export.train.build_model makes from these crops (here, so the CLI lists them without TensorFlow)
ARCHS = ("mobilenetv2", "mobilenetv3small-min", "faceapi-dense", "baseline")
# the architectures `train --weights` can start from a pretrained file (`edge-export backbone` cuts one for each)
PRETRAINED_ARCHS = ("mobilenetv2", "faceapi-dense")
NO_FACE = "no_face"  # res10 detections in annotated scenes that match no face: what the rejector learns

# Folder and VOC names seen in public face-mask sets, mapped to the project's three classes.
LABEL_ALIASES = {
    "with_mask": "with_mask",
    "withmask": "with_mask",
    "mask": "with_mask",
    "masked": "with_mask",
    "con_mascarilla": "with_mask",
    "correctly_masked": "with_mask",
    "cmfd": "with_mask",
    "without_mask": "without_mask",
    "withoutmask": "without_mask",
    "no_mask": "without_mask",
    "nomask": "without_mask",
    "unmasked": "without_mask",
    "sin_mascarilla": "without_mask",
    "mask_weared_incorrect": "mask_weared_incorrect",
    "mask_worn_incorrectly": "mask_weared_incorrect",
    "incorrect_mask": "mask_weared_incorrect",
    "incorrectly_masked": "mask_weared_incorrect",
    "mascarilla_mal_puesta": "mask_weared_incorrect",
    "imfd": "mask_weared_incorrect",
    "with_incorrect_mask": "mask_weared_incorrect",
    # other public sets' spellings (Kaggle "Face Mask Detection ~20k": face_with_mask / face_no_mask /
    # face_with_mask_incorrect; MaskedFace-Net's IMFD kinds; common folder names). Ambiguous names
    # (good / bad / none, which mean different things in different sets) are left out on purpose.
    "face_with_mask": "with_mask",
    "mask_on": "with_mask",
    "masked_face": "with_mask",
    "face_no_mask": "without_mask",
    "face_without_mask": "without_mask",
    "no_face_mask": "without_mask",
    "mask_off": "without_mask",
    "unmasked_face": "without_mask",
    "face_with_mask_incorrect": "mask_weared_incorrect",
    "with_mask_incorrect": "mask_weared_incorrect",
    "mask_incorrect": "mask_weared_incorrect",
    "mask_worn_incorrect": "mask_weared_incorrect",
    "mask_weared_incorrectly": "mask_weared_incorrect",
    "incorrect": "mask_weared_incorrect",
    "incorrectly_worn": "mask_weared_incorrect",
    "improper_mask": "mask_weared_incorrect",
    "improperly_masked": "mask_weared_incorrect",
    "mask_chin": "mask_weared_incorrect",
    "mask_mouth_chin": "mask_weared_incorrect",
    "mask_nose_mouth": "mask_weared_incorrect",
}


# the same names with case, spaces, dashes and underscores ignored: WithMask, "No Mask", Mask-Worn-Incorrectly
_SQUASHED = {k.replace("_", ""): v for k, v in LABEL_ALIASES.items()}


def normalise_label(name: str) -> Optional[str]:
    """The class a VOC object or a class folder's name means, or None for a name that is not a class."""
    return _SQUASHED.get(name.strip().lower().replace("-", "").replace(" ", "").replace("_", ""))


@dataclass
class Crop:
    image: np.ndarray  # RGB uint8, size x size
    label: str
    group: str  # scene id / file: crops sharing a group never straddle a split
    source: str  # dataset name
    file: str
    box: Tuple[int, int, int, int]
    how: str  # "voc" | "detector" | "whole"


@dataclass
class Report:
    """What was read, what was skipped and why (each skipped file named in the log)."""

    read: Dict[str, int] = field(default_factory=dict)
    skipped: List[Tuple[str, str]] = field(default_factory=list)
    counts: Dict[str, Dict[str, int]] = field(default_factory=dict)

    def skip(self, path: Path, why: str) -> None:
        log.warning("skipped %s: %s", path, why)
        self.skipped.append((str(path), why))

    def add(self, crop: Crop) -> None:
        c = self.counts.setdefault(crop.source, {})
        c[crop.label] = c.get(crop.label, 0) + 1

    def as_dict(self) -> Dict:
        return {"read": self.read, "skipped": [{"file": f, "why": w} for f, w in self.skipped], "counts": self.counts}


def crop_face(
    image_bgr: np.ndarray,
    box: Tuple[int, int, int, int],
    margin: float,
    size: int,
    fit: Optional[Tuple[float, float, float, float]] = None,
) -> np.ndarray:
    """The classifier's view of a face: `edge.crop.crop_face`, the very function the device runs. `fit`: the
    box is res10's, moved by the detector-box fit first, as the device moves it (edge.crop.fit_box)."""
    from edge.crop import crop_face as _crop
    from edge.crop import fit_box

    return _crop(image_bgr, fit_box(box, fit), margin, (size, size))


def parse_voc(xml_path: Path) -> Tuple[str, List[Tuple[str, Tuple[int, int, int, int]]]]:
    """(image file name, [(raw label, box)]) from a Pascal VOC annotation. Raises ValueError if malformed."""
    try:
        root = ET.parse(str(xml_path)).getroot()
    except (ET.ParseError, OSError) as exc:
        raise ValueError("not a readable VOC XML (%s)" % exc)
    fname = (root.findtext("filename") or "").strip()
    objs = []
    for obj in root.iter("object"):
        name = (obj.findtext("name") or "").strip()
        bb = obj.find("bndbox")
        if bb is None:
            raise ValueError("object %r has no bndbox" % name)
        try:
            box = tuple(int(float(bb.findtext(k))) for k in ("xmin", "ymin", "xmax", "ymax"))
        except (TypeError, ValueError):
            raise ValueError("object %r has a non-numeric bndbox" % name)
        objs.append((name, box))
    return fname, objs


def read_scene(
    scene_dir: Path, sid: str
) -> Tuple[Path, Optional[np.ndarray], List[Tuple[str, Tuple[int, int, int, int]]]]:
    """One VOC scene of a folder (annotations/SID.xml, images/<its filename>): (image path, BGR image or None when
    it cannot be read, its annotated objects)."""
    fname, objs = parse_voc(Path(scene_dir) / "annotations" / (sid + ".xml"))
    path = Path(scene_dir) / "images" / fname
    return path, read_image(path), objs


def iter_scenes(
    scene_dirs: Sequence[Path], scene_ids: Dict[str, List[str]]
) -> Iterable[Tuple[str, str, np.ndarray, List[Tuple[str, Tuple[int, int, int, int]]]]]:
    """(folder name, scene id, image, objects) of each readable scene, folder by folder in the order given
    (`scene_ids` keyed by folder name, as scene_ids_of gives them); unreadable images are skipped."""
    for sd in scene_dirs:
        name = Path(sd).name
        for sid in scene_ids[name]:
            _, img, objs = read_scene(Path(sd), sid)
            if img is not None:
                yield name, sid, img, objs


def false_detections(
    faces,
    gt_boxes: Sequence[Tuple[int, int, int, int]],
    *,
    min_px: int = 12,
    max_iou: float = 0.1,
    max_cover: float = 0.3,
) -> List[Tuple[Tuple[int, int, int, int], float]]:
    """Detector boxes that are no annotated face: IoU < max_iou with every box and not mostly inside one
    (a box covering a part of a face is not a 'no face' example)."""
    out = []
    for f in faces:
        b = f.box
        if min(b[2] - b[0], b[3] - b[1]) < min_px:
            continue
        if not any(touches_face(b, g, max_iou, max_cover) for g in gt_boxes):
            out.append((b, f.det_score))
    return out


def touches_face(
    b: Tuple[int, int, int, int], g: Tuple[int, int, int, int], min_iou: float = 0.1, min_cover: float = 0.3
) -> bool:
    """Box `b` overlaps face `g`: IoU >= min_iou, or >= min_cover of b's area lies on it."""
    from edge.types import iou

    ix = max(0, min(b[2], g[2]) - max(b[0], g[0]))
    iy = max(0, min(b[3], g[3]) - max(b[1], g[1]))
    return iou(b, g) >= min_iou or ix * iy >= min_cover * max(1, (b[2] - b[0]) * (b[3] - b[1]))


def negative_boxes(
    faces,
    gt_boxes: Sequence[Tuple[int, int, int, int]],
    max_score: float,
    per_scene: int,
    avoid: Sequence[Tuple[int, int, int, int]] = (),
) -> List[Tuple[int, int, int, int]]:
    """A scene's no_face examples: the detector's false detections (`faces`, one pass over it) scoring below `max_score` (above it, in a
    scene whose background faces go unlabelled, a "false" detection is mostly a real face), at most
    `per_scene`, none repeating a box in `avoid` (IoU >= 0.5)."""
    from edge.types import iou

    found = [b for b, s in false_detections(faces, gt_boxes) if s < max_score and all(iou(b, o) < 0.5 for o in avoid)]
    return found[:per_scene]


def read_voc(
    root: Path,
    *,
    margin: float,
    size: int,
    source: str,
    report: Report,
    min_face_px: int = 8,
    images_dir: str = "images",
    ann_dir: str = "annotations",
    negatives=None,
    neg_max_score: float = 1.01,
    neg_per_scene: int = 4,
    progress: Callable[[Iterable], Iterable] = lambda x: x,
    box_fit: Optional[Tuple[float, float, float, float]] = None,
) -> List[Crop]:
    """Face crops from a VOC folder (`annotations/*.xml` + `images/`), grouped by scene.

    With `negatives` (a low-confidence detector), also `no_face` crops: its detections that match no
    annotated face, at most `neg_per_scene` per scene and only below `neg_max_score` (for sets whose
    background faces are often left unlabelled, a confident unmatched detection may be a real face)."""
    crops: List[Crop] = []
    xmls = sorted((root / ann_dir).glob("*.xml"))
    report.read[source] = 0
    for xml_path in progress(xmls):
        try:
            fname, objs = parse_voc(xml_path)
        except ValueError as exc:
            report.skip(xml_path, str(exc))
            continue
        img_path = root / images_dir / (fname or xml_path.stem + ".png")
        if not img_path.exists():
            alt = sorted((root / images_dir).glob(xml_path.stem + ".*"))
            img_path = alt[0] if alt else img_path
        img = read_image(img_path)
        if img is None:
            report.skip(img_path, "missing or not a decodable image")
            continue
        report.read[source] += 1
        h, w = img.shape[:2]
        for raw, box in objs:
            label = normalise_label(raw)
            if label is None:
                report.skip(xml_path, "unknown label %r" % raw)
                continue
            x1, y1, x2, y2 = max(0, box[0]), max(0, box[1]), min(w, box[2]), min(h, box[3])
            if x2 <= x1 or y2 <= y1:  # a wrong annotation, not a small face: said, not dropped in silence
                report.skip(
                    xml_path,
                    "object %r: box %s is empty, inverted or outside the %d x %d image" % (raw, list(box), w, h),
                )
                continue
            if min(x2 - x1, y2 - y1) < min_face_px:
                continue
            c = Crop(
                crop_face(img, (x1, y1, x2, y2), margin, size),
                label,
                "%s:%s" % (source, xml_path.stem),
                source,
                str(img_path),
                (x1, y1, x2, y2),
                "voc",
            )
            report.add(c)
            crops.append(c)
        if negatives is not None:
            for box in negative_boxes(negatives.detect(img), [b for _, b in objs], neg_max_score, neg_per_scene):
                c = Crop(
                    crop_face(img, box, margin, size, box_fit),
                    NO_FACE,
                    "%s:%s" % (source, xml_path.stem),
                    source,
                    str(img_path),
                    box,
                    "negative",
                )
                report.add(c)
                crops.append(c)
    return crops


def read_folders(
    root: Path,
    *,
    margin: float,
    size: int,
    source: str,
    report: Report,
    detector=None,
    det_conf: float = PHOTO_FACE_CONFIDENCE,
    progress: Callable[[Iterable], Iterable] = lambda x: x,
    box_fit: Optional[Tuple[float, float, float, float]] = None,
) -> List[Crop]:
    """Crops from `root/<class folder>/*`; the face is cut where the detector finds one.

    Many "face" sets hold whole photos (a person standing, a mannequin); cropping the
    detector's face makes them look like what the device sees. Where no face is found
    the image is taken whole (most such files are already tight crops of masked faces,
    which res10 often misses).
    """
    crops: List[Crop] = []
    report.read[source] = 0
    files: List[Tuple[Path, str]] = []
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        label = normalise_label(sub.name)
        if label is None:
            report.skip(
                sub,
                "folder name is not a class name: its images are left out (rename it to one of %s)"
                % ", ".join(LABELS[:3]),
            )
            continue
        files.extend((f, label) for f in sorted(sub.iterdir()) if f.is_file())
    for f, label in progress(files):
        if f.suffix.lower() not in IMAGE_EXTS and not f.suffix.lower().startswith(".jpg"):
            report.skip(f, "not an image file name")
            continue
        img = read_image(f)
        if img is None:
            report.skip(f, "not a decodable image")
            continue
        report.read[source] += 1
        # the one rule for a photo of one person, which `edge-maskd classify --find-face` runs too (edge.crop.photo_face)
        image, box, how = photo_face(
            img, detector.detect(img) if detector is not None else [], margin, (size, size), box_fit, det_conf
        )
        c = Crop(image, label, "%s:%s" % (source, f.name), source, str(f), box, how)
        report.add(c)
        crops.append(c)
    return crops


def stack(crops: Sequence[Crop]) -> Dict[str, np.ndarray]:
    """Arrays for an .npz cache: the crops and their metadata, aligned by index."""
    return {
        "images": np.stack([c.image for c in crops]).astype(np.uint8),
        "labels": np.array([LABELS.index(c.label) for c in crops], dtype=np.int64),
        "groups": np.array([c.group for c in crops]),
        "sources": np.array([c.source for c in crops]),
        "files": np.array([c.file for c in crops]),
        "boxes": np.array([c.box for c in crops], dtype=np.int64),
        "how": np.array([c.how for c in crops]),
    }


# Licenses of the sources in ../shared/data (see its SOURCES.md); recorded in the bundle's model card.
SOURCE_LICENSES = {
    "andrewmvd-train": "CC0-1.0 (Kaggle 'Face Mask Detection' by andrewmvd; no license file in the mirror repo)",
    "chandrikadeb7": "MIT (chandrikadeb7/Face-Mask-Detection); images gathered from Bing, Kaggle, RMFD",
    "maskedfacenet-maskon": "CC BY-NC-SA 4.0 (MaskedFace-Net on FFHQ faces): NON-COMMERCIAL, share-alike",
    "ilc2021-jolignier": (
        "NONE STATED (jolignier/face-mask-dataset-ilc-2021 has no LICENSE and its README no terms; "
        "scraped news/stock web photos whose copyright stays with the photographers): internal "
        "experiments only, check before you ship or redistribute"
    ),
}
# Sources whose photos are real (not synthetic overlays): these decide model choices.
REAL_SOURCES = ("andrewmvd-train", "ilc2021-jolignier", "chandrikadeb7")
SYNTHETIC_SOURCES = ("maskedfacenet-maskon",)
# Sets whose background faces are often unlabelled: a confident unmatched detection there is no negative.
NEG_MAX_SCORE = {"ilc2021-jolignier": 0.5}


DISCOVER_DEPTH = 3  # how far below --data a dataset folder is looked for (Kaggle's "Face Mask 12K" is 3 deep)


def set_kind(d: Path) -> Optional[str]:
    """`voc` for a folder with annotations/ + images/, `folders` for one with a class folder in it, else None."""
    if (d / "annotations").is_dir() and (d / "images").is_dir():
        return "voc"
    if any(normalise_label(s.name) for s in d.iterdir() if s.is_dir()):
        return "folders"
    return None


def discover(data_root: Path, report: Optional[Report] = None) -> List[Tuple[str, str, Path]]:
    """(kind, source name, path) for each dataset folder: `voc` has annotations/ + images/, `folders` has class dirs.

    `data_root` may be a dataset folder itself (its source is named after it), or hold dataset folders, also
    nested (`fm12k/Face Mask Dataset/Test/WithMask/`, up to DISCOVER_DEPTH levels; a nested set's source is its
    path below `data_root`, e.g. `fm12k/Face Mask Dataset/Test`). With `report`, a folder that holds no dataset
    is recorded (and logged) as skipped, not dropped in silence."""
    root = Path(data_root)
    kind = set_kind(root)
    if kind is not None:
        return [(kind, root.resolve().name, root)]
    found: List[Tuple[str, str, Path]] = []
    _discover_below(root, root, DISCOVER_DEPTH, found, report)
    return found


def _discover_below(
    root: Path, folder: Path, depth: int, found: List[Tuple[str, str, Path]], report: Optional[Report]
) -> bool:
    """Adds the sets below `folder` to `found`; True when a folder below it was reported (a Pascal VOC layout)."""
    said = False
    for d in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        kind = set_kind(d)
        if kind is not None:
            found.append((kind, d.relative_to(root).as_posix(), d))
            continue
        subs = {s.name.lower(): s.name for s in d.iterdir() if s.is_dir()}
        if "annotations" in subs and ("jpegimages" in subs or "images" in subs):  # Pascal VOC's own layout
            if report is not None:
                ann, img = subs["annotations"], subs.get("jpegimages") or subs["images"]
                why = "a VOC set laid out as %s/ + %s/, where annotations/ + images/ are read; link them: " % (ann, img)
                report.skip(d, why + "cd %s && ln -s %s annotations && ln -s %s images" % (d, ann, img))
            said = True
            continue
        before = len(found)
        below = depth > 1 and _discover_below(root, d, depth - 1, found, report)
        said = said or below
        if folder == root and len(found) == before and not below and report is not None:
            why = "no VOC set (annotations/ + images/) or class folders (%s) in it: left out" % ", ".join(LABELS[:3])
            report.skip(d, why)
    return said


def build(
    data_root: Path,
    *,
    margin: float,
    size: int,
    detector=None,
    sources: Optional[Sequence[str]] = None,
    negatives=None,
    progress: Callable[[Iterable], Iterable] = lambda x: x,
    box_fit: Optional[Tuple[float, float, float, float]] = None,
    found: Optional[Sequence[Tuple[str, str, Path]]] = None,
    report: Optional[Report] = None,
) -> Tuple[List[Crop], Report]:
    """Every source's crops. `box_fit`: detector-cut crops (folder sets, no_face negatives) are cut as the
    device cuts res10 boxes under a bundle with that fit; annotated VOC faces are cut at their box. `found` and
    `report`: the sets a caller already discovered (discover(data_root, report)), not looked for again."""
    report = report if report is not None else Report()
    if found is None:
        found = discover(data_root, report)
    crops: List[Crop] = []
    for kind, name, path in found:
        if sources and name not in sources:
            continue
        log.info("reading %s (%s)", path, kind)
        if kind == "voc":
            crops += read_voc(
                path,
                margin=margin,
                size=size,
                source=name,
                report=report,
                progress=progress,
                negatives=negatives,
                neg_max_score=NEG_MAX_SCORE.get(name, 1.01),
                box_fit=box_fit,
            )
        else:
            crops += read_folders(
                path,
                margin=margin,
                size=size,
                source=name,
                report=report,
                detector=detector,
                progress=progress,
                box_fit=box_fit,
            )
    return crops, report
