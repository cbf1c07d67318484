"""PSNR/SSIM in mmengine's METRICS, computed by BasicSR's metric functions on the protocol's uint8 images."""
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
from basicsr.metrics import calculate_psnr, calculate_ssim
from basicsr.utils import tensor2img
from mmengine.evaluator import BaseMetric

from ramit.errors import OptionError

from ..registry import METRICS

FUNCTIONS = {'PSNR': calculate_psnr, 'SSIM': calculate_ssim}


@METRICS.register_module()
class PSNRSSIMMetric(BaseMetric):
    """Mean PSNR and/or SSIM of the predictions against GT.

    The prediction is clamped to [0, 1] and rounded to uint8 (the paper's evaluation protocol), then basicsr's
    ``calculate_psnr``/``calculate_ssim`` run with ``crop_border`` and ``test_y_channel`` (BT.601 Y, as for SR
    and deraining; RGB for denoising and LLE). ``crop_border='scale'`` crops each sample's own scale (its
    metainfo), the SR protocol at every scale.
    """

    default_prefix = ''  # keys 'PSNR' / 'SSIM', e.g. for CheckpointHook(save_best='PSNR')

    def __init__(self, crop_border: Union[int, str] = 0, test_y_channel: bool = False,
                 metrics: Sequence[str] = ('PSNR', 'SSIM'), collect_device: str = 'cpu',
                 prefix: Optional[str] = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        unknown = [m for m in metrics if m not in FUNCTIONS]
        if unknown or not metrics:
            raise OptionError(f"PSNRSSIMMetric: metrics must be a non-empty subset of {', '.join(FUNCTIONS)}, "
                              f'got {list(metrics)}')
        if isinstance(crop_border, str) and crop_border != 'scale':
            raise OptionError(f"PSNRSSIMMetric: crop_border must be a number of pixels or 'scale', got {crop_border!r}")
        self.crop_border = crop_border
        self.test_y_channel = test_y_channel
        self.metrics = tuple(metrics)

    def process(self, data_batch: dict, data_samples: Sequence[dict]) -> None:
        """Score every predicted sample (dicts with 'pred' and 'gt' [C, H, W] tensors in [0, 1])."""
        for sample in data_samples:
            # tensor2img clamps, rounds to uint8 and turns RGB into the BGR order basicsr's Y conversion expects.
            pred, gt = tensor2img([sample['pred'], sample['gt']])
            border = sample['scale'] if self.crop_border == 'scale' else self.crop_border
            self.results.append({name: float(FUNCTIONS[name](pred, gt, border,
                                                             test_y_channel=self.test_y_channel))
                                 for name in self.metrics})

    def compute_metrics(self, results: List[Dict[str, float]]) -> Dict[str, float]:
        """Mean of each metric over all images."""
        return {name: float(np.mean([r[name] for r in results])) for name in self.metrics}
