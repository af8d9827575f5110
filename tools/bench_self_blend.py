"""How fast self_blend.py makes pseudo-fakes: images per second for each mask kind, batch size and
JPEG probability, on drawn 256x256 faces with landmarks (demo_data), best of ``--repeats`` timed
calls after one warm-up.

    python tools/bench_self_blend.py [--device cpu] [--threads N] [--batches 16 64] [--repeats 5]

Drawing the parameters is timed with the op, as a training loop would run both per batch.
"""
import argparse
import sys
import time

import numpy as np
import torch

from fakedetect.data import demo as demo_data
from fakedetect.data.self_blend import SelfBlendConfig, SelfBlender

CASES = (("hull", 0.0), ("ellipse", 0.0), ("hull", 0.5), ("hull", 1.0))


def drawn_faces(count, seed=0):
    """``count`` drawn faces (uint8 count x 3 x 256 x 256) and their 68 landmarks."""
    rng = np.random.default_rng(seed)
    people = [demo_data.random_identity(rng) for _ in range(count)]
    images = np.stack([demo_data.to_uint8(demo_data.camera(demo_data.render_face(person), rng)) for person in people])
    landmarks = np.stack([demo_data.face_landmarks(person) for person in people])
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(landmarks)


def images_per_second(blender, images, landmarks, repeats, generator):
    """Best rate over ``repeats`` calls of draw + blend on ``images`` (after one warm-up call), and
    the best wall-clock and CPU seconds of a call (CPU time: what a call costs on a machine shared
    with other work)."""
    def run():
        params = blender.to(blender.draw(len(images), generator), images.device)
        result = blender(images, landmarks, params)
        if images.device.type == "cuda":
            torch.cuda.synchronize()
        return result
    run()
    best, best_cpu = float("inf"), float("inf")
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        run()
        best, best_cpu = min(best, time.perf_counter() - start), min(best_cpu, time.process_time() - start_cpu)
    return len(images) / best, best, best_cpu


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="device to blend on (default: cpu)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--batches", type=int, nargs="+", default=[16, 64], help="batch sizes (default: 16 64)")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per case (default: 5)")
    args = parser.parse_args(argv)
    if args.repeats < 1 or min(args.batches) < 1:
        parser.error("--repeats and --batches must be >= 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    faces, landmarks = drawn_faces(max(args.batches))
    faces, landmarks = faces.to(args.device), landmarks.to(args.device)
    generator = torch.Generator().manual_seed(0)
    print(f"device {args.device}, {torch.get_num_threads()} CPU threads, torch {torch.__version__}, 256x256 faces")
    print("| mask | JPEG probability | batch | images/s | ms per batch | CPU ms per batch |")
    print("|---|---|---|---|---|---|")
    for mask, jpeg_prob in CASES:
        blender = SelfBlender(SelfBlendConfig(mask=mask, jpeg_prob=jpeg_prob))
        for batch in args.batches:
            rate, seconds, cpu = images_per_second(blender, faces[:batch], landmarks[:batch], args.repeats, generator)
            print(f"| {mask} | {jpeg_prob:g} | {batch} | {rate:,.0f} | {1000 * seconds:.1f} | {1000 * cpu:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
