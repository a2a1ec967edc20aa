"""The paper pipeline: the claims checked against a results table, and ``reproduce``, which imports everything."""
