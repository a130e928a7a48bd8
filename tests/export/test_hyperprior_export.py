"""mshp student: device graph on every backend and precision, decoded by every other through the index path."""

import numpy as np
import pytest

from sc2edge.runtime.hyperprior import HyperpriorCoder, available_implementations, load_index_path
from sc2edge.runtime.rans import EntropyTables
from tests._hyperprior import spread_mshp_model, spread_side_networks

pytestmark = pytest.mark.skipif("native" not in available_implementations(),
                                reason="sc2edge.runtime._hyperprior is not built")


@pytest.fixture(scope="module")
def exported(tmp_path_factory, photos):
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    from sc2edge.export.hyperprior import export_hyperprior_graphs, gaussian_tables
    from sc2edge.runtime.preprocess import preprocess_image

    loaded = spread_mshp_model()
    bottleneck = loaded.model.bottleneck_layer
    out = tmp_path_factory.mktemp("mshp")
    files = export_hyperprior_graphs(loaded.model, out, loaded.spec.preprocess.crop)
    images = [preprocess_image(p, loaded.spec.preprocess.to_json())[None] for p in photos[:6]]

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter(images[2:])  # calibration photos; the first two are held out for the checks

        def get_next(self):
            item = next(self.items, None)
            return None if item is None else {"image": item}

    files["device_int8"] = out / "device.int8.onnx"
    quantize_static(str(files["device"]), str(files["device_int8"]), Reader(), quant_format=QuantFormat.QDQ,
                    per_channel=True, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)
    tables = (EntropyTables.from_bottleneck(bottleneck.entropy_bottleneck),
              gaussian_tables(bottleneck.gaussian_conditional))
    return loaded, files, tables, images[:2]


def _device_runs(files):
    """name -> callable(image) -> (y, z_symbols), for ORT and OpenVINO, FP32 and INT8, 1 and 2 threads."""
    import onnxruntime as ort
    import openvino as ov

    runs = {}
    core = ov.Core()
    for precision in ("fp32", "int8"):
        path = str(files["device" if precision == "fp32" else "device_int8"])
        for threads in (1, 2):
            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
            runs[f"onnxruntime-{precision}-{threads}t"] = lambda x, s=session: tuple(s.run(None, {"image": x}))
            compiled = core.compile_model(path, "CPU", {"INFERENCE_NUM_THREADS": threads})
            runs[f"openvino-{precision}-{threads}t"] = lambda x, c=compiled: tuple(
                c({"image": x})[c.output(i)] for i in range(2))
    return runs


def test_every_backend_and_precision_decodes_on_every_other(exported):
    loaded, files, tables, images = exported
    server_coder = HyperpriorCoder(*tables, load_index_path(files["side"]))  # the server's own copy
    device_coder = HyperpriorCoder(*tables, load_index_path(files["side"]), implementation="numpy")
    runs = _device_runs(files)
    for image in images:
        streams, symbols = {}, {}
        for name, run in runs.items():
            y, z = run(image)
            payload = device_coder.encode(y[0], z[0])
            indexes, means = device_coder.side_info(z[0])
            streams[name], symbols[name] = payload, np.rint(y[0] - means).astype(np.int32)
        for name, payload in streams.items():  # every server decodes every device's stream exactly
            decoded, _ = server_coder.decode_symbols(payload)
            assert np.array_equal(decoded, symbols[name]), name
        fp32 = symbols["onnxruntime-fp32-1t"]
        for name, value in symbols.items():  # INT8 changes y itself: still decodes, but other symbols
            if "fp32" in name:
                assert (value != fp32).mean() < 1e-3, name


def test_server_graph_on_the_decoded_latent_matches_pytorch(exported):
    import onnxruntime as ort
    import torch

    loaded, files, tables, images = exported
    coder = HyperpriorCoder(*tables, load_index_path(files["side"]))
    device = ort.InferenceSession(str(files["device"]), providers=["CPUExecutionProvider"])
    server = ort.InferenceSession(str(files["server"]), providers=["CPUExecutionProvider"])
    y, z = device.run(None, {"image": images[0]})
    logits = server.run(None, {"y_hat": coder.decode(coder.encode(y[0], z[0]))[None]})[0]
    with torch.no_grad():
        expected = loaded.model(torch.from_numpy(images[0])).numpy()
    np.testing.assert_allclose(logits, expected, atol=2e-2 * np.abs(expected).max())
    assert logits.argmax() == expected.argmax()


@pytest.mark.parametrize("architecture", ["bmshj2018-hyperprior", "mbt2018-mean"])
def test_compressai_image_codecs_code_through_the_index_path_byte_for_byte(architecture, photos):
    """CompressAI's own hyperprior image codecs (untrained weights, spread like a trained model's): the same
    index path reproduces their ``compress()`` bytes; scale-only (bmshj2018) and mean-scale (mbt2018) alike."""
    import torch
    from compressai.zoo import bmshj2018_hyperprior, mbt2018_mean
    from PIL import Image

    from sc2edge.export.hyperprior import gaussian_tables, index_path_of

    torch.manual_seed(0)
    means = architecture == "mbt2018-mean"
    model = (mbt2018_mean if means else bmshj2018_hyperprior)(quality=1, pretrained=False).eval()
    spread_side_networks(model, h_a_gain=6, h_s_gain=4)
    model.update(force=True)
    coder = HyperpriorCoder(EntropyTables.from_bottleneck(model.entropy_bottleneck),
                            gaussian_tables(model.gaussian_conditional), index_path_of(model, means=means))
    image = np.asarray(Image.open(photos[0]).convert("RGB").resize((128, 128)), np.float32) / 255
    x = torch.from_numpy(image).permute(2, 0, 1)[None]
    with torch.no_grad():
        strings = model.compress(x)["strings"]
        y = model.g_a(x)
        z = model.h_a(y if means else torch.abs(y))
        medians = model.entropy_bottleneck._get_medians().reshape(1, -1, 1, 1)
    z_symbols = torch.round(z - medians).int().numpy()[0]
    payload = coder.encode(y.numpy()[0], z_symbols)
    indexes, _ = coder.side_info(z_symbols)
    assert len(np.unique(indexes)) > 10
    assert payload.z == strings[1][0] and payload.y == strings[0][0]
    assert np.array_equal(coder.decode_symbols(payload)[0], np.rint(y.numpy()[0] - coder.side_info(z_symbols)[1]))
