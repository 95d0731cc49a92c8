"""Every shell command the docs show is checked against the parser that will read it.

Commands come from ```bash/sh/console``` fences and inline code spans of README.md, docs/*.md and lab/README.md,
and from the docstrings of scripts/*.py, lab/*.py and lightning_models/**/*.py (indented example lines and
``inline`` spans): a line, backslash continuations joined, run by ``python``/``python3`` (``srun``, ``exec``,
``torchrun`` and ``NAME=value`` prefixes allowed) on a ``scripts/``/``lab/`` file or a ``-m`` module; ``&&``, ``;``
and `` | `` split a line into commands. Placeholders become files this test writes into a scratch working folder:
``<name>``/``<experiment>`` the iris MLP classifier, ``CKPT``/``CHECKPOINT``/``<ckpt>``/``<path.ckpt>``/
``<run>/checkpoints/<ckpt>`` a 2-epoch iris checkpoint at ``lightning_logs/iris_mlp_classifier/version_0/``,
``../shared/data`` and ``/path/to/data`` tiny Fashion-MNIST files, ``data/wine.csv``, ``my.csv``, ``data/my_images``,
``flowers.csv``, the ``my_pkg/*.py`` files docs/extending.md shows, a sweep's ``best.yaml``; ``--config ...``,
``--space ...``, ``--data-dir ...`` a representative value; synopsis forms ``a|b|c`` (every alternative is checked),
``[--opt VALUE]`` (checked as given) and ``DIR``/``FILE``/``INPUT``/``PATH``/``A``/``B``. Another ``<...>`` fails.

The one skip rule: a command with an elided positional argument (a bare ``...`` not after an option, as in
``python scripts/train.py ...``) is prose, not a command, and is left out.

Per kind: ``scripts/train.py STAGE ...`` (and torchrun's) runs ``lightning_models.training.train_cli.main`` with ``--print_config``
appended, which parses and validates every option and config file and exits 0, building nothing. Other scripts run
in-process (``runpy``) with ``argparse.ArgumentParser.parse_args``/``parse_known_args`` patched to parse for real and
then stop the script (an exception carrying the namespace), so a misspelt option fails with argparse's exit status 2
and a correct command runs nothing; the options a script hands on to the experiment's config (lr_find's extras,
evaluate's ``--data.*``, crossval/sweep/compare's after ``--``, compare's config sides) then go through
``--print_config`` too. Cheap commands also run for real (``scripts/machine.py``; ``scripts/predict.py`` on a CSV).
``-m`` modules must import.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import importlib.util
import io
import itertools
import re
import runpy
import shlex
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import IRIS, wine_csv, write_csv, write_folder, write_idx

ROOT = Path(__file__).resolve().parents[1]
MARKDOWN = ["README.md", *sorted(f"docs/{path.name}" for path in (ROOT / "docs").glob("*.md")), "lab/README.md"]
PYTHON = sorted(str(path.relative_to(ROOT)) for pattern in ("scripts/*.py", "lab/*.py", "lightning_models/**/*.py")
                for path in ROOT.glob(pattern))
CHECKPOINT = "lightning_logs/iris_mlp_classifier/version_0/checkpoints/last.ckpt"  # where the fixture's run writes it
RUN_FOLDER = "lightning_logs/iris_mlp_classifier"
PLACEHOLDERS = {"<run>/checkpoints/<ckpt>": CHECKPOINT, "<ckpt>": CHECKPOINT, "<path.ckpt>": CHECKPOINT,
                "<name>": "iris_mlp_classifier", "<experiment>": "iris_mlp_classifier",
                "<folder A>": RUN_FOLDER, "<folder B>": RUN_FOLDER, "/path/to/data": "../shared/data"}
WORDS = {"CKPT": CHECKPOINT, "CHECKPOINT": CHECKPOINT, "INPUT": "flowers.csv", "FILE": "predictions.csv", "DIR": "export",
         "PATH": "lr.yaml", "A": RUN_FOLDER, "B": RUN_FOLDER}
ELIDED_VALUES = {"--config": IRIS, "--space": "configs/sweeps/iris_mlp_classifier.yaml", "--data-dir": "../shared/data"}
SHELL_FENCES = {"bash", "sh", "shell", "console"}
LAUNCHERS = {"srun", "exec", "nohup", "time"}
STARTS = re.compile(r"^(?:\w+=\S+\s+)*(?:(?:srun|exec|nohup|time)\s+)*(?:python3?\s+(?:scripts/|lab/|-m\s)|torchrun\s)")
FLOWERS = [[5.1, 3.5, 1.4, 0.2], [6.4, 3.2, 4.5, 1.5], [6.3, 3.3, 6.0, 2.5]]


@dataclass(frozen=True)
class Command:
    """One command as a doc writes it (``text``) and where (``source``, file:line)."""

    source: str
    text: str


class CommandRefused(AssertionError):
    """The parser refused the command, or the script failed: the message says which and why."""


class Parsed(BaseException):  # not an Exception: a script's own ``except Exception`` must not swallow the stop
    def __init__(self, namespace: argparse.Namespace, extras: list[str]) -> None:
        super().__init__("parsed")
        self.namespace, self.extras = namespace, extras


# Extraction.


def command_lines(text: str) -> Iterator[tuple[int, str]]:
    """(offset of the first line, line) for each line of ``text``, backslash continuations joined."""
    lines, index = text.split("\n"), 0
    while index < len(lines):
        start, line = index, lines[index]
        while line.rstrip().endswith("\\") and index + 1 < len(lines):
            index += 1
            line = line.rstrip()[:-1].rstrip() + " " + lines[index].strip()
        yield start, line.strip()
        index += 1


def split_commands(line: str) -> list[str]:
    """The commands of one shell line: split at `` && ``, `` || ``, `` | `` and ``;``, kept where they start as a
    command of this project does."""
    return [part.strip() for part in re.split(r"\s(?:&&|\|\||\|)\s|;\s", line) if STARTS.match(part.strip())]


def inline_spans(text: str, ticks: str) -> Iterator[tuple[int, str]]:
    """(offset of its line, span) for each inline code span, line breaks inside it joined."""
    for match in re.finditer(rf"(?<!`){ticks}([^`]+?){ticks}(?!`)", text):
        yield text.count("\n", 0, match.start()), " ".join(match.group(1).split())


def markdown_commands(text: str) -> Iterator[tuple[int, str]]:
    """Commands of shell fences (a fence without a language counts) and of inline code spans outside fences."""
    fenced, prose, fence = [], [], None
    for line in text.split("\n"):
        if line.lstrip().startswith("```"):
            fence = (line.strip()[3:].strip() or "bash") if fence is None else None
            line = ""
        fenced.append(line if fence in SHELL_FENCES else "")
        prose.append(line if fence is None else "")
    for offset, line in command_lines("\n".join(fenced)):
        yield from ((offset, command) for command in split_commands(strip_comment(line)))
    for offset, span in inline_spans("\n".join(prose), "`"):
        yield from ((offset, command) for command in split_commands(span))


def docstrings(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """(line of the opening quotes, text) of every module, class and function docstring."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
                yield first.lineno - 1, first.value.value


