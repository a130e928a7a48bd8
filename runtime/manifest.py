"""The bundle manifest as types: a versioned reader (v1 and v2 open) that normalizes to the v2 layout, checks
types and bounds every number before anything is allocated, and hands out frozen dataclasses.

Torch-free and dependency-free (the JSON Schemas in ``sc2edge/schemas`` say the same for tools and tests; this
reader is what the runtime trusts). Every check fails with a one-line ``BundleError`` naming the key.
"""

from __future__ import annotations

import copy
import posixpath
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from sc2edge.errors import BundleError

BUNDLE_FORMAT = "sc2edge-bundle"
BUNDLE_FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
MANIFEST = "manifest.json"
LABELS_FILE = "labels.json"
TABLES_FILE = "tables.npz"
UNCODED = "none"  # entropy "coder" of a codec that sends its values as they are (no rANS tables: kind "bq")

Role = Literal["device", "server", "reference"]
Format = Literal["onnx", "openvino", "onnx-trt", "trt-engine"]
Precision = Literal["fp32", "fp16", "int8"]
GraphInput = Literal["float32-nchw", "uint8-nhwc"]  # what a device graph takes (PreprocessSpec.graph_input)
GRAPH_INPUTS: tuple[str, ...] = get_args(GraphInput)
PIXEL_GRAPH_INPUT = "uint8-nhwc"  # the crop's pixels; the graph normalizes (zoo.graphs.PixelInput)
# Task and entropy-model kinds are registry names (sc2edge.tasks, runtime.entropy.CODECS): a new kind is a new file
# and a registry entry, so the manifest checks only their form and the registries say which they know.
_KIND = re.compile(r"[a-z][a-z0-9_-]{0,31}")
TRT_ONNX_FORMAT: Format = "onnx-trt"
ENGINE_FORMAT: Format = "trt-engine"

# Bounds on what a manifest may declare: far above any real model, low enough that nothing sized from them
# (a resize, a crop, an input buffer, a label list) can exhaust a device's memory.
MAX_IMAGE_SIDE = 4096
MAX_CHANNELS = 4096
MAX_CLASSES = 100_000
MAX_GEOMETRY_LAYERS = 64
MAX_KERNEL = 64
MAX_PATH_LENGTH = 255
MAX_FILES = 1000


