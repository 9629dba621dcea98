"""``python -m bidsfill`` runs the BIDS App."""

from bidsfill.cli.run import main

if __name__ == "__main__":
    main()
