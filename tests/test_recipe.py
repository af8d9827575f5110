"""fakedetect/config/recipe.py and train/optim.py: the knob declarations, the learning-rate schedule and the class weights."""
import dataclasses
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fakedetect.cli.common import ArgumentParser, add_recipe_arguments
from fakedetect.config.recipe import KNOBS, RECIPES, Recipe, apply_recipe, knob_table, recipe_named
from fakedetect.train.optim import class_weights, lr_factor

ROOT = Path(__file__).resolve().parents[1]
TABLE_START, TABLE_END = "<!-- recipe knobs: python -m fakedetect.config.recipe -->", "<!-- end of recipe knobs -->"


def test_warmup_cosine_values_at_given_steps():
    assert lr_factor("cosine", 0, 110, 10) == pytest.approx(0.1)
    assert lr_factor("cosine", 9, 110, 10) == pytest.approx(1.0)
    assert lr_factor("cosine", 10, 110, 10) == pytest.approx(1.0)
    assert lr_factor("cosine", 60, 110, 10) == pytest.approx(0.5)
    assert lr_factor("cosine", 110, 110, 10) == pytest.approx(0.0)
    assert lr_factor("cosine", 35, 110, 0) == pytest.approx(0.5 * (1 + math.cos(math.pi * 35 / 110)))
    assert lr_factor("constant", 4, 110, 10) == pytest.approx(0.5)
    assert lr_factor("constant", 50, 110, 10) == 1.0


def test_class_weights_equalize_the_classes():
    weights = class_weights([0] * 90 + [1] * 10)
    assert weights.tolist() == pytest.approx([100 / 180, 100 / 20])
    assert (weights * torch.tensor([90.0, 10.0])).tolist() == pytest.approx([50.0, 50.0])


def test_the_readme_recipe_table_is_the_knob_declaration():
    readme = (ROOT / "README.md").read_text()
    start, end = readme.index(TABLE_START) + len(TABLE_START), readme.index(TABLE_END)
    assert readme[start:end].strip() == knob_table(), \
        "README's recipe table is stale: paste `python -m fakedetect.config.recipe` there"


def test_the_recipe_module_prints_the_knob_table():
    result = subprocess.run([sys.executable, "-m", "fakedetect.config.recipe"], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == knob_table()


def test_every_knob_is_a_flag_a_recipe_field_and_in_both_recipes():
    parser = ArgumentParser()
    add_recipe_arguments(parser)
    flags = {option for action in parser._actions for option in action.option_strings}
    for knob in KNOBS:
        assert knob.flag in flags and set(knob.aliases) <= flags, knob.name
        assert knob.name in RECIPES["course"] and knob.name in RECIPES["improved"]
    assert [field.name for field in dataclasses.fields(Recipe)] == [knob.name for knob in KNOBS]
    assert recipe_named("course", lr=0.1).lr == 0.1 and recipe_named("course").optimizer == "Adam"


def parse_recipe(*flags):
    parser = ArgumentParser()
    parser.add_argument("--recipe", default="improved")
    add_recipe_arguments(parser)
    args = parser.parse_args(list(flags))
    return args, apply_recipe(args, parser.error)


NUMERIC_KNOBS = [knob for knob in KNOBS if knob.choices is None and knob.type is not bool]


@pytest.mark.parametrize("knob", NUMERIC_KNOBS, ids=[knob.name for knob in NUMERIC_KNOBS])
def test_each_numeric_knob_refuses_values_outside_its_range_in_one_line(knob, capsys):
    below = knob.low if knob.low_open else knob.low - (1 if knob.type is int else 1e-3)
    outside = [below] + ([knob.high if knob.high_open else knob.high + (1 if knob.type is int else 1e-3)]
                         if knob.high is not None else [])
    for value in outside + ([] if knob.type is int else [math.inf, math.nan]):
        with pytest.raises(SystemExit) as exit_info:
            parse_recipe(knob.flag, str(value))
        assert exit_info.value.code == 2
        error = capsys.readouterr().err.strip()
        assert f": error: {knob.flag} must be " in error and "\n" not in error, error
    inside = knob.high if knob.high is not None and not knob.high_open else knob.low + (1 if knob.type is int else 0.5)
    _, recipe = parse_recipe(knob.flag, str(inside))
    assert getattr(recipe, knob.name) == inside


def test_unset_knobs_take_the_recipes_values_and_set_ones_are_recorded():
    args, recipe = parse_recipe("--recipe", "course", "--lr", "0.01", "--no-flip")
    assert recipe == recipe_named("course", lr=0.01, flip=False)
    assert sorted(args.recipe_overrides) == ["flip", "lr"]
    assert parse_recipe()[1] == recipe_named("improved")
