"""`python -m unlearn_ops.cli`."""

from unlearn_ops.cli.app import main

if __name__ == "__main__":
    main()
