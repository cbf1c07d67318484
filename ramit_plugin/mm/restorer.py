"""RAMiT in mmengine's MODELS: the network itself, a data preprocessor and a restoration model for the Runner."""
import logging
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from mmengine.logging import MessageHub, print_log
from mmengine.model import BaseDataPreprocessor, BaseModel
from mmengine.structures import BaseDataElement

from ramit.checkpoint import load_weights
from ramit.compilation import CompiledTraining, compile_options
from ramit.errors import CheckpointError, OptionError
from ramit.network import RAMiT
from ramit.protocol import protocol_forward
from ramit.training import ProgressiveSchedule, check_finite_losses, crop_batch, stage_message

from ..registry import MODELS

Tensor = torch.Tensor
PROGRESSIVE_OPTION = 'model.progressive'
# What bounds the progressive stages here: the patches and batches the train dataloader delivers.
PROGRESSIVE_LIMITS = ("the GT patch the train pipeline delivers", 'train_dataloader.batch_size')
# ramit.network.RAMiT, the class BasicSR's ARCH_REGISTRY holds too: both toolboxes build identical networks.
MODELS.register_module(name='RAMiT', module=RAMiT)


@MODELS.register_module()
class RAMiTDataPreprocessor(BaseDataPreprocessor):
    """Move a collated batch to the model's device, scale uint8 images to [0, 1], stack; mixed sizes are zero-padded.

    Mean/std normalisation is not done here: RAMiT normalises inside (``img_norm``) with its published per-task
    statistics, so inputs stay in [0, 1]. The padded extent never reaches the network in predict mode (each
    sample's size is kept in its metainfo as ``input_size`` and the protocol pads it itself).
    """

    def forward(self, data: dict, training: bool = False) -> dict:
        """Cast ``inputs`` (list of [C, H, W] or a [B, C, H, W] tensor) and ``data_samples`` to the device."""
        data = self.cast_data(data)
        inputs = data['inputs']
        samples = data.get('data_samples')
        for sample in samples or ():
            if 'gt' in sample:
                sample.gt = _unit_range(sample.gt)
        if isinstance(inputs, Tensor):
            return dict(inputs=_unit_range(inputs), data_samples=samples)
        height = max(x.shape[-2] for x in inputs)
        width = max(x.shape[-1] for x in inputs)
        batch = torch.stack([F.pad(_unit_range(x), (0, width - x.shape[-1], 0, height - x.shape[-2]))
                             for x in inputs])
        for sample, x in zip(samples or (), inputs):
            sample.set_metainfo(dict(input_size=tuple(x.shape[-2:])))
        return dict(inputs=batch, data_samples=samples)


def _unit_range(img: Tensor) -> Tensor:
    """float32 image in [0, 1]: uint8 images (as other OpenMMLab pipelines pack them) are divided by 255."""
    return img.float() / 255.0 if img.dtype == torch.uint8 else img.float()


