"""``python -m trainkit`` (and ``torchrun -m trainkit run ...``)."""

from .cli import main

if __name__ == "__main__":
    main()