def python_commands(source: str) -> Iterator[tuple[int, str]]:
    """Commands of docstrings: indented example lines and ``inline`` spans."""
    for start, text in docstrings(ast.parse(source)):
        for offset, line in command_lines(text):
            if line and text.split("\n")[offset].startswith("    "):
                yield from ((start + offset, command) for command in split_commands(strip_comment(line)))
        for offset, span in inline_spans(text, "``"):
            yield from ((start + offset, command) for command in split_commands(span))


def strip_comment(line: str) -> str:
    return re.split(r"\s#\s", line, maxsplit=1)[0]


def doc_commands() -> list[Command]:
    found: list[Command] = []
    for path, extract in [*((path, markdown_commands) for path in MARKDOWN), *((path, python_commands) for path in PYTHON)]:
        for offset, text in extract((ROOT / path).read_text()):
            text = strip_comment(text)
            if not elided(text):
                found.append(Command(f"{path}:{offset + 1}", text))
    repeats = Counter(command.source for command in found)
    seen: Counter[str] = Counter()
    named = []
    for command in found:  # two commands on one line: file:line, file:line#2
        seen[command.source] += 1
        suffix = f"#{seen[command.source]}" if repeats[command.source] > 1 and seen[command.source] > 1 else ""
        named.append(Command(command.source + suffix, command.text))
    return named


