"""Compact XNNPACK payloads (targets.xnnpack_payloads): the same graph in fewer bytes, run to the same outputs."""

import contextlib
import json
from pathlib import Path

import pytest
import torch
from torch import nn

import targets.executorch as executorch_target
from targets.xnnpack_payloads import KEY_DIGITS, compact_xnnpack_payloads
from targets.xnnpack_preprocess_cache import preprocess_equal_partitions_once

pytest.importorskip("executorch")


class Windows(nn.Module):
    """A 4-bit Linear between reshapes and transposes of one shape, as the Swin blocks have them."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.first, self.second = nn.Linear(8, 16), nn.Linear(16, 8)

    def forward(self, x):
        y = self.first(x.reshape(-1, 4, 8)).transpose(1, 2).reshape(-1, 4, 16)
        z = self.second(y).reshape(-1, 4, 8).transpose(1, 2).reshape(x.shape)
        return torch.relu(z) + x


def _lowered(compact: bool, folder: Path, monkeypatch) -> Path:
    """Windows with 4-bit dynamic Linears as two methods (two input sizes) in one .pte, by the target's own
    ``_lower``; without ``compact``, with its compaction turned off."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(
        is_per_channel=True, is_dynamic=True, weight_qmin=-8, weight_qmax=7))
    methods = {}
    for name, rows in (("forward", 8), ("tile_16", 16)):
        example = torch.rand(rows, 4, 8)
        prepared = prepare_pt2e(torch.export.export(Windows().eval(), (example,)).module(), quantizer)
        prepared(example)
        methods[name] = (convert_pt2e(prepared), example)
    path = folder / f"{'compact' if compact else 'plain'}.pte"
    with monkeypatch.context() as patch:
        if not compact:  # and no preprocessing once per fingerprint, which counts on its debug handles by rank
            patch.setattr(executorch_target, "compact_xnnpack_payloads", contextlib.nullcontext)
            patch.setattr(executorch_target, "preprocess_equal_partitions_once", lambda: contextlib.nullcontext({}))
        executorch_target._lower(methods, path)
    return path


def _outputs(path: Path) -> list[torch.Tensor]:
    from executorch.runtime import Runtime

    program = Runtime.get().load_program(path)
    torch.manual_seed(1)
    return [program.load_method(name).execute([torch.rand(rows, 4, 8)])[0]
            for name, rows in (("forward", 8), ("tile_16", 16))]


def test_compact_payload_is_the_same_graph_in_fewer_bytes(tmp_path, monkeypatch):
    plain, compact = _lowered(False, tmp_path, monkeypatch), _lowered(True, tmp_path, monkeypatch)
    (plain_pte, plain_graphs), (compact_pte, compact_graphs) = (executorch_target._decoded(plain),
                                                                executorch_target._decoded(compact))

    assert [name for name, _ in plain_graphs] == [name for name, _ in compact_graphs] == ["forward", "tile_16"]
    keys = {}
    for (_, ours), (_, theirs) in zip(compact_graphs, plain_graphs):
        for short, full in zip(ours["constant_data"], theirs["constant_data"]):
            keys[full["named_key"]] = short["named_key"]
        assert json.dumps(ours).count("named_key") == json.dumps(theirs).count("named_key")
        assert all(entry["size"] > 0 for entry in theirs["constant_data"][1:])
        # ours: renamed, and a named constant's offset and size left at 0 (the runtime reads it by name alone)
        renamed = json.loads(json.dumps(theirs), object_hook=lambda d: {
            **d, "named_key": keys[d["named_key"]], **({"offset": 0, "size": 0} if d["named_key"] else {})}
            if "named_key" in d else d)
        handles = [node.get("debug_handle", 0) for node in renamed["xnodes"]]
        rank = {handle: i for i, handle in enumerate(sorted(set(handles)))}
        for node, handle in zip(renamed["xnodes"], handles):  # numbered by rank: same order, equal ones equal
            node["debug_handle"] = rank[handle]
        for node in ours["xnodes"]:
            node.setdefault("debug_handle", 0)
        assert min(handles) > 0  # ExecuTorch numbers from past 0: the ranks are a change to check
        assert ours == renamed  # every node, value, shape and parameter as ExecuTorch wrote it
    assert any(k.startswith("scale_") for k in keys)  # the int4 Linears' scales are named too
    assert keys.pop("") == ""  # ExecuTorch's placeholder entry 0
    for full, short in keys.items():
        prefix = "scale_" if full.startswith("scale_") else ""
        assert short == full[:len(prefix) + KEY_DIGITS] and len(full) == len(prefix) + 64
    assert sorted(compact_pte.named_data.pte_data) == sorted(keys[k] for k in plain_pte.named_data.pte_data)
    assert len(compact_pte.named_data.buffers) == len(plain_pte.named_data.buffers)  # still one copy per weight

    def graph_bytes(pte):
        return sum(len(blob.data) for blob in pte.program.backend_delegate_data)

    # On these graphs equal vectors written once alone make 0.80 of the bytes, named constants without offset and
    # size alone 0.825, both 0.75: the bound holds only with both.
    assert graph_bytes(compact_pte) < 0.78 * graph_bytes(plain_pte)
    assert compact.stat().st_size < plain.stat().st_size - 0.22 * graph_bytes(plain_pte)
    for ours, theirs in zip(_outputs(compact), _outputs(plain)):
        assert torch.equal(ours, theirs)


def test_the_patch_applies_only_inside_the_context():
    from executorch.backends.xnnpack.operators import node_visitor
    from executorch.backends.xnnpack.serialization import xnnpack_graph_serialize as serialize

    before = (serialize.convert_to_flatbuffer, node_visitor.hashlib)
    with pytest.raises(RuntimeError), compact_xnnpack_payloads():
        assert node_visitor.hashlib.sha256(b"x").hexdigest() == "2d711642b726b044"
        raise RuntimeError("a failed lowering")
    assert (serialize.convert_to_flatbuffer, node_visitor.hashlib) == before


def test_preprocessing_once_per_fingerprint_only_with_compact_payloads():
    """Equal pieces differ in their debug handles until the compact payloads number them by rank: the cache of
    XNNPACK's preprocessing refuses to run without them, and restores ``preprocess`` on the way out."""
    from executorch.backends.xnnpack.xnnpack_preprocess import XnnpackBackend

    before = XnnpackBackend.__dict__["preprocess"]
    with pytest.raises(RuntimeError, match="needs compact_xnnpack_payloads"), preprocess_equal_partitions_once():
        pass
    with pytest.raises(KeyError), compact_xnnpack_payloads(), preprocess_equal_partitions_once() as counts:
        assert XnnpackBackend.__dict__["preprocess"] is not before and counts == {"preprocessed": 0, "reused": 0}
        raise KeyError("a failed lowering")
    assert XnnpackBackend.__dict__["preprocess"] is before
