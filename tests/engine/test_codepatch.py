"""`selfimprove.engine.codepatch`: one function replaced, every other byte kept; paths; commands."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from selfimprove.engine.codepatch import (
    confine,
    digests,
    list_functions,
    parse_command,
    replace_function,
    run_command,
)
from selfimprove.errors import CodePatchError, ConfigError

SOURCE = b'''"""Module doc."""
import functools


# helper: keep this comment
@functools.lru_cache(maxsize=None)
def helper(x):  # trailing comment
    return x + 1


class Outer:
    """Doc."""

    # the method below is replaced
    def run(self, y):
        if y:
            return 1
        return 2

    class Inner:
        def run(self):
            return "inner"


def tail():
    return "end"
'''


def _outside_span_unchanged(before: bytes, after: bytes, start: int, end: int) -> None:
    """Bytes of lines < start and > end are identical (compared line by line)."""
    b, a = before.splitlines(keepends=True), after.splitlines(keepends=True)
    assert a[: start - 1] == b[: start - 1]
    tail = len(b) - end
    assert a[len(a) - tail :] == b[len(b) - tail :]


def test_method_replaced_and_rest_byte_identical() -> None:
    patch = replace_function(SOURCE, "Outer.run", "def run(self, y):\n    return 1 if y else 2\n")
    assert patch.qualname == "Outer.run"
    assert b"        return 1 if y else 2\n" in patch.patched  # re-indented into the class
    assert b"    # the method below is replaced\n    def run(self, y):" in patch.patched
    head, _, _ = SOURCE.partition(b"    # the method below is replaced")
    assert patch.patched.startswith(head)
    assert patch.patched.endswith(SOURCE[SOURCE.index(b"    class Inner:") :])
    _outside_span_unchanged(SOURCE, patch.patched, patch.start_line, patch.end_line)
    assert "if y:" in patch.old_code and "1 if y else 2" in patch.new_code
    compile(patch.patched, "x.py", "exec")


def test_decorated_function_gets_the_new_decorators_and_keeps_its_comment() -> None:
    new = """
        def helper(x):
            # no cache any more
            return x + 2
    """
    patch = replace_function(SOURCE, "helper", new)
    text = patch.patched.decode()
    assert "# helper: keep this comment\ndef helper(x):\n    # no cache any more\n" in text
    assert "lru_cache" not in text.split("class Outer")[0].split("import functools")[1]
    assert text.endswith(SOURCE.decode()[SOURCE.decode().index("\n\nclass Outer") :])


def test_crlf_file_keeps_its_line_endings() -> None:
    src = b"def a():\r\n    return 1\r\n\r\n\r\ndef b():\r\n    return 2\r\n"
    patch = replace_function(src, "a", "def a():\n    return 3\n")
    assert patch.patched == b"def a():\r\n    return 3\r\n\r\n\r\ndef b():\r\n    return 2\r\n"


@pytest.mark.parametrize(
    ("name", "code", "message"),
    [
        ("nope", "def nope():\n    pass\n", "has no function 'nope'; functions found: helper"),
        ("run", "def run(self):\n    pass\n", "matches 2 definitions"),
        ("tail", "def other():\n    pass\n", "defines 'other', not 'tail'"),
        ("tail", "def tail(:\n", "does not parse as Python"),
        ("tail", "x = 1\ndef tail():\n    pass\n", "exactly one function definition"),
        ("tail", "# stray\ndef tail():\n    pass\n", "comments outside the function"),
        # libcst parses it; only the compiler knows there is nothing for nonlocal to bind
        ("tail", "def tail():\n    nonlocal x\n    return x\n", "does not compile"),
    ],
)
def test_bad_patches_are_refused(name: str, code: str, message: str) -> None:
    with pytest.raises(CodePatchError, match=message):
        replace_function(SOURCE, name, code)


def test_functions_are_listed_by_dotted_name() -> None:
    assert list_functions(SOURCE) == ["helper", "Outer.run", "Outer.Inner.run", "tail"]
    inner = replace_function(SOURCE, "Outer.Inner.run", "def run(self):\n    return 'x'\n")
    assert b"            return 'x'\n" in inner.patched


def test_confine_refuses_paths_and_links_outside_the_root(tmp_path: Path) -> None:
    root, elsewhere = tmp_path / "root", tmp_path / "elsewhere"
    root.mkdir()
    elsewhere.mkdir()
    (root / "a.py").write_text("x = 1\n")
    (elsewhere / "b.py").write_text("y = 2\n")
    (root / "link.py").symlink_to(elsewhere / "b.py")
    assert confine("a.py", root) == (root / "a.py").resolve()
    for bad in (elsewhere / "b.py", "../elsewhere/b.py", "link.py"):
        with pytest.raises(CodePatchError, match="outside the allowed root"):
            confine(bad, root)
    with pytest.raises(CodePatchError, match="not an existing regular file"):
        confine("missing.py", root)


def test_digests_are_sha256_and_md5() -> None:
    d = digests(b"abc")
    assert d.sha256.startswith("ba7816bf") and d.md5 == "900150983cd24fb0d6963f7d28e17f72"


def test_run_command_reports_exit_value_and_timeout(tmp_path: Path) -> None:
    ok = run_command([sys.executable, "-c", "print('noise'); print(0.25)"], tmp_path)
    assert ok.passed and ok.value == 0.25 and ok.returncode == 0
    bad = run_command([sys.executable, "-c", "raise SystemExit(3)"], tmp_path)
    assert not bad.passed and bad.returncode == 3 and bad.value is None
    slow = run_command(
        [sys.executable, "-c", "import time; time.sleep(30)"], tmp_path, timeout_s=0.5
    )
    assert slow.timed_out and not slow.passed and slow.duration_s < 10
    with pytest.raises(ConfigError, match="cannot run check command"):
        run_command(["/no/such/program"], tmp_path)
    assert parse_command("python -m pytest -q 'a b'") == ["python", "-m", "pytest", "-q", "a b"]
    with pytest.raises(ConfigError, match="cannot split"):
        parse_command("python 'unbalanced")
