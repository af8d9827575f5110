"""The commands: every script's flags, checks and main (argparse lives here only), and the conventions they
share (common). The top-level scripts and the console entry points call these mains."""
