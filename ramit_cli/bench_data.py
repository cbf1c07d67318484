"""`ramit bench --train --data X.yml`: the train dataloader of a BasicSR option file, alone and feeding training
steps, against synthetic batches (the only part of `ramit bench` that loads basicsr)."""
import argparse
import time
from pathlib import Path
from typing import Callable, List

import torch

import ramit_plugin  # noqa: F401,I001  (first: the torchvision alias basicsr needs; the datasets option files name)
from basicsr.data import build_dataloader, build_dataset
from basicsr.data.data_sampler import EnlargedSampler
from ramit.benchmark import TrainCase, bench_train
from ramit.network import RAMiT

from .options import load_options


class OptionFileBatches:
    """Endless batches of the train dataloader a BasicSR option file describes (its dataset, workers, batch size),
    built as basicsr's train_pipeline builds it (one process); batches come as the model receives them."""

    def __init__(self, path: Path):
        opt = load_options(str(path))
        data_opt = dict(opt['datasets']['train'], phase='train', scale=opt.get('scale', 1))
        self.sampler = EnlargedSampler(build_dataset(data_opt), 1, 0, data_opt.get('dataset_enlarge_ratio', 1))
        self.loader = build_dataloader(self.sampler.dataset, data_opt, num_gpu=int(torch.cuda.is_available()),
                                       dist=False, sampler=self.sampler, seed=opt.get('manual_seed', 0))
        # What the workers hold ready (DataLoader's queue): read once before timing the loader's own pace.
        self.queued = self.loader.num_workers * (self.loader.prefetch_factor or 0)
        self.epoch, self.iterator = 0, iter(self.loader)

    def __iter__(self) -> 'OptionFileBatches':
        return self

    def __next__(self) -> dict:
        try:
            return next(self.iterator)
        except StopIteration:
            self.epoch += 1
            self.sampler.set_epoch(self.epoch)
            self.iterator = iter(self.loader)
            return next(self.iterator)


def bench_loader(batches: OptionFileBatches, count: int) -> dict:
    """Milliseconds per batch of a data loader alone, at its own pace: the batches its workers held ready are
    taken first, untimed."""
    first = next(batches)  # also starts the workers
    for _ in range(batches.queued):
        next(batches)
    start = time.perf_counter()
    for _ in range(count):
        next(batches)
    return dict(ms_per_batch=(time.perf_counter() - start) / count * 1e3, batch=first['lq'].shape[0],
                lq_patch=tuple(first['lq'].shape[-2:]), workers=batches.loader.num_workers)


def data_pipeline(args: argparse.Namespace, build: Callable[[], RAMiT], device: torch.device,
                  rows: List[dict]) -> dict:
    """The option file's train dataloader alone, and feeding the fast path, against the synthetic-batch step."""
    loader = OptionFileBatches(args.data)
    alone = bench_loader(loader, max(args.steps, 10))
    fed = bench_train(build, TrainCase('fast'), alone['batch'], alone['lq_patch'][0], device, args.steps, 3,
                      batches=loader)
    synthetic = bench_train(build, TrainCase('fast'), alone['batch'], alone['lq_patch'][0], device, args.steps, 3)
    result = dict(option_file=str(args.data), loader_ms_per_batch=alone['ms_per_batch'], batch=alone['batch'],
                  workers=alone['workers'], lq_patch=alone['lq_patch'], step_ms_real_data=fed['ms_per_step'],
                  step_ms_synthetic=synthetic['ms_per_step'])
    if not args.json:
        verdict = ('the loader keeps up' if fed['ms_per_step'] <= 1.1 * synthetic['ms_per_step']
                   else 'the loader is the bottleneck: raise num_worker_per_gpu / use LMDB / faster disks')
        print(f"data ({args.data}, batch {alone['batch']}, LR patch {alone['lq_patch'][0]}, {alone['workers']} "
              f"workers): loader alone {alone['ms_per_batch']:.1f} ms/batch; fast fp32 step with real batches "
              f"{fed['ms_per_step']:.1f} ms vs synthetic {synthetic['ms_per_step']:.1f} ms: {verdict}")
    return result
