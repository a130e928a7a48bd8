"""Entropy coding cost for one Entropic Student latent (24 x 55 x 55 = 72,600 symbols), one thread.

Compares the paper's path (``EntropyBottleneck.compress``, which converts tensors and tables to Python lists on
every call) with ``RansCoder`` (tables converted once, indexes cached, symbols via ``ndarray.tolist()``), the
bare compiled coder with every list prepared in advance (the floor), and the decoders (ours pads the payload
with zeros so that a crafted stream cannot make CompressAI's decoder read past it; see runtime/coder.py).

The latent is Laplacian per channel (scales 0.05..1, the shape of trained factorized-prior latents) and the
EntropyBottleneck's density is fitted to it for a few hundred steps, so the rate (bits per symbol) and the
share of escaped values are those of a trained model rather than of random tables.

Usage: python bench/bench_coder.py [--quick] [--fit-steps 300]
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before torch (and numpy) start their thread pools

import torch  # noqa: E402
from compressai.entropy_models import EntropyBottleneck  # noqa: E402

from sc2edge.bench.machine import machine_record  # noqa: E402
from sc2edge.bench.timing import TimingConfig, measure  # noqa: E402
from sc2edge.runtime.coder import (  # noqa: E402
    EntropyTables,
    RansCoder,
    _ans_module,
    _decoder_padding_words,
)

SHAPE = (24, 55, 55)


def fitted_bottleneck(y: torch.Tensor, steps: int) -> EntropyBottleneck:
    """An EntropyBottleneck(24) whose density is trained on ``y`` (rate + quantile loss), then update()d."""
    torch.manual_seed(0)
    eb = EntropyBottleneck(SHAPE[0])
    main = [p for n, p in eb.named_parameters() if not n.endswith("quantiles")]
    optimizer = torch.optim.Adam([{"params": main, "lr": 1e-2}, {"params": [eb.quantiles], "lr": 5e-2}])
    for _ in range(steps):
        optimizer.zero_grad()
        _, likelihoods = eb(y)
        (-torch.log2(likelihoods).mean() + eb.loss()).backward()
        optimizer.step()
    eb.eval()
    eb.update(force=True)
    return eb


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few runs only (smoke test)")
    parser.add_argument("--fit-steps", type=int, default=300, help="density fitting steps. Defaults to 300.")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    config = TimingConfig.quick() if args.quick else TimingConfig(min_time_s=2.0, min_count=50)

    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    scales = torch.linspace(0.05, 1.0, SHAPE[0]).reshape(1, -1, 1, 1)
    laplace = torch.distributions.Laplace(torch.zeros(()), torch.ones(()))
    y = laplace.sample((1, *SHAPE)) * scales + torch.randn(1, SHAPE[0], 1, 1, generator=generator) * 0.3
    eb = fitted_bottleneck(y, args.fit_steps)

    tables = EntropyTables.from_bottleneck(eb)
    coder = RansCoder(tables)
    symbols = torch.round(y - eb.quantiles[:, 0, 1].detach().reshape(1, -1, 1, 1)).int()[0].numpy()
    with torch.no_grad():
        reference = eb.compress(y)[0]
    payload = coder.encode(symbols)
    assert payload == reference, "RansCoder.encode differs from EntropyBottleneck.compress"
    assert (coder.decode(payload, SHAPE) == symbols).all()

    ans = _ans_module()
    encoder, decoder = ans.RansEncoder(), ans.RansDecoder()
    symbol_list, indexes = symbols.ravel().tolist(), coder._channel_indexes(SHAPE)
    tables_lists = (tables.quantized_cdf.tolist(), tables.cdf_length.tolist(), tables.offset.tolist())
    escaped = (symbols < tables.offset[:, None, None]) | (
        symbols >= (tables.offset + tables.cdf_length - 2)[:, None, None])

    stages = {
        "eb.compress(y) (paper's path)": lambda: eb.compress(y),
        "RansCoder.encode(symbols)": lambda: coder.encode(symbols),
        "raw encode_with_indexes, lists ready": lambda: encoder.encode_with_indexes(symbol_list, indexes,
                                                                                    *tables_lists),
        "symbols.tolist() alone": lambda: symbols.ravel().tolist(),
        "eb.decompress(strings) (paper's path)": lambda: eb.decompress([payload], SHAPE[1:]),
        "RansCoder.decode(payload) (padded)": lambda: coder.decode(payload, SHAPE),
        "raw decode_with_indexes, unpadded": lambda: decoder.decode_with_indexes(payload, indexes,
                                                                                 *tables_lists),
    }
    with torch.no_grad():
        results = {name: measure(lambda _, fn=fn: fn(), [None], config) for name, fn in stages.items()}

    record = machine_record(threads=1)
    versions = record["versions"]
    count = symbols.size
    pad = 4 * _decoder_padding_words(count, len(payload) // 4)
    print(f"Entropy coding, latent {SHAPE} = {count} symbols, {record['cpu_model']}, 1 thread "
          f"(torch.set_num_threads(1), OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']})")
    print(f"versions: python {versions['python']}, numpy {versions['numpy']}, torch {versions['torch']}, "
          f"compressai {versions['compressai']}")
    print(f"payload {len(payload)} bytes = {8 * len(payload) / count:.3f} bits/symbol, "
          f"{escaped.mean() * 100:.3f}% escaped; decode padding {pad / 1e6:.2f} MB; "
          f"byte-identical to eb.compress: yes")
    print(f"{'stage':42} {'min ms':>8} {'p50 ms':>8} {'p90 ms':>8} {'n':>5}")
    for name, stats in results.items():
        print(f"{name:42} {stats.min:8.3f} {stats.p50:8.3f} {stats.p90:8.3f} {stats.n:5d}")
    p50 = [stats.p50 for stats in results.values()]
    print(f"p50 ratios: eb.compress / RansCoder.encode {p50[0] / p50[1]:.2f}x, RansCoder.encode / raw encode "
          f"{p50[1] / p50[2]:.2f}x, eb.decompress / RansCoder.decode {p50[4] / p50[5]:.2f}x, "
          f"RansCoder.decode / raw decode {p50[5] / p50[6]:.2f}x")
    print(f"load average during the run: {', '.join(f'{v:.2f}' for v in os.getloadavg())} "
          f"on {os.cpu_count()} cores (other processes inflate p50/p90; min is the least affected)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
