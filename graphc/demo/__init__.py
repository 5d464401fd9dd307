"""The README demos: `python -m graphc.demo` (digits training) and `... seeds`."""
