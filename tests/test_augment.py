"""augment.py: the batched training augmentations on both data paths."""
import numpy as np
import torch
from PIL import Image
from torchvision import transforms as T
from torchvision.transforms import functional as TF

from fakedetect.data.augment import (CROP_ASPECT, ERASE_AREA, AugmentConfig, Augmenter, ItemAugment, color_jitter,
                                     draw_crop_flip, draw_resized_boxes, gaussian_blur, jpeg_recompress, mixup_batch,
                                     resized_crop_flip)
from fakedetect.data.batches import item_transform


def test_default_augmentation_draws_as_the_course_path_did():
    """Crop + flip alone draws exactly what draw_crop_flip drew, and nothing else."""
    params = Augmenter(AugmentConfig()).draw(50, torch.Generator().manual_seed(4))
    offsets, flips = draw_crop_flip(50, torch.Generator().manual_seed(4))
    assert set(params) == {"offsets", "flips"}
    assert torch.equal(params["offsets"], offsets) and torch.equal(params["flips"], flips)


def test_native_crop_keeps_resolution_on_both_paths():
    images = torch.randint(0, 256, (5, 3, 256, 256), dtype=torch.uint8)
    augmenter = Augmenter(AugmentConfig(crop="native", crop_size=224, flip=False))
    params = augmenter.draw(5, torch.Generator().manual_seed(0))
    out = augmenter(images, params)
    assert out.shape == (5, 3, 224, 224) and out.dtype == torch.uint8
    for image, crop, (top, left) in zip(images, out, params["offsets"].T.tolist()):
        assert 0 <= top <= 32 and torch.equal(crop, image[:, top:top + 224, left:left + 224])
    transform = item_transform((0.0,) * 3, (1 / 255,) * 3, True, AugmentConfig(crop="native", crop_size=224))
    item = transform(Image.fromarray(images[0].permute(1, 2, 0).numpy()))
    assert item.shape == (3, 224, 224) and item.dtype == torch.float32


def test_resized_crop_windows_follow_torchvision_random_resized_crop():
    """Areas in [scale, 1] of the image, aspect ratios in [3/4, 4/3], inside the image, and the
    same mean area and position as torchvision's RandomResizedCrop.get_params draws."""
    top, left, height, width = draw_resized_boxes(20000, 256, 0.25, torch.Generator().manual_seed(0)).double()
    area = height * width / 256 ** 2
    assert area.min() >= 0.245 and area.max() <= 1 and (top >= 0).all() and (left >= 0).all()
    assert (top + height).max() <= 256 and (left + width).max() <= 256
    assert CROP_ASPECT[0] - 0.01 <= (width / height).min() and (width / height).max() <= CROP_ASPECT[1] + 0.01
    torch.manual_seed(0)
    reference = torch.tensor([T.RandomResizedCrop.get_params(torch.zeros(3, 256, 256), (0.25, 1.0), CROP_ASPECT)
                              for _ in range(5000)], dtype=torch.float64)
    assert abs(area.mean() - (reference[:, 2] * reference[:, 3] / 256 ** 2).mean()) < 0.01
    assert abs(top.mean() - reference[:, 0].mean()) < 2


def test_resized_crop_resizes_each_window_as_torchvision_does_and_flips():
    images = torch.randint(0, 256, (3, 3, 256, 256), dtype=torch.uint8)
    whole = torch.tensor([[0] * 3, [0] * 3, [256] * 3, [256] * 3])
    assert torch.equal(resized_crop_flip(images, whole, torch.zeros(3, dtype=torch.bool)), images)
    assert torch.equal(resized_crop_flip(images, whole, torch.ones(3, dtype=torch.bool)), images.flip(3))
    window = torch.tensor([[10], [30], [100], [120]])
    out = resized_crop_flip(images[:1], window, torch.zeros(1, dtype=torch.bool))[0]
    expected = TF.resized_crop(images[0], 10, 30, 100, 120, [256, 256], antialias=False)
    assert torch.equal(out[:, 4:-4, 4:-4], expected[:, 4:-4, 4:-4])  # the edges read one pixel beyond the window


