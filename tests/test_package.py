"""The fakedetect package: it imports alone, its modules import no higher layer and form no cycle, argparse
lives in cli/ only, and the old top-level names (the course's modules, the README's scripts) still work."""
import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "fakedetect"
LAYERS = ("metrics", "io", "config", "data", "faces", "models", "train", "explain", "analysis", "serve", "cli")
SCRIPTS = {"train_main": "train", "report": "report", "predict": "predict", "export": "export", "app": "app",
           "build_faces_dataset": "build_faces_dataset", "cross_dataset": "cross_dataset", "demo_data": "demo_data",
           "demo_media": "demo_media", "plot_samples_of_faces_datasets": "plot_samples_of_faces_datasets",
           "plot_self_blend": "plot_self_blend", "saliency_map": "saliency_map",
           "grad_cam_analysis": "grad_cam_analysis", "plot_accuracy_and_loss": "plot_accuracy_and_loss",
           "numerical_analysis": "numerical_analysis"}


def module_name(path):
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imported_modules(path):
    """The fakedetect modules ``path`` imports, anywhere in it (function bodies too): ``from fakedetect.a import b``
    counts as fakedetect.a.b when that is a module, else as fakedetect.a."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.split(".")[0] == "fakedetect"}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module.split(".")[0] == "fakedetect":
            for alias in node.names:
                found.add(f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in MODULES else node.module)
    return found


def layer(module):
    """The position of ``module`` in LAYERS (its sub-package, or metrics); None for the package itself."""
    parts = module.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 1 else None


def test_every_module_imports_only_its_own_layer_and_those_below():
    upward = [f"{module} imports {imported}" for module, path in MODULES.items() for imported in imported_modules(path)
              if layer(module) is not None and layer(imported) is not None and layer(imported) > layer(module)]
    assert not upward, "a lower layer imports a higher one (order: " + " < ".join(LAYERS) + "):\n" + "\n".join(upward)


def test_the_import_graph_has_no_cycle():
    graph = {module: sorted(imported_modules(path) & MODULES.keys()) for module, path in MODULES.items()}
    done, path = set(), []

    def visit(module):
        if module in path:
            raise AssertionError("import cycle: " + " -> ".join(path[path.index(module):] + [module]))
        if module not in done:
            path.append(module)
            for imported in graph[module]:
                visit(imported)
            path.pop()
            done.add(module)
    for module in graph:
        visit(module)


def test_every_module_has_a_place_in_the_layers():
    assert {module.split(".")[1] for module in MODULES if "." in module} <= set(LAYERS)


def test_argparse_is_imported_in_cli_only():
    users = [module for module, path in MODULES.items() if not module.startswith("fakedetect.cli")
             and any(isinstance(node, ast.Import) and any(alias.name == "argparse" for alias in node.names)
                     for node in ast.walk(ast.parse(path.read_text())))]
    assert not users


def test_the_package_imports_alone_and_light():
    code = "import sys, fakedetect; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_the_course_names_still_import():
    from faces_dataset import FacesDataset
    from grad_cam_analysis import get_grad_cam_visualization
    from models import SimpleNet, build_model, get_xception_based_model
    from numerical_analysis import get_soft_scores_and_true_labels, plot_roc_curve
    from plot_accuracy_and_loss import plot_accuracy_and_loss
    from saliency_map import compute_gradient_saliency_maps
    from trainer import Trainer
    from xception import build_xception_backbone

    from fakedetect.analysis import curves, numbers
    from fakedetect.data import folders
    from fakedetect.explain import grad_cam, saliency
    from fakedetect.models import registry, simplenet, xception
    from fakedetect.train import trainer
    assert (FacesDataset, SimpleNet, build_model, get_xception_based_model, Trainer) == (
        folders.FacesDataset, simplenet.SimpleNet, registry.build_model, xception.get_xception_based_model,
        trainer.Trainer)
    assert (get_grad_cam_visualization, compute_gradient_saliency_maps, get_soft_scores_and_true_labels,
            plot_roc_curve, plot_accuracy_and_loss, build_xception_backbone) == (
        grad_cam.get_grad_cam_visualization, saliency.compute_gradient_saliency_maps,
        numbers.get_soft_scores_and_true_labels, numbers.plot_roc_curve, curves.plot_accuracy_and_loss,
        xception.build_xception_backbone)


@pytest.mark.parametrize("script, command", SCRIPTS.items())
def test_every_readme_script_is_its_commands_main(script, command):
    assert importlib.import_module(script).main is importlib.import_module(f"fakedetect.cli.{command}").main


def test_every_script_runs_as_a_script():
    """Each top-level script, run as ``python SCRIPT --help``, reaches its command's parser (exit 0)."""
    code = ("import runpy, sys\n"
            "for script in sys.argv[1:]:\n"
            "    sys.argv = [script, '--help']\n"
            "    try:\n"
            "        runpy.run_path(script, run_name='__main__')\n"
            "    except SystemExit as exit:\n"
            "        print(script, exit.code)\n")
    scripts = [f"{script}.py" for script in SCRIPTS]
    result = subprocess.run([sys.executable, "-c", code, *scripts], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert [line for line in result.stdout.splitlines() if line.endswith(".py 0")] == [f"{s} 0" for s in scripts]
