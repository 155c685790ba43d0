"""Local multi-validator networks: their files (layout), running them (runner), the
command line (cli)."""
