"""A trained model, made ready to leave PyTorch's training loop: exported (`torch.export`, ONNX run
by onnxruntime), made smaller (dynamic int8 quantization, magnitude pruning), and timed.

Model-agnostic: any eval-mode `nn.Module` taking one tensor. Chapter 19 (labs/production.py)
uses these on its digit CNN; they would serve a sequence model too (quantization covers LSTMs).
"""

from __future__ import annotations

import copy
import io
import time
import warnings

import numpy as np
import torch
from torch import nn
from torch.nn.utils import prune

TOLERANCE = 1e-4  # largest |logit difference| allowed between PyTorch and an exported model
WARM_UP = 10  # runs before timing: first calls allocate, pick kernels, fill caches
ONNX_MISSING = (
    "onnx or onnxruntime cannot be imported here, so the ONNX export and its check are "
    "skipped; everything else works. `pip install onnx onnxruntime onnxscript` brings them."
)


# ---------------------------------------------------------------- export


def onnx_available() -> bool:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def export(model: nn.Module, example: torch.Tensor) -> dict:
    """torch.export's program (.pt2) and an ONNX file run by onnxruntime, each with a dynamic
    batch size, and each checked against the eager model's logits on a batch of 64."""
    batch = torch.export.Dim("batch", max=4096)
    probe = example[:1].repeat(64, 1, 1, 1) + 0.05 * torch.rand(64, *example.shape[1:])
    with torch.no_grad():
        expected = model(probe)
    program = torch.export.export(model, (example,), dynamic_shapes=({0: batch},))
    buffer = io.BytesIO()
    torch.export.save(program, buffer)
    runner = program.module()
    with torch.no_grad():
        export_diff = float((runner(probe) - expected).abs().max())
    out = {
        "files": {"torch.export (.pt2)": buffer.getvalue()},
        "programs": {"torch.export (.pt2)": runner},
        "max_diff": {"torch.export (.pt2)": export_diff},
        "onnx_error": "",
    }
    if not onnx_available():
        out["onnx_error"] = ONNX_MISSING
        return out
    try:
        onnx_bytes = onnx_file(model, example, batch)
        session = onnx_session(onnx_bytes)
        ort_run = lambda x: session.run(None, {"image": np.asarray(x, dtype=np.float32)})[0]  # noqa: E731
        out["files"]["ONNX (onnxruntime)"] = onnx_bytes
        out["programs"]["ONNX (onnxruntime)"] = ort_run
        out["max_diff"]["ONNX (onnxruntime)"] = float(np.abs(ort_run(probe.numpy()) - expected.numpy()).max())
    except Exception as err:  # an exporter that cannot trace this model: say so, keep the rest
        out["onnx_error"] = (
            f"The ONNX export failed ({type(err).__name__}: {err}); the rest of the chapter works."
        )
    return out


def onnx_file(model: nn.Module, example: torch.Tensor, batch) -> bytes:
    """The model as an ONNX file: torch's dynamo exporter (it needs onnxscript), or the older
    TorchScript-based one where onnxscript is missing."""
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # exporter chatter: opset versions, deprecations
        try:
            import onnxscript  # noqa: F401

            program = torch.onnx.export(
                model,
                (example,),
                dynamo=True,
                input_names=["image"],
                output_names=["logits"],
                dynamic_shapes=({0: batch},),
                verbose=False,
            )
            program.save(buffer)
        except ImportError:
            torch.onnx.export(
                model,
                (example,),
                buffer,
                dynamo=False,
                input_names=["image"],
                output_names=["logits"],
                dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
            )
    return buffer.getvalue()


def onnx_session(onnx_bytes: bytes):
    """An onnxruntime session on the CPU, with as many threads as torch uses (a fair race)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.log_severity_level = 3
    return ort.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])


# ---------------------------------------------------------------- smaller


def quantize(model: nn.Module) -> nn.Module:
    """Dynamic int8 quantization: Linear and LSTM weights stored as int8 with a scale, and
    activations quantized on the fly at each call. (torch.ao.quantization is deprecated in
    favour of torchao; this API still ships with torch and needs nothing else.)"""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        from torch.ao.quantization import quantize_dynamic

        return quantize_dynamic(copy.deepcopy(model).eval(), {nn.Linear, nn.LSTM}, dtype=torch.qint8)


def static_quantize(model: nn.Module, examples: torch.Tensor) -> nn.Module | None:
    """Static int8 quantization (FX graph mode): convolutions and Linear layers both in int8,
    activations' scales calibrated once on `examples`. None where this PyTorch has no
    quantized CPU engine."""
    engines = torch.backends.quantized.supported_engines
    engine = next((e for e in ("x86", "fbgemm", "qnnpack") if e in engines), None)
    if engine is None:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from torch.ao.quantization import get_default_qconfig_mapping
        from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

        torch.backends.quantized.engine = engine
        prepared = prepare_fx(copy.deepcopy(model).eval(), get_default_qconfig_mapping(engine), (examples,))
        with torch.no_grad():
            prepared(examples)  # calibration: the activations' ranges
        return convert_fx(prepared)


def sizes_by_quantization(model: nn.Module, examples: torch.Tensor) -> dict:
    """What int8 really saves on one model: its saved size in float32, after dynamic int8
    (Linear layers only) and after static int8 (convolutions too; None where unsupported),
    and the share of its weights that sit in Linear layers."""
    weights = [m.weight for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    linear = sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Linear))
    static = static_quantize(model, examples)
    return {
        "float32": len(state_bytes(model)),
        "int8 dynamic": len(state_bytes(quantize(model))),
        "int8 static": None if static is None else len(state_bytes(static)),
        "linear_share": linear / sum(w.numel() for w in weights),
    }


def prunable(model: nn.Module) -> list[tuple[nn.Module, str]]:
    return [(m, "weight") for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def pruned_copy(model: nn.Module, sparsity: float) -> nn.Module:
    """The smallest `sparsity` of all conv and Linear weights, ranked together, set to zero
    (global magnitude pruning), the masks then made permanent."""
    pruned = copy.deepcopy(model).eval()
    if sparsity > 0:
        params = prunable(pruned)
        prune.global_unstructured(params, pruning_method=prune.L1Unstructured, amount=sparsity)
        for module, name in params:
            prune.remove(module, name)
    return pruned


def sparsity_of(model: nn.Module) -> float:
    weights = [m.weight for m, _ in prunable(model)]
    return float(sum((w == 0).sum() for w in weights) / sum(w.numel() for w in weights))


def state_bytes(model: nn.Module) -> bytes:
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getvalue()


def linear_bytes(model: nn.Module) -> int:
    """Bytes of the Linear layers' saved weights (float32, or int8 with their scales)."""
    linears = (nn.Linear, torch.ao.nn.quantized.dynamic.Linear)
    return sum(len(state_bytes(m)) for m in model.modules() if isinstance(m, linears))


# ---------------------------------------------------------------- timed


def latency_ms(run, batch: int, runs: int, example: torch.Tensor) -> tuple[float, float]:
    """Median and 90th percentile of `runs` timed calls at this batch size, after warm-up."""
    x = example[:1].repeat(batch, 1, 1, 1)
    with torch.no_grad():
        for _ in range(WARM_UP):
            run(x)
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            run(x)
            times.append((time.perf_counter() - start) * 1000)
    return float(np.median(times)), float(np.percentile(times, 90))