def elided(text: str) -> bool:
    words = text.split()
    return any(word == "..." and not words[index - 1].startswith("-") for index, word in enumerate(words) if index)


COMMANDS = doc_commands()


# From doc text to argument lists.


def variants(text: str) -> list[list[str]]:
    """The argument lists ``text`` stands for: placeholders replaced, one list per alternative of ``a|b``."""
    for placeholder, value in PLACEHOLDERS.items():
        text = text.replace(placeholder, value)
    if unknown := re.findall(r"<[A-Za-z][^<>]*>", text):
        raise CommandRefused(f"unknown placeholder {unknown[0]}: add it to PLACEHOLDERS in {Path(__file__).name}")
    text = re.sub(r"\[(--?[\w-]+(?: [A-Z_]+)?)\]", r"\1", text)  # a synopsis's optional [--out DIR]: checked as given
    words = [WORDS.get(word, word) for word in shlex.split(text)]
    words = [ELIDED_VALUES.get(words[index - 1], word) if word == "..." else word for index, word in enumerate(words)]
    choices = [word.split("|") if "|" in word and not word.startswith("{") else [word] for word in words]  # not JSON
    return [list(choice) for choice in itertools.product(*choices)]


def program(words: list[str]) -> tuple[str, list[str]]:
    """(``scripts/x.py``, ``lab/x.py`` or ``-m module``; its arguments) of a command's words."""
    while words and (re.fullmatch(r"\w+=\S*", words[0]) or words[0] in LAUNCHERS):
        words = words[1:]
    if words[0] == "torchrun":
        index = next(index for index, word in enumerate(words) if word.endswith(".py"))
        return words[index], words[index + 1 :]
    if words[1] == "-m":
        return f"-m {words[2]}", words[3:]
    return words[1], words[2:]


# The checks.


@contextlib.contextmanager
def captured() -> Iterator[io.StringIO]:
    output = io.StringIO()
    with contextlib.redirect_stdout(output), contextlib.redirect_stderr(output):
        yield output


def exit_code(error: SystemExit) -> int:
    return error.code if isinstance(error.code, int) else 0 if error.code is None else 1


PRINT_CONFIG_CACHE: dict[tuple[str, ...], str] = {}


def check_train(stage_and_args: list[str]) -> str:
    """``scripts/train.py STAGE ARGS --print_config``: every option and config file parsed, nothing built."""
    from lightning_models.training.train_cli import main

    key = tuple(stage_and_args)
    if key not in PRINT_CONFIG_CACHE:
        with captured() as output:
            try:
                main([*stage_and_args, "--print_config"])
                code = 0
            except SystemExit as error:
                code = exit_code(error)
        if code != 0:
            raise CommandRefused(f"scripts/train.py {shlex.join(stage_and_args)}: exit status {code}\n{output.getvalue()[-2000:]}")
        PRINT_CONFIG_CACHE[key] = output.getvalue()
    return PRINT_CONFIG_CACHE[key]


def check_config_options(stage: str, words: list[str]) -> None:
    """Options a script hands on to the experiment's config, as ``scripts/train.py STAGE`` would read them."""
    from lightning_models.training.run import arguments

    check_train([stage, *arguments(words)])


