#!/usr/bin/env python3
"""BIDS-Apps style shim: ``run.py bids_dir output_dir participant`` is ``bidsfill ...``."""

from bidsfill.cli.run import main

if __name__ == "__main__":
    main()
