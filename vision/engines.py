"""Inference engines behind one interface: onnxruntime in fp32 (the default everywhere), and
OpenVINO in bf16 where the CPU computes bf16 natively (AVX512_BF16 or AMX) and the bundle
records that bf16 passed its parity check (``runtime_parity`` in the bundle JSON, written by
``python -m training.parity``).

Both run the same ONNX file. The choice is automatic (``auto``) and ``WILDSCAN_RUNTIME``
overrides it: ``onnxruntime``; ``openvino`` (bf16 where ``auto`` would take it, else fp32);
``openvino-fp32`` or ``openvino-bf16`` to force a precision (the parity check runs the
latter). Every record's ``model`` block says which runtime and precision produced it. An
engine offers what the classifier needs of an onnxruntime session: ``run(output_names,
feeds)``, ``get_inputs()``, ``get_outputs()``.
"""

from __future__ import annotations

import importlib.util
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import BundleError

RUNTIMES = ("auto", "onnxruntime", "openvino", "openvino-fp32", "openvino-bf16")
BF16_FLAGS = ("avx512_bf16", "amx_bf16")
PARITY_KEY = "openvino-bf16"


@dataclass(frozen=True)
class Port:
    """A graph input or output: its name and shape (a dynamic dimension is a string)."""

    name: str
    shape: list


def cpu_flags() -> set[str]:
    """The CPU's feature flags (Linux ``/proc/cpuinfo``; empty elsewhere)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def native_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware (AVX512_BF16 or AMX)."""
    return any(flag in cpu_flags() for flag in BF16_FLAGS)


def openvino_installed() -> bool:
    return importlib.util.find_spec("openvino") is not None


def choose(setting: str, parity: dict | None) -> tuple[str, str]:
    """``(runtime, precision)`` for ``setting`` (one of :data:`RUNTIMES`) and the bundle's
    recorded parity: ``auto`` takes OpenVINO bf16 only when it is installed, the CPU has
    native bf16 and the bundle's bf16 parity check passed; else onnxruntime fp32."""
    if setting not in RUNTIMES:
        raise BundleError(f"WILDSCAN_RUNTIME must be one of {', '.join(RUNTIMES)}, not {setting!r}", "bad_settings")
    bf16_ok = bool((parity or {}).get(PARITY_KEY, {}).get("passed"))
    if setting.startswith("openvino") and not openvino_installed():
        raise BundleError(f"WILDSCAN_RUNTIME={setting} but openvino is not installed (pip install openvino)")
    if setting.startswith("openvino-"):
        return "openvino", setting.split("-", 1)[1]
    if setting == "openvino":
        return "openvino", "bf16" if native_bf16() and bf16_ok else "fp32"
    if setting == "auto" and bf16_ok and native_bf16() and openvino_installed():
        return "openvino", "bf16"
    return "onnxruntime", "fp32"


def runtime_setting_of(model: dict) -> str:
    """The explicit setting that loads exactly the runtime and precision of a record's ``model``
    block (``onnxruntime`` when it names none): what worker processes run and scans key on."""
    runtime = model.get("runtime") or "onnxruntime"
    return "onnxruntime" if runtime == "onnxruntime" else f"openvino-{model.get('precision') or 'fp32'}"


def open_engine(onnx_path: Path, runtime: str, precision: str, *, intra_threads: int = 1, inter_threads: int = 1):
    """An engine for ``onnx_path``: :class:`OrtEngine` or :class:`OpenVinoEngine`."""
    if runtime == "openvino":
        return OpenVinoEngine(onnx_path, precision, threads=intra_threads)
    return OrtEngine(onnx_path, intra_threads=intra_threads, inter_threads=inter_threads)


class OrtEngine:
    """onnxruntime on the CPU, fp32, with explicit thread counts."""

    runtime, precision = "onnxruntime", "fp32"

    def __init__(self, onnx_path: Path, *, intra_threads: int = 1, inter_threads: int = 1):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, intra_threads)
        options.inter_op_num_threads = max(1, inter_threads)
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self.session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        except Exception as e:
            raise BundleError(f"{onnx_path}: onnxruntime cannot load it: {e}") from e

    def run(self, outputs: list[str], feeds: dict[str, Any]) -> list:
        return self.session.run(outputs, feeds)

    def get_inputs(self) -> list[Port]:
        return [Port(i.name, list(i.shape)) for i in self.session.get_inputs()]

    def get_outputs(self) -> list[Port]:
        return [Port(o.name, list(o.shape)) for o in self.session.get_outputs()]


class OpenVinoEngine:
    """OpenVINO on the CPU; ``precision`` ``bf16`` (native bf16 CPUs) or ``fp32`` (OpenVINO
    would otherwise pick bf16 by itself on such CPUs: the hint is always explicit). One
    infer request per calling thread, so concurrent callers never share buffers."""

    runtime = "openvino"

    def __init__(self, onnx_path: Path, precision: str = "bf16", *, threads: int = 1):
        import openvino as ov

        self.precision = precision
        config = {
            "INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32",
            "INFERENCE_NUM_THREADS": max(1, threads),
            "NUM_STREAMS": 1,
            "PERFORMANCE_HINT": "LATENCY",
            # OpenVINO pins its threads to cores by default: two single-thread scan workers then
            # share one core (measured: 2 processes ran no faster than 1; benchmarks/bench_layout.py)
            "ENABLE_CPU_PINNING": False,
        }
        try:
            core = ov.Core()
            self.compiled = core.compile_model(core.read_model(str(onnx_path)), "CPU", config)
        except Exception as e:
            raise BundleError(f"{onnx_path}: OpenVINO cannot load it: {e}") from e
        # what OpenVINO really compiled (it may differ from the hint), so records never claim bf16 falsely
        compiled_precision = str(self.compiled.get_property("INFERENCE_PRECISION_HINT")).lower()
        self.precision = "bf16" if "bf16" in compiled_precision or "bfloat16" in compiled_precision else "fp32"
        self._ports = {port.get_any_name(): port for port in self.compiled.outputs}
        self._local = threading.local()

    def run(self, outputs: list[str], feeds: dict[str, Any]) -> list:
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self.compiled.create_infer_request()
        result = request.infer(feeds)
        return [result[self._ports[name]].copy() for name in outputs]  # the request reuses its buffers

    def get_inputs(self) -> list[Port]:
        return [_port(p) for p in self.compiled.inputs]

    def get_outputs(self) -> list[Port]:
        return [_port(p) for p in self.compiled.outputs]


def _port(port) -> Port:
    shape = [d.get_length() if d.is_static else "batch" for d in port.get_partial_shape()]
    return Port(port.get_any_name(), shape)
