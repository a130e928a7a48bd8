"""A Triton model repository for a bundle's server side, which a stock tritonserver serves unchanged.

Models (``NAME`` is ``--name``, default "sc2edge"; ``TAIL`` is ``NAME`` for one bundle, ``NAME_<task kind>`` for
each of several bundles that share one encoder, e.g. a classifier and a segmenter):

- ``NAME_entropy`` (python): ``STREAM`` (BYTES, one stream per item) -> the server graphs' latent input, decoded by
  sc2edge's runtime, and, when a tail needs them, the stream's image sizes (``image_sizes``, see ``serve/wire.py``);
- ``TAIL_server_python`` (python): the server graph through sc2edge's ``Decoder`` (servers without native backends);
  it also makes the task's inputs beside the latent from the image sizes (``Task.server_inputs``);
- ``TAIL_server_onnxruntime`` (onnxruntime): the server graph as ``model.onnx``;
- ``TAIL_server_openvino`` (openvino): ``model.xml`` + ``model.bin``, when the bundle has OpenVINO IR;
- ``TAIL_server_tensorrt`` (tensorrt_plan, ``tensorrt=True``): a TensorRT plan built on the GPU server;
- ``TAIL_<variant>`` (ensemble): ``STREAM`` -> the task's outputs, ``NAME_entropy`` then ``TAIL_server_<variant>``.

A tail whose server graph takes inputs beside the latent (segmentation's ``image_size``, made from the stream's
image sizes by the task) gets the Python variant only: the native backends would need that input made by a graph
and batched (``TritonRepository.skipped`` says so). Every model batches dynamically (the entropy step and the Python
models run on CPU, ``KIND_CPU``). The Python models' version directories hold ``bundle/``: a bundle reduced to its
manifest, entropy tables, side files and labels (+ the one server graph for ``server_python``), verified by
``Bundle.open`` when the model loads; the entropy model's manifest takes the union of the tails' latent limits (each
tail's Python model checks its own, as its in-process ``Decoder`` does). The configs are written as text and, where
tritonclient is installed, parsed with Triton's own ``model_config_pb2``.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sc2edge.errors import BundleError, Sc2edgeError
from sc2edge.runtime import Artifact, Bundle, open_codec
from sc2edge.runtime.bundle_writer import BundleBuilder
from sc2edge.runtime.entropy import LatentLimits
from sc2edge.runtime.tails import tail_kinds
from sc2edge.serve.wire import IMAGE_SIZES, STREAM_INPUT
from sc2edge.tasks import bundle_task

MODELS_DIR = Path(__file__).parent / "triton_models"
SERVER_VARIANTS = ("python", "onnxruntime", "openvino", "tensorrt")
# ONNX tensor element types and the task's dtype names -> Triton data types
_ONNX_TYPES = {"tensor(float)": "TYPE_FP32", "tensor(float16)": "TYPE_FP16", "tensor(int32)": "TYPE_INT32",
               "tensor(int64)": "TYPE_INT64", "tensor(uint8)": "TYPE_UINT8", "tensor(bool)": "TYPE_BOOL"}
_DTYPES = {"float32": "TYPE_FP32", "float16": "TYPE_FP16", "int32": "TYPE_INT32", "int64": "TYPE_INT64",
           "uint8": "TYPE_UINT8", "bool": "TYPE_BOOL"}


class RepositoryError(Sc2edgeError):
    """A Triton repository that cannot be written or whose config does not parse."""


@dataclass(frozen=True)
class TensorConfig:
    """One input or output of a Triton model: name, Triton data type, dims without the batch axis (-1: any)."""

    name: str
    data_type: str
    dims: tuple[int, ...]

    def pbtxt(self) -> str:
        return (f'  {{ name: "{self.name}" data_type: {self.data_type} '
                f'dims: [ {", ".join(str(d) for d in self.dims)} ] }}')


@dataclass
class TritonRepository:
    """What ``write_triton_repository`` wrote: the folder, model names, each tail's ensembles, the native models
    left out and why, and which configs were parsed."""

    path: Path
    name: str
    models: dict[str, str] = field(default_factory=dict)  # model name -> backend or platform
    tails: dict[str, dict[str, str]] = field(default_factory=dict)  # task kind -> server variant -> ensemble
    servers: dict[str, dict[str, str]] = field(default_factory=dict)  # task kind -> server variant -> model
    skipped: dict[str, str] = field(default_factory=dict)  # model not written -> why
    parsed_with: str | None = None  # "tritonclient model_config_pb2 <version>" when the configs were parsed

    def ensemble(self, variant: str, task: str | None = None) -> str:
        """The ensemble a device sends its streams to, for one server variant and task (None: the only one)."""
        if task is None:
            if len(self.tails) != 1:
                raise RepositoryError(f"this repository serves {', '.join(self.tails)}: name the task")
            task = next(iter(self.tails))
        if task not in self.tails:
            raise RepositoryError(f"this repository serves no {task} task (it serves {', '.join(self.tails)})")
        if variant not in self.tails[task]:
            raise RepositoryError(f"the {task} tail has no {variant} variant (it has {', '.join(self.tails[task])})")
        return self.tails[task][variant]

    def load_list(self, variant: str, tasks: Sequence[str] | None = None) -> list[str]:
        """The models ``tritonserver --model-control-mode=explicit --load-model=...`` needs for one variant of
        ``tasks`` (None: every tail)."""
        tasks = list(tasks or self.tails)
        ensembles = [self.ensemble(variant, task) for task in tasks]
        return [f"{self.name}_entropy", *(self.servers[task][variant] for task in tasks), *ensembles]


def tail_prefix(name: str, task: str, several: bool) -> str:
    """The model-name prefix of one task's server models and ensembles (``NAME`` for a single bundle)."""
    return f"{name}_{task}" if several else name


