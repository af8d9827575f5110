"""README.md: its map names every package folder and top-level file, and its recipe table is checked in
test_recipe.py."""
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_map():
    readme = (ROOT / "README.md").read_text()
    return readme[readme.index("The map, one line per package folder"):readme.index("## Two commands")]


def test_the_readme_map_names_every_package_folder_and_top_level_file():
    lines = readme_map().splitlines()
    folders = [f"fakedetect/{path.name}/" for path in sorted((ROOT / "fakedetect").iterdir())
               if path.is_dir() and (path / "__init__.py").is_file()]
    files = [path.name for path in sorted(ROOT.glob("*.py"))] + ["fakedetect/metrics.py"]
    missing = [name for name in folders + files if not any(line.startswith(f"- `{name}`") for line in lines)]
    assert not missing, f"add a line for each to the README's map: {missing}"
