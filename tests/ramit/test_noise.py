"""Protocol noise (bit-exact to torch.manual_seed(0) + randn), blind training noise, OpenCV gray conversion."""
import numpy as np
import pytest
import torch

from ramit.datasets import DatasetError, rgb_to_gray
from ramit.noise import check_sigma, check_sigma_range, random_sigma_noise, reference_noise


@pytest.mark.parametrize('shape, sigma', [((3, 17, 23), 15), ((3, 32, 32), 25), ((1, 40, 9), 50), ((3, 5, 5), 7.5)])
def test_reference_noise_is_the_papers_seeded_noise_bit_for_bit(shape, sigma):
    torch.manual_seed(0)
    expected = torch.randn(*shape) * sigma / 255
    torch.manual_seed(1234)
    state = torch.get_rng_state()
    noise = reference_noise(shape, sigma)
    assert noise.dtype == torch.float32
    assert torch.equal(noise, expected)
    assert torch.equal(torch.get_rng_state(), state), 'the global RNG must not be touched'


def test_reference_noise_repeats_for_every_image_of_a_size():
    assert torch.equal(reference_noise((3, 8, 8), 25), reference_noise((3, 8, 8), 25))
    assert torch.equal(reference_noise((3, 8, 8), 50), 2 * reference_noise((3, 8, 8), 25))


def test_random_sigma_noise_follows_its_generator_and_range():
    noise, sigma = random_sigma_noise((3, 64, 64), (10, 20), torch.Generator().manual_seed(3))
    again, sigma_again = random_sigma_noise((3, 64, 64), (10, 20), torch.Generator().manual_seed(3))
    assert torch.equal(noise, again) and sigma == sigma_again
    assert 10 <= sigma <= 20
    assert float(noise.std()) * 255 == pytest.approx(sigma, rel=0.03)
    fixed, level = random_sigma_noise((1, 4, 4), (0, 0), torch.Generator().manual_seed(3))
    assert level == 0 and not fixed.any()


def test_rgb_to_gray_uses_opencvs_rgb_weights():
    pure = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255], [10, 20, 30]]], np.uint8)
    # OpenCV's fixed-point 0.299 R + 0.587 G + 0.114 B: red 76, green 150, blue 29 (a BGR mix-up swaps 76 and 29).
    assert rgb_to_gray(pure).tolist() == [[76, 150, 29, 255, 18]]
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    formula = img.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    assert np.abs(rgb_to_gray(img).astype(np.float64) - formula).max() <= 0.5 + 1e-6
    with pytest.raises(DatasetError, match=r'^rgb_to_gray expects an 8- or 16-bit \[H, W, 3\] RGB image, got float32 '
                                           r'\(16, 16, 3\)$'):
        rgb_to_gray(img.astype(np.float32))
    # 16-bit images (the datasets read them as stored) keep their depth.
    deep = rgb_to_gray(pure.astype(np.uint16) * 257)
    assert deep.dtype == np.uint16
    assert np.abs(deep - (pure.astype(np.float64) * 257) @ np.array([0.299, 0.587, 0.114])).max() < 2


@pytest.mark.parametrize('value', [-1, 255.5, 300, 'loud', None])
def test_sigma_outside_0_255_is_a_one_line_error_naming_the_option(value):
    with pytest.raises(DatasetError) as err:
        check_sigma(value, "dataset 'val': sigma")
    assert str(err.value).startswith("dataset 'val': sigma must be a noise level in [0, 255]")
    assert '\n' not in str(err.value)


@pytest.mark.parametrize('value, message', [([0, 300], 'noise level in [0, 255]'), ([50, 0], 'low <= high'),
                                            (25, 'a list [low, high]'), ([1, 2, 3], 'a list [low, high]')])
def test_bad_sigma_ranges_are_named(value, message):
    with pytest.raises(ValueError) as err:
        check_sigma_range(value, 'sigma_range')
    assert str(err.value).startswith('sigma_range must be') and message in str(err.value)
    assert check_sigma_range([0, 50], 'sigma_range') == (0.0, 50.0)