def _dims(shape: Sequence[Any]) -> tuple[int, ...]:
    return tuple(d if isinstance(d, int) and d > 0 else -1 for d in shape)


def server_graph_inputs(bundle: Bundle, names: Sequence[str]) -> list[TensorConfig]:
    """The server graph's inputs as Triton tensors, read from its FP32 ONNX graph (types and fixed dims)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(bundle.path / bundle.artifact("server", "onnx", "fp32").path),
                                   providers=["CPUExecutionProvider"])
    found = {i.name: i for i in session.get_inputs()}
    missing = [n for n in names if n not in found]
    if missing:
        raise RepositoryError(f"{bundle.path}: the server graph has no input {missing[0]!r} (it takes "
                              f"{', '.join(found)})")
    tensors = []
    for name in names:
        if found[name].type not in _ONNX_TYPES:
            raise RepositoryError(f"server graph input {name} has type {found[name].type}, which this writer does "
                                  "not map to Triton")
        tensors.append(TensorConfig(name, _ONNX_TYPES[found[name].type], _dims(found[name].shape[1:])))
    return tensors


def task_outputs(bundle: Bundle) -> list[TensorConfig]:
    outputs = []
    for spec in bundle_task(bundle).outputs:
        if not spec.batched or spec.dtype not in _DTYPES:
            raise RepositoryError(f"task output {spec.name} ({spec.dtype}, shape {list(spec.shape)}) is not a batched "
                                  "tensor of a type Triton takes")
        outputs.append(TensorConfig(spec.name, _DTYPES[spec.dtype], _dims(spec.shape[1:])))
    return outputs


def model_config(name: str, backend: str, inputs: Iterable[TensorConfig], outputs: Iterable[TensorConfig], *,
                 max_batch_size: int, extra: Sequence[str] = (), parameters: Mapping[str, str] | None = None) -> str:
    """A config.pbtxt. ``backend`` "ensemble" and "tensorrt_plan" are written as platforms."""
    key = "platform" if backend in ("ensemble", "tensorrt_plan") else "backend"
    lines = [f'name: "{name}"', f'{key}: "{backend}"', f"max_batch_size: {max_batch_size}",
             "input [", ",\n".join(t.pbtxt() for t in inputs), "]",
             "output [", ",\n".join(t.pbtxt() for t in outputs), "]", *extra]
    for key_, value in (parameters or {}).items():
        lines.append(f'parameters {{ key: "{key_}" value: {{ string_value: "{value}" }} }}')
    return "\n".join(lines) + "\n"


def _batching(queue_delay_us: int) -> str:
    return f"dynamic_batching {{ max_queue_delay_microseconds: {queue_delay_us} }}"


def _instances(kind: str, count: int = 1) -> str:
    return f"instance_group [ {{ kind: {kind} count: {count} }} ]"


def _ensemble_steps(name: str, server: str, latent: Sequence[str], outputs: Sequence[TensorConfig]) -> str:
    """Stream -> ``NAME_entropy`` -> ``latent`` (the latent input, + ``image_sizes`` for a tail that takes them)
    -> ``server`` -> the task's outputs."""
    def mapping(kind: str, tensors: Iterable[str]) -> str:
        return " ".join(f'{kind} {{ key: "{t}" value: "{t}" }}' for t in tensors)

    return ("ensemble_scheduling { step [\n"
            f'  {{ model_name: "{name}_entropy" model_version: -1 {mapping("input_map", [STREAM_INPUT])} '
            f'{mapping("output_map", latent)} }},\n'
            f'  {{ model_name: "{server}" model_version: -1 {mapping("input_map", latent)} '
            f'{mapping("output_map", [t.name for t in outputs])} }}\n] }}')