def _where(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _get(record: Mapping[str, Any], key: str, kind: type | tuple[type, ...], path: str, *,
         optional: bool = False) -> Any:
    """``record[key]``, of ``kind`` (bool is never an int here); missing or mistyped -> BundleError."""
    if key not in record or (optional and record[key] is None):
        if optional:
            return None
        raise BundleError(f"manifest has no {_where(path, key)}")
    value = record[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
        names = " or ".join(k.__name__ for k in kinds)
        raise BundleError(f"manifest {_where(path, key)} must be {names}, not {type(value).__name__}")
    return value


def _record(record: Mapping[str, Any], key: str, path: str = "", *, optional: bool = False) -> dict[str, Any]:
    return _get(record, key, dict, path, optional=optional)


def _records(records: list[Any], path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Each object of the manifest list at ``path`` with its own path ("task.outputs[0]"); anything else in the list
    -> BundleError."""
    for i, record in enumerate(records):
        where = f"{path}[{i}]"
        if not isinstance(record, dict):
            raise BundleError(f"manifest {where} must be an object")
        yield where, record


def _bounded_int(record: Mapping[str, Any], key: str, path: str, low: int, high: int) -> int:
    value = _get(record, key, int, path)
    if not low <= value <= high:
        raise BundleError(f"manifest {_where(path, key)} = {value} is outside [{low}, {high}]")
    return value


def _literal(record: Mapping[str, Any], key: str, path: str, literal: Any) -> Any:
    value = _get(record, key, str, path)
    allowed = get_args(literal)
    if value not in allowed:
        raise BundleError(f'manifest {_where(path, key)} "{value[:40]}" is not one of {", ".join(allowed)}')
    return value


def _kind(record: Mapping[str, Any], path: str) -> str:
    value = _get(record, "kind", str, path)
    if not _KIND.fullmatch(value):
        raise BundleError(f'manifest {_where(path, "kind")} "{value[:40]}" is not a kind name ([a-z][a-z0-9_-], '
                          "at most 32 characters)")
    return value


def _floats(record: Mapping[str, Any], key: str, path: str, count: int) -> tuple[float, ...]:
    values = _get(record, key, list, path)
    if len(values) != count or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        raise BundleError(f"manifest {_where(path, key)} must be {count} numbers")
    return tuple(float(v) for v in values)


def bundle_path(name: Any, key: str) -> str:
    """A file name a manifest may point at: a plain relative POSIX path inside the bundle (no absolute path,
    no ``..``, no backslash, no empty or ``.`` parts)."""
    if not isinstance(name, str) or not name or len(name) > MAX_PATH_LENGTH:
        raise BundleError(f"manifest {key} must be a relative file name inside the bundle")
    parts = name.split("/")
    if (name.startswith("/") or "\\" in name or "\x00" in name or any(p in ("", ".", "..") for p in parts)
            or posixpath.normpath(name) != name):
        raise BundleError(f'manifest {key} "{name[:80]}" is not a plain relative path inside the bundle')
    return name


@dataclass(frozen=True)
class PreprocessSpec:
    """How an image becomes the model's input tensor: resize the shorter side (bilinear), center crop, normalize.
    Without a crop (``crop`` None: segmentation, detection) the input keeps the resized image's size, so the
    device graph takes any height and width within the bundle's limits.

    The one preprocessing record: the zoo's model specs and the bundle's manifest both use it. ``graph_input`` says
    what the bundle's device graph takes: "float32-nchw" (normalized here; bundles before it was recorded) or
    "uint8-nhwc" (the crop's pixels as decoded; the graph casts and normalizes).
    """

    resize: int  # shorter side, bilinear
    crop: int | None  # center crop, square; None: no crop (dynamic input size)
    mean: tuple[float, ...]
    std: tuple[float, ...]
    grayscale: bool = False
    graph_input: GraphInput = "float32-nchw"
    max_size: int | None = None  # dynamic input: also bound the longer side (GeneralizedRCNNTransform's rule)
    pad_multiple: int | None = None  # dynamic input: zero-pad the normalized image to a multiple of this

    @property
    def channels(self) -> int:
        return 1 if self.grayscale else 3

    @property
    def dynamic(self) -> bool:
        """Whether the model's input size follows the image (no crop)."""
        return self.crop is None

    def to_json(self) -> dict[str, Any]:
        record = {"resize": self.resize, "crop": self.crop, "mean": list(self.mean), "std": list(self.std),
                  "grayscale": self.grayscale}
        if self.graph_input != "float32-nchw":  # the default stays unwritten: older readers know only float
            record["graph_input"] = self.graph_input
        for key in ("max_size", "pad_multiple"):  # detection only: other records stay as they were
            if getattr(self, key) is not None:
                record[key] = getattr(self, key)
        return record

    @classmethod
    def from_json(cls, record: Any, path: str = "preprocess") -> PreprocessSpec:
        """Checked: crop (if any) <= resize <= MAX_IMAGE_SIDE, one mean and one positive std per channel."""
        if not isinstance(record, Mapping):
            raise BundleError(f"manifest {path} must be an object")
        grayscale = bool(_get(record, "grayscale", bool, path, optional=True))
        resize = _bounded_int(record, "resize", path, 1, MAX_IMAGE_SIDE)
        crop = None if record.get("crop") is None else _bounded_int(record, "crop", path, 1, resize)
        channels = 1 if grayscale else 3
        std = _floats(record, "std", path, channels)
        if not all(s > 0 for s in std):
            raise BundleError(f"manifest {path}.std must be positive")
        graph_input = _get(record, "graph_input", str, path, optional=True) or "float32-nchw"
        if graph_input not in GRAPH_INPUTS:
            raise BundleError(f"manifest {path}.graph_input must be one of {', '.join(GRAPH_INPUTS)}, "
                              f"got {graph_input!r}")
        max_size = None if record.get("max_size") is None else _bounded_int(record, "max_size", path, resize,
                                                                            MAX_IMAGE_SIDE)
        pad_multiple = None if record.get("pad_multiple") is None else _bounded_int(record, "pad_multiple", path, 1,
                                                                                    256)
        if crop is not None and (max_size or pad_multiple):
            raise BundleError(f"manifest {path}: max_size and pad_multiple are for a dynamic input (no crop)")
        return cls(resize, crop, _floats(record, "mean", path, channels), std, grayscale, graph_input, max_size,
                   pad_multiple)


@dataclass(frozen=True)
class ModelInfo:
    name: str
    builder: str
    beta: float | None
    trained: bool
    checkpoint: str | None
    checkpoint_sha256: str | None
    description: str


@dataclass(frozen=True)
class TaskOutput:
    name: str
    dtype: str
    shape: tuple[str | int, ...]


@dataclass(frozen=True)
class TaskSpec:
    kind: str
    num_classes: int
    labels: str | None
    outputs: tuple[TaskOutput, ...]


@dataclass(frozen=True)
class InputSpec:
    """The exported input size; a dynamic input (``preprocess.crop`` None) takes any size between ``min`` and
    ``max`` (height, width), the smallest measured at export on every exported runtime."""

    channels: int
    height: int
    width: int
    dynamic: bool = False
    min: tuple[int, int] | None = None
    max: tuple[int, int] | None = None


@dataclass(frozen=True)
class LatentSpec:
    channels: int
    geometry: tuple[tuple[int, int, int], ...]  # encoder convs (kernel, stride, padding)
    shape: tuple[int, int, int]
    min_shape: tuple[int, int, int] | None = None  # the smallest latent the graphs ran on at export (measured)
    max_shape: tuple[int, int, int] | None = None  # the largest latent a stream may declare


@dataclass(frozen=True)
class EntropySection:
    """One named part of a stream: which device output it codes and with which tables."""

    name: str
    input: str
    tables: str
    hash: str


@dataclass(frozen=True)
class EntropySpec:
    kind: str
    coder: str
    precision: int
    sections: tuple[EntropySection, ...]


@dataclass(frozen=True)
class Artifact:
    """One graph file of a bundle: which half, in which format and precision."""

    role: Role
    format: Format
    precision: Precision
    path: str
    sha256: str
    meta: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"role": self.role, "format": self.format, "precision": self.precision, "path": self.path,
                "sha256": self.sha256, "meta": self.meta}

    @property
    def companions(self) -> tuple[str, ...]:
        """Other bundle files this artifact names in its meta (an IR's weights, calibration ranges)."""
        return tuple(self.meta[key] for key in ("weights", "ranges") if isinstance(self.meta.get(key), str))


@dataclass(frozen=True)
class ManifestSpec:
    """The typed view of a v2 manifest (``Bundle.spec``); ``Bundle.manifest`` keeps the dict for extensions."""

    model: ModelInfo
    task: TaskSpec
    preprocess: PreprocessSpec
    input: InputSpec
    latent: LatentSpec
    entropy: EntropySpec
    artifacts: tuple[Artifact, ...]
    files: dict[str, str]

    def shared_files(self) -> list[str]:
        """The files every graph's runtime opens: entropy tables, labels."""
        return [s.tables for s in self.entropy.sections] + ([self.task.labels] if self.task.labels else [])

    def referenced_files(self) -> list[str]:
        """Every file the runtime opens: graphs (and their companions), entropy tables, labels."""
        names = self.shared_files()
        for artifact in self.artifacts:
            names += [artifact.path, *artifact.companions]
        return names


def classification_outputs(num_classes: int) -> list[dict[str, Any]]:
    return [{"name": "logits", "dtype": "float32", "shape": ["N", num_classes]}]


def normalize(raw: Any, where: str) -> dict[str, Any]:
    """A manifest (v1 or v2, as parsed JSON) -> a v2 dict (a copy); refuses other formats and versions."""
    if not isinstance(raw, dict) or raw.get("format") != BUNDLE_FORMAT:
        raise BundleError(f"{where} is not an sc2edge bundle manifest")
    version = raw.get("format_version")
    if isinstance(version, bool) or version not in READABLE_VERSIONS:
        raise BundleError(f"{where} has bundle format version {str(version)[:20]}; this sc2edge reads versions "
                          f"{', '.join(map(str, READABLE_VERSIONS))}: re-export it with this version")
    manifest = copy.deepcopy(raw)
    if version == 1:  # each part converted where present (what is missing is named by ``parse``); format-1
        # manifests written while v2 was introduced may already hold the v2 task and entropy sections
        model = manifest.get("model")
        if isinstance(model, dict):
            num_classes = model.pop("num_classes", None)
            task = {"kind": model.pop("task", "classification"), "num_classes": num_classes,
                    "labels": model.pop("labels", None), "outputs": classification_outputs(num_classes)}
            manifest.setdefault("task", task)
        if "entropy" in manifest:
            manifest["entropy"] = v2_entropy(manifest["entropy"])
        manifest["format_version"] = BUNDLE_FORMAT_VERSION
    return manifest


def v2_entropy(entropy: Any) -> Any:
    """A format-1 entropy section, ``{"coder", "precision", "file", "hash"}``, in the v2 layout: the factorized
    prior with one section "y" coded from the device output "symbols" (what a format-1 stream holds). Anything
    else (a v2 section, or what the checks then refuse) comes back as it is."""
    if not isinstance(entropy, Mapping) or "sections" in entropy:
        return entropy
    return {"kind": "factorized", "coder": entropy.get("coder"), "precision": entropy.get("precision"),
            "sections": [{"name": "y", "input": "symbols", "tables": entropy.get("file"), "hash": entropy.get("hash")}]}


def parse(manifest: dict[str, Any]) -> ManifestSpec:
    """The typed, bounds-checked view of a normalized (v2) manifest."""
    model = _record(manifest, "model")
    beta = _get(model, "beta", (int, float), "model", optional=True)
    info = ModelInfo(_get(model, "name", str, "model"), _get(model, "builder", str, "model"),
                     None if beta is None else float(beta), _get(model, "trained", bool, "model"),
                     _get(model, "checkpoint", str, "model", optional=True),
                     _get(model, "checkpoint_sha256", str, "model", optional=True),
                     _get(model, "description", str, "model", optional=True) or "")
    return ManifestSpec(info, _parse_task(_record(manifest, "task")),
                        PreprocessSpec.from_json(_record(manifest, "preprocess")),
                        *_parse_shapes(manifest), _parse_entropy(_record(manifest, "entropy")),
                        _parse_artifacts(_get(manifest, "artifacts", list, "")), _parse_files(manifest))


def _parse_task(task: dict[str, Any]) -> TaskSpec:
    num_classes = _bounded_int(task, "num_classes", "task", 1, MAX_CLASSES)
    labels = _get(task, "labels", str, "task", optional=True)
    outputs = []
    for where, out in _records(_get(task, "outputs", list, "task"), "task.outputs"):
        shape = _get(out, "shape", list, where)
        if not all(isinstance(d, str) or isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape):
            raise BundleError(f"manifest {where}.shape must hold axis names or positive sizes")
        outputs.append(TaskOutput(_get(out, "name", str, where), _get(out, "dtype", str, where), tuple(shape)))
    return TaskSpec(_kind(task, "task"), num_classes,
                    None if labels is None else bundle_path(labels, "task.labels"), tuple(outputs))


def _side_pair(record: Mapping[str, Any], key: str, path: str) -> tuple[int, int] | None:
    value = _get(record, key, list, path, optional=True)
    if value is None:
        return None
    if len(value) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= MAX_IMAGE_SIDE
                                  for v in value):
        raise BundleError(f"manifest {_where(path, key)} must be [height, width], sides 1..{MAX_IMAGE_SIDE}")
    return value[0], value[1]


def _latent_shape(latent: Mapping[str, Any], key: str, channels: int, optional: bool = False) -> Any:
    shape = _get(latent, key, list, "latent", optional=optional)
    if shape is None:
        return None
    if (len(shape) != 3 or shape[0] != channels
            or not all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= MAX_IMAGE_SIDE for v in shape)):
        raise BundleError(f"manifest latent.{key} must be [{channels}, height, width], sides 1..{MAX_IMAGE_SIDE}")
    return tuple(shape)


def _parse_shapes(manifest: dict[str, Any]) -> tuple[InputSpec, LatentSpec]:
    image, latent = _record(manifest, "input"), _record(manifest, "latent")
    spec = InputSpec(_bounded_int(image, "channels", "input", 1, 4),
                     _bounded_int(image, "height", "input", 1, MAX_IMAGE_SIDE),
                     _bounded_int(image, "width", "input", 1, MAX_IMAGE_SIDE),
                     bool(_get(image, "dynamic", bool, "input", optional=True)),
                     _side_pair(image, "min", "input"), _side_pair(image, "max", "input"))
    channels = _bounded_int(latent, "channels", "latent", 1, MAX_CHANNELS)
    geometry = _get(latent, "geometry", list, "latent")
    layers = []
    for layer in geometry[:MAX_GEOMETRY_LAYERS + 1]:
        if (not isinstance(layer, list) or len(layer) != 3
                or not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= MAX_KERNEL for v in layer)):
            raise BundleError(f"manifest latent.geometry must be [kernel, stride, padding] triples of 0..{MAX_KERNEL}")
        layers.append(tuple(layer))
    if not 1 <= len(geometry) <= MAX_GEOMETRY_LAYERS:
        raise BundleError(f"manifest latent.geometry must have 1 to {MAX_GEOMETRY_LAYERS} layers")
    return spec, LatentSpec(channels, tuple(layers), _latent_shape(latent, "shape", channels),
                            _latent_shape(latent, "min_shape", channels, optional=True),
                            _latent_shape(latent, "max_shape", channels, optional=True))


