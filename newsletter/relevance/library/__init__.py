"""A reader's own papers: their library file and their arXiv author feed, as liked papers and vectors of their own."""  # noqa: E501