def test_resized_crop_is_a_random_resized_crop_on_both_paths():
    config = AugmentConfig(crop="resized", crop_scale=0.5)
    augmenter = Augmenter(config)
    images = torch.randint(0, 256, (4, 3, 256, 256), dtype=torch.uint8)
    params = augmenter.draw(4, torch.Generator().manual_seed(0))
    assert set(params) == {"boxes", "flips"}
    out = augmenter(images, params)
    assert out.shape == images.shape and out.dtype == torch.uint8
    assert torch.equal(out, resized_crop_flip(images, params["boxes"], params["flips"]))
    transform = item_transform((0.0,) * 3, (1 / 255,) * 3, True, config)
    crops = [step for step in transform.transforms if isinstance(step, T.RandomResizedCrop)]
    assert len(crops) == 1 and crops[0].scale == (0.5, 1.0) and crops[0].ratio == CROP_ASPECT
    assert transform(Image.fromarray(images[0].permute(1, 2, 0).numpy())).shape == (3, 256, 256)


def test_color_jitter_matches_torchvision():
    image = torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8)
    factors = torch.tensor([[1.2], [0.7], [1.3]])
    expected = TF.adjust_saturation(TF.adjust_contrast(TF.adjust_brightness(image.float() / 255, 1.2), 0.7), 1.3)
    out = color_jitter(image[None], factors)[0]
    assert out.dtype == torch.uint8
    assert (out.float() - expected * 255).abs().max() <= 1.0
    assert torch.equal(color_jitter(image[None], torch.ones(3, 1))[0], image)


def test_gaussian_blur_matches_torchvision_and_sigma_0_is_identity():
    images = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8)
    out = gaussian_blur(images, torch.tensor([0.0, 2.0]))
    assert out.shape == images.shape and out.dtype == torch.uint8
    assert torch.equal(out[0], images[0])
    expected = TF.gaussian_blur(images[1].float(), kernel_size=19, sigma=2.0)
    assert (out[1].float() - expected).abs().max() <= 1.0
    assert out[1].float().std() < images[1].float().std() / 2


def test_jpeg_recompression_changes_only_the_chosen_images():
    images = torch.randint(0, 256, (3, 3, 64, 64), dtype=torch.uint8)
    out = jpeg_recompress(images, torch.tensor([0, 30, 95]))
    assert out.shape == images.shape and out.dtype == torch.uint8
    assert torch.equal(out[0], images[0])
    errors = [(out[i].float() - images[i].float()).abs().mean().item() for i in (1, 2)]
    assert errors[0] > errors[1] > 0  # lower quality, larger error


def test_photometric_ops_have_the_same_distribution_on_both_paths():
    """Bulk draws and the per-item transform of a flat grey image: same mean and spread of the
    output brightness under jitter, same share of images changed by blur/JPEG."""
    config = AugmentConfig(crop="none", flip=False, jitter=0.4, blur_prob=0.3, jpeg_prob=0.3)
    grey = torch.zeros(3, 32, 32, dtype=torch.uint8)
    grey[:, :, 16:] = 200
    draws = 400
    augmenter = Augmenter(config)
    bulk = augmenter(grey[None].repeat(draws, 1, 1, 1), augmenter.draw(draws, torch.Generator().manual_seed(0)))
    transform = item_transform((0.0,) * 3, (1 / 255,) * 3, True, config)
    pil_image = Image.fromarray(grey.permute(1, 2, 0).numpy())
    torch.manual_seed(0)
    per_item = torch.stack([transform(pil_image).round().to(torch.uint8) for _ in range(draws)])
    assert any(isinstance(step, ItemAugment) for step in transform.transforms)
    bulk_means, item_means = bulk.float().mean((1, 2, 3)), per_item.float().mean((1, 2, 3))
    assert abs(bulk_means.mean() - item_means.mean()) < 4 and abs(bulk_means.std() - item_means.std()) < 4
    edge = slice(13, 19)  # blur and JPEG soften the sharp edge in the middle
    bulk_soft = (bulk[:, 0, :, edge].float().diff(dim=-1).abs().amax((1, 2)) < 150).float().mean()
    item_soft = (per_item[:, 0, :, edge].float().diff(dim=-1).abs().amax((1, 2)) < 150).float().mean()
    assert abs(bulk_soft - item_soft) < 0.1


