"""Product search: a Tantivy index projected from the catalog, stock and ratings."""
