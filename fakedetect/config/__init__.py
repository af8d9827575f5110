"""What a run is configured with: the recipe knobs (recipe), --config files (config_file) and the rules a
resume must pass (resume)."""
