"""The apps' runtimes match the exporters that write their models.

ExecuTorch makes no forward-compatibility promise for .pte files and a LiteRT runtime older than the
converter may lack what it wrote, so apps/android/gradle/libs.versions.toml (the one place the Android
build names a version) must pin executorch-android and litert to the executorch and ai-edge-litert
versions in pyproject.toml. Core ML's deployment target (targets/coreml.py) must equal the iOS app's
(apps/ios/project.yml): an iOS 18 ML program does not load on iOS 17.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ANDROID = ROOT / "apps" / "android"


def _pins(requirements: list[str]) -> dict[str, str]:
    return dict(re.fullmatch(r"([\w.-]+)==([\w.]+)", r.strip()).groups() for r in requirements if "==" in r)


def test_android_runtime_versions_equal_the_exporters():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    python = {**_pins(extras["executorch"]), **_pins(extras["tflite"])}
    catalog = tomllib.loads((ANDROID / "gradle" / "libs.versions.toml").read_text())
    versions, libraries = catalog["versions"], catalog["libraries"]
    assert libraries["executorch-android"] == {"module": "org.pytorch:executorch-android", "version": {"ref": "executorch"}}
    assert libraries["litert"] == {"module": "com.google.ai.edge.litert:litert", "version": {"ref": "litert"}}
    assert versions["executorch"] == python["executorch"], "executorch-android must equal the pip executorch"
    assert versions["litert"] == python["ai-edge-litert"], "LiteRT (Android) must equal the pip ai-edge-litert"


def test_versions_are_written_once():
    """No Gradle file names a runtime or plugin version outside the catalog."""
    for gradle in ANDROID.rglob("*.gradle.kts"):
        text = gradle.read_text()
        assert not re.search(r'"[\w.-]+:[\w.-]+:\d', text), f"{gradle} pins a dependency version; use the catalog"
        assert not re.search(r'version\s+"\d', text), f"{gradle} pins a plugin version; use the catalog"
    app = (ANDROID / "app" / "build.gradle.kts").read_text()
    assert "libs.executorch.android" in app and "libs.litert" in app
    wrapper = (ANDROID / "gradle" / "wrapper" / "gradle-wrapper.properties").read_text()
    assert re.search(r"distributionUrl=.*gradle-\d+\.\d+(\.\d+)?-bin\.zip", wrapper)


def test_ios_deployment_target_equals_the_core_ml_model():
    exporter = re.findall(r"minimum_deployment_target=ct\.target\.iOS(\d+)", (ROOT / "targets" / "coreml.py").read_text())
    assert len(exporter) == 1, "expected one minimum_deployment_target in targets/coreml.py"
    project = (ROOT / "apps" / "ios" / "project.yml").read_text()
    targets = re.findall(r'(?:iOS|deploymentTarget):\s*"?(\d+)\.\d+"?', project)
    assert targets and set(targets) == {exporter[0]}, f"project.yml targets iOS {targets}, the model iOS {exporter[0]}"
