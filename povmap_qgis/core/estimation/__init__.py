"""Step 9: small area estimation of district poverty (survey + map, Fay–Herriot)."""
