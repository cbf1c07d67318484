# RAMiT colour denoising (blind Gaussian noise) with mmengine's Runner:  ramit mm-train options/mmengine_RAMiT_CDN.py
# Test on McMaster at sigma 25:  ramit mm-test options/mmengine_RAMiT_CDN.py --checkpoint W.pth
#   another set:  --cfg-options test_dataloader.dataset.data_root=datasets/Kodak24
#   another sigma:  --cfg-options test_dataloader.dataset.pipeline.0.sigma=50
# The paper's recipe as options/train_RAMiT_CDN.yml states it, in iterations (an epoch is 64,000 patches):
# progressive patches 64 -> 96 -> 128 with batch 32 -> 16 -> 8 per GPU from iterations 0, 100k, 300k (epochs 0, 100,
# 200); 1.1M iterations (400 epochs), warm-up 20k, lr halved at 300k, 700k, 900k, 1M (epochs 200, 300, 350, 375).
# Adam, L1, hooks and runtime come from mmengine_RAMiT_SRx2.py; the gray-denoising and low-light configs inherit this.
_base_ = 'mmengine_RAMiT_SRx2.py'

model = dict(
    generator=dict(_delete_=True, type='RAMiT', variant='RAMiT', task='dn'),
    # The dataloader delivers patch 128 at batch 32; each batch is cropped and subsampled to the current stage.
    progressive=dict(iters=[0, 100_000, 300_000], gt_sizes=[64, 96, 128], batch_sizes=[32, 16, 8]))

# DIV2K (800) + Flickr2K (2,650) + BSD500 (400) + WED (4,744) clean images in one folder, searched recursively (e.g.
# a symlink per set), or an LMDB of them (`ramit make-lmdb`, then data_root=datasets/DN_train.lmdb, io_backend='lmdb').
train_dataloader = dict(dataset=dict(
    _delete_=True,
    type='NoisyImageDataset',
    data_root='datasets/DN_train',
    data_prefix=dict(gt=''),
    io_backend='disk',
    pipeline=[
        dict(type='PairedRandomCrop', gt_patch_size=128),  # the largest progressive patch
        dict(type='PairedFlipRotate', hflip=True, rotation=True),
        dict(type='AddGaussianNoise', sigma_range=(0, 50)),  # blind: sigma ~ U[0, 50] per patch, not clipped
        dict(type='PackRestorationInputs'),
    ]))
# The paper's evaluation noise (seed 0 per image): the same noisy inputs, and PSNRs, on every run and machine.
val_dataloader = dict(dataset=dict(
    _delete_=True,
    type='NoisyImageDataset',
    data_root='datasets/McMaster',
    data_prefix=dict(gt=''),
    test_mode=True,
    pipeline=[dict(type='AddGaussianNoise', sigma=25), dict(type='PackRestorationInputs')]))
test_dataloader = val_dataloader

# RGB (gray for GDN), no border crop: the paper's denoising and low-light protocol.
val_evaluator = dict(crop_border=0, test_y_channel=False)
test_evaluator = val_evaluator

train_cfg = dict(max_iters=1_100_000, val_interval=10_000)
param_scheduler = [
    dict(type='LinearLR', start_factor=1.0 / 20_000, by_epoch=False, begin=0, end=20_000),
    dict(type='MultiStepLR', by_epoch=False, begin=0, end=1_100_000,
         milestones=[300_000, 700_000, 900_000, 1_000_000], gamma=0.5),
]
default_hooks = dict(checkpoint=dict(interval=10_000))