@MODELS.register_module()
class RAMiTRestorer(BaseModel):
    """A RAMiT network trained with a pixel loss and evaluated with the paper's protocol (``ramit_plugin.protocol``).

    ``forward(inputs, data_samples, mode)``: 'tensor' returns the raw network output, 'loss' a dict with the
    pixel loss against ``data_samples[i].gt``, 'predict' the samples with ``pred`` set (padded symmetrically to
    the generator's ``pad_unit``, run, cropped to H*s x W*s; not clamped, the metric quantises). ``pretrained``:
    weights for the generator, loaded at construction (keys starting with a prefix in ``pretrained_exclude``
    skipped). ``eval_multiple`` is accepted for older configs only: the padding unit is the generator's.
    ``progressive=dict(iters, gt_sizes, batch_sizes)``: progressive patches as BasicSR's ``train.progressive``; the
    dataloader delivers the largest patch and batch, and each training batch is cropped and subsampled to the
    stage of the current iteration (ramit.training). ``compile``: True, a mode name or
    dict(mode=...) runs the training forward through torch.compile (ramit.compilation: CUDA graphs on one
    GPU in mode 'auto'); validation and test stay uncompiled (their image sizes vary), checkpoints keep plain keys.
    """

    def __init__(self, generator: dict, pixel_loss: Optional[dict] = None,
                 data_preprocessor: Union[dict, BaseDataPreprocessor, None] = None,
                 eval_multiple: Optional[int] = None, pretrained: Optional[str] = None,
                 pretrained_exclude: Sequence[str] = (), progressive: Optional[dict] = None,
                 compile: Union[None, bool, str, dict] = None, init_cfg: Optional[dict] = None) -> None:
        if data_preprocessor is None or isinstance(data_preprocessor, dict):
            data_preprocessor = MODELS.build(data_preprocessor or dict(type='RAMiTDataPreprocessor'))
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.generator = MODELS.build(generator)
        if pretrained:
            # Any form ramit_plugin.checkpoint reads (the authors' raw files too, which mmengine's load_from cannot
            # map onto 'generator.'); e.g. pretrained_exclude=('to_target.',) warm-starts x3/x4 from an x2 model.
            try:
                load_weights(self.generator, pretrained, exclude=pretrained_exclude)
            # e.g. the x2 model an x3/x4 config warm-starts from is not trained yet, or is damaged or diverged
            except CheckpointError as err:
                raise OptionError(f'model.pretrained: {err}') from None
        self.pixel_loss = MODELS.build(pixel_loss or dict(type='L1Loss'))
        if eval_multiple not in (None, self.generator.pad_unit):
            print_log(f'RAMiTRestorer: eval_multiple={eval_multiple} ignored; the protocol pads to the generator\'s '
                      f'pad_unit ({self.generator.pad_unit} = 4 x window_size)', logger='current',
                      level=logging.WARNING)
        self.progressive_opt = progressive
        # The schedule itself is checked now; against the delivered patch and batch at the first training batch.
        self.progressive = None if progressive is None else ProgressiveSchedule.from_options(
            progressive, None, None, self.generator.upscale, PROGRESSIVE_OPTION, PROGRESSIVE_LIMITS)
        self._stage: Optional[int] = None
        self.compile_opt = compile_options(compile, 'model.compile')
        self._compiled: Optional[CompiledTraining] = None

    def _train_forward(self, inputs: Tensor) -> Tensor:
        """The generator on a training batch, compiled on first use (the device is known then) if ``compile``."""
        if self.compile_opt is None:
            return self.generator(inputs)
        if self._compiled is None:
            self._compiled = CompiledTraining(self.generator, inputs.device, self.compile_opt['mode'],
                                              torch.distributed.is_initialized())
            print_log(f'model.compile: training forward compiled with torch.compile (mode {self._compiled.label})',
                      logger='current')
        return self._compiled(inputs)

    def forward(self, inputs: Tensor, data_samples: Optional[List[BaseDataElement]] = None,
                mode: str = 'tensor') -> Union[Tensor, Dict[str, Tensor], List[BaseDataElement]]:
        """Run in mode 'tensor', 'loss' or 'predict' (mmengine's BaseModel contract)."""
        if mode == 'tensor':
            return self.generator(inputs)
        if mode == 'loss':
            target = torch.stack([sample.gt for sample in data_samples]).to(inputs)
            if self.progressive is not None:
                inputs, target = self._progressive_crop(inputs, target)
            loss = self.pixel_loss(self._train_forward(inputs), target)
            # Before the optimizer step: a NaN never reaches the weights, the checkpoints or the best-score file.
            check_finite_losses({'pixel_loss': loss}, MessageHub.get_current_instance().get_info('iter', 0) + 1,
                                'see the work dir for the last checkpoint', torch.distributed.is_initialized())
            return dict(loss=loss)
        if mode == 'predict':
            return self.predict(inputs, data_samples)
        raise OptionError(f"RAMiTRestorer: mode must be 'tensor', 'loss' or 'predict', got {mode!r}")

    @torch.no_grad()
    def predict(self, inputs: Tensor, data_samples: Optional[Sequence[BaseDataElement]] = None
                ) -> List[BaseDataElement]:
        """Restore each sample with the reference protocol and store the output as ``pred`` (new samples if None)."""
        if data_samples is None:
            data_samples = [BaseDataElement() for _ in range(inputs.shape[0])]
        sizes = [sample.metainfo.get('input_size', tuple(inputs.shape[-2:])) for sample in data_samples]
        if all(tuple(size) == tuple(inputs.shape[-2:]) for size in sizes):
            outputs = list(protocol_forward(self.generator, inputs))
        else:
            # Zero-padding from batching must not leak into the protocol's mirror padding: one image at a time.
            outputs = [protocol_forward(self.generator, x[None, :, :h, :w])[0]
                       for x, (h, w) in zip(inputs, sizes)]
        for sample, out in zip(data_samples, outputs):
            sample.pred = out
        return list(data_samples)

    def _progressive_crop(self, inputs: Tensor, target: Tensor) -> Tuple[Tensor, Tensor]:
        """Crop and subsample a training batch to the progressive stage of the current iteration; log switches."""
        scale = self.generator.upscale
        if self._stage is None:
            # A data mismatch found by the loop: `ramit mm-train` prints it as one line.
            ProgressiveSchedule.from_options(self.progressive_opt, min(target.shape[-2:]), target.shape[0], scale,
                                             PROGRESSIVE_OPTION, PROGRESSIVE_LIMITS)
        # The Runner's RuntimeInfoHook records the finished iterations; BasicSR counts the current one from 1.
        current_iter = MessageHub.get_current_instance().get_info('iter', 0) + 1
        stage = self.progressive.stage(current_iter)
        gt_size, batch = self.progressive.sizes(current_iter)
        if stage != self._stage:
            print_log(stage_message(current_iter, gt_size, batch), logger='current')
            self._stage = stage
        return crop_batch(inputs, target, gt_size, batch, scale)
