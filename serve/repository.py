"""A Triton model repository for a bundle's server side, which a stock tritonserver serves unchanged.

Models (``NAME`` is ``--name``, default "sc2edge"):

- ``NAME_entropy`` (python): ``STREAM`` (BYTES, one stream per item) -> the server graph's inputs (the latent),
  decoded by sc2edge's runtime;
- ``NAME_server_python`` (python): the server graph through sc2edge's own runner (servers without native backends);
- ``NAME_server_onnxruntime`` (onnxruntime): the server graph as ``model.onnx``;
- ``NAME_server_openvino`` (openvino): ``model.xml`` + ``model.bin``, when the bundle has OpenVINO IR;
- ``NAME_server_tensorrt`` (tensorrt_plan, ``tensorrt=True``): a TensorRT plan built on the GPU server;
- ``NAME_<variant>`` (ensemble): ``STREAM`` -> the task's outputs, ``NAME_entropy`` then ``NAME_server_<variant>``.

Every model batches dynamically (the entropy step and the Python models run on CPU, ``KIND_CPU``). The Python
models' version directories hold ``bundle/``: a bundle reduced to its manifest, entropy tables, side files and labels
(+ the one server graph for ``server_python``), verified by ``Bundle.open`` when the model loads. The configs are
written as text and, where tritonclient is installed, parsed with Triton's own ``model_config_pb2``.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sc2edge.errors import BundleError, Sc2edgeError
from sc2edge.runtime import Artifact, Bundle, open_codec
from sc2edge.runtime.bundle_writer import BundleBuilder
from sc2edge.tasks import bundle_task

STREAM_INPUT = "STREAM"
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
    """What ``write_triton_repository`` wrote: the folder, model names, and which configs were parsed."""

    path: Path
    name: str
    models: dict[str, str] = field(default_factory=dict)  # model name -> backend or platform
    ensembles: dict[str, str] = field(default_factory=dict)  # server variant -> ensemble model name
    parsed_with: str | None = None  # "tritonclient model_config_pb2 <version>" when the configs were parsed

    def load_list(self, variant: str) -> list[str]:
        """The models ``tritonserver --model-control-mode=explicit --load-model=...`` needs for one variant."""
        return [f"{self.name}_entropy", f"{self.name}_server_{variant}", self.ensembles[variant]]


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


def _ensemble_steps(name: str, server: str, latent: Sequence[TensorConfig], outputs: Sequence[TensorConfig]) -> str:
    def mapping(kind: str, tensors: Iterable[str]) -> str:
        return " ".join(f'{kind} {{ key: "{t}" value: "{t}" }}' for t in tensors)

    latent_names = [t.name for t in latent]
    return ("ensemble_scheduling { step [\n"
            f'  {{ model_name: "{name}_entropy" model_version: -1 {mapping("input_map", [STREAM_INPUT])} '
            f'{mapping("output_map", latent_names)} }},\n'
            f'  {{ model_name: "{server}" model_version: -1 {mapping("input_map", latent_names)} '
            f'{mapping("output_map", [t.name for t in outputs])} }}\n] }}')


def _reduced_bundle(bundle: Bundle, out: Path, keep: Sequence[Artifact] = ()) -> None:
    """``bundle`` reduced to its manifest, tables, side files and labels, plus the artifacts in ``keep``."""
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
        builder.write_manifest(manifest)
        builder.commit()


def _find(bundle: Bundle, role: str, fmt: str, precision: str) -> Artifact | None:
    return next((a for a in bundle.artifacts if (a.role, a.format, a.precision) == (role, fmt, precision)), None)


def write_triton_repository(bundle: Bundle | str | Path, out: str | Path, *, name: str = "sc2edge",
                            precision: str = "fp32", max_batch_size: int = 64, queue_delay_us: int = 500,
                            tensorrt: bool = False, force: bool = False) -> TritonRepository:
    """Write a Triton model repository serving ``bundle``'s server side (see the module docstring).

    Args:
        bundle: the exported bundle (its FP32 ONNX server graph is required; OpenVINO IR is used when present).
        out: the repository folder to create (``force`` replaces an existing one written by this function).
        name: the models' name prefix.
        precision: the server graphs' precision, as exported.
        max_batch_size: Triton's largest dynamic batch.
        queue_delay_us: how long the dynamic batcher may wait to fill a batch.
        tensorrt: also write ``NAME_server_tensorrt`` and its ensemble (its ``model.plan`` is built on the GPU
            server unless the bundle carries a TensorRT engine; see README).
        force: replace ``out`` if it holds a repository written before.
    """
    bundle = bundle if isinstance(bundle, Bundle) else Bundle.open(bundle)
    out = Path(out)
    if not name.replace("_", "").replace("-", "").isalnum():
        raise RepositoryError(f"model name {name!r}: use letters, digits, - and _ only")
    if not 1 <= max_batch_size <= 4096:
        raise RepositoryError(f"max batch size {max_batch_size} is outside 1..4096")
    if out.exists():
        if not (force and (out / ".sc2edge-triton-repository").is_file()):
            raise RepositoryError(f"{out} exists; pass --force to replace a repository written by sc2edge")
        shutil.rmtree(out)
    onnx_server = _find(bundle, "server", "onnx", precision)
    if onnx_server is None:
        raise BundleError(f"{bundle.path} has no {precision} ONNX server graph (role server, format onnx)")
    codec = open_codec(bundle)
    latent = server_graph_inputs(bundle, codec.server_inputs)
    outputs = task_outputs(bundle)
    stream = TensorConfig(STREAM_INPUT, "TYPE_STRING", (1,))
    repo = TritonRepository(out, name)
    out.mkdir(parents=True)

    def write(model: str, backend: str, config: str, files: Mapping[str, Path] | None = None,
              reduced: Sequence[Artifact] | None = None, source: str | None = None) -> Path:
        version = out / model / "1"
        version.mkdir(parents=True)
        (out / model / "config.pbtxt").write_text(config)
        for target, path in (files or {}).items():
            shutil.copyfile(path, version / target)
        if reduced is not None:
            _reduced_bundle(bundle, version / "bundle", reduced)
        if source:
            shutil.copyfile(MODELS_DIR / source, version / "model.py")
        repo.models[model] = backend
        return version

    write(f"{name}_entropy", "python",
          model_config(f"{name}_entropy", "python", [stream], latent, max_batch_size=max_batch_size,
                       extra=[_batching(queue_delay_us), _instances("KIND_CPU")]),
          reduced=(), source="entropy_decode.py")
    variants = ["python", "onnxruntime"]
    write(f"{name}_server_python", "python",
          model_config(f"{name}_server_python", "python", latent, outputs, max_batch_size=max_batch_size,
                       extra=[_batching(queue_delay_us), _instances("KIND_CPU")],
                       parameters={"backend": "onnxruntime", "precision": precision}),
          reduced=(onnx_server,), source="server_graph.py")
    native = [_batching(queue_delay_us), _instances("KIND_CPU")]
    write(f"{name}_server_onnxruntime", "onnxruntime",
          model_config(f"{name}_server_onnxruntime", "onnxruntime", latent, outputs, max_batch_size=max_batch_size,
                       extra=[*native, 'default_model_filename: "model.onnx"']),
          files={"model.onnx": bundle.path / onnx_server.path})
    ir = _find(bundle, "server", "openvino", precision)
    if ir is not None:
        variants.append("openvino")
        write(f"{name}_server_openvino", "openvino",
              model_config(f"{name}_server_openvino", "openvino", latent, outputs, max_batch_size=max_batch_size,
                           extra=native),
              files={"model.xml": bundle.path / ir.path, "model.bin": bundle.path / ir.companions[0]})
    if tensorrt:
        variants.append("tensorrt")
        engine = _find(bundle, "server", "trt-engine", precision)
        trt_source = _find(bundle, "server", "onnx-trt", precision) or onnx_server
        write(f"{name}_server_tensorrt", "tensorrt_plan",
              model_config(f"{name}_server_tensorrt", "tensorrt_plan", latent, outputs,
                           max_batch_size=max_batch_size,
                           extra=[_batching(queue_delay_us), _instances("KIND_GPU")]),
              files={"model.plan": bundle.path / engine.path} if engine else {"source.onnx": bundle.path /
                                                                               trt_source.path})
    for variant in variants:
        ensemble = f"{name}_{variant}"
        write(ensemble, "ensemble",
              model_config(ensemble, "ensemble", [stream], outputs, max_batch_size=max_batch_size,
                           extra=[_ensemble_steps(name, f"{name}_server_{variant}", latent, outputs)]))
        repo.ensembles[variant] = ensemble
    (out / ".sc2edge-triton-repository").write_text(f"{bundle.path.resolve()}\n")
    repo.parsed_with = check_repository(out, required=False)
    return repo


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
