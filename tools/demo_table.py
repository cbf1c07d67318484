"""Run `ramit demo` (its defaults: 1000 iterations, ./ramit_demo) and print the PSNR table it ends with, as in the
README's "`ramit demo`" section, so those numbers can be regenerated with one command:

    python tools/demo_table.py                     # minutes on a CPU; the table goes to stdout
    python tools/demo_table.py --workdir /tmp/d    # any `ramit demo` option is passed on

The demo's own output (progress, BasicSR's log) is shown on stderr while it runs. Exit status: the demo's.
"""
import os
import subprocess
import sys
import time
from typing import List, Optional, Tuple


def final_table(output: str) -> str:
    """The last PSNR table in the output of `ramit demo`: from its 'PSNR-' heading to the 'RAMiT ... bicubic' line."""
    lines = output.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith('PSNR-')]
    if not starts:
        raise ValueError('the output of `ramit demo` holds no PSNR table')
    end = next((i for i in range(starts[-1], len(lines)) if lines[i].startswith('RAMiT ')), None)
    if end is None:
        raise ValueError('the PSNR table of `ramit demo` has no verdict line (RAMiT beats / does not beat bicubic)')
    return '\n'.join(lines[starts[-1]:end + 1])


def run_demo(args: List[str]) -> Tuple[int, str]:
    """Run `ramit demo ARGS` in a new process, echoing its output to stderr as it comes; (exit status, output)."""
    proc = subprocess.Popen([sys.executable, '-m', 'ramit_cli', 'demo', *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, bufsize=1,
                            env=dict(os.environ, PYTHONUNBUFFERED='1'))  # lines as they are printed
    output = []
    for line in proc.stdout:
        sys.stderr.write(line)
        output.append(line)
    return proc.wait(), ''.join(output)


def main(argv: Optional[List[str]] = None) -> int:
    """Run the demo, then print its final table and how long it took."""
    start = time.monotonic()
    code, output = run_demo(sys.argv[1:] if argv is None else argv)
    if code != 0:
        print(f'demo_table: `ramit demo` failed (exit status {code}); its output is above', file=sys.stderr)
        return code
    print(final_table(output))
    print(f'(`ramit demo` took {time.monotonic() - start:.0f} s)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
