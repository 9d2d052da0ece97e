"""Property-based fuzzing of the config loader (hypothesis): whatever YAML arrives, load_config either returns a
config the daemon can use or raises one ConfigError; never another exception, never a traceback."""

from __future__ import annotations

import math
import time

import pytest
import yaml

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from edge.config import NAME_RE, SCHEMA, Config, Key, load_config, to_dict  # noqa: E402
from edge.errors import ConfigError  # noqa: E402


def _keys(sch, path=()):
    for k, v in sch.items():
        if isinstance(v, dict):
            yield path + (k,), None
            yield from _keys(v, path + (k,))
        else:
            yield path + (k,), v


SECTIONS = {p: v for p, v in _keys(SCHEMA)}
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.sampled_from(["", "lobby", "a/b", "$SYS", "#", "+", "ü", "x" * 200, "0", "1e9", "native", "tiles", "5"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12,
)


@st.composite
def documents(draw):
    """A config-shaped mapping: real keys (right or wrong values), some unknown keys, sections replaced by junk."""
    doc: dict = {}
    for _ in range(draw(st.integers(0, 12))):
        path, spec = draw(st.sampled_from(sorted(SECTIONS.items(), key=lambda kv: kv[0])))
        node = doc
        for part in path[:-1]:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        if spec is None:
            node[path[-1]] = draw(st.one_of(st.dictionaries(st.text(max_size=6), values, max_size=3), values))
        elif draw(st.booleans()) and spec.default is not None:
            node[path[-1]] = spec.default
        else:
            node[path[-1]] = draw(values)
    if draw(st.booleans()):
        doc[draw(st.text(max_size=10))] = draw(values)
    return doc


def usable(cfg: Config) -> None:
    """What the daemon needs of an accepted config: every value within its key's rules, names that are topic
    levels, and the stage options built from it."""
    from edge.detector import DetectorOptions
    from edge.tracker import TrackerOptions

    def walk(d, sch, path=""):
        for k, spec in sch.items():
            v = d[k]
            if isinstance(spec, dict):
                walk(v, spec, path + k + ".")
            else:
                assert isinstance(spec, Key)
                assert spec.check(list(v) if isinstance(v, tuple) else v) is None, (path + k, v)
                if isinstance(v, float):
                    assert math.isfinite(v), (path + k, v)

    walk(to_dict(cfg), SCHEMA)
    assert NAME_RE.match(cfg.site) and (cfg.device is None or NAME_RE.match(cfg.device))
    assert cfg.source.url is not None
    DetectorOptions.from_config(cfg.detector)
    TrackerOptions.from_config(cfg.tracker, cfg.detector.min_face_px)


def load_text(tmp_path, text: str):
    p = tmp_path / "fuzz.yaml"
    p.write_text(text, encoding="utf-8")
    try:
        cfg = load_config(p)
    except ConfigError as exc:
        assert str(exc) and "\n" not in str(exc).strip() or len(str(exc)) < 100000
        return None
    usable(cfg)
    return cfg


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(documents())
def test_random_documents(tmp_path, doc):
    load_text(tmp_path, yaml.safe_dump(doc, allow_unicode=True))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(max_size=300))
def test_random_text(tmp_path, text):
    load_text(tmp_path, text)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(documents(), st.integers(1, 3))
def test_duplicate_keys_and_deep_nesting(tmp_path, doc, depth):
    text = yaml.safe_dump(doc) + "source: {url: a.mp4}\nsource: {url: b.mp4}\n"
    assert load_text(tmp_path, text) is None  # a duplicate key is an error, never "last one wins"
    deep = "source: {url: a.mp4}\ndetector:\n  roi: " + "[" * (200 * depth) + "]" * (200 * depth) + "\n"
    load_text(tmp_path, deep)


def test_an_alias_bomb_is_refused_quickly(tmp_path):
    """The YAML "billion laughs": nine levels of aliases, 10^9 strings if expanded."""
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 10):
        lines.append("a%d: &a%d [%s]" % (i, i, ",".join(["*a%d" % (i - 1)] * 10)))
    lines.append("source: {url: *a9}")
    t = time.monotonic()
    assert load_text(tmp_path, "\n".join(lines) + "\n") is None
    assert time.monotonic() - t < 5


def test_huge_numbers_and_odd_types_are_refused(tmp_path):
    for text in (
        "source: {url: a.mp4}\ndetector: {confidence: .nan}\n",
        "source: {url: a.mp4}\ntracker: {votes: 1e400}\n",
        "source: {url: a.mp4}\ntracker: {votes: %d}\n" % (10**40),
        "source: {url: a.mp4}\nspool: {max_events: !!float 1e30}\n",
        "source: {url: !!binary aGVsbG8=}\n",
        "source: {url: 2024-01-01}\n",
        "source: {url: a.mp4}\nmqtt: {port: 0x10000}\n",
    ):
        assert load_text(tmp_path, text) is None, text
