"""Groups of copies in a library: the report both faces show and the keeper rule."""