@contextlib.contextmanager
def stop_after_parsing() -> Iterator[None]:
    """``parse_args``/``parse_known_args`` parse for real and then raise ``Parsed``; nested parses (subparsers,
    ``parse_args`` calling ``parse_known_args``) return as usual."""
    parse_args, parse_known_args = argparse.ArgumentParser.parse_args, argparse.ArgumentParser.parse_known_args
    depth = [0]

    def wrap(parse: Callable, known: bool) -> Callable:
        def parse_then_stop(self: argparse.ArgumentParser, args: list[str] | None = None, namespace: object = None) -> object:
            depth[0] += 1
            try:
                result = parse(self, args, namespace)
            finally:
                depth[0] -= 1
            if depth[0]:
                return result
            raise Parsed(*result) if known else Parsed(result, [])

        return parse_then_stop

    argparse.ArgumentParser.parse_args = wrap(parse_args, known=False)  # type: ignore[method-assign]
    argparse.ArgumentParser.parse_known_args = wrap(parse_known_args, known=True)  # type: ignore[method-assign]
    try:
        yield
    finally:
        argparse.ArgumentParser.parse_args, argparse.ArgumentParser.parse_known_args = parse_args, parse_known_args


def run_script(script: str, args: list[str], parse_only: bool) -> tuple[Parsed | None, str]:
    """Run ``script`` as ``__main__`` with ``args``; with ``parse_only``, up to its parse. Refused on a nonzero exit."""
    argv = sys.argv
    sys.argv = [str(ROOT / script), *args]
    parsed, code = None, 0
    try:
        with captured() as output, stop_after_parsing() if parse_only else contextlib.nullcontext():
            try:
                runpy.run_path(str(ROOT / script), run_name="__main__")
            except Parsed as stop:
                parsed = stop
            except SystemExit as error:
                code = exit_code(error)
    finally:
        sys.argv = argv
    if code != 0:
        raise CommandRefused(f"{script} {shlex.join(args)}: exit status {code}\n{output.getvalue()[-2000:]}")
    return parsed, output.getvalue()


def after_dashes(args: list[str]) -> list[str]:
    return args[args.index("--") + 1 :] if "--" in args else []


def evaluate_config(parsed: Parsed) -> list[str]:
    checkpoint = Path(parsed.namespace.checkpoint)
    config = parsed.namespace.config or (checkpoint if checkpoint.is_dir() else checkpoint.resolve().parent.parent) / "config.yaml"
    return [str(config), *parsed.extras]


def config_sides(parsed: Parsed, args: list[str]) -> list[list[str]]:
    sides = [shlex.split(side) for side in parsed.namespace.sides]
    return [[*side, *after_dashes(args)] for side in sides if side and side[0].endswith((".yaml", ".yml"))]


HANDED_ON: dict[str, Callable[[Parsed, list[str]], list[tuple[str, list[str]]]]] = {
    "scripts/evaluate.py": lambda parsed, args: [("predict", evaluate_config(parsed))],
    "scripts/lr_find.py": lambda parsed, args: [("fit", parsed.extras)],
    "scripts/crossval.py": lambda parsed, args: [("fit", [parsed.namespace.config, *after_dashes(args)])],
    "scripts/sweep.py": lambda parsed, args: [("fit", [parsed.namespace.config, *after_dashes(args)])],
    "scripts/compare.py": lambda parsed, args: [("fit", side) for side in config_sides(parsed, args)],
}


def runs_for_real(script: str, parsed: Parsed | None) -> bool:
    """Commands cheap enough to run: the machine report, and a prediction on a CSV file."""
    if script == "scripts/predict.py" and parsed is not None:
        return str(parsed.namespace.inputs).endswith(".csv") and Path(parsed.namespace.inputs).is_file()
    return False


NO_PARSER = {"scripts/machine.py"}  # scripts without a command line: running them is the check (they are cheap)


