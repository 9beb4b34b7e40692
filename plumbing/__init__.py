"""Project-wide plumbing at the bottom of the import graph: where data lives on disk (``layout``),
safe names and atomic writes (``files``), the command lines' error policy (``cli``) and option
checks (``checks``). Every package above imports from here; this package imports none of them."""
