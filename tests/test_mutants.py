"""Deliberate breakages (mutants) that their guarding tests must catch, so a weakened test is noticed.

Each entry of :data:`MUTANTS` is ``(file, old, new, tests)``: in a temporary copy of the working
tree, the one occurrence of ``old`` in ``file`` becomes ``new``, and ``tests`` (pytest arguments,
as few as catch it) must then fail on an assertion. ``old`` must occur exactly once, so a refactor
that moves the guarded code fails here loudly instead of leaving a mutant that no longer applies.
To add one: append an entry whose ``tests`` pass on the real code.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from srcore.paths import DATA_ENV_VAR, data_root

ROOT = Path(__file__).resolve().parents[1]
_LINK_ABOVE_BYTES = 1_000_000  # larger files (the shipped model) are linked, never mutated

MUTANTS = [
    # Resuming must skip the steps already run: a restart gives the same result, only the step count differs.
    ("calibration/dqc.py", "    if state_path is not None and state_path.is_file():", "    if False:",
     "tests/test_dqc.py::test_resume_after_interrupt_is_identical"),
    ("pipeline/train.py", "    if last.is_file():", "    if False:",
     "tests/test_train.py::test_resume_is_bit_identical"),
    # Core ML compaction: decided on numpy's float sort (wrong on AVX512_ICL hosts) ...
    ("targets/coreml.py", 'bits = value.reshape(-1).view(f"u{value.dtype.itemsize}")', "bits = value.reshape(-1)",
     "tests/test_coreml_compaction.py::test_compaction_does_not_depend_on_float_sorting"),
    # ... or a wider index than needed (the shift mask's window one-hot in uint8).
    ("targets/coreml.py", "_PALETTE_BITS = (1, 2, 3, 4, 6, 8)", "_PALETTE_BITS = (8,)",
     "tests/test_coreml_compaction.py::test_compaction_does_not_depend_on_float_sorting"),
    # int8 convolutions: the read-back compares the stored codes (Core ML, TFLite); Core ML's merged constants are equal.
    ("targets/coreml.py", "        match_channel_grids(convs, int8_convs)", "        pass",
     "tests/test_build_coreml.py::test_int8_convolutions_are_stored_exactly_and_scored_as_simulated"),
    ("targets/coreml.py", "first.setdefault(value.SerializeToString(), op.outputs[0].name)",
     "first.setdefault(value.type.SerializeToString(), op.outputs[0].name)",
     "tests/test_build_coreml.py::test_program_compaction_is_lossless_and_shrinks_the_program"),
    # Small constants go inline (no 64-byte blob header each), zero biases are dropped.
    ("targets/coreml.py", 'with mock.patch.object(load, "should_use_weight_file", should_use_weight_file):',
     "with contextlib.nullcontext():",
     "tests/test_build_coreml.py::test_size_breakdown_meets_the_component_budget"),
    ("targets/coreml.py", '                    del op.inputs["bias"]', "                    pass",
     "tests/test_build_coreml.py::test_program_compaction_is_lossless_and_shrinks_the_program"),
    ("targets/base.py", "    half = torch.where(half.float() < peak / 127, torch.nextafter(", "    half = torch.where(half.float() < 0, torch.nextafter(",
     "tests/test_build_coreml.py::test_channel_grid_is_int8_with_fp16_scales_and_idempotent"),
    ("targets/tflite.py", "        match_channel_grids(convs, convolutions)", "        pass",
     "tests/test_build_integer_targets.py::test_tflite_int8_convolutions_are_stored_exactly_and_run_as_simulated"),
    # Dynamic int8 in XNNPACK's float arithmetic: a true quotient 255 / range (PyTorch's scalar / tensor multiplies by a
    # reciprocal and rounds a half-step tie the other way).
    ("calibration/primitives.py", "torch.full_like(span, 255.0) / span", "255.0 / span",
     "tests/test_deploy_outlier.py::test_a_half_step_tie_rounds_as_xnnpack_does"),
    # One decomposition only where every instance of a kept op passes XNNPACK's check.
    ("targets/edge_decompositions.py", "        return check is None or all(check(node)", "        return check is None or any(check(node)",
     "tests/test_edge_decompositions.py::test_the_single_decomposition_is_taken_only_when_every_kept_op_passes"),
    # Training batch workers end on their own (Pool.terminate can kill one holding the result pipe's lock: a hang).
    ("srcore/data.py", "            pool.close()\n", "            pool.terminate()\n",
     "tests/test_train.py::test_closing_a_stream_lets_its_workers_finish"),
    # The official checkpoint's size, sha256 and (where no sha256 is known) structure checks.
    ("srcore/weights.py", "    if size is not None and actual != size:", "    if False:",
     "tests/test_weights.py -k 'wrong_size'"),
    ("srcore/weights.py", "        if file_sha256(path) != sha:", "        if False:",
     "tests/test_weights.py -k 'wrong_sha'"),
    ("srcore/weights.py", '        load_weights_(build_model("light", scale), read_state_dict(path), source=str(path))',
     "        pass", "tests/test_weights.py::test_without_a_known_sha_the_structure_is_checked"),
    # Peak memory: each artifact's own, not the peak of a process that also held the other.
    ("targets/latency.py", '    stats["artifact"]["peak_rss_mb"] = artifact_peak_mb',
     '    stats["artifact"]["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024',
     "tests/test_latency.py::test_artifact_peak_memory_is_read_before_the_baseline_loads"),
    ("targets/latency.py", '"peak_rss_mb": alone["artifact"]["peak_rss_mb"]},', '"peak_rss_mb": r["artifact"]["peak_rss_mb"]},',
     "tests/test_latency.py::test_each_side_reports_its_own_peak_memory"),
    ("targets/latency.py", '            if line.startswith("VmHWM:"):', "            if False:",
     "tests/test_latency.py::test_a_fresh_process_peak_is_its_own_not_its_large_parents"),
    # Exact int4 grids: the offset's sign, its value and its use in the exported Linear.
    ("targets/base.py", "signs = torch.sign(self.offsets).to(torch.int8)", "signs = torch.ones_like(self.offsets).to(torch.int8)",
     "tests/test_int_grid.py::test_exact_codes_decode_to_the_calibrated_grid_and_snapped_ones_do_not"),
    ("targets/base.py", "torch.ones_like(self.offsets), self.offsets.abs())", "torch.ones_like(self.offsets), 2 * self.offsets.abs())",
     "tests/test_int_grid.py::test_exact_codes_decode_to_the_calibrated_grid_and_snapped_ones_do_not"),
    ("targets/base.py", "return main + (offsets if self.groups == 1 else F.linear(offsets, self.expand))", "return main",
     "tests/test_int_grid.py::test_offset_linear_computes_the_linear_it_replaces"),
    # Size floor: no second copy of the int4 codes in the .pte, no module-path tensor names, empty quantization
    # tables or float32 one-hots and mask in the .tflite.
    ("targets/executorch.py", "        delattr(graph_module, target)", "        pass",
     "tests/test_build_integer_targets.py::test_lowered_artifact_has_no_redundant_bytes[executorch]"),
    ("targets/tflite.py", "        _without_inner_tensor_names(flatbuffer)\n", "",
     "tests/test_build_integer_targets.py::test_lowered_artifact_has_no_redundant_bytes[tflite]"),
    ("targets/tflite.py", "        _without_empty_quantization(flatbuffer)\n", "",
     "tests/test_build_integer_targets.py::test_lowered_artifact_has_no_redundant_bytes[tflite]"),
    ("targets/tflite.py", "        narrowed = _with_narrow_constants(flatbuffer)\n",
     "        narrowed = {}\n",
     "tests/test_build_integer_targets.py::test_lowered_artifact_has_no_redundant_bytes[tflite]"),
    # ... and equal vectors written once, the bias tables as FLOAT16.
    ("targets/tflite.py", "        _write(flatbuffer, artifact)\n", "        flatbuffer_utils.write_model(flatbuffer, str(artifact))\n",
     "tests/test_build_integer_targets.py::test_lowered_artifact_has_no_redundant_bytes[tflite]"),
    ("targets/tflite.py", "        return schema.TensorType.FLOAT16\n", "        return None\n",
     "tests/test_build_integer_targets.py::test_lowered_artifact_has_no_redundant_bytes[tflite]"),
    # The .pte's XNNPACK graphs: equal vectors and strings written once, constants under short names.
    ("targets/flatbuffer_sharing.py", "            if key not in self.written:", "            if True:",
     "tests/test_xnnpack_payloads.py::test_compact_payload_is_the_same_graph_in_fewer_bytes"),
    # The FP32 baseline cache must miss when the graph layout changes.
    ("pipeline/build.py", '        "shared_pieces": getattr(backend.config, "shared_pieces", False),\n', "",
     "tests/test_build_integer_targets.py::test_baseline_cache_is_keyed_by_what_shapes_the_baseline"),
    # Shared pieces: equal pieces are equal bytes only with debug handles numbered per graph and constants per piece.
    ("targets/xnnpack_payloads.py", "        node.debugHandle = rank[node.debugHandle]\n", "        pass\n",
     "tests/test_xnnpack_payloads.py::test_compact_payload_is_the_same_graph_in_fewer_bytes"),
    # (XNNPACK's preprocessing once per partition fingerprint would hide it in the .pte: unequal to one without it.)
    ("targets/xnnpack_payloads.py", "        node.debugHandle = rank[node.debugHandle]\n",
     "        node.debugHandle -= min(rank)\n",
     "tests/test_build_integer_targets.py::test_executorch_lowering_shortcuts_write_the_same_pte"),
    ("targets/executorch.py", "        programs = {name: one_constant_per_piece(program) for name, program in programs.items()}",
     "        pass",
     "tests/test_build_integer_targets.py::test_executorch_shared_pieces_are_stored_once_and_run_as_simulated"),
    # ... and only when a tile's last piece has as many windows as the others (it overlaps the one before).
    ("srcore/model.py", "block.window_chunk, block.equal_pieces = split, always_pieces",
     "block.window_chunk, block.equal_pieces = split, False",
     "tests/test_build_integer_targets.py::test_executorch_shared_pieces_are_stored_once_and_run_as_simulated"),
    ("targets/xnnpack_payloads.py", "            constant.offset = constant.size = 0\n", "            pass\n",
     "tests/test_xnnpack_payloads.py::test_compact_payload_is_the_same_graph_in_fewer_bytes"),
    ("targets/xnnpack_payloads.py", 'mock.patch.object(node_visitor, "hashlib", _ShortDigests())', "contextlib.nullcontext()",
     "tests/test_xnnpack_payloads.py::test_the_patch_applies_only_inside_the_context"),
    ("targets/executorch.py", "with (bitset_dependency_views(), compact_xnnpack_payloads(), cuts_sorted_in_place(),\n"
     "              one_decomposition_when_every_kept_op_passes(), preprocess_equal_partitions_once() as preprocessed):",
     "with bitset_dependency_views(), contextlib.nullcontext({}) as preprocessed:",
     "tests/test_xnnpack_payloads.py::test_compact_payload_is_the_same_graph_in_fewer_bytes"),
    # Partitions cut out of a method: its graph re-sorted in place as legalize_graph sorts a copy (users listed in
    # the new order), its code regenerated once after the last cut, not never.
    ("targets/partition_cuts.py", "        node.users.update(dict.fromkeys(users))\n", "        node.users.update(dict.fromkeys(users[::-1]))\n",
     "tests/test_partition_cuts.py::test_the_in_place_sort_is_legalize_graphs_sort"),
    ("targets/partition_cuts.py", "            tagged_graph_module.recompile()\n", "            pass\n",
     "tests/test_partition_cuts.py::test_a_method_is_recompiled_once_after_its_partitions_are_cut"),
    # Equal partitions preprocessed once: equal constants' bytes too.
    ("targets/xnnpack_preprocess_cache.py", "            content = _tensor_key(tensor)", "            content = None",
     "tests/test_build_integer_targets.py::test_executorch_lowering_shortcuts_write_the_same_pte"),
    # The .pte's program: constants inside the XNNPACK graphs, equal vectors once, segments on 16 bytes.
    ("targets/xnnpack_pieces.py", "                elif users and None not in users:", "                elif False:",
     "tests/test_build_integer_targets.py::test_executorch_program_holds_no_constant_an_xnnpack_graph_could_hold"),
    ("targets/pte_program.py", 'with mock.patch.object(_program, "_program_to_flatbuffer", compact):',
     "with contextlib.nullcontext():",
     "tests/test_build_integer_targets.py::test_executorch_program_holds_no_constant_an_xnnpack_graph_could_hold"),
    ("targets/executorch.py", "lowered.to_executorch(ExecutorchBackendConfig(segment_alignment=SEGMENT_ALIGNMENT))",
     "lowered.to_executorch()",
     "tests/test_build_integer_targets.py::test_executorch_program_holds_no_constant_an_xnnpack_graph_could_hold"),
    # int8 convolution codes keep each kernel's sum (nearest rounding darkens the output and lays a 4x4 pattern on it).
    ("targets/base.py", "_sum_preserving_round(exact) if keep_sums else torch.round(exact)", "torch.round(exact)",
     "tests/test_build_coreml.py::test_channel_grid_is_int8_with_fp16_scales_and_idempotent"),
    # TFLite stores exact 2-bit grids in INT2, four codes per byte.
    ("targets/tflite.py", '        return "int2" if bits == 2 and self.config.int_grid is IntGrid.EXACT else self.container',
     "        return self.container",
     "tests/test_build_integer_targets.py::test_tflite_exact_2_bit_grids_are_stored_as_int2_and_run_as_simulated"),
    # A deploy-mode bounds file is evaluated the way it was calibrated.
    ("pipeline/cli.py", "                model = simulate(model, mode)", "                pass",
     "tests/test_cli_eval.py::test_deploy_mode_bounds_are_scored_in_their_deploy_simulation"),
    # Rank-4 graphs: a 6-D window partition or pixel shuffle reaches the artifact (GPU delegates reject rank > 4).
    ("srcore/model.py", "PixelShuffle4D(config.scale))", "nn.PixelShuffle(config.scale))",
     "tests/test_model.py::test_frozen_graph_has_no_tensor_above_rank_4"),
    ("srcore/model.py", "    x = x.reshape(b * (h // ws), ws, w // ws, ws * c).transpose(1, 2)  # (B*nH, nW, ws, ws*C)\n"
     "    return x.reshape(-1, ws * ws, c)",
     "    return x.view(b, h // ws, ws, w // ws, ws, c).permute(0, 1, 3, 2, 4, 5).reshape(-1, ws * ws, c)",
     "tests/test_model.py::test_frozen_graph_has_no_tensor_above_rank_4"),
    ("srcore/model.py", "(attn if bn == nw else attn.view(bn // nw, nw, heads, n, n)).add_(mask)",
     "attn.view(bn // nw, nw, heads, n, n).add_(mask)", "tests/test_model.py::test_frozen_graph_has_no_tensor_above_rank_4"),
    # Tile sizes: the fastest fitting size wins, the memory cap counts, and every method's weights are read back.
    ("pipeline/tile_choice.py",
     "    return min(fitting, key=lambda option: (option.seconds, option.tile, option.workers)), options",
     "    return min(fitting, key=lambda option: (option.tile, option.workers)), options", "tests/test_tile_choice.py"),
    ("pipeline/tile_choice.py", "memory <= max_memory_mb, workers))", "True, workers))", "tests/test_tile_choice.py"),
    # A photo's memory: the prediction counts the blending accumulators, and the bands make no float temporaries.
    ("pipeline/upscale.py", "    accumulators = (4 + 2 * alpha) * 4 * rows * sr_width", "    accumulators = 0",
     "tests/test_upscale_memory.py"),
    ("pipeline/upscale.py", "band[0].nan_to_num_(0.0).clamp_(0.0, 1.0).mul_(2**bit_depth - 1).round_()",
     "band[0].nan_to_num(0.0).clamp(0.0, 1.0).mul(2**bit_depth - 1).round()", "tests/test_upscale_memory.py"),
    # Worker processes: their tiles overlap this process's blending and encoding; outputs come back in order.
    ("pipeline/tile_choice.py",
     'seconds = measured.get("start_s", 0.0) + max(tiles_s, writing_s) if workers > 1 else tiles_s + writing_s',
     "seconds = tiles_s + writing_s", "tests/test_tile_choice.py"),
    ("pipeline/tile_choice.py", 'measured.get("start_s", 0.0) + max(', "max(", "tests/test_tile_choice.py"),
    ("targets/tile_workers.py", "                    yield self._result(pending.popleft())",
     "                    yield self._result(pending.pop())",
     "tests/test_tile_workers.py::test_tile_workers_return_every_tile_in_order_from_several_processes"),
    ("targets/executorch.py", "        for method in self._methods(artifact):  # every method",
     "        for method in self._methods(artifact)[:1]:  # every method",
     "tests/test_build_integer_targets.py::test_lowered_graph_is_rank_4_and_every_method_is_read_back[executorch]"),
    # `pipeline profile` must not write into reports/ unless asked.
    ("pipeline/cli.py", 'default=Path("build/profile")', 'default=Path("reports/profile")',
     "tests/test_latency.py::test_profile_writes_under_build_by_default"),
    # A fresh Debian image has empty package lists.
    ("README.md", "apt-get update -q && apt-get install", "apt-get install",
     "tests/test_install.py::test_install_line_updates_the_package_lists_before_installing"),
    # Ctrl-C is a BaseException: a build or an upscale that cleans up only after Exceptions leaves half-written output.
    ("pipeline/build.py", "    except BaseException:\n        shutil.rmtree(tmp, ignore_errors=True)",
     "    except Exception:\n        shutil.rmtree(tmp, ignore_errors=True)",
     "tests/test_api.py::test_ctrl_c_mid_build_leaves_nothing_and_force_keeps_the_old_folder"),
    # --force must keep the old build folder until the new one is complete.
    ("pipeline/build.py", "    if out.exists():\n        out.rename(old)", "    if out.exists():\n        shutil.rmtree(out)",
     "tests/test_api.py::test_ctrl_c_mid_build_leaves_nothing_and_force_keeps_the_old_folder"),
    ("pipeline/upscale.py", "    except BaseException:", "    except Exception:",
     "tests/test_upscale.py -k ctrl_c"),
    # The layers: an upward import, even inside the SR core's first lines.
    ("srcore/metrics.py", "from __future__ import annotations\n", "from __future__ import annotations\nimport pipeline.cli\n",
     "tests/test_layers.py::test_the_code_imports_only_downward_and_without_cycles"),
    # The Kotlin golden-vector tests check values (JUnit assertions, not `assert`, which runs only with -ea).
    ("apps/android/core/src/main/kotlin/org/sr2bit/upscaler/core/Tiling.kt", "        var w = 1.0\n", "        var w = 1.0\n        return@FloatArray 1.0f\n",
     "tests/test_apps.py::test_kotlin_core_passes_its_golden_vector_streaming_and_tile_choice_tests"),
    # The apps' tile choice keeps the pipeline's 16 px overlap (srcore.tiling.default_overlap), not a quarter tile.
    ("apps/android/core/src/main/kotlin/org/sr2bit/upscaler/core/TileChoice.kt", "    return min(SEAM_OVERLAP, tile / 4)\n",
     "    return tile / 4\n", "tests/test_apps.py::test_kotlin_core_passes_its_golden_vector_streaming_and_tile_choice_tests"),
    # A Core ML package of several tile sizes stores its weights once: the size breakdown counts them once.
    ("targets/coreml.py", "            earlier |= {key for _, key in held}\n", "",
     "tests/test_build_coreml.py::test_one_package_runs_several_tile_sizes"),
]

# How a pytest summary line shows a failed assertion (plain assert, pytest.raises that did not raise or
# did not match, pytest.fail); anything else (ImportError, a missing file) means the copy is broken, not the code.
_ASSERTION = re.compile(r"^FAILED \S+ - (AssertionError|assert |Failed: )", re.M)


@pytest.fixture(scope="module")
def tree_files() -> list[str]:
    """The working tree as git sees it: tracked files plus untracked ones that are not ignored."""
    listing = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout
    return [name for name in listing.split("\0") if name and (ROOT / name).is_file()]


def _copy_tree(files: list[str], dest: Path) -> None:
    for name in files:
        source, target = ROOT / name, dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.stat().st_size > _LINK_ABOVE_BYTES:
            target.symlink_to(source)
        else:
            shutil.copy2(source, target)


@pytest.mark.parametrize("file, old, new, tests", MUTANTS, ids=[f"{m[0]}:{m[3].split('::')[-1]}" for m in MUTANTS])
def test_mutant_is_caught(file, old, new, tests, tree_files, tmp_path):
    source = (ROOT / file).read_text()
    assert source.count(old) == 1, f"{file}: the mutated code {old!r} occurs {source.count(old)} times, not once"
    _copy_tree(tree_files, tmp_path)
    (tmp_path / file).write_text(source.replace(old, new))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env.update(PYTHONPATH=str(tmp_path), COLUMNS="400", PYTHONDONTWRITEBYTECODE="1")
    env.setdefault("KOTLIN_HOME", str(ROOT / ".tools" / "kotlin" / "node_modules" / "kotlin-compiler"))  # not copied
    data = data_root(required=False)
    if data is not None:
        env[DATA_ENV_VAR] = str(data)
    run = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-rf", "-p", "no:cacheprovider", "-n", "0",
                          *shlex.split(tests)], cwd=tmp_path, env=env, capture_output=True, text=True)
    output = run.stdout + run.stderr
    assert run.returncode == 1, f"{tests} did not fail on the mutant (exit {run.returncode}):\n{output[-3000:]}"
    assert _ASSERTION.search(output), f"{tests} failed, but not on an assertion:\n{output[-3000:]}"