def _reduced_bundle(bundle: Bundle, out: Path, keep: Sequence[Artifact] = (),
                    latent: Mapping[str, Any] | None = None) -> None:
    """``bundle`` reduced to its manifest, tables, side files and labels, plus the artifacts in ``keep`` (and the
    manifest's ``latent`` section replaced by ``latent`` when given)."""
    graph_files = {name for a in bundle.artifacts for name in (a.path, *a.companions)}
    kept_files = {name for a in keep for name in (a.path, *a.companions)}
    with BundleBuilder(out) as builder:
        for name in bundle.spec.files:
            if name not in graph_files or name in kept_files:
                (builder.staging / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(bundle.path / name, builder.staging / name)
        for artifact in keep:
            builder.add_artifact(artifact.role, artifact.format, artifact.precision, artifact.path, artifact.meta)
        manifest = {k: v for k, v in bundle.manifest.items()
                    if k not in ("format", "format_version", "artifacts", "files")}
        if latent is not None:
            manifest["latent"] = dict(latent)
        builder.write_manifest(manifest)
        builder.commit()


def union_of_limits(bundles: Sequence[Bundle]) -> dict[str, Any]:
    """The first bundle's ``latent`` section with the smallest ``min_shape`` and largest ``max_shape`` of all:
    the shared entropy model accepts what any tail takes (each tail checks its own limits)."""
    limits = [LatentLimits(b.manifest) for b in bundles]
    latent = dict(bundles[0].manifest["latent"])
    latent["min_shape"] = [limits[0].channels, min(x.min_height for x in limits), min(x.min_width for x in limits)]
    latent["max_shape"] = [limits[0].channels, max(x.max_height for x in limits), max(x.max_width for x in limits)]
    return latent


def _find(bundle: Bundle, role: str, fmt: str, precision: str) -> Artifact | None:
    return next((a for a in bundle.artifacts if (a.role, a.format, a.precision) == (role, fmt, precision)), None)


def write_triton_repository(bundles: Bundle | str | Path | Sequence[Bundle | str | Path], out: str | Path, *,
                            name: str = "sc2edge", precision: str = "fp32", max_batch_size: int = 64,
                            queue_delay_us: int = 500, tensorrt: bool = False, force: bool = False) -> TritonRepository:
    """Write a Triton model repository serving the server side of one bundle, or of several bundles whose models
    share one encoder (one tail per task; see the module docstring).

    Args:
        bundles: the exported bundle(s) (each needs its ``precision`` ONNX server graph; OpenVINO IR is used when
            present). The first one's entropy tables serve every tail (they are the same: ``tail_kinds`` checks).
        out: the repository folder to create (``force`` replaces an existing one written by this function).
        name: the models' name prefix.
        precision: the server graphs' precision, as exported.
        max_batch_size: Triton's largest dynamic batch.
        queue_delay_us: how long the dynamic batcher may wait to fill a batch.
        tensorrt: also write ``TAIL_server_tensorrt`` and its ensemble (its ``model.plan`` is built on the GPU
            server unless the bundle carries a TensorRT engine; see README).
        force: replace ``out`` if it holds a repository written before.
    """
    given = [bundles] if isinstance(bundles, (Bundle, str, Path)) else list(bundles)
    opened = [b if isinstance(b, Bundle) else Bundle.open(b) for b in given]
    kinds = tail_kinds(opened)
    out = Path(out)
    if not name.replace("_", "").replace("-", "").isalnum():
        raise RepositoryError(f"model name {name!r}: use letters, digits, - and _ only")
    if not 1 <= max_batch_size <= 4096:
        raise RepositoryError(f"max batch size {max_batch_size} is outside 1..4096")
    onnx_servers = {}
    for bundle in opened:
        onnx_servers[bundle.path] = _find(bundle, "server", "onnx", precision)
        if onnx_servers[bundle.path] is None:
            raise BundleError(f"{bundle.path} has no {precision} ONNX server graph (role server, format onnx)")
    if out.exists():
        if not (force and (out / ".sc2edge-triton-repository").is_file()):
            raise RepositoryError(f"{out} exists; pass --force to replace a repository written by sc2edge")
        shutil.rmtree(out)
    encoder = opened[0]
    codec = open_codec(encoder)
    latent = server_graph_inputs(encoder, codec.server_inputs)
    sizes = TensorConfig(IMAGE_SIZES, "TYPE_INT64", (4,))
    sized = any(bundle_task(b).extra_inputs for b in opened)
    stream = TensorConfig(STREAM_INPUT, "TYPE_STRING", (1,))
    repo = TritonRepository(out, name)
    out.mkdir(parents=True)

    def write(model: str, backend: str, config: str, files: Mapping[str, Path] | None = None,
              reduced: Bundle | None = None, keep: Sequence[Artifact] = (), latent_section: Mapping | None = None,
              source: str | None = None) -> Path:
        version = out / model / "1"
        version.mkdir(parents=True)
        (out / model / "config.pbtxt").write_text(config)
        for target, path in (files or {}).items():
            shutil.copyfile(path, version / target)
        if reduced is not None:
            _reduced_bundle(reduced, version / "bundle", keep, latent_section)
        if source:
            shutil.copyfile(MODELS_DIR / source, version / "model.py")
        repo.models[model] = backend
        return version

    python_models = [_batching(queue_delay_us), _instances("KIND_CPU")]
    write(f"{name}_entropy", "python",
          model_config(f"{name}_entropy", "python", [stream], [*latent, *([sizes] if sized else [])],
                       max_batch_size=max_batch_size, extra=python_models),
          reduced=encoder, latent_section=union_of_limits(opened), source="entropy_decode.py")
    for kind, bundle in zip(kinds, opened, strict=True):
        _write_tail(repo, write, bundle, tail_prefix(name, kind, len(opened) > 1), kind, onnx_servers[bundle.path],
                    sizes, precision=precision, max_batch_size=max_batch_size, queue_delay_us=queue_delay_us,
                    tensorrt=tensorrt)
    (out / ".sc2edge-triton-repository").write_text("".join(f"{b.path.resolve()}\n" for b in opened))
    repo.parsed_with = check_repository(out, required=False)
    return repo


def _write_tail(repo: TritonRepository, write: Callable[..., Path], bundle: Bundle, prefix: str, kind: str,
                onnx_server: Artifact, sizes: TensorConfig, *, precision: str, max_batch_size: int,
                queue_delay_us: int, tensorrt: bool) -> None:
    """One task's server models and ensembles (``write`` is ``write_triton_repository``'s model writer)."""
    task = bundle_task(bundle)
    latent = server_graph_inputs(bundle, open_codec(bundle).server_inputs)
    inputs = [*latent, *([sizes] if task.extra_inputs else [])]
    outputs = task_outputs(bundle)
    batching = [_batching(queue_delay_us), _instances("KIND_CPU")]
    servers = repo.servers.setdefault(kind, {})

    def server(variant: str, backend: str, extra: Sequence[str], **files: Any) -> None:
        model = f"{prefix}_server_{variant}"
        if variant != "python" and task.extra_inputs:
            repo.skipped[model] = (f"the {kind} server graph also takes {', '.join(task.extra_inputs)}, which the "
                                   "task makes from the stream's image sizes: only the Python variant computes it")
            return
        write(model, backend, model_config(model, backend, inputs, outputs, max_batch_size=max_batch_size,
                                           extra=extra,
                                           parameters={"backend": "onnxruntime", "precision": precision}
                                           if variant == "python" else None), **files)
        servers[variant] = model

    server("python", "python", batching, reduced=bundle, keep=(onnx_server,), source="server_graph.py")
    server("onnxruntime", "onnxruntime", [*batching, 'default_model_filename: "model.onnx"'],
           files={"model.onnx": bundle.path / onnx_server.path})
    ir = _find(bundle, "server", "openvino", precision)
    if ir is not None:
        server("openvino", "openvino", batching,
               files={"model.xml": bundle.path / ir.path, "model.bin": bundle.path / ir.companions[0]})
    if tensorrt:
        engine = _find(bundle, "server", "trt-engine", precision)
        trt_source = _find(bundle, "server", "onnx-trt", precision) or onnx_server
        server("tensorrt", "tensorrt_plan", [_batching(queue_delay_us), _instances("KIND_GPU")],
               files={"model.plan": bundle.path / engine.path} if engine else
               {"source.onnx": bundle.path / trt_source.path})
    ensembles = repo.tails.setdefault(kind, {})
    for variant, model in servers.items():
        ensemble = f"{prefix}_{variant}"
        write(ensemble, "ensemble",
              model_config(ensemble, "ensemble", [TensorConfig(STREAM_INPUT, "TYPE_STRING", (1,))], outputs,
                           max_batch_size=max_batch_size,
                           extra=[_ensemble_steps(repo.name, model, [t.name for t in inputs], outputs)]))
        ensembles[variant] = ensemble


def check_repository(path: str | Path, *, required: bool = True) -> str | None:
    """Parse every ``config.pbtxt`` under ``path`` with Triton's own protobuf definitions (tritonclient's
    ``model_config_pb2``) and check each names its folder. Returns what parsed them; None when tritonclient is
    not installed and ``required`` is False."""
    try:
        from google.protobuf import text_format
        from tritonclient.grpc import model_config_pb2
    except ImportError:
        if required:
            raise RepositoryError('checking Triton configs needs tritonclient: pip install "sc2edge[serve]"') from None
        return None
    from importlib.metadata import version

    for config_path in sorted(Path(path).glob("*/config.pbtxt")):
        try:
            config = text_format.Parse(config_path.read_text(), model_config_pb2.ModelConfig())
        except text_format.ParseError as exc:
            raise RepositoryError(f"{config_path} does not parse as a Triton ModelConfig: {exc}") from None
        if config.name != config_path.parent.name:
            raise RepositoryError(f"{config_path} names model {config.name!r}, its folder is "
                                  f"{config_path.parent.name!r}")
    return f"tritonclient {version('tritonclient')} model_config_pb2"
