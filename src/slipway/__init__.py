"""The slipway.django collection's Python package (slipway-tools, shipped in the collection):
the deploy history (`slipway.history`), which the deploy_history callback imports, and the
`slipway-history` and `slipway-console` commands."""
