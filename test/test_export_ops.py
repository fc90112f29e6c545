"""The TensorRT op table and the static op check (no TensorRT needed)."""

import onnx
import pytest
from onnx import TensorProto, helper

from pop3d_ros.export.errors import OnnxFileError
from pop3d_ros.export.op_check import check_onnx_ops, load_op_table, onnx_op_types


def _model(nodes, inputs, outputs, opset=17):
    graph = helper.make_graph(nodes, "g", inputs, outputs)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _vi(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def test_table_names_its_source_and_covers_model_ops():
    table = load_op_table()
    assert table.tensorrt_version.startswith("10.")
    assert "onnx-tensorrt" in table.source and "operators.md" in table.source
    # The ops the POP-3D graphs need, and known-unsupported ones.
    for op in ("Conv", "GridSample", "Softplus", "Gemm", "MatMul", "Resize", "ReduceSum"):
        assert op in table.supported
    for op in ("Unique", "SequenceAt", "StringNormalizer"):
        assert op in table.unsupported and op not in table.supported


def test_supported_graph_passes():
    m = _model([helper.make_node("Relu", ["x"], ["y"])], [_vi("x", [2, 3])], [_vi("y", [2, 3])])
    assert check_onnx_ops(m) == []
    assert onnx_op_types(m) == ["Relu"]


def test_unsupported_custom_domain_and_opset_are_reported():
    nodes = [
        helper.make_node("Unique", ["x"], ["u"]),
        helper.make_node("Unique", ["x"], ["u2"]),  # reported once
        helper.make_node("FusedGemm", ["x", "x"], ["y"], domain="com.microsoft"),
    ]
    m = _model(nodes, [_vi("x", [4])], [_vi("u", None), _vi("u2", None), _vi("y", None)], 8)
    problems = check_onnx_ops(m)
    assert any(p.startswith("Unique ") for p in problems)
    assert sum(p.startswith("Unique ") for p in problems) == 1
    assert any("com.microsoft::FusedGemm" in p for p in problems)
    assert any(p.startswith("opset 8") for p in problems)


def test_op_inside_subgraph_is_found():
    then_g = helper.make_graph(
        [helper.make_node("Unique", ["x"], ["t"])], "then", [], [_vi("t", None)]
    )
    else_g = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["e"])], "else", [], [_vi("e", None)]
    )
    node = helper.make_node("If", ["c"], ["y"], then_branch=then_g, else_branch=else_g)
    c = helper.make_tensor_value_info("c", TensorProto.BOOL, [])
    m = _model([node], [c, _vi("x", [4])], [_vi("y", None)])
    assert any(p.startswith("Unique ") for p in check_onnx_ops(m))


def test_gridsample_rank_restriction():
    def grid_model(rank):
        shape_x = [1, 2] + [4] * (rank - 2)
        shape_g = [1] + [3] * (rank - 2) + [rank - 2]
        node = helper.make_node("GridSample", ["x", "g"], ["y"])
        return _model([node], [_vi("x", shape_x), _vi("g", shape_g)], [_vi("y", None)], 20)

    assert check_onnx_ops(grid_model(4)) == []
    problems = check_onnx_ops(grid_model(5))
    assert len(problems) == 1 and "rank-5" in problems[0]


def test_unreadable_file_is_one_line_error(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00garbage\xff" * 10)
    with pytest.raises(OnnxFileError) as e:
        check_onnx_ops(bad)
    assert str(bad) in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(OnnxFileError, match="file not found"):
        check_onnx_ops(tmp_path / "missing.onnx")
    # sanity: onnx itself agrees the bytes are not a model
    with pytest.raises(Exception):  # noqa: B017
        onnx.load(bad)