def _parse_entropy(entropy: dict[str, Any]) -> EntropySpec:
    sections = []
    for where, section in _records(_get(entropy, "sections", list, "entropy"), "entropy.sections"):
        sections.append(EntropySection(_get(section, "name", str, where), _get(section, "input", str, where),
                                       bundle_path(_get(section, "tables", str, where), f"{where}.tables"),
                                       _get(section, "hash", str, where)))
    if not sections:
        raise BundleError("manifest entropy.sections is empty")
    return EntropySpec(_kind(entropy, "entropy"), _get(entropy, "coder", str, "entropy"),
                       _bounded_int(entropy, "precision", "entropy", 1, 16), tuple(sections))


def _parse_artifacts(records: list[Any]) -> tuple[Artifact, ...]:
    artifacts = []
    for where, record in _records(records, "artifacts"):
        meta = _get(record, "meta", dict, where, optional=True) or {}
        artifact = Artifact(_literal(record, "role", where, Role), _literal(record, "format", where, Format),
                            _literal(record, "precision", where, Precision),
                            bundle_path(_get(record, "path", str, where), f"{where}.path"),
                            _get(record, "sha256", str, where), meta)
        for name in artifact.companions:
            bundle_path(name, f"{where}.meta")
        artifacts.append(artifact)
    return tuple(artifacts)


def _parse_files(manifest: dict[str, Any]) -> dict[str, str]:
    files = _get(manifest, "files", dict, "")
    if not files:
        raise BundleError("manifest files is empty: a bundle lists the sha256 of every file it holds")
    if len(files) > MAX_FILES:
        raise BundleError(f"manifest files lists {len(files)} files (at most {MAX_FILES})")
    for name, digest in files.items():
        bundle_path(name, "files")
        if not isinstance(digest, str) or len(digest) != 64:
            raise BundleError(f"manifest files[{name[:80]}] must be a sha256 hex digest")
    return dict(files)
