"""CPU ISA detection, INT8 kernel-path naming and the once-per-process warning for non-portable INT8 bundles."""

from __future__ import annotations

import logging

import pytest

from sc2edge.runtime.cpu import SATURATING_PATH, CpuInfo, check_int8_kernel_path, read_cpu, this_cpu

X86 = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: {model}\nflags\t\t: fpu sse4_1 ssse3 {flags}\n\n"
ARM = "processor\t: 0\nFeatures\t: fp asimd {flags}\nCPU part\t: 0xd0c\n"


@pytest.mark.parametrize(("text", "path", "isa"), [
    (X86.format(model="AMD EPYC", flags="avx avx2"), SATURATING_PATH, ("sse4_1", "avx2")),
    (X86.format(model="Xeon", flags="avx2 avx512f avx512bw avx512_vnni"), "avx512-vnni",
     ("sse4_1", "avx2", "avx512f", "avx512bw", "avx512_vnni")),
    (X86.format(model="Core", flags="avx2 avx_vnni"), "avx-vnni", ("sse4_1", "avx2", "avx_vnni")),
    (X86.format(model="Xeon 4th", flags="avx2 avx512_vnni amx_tile amx_int8"), "amx",
     ("sse4_1", "avx2", "avx512_vnni", "amx_int8", "amx_tile")),
    (ARM.format(flags="asimddp"), "arm-dotprod", ("asimd", "asimddp")),
])
def test_kernel_path_from_cpuinfo(tmp_path, text, path, isa):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(text * 2)  # every core repeats its block
    cpu = read_cpu(cpuinfo)
    assert cpu.kernel_path == path and cpu.isa == isa
    assert read_cpu(tmp_path / "missing").kernel_path == "unknown"


def _manifest(recipe: str | None, kernel_path: str | None) -> dict:
    calibration = {"recipe": recipe, "validated_on": {"kernel_path": kernel_path}} if recipe else {"sha256": []}
    return {"model": {"name": f"m-{recipe}-{kernel_path}"}, "calibration": calibration}


def test_non_portable_bundle_warns_once_where_the_kernel_path_differs(caplog):
    here = this_cpu()
    elsewhere = "amx" if here.kernel_path != "amx" else SATURATING_PATH
    with caplog.at_level(logging.WARNING, logger="sc2edge.runtime.cpu"):
        assert check_int8_kernel_path(_manifest("portable", elsewhere)) is None
        assert check_int8_kernel_path(_manifest("vnni", here.kernel_path)) is None
        message = check_int8_kernel_path(_manifest("vnni", elsewhere))
        assert message and elsewhere in message and here.kernel_path in message
        check_int8_kernel_path(_manifest("vnni", elsewhere))
    assert [r.getMessage() for r in caplog.records] == [message]  # once per process


def test_bundles_without_a_recipe_warn_only_on_the_saturating_path():
    saturating = CpuInfo("AMD EPYC", ("avx2",), SATURATING_PATH)
    assert "saturates" in check_int8_kernel_path(_manifest(None, None), saturating)
    assert check_int8_kernel_path(_manifest(None, None), CpuInfo("Xeon", ("avx512_vnni",), "avx512-vnni")) is None
