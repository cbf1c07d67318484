"""ramit-plugin: RAMiT (CVPR 2024 Workshops) as a pip-installable BasicSR plugin, also registered into mmengine."""
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
VERSION = next(line.split("'")[1] for line in (HERE / 'ramit_plugin' / '__init__.py').read_text().splitlines()
               if line.startswith('__version__'))

setup(
    name='ramit-plugin',
    version=VERSION,
    description='RAMiT lightweight image restoration network as a BasicSR plugin, also registered into mmengine',
    long_description=(HERE / 'README.md').read_text(encoding='utf-8'),
    long_description_content_type='text/markdown',
    license='Apache-2.0',
    python_requires='>=3.9',
    # The repo's flat options/ folder is installed as ramit_plugin/options, so `ramit demo` and the option
    # files work from a wheel too; MANIFEST.in puts the same files into the sdist.
    packages=find_packages(include=['ramit_plugin', 'ramit_plugin.*', 'ramit_cli']) + ['ramit_plugin.options'],
    package_dir={'ramit_plugin.options': 'options'},
    package_data={'ramit_plugin.options': ['*.yml', '*.py']},
    install_requires=[
        'torch>=2.1',
        'torchvision>=0.16',
        'basicsr==1.4.2',  # ramit_plugin.basicsr_compat and compat.py adapt this version's internals
        'mmengine>=0.10.0',
        'lmdb>=1.4',
        'opencv-python>=4.8',
        'pillow>=9.0',  # image headers (ramit_plugin.image_files)
        'safetensors>=0.4',  # .safetensors checkpoints (ramit_plugin.checkpoint, `ramit convert`)
        'numpy>=1.24',
        'pyyaml>=6.0',
        'tqdm>=4.60',
        'scikit-image>=0.21',
        'tensorboard>=2.14',
        # basicsr imports distutils, which Python 3.12 removed from the standard library.
        'setuptools>=68',
    ],
    extras_require={
        'test': ['pytest>=7.4', 'onnx>=1.15', 'onnxruntime>=1.17', 'build>=1.0', 'spandrel>=0.4.2'],
        'export': ['onnx>=1.15', 'onnxruntime>=1.17'],
        # RAMiT in spandrel's registry (chaiNNer, ComfyUI): ramit_plugin/spandrel.py. No upper bound, so that
        # installing into an app's environment never downgrades the spandrel the app ships.
        'spandrel': ['spandrel>=0.4.2'],
    },
    # ramit_cli parses arguments with the standard library only, so `--help` answers without importing torch.
    entry_points={'console_scripts': ['ramit=ramit_cli.main:main', 'basicsr=ramit_cli.main:main']},
    classifiers=[
        'Programming Language :: Python :: 3',
        'Topic :: Scientific/Engineering :: Image Processing',
        'Framework :: Pytest',
    ],
)