def test_random_erasing_fills_one_rectangle_with_one_colour_at_the_given_rate():
    images = torch.randint(0, 256, (300, 3, 64, 64), dtype=torch.uint8)
    augmenter = Augmenter(AugmentConfig(crop="none", flip=False, erase_prob=0.4))
    params = augmenter.draw(300, torch.Generator().manual_seed(0), size=64)
    out = augmenter(images, params)
    changed = (out != images).any(1)
    assert 0.3 < changed.any((1, 2)).float().mean() < 0.5
    for image, result, (top, left, height, width), colour in zip(images, out, params["erase"].T.tolist(),
                                                               params["erase_colours"].T):
        box = (slice(None), slice(top, top + height), slice(left, left + width))
        assert torch.equal(result[box], colour.view(3, 1, 1).expand_as(image[box]))
        outside = torch.ones(64, 64, dtype=torch.bool)
        outside[box[1:]] = False
        assert torch.equal(result[:, outside], image[:, outside])
        if height:
            assert ERASE_AREA[0] - 0.01 <= height * width / 64 ** 2 <= ERASE_AREA[1] + 0.02


def test_random_erasing_draws_the_same_boxes_on_both_paths_after_a_native_crop():
    """The per-item path sizes its boxes by the cropped image, as the bulk path does."""
    config = AugmentConfig(crop="native", crop_size=128, flip=False, erase_prob=1.0)
    grey = np.full((256, 256, 3), 128, dtype=np.uint8)
    augmenter = Augmenter(config)
    bulk = augmenter(torch.from_numpy(grey).permute(2, 0, 1)[None].repeat(200, 1, 1, 1),
                     augmenter.draw(200, torch.Generator().manual_seed(0)))
    transform = item_transform((0.0,) * 3, (1 / 255,) * 3, True, config)
    torch.manual_seed(0)
    per_item = torch.stack([transform(Image.fromarray(grey)).round().to(torch.uint8) for _ in range(200)])
    assert bulk.shape == per_item.shape == (200, 3, 128, 128)
    bulk_area, item_area = ((images != 128).any(1).float().mean((1, 2)) for images in (bulk, per_item))
    expected = sum(ERASE_AREA) / 2  # mean of the uniform area fraction
    assert abs(bulk_area.mean() - expected) < 0.03 and abs(item_area.mean() - expected) < 0.03


def test_mixup_blends_images_and_labels_with_a_beta_weight():
    images = torch.arange(8, dtype=torch.float32).view(8, 1, 1, 1).expand(8, 3, 4, 4)
    labels = torch.arange(8)
    mixed, partners, lam = mixup_batch(images, labels, 1.0, torch.Generator().manual_seed(0))
    assert 0 < lam < 1 and sorted(partners.tolist()) == list(range(8))
    assert torch.allclose(mixed, lam * images + (1 - lam) * images[partners])
    generator = torch.Generator().manual_seed(1)
    uniform = [mixup_batch(images, labels, 1.0, generator)[2] for _ in range(400)]
    peaked = [mixup_batch(images, labels, 0.2, generator)[2] for _ in range(400)]
    assert abs(np.mean(uniform) - 0.5) < 0.05 and abs(np.mean(peaked) - 0.5) < 0.06
    middle = [np.mean([0.1 < lam < 0.9 for lam in draws]) for draws in (uniform, peaked)]
    assert abs(middle[0] - 0.8) < 0.06 and middle[1] < 0.45  # Beta(0.2, 0.2) mostly stays near 0 or 1
