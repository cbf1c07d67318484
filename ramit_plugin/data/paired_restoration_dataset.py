"""Input/target image pairs for low-light enhancement and deraining, paired by name or by a naming rule."""
from typing import Dict, List, Mapping, Tuple

from basicsr.data.transforms import augment, paired_random_crop
from basicsr.utils import img2tensor
from basicsr.utils.registry import DATASET_REGISTRY

from .errors import DatasetError
from .file_list import FileClientDataset, dataset_label, list_images, lmdb_client_opts

# (lq template, gt template) over a shared name part '{}', for layouts whose two sides are named differently.
PAIRING_RULES: Dict[str, Tuple[str, str]] = {
    'same': ('{}', '{}'),  # LOL low/ <-> high/, Rain13K and Restormer's test sets input/ <-> target/
    'rain100h': ('rain-{}', 'norain-{}'),  # original Rain100H/Rain100L: rain-001.png <-> norain-001.png
    've-lol': ('low{}', 'normal{}'),  # VE-LOL / LOL-v2 real captures: low00001.png <-> normal00001.png
}
MAX_LISTED = 5  # unmatched names shown in the error


def _shared_name(key: str, template: str) -> str:
    """The '{}' part of ``key``'s file name under ``template``; a name not following the template stays whole.

    Letting such names pair as they are allows one folder tree to mix layouts (LOL's same-name pairs next to
    VE-LOL's low/normal pairs); anything still unpaired is reported.
    """
    folder, _, name = key.rpartition('/')
    prefix, _, suffix = template.partition('{}')
    if len(name) > len(prefix) + len(suffix) and name.startswith(prefix) and name.endswith(suffix):
        name = name[len(prefix):len(name) - len(suffix)]
    return f'{folder}/{name}' if folder else name


def _index(images: Mapping[str, str], template: str, option: str) -> Dict[str, str]:
    """Shared name -> path; two files with the same shared name on one side are an error."""
    index: Dict[str, str] = {}
    for key, path in images.items():
        shared = _shared_name(key, template)
        if shared in index:
            raise DatasetError(f'{option}: {index[shared]} and {path} both pair as {shared!r}; keep one of them')
        index[shared] = path
    return index


def pair_images(lq_images: Mapping[str, str], gt_images: Mapping[str, str], templates: Tuple[str, str],
                label: str) -> List[Dict[str, str]]:
    """[{'lq_path', 'gt_path'}] sorted by name; a one-line ValueError lists the first files without a partner."""
    lq = _index(lq_images, templates[0], f'{label}: dataroot_lq')
    gt = _index(gt_images, templates[1], f'{label}: dataroot_gt')
    only_lq = sorted(set(lq) - set(gt))
    only_gt = sorted(set(gt) - set(lq))
    if only_lq or only_gt:
        parts = [f'{len(names)} in {side} without a partner: ' + ', '.join(index[n] for n in names[:MAX_LISTED])
                 + (' ...' if len(names) > MAX_LISTED else '')
                 for side, names, index in (('dataroot_lq', only_lq, lq), ('dataroot_gt', only_gt, gt)) if names]
        raise DatasetError(f'{label}: unmatched pairs (lq_tmpl {templates[0]!r}, gt_tmpl {templates[1]!r}): '
                           + '; '.join(parts))
    return [{'lq_path': lq[name], 'gt_path': gt[name]} for name in sorted(lq)]


def pairing_templates(opt: Mapping, label: str) -> Tuple[str, str]:
    """(lq template, gt template) from ``pairing`` (a rule name) or ``lq_tmpl``/``gt_tmpl`` (``filename_tmpl``)."""
    rule = opt.get('pairing', 'same')
    if rule not in PAIRING_RULES:
        raise DatasetError(f'{label}: pairing must be one of {", ".join(PAIRING_RULES)}, got {rule!r}')
    lq_tmpl, gt_tmpl = PAIRING_RULES[rule]
    # basicsr's PairedImageDataset calls the lq template filename_tmpl; accept it for option files moved over.
    lq_tmpl = opt.get('lq_tmpl', opt.get('filename_tmpl', lq_tmpl))
    gt_tmpl = opt.get('gt_tmpl', gt_tmpl)
    for key, tmpl in (('lq_tmpl', lq_tmpl), ('gt_tmpl', gt_tmpl)):
        if not isinstance(tmpl, str) or tmpl.count('{}') != 1:
            raise DatasetError(f"{label}: {key} must contain '{{}}' exactly once (e.g. 'rain-{{}}'), got {tmpl!r}")
    return lq_tmpl, gt_tmpl


@DATASET_REGISTRY.register()
class PairedRestorationDataset(FileClientDataset):
    """Pairs of degraded input (``dataroot_lq``) and target (``dataroot_gt``) images at the same size.

    Disk folders are searched recursively, LMDB folders (``io_backend: {type: lmdb}``) read through basicsr's
    FileClient; ``meta_info_file`` restricts the targets. Pairing: same name (default), a rule ``pairing:
    rain100h | ve-lol``, or templates ``lq_tmpl``/``gt_tmpl`` such as 'rain-{}'/'norain-{}'.
    Training (phase 'train'): random ``gt_size`` crop, ``use_hflip``, ``use_rot``. Returns dict(lq, gt, lq_path,
    gt_path) with RGB float32 [3, H, W] in [0, 1].
    """

    def __init__(self, opt: dict) -> None:
        super().__init__()
        self.opt = opt
        self.label = dataset_label(opt)
        self.train = opt.get('phase') == 'train'
        if self.train and not opt.get('gt_size'):
            raise DatasetError(f'{self.label}: set gt_size (the training patch size)')
        self.io_backend_opt = lmdb_client_opts(opt.get('io_backend'), [opt['dataroot_lq'], opt['dataroot_gt']],
                                              ['lq', 'gt'])
        backend = self.io_backend_opt['type']
        lq_images = list_images(opt['dataroot_lq'], backend, f'{self.label}: dataroot_lq')
        gt_images = list_images(opt['dataroot_gt'], backend, f'{self.label}: dataroot_gt', opt.get('meta_info_file'))
        self.paths = pair_images(lq_images, gt_images, pairing_templates(opt, self.label), self.label)

    def __getitem__(self, index: int) -> Dict[str, object]:
        lq_path, gt_path = self.paths[index]['lq_path'], self.paths[index]['gt_path']
        img_lq, img_gt = self.read_image(lq_path, 'lq', True), self.read_image(gt_path, 'gt', True)
        if img_lq.shape != img_gt.shape:
            raise DatasetError(f'{self.label}: {lq_path} is {img_lq.shape[1]}x{img_lq.shape[0]} but its target '
                               f'{gt_path} is {img_gt.shape[1]}x{img_gt.shape[0]}')
        if self.train:
            img_gt, img_lq = paired_random_crop(img_gt, img_lq, self.opt['gt_size'], 1, gt_path)
            img_gt, img_lq = augment([img_gt, img_lq], self.opt.get('use_hflip', False),
                                     self.opt.get('use_rot', False))
        img_gt, img_lq = img2tensor([img_gt, img_lq], bgr2rgb=True, float32=True)
        return {'lq': img_lq, 'gt': img_gt, 'lq_path': lq_path, 'gt_path': gt_path}

    def __len__(self) -> int:
        return len(self.paths)
