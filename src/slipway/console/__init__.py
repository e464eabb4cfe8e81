"""slipway-console: a web page and API to trigger, watch, cancel and roll back deploys."""
