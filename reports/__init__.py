"""The HTML isolation report: ``results.json`` and ``matrix.json`` into one self-contained page.

``model`` loads and normalises the inputs, ``html`` renders, ``cli`` is ``python -m reports`` /
``isoproof-report``. See ``reports/README.md``.
"""
