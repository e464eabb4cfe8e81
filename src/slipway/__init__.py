"""Command-line tools shipped beside the slipway.django collection."""
