"""Collections on disk: folders and tar archives of images (data), what a folder looks like and
which recipe suits it (survey), the downloadable sample (sample).
May import model.common and model.embedding."""
