"""ComfyUI custom node pack for RAMiT: registers the RAMiT architecture in spandrel, so ComfyUI's own "Load Upscale
Model" and "Upscale Image (using Model)" nodes open every RAMiT checkpoint (super-resolution x2/x3/x4, denoising,
low-light enhancement, deraining; raw, BasicSR, mmengine or safetensors files) from models/upscale_models/.

It adds no node of its own: ComfyUI's upscale nodes run RAMiT through spandrel, with the paper's evaluation protocol
(mirror padding to the padding unit, crop back), as `ramit infer` does.
"""
import logging

import ramit_spandrel  # noqa: F401  (importing registers RAMiT in spandrel.MAIN_REGISTRY)

NODE_CLASS_MAPPINGS: dict = {}
NODE_DISPLAY_NAME_MAPPINGS: dict = {}

# ComfyUI logs at INFO level on its console: one line that says the architecture is there.
logging.getLogger('ramit_comfyui').info('[ramit_comfyui] RAMiT registered in spandrel: load RAMiT checkpoints with '
                                        '"Load Upscale Model"')
