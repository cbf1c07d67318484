# RAMiT low-light enhancement (LOL + VE-LOL) with mmengine's Runner:  ramit mm-train options/mmengine_RAMiT_LLE.py
# Test on LOL eval15:  ramit mm-test options/mmengine_RAMiT_LLE.py --checkpoint W.pth
#   (another set with low/ and high/ folders:  --cfg-options test_dataloader.dataset.data_root=DIR)
# The denoising recipe (options/train_RAMiT_LLE.yml): progressive patches, 1.1M iterations, RGB PSNR/SSIM without
# border crop all come from mmengine_RAMiT_CDN.py; only the task and the paired data differ.
_base_ = 'mmengine_RAMiT_CDN.py'

model = dict(generator=dict(task='lle'))
# LOL (our485) + VE-LOL training pairs; folders are searched recursively, so each side can hold a symlink per set:
# low/LOL -> LOL/our485/low, low/VE-LOL -> ...; high/LOL -> LOL/our485/high, high/VE-LOL -> ...
train_dataloader = dict(dataset=dict(
    _delete_=True,
    type='PairedRestorationDataset',
    data_root='datasets/LLE_train',
    data_prefix=dict(lq='low', gt='high'),
    pairing='ve-lol',  # low00001.png <-> normal00001.png (VE-LOL); LOL's same names pair as they are
    io_backend='disk',
    pipeline=[
        dict(type='PairedRandomCrop', gt_patch_size=128),  # the largest progressive patch
        dict(type='PairedFlipRotate', hflip=True, rotation=True),
        dict(type='PackRestorationInputs'),
    ]))
val_dataloader = dict(dataset=dict(
    _delete_=True,
    type='PairedRestorationDataset',
    data_root='datasets/LOL/eval15',
    data_prefix=dict(lq='low', gt='high'),
    test_mode=True,
    pipeline=[dict(type='PackRestorationInputs')]))
test_dataloader = val_dataloader
