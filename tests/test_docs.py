"""The README and docs/ stay true: short README, every command line parses with the CLI's own parser (a renamed
option cannot leave a stale example), every Python snippet runs, the options reference is the schema's."""
import re
import shlex
from pathlib import Path
from typing import Iterator, List, Tuple

import pytest

from ramit_cli.main import COMMANDS
from ramit_cli.options import options_reference

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / 'README.md', *sorted((REPO / 'docs').glob('*.md'))]
BLOCK = re.compile(r'^```(\w[\w-]*)\n(.*?)^```', re.MULTILINE | re.DOTALL)


def blocks(kind: str) -> Iterator[Tuple[str, str]]:
    """(page name, code) of every fenced block of ``kind`` in the README and docs/."""
    for page in PAGES:
        for lang, code in BLOCK.findall(page.read_text(encoding='utf-8')):
            if lang == kind:
                yield page.name, code


def command_lines() -> List[Tuple[str, str]]:
    """(page, command) of every `ramit`/`basicsr` invocation in bash blocks, continuations joined, comments cut."""
    found = []
    for page, code in blocks('bash'):
        for line in code.replace('\\\n', ' ').replace('$(which basicsr)', 'basicsr').splitlines():
            lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
            lexer.whitespace_split = True
            commands, current = [], []
            for token in lexer:  # '#' starts a comment; &&, |, ; separate commands
                if token in ('&&', '||', '|', ';', '&'):
                    commands.append(current)
                    current = []
                else:
                    current.append(token)
            for words in commands + [current]:
                for i, word in enumerate(words):
                    if word in ('ramit', 'basicsr') and i + 1 < len(words) and words[i + 1] in COMMANDS:
                        found.append((page, shlex.join(words[i:])))
                        break
    return found


def test_readme_is_read_in_ten_minutes() -> None:
    """At most 300 lines; the rest lives in docs/."""
    lines = (REPO / 'README.md').read_text(encoding='utf-8').count('\n')
    assert lines <= 300, f'README.md has {lines} lines'


@pytest.mark.parametrize('page,command', command_lines())
def test_documented_commands_parse(page: str, command: str) -> None:
    """Each documented command line is accepted by the parser of its command."""
    prog, name, *rest = shlex.split(command)
    try:
        COMMANDS[name].parser(f'{prog} {name}').parse_args(rest)
    except SystemExit as exit_:
        if exit_.code:  # --help exits 0
            pytest.fail(f'{page}: `{command}` does not parse (exit {exit_.code})')


def test_docs_name_commands_at_all() -> None:
    """The scan finds the commands (a broken scan would make the parse test vacuous)."""
    names = {command.split()[1] for _, command in command_lines()}
    assert {'train', 'test', 'infer', 'export', 'mm-train', 'make-lmdb'} <= names, names


@pytest.mark.parametrize('page,code', list(blocks('python')))
def test_documented_python_runs(page: str, code: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each ```python block runs as written (blocks that need files are marked python-example instead)."""
    monkeypatch.chdir(tmp_path)
    exec(compile(code, f'{page} snippet', 'exec'), {'__name__': '__docs__'})


def test_options_reference_is_the_schema() -> None:
    """docs/options.md is what the schema generates (python -c "from ramit_cli.options import options_reference;
    print(options_reference(), end='')" > docs/options.md)."""
    assert (REPO / 'docs' / 'options.md').read_text(encoding='utf-8') == options_reference()
