"""The scenarios isoproof ships (``*.toml``; data only, nothing to import).

A package so that a wheel carries them: ``pip install isoproof`` then runs the limit checks with
the same scenarios as a checkout. ``verify.scenarios.default_dir`` finds them here.
"""