def check(text: str) -> list[str]:
    """Check one doc command in the current (scratch) folder; returns what was done per variant. Raises
    ``CommandRefused``."""
    done = []
    for words in variants(text):
        script, args = program(words)
        if script.startswith("-m "):
            if importlib.util.find_spec(script[3:]) is None:
                raise CommandRefused(f"python {script}: no such module")
            done.append(f"import {script[3:]}")
        elif script == "scripts/train.py":
            check_train(args)
            done.append("print_config")
        elif not (ROOT / script).is_file():
            raise CommandRefused(f"{script}: no such script")
        elif script in NO_PARSER:
            _, output = run_script(script, args, parse_only=False)
            assert output.strip(), f"{script} printed nothing"
            done.append("ran")
        else:
            parsed, output = run_script(script, args, parse_only=True)
            if parsed is None:
                if "-h" in args or "--help" in args:
                    done.append("help")
                    continue
                raise CommandRefused(f"{script} returned without parsing a command line: teach {Path(__file__).name} its parser")
            for stage, handed_on in HANDED_ON.get(script, lambda parsed, args: [])(parsed, args):
                check_config_options(stage, handed_on)
            done.append("parsed")
            if runs_for_real(script, parsed):
                _, output = run_script(script, args, parse_only=False)
                out = parsed.namespace.out
                lines = (Path(out).read_text() if out else output).strip().splitlines()
                rows = [line for line in lines if not line.startswith("checkpoint: ")]  # stderr's line on the file used
                assert len(rows) == len(FLOWERS) + 1, output  # the header and a row per flower
                done.append("ran")
    return done


# The scratch folder and the tests.


@pytest.fixture(scope="session")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A working folder holding what the docs' commands name: configs, data, my_pkg, a trained iris run (once per
    session: a module-scoped one would train again whenever xdist interleaves another module's tests)."""
    root = tmp_path_factory.mktemp("docs_commands")
    work = root / "work"
    (work / "data").mkdir(parents=True)
    (work / "configs").symlink_to(ROOT / "configs")
    write_idx(root / "shared" / "data", train=40, test=20)
    wine_csv(work / "data" / "wine.csv")
    write_csv(work / "my.csv", ["rooms", "city", "price"], [[rooms, city, 10 * rooms + len(city)] for rooms in range(1, 9)
                                                            for city in ("oslo", "lima", "rome")])
    write_folder(work / "data" / "my_images", per_class=4)
    write_csv(work / "flowers.csv", ["sepal_length", "sepal_width", "petal_length", "petal_width"], FLOWERS)
    extending = (ROOT / "docs" / "extending.md").read_text()
    for name, code in re.findall(r"```python\n# (my_pkg/\w+\.py)\n(.*?)```", extending, re.S):
        (work / name).parent.mkdir(exist_ok=True)
        (work / name).write_text(code)
    (work / RUN_FOLDER / "sweep").mkdir(parents=True)
    (work / RUN_FOLDER / "sweep" / "best.yaml").write_text(Path(IRIS).read_text())
    from lightning_models import run

    with pytest.MonkeyPatch.context() as patch, captured():
        patch.chdir(work)  # the run folder lands where the docs' commands look for it
        result = run(IRIS, "--trainer.max_epochs=2", "--progress_bar=null", "--trainer.enable_model_summary=false")
    assert (work / CHECKPOINT).is_file(), result.checkpoints
    return work


def forget_my_pkg() -> None:
    """Drop every imported ``my_pkg`` module: other tests write packages of that name in their own folders."""
    for name in [name for name in sys.modules if name == "my_pkg" or name.startswith("my_pkg.")]:
        del sys.modules[name]


