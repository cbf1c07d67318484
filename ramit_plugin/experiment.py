"""A BasicSR experiment folder: the iterations saved in it, the newest one a run can continue from, and its lock.

``experiments/<name>/models/net_g_<i>.pth`` + ``training_states/<i>.state`` make one saved iteration. A saved
iteration is usable when both files load and the network's weights are finite floats; the newest usable one is what
``--auto_resume`` continues from and what the message of a diverged run points to.
"""
import contextlib
import os
import re
from os import path as osp
from typing import Callable, Iterator, List, Optional, Tuple

from ramit.checkpoint import CheckpointError, read_checkpoint, torch_load, unusable_weights
from ramit.errors import OptionError
from ramit.fileio import exclusive_lock, make_folder
from ramit.training import first_usable

STATE_NAME = re.compile(r'(\d+)\.state$')


def saved_iterations(models_dir: str, states_dir: str) -> List[Tuple[int, str]]:
    """(iteration, training_states/<i>.state) of the iterations saved with both files, newest first."""
    if not osp.isdir(states_dir):
        return []
    found = sorted((int(m.group(1)) for m in map(STATE_NAME.match, os.listdir(states_dir)) if m), reverse=True)
    return [(i, osp.join(states_dir, f'{i}.state')) for i in found
            if osp.isfile(osp.join(models_dir, f'net_g_{i}.pth'))]


def read_training_state(path: str) -> dict:
    """A BasicSR training state loaded on the CPU with weights_only; OptionError naming the file if it is not one."""
    try:
        state = torch_load(path, 'training state')
    except CheckpointError as err:
        raise OptionError(str(err)) from None
    if not isinstance(state, dict) or not isinstance(state.get('iter'), int):
        raise OptionError(f'{path}: not a BasicSR training state (no iteration in it)')
    return state


def _fault(models_dir: str) -> Callable[[str], Optional[str]]:
    """Why a saved iteration (given by its state file) cannot be continued from, or None."""
    def fault(state_path: str) -> Optional[str]:
        iteration = STATE_NAME.search(state_path).group(1)
        model = osp.join(models_dir, f'net_g_{iteration}.pth')
        try:
            read_training_state(state_path)
            weights = read_checkpoint(model, 'params').weights
        except (OptionError, CheckpointError) as err:
            return str(err)
        return unusable_weights(weights, model)
    return fault


def newest_usable(models_dir: str, states_dir: str, note: Callable[[str], None] = lambda line: None,
                  before: Optional[int] = None) -> Optional[Tuple[int, str]]:
    """(iteration, state path) of the newest usable saved iteration (with ``before``, of those saved before that
    iteration); each newer one skipped is noted."""
    saved = [(i, path) for i, path in saved_iterations(models_dir, states_dir) if before is None or i < before]
    return first_usable(saved, _fault(models_dir), note)


@contextlib.contextmanager
def experiment_lock(folder: str, rank: int) -> Iterator[None]:
    """Hold ``<parent>/.<name>.lock`` beside the experiment folder (in the first process of a distributed run).

    Beside, not inside: an existing experiment folder is moved aside when a new run starts, and the lock must not
    move with it. A running experiment whose lock file was deleted is still recognised by its open log file.
    """
    if rank != 0:
        yield
        return
    parent, name = os.path.split(os.path.abspath(folder))
    make_folder(parent)
    with exclusive_lock(os.path.join(parent, f'.{name}.lock'), folder, guarded=folder):
        yield
