"""Export-readiness: both graphs export to ONNX opset 17, pass onnx.checker, match torch in
ONNX Runtime, and use only ops that TensorRT's ONNX parser supports.

Tolerances (fp32, CPU): encoder outputs max abs diff <= 1e-4 (values are O(0.1-1); the
difference is float reassociation in convs/GridSample), language head <= 1e-4.
"""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from pop3d_ros.model import build_model, get_preset
from pop3d_ros.model.onnx_io import (
    ENCODER_INPUTS,
    ENCODER_OUTPUTS,
    OPSET,
    encoder_example_inputs,
    export_encoder_onnx,
    export_language_head_onnx,
)

# Ops documented as supported by TensorRT 10's ONNX parser (onnx-tensorrt operators.md),
# restricted to those a plain CNN + sampling + MLP graph may legitimately produce.
TENSORRT_OPS = {
    "Add", "BatchNormalization", "Cast", "Clip", "Concat", "Constant", "ConstantOfShape",
    "Conv", "ConvTranspose", "Div", "Expand", "Flatten", "Gather", "Gemm", "GridSample",
    "Identity", "MatMul", "Max", "MaxPool", "Min", "Mul", "Pad", "ReduceMean", "ReduceSum",
    "Relu", "Reshape", "Resize", "Shape", "Sigmoid", "Slice", "Softplus", "Split", "Squeeze",
    "Sub", "Transpose", "Unsqueeze", "Where",
    "Abs", "Softmax",  # the depth-bin lifting: softmax over bins, tent weights relu(1 - |k - b|)
    "Log",  # the heads' softplus as relu(x) - log(sigmoid(|x|)) (heads.ExportSoftplus)
}  # fmt: skip
ATOL = 1e-4


@pytest.fixture(scope="module", params=[0, 16], ids=["bilinear", "depth16"])
def exported(tmp_path_factory, request):
    """cpu-small as is, and with a 16-bin depth lifting (one more input, same outputs)."""
    torch.manual_seed(0)
    cfg = get_preset("cpu-small")
    cfg.lifting.depth_bins = request.param
    model = build_model(cfg).eval()
    out = tmp_path_factory.mktemp("onnx")
    enc = export_encoder_onnx(model, out / "encoder.onnx", cfg)
    lang = export_language_head_onnx(model, out / "language_head.onnx", cfg)
    return cfg, model, enc, lang


def _ops(path):
    m = onnx.load(str(path))
    onnx.checker.check_model(m, full_check=True)
    assert any(o.domain in ("", "ai.onnx") and o.version == OPSET for o in m.opset_import)
    return m, {n.op_type for n in m.graph.node}


def test_encoder_graph_contract_and_ops(exported):
    cfg, _, enc, _ = exported
    m, ops = _ops(enc)
    names = list(ENCODER_INPUTS) + (["sampling_depth"] if cfg.lifting.depth_bins else [])
    assert [i.name for i in m.graph.input] == names
    assert [o.name for o in m.graph.output] == list(ENCODER_OUTPUTS)
    assert "GridSample" in ops
    assert ops <= TENSORRT_OPS, f"ops TensorRT may not parse: {sorted(ops - TENSORRT_OPS)}"
    dims = [d.dim_value for d in m.graph.output[0].type.tensor_type.shape.dim]
    assert dims == [1, *cfg.grid.shape, 2]  # static shapes, no data-dependent dims


def test_encoder_parity_torch_vs_onnxruntime(exported):
    cfg, model, enc, _ = exported
    inputs = encoder_example_inputs(cfg)
    sess = ort.InferenceSession(str(enc), providers=["CPUExecutionProvider"])
    names = cfg.encoder_input_names
    got = sess.run(None, {k: v.numpy() for k, v in zip(names, inputs, strict=True)})
    with torch.no_grad():
        ref = model(*inputs)
    for name, arr in zip(ENCODER_OUTPUTS, got, strict=True):
        expected = ref[name].numpy()
        assert arr.shape == expected.shape and arr.dtype == np.float32
        np.testing.assert_allclose(arr, expected, atol=ATOL, rtol=0, err_msg=name)


def test_language_head_dynamic_n_parity(exported):
    cfg, model, _, lang = exported
    m, ops = _ops(lang)
    assert ops <= TENSORRT_OPS, f"ops TensorRT may not parse: {sorted(ops - TENSORRT_OPS)}"
    assert m.graph.input[0].name == "voxel_features"
    assert m.graph.output[0].name == "language_features"
    assert m.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "N"
    sess = ort.InferenceSession(str(lang), providers=["CPUExecutionProvider"])
    for n in (1, 37, 500):  # N differs from the export example's 16
        x = torch.randn(n, cfg.decoder.voxel_channels)
        (got,) = sess.run(None, {"voxel_features": x.numpy()})
        with torch.no_grad():
            ref = model.language_head(x).numpy()
        assert got.shape == (n, cfg.heads.clip_dim)
        np.testing.assert_allclose(got, ref, atol=ATOL, rtol=0)


def test_export_leaves_training_mode_alone(tmp_path, exported):
    cfg, model, _, _ = exported
    model.train()
    export_language_head_onnx(model, tmp_path / "lh.onnx", cfg)
    assert model.training
    model.eval()


def test_export_softplus_is_softplus_and_leaves_the_model_as_it_was(exported):
    """The exported form of the heads' Softplus computes the same values (fp32, against
    float64 softplus), the model's modules and state dict are untouched, and the graphs hold
    no Softplus node."""
    from pop3d_ros.model.heads import ExportSoftplus, export_activations

    x = torch.cat([torch.linspace(-60, 60, 200001), torch.tensor([0.0, -0.0, 1e-30, -1e-30])])
    want = torch.nn.functional.softplus(x.double(), threshold=1000.0)
    assert torch.max(torch.abs(ExportSoftplus()(x).double() - want)).item() < 1e-6
    assert torch.max(torch.abs(torch.nn.Softplus()(x).double() - want)).item() < 1e-6
    cfg, model, enc, lang = exported
    keys = {k: v.clone() for k, v in model.state_dict().items()}
    with export_activations(model) as n:
        assert n == 2 * cfg.heads.n_blocks  # two heads
        assert not any(isinstance(m, torch.nn.Softplus) for m in model.modules())
    assert sum(isinstance(m, torch.nn.Softplus) for m in model.modules()) == n
    assert all(torch.equal(keys[k], v) for k, v in model.state_dict().items())
    for path in (enc, lang):
        assert "Softplus" not in _ops(path)[1]