@pytest.fixture
def in_scratch(scratch: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The commands run in the scratch folder, its ``my_pkg`` importable as on the docs' ``PYTHONPATH``."""
    monkeypatch.chdir(scratch)
    monkeypatch.syspath_prepend(str(scratch))
    forget_my_pkg()
    yield scratch
    forget_my_pkg()


def test_the_extractor_reads_fences_spans_and_docstrings() -> None:
    markdown = ("Run `python scripts/machine.py` or `python scripts/train.py ...`:\n\n```bash\n"
                "python scripts/train.py fit \\\n    --config x.yaml  # why\ntensorboard --logdir x && python3 -m venv v\n```\n\n"
                "```python\npython scripts/not_a_command.py\n```\n")
    assert list(markdown_commands(markdown)) == [(3, "python scripts/train.py fit --config x.yaml"), (5, "python3 -m venv v"),
                                                 (0, "python scripts/machine.py"), (0, "python scripts/train.py ...")]
    assert elided("python scripts/train.py ...") and not elided("python scripts/sweep.py --config ...")
    source = 'def f() -> None:\n    """Usage:\n\n        python lab/x.py --a \\\\\n            --b\n    ``python scripts/y.py``\n    """\n'
    assert list(python_commands(source)) == [(3, "python lab/x.py --a --b"), (5, "python scripts/y.py")]


def test_the_docs_show_commands_from_every_kind_of_source() -> None:
    by_file = Counter(command.source.split(":")[0] for command in COMMANDS)
    print(f"\n{len(COMMANDS)} doc commands: " + ", ".join(f"{path} {count}" for path, count in sorted(by_file.items())))
    assert len(COMMANDS) >= 40, by_file  # an extractor that finds nothing must not pass
    assert {"README.md", "scripts/train.py", "docs/extending.md", "lab/README.md"} <= set(by_file), by_file
    assert any("scripts/train.py" in command.text and "\\" not in command.text and command.text.count("--") >= 3
               for command in COMMANDS if command.source.startswith("docs/extending.md"))  # continuation joined


@pytest.mark.parametrize("command", COMMANDS, ids=[command.source for command in COMMANDS])
def test_doc_command_parses(command: Command, in_scratch: Path) -> None:
    failure = None
    try:
        done = check(command.text)
    except CommandRefused as refused:  # failed outside the handler: the report is the refusal, not a chain
        failure = f"{command.source}: {command.text}\n{refused}"
    if failure is not None:
        pytest.fail(failure, pytrace=False)
    print(f"{command.source}: {', '.join(done)}")


def first(predicate: Callable[[Command], bool]) -> Command:
    found = next((command for command in COMMANDS if predicate(command)), None)
    assert found is not None, "no doc command of this kind left: pick another for this test"
    return found


MISSPELT = [  # (a real doc command, the same with one option misspelt, what the refusal names)
    ("train", lambda: first(lambda c: "scripts/train.py fit" in c.text and "--trainer.devices" in c.text),
     lambda text: text.replace("--trainer.devices", "--trainer.devicez"), "devicez"),
    ("script", lambda: first(lambda c: "scripts/sweep.py" in c.text and "--trials" in c.text),
     lambda text: text.replace("--trials", "--trialz"), "--trialz"),
    ("handed_on", lambda: first(lambda c: "scripts/lr_find.py" in c.text and "--data.init_args.data_dir" in c.text),
     lambda text: text.replace("--data.init_args.data_dir", "--data.init_args.data_dirr"), "data_dirr"),
    ("known_args", lambda: first(lambda c: "scripts/evaluate.py" in c.text and "--out" in c.text),
     lambda text: text.replace("--out", "--outt"), "--outt"),
    ("lab", lambda: first(lambda c: c.text.startswith("python lab/reproduce.py --only")),
     lambda text: text.replace("--only", "--onyl"), "--onyl"),
]


@pytest.mark.parametrize("find, misspell, named", [case[1:] for case in MISSPELT], ids=[case[0] for case in MISSPELT])
def test_a_misspelt_option_in_a_doc_is_refused(find: Callable[[], Command], misspell: Callable[[str], str], named: str,
                                               in_scratch: Path) -> None:
    command = find()
    check(command.text)  # as written, it passes
    with pytest.raises(CommandRefused, match=re.escape(named)):
        check(misspell(command.text))
