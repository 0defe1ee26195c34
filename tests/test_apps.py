"""The sample apps' checkable parts: the Kotlin core compiled and unit-tested, every Swift/Kotlin file parsed.

The Kotlin core's JUnit tests read apps/golden/vectors.json, the same vectors the pipeline is checked
against (tests/test_upscale.py), so tiling, blending, packing and statistics cannot drift apart. The
tools come from the README's install line (npm ``kotlin-compiler`` into .tools/, Debian ``junit4``);
a missing tool fails these tests rather than skipping them. The Android and Xcode projects
themselves cannot be built here (no Android SDK, no Swift toolchain for SwiftUI/Core ML).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
APPS = ROOT / "apps"
KOTLIN_HOME = Path(os.environ.get("KOTLIN_HOME", ROOT / ".tools" / "kotlin" / "node_modules" / "kotlin-compiler"))
JUNIT = [Path("/usr/share/java/junit4.jar"), Path("/usr/share/java/hamcrest-core.jar")]
INSTALL = "see the README's install line (npm kotlin-compiler@2.4.20 into .tools/kotlin, apt-get install junit4)"


def _kotlinc(*args: str) -> None:
    kotlinc = KOTLIN_HOME / "bin" / "kotlinc"
    assert kotlinc.is_file(), f"kotlinc not found at {kotlinc}; {INSTALL}"
    done = subprocess.run([str(kotlinc), *args], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]


def test_kotlin_core_passes_its_golden_vector_streaming_and_tile_choice_tests(tmp_path):
    for jar in JUNIT:
        assert jar.is_file(), f"{jar} missing; {INSTALL}"
    core = APPS / "android" / "core" / "src"
    main, tests = tmp_path / "main.jar", tmp_path / "test.jar"
    _kotlinc(str(core / "main" / "kotlin"), "-d", str(main))
    _kotlinc("-cp", os.pathsep.join(map(str, [main, *JUNIT])), str(core / "test" / "kotlin"), "-d", str(tests))
    classpath = os.pathsep.join(map(str, [main, tests, *JUNIT, KOTLIN_HOME / "lib" / "kotlin-stdlib.jar"]))
    done = subprocess.run(["java", f"-Dgolden={APPS / 'golden' / 'vectors.json'}", "-cp", classpath,
                           "org.junit.runner.JUnitCore", "org.sr2bit.upscaler.core.GoldenVectorsTest",
                           "org.sr2bit.upscaler.core.StreamingTest", "org.sr2bit.upscaler.core.TileChoiceTest"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:]
    assert "OK (18 tests)" in done.stdout


def _parser(language: str):
    import tree_sitter

    module = __import__(f"tree_sitter_{language}")
    return tree_sitter.Parser(tree_sitter.Language(module.language()))


@pytest.mark.parametrize("language, suffix", [("swift", ".swift"), ("kotlin", ".kt")])
def test_every_app_source_parses(language, suffix):
    parser = _parser(language)
    files = sorted(APPS.rglob(f"*{suffix}"))
    assert len(files) >= 5
    broken = [str(f.relative_to(ROOT)) for f in files if parser.parse(f.read_bytes()).root_node.has_error]
    assert broken == []
    assert parser.parse(b"func f( { let = }").root_node.has_error  # the check can fail
