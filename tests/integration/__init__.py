"""Integration tests (a package, so a test module may share its name with one in another folder)."""
