"""The README's install and test commands: what CI runs, and runnable on a fresh Debian image."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _readme_commands() -> list[str]:
    block = re.search(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert block, "the README must start with a bash block holding the install and test commands"
    return block.group(1).strip().splitlines()


def test_ci_runs_exactly_the_readme_commands():
    install, test = _readme_commands()
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert f"{install} || exit 1" in ci and test in ci


def test_install_line_updates_the_package_lists_before_installing():
    """A fresh Debian image has empty package lists: `apt-get install` alone finds no junit4 there."""
    install, _ = _readme_commands()
    steps = [step.strip() for step in install.split("&&")]
    apt = [i for i, step in enumerate(steps) if step.startswith("apt-get")]
    assert [steps[i].split()[1] for i in apt] == ["update", "install"], steps
