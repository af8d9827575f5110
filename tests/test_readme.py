"""README.md: its map names every top-level file, and its recipe table is checked in test_recipe.py."""
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_readme_map_names_every_top_level_file():
    readme = (ROOT / "README.md").read_text()
    start, end = readme.index("The map, one line per top-level file"), readme.index("## Two commands")
    missing = [path.name for path in sorted(ROOT.glob("*.py")) if f"`{path.name}`" not in readme[start:end]]
    assert not missing, f"add a line for each to the README's map: {missing}"
