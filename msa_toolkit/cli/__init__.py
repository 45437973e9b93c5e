"""The `msa` command line. One module per command; heavy imports happen inside commands."""
