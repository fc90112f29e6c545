"""Analysis tools behind the model cards' diagnoses (run from the repository root as
`python -m tools.<name>`); not part of the installed package."""
