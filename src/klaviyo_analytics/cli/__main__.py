"""Allow `python -m klaviyo_analytics.cli`."""

from klaviyo_analytics.cli.main import main

main()
