"""The Android app's Kotlin compiled against API stubs written from the real signatures.

No Android SDK, AndroidX or runtime AAR can be fetched here (../shared/docs/apps.md §3), so the app is
type-checked with kotlinc against apps/android/compile-stubs: ExecuTorch Module/Tensor/EValue and LiteRT
CompiledModel/TensorBuffer copied from their sources, and the few Android/AndroidX classes the app uses. R
is generated from the app's res/ folder, so a renamed view id or string fails too. A renamed or mistyped
runtime call fails this test; that it can is checked by compiling a deliberately misspelled copy. This proves
nothing about behaviour on a phone.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from test_apps import APPS, INSTALL, KOTLIN_HOME

ANDROID = APPS / "android"
APP_SRC = ANDROID / "app" / "src" / "main"


def _r_java(res: Path) -> str:
    """org.sr2bit.upscaler.R with one int per layout, id and string in res/ (what aapt2 would generate)."""
    layouts = sorted(p.stem for p in (res / "layout").glob("*.xml"))
    ids = sorted({m for p in res.rglob("*.xml") for m in re.findall(r'@\+id/(\w+)', p.read_text())})
    strings = sorted(re.findall(r'<string name="(\w+)"', "".join(p.read_text() for p in res.glob("values*/strings.xml"))))
    assert layouts and ids and strings, f"nothing found in {res}"

    def block(name: str, names: list[str]) -> str:
        fields = "\n".join(f"        public static final int {n} = 0x7f{i:06x};" for i, n in enumerate(names))
        return f"    public static final class {name} {{\n{fields}\n    }}\n"

    return ("package org.sr2bit.upscaler;\npublic final class R {\n"
            + block("layout", layouts) + block("id", ids) + block("string", strings) + "}\n")


def _compile(app_kotlin: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    kotlinc = KOTLIN_HOME / "bin" / "kotlinc"
    assert kotlinc.is_file(), f"kotlinc not found at {kotlinc}; {INSTALL}"
    generated = tmp_path / "generated" / "org" / "sr2bit" / "upscaler"
    generated.mkdir(parents=True, exist_ok=True)
    (generated / "R.java").write_text(_r_java(APP_SRC / "res"))
    sources = [ANDROID / "compile-stubs", tmp_path / "generated", ANDROID / "core" / "src" / "main" / "kotlin", app_kotlin]
    return subprocess.run([str(kotlinc), "-nowarn", "-jvm-target", "17", *map(str, sources), "-d", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=900)


def test_android_app_compiles_against_the_runtime_and_android_stubs(tmp_path):
    done = _compile(APP_SRC / "kotlin", tmp_path)
    assert done.returncode == 0, done.stderr[-4000:]
    classes = {p.name for p in (tmp_path / "out").rglob("*.class")}
    assert {"MainActivity.class", "PhotoUpscaler.class", "ExecuTorchRunner.class", "LiteRtRunner.class"} <= classes


def test_a_misspelled_or_mistyped_runtime_call_fails_the_compile_check(tmp_path):
    app = tmp_path / "app"
    shutil.copytree(APP_SRC / "kotlin", app)
    runners = next(app.rglob("TileRunners.kt"))
    source = runners.read_text()
    mutants = {"module.execute(method, ": "module.exectue(method, ",     # ExecuTorch Module
               "outputs[0].readFloat()": "outputs[0].readFloats()",      # LiteRT TensorBuffer
               "Tensor.fromBlob(chw, shape)": "Tensor.fromBlob(chw, tile)"}  # Int where ExecuTorch wants a LongArray
    for good, bad in mutants.items():
        assert good in source, f"{good!r} no longer in {runners.name}: update this test"
        source = source.replace(good, bad)
    runners.write_text(source)
    done = _compile(app, tmp_path)
    assert done.returncode != 0
    errors = done.stderr.lower()
    assert "unresolved reference 'exectue' on receiver of type 'module'" in errors, done.stderr[-3000:]
    assert "unresolved reference 'readfloats'" in errors, done.stderr[-3000:]
    assert "fromblob(chw, tile)" in errors and "none of the following candidates" in errors, done.stderr[-3000:]
