"""The offline pipeline, one sub-package per stage, each importing only the stages before it:

    data -> semantic_ids -> network -> methods / baselines -> evaluation -> training -> export -> analysis

``config``, ``errors`` and ``progress`` are shared by every stage. ``index`` (top level) sits below all
of them; ``service`` (top level) sits above.
"""
